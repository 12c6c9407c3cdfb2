package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/suppression"
)

// The checks of the optional batch interfaces: identity.BatchReader,
// suppression.BatchReader, profile.BatchTx and audience.BatchTx. A batch
// method must answer, and write, exactly as the single-item methods do one
// call at a time; the checks compare the two. A backend (or its transaction) that does not implement one
// of them has its checks skipped, the interface named.

// manyItems is the size of the large batches: beyond the chunk of a few
// hundred rows a SQL adapter sends per statement, and not a multiple of it.
const manyItems = 1200

// manyProfiles returns manyItems profile ids to ask for at once: each of
// known and fresh, the first hundred of known again, and the rest ids never
// seen, shuffled the same way on every run. Few repeats, spread all through: a
// batch method answering with a map that drops a chunk of its input then
// leaves out profiles it should have answered.
func manyProfiles(known, fresh []identity.ProfileID) []identity.ProfileID {
	pids := slices.Concat(known, fresh, known[:100])
	pids = append(pids, newPIDs(manyItems-len(pids))...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(pids), func(i, j int) { pids[i], pids[j] = pids[j], pids[i] })
	return pids
}

// Identity graph: identity.BatchReader.

// graphBatch is LookupBatch on g, for the checks every batch read shares.
func graphBatch(g identity.Graph) *listBatch[identity.Graph, identity.Tx, identity.ID, identity.ProfileID] {
	return &listBatch[identity.Graph, identity.Tx, identity.ID, identity.ProfileID]{
		what: "the identity graph", onStore: "OnGraph", method: "LookupBatch", single: "Lookup",
		store: g, begin: g.Begin,
		batch: func(r any) (func(context.Context, []identity.ID, []identity.ProfileID) ([]identity.ProfileID, error), bool) {
			br, ok := r.(identity.BatchReader)
			if !ok {
				return nil, false
			}
			return br.LookupBatch, true
		},
		read: func(ctx context.Context, r any, id identity.ID) (identity.ProfileID, error) {
			return r.(identity.Reader).Lookup(ctx, id)
		},
		notFound: identity.ErrNotFound, prefix: []identity.ProfileID{"use_kept"}, errDone: identity.ErrTxDone,
	}
}

func graphLookupBatch(t *testing.T, e *env, g identity.Graph) {
	f := seedGraph(t, e, g)
	unknown := uid("nobody" + nextTag())
	// Linked, unknown, repeated, and a linked value under another type.
	ids := []identity.ID{f.mail, unknown, f.user, f.phone, f.user, email(f.user.Value), f.laptop, unknown, f.mail}
	want := []identity.ProfileID{f.R, "", f.P, f.Q, f.P, "", f.P, "", f.R}
	graphBatch(g).checkBasics(t, e, ids, want)
}

// stageGraphBatchWrites stages writes of every kind on the fixture and
// returns identifiers to look up, what the graph answers for them before
// Commit, and what the transaction answers.
func stageGraphBatchWrites(t *testing.T, e *env, tx identity.Tx, f *graphFixture) (ids []identity.ID, committed, staged []identity.ProfileID) {
	t.Helper()
	tag := nextTag()
	s := newPID()
	sam, tv, unknown := email("sam"+tag+"@example.com"), anon("ada-tv"+tag), uid("nobody"+tag)
	must(t, tx.Create(e.ctx, s, at(10)), "Create")
	must(t, tx.Link(e.ctx, s, identity.Link{ID: sam, LinkedAt: at(10), MessageID: "m10"}), "Link")
	must(t, tx.Link(e.ctx, f.Q, identity.Link{ID: tv, LinkedAt: at(11), MessageID: "m11"}), "Link")
	must(t, tx.Merge(e.ctx, f.Q, identity.Merge{From: f.R, At: at(12), MessageID: "m12"}), "Merge")
	must(t, tx.Delete(e.ctx, f.P), "Delete")
	ids = []identity.ID{f.user, f.laptop, f.phone, f.mail, sam, tv, unknown, sam, f.user}
	committed = []identity.ProfileID{f.P, f.P, f.Q, f.R, "", "", "", "", f.P}
	staged = []identity.ProfileID{"", "", f.Q, f.Q, s, f.Q, "", s, ""}
	return ids, committed, staged
}

// graphStage seeds the fixture and returns the stage step of the shared
// checks.
func graphStage(t *testing.T, e *env, g identity.Graph) func(identity.Tx) ([]identity.ID, []identity.ProfileID, []identity.ProfileID) {
	f := seedGraph(t, e, g)
	return func(tx identity.Tx) ([]identity.ID, []identity.ProfileID, []identity.ProfileID) {
		return stageGraphBatchWrites(t, e, tx, f)
	}
}

func graphLookupBatchTxSeesOwnWrites(t *testing.T, e *env, g identity.Graph) {
	graphBatch(g).checkTxSeesOwnWrites(t, e, graphStage(t, e, g))
}

func graphLookupBatchUncommittedInvisible(t *testing.T, e *env, g identity.Graph) {
	graphBatch(g).checkUncommittedInvisible(t, e, graphStage(t, e, g))
}

func graphLookupBatchTxDone(t *testing.T, e *env, g identity.Graph) {
	graphBatch(g).checkTxDone(t, e, func() []identity.ID {
		f := seedGraph(t, e, g)
		return []identity.ID{f.user, f.phone}
	})
}

func graphLookupBatchMany(t *testing.T, e *env, g identity.Graph) {
	// 30 profiles of 20 identifiers each, committed; identifiers a
	// transaction links to new profiles; identifiers never linked.
	tag := nextTag()
	pids := newPIDs(30)
	owner := map[identity.ID]identity.ProfileID{}
	var linked []identity.ID
	inTx(t, e.ctx, g.Begin, func(tx identity.Tx) error {
		for i, pid := range pids {
			if err := tx.Create(e.ctx, pid, at(i)); err != nil {
				return err
			}
			for j := 0; j < 20; j++ {
				id := uid(fmt.Sprintf("many-%d-%d%s", i, j, tag))
				if err := tx.Link(e.ctx, pid, identity.Link{ID: id, LinkedAt: at(i)}); err != nil {
					return err
				}
				owner[id] = pid
				linked = append(linked, id)
			}
		}
		return nil
	})
	var fresh []identity.ID
	for i := 0; i < 300; i++ {
		fresh = append(fresh, anon(fmt.Sprintf("fresh-%d%s", i, tag)))
	}
	var ids []identity.ID
	for i := 0; len(ids) < manyItems; i++ {
		switch i % 4 {
		case 0, 1: // committed identifiers, each twice
			ids = append(ids, linked[(i*7)%len(linked)])
		case 2:
			ids = append(ids, fresh[(i/4)%len(fresh)])
		case 3:
			ids = append(ids, email(fmt.Sprintf("unknown-%d%s@example.com", i, tag)))
		}
	}
	answers := func(owner map[identity.ID]identity.ProfileID) []identity.ProfileID {
		out := make([]identity.ProfileID, len(ids))
		for i, id := range ids {
			out[i] = owner[id]
		}
		return out
	}
	b := graphBatch(g)
	t.Run("OnGraph", func(t *testing.T) {
		b.check(t, e.ctx, fmt.Sprintf("%d identifiers", len(ids)), g, ids, answers(owner))
	})
	t.Run("InTx", func(t *testing.T) {
		tx := b.tx(t, e)
		staged := maps.Clone(owner)
		// Two committed profiles deleted, ten new ones with 30 identifiers each.
		for _, pid := range pids[:2] {
			must(t, tx.Delete(e.ctx, pid), "Delete")
		}
		for id, pid := range owner {
			if pid == pids[0] || pid == pids[1] {
				delete(staged, id)
			}
		}
		for i, pid := range newPIDs(10) {
			must(t, tx.Create(e.ctx, pid, at(100+i)), "Create")
			for _, id := range fresh[30*i : 30*(i+1)] {
				must(t, tx.Link(e.ctx, pid, identity.Link{ID: id, LinkedAt: at(100 + i)}), "Link")
				staged[id] = pid
			}
		}
		b.check(t, e.ctx, fmt.Sprintf("%d identifiers, in a transaction with writes", len(ids)), tx, ids, answers(staged))
	})
}

// Suppression list: suppression.BatchReader.

// listBatchOf is ProfileSuppressedBatch on l, for the checks every batch read
// shares.
func listBatchOf(l suppression.List) *listBatch[suppression.List, suppression.Tx, identity.ProfileID, bool] {
	return &listBatch[suppression.List, suppression.Tx, identity.ProfileID, bool]{
		what: "the suppression list", onStore: "OnList", method: "ProfileSuppressedBatch", single: "ProfileSuppressed",
		store: l, begin: l.Begin,
		batch: func(r any) (func(context.Context, []identity.ProfileID, []bool) ([]bool, error), bool) {
			br, ok := r.(suppression.BatchReader)
			if !ok {
				return nil, false
			}
			return br.ProfileSuppressedBatch, true
		},
		read: func(ctx context.Context, r any, pid identity.ProfileID) (bool, error) {
			return r.(suppression.Reader).ProfileSuppressed(ctx, pid)
		},
		prefix: []bool{true, false}, errDone: suppression.ErrTxDone,
	}
}

func suppressionProfileSuppressedBatch(t *testing.T, e *env, l suppression.List) {
	f := seedSuppressions(t, e, l)
	unknown := newPID()
	// p[0] suppressed; p[1], p[2] not; unknown never seen; repeats.
	pids := []identity.ProfileID{f.p[1], f.p[0], unknown, f.p[0], f.p[2], unknown, f.p[0]}
	want := []bool{false, true, false, true, false, false, true}
	listBatchOf(l).checkBasics(t, e, pids, want)
}

// stageSuppressionBatchWrites stages writes of every kind on the fixture and
// returns profiles to check, what the list answers for them before Commit,
// and what the transaction answers.
func stageSuppressionBatchWrites(t *testing.T, e *env, tx suppression.Tx, f *suppressionFixture) (pids []identity.ProfileID, committed, staged []bool) {
	t.Helper()
	n, gone := newPID(), newPID()
	stageSuppressionWrites(t, e, tx, f) // p[1] added, p[0] removed, hashes changed
	must(t, tx.AddProfile(e.ctx, n), "AddProfile")
	must(t, tx.AddProfile(e.ctx, gone), "AddProfile")
	must(t, tx.RemoveProfile(e.ctx, gone), "RemoveProfile")
	pids = []identity.ProfileID{f.p[0], f.p[1], f.p[2], n, gone, f.p[1], f.p[0]}
	committed = []bool{true, false, false, false, false, false, true}
	staged = []bool{false, true, false, true, false, true, false}
	return pids, committed, staged
}

// suppressionStage seeds the fixture and returns the stage step of the
// shared checks.
func suppressionStage(t *testing.T, e *env, l suppression.List) func(suppression.Tx) ([]identity.ProfileID, []bool, []bool) {
	f := seedSuppressions(t, e, l)
	return func(tx suppression.Tx) ([]identity.ProfileID, []bool, []bool) {
		return stageSuppressionBatchWrites(t, e, tx, f)
	}
}

func suppressionProfileSuppressedBatchTxSeesOwnWrites(t *testing.T, e *env, l suppression.List) {
	listBatchOf(l).checkTxSeesOwnWrites(t, e, suppressionStage(t, e, l))
}

func suppressionProfileSuppressedBatchUncommittedInvisible(t *testing.T, e *env, l suppression.List) {
	listBatchOf(l).checkUncommittedInvisible(t, e, suppressionStage(t, e, l))
}

func suppressionProfileSuppressedBatchTxDone(t *testing.T, e *env, l suppression.List) {
	listBatchOf(l).checkTxDone(t, e, func() []identity.ProfileID { return seedSuppressions(t, e, l).p[:2] })
}

func suppressionProfileSuppressedBatchMany(t *testing.T, e *env, l suppression.List) {
	// 500 profiles added, the last 100 of them removed again; 200 new ones a
	// transaction adds; profiles never seen.
	known, fresh := newPIDs(500), newPIDs(200)
	suppressed := map[identity.ProfileID]bool{}
	inTx(t, e.ctx, l.Begin, func(tx suppression.Tx) error {
		for _, pid := range known {
			if err := tx.AddProfile(e.ctx, pid); err != nil {
				return err
			}
			suppressed[pid] = true
		}
		return nil
	})
	inTx(t, e.ctx, l.Begin, func(tx suppression.Tx) error {
		for _, pid := range known[400:] {
			if err := tx.RemoveProfile(e.ctx, pid); err != nil {
				return err
			}
			delete(suppressed, pid)
		}
		return nil
	})
	pids := manyProfiles(known, fresh)
	answers := func(suppressed map[identity.ProfileID]bool) []bool {
		out := make([]bool, len(pids))
		for i, pid := range pids {
			out[i] = suppressed[pid]
		}
		return out
	}
	b := listBatchOf(l)
	t.Run("OnList", func(t *testing.T) {
		b.check(t, e.ctx, fmt.Sprintf("%d profiles", len(pids)), l, pids, answers(suppressed))
	})
	t.Run("InTx", func(t *testing.T) {
		tx := b.tx(t, e)
		staged := maps.Clone(suppressed)
		for _, pid := range fresh {
			must(t, tx.AddProfile(e.ctx, pid), "AddProfile")
			staged[pid] = true
		}
		for _, pid := range known[:100] {
			must(t, tx.RemoveProfile(e.ctx, pid), "RemoveProfile")
			delete(staged, pid)
		}
		for _, pid := range known[450:] {
			must(t, tx.AddProfile(e.ctx, pid), "AddProfile")
			staged[pid] = true
		}
		b.check(t, e.ctx, fmt.Sprintf("%d profiles, in a transaction with writes", len(pids)), tx, pids, answers(staged))
	})
}

// Profile store: profile.BatchTx.

// needBatchTx skips the check when the store's transactions do not implement
// profile.BatchTx.
func needBatchTx(t *testing.T, e *env, s profile.Store) {
	t.Helper()
	needOptionalTx[profile.Tx, profile.BatchTx](t, e, "the profile store", s.Begin)
}

// beginBatchTx begins a transaction, rolled back when the check ends, and
// returns it with its profile.BatchTx, or skips the check.
func beginBatchTx(t *testing.T, e *env, s profile.Store) (profile.Tx, profile.BatchTx) {
	t.Helper()
	return beginOptional[profile.Tx, profile.BatchTx](t, e, "the profile store", s.Begin)
}

// referenceProfiles makes a second Harness beside the check's, closed when
// the check ends, and returns its (empty) profile store: the checks apply
// there, one Update at a time, what they give UpdateBatch at once.
func referenceProfiles(t *testing.T, e *env) profile.Store {
	t.Helper()
	s, err := newHarness(t, e.nh).MakeProfiles(e.ctx)
	must(t, err, "making a second profile store to compare with")
	return s
}

// metadataEach answers pids one Metadata at a time, leaving out those not
// found.
func metadataEach(t *testing.T, ctx context.Context, r profile.Reader, pids []identity.ProfileID) map[identity.ProfileID]profile.Metadata {
	t.Helper()
	return eachFound(t, "Metadata", pids, func(pid identity.ProfileID) (profile.Metadata, error) { return r.Metadata(ctx, pid) }, profile.ErrNotFound)
}

// checkMetadataBatch checks that MetadataBatch answers pids as want says and
// as tx's Metadata does, one at a time.
func checkMetadataBatch(t *testing.T, ctx context.Context, what string, tx profile.Tx, b profile.BatchTx, pids []identity.ProfileID, want map[identity.ProfileID]profile.Metadata) {
	t.Helper()
	got, err := b.MetadataBatch(ctx, pids)
	if err != nil {
		t.Fatalf("%s: MetadataBatch of %d profiles: %v", what, len(pids), err)
	}
	sameAsEach(t, what, "MetadataBatch", "Metadata", want, got, metadataEach(t, ctx, tx, pids))
}

// batchUpdates applies updates with UpdateBatch, appending to a dup that
// already holds something, checks that it is kept and one flag appended per
// update, and returns the flags.
func batchUpdates(t *testing.T, ctx context.Context, b profile.BatchTx, updates []profile.BatchUpdate) []bool {
	t.Helper()
	return appendOnto(t, "updates", "UpdateBatch", len(updates), []bool{true, false}, func(dup []bool) ([]bool, error) {
		return b.UpdateBatch(ctx, updates, dup)
	})
}

// dupAnswer is one update of a batch with whether it was a duplicate, for
// readable diffs.
type dupAnswer struct {
	I         int
	Profile   identity.ProfileID
	MessageID string
	Dup       bool
}

func dupAnswers(updates []profile.BatchUpdate, dups []bool) []dupAnswer {
	out := make([]dupAnswer, max(len(updates), len(dups)))
	for i := range out {
		out[i].I = i
		if i < len(updates) {
			out[i].Profile, out[i].MessageID = updates[i].Profile, updates[i].MessageID
		}
		if i < len(dups) {
			out[i].Dup = dups[i]
		}
	}
	return out
}

// withTraits returns u with traits set (stamped with its UpdatedAt) and
// removed.
func withTraits(u profile.Update, set map[string]any, remove ...string) profile.Update {
	if set != nil {
		u.Set = map[string]profile.Trait{}
		for k, v := range set {
			u.Set[k] = profile.Trait{Value: v, Source: "batch", UpdatedAt: u.Metadata.UpdatedAt}
		}
	}
	u.Remove = remove
	return u
}

func profileMetadataBatch(t *testing.T, e *env, s profile.Store) {
	needBatchTx(t, e, s)
	f := seedProfiles(t, e, s)
	committed := f.view(t, e.ctx, s)
	tx, b := beginBatchTx(t, e, s)
	for _, in := range [][]identity.ProfileID{nil, {}} {
		if got, err := b.MetadataBatch(e.ctx, in); err != nil || len(got) != 0 {
			t.Errorf("MetadataBatch of no profiles = %v, %v; want nothing", got, err)
		}
	}
	unknown := newPID()
	pids := []identity.ProfileID{f.B, unknown, f.A, f.C, f.A}
	want := map[identity.ProfileID]profile.Metadata{f.A: committed[f.A].Meta, f.B: committed[f.B].Meta, f.C: committed[f.C].Meta}
	checkMetadataBatch(t, e.ctx, "committed profiles", tx, b, pids, want)

	// The transaction's own writes: a profile created, one updated, one
	// merged away, one deleted.
	n := newPID()
	created := track(1, ev("n1", "n", 1))
	more := traitsUpdate(7, "m9", map[string]any{"plan": "pro"})
	must(t, tx.Update(e.ctx, n, created), "Update creating N")
	must(t, tx.Update(e.ctx, f.A, more), "Update of A")
	must(t, tx.Merge(e.ctx, f.A, f.B), "Merge")
	must(t, tx.Delete(e.ctx, f.C), "Delete")
	pids = append(pids, n)
	want = map[identity.ProfileID]profile.Metadata{f.A: more.Metadata, n: created.Metadata}
	checkMetadataBatch(t, e.ctx, "the transaction's own writes", tx, b, pids, want)
	commitTx(t, e.ctx, tx)
	if d := diff(want, metadataEach(t, e.ctx, s, pids)); d != "" {
		t.Errorf("the store after Commit (-want +got):\n%s", d)
	}
}

func profileMetadataBatchCopyAtBoundary(t *testing.T, e *env, s profile.Store) {
	needBatchTx(t, e, s)
	f := seedProfiles(t, e, s) // B's and C's metadata have recipients
	n := newPID()
	tx, b := beginBatchTx(t, e, s)
	must(t, tx.Update(e.ctx, n, track(1, ev("n1", "n", 1))), "Update creating N")
	pids := []identity.ProfileID{f.B, f.C, n}
	want := metadataEach(t, e.ctx, tx, pids)
	for _, pid := range pids {
		if len(want[pid].Recipients) == 0 {
			t.Fatalf("the check's profile %s has no recipients to change", pid)
		}
	}
	got, err := b.MetadataBatch(e.ctx, pids)
	must(t, err, "MetadataBatch")
	for pid, m := range got {
		for i := range m.Recipients {
			m.Recipients[i].Name = "scribbled"
			m.Recipients[i].LastSent = at(999)
		}
		m.Recipients = append(m.Recipients[:cap(m.Recipients)], profile.Recipient{Name: "appended"})
		m.Version = 999
		got[pid] = m
	}
	if d := diff(want, metadataEach(t, e.ctx, tx, pids)); d != "" {
		t.Errorf("changing what MetadataBatch returned changed the transaction's profiles (-want +got):\n%s", d)
	}
	checkMetadataBatch(t, e.ctx, "after changing what it returned", tx, b, pids, want)
	commitTx(t, e.ctx, tx)
	if d := diff(want, metadataEach(t, e.ctx, s, pids)); d != "" {
		t.Errorf("changing what MetadataBatch returned changed the store (-want +got):\n%s", d)
	}
}

func profileMetadataBatchMany(t *testing.T, e *env, s profile.Store) {
	needBatchTx(t, e, s)
	meta := func(i int) profile.Metadata {
		return profile.Metadata{CreatedAt: at(i), UpdatedAt: at(i + 1), Version: uint64(i + 1),
			Recipients: []profile.Recipient{{Name: fmt.Sprint("dest-", i%3), FirstSent: at(i), LastSent: at(i + 1)}}}
	}
	known, fresh := newPIDs(500), newPIDs(200)
	stored := map[identity.ProfileID]profile.Metadata{}
	inTx(t, e.ctx, s.Begin, func(tx profile.Tx) error {
		for i, pid := range known {
			if err := tx.Update(e.ctx, pid, profile.Update{Metadata: meta(i)}); err != nil {
				return err
			}
			stored[pid] = meta(i)
		}
		return nil
	})
	pids := manyProfiles(known, fresh)
	tx, b := beginBatchTx(t, e, s)
	checkMetadataBatch(t, e.ctx, fmt.Sprintf("%d profiles", len(pids)), tx, b, pids, only(stored, pids))
	// 200 created, 50 deleted, 50 updated.
	staged := maps.Clone(stored)
	for i, pid := range fresh {
		must(t, tx.Update(e.ctx, pid, profile.Update{Metadata: meta(1000 + i)}), "Update creating a profile")
		staged[pid] = meta(1000 + i)
	}
	for _, pid := range known[:50] {
		must(t, tx.Delete(e.ctx, pid), "Delete")
		delete(staged, pid)
	}
	for i, pid := range known[50:100] {
		must(t, tx.Update(e.ctx, pid, profile.Update{Metadata: meta(2000 + i)}), "Update")
		staged[pid] = meta(2000 + i)
	}
	checkMetadataBatch(t, e.ctx, fmt.Sprintf("%d profiles, in a transaction with writes", len(pids)), tx, b, pids, only(staged, pids))
}

// picksFromGet answers pids one Get at a time: for each profile found, the
// values of the named traits in the order of names, nil where it lacks one.
func picksFromGet(t *testing.T, ctx context.Context, r profile.Reader, pids []identity.ProfileID, names []string) map[identity.ProfileID][]any {
	t.Helper()
	out := map[identity.ProfileID][]any{}
	for _, pid := range pids {
		p, err := r.Get(ctx, pid)
		switch {
		case errors.Is(err, profile.ErrNotFound):
			continue
		case err != nil:
			t.Fatalf("Get(%s): %v", pid, err)
		}
		values := make([]any, 0, len(names))
		for _, name := range names {
			var v any
			if tr, ok := p.Traits[name]; ok {
				v = tr.Value
			}
			values = append(values, v)
		}
		out[pid] = values
	}
	return out
}

// picksEach answers pids one profile at a time, leaving out those not found:
// with PickTraits when r implements profile.TraitPicker, from Get otherwise.
// It returns the answers and the method that gave them.
func picksEach(t *testing.T, ctx context.Context, r profile.Reader, pids []identity.ProfileID, names []string) (map[identity.ProfileID][]any, string) {
	t.Helper()
	picker, ok := r.(profile.TraitPicker)
	if !ok {
		return picksFromGet(t, ctx, r, pids, names), "Get"
	}
	return eachFound(t, "PickTraits", pids, func(pid identity.ProfileID) ([]any, error) {
		return picker.PickTraits(ctx, pid, names, nil)
	}, profile.ErrNotFound), "PickTraits"
}

// checkPickTraitsBatch checks that PickTraitsBatch answers pids and names as
// want says and as tx does one profile at a time (PickTraits, or Get when tx
// is no profile.TraitPicker).
func checkPickTraitsBatch(t *testing.T, ctx context.Context, what string, tx profile.Tx, b profile.BatchTx, pids []identity.ProfileID, names []string, want map[identity.ProfileID][]any) {
	t.Helper()
	got, err := b.PickTraitsBatch(ctx, pids, names)
	if err != nil {
		t.Fatalf("%s: PickTraitsBatch of %d profiles and %d names: %v", what, len(pids), len(names), err)
	}
	each, how := picksEach(t, ctx, tx, pids, names)
	sameAsEach(t, fmt.Sprintf("%s, names %q", what, names), "PickTraitsBatch", how, want, got, each)
}

// pickFixture is seedProfiles with a nested trait on A: A has a, shared and
// nested; B has b and shared; C has no traits.
func pickFixture(t *testing.T, e *env, s profile.Store) (*profileFixture, any) {
	t.Helper()
	f := seedProfiles(t, e, s)
	nested := map[string]any{"city": "Paris", "lines": []any{"1 rue", map[string]any{"floor": 2.0}}}
	mustUpdate(t, e, s, f.A, traitsUpdate(4, "mn", map[string]any{"nested": nested}))
	return f, profile.CloneValue(nested)
}

func profilePickTraitsBatch(t *testing.T, e *env, s profile.Store) {
	needBatchTx(t, e, s)
	f, nested := pickFixture(t, e, s)
	tx, b := beginBatchTx(t, e, s)
	unknown := newPID()
	// Out of order, one twice, one no profile has.
	names := []string{"shared", "missing", "a", "nested", "b", "shared"}
	// Existing, unknown, repeated; C exists without traits.
	pids := []identity.ProfileID{f.B, unknown, f.A, f.C, f.A, unknown}
	want := map[identity.ProfileID][]any{
		f.A: {"from A", nil, "A", nested, nil, "from A"},
		f.B: {"from B", nil, nil, nil, "B", "from B"},
		f.C: {nil, nil, nil, nil, nil, nil},
	}
	checkPickTraitsBatch(t, e.ctx, "committed profiles", tx, b, pids, names, want)
	checkPickTraitsBatch(t, e.ctx, "one name", tx, b, pids, []string{"b"},
		map[identity.ProfileID][]any{f.A: {nil}, f.B: {"B"}, f.C: {nil}})
	// No names: every profile that exists, with no values.
	for _, in := range [][]string{nil, {}} {
		checkPickTraitsBatch(t, e.ctx, "no names", tx, b, pids, in,
			map[identity.ProfileID][]any{f.A: {}, f.B: {}, f.C: {}})
	}
	for _, in := range [][]identity.ProfileID{nil, {}} {
		if got, err := b.PickTraitsBatch(e.ctx, in, names); err != nil || len(got) != 0 {
			t.Errorf("PickTraitsBatch of no profiles = %v, %v; want nothing", got, err)
		}
	}

	// The transaction's own writes: a profile created, one updated (a trait
	// set, one removed), one merged away, one deleted.
	n := newPID()
	must(t, tx.Update(e.ctx, n, withTraits(track(1, ev("n1", "n", 1)), map[string]any{"b": "N", "extra": 1.0})), "Update creating N")
	must(t, tx.Update(e.ctx, f.A, withTraits(traitsUpdate(5, "m9", nil), map[string]any{"a": "A2", "b": []any{"from", "A"}}, "shared")), "Update of A")
	must(t, tx.Merge(e.ctx, f.A, f.B), "Merge")
	must(t, tx.Delete(e.ctx, f.C), "Delete")
	pids = append(pids, n)
	want = map[identity.ProfileID][]any{
		f.A: {nil, nil, "A2", nested, []any{"from", "A"}, nil},
		n:   {nil, nil, nil, nil, "N", nil},
	}
	checkPickTraitsBatch(t, e.ctx, "the transaction's own writes", tx, b, pids, names, want)
	commitTx(t, e.ctx, tx)
	if d := diff(want, picksFromGet(t, e.ctx, s, pids, names)); d != "" {
		t.Errorf("the store after Commit (-want +got):\n%s", d)
	}
}

// scribbleValue changes a trait value in place, all the way down.
func scribbleValue(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, el := range x {
			scribbleValue(el)
			x[k] = "scribbled"
		}
		x["added"] = "scribbled"
	case []any:
		for i := range x {
			scribbleValue(x[i])
			x[i] = "scribbled"
		}
	}
}

func profilePickTraitsBatchCopyAtBoundary(t *testing.T, e *env, s profile.Store) {
	needBatchTx(t, e, s)
	f, _ := pickFixture(t, e, s)
	n := newPID()
	tx, b := beginBatchTx(t, e, s)
	// Staged in the transaction: a profile created, a trait of A replaced.
	must(t, tx.Update(e.ctx, n, withTraits(track(1, ev("n1", "n", 1)), map[string]any{
		"nested": map[string]any{"tags": []any{"a", map[string]any{"k": "v"}}}, "b": []any{1.0, 2.0}})), "Update creating N")
	must(t, tx.Update(e.ctx, f.A, withTraits(traitsUpdate(5, "m9", nil), map[string]any{"b": map[string]any{"k": []any{"v"}}})), "Update of A")
	pids := []identity.ProfileID{f.A, f.B, n}
	names := []string{"nested", "b", "missing", "shared"}
	want := picksFromGet(t, e.ctx, tx, pids, names)
	if len(want) != 3 || want[f.A][0] == nil || want[n][0] == nil {
		t.Fatalf("the check's profiles lack the nested traits to change: %v", want)
	}
	got, err := b.PickTraitsBatch(e.ctx, pids, names)
	must(t, err, "PickTraitsBatch")
	for pid, values := range got {
		for _, v := range values {
			scribbleValue(v)
		}
		for i := range values {
			values[i] = "scribbled"
		}
		got[pid] = append(values[:cap(values)], "appended")
	}
	got[newPID()] = []any{"scribbled"}
	if d := diff(want, picksFromGet(t, e.ctx, tx, pids, names)); d != "" {
		t.Errorf("changing what PickTraitsBatch returned changed the transaction's profiles (-want +got):\n%s", d)
	}
	checkPickTraitsBatch(t, e.ctx, "after changing what it returned", tx, b, pids, names, want)
	commitTx(t, e.ctx, tx)
	if d := diff(want, picksFromGet(t, e.ctx, s, pids, names)); d != "" {
		t.Errorf("changing what PickTraitsBatch returned changed the store (-want +got):\n%s", d)
	}
}

func profilePickTraitsBatchMany(t *testing.T, e *env, s profile.Store) {
	needBatchTx(t, e, s)
	names := []string{"k1", "missing", "k0", "k2"}
	// traits returns the traits of profile i, and its values for names.
	traits := func(i int) (map[string]any, []any) {
		set := map[string]any{"k0": float64(i), "k1": fmt.Sprint("v", i)}
		values := []any{set["k1"], nil, set["k0"], nil}
		if i%3 == 0 {
			set["k2"] = map[string]any{"i": float64(i), "list": []any{"x", float64(i % 7)}}
			values[3] = profile.CloneValue(set["k2"])
		}
		return set, values
	}
	meta := profile.Metadata{CreatedAt: at(0), UpdatedAt: at(1), Version: 1}
	known, fresh := newPIDs(500), newPIDs(200)
	stored := map[identity.ProfileID][]any{}
	inTx(t, e.ctx, s.Begin, func(tx profile.Tx) error {
		for i, pid := range known {
			set, values := traits(i)
			if err := tx.Update(e.ctx, pid, withTraits(profile.Update{Metadata: meta}, set)); err != nil {
				return err
			}
			stored[pid] = values
		}
		return nil
	})
	pids := manyProfiles(known, fresh)
	tx, b := beginBatchTx(t, e, s)
	checkPickTraitsBatch(t, e.ctx, fmt.Sprintf("%d profiles", len(pids)), tx, b, pids, names, only(stored, pids))
	// 200 created, 50 deleted, 50 updated (k0 set, k1 removed).
	staged := maps.Clone(stored)
	for i, pid := range fresh {
		set, values := traits(1000 + i)
		must(t, tx.Update(e.ctx, pid, withTraits(profile.Update{Metadata: meta}, set)), "Update creating a profile")
		staged[pid] = values
	}
	for _, pid := range known[:50] {
		must(t, tx.Delete(e.ctx, pid), "Delete")
		delete(staged, pid)
	}
	for i, pid := range known[50:100] {
		must(t, tx.Update(e.ctx, pid, withTraits(profile.Update{Metadata: meta}, map[string]any{"k0": "updated"}, "k1")), "Update")
		_, values := traits(50 + i)
		values[0], values[2] = nil, "updated"
		staged[pid] = values
	}
	checkPickTraitsBatch(t, e.ctx, fmt.Sprintf("%d profiles, in a transaction with writes", len(pids)), tx, b, pids, names, only(staged, pids))
}

// equivalenceBatch is a batch over A and B, which exist, and C and N, which
// do not: new messages, replays of recorded ones, message ids shared across
// profiles, updates without a message id, traits set and removed, events out
// of order.
func equivalenceBatch(A, B, C, N identity.ProfileID) []profile.BatchUpdate {
	return []profile.BatchUpdate{
		{Profile: A, Update: withTraits(track(3, ev("m4", "a", 4)), map[string]any{"plan": "pro"})},
		{Profile: A, Update: withTraits(track(99, ev("m1", "replayed", 50)), map[string]any{"plan": "replayed"})}, // recorded before
		{Profile: B, Update: track(3, ev("m4", "b", 4))},                                                          // A's message id, on B
		{Profile: N, Update: traitsUpdate(1, "n1", map[string]any{"plan": "trial"})},
		{Profile: A, Update: withTraits(traitsUpdate(4, "m5", nil), map[string]any{"city": "Paris"}, "plan", "never-there")},
		{Profile: A, Update: track(99, ev("m4", "replayed", 51))}, // earlier in the batch
		{Profile: C, Update: profile.Update{Metadata: profile.Metadata{CreatedAt: at(7), Version: 1}}},
		{Profile: C, Update: withTraits(profile.Update{Metadata: profile.Metadata{CreatedAt: at(7), Version: 2}}, map[string]any{"x": 1.0})},
		{Profile: C, Update: withTraits(profile.Update{Metadata: profile.Metadata{CreatedAt: at(7), Version: 3}}, map[string]any{"y": 2.0}, "x")},
		{Profile: N, Update: track(2, ev("n2", "n", 2))},
		{Profile: B, Update: track(4, ev("m6", "b", 3))},                                 // at the time of B's m3: ordered by message id
		{Profile: A, Update: track(99, ev("mx", "replayed", 52))},                        // recorded before, without an event
		{Profile: N, Update: traitsUpdate(99, "n1", map[string]any{"plan": "replayed"})}, // earlier in the batch
		// tmp set and removed in one update: removed.
		{Profile: B, Update: withTraits(traitsUpdate(5, "m7", map[string]any{"b": "B", "tmp": "x"}), nil, "city", "tmp")},
		{Profile: A, Update: track(5, ev("m8", "a", 0))}, // older than every event of A
		{Profile: C, Update: track(4, ev("m4", "c", 4))}, // A's and B's message id, on C
	}
}

func profileUpdateBatchEqualsUpdates(t *testing.T, e *env, s profile.Store) {
	needBatchTx(t, e, s)
	ref := referenceProfiles(t, e)
	ps := newPIDs(4)
	A, B, C, N := ps[0], ps[1], ps[2], ps[3]
	for _, st := range []profile.Store{s, ref} {
		mustUpdate(t, e, st, A, withTraits(track(1, ev("m1", "a", 1)), map[string]any{"plan": "free", "city": "Lyon"}))
		mustUpdate(t, e, st, A, traitsUpdate(2, "mx", map[string]any{"vip": true}))
		mustUpdate(t, e, st, B, track(1, ev("m2", "b", 2)))
		mustUpdate(t, e, st, B, withTraits(track(2, ev("m3", "b", 3)), map[string]any{"city": "Nice"}))
	}
	// One Update at a time, each in a transaction of its own, on the second
	// store.
	batch := equivalenceBatch(A, B, C, N)
	var wantDup []bool
	for i, u := range batch {
		switch err := update(t, e, ref, u.Profile, u.Update); {
		case err == nil:
			wantDup = append(wantDup, false)
		case errors.Is(err, profile.ErrDuplicate):
			wantDup = append(wantDup, true)
		default:
			t.Fatalf("update %d, one at a time: %v", i, err)
		}
	}
	want := viewProfiles(t, e.ctx, ref, ps...)
	wantIDs, err := ref.IDs(e.ctx, "", 100)
	must(t, err, "IDs of the second store")

	tx, b := beginBatchTx(t, e, s)
	dup := batchUpdates(t, e.ctx, b, equivalenceBatch(A, B, C, N))
	if d := diff(dupAnswers(batch, wantDup), dupAnswers(batch, dup)); d != "" {
		t.Errorf("UpdateBatch's duplicates differ from Update's ErrDuplicate one at a time (-Update +UpdateBatch):\n%s", d)
	}
	if d := diff(want, viewProfiles(t, e.ctx, tx, ps...)); d != "" {
		t.Errorf("the transaction after UpdateBatch differs from the store after Update one at a time (-Update +UpdateBatch):\n%s", d)
	}
	commitTx(t, e.ctx, tx)
	if d := diff(want, viewProfiles(t, e.ctx, s, ps...)); d != "" {
		t.Errorf("the store after UpdateBatch differs from the store after Update one at a time (-Update +UpdateBatch):\n%s", d)
	}
	ids, err := s.IDs(e.ctx, "", 100)
	must(t, err, "IDs")
	if d := diff(wantIDs, ids); d != "" {
		t.Errorf("IDs after UpdateBatch differ from IDs after Update one at a time (-Update +UpdateBatch):\n%s", d)
	}
}

// cloneStored returns a copy of p that shares no slice or map with it.
func cloneStored(p *storedProfile) *storedProfile {
	if p == nil {
		return nil
	}
	return &storedProfile{Traits: maps.Clone(p.Traits), Meta: p.Meta.Clone(), Events: slices.Clone(p.Events)}
}

func profileUpdateBatchDuplicates(t *testing.T, e *env, s profile.Store) {
	needBatchTx(t, e, s)
	f := seedProfiles(t, e, s) // A recorded m1, m3, mx; B m2, m3, my, mx, m5, m4; C c1
	n := newPID()
	pids := append(f.pids, n)
	before := viewProfiles(t, e.ctx, s, pids...)
	tx, b := beginBatchTx(t, e, s)
	for _, in := range [][]profile.BatchUpdate{nil, {}} {
		if got, err := b.UpdateBatch(e.ctx, in, []bool{true}); err != nil || diff([]bool{true}, got) != "" {
			t.Errorf("UpdateBatch of no updates = %v, %v; want dup as it was, [true]", got, err)
		}
	}
	stagedA := track(4, ev("m9", "a", 9))
	must(t, tx.Update(e.ctx, f.A, stagedA), "Update of A") // recorded earlier in the transaction
	// A duplicate carries other content: were it applied, it would show.
	replay := func(id string, sec int) profile.Update {
		return withTraits(track(99, ev(id, "replayed", sec)), map[string]any{"replayed": true}, "a", "b")
	}
	batch := []profile.BatchUpdate{
		{Profile: f.A, Update: replay("m1", 50)},                                       // committed before: dup
		{Profile: f.A, Update: replay("m9", 51)},                                       // staged earlier in the transaction: dup
		{Profile: f.A, Update: track(5, ev("m10", "a", 10))},                           // new
		{Profile: f.A, Update: replay("m10", 52)},                                      // earlier in the batch: dup
		{Profile: f.C, Update: track(2, ev("m10", "c", 11))},                           // the same message on another profile: new
		{Profile: f.C, Update: track(3, ev("m1", "c", 12))},                            // A's committed message on C: new
		{Profile: f.B, Update: replay("mx", 53)},                                       // B recorded mx (A did too): dup
		{Profile: f.A, Update: profile.Update{Metadata: profile.Metadata{Version: 6}}}, // no message id: never a dup
		{Profile: f.A, Update: profile.Update{Metadata: profile.Metadata{Version: 7}}}, // nor again
		{Profile: n, Update: track(1, ev("n1", "n", 1))},                               // new profile
		{Profile: n, Update: replay("n1", 54)},                                         // earlier in the batch: dup
	}
	wantDup := []bool{true, true, false, true, false, false, true, false, false, false, true}
	dup := batchUpdates(t, e.ctx, b, batch)
	if d := diff(dupAnswers(batch, wantDup), dupAnswers(batch, dup)); d != "" {
		t.Errorf("UpdateBatch's duplicate flags (-want +got):\n%s", d)
	}
	want := map[identity.ProfileID]*storedProfile{}
	for pid, p := range before {
		want[pid] = cloneStored(p)
	}
	want[f.A].Events = append(want[f.A].Events, *ev("m9", "a", 9), *ev("m10", "a", 10))
	want[f.A].Meta = profile.Metadata{Version: 7}
	want[f.C].Events = append(want[f.C].Events, *ev("m10", "c", 11), *ev("m1", "c", 12))
	want[f.C].Meta = track(3, ev("m1", "c", 12)).Metadata
	want[n] = &storedProfile{Meta: track(1, ev("n1", "n", 1)).Metadata, Events: []profile.Event{*ev("n1", "n", 1)}}
	if d := diff(want, viewProfiles(t, e.ctx, tx, pids...)); d != "" {
		t.Errorf("the transaction after UpdateBatch with duplicates (-want +got):\n%s", d)
	}
	commitTx(t, e.ctx, tx)
	if d := diff(want, viewProfiles(t, e.ctx, s, pids...)); d != "" {
		t.Errorf("the store after UpdateBatch with duplicates (-want +got):\n%s", d)
	}
	// What the batch recorded is recorded: replayed later, each is a duplicate.
	for _, u := range []profile.BatchUpdate{{Profile: f.A, Update: replay("m10", 60)}, {Profile: f.C, Update: replay("m10", 61)}, {Profile: n, Update: replay("n1", 62)}} {
		if err := update(t, e, s, u.Profile, u.Update); !errors.Is(err, profile.ErrDuplicate) {
			t.Errorf("Update of %s with message %s, recorded by the batch = %v; want ErrDuplicate", u.Profile, u.MessageID, err)
		}
	}
}

func profileUpdateBatchTraitOrder(t *testing.T, e *env, s profile.Store) {
	needBatchTx(t, e, s)
	pid, other := newPID(), newPID()
	mustUpdate(t, e, s, pid, traitsUpdate(1, "m1", map[string]any{"a": "1", "b": "1", "c": "1"}))
	tr := func(v string, sec int) profile.Trait {
		return profile.Trait{Value: v, Source: fmt.Sprint("update-", sec), UpdatedAt: at(sec)}
	}
	meta := func(v int) profile.Metadata {
		return profile.Metadata{CreatedAt: at(0), UpdatedAt: at(v), Version: uint64(v)}
	}
	batch := []profile.BatchUpdate{
		{Profile: pid, Update: profile.Update{MessageID: "m2", Metadata: meta(2),
			Set: map[string]profile.Trait{"a": tr("2", 2), "d": tr("2", 2)}, Remove: []string{"c"}}},
		{Profile: other, Update: profile.Update{MessageID: "o1", Metadata: meta(1),
			Set: map[string]profile.Trait{"a": tr("other", 1)}}}, // a trait of the same name, elsewhere
		{Profile: pid, Update: profile.Update{MessageID: "m3", Metadata: meta(3),
			Set: map[string]profile.Trait{"c": tr("3", 3)}, Remove: []string{"a", "d"}}},
		// Within one update Remove comes after Set.
		{Profile: pid, Update: profile.Update{MessageID: "m4", Metadata: meta(4),
			Set: map[string]profile.Trait{"a": tr("4", 4), "e": tr("4", 4)}, Remove: []string{"e"}}},
		{Profile: pid, Update: profile.Update{MessageID: "m2", Metadata: meta(99), // a duplicate: ignored
			Set: map[string]profile.Trait{"z": tr("dup", 99), "a": tr("dup", 99)}, Remove: []string{"c"}}},
		{Profile: pid, Update: profile.Update{Metadata: meta(5),
			Set: map[string]profile.Trait{"b": tr("5", 5)}}},
		{Profile: pid, Update: profile.Update{MessageID: "m6", Metadata: meta(6),
			Set: map[string]profile.Trait{"b": tr("6", 6)}, Remove: []string{"b"}}},
		{Profile: pid, Update: profile.Update{MessageID: "m7", Metadata: meta(7),
			Set: map[string]profile.Trait{"b": tr("7", 7)}}},
		{Profile: other, Update: profile.Update{MessageID: "o2", Metadata: meta(2), Remove: []string{"b"}}},
	}
	want := map[identity.ProfileID]*storedProfile{
		pid:   {Traits: map[string]profile.Trait{"a": tr("4", 4), "b": tr("7", 7), "c": tr("3", 3)}, Meta: meta(7)},
		other: {Traits: map[string]profile.Trait{"a": tr("other", 1)}, Meta: meta(2)},
	}
	tx, b := beginBatchTx(t, e, s)
	dup := batchUpdates(t, e.ctx, b, batch)
	wantDup := []bool{false, false, false, false, true, false, false, false, false}
	if d := diff(dupAnswers(batch, wantDup), dupAnswers(batch, dup)); d != "" {
		t.Errorf("UpdateBatch's duplicate flags (-want +got):\n%s", d)
	}
	if d := diff(want, viewProfiles(t, e.ctx, tx, pid, other)); d != "" {
		t.Errorf("the transaction after several updates of one profile in a batch (-want +got):\n%s", d)
	}
	commitTx(t, e.ctx, tx)
	if d := diff(want, viewProfiles(t, e.ctx, s, pid, other)); d != "" {
		t.Errorf("the store after several updates of one profile in a batch (-want +got):\n%s", d)
	}
}

func profileUpdateBatchCreates(t *testing.T, e *env, s profile.Store) {
	needBatchTx(t, e, s)
	ps := newPIDs(3)
	full := withTraits(track(1, ev("n1", "Signed Up", 1)), map[string]any{
		"plan": "pro", "address": map[string]any{"city": "Paris", "geo": map[string]any{"lat": 48.85}}, "tags": []any{"a", 3.0}})
	bare := profile.Update{Metadata: profile.Metadata{CreatedAt: at(9), UpdatedAt: at(9), Version: 1}}
	first, second := traitsUpdate(1, "x1", map[string]any{"plan": "free"}), track(2, ev("x2", "Viewed", 2))
	batch := []profile.BatchUpdate{{Profile: ps[0], Update: full}, {Profile: ps[1], Update: bare},
		{Profile: ps[2], Update: first}, {Profile: ps[2], Update: second}}
	want := map[identity.ProfileID]*storedProfile{
		ps[0]: {Traits: full.Set, Meta: full.Metadata, Events: []profile.Event{*full.Event}},
		ps[1]: {Meta: bare.Metadata},
		// Created by the first update, built on by the second.
		ps[2]: {Traits: first.Set, Meta: second.Metadata, Events: []profile.Event{*second.Event}},
	}
	tx, b := beginBatchTx(t, e, s)
	if dup := batchUpdates(t, e.ctx, b, batch); diff([]bool{false, false, false, false}, dup) != "" {
		t.Errorf("UpdateBatch creating profiles reported duplicates %v; want none", dup)
	}
	if d := diff(want, viewProfiles(t, e.ctx, tx, ps...)); d != "" {
		t.Errorf("the profiles UpdateBatch created, in the transaction (-want +got):\n%s", d)
	}
	commitTx(t, e.ctx, tx)
	if d := diff(want, viewProfiles(t, e.ctx, s, ps...)); d != "" {
		t.Errorf("the profiles UpdateBatch created, after Commit (-want +got):\n%s", d)
	}
	ids, err := s.IDs(e.ctx, "", 10)
	must(t, err, "IDs")
	if d := diff(ps, ids); d != "" {
		t.Errorf("IDs after UpdateBatch created profiles (-want +got):\n%s", d)
	}
}

func profileUpdateBatchInvalid(t *testing.T, e *env, s profile.Store) {
	needBatchTx(t, e, s)
	f := seedProfiles(t, e, s)
	n := newPID()
	pids := append(f.pids, n)
	valid := func() []profile.BatchUpdate {
		return []profile.BatchUpdate{
			{Profile: f.A, Update: track(5, ev("m10", "a", 10))},
			{Profile: n, Update: track(1, ev("n1", "n", 1))},
			{Profile: f.B, Update: traitsUpdate(7, "m11", map[string]any{"plan": "pro"})},
		}
	}
	bad := []struct {
		name string
		u    profile.Update
	}{
		{"an event with another message id", profile.Update{MessageID: "m12", Event: ev("m13", "x", 13)}},
		{"an event without a message id", profile.Update{MessageID: "m12", Event: &profile.Event{Name: "x", Timestamp: at(13)}}},
		{"an event with a message id, the update without", profile.Update{Event: ev("m13", "x", 13)}},
	}
	for i, bd := range bad {
		for _, where := range []string{"first", "last"} {
			before := viewProfiles(t, e.ctx, s, pids...)
			tx, b := beginBatchTx(t, e, s)
			// A write staged before the batch, which must survive it.
			must(t, tx.Update(e.ctx, f.A, track(uint64(10+i), ev(fmt.Sprintf("m9-%d-%s", i, where), "a", 9))), "Update of A")
			staged := viewProfiles(t, e.ctx, tx, pids...)
			batch := append(valid(), profile.BatchUpdate{Profile: f.C, Update: bd.u})
			if where == "first" {
				batch = append(batch[len(batch)-1:], batch[:len(batch)-1]...)
			}
			if _, err := b.UpdateBatch(e.ctx, batch, nil); !errors.Is(err, profile.ErrInvalid) {
				t.Errorf("UpdateBatch with %s, %s in the batch = %v; want ErrInvalid", bd.name, where, err)
			}
			// UpdateBatch checks every update before it writes anything: the
			// transaction is as it was.
			if d := diff(staged, viewProfiles(t, e.ctx, tx, pids...)); d != "" {
				t.Errorf("UpdateBatch with %s, %s in the batch, refused, changed the transaction's profiles (-before +after):\n%s", bd.name, where, d)
			}
			want := before
			if commitAfterRefused(t, e.ctx, tx) {
				want = staged
			}
			if d := diff(want, viewProfiles(t, e.ctx, s, pids...)); d != "" {
				t.Errorf("UpdateBatch with %s, %s in the batch, refused, changed the store (-want +got):\n%s", bd.name, where, d)
			}
		}
	}
	// The refused batches recorded none of their message ids.
	for _, u := range valid() {
		if err := update(t, e, s, u.Profile, u.Update); err != nil {
			t.Errorf("Update of %s with message %s, from a refused batch = %v; want it accepted", u.Profile, u.MessageID, err)
		}
	}
}

func profileUpdateBatchCopyAtBoundary(t *testing.T, e *env, s profile.Store) {
	needBatchTx(t, e, s)
	pid, elsewhere := newPID(), newPID()
	mk := func() []profile.BatchUpdate {
		u := withTraits(track(1, ev("m1", "a", 1)), map[string]any{
			"address": map[string]any{"city": "Paris", "lines": []any{"1 rue", "2e"}}, "plan": "pro"}, "nothing")
		u2 := withTraits(traitsUpdate(2, "m2", nil), map[string]any{"tags": []any{"a", map[string]any{"k": "v"}}})
		u2.Metadata.Recipients = []profile.Recipient{{Name: "crm", FirstSent: at(1), LastSent: at(2)}}
		return []profile.BatchUpdate{{Profile: pid, Update: u}, {Profile: pid, Update: u2}}
	}
	orig := mk()
	traits := maps.Clone(orig[0].Set)
	maps.Copy(traits, orig[1].Set)
	want := map[identity.ProfileID]*storedProfile{
		pid:       {Traits: traits, Meta: orig[1].Metadata, Events: []profile.Event{*orig[0].Event}},
		elsewhere: nil,
	}
	tx, b := beginBatchTx(t, e, s)
	batch := mk()
	batchUpdates(t, e.ctx, b, batch)
	// What the caller passed in, changed after the call.
	for i := range batch {
		u := &batch[i]
		for k, tr := range u.Set {
			switch v := tr.Value.(type) {
			case map[string]any:
				v["city"] = "scribbled"
				v["lines"].([]any)[0] = "scribbled"
			case []any:
				v[1].(map[string]any)["k"] = "scribbled"
			}
			tr.Source = "scribbled"
			u.Set[k] = tr
		}
		u.Set["added"] = profile.Trait{Value: "scribbled"}
		if len(u.Remove) > 0 {
			u.Remove[0] = "plan" // a store keeping the slice would remove plan at Commit
		}
		if u.Event != nil {
			u.Event.Name = "scribbled"
			u.Event.Properties["id"] = "scribbled"
			u.Event.Properties["nested"].(map[string]any)["list"].([]any)[0] = "scribbled"
		}
		for j := range u.Metadata.Recipients {
			u.Metadata.Recipients[j].Name = "scribbled"
		}
		u.Metadata.Version = 99
		u.Profile = elsewhere
	}
	batch[0] = profile.BatchUpdate{Profile: elsewhere, Update: profile.Update{MessageID: "scribbled"}}
	if d := diff(want, viewProfiles(t, e.ctx, tx, pid, elsewhere)); d != "" {
		t.Errorf("changing what was passed to UpdateBatch changed the transaction's profiles (-want +got):\n%s", d)
	}
	commitTx(t, e.ctx, tx)
	if d := diff(want, viewProfiles(t, e.ctx, s, pid, elsewhere)); d != "" {
		t.Errorf("changing what was passed to UpdateBatch changed the store (-want +got):\n%s", d)
	}
}

func profileUpdateBatchMany(t *testing.T, e *env, s profile.Store) {
	needBatchTx(t, e, s)
	ref := referenceProfiles(t, e)
	ps := newPIDs(3) // the first two exist, the third is new
	type key struct {
		pid identity.ProfileID
		id  string
	}
	recorded := map[key]bool{}
	for _, st := range []profile.Store{s, ref} {
		for i, pid := range ps[:2] {
			id := fmt.Sprint("s", i)
			mustUpdate(t, e, st, pid, withTraits(track(1, ev(id, "seed", 0)), map[string]any{"k0": "seed", "k1": "seed"}))
			recorded[key{pid, id}] = true
		}
	}
	n := manyItems + 50
	batch := make([]profile.BatchUpdate, n)
	for i := range batch {
		pid := ps[i%3]
		id := fmt.Sprintf("b%04d", i)
		switch i {
		case 600, 1100: // replays of a message earlier in the batch, far back
			id = fmt.Sprintf("b%04d", i-300)
		case 1000: // a committed message (1000 % 3 == 1)
			id = "s1"
		case 1202: // another profile's message (999 % 3 == 0): not a duplicate
			id = "b0999"
		}
		u := profile.Update{
			MessageID: id,
			// Few distinct timestamps: many ties, ordered by message id.
			Event: &profile.Event{MessageID: id, Name: fmt.Sprint("e", i%5), Properties: map[string]any{"i": float64(i)},
				Timestamp: at(i % 97), ReceivedAt: at(i)},
			Metadata: profile.Metadata{CreatedAt: at(0), UpdatedAt: at(i), Version: uint64(i + 2), LastMessageID: id},
			Set:      map[string]profile.Trait{fmt.Sprint("k", i%7): {Value: float64(i), Source: "batch", UpdatedAt: at(i)}},
		}
		if i%5 == 0 {
			u.Remove = []string{fmt.Sprint("k", (i+3)%7)}
		}
		batch[i] = profile.BatchUpdate{Profile: pid, Update: u}
	}
	wantDup := make([]bool, n)
	var dups []int
	for i, u := range batch {
		k := key{u.Profile, u.MessageID}
		wantDup[i] = recorded[k]
		recorded[k] = true
		if wantDup[i] {
			dups = append(dups, i)
		}
	}
	if d := diff([]int{600, 1000, 1100}, dups); d != "" {
		t.Fatalf("the check's batch has other duplicates than meant (-meant +has):\n%s", d)
	}
	// The same updates one at a time, in transactions of 50, on the second
	// store; a duplicate is refused by Update and left out here, so that no
	// transaction holds a refused write.
	for lo := 0; lo < n; lo += 50 {
		inTx(t, e.ctx, ref.Begin, func(tx profile.Tx) error {
			for i := lo; i < min(lo+50, n); i++ {
				if wantDup[i] {
					continue
				}
				if err := tx.Update(e.ctx, batch[i].Profile, batch[i].Update); err != nil {
					return fmt.Errorf("update %d, one at a time: %w", i, err)
				}
			}
			return nil
		})
	}
	want := viewProfiles(t, e.ctx, ref, ps...)

	tx, b := beginBatchTx(t, e, s)
	dup := batchUpdates(t, e.ctx, b, batch)
	if d := diff(dupAnswers(batch, wantDup), dupAnswers(batch, dup)); d != "" {
		t.Errorf("UpdateBatch of %d updates: duplicate flags (-want +got):\n%s", n, d)
	}
	if d := diff(want, viewProfiles(t, e.ctx, tx, ps...)); d != "" {
		t.Errorf("the transaction after UpdateBatch of %d updates differs from Update one at a time (-Update +UpdateBatch):\n%s", n, d)
	}
	commitTx(t, e.ctx, tx)
	if d := diff(want, viewProfiles(t, e.ctx, s, ps...)); d != "" {
		t.Errorf("the store after UpdateBatch of %d updates differs from Update one at a time (-Update +UpdateBatch):\n%s", n, d)
	}
}

// stageBatchWrites stages, with UpdateBatch, an update of A, a new profile n
// and a trait of B.
func stageBatchWrites(t *testing.T, e *env, b profile.BatchTx, f *profileFixture, n identity.ProfileID) {
	t.Helper()
	batchUpdates(t, e.ctx, b, []profile.BatchUpdate{
		{Profile: f.A, Update: track(4, ev("m9", "a", 9))},
		{Profile: n, Update: track(1, ev("n1", "n", 1))},
		{Profile: f.B, Update: traitsUpdate(7, "m10", map[string]any{"plan": "pro"})},
	})
}

func profileUpdateBatchUncommittedInvisible(t *testing.T, e *env, s profile.Store) {
	e.needIsolation(t)
	needBatchTx(t, e, s)
	f := seedProfiles(t, e, s)
	n := newPID()
	pids := append(f.pids, n)
	before := viewProfiles(t, e.ctx, s, pids...)
	beforeIDs, err := s.IDs(e.ctx, "", 100)
	must(t, err, "IDs")
	tx, b := beginBatchTx(t, e, s)
	stageBatchWrites(t, e, b, f, n)
	staged := viewProfiles(t, e.ctx, tx, pids...)
	readers := map[string]profile.Reader{"the store": s}
	other, ok := secondTx(t, e, s.Begin)
	if ok {
		readers["another transaction"] = other
	}
	for name, r := range readers {
		if d := diff(before, viewProfiles(t, e.ctx, r, pids...)); d != "" {
			t.Errorf("%s sees what UpdateBatch staged (-committed +seen):\n%s", name, d)
		}
	}
	if ok {
		must(t, other.Rollback(e.ctx), "Rollback")
	}
	if got, err := s.IDs(e.ctx, "", 100); err != nil || diff(beforeIDs, got) != "" {
		t.Errorf("IDs lists a profile UpdateBatch staged: %v, %v; want %v", got, err, beforeIDs)
	}
	commitTx(t, e.ctx, tx)
	if d := diff(staged, viewProfiles(t, e.ctx, s, pids...)); d != "" {
		t.Errorf("the store after Commit (-staged +seen):\n%s", d)
	}
}

func profileUpdateBatchRollbackDiscards(t *testing.T, e *env, s profile.Store) {
	needBatchTx(t, e, s)
	f := seedProfiles(t, e, s)
	n := newPID()
	pids := append(f.pids, n)
	before := viewProfiles(t, e.ctx, s, pids...)
	tx, b := beginBatchTx(t, e, s)
	stageBatchWrites(t, e, b, f, n)
	must(t, tx.Rollback(e.ctx), "Rollback")
	if d := diff(before, viewProfiles(t, e.ctx, s, pids...)); d != "" {
		t.Errorf("Rollback left what UpdateBatch staged (-before +after):\n%s", d)
	}
	if err := tx.Rollback(e.ctx); err != nil {
		t.Errorf("a second Rollback = %v; want nil", err)
	}
	// The message ids it staged were not recorded.
	for _, u := range []profile.BatchUpdate{{Profile: f.A, Update: profile.Update{MessageID: "m9"}}, {Profile: n, Update: profile.Update{MessageID: "n1"}}} {
		if err := update(t, e, s, u.Profile, u.Update); err != nil {
			t.Errorf("Update of %s with message %s, of a rolled back batch = %v; want it accepted", u.Profile, u.MessageID, err)
		}
	}
}

func profileUpdateBatchTxDone(t *testing.T, e *env, s profile.Store) {
	needBatchTx(t, e, s)
	for _, how := range []string{"Commit", "Rollback"} {
		f := seedProfiles(t, e, s)
		n := newPID()
		tx, b := beginBatchTx(t, e, s)
		batchUpdates(t, e.ctx, b, []profile.BatchUpdate{{Profile: n, Update: track(1, ev("n1", "n", 1))}})
		if how == "Commit" {
			commitTx(t, e.ctx, tx)
		} else {
			must(t, tx.Rollback(e.ctx), "Rollback")
		}
		late := newPID()
		pids := append(f.pids, n, late)
		before := viewProfiles(t, e.ctx, s, pids...)
		checkDone(t, e.ctx, how, tx, profile.ErrTxDone, []txMethod{
			{"UpdateBatch", func(ctx context.Context) error {
				_, err := b.UpdateBatch(ctx, []profile.BatchUpdate{
					{Profile: late, Update: track(1, ev("l1", "l", 1))},
					{Profile: f.A, Update: traitsUpdate(9, "l2", map[string]any{"late": true})},
				}, nil)
				return err
			}},
			{"MetadataBatch", func(ctx context.Context) error {
				_, err := b.MetadataBatch(ctx, []identity.ProfileID{f.A, n})
				return err
			}},
			{"MetadataBatch (no profiles)", func(ctx context.Context) error {
				_, err := b.MetadataBatch(ctx, nil)
				return err
			}},
			{"UpdateBatch (no updates)", func(ctx context.Context) error {
				_, err := b.UpdateBatch(ctx, nil, nil)
				return err
			}},
			{"PickTraitsBatch", func(ctx context.Context) error {
				_, err := b.PickTraitsBatch(ctx, []identity.ProfileID{f.A, n}, []string{"a", "shared"})
				return err
			}},
			{"PickTraitsBatch (no profiles, no names)", func(ctx context.Context) error {
				_, err := b.PickTraitsBatch(ctx, nil, nil)
				return err
			}},
		})
		if d := diff(before, viewProfiles(t, e.ctx, s, pids...)); d != "" {
			t.Errorf("UpdateBatch on a transaction ended by %s changed the store (-before +after):\n%s", how, d)
		}
	}
}

// Audience store: audience.BatchTx.

// needAudienceBatchTx skips the check when the audience store's transactions
// do not implement audience.BatchTx.
func needAudienceBatchTx(t *testing.T, e *env, s audience.Store) {
	t.Helper()
	needOptionalTx[audience.Tx, audience.BatchTx](t, e, "the audience store", s.Begin)
}

// beginAudienceBatchTx begins a transaction, rolled back when the check ends,
// and returns it with its audience.BatchTx, or skips the check.
func beginAudienceBatchTx(t *testing.T, e *env, s audience.Store) (audience.Tx, audience.BatchTx) {
	t.Helper()
	return beginOptional[audience.Tx, audience.BatchTx](t, e, "the audience store", s.Begin)
}

// referenceAudiences makes a second Harness beside the check's, closed when
// the check ends, and returns its (empty) audience store: the checks apply
// there, one Put at a time, what they give PutBatch at once.
func referenceAudiences(t *testing.T, e *env) audience.Store {
	t.Helper()
	s, err := newHarness(t, e.nh).MakeAudiences(e.ctx)
	must(t, err, "making a second audience store to compare with")
	return s
}

// stateEach answers pids one State at a time, leaving out those not found.
func stateEach(t *testing.T, ctx context.Context, r audience.Reader, pids []identity.ProfileID) map[identity.ProfileID]*audience.State {
	t.Helper()
	return eachFound(t, "State", pids, func(pid identity.ProfileID) (*audience.State, error) { return r.State(ctx, pid) }, audience.ErrNotFound)
}

// checkStateBatch checks that StateBatch answers pids as want says and as
// tx's State does, one at a time.
func checkStateBatch(t *testing.T, ctx context.Context, what string, tx audience.Tx, b audience.BatchTx, pids []identity.ProfileID, want map[identity.ProfileID]*audience.State) {
	t.Helper()
	got, err := b.StateBatch(ctx, pids)
	if err != nil {
		t.Fatalf("%s: StateBatch of %d profiles: %v", what, len(pids), err)
	}
	sameAsEach(t, what, "StateBatch", "State", want, got, stateEach(t, ctx, tx, pids))
}

// putBatch calls PutBatch, failing the check on an error.
func putBatch(t *testing.T, ctx context.Context, b audience.BatchTx, states []audience.BatchState) {
	t.Helper()
	if err := b.PutBatch(ctx, states); err != nil {
		t.Fatalf("PutBatch of %d states: %v", len(states), err)
	}
}

// putEach puts states one Put at a time, in order.
func putEach(ctx context.Context, tx audience.Tx, states []audience.BatchState) error {
	for i, bs := range states {
		if err := tx.Put(ctx, bs.Profile, bs.State); err != nil {
			return fmt.Errorf("state %d, one Put at a time: %w", i, err)
		}
	}
	return nil
}

// dueAll returns every profile r says is due by the end of the checks' time,
// earliest first.
func dueAll(t *testing.T, ctx context.Context, r audience.Reader) []identity.ProfileID {
	t.Helper()
	due, err := r.Due(ctx, at(1_000_000), 100_000)
	must(t, err, "Due")
	return due
}

// batchAudienceKeys are the audiences the PutBatch checks put profiles in.
var batchAudienceKeys = []string{"a", "b", "c", "d"}

func audienceStateBatch(t *testing.T, e *env, s audience.Store) {
	needAudienceBatchTx(t, e, s)
	f := seedAudiences(t, e, s) // p[0] in a, p[1] in a and b, p[2] in b, p[3] in a, p[4] in none, p[5] in a and c
	p := f.p
	tx, b := beginAudienceBatchTx(t, e, s)
	for _, in := range [][]identity.ProfileID{nil, {}} {
		if got, err := b.StateBatch(e.ctx, in); err != nil || len(got) != 0 {
			t.Errorf("StateBatch of no profiles = %v, %v; want nothing", got, err)
		}
	}
	unknown := newPID()
	pids := []identity.ProfileID{p[1], unknown, p[0], p[4], p[0], p[5], unknown}
	want := map[identity.ProfileID]*audience.State{p[0]: state(0, "a"), p[1]: state(0, "a", "b"), p[4]: state(0), p[5]: state(0, "a", "c")}
	checkStateBatch(t, e.ctx, "committed states", tx, b, pids, want)

	// The transaction's own writes: a state put for a new profile and for one
	// that has one, states deleted, put again after Delete, deleted after Put,
	// and changed with Modify.
	n, gone := newPID(), newPID()
	must(t, tx.Put(e.ctx, n, state(70, "a", "c")), "Put")
	must(t, tx.Put(e.ctx, p[0], state(5, "b")), "Put")
	must(t, tx.Delete(e.ctx, p[1]), "Delete")
	must(t, tx.Put(e.ctx, gone, state(1, "a")), "Put")
	must(t, tx.Delete(e.ctx, gone), "Delete")
	must(t, tx.Delete(e.ctx, p[2]), "Delete")
	must(t, tx.Put(e.ctx, p[2], state(9, "c")), "Put")
	if m, ok := tx.(audience.Modifier); ok {
		must(t, m.Modify(e.ctx, p[4], func(st *audience.State) error {
			st.Audiences = []string{"b"}
			st.NextChange = at(60)
			return nil
		}), "Modify")
	} else {
		t.Log("the transaction does not implement audience.Modifier: putting the state Modify would have")
		must(t, tx.Put(e.ctx, p[4], state(60, "b")), "Put")
	}
	pids = append(pids, n, gone, p[2], p[3])
	want = map[identity.ProfileID]*audience.State{p[0]: state(5, "b"), p[2]: state(9, "c"), p[3]: state(0, "a"),
		p[4]: state(60, "b"), p[5]: state(0, "a", "c"), n: state(70, "a", "c")}
	checkStateBatch(t, e.ctx, "the transaction's own writes", tx, b, pids, want)
	commitTx(t, e.ctx, tx)
	if d := diff(want, stateEach(t, e.ctx, s, pids)); d != "" {
		t.Errorf("the store after Commit (-want +got):\n%s", d)
	}
}

func audienceStateBatchCopyAtBoundary(t *testing.T, e *env, s audience.Store) {
	needAudienceBatchTx(t, e, s)
	f := seedAudiences(t, e, s)
	n := newPID()
	tx, b := beginAudienceBatchTx(t, e, s)
	must(t, tx.Put(e.ctx, n, state(70, "a", "c")), "Put")
	pids := []identity.ProfileID{f.p[1], f.p[5], n} // committed, and staged
	want := stateEach(t, e.ctx, tx, pids)
	got, err := b.StateBatch(e.ctx, pids)
	must(t, err, "StateBatch")
	for _, st := range got {
		scribbleState(st)
	}
	got[newPID()] = state(1, "scribbled")
	if d := diff(want, stateEach(t, e.ctx, tx, pids)); d != "" {
		t.Errorf("changing what StateBatch returned changed the transaction's states (-want +got):\n%s", d)
	}
	checkStateBatch(t, e.ctx, "after changing what it returned", tx, b, pids, want)
	commitTx(t, e.ctx, tx)
	if d := diff(want, stateEach(t, e.ctx, s, pids)); d != "" {
		t.Errorf("changing what StateBatch returned changed the store (-want +got):\n%s", d)
	}

	// What StateBatch returned stays as it was when the transaction then
	// writes: the states staged, and the committed ones.
	tx, b = beginAudienceBatchTx(t, e, s)
	must(t, tx.Put(e.ctx, n, state(75, "b")), "Put")
	want = stateEach(t, e.ctx, tx, pids)
	kept, err := b.StateBatch(e.ctx, pids)
	must(t, err, "StateBatch")
	if m, ok := tx.(audience.Modifier); ok {
		for _, pid := range pids[1:] {
			must(t, m.Modify(e.ctx, pid, func(st *audience.State) error {
				st.Counters[0].Count = 99
				st.Counters[0].Times[0] = -5
				st.NextChange = at(99)
				return nil
			}), "Modify")
		}
	}
	must(t, tx.Put(e.ctx, f.p[1], state(80, "c")), "Put")
	must(t, tx.Delete(e.ctx, f.p[5]), "Delete")
	if d := diff(want, kept); d != "" {
		t.Errorf("what StateBatch returned changed with the transaction's later writes (-want +got):\n%s", d)
	}
}

// manyState is the i-th state of the large batches: in one to three of
// batchAudienceKeys, counted i times, due at i seconds or never.
func manyState(i int) *audience.State {
	sets := [][]string{nil, {"a"}, {"a", "b"}, {"c"}, {"a", "c", "d"}, {"b", "d"}}
	sec := i + 1
	if i%4 == 0 {
		sec = 0
	}
	st := state(sec, sets[i%len(sets)]...)
	st.Counters[1].Count = int64(i)
	return st
}

func audienceStateBatchMany(t *testing.T, e *env, s audience.Store) {
	needAudienceBatchTx(t, e, s)
	known, fresh := newPIDs(500), newPIDs(200)
	stored := map[identity.ProfileID]*audience.State{}
	inTx(t, e.ctx, s.Begin, func(tx audience.Tx) error {
		for i, pid := range known {
			if err := tx.Put(e.ctx, pid, manyState(i)); err != nil {
				return err
			}
			stored[pid] = manyState(i)
		}
		return nil
	})
	pids := manyProfiles(known, fresh)
	tx, b := beginAudienceBatchTx(t, e, s)
	checkStateBatch(t, e.ctx, fmt.Sprintf("%d profiles", len(pids)), tx, b, pids, only(stored, pids))
	// 200 put, 50 deleted, 50 replaced, 50 modified.
	staged := maps.Clone(stored)
	for i, pid := range fresh {
		must(t, tx.Put(e.ctx, pid, manyState(1000+i)), "Put")
		staged[pid] = manyState(1000 + i)
	}
	for _, pid := range known[:50] {
		must(t, tx.Delete(e.ctx, pid), "Delete")
		delete(staged, pid)
	}
	for i, pid := range known[50:100] {
		must(t, tx.Put(e.ctx, pid, manyState(2000+i)), "Put")
		staged[pid] = manyState(2000 + i)
	}
	m, modifier := tx.(audience.Modifier)
	for i, pid := range known[100:150] {
		st := manyState(100 + i)
		st.Audiences = []string{"d"}
		st.Counters[1].Count += 1000
		staged[pid] = st
		if !modifier {
			must(t, tx.Put(e.ctx, pid, st), "Put")
			continue
		}
		must(t, m.Modify(e.ctx, pid, func(st *audience.State) error {
			st.Audiences = []string{"d"}
			st.Counters[1].Count += 1000
			return nil
		}), "Modify")
	}
	checkStateBatch(t, e.ctx, fmt.Sprintf("%d profiles, in a transaction with writes", len(pids)), tx, b, pids, only(staged, pids))
}

// sortedAudiences compares states whatever the order of their audiences.
var sortedAudiences = cmpopts.SortSlices(func(a, b string) bool { return a < b })

func audiencePutBatchEqualsPuts(t *testing.T, e *env, s audience.Store) {
	needAudienceBatchTx(t, e, s)
	ref := referenceAudiences(t, e)
	f := seedAudiences(t, e, s) // p[0] in a, p[1] in a and b, p[2] in b, p[3] in a, p[4] in none, p[5] in a and c
	f.seed(t, e, ref)
	p := f.p
	n, m := newPID(), newPID()
	pids := append(slices.Clone(p), n, m)
	// Written in the transaction before the batch.
	before := func(tx audience.Tx) error {
		if err := tx.Put(e.ctx, p[2], state(15, "c")); err != nil {
			return err
		}
		return tx.Delete(e.ctx, p[3])
	}
	batch := func() []audience.BatchState {
		return []audience.BatchState{
			{Profile: n, State: state(30, "d", "a")},      // new, audiences out of order
			{Profile: p[0], State: state(10, "b", "b")},   // replaced, an audience twice
			{Profile: p[1], State: &audience.State{}},     // an empty state: in no audience
			{Profile: p[3], State: state(40, "c")},        // deleted earlier in the transaction
			{Profile: p[2], State: state(20, "a")},        // put earlier in the transaction
			{Profile: m, State: state(50, "b")},           // new,
			{Profile: m, State: state(0, "c", "a")},       // and again: the later wins
			{Profile: p[5], State: state(0, "a", "c")},    // as it was
			{Profile: n, State: state(35, "d", "a", "d")}, // again, later
		}
	}
	// One Put at a time, in order, in one transaction, on the second store.
	inTx(t, e.ctx, ref.Begin, func(tx audience.Tx) error {
		if err := before(tx); err != nil {
			return err
		}
		return putEach(e.ctx, tx, batch())
	})
	want := viewAudiencesOf(t, e.ctx, ref, pids, batchAudienceKeys)
	wantDue := dueAll(t, e.ctx, ref)

	tx, b := beginAudienceBatchTx(t, e, s)
	must(t, before(tx), "the writes before the batch")
	putBatch(t, e.ctx, b, batch())
	if d := diff(want, viewAudiencesOf(t, e.ctx, tx, pids, batchAudienceKeys)); d != "" {
		t.Errorf("the transaction after PutBatch differs from the store after Put one at a time (-Put +PutBatch):\n%s", d)
	}
	commitTx(t, e.ctx, tx)
	got := viewAudiencesOf(t, e.ctx, s, pids, batchAudienceKeys)
	if d := diff(want, got); d != "" {
		t.Errorf("the store after PutBatch differs from the store after Put one at a time (-Put +PutBatch):\n%s", d)
	}
	if d := diff(wantDue, dueAll(t, e.ctx, s)); d != "" {
		t.Errorf("Due after PutBatch differs from Due after Put one at a time (-Put +PutBatch):\n%s", d)
	}
	// Of two states of one profile the later wins, whatever the order of its
	// audiences.
	if d := diff(state(0, "a", "c"), got.States[m], sortedAudiences); d != "" {
		t.Errorf("the state of a profile put twice in one PutBatch (-later +got):\n%s", d)
	}
	for _, key := range []string{"a", "b", "c"} {
		if slices.Contains(got.Members[key], m) != (key != "b") {
			t.Errorf("members of %s after PutBatch put a profile in b, then in a and c: %v", key, got.Members[key])
		}
	}
}

func audiencePutBatchInvalid(t *testing.T, e *env, s audience.Store) {
	needAudienceBatchTx(t, e, s)
	f := seedAudiences(t, e, s)
	n := newPID()
	pids := append(slices.Clone(f.p), n)
	valid := func() []audience.BatchState {
		return []audience.BatchState{
			{Profile: n, State: state(10, "a")},
			{Profile: f.p[0], State: state(0, "c")},
			{Profile: f.p[1], State: state(20)},
		}
	}
	invalid := audience.BatchState{Profile: f.p[2]} // a nil state
	for _, bad := range []struct {
		where string
		batch []audience.BatchState
	}{
		{"first", slices.Insert(valid(), 0, invalid)},
		{"in the middle", slices.Insert(valid(), 2, invalid)},
		{"last", append(valid(), invalid)},
		{"alone", []audience.BatchState{invalid}},
	} {
		before := viewAudiences(t, e.ctx, s, pids)
		dueBefore := dueAll(t, e.ctx, s)
		tx, b := beginAudienceBatchTx(t, e, s)
		// A write staged before the batch, which must survive it.
		must(t, tx.Put(e.ctx, f.p[4], state(70, "b")), "Put")
		staged := viewAudiences(t, e.ctx, tx, pids)
		if err := b.PutBatch(e.ctx, bad.batch); !errors.Is(err, audience.ErrInvalid) {
			t.Errorf("PutBatch with a nil state %s in the batch = %v; want ErrInvalid", bad.where, err)
		}
		// PutBatch checks every state before it stages anything: the
		// transaction is as it was.
		if d := diff(staged, viewAudiences(t, e.ctx, tx, pids)); d != "" {
			t.Errorf("PutBatch with a nil state %s in the batch, refused, changed the transaction's states (-before +after):\n%s", bad.where, d)
		}
		want, wantDue := before, dueBefore
		if commitAfterRefused(t, e.ctx, tx) {
			want, wantDue = staged, []identity.ProfileID{f.p[4]}
		}
		if d := diff(want, viewAudiences(t, e.ctx, s, pids)); d != "" {
			t.Errorf("PutBatch with a nil state %s in the batch, refused, changed the store (-want +got):\n%s", bad.where, d)
		}
		if d := diff(wantDue, dueAll(t, e.ctx, s)); d != "" {
			t.Errorf("Due after PutBatch with a nil state %s in the batch, refused (-want +got):\n%s", bad.where, d)
		}
	}
}

func audiencePutBatchCopyAtBoundary(t *testing.T, e *env, s audience.Store) {
	needAudienceBatchTx(t, e, s)
	ps := newPIDs(4)
	pid, twin, other, elsewhere := ps[0], ps[1], ps[2], ps[3]
	shared := state(100, "a", "b") // one state, for two profiles
	tx, b := beginAudienceBatchTx(t, e, s)
	batch := []audience.BatchState{
		{Profile: pid, State: shared},
		{Profile: other, State: state(200, "c")},
		{Profile: twin, State: shared},
	}
	putBatch(t, e.ctx, b, batch)
	// What the caller passed in, changed after the call.
	for i := range batch {
		scribbleState(batch[i].State)
		batch[i].Profile = elsewhere
	}
	batch[0] = audience.BatchState{Profile: elsewhere, State: state(1, "c")}
	want := audienceView{
		States:  map[identity.ProfileID]*audience.State{pid: state(100, "a", "b"), twin: state(100, "a", "b"), other: state(200, "c"), elsewhere: nil},
		Members: map[string][]identity.ProfileID{"a": {pid, twin}, "b": {pid, twin}, "c": {other}},
	}
	if d := diff(want, viewAudiences(t, e.ctx, tx, ps)); d != "" {
		t.Errorf("changing what was passed to PutBatch changed the transaction's states (-want +got):\n%s", d)
	}
	commitTx(t, e.ctx, tx)
	if d := diff(want, viewAudiences(t, e.ctx, s, ps)); d != "" {
		t.Errorf("changing what was passed to PutBatch changed the store (-want +got):\n%s", d)
	}
	due := dueAll(t, e.ctx, s)
	slices.Sort(due) // pid and twin are due at the same time
	if d := diff([]identity.ProfileID{pid, twin, other}, due); d != "" {
		t.Errorf("Due after changing what was passed to PutBatch, sorted (-want +got):\n%s", d)
	}
}

func audiencePutBatchMany(t *testing.T, e *env, s audience.Store) {
	needAudienceBatchTx(t, e, s)
	ref := referenceAudiences(t, e)
	// 300 profiles with states, 300 without; the batch puts each about
	// twice, the later winning.
	known, fresh := newPIDs(300), newPIDs(300)
	pids := append(slices.Clone(known), fresh...)
	for _, st := range []audience.Store{s, ref} {
		inTx(t, e.ctx, st.Begin, func(tx audience.Tx) error {
			for i, pid := range known {
				if err := tx.Put(e.ctx, pid, manyState(5000+i)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	n := manyItems + 50
	batch := make([]audience.BatchState, n)
	for i := range batch {
		st := manyState(i)
		switch i % 7 {
		case 3: // out of order, an audience twice
			st.Audiences = []string{"d", "b", "d", "a"}
		case 5:
			st = &audience.State{}
		}
		batch[i] = audience.BatchState{Profile: pids[(i*7)%len(pids)], State: st}
	}
	// The same states one Put at a time, in order, in transactions of 50, on
	// the second store.
	for lo := 0; lo < n; lo += 50 {
		inTx(t, e.ctx, ref.Begin, func(tx audience.Tx) error {
			return putEach(e.ctx, tx, batch[lo:min(lo+50, n)])
		})
	}
	want := viewAudiencesOf(t, e.ctx, ref, pids, batchAudienceKeys)
	wantDue := dueAll(t, e.ctx, ref)

	tx, b := beginAudienceBatchTx(t, e, s)
	putBatch(t, e.ctx, b, batch)
	if d := diff(want, viewAudiencesOf(t, e.ctx, tx, pids, batchAudienceKeys)); d != "" {
		t.Errorf("the transaction after PutBatch of %d states differs from Put one at a time (-Put +PutBatch):\n%s", n, d)
	}
	commitTx(t, e.ctx, tx)
	if d := diff(want, viewAudiencesOf(t, e.ctx, s, pids, batchAudienceKeys)); d != "" {
		t.Errorf("the store after PutBatch of %d states differs from Put one at a time (-Put +PutBatch):\n%s", n, d)
	}
	if d := diff(wantDue, dueAll(t, e.ctx, s)); d != "" {
		t.Errorf("Due after PutBatch of %d states differs from Due after Put one at a time (-Put +PutBatch):\n%s", n, d)
	}
}

// stageAudienceBatch stages, with PutBatch, a state for a new profile n, one
// replacing p[0]'s and an empty one for p[1].
func stageAudienceBatch(t *testing.T, e *env, b audience.BatchTx, f *audienceFixture, n identity.ProfileID) {
	t.Helper()
	putBatch(t, e.ctx, b, []audience.BatchState{
		{Profile: n, State: state(70, "a", "c")},
		{Profile: f.p[0], State: state(5, "b")},
		{Profile: f.p[1], State: &audience.State{}},
	})
}

func audiencePutBatchUncommittedInvisible(t *testing.T, e *env, s audience.Store) {
	e.needIsolation(t)
	needAudienceBatchTx(t, e, s)
	f := seedAudiences(t, e, s)
	n := newPID()
	pids := append(slices.Clone(f.p), n)
	before := viewAudiences(t, e.ctx, s, pids)
	dueBefore := dueAll(t, e.ctx, s)
	tx, b := beginAudienceBatchTx(t, e, s)
	stageAudienceBatch(t, e, b, f, n)
	staged := viewAudiences(t, e.ctx, tx, pids)
	readers := map[string]audience.Reader{"the store": s}
	other, ok := secondTx(t, e, s.Begin)
	if ok {
		readers["another transaction"] = other
	}
	for name, r := range readers {
		if d := diff(before, viewAudiences(t, e.ctx, r, pids)); d != "" {
			t.Errorf("%s sees what PutBatch staged (-committed +seen):\n%s", name, d)
		}
	}
	if got := dueAll(t, e.ctx, s); diff(dueBefore, got) != "" {
		t.Errorf("Due lists a state PutBatch staged: %v; want %v", got, dueBefore)
	}
	if ok {
		must(t, other.Rollback(e.ctx), "Rollback")
	}
	commitTx(t, e.ctx, tx)
	if d := diff(staged, viewAudiences(t, e.ctx, s, pids)); d != "" {
		t.Errorf("the store after Commit (-staged +seen):\n%s", d)
	}
	if d := diff([]identity.ProfileID{f.p[0], n}, dueAll(t, e.ctx, s)); d != "" {
		t.Errorf("Due after Commit (-want +got):\n%s", d)
	}
}

func audiencePutBatchRollbackDiscards(t *testing.T, e *env, s audience.Store) {
	needAudienceBatchTx(t, e, s)
	f := seedAudiences(t, e, s)
	n := newPID()
	pids := append(slices.Clone(f.p), n)
	before := viewAudiences(t, e.ctx, s, pids)
	tx, b := beginAudienceBatchTx(t, e, s)
	stageAudienceBatch(t, e, b, f, n)
	must(t, tx.Rollback(e.ctx), "Rollback")
	if d := diff(before, viewAudiences(t, e.ctx, s, pids)); d != "" {
		t.Errorf("Rollback left what PutBatch staged (-before +after):\n%s", d)
	}
	if due := dueAll(t, e.ctx, s); len(due) != 0 {
		t.Errorf("Due after a rolled back PutBatch = %v; want none", due)
	}
	if err := tx.Rollback(e.ctx); err != nil {
		t.Errorf("a second Rollback = %v; want nil", err)
	}
}

func audiencePutBatchTxDone(t *testing.T, e *env, s audience.Store) {
	needAudienceBatchTx(t, e, s)
	for _, how := range []string{"Commit", "Rollback"} {
		f := seedAudiences(t, e, s)
		n := newPID()
		tx, b := beginAudienceBatchTx(t, e, s)
		putBatch(t, e.ctx, b, []audience.BatchState{{Profile: n, State: state(0, "a")}})
		if how == "Commit" {
			commitTx(t, e.ctx, tx)
		} else {
			must(t, tx.Rollback(e.ctx), "Rollback")
		}
		late := newPID()
		pids := append(slices.Clone(f.p), n, late)
		before := viewAudiences(t, e.ctx, s, pids)
		checkDone(t, e.ctx, how, tx, audience.ErrTxDone, []txMethod{
			{"PutBatch", func(ctx context.Context) error {
				return b.PutBatch(ctx, []audience.BatchState{{Profile: late, State: state(0, "c")}, {Profile: f.p[1], State: state(0)}})
			}},
			{"PutBatch (no states)", func(ctx context.Context) error { return b.PutBatch(ctx, nil) }},
			{"StateBatch", func(ctx context.Context) error {
				_, err := b.StateBatch(ctx, []identity.ProfileID{f.p[0], n})
				return err
			}},
			{"StateBatch (no profiles)", func(ctx context.Context) error {
				_, err := b.StateBatch(ctx, nil)
				return err
			}},
		})
		if d := diff(before, viewAudiences(t, e.ctx, s, pids)); d != "" {
			t.Errorf("PutBatch on a transaction ended by %s changed the store (-before +after):\n%s", how, d)
		}
	}
}

// Suppression list: suppression.HashBatchReader, on committed state.

// hashBatchOf returns l's SuppressedBatch, or skips the check.
func hashBatchOf(t *testing.T, l suppression.List) func(context.Context, []identity.Hash, []bool) ([]bool, error) {
	t.Helper()
	br, ok := l.(suppression.HashBatchReader)
	if !ok {
		t.Skip("the suppression list does not implement the optional SuppressedBatch")
	}
	return br.SuppressedBatch
}

func suppressionSuppressedBatch(t *testing.T, e *env, l suppression.List) {
	read := hashBatchOf(t, l)
	f := seedSuppressions(t, e, l) // h[0], h[1] suppressed
	unknown := hashOf("never-seen-" + nextTag())
	hs := []identity.Hash{f.h[1], f.h[2], unknown, f.h[0], f.h[3], f.h[1], unknown}
	want := []bool{true, false, false, true, false, true, false}
	got, err := read(e.ctx, hs, []bool{true})
	if err != nil || diff(append([]bool{true}, want...), got) != "" {
		t.Fatalf("SuppressedBatch = %v, %v; want %v after the prefix", got, err, want)
	}
	for i, h := range hs {
		if one, err := l.Suppressed(e.ctx, h); err != nil || one != want[i] {
			t.Errorf("Suppressed(hs[%d]) = %v, %v; SuppressedBatch said %v", i, one, err, want[i])
		}
	}
	got, err = read(e.ctx, nil, nil)
	if err != nil || len(got) != 0 {
		t.Errorf("SuppressedBatch of nothing = %v, %v", got, err)
	}
	// A write committed since is seen.
	inTx(t, e.ctx, l.Begin, func(tx suppression.Tx) error { return tx.Remove(e.ctx, f.h[0]) })
	if got, err := read(e.ctx, []identity.Hash{f.h[0], f.h[1]}, nil); err != nil || diff([]bool{false, true}, got) != "" {
		t.Errorf("after removing h[0]: %v, %v; want [false true]", got, err)
	}
}

// suppressionSuppressedBatchMany checks more hashes than one statement of a
// SQL adapter takes.
func suppressionSuppressedBatchMany(t *testing.T, e *env, l suppression.List) {
	read := hashBatchOf(t, l)
	tag := nextTag()
	var hs []identity.Hash
	var want []bool
	var add []identity.Hash
	for i := range 1500 {
		h := hashOf(fmt.Sprint("many-", i, tag))
		hs = append(hs, h)
		want = append(want, i%7 == 0)
		if i%7 == 0 {
			add = append(add, h)
		}
	}
	inTx(t, e.ctx, l.Begin, func(tx suppression.Tx) error { return tx.Add(e.ctx, add...) })
	got, err := read(e.ctx, hs, nil)
	if err != nil || diff(want, got) != "" {
		t.Fatalf("SuppressedBatch of %d hashes: %v; answers differ: %s", len(hs), err, diff(want, got))
	}
}
