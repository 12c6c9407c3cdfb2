package privacy_test

// Regression tests for defects a review of the rights protocol found (each was
// reproduced by the test before the fix).

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/profile"
)

// R10: a merge whose profile commit fails after the graph's leaves the absorbed
// profile's data in the store, unreachable; an erasure then leaves it behind.
func TestRegressionLostMergeCommitOrphansData(t *testing.T) {
	w := newWorld(t)
	c := w.controller(t)
	ctx := context.Background()
	if err := c.Collect(ctx, privacy.Track{AnonymousID: "ada-phone", Event: "Secret", Timestamp: at(0)}); err != nil {
		t.Fatal(err)
	}
	q, _ := w.graph.Lookup(ctx, anon("ada-phone"))
	if err := c.Collect(ctx, privacy.Identify{UserID: "ada", Traits: map[string]any{"plan": "pro"}, Timestamp: at(1)}); err != nil {
		t.Fatal(err)
	}
	w.f.arm("profiles.commit", 0)
	err := c.Collect(ctx, privacy.Identify{UserID: "ada", AnonymousID: "ada-phone", Timestamp: at(2)})
	w.f.disarm()
	t.Logf("merge collect: %v", err)
	if _, err := c.Erase(ctx, user("ada")); err != nil {
		t.Fatal(err)
	}
	_ = q
	pids, _ := w.profiles.IDs(ctx, "", 100)
	for _, pid := range pids {
		p, _ := w.profiles.Get(ctx, pid)
		page, _ := w.profiles.Events(ctx, pid, profile.EventQuery{})
		t.Errorf("after erasure, profile %s still stored: traits %v, %d events", pid, p.Traits, len(page.Events))
	}
}

// R11: an audience commit failing after the profile's: the retried message is a
// duplicate, so it is never delivered nor counted in audiences.
func TestRegressionAudienceCommitFailureLosesMessage(t *testing.T) {
	w := newWorld(t)
	c := w.controller(t)
	ctx := context.Background()
	define(t, c, "pro", `trait('plan') = 'pro'`)
	m := privacy.Identify{MessageID: "m1", UserID: "ada", Traits: map[string]any{"plan": "pro"}, Timestamp: at(0)}
	w.f.arm("audiences.commit", 0)
	err := c.Collect(ctx, m)
	w.f.disarm()
	t.Logf("first try: %v", err)
	if err := c.Collect(ctx, m); err != nil {
		t.Fatal(err)
	}
	// The audience backend is back: the next Refresh recomputes what it missed.
	if n, err := c.Refresh(ctx); err != nil || n != 1 {
		t.Fatalf("Refresh = %d, %v; want the one stale profile recomputed", n, err)
	}
	flush(t, c)
	if got := members(t, c, "pro"); len(got) != 1 {
		t.Errorf("members after Refresh = %v", got)
	}
	if n := len(w.rec.Messages()); n == 0 {
		t.Errorf("the message never reached the destination")
	}
}

// R12: SuppressWithDelete decided, identity commit failed: identifiers stay
// linked to an unsuppressed profile while their hashes are suppressed; the gate
// checks the profile and admits the person's messages until Recover.
func TestRegressionSuppressWithDeletePartialAdmits(t *testing.T) {
	w := newWorld(t)
	c := w.controller(t)
	ctx := context.Background()
	person(t, &env{c: c, graph: w.graph, profiles: w.profiles}, "ada")
	w.f.arm("identity.commit", 0)
	r, err := c.Apply(ctx, privacy.Request{Type: privacy.SuppressWithDelete, Subjects: []identity.ID{user("ada")}})
	w.f.disarm()
	t.Logf("apply: %s %v", r.Status, err)
	if s, _ := w.supp.Suppressed(ctx, w.hasher.ID(user("ada"))); !s {
		t.Fatal("suppression not committed")
	}
	if err := c.Collect(ctx, privacy.Track{UserID: "ada", Event: "After", Timestamp: at(9)}); !errors.Is(err, privacy.ErrSuppressed) {
		t.Errorf("identifier is in the list but collection got %v", err)
	}
}

// R13: Recover in a loop while erasures deliver: entries end FINISHED once and
// keep no clear data, deletions are not sent twice.
func TestRegressionRecoverLoopDuringErase(t *testing.T) {
	rec := destination.NewRecorder("crm")
	mj := journal.NewMemJournal()
	e := newEnv(t, privacy.WithJournal(mj), privacy.WithDestinations(rec), fastDelivery())
	ctx := context.Background()
	stop, wg := recoverLoop(e.c)
	const N = 300
	for i := 0; i < N; i++ {
		u := "u" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		e.collect(t, privacy.Identify{UserID: u, Timestamp: at(0)})
		if _, err := e.c.Erase(ctx, user(u)); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	flush(t, e.c)
	dels := len(rec.Deletions())
	_, calls := rec.Calls()
	un, _ := mj.Unfinished(ctx)
	t.Logf("deletions recorded %d, delete calls %d (want %d), unfinished %d", dels, calls, N, len(un))
	if calls != N || len(un) != 0 {
		t.Errorf("deletion calls %d for %d erasures; %d unfinished", calls, N, len(un))
	}
}

type picky struct{ first identity.ProfileID }

func (p *picky) Name() string                                      { return "picky" }
func (p *picky) Send(context.Context, []destination.Message) error { return nil }
func (p *picky) Delete(_ context.Context, d destination.Deletion) error {
	if d.ProfileID == p.first {
		return destination.ErrNotSupported
	}
	return errors.New("boom")
}

func TestRegressionNotSupportedMasksFailure(t *testing.T) {
	d := &picky{}
	e := newEnv(t, privacy.WithDestinations(d), fastDelivery())
	ctx := context.Background()
	a := person(t, e, "ada")
	person(t, e, "bob")
	d.first = a
	flush(t, e.c)
	r, err := e.c.Apply(ctx, privacy.Request{Type: privacy.DeleteOnly, Subjects: []identity.ID{user("ada"), user("bob")}})
	if err != nil {
		t.Fatal(err)
	}
	flush(t, e.c)
	f, _ := e.c.Status(ctx, r.ID)
	t.Logf("overall %s, destinations %+v", f.Status, f.Destinations)
	if f.Status == privacy.Finished {
		t.Errorf("bob's deletion failed at the only destination, overall FINISHED")
	}
}

type cancelAfterGraphCommit struct {
	identity.Graph
	cancel atomic.Pointer[context.CancelFunc]
}
type cagTx struct {
	identity.Tx
	g *cancelAfterGraphCommit
}

func (g *cancelAfterGraphCommit) Begin(ctx context.Context) (identity.Tx, error) {
	tx, err := g.Graph.Begin(ctx)
	return cagTx{tx, g}, err
}
func (tx cagTx) Commit(ctx context.Context) error {
	err := tx.Tx.Commit(ctx)
	if c := tx.g.cancel.Load(); c != nil {
		(*c)() // the caller's deadline expires right now
	}
	return err
}

func TestRegressionCancelledMergeOrphansData(t *testing.T) {
	g := &cancelAfterGraphCommit{Graph: identity.NewMemGraph()}
	e := newEnv(t, privacy.WithIdentity(g))
	ctx := context.Background()
	e.collect(t, privacy.Identify{AnonymousID: "ada-phone", Traits: map[string]any{"phone": "+33 6"}, Timestamp: at(0)})
	e.collect(t, privacy.Identify{UserID: "ada", Traits: map[string]any{"plan": "pro"}, Timestamp: at(1)})
	cctx, cancel := context.WithCancel(ctx)
	g.cancel.Store(&cancel)
	err := e.c.Collect(cctx, privacy.Identify{UserID: "ada", AnonymousID: "ada-phone", Timestamp: at(2)})
	g.cancel.Store(nil)
	t.Logf("merge: %v", err)
	if _, err := e.c.Erase(ctx, user("ada")); err != nil {
		t.Fatal(err)
	}
	pids, _ := e.profiles.IDs(ctx, "", 100)
	for _, pid := range pids {
		p, _ := e.profiles.Get(ctx, pid)
		t.Errorf("after erasure, profile %s still stored: %v", pid, p.Traits)
	}
}

// hookJournal calls hook after a successful Put (hook may be nil).
type hookJournal struct {
	journal.Journal
	mu   sync.Mutex
	hook func(ctx context.Context, e *journal.Entry)
}

func (j *hookJournal) Put(ctx context.Context, e *journal.Entry) error {
	if err := j.Journal.Put(ctx, e); err != nil {
		return err
	}
	j.mu.Lock()
	h := j.hook
	j.mu.Unlock()
	if h != nil {
		h(ctx, e.Clone())
	}
	return nil
}
func (j *hookJournal) set(h func(context.Context, *journal.Entry)) {
	j.mu.Lock()
	j.hook = h
	j.mu.Unlock()
}

// R1: Recover racing an Apply between its intent record and its lock re-runs the
// same request: a rectification is applied twice.
func TestRegressionRecoverDuringApplyDoubleApplies(t *testing.T) {
	rec := destination.NewRecorder("crm")
	j := &hookJournal{Journal: journal.NewMemJournal()}
	e := newEnv(t, privacy.WithJournal(j), privacy.WithDestinations(rec), fastDelivery())
	ctx := context.Background()
	person(t, e, "ada")
	v0 := e.profile(t, user("ada")).Metadata.Version
	var once sync.Once
	j.set(func(ctx context.Context, en *journal.Entry) {
		if en.Type == privacy.Rectify && en.Status == journal.StatusRunning && !en.Decided {
			once.Do(func() {
				n, err := e.c.Recover(context.Background())
				t.Logf("Recover inside the window: %d, %v", n, err)
			})
		}
	})
	r, err := e.c.Rectify(ctx, user("ada"), map[string]any{"plan": "free"})
	j.set(nil)
	if err != nil {
		t.Fatal(err)
	}
	flush(t, e.c)
	v := e.profile(t, user("ada")).Metadata.Version
	n := 0
	for _, m := range rec.Messages() {
		if m.MessageID == r.ID {
			n++
		}
	}
	t.Logf("version before %d, after %d, receipt version %d, rectify sends %d", v0, v, r.ProfileVersion, n)
	if v != v0+1 {
		t.Errorf("one rectification moved the version from %d to %d", v0, v)
	}
}

// R1b: the same with a plain concurrent Recover loop.
func TestRegressionRecoverLoopDuringApply(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	person(t, e, "ada")
	v0 := e.profile(t, user("ada")).Metadata.Version
	stop, wg := recoverLoop(e.c)
	const N = 2000
	for i := 0; i < N; i++ {
		if _, err := e.c.Rectify(ctx, user("ada"), map[string]any{"n": i}); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	v := e.profile(t, user("ada")).Metadata.Version
	if v != v0+N {
		t.Errorf("%d rectifications moved the version by %d", N, v-v0)
	}
}

// R2: a decided rectification left to Recover, redone after an erasure,
// resurrects the erased profile and sends its traits downstream.
func TestRegressionRecoverRectifyResurrects(t *testing.T) {
	w := newWorld(t)
	c := w.controller(t)
	ctx := context.Background()
	define(t, c, "pro", `trait('plan') = 'pro'`)
	pid := person(t, &env{c: c, graph: w.graph, profiles: w.profiles}, "ada")
	w.f.arm("audiences.commit", 0)
	r, err := c.Rectify(ctx, user("ada"), map[string]any{"plan": "free", "phone": "+33 6 12 34 56 78"})
	w.f.disarm()
	if err == nil || r.Status != privacy.Running {
		t.Fatalf("want decided-not-committed, got %+v %v", r, err)
	}
	if _, err := c.Erase(ctx, user("ada")); err != nil {
		t.Fatal(err)
	}
	flush(t, c)
	if _, err := w.profiles.Get(ctx, pid); err == nil {
		t.Fatal("erase did not delete")
	}
	w.rec.Reset()
	if n, err := c.Recover(ctx); err != nil {
		t.Fatal(n, err)
	}
	flush(t, c)
	if p, err := w.profiles.Get(ctx, pid); err == nil {
		t.Errorf("erased profile %s is back after Recover, traits %v", pid, p.Traits)
	}
	for _, m := range w.rec.Messages() {
		t.Logf("sent after erasure: %+v", m)
	}
}

// R3: Recover re-applies a rectification's absolute metadata: the version goes down.
func TestRegressionRecoverRectifyVersionGoesDown(t *testing.T) {
	w := newWorld(t)
	c := w.controller(t)
	ctx := context.Background()
	define(t, c, "pro", `trait('plan') = 'pro'`)
	person(t, &env{c: c, graph: w.graph, profiles: w.profiles}, "ada")
	w.f.arm("audiences.commit", 0)
	_, err := c.Rectify(ctx, user("ada"), map[string]any{"plan": "free"})
	w.f.disarm()
	if err == nil {
		t.Fatal("want commit failure")
	}
	if err := c.Collect(ctx, privacy.Identify{UserID: "ada", Traits: map[string]any{"x": 1}, Timestamp: at(50)}); err != nil {
		t.Fatal(err)
	}
	m1, _ := c.Metadata(ctx, user("ada"))
	if _, err := c.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	m2, _ := c.Metadata(ctx, user("ada"))
	t.Logf("version before Recover %d, after %d; LastMessageID %q -> %q", m1.Version, m2.Version, m1.LastMessageID, m2.LastMessageID)
	if m2.Version < m1.Version {
		t.Errorf("version went down from %d to %d", m1.Version, m2.Version)
	}
}

// R4: a context cancelled once the decision is journaled leaves the decided
// suppression uncommitted; collection goes on.
func TestRegressionCancelAfterDecision(t *testing.T) {
	j := &hookJournal{Journal: journal.NewMemJournal()}
	e := newEnv(t, privacy.WithJournal(j))
	person(t, e, "ada")
	ctx, cancel := context.WithCancel(context.Background())
	j.set(func(_ context.Context, en *journal.Entry) {
		if en.Decided {
			cancel()
		}
	})
	r, err := e.c.Suppress(ctx, user("ada"))
	j.set(nil)
	t.Logf("Suppress = %s, %v", r.Status, err)
	if err := e.c.Collect(context.Background(), privacy.Track{UserID: "ada", Event: "After", Timestamp: at(9)}); !errors.Is(err, privacy.ErrSuppressed) {
		t.Errorf("after a decided suppression, collection got %v", err)
	}
}

// R5: the reason of a failed rectification names the person in clear, in the
// journal and the append-only audit log.
func TestRegressionReasonLeaksIdentifier(t *testing.T) {
	al := audit.NewMemLog()
	mj := journal.NewMemJournal()
	e := newEnv(t, privacy.WithAuditLog(al), privacy.WithJournal(mj))
	ctx := context.Background()
	r, err := e.c.Rectify(ctx, email("secret.person@example.com"), map[string]any{"plan": "x"})
	t.Logf("err %v", err)
	je, _ := mj.Get(ctx, r.ID)
	if strings.Contains(je.Reason, "secret.person") {
		t.Errorf("journal keeps %q", je.Reason)
	}
	recs, _ := al.Records(ctx, 0, 100)
	for _, rc := range recs {
		if strings.Contains(rc.Detail, "secret.person") {
			t.Errorf("audit record %q keeps %q", rc.Action, rc.Detail)
		}
	}
}

// R6: an extension made while destinations are pending is overwritten by the
// tracker's copy of the entry.
func TestRegressionExtendLostWhileDelivering(t *testing.T) {
	hang := &hanging{release: make(chan struct{})}
	e := newEnv(t, privacy.WithDestinations(hang), privacy.WithDelivery(privacy.Delivery{Timeout: time.Hour}))
	ctx := context.Background()
	person(t, e, "ada")
	flushAsync := func() {}
	_ = flushAsync
	close(hang.release) // let earlier sends go
	flush(t, e.c)
	hang.release = make(chan struct{})
	r, err := e.c.Erase(ctx, user("ada"))
	if err != nil {
		t.Fatal(err)
	}
	ext, err := e.c.Extend(ctx, r.ID, 2, "complex")
	if err != nil {
		t.Fatal(err)
	}
	close(hang.release)
	flush(t, e.c)
	final, _ := e.c.Status(ctx, r.ID)
	if !final.Due.Equal(ext.Due) || final.ExtensionReason == "" {
		t.Errorf("extension lost: due %v (extended to %v), reason %q, status %s", final.Due, ext.Due, final.ExtensionReason, final.Status)
	}
}

// R7: Extend by an absurd number of months overflows and is accepted.
func TestRegressionExtendOverflow(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r, _ := e.c.Erase(ctx, user("nobody"))
	ext, err := e.c.Extend(ctx, r.ID, math.MaxInt, "why not")
	if err == nil {
		t.Errorf("accepted: due %v (received %v)", ext.Due, ext.Received)
	}
	if _, err := e.c.Extend(ctx, "req_nope", 1, "x"); !errors.Is(err, privacy.ErrNotFound) {
		t.Errorf("Extend(unknown) = %v, not ErrNotFound", err)
	}
}

var _ = identity.ID{}

// After SUPPRESS_WITH_DELETE the profile is gone; UNSUPPRESS still lifts every
// identifier that was suppressed with the one it names.
func TestRegressionUnsuppressAfterSuppressWithDelete(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	person(t, e, "ada")
	if _, err := e.c.Apply(ctx, privacy.Request{Type: privacy.SuppressWithDelete, Subjects: []identity.ID{user("ada")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Unsuppress(ctx, user("ada")); err != nil {
		t.Fatal(err)
	}
	for _, m := range []privacy.Message{
		privacy.Track{UserID: "ada", Event: "Back", Timestamp: at(9)},
		privacy.Track{AnonymousID: "ada-phone", Event: "Back", Timestamp: at(9)},
		privacy.Identify{UserID: "ada", AnonymousID: "ada-laptop", Timestamp: at(10)},
	} {
		if err := e.c.Collect(ctx, m); err != nil {
			t.Errorf("after Unsuppress: %+v -> %v", m, err)
		}
	}
}

// recoverLoop runs Recover over and over until stop is closed, as a crash
// recovery job racing live requests would; wait on wg after closing stop.
func recoverLoop(c *privacy.Controller) (chan struct{}, *sync.WaitGroup) {
	stop := make(chan struct{})
	wg := &sync.WaitGroup{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			c.Recover(context.Background())
		}
	}()
	return stop, wg
}

// quotingDestination fails every deletion with an error that quotes the
// identifiers it was given, as real APIs do ("no user a@b.c").
type quotingDestination struct{}

func (quotingDestination) Name() string                                      { return "quoting" }
func (quotingDestination) Send(context.Context, []destination.Message) error { return nil }
func (quotingDestination) Delete(_ context.Context, d destination.Deletion) error {
	var vals []string
	for _, id := range d.IDs {
		vals = append(vals, id.Value)
	}
	return fmt.Errorf("no such user: %s", strings.Join(vals, ", "))
}

// TestReceiptsDoNotQuoteIdentifiers checks that error texts kept in receipts
// name people by keyed hash, not by the clear identifiers a destination or a
// validation error quoted: receipts outlive the clear data.
func TestReceiptsDoNotQuoteIdentifiers(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, privacy.WithDestinations(quotingDestination{}), fastDelivery())
	person(t, e, "ada")
	r, err := e.c.Erase(ctx, user("ada"))
	if err != nil {
		t.Fatal(err)
	}
	flush(t, e.c)
	final, err := e.c.Status(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(final.Destinations) != 1 || final.Destinations[0].Status != privacy.Failed {
		t.Fatalf("destination outcomes = %+v, want one FAILED", final.Destinations)
	}
	msg := final.Destinations[0].Err
	if strings.Contains(msg, "ada") || !strings.Contains(msg, "no such user: [user_id ") {
		t.Errorf("outcome error = %q: want the identifiers replaced by keyed hashes", msg)
	}

	// A backend error quoting the person, before the decision: FAILED, and the
	// reason names them by hash.
	e2 := newEnv(t, privacy.WithProfiles(quotingProfiles{profile.NewMemStore()}))
	person(t, e2, "grace")
	failed, err := e2.c.Erase(ctx, user("grace"))
	if err == nil && failed.Status != privacy.Failed {
		t.Fatalf("erasure with a failing profile store: %+v", failed)
	}
	if failed == nil || strings.Contains(failed.Reason, "grace") || !strings.Contains(failed.Reason, "[user_id ") {
		t.Errorf("FAILED reason = %+v: want the identifier replaced by its keyed hash", failed)
	}
}

// quotingProfiles is a profile store whose deletions fail with an error that
// quotes the person.
type quotingProfiles struct{ profile.Store }

type quotingProfilesTx struct{ profile.Tx }

func (s quotingProfiles) Begin(ctx context.Context) (profile.Tx, error) {
	tx, err := s.Store.Begin(ctx)
	return quotingProfilesTx{tx}, err
}

func (quotingProfilesTx) Delete(context.Context, identity.ProfileID) error {
	return errors.New("refusing to delete the profile of user grace")
}
