package identity

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func begin(t testing.TB, g Graph) Tx {
	t.Helper()
	tx, err := g.Begin(context.Background())
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	return tx
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// concurrently runs work(0) to work(n-1) in n goroutines at once and, once
// all have returned, reports every error they returned: the harness of the
// tests that hammer the package from many goroutines (run them with -race).
func concurrently(t *testing.T, n int, work func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := work(i); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// seeded returns a graph with one committed profile P holding u1 and a1.
func seeded(t testing.TB) (*MemGraph, ProfileID) {
	t.Helper()
	ctx := context.Background()
	g := NewMemGraph()
	pid := NewProfileID(t0)
	tx := begin(t, g)
	must(t, tx.Create(ctx, pid, t0))
	must(t, tx.Link(ctx, pid, Link{ID: uid("u1"), LinkedAt: t0, MessageID: "m1"}))
	must(t, tx.Link(ctx, pid, Link{ID: anon("a1"), LinkedAt: t0, MessageID: "m1"}))
	must(t, tx.Commit(ctx))
	return g, pid
}

// seededWithQ returns the seeded graph, its profile P and an open tx on it that
// has staged a second profile Q, created at createdAt and holding links: the
// two-profile start that many tests share.
func seededWithQ(t testing.TB, createdAt time.Time, links ...Link) (g *MemGraph, p, q ProfileID, tx Tx) {
	t.Helper()
	ctx := context.Background()
	g, p = seeded(t)
	q = NewProfileID(t0)
	tx = begin(t, g)
	must(t, tx.Create(ctx, q, createdAt))
	for _, l := range links {
		must(t, tx.Link(ctx, q, l))
	}
	return g, p, q, tx
}

func TestTxSeesOwnWritesOthersDoNot(t *testing.T) {
	ctx := context.Background()
	g, p := seeded(t)
	tx, other := begin(t, g), begin(t, g)
	q := NewProfileID(t0)
	must(t, tx.Create(ctx, q, at(time.Hour)))
	must(t, tx.Link(ctx, q, Link{ID: mail("q@x"), LinkedAt: at(time.Hour)}))
	must(t, tx.Link(ctx, p, Link{ID: ios("i1"), LinkedAt: at(time.Hour)}))

	// The tx itself sees everything it staged.
	if pid, err := tx.Lookup(ctx, mail("q@x")); err != nil || pid != q {
		t.Errorf("tx.Lookup(q@x) = %s, %v; want %s", pid, err, q)
	}
	if pid, err := tx.Lookup(ctx, ios("i1")); err != nil || pid != p {
		t.Errorf("tx.Lookup(i1) = %s, %v; want %s", pid, err, p)
	}
	if n, err := tx.Node(ctx, p); err != nil || len(n.Links) != 3 {
		t.Errorf("tx.Node(P) = %+v, %v; want 3 links", n, err)
	}
	if n, err := tx.Node(ctx, q); err != nil || !n.CreatedAt.Equal(at(time.Hour)) {
		t.Errorf("tx.Node(Q) = %+v, %v", n, err)
	}

	// Nobody else does before Commit.
	for name, rd := range map[string]Reader{"graph": g, "other tx": other} {
		if _, err := rd.Lookup(ctx, mail("q@x")); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: Lookup(q@x) before commit = %v, want ErrNotFound", name, err)
		}
		if _, err := rd.Lookup(ctx, ios("i1")); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: Lookup(i1) before commit = %v, want ErrNotFound", name, err)
		}
		if _, err := rd.Node(ctx, q); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: Node(Q) before commit = %v, want ErrNotFound", name, err)
		}
		if n, err := rd.Node(ctx, p); err != nil || len(n.Links) != 2 {
			t.Errorf("%s: Node(P) before commit = %+v, %v; want the 2 committed links", name, n, err)
		}
	}
	if profiles, ids := g.Len(); profiles != 1 || ids != 2 {
		t.Errorf("Len before commit = %d, %d; want 1, 2", profiles, ids)
	}

	must(t, tx.Commit(ctx))
	for name, rd := range map[string]Reader{"graph": g, "other tx": other} {
		if pid, err := rd.Lookup(ctx, mail("q@x")); err != nil || pid != q {
			t.Errorf("%s: Lookup(q@x) after commit = %s, %v; want %s", name, pid, err, q)
		}
		if n, err := rd.Node(ctx, p); err != nil || len(n.Links) != 3 {
			t.Errorf("%s: Node(P) after commit = %+v, %v; want 3 links", name, n, err)
		}
	}
	if profiles, ids := g.Len(); profiles != 2 || ids != 4 {
		t.Errorf("Len after commit = %d, %d; want 2, 4", profiles, ids)
	}
	must(t, other.Rollback(ctx))
}

func TestRollbackDiscards(t *testing.T) {
	ctx := context.Background()
	g, p := seeded(t)
	before := snap(g)
	tx := begin(t, g)
	q := NewProfileID(t0)
	must(t, tx.Create(ctx, q, t0))
	must(t, tx.Link(ctx, q, Link{ID: mail("q@x")}))
	must(t, tx.Link(ctx, p, Link{ID: ios("i")}))
	must(t, tx.Merge(ctx, q, Merge{From: p}))
	must(t, tx.Delete(ctx, q))
	must(t, tx.Rollback(ctx))
	if diff := cmp.Diff(before, snap(g)); diff != "" {
		t.Errorf("Rollback left changes (-before +after):\n%s", diff)
	}
	// Rolling back twice is harmless too.
	if err := tx.Rollback(ctx); err != nil {
		t.Errorf("second Rollback = %v, want nil", err)
	}
}

func TestTxDone(t *testing.T) {
	ctx := context.Background()
	ends := []struct {
		name string
		end  func(Tx) error
	}{
		{"committed", func(tx Tx) error { return tx.Commit(ctx) }},
		{"rolled back", func(tx Tx) error { return tx.Rollback(ctx) }},
		{"commit with a cancelled context", func(tx Tx) error {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			if err := tx.Commit(cctx); !errors.Is(err, context.Canceled) {
				return fmt.Errorf("Commit = %v, want context.Canceled", err)
			}
			return nil
		}},
	}
	pid := NewProfileID(t0)
	methods := []struct {
		name string
		call func(Tx) error
	}{
		{"Lookup", func(tx Tx) error { _, err := tx.Lookup(ctx, uid("u1")); return err }},
		{"Node", func(tx Tx) error { _, err := tx.Node(ctx, pid); return err }},
		{"Create", func(tx Tx) error { return tx.Create(ctx, NewProfileID(t0), t0) }},
		{"Link", func(tx Tx) error { return tx.Link(ctx, pid, Link{ID: ios("x")}) }},
		{"Merge", func(tx Tx) error { return tx.Merge(ctx, pid, Merge{From: NewProfileID(t0)}) }},
		{"Delete", func(tx Tx) error { return tx.Delete(ctx, pid) }},
		{"Commit", func(tx Tx) error { return tx.Commit(ctx) }},
	}
	for _, e := range ends {
		for _, m := range methods {
			t.Run(e.name+"/"+m.name, func(t *testing.T) {
				g := NewMemGraph()
				tx := begin(t, g)
				must(t, tx.Create(ctx, pid, t0))
				must(t, e.end(tx))
				if err := m.call(tx); !errors.Is(err, ErrTxDone) {
					t.Errorf("%s after the tx ended = %v, want ErrTxDone", m.name, err)
				}
				if err := tx.Rollback(ctx); err != nil {
					t.Errorf("Rollback after the tx ended = %v, want nil", err)
				}
				// Nothing a done tx does reaches the graph.
				want := 0
				if e.name == "committed" {
					want = 1
				}
				if profiles, ids := g.Len(); profiles != want || ids != 0 {
					t.Errorf("graph has %d profiles, %d ids; want %d, 0", profiles, ids, want)
				}
			})
		}
	}
}

func TestCommitCancelledRollsBack(t *testing.T) {
	g, p := seeded(t)
	before := snap(g)
	ctx, cancel := context.WithCancel(context.Background())
	tx := begin(t, g)
	must(t, tx.Link(ctx, p, Link{ID: ios("i")}))
	must(t, tx.Delete(ctx, p))
	cancel()
	if err := tx.Commit(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit with a cancelled context = %v, want context.Canceled", err)
	}
	if diff := cmp.Diff(before, snap(g)); diff != "" {
		t.Errorf("cancelled Commit changed the graph (-before +after):\n%s", diff)
	}
	if err := tx.Rollback(context.Background()); err != nil {
		t.Errorf("Rollback after a cancelled Commit = %v, want nil", err)
	}
	// Begin with a cancelled context fails too, and methods of a live tx check
	// their context.
	if _, err := g.Begin(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Begin with a cancelled context = %v, want context.Canceled", err)
	}
	live := begin(t, g)
	if _, err := live.Lookup(ctx, uid("u1")); !errors.Is(err, context.Canceled) {
		t.Errorf("Lookup with a cancelled context = %v, want context.Canceled", err)
	}
	if err := live.Link(ctx, p, Link{ID: ios("j")}); !errors.Is(err, context.Canceled) {
		t.Errorf("Link with a cancelled context = %v, want context.Canceled", err)
	}
	must(t, live.Rollback(ctx))
}

func TestLink(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		setup   func(t *testing.T, tx Tx, p, q ProfileID)
		link    func(p, q ProfileID) (ProfileID, Link)
		wantErr error
		// keepsFirst: the identifier is already linked; the node keeps the
		// first link's time and message.
		keepsFirst bool
	}{
		{
			name: "new identifier",
			link: func(p, q ProfileID) (ProfileID, Link) { return p, Link{ID: ios("i")} },
		},
		{
			name:       "again to the same profile is a no-op",
			link:       func(p, q ProfileID) (ProfileID, Link) { return p, Link{ID: uid("u1"), LinkedAt: at(time.Hour)} },
			keepsFirst: true,
		},
		{
			name:    "owned by another profile",
			link:    func(p, q ProfileID) (ProfileID, Link) { return q, Link{ID: uid("u1")} },
			wantErr: ErrConflict,
		},
		{
			name: "staged for another profile in the same tx",
			setup: func(t *testing.T, tx Tx, p, q ProfileID) {
				must(t, tx.Link(ctx, q, Link{ID: ios("staged")}))
			},
			link:    func(p, q ProfileID) (ProfileID, Link) { return p, Link{ID: ios("staged")} },
			wantErr: ErrConflict,
		},
		{
			name:    "to a missing profile",
			link:    func(p, q ProfileID) (ProfileID, Link) { return NewProfileID(t0), Link{ID: ios("i")} },
			wantErr: ErrNotFound,
		},
		{
			name: "freed by Delete in the same tx",
			setup: func(t *testing.T, tx Tx, p, q ProfileID) {
				must(t, tx.Delete(ctx, p))
			},
			link: func(p, q ProfileID) (ProfileID, Link) { return q, Link{ID: uid("u1")} },
		},
		{
			name: "to a profile deleted in the same tx",
			setup: func(t *testing.T, tx Tx, p, q ProfileID) {
				must(t, tx.Delete(ctx, p))
			},
			link:    func(p, q ProfileID) (ProfileID, Link) { return p, Link{ID: ios("i")} },
			wantErr: ErrNotFound,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, p, q, tx := seededWithQ(t, t0)
			if tt.setup != nil {
				tt.setup(t, tx, p, q)
			}
			target, l := tt.link(p, q)
			before, err := tx.Node(ctx, target)
			if err != nil && !errors.Is(err, ErrNotFound) {
				t.Fatal(err)
			}
			err = tx.Link(ctx, target, l)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("Link = %v, want %v", err, tt.wantErr)
			}
			owner, lookupErr := tx.Lookup(ctx, l.ID)
			if tt.wantErr != nil {
				// A refused link changes nothing.
				after, _ := tx.Node(ctx, target)
				if diff := cmp.Diff(before, after); diff != "" {
					t.Errorf("refused Link changed the node (-before +after):\n%s", diff)
				}
				if lookupErr == nil && owner == target {
					t.Errorf("refused Link linked %v to %s", l.ID, target)
				}
				return
			}
			if lookupErr != nil || owner != target {
				t.Errorf("Lookup after Link = %s, %v; want %s", owner, lookupErr, target)
			}
			// Each identifier appears once on the node, with its first link time.
			n, err := tx.Node(ctx, target)
			if err != nil {
				t.Fatal(err)
			}
			var stored []Link
			for _, have := range n.Links {
				if have.ID == l.ID {
					stored = append(stored, have)
				}
			}
			want := []Link{l}
			if tt.keepsFirst {
				want = []Link{{ID: l.ID, LinkedAt: t0, MessageID: "m1"}}
			}
			if diff := cmp.Diff(want, stored); diff != "" {
				t.Errorf("links of %v on the node mismatch (-want +got):\n%s", l.ID, diff)
			}
		})
	}
}

func TestCreate(t *testing.T) {
	ctx := context.Background()
	g, p := seeded(t)
	tests := []struct {
		name    string
		pid     ProfileID
		at      time.Time
		wantErr error
	}{
		{"new profile", NewProfileID(t0), t0, nil},
		{"existing, same CreatedAt", p, t0, nil},
		{"existing, same instant in another zone", p, t0.In(time.FixedZone("X", 3600)), nil},
		{"existing, other CreatedAt", p, at(time.Second), ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tx := begin(t, g)
			defer tx.Rollback(ctx)
			err := tx.Create(ctx, tt.pid, tt.at)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("Create = %v, want %v", err, tt.wantErr)
			}
			n, err := tx.Node(ctx, tt.pid)
			if err != nil {
				t.Fatal(err)
			}
			if tt.pid == p && len(n.Links) != 2 {
				t.Errorf("Create of an existing profile changed its links: %+v", n.Links)
			}
			if tt.wantErr == nil && !n.CreatedAt.Equal(tt.at) {
				t.Errorf("CreatedAt = %v, want %v", n.CreatedAt, tt.at)
			}
		})
	}
	// Creating twice in one tx, then committing, gives one profile.
	tx := begin(t, g)
	q := NewProfileID(t0)
	must(t, tx.Create(ctx, q, t0))
	must(t, tx.Create(ctx, q, t0))
	if err := tx.Create(ctx, q, at(time.Hour)); !errors.Is(err, ErrConflict) {
		t.Errorf("Create of a staged profile with another time = %v, want ErrConflict", err)
	}
	must(t, tx.Commit(ctx))
	if profiles, _ := g.Len(); profiles != 2 {
		t.Errorf("%d profiles, want 2", profiles)
	}
}

func TestMerge(t *testing.T) {
	ctx := context.Background()
	g, p, q, tx := seededWithQ(t, at(time.Hour), Link{ID: mail("q@x"), LinkedAt: at(time.Hour), MessageID: "mq"})
	must(t, tx.Commit(ctx))
	base := snap(g)

	// Merges that leave the graph as it was, even once committed.
	unchanging := []struct {
		name  string
		merge func(t *testing.T, tx Tx)
	}{
		{"into itself", func(t *testing.T, tx Tx) {
			if err := tx.Merge(ctx, p, Merge{From: p}); !errors.Is(err, ErrConflict) {
				t.Errorf("Merge into itself = %v, want ErrConflict", err)
			}
		}},
		{"missing profile is a no-op", func(t *testing.T, tx Tx) {
			if err := tx.Merge(ctx, p, Merge{From: NewProfileID(t0), At: at(time.Hour)}); err != nil {
				t.Errorf("Merge of a missing profile = %v, want nil", err)
			}
			// Even into a missing profile: there is nothing left to do.
			if err := tx.Merge(ctx, NewProfileID(t0), Merge{From: NewProfileID(t0)}); err != nil {
				t.Errorf("Merge of a missing profile into a missing one = %v, want nil", err)
			}
		}},
		{"into a missing profile", func(t *testing.T, tx Tx) {
			if err := tx.Merge(ctx, NewProfileID(t0), Merge{From: q}); !errors.Is(err, ErrNotFound) {
				t.Errorf("Merge into a missing profile = %v, want ErrNotFound", err)
			}
		}},
	}
	for _, tt := range unchanging {
		t.Run(tt.name, func(t *testing.T) {
			g := base.graph()
			tx := begin(t, g)
			tt.merge(t, tx)
			must(t, tx.Commit(ctx))
			if diff := cmp.Diff(base, snap(g)); diff != "" {
				t.Errorf("graph changed (-before +after):\n%s", diff)
			}
		})
	}
	t.Run("moves identifiers and history", func(t *testing.T) {
		g := base.graph()
		x := NewProfileID(t0)
		tx := begin(t, g)
		must(t, tx.Create(ctx, x, at(2*time.Hour)))
		must(t, tx.Link(ctx, x, Link{ID: ios("x"), LinkedAt: at(2 * time.Hour), MessageID: "mx"}))
		must(t, tx.Merge(ctx, q, Merge{From: x, At: at(3 * time.Hour), MessageID: "m-qx"}))
		must(t, tx.Merge(ctx, p, Merge{From: q, At: at(4 * time.Hour), MessageID: "m-pq"}))
		// Redo of both merges: no-ops.
		must(t, tx.Merge(ctx, q, Merge{From: x, At: at(3 * time.Hour), MessageID: "m-qx"}))
		must(t, tx.Merge(ctx, p, Merge{From: q, At: at(4 * time.Hour), MessageID: "m-pq"}))
		must(t, tx.Commit(ctx))
		want := &Node{ID: p, CreatedAt: t0,
			Links: []Link{
				{ID: uid("u1"), LinkedAt: t0, MessageID: "m1"},
				{ID: anon("a1"), LinkedAt: t0, MessageID: "m1"},
				{ID: mail("q@x"), LinkedAt: at(time.Hour), MessageID: "mq"},
				{ID: ios("x"), LinkedAt: at(2 * time.Hour), MessageID: "mx"},
			},
			Merges: []Merge{
				{From: x, At: at(3 * time.Hour), MessageID: "m-qx"},
				{From: q, At: at(4 * time.Hour), MessageID: "m-pq"},
			},
		}
		if diff := cmp.Diff(want, node(t, g, p)); diff != "" {
			t.Errorf("merged node mismatch (-want +got):\n%s", diff)
		}
		for _, gone := range []ProfileID{q, x} {
			if _, err := g.Node(ctx, gone); !errors.Is(err, ErrNotFound) {
				t.Errorf("Node(%s) after merge = %v, want ErrNotFound", gone, err)
			}
		}
		for _, id := range []ID{uid("u1"), anon("a1"), mail("q@x"), ios("x")} {
			if got := lookup(t, g, id); got != p {
				t.Errorf("Lookup(%v) = %s, want %s", id, got, p)
			}
		}
		if profiles, ids := g.Len(); profiles != 1 || ids != 4 {
			t.Errorf("Len = %d, %d; want 1, 4", profiles, ids)
		}
	})
}

func TestDelete(t *testing.T) {
	ctx := context.Background()
	g, p, q, tx := seededWithQ(t, t0, Link{ID: mail("q@x")})
	must(t, tx.Link(ctx, p, Link{ID: ios("staged")})) // staged, then deleted with p
	must(t, tx.Delete(ctx, p))
	if _, err := tx.Node(ctx, p); !errors.Is(err, ErrNotFound) {
		t.Errorf("tx.Node after Delete = %v, want ErrNotFound", err)
	}
	must(t, tx.Delete(ctx, p)) // twice: a no-op
	must(t, tx.Commit(ctx))

	for _, id := range []ID{uid("u1"), anon("a1"), ios("staged")} {
		if _, err := g.Lookup(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Lookup(%v) after Delete = %v, want ErrNotFound", id, err)
		}
	}
	if _, err := g.Node(ctx, p); !errors.Is(err, ErrNotFound) {
		t.Errorf("Node after Delete = %v, want ErrNotFound", err)
	}
	if got := lookup(t, g, mail("q@x")); got != q {
		t.Errorf("the other profile's identifier resolves to %s, want %s", got, q)
	}
	if profiles, ids := g.Len(); profiles != 1 || ids != 1 {
		t.Errorf("Len after Delete = %d, %d; want 1, 1", profiles, ids)
	}

	// Deleting again, or deleting what never existed, is a no-op.
	before := snap(g)
	tx = begin(t, g)
	must(t, tx.Delete(ctx, p))
	must(t, tx.Delete(ctx, NewProfileID(t0)))
	must(t, tx.Commit(ctx))
	if diff := cmp.Diff(before, snap(g)); diff != "" {
		t.Errorf("redo of Delete changed the graph (-before +after):\n%s", diff)
	}
	// The freed identifiers can be linked again.
	tx = begin(t, g)
	must(t, tx.Link(ctx, q, Link{ID: uid("u1")}))
	must(t, tx.Commit(ctx))
	if got := lookup(t, g, uid("u1")); got != q {
		t.Errorf("re-linked u1 resolves to %s, want %s", got, q)
	}
}

// Values returned by Node are the caller's: changing them does not reach the
// graph, committed or staged.
func TestNodeIsACopy(t *testing.T) {
	ctx := context.Background()
	g, p, q, tx := seededWithQ(t, t0, Link{ID: mail("q@x")})
	must(t, tx.Merge(ctx, q, Merge{From: NewProfileID(t0)})) // no-op, q keeps no merges
	must(t, tx.Commit(ctx))
	before := snap(g)

	mutate := func(n *Node) {
		n.Links[0].ID = ID{"evil", "x"}
		n.Links[0].MessageID = "evil"
		n.Links = append(n.Links[:1], Link{ID: ID{"evil", "y"}})
		n.Merges = append(n.Merges, Merge{From: "use_evil"})
		n.CreatedAt = time.Time{}
	}
	for _, pid := range []ProfileID{p, q} {
		mutate(node(t, g, pid))
		rtx := begin(t, g)
		n, err := rtx.Node(ctx, pid)
		if err != nil {
			t.Fatal(err)
		}
		mutate(n)
		must(t, rtx.Rollback(ctx))
	}
	if diff := cmp.Diff(before, snap(g)); diff != "" {
		t.Errorf("mutating returned nodes changed the graph (-before +after):\n%s", diff)
	}

	// Within a tx, a node returned before a staged write is not changed by it,
	// and mutating one does not change what the tx stages.
	wtx := begin(t, g)
	n1, err := wtx.Node(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	must(t, wtx.Link(ctx, p, Link{ID: ios("i")}))
	if len(n1.Links) != 2 {
		t.Errorf("earlier Node result grew to %d links", len(n1.Links))
	}
	n2, err := wtx.Node(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	mutate(n2)
	must(t, wtx.Commit(ctx))
	want := &Node{ID: p, CreatedAt: t0, Links: []Link{
		{ID: uid("u1"), LinkedAt: t0, MessageID: "m1"},
		{ID: anon("a1"), LinkedAt: t0, MessageID: "m1"},
		{ID: ios("i")},
	}}
	if diff := cmp.Diff(want, node(t, g, p)); diff != "" {
		t.Errorf("committed node mismatch (-want +got):\n%s", diff)
	}
}

func TestNodeClone(t *testing.T) {
	n := &Node{ID: "use_x", CreatedAt: t0, Links: []Link{{ID: uid("u")}}, Merges: []Merge{{From: "use_y"}}}
	c := n.Clone()
	if diff := cmp.Diff(n, c); diff != "" {
		t.Fatalf("Clone mismatch (-want +got):\n%s", diff)
	}
	c.Links[0].ID = uid("changed")
	c.Merges[0].From = "use_changed"
	if n.Links[0].ID != uid("u") || n.Merges[0].From != "use_y" {
		t.Errorf("Clone shares memory with the original: %+v", n)
	}
}

// Many goroutines read and write at once; run with -race.
func TestMemGraphConcurrent(t *testing.T) {
	ctx := context.Background()
	g := NewMemGraph()
	const workers, each = 8, 50
	owners := make([][]ProfileID, workers)
	// op is worker w's i-th transaction: it stages a profile with a new user id
	// while reading another worker's, then rolls back (one in five) or commits
	// and checks that the commit shows.
	op := func(w, i int) error {
		pid := NewProfileID(t0)
		u := uid(strconv.Itoa(w) + "-" + strconv.Itoa(i))
		tx, err := g.Begin(ctx)
		if err != nil {
			return err
		}
		if err := tx.Create(ctx, pid, t0); err != nil {
			return err
		}
		if err := tx.Link(ctx, pid, Link{ID: u, LinkedAt: t0}); err != nil {
			return err
		}
		// Read others' committed work while staging.
		if _, err := tx.Lookup(ctx, uid(strconv.Itoa((w+1)%workers)+"-0")); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if i%5 == 4 {
			return tx.Rollback(ctx)
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		owners[w] = append(owners[w], pid)
		if got, err := g.Lookup(ctx, u); err != nil || got != pid {
			return fmt.Errorf("Lookup(%v) after commit = %s, %v; want %s", u, got, err, pid)
		}
		if n, err := g.Node(ctx, pid); err != nil || len(n.Links) != 1 {
			return fmt.Errorf("Node(%s) after commit = %+v, %v", pid, n, err)
		}
		g.Len()
		return nil
	}
	concurrently(t, workers, func(w int) error {
		for i := range each {
			if err := op(w, i); err != nil {
				return err
			}
		}
		return nil
	})
	wantProfiles := workers * each * 4 / 5
	if profiles, ids := g.Len(); profiles != wantProfiles || ids != wantProfiles {
		t.Errorf("Len = %d, %d; want %d, %d", profiles, ids, wantProfiles, wantProfiles)
	}
	for w, pids := range owners {
		for i, pid := range pids {
			if n := node(t, g, pid); len(n.Links) != 1 || n.Links[0].ID.Type != TypeUserID {
				t.Errorf("worker %d profile %d: %+v", w, i, n)
			}
		}
	}
}

// TestApplyOnACommittedTransactionLeavesCommittedNodesAlone: a plan applied
// on a transaction that committed fails with ErrTxDone and writes nothing,
// not even the room Plan.Apply reserves for links, into the node the commit
// published, which readers copy under the graph's lock (run it with -race).
// A review found the reservation writing there.
func TestApplyOnACommittedTransactionLeavesCommittedNodesAlone(t *testing.T) {
	ctx := context.Background()
	g := NewMemGraph()
	now := time.Unix(1_700_000_000, 0)
	tx := begin(t, g)
	first := &Plan{Profile: "p1", Create: true, Link: []ID{{Type: "user_id", Value: "u1"}}}
	if err := first.Apply(ctx, tx, now, "m1"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	before, err := g.Node(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { // a reader of the committed node
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := g.Node(ctx, "p1"); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	late := &Plan{Profile: "p1", Link: []ID{{Type: "email", Value: "a@example.com"}, {Type: "email", Value: "b@example.com"}}}
	err = late.Apply(ctx, tx, now, "m2")
	close(stop)
	<-done
	if !errors.Is(err, ErrTxDone) {
		t.Fatalf("Apply on a committed transaction: %v, want ErrTxDone", err)
	}
	after, err := g.Node(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Links) != len(before.Links) {
		t.Errorf("the committed node's links went from %d to %d", len(before.Links), len(after.Links))
	}
}

// TestMemGraphVersionCountsCommitsThatChangeIt: Version moves with every
// commit that changes the graph, before a lookup can see the change, and
// not for a commit with nothing staged, a rollback or a cancelled commit.
func TestMemGraphVersionCountsCommitsThatChangeIt(t *testing.T) {
	ctx := context.Background()
	g := NewMemGraph()
	commit := func(stage func(Tx) error) error {
		tx, err := g.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stage(tx); err != nil {
			t.Fatal(err)
		}
		return tx.Commit(ctx)
	}
	id := ID{Type: TypeUserID, Value: "ada"}
	v0 := g.Version()
	if err := commit(func(tx Tx) error { return nil }); err != nil || g.Version() != v0 {
		t.Fatalf("an empty commit: %v, version %d, want %d", err, g.Version(), v0)
	}
	if err := commit(func(tx Tx) error {
		if err := tx.Create(ctx, "p1", time.Time{}); err != nil {
			return err
		}
		return tx.Link(ctx, "p1", Link{ID: id})
	}); err != nil {
		t.Fatal(err)
	}
	v1 := g.Version()
	if v1 == v0 {
		t.Fatal("a commit that linked an identifier left the version")
	}
	if pid, err := g.Lookup(ctx, id); err != nil || pid != "p1" {
		t.Fatalf("Lookup = %q, %v", pid, err)
	}
	tx, _ := g.Begin(ctx)
	if err := tx.Delete(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	_ = tx.Rollback(ctx)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	tx, _ = g.Begin(ctx)
	if err := tx.Delete(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(cancelled); err == nil {
		t.Fatal("a cancelled commit committed")
	}
	if g.Version() != v1 {
		t.Fatalf("a rollback or a cancelled commit moved the version to %d from %d", g.Version(), v1)
	}
	if err := commit(func(tx Tx) error { return tx.Delete(ctx, "p1") }); err != nil || g.Version() == v1 {
		t.Fatalf("a deletion: %v, version %d", err, g.Version())
	}
}
