package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gdprkit/privacy/txscope"
)

// postgresEnv names the variable holding the DSN of a PostgreSQL database the
// tests may create schemas in, such as
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
const postgresEnv = "GDPRKIT_TEST_POSTGRES_DSN"

// sqliteDSN is how the tests open SQLite (modernc.org/sqlite): a busy timeout
// so writers wait for each other, WAL so readers do not wait for writers, and
// foreign keys on for the tests that make a commit fail on purpose.
const sqliteDSN = "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_txlock=immediate"

// sqliteDB opens (creating it) the SQLite database at path.
func sqliteDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+sqliteDSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// postgresDB opens the test PostgreSQL database, or skips the test when none
// is configured.
func postgresDB(t testing.TB) *sql.DB {
	t.Helper()
	dsn := os.Getenv(postgresEnv)
	if dsn == "" {
		t.Skipf("PostgreSQL tests skipped: set %s to the DSN of a database they may create schemas in, such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable", postgresEnv)
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(8)
	t.Cleanup(func() { db.Close() })
	return db
}

// newSchema returns the name of a new, empty PostgreSQL schema dropped when
// the test ends, so that tests run in parallel and leave nothing behind.
func newSchema(t testing.TB, db *sql.DB) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	schema := "gdprkit_test_" + hex.EncodeToString(b[:])
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("dropping schema %s: %v", schema, err)
		}
	})
	return schema
}

// newStore returns a migrated Store over db.
func newStore(t testing.TB, db *sql.DB, d Dialect, opts ...Option) *Store {
	t.Helper()
	s, err := New(db, d, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// openSQLite returns a migrated Store over a new SQLite database.
func openSQLite(t testing.TB, opts ...Option) *Store {
	t.Helper()
	return newStore(t, sqliteDB(t, filepath.Join(t.TempDir(), "test.db")), SQLite, opts...)
}

// openPostgres returns a migrated Store in a new PostgreSQL schema, or skips
// the test.
func openPostgres(t testing.TB, opts ...Option) *Store {
	t.Helper()
	db := postgresDB(t)
	return newStore(t, db, Postgres, append([]Option{WithSchema(newSchema(t, db))}, opts...)...)
}

// dialects are the dialects every adapter test runs on.
var dialects = []struct {
	name string
	open func(testing.TB, ...Option) *Store
}{
	{"sqlite", openSQLite},
	{"postgres", openPostgres},
}

// forEachDialect runs f on a fresh Store of each dialect, in parallel.
func forEachDialect(t *testing.T, f func(t *testing.T, s *Store)) {
	t.Helper()
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			f(t, d.open(t))
		})
	}
}

// scoped returns a context holding a new Scope, closed when the test ends.
func scoped(t testing.TB, ctx context.Context) (context.Context, *txscope.Scope) {
	ctx, s := txscope.NewContext(ctx)
	t.Cleanup(s.Close)
	return ctx, s
}

// ScanAll reads the rows left in rows, each as the values of its columns as
// the driver returns them, and closes rows. The tests of this package
// (dumpRows) and of package sqlstore_test (site.dump) read whole tables with
// it, hence exported, for tests only.
func ScanAll(t testing.TB, rows *sql.Rows) [][]any {
	t.Helper()
	cols, err := rows.Columns()
	must(t, err)
	var out [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		must(t, rows.Scan(ptrs...))
		out = append(out, vals)
	}
	must(t, closeRows(rows))
	return out
}

// queryStrings runs query, of one text column, on db and returns its values:
// the tests that read a list (keys, query plans) share it.
func queryStrings(t testing.TB, ctx context.Context, db interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, query string, args ...any) []string {
	t.Helper()
	rows, err := db.QueryContext(ctx, query, args...)
	must(t, err)
	var out []string
	for rows.Next() {
		var v string
		must(t, rows.Scan(&v))
		out = append(out, v)
	}
	must(t, closeRows(rows))
	return out
}

// beginTxn begins a transaction with begin, a backend's Begin, and rolls it
// back when the test ends (a no-op once it ended): the transaction helpers of
// the backends (graphTxn, profileTxn, audienceTxn) share it.
func beginTxn[Tx interface{ Rollback(context.Context) error }](t *testing.T, begin func(context.Context) (Tx, error)) Tx {
	t.Helper()
	tx, err := begin(t.Context())
	must(t, err)
	t.Cleanup(func() { tx.Rollback(context.Background()) })
	return tx
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// t0 is a time with microseconds, as the Controller stores them.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 123456000, time.UTC)
