package testkit

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"pressroom.dev/kit/token"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestPostgresGivesEachCallItsOwnDatabase(t *testing.T) {
	ctx := context.Background()
	a, b := Postgres(t), Postgres(t)
	if a == b {
		t.Fatal("two calls returned the same database")
	}
	ca, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close(ctx)
	if _, err := ca.Exec(ctx, "CREATE TABLE only_in_a (id int)"); err != nil {
		t.Fatal(err)
	}
	cb, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close(ctx)
	var n int
	if err := cb.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Error("database b sees a's table")
	}
	first, second := PostgresServer(t), PostgresServer(t)
	if first != second {
		t.Error("shared server started twice")
	}
}

func TestPostgresStopStartKeepsData(t *testing.T) {
	ctx := context.Background()
	p := StartPostgres(t)
	dsn := p.NewDatabase(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('hello')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if c, err := pgx.Connect(ctx, dsn); err == nil {
		c.Close(ctx)
		t.Fatal("connected to a stopped server")
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	conn, err = pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != "hello" {
		t.Fatalf("after restart: %q %v", v, err)
	}
}

func redisDo(t *testing.T, addr, cmds string, lines int) []string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(c, cmds)
	br := bufio.NewReader(c)
	var out []string
	for range lines {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.TrimSpace(l))
	}
	return out
}

func TestRedisRequiresPasswordAndRestarts(t *testing.T) {
	r := StartRedis(t)
	if got := redisDo(t, r.Addr, "PING\r\n", 1); !strings.HasPrefix(got[0], "-NOAUTH") {
		t.Errorf("unauthenticated PING answered %q", got)
	}
	got := redisDo(t, r.Addr, "AUTH "+r.Password+"\r\nSET k v\r\n", 2)
	if got[0] != "+OK" || got[1] != "+OK" {
		t.Errorf("AUTH+SET = %q", got)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", r.Addr, time.Second); err == nil {
		t.Error("stopped redis still accepts connections")
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	if got := redisDo(t, r.Addr, "AUTH "+r.Password+"\r\nPING\r\n", 2); got[1] != "+PONG" {
		t.Errorf("after restart %q", got)
	}
	if !strings.HasPrefix(r.URL(), "redis://:"+r.Password+"@127.0.0.1:") {
		t.Errorf("URL %q", r.URL())
	}
	if Redis(t).Addr == "" {
		t.Error("shared redis has no address")
	}
}

func TestNATSJetStreamSurvivesRestart(t *testing.T) {
	n := StartNATS(t)
	nc, err := nats.Connect(n.URL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AddStream(&nats.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: nats.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish("t.one", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := js.StreamInfo("T")
		if err == nil {
			if info.State.Msgs != 1 {
				t.Fatalf("stream has %d msgs after restart, want 1", info.State.Msgs)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream not back after restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if NATS(t).URL == "" {
		t.Error("shared nats has no URL")
	}
}

func TestJWTKeysLoad(t *testing.T) {
	k := JWTKeys(t)
	s, err := token.LoadSigner(k.PrivatePath, "iss", []string{"aud"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.LoadVerifier(k.PublicPath, "iss", "aud")
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := s.Sign("u", "", "", nil)
	if _, err := v.Verify(tok); err != nil {
		t.Fatal(err)
	}
	if s.KeyID() != k.KeyID {
		t.Errorf("kid %s != %s", s.KeyID(), k.KeyID)
	}
}

func TestMissingBinariesNameTheirPackage(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := newRedis(); err == nil || !strings.Contains(err.Error(), "Debian package redis-server") {
		t.Errorf("redis without binary: %v", err)
	}
	t.Setenv("PRESSROOM_PG_BIN", t.TempDir())
	if _, err := newPG(); err == nil || !strings.Contains(err.Error(), "Debian package postgresql") {
		t.Errorf("postgres without binary: %v", err)
	}
}
