package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/suppression"
	"github.com/gdprkit/privacy/txscope"
)

// Dialect is the SQL dialect of the database a Store talks to.
type Dialect int

// The supported dialects.
const (
	// Postgres is PostgreSQL 12 or newer.
	Postgres Dialect = iota + 1
	// SQLite is SQLite 3.35 or newer (for RETURNING and row values).
	SQLite
)

// String returns the dialect's name.
func (d Dialect) String() string {
	switch d {
	case Postgres:
		return "postgres"
	case SQLite:
		return "sqlite"
	}
	return fmt.Sprintf("Dialect(%d)", int(d))
}

// Executor runs SQL statements: *sql.DB, *sql.Tx and *sql.Conn all implement
// it, so the adapter can work on a pool or inside a caller's transaction.
type Executor interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

var (
	_ Executor = (*sql.DB)(nil)
	_ Executor = (*sql.Tx)(nil)
	_ Executor = (*sql.Conn)(nil)
)

// Option configures a Store.
type Option func(*config) error

type config struct {
	schema string
	prefix string
}

// DefaultTablePrefix begins the name of every table the Store creates.
const DefaultTablePrefix = "gdprkit_"

// maxPrefix bounds the table prefix so that every table and index name stays
// within PostgreSQL's 63-byte identifiers.
const maxPrefix = 30

var identPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// WithTablePrefix sets the prefix of every table and index name (default
// DefaultTablePrefix), so that several Stores can share one database or
// schema. It must be empty or lower-case letters, digits and underscores,
// starting with a letter or underscore, at most 30 bytes.
func WithTablePrefix(prefix string) Option {
	return func(c *config) error {
		if prefix != "" && (!identPattern.MatchString(prefix) || len(prefix) > maxPrefix) {
			return fmt.Errorf("sqlstore: table prefix %q: want at most %d of a-z, 0-9 and '_', not starting with a digit", prefix, maxPrefix)
		}
		c.prefix = prefix
		return nil
	}
}

// WithSchema puts the tables in a PostgreSQL schema (default: the first schema
// of the connection's search_path). Migrate creates it when it does not exist.
// The name must be lower-case letters, digits and underscores, starting with a
// letter or underscore. SQLite has no schemas: New refuses the option there.
func WithSchema(schema string) Option {
	return func(c *config) error {
		if !identPattern.MatchString(schema) || len(schema) > 63 {
			return fmt.Errorf("sqlstore: schema %q: want 1 to 63 of a-z, 0-9 and '_', not starting with a digit", schema)
		}
		c.schema = schema
		return nil
	}
}

// Store is the database/sql adapter: one database holds every backend of the
// library, and each accessor (Graph, Profiles, ...) returns a view of it that
// implements that backend's interface. A Store is safe for concurrent use.
type Store struct {
	db *sql.DB
	// ex, when set, is the caller's transaction every statement runs in (see
	// WithTx); db is then nil.
	ex     Executor
	d      Dialect
	schema string
	prefix string
	// qual is what table names begin with: the schema, a dot and the prefix.
	qual string
	// key keeps this Store's shared transaction in a txscope.Scope. A Store
	// bound to a caller's transaction has a key of its own.
	key     *scopeKey
	queries *queryCache // shared by copies
	// notEmpty is set once the suppression list was seen to hold something
	// (shared by copies): from then on IsEmpty answers false at no cost.
	notEmpty *atomic.Bool
	// renewing holds the outbox rows a renewal waits for in the background
	// (shared by copies; see outboxStore.extend).
	renewing *sync.Map
	// sealing holds the keys the profile store seals values with (shared
	// by copies; see sealing.go).
	sealing *sealKeys
}

// queryCache keeps the SQL text of statement templates. Templates with lists
// of parameters vary with the list's length: past maxCached templates, new
// ones are built every time rather than kept.
type queryCache struct {
	m sync.Map // template -> SQL text
	n atomic.Int64
}

const maxCached = 2000

// scopeKey is the private key of a Store's shared transaction in a Scope. It
// has a field so that two of them never share an address.
type scopeKey struct{ _ byte }

// New returns a Store over db, a database of the given dialect, opened with
// the driver of the caller's choice. It does not touch the database: call
// Migrate to create or upgrade the tables.
//
// For SQLite, open the database with a busy timeout (modernc.org/sqlite:
// "_pragma=busy_timeout(5000)") and preferably in WAL mode, so that writers
// from several connections wait for each other instead of failing at once.
func New(db *sql.DB, d Dialect, opts ...Option) (*Store, error) {
	if db == nil {
		return nil, fmt.Errorf("sqlstore: New: nil *sql.DB")
	}
	if d != Postgres && d != SQLite {
		return nil, fmt.Errorf("sqlstore: New: unknown dialect %v: want sqlstore.Postgres or sqlstore.SQLite", d)
	}
	cfg := config{prefix: DefaultTablePrefix}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("sqlstore: New: nil Option")
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.schema != "" && d == SQLite {
		return nil, fmt.Errorf("sqlstore: New: WithSchema(%q): SQLite has no schemas; use WithTablePrefix", cfg.schema)
	}
	s := &Store{db: db, d: d, schema: cfg.schema, prefix: cfg.prefix, key: &scopeKey{}, queries: &queryCache{}, notEmpty: new(atomic.Bool), renewing: new(sync.Map), sealing: new(sealKeys)}
	s.qual = cfg.prefix
	if cfg.schema != "" {
		s.qual = cfg.schema + "." + cfg.prefix
	}
	return s, nil
}

// Dialect returns the Store's dialect.
func (s *Store) Dialect() Dialect { return s.d }

// WithTx returns a view of the Store whose every statement runs in ex, the
// caller's own transaction (a *sql.Tx, or a *sql.Conn on which the caller
// began one), so that the library's writes commit or roll back with the
// caller's. The caller commits or rolls back ex; the view must not be used
// after that.
//
// Inside ex, Begin on a backend opens a SAVEPOINT: the backend transaction's
// Commit releases it and its Rollback rolls back to it, so a backend
// transaction rolled back undoes only its own writes. Backend transactions
// begun with one txscope.Scope share one savepoint, as they share one
// transaction on a Store of its own. Backend transactions begun without a
// Scope are nested savepoints and must end in the reverse order of their
// Begin. Journal.Put and AuditLog.Append run in ex too, so they are durable
// only once the caller commits.
//
// Given a *sql.DB, WithTx returns a Store over that pool, as New does.
func (s *Store) WithTx(ex Executor) *Store {
	c := *s
	c.key = &scopeKey{}
	if db, ok := ex.(*sql.DB); ok {
		c.db, c.ex = db, nil
		return &c
	}
	c.db, c.ex = nil, ex
	return &c
}

// direct returns where statements outside any transaction go.
func (s *Store) direct() Executor {
	if s.ex != nil {
		return s.ex
	}
	return s.db
}

// Casts for parameters whose type PostgreSQL cannot infer (those in a SELECT
// list): SQLite needs none.
var (
	postgresCasts = strings.NewReplacer("{ts}", "::timestamptz", "{json}", "::json", "{bigint}", "::bigint", "{text}", "::text", "{bytes}", "::bytea")
	sqliteCasts   = strings.NewReplacer("{ts}", "", "{json}", "", "{bigint}", "", "{text}", "", "{bytes}", "")
)

// sql returns the SQL text for a statement template: {p} becomes the table
// prefix with its schema, {ts} and the like become PostgreSQL casts, and for
// SQLite the $N placeholders become ?N (numbered parameters, which every
// SQLite driver binds by position).
func (s *Store) sql(tmpl string) string {
	if q, ok := s.queries.m.Load(tmpl); ok {
		return q.(string)
	}
	q := strings.ReplaceAll(tmpl, "{p}", s.qual)
	if s.d == SQLite {
		q = sqliteCasts.Replace(strings.ReplaceAll(q, "$", "?"))
	} else {
		q = postgresCasts.Replace(q)
	}
	if s.queries.n.Load() < maxCached {
		s.queries.n.Add(1)
		s.queries.m.Store(tmpl, q)
	}
	return q
}

// Graph returns the identity graph backend.
func (s *Store) Graph() identity.Graph { return &graphStore{base{s}} }

// Profiles returns the profile store backend.
func (s *Store) Profiles() profile.Store { return &profileStore{base{s}} }

// Audiences returns the audience engine backend.
func (s *Store) Audiences() audience.Store { return &audienceStore{base{s}} }

// Suppressions returns the suppression list backend.
func (s *Store) Suppressions() suppression.List { return &suppressionList{base{s}} }

// Journal returns the request journal backend.
func (s *Store) Journal() journal.Journal { return &journalStore{s} }

// AuditLog returns the audit log backend.
func (s *Store) AuditLog() audit.Log { return &auditLog{s} }

// base is what every participant view has: the Store, scope awareness and
// subject locks.
type base struct{ s *Store }

// JoinsTxScope marks the view as txscope.Aware: its transactions share one
// database transaction per Scope.
func (base) JoinsTxScope() {}

// LockSubjects implements txscope.Locker; see Store.LockSubjects.
func (b base) LockSubjects(ctx context.Context, keys []string) error {
	return b.s.LockSubjects(ctx, keys)
}

// UnlockSubjects releases the subject locks; see Store.UnlockSubjects.
func (b base) UnlockSubjects(ctx context.Context) error { return b.s.UnlockSubjects(ctx) }

var (
	_ txscope.Aware  = (*Store)(nil)
	_ txscope.Locker = (*Store)(nil)
	_ txscope.Aware  = base{}
	_ txscope.Locker = base{}
)

// JoinsTxScope marks the Store as txscope.Aware.
func (s *Store) JoinsTxScope() {}
