// Package drivers registers the database drivers our tests open: "pgx"
// (github.com/jackc/pgx/v5) and "sqlite" (modernc.org/sqlite). Only the
// overlay's files (testdata/testdeps) import it, so no module importing
// this library loads it, and go.mod keeps the drivers' versions.
package drivers

import (
	_ "github.com/jackc/pgx/v5/stdlib" // "pgx"
	_ "modernc.org/sqlite"             // "sqlite"
)
