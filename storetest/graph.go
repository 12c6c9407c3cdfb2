package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/gdprkit/privacy/identity"
)

var graphChecks = []check[identity.Graph]{
	{"CreateAndRead", graphCreateAndRead},
	{"NotFound", graphNotFound},
	{"LinkAndLookup", graphLinkAndLookup},
	{"LinkIsIdempotent", graphLinkIsIdempotent},
	{"LinkConflict", graphLinkConflict},
	{"LinkToMissingProfile", graphLinkToMissingProfile},
	{"CreateIsIdempotent", graphCreateIsIdempotent},
	{"Merge", graphMerge},
	{"MergeIsIdempotent", graphMergeIsIdempotent},
	{"Delete", graphDelete},
	{"DeleteIsIdempotent", graphDeleteIsIdempotent},
	{"IdentifierReusableAfterDelete", graphIdentifierReusableAfterDelete},
	{"CopyAtBoundary", graphCopyAtBoundary},
	{"TxSeesOwnWrites", graphTxSeesOwnWrites},
	{"UncommittedInvisible", graphUncommittedInvisible},
	{"RollbackDiscards", graphRollbackDiscards},
	{"RollbackAfterCommitIsNoOp", graphRollbackAfterCommit},
	{"TxDone", graphTxDone},
	{"CancelledCommitIsAllOrNothing", graphCancelledCommit},
	{"ConcurrentWriters", graphConcurrentWriters},
	// The optional identity.BatchReader (batch.go).
	{"LookupBatch", graphLookupBatch},
	{"LookupBatchTxSeesOwnWrites", graphLookupBatchTxSeesOwnWrites},
	{"LookupBatchUncommittedInvisible", graphLookupBatchUncommittedInvisible},
	{"LookupBatchMany", graphLookupBatchMany},
	{"LookupBatchTxDone", graphLookupBatchTxDone},
}

// graphView is what a Reader shows of some profiles and identifiers: the node
// of each profile (nil when not found) and the owner of each identifier (""
// when not found).
type graphView struct {
	Nodes  map[identity.ProfileID]*identity.Node
	Owners map[identity.ID]identity.ProfileID
}

func viewGraph(t *testing.T, ctx context.Context, r identity.Reader, pids []identity.ProfileID, ids []identity.ID) graphView {
	t.Helper()
	v := graphView{Nodes: map[identity.ProfileID]*identity.Node{}, Owners: map[identity.ID]identity.ProfileID{}}
	for _, pid := range pids {
		n, err := r.Node(ctx, pid)
		switch {
		case errors.Is(err, identity.ErrNotFound):
			v.Nodes[pid] = nil
		case err != nil:
			t.Fatalf("Node(%s): %v", pid, err)
		default:
			v.Nodes[pid] = n
		}
	}
	for _, id := range ids {
		pid, err := r.Lookup(ctx, id)
		switch {
		case errors.Is(err, identity.ErrNotFound):
			v.Owners[id] = ""
		case err != nil:
			t.Fatalf("Lookup(%s): %v", id, err)
		default:
			v.Owners[id] = pid
		}
	}
	return v
}

// graphFixture is three committed profiles:
//
//	P: created at 0; user and laptop (user_id and anonymous_id), linked at 1 by m1
//	Q: created at 2; phone (anonymous_id), linked at 2 by m2
//	R: created at 3; mail (email), linked at 3 by m3
//
// Every fixture has identifiers of its own, so that a check may seed several
// in one graph.
type graphFixture struct {
	P, Q, R                   identity.ProfileID
	user, laptop, phone, mail identity.ID
	pids                      []identity.ProfileID
	ids                       []identity.ID
	links                     map[identity.ProfileID][]identity.Link
}

func seedGraph(t *testing.T, e *env, g identity.Graph) *graphFixture {
	t.Helper()
	ps := newPIDs(3)
	tag := nextTag()
	f := &graphFixture{P: ps[0], Q: ps[1], R: ps[2], pids: ps,
		user: uid("ada" + tag), laptop: anon("ada-laptop" + tag), phone: anon("ada-phone" + tag), mail: email("ada" + tag + "@example.com")}
	f.ids = []identity.ID{f.user, f.laptop, f.phone, f.mail}
	f.links = map[identity.ProfileID][]identity.Link{
		f.P: {{ID: f.user, LinkedAt: at(1), MessageID: "m1"}, {ID: f.laptop, LinkedAt: at(1), MessageID: "m1"}},
		f.Q: {{ID: f.phone, LinkedAt: at(2), MessageID: "m2"}},
		f.R: {{ID: f.mail, LinkedAt: at(3), MessageID: "m3"}},
	}
	inTx(t, e.ctx, g.Begin, func(tx identity.Tx) error {
		for i, pid := range ps {
			created := at([]int{0, 2, 3}[i])
			if err := tx.Create(e.ctx, pid, created); err != nil {
				return fmt.Errorf("Create(%s): %w", pid, err)
			}
			for _, l := range f.links[pid] {
				if err := tx.Link(e.ctx, pid, l); err != nil {
					return fmt.Errorf("Link(%s, %s): %w", pid, l.ID, err)
				}
			}
		}
		return nil
	})
	return f
}

func (f *graphFixture) view(t *testing.T, ctx context.Context, r identity.Reader) graphView {
	t.Helper()
	return viewGraph(t, ctx, r, f.pids, f.ids)
}

func graphCreateAndRead(t *testing.T, e *env, g identity.Graph) {
	f := seedGraph(t, e, g)
	n, err := g.Node(e.ctx, f.P)
	must(t, err, "Node")
	want := &identity.Node{ID: f.P, CreatedAt: at(0), Links: f.links[f.P]}
	if d := diff(want, n); d != "" {
		t.Errorf("Node(P) (-want +got):\n%s", d)
	}
	// A profile without identifiers is a node too.
	pid := newPID()
	inTx(t, e.ctx, g.Begin, func(tx identity.Tx) error { return tx.Create(e.ctx, pid, at(9)) })
	n, err = g.Node(e.ctx, pid)
	must(t, err, "Node of a profile without identifiers")
	if d := diff(&identity.Node{ID: pid, CreatedAt: at(9)}, n); d != "" {
		t.Errorf("Node of a profile without identifiers (-want +got):\n%s", d)
	}
}

func graphNotFound(t *testing.T, e *env, g identity.Graph) {
	f := seedGraph(t, e, g)
	missing := newPID()
	for _, name := range []string{"graph", "tx"} {
		var r identity.Reader = g
		if name == "tx" {
			tx, err := g.Begin(e.ctx)
			must(t, err, "Begin")
			defer tx.Rollback(e.ctx)
			r = tx
		}
		if pid, err := r.Lookup(e.ctx, uid("nobody")); !errors.Is(err, identity.ErrNotFound) {
			t.Errorf("%s: Lookup of an unknown identifier = %q, %v; want ErrNotFound", name, pid, err)
		}
		if n, err := r.Node(e.ctx, missing); !errors.Is(err, identity.ErrNotFound) {
			t.Errorf("%s: Node of an unknown profile = %+v, %v; want ErrNotFound", name, n, err)
		}
		// Same value, another type: another identifier.
		if pid, err := r.Lookup(e.ctx, identity.ID{Type: identity.TypeEmail, Value: f.user.Value}); !errors.Is(err, identity.ErrNotFound) {
			t.Errorf("%s: Lookup(email:%s), where only the user_id is linked = %q, %v; want ErrNotFound", name, f.user.Value, pid, err)
		}
	}
}

func graphLinkAndLookup(t *testing.T, e *env, g identity.Graph) {
	f := seedGraph(t, e, g)
	got := f.view(t, e.ctx, g)
	want := graphView{
		Nodes: map[identity.ProfileID]*identity.Node{
			f.P: {ID: f.P, CreatedAt: at(0), Links: f.links[f.P]},
			f.Q: {ID: f.Q, CreatedAt: at(2), Links: f.links[f.Q]},
			f.R: {ID: f.R, CreatedAt: at(3), Links: f.links[f.R]},
		},
		Owners: map[identity.ID]identity.ProfileID{
			f.user: f.P, f.laptop: f.P, f.phone: f.Q, f.mail: f.R,
		},
	}
	if d := diff(want, got); d != "" {
		t.Errorf("the graph after linking (-want +got):\n%s", d)
	}
	// Links keep the order they were made in, across transactions.
	more := []identity.Link{{ID: email("ada@work.example"), LinkedAt: at(20), MessageID: "m20"}, {ID: anon("ada-tablet"), LinkedAt: at(21), MessageID: "m21"}}
	for _, l := range more {
		inTx(t, e.ctx, g.Begin, func(tx identity.Tx) error { return tx.Link(e.ctx, f.P, l) })
	}
	n, err := g.Node(e.ctx, f.P)
	must(t, err, "Node")
	if d := diff(append(f.links[f.P], more...), n.Links); d != "" {
		t.Errorf("links of P after two more (-want +got):\n%s", d)
	}
}

func graphLinkIsIdempotent(t *testing.T, e *env, g identity.Graph) {
	f := seedGraph(t, e, g)
	before := f.view(t, e.ctx, g)
	// Again in a new transaction, twice in one, and with other LinkedAt and
	// MessageID (a replayed message): all no-ops.
	inTx(t, e.ctx, g.Begin, func(tx identity.Tx) error {
		for i := 0; i < 2; i++ {
			for _, l := range f.links[f.P] {
				if err := tx.Link(e.ctx, f.P, l); err != nil {
					return fmt.Errorf("Link(%s) again: %w", l.ID, err)
				}
			}
		}
		return tx.Link(e.ctx, f.Q, identity.Link{ID: f.phone, LinkedAt: at(99), MessageID: "m99"})
	})
	if d := diff(before, f.view(t, e.ctx, g)); d != "" {
		t.Errorf("linking again changed the graph (-before +after):\n%s", d)
	}
	// Linking a new identifier twice in one transaction links it once.
	inTx(t, e.ctx, g.Begin, func(tx identity.Tx) error {
		l := identity.Link{ID: anon("ada-tablet"), LinkedAt: at(10), MessageID: "m10"}
		if err := tx.Link(e.ctx, f.R, l); err != nil {
			return err
		}
		return tx.Link(e.ctx, f.R, l)
	})
	n, err := g.Node(e.ctx, f.R)
	must(t, err, "Node")
	if len(n.Links) != 2 {
		t.Errorf("R has links %+v after linking one new identifier twice; want 2 links", n.Links)
	}
}

func graphLinkConflict(t *testing.T, e *env, g identity.Graph) {
	f := seedGraph(t, e, g)
	before := f.view(t, e.ctx, g)
	tx, err := g.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	if err := tx.Link(e.ctx, f.Q, identity.Link{ID: f.user, LinkedAt: at(9)}); !errors.Is(err, identity.ErrConflict) {
		t.Errorf("Link to Q of P's identifier = %v; want ErrConflict", err)
	}
	commitAfterRefused(t, e.ctx, tx)
	if d := diff(before, f.view(t, e.ctx, g)); d != "" {
		t.Errorf("a refused link changed the graph (-before +after):\n%s", d)
	}
	// Owned since earlier in the same transaction.
	fresh := anon("ada-watch" + nextTag())
	tx, err = g.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	must(t, tx.Link(e.ctx, f.R, identity.Link{ID: fresh, LinkedAt: at(9)}), "Link to R")
	if err := tx.Link(e.ctx, f.P, identity.Link{ID: fresh, LinkedAt: at(9)}); !errors.Is(err, identity.ErrConflict) {
		t.Errorf("Link to P of an identifier linked to R earlier in the transaction = %v; want ErrConflict", err)
	}
	want := before
	if commitAfterRefused(t, e.ctx, tx) {
		want.Nodes[f.R].Links = append(want.Nodes[f.R].Links, identity.Link{ID: fresh, LinkedAt: at(9)})
	}
	if d := diff(want, f.view(t, e.ctx, g)); d != "" {
		t.Errorf("the graph after a refused link (-want +got):\n%s", d)
	}
	if pid, err := g.Lookup(e.ctx, fresh); err == nil && pid != f.R {
		t.Errorf("Lookup(%s) = %q; want R, whose link was not refused", fresh, pid)
	}
}

func graphLinkToMissingProfile(t *testing.T, e *env, g identity.Graph) {
	f := seedGraph(t, e, g)
	before := f.view(t, e.ctx, g)
	missing := newPID()
	tx, err := g.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	if err := tx.Link(e.ctx, missing, identity.Link{ID: anon("orphan"), LinkedAt: at(9)}); !errors.Is(err, identity.ErrNotFound) {
		t.Errorf("Link to a profile that does not exist = %v; want ErrNotFound", err)
	}
	commitAfterRefused(t, e.ctx, tx)
	if pid, err := g.Lookup(e.ctx, anon("orphan")); !errors.Is(err, identity.ErrNotFound) {
		t.Errorf("Lookup of the refused identifier = %q, %v; want ErrNotFound", pid, err)
	}
	if n, err := g.Node(e.ctx, missing); !errors.Is(err, identity.ErrNotFound) {
		t.Errorf("Node of the missing profile = %+v, %v; want ErrNotFound", n, err)
	}
	if d := diff(before, f.view(t, e.ctx, g)); d != "" {
		t.Errorf("a refused link changed the graph (-before +after):\n%s", d)
	}
}

func graphCreateIsIdempotent(t *testing.T, e *env, g identity.Graph) {
	f := seedGraph(t, e, g)
	before := f.view(t, e.ctx, g)
	tx, err := g.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	if err := tx.Create(e.ctx, f.P, at(7)); !errors.Is(err, identity.ErrConflict) {
		t.Errorf("Create of a committed profile with another CreatedAt = %v; want ErrConflict", err)
	}
	commitAfterRefused(t, e.ctx, tx)
	if d := diff(before, f.view(t, e.ctx, g)); d != "" {
		t.Errorf("a refused Create changed the graph (-before +after):\n%s", d)
	}

	pid := newPID()
	tx, err = g.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	if err := tx.Create(e.ctx, f.P, at(0)); err != nil {
		t.Errorf("Create of a committed profile with its CreatedAt = %v; want nil (a no-op)", err)
	}
	must(t, tx.Create(e.ctx, pid, at(5)), "Create")
	if err := tx.Create(e.ctx, pid, at(5)); err != nil {
		t.Errorf("Create again in the same transaction = %v; want nil", err)
	}
	if err := tx.Create(e.ctx, pid, at(6)); !errors.Is(err, identity.ErrConflict) {
		t.Errorf("Create again in the same transaction, another CreatedAt = %v; want ErrConflict", err)
	}
	want := before
	want.Nodes[pid] = nil
	if commitAfterRefused(t, e.ctx, tx) {
		want.Nodes[pid] = &identity.Node{ID: pid, CreatedAt: at(5)}
	}
	if d := diff(want, viewGraph(t, e.ctx, g, append(f.pids, pid), f.ids)); d != "" {
		t.Errorf("the graph after creating again (-want +got):\n%s", d)
	}
}

// mergeRQP merges R into Q, then Q into P.
func mergeRQP(t *testing.T, e *env, g identity.Graph, f *graphFixture) (rq, qp identity.Merge) {
	t.Helper()
	rq = identity.Merge{From: f.R, At: at(4), MessageID: "m4"}
	qp = identity.Merge{From: f.Q, At: at(5), MessageID: "m5"}
	inTx(t, e.ctx, g.Begin, func(tx identity.Tx) error { return tx.Merge(e.ctx, f.Q, rq) })
	inTx(t, e.ctx, g.Begin, func(tx identity.Tx) error { return tx.Merge(e.ctx, f.P, qp) })
	return rq, qp
}

func graphMerge(t *testing.T, e *env, g identity.Graph) {
	f := seedGraph(t, e, g)
	rq, qp := mergeRQP(t, e, g, f)
	want := graphView{
		Nodes: map[identity.ProfileID]*identity.Node{
			f.P: {ID: f.P, CreatedAt: at(0),
				// P's identifiers, then Q's, whose own came before R's.
				Links: append(append(append([]identity.Link(nil), f.links[f.P]...), f.links[f.Q]...), f.links[f.R]...),
				// Q's history travels with it, then the merge of Q itself.
				Merges: []identity.Merge{rq, qp}},
			f.Q: nil,
			f.R: nil,
		},
		Owners: map[identity.ID]identity.ProfileID{
			f.user: f.P, f.laptop: f.P, f.phone: f.P, f.mail: f.P,
		},
	}
	if d := diff(want, f.view(t, e.ctx, g)); d != "" {
		t.Errorf("the graph after merging R into Q and Q into P (-want +got):\n%s", d)
	}
	// The moved identifiers belong to P now: linking them to P is a no-op,
	// to another profile a conflict.
	other := newPID()
	tx, err := g.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	must(t, tx.Create(e.ctx, other, at(8)), "Create")
	if err := tx.Link(e.ctx, f.P, f.links[f.R][0]); err != nil {
		t.Errorf("Link to P of an identifier merged into it = %v; want nil", err)
	}
	if err := tx.Link(e.ctx, other, f.links[f.Q][0]); !errors.Is(err, identity.ErrConflict) {
		t.Errorf("Link elsewhere of an identifier merged into P = %v; want ErrConflict", err)
	}
}

func graphMergeIsIdempotent(t *testing.T, e *env, g identity.Graph) {
	f := seedGraph(t, e, g)
	rq, qp := mergeRQP(t, e, g, f)
	after := f.view(t, e.ctx, g)
	// Recovery replays both merges, in new transactions and twice in one.
	inTx(t, e.ctx, g.Begin, func(tx identity.Tx) error { return tx.Merge(e.ctx, f.Q, rq) })
	inTx(t, e.ctx, g.Begin, func(tx identity.Tx) error {
		for i := 0; i < 2; i++ {
			if err := tx.Merge(e.ctx, f.P, qp); err != nil {
				return err
			}
		}
		return nil
	})
	if d := diff(after, f.view(t, e.ctx, g)); d != "" {
		t.Errorf("merging again changed the graph (-before +after):\n%s", d)
	}
	// Within one transaction: the second merge of the same profile is a no-op.
	g2 := seedGraph(t, e, g)
	inTx(t, e.ctx, g.Begin, func(tx identity.Tx) error {
		m := identity.Merge{From: g2.Q, At: at(6), MessageID: "m6"}
		if err := tx.Merge(e.ctx, g2.P, m); err != nil {
			return err
		}
		return tx.Merge(e.ctx, g2.P, m)
	})
	n, err := g.Node(e.ctx, g2.P)
	must(t, err, "Node")
	if len(n.Links) != 3 || len(n.Merges) != 1 {
		t.Errorf("after merging Q into P twice in one transaction P = %+v; want 3 links and 1 merge", n)
	}
}

func graphDelete(t *testing.T, e *env, g identity.Graph) {
	f := seedGraph(t, e, g)
	want := f.view(t, e.ctx, g)
	inTx(t, e.ctx, g.Begin, func(tx identity.Tx) error { return tx.Delete(e.ctx, f.P) })
	want.Nodes[f.P] = nil
	want.Owners[f.user], want.Owners[f.laptop] = "", ""
	if d := diff(want, f.view(t, e.ctx, g)); d != "" {
		t.Errorf("the graph after deleting P (-want +got):\n%s", d)
	}
	// A profile with merge history goes whole, identifiers merged in included.
	rq := identity.Merge{From: f.R, At: at(4), MessageID: "m4"}
	inTx(t, e.ctx, g.Begin, func(tx identity.Tx) error { return tx.Merge(e.ctx, f.Q, rq) })
	inTx(t, e.ctx, g.Begin, func(tx identity.Tx) error { return tx.Delete(e.ctx, f.Q) })
	for _, pid := range f.pids {
		if n, err := g.Node(e.ctx, pid); !errors.Is(err, identity.ErrNotFound) {
			t.Errorf("Node(%s) after deleting everything = %+v, %v; want ErrNotFound", pid, n, err)
		}
	}
	for _, id := range f.ids {
		if pid, err := g.Lookup(e.ctx, id); !errors.Is(err, identity.ErrNotFound) {
			t.Errorf("Lookup(%s) after deleting everything = %q, %v; want ErrNotFound", id, pid, err)
		}
	}
}

func graphDeleteIsIdempotent(t *testing.T, e *env, g identity.Graph) {
	f := seedGraph(t, e, g)
	inTx(t, e.ctx, g.Begin, func(tx identity.Tx) error { return tx.Delete(e.ctx, f.P) })
	after := f.view(t, e.ctx, g)
	inTx(t, e.ctx, g.Begin, func(tx identity.Tx) error {
		if err := tx.Delete(e.ctx, f.P); err != nil {
			return fmt.Errorf("deleting again: %w", err)
		}
		if err := tx.Delete(e.ctx, newPID()); err != nil {
			return fmt.Errorf("deleting a profile that never existed: %w", err)
		}
		// Twice in one transaction.
		if err := tx.Delete(e.ctx, f.R); err != nil {
			return err
		}
		return tx.Delete(e.ctx, f.R)
	})
	after.Nodes[f.R] = nil
	after.Owners[f.mail] = ""
	if d := diff(after, f.view(t, e.ctx, g)); d != "" {
		t.Errorf("deleting again changed the graph (-want +got):\n%s", d)
	}
}

func graphIdentifierReusableAfterDelete(t *testing.T, e *env, g identity.Graph) {
	f := seedGraph(t, e, g)
	// After a committed deletion, an erased person may come back as a new
	// profile with the same identifiers.
	inTx(t, e.ctx, g.Begin, func(tx identity.Tx) error { return tx.Delete(e.ctx, f.P) })
	back := newPID()
	inTx(t, e.ctx, g.Begin, func(tx identity.Tx) error {
		if err := tx.Create(e.ctx, back, at(30)); err != nil {
			return err
		}
		return tx.Link(e.ctx, back, identity.Link{ID: f.user, LinkedAt: at(30), MessageID: "m30"})
	})
	if pid, err := g.Lookup(e.ctx, f.user); err != nil || pid != back {
		t.Errorf("Lookup(user_id:ada) after it was relinked = %q, %v; want the new profile", pid, err)
	}
	// And within one transaction: delete, then link the identifier elsewhere.
	again := newPID()
	inTx(t, e.ctx, g.Begin, func(tx identity.Tx) error {
		if err := tx.Delete(e.ctx, f.Q); err != nil {
			return err
		}
		if err := tx.Create(e.ctx, again, at(31)); err != nil {
			return err
		}
		return tx.Link(e.ctx, again, identity.Link{ID: f.phone, LinkedAt: at(31), MessageID: "m31"})
	})
	if pid, err := g.Lookup(e.ctx, f.phone); err != nil || pid != again {
		t.Errorf("Lookup(anonymous_id:ada-phone) after delete and relink in one transaction = %q, %v; want the new profile", pid, err)
	}
	n, err := g.Node(e.ctx, again)
	must(t, err, "Node")
	if len(n.Links) != 1 {
		t.Errorf("the new profile has links %+v; want the one", n.Links)
	}
}

func graphCopyAtBoundary(t *testing.T, e *env, g identity.Graph) {
	f := seedGraph(t, e, g)
	mergeRQP(t, e, g, f)
	before := f.view(t, e.ctx, g)
	scribble := func(n *identity.Node) {
		n.ID = "use_scribbled"
		n.CreatedAt = at(999)
		for i := range n.Links {
			n.Links[i].ID = uid("scribbled")
			n.Links[i].MessageID = "scribbled"
		}
		for i := range n.Merges {
			n.Merges[i].From = "use_scribbled"
		}
		n.Links = append(n.Links[:cap(n.Links)], identity.Link{ID: uid("appended")})
		n.Merges = append(n.Merges[:cap(n.Merges)], identity.Merge{From: "use_appended"})
	}
	n, err := g.Node(e.ctx, f.P)
	must(t, err, "Node")
	scribble(n)
	tx, err := g.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	n, err = tx.Node(e.ctx, f.P)
	must(t, err, "tx.Node")
	scribble(n)
	// A node staged in the transaction, read back and changed.
	must(t, tx.Link(e.ctx, f.P, identity.Link{ID: anon("ada-tv"), LinkedAt: at(40)}), "Link")
	n, err = tx.Node(e.ctx, f.P)
	must(t, err, "tx.Node")
	scribble(n)
	n, err = tx.Node(e.ctx, f.P)
	must(t, err, "tx.Node")
	if want := append(before.Nodes[f.P].Links, identity.Link{ID: anon("ada-tv"), LinkedAt: at(40)}); diff(want, n.Links) != "" {
		t.Errorf("changing a node the transaction returned changed its staged node (-want +got):\n%s", diff(want, n.Links))
	}
	must(t, tx.Rollback(e.ctx), "Rollback")
	if d := diff(before, f.view(t, e.ctx, g)); d != "" {
		t.Errorf("changing returned nodes changed the graph (-before +after):\n%s", d)
	}
}

func graphTxSeesOwnWrites(t *testing.T, e *env, g identity.Graph) {
	f := seedGraph(t, e, g)
	tx, err := g.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	s := newPID()
	must(t, tx.Create(e.ctx, s, at(10)), "Create")
	must(t, tx.Link(e.ctx, s, identity.Link{ID: email("sam@example.com"), LinkedAt: at(10), MessageID: "m10"}), "Link")
	must(t, tx.Link(e.ctx, f.P, identity.Link{ID: anon("ada-tv"), LinkedAt: at(11), MessageID: "m11"}), "Link")
	must(t, tx.Merge(e.ctx, f.Q, identity.Merge{From: f.R, At: at(12), MessageID: "m12"}), "Merge")
	must(t, tx.Delete(e.ctx, f.P), "Delete")
	got := viewGraph(t, e.ctx, tx, append(f.pids, s), append(f.ids, email("sam@example.com"), anon("ada-tv")))
	want := graphView{
		Nodes: map[identity.ProfileID]*identity.Node{
			f.P: nil,
			f.Q: {ID: f.Q, CreatedAt: at(2), Links: append(append([]identity.Link(nil), f.links[f.Q]...), f.links[f.R]...),
				Merges: []identity.Merge{{From: f.R, At: at(12), MessageID: "m12"}}},
			f.R: nil,
			s:   {ID: s, CreatedAt: at(10), Links: []identity.Link{{ID: email("sam@example.com"), LinkedAt: at(10), MessageID: "m10"}}},
		},
		Owners: map[identity.ID]identity.ProfileID{
			f.user: "", f.laptop: "", anon("ada-tv"): "",
			f.phone: f.Q, f.mail: f.Q, email("sam@example.com"): s,
		},
	}
	if d := diff(want, got); d != "" {
		t.Errorf("what the transaction reads of its own writes (-want +got):\n%s", d)
	}
	// Committed, everybody sees the same.
	commitTx(t, e.ctx, tx)
	got = viewGraph(t, e.ctx, g, append(f.pids, s), append(f.ids, email("sam@example.com"), anon("ada-tv")))
	if d := diff(want, got); d != "" {
		t.Errorf("the graph after Commit (-want +got):\n%s", d)
	}
}

func graphUncommittedInvisible(t *testing.T, e *env, g identity.Graph) {
	e.needIsolation(t)
	f := seedGraph(t, e, g)
	s := newPID()
	pids, ids := append(f.pids, s), append(f.ids, email("sam@example.com"), anon("ada-tv"))
	beforeAll := viewGraph(t, e.ctx, g, pids, ids)

	tx, err := g.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	must(t, tx.Create(e.ctx, s, at(10)), "Create")
	must(t, tx.Link(e.ctx, s, identity.Link{ID: email("sam@example.com"), LinkedAt: at(10)}), "Link")
	must(t, tx.Link(e.ctx, f.P, identity.Link{ID: anon("ada-tv"), LinkedAt: at(11)}), "Link")
	must(t, tx.Merge(e.ctx, f.Q, identity.Merge{From: f.R, At: at(12)}), "Merge")
	must(t, tx.Delete(e.ctx, f.P), "Delete")
	staged := viewGraph(t, e.ctx, tx, pids, ids)

	readers := map[string]identity.Reader{"the graph": g}
	other, ok := secondTx(t, e, g.Begin)
	if ok {
		readers["another transaction"] = other
	}
	for name, r := range readers {
		if d := diff(beforeAll, viewGraph(t, e.ctx, r, pids, ids)); d != "" {
			t.Errorf("%s sees uncommitted writes (-committed +seen):\n%s", name, d)
		}
	}
	if ok {
		must(t, other.Rollback(e.ctx), "Rollback")
	}
	commitTx(t, e.ctx, tx)
	// All of it at once, for the graph and for a transaction begun now.
	later, err := g.Begin(e.ctx)
	must(t, err, "Begin")
	defer later.Rollback(e.ctx)
	for name, r := range map[string]identity.Reader{"the graph": g, "a new transaction": later} {
		if d := diff(staged, viewGraph(t, e.ctx, r, pids, ids)); d != "" {
			t.Errorf("%s after Commit (-staged +seen):\n%s", name, d)
		}
	}
}

func graphRollbackDiscards(t *testing.T, e *env, g identity.Graph) {
	graphStaging(t, e, g).checkRollbackDiscards(t, e)
}

// graphStaging seeds the fixture for the shared transaction checks: a
// profile created with a new identifier, a link, a merge and a deletion.
func graphStaging(t *testing.T, e *env, g identity.Graph) staging[identity.Reader, identity.Tx, graphView] {
	f := seedGraph(t, e, g)
	s := newPID()
	pids, ids := append(f.pids, s), append(f.ids, email("sam@example.com"), anon("ada-tv"))
	return staging[identity.Reader, identity.Tx, graphView]{
		store: g, begin: g.Begin, errDone: identity.ErrTxDone,
		stage: func(tx identity.Tx) {
			must(t, tx.Create(e.ctx, s, at(10)), "Create")
			must(t, tx.Link(e.ctx, s, identity.Link{ID: email("sam@example.com"), LinkedAt: at(10)}), "Link")
			must(t, tx.Link(e.ctx, f.P, identity.Link{ID: anon("ada-tv"), LinkedAt: at(11)}), "Link")
			must(t, tx.Merge(e.ctx, f.Q, identity.Merge{From: f.R, At: at(12)}), "Merge")
			must(t, tx.Delete(e.ctx, f.P), "Delete")
		},
		view: func(r identity.Reader) graphView { return viewGraph(t, e.ctx, r, pids, ids) },
		calls: func(tx identity.Tx) []txMethod {
			return []txMethod{
				{"Lookup", func(ctx context.Context) error { _, err := tx.Lookup(ctx, f.user); return err }},
				{"Create", func(ctx context.Context) error { return tx.Create(ctx, newPID(), at(20)) }},
			}
		},
	}
}

func graphRollbackAfterCommit(t *testing.T, e *env, g identity.Graph) {
	f := seedGraph(t, e, g)
	tx, err := g.Begin(e.ctx)
	must(t, err, "Begin")
	must(t, tx.Delete(e.ctx, f.P), "Delete")
	must(t, tx.Link(e.ctx, f.Q, identity.Link{ID: anon("ada-tv"), LinkedAt: at(11)}), "Link")
	commitTx(t, e.ctx, tx)
	after := f.view(t, e.ctx, g)
	if err := tx.Rollback(e.ctx); err != nil {
		t.Errorf("Rollback after Commit = %v; want nil", err)
	}
	if d := diff(after, f.view(t, e.ctx, g)); d != "" {
		t.Errorf("Rollback after Commit undid the commit (-committed +after):\n%s", d)
	}
	if pid, err := g.Lookup(e.ctx, anon("ada-tv")); err != nil || pid != f.Q {
		t.Errorf("Lookup of the committed link after Rollback = %q, %v; want Q", pid, err)
	}
}

func graphTxDone(t *testing.T, e *env, g identity.Graph) {
	for _, how := range []string{"Commit", "Rollback"} {
		f := seedGraph(t, e, g)
		tx, err := g.Begin(e.ctx)
		must(t, err, "Begin")
		s := newPID()
		must(t, tx.Create(e.ctx, s, at(10)), "Create")
		if how == "Commit" {
			commitTx(t, e.ctx, tx)
		} else {
			must(t, tx.Rollback(e.ctx), "Rollback")
		}
		pids, ids := append(f.pids, s), append(f.ids, anon("late"))
		before := viewGraph(t, e.ctx, g, pids, ids)
		late := newPID()
		checkDone(t, e.ctx, how, tx, identity.ErrTxDone, []txMethod{
			{"Lookup", func(ctx context.Context) error { _, err := tx.Lookup(ctx, f.user); return err }},
			{"Node", func(ctx context.Context) error { _, err := tx.Node(ctx, f.P); return err }},
			{"Create", func(ctx context.Context) error { return tx.Create(ctx, late, at(20)) }},
			{"Link", func(ctx context.Context) error {
				return tx.Link(ctx, f.P, identity.Link{ID: anon("late"), LinkedAt: at(20)})
			}},
			{"Merge", func(ctx context.Context) error { return tx.Merge(ctx, f.P, identity.Merge{From: f.Q, At: at(20)}) }},
			{"Delete", func(ctx context.Context) error { return tx.Delete(ctx, f.R) }},
		})
		if d := diff(before, viewGraph(t, e.ctx, g, pids, ids)); d != "" {
			t.Errorf("calls on a transaction ended by %s changed the graph (-before +after):\n%s", how, d)
		}
		if _, err := g.Node(e.ctx, late); !errors.Is(err, identity.ErrNotFound) {
			t.Errorf("Create on a transaction ended by %s created the profile: %v", how, err)
		}
	}
}

func graphCancelledCommit(t *testing.T, e *env, g identity.Graph) {
	graphStaging(t, e, g).checkCancelledCommit(t, e)
}

func graphConcurrentWriters(t *testing.T, e *env, g identity.Graph) {
	pids := newPIDs(concurrentMax)
	errs := parallel(writers, func(w int) error {
		for i := 0; i < txsPerWriter; i++ {
			n := w*txsPerWriter + i
			pid := pids[n]
			// Readers run alongside the writers.
			if _, err := g.Lookup(e.ctx, uid(fmt.Sprint("user-", (n+1)%concurrentMax))); err != nil && !errors.Is(err, identity.ErrNotFound) {
				return err
			}
			tx, err := g.Begin(e.ctx)
			if err != nil {
				return err
			}
			err = tx.Create(e.ctx, pid, at(n))
			if err == nil {
				err = tx.Link(e.ctx, pid, identity.Link{ID: uid(fmt.Sprint("user-", n)), LinkedAt: at(n)})
			}
			if err == nil {
				err = tx.Link(e.ctx, pid, identity.Link{ID: anon(fmt.Sprint("device-", n)), LinkedAt: at(n)})
			}
			if err == nil {
				err = tx.Commit(e.ctx)
			}
			if err != nil {
				_ = tx.Rollback(e.ctx)
				return fmt.Errorf("profile %d: %w", n, err)
			}
		}
		return nil
	})
	reportAll(t, errs)
	for n, pid := range pids {
		for _, id := range []identity.ID{uid(fmt.Sprint("user-", n)), anon(fmt.Sprint("device-", n))} {
			if got, err := g.Lookup(e.ctx, id); err != nil || got != pid {
				t.Errorf("Lookup(%s) after the concurrent writers = %q, %v; want %s", id, got, err, pid)
			}
		}
		if node, err := g.Node(e.ctx, pid); err != nil || len(node.Links) != 2 || !node.CreatedAt.Equal(at(n)) {
			t.Errorf("Node(%s) after the concurrent writers = %+v, %v; want 2 links", pid, node, err)
		}
	}
}
