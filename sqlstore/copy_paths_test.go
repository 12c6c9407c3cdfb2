package sqlstore_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"strings"
	"sync"
	"testing"

	"github.com/gdprkit/privacy/sqlstore"
)

// A Store given the caller's transaction (WithTx) takes the INSERT, and
// the caller's rollback leaves nothing, its commit everything.
func TestOutboxInACallersTransactionInserts(t *testing.T) {
	for _, commit := range []bool{false, true} {
		s := newSite(t, sqlstore.Postgres)
		p := s.open(t)
		ctx := t.Context()
		caller, err := p.db.BeginTx(ctx, nil)
		must(t, err)
		v := p.data.WithTx(caller)
		p.cnt.startTrace()
		items := copyHostileItems(40, 100<<10)
		tx, err := v.Outbox().Begin(ctx)
		must(t, err)
		must(t, tx.Enqueue(ctx, items))
		must(t, tx.Commit(ctx))
		if commit {
			must(t, caller.Commit())
		} else {
			must(t, caller.Rollback())
		}
		if tracedCopy(p.cnt.stopTrace()) {
			t.Error("COPY in the caller's transaction")
		}
		var n int
		must(t, s.admin.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+s.table("outbox")).Scan(&n))
		if want := map[bool]int{false: 0, true: 40}[commit]; n != want {
			t.Errorf("commit %v: %d rows; want %d", commit, n, want)
		}
	}
}

// plainConn wraps a driver connection and hides everything else it has.
type plainConn struct {
	driver.Conn
	log *[]string
	mu  *sync.Mutex
}

func (c plainConn) Prepare(q string) (driver.Stmt, error) {
	c.mu.Lock()
	*c.log = append(*c.log, q)
	c.mu.Unlock()
	return c.Conn.Prepare(q)
}

func (c plainConn) BeginTx(ctx context.Context, o driver.TxOptions) (driver.Tx, error) {
	return c.Conn.(driver.ConnBeginTx).BeginTx(ctx, o)
}

type plainConnector struct {
	inner driver.Connector
	log   *[]string
	mu    *sync.Mutex
}

func (k plainConnector) Connect(ctx context.Context) (driver.Conn, error) {
	c, err := k.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return plainConn{c, k.log, k.mu}, nil
}
func (k plainConnector) Driver() driver.Driver { return k.inner.Driver() }

// A pool whose driver wraps pgx's (a tracing wrapper) falls back to INSERT.
func TestOutboxOnAnotherDriverInserts(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	ctx := t.Context()
	probe, err := sql.Open("pgx", s.DSN) // the driver, without importing it (README, Dependencies)
	must(t, err)
	inner, err := probe.Driver().(driver.DriverContext).OpenConnector(s.DSN)
	probe.Close()
	must(t, err)
	var log []string
	var mu sync.Mutex
	db := sql.OpenDB(plainConnector{inner, &log, &mu})
	defer db.Close()
	st, err := sqlstore.New(db, sqlstore.Postgres, sqlstore.WithSchema(s.Schema))
	must(t, err)
	items := copyHostileItems(40, 10<<10)
	tx, err := st.Outbox().Begin(ctx)
	must(t, err)
	must(t, tx.Enqueue(ctx, items))
	must(t, tx.Commit(ctx))
	ins := false
	for _, q := range log {
		ins = ins || strings.Contains(q, "INSERT INTO")
	}
	if !ins {
		t.Errorf("no INSERT through the wrapper: %q", log)
	}
	var n int
	must(t, s.admin.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+s.table("outbox")).Scan(&n))
	if n != 40 {
		t.Errorf("%d rows; want 40", n)
	}
}
