package pglocal

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBinEnvWinsAndIsChecked(t *testing.T) {
	empty := t.TempDir()
	t.Setenv(BinEnv, empty)
	if _, err := BinDir(); err == nil || !strings.Contains(err.Error(), BinEnv+"="+empty+" holds no initdb") {
		t.Errorf("a %s without initdb: %v", BinEnv, err)
	}
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "initdb"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(BinEnv, bin)
	if got, err := BinDir(); err != nil || got != bin {
		t.Errorf("BinDir() = %q, %v; want %s", got, err, bin)
	}
}

func TestMajorReadsDebiansLayout(t *testing.T) {
	for path, want := range map[string]int{
		"/usr/lib/postgresql/15/bin/initdb": 15,
		"/usr/lib/postgresql/17/bin/initdb": 17,
		"/usr/local/bin/initdb":             0,
	} {
		if got := Major(path); got != want {
			t.Errorf("Major(%s) = %d, want %d", path, got, want)
		}
	}
}
