package media

import "embed"

// Migrations holds media_db's schema (goose files, applied by kit/pg.Migrate).
//
//go:embed migrations/*.sql
var Migrations embed.FS
