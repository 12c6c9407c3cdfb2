package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gdprkit/privacy/identity"
)

// t0 is the time the checks count from. Every time the suite stores is UTC and
// whole microseconds, as a SQL database keeps it; times are compared with
// time.Time.Equal, so a backend may return them in another location.
var t0 = time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)

// at returns t0 plus sec seconds.
func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

// equateEmpty lets a backend return an empty slice or map where nil was stored,
// and the other way round.
var equateEmpty = cmpopts.EquateEmpty()

// diff compares with equateEmpty; time.Time values compare with their Equal
// method.
func diff(want, got any, opts ...cmp.Option) string {
	return cmp.Diff(want, got, append([]cmp.Option{equateEmpty}, opts...)...)
}

// newPIDs returns n well-formed profile ids in ascending order.
func newPIDs(n int) []identity.ProfileID {
	out := make([]identity.ProfileID, n)
	for i := range out {
		out[i] = identity.NewProfileID(time.Now())
	}
	return out
}

// newPID returns one well-formed profile id, greater than every one before.
func newPID() identity.ProfileID { return newPIDs(1)[0] }

func uid(v string) identity.ID   { return identity.ID{Type: identity.TypeUserID, Value: v} }
func anon(v string) identity.ID  { return identity.ID{Type: identity.TypeAnonymousID, Value: v} }
func email(v string) identity.ID { return identity.ID{Type: identity.TypeEmail, Value: v} }

var tags atomic.Int64

// nextTag returns a suffix no other call returns, for identifiers that must be
// distinct across the fixtures of one check.
func nextTag() string { return fmt.Sprint("-", tags.Add(1)) }

// hasherKey keys the hashes the suppression and audit checks store.
var hasherKey = []byte("storetest-hasher-key-0123456789abcdef")

var hasher = func() *identity.Hasher {
	h, err := identity.NewHasher(hasherKey)
	if err != nil {
		panic(err)
	}
	return h
}()

// hashOf returns the keyed hash of the user id v.
func hashOf(v string) identity.Hash { return hasher.ID(uid(v)) }

// must fails the test on an error.
func must(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// ender is what every participant transaction has.
type ender interface {
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// commitTx commits tx, failing the test on an error.
func commitTx(t testing.TB, ctx context.Context, tx ender) {
	t.Helper()
	must(t, tx.Commit(ctx), "Commit")
}

// txMethod is one method of a transaction, called with arguments that would
// otherwise succeed.
type txMethod struct {
	name string
	call func(ctx context.Context) error
}

// checkDone checks that every method of a transaction that ended fails with
// errDone, and that Rollback is then a harmless no-op, twice.
func checkDone(t *testing.T, ctx context.Context, how string, tx ender, errDone error, methods []txMethod) {
	t.Helper()
	for _, m := range methods {
		if err := m.call(ctx); !errors.Is(err, errDone) {
			t.Errorf("%s after %s = %v; want an error matching %q", m.name, how, err, errDone)
		}
	}
	if err := tx.Commit(ctx); !errors.Is(err, errDone) {
		t.Errorf("Commit after %s = %v; want an error matching %q", how, err, errDone)
	}
	for i := 0; i < 2; i++ {
		if err := tx.Rollback(ctx); err != nil {
			t.Errorf("Rollback after %s = %v; want nil (a harmless no-op)", how, err)
		}
	}
}

// cancelled returns a context that is already cancelled.
func cancelled(ctx context.Context) context.Context {
	c, cancel := context.WithCancel(ctx)
	cancel()
	return c
}

// Concurrency of the checks that write from many goroutines: enough to catch
// races under -race, few enough to stay quick on a small machine.
const (
	writers       = 6
	txsPerWriter  = 8
	concurrentMax = writers * txsPerWriter
)

// parallel runs fn(i) for i in [0, n) on n goroutines and returns the errors.
func parallel(n int, fn func(i int) error) []error {
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	return errs
}

// reportAll reports every non-nil error.
func reportAll(t *testing.T, errs []error) {
	t.Helper()
	for i, err := range errs {
		if err != nil {
			t.Errorf("goroutine %d: %v", i, err)
		}
	}
}

// inTx begins a transaction with begin, runs fn in it and commits.
func inTx[T ender](t testing.TB, ctx context.Context, begin func(context.Context) (T, error), fn func(tx T) error) {
	t.Helper()
	tx, err := begin(ctx)
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	defer tx.Rollback(ctx)
	if err := fn(tx); err != nil {
		t.Fatalf("in a transaction: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

// errf formats an error for the goroutines of the concurrency checks.
func errf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// commitAfterRefused commits a transaction whose last write was refused. The
// refused write must have changed nothing. A database that aborts a
// transaction at its first error (PostgreSQL does) may then fail to commit,
// losing the writes staged before: that is allowed, as the Controller rolls a
// transaction back on any error. It reports whether the commit succeeded, so
// the check knows which state to expect.
func commitAfterRefused(t *testing.T, ctx context.Context, tx ender) bool {
	t.Helper()
	if err := tx.Commit(ctx); err != nil {
		t.Logf("Commit after a refused write failed (allowed): %v", err)
		_ = tx.Rollback(ctx)
		return false
	}
	return true
}

// secondTx begins a second transaction with begin while the check holds one
// open, or reports false (logging why) when the adapter declared
// NoConcurrentTx. The check rolls it back; so does the cleanup, harmlessly.
func secondTx[T ender](t *testing.T, e *env, begin func(context.Context) (T, error)) (T, bool) {
	t.Helper()
	var tx T
	if r := e.caps.NoConcurrentTx; r != "" {
		t.Logf("not checking what a second transaction sees: the adapter declares NoConcurrentTx: %s", r)
		return tx, false
	}
	tx, err := begin(e.ctx)
	must(t, err, "Begin a second transaction")
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return tx, true
}

// staging is one backend's part in the transaction checks every backend
// shares: writes of every kind staged on a seeded fixture, and a view of what
// a reader (the backend itself, or a transaction) shows of the fixture. R is
// the backend's reader interface, T its transaction.
type staging[R any, T ender, V any] struct {
	store   R
	begin   func(context.Context) (T, error)
	stage   func(tx T)
	view    func(r R) V
	errDone error // the package's ErrTxDone
	// calls are a read and a write of the transaction, for checkDone.
	calls func(tx T) []txMethod
}

// stageInTx begins a transaction and stages the writes in it.
func (s staging[R, T, V]) stageInTx(t *testing.T, ctx context.Context) T {
	t.Helper()
	tx, err := s.begin(ctx)
	must(t, err, "Begin")
	s.stage(tx)
	return tx
}

// checkRollbackDiscards checks that a rolled back transaction changed
// nothing, and that a second Rollback is harmless; it returns the
// transaction for checks of the backend's own.
func (s staging[R, T, V]) checkRollbackDiscards(t *testing.T, e *env) T {
	t.Helper()
	before := s.view(s.store)
	tx := s.stageInTx(t, e.ctx)
	must(t, tx.Rollback(e.ctx), "Rollback")
	if d := diff(before, s.view(s.store)); d != "" {
		t.Errorf("Rollback left changes (-before +after):\n%s", d)
	}
	if err := tx.Rollback(e.ctx); err != nil {
		t.Errorf("a second Rollback = %v; want nil", err)
	}
	return tx
}

// checkCancelledCommit checks that a Commit with a cancelled context applies
// all of the transaction or none of it, as its error says, and ends it.
func (s staging[R, T, V]) checkCancelledCommit(t *testing.T, e *env) {
	t.Helper()
	before := s.view(s.store)
	tx := s.stageInTx(t, e.ctx)
	staged := s.view(any(tx).(R))
	err := tx.Commit(cancelled(e.ctx))
	got := s.view(s.store)
	if err != nil {
		if d := diff(before, got); d != "" {
			t.Errorf("Commit with a cancelled context failed (%v) but changed the backend (-before +after):\n%s", err, d)
		}
	} else if d := diff(staged, got); d != "" {
		t.Errorf("Commit with a cancelled context succeeded but not all of it is visible (-staged +after):\n%s", d)
	}
	checkDone(t, e.ctx, "a Commit with a cancelled context", tx, s.errDone, s.calls(tx))
}

// beginTwo begins two transactions at once, rolled back when the check ends
// (a no-op for those it commits).
func beginTwo[T ender](t *testing.T, e *env, begin func(context.Context) (T, error)) (T, T) {
	t.Helper()
	var txs [2]T
	for i := range txs {
		tx, err := begin(e.ctx)
		must(t, err, "Begin")
		t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
		txs[i] = tx
	}
	return txs[0], txs[1]
}
