package images

import (
	"strings"
	"testing"
)

func TestValidateRef(t *testing.T) {
	d := strings.Repeat("0a", 32)
	for ref, ok := range map[string]bool{
		"registry.example.com/pressroom/auth:v1@sha256:" + d: true,
		"registry.example.com/pressroom/auth@sha256:" + d:    true,
		"localhost:5000/auth@sha256:" + d:                    true,
		"registry.example.com/pressroom/auth:v1":             false, // tag only
		"auth:latest@sha256:" + d:                            false, // :latest, even with a digest
		"auth@sha256:" + d[:60]:                              false, // short digest
		"Auth@sha256:" + d:                                   false, // not a valid repository
		"":                                                   false,
	} {
		err := ValidateRef("auth", ref)
		if (err == nil) != ok {
			t.Errorf("ValidateRef(%q) = %v, want ok=%v", ref, err, ok)
		}
	}
}

func TestDockerConfigRoundTrip(t *testing.T) {
	cfg, err := dockerConfig("registry.example.com", "robot", "s3cr:et")
	if err != nil {
		t.Fatal(err)
	}
	u, p, err := loginFrom(cfg, "registry.example.com")
	if err != nil || u != "robot" || p != "s3cr:et" {
		t.Errorf("loginFrom = %q %q %v", u, p, err)
	}
	if _, _, err := loginFrom(cfg, "other.example.com"); err == nil || !strings.Contains(err.Error(), "no entry for other.example.com") {
		t.Errorf("unknown server: %v", err)
	}
	if _, _, err := loginFrom("not json", "x"); err == nil {
		t.Error("garbage accepted")
	}
}
