package sqlstore

// The drivers the tests use. The library itself imports none: it works over
// database/sql with the driver the caller chooses.
import (
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"
)
