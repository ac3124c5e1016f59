// Command auth is the identity service: OpenID Connect sign-in, users and
// roles, RS256 access tokens and rotating refresh sessions (Connect API on
// :8081). `auth prune [-retention 168h]` deletes dead refresh tokens.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"pressroom.dev/services/auth/internal/auth"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		slog.Error("fatal", "err", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	ctx := context.Background()
	if len(args) == 0 || args[0] == "serve" {
		return auth.Run(ctx)
	}
	switch args[0] {
	case "prune":
		fs := flag.NewFlagSet("prune", flag.ContinueOnError)
		retention := fs.Duration("retention", -1, "delete what expired, rotated or was revoked longer ago than this (default $PRUNE_RETENTION or 168h)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		return auth.Prune(ctx, nil, *retention, stdout)
	default:
		return fmt.Errorf("unknown command %q: use `auth` (serve) or `auth prune [-retention 168h]`", args[0])
	}
}
