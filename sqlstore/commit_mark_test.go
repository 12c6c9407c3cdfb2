package sqlstore_test

// The window between a decision's commit and the journal's record of it: a
// process that dies there left the journal showing the request decided but
// not committed, and Recover decided it again on the person as they were by
// then (a person collected anew was erased; a trait changed since was
// corrected back). The outbox now marks the request in its transaction,
// the last of the decision's commits (outbox.RequestMarkingTx).

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/outbox"
)

// exitAtCommitRecord is the journal of a process that dies (os.Exit) when it is
// about to record that a request's decision committed: the data committed,
// the journal does not know.
type exitAtCommitRecord struct{ journal.Journal }

func (j exitAtCommitRecord) Put(ctx context.Context, e *journal.Entry) error {
	if e.Decided && !e.Committed.IsZero() {
		os.Exit(crashExitCode)
	}
	return j.Journal.Put(ctx, e)
}

// TestRecoverAfterDyingPastTheCommitKeepsNewCollection: the erasure
// committed, the journal never heard; ada signs up again; Recover must
// finish the erasure as decided and keep her new profile.
func TestRecoverAfterDyingPastTheCommitKeepsNewCollection(t *testing.T) {
	forEachSite(t, func(t *testing.T, s *site) {
		ada, bob := seedCrash(t, s)
		ctx := t.Context()
		id := dieAfterCommitWith(t, s, privacy.DeleteOnly, ada.uid)

		c := s.open(t).controller(t, nil)
		recoverKeepsNewCollection(t, c, ada)
		r, err := c.Status(ctx, id)
		if err != nil || r.Status != privacy.Finished {
			t.Errorf("Status = %+v, %v; want FINISHED", r, err)
		}
		checkIntact(t, s, c, bob)
	})
}

// TestRecoverAfterDyingPastTheCommitKeepsNewerTraits: the rectification
// committed, the journal never heard; a newer identify changes the trait;
// Recover must not write the rectified value over it. (This held before the
// marks too: a rectification's redo compares the trait's time with its own.
// It is the guarantee at this crash point.)
func TestRecoverAfterDyingPastTheCommitKeepsNewerTraits(t *testing.T) {
	forEachSite(t, func(t *testing.T, s *site) {
		ada, _ := seedCrash(t, s)
		ctx := t.Context()
		dieAfterCommitWith(t, s, privacy.Rectify, ada.uid)

		p := s.open(t)
		c := p.controller(t, nil)
		got, err := c.Profile(ctx, userID(ada))
		if err != nil || got.Traits["plan"].Value != "rectified" {
			t.Fatalf("after the commit ada = %v, %v; want plan rectified (the rectification committed)", got, err)
		}
		must(t, c.Collect(ctx, privacy.Identify{MessageID: "newer-1", UserID: ada.uid, Traits: map[string]any{"plan": "newer"}, Timestamp: time.Now()}))
		if n, err := c.Recover(ctx); n != 1 || err != nil {
			t.Fatalf("Recover = %d, %v", n, err)
		}
		if got, err := c.Profile(ctx, userID(ada)); err != nil || got.Traits["plan"].Value != "newer" {
			t.Errorf("after Recover, ada's plan = %v, %v; want newer (set after the rectification committed)", got.Traits["plan"], err)
		}
	})
}

// TestRequestMarkCommitsWithTheData: the mark is in the decision's own
// transaction: a transaction rolled back leaves none, and a request marked
// reads back from another process's Store.
func TestRequestMarkCommitsWithTheData(t *testing.T) {
	forEachSite(t, func(t *testing.T, s *site) {
		ctx := t.Context()
		p := s.open(t)
		store := p.data.Outbox()
		for _, commit := range []bool{false, true} {
			tx, err := store.Begin(ctx)
			must(t, err)
			marker, ok := tx.(outbox.RequestMarkingTx)
			if !ok {
				t.Fatal("sqlstore's profile transactions do not mark requests")
			}
			must(t, marker.MarkRequest(ctx, "req-1"))
			must(t, marker.MarkRequest(ctx, "req-1")) // twice is harmless
			if commit {
				must(t, tx.Commit(ctx))
			} else {
				must(t, tx.Rollback(ctx))
			}
			other := s.open(t).data.Outbox().(outbox.RequestMarks)
			marked, err := other.RequestMarked(ctx, "req-1")
			if err != nil || marked != commit {
				t.Errorf("after commit=%v, RequestMarked = %v, %v; want %v", commit, marked, err, commit)
			}
		}
	})
}

// recoverKeepsNewCollection: after an erasure of ada that committed and was
// left unfinished, ada signs up again through c; c's Recover must finish the
// erasure as decided and keep her new profile.
func recoverKeepsNewCollection(t *testing.T, c *privacy.Controller, ada *person) {
	t.Helper()
	ctx := t.Context()
	if _, err := c.Profile(ctx, userID(ada)); !errors.Is(err, privacy.ErrNotFound) {
		t.Fatalf("after the commit ada = %v; want not found (the erasure committed)", err)
	}
	must(t, c.Collect(ctx, privacy.Identify{MessageID: "again-1", UserID: ada.uid, Traits: map[string]any{"plan": "new"}, Timestamp: time.Now()}))
	fresh, err := c.Profile(ctx, userID(ada))
	must(t, err)
	if n, err := c.Recover(ctx); n != 1 || err != nil {
		t.Fatalf("Recover = %d, %v", n, err)
	}
	if got, err := c.Profile(ctx, userID(ada)); err != nil || got.ID != fresh.ID {
		t.Errorf("after Recover, the profile collected after the erasure's commit = %v, %v; want %s kept", got, err, fresh.ID)
	}
}
