package sqlstore_test

// Controllers over the SQL adapter, end to end: two Controllers (two
// processes, as far as the database can tell) sharing one database, and a
// right whose database transaction dies mid-commit.

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/internal/pgxcopy"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/keyring"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/sqlstore"
)

// postgresEnv names the variable holding the DSN of a PostgreSQL database the
// tests may create schemas in.
const postgresEnv = "GDPRKIT_TEST_POSTGRES_DSN"

// testKey keys the Controllers' hashes: the same for every Controller of a
// database, as a deployment keeps it across instances and restarts.
var testKey = []byte("sqlstore controller test key, 32")

// sqliteParams: writers wait for each other (busy timeout), readers do not
// wait for writers (WAL), and database/sql transactions take the write lock
// up front.
const sqliteParams = "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_txlock=immediate"

// testDialects are the dialects the tests and benchmarks run on.
var testDialects = []struct {
	name    string
	dialect sqlstore.Dialect
}{
	{"sqlite", sqlstore.SQLite},
	{"postgres", sqlstore.Postgres},
}

// ---------------------------------------------------------------------------
// Counting what a pool sends to the database.

// counter counts the statements a pool sends to the database, one round trip
// each: pgx sends a statement with its parameters in one round trip once the
// statement is prepared on the connection (the first use on a connection
// costs one more), and modernc.org/sqlite runs in process, where a
// "round trip" is a call into SQLite.
type counter struct {
	execs, queries, begins, commits, rollbacks atomic.Int64
	// loseCommits, while positive, makes that many commits that succeed
	// return an error (counting down; below zero it does nothing).
	loseCommits atomic.Int64

	mu   sync.Mutex
	inTx map[*countConn]bool
	// tracing, when set, keeps the text of every statement in trace.
	tracing atomic.Bool
	trace   []string
	// before, when set, runs before each statement is sent, with its text:
	// a test pauses a process there, between two statements of a method.
	before atomic.Pointer[func(q string)]
}

// note keeps a statement's text when tracing.
func (c *counter) note(q string) {
	if !c.tracing.Load() {
		return
	}
	c.mu.Lock()
	c.trace = append(c.trace, strings.Join(strings.Fields(q), " "))
	c.mu.Unlock()
}

// count counts a statement in n, one of c's counts, and notes its text.
func (c *counter) count(n *atomic.Int64, q string) {
	n.Add(1)
	c.note(q)
	if f := c.before.Load(); f != nil {
		(*f)(q)
	}
}

// sendCounted sends a statement through inner's optional method of interface
// I, with send, after counting it in n. When inner lacks the method it sends
// and counts nothing, and returns driver.ErrSkip (for a connection's, database/sql
// then prepares the statement, and countStmt counts it). The Exec and Query
// methods of countConn and countStmt share it.
func sendCounted[I, R any](c *counter, n *atomic.Int64, q string, inner any, send func(I) (R, error)) (R, error) {
	i, ok := inner.(I)
	if !ok {
		var none R
		return none, driver.ErrSkip
	}
	c.count(n, q)
	return send(i)
}

// startTrace starts keeping statements; stopTrace stops and returns them.
func (c *counter) startTrace() {
	c.mu.Lock()
	c.trace = nil
	c.mu.Unlock()
	c.tracing.Store(true)
}

func (c *counter) stopTrace() []string {
	c.tracing.Store(false)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.trace
}

// counts is a snapshot of a counter.
type counts struct{ Exec, Query, Begin, Commit, Rollback int64 }

func (c *counter) snapshot() counts {
	return counts{c.execs.Load(), c.queries.Load(), c.begins.Load(), c.commits.Load(), c.rollbacks.Load()}
}

func (a counts) sub(b counts) counts {
	return counts{a.Exec - b.Exec, a.Query - b.Query, a.Begin - b.Begin, a.Commit - b.Commit, a.Rollback - b.Rollback}
}

func (a counts) total() int64 { return a.Exec + a.Query + a.Begin + a.Commit + a.Rollback }

func (a counts) String() string {
	return fmt.Sprintf("%d (exec %d, query %d, begin %d, commit %d, rollback %d)", a.total(), a.Exec, a.Query, a.Begin, a.Commit, a.Rollback)
}

// txPIDs returns the PostgreSQL backend pids of the pool's connections that
// are in a database/sql transaction now.
func (c *counter) txPIDs() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int64
	for cc := range c.inTx {
		out = append(out, cc.pid)
	}
	slices.Sort(out)
	return out
}

func (c *counter) setInTx(cc *countConn, in bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inTx == nil {
		c.inTx = map[*countConn]bool{}
	}
	if in {
		c.inTx[cc] = true
	} else {
		delete(c.inTx, cc)
	}
}

// countingConnector opens the driver's connections wrapped so that they
// count. For PostgreSQL it asks each new connection for its backend pid
// (pg_backend_pid()), so that a test can terminate the one holding a
// transaction.
type countingConnector struct {
	inner driver.Connector
	cnt   *counter
	pg    bool
}

// dsnConnector is a driver.Connector for a driver without one.
type dsnConnector struct {
	dsn string
	drv driver.Driver
}

func (d dsnConnector) Connect(context.Context) (driver.Conn, error) { return d.drv.Open(d.dsn) }
func (d dsnConnector) Driver() driver.Driver                        { return d.drv }

// openCounting opens a pool on dsn with the named driver whose every
// statement c counts.
func openCounting(t testing.TB, driverName, dsn string, c *counter) *sql.DB {
	t.Helper()
	probe, err := sql.Open(driverName, dsn)
	if err != nil {
		t.Fatal(err)
	}
	drv := probe.Driver()
	probe.Close()
	var inner driver.Connector = dsnConnector{dsn, drv}
	if dc, ok := drv.(driver.DriverContext); ok {
		if inner, err = dc.OpenConnector(dsn); err != nil {
			t.Fatal(err)
		}
	}
	return sql.OpenDB(&countingConnector{inner: inner, cnt: c, pg: driverName == "pgx"})
}

func (k *countingConnector) Driver() driver.Driver { return k.inner.Driver() }

func (k *countingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := k.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	cc := &countConn{Conn: conn, cnt: k.cnt}
	if k.pg {
		q, ok := conn.(driver.QueryerContext)
		if !ok {
			conn.Close()
			return nil, errors.New("countingConnector: the driver's connection cannot query")
		}
		rows, err := q.QueryContext(ctx, "SELECT pg_backend_pid()", nil)
		if err != nil {
			conn.Close()
			return nil, err
		}
		dest := make([]driver.Value, 1)
		err = rows.Next(dest)
		rows.Close()
		if err != nil {
			conn.Close()
			return nil, err
		}
		switch v := dest[0].(type) {
		case int64:
			cc.pid = v
		case int32:
			cc.pid = int64(v)
		default:
			conn.Close()
			return nil, fmt.Errorf("countingConnector: pg_backend_pid() returned %T", dest[0])
		}
	}
	return cc, nil
}

// countConn is a driver connection that counts its statements.
type countConn struct {
	driver.Conn
	cnt *counter
	pid int64
}

var (
	_ driver.ConnBeginTx        = (*countConn)(nil)
	_ driver.ExecerContext      = (*countConn)(nil)
	_ driver.QueryerContext     = (*countConn)(nil)
	_ driver.ConnPrepareContext = (*countConn)(nil)
	_ driver.Pinger             = (*countConn)(nil)
	_ driver.SessionResetter    = (*countConn)(nil)
	_ driver.Validator          = (*countConn)(nil)
	_ driver.NamedValueChecker  = (*countConn)(nil)
)

func (c *countConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	c.cnt.count(&c.cnt.begins, "BEGIN")
	var tx driver.Tx
	var err error
	if b, ok := c.Conn.(driver.ConnBeginTx); ok {
		tx, err = b.BeginTx(ctx, opts)
	} else {
		//lint:ignore SA1019 the fallback database/sql itself uses for such drivers
		tx, err = c.Conn.Begin()
	}
	if err != nil {
		return nil, err
	}
	c.cnt.setInTx(c, true)
	return &countTx{Tx: tx, c: c}, nil
}

func (c *countConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	return sendCounted(c.cnt, &c.cnt.execs, q, c.Conn, func(e driver.ExecerContext) (driver.Result, error) { return e.ExecContext(ctx, q, args) })
}

func (c *countConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	return sendCounted(c.cnt, &c.cnt.queries, q, c.Conn, func(e driver.QueryerContext) (driver.Rows, error) { return e.QueryContext(ctx, q, args) })
}

// CopyFrom runs a COPY on the driver's connection, counted as a statement
// (sqlstore takes it for a pgxcopy.Conn).
func (c *countConn) CopyFrom(ctx context.Context, q string, r io.Reader) (int64, error) {
	copyFrom := pgxcopy.For(c.Conn)
	if copyFrom == nil {
		return 0, pgxcopy.ErrNoCopy
	}
	c.cnt.count(&c.cnt.execs, q)
	return copyFrom(ctx, q, r)
}

func (c *countConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	var st driver.Stmt
	var err error
	if p, ok := c.Conn.(driver.ConnPrepareContext); ok {
		st, err = p.PrepareContext(ctx, q)
	} else {
		st, err = c.Conn.Prepare(q)
	}
	if err != nil {
		return nil, err
	}
	return &countStmt{Stmt: st, cnt: c.cnt, q: q}, nil
}

func (c *countConn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *countConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *countConn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (c *countConn) CheckNamedValue(nv *driver.NamedValue) error {
	if n, ok := c.Conn.(driver.NamedValueChecker); ok {
		return n.CheckNamedValue(nv)
	}
	return driver.ErrSkip // database/sql's default conversion
}

func (c *countConn) Close() error {
	c.cnt.setInTx(c, false)
	return c.Conn.Close()
}

type countTx struct {
	driver.Tx
	c *countConn
}

func (t *countTx) Commit() error {
	t.ending(&t.c.cnt.commits, "COMMIT")
	err := t.Tx.Commit()
	if err == nil && t.c.cnt.loseCommits.Add(-1) >= 0 {
		// An ambiguous commit: done in the database, an error for the client.
		return errors.New("the test lost the answer to a COMMIT that succeeded")
	}
	return err
}

func (t *countTx) Rollback() error {
	t.ending(&t.c.cnt.rollbacks, "ROLLBACK")
	return t.Tx.Rollback()
}

// ending counts the transaction's end, q, in n, and marks its connection out
// of a transaction.
func (t *countTx) ending(n *atomic.Int64, q string) {
	t.c.cnt.count(n, q)
	t.c.cnt.setInTx(t.c, false)
}

type countStmt struct {
	driver.Stmt
	cnt *counter
	q   string
}

func (s *countStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	return sendCounted(s.cnt, &s.cnt.execs, s.q, s.Stmt, func(e driver.StmtExecContext) (driver.Result, error) { return e.ExecContext(ctx, args) })
}

func (s *countStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return sendCounted(s.cnt, &s.cnt.queries, s.q, s.Stmt, func(q driver.StmtQueryContext) (driver.Rows, error) { return q.QueryContext(ctx, args) })
}

// ---------------------------------------------------------------------------
// Sites and processes.

// site is one database that outlives the processes using it: a PostgreSQL
// schema, or for SQLite a data file and, as the package documentation
// advises, a journal file (journal and audit log) of its own.
type site struct {
	Dialect sqlstore.Dialect
	DSN     string // PostgreSQL
	Schema  string // PostgreSQL
	Dir     string // SQLite: data.db and journal.db
	// Instance, when set, names every process's Controllers
	// (privacy.WithInstance): they are one host, restarted; otherwise each
	// Controller is an instance of its own.
	Instance string

	admin *sql.DB // PostgreSQL: a pool of the test's own, outside any process

	inspMu sync.Mutex
	insp   map[string]*sql.DB
}

// postgresDSN returns the test database's DSN, or skips.
func postgresDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(postgresEnv)
	if dsn == "" {
		t.Skipf("PostgreSQL skipped: set %s to the DSN of a database the tests may create schemas in, such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable", postgresEnv)
	}
	return dsn
}

// newSite creates a migrated database of the dialect, removed when the test
// ends; PostgreSQL skips without a DSN.
func newSite(t testing.TB, d sqlstore.Dialect) *site {
	t.Helper()
	s := &site{Dialect: d}
	if d == sqlstore.Postgres {
		s.DSN = postgresDSN(t)
		admin, err := sql.Open("pgx", s.DSN)
		if err != nil {
			t.Fatal(err)
		}
		admin.SetMaxOpenConns(4)
		t.Cleanup(func() { admin.Close() })
		s.admin = admin
		var b [6]byte
		rand.Read(b[:])
		s.Schema = "gdprkit_ctrl_" + hex.EncodeToString(b[:])
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := admin.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+s.Schema+" CASCADE"); err != nil {
				t.Errorf("dropping schema %s: %v", s.Schema, err)
			}
		})
	} else {
		s.Dir = t.TempDir()
	}
	p := s.open(t)
	must(t, p.data.Migrate(t.Context()))
	if p.jrnl != p.data {
		must(t, p.jrnl.Migrate(t.Context()))
	}
	p.close()
	return s
}

// proc is what one process holds: its own pools on the site, and Stores over
// them.
type proc struct {
	site       *site
	db, jdb    *sql.DB
	data, jrnl *sqlstore.Store
	cnt        *counter
}

// open starts a "process" on the site: new pools (counting their
// statements), new Stores. Closed when the test ends, if not before.
func (s *site) open(t testing.TB) *proc {
	t.Helper()
	p := &proc{site: s, cnt: &counter{}}
	var err error
	if s.Dialect == sqlstore.Postgres {
		p.db = openCounting(t, "pgx", s.DSN, p.cnt)
		p.db.SetMaxOpenConns(12)
		p.jdb = p.db
		if p.data, err = sqlstore.New(p.db, sqlstore.Postgres, sqlstore.WithSchema(s.Schema)); err != nil {
			t.Fatal(err)
		}
		p.jrnl = p.data
	} else {
		p.db = openCounting(t, "sqlite", "file:"+filepath.Join(s.Dir, "data.db")+sqliteParams, p.cnt)
		p.jdb = openCounting(t, "sqlite", "file:"+filepath.Join(s.Dir, "journal.db")+sqliteParams, p.cnt)
		if p.data, err = sqlstore.New(p.db, sqlstore.SQLite); err != nil {
			t.Fatal(err)
		}
		if p.jrnl, err = sqlstore.New(p.jdb, sqlstore.SQLite); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(p.close)
	return p
}

func (p *proc) close() {
	p.db.Close()
	p.jdb.Close()
}

// controller builds a Controller on every backend of the process's Stores;
// profiles, when set, stands in for the profile store; extra options follow.
func (p *proc) controller(t testing.TB, profiles profile.Store, extra ...privacy.Option) *privacy.Controller {
	t.Helper()
	if profiles == nil {
		profiles = p.data.Profiles()
	}
	opts := []privacy.Option{
		privacy.WithIdentity(p.data.Graph()),
		privacy.WithProfiles(profiles),
		privacy.WithAudiences(p.data.Audiences()),
		privacy.WithSuppressions(p.data.Suppressions()),
		privacy.WithJournal(p.jrnl.Journal()),
		privacy.WithAuditLog(p.jrnl.AuditLog()),
		privacy.WithOutbox(p.data.Outbox()),
		privacy.WithKey(testKey),
	}
	if p.site.Instance != "" {
		opts = append(opts, privacy.WithInstance(p.site.Instance))
	}
	opts = append(opts, extra...)
	c, err := privacy.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// table returns the qualified name of one of the adapter's tables.
func (s *site) table(name string) string {
	if s.Schema != "" {
		return s.Schema + "." + sqlstore.DefaultTablePrefix + name
	}
	return sqlstore.DefaultTablePrefix + name
}

// q turns $N placeholders into SQLite's ?N.
func (s *site) q(query string) string {
	if s.Dialect == sqlstore.SQLite {
		return strings.ReplaceAll(query, "$", "?")
	}
	return query
}

// dataTables hold the people's data; the other tables are the machinery
// (suppression list, journal, audit log, migrations, definitions).
var dataTables = []string{"identity_profiles", "identity_links", "identity_merges", "profiles", "profile_traits",
	"profile_messages", "profile_purges", "audience_states", "audience_members", "outbox"}

// inspectors returns a pool per database file of the site, for the test's
// own queries: PostgreSQL's admin pool, or SQLite's two files.
func (s *site) inspectors(t testing.TB) map[string]*sql.DB {
	t.Helper()
	if s.Dialect == sqlstore.Postgres {
		return map[string]*sql.DB{"": s.admin}
	}
	s.inspMu.Lock()
	defer s.inspMu.Unlock()
	if s.insp != nil {
		return s.insp
	}
	s.insp = map[string]*sql.DB{}
	for _, f := range []string{"data.db", "journal.db"} {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(s.Dir, f)+sqliteParams)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		s.insp[f] = db
	}
	return s.insp
}

// dataDB returns a pool of the test's own on the data tables.
func (s *site) dataDB(t testing.TB) *sql.DB {
	if s.admin != nil {
		return s.admin
	}
	return s.inspectors(t)["data.db"]
}

// textColumns lists, per table of the adapter (without the prefix), the
// columns holding text or JSON.
func textColumns(t testing.TB, s *site, db *sql.DB) map[string][]string {
	t.Helper()
	var rows *sql.Rows
	var err error
	if s.Dialect == sqlstore.Postgres {
		rows, err = db.QueryContext(t.Context(), `SELECT table_name, column_name FROM information_schema.columns
			WHERE table_schema = $1 AND data_type IN ('text', 'json', 'jsonb', 'character varying')
			ORDER BY table_name, ordinal_position`, s.Schema)
	} else {
		rows, err = db.QueryContext(t.Context(), `SELECT m.name, c.name FROM sqlite_master m, pragma_table_info(m.name) c
			WHERE m.type = 'table' AND upper(c.type) = 'TEXT' ORDER BY m.name, c.cid`)
	}
	must(t, err)
	out := map[string][]string{}
	for rows.Next() {
		var table, col string
		must(t, rows.Scan(&table, &col))
		if name, ok := strings.CutPrefix(table, sqlstore.DefaultTablePrefix); ok {
			out[name] = append(out[name], col)
		}
	}
	must(t, rows.Err())
	must(t, rows.Close())
	if len(out) < len(dataTables) {
		t.Fatalf("found text columns in %d tables only: %v", len(out), out)
	}
	return out
}

// holders returns the tables (without prefix) with rows holding needle in a
// text or JSON column, and how many rows, across every database file of the
// site.
func (s *site) holders(t testing.TB, needle string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, db := range s.inspectors(t) {
		cols := textColumns(t, s, db)
		for table, cs := range cols {
			var conds []string
			for _, c := range cs {
				if s.Dialect == sqlstore.Postgres {
					conds = append(conds, fmt.Sprintf("strpos(%s::text, $1) > 0", c))
				} else {
					conds = append(conds, fmt.Sprintf("instr(%s, ?1) > 0", c))
				}
			}
			var n int
			must(t, db.QueryRowContext(t.Context(), "SELECT count(*) FROM "+s.table(table)+" WHERE "+strings.Join(conds, " OR "), needle).Scan(&n))
			if n > 0 {
				out[table] += n
			}
		}
	}
	return out
}

// dump returns every row of the data tables, and of the suppression list, as
// sorted text: a snapshot to compare.
func (s *site) dump(t testing.TB) map[string][]string {
	t.Helper()
	db := s.dataDB(t)
	out := map[string][]string{}
	for _, table := range append(slices.Clone(dataTables), "suppressed_identifiers", "suppressed_profiles") {
		rows, err := db.QueryContext(t.Context(), "SELECT * FROM "+s.table(table))
		must(t, err)
		for _, vals := range sqlstore.ScanAll(t, rows) {
			out[table] = append(out[table], fmt.Sprint(vals...))
		}
		sort.Strings(out[table])
	}
	return out
}

// storedMessages returns the message ids the profile store recorded for pid.
func (s *site) storedMessages(t testing.TB, db *sql.DB, pid identity.ProfileID) map[string]bool {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), s.q("SELECT message_id FROM "+s.table("profile_messages")+" WHERE profile_id = $1"), string(pid))
	must(t, err)
	out := map[string]bool{}
	for rows.Next() {
		var id string
		must(t, rows.Scan(&id))
		out[id] = true
	}
	must(t, rows.Err())
	must(t, rows.Close())
	return out
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// ---------------------------------------------------------------------------
// People.

// person is someone the tests collect messages about.
type person struct {
	uid, email string
	anons      [3]string
	pid        identity.ProfileID // the profile seeding created
	fate       string             // "keep", "suppress" (SUPPRESS_WITH_DELETE) or "erase" (DELETE_ONLY)

	mu                   sync.Mutex
	attempts             []attempt
	rightStart, rightEnd time.Time
}

// attempt is one Collect and its outcome.
type attempt struct {
	id         string
	via        string
	start, end time.Time
	err        error
}

func newPerson(tag string, n int, fate string) *person {
	p := &person{uid: fmt.Sprintf("usr-%s-%03d", tag, n), email: fmt.Sprintf("p%03d.%s@example.com", n, tag), fate: fate}
	for i := range p.anons {
		p.anons[i] = fmt.Sprintf("anon-%s-%03d-%d", tag, n, i)
	}
	return p
}

// ids are every identifier the person is known by.
func (p *person) ids() []identity.ID {
	out := []identity.ID{{Type: identity.TypeUserID, Value: p.uid}, {Type: identity.TypeEmail, Value: p.email}}
	for _, a := range p.anons {
		out = append(out, identity.ID{Type: identity.TypeAnonymousID, Value: a})
	}
	return out
}

// values are the person's identifier values, as stored.
func (p *person) values() []string {
	var out []string
	for _, id := range p.ids() {
		out = append(out, id.Value)
	}
	return out
}

func (p *person) record(a attempt) {
	p.mu.Lock()
	p.attempts = append(p.attempts, a)
	p.mu.Unlock()
}

// message returns an identify (one in four) or a track about the person, by
// user id and one of their anonymous ids.
func (p *person) message(r *mrand.Rand, id string) privacy.Message {
	anon := p.anons[r.IntN(len(p.anons))]
	if r.IntN(4) == 0 {
		plan := "free"
		if r.IntN(2) == 0 {
			plan = "pro"
		}
		return privacy.Identify{MessageID: id, UserID: p.uid, AnonymousID: anon,
			Traits: map[string]any{"email": p.email, "plan": plan}, Timestamp: time.Now()}
	}
	return privacy.Track{MessageID: id, UserID: p.uid, AnonymousID: anon, Event: "Viewed",
		Properties: map[string]any{"n": r.IntN(100)}, Timestamp: time.Now()}
}

// seed collects the person's first identify, linking the user id, the email
// and the first anonymous id, and records the profile it created.
func (p *person) seed(t testing.TB, c *privacy.Controller) {
	t.Helper()
	ctx := t.Context()
	id := "seed-" + p.uid
	start := time.Now()
	err := c.Collect(ctx, privacy.Identify{MessageID: id, UserID: p.uid, AnonymousID: p.anons[0],
		Traits: map[string]any{"email": p.email, "plan": "pro"}, Timestamp: start})
	must(t, err)
	p.record(attempt{id: id, via: "seed", start: start, end: time.Now()})
	prof, err := c.Profile(ctx, identity.ID{Type: identity.TypeUserID, Value: p.uid})
	must(t, err)
	p.pid = prof.ID
}

// ---------------------------------------------------------------------------
// Two Controllers, one database.

// TestTwoControllersOneDatabase runs two Controllers, each over a Store of its
// own on its own pool, on one database, as two instances of a service would:
// A collects for everyone without pause while B erases some people
// (SUPPRESS_WITH_DELETE), erases others (DELETE_ONLY) and collects too. Only
// the database's locks stand between them. Afterwards:
//   - the suppressed-and-deleted are gone everywhere (both Controllers' reads,
//     the graph, every row of every table), and every later message about them
//     is refused by both Controllers;
//   - the erased lost what was collected before their erasure and nothing
//     collected after it;
//   - everyone else lost nothing: every Collect that returned nil is stored,
//     and nothing else is.
func TestTwoControllersOneDatabase(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			runTwoControllers(t, newSite(t, d.dialect), 0)
		})
	}
}

// TestTwoControllersCollectBatch is TestTwoControllersOneDatabase with A's
// collectors sending their messages in batches (CollectBatch): a batch holds
// the locks of all its people at once, and must neither resurrect nor lose
// anyone either.
func TestTwoControllersCollectBatch(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			runTwoControllers(t, newSite(t, d.dialect), 12)
		})
	}
}

// runTwoControllers runs the scenario; with batch > 0, A's collectors send
// batches of that many messages.
func runTwoControllers(t *testing.T, s *site, batch int) {
	ctx := t.Context()
	pa, pb := s.open(t), s.open(t)
	a := pa.controller(t, nil)
	must(t, a.DefineAudience(ctx, audience.Definition{Key: "pro", Query: `trait('plan') = 'pro'`}))
	must(t, a.DefineAudience(ctx, audience.Definition{Key: "viewers", Query: `event('Viewed').count() >= 2`}))
	b := pb.controller(t, nil) // after the definitions, which New loads

	var tag [3]byte
	rand.Read(tag[:])
	var people, suppressed, erased []*person
	for i := range 16 {
		fate := "keep"
		switch {
		case i < 4:
			fate = "suppress"
		case i < 8:
			fate = "erase"
		}
		p := newPerson(hex.EncodeToString(tag[:]), i, fate)
		p.seed(t, a)
		people = append(people, p)
		switch fate {
		case "suppress":
			suppressed = append(suppressed, p)
		case "erase":
			erased = append(erased, p)
		}
	}

	// The rights B applies, by any of the person's identifiers; the first
	// request names two people.
	type right struct {
		req    privacy.Request
		people []*person
	}
	uid := func(p *person) identity.ID { return identity.ID{Type: identity.TypeUserID, Value: p.uid} }
	email := func(p *person) identity.ID { return identity.ID{Type: identity.TypeEmail, Value: p.email} }
	anon := func(p *person) identity.ID { return identity.ID{Type: identity.TypeAnonymousID, Value: p.anons[0]} }
	rights := []right{
		{privacy.Request{Type: privacy.SuppressWithDelete, Subjects: []identity.ID{email(suppressed[0]), uid(suppressed[1])}}, suppressed[:2]},
		{privacy.Request{Type: privacy.DeleteOnly, Subjects: []identity.ID{email(erased[0])}}, erased[:1]},
		{privacy.Request{Type: privacy.SuppressWithDelete, Subjects: []identity.ID{anon(suppressed[2])}}, suppressed[2:3]},
		{privacy.Request{Type: privacy.DeleteOnly, Subjects: []identity.ID{uid(erased[1])}}, erased[1:2]},
		{privacy.Request{Type: privacy.DeleteOnly, Subjects: []identity.ID{anon(erased[2])}}, erased[2:3]},
		{privacy.Request{Type: privacy.SuppressWithDelete, Subjects: []identity.ID{uid(suppressed[3])}}, suppressed[3:4]},
		{privacy.Request{Type: privacy.DeleteOnly, Subjects: []identity.ID{email(erased[3])}}, erased[3:4]},
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	// collectBatch sends a batch about random people (a person may appear
	// more than once) and records each message's outcome.
	collectBatch := func(ctx context.Context, c *privacy.Controller, r *mrand.Rand, via string, n int) {
		who := make([]*person, batch)
		ids := make([]string, batch)
		msgs := make([]privacy.Message, batch)
		for j := range msgs {
			who[j] = people[r.IntN(len(people))]
			ids[j] = fmt.Sprintf("%s-%s-%06d-%02d", via, who[j].uid, n, j)
			msgs[j] = who[j].message(r, ids[j])
		}
		start := time.Now()
		err := c.CollectBatch(ctx, msgs)
		end := time.Now()
		var be *privacy.BatchError
		if err != nil && !errors.As(err, &be) {
			t.Errorf("CollectBatch = %v, want nil or a *BatchError", err)
			return
		}
		for j, p := range who {
			var err error
			if be != nil {
				err = be.Errs[j]
			}
			p.record(attempt{id: ids[j], via: via, start: start, end: end, err: err})
		}
	}
	collector := func(c *privacy.Controller, via string, seed uint64, pace time.Duration) {
		defer wg.Done()
		r := mrand.New(mrand.NewPCG(seed, 42))
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			if batch > 0 && c == a {
				collectBatch(ctx, c, r, via, n)
				continue
			}
			p := people[r.IntN(len(people))]
			id := fmt.Sprintf("%s-%s-%06d", via, p.uid, n)
			m := p.message(r, id)
			start := time.Now()
			err := c.Collect(ctx, m)
			p.record(attempt{id: id, via: via, start: start, end: time.Now(), err: err})
			if pace > 0 {
				time.Sleep(pace)
			}
		}
	}
	for g := range 4 {
		wg.Add(1)
		go collector(a, fmt.Sprintf("A%d", g), uint64(g), 0)
	}
	wg.Add(1)
	go collector(b, "B0", 99, time.Millisecond)

	var rightsWG sync.WaitGroup
	rightsWG.Add(1)
	go func() {
		defer rightsWG.Done()
		defer close(stop)
		time.Sleep(200 * time.Millisecond)
		for i, rt := range rights {
			time.Sleep(time.Duration(20+mrand.IntN(80)) * time.Millisecond)
			start := time.Now()
			r, err := b.Apply(ctx, rt.req)
			end := time.Now()
			for _, p := range rt.people {
				p.mu.Lock()
				p.rightStart, p.rightEnd = start, end
				p.mu.Unlock()
			}
			if err != nil || r == nil || r.Status != privacy.Finished {
				t.Errorf("right %d (%s) by B = %+v, %v; want FINISHED", i, rt.req.Type, r, err)
			}
		}
		time.Sleep(300 * time.Millisecond) // collection goes on after the last right
	}()
	rightsWG.Wait()
	wg.Wait()

	// What the collectors saw.
	var okA, suppA, total int
	for _, p := range people {
		for _, at := range p.attempts {
			total++
			switch {
			case at.err == nil:
				if at.via != "B0" {
					okA++
				}
			case errors.Is(at.err, privacy.ErrSuppressed):
				if at.via != "B0" {
					suppA++
				}
				if p.fate != "suppress" {
					t.Errorf("Collect %s about %s (%s) = %v: refused, but the person never objected", at.id, p.uid, p.fate, at.err)
				} else if at.end.Before(p.rightStart) {
					t.Errorf("Collect %s about %s was refused before the person objected", at.id, p.uid)
				}
			default:
				t.Errorf("Collect %s about %s (%s) via %s = %v", at.id, p.uid, p.fate, at.via, at.err)
			}
			if p.fate == "suppress" && at.start.After(p.rightEnd) && !errors.Is(at.err, privacy.ErrSuppressed) {
				t.Errorf("Collect %s about %s, begun after SUPPRESS_WITH_DELETE finished = %v; want ErrSuppressed", at.id, p.uid, at.err)
			}
		}
	}
	t.Logf("%d messages collected while %d rights were applied (%d stored through A, %d refused by A)", total, len(rights), okA, suppA)
	if st := a.Stats(); int(st.Collected) != okA || int(st.Suppressed) != suppA || st.Duplicates != 0 {
		t.Errorf("A.Stats() = %+v; want %d collected (with the seeds), %d suppressed, no duplicates", st, okA, suppA)
	}

	dataDB := s.dataDB(t)
	for _, p := range people {
		switch p.fate {
		case "keep":
			// Nothing lost, nothing invented: the profile holds exactly the
			// messages whose Collect returned nil.
			for _, id := range p.ids() {
				got, err := pb.data.Graph().Lookup(ctx, id)
				if err == nil && got != p.pid {
					t.Errorf("%v resolves to %s, want %s", id, got, p.pid)
				}
			}
			want := map[string]bool{}
			for _, at := range p.attempts {
				if at.err == nil {
					want[at.id] = true
				}
			}
			got := s.storedMessages(t, dataDB, p.pid)
			if missing, extra := setDiff(want, got), setDiff(got, want); len(missing) > 0 || len(extra) > 0 {
				t.Errorf("%s: %d collected, %d stored; lost %v, unexpected %v", p.uid, len(want), len(got), missing, extra)
			}
		case "erase":
			if h := dataHolders(s.holders(t, string(p.pid))); len(h) > 0 {
				t.Errorf("%s: the erased profile %s is still in %v", p.uid, p.pid, h)
			}
			var got map[string]bool
			switch pid, err := pa.data.Graph().Lookup(ctx, identity.ID{Type: identity.TypeUserID, Value: p.uid}); {
			case err == nil:
				if pid == p.pid {
					t.Errorf("%s still resolves to the erased profile", p.uid)
				}
				got = s.storedMessages(t, dataDB, pid)
			case errors.Is(err, identity.ErrNotFound):
				got = map[string]bool{}
			default:
				t.Fatal(err)
			}
			for _, at := range p.attempts {
				switch {
				case at.err != nil:
					if got[at.id] {
						t.Errorf("%s: message %s is stored, but its Collect failed: %v", p.uid, at.id, at.err)
					}
				case at.end.Before(p.rightStart) && got[at.id]:
					t.Errorf("%s: message %s, collected before the erasure, survived it", p.uid, at.id)
				case at.start.After(p.rightEnd) && !got[at.id]:
					t.Errorf("%s: message %s, collected after the erasure, was lost", p.uid, at.id)
				}
				delete(got, at.id)
			}
			if len(got) > 0 {
				t.Errorf("%s: stored messages nobody collected: %v", p.uid, got)
			}
		case "suppress":
			checkGone(t, s, []*privacy.Controller{a, b}, []*proc{pa, pb}, p)
		}
	}

	// Every later message about the suppressed is refused, through either
	// Controller, by any of their identifiers, and stores nothing.
	for _, p := range suppressed {
		for i, c := range []*privacy.Controller{a, b} {
			late := func(j int) string { return fmt.Sprintf("late-%c-%s-%d", 'A'+i, p.uid, j) }
			for _, m := range []privacy.Message{
				privacy.Track{MessageID: late(0), UserID: p.uid, Event: "Viewed", Timestamp: time.Now()},
				privacy.Track{MessageID: late(1), AnonymousID: p.anons[0], Event: "Viewed", Timestamp: time.Now()},
				privacy.Identify{MessageID: late(2), AnonymousID: "new-device-" + p.uid,
					Traits: map[string]any{"email": p.email}, Timestamp: time.Now()},
			} {
				if err := c.Collect(ctx, m); !errors.Is(err, privacy.ErrSuppressed) {
					t.Errorf("Controller %c: a later message about %s (%T) = %v; want ErrSuppressed", 'A'+i, p.uid, m, err)
				}
			}
		}
		if h := s.holders(t, p.uid); len(h) > 0 {
			t.Errorf("%s is in %v after the refused messages", p.uid, h)
		}
	}

	for i, c := range []*privacy.Controller{a, b} {
		if n, err := c.VerifyAudit(ctx); err != nil || n == 0 {
			t.Errorf("Controller %c: VerifyAudit = %d, %v", 'A'+i, n, err)
		}
	}
}

// checkGone checks that nothing is left of p: no profile through any
// Controller, no identifier in any graph, no row of a data table for the
// profile, and no identifier in clear in any table at all.
func checkGone(t *testing.T, s *site, cs []*privacy.Controller, ps []*proc, p *person) {
	t.Helper()
	ctx := t.Context()
	for i, c := range cs {
		for _, id := range p.ids() {
			if prof, err := c.Profile(ctx, id); !errors.Is(err, privacy.ErrNotFound) {
				t.Errorf("Controller %c: Profile(%v) = %v, %v; want ErrNotFound", 'A'+i, id, prof, err)
			}
		}
	}
	for _, pr := range ps {
		for _, id := range p.ids() {
			if pid, err := pr.data.Graph().Lookup(ctx, id); !errors.Is(err, identity.ErrNotFound) {
				t.Errorf("the graph resolves %v to %q, %v; want identity.ErrNotFound", id, pid, err)
			}
		}
	}
	if h := dataHolders(s.holders(t, string(p.pid))); len(h) > 0 {
		t.Errorf("%s: the deleted profile %s is still in %v", p.uid, p.pid, h)
	}
	for _, v := range p.values() {
		if h := s.holders(t, v); len(h) > 0 {
			t.Errorf("%s: the identifier %q is still stored in clear, in %v", p.uid, v, h)
		}
	}
}

// dataHolders keeps the data tables of holders' answer.
func dataHolders(h map[string]int) map[string]int {
	out := map[string]int{}
	for _, table := range dataTables {
		if n := h[table]; n > 0 {
			out[table] = n
		}
	}
	return out
}

// setDiff returns the keys of a not in b, sorted.
func setDiff(a, b map[string]bool) []string {
	var out []string
	for k := range a {
		if !b[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// ---------------------------------------------------------------------------
// A right's transaction killed mid-way.

// faultProfiles wraps a profile store: its transactions run the armed hooks
// at Delete and at Commit, before passing the call on.
type faultProfiles struct {
	sealingStore
	onDelete, onCommit atomic.Pointer[func(context.Context) error]
}

func (f *faultProfiles) Begin(ctx context.Context) (profile.Tx, error) {
	tx, err := f.sealingStore.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &faultTx{Tx: tx, f: f}, nil
}

type faultTx struct {
	profile.Tx
	f *faultProfiles
}

func (t *faultTx) Delete(ctx context.Context, pid identity.ProfileID) error {
	if h := t.f.onDelete.Load(); h != nil {
		if err := (*h)(ctx); err != nil {
			return err
		}
	}
	return t.Tx.Delete(ctx, pid)
}

func (t *faultTx) Commit(ctx context.Context) error {
	if h := t.f.onCommit.Load(); h != nil {
		if err := (*h)(ctx); err != nil {
			return err
		}
	}
	return t.Tx.Commit(ctx)
}

// openFaulty opens a process on the site whose Controller's profile store is
// a faultProfiles, for the crash tests to hook failures into.
func (s *site) openFaulty(t testing.TB) (*proc, *faultProfiles, *privacy.Controller) {
	t.Helper()
	p := s.open(t)
	fp := &faultProfiles{sealingStore: profilesOf(p.data)}
	return p, fp, p.controller(t, fp)
}

// decided reports whether the journal holds exactly one unfinished request,
// and it decided: the moment after step 4's decision record.
func decided(p *proc) (bool, error) {
	un, err := p.jrnl.Journal().Unfinished(context.Background())
	if err != nil {
		return false, err
	}
	return len(un) == 1 && un[0].Decided, nil
}

// terminateTx terminates the PostgreSQL backend of the one connection of p's
// pool that is in a transaction (the shared transaction of the operation under
// way), and waits until it is gone.
func terminateTx(s *site, p *proc) error {
	pids := p.cnt.txPIDs()
	if len(pids) != 1 {
		return fmt.Errorf("want one connection in a transaction, found backends %v", pids)
	}
	var ok bool
	if err := s.admin.QueryRow("SELECT pg_terminate_backend($1, 5000)", pids[0]).Scan(&ok); err != nil || !ok {
		return fmt.Errorf("pg_terminate_backend(%d) = %v, %v", pids[0], ok, err)
	}
	return nil
}

// seedCrash collects two people through a Controller of its own: ada, whom
// the right is about (an identify and 20 tracks), and bob, who must lose
// nothing (an identify and 5 tracks). The audience "pro" holds both.
func seedCrash(t *testing.T, s *site) (ada, bob *person) {
	t.Helper()
	// The processes of a crash test are one host, restarted: the one that
	// recovers takes over at once what the one that died had claimed.
	s.Instance = "crash-host"
	ctx := t.Context()
	p := s.open(t)
	defer p.close()
	c := p.controller(t, nil)
	defer c.Close()
	must(t, c.DefineAudience(ctx, audience.Definition{Key: "pro", Query: `trait('plan') = 'pro'`}))
	var tag [3]byte
	rand.Read(tag[:])
	ada, bob = newPerson(hex.EncodeToString(tag[:]), 0, "erase"), newPerson(hex.EncodeToString(tag[:]), 1, "keep")
	for _, x := range []struct {
		p *person
		n int
	}{{ada, 20}, {bob, 5}} {
		x.p.seed(t, c)
		for i := range x.n {
			id := fmt.Sprintf("t-%s-%d", x.p.uid, i)
			start := time.Now()
			must(t, c.Collect(ctx, privacy.Track{MessageID: id, UserID: x.p.uid, AnonymousID: x.p.anons[i%3], Event: "Viewed",
				Properties: map[string]any{"i": i}, Timestamp: start}))
			x.p.record(attempt{id: id, via: "seed", start: start, end: time.Now()})
		}
	}
	if m, err := c.Members(ctx, "pro"); err != nil || len(m) != 2 {
		t.Fatalf("members of pro = %v, %v; want ada and bob", m, err)
	}
	return ada, bob
}

// checkIntact checks that p's profile is as collected: found through c, and
// holding every message collected, and nothing else.
func checkIntact(t *testing.T, s *site, c *privacy.Controller, p *person) {
	t.Helper()
	prof, err := c.Profile(t.Context(), identity.ID{Type: identity.TypeUserID, Value: p.uid})
	if err != nil || prof.ID != p.pid {
		t.Fatalf("Profile(%s) = %v, %v; want profile %s", p.uid, prof, err, p.pid)
	}
	want := map[string]bool{}
	for _, at := range p.attempts {
		if at.err == nil {
			want[at.id] = true
		}
	}
	got := s.storedMessages(t, s.dataDB(t), p.pid)
	if missing, extra := setDiff(want, got), setDiff(got, want); len(missing) > 0 || len(extra) > 0 {
		t.Errorf("%s: lost %v, unexpected %v", p.uid, missing, extra)
	}
}

func userID(p *person) identity.ID { return identity.ID{Type: identity.TypeUserID, Value: p.uid} }

// TestCrashMidRight kills the database transaction of an erasure after its
// decision is journaled, and shows that the erasure still completes: by the
// Controller's own retries when the database comes back, or by a new
// process's Recover when it does not, or when the process itself died at the
// commit. Killed before the decision, the request fails and changes nothing.
func TestCrashMidRight(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			if d.dialect == sqlstore.Postgres {
				t.Run("terminated_once", func(t *testing.T) { crashTerminated(t, false) })
				t.Run("terminated_every_attempt", func(t *testing.T) { crashTerminated(t, true) })
			}
			t.Run("process_exits", func(t *testing.T) { crashProcessExits(t, d.dialect) })
			t.Run("process_exits_then_merge", func(t *testing.T) { crashThenMerge(t, d.dialect) })
			t.Run("fails_at_staging", func(t *testing.T) { crashAtStaging(t, d.dialect) })
		})
	}
}

// crashTerminated: pg_terminate_backend on the connection holding the shared
// transaction, at the profile store's Commit after the decision; once, or at
// every attempt the Controller makes.
func crashTerminated(t *testing.T, always bool) {
	s := newSite(t, sqlstore.Postgres)
	ctx := t.Context()
	ada, bob := seedCrash(t, s)
	p, fp, c := s.openFaulty(t)

	var kills int
	var hookErr error
	kill := func(context.Context) error {
		if (kills > 0 && !always) || hookErr != nil {
			return nil
		}
		if ok, err := decided(p); err != nil || !ok {
			hookErr = fmt.Errorf("the commit came before the decision was journaled (%v)", err)
			return nil
		}
		if hookErr = terminateTx(s, p); hookErr == nil {
			kills++
		}
		return nil
	}
	fp.onCommit.Store(&kill)
	r, err := c.Erase(ctx, userID(ada))
	fp.onCommit.Store(nil)
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	if !always {
		// The database is back: the Controller redoes the decided request in
		// a new transaction and finishes it.
		if err != nil || kills != 1 || r.Status != privacy.Finished {
			t.Fatalf("Erase with its transaction terminated once at commit = %+v, %v (%d terminated); want FINISHED", r, err, kills)
		}
		checkGone(t, s, []*privacy.Controller{c}, []*proc{p}, ada)
		checkIntact(t, s, c, bob)
		if n, err := s.open(t).controller(t, nil).Recover(ctx); n != 0 || err != nil {
			t.Errorf("Recover after the request finished = %d, %v; want 0, nil", n, err)
		}
		return
	}
	if err == nil || r == nil || r.Status != privacy.Running || kills < 2 {
		t.Fatalf("Erase with its transaction terminated at every commit = %+v, %v (%d terminated); want an error, RUNNING, retries", r, err, kills)
	}
	t.Logf("Erase after %d terminated commits: %v", kills, err)
	c.Close()
	p.close()

	// A new process, over fresh pools, completes it.
	p2 := s.open(t)
	c2 := p2.controller(t, nil)
	if n, err := c2.Recover(ctx); n != 1 || err != nil {
		t.Fatalf("Recover = %d, %v; want 1, nil", n, err)
	}
	if r, err := c2.Status(ctx, r.ID); err != nil || r.Status != privacy.Finished {
		t.Fatalf("Status after Recover = %+v, %v; want FINISHED", r, err)
	}
	checkGone(t, s, []*privacy.Controller{c2}, []*proc{p2}, ada)
	checkIntact(t, s, c2, bob)
	if n, err := s.open(t).controller(t, nil).Recover(ctx); n != 0 || err != nil {
		t.Errorf("a second Recover = %d, %v; want 0, nil", n, err)
	}
}

// crashExitCode is how the child process of crashProcessExits dies at the
// commit; one more says it got there before the decision.
const crashExitCode = 75

// crashProcessExits runs the erasure in a child process that exits (os.Exit:
// no deferred call, no rollback sent; the database sees the connection drop,
// or SQLite a write transaction never committed) at the profile store's
// Commit after the decision. A new process's Recover finishes it.
func crashProcessExits(t *testing.T, d sqlstore.Dialect) {
	s := newSite(t, d)
	ctx := t.Context()
	ada, bob := seedCrash(t, s)
	eraseInDyingChild(t, s, ada)

	p := s.open(t)
	un, err := p.jrnl.Journal().Unfinished(ctx)
	must(t, err)
	if len(un) != 1 || !un[0].Decided || un[0].Type != privacy.DeleteOnly {
		t.Fatalf("after the crash the journal shows %d unfinished requests (%+v); want the decided erasure", len(un), un)
	}
	c := p.controller(t, nil)
	// The commit never happened: ada is all there until the request is
	// recovered.
	checkIntact(t, s, c, ada)
	if n, err := c.Recover(ctx); n != 1 || err != nil {
		t.Fatalf("Recover = %d, %v; want 1, nil", n, err)
	}
	if r, err := c.Status(ctx, un[0].ID); err != nil || r.Status != privacy.Finished {
		t.Fatalf("Status after Recover = %+v, %v; want FINISHED", r, err)
	}
	checkGone(t, s, []*privacy.Controller{c}, []*proc{p}, ada)
	checkIntact(t, s, c, bob)
}

// eraseInDyingChild runs the erasure of p in a child process that dies at the
// profile store's commit, after the decision.
func eraseInDyingChild(t *testing.T, s *site, p *person) {
	t.Helper()
	runCrashingChild(t, s, "TestCrashMidRightChild", "GDPRKIT_CRASH_CHILD", "at the commit", "GDPRKIT_CRASH_SUBJECT="+p.uid)
}

// childSite is the site a crashing child runs on, which runCrashingChild
// passed in siteVar; the test is skipped, saying why, when it was not
// started as a child.
func childSite(t *testing.T, siteVar, why string) *site {
	t.Helper()
	cfg := os.Getenv(siteVar)
	if cfg == "" {
		t.Skip(why)
	}
	s := &site{}
	must(t, json.Unmarshal([]byte(cfg), s))
	return s
}

// runCrashingChild runs the test named child in a new process of this test
// binary, given the site (as JSON) in the environment variable siteVar and
// env besides, and fails unless the process dies (os.Exit(crashExitCode))
// at the point where names.
func runCrashingChild(t *testing.T, s *site, child, siteVar, where string, env ...string) {
	t.Helper()
	cfg, err := json.Marshal(s)
	must(t, err)
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^"+child+"$", "-test.count=1", "-test.v")
	cmd.Env = append(append(os.Environ(), siteVar+"="+string(cfg)), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != crashExitCode {
		t.Fatalf("the child process = %v; want it to exit with %d %s:\n%s", err, crashExitCode, where, out)
	}
}

// crashThenMerge: the erasure's process dies after the decision; before the
// host recovers it, a message merges the person's profile into an older one.
// Recover erases the person as they are now: the older profile too, with
// everything merged into it. (Recover used to replay the profile ids the
// decision named, gone with the merge, and report FINISHED.)
func crashThenMerge(t *testing.T, d sqlstore.Dialect) {
	s := newSite(t, d)
	ctx := t.Context()
	var tag [3]byte
	rand.Read(tag[:])
	device := "old-device-" + hex.EncodeToString(tag[:])
	first := s.open(t)
	must(t, first.controller(t, nil).Collect(ctx, privacy.Track{MessageID: "old", AnonymousID: device, Event: "Seen", Timestamp: time.Now()}))
	first.close()
	ada, bob := seedCrash(t, s)
	eraseInDyingChild(t, s, ada)

	p := s.open(t)
	c := p.controller(t, nil)
	must(t, c.Collect(ctx, privacy.Identify{MessageID: "merge", UserID: ada.uid, AnonymousID: device,
		Traits: map[string]any{"city": "Paris"}, Timestamp: time.Now()}))
	merged, err := c.Profile(ctx, identity.ID{Type: identity.TypeAnonymousID, Value: device})
	must(t, err)
	if merged.ID == ada.pid {
		t.Fatalf("the older device's profile is ada's own %s: the merge did not move her", ada.pid)
	}
	un, err := p.jrnl.Journal().Unfinished(ctx)
	must(t, err)
	if n, err := c.Recover(ctx); n != 1 || err != nil {
		t.Fatalf("Recover = %d, %v; want 1, nil", n, err)
	}
	if r, err := c.Status(ctx, un[0].ID); err != nil || r.Status != privacy.Finished {
		t.Fatalf("Status after Recover = %+v, %v; want FINISHED", r, err)
	}
	checkGone(t, s, []*privacy.Controller{c}, []*proc{p}, ada)
	if prof, err := c.Profile(ctx, identity.ID{Type: identity.TypeAnonymousID, Value: device}); !errors.Is(err, privacy.ErrNotFound) {
		t.Errorf("the profile ada was merged into = %+v, %v; want it erased", prof, err)
	}
	checkIntact(t, s, c, bob)
}

// TestCrashMidRightChild is the process crashProcessExits starts: it erases
// the subject and dies at the commit after the decision.
func TestCrashMidRightChild(t *testing.T) {
	s := childSite(t, "GDPRKIT_CRASH_CHILD", "the process TestCrashMidRight starts, and crashes")
	p, fp, c := s.openFaulty(t)
	die := func(context.Context) error {
		if ok, err := decided(p); err != nil || !ok {
			fmt.Fprintln(os.Stderr, "the commit came before the decision was journaled:", err)
			os.Exit(crashExitCode + 1)
		}
		os.Exit(crashExitCode)
		return nil
	}
	fp.onCommit.Store(&die)
	r, err := c.Erase(t.Context(), identity.ID{Type: identity.TypeUserID, Value: os.Getenv("GDPRKIT_CRASH_SUBJECT")})
	t.Fatalf("Erase = %+v, %v; the process should have died at the commit", r, err)
}

// errInjected is the failure crashAtStaging injects.
var errInjected = errors.New("injected failure while staging")

// crashAtStaging fails a SUPPRESS_WITH_DELETE while its participants stage,
// before the decision: on PostgreSQL by terminating the connection of the
// shared transaction, on SQLite with an error. The request is FAILED and
// nothing changed, not even the suppression list.
func crashAtStaging(t *testing.T, d sqlstore.Dialect) {
	s := newSite(t, d)
	ctx := t.Context()
	ada, bob := seedCrash(t, s)
	before := s.dump(t)
	p, fp, c := s.openFaulty(t)
	var fired int
	var hookErr error
	fail := func(context.Context) error {
		fired++
		if d == sqlstore.Postgres {
			hookErr = terminateTx(s, p)
			return nil // the Delete then runs on a dead connection
		}
		return errInjected
	}
	fp.onDelete.Store(&fail)
	r, err := c.Apply(ctx, privacy.Request{Type: privacy.SuppressWithDelete, Subjects: []identity.ID{userID(ada)}})
	fp.onDelete.Store(nil)
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	if fired == 0 || err == nil || r == nil || r.Status != privacy.Failed {
		t.Fatalf("SUPPRESS_WITH_DELETE failing at staging = %+v, %v (hook fired %d times); want an error and FAILED", r, err, fired)
	}
	t.Logf("failed at staging: %v", err)
	if e, err := p.jrnl.Journal().Get(ctx, r.ID); err != nil || e.Decided || e.Status != privacy.Failed {
		t.Fatalf("journal entry = %+v, %v; want FAILED, undecided", e, err)
	}
	after := s.dump(t)
	for _, table := range slices.Sorted(func(yield func(string) bool) {
		for k := range before {
			if !yield(k) {
				return
			}
		}
	}) {
		if !slices.Equal(before[table], after[table]) {
			t.Errorf("%s changed by a request that failed before its decision:\nbefore %q\nafter  %q", table, before[table], after[table])
		}
	}
	p2 := s.open(t)
	c2 := p2.controller(t, nil)
	checkIntact(t, s, c2, ada)
	checkIntact(t, s, c2, bob)
	if n, err := c2.Recover(ctx); n != 0 || err != nil {
		t.Errorf("Recover after a failed request = %d, %v; want 0, nil", n, err)
	}
	// Not suppressed: ada is collected again.
	if err := c2.Collect(ctx, privacy.Track{UserID: ada.uid, Event: "Viewed", Timestamp: time.Now()}); err != nil {
		t.Errorf("Collect about ada after the failed request = %v; want nil", err)
	}
}

// TestTwoControllersAuditTrail applies rights through two Controllers on one
// database at once: every request must leave its received, decided and
// finished records in the shared audit log, and the chain must verify.
func TestTwoControllersAuditTrail(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	ctx := t.Context()
	pa, pb := s.open(t), s.open(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var requests []string
	for i, c := range []*privacy.Controller{pa.controller(t, nil), pb.controller(t, nil)} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 15 {
				r, err := c.Suppress(ctx, identity.ID{Type: identity.TypeUserID, Value: fmt.Sprintf("audit-%d-%d", i, j)})
				if err != nil || r.Status != privacy.Finished {
					t.Errorf("Suppress = %+v, %v", r, err)
					continue
				}
				mu.Lock()
				requests = append(requests, r.ID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	recs, err := pa.jrnl.AuditLog().Records(ctx, 0, 0)
	must(t, err)
	actions := map[string][]string{}
	for _, r := range recs {
		actions[r.RequestID] = append(actions[r.RequestID], r.Action)
	}
	for _, id := range requests {
		if got := actions[id]; !slices.Equal(got, []string{"received", "decided", "finished"}) {
			t.Errorf("request %s: audit records %q; want received, decided, finished", id, got)
		}
	}
	if n, err := pa.controller(t, nil).VerifyAudit(ctx); err != nil || n != len(recs) {
		t.Errorf("VerifyAudit = %d, %v; want %d, nil", n, err, len(recs))
	}
}

// hookProfiles wraps a profile store: Get runs the armed hook after reading.
type hookProfiles struct {
	sealingStore
	onGet atomic.Pointer[func(identity.ProfileID)]
}

func (h *hookProfiles) Get(ctx context.Context, pid identity.ProfileID) (*profile.Profile, error) {
	p, err := h.sealingStore.Get(ctx, pid)
	if hook := h.onGet.Load(); hook != nil {
		(*hook)(pid)
	}
	return p, err
}

// TestAudiencesRacingAnErasure: process A computes the members of a new
// audience (the path Refresh takes too) while process B erases a person A is
// evaluating. Whichever order they take, the erased person keeps no audience
// state and is no member. (A used to read the profile, let B erase it, then
// write the person's audience rows back.)
func TestAudiencesRacingAnErasure(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			s := newSite(t, d.dialect)
			ctx := t.Context()
			pa, pb := s.open(t), s.open(t)
			hp := &hookProfiles{sealingStore: profilesOf(pa.data)}
			a, b := pa.controller(t, hp), pb.controller(t, nil)
			ts := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			for _, u := range []string{"ada", "bob"} {
				must(t, b.Collect(ctx, privacy.Identify{UserID: u, Traits: map[string]any{"plan": "pro"}, Timestamp: ts}))
			}
			ada, err := b.Profile(ctx, identity.ID{Type: identity.TypeUserID, Value: "ada"})
			must(t, err)
			// Once A has read ada's profile, B erases her: B is given two
			// seconds to finish before A goes on (it cannot, while A holds
			// ada's locks).
			erased := make(chan error, 1)
			var once sync.Once
			hook := func(pid identity.ProfileID) {
				if pid != ada.ID {
					return
				}
				once.Do(func() {
					done := make(chan error, 1)
					go func() {
						_, err := b.Erase(context.Background(), identity.ID{Type: identity.TypeUserID, Value: "ada"})
						done <- err
					}()
					select {
					case err := <-done:
						erased <- err
					case <-time.After(2 * time.Second):
						go func() { erased <- <-done }()
					}
				})
			}
			hp.onGet.Store(&hook)
			must(t, a.DefineAudience(ctx, audience.Definition{Key: "pro", Query: `trait('plan') = 'pro'`}))
			hp.onGet.Store(nil)
			if err := <-erased; err != nil {
				t.Fatalf("B's erasure: %v", err)
			}
			members, err := pb.data.Audiences().Members(ctx, "pro", "", 0)
			must(t, err)
			if slices.Contains(members, ada.ID) {
				t.Errorf("the erased person is a member of pro: %v", members)
			}
			if st, err := pb.data.Audiences().State(ctx, ada.ID); !errors.Is(err, audience.ErrNotFound) {
				t.Errorf("the erased person's audience state = %+v, %v; want ErrNotFound", st, err)
			}
			if len(members) != 1 {
				t.Errorf("members of pro = %v; want bob", members)
			}
		})
	}
}

// TestRenewalNeverStallsARightOnSQLite: on SQLite with the journal in the
// same Store, as the package documentation shows, a right holds the write
// lock in its scope's transaction from its lock step to its commit, and
// journals its decision inside that transaction, under the request's claim.
// A renewal of that claim writes the journal outside any scope, so it waits
// for the right's transaction: it must not hold the claim while it does. (A
// review found renewals holding the claim's mutex, and each right stalled
// until the renewal gave up, long past the lease.)
func TestRenewalNeverStallsARightOnSQLite(t *testing.T) {
	_, st := openSQLiteFile(t, filepath.Join(t.TempDir(), "app.db"))
	ctx := context.Background()
	// A short lease, so that the renewal (every third of it) meets a right
	// mid-flight within a few requests, as it does under load with the default.
	c, err := privacy.New(privacy.WithIdentity(st.Graph()), privacy.WithProfiles(st.Profiles()),
		privacy.WithAudiences(st.Audiences()), privacy.WithSuppressions(st.Suppressions()),
		privacy.WithJournal(st.Journal()), privacy.WithAuditLog(st.AuditLog()), privacy.WithKey(testKey),
		privacy.WithInstance("host-1"), privacy.WithLease(3*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 40 {
		u := "u" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		if err := c.Collect(ctx, privacy.Identify{UserID: u, Traits: map[string]any{"plan": "pro"}, Timestamp: time.Now()}); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		start := time.Now()
		go func() {
			_, err := c.Rectify(ctx, identity.ID{Type: "user_id", Value: u}, map[string]any{"plan": "free"})
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Rectify %d: %v", i, err)
			}
		case <-time.After(4 * time.Second):
			t.Fatalf("Rectify %d has not returned after %v: the right's transaction waits for the claim's mutex, which the renewal holds while it waits for the right's transaction", i, time.Since(start))
		}
	}
}

// TestACutShortBeginHoldsNoWriteLock: on SQLite a write transaction
// starts with BEGIN IMMEDIATE, and the driver (modernc.org/sqlite) answers a
// context that ends while the BEGIN waits for the write lock with the
// context's error, though the transaction may have begun all the same.
// Handed back to the pool, the connection keeps the write lock while it
// sits idle (the driver rolls back only when the connection is next taken
// out): every other writer waits out its busy timeout. This stalled
// TestRenewalNeverStallsARightOnSQLite about one run in seven, a renewal's
// BEGIN cut short by its deadline of a third of the lease. Writes whose
// deadlines pass as another connection lets the lock go must leave it free.
func TestACutShortBeginHoldsNoWriteLock(t *testing.T) {
	dir := t.TempDir()
	db, st := openSQLiteFile(t, filepath.Join(dir, "app.db"))
	ctx := context.Background()
	j := st.Journal()
	received := time.Now().UTC().Truncate(time.Millisecond)
	holder, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A handle of its own on the same file, one connection, that does not
	// wait long for the lock.
	otherDB, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "app.db")+"?_pragma=busy_timeout(100)&_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	defer otherDB.Close()
	other, err := otherDB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	leaked := 0
	for i := range 200 {
		// Another connection holds the write lock about as long as the
		// write's deadline: some BEGINs are cut short as the lock frees.
		if _, err := holder.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			t.Fatalf("write %d: the holder's BEGIN: %v (the write lock is held by a connection idle in the pool: an earlier cut-short BEGIN's)", i, err)
		}
		done := make(chan error, 1)
		go func() {
			time.Sleep(time.Duration(1000+i%7*300) * time.Microsecond)
			_, err := holder.ExecContext(ctx, "COMMIT")
			done <- err
		}()
		cut, cancel := context.WithTimeout(ctx, time.Duration(500+i%11*200)*time.Microsecond)
		_ = j.Put(cut, &journal.Entry{ID: fmt.Sprintf("req_%d", i), Type: "DELETE_ONLY", Status: journal.StatusRunning, Received: received})
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		// The connection the write used now sits idle in the pool (the
		// driver rolls a transaction back only when the connection is next
		// taken out): from another database handle, the write lock must be
		// free.
		if _, err := other.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			leaked++
			continue
		}
		if _, err := other.ExecContext(ctx, "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
	}
	if leaked > 0 {
		t.Errorf("%d cut-short writes of 200 left their connection inside a transaction", leaked)
	}
	holder.Close()
}

// sealingStore is sqlstore's profile store as a Controller sees it: it seals
// with the keys New hands it (keyring.Sealer), in its own keyring. A test's
// wrapper embeds it, so that it forwards both, as any decorator of a sealing
// profile store must.
type sealingStore interface {
	profile.Store
	keyring.Sealer
	Keyring() keyring.Store
}

// profilesOf returns s's profile store as a sealingStore.
func profilesOf(s *sqlstore.Store) sealingStore { return s.Profiles().(sealingStore) }
