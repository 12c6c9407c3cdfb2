package sqlstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The migrations are numbered SQL files per dialect, applied in order, each
// recorded in the schema_migrations table once applied. A file's statements
// end with a semicolon at the end of a line; lines starting with -- are
// comments. {p} stands for the schema and table prefix, {n} for the prefix of
// index names.
//
//go:embed migrations
var migrationFiles embed.FS

type migration struct {
	version int
	name    string
	stmts   []string
}

var loadMigrations = sync.OnceValues(func() (map[Dialect][]migration, error) {
	out := map[Dialect][]migration{}
	for d, dir := range map[Dialect]string{Postgres: "migrations/postgres", SQLite: "migrations/sqlite"} {
		entries, err := fs.ReadDir(migrationFiles, dir)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			num, _, ok := strings.Cut(e.Name(), "_")
			v, err := strconv.Atoi(num)
			if !ok || err != nil || v <= 0 || !strings.HasSuffix(e.Name(), ".sql") {
				return nil, fmt.Errorf("sqlstore: migration %s/%s: want NNNN_name.sql", dir, e.Name())
			}
			b, err := migrationFiles.ReadFile(path.Join(dir, e.Name()))
			if err != nil {
				return nil, err
			}
			out[d] = append(out[d], migration{version: v, name: e.Name(), stmts: splitStatements(string(b))})
		}
		slices.SortFunc(out[d], func(a, b migration) int { return a.version - b.version })
	}
	return out, nil
})

// splitStatements splits a migration file into statements.
func splitStatements(text string) []string {
	var b strings.Builder
	for line := range strings.Lines(text) {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			b.WriteString(line)
		}
	}
	var out []string
	for stmt := range strings.SplitSeq(b.String(), ";\n") {
		if stmt = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(stmt), ";")); stmt != "" {
			out = append(out, stmt)
		}
	}
	return out
}

// migrateAttempts bounds how often Migrate runs again after a conflict.
const migrateAttempts = 5

// Migrate creates the tables, or brings them up to date: it applies the
// migrations the schema_migrations table does not record yet, all in one
// transaction. Running it again is a no-op. Processes may migrate one database
// at once: PostgreSQL serialises them on a transaction-level advisory lock,
// SQLite on its write lock (BEGIN IMMEDIATE), and the later one finds the work
// done. A serialization failure or a busy database is retried a few times.
//
// On a Store bound to a caller's transaction (WithTx), Migrate runs in that
// transaction (taking the same lock on PostgreSQL) and does not retry.
func (s *Store) Migrate(ctx context.Context) error {
	all, err := loadMigrations()
	if err != nil {
		return err
	}
	ms := all[s.d]
	if s.ex != nil {
		return s.migrateIn(ctx, s.ex, ms)
	}
	for attempt := 0; ; attempt++ {
		err = s.migrateOnce(ctx, ms)
		if err == nil || !IsRetryable(err) || attempt+1 == migrateAttempts || ctx.Err() != nil {
			return err
		}
		if err := sleep(ctx, backoff(attempt+3)); err != nil {
			return err
		}
	}
}

func (s *Store) migrateOnce(ctx context.Context, ms []migration) error {
	t, err := s.beginTxn(ctx)
	if err != nil {
		return fmt.Errorf("sqlstore: migrate: %w", err)
	}
	if err := s.migrateIn(ctx, t, ms); err != nil {
		t.rollback(ctx)
		return err
	}
	if err := t.commit(ctx); err != nil {
		return fmt.Errorf("sqlstore: migrate: commit: %w", err)
	}
	return nil
}

// migrateLockKey is the advisory lock every Migrate on PostgreSQL takes,
// whatever its schema and prefix: creating a schema concurrently with another
// Store could otherwise collide.
const migrateLockKey = 0x6764707200000001 // "gdpr", then 1

func (s *Store) migrateIn(ctx context.Context, ex Executor, ms []migration) error {
	fail := func(what string, err error) error { return fmt.Errorf("sqlstore: migrate: %s: %w", what, err) }
	if s.d == Postgres {
		if _, err := ex.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrateLockKey)); err != nil {
			return fail("taking the migration lock", err)
		}
		if s.schema != "" {
			if _, err := ex.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+s.schema); err != nil {
				return fail("creating schema "+s.schema, err)
			}
		}
	}
	tsType := "timestamptz"
	if s.d == SQLite {
		tsType = "INTEGER"
	}
	if _, err := ex.ExecContext(ctx, s.sql(`CREATE TABLE IF NOT EXISTS {p}schema_migrations (
		version integer PRIMARY KEY, name text NOT NULL, applied_at `+tsType+` NOT NULL)`)); err != nil {
		return fail("creating the schema_migrations table", err)
	}
	rows, err := ex.QueryContext(ctx, s.sql(`SELECT version FROM {p}schema_migrations`))
	if err != nil {
		return fail("reading the schema_migrations table", err)
	}
	applied := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fail("reading the schema_migrations table", err)
		}
		applied[v] = true
	}
	if err := closeRows(rows); err != nil {
		return fail("reading the schema_migrations table", err)
	}
	names := strings.NewReplacer("{p}", s.qual, "{n}", s.prefix)
	for _, m := range ms {
		if applied[m.version] {
			continue
		}
		for _, stmt := range m.stmts {
			if _, err := ex.ExecContext(ctx, names.Replace(stmt)); err != nil {
				return fail(m.name, err)
			}
		}
		if _, err := ex.ExecContext(ctx, s.sql(`INSERT INTO {p}schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`),
			m.version, m.name, s.ts(time.Now())); err != nil {
			return fail("recording "+m.name, err)
		}
	}
	return nil
}
