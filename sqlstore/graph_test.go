package sqlstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gdprkit/privacy/identity"
)

func email(v string) identity.ID { return identity.ID{Type: identity.TypeEmail, Value: v} }
func anon(v string) identity.ID  { return identity.ID{Type: identity.TypeAnonymousID, Value: v} }

func graphTxn(t *testing.T, g identity.Graph) identity.Tx { return beginTxn(t, g.Begin) }

func TestGraph(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		g := s.Graph()
		p, q := identity.NewProfileID(t0), identity.NewProfileID(t0)

		tx := graphTxn(t, g)
		must(t, tx.Create(ctx, p, t0))
		must(t, tx.Create(ctx, p, t0)) // a redo
		if err := tx.Create(ctx, p, t0.Add(time.Second)); !errors.Is(err, identity.ErrConflict) {
			t.Errorf("Create with another CreatedAt = %v, want ErrConflict", err)
		}
		must(t, tx.Link(ctx, p, identity.Link{ID: email("a@x"), LinkedAt: t0, MessageID: "m1"}))
		must(t, tx.Link(ctx, p, identity.Link{ID: anon("a1"), LinkedAt: t0.Add(time.Second), MessageID: "m2"}))
		must(t, tx.Link(ctx, p, identity.Link{ID: email("a@x"), LinkedAt: t0, MessageID: "m1"})) // a redo
		if err := tx.Link(ctx, q, identity.Link{ID: anon("q1"), LinkedAt: t0}); !errors.Is(err, identity.ErrNotFound) {
			t.Errorf("Link to a missing profile = %v, want ErrNotFound", err)
		}
		// The tx sees its writes; the graph does not, yet.
		if pid, err := tx.Lookup(ctx, anon("a1")); err != nil || pid != p {
			t.Errorf("tx.Lookup = %s, %v; want %s", pid, err, p)
		}
		if _, err := g.Lookup(ctx, anon("a1")); !errors.Is(err, identity.ErrNotFound) {
			t.Errorf("graph Lookup before commit = %v, want ErrNotFound", err)
		}
		must(t, tx.Commit(ctx))
		if err := tx.Commit(ctx); !errors.Is(err, identity.ErrTxDone) {
			t.Errorf("second Commit = %v, want ErrTxDone", err)
		}
		if _, err := tx.Lookup(ctx, anon("a1")); !errors.Is(err, identity.ErrTxDone) {
			t.Errorf("Lookup after Commit = %v, want ErrTxDone", err)
		}
		must(t, tx.Rollback(ctx))

		want := &identity.Node{ID: p, CreatedAt: t0, Links: []identity.Link{
			{ID: email("a@x"), LinkedAt: t0, MessageID: "m1"},
			{ID: anon("a1"), LinkedAt: t0.Add(time.Second), MessageID: "m2"},
		}}
		n, err := g.Node(ctx, p)
		must(t, err)
		if diff := cmp.Diff(want, n); diff != "" {
			t.Errorf("Node (-want +got):\n%s", diff)
		}

		// Merge p into q: q's links first, then p's in order, then the merge.
		tx = graphTxn(t, g)
		must(t, tx.Create(ctx, q, t0))
		must(t, tx.Link(ctx, q, identity.Link{ID: anon("q1"), LinkedAt: t0, MessageID: "m3"}))
		if err := tx.Link(ctx, q, identity.Link{ID: anon("a1"), LinkedAt: t0}); !errors.Is(err, identity.ErrConflict) {
			t.Errorf("Link of another profile's identifier = %v, want ErrConflict", err)
		}
		if err := tx.Merge(ctx, q, identity.Merge{From: q}); !errors.Is(err, identity.ErrConflict) {
			t.Errorf("Merge into itself = %v, want ErrConflict", err)
		}
		m := identity.Merge{From: p, At: t0.Add(time.Minute), MessageID: "m4"}
		must(t, tx.Merge(ctx, q, m))
		must(t, tx.Merge(ctx, q, m)) // a redo
		must(t, tx.Commit(ctx))
		if _, err := g.Node(ctx, p); !errors.Is(err, identity.ErrNotFound) {
			t.Errorf("Node of the merged profile = %v, want ErrNotFound", err)
		}
		n, err = g.Node(ctx, q)
		must(t, err)
		want = &identity.Node{ID: q, CreatedAt: t0, Links: append([]identity.Link{{ID: anon("q1"), LinkedAt: t0, MessageID: "m3"}}, want.Links...),
			Merges: []identity.Merge{m}}
		if diff := cmp.Diff(want, n); diff != "" {
			t.Errorf("Node after merge (-want +got):\n%s", diff)
		}
		if pid, err := g.Lookup(ctx, email("a@x")); err != nil || pid != q {
			t.Errorf("Lookup after merge = %s, %v; want %s", pid, err, q)
		}

		// A second merge appends after the first, history first.
		r := identity.NewProfileID(t0)
		tx = graphTxn(t, g)
		must(t, tx.Create(ctx, r, t0))
		m2 := identity.Merge{From: q, At: t0.Add(time.Hour), MessageID: "m5"}
		must(t, tx.Merge(ctx, r, m2))
		n, err = tx.Node(ctx, r)
		must(t, err)
		if diff := cmp.Diff([]identity.Merge{m, m2}, n.Merges); diff != "" {
			t.Errorf("merges after a second merge (-want +got):\n%s", diff)
		}
		if len(n.Links) != 3 {
			t.Errorf("links after a second merge: %d, want 3", len(n.Links))
		}
		must(t, tx.Delete(ctx, r))
		must(t, tx.Delete(ctx, r)) // a redo
		must(t, tx.Commit(ctx))
		for _, id := range []identity.ID{email("a@x"), anon("a1"), anon("q1")} {
			if _, err := g.Lookup(ctx, id); !errors.Is(err, identity.ErrNotFound) {
				t.Errorf("Lookup(%s) after Delete = %v, want ErrNotFound", id, err)
			}
		}
		if _, err := g.Node(ctx, r); !errors.Is(err, identity.ErrNotFound) {
			t.Errorf("Node after Delete = %v, want ErrNotFound", err)
		}
	})
}

func TestGraphRollback(t *testing.T) {
	testGraphTxLeavesNothing(t, "after Rollback", func(t *testing.T, ctx context.Context, _ context.CancelFunc, tx identity.Tx, p identity.ProfileID) {
		must(t, tx.Link(ctx, p, identity.Link{ID: email("a@x"), LinkedAt: t0}))
		must(t, tx.Rollback(ctx))
		must(t, tx.Rollback(ctx))
		if err := tx.Create(ctx, p, t0); !errors.Is(err, identity.ErrTxDone) {
			t.Errorf("Create after Rollback = %v, want ErrTxDone", err)
		}
	})
}

func TestGraphCommitCancelled(t *testing.T) {
	testGraphTxLeavesNothing(t, "after a cancelled Commit", func(t *testing.T, ctx context.Context, cancel context.CancelFunc, tx identity.Tx, _ identity.ProfileID) {
		cancel()
		if err := tx.Commit(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Commit with a cancelled context = %v, want context.Canceled", err)
		}
	})
}

// testGraphTxLeavesNothing runs, on each dialect, a graph transaction that
// creates a profile with ctx and then ends with end (which may cancel ctx),
// and checks the graph has no such profile: the end discarded the writes.
// when names the end in the failure.
func testGraphTxLeavesNothing(t *testing.T, when string,
	end func(t *testing.T, ctx context.Context, cancel context.CancelFunc, tx identity.Tx, p identity.ProfileID)) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		g := s.Graph()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		p := identity.NewProfileID(t0)
		tx := graphTxn(t, g)
		must(t, tx.Create(ctx, p, t0))
		end(t, ctx, cancel, tx, p)
		if _, err := g.Node(t.Context(), p); !errors.Is(err, identity.ErrNotFound) {
			t.Errorf("Node %s = %v, want ErrNotFound: the writes were applied", when, err)
		}
	})
}

// TestNULIsInvalidOnPostgres: PostgreSQL text holds no NUL; the adapter says
// so with the package's ErrInvalid.
func TestNULIsInvalidOnPostgres(t *testing.T) {
	s := openPostgres(t)
	ctx := t.Context()
	p := identity.NewProfileID(t0)
	tx := graphTxn(t, s.Graph())
	must(t, tx.Create(ctx, p, t0))
	if err := tx.Link(ctx, p, identity.Link{ID: email("a\x00b"), LinkedAt: t0}); !errors.Is(err, identity.ErrInvalid) {
		t.Errorf("Link of a value with NUL = %v, want ErrInvalid", err)
	}
}
