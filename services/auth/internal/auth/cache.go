package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Cache holds what is short-lived or derived in Redis: sign-in state
// (state → nonce, PKCE verifier, return path; one-time, short TTL), the
// active-session cache (Postgres stays the source of truth) and the per-IP
// rate limits.
type Cache struct {
	rdb     *redis.Client
	limiter *redis_rate.Limiter
}

// NewCache wraps a Redis client.
func NewCache(rdb *redis.Client) *Cache {
	return &Cache{rdb: rdb, limiter: redis_rate.NewLimiter(rdb)}
}

// signInState is kept between StartSignIn and FinishSignIn.
type signInState struct {
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	ReturnTo string `json:"r"`
}

const (
	keySignIn  = "auth:signin:"
	keySession = "auth:session:"
	keyRate    = "auth:rate:"
)

func (c *Cache) PutSignIn(ctx context.Context, state string, st signInState, ttl time.Duration) error {
	b, _ := json.Marshal(st)
	if err := c.rdb.Set(ctx, keySignIn+state, b, ttl).Err(); err != nil {
		return fmt.Errorf("store sign-in state in redis: %w", err)
	}
	return nil
}

// errNoState: the state is unknown, expired or already used.
var errNoState = errors.New("unknown sign-in state")

// TakeSignIn returns the state and deletes it, so a callback is usable once.
func (c *Cache) TakeSignIn(ctx context.Context, state string) (signInState, error) {
	var st signInState
	b, err := c.rdb.GetDel(ctx, keySignIn+state).Bytes()
	if errors.Is(err, redis.Nil) {
		return st, errNoState
	}
	if err != nil {
		return st, fmt.Errorf("read sign-in state from redis: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, errNoState
	}
	return st, nil
}

// cachedSession is the Redis copy of a session's state.
type cachedSession struct {
	UserID  string `json:"u"`
	Revoked bool   `json:"r"`
}

// PutSession caches a session's state until it ends (at most a day, so a
// lost invalidation heals).
func (c *Cache) PutSession(ctx context.Context, id uuid.UUID, s cachedSession, until time.Time) error {
	ttl := min(time.Until(until), 24*time.Hour)
	if ttl <= 0 {
		ttl = time.Minute // a revoked/expired marker still saves a few lookups
	}
	b, _ := json.Marshal(s)
	return c.rdb.Set(ctx, keySession+id.String(), b, ttl).Err()
}

// Session returns the cached state; ok is false on a miss.
func (c *Cache) Session(ctx context.Context, id uuid.UUID) (cachedSession, bool, error) {
	var s cachedSession
	b, err := c.rdb.Get(ctx, keySession+id.String()).Bytes()
	if errors.Is(err, redis.Nil) {
		return s, false, nil
	}
	if err != nil {
		return s, false, err
	}
	if json.Unmarshal(b, &s) != nil {
		return s, false, nil
	}
	return s, true, nil
}

// Allow takes one request from the bucket name:ip allowing perMinute
// requests a minute. retryAfter is how long to wait when refused.
func (c *Cache) Allow(ctx context.Context, name, ip string, perMinute int) (ok bool, retryAfter time.Duration, err error) {
	if perMinute <= 0 {
		return true, 0, nil
	}
	res, err := c.limiter.Allow(ctx, keyRate+name+":"+ip, redis_rate.PerMinute(perMinute))
	if err != nil {
		return false, 0, fmt.Errorf("rate limit: %w", err)
	}
	if res.Allowed > 0 {
		return true, 0, nil
	}
	return false, res.RetryAfter, nil
}

// retryAfterSeconds renders a Retry-After value (whole seconds, at least 1).
func retryAfterSeconds(d time.Duration) string {
	s := int((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.Itoa(s)
}

// Ping is the readiness check.
func (c *Cache) Ping(ctx context.Context) error { return c.rdb.Ping(ctx).Err() }
