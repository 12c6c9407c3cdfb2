package sqlstore_test

import (
	"context"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/sqlstore"
)

// exitingPruneProfiles dies (os.Exit) at the Commit of a transaction that
// pruned events: the retention page's profile commit, which comes after
// its outbox commit.
type exitingPruneProfiles struct{ sealingStore }

func (e exitingPruneProfiles) Begin(ctx context.Context) (profile.Tx, error) {
	tx, err := e.sealingStore.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &exitingPruneTx{Tx: tx}, nil
}

type exitingPruneTx struct {
	profile.Tx
	pruned bool
}

func (t *exitingPruneTx) PruneEvents(ctx context.Context, pids []identity.ProfileID, c profile.Cutoffs) ([]int, error) {
	t.pruned = true
	return t.Tx.(profile.EventPruner).PruneEvents(ctx, pids, c)
}

func (t *exitingPruneTx) Commit(ctx context.Context) error {
	if t.pruned {
		os.Exit(crashExitCode)
	}
	return t.Tx.Commit(ctx)
}

func (sp *splitProc) retentionController(t testing.TB, profiles profile.Store, extra ...privacy.Option) *privacy.Controller {
	t.Helper()
	if profiles == nil {
		profiles = sp.prof.Profiles()
	}
	c, err := privacy.New(append([]privacy.Option{
		privacy.WithIdentity(sp.data.Graph()),
		privacy.WithProfiles(profiles),
		privacy.WithAudiences(sp.data.Audiences()),
		privacy.WithSuppressions(sp.data.Suppressions()),
		privacy.WithJournal(sp.jrnl.Journal()),
		privacy.WithAuditLog(sp.jrnl.AuditLog()),
		privacy.WithOutbox(sp.data.Outbox()),
		privacy.WithKey(testKey),
		privacy.WithInstance("split-host"),
	}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRetentionSplitStoresCrashBetweenCommits: profile store in another
// database; the retention process dies after the page's outbox commit
// (messages of the old events dropped) and before the profile store's
// (events still there). Recover must finish the run: events pruned, the
// audience recounted, the other messages still queued.
func TestRetentionSplitStoresCrashBetweenCommits(t *testing.T) {
	s := newSplitSite(t, sqlstore.Postgres)
	ctx := t.Context()
	var off atomic.Int64
	clock := privacy.WithClock(func() time.Time { return time.Now().Add(time.Duration(off.Load())) })
	{
		sp := s.openSplit(t)
		crm := destination.NewRecorder("crm")
		crm.FailSends(-1)
		c := sp.retentionController(t, nil, clock, privacy.WithDestinations(crm),
			privacy.WithDelivery(privacy.Delivery{Backoff: time.Hour, MaxBackoff: time.Hour, Poll: time.Hour}))
		must(t, c.DefineAudience(ctx, audience.Definition{Key: "viewers", Query: `event('Viewed').count() >= 1`}))
		off.Store(int64(-48 * time.Hour))
		must(t, c.Collect(ctx, privacy.Track{MessageID: "old-1", UserID: "only-old", Event: "Viewed", Timestamp: time.Now().Add(-48 * time.Hour)}))
		must(t, c.Collect(ctx, privacy.Track{MessageID: "old-2", UserID: "mixed", Event: "Viewed", Timestamp: time.Now().Add(-48 * time.Hour)}))
		off.Store(0)
		must(t, c.Collect(ctx, privacy.Track{MessageID: "fresh-2", UserID: "mixed", Event: "Viewed", Timestamp: time.Now()}))
		time.Sleep(500 * time.Millisecond) // the deliverer's failed call gives them back
		c.Close()
		sp.close()
	}
	queued := func() int {
		var n int
		must(t, s.dataDB(t).QueryRowContext(ctx, "SELECT COALESCE(SUM(items), 0) FROM "+s.table("outbox")+" WHERE kind IN ('send','sends') AND state IN ('PENDING','DEAD')").Scan(&n))
		return n
	}
	before := queued()
	runCrashingChild(t, s, "TestRetentionSplitStoresCrashChild", "GDPRKIT_SPLIT_RETENTION_CHILD", "at the page's profile commit")
	after := queued()
	if before != after+2 {
		t.Fatalf("queued messages before the crash %d, after %d; want the two old tracks dropped by the outbox's commit", before, after)
	}
	sp := s.openSplit(t)
	c := sp.retentionController(t, nil, retentionPolicy)
	only, err := c.Profile(ctx, uid("only-old"))
	must(t, err)
	if page, err := c.Events(ctx, uid("only-old"), profile.EventQuery{}); err != nil || len(page.Events) != 1 {
		t.Fatalf("after the crash only-old has %+v, %v; want the old event (the profile commit never ran)", page, err)
	}
	if n, err := c.Recover(ctx); n != 1 || err != nil {
		t.Fatalf("Recover = %d, %v; want the run finished", n, err)
	}
	if _, err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	for u, want := range map[string]int{"only-old": 0, "mixed": 1} {
		page, err := c.Events(ctx, uid(u), profile.EventQuery{})
		must(t, err)
		if len(page.Events) != want {
			t.Errorf("%s has %d events after Recover; want %d", u, len(page.Events), want)
		}
	}
	if m, _ := c.Members(ctx, "viewers"); slices.Contains(m, only.ID) {
		t.Errorf("only-old is still in viewers after the recovered run")
	}
	un, err := sp.jrnl.Journal().Unfinished(ctx)
	must(t, err)
	if len(un) != 0 {
		t.Errorf("unfinished after Recover: %+v", un)
	}
	if q := queued(); q != after {
		t.Errorf("after Recover %d messages are queued; want %d (the fresh track and the audience changes)", q, after)
	}
}

func TestRetentionSplitStoresCrashChild(t *testing.T) {
	s := childSite(t, "GDPRKIT_SPLIT_RETENTION_CHILD", "started by TestRetentionSplitStoresCrashBetweenCommits")
	sp := s.openSplit(t)
	c := sp.retentionController(t, exitingPruneProfiles{profilesOf(sp.prof)}, retentionPolicy)
	rep, err := c.ApplyRetention(t.Context(), privacy.RetentionOptions{})
	t.Fatalf("ApplyRetention = %+v, %v; the process should have died at the profile commit", rep, err)
}
