package privacy_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/internal/faultinject"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/suppression"
	"github.com/google/go-cmp/cmp"
)

// faults arms one failure: a point such as "profiles.commit", failing every
// time it is reached until disarmed, or a crash (the process dying) after the
// journal's n-th record.
type faults struct {
	mu         sync.Mutex
	point      string
	fired      bool
	crashAfter int // journal records until the crash; 0: none
	records    int
}

var errInjected = errors.New("injected failure")

// at is the faultinject.Plan.
func (f *faults) at(p faultinject.Point) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.point == p.String() {
		f.fired = true
		return fmt.Errorf("%s: %w", p, errInjected)
	}
	return nil
}

func (f *faults) arm(point string, crashAfter int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.point, f.fired, f.crashAfter, f.records = point, false, crashAfter, 0
}

func (f *faults) disarm() { f.arm("", 0) }

// journalRecorded counts a journal record and crashes when armed to.
func (f *faults) journalRecorded(*journal.Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.records++
	if f.crashAfter > 0 && f.records == f.crashAfter {
		f.fired = true
		f.crashAfter = 0
		return faultinject.ErrCrash
	}
	return nil
}

// world is one set of backends that outlives the Controllers built on it, as a
// database outlives a crashed process.
type world struct {
	f        *faults
	graph    *identity.MemGraph
	profiles *profile.MemStore
	auds     *audience.MemStore
	supp     *suppression.MemList
	journal  *journal.MemJournal
	outbox   *outbox.MemStore
	rec      *destination.Recorder
	hasher   *identity.Hasher
	// attempts is Delivery.MaxAttempts (0: 3).
	attempts int
}

// maxAttempts is the world's Delivery.MaxAttempts.
func (w *world) maxAttempts() int {
	if w.attempts == 0 {
		return 3
	}
	return w.attempts
}

var worldKey = []byte("fault-matrix-key-0123456789abcdef")

func newWorld(t *testing.T) *world {
	h, err := identity.NewHasher(worldKey)
	if err != nil {
		t.Fatal(err)
	}
	return &world{f: &faults{}, graph: identity.NewMemGraph(), profiles: profile.NewMemStore(), auds: audience.NewMemStore(),
		supp: suppression.NewMemList(), journal: journal.NewMemJournal(), outbox: outbox.NewMemStore(), rec: destination.NewRecorder("crm"), hasher: h}
}

// controller builds a Controller over the world's backends, through the
// fault injectors.
func (w *world) controller(t *testing.T) *privacy.Controller {
	t.Helper()
	return w.controllerWith(t, w.rec)
}

// controllerWith is controller with the destinations given.
func (w *world) controllerWith(t *testing.T, dests ...destination.Destination) *privacy.Controller {
	t.Helper()
	c, err := privacy.New(
		privacy.WithIdentity(faultinject.Graph(w.graph, w.f.at)),
		privacy.WithProfiles(faultinject.ProfileStore(w.profiles, w.f.at)),
		privacy.WithAudiences(faultinject.AudienceStore(w.auds, w.f.at)),
		privacy.WithSuppressions(faultinject.SuppressionList(w.supp, w.f.at)),
		privacy.WithJournal(faultinject.Journal(w.journal, w.f.journalRecorded)),
		privacy.WithOutbox(faultinject.OutboxStore(w.outbox, w.f.at)),
		privacy.WithDestinations(dests...), privacy.WithKey(worldKey), testLimits,
		privacy.WithInstance("host-1"), // every Controller of the world is the same host, restarted
		privacy.WithClock(func() time.Time { return t0 }),
		// A short lease: what a Controller closed as a crash held goes to the next one soon.
		privacy.WithDelivery(privacy.Delivery{Backoff: time.Millisecond, MaxBackoff: time.Millisecond, MaxAttempts: w.maxAttempts(), Lease: 100 * time.Millisecond}),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// summary is what the matrix compares: the person's state in every backend.
type summary struct {
	Linked, Stored, Member, Suppressed, ProfileSuppressed bool
	Plan                                                  any
	Version                                               uint64
	Deletions, Rectifications                             int
}

func (w *world) summary(t *testing.T, c *privacy.Controller) summary {
	t.Helper()
	ctx := context.Background()
	var s summary
	pid, err := w.graph.Lookup(ctx, user("ada"))
	s.Linked = err == nil
	if err == nil {
		if p, err := w.profiles.Get(ctx, pid); err == nil {
			s.Stored, s.Plan, s.Version = true, p.Traits["plan"].Value, p.Metadata.Version
		}
		s.ProfileSuppressed, _ = w.supp.ProfileSuppressed(ctx, pid)
	}
	members, _ := w.auds.Members(ctx, "pro", "", 0)
	s.Member = err == nil && slices.Contains(members, pid)
	s.Suppressed, _ = w.supp.Suppressed(ctx, w.hasher.ID(user("ada")))
	flush(t, c)
	for _, d := range w.rec.Deletions() {
		for _, id := range d.IDs {
			if id == user("ada") {
				s.Deletions++
			}
		}
	}
	for _, m := range w.rec.Messages() {
		if m.Type == destination.TypeIdentify && m.Traits["plan"] == "free" {
			s.Rectifications++
		}
	}
	return s
}

// TestFaultMatrix applies every right with a failure injected at Begin, at
// staging and at Commit of every participant, and with a crash after each
// journal record, then lets a new Controller over the same backends Recover.
// Either nothing changed, or (once decided) everything did; no personal data of
// an erased person is left; no destination heard of a rolled-back change.
func TestFaultMatrix(t *testing.T) {
	type right struct {
		req   privacy.Request
		setup func(t *testing.T, c *privacy.Controller) // beyond the common person
		after func(before summary) summary              // the state once applied
	}
	rights := map[string]right{
		"erase": {req: privacy.Request{Type: privacy.DeleteOnly, Subjects: []identity.ID{anon("ada-phone")}},
			after: func(summary) summary { return summary{Deletions: 1} }},
		"suppress_with_delete": {req: privacy.Request{Type: privacy.SuppressWithDelete, Subjects: []identity.ID{email("ada@example.com")}},
			after: func(summary) summary { return summary{Suppressed: true, Deletions: 1} }},
		"suppress": {req: privacy.Request{Type: privacy.SuppressOnly, Subjects: []identity.ID{user("ada")}},
			after: func(b summary) summary {
				b.Member, b.Suppressed, b.ProfileSuppressed = false, true, true
				return b
			}},
		"unsuppress": {req: privacy.Request{Type: privacy.Unsuppress, Subjects: []identity.ID{user("ada")}},
			setup: func(t *testing.T, c *privacy.Controller) {
				if _, err := c.Suppress(context.Background(), user("ada")); err != nil {
					t.Fatal(err)
				}
			},
			after: func(b summary) summary {
				b.Member, b.Suppressed, b.ProfileSuppressed = true, false, false
				return b
			}},
		"rectify": {req: privacy.Request{Type: privacy.Rectify, Subjects: []identity.ID{user("ada")}, Traits: map[string]any{"plan": "free"}},
			after: func(b summary) summary {
				b.Plan, b.Version, b.Member, b.Rectifications = "free", b.Version+1, false, 1
				return b
			}},
	}
	var points []string
	for _, p := range []string{"identity", "profiles", "audiences", "suppression", "outbox"} {
		for _, at := range []string{"begin", "stage", "commit"} {
			points = append(points, p+"."+at)
		}
	}
	// Every point must be reached by some right: a fault that never fires
	// would let its cases pass without testing anything.
	var firedMu sync.Mutex
	firedAt := map[string]bool{}
	defer func() {
		for _, p := range points {
			if !firedAt[p] {
				t.Errorf("no right ever reached the fault at %s", p)
			}
		}
	}()
	for name, r := range rights {
		cases := append([]string{}, points...)
		for k := 1; k <= 3; k++ {
			cases = append(cases, fmt.Sprintf("crash after journal record %d", k))
		}
		for _, point := range cases {
			t.Run(name+"/"+point, func(t *testing.T) {
				w := newWorld(t)
				c := w.controller(t)
				define(t, c, "pro", `trait('plan') = 'pro'`)
				person(t, &env{c: c, graph: w.graph, profiles: w.profiles}, "ada")
				person(t, &env{c: c, graph: w.graph, profiles: w.profiles}, "bob")
				if r.setup != nil {
					r.setup(t, c)
				}
				before := w.summary(t, c)
				want := r.after(before)

				var k int
				if _, err := fmt.Sscanf(point, "crash after journal record %d", &k); err == nil {
					w.f.arm("", k)
				} else {
					w.f.arm(point, 0)
				}
				var receipt *privacy.Receipt
				var err error
				crashed := faultinject.Survive(func() { receipt, err = c.Apply(context.Background(), r.req) })
				fired := w.f.fired
				firedMu.Lock()
				firedAt[point] = firedAt[point] || fired
				firedMu.Unlock()
				w.f.disarm()

				switch {
				case crashed:
					// The process died: a new one over the same backends recovers
					// whatever the journal shows unfinished (nothing when the crash
					// came after the request's last record).
					unfinished, _ := w.journal.Unfinished(context.Background())
					c2 := w.controller(t)
					if n, err := c2.Recover(context.Background()); err != nil || n != len(unfinished) {
						t.Fatalf("Recover after a crash = %d, %v; want the %d unfinished request(s) completed", n, err, len(unfinished))
					}
					c = c2
				case !fired:
					if err != nil {
						t.Fatalf("no fault fired, but Apply failed: %v", err)
					}
				case errors.Is(err, errInjected) && receipt.Status == privacy.Failed:
					// Failed before the decision: nothing may have changed.
					if got := w.summary(t, c); got != before {
						t.Fatalf("a request that failed before its decision changed things:\nbefore %+v\nafter  %+v", before, got)
					}
					// Retried once the fault is gone, it applies fully.
					if _, err := c.Apply(context.Background(), r.req); err != nil {
						t.Fatalf("retry: %v", err)
					}
				case err != nil && receipt != nil && receipt.Status == privacy.Running:
					// Decided, not fully committed: Recover completes it.
					c2 := w.controller(t)
					if n, err := c2.Recover(context.Background()); err != nil || n != 1 {
						t.Fatalf("Recover = %d, %v", n, err)
					}
					c = c2
				default:
					t.Fatalf("Apply = %+v, %v: neither a clean failure nor a decided request", receipt, err)
				}
				if got := w.summary(t, c); got != want {
					t.Fatalf("after the request:\ngot  %+v\nwant %+v", got, want)
				}
				w.checkNoClearData(t)
			})
		}
	}
}

// checkNoClearData asserts that no finished request keeps clear identifiers,
// and that nothing is left to recover.
func (w *world) checkNoClearData(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	page, err := w.journal.List(ctx, journal.Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range page.Entries {
		if e.Status == journal.StatusRunning || e.Status == journal.StatusInitialized {
			t.Errorf("request %s is still %s", e.ID, e.Status)
			continue
		}
		if len(e.Subjects) > 0 || e.Traits != nil {
			t.Errorf("finished request %s keeps clear subjects %v or traits %v", e.ID, e.Subjects, e.Traits)
		}
		for _, f := range e.Decision.Forward {
			if len(f.IDs) > 0 {
				t.Errorf("finished request %s keeps the identifiers it forwarded: %v", e.ID, f.IDs)
			}
		}
	}
}

func TestApplyRefusesBadRequestsAndChangesNothing(t *testing.T) {
	many := make([]identity.ID, privacy.MaxSubjects+1)
	for i := range many {
		many[i] = user(fmt.Sprint("u", i))
	}
	traits301 := map[string]any{}
	for i := range 301 {
		traits301[fmt.Sprint("t", i)] = i
	}
	for _, tt := range []struct {
		name  string
		req   privacy.Request
		field string
	}{
		{"unknown type", privacy.Request{Type: "FORGET_ME", Subjects: []identity.ID{user("ada")}}, "Type"},
		{"no subjects", privacy.Request{Type: privacy.DeleteOnly}, "Subjects"},
		{"too many subjects", privacy.Request{Type: privacy.DeleteOnly, Subjects: many}, "Subjects"},
		{"malformed identifier", privacy.Request{Type: privacy.DeleteOnly, Subjects: []identity.ID{{Type: "user id!", Value: "x"}}}, "Subjects[0]"},
		{"empty identifier", privacy.Request{Type: privacy.SuppressOnly, Subjects: []identity.ID{user("ada"), {Type: "email"}}}, "Subjects[1]"},
		{"rectify with 301 traits", privacy.Request{Type: privacy.Rectify, Subjects: []identity.ID{user("ada")}, Traits: traits301}, "Traits"},
		{"rectify with a non-JSON value", privacy.Request{Type: privacy.Rectify, Subjects: []identity.ID{user("ada")}, Traits: map[string]any{"f": func() {}}}, `Traits["f"]`},
		{"rectify nothing", privacy.Request{Type: privacy.Rectify, Subjects: []identity.ID{user("ada")}}, "Traits"},
		{"traits on a deletion", privacy.Request{Type: privacy.DeleteOnly, Subjects: []identity.ID{user("ada")}, Traits: map[string]any{"a": 1}}, "Traits"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			person(t, e, "ada")
			before := e.profile(t, user("ada"))
			r, err := e.c.Apply(context.Background(), tt.req)
			var fe *privacy.FieldError
			if !errors.Is(err, privacy.ErrInvalid) || !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("err = %v, want ErrInvalid on %s", err, tt.field)
			}
			if r == nil || r.Status != privacy.Invalid || !strings.Contains(r.Reason, tt.field) {
				t.Fatalf("receipt = %+v, want INVALID with the reason", r)
			}
			if diff := cmp.Diff(before, e.profile(t, user("ada"))); diff != "" {
				t.Fatalf("an invalid request changed the profile:\n%s", diff)
			}
			if err := e.c.Collect(context.Background(), privacy.Track{UserID: "ada", Event: "E", Timestamp: at(5)}); err != nil {
				t.Fatalf("collection after an invalid request: %v", err)
			}
		})
	}
}

// refusing and failing are destinations that cannot delete, and that fail
// every deletion.
func refusing(name string) *destination.Recorder {
	r := destination.NewRecorder(name)
	r.RefuseDeletes()
	return r
}

func failing(name string) *destination.Recorder {
	r := destination.NewRecorder(name)
	r.FailDeletes(-1)
	return r
}

func TestDestinationOutcomesFollowSegmentsRules(t *testing.T) {
	ctx := context.Background()
	flaky := destination.NewRecorder("flaky")
	flaky.FailDeletes(2)
	dead := destination.NewRecorder("dead")
	dead.FailDeletes(-1)
	cannot := destination.NewRecorder("cannot")
	cannot.RefuseDeletes()
	e := newEnv(t, privacy.WithDestinations(flaky, dead, cannot), fastDelivery())
	person(t, e, "ada")
	r, err := e.c.Erase(ctx, user("ada"))
	if err != nil {
		t.Fatal(err)
	}
	flush(t, e.c)
	if got := flaky.Deletions(); len(got) != 1 || got[0].RequestID != r.ID {
		t.Fatalf("flaky destination got %+v, want the deletion once", got)
	}
	if _, deletes := flaky.Calls(); deletes != 3 {
		t.Fatalf("flaky destination was called %d times, want 3 (two failures, one success)", deletes)
	}
	final, err := e.c.Status(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]privacy.Status{}
	for _, o := range final.Destinations {
		got[o.Name] = o.Status
	}
	want := map[string]privacy.Status{"flaky": privacy.Finished, "dead": privacy.Failed, "cannot": privacy.NotSupported}
	if diff := cmp.Diff(want, got); diff != "" || final.Status != privacy.Failed {
		t.Fatalf("outcomes (-want +got):\n%s\noverall %s, want FAILED (a destination cannot delete)", diff, final.Status)
	}

	// Segment: FAILED "because of a failure on an unsupported destination,
	// even if the deletion from the Segment Internal Systems and supported
	// destinations were completed successfully"; without one, a destination
	// that failed among others that did not is PARTIAL_SUCCESS.
	for _, tc := range []struct {
		name  string
		dests []destination.Destination
		want  privacy.Status
	}{
		{"supported and unsupported", []destination.Destination{destination.NewRecorder("ok"), refusing("cannot")}, privacy.Failed},
		{"one failed among others", []destination.Destination{destination.NewRecorder("ok"), failing("dead")}, privacy.PartialSuccess},
		{"all finished", []destination.Destination{destination.NewRecorder("ok"), destination.NewRecorder("ok2")}, privacy.Finished},
	} {
		e := newEnv(t, privacy.WithDestinations(tc.dests...), fastDelivery())
		person(t, e, "cy")
		r, err := e.c.Erase(ctx, user("cy"))
		if err != nil {
			t.Fatal(err)
		}
		flush(t, e.c)
		if final, _ := e.c.Status(ctx, r.ID); final.Status != tc.want {
			t.Errorf("%s: overall %s, want %s", tc.name, final.Status, tc.want)
		}
	}

	// With only a destination that never succeeds, the request FAILED, though
	// the internal deletion happened.
	e2 := newEnv(t, privacy.WithDestinations(dead), fastDelivery())
	person(t, e2, "bob")
	r2, err := e2.c.Erase(ctx, user("bob"))
	if err != nil {
		t.Fatal(err)
	}
	flush(t, e2.c)
	if final, _ := e2.c.Status(ctx, r2.ID); final.Status != privacy.Failed {
		t.Fatalf("overall %s, want FAILED", final.Status)
	}
	if _, err := e2.c.Profile(ctx, user("bob")); !errors.Is(err, privacy.ErrNotFound) {
		t.Fatal("the internal deletion did not happen")
	}
}

type picky struct{ first identity.ProfileID }

func (p *picky) Name() string { return "picky" }

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

// TestCrashThenRestartWithoutTheDestination: whichever journal record an
// erasure's process dies after, a host restarted without the destination
// that is owed the deletion keeps the request RUNNING, the destination on
// its receipt and pending in its stats; back with the destination, it
// delivers the deletion and finishes.
func TestCrashThenRestartWithoutTheDestination(t *testing.T) {
	ctx := context.Background()
	for k := 1; k <= 8; k++ {
		t.Run(fmt.Sprint("crash after journal record ", k), func(t *testing.T) {
			w := newWorld(t)
			// The crashed host, until it is closed, retries the deletion
			// every millisecond: too few attempts, and it gives up on it
			// before the restart it is owed at.
			w.attempts = 1_000_000
			w.rec.FailDeletes(-1)
			c := w.controller(t)
			if err := c.Collect(ctx, privacy.Identify{UserID: "ada", Timestamp: t0}); err != nil {
				t.Fatal(err)
			}
			w.f.arm("", k)
			crashed := faultinject.Survive(func() { c.Erase(ctx, user("ada")) })
			w.f.disarm()
			c.Close()
			if !crashed {
				t.Skipf("the erasure has fewer than %d journal records", k)
			}
			page, err := w.journal.List(ctx, journal.Filter{})
			if err != nil || len(page.Entries) != 1 {
				t.Fatalf("journal = %+v, %v; want the erasure", page, err)
			}
			if !page.Entries[0].Decided {
				// Crashed before the decision: the restarted host decides,
				// and owes only the destinations it has.
				t.Skip("crashed before the decision")
			}
			bare := w.controllerWith(t)
			if _, err := bare.Recover(ctx); err != nil {
				t.Fatalf("Recover: %v", err)
			}
			st, err := bare.DeliveryStats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			e := page.Entries[0]
			// The deletion, and perhaps the message a call held at the crash
			// (purged: it is answered, never sent, once crm is back).
			if p := st["crm"].Pending; p < 1 || p > 2 {
				t.Fatalf("restarted without crm, DeliveryStats[crm] = %+v; want the deletion pending", st["crm"])
			}
			got, err := bare.Status(ctx, e.ID)
			if err != nil || got.Status != privacy.Running || len(got.Destinations) != 1 || got.Destinations[0].Name != "crm" {
				t.Fatalf("restarted without crm, which is owed the deletion: receipt %+v, %v; want RUNNING, crm listed", got, err)
			}
			bare.Close()
			w.rec.FailDeletes(0)
			back := w.controller(t)
			if _, err := back.Recover(ctx); err != nil {
				t.Fatalf("Recover: %v", err)
			}
			flush(t, back)
			if got, err := back.Status(ctx, e.ID); err != nil || got.Status != privacy.Finished {
				t.Errorf("with crm back, the receipt = %+v, %v; want FINISHED", got, err)
			}
			if n := len(w.rec.Deletions()); n != 1 {
				t.Errorf("crm got %d deletions; want 1", n)
			}
		})
	}
}
