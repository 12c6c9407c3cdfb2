package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/sqlstore"
)

// TestAnInterruptedWriteAbortsTheSQLiteTransaction: a transaction outlives
// the cancellation of a context, each call checking its own (doc.go). On
// SQLite a write cut short by its context is interrupted, and SQLite then
// rolls the whole transaction back on its own, leaving the connection in
// autocommit mode. The transaction must end there, all or nothing: the
// writes after the cut fail rather than commit one by one, Commit fails,
// and nothing of it is stored (as on PostgreSQL, where a failed statement
// fails the rest). A Delete whose deadline passed before it reached the
// database interrupted nothing: its transaction goes on, whole.
func TestAnInterruptedWriteAbortsTheSQLiteTransaction(t *testing.T) {
	ctx := context.Background()
	_, st := openSQLiteFile(t, filepath.Join(t.TempDir(), "app.db"))
	g := st.Graph()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// A profile with many links, so that deleting it takes a while.
	tx, err := g.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	must(t, tx.Create(ctx, "big", now))
	for i := range 20000 {
		must(t, tx.Link(ctx, "big", identity.Link{ID: identity.ID{Type: "user_id", Value: fmt.Sprint("u", i)}, LinkedAt: now, MessageID: "m"}))
	}
	must(t, tx.Commit(ctx))
	stored := func(v string) bool {
		pid, err := g.Lookup(ctx, identity.ID{Type: "email", Value: v})
		if err != nil && !errors.Is(err, identity.ErrNotFound) {
			t.Fatal(err)
		}
		return pid != ""
	}
	cut := 0
	for i := 0; i < 200 && cut < 5; i++ {
		tx, err := g.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		before, after := fmt.Sprint("before", i), fmt.Sprint("after", i)
		must(t, tx.Create(ctx, identity.ProfileID("p"+before), now))
		must(t, tx.Link(ctx, identity.ProfileID("p"+before), identity.Link{ID: identity.ID{Type: "email", Value: before}, LinkedAt: now}))
		short, cancel := context.WithTimeout(ctx, time.Duration(200+i*50)*time.Microsecond)
		derr := tx.Delete(short, "big")
		cancel()
		if !errors.Is(derr, context.DeadlineExceeded) {
			tx.Rollback(ctx)
			continue
		}
		// That call failed; the caller goes on with another context.
		werr := tx.Create(ctx, identity.ProfileID("p"+after), now)
		if werr == nil {
			werr = tx.Link(ctx, identity.ProfileID("p"+after), identity.Link{ID: identity.ID{Type: "email", Value: after}, LinkedAt: now})
		}
		cerr := tx.Commit(ctx)
		if werr == nil && cerr == nil {
			// The deadline had passed before the Delete reached the
			// database (a loaded machine: the call checks its context
			// first): nothing was interrupted, and the transaction went on
			// whole.
			if !stored(before) || !stored(after) {
				t.Errorf("trial %d: the transaction committed, but stored: the write before %v, after %v; want both", i, stored(before), stored(after))
			}
			continue
		}
		cut++
		if werr == nil || cerr == nil || stored(before) || stored(after) {
			t.Errorf("trial %d (Delete cut short: %v): the writes after it answered %v, Commit %v; stored: the write before %v, after %v; want the transaction ended, nothing stored",
				i, derr, werr, cerr, stored(before), stored(after))
		}
		if pid, err := g.Lookup(ctx, identity.ID{Type: "user_id", Value: "u1"}); err != nil || pid != "big" {
			t.Fatalf("trial %d: the profile whose deletion was cut short: %q, %v", i, pid, err)
		}
	}
	if cut == 0 {
		t.Skip("no Delete was cut short: the machine was too fast for the deadlines")
	}
}

// openSQLiteFile opens the SQLite file at path as a host would (writers
// wait for each other up to a busy timeout of 5 s, WAL), with a migrated
// Store over it; both are closed when the test ends.
func openSQLiteFile(t *testing.T, path string) (*sql.DB, *sqlstore.Store) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := sqlstore.New(db, sqlstore.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	must(t, st.Migrate(context.Background()))
	return db, st
}
