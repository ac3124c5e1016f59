package auth

import (
	"context"
	"testing"

	authv1 "pressroom.dev/proto/gen/auth/v1"
)

// BenchmarkVerifyAccessToken is what every request to article, media and web
// pays: verifying one RS256 access token with the kit verifier.
func BenchmarkVerifyAccessToken(b *testing.B) {
	e := newBenchEnv(b)
	at := e.signIn("bench@example.com").GetTokens().GetAccessToken()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.verifier.Verify(at); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRefresh is a full Refresh RPC over HTTP: rate limit, rotation in
// Postgres, session cache in Redis, and signing a new access token.
func BenchmarkRefresh(b *testing.B) {
	e := newBenchEnv(b)
	rt := e.signIn("bench@example.com").GetTokens().GetRefreshToken()
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		res, err := e.client.Refresh(ctx, req(e, &authv1.RefreshRequest{RefreshToken: rt}))
		if err != nil {
			b.Fatal(err)
		}
		rt = res.Msg.GetTokens().GetRefreshToken()
	}
}
