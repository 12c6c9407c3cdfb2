package identity

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// t0 is the start of the tests' clock.
var t0 = time.Date(2025, 1, 6, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

const day = 24 * time.Hour

// Identifier shorthands.
func uid(v string) ID     { return ID{TypeUserID, v} }
func mail(v string) ID    { return ID{TypeEmail, v} }
func anon(v string) ID    { return ID{TypeAnonymousID, v} }
func android(v string) ID { return ID{"android.id", v} }
func ios(v string) ID     { return ID{"ios.id", v} }
func gaID(v string) ID    { return ID{"ga_client_id", v} }

// equateEmpty makes nil and empty slices equal in plan comparisons.
var equateEmpty = cmpopts.EquateEmpty()

func newResolver(t testing.TB, change func(*Rules)) *Resolver {
	t.Helper()
	r := DefaultRules()
	if change != nil {
		change(&r)
	}
	res, err := NewResolver(r)
	if err != nil {
		t.Fatalf("NewResolver: %v", err)
	}
	return res
}

// plan orders the message's identifiers, looks them up in g and resolves them.
func plan(t testing.TB, res *Resolver, g Reader, now time.Time, ids ...ID) Plan {
	t.Helper()
	ctx := context.Background()
	matches, err := LookupAll(ctx, g, res.Order(append([]ID(nil), ids...)), nil)
	if err != nil {
		t.Fatalf("LookupAll: %v", err)
	}
	p, err := res.Resolve(ctx, g, matches, now)
	if err != nil {
		t.Fatalf("Resolve(%v): %v", ids, err)
	}
	return p
}

// apply begins a transaction, applies p in it and commits.
func apply(t testing.TB, g Graph, p Plan, now time.Time, messageID string) {
	t.Helper()
	ctx := context.Background()
	tx, err := g.Begin(ctx)
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	defer tx.Rollback(ctx)
	if err := p.Apply(ctx, tx, now, messageID); err != nil {
		t.Fatalf("Apply(%+v): %v", p, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

// collect resolves a message and applies its plan, as the Controller does.
func collect(t testing.TB, res *Resolver, g Graph, now time.Time, messageID string, ids ...ID) Plan {
	t.Helper()
	p := plan(t, res, g, now, ids...)
	apply(t, g, p, now, messageID)
	return p
}

func lookup(t testing.TB, g Reader, id ID) ProfileID {
	t.Helper()
	pid, err := g.Lookup(context.Background(), id)
	if err != nil {
		t.Fatalf("Lookup(%v): %v", id, err)
	}
	return pid
}

func node(t testing.TB, g Reader, pid ProfileID) *Node {
	t.Helper()
	n, err := g.Node(context.Background(), pid)
	if err != nil {
		t.Fatalf("Node(%s): %v", pid, err)
	}
	return n
}

// snapshot is the whole committed state of a MemGraph, deep-copied.
type snapshot struct {
	IDs   map[ID]ProfileID
	Nodes map[ProfileID]*Node
}

func snap(g *MemGraph) snapshot {
	g.mu.RLock()
	defer g.mu.RUnlock()
	s := snapshot{IDs: maps.Clone(g.ids), Nodes: map[ProfileID]*Node{}}
	for pid, n := range g.nodes {
		s.Nodes[pid] = n.Clone()
	}
	return s
}

// graph returns a new MemGraph holding a copy of the snapshot.
func (s snapshot) graph() *MemGraph {
	g := NewMemGraph()
	maps.Copy(g.ids, s.IDs)
	for pid, n := range s.Nodes {
		g.nodes[pid] = n.Clone()
	}
	return g
}

func TestResolveNoMatchCreates(t *testing.T) {
	res, g := newResolver(t, nil), NewMemGraph()
	p := plan(t, res, g, at(0), anon("a1"), mail("ada@example.com"), uid("u1"))
	want := Plan{Profile: p.Profile, Create: true, Link: []ID{uid("u1"), mail("ada@example.com"), anon("a1")}}
	if diff := cmp.Diff(want, p, equateEmpty); diff != "" {
		t.Errorf("plan mismatch (-want +got):\n%s", diff)
	}
	if _, err := ParseProfileID(string(p.Profile)); err != nil {
		t.Errorf("new profile id: %v", err)
	}
	if !p.Writes() {
		t.Error("Writes() = false for a plan that creates a profile")
	}
	apply(t, g, p, at(0), "m1")
	wantNode := &Node{ID: p.Profile, CreatedAt: at(0), Links: []Link{
		{ID: uid("u1"), LinkedAt: at(0), MessageID: "m1"},
		{ID: mail("ada@example.com"), LinkedAt: at(0), MessageID: "m1"},
		{ID: anon("a1"), LinkedAt: at(0), MessageID: "m1"},
	}}
	if diff := cmp.Diff(wantNode, node(t, g, p.Profile), equateEmpty); diff != "" {
		t.Errorf("node mismatch (-want +got):\n%s", diff)
	}
	for _, id := range []ID{uid("u1"), mail("ada@example.com"), anon("a1")} {
		if got := lookup(t, g, id); got != p.Profile {
			t.Errorf("Lookup(%v) = %s, want %s", id, got, p.Profile)
		}
	}
	// Each new person gets a new profile.
	p2 := collect(t, res, g, at(time.Minute), "m2", uid("u2"))
	if !p2.Create || p2.Profile == p.Profile {
		t.Errorf("second person: plan %+v, want a new profile other than %s", p2, p.Profile)
	}
}

func TestResolveOneMatchJoins(t *testing.T) {
	res, g := newResolver(t, nil), NewMemGraph()
	first := collect(t, res, g, at(0), "m1", uid("u1"))
	p := plan(t, res, g, at(time.Hour), uid("u1"), anon("phone"), mail("A@B.C"))
	want := Plan{Profile: first.Profile, Link: []ID{mail("A@B.C"), anon("phone")}}
	if diff := cmp.Diff(want, p, equateEmpty); diff != "" {
		t.Errorf("plan mismatch (-want +got):\n%s", diff)
	}
	apply(t, g, p, at(time.Hour), "m2")
	wantNode := &Node{ID: first.Profile, CreatedAt: at(0), Links: []Link{
		{ID: uid("u1"), LinkedAt: at(0), MessageID: "m1"},
		{ID: mail("A@B.C"), LinkedAt: at(time.Hour), MessageID: "m2"},
		{ID: anon("phone"), LinkedAt: at(time.Hour), MessageID: "m2"},
	}}
	if diff := cmp.Diff(wantNode, node(t, g, first.Profile), equateEmpty); diff != "" {
		t.Errorf("node mismatch (-want +got):\n%s", diff)
	}
	// A message whose identifiers are all known writes nothing.
	again := plan(t, res, g, at(2*time.Hour), anon("phone"), uid("u1"))
	if diff := cmp.Diff(Plan{Profile: first.Profile}, again, equateEmpty); diff != "" {
		t.Errorf("known message plan mismatch (-want +got):\n%s", diff)
	}
	if again.Writes() {
		t.Error("Writes() = true for a plan of known identifiers")
	}
	// A message with one known identifier joins through it alone.
	only := plan(t, res, g, at(3*time.Hour), anon("phone"))
	if diff := cmp.Diff(Plan{Profile: first.Profile}, only, equateEmpty); diff != "" {
		t.Errorf("single known identifier plan mismatch (-want +got):\n%s", diff)
	}
}

func TestResolveMergesIntoOldest(t *testing.T) {
	res, g := newResolver(t, nil), NewMemGraph()
	// Profiles are made in an order unlike their creation times, so that neither
	// insertion order nor profile id decides which is the oldest.
	p1 := collect(t, res, g, at(2*time.Hour), "m-b", mail("b@x")).Profile
	x := collect(t, res, g, at(3*time.Hour), "m-x", anon("x")).Profile
	p2 := collect(t, res, g, at(0), "m-a", mail("a@x")).Profile // the oldest
	p3 := collect(t, res, g, at(time.Hour), "m-c", anon("c")).Profile

	// X merges into P1 first, so P1 carries a merge history of its own.
	pm := collect(t, res, g, at(4*time.Hour), "m-bx", mail("b@x"), anon("x"))
	if diff := cmp.Diff(Plan{Profile: p1, Absorb: []ProfileID{x}}, pm, equateEmpty); diff != "" {
		t.Fatalf("first merge plan mismatch (-want +got):\n%s", diff)
	}

	p := plan(t, res, g, at(5*time.Hour), mail("b@x"), ios("new"), anon("c"), mail("a@x"))
	want := Plan{Profile: p2, Absorb: []ProfileID{p3, p1}, Link: []ID{ios("new")}}
	if diff := cmp.Diff(want, p, equateEmpty); diff != "" {
		t.Fatalf("merge plan mismatch (-want +got):\n%s", diff)
	}
	apply(t, g, p, at(5*time.Hour), "m-all")

	wantNode := &Node{
		ID:        p2,
		CreatedAt: at(0),
		Links: []Link{
			{ID: mail("a@x"), LinkedAt: at(0), MessageID: "m-a"},
			{ID: anon("c"), LinkedAt: at(time.Hour), MessageID: "m-c"},
			{ID: mail("b@x"), LinkedAt: at(2 * time.Hour), MessageID: "m-b"},
			{ID: anon("x"), LinkedAt: at(3 * time.Hour), MessageID: "m-x"},
			{ID: ios("new"), LinkedAt: at(5 * time.Hour), MessageID: "m-all"},
		},
		Merges: []Merge{
			{From: p3, At: at(5 * time.Hour), MessageID: "m-all"},
			{From: x, At: at(4 * time.Hour), MessageID: "m-bx"}, // P1's own history travels with it
			{From: p1, At: at(5 * time.Hour), MessageID: "m-all"},
		},
	}
	if diff := cmp.Diff(wantNode, node(t, g, p2), equateEmpty); diff != "" {
		t.Errorf("merged node mismatch (-want +got):\n%s", diff)
	}
	for _, gone := range []ProfileID{p1, p3, x} {
		if _, err := g.Node(context.Background(), gone); !errors.Is(err, ErrNotFound) {
			t.Errorf("absorbed profile %s: Node = %v, want ErrNotFound", gone, err)
		}
	}
	for _, id := range []ID{mail("a@x"), mail("b@x"), anon("c"), anon("x"), ios("new")} {
		if got := lookup(t, g, id); got != p2 {
			t.Errorf("Lookup(%v) = %s, want %s", id, got, p2)
		}
	}
	if profiles, ids := g.Len(); profiles != 1 || ids != 5 {
		t.Errorf("Len() = %d profiles, %d ids; want 1, 5", profiles, ids)
	}
}

// Two profiles created at the same instant merge into the one with the smaller id.
func TestResolveMergeTieBreaksOnProfileID(t *testing.T) {
	res, g := newResolver(t, nil), NewMemGraph()
	a := collect(t, res, g, at(0), "m1", mail("a@x")).Profile
	b := collect(t, res, g, at(0), "m2", mail("b@x")).Profile
	oldest, other := min(a, b), max(a, b)
	p := plan(t, res, g, at(time.Hour), mail("b@x"), mail("a@x"))
	if diff := cmp.Diff(Plan{Profile: oldest, Absorb: []ProfileID{other}}, p, equateEmpty); diff != "" {
		t.Errorf("plan mismatch (-want +got):\n%s", diff)
	}
}

// The "blob" guard: a device shared by two people must not merge them.
func TestResolveSharedDevice(t *testing.T) {
	res, g := newResolver(t, nil), NewMemGraph()
	a := collect(t, res, g, at(0), "m1", uid("u1"), android("D")).Profile

	p := plan(t, res, g, at(time.Hour), uid("u2"), android("D"))
	if !p.Create || p.Profile == a {
		t.Fatalf("plan %+v: want a new profile, not %s", p, a)
	}
	want := Plan{Profile: p.Profile, Create: true, Link: []ID{uid("u2")}, Dropped: []ID{android("D")}}
	if diff := cmp.Diff(want, p, equateEmpty); diff != "" {
		t.Errorf("plan mismatch (-want +got):\n%s", diff)
	}
	apply(t, g, p, at(time.Hour), "m2")
	if got := lookup(t, g, uid("u2")); got != p.Profile {
		t.Errorf("u2 resolves to %s, want the new profile %s", got, p.Profile)
	}
	if got := lookup(t, g, android("D")); got != a {
		t.Errorf("the device resolves to %s, want it to stay with %s", got, a)
	}
	wantA := &Node{ID: a, CreatedAt: at(0), Links: []Link{
		{ID: uid("u1"), LinkedAt: at(0), MessageID: "m1"},
		{ID: android("D"), LinkedAt: at(0), MessageID: "m1"},
	}}
	if diff := cmp.Diff(wantA, node(t, g, a), equateEmpty); diff != "" {
		t.Errorf("profile A changed (-want +got):\n%s", diff)
	}

	// Many more people on the same device: never one blob.
	for i, u := range []string{"u3", "u4", "u5"} {
		p := collect(t, res, g, at(time.Duration(2+i)*time.Hour), "m-"+u, uid(u), android("D"))
		if !p.Create || len(p.Absorb) != 0 {
			t.Errorf("%s: plan %+v, want a new profile and no merge", u, p)
		}
	}
	if profiles, _ := g.Len(); profiles != 5 {
		t.Errorf("%d profiles, want 5 (one per user id)", profiles)
	}
	// The device alone still resolves to its first owner.
	if p := plan(t, res, g, at(day), android("D")); p.Profile != a || p.Writes() {
		t.Errorf("device alone: plan %+v, want profile %s and no writes", p, a)
	}
	// Two profiles each with a user id do not merge through the device either.
	b := lookup(t, g, uid("u2"))
	p = plan(t, res, g, at(day), uid("u2"), uid("u1"))
	if p.Profile != a || len(p.Absorb) != 0 || p.Writes() {
		t.Errorf("two user ids: plan %+v, want profile %s (u1 sorts first) and no merge with %s", p, a, b)
	}
	if diff := cmp.Diff([]ID{uid("u2")}, p.Dropped); diff != "" {
		t.Errorf("two user ids: dropped mismatch (-want +got):\n%s", diff)
	}
}

func TestResolveLimitWindows(t *testing.T) {
	tests := []struct {
		name       string
		window     Window
		age        time.Duration // how long ago the first device was linked
		wantLinked bool
	}{
		{"weekly, 3 days ago", Weekly, 3 * day, false},
		{"weekly, 6 days ago", Weekly, 6 * day, false},
		{"weekly, 10 days ago", Weekly, 10 * day, true},
		{"monthly, 10 days ago", Monthly, 10 * day, false},
		{"monthly, 40 days ago", Monthly, 40 * day, true},
		{"annually, 200 days ago", Annually, 200 * day, false},
		{"annually, 400 days ago", Annually, 400 * day, true},
		{"ever, 400 days ago", Ever, 400 * day, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := newResolver(t, func(r *Rules) {
				r.Limits["android.id"] = Limit{Max: 1, Window: tt.window}
			})
			g := NewMemGraph()
			a := collect(t, res, g, at(0), "m1", uid("u1"), android("D1")).Profile
			now := at(tt.age)
			p := plan(t, res, g, now, uid("u1"), android("D2"))
			want := Plan{Profile: a, Dropped: []ID{android("D2")}}
			if tt.wantLinked {
				want = Plan{Profile: a, Link: []ID{android("D2")}}
			}
			if diff := cmp.Diff(want, p, equateEmpty); diff != "" {
				t.Fatalf("plan mismatch (-want +got):\n%s", diff)
			}
			apply(t, g, p, now, "m2")
			_, err := g.Lookup(context.Background(), android("D2"))
			if linked := err == nil; linked != tt.wantLinked {
				t.Errorf("D2 linked = %v (%v), want %v", linked, err, tt.wantLinked)
			}
		})
	}
}

func TestResolveMaxIdentifiers(t *testing.T) {
	res := newResolver(t, func(r *Rules) { r.MaxIdentifiers = 3 })

	t.Run("a new profile takes only as many as fit", func(t *testing.T) {
		g := NewMemGraph()
		p := plan(t, res, g, at(0), ios("i"), uid("u"), anon("a"), mail("e"))
		want := Plan{Profile: p.Profile, Create: true, Link: []ID{uid("u"), mail("e"), anon("a")}, Dropped: []ID{ios("i")}, Capped: true}
		if diff := cmp.Diff(want, p, equateEmpty); diff != "" {
			t.Errorf("plan mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("a full profile takes no more", func(t *testing.T) {
		g := NewMemGraph()
		a := collect(t, res, g, at(0), "m1", uid("u"), mail("e")).Profile
		// One more fits, the second does not.
		p := plan(t, res, g, at(time.Hour), uid("u"), anon("a1"), ios("i1"))
		want := Plan{Profile: a, Link: []ID{anon("a1")}, Dropped: []ID{ios("i1")}, Capped: true}
		if diff := cmp.Diff(want, p, equateEmpty); diff != "" {
			t.Fatalf("plan mismatch (-want +got):\n%s", diff)
		}
		apply(t, g, p, at(time.Hour), "m2")
		// Full now: the message still resolves to the profile, linking nothing.
		p = plan(t, res, g, at(2*time.Hour), mail("e"), anon("a2"))
		want = Plan{Profile: a, Dropped: []ID{anon("a2")}, Capped: true}
		if diff := cmp.Diff(want, p, equateEmpty); diff != "" {
			t.Fatalf("plan mismatch (-want +got):\n%s", diff)
		}
		if p.Writes() {
			t.Error("Writes() = true for a capped plan")
		}
		apply(t, g, p, at(2*time.Hour), "m3")
		if _, err := g.Lookup(context.Background(), anon("a2")); !errors.Is(err, ErrNotFound) {
			t.Errorf("Lookup of the dropped identifier = %v, want ErrNotFound", err)
		}
		if n := node(t, g, a); len(n.Links) != 3 {
			t.Errorf("profile holds %d identifiers, want 3", len(n.Links))
		}
	})

	t.Run("a merge past the cap is refused", func(t *testing.T) {
		g := NewMemGraph()
		older := collect(t, res, g, at(0), "m1", mail("e1"), anon("a1")).Profile
		newer := collect(t, res, g, at(time.Hour), "m2", uid("u"), anon("a2")).Profile
		p := plan(t, res, g, at(2*time.Hour), anon("a1"), uid("u"), ios("i"))
		// Resolves to the profile of the highest-priority match (user_id), not
		// the oldest, and merges nothing.
		want := Plan{Profile: newer, Dropped: []ID{ios("i")}, Capped: true}
		if diff := cmp.Diff(want, p, equateEmpty); diff != "" {
			t.Errorf("plan mismatch (-want +got):\n%s (older profile %s)", diff, older)
		}
	})
}

func TestResolveMaxMerges(t *testing.T) {
	res := newResolver(t, func(r *Rules) { r.MaxMerges = 1 })
	g := NewMemGraph()
	c := collect(t, res, g, at(0), "m-c", gaID("g1")).Profile // the oldest
	a := collect(t, res, g, at(time.Hour), "m-a", mail("a@x")).Profile
	b := collect(t, res, g, at(2*time.Hour), "m-b", android("d1")).Profile

	first := collect(t, res, g, at(3*time.Hour), "m-ab", mail("a@x"), android("d1"))
	if diff := cmp.Diff(Plan{Profile: a, Absorb: []ProfileID{b}}, first, equateEmpty); diff != "" {
		t.Fatalf("first merge plan mismatch (-want +got):\n%s", diff)
	}

	// A second merge would give the profile 2 merges: refused. The message
	// resolves to the profile of its highest-priority match (the email's), not to
	// the oldest profile C, and its new identifier is dropped.
	p := plan(t, res, g, at(4*time.Hour), gaID("g1"), ios("new"), mail("a@x"))
	want := Plan{Profile: a, Dropped: []ID{ios("new")}, Capped: true}
	if diff := cmp.Diff(want, p, equateEmpty); diff != "" {
		t.Fatalf("capped plan mismatch (-want +got):\n%s", diff)
	}
	before := snap(g)
	apply(t, g, p, at(4*time.Hour), "m-capped")
	if diff := cmp.Diff(before, snap(g), equateEmpty); diff != "" {
		t.Errorf("a capped plan changed the graph (-before +after):\n%s", diff)
	}
	if got := lookup(t, g, gaID("g1")); got != c {
		t.Errorf("g1 resolves to %s, want it to stay with %s", got, c)
	}
}

func TestResolveTwoUserIDsNoMatch(t *testing.T) {
	res, g := newResolver(t, nil), NewMemGraph()
	p := plan(t, res, g, at(0), uid("u2"), anon("a"), uid("u1"))
	// The lowest-priority identifier is dropped first (anon), then u2: only the
	// highest-priority user id is kept.
	want := Plan{Profile: p.Profile, Create: true, Link: []ID{uid("u1")}, Dropped: []ID{anon("a"), uid("u2")}}
	if diff := cmp.Diff(want, p, equateEmpty); diff != "" {
		t.Errorf("plan mismatch (-want +got):\n%s", diff)
	}

	p = plan(t, res, g, at(0), uid("u2"), uid("u1"))
	want = Plan{Profile: p.Profile, Create: true, Link: []ID{uid("u1")}, Dropped: []ID{uid("u2")}}
	if diff := cmp.Diff(want, p, equateEmpty); diff != "" {
		t.Errorf("plan mismatch (-want +got):\n%s", diff)
	}
}

func TestResolveDefaultLimitOfFive(t *testing.T) {
	res, g := newResolver(t, nil), NewMemGraph()
	ids := []ID{anon("a1"), anon("a2"), anon("a3"), anon("a4"), anon("a5"), anon("a6")}
	p := plan(t, res, g, at(0), ids...)
	want := Plan{Profile: p.Profile, Create: true, Link: ids[:5], Dropped: []ID{anon("a6")}}
	if diff := cmp.Diff(want, p, equateEmpty); diff != "" {
		t.Errorf("plan mismatch (-want +got):\n%s", diff)
	}
}

func TestApplyIsIdempotent(t *testing.T) {
	res := newResolver(t, nil)
	setup := func(t *testing.T) *MemGraph {
		g := NewMemGraph()
		collect(t, res, g, at(0), "m1", mail("a@x"))
		collect(t, res, g, at(time.Hour), "m2", anon("b"))
		return g
	}
	tests := []struct {
		name string
		ids  []ID
	}{
		{"create", []ID{uid("new"), ios("i")}},
		{"join", []ID{mail("a@x"), ios("i")}},
		{"merge", []ID{mail("a@x"), anon("b"), ios("i")}},
		{"join by anonymous id", []ID{uid("u9"), anon("b")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := setup(t)
			now := at(2 * time.Hour)
			p := plan(t, res, g, now, tt.ids...)
			if !p.Writes() {
				t.Fatalf("plan %+v writes nothing: the test would prove nothing", p)
			}
			before := snap(g)
			g2 := before.graph()
			apply(t, g, p, now, "m3")
			once := snap(g)
			if cmp.Equal(before, once, equateEmpty) {
				t.Fatal("applying the plan changed nothing")
			}
			apply(t, g, p, now, "m3")
			if diff := cmp.Diff(once, snap(g), equateEmpty); diff != "" {
				t.Errorf("second Apply changed the graph (-once +twice):\n%s", diff)
			}
			// Twice within one transaction is just as harmless.
			ctx := context.Background()
			tx, err := g2.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if err := p.Apply(ctx, tx, now, "m3"); err != nil {
					t.Fatalf("Apply in one tx: %v", err)
				}
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(once, snap(g2), equateEmpty); diff != "" {
				t.Errorf("applying twice in one tx differs from once (-once +twice):\n%s", diff)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	res, g := newResolver(t, nil), NewMemGraph()
	ctx := context.Background()
	for _, matches := range [][]Match{nil, {}} {
		if _, err := res.Resolve(ctx, g, matches, t0); !errors.Is(err, ErrInvalid) {
			t.Errorf("Resolve(%v) = %v, want ErrInvalid", matches, err)
		}
	}
	// A match naming a profile the graph does not know is a read error.
	ghost := NewProfileID(t0)
	_, err := res.Resolve(ctx, g, []Match{{ID: uid("u1"), Profile: ghost}, {ID: anon("a")}}, t0)
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve with an unknown profile = %v, want ErrNotFound", err)
	}
	// LookupAll passes on errors other than ErrNotFound.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	tx, err := g.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := LookupAll(cctx, tx, []ID{uid("u1")}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("LookupAll with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestLookupAll(t *testing.T) {
	res, g := newResolver(t, nil), NewMemGraph()
	a := collect(t, res, g, at(0), "m1", uid("u1")).Profile
	dst := make([]Match, 0, 4)
	got, err := LookupAll(context.Background(), g, []ID{uid("u1"), anon("x")}, dst)
	if err != nil {
		t.Fatal(err)
	}
	want := []Match{{ID: uid("u1"), Profile: a}, {ID: anon("x")}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LookupAll mismatch (-want +got):\n%s", diff)
	}
	if &got[0] != &dst[:1][0] {
		t.Error("LookupAll did not append to dst")
	}
}
