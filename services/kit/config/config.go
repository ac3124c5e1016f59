// Package config loads a service's settings from environment variables into a
// typed struct, and reports every missing or malformed variable in one error so
// an operator fixes them all in one go.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// Common holds the settings every service has. Embed it (without a prefix).
// Pre-fill Service and HTTPAddr before Load: unset variables keep those values.
type Common struct {
	Service         string        `env:"SERVICE_NAME"`
	HTTPAddr        string        `env:"HTTP_ADDR"`
	OTLPEndpoint    string        `env:"OTEL_EXPORTER_OTLP_ENDPOINT"`
	LogLevel        slog.Level    `env:"LOG_LEVEL" envDefault:"info"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`
	// TrustedProxies: peers whose X-Forwarded-For is believed. The default is
	// K3s's pod network, where Traefik (the only way in) runs; "none" trusts none.
	TrustedProxies []string `env:"TRUSTED_PROXIES" envSeparator:"," envDefault:"10.42.0.0/16"`
}

// JWT holds the token-verification settings of every service that checks
// access tokens. Embed it (without a prefix) next to Common.
type JWT struct {
	JWTPublicKeyPath string `env:"JWT_PUBLIC_KEY_PATH" envDefault:"/keys/jwt_public.pem"`
	JWTIssuer        string `env:"JWT_ISSUER" envDefault:"pressroom-auth"`
	JWTAudience      string `env:"JWT_AUDIENCE" envDefault:"pressroom"`
}

// Load fills cfg (a pointer to a struct with env tags) from the process environment.
func Load(cfg any) error {
	return LoadFrom(cfg, nil)
}

// LoadFrom fills cfg from environ instead of the process environment; a nil
// environ means the process environment (so a service's loader can take an
// optional map from its tests).
func LoadFrom(cfg any, environ map[string]string) error {
	if environ == nil {
		environ = env.ToMap(os.Environ())
	}
	err := env.ParseWithOptions(cfg, env.Options{Environment: environ})
	if err == nil {
		return validateCommon(cfg)
	}
	keys := fieldKeys(reflect.TypeOf(cfg))
	var problems []string
	var agg env.AggregateError
	if errors.As(err, &agg) {
		for _, e := range agg.Errors {
			problems = append(problems, describe(e, keys, environ))
		}
	} else {
		problems = append(problems, err.Error())
	}
	if cerr := validateCommon(cfg); cerr != nil && !strings.Contains(strings.Join(problems, ";"), "SHUTDOWN_TIMEOUT") {
		problems = append(problems, strings.TrimPrefix(cerr.Error(), "config: "))
	}
	return fmt.Errorf("config: %d problem(s): %s", len(problems), strings.Join(problems, "; "))
}

func validateCommon(cfg any) error {
	v := reflect.ValueOf(cfg)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	var c *Common
	if p, ok := cfg.(*Common); ok {
		c = p
	} else if f := v.Elem().FieldByName("Common"); f.IsValid() && f.Type() == reflect.TypeOf(Common{}) {
		c = f.Addr().Interface().(*Common)
	}
	if c == nil {
		return nil
	}
	var problems []string
	if c.ShutdownTimeout <= 0 {
		problems = append(problems, "SHUTDOWN_TIMEOUT: must be positive, e.g. 20s")
	}
	kept := c.TrustedProxies[:0]
	for _, p := range c.TrustedProxies {
		if p = strings.TrimSpace(p); p == "" || p == "none" {
			continue
		}
		if _, err := netip.ParsePrefix(p); err != nil {
			if _, err := netip.ParseAddr(p); err != nil {
				problems = append(problems, fmt.Sprintf("TRUSTED_PROXIES: %q is not an IP address or CIDR (e.g. 10.42.0.0/16)", p))
				continue
			}
		}
		kept = append(kept, p)
	}
	c.TrustedProxies = kept
	if len(problems) > 0 {
		return fmt.Errorf("config: %s", strings.Join(problems, "; "))
	}
	return nil
}

// describe turns one env error into "VAR: what is wrong (how to fix)".
func describe(e error, keys map[string]string, environ map[string]string) string {
	var notSet env.VarIsNotSetError
	var empty env.EmptyVarError
	var parse env.ParseError
	var file env.LoadFileContentError
	switch {
	case errors.As(e, &notSet):
		return notSet.Key + ": required but not set"
	case errors.As(e, &empty):
		return empty.Key + ": must not be empty"
	case errors.As(e, &file):
		return fmt.Sprintf("%s: cannot read file %q: %v", file.Key, file.Filename, file.Err)
	case errors.As(e, &parse):
		key := keys[parse.Name]
		if key == "" {
			key = parse.Name
		}
		return fmt.Sprintf("%s: %q is not a valid %s%s", key, environ[key], parse.Type, example(parse.Type))
	}
	return e.Error()
}

func example(t reflect.Type) string {
	switch t {
	case reflect.TypeOf(time.Duration(0)):
		return " (e.g. 20s, 1m30s)"
	case reflect.TypeOf(slog.Level(0)):
		return " (one of debug, info, warn, error)"
	}
	switch t.Kind() {
	case reflect.Bool:
		return " (true or false)"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return " (a whole number)"
	case reflect.Float32, reflect.Float64:
		return " (a number)"
	}
	return ""
}

// fieldKeys maps struct field names to their env variable names (ParseError
// names the Go field, but operators only know the variable).
func fieldKeys(t reflect.Type) map[string]string {
	out := map[string]string{}
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return
		}
		for i := range t.NumField() {
			f := t.Field(i)
			key, _, _ := strings.Cut(f.Tag.Get("env"), ",")
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if key == "" && ft.Kind() == reflect.Struct {
				walk(ft, prefix+f.Tag.Get("envPrefix"))
				continue
			}
			if key != "" {
				out[f.Name] = prefix + key
			}
		}
	}
	walk(t, "")
	return out
}
