package privacy_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/txscope"
)

// TestRetentionKeepsGroupAndAliasDeadLetters: a group call sets the
// account's traits and links the person to it, an alias links two
// identifiers; the library keeps both (the account profile, the graph)
// after retention deleted their events. Their dead letters are the only
// way the destination learns of them: like an identify's, they are state
// the library still holds, not an expired event, and must stay
// replayable: outbox.Expired expires tracks, pages and screens only.
func TestRetentionKeepsGroupAndAliasDeadLetters(t *testing.T) {
	ctx := context.Background()
	clk := newClock(t0)
	crm := destination.NewRecorder("crm")
	crm.FailSends(-1)
	e, _, _ := retentionEnv(t, clk, privacy.WithDestinations(crm), fastDelivery())
	old := t0.Add(-31 * 24 * time.Hour)
	clk.set(old)
	e.collect(t, privacy.Group{MessageID: "g-old", UserID: "ada", GroupID: "acme", Traits: map[string]any{"plan": "enterprise"}, Timestamp: old},
		privacy.Alias{MessageID: "al-old", UserID: "ada", PreviousID: "ada-legacy", Timestamp: old})
	clk.set(t0)
	waitFor(t, "the sends died", func() bool {
		d, _ := e.c.DeadLetters(ctx, "crm", 0, 100)
		return len(d) == 2
	})
	if _, err := e.c.ApplyRetention(ctx, privacy.RetentionOptions{}); err != nil {
		t.Fatal(err)
	}
	acct, err := e.c.Account(ctx, "acme")
	if err != nil || acct.Traits["plan"].Value != "enterprise" {
		t.Fatalf("the account after retention: %+v, %v", acct, err)
	}
	d, _ := e.c.DeadLetters(ctx, "crm", 0, 100)
	if len(d) != 2 {
		t.Errorf("after retention %d dead letters of the group and alias calls are left, want 2: the account's traits and the alias link are still held, and the destination was never told", len(d))
	}
}

// retryingOutbox is a memory outbox whose transaction's Commit, while
// failCommit is set, rolls back and reports a conflict to retry
// (txscope.ErrRetry), once: what an outbox on a database of its own
// reports for a serialization failure or a deadlock at commit.
type retryingOutbox struct {
	*outbox.MemStore
	failCommit atomic.Bool
}

func (s *retryingOutbox) Begin(ctx context.Context) (outbox.Tx, error) {
	tx, err := s.MemStore.Begin(ctx)
	return &retryingTx{Tx: tx, s: s}, err
}

type retryingTx struct {
	outbox.Tx
	s *retryingOutbox
}

func (tx *retryingTx) Expire(ctx context.Context, pids []identity.ProfileID, c profile.Cutoffs, now time.Time) (int, error) {
	return tx.Tx.(outbox.ExpiringTx).Expire(ctx, pids, c, now)
}

func (tx *retryingTx) MarkRequest(ctx context.Context, id string) error {
	return tx.Tx.(outbox.RequestMarkingTx).MarkRequest(ctx, id)
}

func (tx *retryingTx) Commit(ctx context.Context) error {
	if tx.s.failCommit.CompareAndSwap(true, false) {
		tx.Tx.Rollback(ctx)
		return fmt.Errorf("outbox commit: %w: could not serialize access", txscope.ErrRetry)
	}
	return tx.Tx.Commit(ctx)
}

// TestRetentionOutboxCommitConflictStillRecounts: the outbox's commit
// reports a conflict to retry. The page is pruned again from the start,
// so nothing of it may have committed: had the profile store committed
// first, the second attempt would prune none, the page's profiles would go
// unrecounted (ada staying in "viewers", whose only Viewed event was
// deleted), and the report would count no event. The outbox commits first.
func TestRetentionOutboxCommitConflictStillRecounts(t *testing.T) {
	ctx := context.Background()
	clk := newClock(t0)
	crm := destination.NewRecorder("crm")
	crm.FailSends(-1)
	ob := &retryingOutbox{MemStore: outbox.NewMemStore()}
	e, _, _ := retentionEnv(t, clk, privacy.WithOutbox(ob), privacy.WithDestinations(crm), fastDelivery())
	if err := e.c.DefineAudience(ctx, audience.Definition{Key: "viewers", Query: `event('Viewed').count() >= 1`}); err != nil {
		t.Fatal(err)
	}
	collectAt(t, e, clk, trackFrom("ada", "a-old", "", t0.Add(-31*24*time.Hour)))
	ada := e.profile(t, user("ada"))
	waitFor(t, "the sends died (the track, the news of viewers)", func() bool {
		d, _ := e.c.DeadLetters(ctx, "crm", 0, 100)
		return len(d) == 2
	})
	ob.failCommit.Store(true)
	rep, err := e.c.ApplyRetention(ctx, privacy.RetentionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.events(t, user("ada")); len(got) != 0 {
		t.Fatalf("ada still has %v", got)
	}
	if m, _ := e.c.Members(ctx, "viewers"); slices.Contains(m, ada.ID) {
		t.Errorf("after retention deleted ada's only Viewed event she is still a member of viewers (report: %d events, %d pruned, %d messages)", rep.Events, rep.Pruned, rep.Messages)
	}
	if rep.Events != 1 {
		t.Errorf("the report counts %d events deleted, want 1", rep.Events)
	}
}
