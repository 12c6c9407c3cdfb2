package privacy_test

// A rectification whose redo's commit fails stays landed for the next
// Recover (an attack of a review, kept).

// Adversarial review of fc28d85 (commit retries, fifth review), over the
// in-memory backends.

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/profile"
)

// failOnceJournal fails, once each time it is armed, the first Put of an entry
// that pick selects.
type failOnceJournal struct {
	journal.Journal
	armed atomic.Bool
	pick  func(*journal.Entry) bool
}

func (j *failOnceJournal) Put(ctx context.Context, e *journal.Entry) error {
	if j.pick(e) && j.armed.CompareAndSwap(true, false) {
		return errors.New("injected: journal unreachable")
	}
	return j.Journal.Put(ctx, e)
}

// commitFailingProfiles is a MemStore whose commits fail while failing is set.
type commitFailingProfiles struct {
	*profile.MemStore
	failing atomic.Bool
}

type commitFailingTx struct {
	profile.Tx
	f *commitFailingProfiles
}

func (s *commitFailingProfiles) Begin(ctx context.Context) (profile.Tx, error) {
	tx, err := s.MemStore.Begin(ctx)
	return &commitFailingTx{tx, s}, err
}

func (t *commitFailingTx) Commit(ctx context.Context) error {
	if t.f.failing.Load() {
		_ = t.Tx.Rollback(ctx)
		return errors.New("injected: profile commit failed")
	}
	return t.Tx.Commit(ctx)
}

// TestFailedRedoCommitKeepsARectificationLanded: "committed" was made
// sticky (Entry.Committed) for erasures, but redoRectification still asks
// committed(e, "profiles"), which reads e.Backends, which commitAll rewrites
// on every attempt. The rectification set "tier" (a trait ada did not have)
// and committed; its end could not be journaled (RUNNING). Ada then removed
// "tier" herself. Recover #1 redoes it correctly (landed: her removal stands)
// but its commit fails, recording profiles RUNNING; Recover #2 then finds the
// write "not landed" and sets "tier" again, over her later removal.
func TestFailedRedoCommitKeepsARectificationLanded(t *testing.T) {
	ctx := context.Background()
	j := &failOnceJournal{Journal: journal.NewMemJournal(), pick: func(e *journal.Entry) bool {
		return slices.ContainsFunc(e.AuditOwed, func(n journal.AuditNote) bool { return n.Action == "finished" })
	}}
	prof := &commitFailingProfiles{MemStore: profile.NewMemStore()}
	rec := destination.NewRecorder("crm")
	e := newEnv(t, privacy.WithProfiles(prof), privacy.WithJournal(j), privacy.WithDestinations(rec), fastDelivery())
	person(t, e, "ada")
	j.armed.Store(true) // its end is not journaled: it stays RUNNING, committed
	r, err := e.c.Rectify(ctx, user("ada"), map[string]any{"tier": "gold"})
	if err != nil {
		t.Fatal(err)
	}
	flush(t, e.c)
	if got, _ := e.c.Status(ctx, r.ID); got == nil || got.Status != privacy.Running {
		t.Fatalf("Status = %+v; want RUNNING (its end failed to be journaled)", got)
	}
	if _, ok := e.profile(t, user("ada")).Traits["tier"]; !ok {
		t.Fatal("the rectification did not land")
	}
	// Ada removes the trait herself, after the rectification.
	e.collect(t, privacy.Identify{MessageID: "ada-unset", UserID: "ada", Traits: map[string]any{"tier": nil}, Timestamp: at(10)})
	prof.failing.Store(true)
	if n, err := e.c.Recover(ctx); err == nil {
		t.Fatalf("Recover #1 with the profile commit failing = %d, nil", n)
	}
	prof.failing.Store(false)
	if n, err := e.c.Recover(ctx); n != 1 || err != nil {
		t.Fatalf("Recover #2 = %d, %v", n, err)
	}
	flush(t, e.c)
	if v, ok := e.profile(t, user("ada")).Traits["tier"]; ok {
		t.Errorf("after Recover #2 tier = %v: the redo undid ada's removal made after the rectification's commit (a failed redo commit made the profile write look not landed)", v.Value)
	}
}
