package sqlstore

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/txscope"
)

// profileExists reports whether the profile is committed in the graph and in
// the profile store, read on the pool.
func profileExists(t *testing.T, s *Store, pid identity.ProfileID) (inGraph, inStore bool) {
	t.Helper()
	ctx := context.Background()
	_, err := s.Graph().Node(ctx, pid)
	if err != nil && !errors.Is(err, identity.ErrNotFound) {
		t.Fatal(err)
	}
	inGraph = err == nil
	_, err = s.Profiles().Get(ctx, pid)
	if err != nil && !errors.Is(err, profile.ErrNotFound) {
		t.Fatal(err)
	}
	return inGraph, err == nil
}

// beginBoth begins a graph and a profile transaction with ctx and stages a
// profile in each.
func beginBoth(t *testing.T, ctx context.Context, s *Store, pid identity.ProfileID) (identity.Tx, profile.Tx) {
	t.Helper()
	gtx, err := s.Graph().Begin(ctx)
	must(t, err)
	t.Cleanup(func() { gtx.Rollback(context.Background()) })
	ptx, err := s.Profiles().Begin(ctx)
	must(t, err)
	t.Cleanup(func() { ptx.Rollback(context.Background()) })
	must(t, gtx.Create(ctx, pid, t0))
	must(t, gtx.Link(ctx, pid, identity.Link{ID: email("a@x"), LinkedAt: t0}))
	must(t, ptx.Update(ctx, pid, profile.Update{MessageID: "m1"}))
	return gtx, ptx
}

// TestScopeCommitsOnce checks that the backends begun in one Scope commit in
// one database commit: the first Commit leaves everything invisible, the last
// makes everything visible, and reads with the Scope's context see the shared
// transaction.
func TestScopeCommitsOnce(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx, _ := scoped(t, t.Context())
		pid := identity.NewProfileID(t0)
		gtx, ptx := beginBoth(t, ctx, s, pid)

		// A read on the Store with the Scope's context goes through the shared
		// transaction; one without it does not.
		if got, err := s.Graph().Lookup(ctx, email("a@x")); err != nil || got != pid {
			t.Errorf("Lookup with the scope = %s, %v; want %s", got, err, pid)
		}
		if _, err := s.Graph().Lookup(context.Background(), email("a@x")); !errors.Is(err, identity.ErrNotFound) {
			t.Errorf("Lookup without the scope = %v, want ErrNotFound", err)
		}
		must(t, gtx.Commit(ctx))
		if g, p := profileExists(t, s, pid); g || p {
			t.Errorf("after the first of two commits: in graph %v, in store %v; want neither", g, p)
		}
		must(t, ptx.Commit(ctx))
		if g, p := profileExists(t, s, pid); !g || !p {
			t.Errorf("after the last commit: in graph %v, in store %v; want both", g, p)
		}
		// A backend begun later in the same Scope gets a new transaction.
		tx, err := s.Suppressions().Begin(ctx)
		must(t, err)
		must(t, tx.AddProfile(ctx, pid))
		must(t, tx.Commit(ctx))
		if ok, err := s.Suppressions().ProfileSuppressed(context.Background(), pid); err != nil || !ok {
			t.Errorf("a later transaction in the scope: suppressed %v, %v", ok, err)
		}
	})
}

// TestScopeRollbackIsForAll checks that a Rollback of one backend rolls back
// the others', whose Commit then fails with ErrAborted.
func TestScopeRollbackIsForAll(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx, _ := scoped(t, t.Context())
		pid := identity.NewProfileID(t0)
		gtx, ptx := beginBoth(t, ctx, s, pid)
		must(t, ptx.Rollback(ctx))
		if err := gtx.Commit(ctx); !errors.Is(err, ErrAborted) {
			t.Errorf("Commit after another backend's Rollback = %v, want ErrAborted", err)
		}
		must(t, gtx.Rollback(ctx))
		if err := ptx.Commit(ctx); !errors.Is(err, profile.ErrTxDone) {
			t.Errorf("Commit after Rollback = %v, want ErrTxDone", err)
		}
		if g, p := profileExists(t, s, pid); g || p {
			t.Errorf("after a rollback: in graph %v, in store %v; want neither", g, p)
		}
	})
}

// TestScopeFailedCommitLeavesNothing makes the database refuse the shared
// transaction's commit (a deferred foreign key, checked at COMMIT): the first
// backend's Commit had reported success, yet none of its writes remain, since
// they were never committed on their own.
func TestScopeFailedCommitLeavesNothing(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		for _, q := range []string{
			`CREATE TABLE {p}test_parent (id integer PRIMARY KEY)`,
			`CREATE TABLE {p}test_child (id integer PRIMARY KEY, parent integer REFERENCES {p}test_parent (id) DEFERRABLE INITIALLY DEFERRED)`,
		} {
			_, err := s.db.Exec(s.sql(q))
			must(t, err)
		}
		ctx, scope := scoped(t, t.Context())
		pid := identity.NewProfileID(t0)
		gtx, ptx := beginBoth(t, ctx, s, pid)
		v, ok := scope.Load(s.key)
		if !ok {
			t.Fatal("no shared transaction in the scope")
		}
		must(t, v.(*sharedTx).run(func(ex Executor) error {
			_, err := ex.ExecContext(ctx, s.sql(`INSERT INTO {p}test_child (id, parent) VALUES (1, 42)`))
			return err
		}))
		must(t, gtx.Commit(ctx))
		if err := ptx.Commit(ctx); err == nil {
			t.Fatal("the last Commit succeeded despite the deferred violation")
		}
		if g, p := profileExists(t, s, pid); g || p {
			t.Errorf("after a failed commit: in graph %v, in store %v; want neither", g, p)
		}
		// The connection went back to the pool usable, outside any transaction.
		pid2 := identity.NewProfileID(t0)
		tx, err := s.Graph().Begin(t.Context())
		must(t, err)
		must(t, tx.Create(t.Context(), pid2, t0))
		must(t, tx.Commit(t.Context()))
		if g, _ := profileExists(t, s, pid2); !g {
			t.Error("a transaction after the failed commit did not commit")
		}
	})
}

// TestScopeCloseRollsBack checks the safety net: a shared transaction nobody
// ended is rolled back when its Scope closes, and its connection returns.
func TestScopeCloseRollsBack(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx, scope := txscope.NewContext(t.Context())
		pid := identity.NewProfileID(t0)
		beginBoth(t, ctx, s, pid)
		scope.Close()
		if g, p := profileExists(t, s, pid); g || p {
			t.Errorf("after the scope closed: in graph %v, in store %v; want neither", g, p)
		}
		if n := s.db.Stats().InUse; n != 0 {
			t.Errorf("%d connections in use after the scope closed", n)
		}
		// Begin with the closed Scope fails clearly rather than leaking.
		if _, err := s.Graph().Begin(ctx); err == nil {
			t.Error("Begin with a closed scope succeeded")
		}
		if n := s.db.Stats().InUse; n != 0 {
			t.Errorf("%d connections in use after Begin with a closed scope", n)
		}
	})
}

// TestNoScopeSeparateTransactions checks that, without a Scope, each Begin
// has a transaction of its own (PostgreSQL: SQLite has one writer, so two
// open at once in one goroutine would wait for each other).
func TestNoScopeSeparateTransactions(t *testing.T) {
	s := openPostgres(t)
	ctx := t.Context()
	pid := identity.NewProfileID(t0)
	gtx, ptx := beginBoth(t, ctx, s, pid)
	must(t, gtx.Commit(ctx))
	if g, p := profileExists(t, s, pid); !g || p {
		t.Errorf("after the graph's commit: in graph %v, in store %v; want the graph only", g, p)
	}
	must(t, ptx.Rollback(ctx))
	if g, p := profileExists(t, s, pid); !g || p {
		t.Errorf("after the store's rollback: in graph %v, in store %v; want the graph only", g, p)
	}
}

// TestLockSubjectsSerialises checks that two Stores over two pools (two
// processes) lock a subject in turn, and other subjects not at all.
func TestLockSubjectsSerialises(t *testing.T) {
	for _, tt := range []struct {
		name string
		open func(t *testing.T) (a, b *Store)
		// perKey: the lock is per subject (PostgreSQL), not the database's
		// single write lock (SQLite).
		perKey bool
	}{
		{"postgres", func(t *testing.T) (*Store, *Store) {
			a := openPostgres(t)
			b, err := New(postgresDB(t), Postgres, WithSchema(a.schema))
			must(t, err)
			return a, b
		}, true},
		{"sqlite", func(t *testing.T) (*Store, *Store) {
			path := filepath.Join(t.TempDir(), "test.db")
			a := newStore(t, sqliteDB(t, path), SQLite)
			return a, newStore(t, sqliteDB(t, path), SQLite)
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, b := tt.open(t)
			actx, ascope := txscope.NewContext(t.Context())
			defer ascope.Close()
			must(t, a.LockSubjects(actx, []string{"id:email:a@x", "profile:use_1"}))
			must(t, a.LockSubjects(actx, []string{"profile:use_1"})) // again: harmless

			if tt.perKey {
				// Another subject: no wait.
				lockPromptly(t, b, []string{"profile:use_2"}, "locking another subject waited")
			}

			bctx, bscope := txscope.NewContext(t.Context())
			defer bscope.Close()
			locked := make(chan error, 1)
			go func() { locked <- b.LockSubjects(bctx, []string{"profile:use_1"}) }()
			select {
			case err := <-locked:
				t.Fatalf("the second process locked a held subject: %v", err)
			case <-time.After(300 * time.Millisecond):
			}
			// Reads in the first scope go through its transaction meanwhile.
			if _, err := a.Graph().Lookup(actx, email("a@x")); !errors.Is(err, identity.ErrNotFound) {
				t.Errorf("Lookup in the locked scope = %v", err)
			}
			ascope.Close() // ends the transaction, and so the locks
			select {
			case err := <-locked:
				must(t, err)
			case <-time.After(10 * time.Second):
				t.Fatal("the second process never got the lock")
			}
		})
	}
}

// TestLockSubjectsDeadlockIsRetryable makes two PostgreSQL transactions lock
// two subjects in opposite orders: PostgreSQL breaks the deadlock, and the
// loser's error matches txscope.ErrRetry.
func TestLockSubjectsDeadlockIsRetryable(t *testing.T) {
	s := openPostgres(t)
	actx, ascope := scoped(t, t.Context())
	bctx, bscope := scoped(t, t.Context())
	must(t, s.LockSubjects(actx, []string{"k1"}))
	must(t, s.LockSubjects(bctx, []string{"k2"}))
	errs := make(chan error, 2)
	go func() {
		err := s.LockSubjects(actx, []string{"k2"})
		if err != nil {
			ascope.Close()
		}
		errs <- err
	}()
	go func() {
		err := s.LockSubjects(bctx, []string{"k1"})
		if err != nil {
			bscope.Close()
		}
		errs <- err
	}()
	var failed error
	for range 2 {
		select {
		case err := <-errs:
			if err != nil {
				failed = err
				continue
			}
			// The winner: end its scope so the loser's retry could proceed.
			ascope.Close()
			bscope.Close()
		case <-time.After(20 * time.Second):
			t.Fatal("the deadlock was not broken")
		}
	}
	if !errors.Is(failed, txscope.ErrRetry) || !IsRetryable(failed) {
		t.Errorf("deadlock error = %v, want one matching txscope.ErrRetry", failed)
	}
	// A retry in the same scope after the failure begins afresh.
	ctx, _ := scoped(t, t.Context())
	must(t, s.LockSubjects(ctx, []string{"k1", "k2"}))
}

func TestLockSubjectsNeedsAScope(t *testing.T) {
	s := openSQLite(t)
	if err := s.LockSubjects(t.Context(), []string{"k"}); !errors.Is(err, ErrNoScope) {
		t.Errorf("LockSubjects without a scope = %v, want ErrNoScope", err)
	}
}

// TestWithTx runs backends inside a caller's transaction: each backend
// transaction is a savepoint, and the caller's commit or rollback decides.
func TestWithTx(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		run := func(commit bool) (identity.ProfileID, identity.ProfileID) {
			caller, err := s.db.BeginTx(ctx, nil)
			must(t, err)
			defer caller.Rollback()
			v := s.WithTx(caller)
			kept, dropped := identity.NewProfileID(t0), identity.NewProfileID(t0)

			gtx, err := v.Graph().Begin(ctx)
			must(t, err)
			must(t, gtx.Create(ctx, kept, t0))
			must(t, gtx.Commit(ctx))
			ptx, err := v.Profiles().Begin(ctx)
			must(t, err)
			must(t, ptx.Update(ctx, dropped, profile.Update{}))
			must(t, ptx.Rollback(ctx))
			// Shared in a scope: one savepoint for both.
			sctx, _ := scoped(t, ctx)
			gtx, ptx = beginBoth(t, sctx, v, dropped)
			must(t, gtx.Commit(sctx))
			must(t, ptx.Rollback(sctx))
			// Reads on the view see the caller's transaction.
			if _, err := v.Graph().Node(ctx, kept); err != nil {
				t.Errorf("Node on the view = %v", err)
			}
			must(t, v.Journal().Put(ctx, fullEntry("req_tx", t0, "RUNNING")))
			if commit {
				must(t, caller.Commit())
			} else {
				must(t, caller.Rollback())
			}
			return kept, dropped
		}
		kept, dropped := run(true)
		if g, _ := profileExists(t, s, kept); !g {
			t.Error("a committed savepoint did not commit with the caller's transaction")
		}
		if g, p := profileExists(t, s, dropped); g || p {
			t.Errorf("rolled back savepoints: in graph %v, in store %v; want neither", g, p)
		}
		if _, err := s.Journal().Get(ctx, "req_tx"); err != nil {
			t.Errorf("journal entry put in the caller's transaction: %v", err)
		}
		kept, _ = run(false)
		if g, _ := profileExists(t, s, kept); g {
			t.Error("the caller's rollback left a write")
		}
		// Given the pool, WithTx is the Store itself.
		if v := s.WithTx(s.db); v.ex != nil || v.db != s.db {
			t.Error("WithTx(*sql.DB) did not return a Store over the pool")
		}
	})
}

// TestJournalInScope: on PostgreSQL a journal write inside a Scope commits on
// its own, durable whatever the Scope's transaction does; on SQLite, whose
// single writer the Scope's open transaction holds, it joins that
// transaction instead of waiting for it, and so goes with it.
func TestJournalInScope(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx, scope := txscope.NewContext(t.Context())
		must(t, s.LockSubjects(ctx, []string{"k"})) // opens the shared transaction
		start := time.Now()
		must(t, s.Journal().Put(ctx, fullEntry("req_1", t0, "RUNNING")))
		must(t, s.AuditLog().Append(ctx, auditRecord(1)))
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("the journal write waited %v", d)
		}
		scope.Close() // rolls the shared transaction back
		_, err := s.Journal().Get(t.Context(), "req_1")
		_, inLog, lerr := s.AuditLog().Last(t.Context())
		must(t, lerr)
		if s.d == Postgres && (err != nil || !inLog) {
			t.Errorf("PostgreSQL: after the scope's rollback, Get = %v and the audit record kept = %v; want both kept", err, inLog)
		}
		if s.d == SQLite && (!errors.Is(err, journal.ErrNotFound) || inLog) {
			t.Errorf("SQLite: after the scope's rollback, Get = %v and the audit record kept = %v; want both gone with it", err, inLog)
		}
	})
}

func auditRecord(seq uint64) audit.Record {
	return audit.Record{Seq: seq, At: t0, Action: "decided", RequestID: "req_1", RequestType: "DELETE_ONLY", Status: "RUNNING"}
}

// lockPromptly locks keys on s in a new Scope, closed after, and fails the
// test with failure unless it gets the locks within 5 seconds: the tests
// that check no one holds them share it.
func lockPromptly(t *testing.T, s *Store, keys []string, failure string) {
	t.Helper()
	ctx, scope := txscope.NewContext(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.LockSubjects(ctx, keys) }()
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal(failure)
	}
	scope.Close()
}

// TestUnlockSubjects releases the locks of a Scope no backend joined yet.
func TestUnlockSubjects(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		actx, _ := scoped(t, t.Context())
		must(t, s.LockSubjects(actx, []string{"k"}))
		must(t, s.UnlockSubjects(actx))
		must(t, s.UnlockSubjects(actx)) // again: nothing to do
		// Another Scope gets the lock at once.
		lockPromptly(t, s, []string{"k"}, "the lock was not released")
		// The first Scope can lock again, then begin backends.
		must(t, s.LockSubjects(actx, []string{"k"}))
		tx, err := s.Graph().Begin(actx)
		must(t, err)
		if err := s.UnlockSubjects(actx); err == nil {
			t.Error("UnlockSubjects with a backend in the shared transaction succeeded")
		}
		must(t, tx.Create(actx, identity.NewProfileID(t0), t0))
		must(t, tx.Commit(actx))
	})
}
