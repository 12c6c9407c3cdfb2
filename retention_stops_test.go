package privacy_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/profile"
)

// TestRetentionLeavesAudience: ada's only Viewed event expires; after
// the run she must no longer be in an audience of people who viewed.
func TestRetentionLeavesAudience(t *testing.T) {
	ctx := context.Background()
	clk := newClock(t0)
	e, _, _ := retentionEnv(t, clk)
	if err := e.c.DefineAudience(ctx, audience.Definition{Key: "viewers", Query: `event('Viewed').count() >= 1`}); err != nil {
		t.Fatal(err)
	}
	collectAt(t, e, clk, trackFrom("ada", "a-old", "", t0.Add(-31*24*time.Hour)), trackFrom("bob", "b-new", "", t0))
	ada := e.profile(t, user("ada"))
	if m, _ := e.c.Members(ctx, "viewers"); !slices.Contains(m, ada.ID) {
		t.Fatalf("before: members %v", m)
	}
	if _, err := e.c.ApplyRetention(ctx, privacy.RetentionOptions{}); err != nil {
		t.Fatal(err)
	}
	if m, _ := e.c.Members(ctx, "viewers"); slices.Contains(m, ada.ID) {
		t.Errorf("after retention deleted ada's only Viewed event she is still a member: %v", m)
	}
}

// TestRetentionDropsExpiredDeadLetters: an event whose delivery
// died (a destination down) stays, properties and all, in the outbox as a
// dead letter after retention deleted the event; Replay then sends the
// deleted event, 31 days after collection, with its values.
func TestRetentionDropsExpiredDeadLetters(t *testing.T) {
	ctx := context.Background()
	clk := newClock(t0)
	crm := destination.NewRecorder("crm")
	crm.FailSends(-1)
	e, _, _ := retentionEnv(t, clk, privacy.WithDestinations(crm), fastDelivery())
	collectAt(t, e, clk, trackFrom("ada", "a-old", "", t0.Add(-31*24*time.Hour)))
	waitFor(t, "the send died", func() bool {
		d, _ := e.c.DeadLetters(ctx, "crm", 0, 100)
		return len(d) == 1
	})
	dry, err := e.c.ApplyRetention(ctx, privacy.RetentionOptions{DryRun: true})
	if err != nil || dry.Events != 1 || dry.Messages != 1 {
		t.Fatalf("a dry run = %+v, %v; want 1 event and its dead letter counted", dry, err)
	}
	if d, _ := e.c.DeadLetters(ctx, "crm", 0, 100); len(d) != 1 {
		t.Fatalf("after a dry run dead letters %+v; want the one kept", d)
	}
	rep, err := e.c.ApplyRetention(ctx, privacy.RetentionOptions{})
	if err != nil || rep.Events != 1 || rep.Messages != 1 {
		t.Fatalf("ApplyRetention = %+v, %v; want 1 event and its dead letter", rep, err)
	}
	if got := e.events(t, user("ada")); len(got) != 0 {
		t.Fatalf("ada still has %v", got)
	}
	d, _ := e.c.DeadLetters(ctx, "crm", 0, 100)
	if len(d) != 0 {
		t.Errorf("after retention deleted a-old, its dead letter is still held: %+v", d)
	}
	crm.FailSends(0)
	ids := []uint64{}
	for _, x := range d {
		ids = append(ids, x.ID)
	}
	if len(ids) > 0 {
		if _, err := e.c.Replay(ctx, ids...); err != nil {
			t.Fatal(err)
		}
		flush(t, e.c)
	}
	for _, m := range crm.Messages() {
		if m.MessageID == "a-old" {
			t.Errorf("Replay sent the event retention deleted, with its values: %+v", m.Properties)
		}
	}
}

// plainStore is a profile store whose transactions are no EventPruner.
type plainStore struct{ *profile.MemStore }

func (s plainStore) Begin(ctx context.Context) (profile.Tx, error) {
	tx, err := s.MemStore.Begin(ctx)
	return plainTx{tx}, err
}

type plainTx struct{ profile.Tx }

// TestRetentionWithoutPrunerFailsBeforeJournaling: the README says a run on a
// store without profile.EventPruner "fails with ErrRetentionNotSupported".
// It must not leave a run RUNNING for ever (Recover failing on it at every
// round, Run never starting another, the run listed overdue a month on):
// nothing was or can be deleted.
func TestRetentionWithoutPrunerFailsBeforeJournaling(t *testing.T) {
	ctx := context.Background()
	clk := newClock(t0)
	e, _, jr := retentionEnv(t, clk, privacy.WithProfiles(plainStore{profile.NewMemStore()}))
	collectAt(t, e, clk, trackFrom("ada", "a-old", "", t0.Add(-31*24*time.Hour)))
	rep, err := e.c.ApplyRetention(ctx, privacy.RetentionOptions{})
	if !errors.Is(err, privacy.ErrRetentionNotSupported) {
		t.Fatalf("ApplyRetention = %+v, %v; want ErrRetentionNotSupported", rep, err)
	}
	if rep.Status != privacy.Failed {
		t.Errorf("the run's report says %s, want FAILED: nothing was deleted, nothing can be", rep.Status)
	}
	un, _ := jr.Unfinished(ctx)
	if len(un) != 0 {
		t.Errorf("the journal keeps %d unfinished RETENTION run(s) that no Recover can ever finish", len(un))
	}
	clk.advance(time.Hour)
	if _, err := e.c.Recover(ctx); err != nil {
		t.Errorf("Recover fails, and will at every round: %v", err)
	}
}

// stoppingStore cancels the host's context the moment a prune commits: the
// host is shut down (Run's context cancelled, as the README's shutdown
// sequence does) while its retention run is between a page's commit and
// the page's audience recount.
type stoppingStore struct {
	*profile.MemStore
	stop func()
}

func (s stoppingStore) Begin(ctx context.Context) (profile.Tx, error) {
	tx, err := s.MemStore.Begin(ctx)
	return &stoppingTx{Tx: tx, stop: s.stop}, err
}

type stoppingTx struct {
	profile.Tx
	stop   func()
	pruned bool
}

func (tx *stoppingTx) PruneEvents(ctx context.Context, pids []identity.ProfileID, c profile.Cutoffs) ([]int, error) {
	tx.pruned = true
	return tx.Tx.(profile.EventPruner).PruneEvents(ctx, pids, c)
}

func (tx *stoppingTx) Commit(ctx context.Context) error {
	err := tx.Tx.Commit(ctx)
	if tx.pruned {
		tx.stop()
	}
	return err
}

// TestRetentionShutdownBeforeRecountRecountsOnResume: no crash, a graceful shutdown.
// The host's context ends right after a page's prune committed; the recount
// fails (marked stale in memory only) and the host closes. The restarted
// host recovers the run and refreshes: ada, whose only Viewed event is
// gone, must not stay in "viewers".
func TestRetentionShutdownBeforeRecountRecountsOnResume(t *testing.T) {
	clk := newClock(t0)
	mem, aud, jr, graph := profile.NewMemStore(), audience.NewMemStore(), journal.NewMemJournal(), identity.NewMemGraph()
	policy := privacy.WithRetention(privacy.RetentionPolicy{Events: 30 * 24 * time.Hour})
	host := func(store profile.Store) *privacy.Controller {
		c, err := privacy.New(privacy.WithIdentity(graph), privacy.WithProfiles(store), privacy.WithAudiences(aud), privacy.WithJournal(jr),
			privacy.WithKey(worldKey), privacy.WithClock(clk.now), privacy.WithInstance("host-1"), policy)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	bg := context.Background()
	c1 := host(mem)
	if err := c1.DefineAudience(bg, audience.Definition{Key: "viewers", Query: `event('Viewed').count() >= 1`}); err != nil {
		t.Fatal(err)
	}
	clk.set(t0.Add(-31 * 24 * time.Hour))
	if err := c1.Collect(bg, trackFrom("ada", "a-old", "", clk.now())); err != nil {
		t.Fatal(err)
	}
	clk.set(t0)
	ada, _ := c1.Profile(bg, user("ada"))
	c1.Close()

	ctx, cancel := context.WithCancel(bg)
	c2 := host(stoppingStore{mem, cancel})
	rep, err := c2.ApplyRetention(ctx, privacy.RetentionOptions{})
	if err == nil || rep.Status != privacy.Running {
		t.Fatalf("the run stopped by the shutdown = %+v, %v; want RUNNING and an error", rep, err)
	}
	c2.Close()

	c3 := host(mem)
	defer c3.Close()
	if _, err := c3.Recover(bg); err != nil {
		t.Fatal(err)
	}
	if _, err := c3.Refresh(bg); err != nil {
		t.Fatal(err)
	}
	if evs, _ := c3.Events(bg, user("ada"), profile.EventQuery{}); len(evs.Events) != 0 {
		t.Fatalf("ada still has events: %v", evs.Events)
	}
	if m, _ := c3.Members(bg, "viewers"); slices.Contains(m, ada.ID) {
		t.Errorf("after a shutdown mid-run, Recover and Refresh, ada (no events left) is still in viewers (event('Viewed').count() >= 1): %v", m)
	}
}

// downJournal is a journal whose writes land and then report a failure (a
// timeout after the commit), and then fail outright, while down.
type downJournal struct {
	*journal.MemJournal
	down   *atomic.Bool
	landed *atomic.Bool
}

var errJournalDown = errors.New("journal: i/o timeout")

func (j downJournal) Put(ctx context.Context, e *journal.Entry) error {
	if j.down.Load() {
		if e.Type == privacy.Retention && !j.landed.Swap(true) {
			j.MemJournal.Put(ctx, e) // the intent lands; its answer is lost
		}
		return errJournalDown
	}
	return j.MemJournal.Put(ctx, e)
}

// TestRetentionIntentLostIsReportedRunning: the run's intent lands in
// the journal but its write reports a timeout, and the journal stays down
// for the FAILED record too. ApplyRetention tells its caller FAILED
// ("nothing was deleted: FAILED is true") while the journal holds the run
// RUNNING; once the journal is back, Recover runs it and deletes. DESIGN:
// "FAILED is final. A request reported FAILED or INVALID changes nothing,
// ever."
func TestRetentionIntentLostIsReportedRunning(t *testing.T) {
	ctx := context.Background()
	clk := newClock(t0)
	var down, landed atomic.Bool
	jr := downJournal{journal.NewMemJournal(), &down, &landed}
	e, _, _ := retentionEnv(t, clk, privacy.WithJournal(jr))
	collectAt(t, e, clk, trackFrom("ada", "a-old", "", t0.Add(-31*24*time.Hour)))
	down.Store(true)
	rep, err := e.c.ApplyRetention(ctx, privacy.RetentionOptions{})
	down.Store(false)
	// The intent landed and no end could be recorded: the run is
	// undecided, not FAILED (which is final), and Recover runs it.
	if err == nil || rep == nil || rep.Status != privacy.Running {
		t.Fatalf("ApplyRetention = %+v, %v; want RUNNING and an error saying it may still complete", rep, err)
	}
	if n, err := e.c.Recover(ctx); err != nil || n != 1 {
		t.Fatalf("Recover = %d, %v; want the run finished", n, err)
	}
	if r, err := e.c.Status(ctx, rep.ID); err != nil || r.Status != privacy.Finished {
		t.Errorf("the run after Recover: %+v, %v; want FINISHED", r, err)
	}
	if got := e.events(t, user("ada")); len(got) != 0 {
		t.Errorf("the recovered run left ada's old events: %v", got)
	}
}
