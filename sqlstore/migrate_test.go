package sqlstore

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/txscope"
)

func TestMigrateTwice(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		must(t, s.Migrate(ctx)) // once more: a no-op
		all, err := loadMigrations()
		must(t, err)
		var n int
		must(t, s.db.QueryRowContext(ctx, s.sql(`SELECT COUNT(*) FROM {p}schema_migrations`)).Scan(&n))
		if n != len(all[s.d]) {
			t.Errorf("schema_migrations has %d rows, want %d", n, len(all[s.d]))
		}
	})
}

// TestMigrateConcurrently migrates one fresh database from two pools (two
// processes) at once, a few times over.
func TestMigrateConcurrently(t *testing.T) {
	for _, tt := range []struct {
		name string
		open func(t *testing.T) (a, b *Store)
	}{
		{"postgres", func(t *testing.T) (*Store, *Store) {
			db := postgresDB(t)
			schema := newSchema(t, db) + "_new" // created by Migrate itself
			t.Cleanup(func() { db.Exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE") })
			a, err := New(db, Postgres, WithSchema(schema))
			must(t, err)
			b, err := New(postgresDB(t), Postgres, WithSchema(schema))
			must(t, err)
			return a, b
		}},
		{"sqlite", func(t *testing.T) (*Store, *Store) {
			path := filepath.Join(t.TempDir(), "test.db")
			a, err := New(sqliteDB(t, path), SQLite)
			must(t, err)
			b, err := New(sqliteDB(t, path), SQLite)
			must(t, err)
			return a, b
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, b := tt.open(t)
			for range 3 {
				var wg sync.WaitGroup
				errs := make([]error, 2)
				for i, s := range []*Store{a, b} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						errs[i] = s.Migrate(t.Context())
					}()
				}
				wg.Wait()
				for _, err := range errs {
					must(t, err)
				}
			}
			// Both work on the same tables.
			ctx := t.Context()
			tx, err := a.Graph().Begin(ctx)
			must(t, err)
			pid := identity.NewProfileID(t0)
			must(t, tx.Create(ctx, pid, t0))
			must(t, tx.Commit(ctx))
			if _, err := b.Graph().Node(ctx, pid); err != nil {
				t.Errorf("the other process does not see the profile: %v", err)
			}
		})
	}
}

// TestTablePrefix keeps two Stores apart in one database.
func TestTablePrefix(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		other, err := New(s.db, s.d, WithTablePrefix("other_"), WithSchema(s.schema))
		if s.d == SQLite {
			other, err = New(s.db, s.d, WithTablePrefix("other_"))
		}
		must(t, err)
		must(t, other.Migrate(ctx))
		tx, err := s.Suppressions().Begin(ctx)
		must(t, err)
		must(t, tx.AddProfile(ctx, "use_a"))
		must(t, tx.Commit(ctx))
		if ok, err := other.Suppressions().ProfileSuppressed(ctx, "use_a"); err != nil || ok {
			t.Errorf("the other prefix sees the suppression: %v, %v", ok, err)
		}
		// Their subject locks do not collide either.
		if s.lockKey("k") == other.lockKey("k") {
			t.Error("two prefixes share a lock key")
		}
	})
}

func TestNewRefuses(t *testing.T) {
	db := &sql.DB{}
	for name, tt := range map[string]struct {
		db   *sql.DB
		d    Dialect
		opts []Option
	}{
		"nil db":               {nil, SQLite, nil},
		"unknown dialect":      {db, Dialect(7), nil},
		"bad prefix":           {db, Postgres, []Option{WithTablePrefix("x; DROP TABLE y")}},
		"long prefix":          {db, Postgres, []Option{WithTablePrefix(strings.Repeat("a", 31))}},
		"bad schema":           {db, Postgres, []Option{WithSchema("Public")}},
		"empty schema":         {db, Postgres, []Option{WithSchema("")}},
		"schema on SQLite":     {db, SQLite, []Option{WithSchema("s")}},
		"nil option":           {db, SQLite, []Option{nil}},
		"prefix digit first":   {db, SQLite, []Option{WithTablePrefix("1x")}},
		"prefix with a dot":    {db, SQLite, []Option{WithTablePrefix("a.b")}},
		"prefix with a quote":  {db, SQLite, []Option{WithTablePrefix(`a"`)}},
		"prefix with a hyphen": {db, SQLite, []Option{WithTablePrefix("a-b")}},
	} {
		if _, err := New(tt.db, tt.d, tt.opts...); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	if _, err := New(db, SQLite, WithTablePrefix("")); err != nil {
		t.Errorf("an empty prefix: %v", err)
	}
}

// pgErr and liteErr stand in for the drivers' error types.
type pgErr string

func (e pgErr) Error() string    { return "pg error " + string(e) }
func (e pgErr) SQLState() string { return string(e) }

type liteErr int

func (e liteErr) Error() string { return fmt.Sprintf("sqlite error %d", int(e)) }
func (e liteErr) Code() int     { return int(e) }

func TestIsRetryable(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("boom"), false},
		{pgErr("40001"), true},
		{fmt.Errorf("wrapped: %w", pgErr("40P01")), true},
		{pgErr("23505"), false},
		{liteErr(5), true},
		{liteErr(517), true}, // SQLITE_BUSY_SNAPSHOT
		{liteErr(6), true},
		{liteErr(19), false},
		{errors.New("database is locked (5) (SQLITE_BUSY)"), true},
		{errors.Join(errors.New("x"), pgErr("40001")), true},
	} {
		if got := IsRetryable(tt.err); got != tt.want {
			t.Errorf("IsRetryable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	if err := retryable(pgErr("40001")); !errors.Is(err, txscope.ErrRetry) {
		t.Errorf("retryable(40001) = %v, want it to match txscope.ErrRetry", err)
	}
	if err := retryable(pgErr("23505")); errors.Is(err, txscope.ErrRetry) {
		t.Errorf("retryable(23505) = %v matches txscope.ErrRetry", err)
	}
}

func TestSplitStatements(t *testing.T) {
	got := splitStatements("-- a comment; with a semicolon\nCREATE TABLE a (x int);\n\nCREATE INDEX i ON a (x);\n-- end\n")
	want := []string{"CREATE TABLE a (x int)", "CREATE INDEX i ON a (x)"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("splitStatements = %q, want %q", got, want)
	}
}
