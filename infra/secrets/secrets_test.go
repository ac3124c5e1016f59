package secrets

import (
	"path/filepath"
	"slices"
	"testing"
)

// Databases names the services with a database: those that embed
// migrations (services/<svc>/internal/<pkg>/migrations).
func TestDatabasesAreTheServicesWithMigrations(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("..", "..", "services", "*", "internal", "*", "migrations"))
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, d := range dirs {
		svc := filepath.Base(filepath.Dir(filepath.Dir(filepath.Dir(d))))
		if !slices.Contains(have, svc) {
			have = append(have, svc)
		}
	}
	slices.Sort(have)
	if got := slices.Sorted(slices.Values(Databases)); len(have) == 0 || !slices.Equal(got, have) {
		t.Errorf("secrets.Databases = %v, but the services with migrations are %v: keep them equal", Databases, have)
	}
}
