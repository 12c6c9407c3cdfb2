package privacy_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/profile"
)

// retentionEnv is a Controller on inspectable memory backends with a
// retention policy: events kept 30 days, the "crm" source's 2 days, the
// "ledger" source's for ever.
func retentionEnv(t *testing.T, clk *clock, extra ...privacy.Option) (*env, *audit.MemLog, *journal.MemJournal) {
	t.Helper()
	log, jr := audit.NewMemLog(), journal.NewMemJournal()
	opts := append([]privacy.Option{privacy.WithAuditLog(log), privacy.WithJournal(jr), privacy.WithClock(clk.now),
		privacy.WithRetention(privacy.RetentionPolicy{Events: 30 * 24 * time.Hour,
			Sources: map[string]time.Duration{"crm": 48 * time.Hour, "ledger": 0}})}, extra...)
	return newEnv(t, opts...), log, jr
}

// track is a track by u from source src, stamped at, and collected then:
// collectAt collects it with the clock at its timestamp (the Controller
// stamps an event's ReceivedAt with its clock).
func trackFrom(u, id, src string, at time.Time) privacy.Track {
	return privacy.Track{MessageID: id, UserID: u, Event: "Viewed", Source: src, Timestamp: at,
		Properties: map[string]any{"secret": "value-of-" + id}}
}

// collectAt collects each message with the clock at its timestamp, then
// sets the clock back.
func collectAt(t *testing.T, e *env, clk *clock, msgs ...privacy.Message) {
	t.Helper()
	was := clk.now()
	for _, m := range msgs {
		switch m := m.(type) {
		case privacy.Track:
			clk.set(m.Timestamp)
		case privacy.Identify:
			clk.set(m.Timestamp)
		}
		e.collect(t, m)
	}
	clk.set(was)
}

func eventIDs(evs []profile.Event) []string {
	out := []string{}
	for _, e := range evs {
		out = append(out, e.MessageID)
	}
	slices.Sort(out)
	return out
}

// TestRetentionDeletesWhatThePolicySays: the events collected longer ago
// than their source's period go (the global one for sources not listed, a
// source listed with 0 kept for ever), whatever their timestamps say;
// traits stay; a resend of a deleted message is still a duplicate; the
// run is FINISHED in the journal, audited with its policy and counts and
// without anyone's identifiers; a second run finds nothing.
func TestRetentionDeletesWhatThePolicySays(t *testing.T) {
	ctx := context.Background()
	clk := newClock(t0)
	e, log, _ := retentionEnv(t, clk)
	now := t0
	collectAt(t, e, clk,
		privacy.Identify{MessageID: "i1", UserID: "ada", Traits: map[string]any{"plan": "pro"}, Timestamp: now.Add(-90 * 24 * time.Hour)},
		trackFrom("ada", "web-old", "web", now.Add(-31*24*time.Hour)),
		trackFrom("ada", "web-new", "web", now.Add(-29*24*time.Hour)),
		trackFrom("ada", "crm-old", "crm", now.Add(-3*24*time.Hour)),
		trackFrom("ada", "crm-new", "crm", now.Add(-24*time.Hour)),
		trackFrom("ada", "ledger-old", "ledger", now.Add(-400*24*time.Hour)),
		trackFrom("bob", "bob-old", "", now.Add(-40*24*time.Hour)),
	)
	// Sent long ago by its clock, collected now: kept.
	e.collect(t, privacy.Track{MessageID: "web-late", UserID: "bob", Event: "Viewed", Timestamp: now.Add(-100 * 24 * time.Hour)})

	dry, err := e.c.ApplyRetention(ctx, privacy.RetentionOptions{DryRun: true})
	if err != nil || dry.Events != 3 || dry.Pruned != 2 || dry.ID != "" || dry.Status != privacy.Finished {
		t.Fatalf("dry run = %+v, %v; want 3 events of 2 profiles, no id, FINISHED", dry, err)
	}
	if got := eventIDs(e.events(t, user("ada"))); len(got) != 5 {
		t.Fatalf("after the dry run ada has events %v, want all 5", got)
	}
	if rs, _ := log.Records(ctx, 0, 100); len(rs) != 0 {
		t.Fatalf("a dry run audited %d records, want none", len(rs))
	}

	var pages []int
	rep, err := e.c.ApplyRetention(ctx, privacy.RetentionOptions{Progress: func(r privacy.RetentionReport) { pages = append(pages, r.Profiles) }})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Events != 3 || rep.Pruned != 2 || rep.Profiles != 2 || rep.Status != privacy.Finished || !strings.HasPrefix(rep.ID, "req_") {
		t.Errorf("report = %+v; want 3 events of 2 profiles deleted, FINISHED, a request id", rep)
	}
	if !slices.Equal(pages, []int{2}) {
		t.Errorf("progress after pages: %v, want [2]", pages)
	}
	if got, want := eventIDs(e.events(t, user("ada"))), []string{"crm-new", "ledger-old", "web-new"}; !slices.Equal(got, want) {
		t.Errorf("ada's events after retention: %v, want %v", got, want)
	}
	if got, want := eventIDs(e.events(t, user("bob"))), []string{"web-late"}; !slices.Equal(got, want) {
		t.Errorf("bob's events after retention: %v, want %v", got, want)
	}
	if p := e.profile(t, user("ada")); p.Traits["plan"].Value != "pro" {
		t.Errorf("ada's traits after retention: %v; want plan kept", p.Traits)
	}
	e.collect(t, trackFrom("ada", "web-old", "web", now)) // a resend
	if got := eventIDs(e.events(t, user("ada"))); slices.Contains(got, "web-old") {
		t.Errorf("a resend of a deleted message was stored again: %v", got)
	}

	r, err := e.c.Status(ctx, rep.ID)
	if err != nil || r.Status != privacy.Finished || r.Type != privacy.Retention {
		t.Fatalf("Status(run) = %+v, %v; want a FINISHED RETENTION", r, err)
	}
	rs, err := log.Records(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, rec := range rs {
		if rec.RequestID != rep.ID {
			continue
		}
		actions = append(actions, rec.Action+":"+rec.Status)
		if len(rec.Subjects) != 0 || strings.Contains(rec.Detail, "ada") || strings.Contains(rec.Detail, "value-of") {
			t.Errorf("the run's audit record %+v names someone", rec)
		}
	}
	if want := []string{"received:RUNNING", "finished:FINISHED"}; !slices.Equal(actions, want) {
		t.Errorf("the run's audit records: %v, want %v", actions, want)
	}
	if i := slices.IndexFunc(rs, func(r audit.Record) bool { return r.Action == "finished" && r.RequestID == rep.ID }); i < 0 ||
		!strings.Contains(rs[i].Detail, "3 events deleted of 2 profiles") {
		t.Errorf("the run's end does not count what it deleted: %+v", rs)
	}
	if n, err := e.c.VerifyAudit(ctx); err != nil || n == 0 {
		t.Errorf("VerifyAudit = %d, %v", n, err)
	}
	again, err := e.c.ApplyRetention(ctx, privacy.RetentionOptions{})
	if err != nil || again.Events != 0 {
		t.Errorf("a second run = %+v, %v; want nothing deleted", again, err)
	}
}

// TestRetentionPolicyRefused: bad policies are refused by New, naming what
// is wrong.
func TestRetentionPolicyRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    privacy.RetentionPolicy
		want string
	}{
		{"negative", privacy.RetentionPolicy{Events: -time.Hour}, "policy Events"},
		{"nanoseconds", privacy.RetentionPolicy{Events: 30}, "unit mistake"},
		{"source under a minute", privacy.RetentionPolicy{Sources: map[string]time.Duration{"web": time.Second}}, `policy Sources[web]`},
		{"empty source", privacy.RetentionPolicy{Sources: map[string]time.Duration{"": time.Hour}}, "source id is empty"},
		{"bad UTF-8 source", privacy.RetentionPolicy{Sources: map[string]time.Duration{"\xff": time.Hour}}, "not valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := privacy.New(privacy.WithRetention(tc.p))
			if err == nil {
				c.Close()
				t.Fatalf("New accepted %+v", tc.p)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "WithRetention") {
				t.Errorf("New(%+v) = %v; want it to name %q", tc.p, err, tc.want)
			}
		})
	}
}

// TestRetentionWithoutPolicyDoesNothing: no policy, no run, nothing journaled.
func TestRetentionWithoutPolicyDoesNothing(t *testing.T) {
	jr := journal.NewMemJournal()
	e := newEnv(t, privacy.WithJournal(jr))
	e.collect(t, trackFrom("ada", "old", "", t0.Add(-1000*24*time.Hour))) // collected at t0: policy or not, nothing expires
	rep, err := e.c.ApplyRetention(context.Background(), privacy.RetentionOptions{})
	if err != nil || rep.Events != 0 || rep.ID != "" {
		t.Fatalf("ApplyRetention without a policy = %+v, %v; want nothing", rep, err)
	}
	if got := eventIDs(e.events(t, user("ada"))); len(got) != 1 {
		t.Errorf("events after a run without policy: %v", got)
	}
	if es, _ := jr.List(context.Background(), journal.Filter{Limit: 10}); len(es.Entries) != 0 {
		t.Errorf("a run without a policy journaled %d entries", len(es.Entries))
	}
}

// failingPruner fails PruneEvents for the profile named, until healed.
type failingPruner struct {
	*profile.MemStore
	fail  identity.ProfileID
	heal  *bool
	calls *int
}

func (s failingPruner) Begin(ctx context.Context) (profile.Tx, error) {
	tx, err := s.MemStore.Begin(ctx)
	return failingPrunerTx{tx, s}, err
}

type failingPrunerTx struct {
	profile.Tx
	s failingPruner
}

var errPruneBroken = errors.New("prune broken")

func (tx failingPrunerTx) PruneEvents(ctx context.Context, pids []identity.ProfileID, c profile.Cutoffs) ([]int, error) {
	*tx.s.calls++
	if slices.Contains(pids, tx.s.fail) && !*tx.s.heal {
		return nil, errPruneBroken
	}
	return tx.Tx.(profile.EventPruner).PruneEvents(ctx, pids, c)
}

// TestRetentionStoppedRunIsFinishedByRecover: a run a backend failure
// stops stays RUNNING (what it deleted is deleted: not FAILED), and Recover
// finishes it with the cutoffs it journaled, though the clock moved on: it
// deletes nothing the policy would only delete later.
func TestRetentionStoppedRunIsFinishedByRecover(t *testing.T) {
	ctx := context.Background()
	clk := newClock(t0)
	heal, calls := false, 0
	mem := profile.NewMemStore()
	store := failingPruner{MemStore: mem, heal: &heal, calls: &calls}
	e, _, jr := retentionEnv(t, clk, privacy.WithProfiles(store))
	collectAt(t, e, clk, trackFrom("ada", "a-old", "", t0.Add(-31*24*time.Hour)), trackFrom("ada", "a-edge", "", t0.Add(-29*24*time.Hour)),
		trackFrom("bob", "b-old", "", t0.Add(-31*24*time.Hour)))
	bob, err := e.c.Profile(ctx, user("bob"))
	if err != nil {
		t.Fatal(err)
	}
	store.fail = bob.ID
	e.c.Close()
	e2, _, _ := retentionEnv(t, clk, privacy.WithProfiles(store), privacy.WithJournal(jr), privacy.WithIdentity(e.graph))
	rep, err := e2.c.ApplyRetention(ctx, privacy.RetentionOptions{})
	if !errors.Is(err, errPruneBroken) || rep.Status != privacy.Running {
		t.Fatalf("ApplyRetention with a broken store = %+v, %v; want RUNNING and the store's error", rep, err)
	}
	if r, err := e2.c.Status(ctx, rep.ID); err != nil || r.Status != privacy.Running {
		t.Fatalf("the stopped run is %+v, %v; want RUNNING", r, err)
	}
	heal = true
	clk.advance(2 * 24 * time.Hour) // a-edge would expire now; the run cut 30 days before its start
	if n, err := e2.c.Recover(ctx); n != 1 || err != nil {
		t.Fatalf("Recover = %d, %v; want the run finished", n, err)
	}
	if r, err := e2.c.Status(ctx, rep.ID); err != nil || r.Status != privacy.Finished {
		t.Fatalf("after Recover the run is %+v, %v; want FINISHED", r, err)
	}
	if got := eventIDs(e2.events(t, user("bob"))); len(got) != 0 {
		t.Errorf("bob's events after the recovered run: %v, want none", got)
	}
	if got, want := eventIDs(e2.events(t, user("ada"))), []string{"a-edge"}; !slices.Equal(got, want) {
		t.Errorf("ada's events after the recovered run: %v, want %v (the run's own cutoffs)", got, want)
	}
}

// TestRunAppliesRetention: Run applies the policy at once and on its
// schedule.
func TestRunAppliesRetention(t *testing.T) {
	clk := newClock(t0)
	e, _, _ := retentionEnv(t, clk, privacy.WithSchedule(privacy.Schedule{Retention: 10 * time.Millisecond}))
	collectAt(t, e, clk, trackFrom("ada", "old", "", t0.Add(-31*24*time.Hour)), trackFrom("ada", "new", "", t0))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.c.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(e.events(t, user("ada"))) != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := eventIDs(e.events(t, user("ada"))); !slices.Equal(got, []string{"new"}) {
		t.Errorf("after Run's first round ada's events are %v, want [new]", got)
	}
	clk.advance(31 * 24 * time.Hour) // "new" expires on the next tick
	for len(e.events(t, user("ada"))) != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := eventIDs(e.events(t, user("ada"))); len(got) != 0 {
		t.Errorf("Run did not apply the policy again on its schedule: %v", got)
	}
}

// comebackStore calls comeback once, when armed, as the store is asked
// for pid's metadata outside any transaction (the retention scan), after
// reading it: the person comes back between the scan and the erasure.
type comebackStore struct {
	*profile.MemStore
	pid      *identity.ProfileID
	armed    *atomic.Bool
	comeback func()
}

func (s comebackStore) Metadata(ctx context.Context, pid identity.ProfileID) (profile.Metadata, error) {
	md, err := s.MemStore.Metadata(ctx, pid)
	if pid == *s.pid && s.armed.CompareAndSwap(true, false) {
		s.comeback()
	}
	return md, err
}

// TestRetentionErasesInactiveProfiles: a profile written last longer ago
// than the policy allows is erased (internally: the person is not
// suppressed, and comes back afresh), by a DELETE_INTERNAL request of its
// own that the journal and audit log keep; an active one is kept; one
// whose person came back between the scan and the erasure is kept, with
// what they sent (the erasure checks again under their locks). A dry run
// counts and erases nothing.
func TestRetentionErasesInactiveProfiles(t *testing.T) {
	ctx := context.Background()
	clk := newClock(t0)
	var carol identity.ProfileID
	var armed atomic.Bool
	var e *env
	store := comebackStore{MemStore: profile.NewMemStore(), pid: &carol, armed: &armed, comeback: func() {
		if err := e.c.Collect(ctx, privacy.Track{MessageID: "carol-back", UserID: "carol", Event: "Back", Timestamp: t0}); err != nil {
			t.Error(err)
		}
	}}
	log, jr := audit.NewMemLog(), journal.NewMemJournal()
	e = newEnv(t, privacy.WithAuditLog(log), privacy.WithJournal(jr), privacy.WithClock(clk.now), privacy.WithProfiles(store),
		privacy.WithRetention(privacy.RetentionPolicy{InactiveProfiles: 365 * 24 * time.Hour}))
	long := t0.Add(-400 * 24 * time.Hour)
	collectAt(t, e, clk, trackFrom("ada", "ada-1", "", long), trackFrom("bob", "bob-1", "", long), trackFrom("carol", "carol-1", "", long),
		trackFrom("bob", "bob-2", "", t0.Add(-10*24*time.Hour)))
	p, err := e.c.Profile(ctx, user("carol"))
	if err != nil {
		t.Fatal(err)
	}
	carol = p.ID

	dry, err := e.c.ApplyRetention(ctx, privacy.RetentionOptions{DryRun: true})
	if err != nil || dry.Erased != 2 {
		t.Fatalf("dry run = %+v, %v; want ada and carol counted", dry, err)
	}
	if _, err := e.c.Profile(ctx, user("ada")); err != nil {
		t.Fatalf("after the dry run ada is gone: %v", err)
	}
	armed.Store(true)
	rep, err := e.c.ApplyRetention(ctx, privacy.RetentionOptions{})
	if err != nil || rep.Erased != 1 || rep.Status != privacy.Finished {
		t.Fatalf("ApplyRetention = %+v, %v; want ada erased, FINISHED", rep, err)
	}
	if armed.Load() {
		t.Fatal("the scan never read carol's metadata: the test did not run as meant")
	}
	if _, err := e.c.Profile(ctx, user("ada")); !errors.Is(err, privacy.ErrNotFound) {
		t.Errorf("ada, inactive for 400 days, is still there: %v", err)
	}
	for _, u := range []string{"bob", "carol"} {
		if _, err := e.c.Profile(ctx, user(u)); err != nil {
			t.Errorf("%s, active, was erased: %v", u, err)
		}
	}
	if got, want := eventIDs(e.events(t, user("carol"))), []string{"carol-1", "carol-back"}; !slices.Equal(got, want) {
		t.Errorf("carol's events after the run: %v, want %v", got, want)
	}
	page, err := jr.List(ctx, journal.Filter{Types: []privacy.RequestType{privacy.DeleteInternal}, Limit: 10})
	if err != nil || len(page.Entries) != 2 {
		t.Fatalf("the journal holds %d DELETE_INTERNAL requests (%v), want one for ada and one for carol", len(page.Entries), err)
	}
	for _, en := range page.Entries {
		if en.Status != privacy.Finished || !en.InactiveBefore.Equal(t0.Add(-365*24*time.Hour)) {
			t.Errorf("the erasure %s is %s with the condition %v; want FINISHED, the run's cutoff", en.ID, en.Status, en.InactiveBefore)
		}
	}
	// Not suppressed: ada comes back afresh.
	e.collect(t, trackFrom("ada", "ada-new", "", t0))
	if got := eventIDs(e.events(t, user("ada"))); !slices.Equal(got, []string{"ada-new"}) {
		t.Errorf("ada, back after her erasure, has events %v; want only the new one", got)
	}
}

// One WithRetention Option serves several New calls at once (tests and
// hosts build their options once): it kept its copy of the policy by
// writing into the policy it captured, a data race under -race when two
// Controllers were made with it together. It copies the caller's map when
// made: a change to the map afterwards changes nothing.
func TestRetentionOptionServesConcurrentNews(t *testing.T) {
	sources := map[string]time.Duration{"crm": 48 * time.Hour}
	opt := privacy.WithRetention(privacy.RetentionPolicy{Events: 30 * 24 * time.Hour, Sources: sources})
	done := make(chan error, 4)
	for range 4 {
		go func() {
			c, err := privacy.New(opt)
			if err == nil {
				err = c.Close()
			}
			done <- err
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	sources["crm"] = -time.Hour // the caller's map, changed after the fact to what WithRetention refuses
	c, err := privacy.New(opt)
	if err != nil {
		t.Fatalf("New with the policy the Option copied returned %v; want the policy as given (its source's 48h)", err)
	}
	c.Close()
}
