package article

import "embed"

// Migrations holds article_db's schema (goose files), applied by pg.Migrate.
//
//go:embed migrations/*.sql
var Migrations embed.FS
