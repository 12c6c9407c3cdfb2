package privacy_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/export"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/internal/faultinject"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/suppression"
)

// hosts are Controllers over one set of in-memory backends, as instances
// sharing a database are: each with its own instance name and clock.
type hosts struct {
	graph    *identity.MemGraph
	profiles *profile.MemStore
	auds     *audience.MemStore
	supp     *suppression.MemList
	mem      *journal.MemJournal
	journal  *hookedJournal
	audit    *audit.MemLog
	outbox   *outbox.MemStore // what the destinations are owed, shared as a database is
}

func newHosts() *hosts {
	mem := journal.NewMemJournal()
	return &hosts{graph: identity.NewMemGraph(), profiles: profile.NewMemStore(), auds: audience.NewMemStore(),
		supp: suppression.NewMemList(), mem: mem, journal: &hookedJournal{Journal: mem}, audit: audit.NewMemLog(),
		outbox: outbox.NewMemStore()}
}

// host builds a Controller named instance over the shared backends.
func (h *hosts) host(t *testing.T, instance string, clk *clock, opts ...privacy.Option) *privacy.Controller {
	t.Helper()
	c, err := privacy.New(append([]privacy.Option{
		privacy.WithIdentity(h.graph), privacy.WithProfiles(h.profiles), privacy.WithAudiences(h.auds),
		privacy.WithSuppressions(h.supp), privacy.WithJournal(h.journal), privacy.WithAuditLog(h.audit), privacy.WithOutbox(h.outbox),
		privacy.WithKey(worldKey), privacy.WithInstance(instance), privacy.WithClock(clk.now),
		privacy.WithLease(time.Minute), fastDelivery(), testLimits,
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// erasingAtA starts host A over h, with a destination that waits at the
// returned gate, and has it erase ada: the erasure stays RUNNING, held by A,
// until the gate opens. opts are A's, after the others.
func (h *hosts) erasingAtA(t *testing.T, opts ...privacy.Option) (a *privacy.Controller, clkA *clock, g *gate, r *privacy.Receipt) {
	t.Helper()
	g, clkA = newGate(), newClock(t0)
	a = h.host(t, "host-a", clkA, append([]privacy.Option{privacy.WithDestinations(g)}, opts...)...)
	person(t, &env{c: a, graph: h.graph, profiles: h.profiles}, "ada")
	r, err := a.Erase(context.Background(), user("ada"))
	if err != nil || r.Status != privacy.Running {
		t.Fatalf("Erase = %+v, %v; want RUNNING while the destination waits", r, err)
	}
	return a, clkA, g, r
}

// hookedJournal runs the hooks it is given around the journal's calls.
type hookedJournal struct {
	journal.Journal
	mu sync.Mutex
	// afterGet runs after a Get returns the entry; beforePut decides whether
	// a Put fails (a non-nil error) before it reaches the journal.
	afterGet  func(*journal.Entry)
	beforePut func(context.Context, *journal.Entry) error
}

func (j *hookedJournal) hooks() (func(*journal.Entry), func(context.Context, *journal.Entry) error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.afterGet, j.beforePut
}

func (j *hookedJournal) set(afterGet func(*journal.Entry), beforePut func(context.Context, *journal.Entry) error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.afterGet, j.beforePut = afterGet, beforePut
}

func (j *hookedJournal) Get(ctx context.Context, id string) (*journal.Entry, error) {
	e, err := j.Journal.Get(ctx, id)
	if after, _ := j.hooks(); err == nil && after != nil {
		after(e.Clone())
	}
	return e, err
}

func (j *hookedJournal) Put(ctx context.Context, e *journal.Entry) error {
	if _, before := j.hooks(); before != nil {
		if err := before(ctx, e); err != nil {
			return err
		}
	}
	return j.Journal.Put(ctx, e)
}

// gate is a destination whose deletions wait until it is opened.
type gate struct {
	*destination.Recorder
	open chan struct{}
}

func newGate() *gate {
	return &gate{Recorder: destination.NewRecorder("crm"), open: make(chan struct{})}
}

func (g *gate) Delete(ctx context.Context, d destination.Deletion) error {
	select {
	case <-g.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Recorder.Delete(ctx, d)
}

// waitFor polls cond until it holds, or fails the test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

func statusOf(t *testing.T, j journal.Journal, id string) *journal.Entry {
	t.Helper()
	e, err := j.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestExtendNeverUndoesTheEnd: an Extend that read a request while its
// deletion was still being delivered, and writes after the request finished,
// must not bring it back to RUNNING, nor its identifiers back in clear.
// (Extend used to write back the whole entry it had read.)
func TestExtendNeverUndoesTheEnd(t *testing.T) {
	h := newHosts()
	g := newGate()
	c := h.host(t, "host-a", newClock(t0), privacy.WithDestinations(g))
	ctx := context.Background()
	person(t, &env{c: c, graph: h.graph, profiles: h.profiles}, "ada")
	r, err := c.Erase(ctx, user("ada"))
	if err != nil || r.Status != privacy.Running {
		t.Fatalf("Erase = %+v, %v; want RUNNING while the destination waits", r, err)
	}
	// Between Extend's read and its write, the deletion is delivered and the
	// request finishes.
	var once sync.Once
	h.journal.set(func(e *journal.Entry) {
		if e.ID != r.ID || e.Status != privacy.Running {
			return
		}
		once.Do(func() {
			close(g.open)
			waitFor(t, "the erasure finished", func() bool { return statusOf(t, h.mem, r.ID).Status == privacy.Finished })
		})
	}, nil)
	ext, err := c.Extend(ctx, r.ID, 1, "the crm is slow")
	h.journal.set(nil, nil)
	if err != nil {
		t.Fatalf("Extend = %v", err)
	}
	got := statusOf(t, h.mem, r.ID)
	if got.Status != privacy.Finished || len(got.Subjects) != 0 || len(got.Decision.Forward) != 1 || len(got.Decision.Forward[0].IDs) != 0 {
		t.Errorf("after Extend the journal shows %s with subjects %v, forwarded %v; want FINISHED and scrubbed", got.Status, got.Subjects, got.Decision.Forward)
	}
	if got.ExtensionReason != "the crm is slow" || !got.Due.Equal(t0.AddDate(0, 2, 0)) || ext.Status != privacy.Finished {
		t.Errorf("the extension: due %v, reason %q, receipt %s; want due %v, the reason, FINISHED", got.Due, got.ExtensionReason, ext.Status, t0.AddDate(0, 2, 0))
	}
}

// TestRecoverLeavesLiveRequestsAlone: another instance's Recover takes over
// neither a request still delivering nor an export still writing while their
// holder lives; once the holder stops and its lease lapses it does, and the
// former holder's late writes are refused.
func TestRecoverLeavesLiveRequestsAlone(t *testing.T) {
	h := newHosts()
	a, _, g, erasure := h.erasingAtA(t)
	clkB := newClock(t0)
	b := h.host(t, "host-b", clkB, privacy.WithDestinations(destination.NewRecorder("crm")))
	ctx := context.Background()
	person(t, &env{c: a, graph: h.graph, profiles: h.profiles}, "bob")
	// An export in flight on A: its writer blocks until released.
	w := &blockingWriter{started: make(chan struct{}), release: make(chan struct{})}
	var exported atomic.Pointer[privacy.Receipt]
	go func() {
		r, _ := a.Export(ctx, user("bob"), w, export.NDJSON)
		exported.Store(r)
	}()
	<-w.started

	clkB.advance(30 * time.Second) // within A's lease
	if n, err := b.Recover(ctx); n != 0 || err != nil {
		t.Fatalf("Recover by another instance while A works = %d, %v; want 0, nil", n, err)
	}
	close(w.release)
	waitFor(t, "the export ended", func() bool { return exported.Load() != nil })
	if r := exported.Load(); r.Status != privacy.Finished {
		t.Errorf("the export A was writing ended %s; want FINISHED", r.Status)
	}
	if e := statusOf(t, h.mem, erasure.ID); e.Owner != "host-a" || e.Status != privacy.Running {
		t.Fatalf("the erasure after B's Recover: owner %q, %s; want host-a's, RUNNING", e.Owner, e.Status)
	}

	// A stops renewing (it hangs); past its lease, B takes the erasure over.
	a.Close()
	clkB.advance(2 * time.Minute)
	if n, err := b.Recover(ctx); n != 1 || err != nil {
		t.Fatalf("Recover after A's lease lapsed = %d, %v; want 1, nil", n, err)
	}
	flush(t, b)
	e := statusOf(t, h.mem, erasure.ID)
	if e.Owner != "host-b" || e.Status != privacy.Finished {
		t.Fatalf("the erasure after B took it over: owner %q, %s; want host-b's, FINISHED", e.Owner, e.Status)
	}
	version := e.Version
	close(g.open) // A's late delivery outcome: its write must be refused
	time.Sleep(50 * time.Millisecond)
	if e := statusOf(t, h.mem, erasure.ID); e.Version != version || e.Owner != "host-b" {
		t.Errorf("A wrote the request after B took it over: version %d -> %d, owner %q", version, e.Version, e.Owner)
	}
}

// TestFailedIsFinal: a request reported FAILED is never applied, and one
// whose failure could not be recorded is not reported FAILED: it is RUNNING,
// and, its end having been journaled as owed before anything reached the
// audit log, Recover ends it as it was ending, FAILED, in the journal and the
// audit log alike, once. (A rectification failed before its decision, its
// FAILED record lost, used to be re-run and applied by the next Recover; then
// the audit log said FAILED for a request the journal showed finished; then it
// said FAILED twice.)
func TestFailedIsFinal(t *testing.T) {
	w := newWorld(t)
	c := w.controller(t)
	ctx := context.Background()
	person(t, &env{c: c, graph: w.graph, profiles: w.profiles}, "ada")
	hooked := &hookedJournal{Journal: w.journal}
	log := audit.NewMemLog()
	c2, err := privacy.New(privacy.WithIdentity(w.graph), privacy.WithProfiles(faultinject.ProfileStore(w.profiles, w.f.at)),
		privacy.WithSuppressions(w.supp), privacy.WithAudiences(w.auds), privacy.WithJournal(hooked), privacy.WithAuditLog(log),
		privacy.WithKey(worldKey), privacy.WithInstance("host-1"), privacy.WithClock(func() time.Time { return t0 }))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()

	errLost := errors.New("the journal lost its connection")
	hooked.set(nil, func(_ context.Context, e *journal.Entry) error {
		if e.Status == privacy.Failed {
			return errLost // the FAILED record cannot be written
		}
		return nil
	})
	w.f.arm("profiles.stage", 0)
	r, err := c2.Rectify(ctx, user("ada"), map[string]any{"plan": "free"})
	w.f.disarm()
	hooked.set(nil, nil)
	if err == nil {
		t.Fatal("Rectify succeeded with its staging failing")
	}
	if r == nil || r.Status == privacy.Failed {
		t.Fatalf("Rectify whose failure was not recorded: receipt %+v; want RUNNING, not FAILED", r)
	}
	// The end was journaled as owed before the FAILED write failed: Recover
	// records it as it was ending, and nothing of it is applied.
	if n, err := c2.Recover(ctx); n != 1 || err != nil {
		t.Fatalf("Recover = %d, %v; want the request ended", n, err)
	}
	if got, err := c2.Status(ctx, r.ID); err != nil || got.Status != privacy.Failed {
		t.Errorf("Status after Recover = %+v, %v; want FAILED", got, err)
	}
	if ends := auditEnds(t, log, r.ID); len(ends) != 1 || ends[0] != "failed FAILED" {
		t.Errorf("the audit log's end records for the request: %v; want one, FAILED, as the journal says", ends)
	}

	// A failure that is recorded is final: Recover leaves it, and nothing of
	// it is applied.
	w.f.arm("profiles.stage", 0)
	r, err = c2.Rectify(ctx, user("ada"), map[string]any{"plan": "gold"})
	w.f.disarm()
	if err == nil || r == nil || r.Status != privacy.Failed {
		t.Fatalf("Rectify failing at staging = %+v, %v; want FAILED", r, err)
	}
	if n, err := c2.Recover(ctx); n != 0 || err != nil {
		t.Fatalf("Recover after a recorded failure = %d, %v; want 0, nil", n, err)
	}
	if p, err := w.profiles.Get(ctx, mustProfile(t, c2, user("ada")).ID); err != nil || p.Traits["plan"].Value != "pro" {
		t.Errorf("plan after the FAILED rectifications = %v, %v; want pro: nothing of them applied", p.Traits["plan"].Value, err)
	}
}

// goroutinesIn counts the goroutines whose stack passes through fn and this
// test's journal hook.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) && strings.Contains(g, "TestKeepClaimsEndsWithClose") {
			n++
		}
	}
	return n
}

// TestKeepClaimsEndsWithClose: keepClaims renews with
// context.Background(), one claim after another, so a journal call that never
// returns (a connection dead without the client knowing, on which only a
// deadline helps) stops every renewal of the Controller for good: each claim
// it holds lapses and is taken over while it still works on it, and Close
// cannot stop the goroutine, which leaks.
func TestKeepClaimsEndsWithClose(t *testing.T) {
	h := newHosts()
	g := newGate()
	var hang sync.Once
	hung := make(chan struct{})    // closed when a renewal is stuck
	release := make(chan struct{}) // frees it at the end of the test
	t.Cleanup(func() { close(release) })
	var armed bool
	var mu sync.Mutex
	h.journal.set(nil, func(ctx context.Context, e *journal.Entry) error {
		mu.Lock()
		a := armed
		mu.Unlock()
		if a {
			hang.Do(func() { close(hung) })
			select { // the journal does not answer, as over a dead connection, until the call's context ends
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	a, err := privacy.New(privacy.WithIdentity(h.graph), privacy.WithProfiles(h.profiles), privacy.WithAudiences(h.auds),
		privacy.WithSuppressions(h.supp), privacy.WithJournal(h.journal), privacy.WithAuditLog(h.audit), privacy.WithOutbox(h.outbox),
		privacy.WithKey(worldKey), privacy.WithInstance("host-a"), privacy.WithLease(30*time.Millisecond),
		privacy.WithDestinations(g), fastDelivery())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	person(t, &env{c: a, graph: h.graph, profiles: h.profiles}, "ada")
	r, err := a.Erase(ctx, user("ada"))
	if err != nil || r.Status != privacy.Running {
		t.Fatalf("Erase = %+v, %v; want RUNNING while the destination waits", r, err)
	}
	mu.Lock()
	armed = true
	mu.Unlock()
	select {
	case <-hung:
	case <-time.After(5 * time.Second):
		t.Fatal("no renewal reached the journal")
	}
	before := goroutinesIn("privacy.(*Controller).keepClaims")
	a.Close()
	time.Sleep(100 * time.Millisecond)
	if n := goroutinesIn("privacy.(*Controller).keepClaims"); n > 0 {
		t.Errorf("%d keepClaims goroutine(s) still running after Close (%d before): a renewal without a deadline blocks it for good", n, before)
	}
}
