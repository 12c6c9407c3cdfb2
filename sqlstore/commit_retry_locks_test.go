package sqlstore_test

// A commit retry whose redo cannot begin releases the person's locks (an
// attack of a review, kept).

// Adversarial review of fc28d85 (commit retries, fifth review).

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/sqlstore"
	"github.com/gdprkit/privacy/suppression"
)

// beginFailSupp is a suppression list whose Begin fails on the given call
// (numbered from 1): the first participant commitDecision's redo begins.
type beginFailSupp struct {
	suppression.List
	n, failAt atomic.Int64
}

func (s *beginFailSupp) Begin(ctx context.Context) (suppression.Tx, error) {
	if s.n.Add(1) == s.failAt.Load() {
		return nil, errors.New("injected: suppression list unreachable")
	}
	return s.List.Begin(ctx)
}

// TestCommitRetryRedoBeginFailureReleasesSubjectLocks: commitDecision's redo
// takes the person's cross-process locks (LockSubjects begins the shared
// transaction in a new scope), then Begin fails on the first participant,
// before any backend joined that transaction. Nothing rolled it back: the
// scope was closed by a defer when commitDecision returned. The next redo opens
// another scope and waits, on another connection, for the advisory locks the
// first still holds, with a context that never ends: the erasure hung for
// ever, holding the person's locks in this process and in the database.
func TestCommitRetryRedoBeginFailureReleasesSubjectLocks(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	ada, _ := seedCrash(t, s)
	ctx := t.Context()
	p := s.open(t)
	fp := &rcProfiles{sealingStore: profilesOf(p.data)}
	sup := &beginFailSupp{List: p.data.Suppressions()}
	c := p.controller(t, fp, privacy.WithSuppressions(sup))
	fp.onCommit.Store(failOn(1)) // attempt 1's commit fails
	sup.failAt.Store(2)          // the first redo's Begin fails (call 1 was executeOnce's)
	done := make(chan error, 1)
	go func() {
		r, err := c.Erase(context.Background(), userID(ada))
		if err == nil && r.Status == privacy.Failed {
			err = errors.New("FAILED")
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			if n, rerr := c.Recover(ctx); n != 1 || rerr != nil {
				t.Fatalf("Erase = %v; Recover = %d, %v", err, n, rerr)
			}
		}
	case <-time.After(15 * time.Second):
		var granted, waiting int
		_ = s.admin.QueryRow(`SELECT COUNT(*) FILTER (WHERE granted), COUNT(*) FILTER (WHERE NOT granted) FROM pg_locks WHERE locktype = 'advisory'`).Scan(&granted, &waiting)
		// Free the stuck connections so that the schema can be dropped.
		_, _ = s.admin.Exec(`SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid()`)
		t.Fatalf("Erase hung for 15s (advisory locks: %d granted, %d waited for): the redo whose Begin failed left its scope's shared transaction, and the person's locks, open", granted, waiting)
	}
}
