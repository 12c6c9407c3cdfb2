package sqlstore_test

// Attacks of a fifth review on the commit of a decided request: a redo whose
// staging fails is never committed, a Begin that fails is retried, and a
// request that committed once stays committed for Recover.

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/sqlstore"
)

// rcProfiles: a sealing, purging profile store whose transactions run hooks
// (given the call's number, from 1) at Begin, Delete(Shredded) and Commit.
type rcProfiles struct {
	sealingStore
	begins, deletes, commits    atomic.Int64
	onBegin, onDelete, onCommit atomic.Pointer[func(n int64) error]
	onPurge                     atomic.Pointer[func() error]
}

func (f *rcProfiles) Purge(ctx context.Context, pids []identity.ProfileID) (int64, error) {
	if h := f.onPurge.Load(); h != nil {
		if err := (*h)(); err != nil {
			return 0, err
		}
	}
	return f.sealingStore.(profile.Purger).Purge(ctx, pids)
}

func (f *rcProfiles) Begin(ctx context.Context) (profile.Tx, error) {
	if h := f.onBegin.Load(); h != nil {
		if err := (*h)(f.begins.Add(1)); err != nil {
			return nil, err
		}
	}
	tx, err := f.sealingStore.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &rcTx{Tx: tx, f: f}, nil
}

type rcTx struct {
	profile.Tx
	f *rcProfiles
}

func (t *rcTx) hook(p *atomic.Pointer[func(int64) error], n *atomic.Int64) error {
	if h := p.Load(); h != nil {
		return (*h)(n.Add(1))
	}
	return nil
}
func (t *rcTx) Delete(ctx context.Context, pid identity.ProfileID) error {
	if err := t.hook(&t.f.onDelete, &t.f.deletes); err != nil {
		return err
	}
	return t.Tx.Delete(ctx, pid)
}
func (t *rcTx) DeleteShredded(ctx context.Context, pid identity.ProfileID) error {
	if err := t.hook(&t.f.onDelete, &t.f.deletes); err != nil {
		return err
	}
	return t.Tx.(profile.ShreddingTx).DeleteShredded(ctx, pid)
}
func (t *rcTx) Commit(ctx context.Context) error {
	if err := t.hook(&t.f.onCommit, &t.f.commits); err != nil {
		return err
	}
	return t.Tx.Commit(ctx)
}

func failOn(want ...int64) *func(int64) error {
	f := func(n int64) error {
		for _, w := range want {
			if n == w {
				return errors.New("injected transient failure")
			}
		}
		return nil
	}
	return &f
}

// TestCommitRetryNeverCommitsAHalfStagedRedo: commitDecision's retry
// committed a redo whose stage failed half-way.
// Attempt 1's commit fails (nothing commits: one shared transaction);
// attempt 2 stages again and its profile delete fails; the loop `continue`s
// to commitAll of attempt 2's half-staged transactions, which succeeds. The
// erasure reports FINISHED with the profile delete, the audience delete and
// the outbox (forwarded deletion) never staged.
func TestCommitRetryNeverCommitsAHalfStagedRedo(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	ada, _ := seedCrash(t, s)
	ctx := t.Context()
	p := s.open(t)
	fp := &rcProfiles{sealingStore: profilesOf(p.data)}
	crm := newDownRecorder("crm")
	crm.down.Store(false)
	c := p.controller(t, fp, privacy.WithDestinations(crm), quickRetries)
	fp.onCommit.Store(failOn(1))
	fp.onDelete.Store(failOn(2))
	r := erasedOrRecovered(t, c, ada)
	flushWithin(t, c, 30*time.Second)
	if r, err := c.Status(ctx, r.ID); err != nil || r.Status != privacy.Finished {
		t.Fatalf("Status = %+v, %v; want FINISHED", r, err)
	}
	if len(crm.Deletions()) == 0 {
		t.Error("the erasure FINISHED and the destination got no deletion: a half-staged redo was committed (the outbox never staged)")
	}
	if msgs, _, listed := s.rowsLeft(t, ada.pid); msgs+listed > 0 {
		t.Errorf("the erasure FINISHED with ada's %d message rows left, listed %d times: the profile delete was never staged", msgs, listed)
	}
}

// TestCommitRetryBeginFailureDoesNotPanic: a Begin that failed in
// commitDecision's retry left txs nil, and the next commitAll dereferenced it.
func TestCommitRetryBeginFailureDoesNotPanic(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	ada, _ := seedCrash(t, s)
	ctx := t.Context()
	p := s.open(t)
	fp := &rcProfiles{sealingStore: profilesOf(p.data)}
	c := p.controller(t, fp)
	fp.onCommit.Store(failOn(1))
	fp.onBegin.Store(failOn(2))
	defer func() {
		if v := recover(); v != nil {
			t.Fatalf("Erase panicked after a Begin failed in the commit retry: %v", v)
		}
	}()
	r := erasedOrRecovered(t, c, ada)
	if r, err := c.Status(ctx, r.ID); err != nil || r.Status != privacy.Finished {
		t.Fatalf("Status = %+v, %v; want FINISHED", r, err)
	}
}

// TestFailedRedoCommitKeepsTheRequestCommitted: "committed" was not sticky. The erasure committed, its purge failed
// (RUNNING, every backend FINISHED). Ada signs up again. Recover #1 redoes
// the recorded decision, but its redo commit fails (transient): commitAll
// rewrote e.Backends with a RUNNING backend. Recover #2 then finds the
// request not allCommitted and decides the erasure again on what ada's
// identifiers lead to now: the new profile is erased.
func TestFailedRedoCommitKeepsTheRequestCommitted(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	ada, _ := seedCrash(t, s)
	ctx := t.Context()
	p := s.open(t)
	fp := &rcProfiles{sealingStore: profilesOf(p.data)}
	c := p.controller(t, fp)
	purgeFail := func() error { return context.DeadlineExceeded }
	fp.onPurge.Store(&purgeFail)
	r, err := c.Erase(ctx, userID(ada))
	if err != nil || r.Status != privacy.Running {
		t.Fatalf("Erase = %+v, %v; want RUNNING", r, err)
	}
	fp.onPurge.Store(nil)
	must(t, c.Collect(ctx, privacy.Identify{MessageID: "again-1", UserID: ada.uid, Traits: map[string]any{"plan": "new"}, Timestamp: time.Now()}))
	fresh, err := c.Profile(ctx, userID(ada))
	must(t, err)
	always := func(int64) error { return errors.New("injected transient commit failure") }
	fp.onCommit.Store(&always)
	if n, err := c.Recover(ctx); err == nil {
		t.Fatalf("Recover #1 with every commit failing = %d, nil; want its error", n)
	}
	if got, err := c.Profile(ctx, userID(ada)); err != nil || got.ID != fresh.ID {
		t.Fatalf("after Recover #1 the new profile = %v, %v", got, err)
	}
	fp.onCommit.Store(nil)
	if n, err := c.Recover(ctx); n != 1 || err != nil {
		t.Fatalf("Recover #2 = %d, %v; want 1, nil", n, err)
	}
	if got, err := c.Profile(ctx, userID(ada)); err != nil || got.ID != fresh.ID {
		t.Errorf("after Recover #2 the profile ada got after the erasure's commit = %v, %v; want %s kept (a failed redo commit made the request look uncommitted)", got, err, fresh.ID)
	}
}

// erasedOrRecovered erases ada through c, completing with Recover an erasure
// Erase left to it, and returns its first receipt.
func erasedOrRecovered(t *testing.T, c *privacy.Controller, ada *person) *privacy.Receipt {
	t.Helper()
	r, err := c.Erase(t.Context(), userID(ada))
	if err != nil {
		if n, rerr := c.Recover(t.Context()); n != 1 || rerr != nil {
			t.Fatalf("Erase = %v; Recover = %d, %v; want the erasure completed", err, n, rerr)
		}
	}
	return r
}
