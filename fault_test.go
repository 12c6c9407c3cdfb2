package privacy_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/internal/faultinject"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/suppression"
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
	rec      *destination.Recorder
	hasher   *identity.Hasher
}

var worldKey = []byte("fault-matrix-key-0123456789abcdef")

func newWorld(t *testing.T) *world {
	h, err := identity.NewHasher(worldKey)
	if err != nil {
		t.Fatal(err)
	}
	return &world{f: &faults{}, graph: identity.NewMemGraph(), profiles: profile.NewMemStore(), auds: audience.NewMemStore(),
		supp: suppression.NewMemList(), journal: journal.NewMemJournal(), rec: destination.NewRecorder("crm"), hasher: h}
}

// controller builds a Controller over the world's backends, through the
// fault injectors.
func (w *world) controller(t *testing.T) *privacy.Controller {
	t.Helper()
	c, err := privacy.New(
		privacy.WithIdentity(faultinject.Graph(w.graph, w.f.at)),
		privacy.WithProfiles(faultinject.ProfileStore(w.profiles, w.f.at)),
		privacy.WithAudiences(faultinject.AudienceStore(w.auds, w.f.at)),
		privacy.WithSuppressions(faultinject.SuppressionList(w.supp, w.f.at)),
		privacy.WithJournal(faultinject.Journal(w.journal, w.f.journalRecorded)),
		privacy.WithDestinations(w.rec), privacy.WithKey(worldKey),
		privacy.WithClock(func() time.Time { return t0 }),
		privacy.WithDelivery(privacy.Delivery{Backoff: time.Millisecond, MaxBackoff: time.Millisecond, MaxAttempts: 3}),
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
	for _, p := range []string{"identity", "profiles", "audiences", "suppression"} {
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
