package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/identity"
)

var audienceChecks = []check[audience.Store]{
	{"PutAndState", audiencePutAndState},
	{"NotFound", audienceNotFound},
	{"Members", audienceMembers},
	{"MembersFollowState", audienceMembersFollowState},
	{"PutIsIdempotent", audiencePutIsIdempotent},
	{"DeleteIsIdempotent", audienceDeleteIsIdempotent},
	{"Define", audienceDefine},
	{"DefineConflictBetweenTransactions", audienceDefineRace},
	{"Due", audienceDue},
	{"CopyAtBoundary", audienceCopyAtBoundary},
	{"Modify", audienceModify},
	{"TxSeesOwnWrites", audienceTxSeesOwnWrites},
	{"UncommittedInvisible", audienceUncommittedInvisible},
	{"RollbackDiscards", audienceRollbackDiscards},
	{"RollbackAfterCommitIsNoOp", audienceRollbackAfterCommit},
	{"TxDone", audienceTxDone},
	{"CancelledCommitIsAllOrNothing", audienceCancelledCommit},
	{"ConcurrentWriters", audienceConcurrentWriters},
	// The optional audience.BatchTx (batch.go).
	{"StateBatch", audienceStateBatch},
	{"StateBatchCopyAtBoundary", audienceStateBatchCopyAtBoundary},
	{"StateBatchMany", audienceStateBatchMany},
	{"PutBatchEqualsPuts", audiencePutBatchEqualsPuts},
	{"PutBatchInvalid", audiencePutBatchInvalid},
	{"PutBatchCopyAtBoundary", audiencePutBatchCopyAtBoundary},
	{"PutBatchMany", audiencePutBatchMany},
	{"PutBatchUncommittedInvisible", audiencePutBatchUncommittedInvisible},
	{"PutBatchRollbackDiscards", audiencePutBatchRollbackDiscards},
	{"PutBatchTxDone", audiencePutBatchTxDone},
}

// def returns a definition in the canonical form a Store is given
// (audience.Set.Definitions).
func def(key, query string) audience.Definition {
	c, err := audience.Definition{Key: key, Query: query}.Compile()
	if err != nil {
		panic(fmt.Sprintf("storetest: bad definition %s: %v", key, err))
	}
	return audience.Definition{Key: key, Query: c.String()}
}

// state returns a state with the audiences, a counter with times and one
// without, and NextChange at sec (zero when sec is 0).
func state(sec int, audiences ...string) *audience.State {
	st := &audience.State{
		Audiences: audiences,
		Counters: []audience.Counter{
			{Key: "event('Order Completed')", Count: 3, Times: []int64{at(1).UnixNano(), at(2).UnixNano(), at(3).UnixNano()}},
			{Key: "event('Viewed')", Count: 7},
		},
	}
	if sec != 0 {
		st.NextChange = at(sec)
	}
	return st
}

// audienceView is what a Reader shows: definitions, the state of some
// profiles (nil when not found) and the members of some audiences.
type audienceView struct {
	Defs    []audience.Definition
	States  map[identity.ProfileID]*audience.State
	Members map[string][]identity.ProfileID
}

var audienceKeys = []string{"a", "b", "c"}

func viewAudiences(t *testing.T, ctx context.Context, r audience.Reader, pids []identity.ProfileID) audienceView {
	t.Helper()
	return viewAudiencesOf(t, ctx, r, pids, audienceKeys)
}

// viewAudiencesOf is viewAudiences with the members of the audiences keys.
func viewAudiencesOf(t *testing.T, ctx context.Context, r audience.Reader, pids []identity.ProfileID, keys []string) audienceView {
	t.Helper()
	defs, err := r.Definitions(ctx)
	must(t, err, "Definitions")
	v := audienceView{Defs: defs, States: map[identity.ProfileID]*audience.State{}, Members: map[string][]identity.ProfileID{}}
	for _, pid := range pids {
		st, err := r.State(ctx, pid)
		switch {
		case errors.Is(err, audience.ErrNotFound):
			v.States[pid] = nil
		case err != nil:
			t.Fatalf("State(%s): %v", pid, err)
		default:
			v.States[pid] = st
		}
	}
	for _, key := range keys {
		m, err := r.Members(ctx, key, "", 0)
		must(t, err, "Members")
		v.Members[key] = m
	}
	return v
}

// audienceFixture is six profiles with states: p[0] in a, p[1] in a and b,
// p[2] in b, p[3] in a, p[4] in none, p[5] in a and c; and definitions a and b.
type audienceFixture struct {
	p    []identity.ProfileID
	defs []audience.Definition
}

func seedAudiences(t *testing.T, e *env, s audience.Store) *audienceFixture {
	t.Helper()
	f := &audienceFixture{p: newPIDs(6), defs: []audience.Definition{def("a", `trait('plan') = 'pro'`), def("b", `trait('x') exists`)}}
	f.seed(t, e, s)
	return f
}

// seed writes the fixture to s: the batch checks write one fixture to two
// stores.
func (f *audienceFixture) seed(t *testing.T, e *env, s audience.Store) {
	t.Helper()
	memberships := [][]string{{"a"}, {"a", "b"}, {"b"}, {"a"}, nil, {"a", "c"}}
	inTx(t, e.ctx, s.Begin, func(tx audience.Tx) error {
		for _, d := range f.defs {
			if err := tx.Define(e.ctx, d); err != nil {
				return err
			}
		}
		for i, pid := range f.p {
			if err := tx.Put(e.ctx, pid, state(0, memberships[i]...)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (f *audienceFixture) view(t *testing.T, ctx context.Context, r audience.Reader) audienceView {
	t.Helper()
	return viewAudiences(t, ctx, r, f.p)
}

func audiencePutAndState(t *testing.T, e *env, s audience.Store) {
	pid := newPID()
	want := state(100, "a", "b")
	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	must(t, tx.Put(e.ctx, pid, state(100, "a", "b")), "Put")
	st, err := tx.State(e.ctx, pid)
	must(t, err, "tx.State")
	if d := diff(want, st); d != "" {
		t.Errorf("State in the transaction that put it (-want +got):\n%s", d)
	}
	commitTx(t, e.ctx, tx)
	st, err = s.State(e.ctx, pid)
	must(t, err, "State")
	if d := diff(want, st); d != "" {
		t.Errorf("State after Commit (-want +got):\n%s", d)
	}
	// An empty state is a state.
	empty := newPID()
	inTx(t, e.ctx, s.Begin, func(tx audience.Tx) error { return tx.Put(e.ctx, empty, &audience.State{}) })
	st, err = s.State(e.ctx, empty)
	must(t, err, "State of an empty state")
	if d := diff(&audience.State{}, st); d != "" {
		t.Errorf("State of an empty state (-want +got):\n%s", d)
	}
}

func audienceNotFound(t *testing.T, e *env, s audience.Store) {
	seedAudiences(t, e, s)
	missing := newPID()
	for _, name := range []string{"store", "tx"} {
		var r audience.Reader = s
		if name == "tx" {
			tx, err := s.Begin(e.ctx)
			must(t, err, "Begin")
			defer tx.Rollback(e.ctx)
			r = tx
		}
		if st, err := r.State(e.ctx, missing); !errors.Is(err, audience.ErrNotFound) {
			t.Errorf("%s: State of an unknown profile = %+v, %v; want ErrNotFound", name, st, err)
		}
		if m, err := r.Members(e.ctx, "undefined", "", 0); err != nil || len(m) != 0 {
			t.Errorf("%s: Members of an audience nobody is in = %v, %v; want none", name, m, err)
		}
	}
}

func audienceMembers(t *testing.T, e *env, s audience.Store) {
	f := seedAudiences(t, e, s)
	p := f.p
	for _, name := range []string{"store", "tx"} {
		var r audience.Reader = s
		if name == "tx" {
			tx, err := s.Begin(e.ctx)
			must(t, err, "Begin")
			defer tx.Rollback(e.ctx)
			r = tx
		}
		tests := []struct {
			key   string
			after identity.ProfileID
			limit int
			want  []identity.ProfileID
		}{
			{"a", "", 0, []identity.ProfileID{p[0], p[1], p[3], p[5]}},
			{"b", "", 0, []identity.ProfileID{p[1], p[2]}},
			{"c", "", 0, []identity.ProfileID{p[5]}},
			{"a", "", 2, []identity.ProfileID{p[0], p[1]}},
			{"a", p[1], 2, []identity.ProfileID{p[3], p[5]}},
			{"a", p[2], 0, []identity.ProfileID{p[3], p[5]}}, // after an id that is not a member
			{"a", p[5], 0, nil},
			{"a", p[0], 1, []identity.ProfileID{p[1]}},
			{"a", "", 100, []identity.ProfileID{p[0], p[1], p[3], p[5]}},
		}
		for _, tc := range tests {
			got, err := r.Members(e.ctx, tc.key, tc.after, tc.limit)
			must(t, err, "Members")
			if d := diff(tc.want, got); d != "" {
				t.Errorf("%s: Members(%q, after %q, limit %d) (-want +got):\n%s", name, tc.key, tc.after, tc.limit, d)
			}
		}
		// A walk one page at a time.
		var got []identity.ProfileID
		var after identity.ProfileID
		for i := 0; i < 10; i++ {
			page, err := r.Members(e.ctx, "a", after, 1)
			must(t, err, "Members")
			if len(page) == 0 {
				break
			}
			got = append(got, page...)
			after = page[len(page)-1]
		}
		if d := diff([]identity.ProfileID{p[0], p[1], p[3], p[5]}, got); d != "" {
			t.Errorf("%s: walking the members of a one at a time (-want +got):\n%s", name, d)
		}
	}
}

func audienceMembersFollowState(t *testing.T, e *env, s audience.Store) {
	f := seedAudiences(t, e, s)
	p := f.p
	inTx(t, e.ctx, s.Begin, func(tx audience.Tx) error {
		if err := tx.Put(e.ctx, p[0], state(0, "b")); err != nil { // leaves a, enters b
			return err
		}
		if err := tx.Delete(e.ctx, p[1]); err != nil { // leaves a and b
			return err
		}
		if err := tx.Put(e.ctx, p[5], &audience.State{}); err != nil { // leaves a and c
			return err
		}
		return tx.Put(e.ctx, p[4], state(0, "c")) // enters c
	})
	got := f.view(t, e.ctx, s)
	want := map[string][]identity.ProfileID{"a": {p[3]}, "b": {p[0], p[2]}, "c": {p[4]}}
	if d := diff(want, got.Members); d != "" {
		t.Errorf("members after states changed (-want +got):\n%s", d)
	}
	if got.States[p[1]] != nil {
		t.Errorf("State of a deleted profile = %+v; want ErrNotFound", got.States[p[1]])
	}
}

func audiencePutIsIdempotent(t *testing.T, e *env, s audience.Store) {
	f := seedAudiences(t, e, s)
	want := f.view(t, e.ctx, s)
	want.States[f.p[4]] = state(40, "b")
	want.Members["b"] = []identity.ProfileID{f.p[1], f.p[2], f.p[4]}
	inTx(t, e.ctx, s.Begin, func(tx audience.Tx) error { return tx.Put(e.ctx, f.p[4], state(40, "b")) })
	// Replayed, in a new transaction and twice in one.
	inTx(t, e.ctx, s.Begin, func(tx audience.Tx) error { return tx.Put(e.ctx, f.p[4], state(40, "b")) })
	inTx(t, e.ctx, s.Begin, func(tx audience.Tx) error {
		for i := 0; i < 2; i++ {
			if err := tx.Put(e.ctx, f.p[4], state(40, "b")); err != nil {
				return err
			}
		}
		return nil
	})
	if d := diff(want, f.view(t, e.ctx, s)); d != "" {
		t.Errorf("putting a state again (-want +got):\n%s", d)
	}
}

func audienceDeleteIsIdempotent(t *testing.T, e *env, s audience.Store) {
	f := seedAudiences(t, e, s)
	inTx(t, e.ctx, s.Begin, func(tx audience.Tx) error { return tx.Delete(e.ctx, f.p[1]) })
	want := f.view(t, e.ctx, s)
	inTx(t, e.ctx, s.Begin, func(tx audience.Tx) error {
		for _, pid := range []identity.ProfileID{f.p[1], newPID(), f.p[1]} {
			if err := tx.Delete(e.ctx, pid); err != nil {
				return fmt.Errorf("Delete(%s): %w", pid, err)
			}
		}
		return nil
	})
	if d := diff(want, f.view(t, e.ctx, s)); d != "" {
		t.Errorf("deleting again changed the store (-before +after):\n%s", d)
	}
}

func audienceDefine(t *testing.T, e *env, s audience.Store) {
	a, z, b := def("a", `trait('plan') = 'pro'`), def("z", `trait('z') exists`), def("b", `audience('a') and trait('country') = 'FR'`)
	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	for _, d := range []audience.Definition{a, z} {
		must(t, tx.Define(e.ctx, d), "Define")
	}
	if err := tx.Define(e.ctx, a); err != nil {
		t.Errorf("Define of the same definition again in the transaction = %v; want nil", err)
	}
	got, err := tx.Definitions(e.ctx)
	must(t, err, "tx.Definitions")
	if d := diff([]audience.Definition{a, z}, got); d != "" {
		t.Errorf("Definitions in the transaction (-want +got):\n%s", d)
	}
	if err := tx.Define(e.ctx, def("a", `trait('plan') = 'free'`)); !errors.Is(err, audience.ErrConflict) {
		t.Errorf("Define of another definition with a key defined in the transaction = %v; want ErrConflict", err)
	}
	if !commitAfterRefused(t, e.ctx, tx) {
		inTx(t, e.ctx, s.Begin, func(tx audience.Tx) error {
			if err := tx.Define(e.ctx, a); err != nil {
				return err
			}
			return tx.Define(e.ctx, z)
		})
	}
	got, err = s.Definitions(e.ctx)
	must(t, err, "Definitions")
	if d := diff([]audience.Definition{a, z}, got); d != "" {
		t.Errorf("Definitions after Commit (-want +got):\n%s", d)
	}

	tx, err = s.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	if err := tx.Define(e.ctx, z); err != nil {
		t.Errorf("Define of a committed definition again = %v; want nil", err)
	}
	must(t, tx.Define(e.ctx, b), "Define")
	if err := tx.Define(e.ctx, def("z", `trait('z') = 1`)); !errors.Is(err, audience.ErrConflict) {
		t.Errorf("Define of another definition with a committed key = %v; want ErrConflict", err)
	}
	want := []audience.Definition{a, z}
	if commitAfterRefused(t, e.ctx, tx) {
		want = append(want, b)
	}
	got, err = s.Definitions(e.ctx)
	must(t, err, "Definitions")
	if d := diff(want, got); d != "" {
		t.Errorf("Definitions, in the order defined (-want +got):\n%s", d)
	}
}

func audienceDefineRace(t *testing.T, e *env, s audience.Store) {
	e.needConcurrentTx(t)
	a1, a2 := def("a", `trait('plan') = 'pro'`), def("a", `trait('plan') = 'free'`)
	// Two transactions define the key; the first commits before the second
	// defines it. The second fails, at Define or at Commit.
	first, second := beginTwo(t, e, s.Begin)
	must(t, first.Define(e.ctx, a1), "Define")
	commitTx(t, e.ctx, first)
	err := second.Define(e.ctx, a2)
	if err == nil {
		err = second.Commit(e.ctx)
	}
	if !errors.Is(err, audience.ErrConflict) {
		t.Errorf("the second of two transactions defining key a differently: %v; want ErrConflict at Define or Commit", err)
	}
	// The same definition twice: one of it.
	b := def("b", `trait('x') exists`)
	third, fourth := beginTwo(t, e, s.Begin)
	must(t, third.Define(e.ctx, b), "Define")
	commitTx(t, e.ctx, third)
	if err := fourth.Define(e.ctx, b); err != nil {
		t.Errorf("Define of a definition another transaction committed meanwhile = %v; want nil", err)
	}
	if err := fourth.Commit(e.ctx); err != nil {
		t.Errorf("Commit of the same definition another transaction committed meanwhile = %v; want nil", err)
	}
	got, err := s.Definitions(e.ctx)
	must(t, err, "Definitions")
	if d := diff([]audience.Definition{a1, b}, got); d != "" {
		t.Errorf("Definitions after the races (-want +got):\n%s", d)
	}
}

func audienceDue(t *testing.T, e *env, s audience.Store) {
	p := newPIDs(6)
	secs := []int{10, 5, 0, 20, 10, 30}
	inTx(t, e.ctx, s.Begin, func(tx audience.Tx) error {
		for i, pid := range p {
			if err := tx.Put(e.ctx, pid, state(secs[i], "a")); err != nil {
				return err
			}
		}
		return nil
	})
	due := func(now time.Time, limit int) []identity.ProfileID {
		t.Helper()
		ids, err := s.Due(e.ctx, now, limit)
		must(t, err, "Due")
		return ids
	}
	// Earliest first; p[0] and p[4] are due at the same time, in either order:
	// with ties, the second and third are sorted before comparing.
	checkDue := func(what string, now time.Time, limit int, ties bool, want []identity.ProfileID) {
		t.Helper()
		got := due(now, limit)
		if ties && len(got) >= 3 {
			slices.Sort(got[1:3])
		}
		if d := diff(want, got); d != "" {
			t.Errorf("Due(%s, limit %d) %s (-want +got):\n%s", now.Sub(t0), limit, what, d)
		}
	}
	checkDue("before anything is due", at(4), 10, false, nil)
	checkDue("at the earliest", at(5), 10, false, []identity.ProfileID{p[1]})
	checkDue("with a tie", at(10), 10, true, []identity.ProfileID{p[1], p[0], p[4]})
	checkDue("asked again: Due does not consume", at(10), 10, true, []identity.ProfileID{p[1], p[0], p[4]})
	checkDue("everything", at(1000), 10, true, []identity.ProfileID{p[1], p[0], p[4], p[3], p[5]})
	if got := due(at(1000), 2); len(got) != 2 || got[0] != p[1] || (got[1] != p[0] && got[1] != p[4]) {
		t.Errorf("Due(everything, limit 2) = %v; want the two earliest: %s, then %s or %s", got, p[1], p[0], p[4])
	}
	// New states move profiles: later, never, or gone.
	inTx(t, e.ctx, s.Begin, func(tx audience.Tx) error {
		if err := tx.Put(e.ctx, p[1], state(50, "a")); err != nil {
			return err
		}
		if err := tx.Put(e.ctx, p[0], state(0, "a")); err != nil {
			return err
		}
		if err := tx.Delete(e.ctx, p[4]); err != nil {
			return err
		}
		return tx.Put(e.ctx, p[2], state(1, "a"))
	})
	checkDue("after states changed", at(30), 10, false, []identity.ProfileID{p[2], p[3], p[5]})
	checkDue("after states changed, later", at(50), 10, false, []identity.ProfileID{p[2], p[3], p[5], p[1]})
}

// scribbleState changes every part of st in place and writes past the length
// of its slices, within their capacity: what a caller may do with a state it
// was given or passed in.
func scribbleState(st *audience.State) {
	if len(st.Audiences) > 0 {
		st.Audiences[0] = "scribbled"
	}
	st.Audiences = append(st.Audiences[:cap(st.Audiences)], "zz-appended")
	for i := range st.Counters {
		st.Counters[i].Count = -1
		if len(st.Counters[i].Times) > 0 {
			st.Counters[i].Times[0] = -1
		}
		st.Counters[i].Times = append(st.Counters[i].Times[:cap(st.Counters[i].Times)], -2)
	}
	st.Counters = append(st.Counters[:cap(st.Counters)], audience.Counter{Key: "scribbled"})
	st.NextChange = at(999)
}

func audienceCopyAtBoundary(t *testing.T, e *env, s audience.Store) {
	pid := newPID()
	want := state(100, "a", "b")
	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	in := state(100, "a", "b")
	must(t, tx.Put(e.ctx, pid, in), "Put")
	scribbleState(in)
	st, err := tx.State(e.ctx, pid)
	must(t, err, "tx.State")
	scribbleState(st)
	st, err = tx.State(e.ctx, pid)
	must(t, err, "tx.State")
	if d := diff(want, st); d != "" {
		t.Errorf("changing what was passed to or returned by the transaction changed its staged state (-want +got):\n%s", d)
	}
	d0 := def("a", `trait('plan') = 'pro'`)
	must(t, tx.Define(e.ctx, d0), "Define")
	defs, err := tx.Definitions(e.ctx)
	must(t, err, "tx.Definitions")
	defs[0].Key, defs[0].Query = "scribbled", "scribbled"
	commitTx(t, e.ctx, tx)
	st, err = s.State(e.ctx, pid)
	must(t, err, "State")
	scribbleState(st)
	members, err := s.Members(e.ctx, "a", "", 0)
	must(t, err, "Members")
	members[0] = "use_scribbled"
	defs, err = s.Definitions(e.ctx)
	must(t, err, "Definitions")
	defs[0].Key = "scribbled"
	got := viewAudiences(t, e.ctx, s, []identity.ProfileID{pid})
	wantView := audienceView{
		Defs:    []audience.Definition{d0},
		States:  map[identity.ProfileID]*audience.State{pid: want},
		Members: map[string][]identity.ProfileID{"a": {pid}, "b": {pid}, "c": nil},
	}
	if d := diff(wantView, got); d != "" {
		t.Errorf("changing what was passed in or returned changed the store (-want +got):\n%s", d)
	}
}

func audienceModify(t *testing.T, e *env, s audience.Store) {
	f := seedAudiences(t, e, s)
	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	m, ok := tx.(audience.Modifier)
	if !ok {
		t.Skip("the transaction does not implement the optional audience.Modifier")
	}
	fresh := newPID()
	// An existing state, changed.
	must(t, m.Modify(e.ctx, f.p[4], func(st *audience.State) error {
		if d := diff(state(0), st); d != "" {
			t.Errorf("Modify gave the state (-want +got):\n%s", d)
		}
		st.Audiences = append(st.Audiences, "b")
		st.NextChange = at(60)
		return nil
	}), "Modify")
	// No state yet: an empty one.
	must(t, m.Modify(e.ctx, fresh, func(st *audience.State) error {
		if d := diff(&audience.State{}, st); d != "" {
			t.Errorf("Modify of a profile without a state gave (-want an empty state +got):\n%s", d)
		}
		st.Audiences = []string{"c"}
		return nil
	}), "Modify")
	// An error stages nothing.
	boom := errors.New("boom")
	if err := m.Modify(e.ctx, f.p[0], func(st *audience.State) error {
		st.Audiences = []string{"c"}
		return boom
	}); !errors.Is(err, boom) {
		t.Errorf("Modify whose function failed = %v; want its error", err)
	}
	commitTx(t, e.ctx, tx)
	got := viewAudiences(t, e.ctx, s, append(slices.Clone(f.p), fresh))
	wantStates := map[identity.ProfileID]*audience.State{f.p[4]: state(60, "b"), fresh: {Audiences: []string{"c"}}, f.p[0]: state(0, "a")}
	for pid, want := range wantStates {
		if d := diff(want, got.States[pid]); d != "" {
			t.Errorf("State(%s) after Modify (-want +got):\n%s", pid, d)
		}
	}
	if d := diff([]identity.ProfileID{f.p[1], f.p[2], f.p[4]}, got.Members["b"]); d != "" {
		t.Errorf("members of b after Modify (-want +got):\n%s", d)
	}
}

// stageAudienceWrites stages a write of every kind.
func stageAudienceWrites(t *testing.T, e *env, tx audience.Tx, f *audienceFixture, n identity.ProfileID) {
	t.Helper()
	must(t, tx.Put(e.ctx, n, state(70, "a", "c")), "Put")
	must(t, tx.Put(e.ctx, f.p[0], state(0, "b")), "Put")
	must(t, tx.Delete(e.ctx, f.p[1]), "Delete")
	must(t, tx.Define(e.ctx, def("c", `trait('c') exists`)), "Define")
}

func audienceTxSeesOwnWrites(t *testing.T, e *env, s audience.Store) {
	f := seedAudiences(t, e, s)
	n := newPID()
	pids := append(slices.Clone(f.p), n)
	want := viewAudiences(t, e.ctx, s, pids)
	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	stageAudienceWrites(t, e, tx, f, n)
	want.Defs = append(want.Defs, def("c", `trait('c') exists`))
	want.States[n], want.States[f.p[0]], want.States[f.p[1]] = state(70, "a", "c"), state(0, "b"), nil
	p := f.p
	want.Members = map[string][]identity.ProfileID{"a": {p[3], p[5], n}, "b": {p[0], p[2]}, "c": {p[5], n}}
	if d := diff(want, viewAudiences(t, e.ctx, tx, pids)); d != "" {
		t.Errorf("what the transaction reads of its own writes (-want +got):\n%s", d)
	}
	// Paging members in the transaction mixes staged and committed ones.
	page, err := tx.Members(e.ctx, "a", p[3], 1)
	must(t, err, "tx.Members")
	if d := diff([]identity.ProfileID{p[5]}, page); d != "" {
		t.Errorf("tx.Members(a, after p[3], 1) (-want +got):\n%s", d)
	}
	commitTx(t, e.ctx, tx)
	if d := diff(want, viewAudiences(t, e.ctx, s, pids)); d != "" {
		t.Errorf("the store after Commit (-want +got):\n%s", d)
	}
}

func audienceUncommittedInvisible(t *testing.T, e *env, s audience.Store) {
	e.needIsolation(t)
	f := seedAudiences(t, e, s)
	n := newPID()
	pids := append(slices.Clone(f.p), n)
	before := viewAudiences(t, e.ctx, s, pids)
	dueBefore, err := s.Due(e.ctx, at(1000), 100)
	must(t, err, "Due")
	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	stageAudienceWrites(t, e, tx, f, n)
	staged := viewAudiences(t, e.ctx, tx, pids)
	readers := map[string]audience.Reader{"the store": s}
	other, ok := secondTx(t, e, s.Begin)
	if ok {
		readers["another transaction"] = other
	}
	for name, r := range readers {
		if d := diff(before, viewAudiences(t, e.ctx, r, pids)); d != "" {
			t.Errorf("%s sees uncommitted writes (-committed +seen):\n%s", name, d)
		}
	}
	if got, err := s.Due(e.ctx, at(1000), 100); err != nil || diff(dueBefore, got) != "" {
		t.Errorf("Due lists an uncommitted state: %v, %v; want %v", got, err, dueBefore)
	}
	if ok {
		must(t, other.Rollback(e.ctx), "Rollback")
	}
	commitTx(t, e.ctx, tx)
	later, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	defer later.Rollback(e.ctx)
	for name, r := range map[string]audience.Reader{"the store": s, "a new transaction": later} {
		if d := diff(staged, viewAudiences(t, e.ctx, r, pids)); d != "" {
			t.Errorf("%s after Commit (-staged +seen):\n%s", name, d)
		}
	}
	if got, err := s.Due(e.ctx, at(1000), 100); err != nil || diff([]identity.ProfileID{n}, got) != "" {
		t.Errorf("Due after Commit = %v, %v; want the committed state due at 70", got, err)
	}
}

func audienceRollbackDiscards(t *testing.T, e *env, s audience.Store) {
	audienceStaging(t, e, s).checkRollbackDiscards(t, e)
	if due, err := s.Due(e.ctx, at(1000), 100); err != nil || len(due) != 0 {
		t.Errorf("Due after a rolled back Put = %v, %v; want none", due, err)
	}
}

// audienceStaging seeds the fixture for the shared transaction checks.
func audienceStaging(t *testing.T, e *env, s audience.Store) staging[audience.Reader, audience.Tx, audienceView] {
	f := seedAudiences(t, e, s)
	n := newPID()
	pids := append(slices.Clone(f.p), n)
	return staging[audience.Reader, audience.Tx, audienceView]{
		store: s, begin: s.Begin, errDone: audience.ErrTxDone,
		stage: func(tx audience.Tx) { stageAudienceWrites(t, e, tx, f, n) },
		view:  func(r audience.Reader) audienceView { return viewAudiences(t, e.ctx, r, pids) },
		calls: func(tx audience.Tx) []txMethod {
			return []txMethod{
				{"State", func(ctx context.Context) error { _, err := tx.State(ctx, f.p[0]); return err }},
				{"Put", func(ctx context.Context) error { return tx.Put(ctx, newPID(), state(0)) }},
			}
		},
	}
}

func audienceRollbackAfterCommit(t *testing.T, e *env, s audience.Store) {
	f := seedAudiences(t, e, s)
	n := newPID()
	pids := append(slices.Clone(f.p), n)
	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	stageAudienceWrites(t, e, tx, f, n)
	commitTx(t, e.ctx, tx)
	after := viewAudiences(t, e.ctx, s, pids)
	if err := tx.Rollback(e.ctx); err != nil {
		t.Errorf("Rollback after Commit = %v; want nil", err)
	}
	if d := diff(after, viewAudiences(t, e.ctx, s, pids)); d != "" {
		t.Errorf("Rollback after Commit undid the commit (-committed +after):\n%s", d)
	}
}

func audienceTxDone(t *testing.T, e *env, s audience.Store) {
	for _, how := range []string{"Commit", "Rollback"} {
		f := seedAudiences(t, e, s)
		n := newPID()
		tx, err := s.Begin(e.ctx)
		must(t, err, "Begin")
		must(t, tx.Put(e.ctx, n, state(0, "a")), "Put")
		if how == "Commit" {
			commitTx(t, e.ctx, tx)
		} else {
			must(t, tx.Rollback(e.ctx), "Rollback")
		}
		late := newPID()
		pids := append(slices.Clone(f.p), n, late)
		before := viewAudiences(t, e.ctx, s, pids)
		checkDone(t, e.ctx, how, tx, audience.ErrTxDone, []txMethod{
			{"Definitions", func(ctx context.Context) error { _, err := tx.Definitions(ctx); return err }},
			{"State", func(ctx context.Context) error { _, err := tx.State(ctx, f.p[0]); return err }},
			{"Members", func(ctx context.Context) error { _, err := tx.Members(ctx, "a", "", 0); return err }},
			{"Due", func(ctx context.Context) error { _, err := tx.Due(ctx, at(1000), 10); return err }},
			{"Define", func(ctx context.Context) error { return tx.Define(ctx, def("late", `trait('late') exists`)) }},
			{"Put", func(ctx context.Context) error { return tx.Put(ctx, late, state(0, "c")) }},
			{"Delete", func(ctx context.Context) error { return tx.Delete(ctx, f.p[1]) }},
		})
		if d := diff(before, viewAudiences(t, e.ctx, s, pids)); d != "" {
			t.Errorf("calls on a transaction ended by %s changed the store (-before +after):\n%s", how, d)
		}
	}
}

func audienceCancelledCommit(t *testing.T, e *env, s audience.Store) {
	audienceStaging(t, e, s).checkCancelledCommit(t, e)
}

func audienceConcurrentWriters(t *testing.T, e *env, s audience.Store) {
	pids := newPIDs(concurrentMax)
	errs := parallel(writers, func(w int) error {
		for i := 0; i < txsPerWriter; i++ {
			n := w*txsPerWriter + i
			// Readers run alongside the writers.
			if _, err := s.Members(e.ctx, "a", "", 0); err != nil {
				return err
			}
			if _, err := s.Due(e.ctx, at(n), 3); err != nil {
				return err
			}
			tx, err := s.Begin(e.ctx)
			if err != nil {
				return err
			}
			err = tx.Put(e.ctx, pids[n], state(n+1, audienceKeys[n%len(audienceKeys)]))
			if err == nil {
				err = tx.Commit(e.ctx)
			}
			if err != nil {
				_ = tx.Rollback(e.ctx)
				return errf("profile %d: %w", n, err)
			}
		}
		return nil
	})
	reportAll(t, errs)
	got := viewAudiences(t, e.ctx, s, pids)
	want := map[string][]identity.ProfileID{}
	for n, pid := range pids {
		key := audienceKeys[n%len(audienceKeys)]
		want[key] = append(want[key], pid)
		if d := diff(state(n+1, key), got.States[pid]); d != "" {
			t.Errorf("State of profile %d after the concurrent writers (-want +got):\n%s", n, d)
		}
	}
	if d := diff(want, got.Members); d != "" {
		t.Errorf("members after the concurrent writers (-want +got):\n%s", d)
	}
	due, err := s.Due(e.ctx, at(concurrentMax), 2*concurrentMax)
	must(t, err, "Due")
	if d := diff(pids, due); d != "" {
		t.Errorf("Due after the concurrent writers, earliest first (-want +got):\n%s", d)
	}
}
