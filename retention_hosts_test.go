package privacy_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/suppression"
)

// armedJournal runs hook once, when armed, right after a RECTIFY request's
// intent is recorded (before the rectification takes the person's locks):
// a retention run received after the rectification and decided before it,
// as when the rectification waits on the person's lock or its host crashed
// and Recover re-runs it.
type armedJournal struct {
	*journal.MemJournal
	armed *atomic.Bool
	hook  func()
	typ   privacy.RequestType // RECTIFY when empty
}

func (j armedJournal) Put(ctx context.Context, e *journal.Entry) error {
	if err := j.MemJournal.Put(ctx, e); err != nil {
		return err
	}
	typ := j.typ
	if typ == "" {
		typ = privacy.Rectify
	}
	if e.Type == typ && !e.Decided && j.armed.CompareAndSwap(true, false) {
		j.hook()
	}
	return nil
}

// TestRetentionKeptPersonsErasureSupersedesNothing: carol was
// inactive; a retention run finds her inactive, she comes back before its
// erasure is decided, and the erasure keeps her (nothing erased). A
// rectification of carol received before that erasure and decided after it
// must still correct her: nothing of her was erased. It ends FINISHED and
// changes nothing, "superseded by an erasure", because the erasure that
// kept her is journaled as a decided DELETE_INTERNAL with her hashes.
func TestRetentionKeptPersonsErasureSupersedesNothing(t *testing.T) {
	ctx := context.Background()
	clk := newClock(t0)
	var carol identity.ProfileID
	var comebackArmed, retentionArmed atomic.Bool
	var e *env
	store := comebackStore{MemStore: profile.NewMemStore(), pid: &carol, armed: &comebackArmed, comeback: func() {
		if err := e.c.Collect(ctx, privacy.Track{MessageID: "carol-back", UserID: "carol", Event: "Back", Timestamp: t0}); err != nil {
			t.Error(err)
		}
	}}
	jr := armedJournal{MemJournal: journal.NewMemJournal(), armed: &retentionArmed, hook: func() {
		rep, err := e.c.ApplyRetention(ctx, privacy.RetentionOptions{})
		t.Logf("retention run inside: %+v, %v", rep, err)
	}}
	e = newEnv(t, privacy.WithAuditLog(audit.NewMemLog()), privacy.WithJournal(jr), privacy.WithClock(clk.now), privacy.WithProfiles(store),
		privacy.WithRetention(privacy.RetentionPolicy{InactiveProfiles: 365 * 24 * time.Hour}))
	long := t0.Add(-400 * 24 * time.Hour)
	collectAt(t, e, clk, privacy.Identify{MessageID: "carol-0", UserID: "carol", Traits: map[string]any{"plan": "free"}, Timestamp: long})
	carol = e.profile(t, user("carol")).ID

	comebackArmed.Store(true)
	retentionArmed.Store(true)
	r, err := e.c.Rectify(ctx, user("carol"), map[string]any{"plan": "pro"})
	if err != nil {
		t.Fatal(err)
	}
	if retentionArmed.Load() || comebackArmed.Load() {
		t.Fatal("the scenario did not run as meant")
	}
	p := e.profile(t, user("carol")) // kept: she came back
	page, _ := jr.List(ctx, journal.Filter{Types: []privacy.RequestType{privacy.DeleteInternal}, Limit: 10})
	for _, x := range page.Entries {
		t.Logf("erasure %s: %s decided=%v delete=%v subjectHashes=%d subjects=%v reason=%q traits=%v backends=%+v", x.ID, x.Status, x.Decided, x.Decision.Delete, len(x.SubjectHashes), x.Subjects, x.Reason, x.Traits, x.Backends)
	}
	if got := p.Traits["plan"].Value; got != "pro" {
		t.Errorf("rectification %s ended %s (reason %q); carol, kept by the retention erasure, has plan=%v, want pro: the erasure that erased nothing superseded her rectification",
			r.ID, r.Status, journalReason(t, jr.MemJournal, r.ID), got)
	}
}

func journalReason(t *testing.T, jr *journal.MemJournal, id string) string {
	x, err := jr.Get(context.Background(), id)
	if err != nil {
		return err.Error()
	}
	return x.Reason
}

// failingCommitSupp is a suppression list whose transactions' Commit fails
// while failing is set: the first participant of a decision, so nothing
// of it commits (as when the host dies right after the decision record).
type failingCommitSupp struct {
	*suppression.MemList
	failing *atomic.Bool
}

func (l failingCommitSupp) Begin(ctx context.Context) (suppression.Tx, error) {
	tx, err := l.MemList.Begin(ctx)
	return failingCommitSuppTx{tx, l.failing}, err
}

type failingCommitSuppTx struct {
	suppression.Tx
	failing *atomic.Bool
}

func (tx failingCommitSuppTx) Commit(ctx context.Context) error {
	if tx.failing.Load() {
		tx.Tx.Rollback(ctx)
		return errors.New("suppression list down")
	}
	return tx.Tx.Commit(ctx)
}

// slowPruner is a profile store whose prunes take a while: a large
// store's run (thousands of pages, an erasure per inactive profile).
type slowPruner struct {
	*profile.MemStore
	pages *atomic.Int32
}

func (s slowPruner) Begin(ctx context.Context) (profile.Tx, error) {
	tx, err := s.MemStore.Begin(ctx)
	return slowPrunerTx{tx, s.pages}, err
}

type slowPrunerTx struct {
	profile.Tx
	pages *atomic.Int32
}

func (tx slowPrunerTx) PruneEvents(ctx context.Context, pids []identity.ProfileID, c profile.Cutoffs) ([]int, error) {
	tx.pages.Add(1)
	time.Sleep(300 * time.Millisecond)
	return tx.Tx.(profile.EventPruner).PruneEvents(ctx, pids, c)
}

// TestRunRecoversWhileRetentionRuns: host A decided a
// rectification, its commit failed, and A stopped. Host B runs Run, with
// Schedule.Recover at 20ms ("another host's requests wait at most a lease
// and a half"), and is applying its retention policy over many profiles
// when A's lease lapses. A's request must be taken over within a few
// recover periods; it waits for the whole retention run, because Run
// applies retention in the goroutine that recovers.
func TestRunRecoversWhileRetentionRuns(t *testing.T) {
	ctx := context.Background()
	h := newHosts()
	clkA, clkB := newClock(t0), newClock(t0)
	var failing atomic.Bool
	a := h.host(t, "host-a", clkA, privacy.WithSuppressions(failingCommitSupp{h.supp, &failing}))
	var msgs []privacy.Message
	for i := range 1000 {
		msgs = append(msgs, privacy.Track{MessageID: fmt.Sprint("m", i), UserID: fmt.Sprint("u", i), Event: "Viewed", Timestamp: t0.Add(-time.Hour)})
	}
	if err := a.CollectBatch(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	r, _ := a.Rectify(ctx, user("u7"), map[string]any{"plan": "pro"})
	failing.Store(false)
	if r == nil || r.Status != privacy.Running {
		t.Fatalf("Rectify = %+v; want decided, RUNNING", r)
	}
	a.Close() // host A stops

	var pages atomic.Int32
	b := h.host(t, "host-b", clkB, privacy.WithProfiles(slowPruner{h.profiles, &pages}),
		privacy.WithRetention(privacy.RetentionPolicy{Events: 24 * time.Hour}),
		privacy.WithSchedule(privacy.Schedule{Recover: 20 * time.Millisecond}))
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); b.Run(rctx) }()
	defer func() { cancel(); <-done }()
	for pages.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	clkB.set(t0.Add(2 * time.Minute)) // A's lease (a minute) lapsed
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if got, _ := b.Status(ctx, r.ID); got != nil && got.Status == privacy.Finished {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	got, _ := b.Status(ctx, r.ID)
	t.Errorf("a second after host A's lease lapsed (Recover every 20ms), its decided rectification is %s: host B's Run is inside its retention run (page %d of 10) and recovers nothing until that ends",
		got.Status, pages.Load())
}

// TestRetentionErasingInactiveKeepsSuppression: a suppressed
// person, never written since, is erased by retention; every identifier of
// theirs stays suppressed.
func TestRetentionErasingInactiveKeepsSuppression(t *testing.T) {
	ctx := context.Background()
	clk := newClock(t0)
	e := newEnv(t, privacy.WithClock(clk.now), privacy.WithRetention(privacy.RetentionPolicy{InactiveProfiles: 365 * 24 * time.Hour}))
	long := t0.Add(-400 * 24 * time.Hour)
	collectAt(t, e, clk, privacy.Identify{MessageID: "c1", UserID: "carol", AnonymousID: "carol-laptop", Timestamp: long})
	clk.set(long.Add(time.Hour))
	if _, err := e.c.Suppress(ctx, user("carol")); err != nil {
		t.Fatal(err)
	}
	clk.set(t0)
	rep, err := e.c.ApplyRetention(ctx, privacy.RetentionOptions{})
	if err != nil || rep.Erased != 1 {
		t.Fatalf("%+v %v", rep, err)
	}
	for _, m := range []privacy.Message{privacy.Track{MessageID: "c2", AnonymousID: "carol-laptop", Event: "V", Timestamp: t0},
		privacy.Track{MessageID: "c3", UserID: "carol", AnonymousID: "new-phone", Event: "V", Timestamp: t0}} {
		if err := e.c.Collect(ctx, m); !errors.Is(err, privacy.ErrSuppressed) {
			t.Errorf("%+v collected after retention erased suppressed carol: %v", m, err)
		}
	}
}

type failingPagePruner struct {
	*profile.MemStore
	heal *atomic.Bool
	fail *identity.ProfileID
}

func (s failingPagePruner) Begin(ctx context.Context) (profile.Tx, error) {
	tx, err := s.MemStore.Begin(ctx)
	return failingPagePrunerTx{tx, s}, err
}

type failingPagePrunerTx struct {
	profile.Tx
	s failingPagePruner
}

func (tx failingPagePrunerTx) PruneEvents(ctx context.Context, pids []identity.ProfileID, c profile.Cutoffs) ([]int, error) {
	for _, p := range pids {
		if p == *tx.s.fail && !tx.s.heal.Load() {
			return nil, errors.New("prune broken")
		}
	}
	return tx.Tx.(profile.EventPruner).PruneEvents(ctx, pids, c)
}

// TestRetentionHostWithoutPrunerLeavesStoppedRunToOthers: host A (its store
// prunes; policy: events a day) starts a run that stops on a store error,
// and A stops; its replica A2 runs on. Host B shares the database; its profile store is decorated (a tracing
// wrapper) and so no EventPruner, and it has no retention policy: it
// serves requests and runs Recover like every host. Each of B's recover
// rounds takes the run over and fails on it (ErrRetentionNotSupported),
// renewing B's claim, so A2 never gets it, and A2's Run starts no new
// run while it is unfinished: no event is pruned any more, for as long as
// B runs.
func TestRetentionHostWithoutPrunerLeavesStoppedRunToOthers(t *testing.T) {
	ctx := context.Background()
	h := newHosts()
	clk := newClock(t0)
	var heal atomic.Bool
	var fail identity.ProfileID
	a := h.host(t, "host-a", clk, privacy.WithProfiles(failingPagePruner{MemStore: h.profiles, heal: &heal, fail: &fail}),
		privacy.WithRetention(privacy.RetentionPolicy{Events: 24 * time.Hour}))
	b := h.host(t, "host-b", clk, privacy.WithProfiles(plainStore{h.profiles}))
	clk.set(t0.Add(-48 * time.Hour))
	if err := a.Collect(ctx, privacy.Track{MessageID: "old", UserID: "ada", Event: "Viewed", Timestamp: clk.now()}); err != nil {
		t.Fatal(err)
	}
	clk.set(t0)
	p, _ := a.Profile(ctx, user("ada"))
	fail = p.ID
	rep, err := a.ApplyRetention(ctx, privacy.RetentionOptions{})
	if err == nil || rep.Status != privacy.Running {
		t.Fatalf("%+v %v", rep, err)
	}
	heal.Store(true)
	a.Close() // host A stops; A2, a replica of it, runs on
	a2 := h.host(t, "host-a2", clk, privacy.WithProfiles(h.profiles), privacy.WithRetention(privacy.RetentionPolicy{Events: 24 * time.Hour}))
	var bErr error
	for range 20 { // 10 leases of rounds; Run's recover period is half a lease
		clk.advance(30 * time.Second)
		_, bErr = b.Recover(ctx)
		a2.Recover(ctx)
	}
	r, _ := a2.Status(ctx, rep.ID)
	if r.Status != privacy.Finished {
		t.Errorf("after 10 leases of recover rounds on both hosts the run is %s (B's Recover: %v); ada's expired event: %d left", r.Status, bErr, len(mustEvents(t, a2, user("ada"))))
	}
}
