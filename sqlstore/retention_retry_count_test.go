package sqlstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/sqlstore"
	"github.com/gdprkit/privacy/txscope"
)

// conflictOnceProfiles: the first Commit of a transaction that pruned
// events fails with a conflict to retry (a serialization failure, SQLite's
// busy), nothing of it committed.
type conflictOnceProfiles struct {
	sealingStore
	failed *atomic.Bool
}

func (e conflictOnceProfiles) Begin(ctx context.Context) (profile.Tx, error) {
	tx, err := e.sealingStore.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &conflictOnceTx{Tx: tx, failed: e.failed}, nil
}

type conflictOnceTx struct {
	profile.Tx
	pruned bool
	failed *atomic.Bool
}

func (t *conflictOnceTx) PruneEvents(ctx context.Context, pids []identity.ProfileID, c profile.Cutoffs) ([]int, error) {
	t.pruned = true
	return t.Tx.(profile.EventPruner).PruneEvents(ctx, pids, c)
}

func (t *conflictOnceTx) Commit(ctx context.Context) error {
	if t.pruned && t.failed.CompareAndSwap(false, true) {
		t.Tx.Rollback(ctx)
		return fmt.Errorf("injected: could not serialize access: %w", txscope.ErrRetry)
	}
	return t.Tx.Commit(ctx)
}

// TestRetentionRetriedPageCountsMessagesDropped: profile store in another database;
// the page's profile commit meets a conflict once and the page runs again.
// The outbox's commit had landed: its messages are gone, and the report
// must still count them (RetentionReport.Messages: how many were dropped).
func TestRetentionRetriedPageCountsMessagesDropped(t *testing.T) {
	s := newSplitSite(t, sqlstore.Postgres)
	ctx := t.Context()
	var off atomic.Int64
	clock := privacy.WithClock(func() time.Time { return time.Now().Add(time.Duration(off.Load())) })
	sp := s.openSplit(t)
	crm := destination.NewRecorder("crm")
	crm.FailSends(-1)
	seed := sp.retentionController(t, nil, clock, privacy.WithDestinations(crm),
		privacy.WithDelivery(privacy.Delivery{Backoff: time.Hour, MaxBackoff: time.Hour, Poll: time.Hour, Horizon: 1000 * time.Hour}))
	off.Store(int64(-48 * time.Hour))
	must(t, seed.Collect(ctx, privacy.Track{MessageID: "old-1", UserID: "ada", Event: "Viewed", Timestamp: time.Now().Add(-48 * time.Hour)}))
	time.Sleep(300 * time.Millisecond)
	seed.Close()
	off.Store(0)

	var failed atomic.Bool
	c := sp.retentionController(t, conflictOnceProfiles{profilesOf(sp.prof), &failed}, retentionPolicy)
	rep, err := c.ApplyRetention(ctx, privacy.RetentionOptions{})
	must(t, err)
	if !failed.Load() {
		t.Fatal("no conflict was injected")
	}
	if rep.Events != 1 || rep.Messages != 1 {
		t.Errorf("ApplyRetention after a retried page = events %d, messages %d; want 1 and 1 (the outbox dropped the message at the first attempt)", rep.Events, rep.Messages)
	}
}
