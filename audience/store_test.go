package audience

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gdprkit/privacy/identity"
)

var bg = context.Background()

// commit runs fn in a transaction and commits it.
func commit(t testing.TB, s Store, fn func(tx Tx)) {
	t.Helper()
	tx, err := s.Begin(bg)
	if err != nil {
		t.Fatal(err)
	}
	fn(tx)
	if err := tx.Commit(bg); err != nil {
		t.Fatal(err)
	}
}

func mustNil(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func members(t testing.TB, r Reader, key string, after identity.ProfileID, limit int) []identity.ProfileID {
	t.Helper()
	ids, err := r.Members(bg, key, after, limit)
	mustNil(t, err)
	return ids
}

func due(t testing.TB, r Reader, now time.Time, limit int) []identity.ProfileID {
	t.Helper()
	ids, err := r.Due(bg, now, limit)
	mustNil(t, err)
	return ids
}

func pids(ids ...string) []identity.ProfileID {
	out := make([]identity.ProfileID, len(ids))
	for i, id := range ids {
		out[i] = identity.ProfileID("use_" + id)
	}
	return out
}

func pid(id string) identity.ProfileID { return pids(id)[0] }

var equateEmpty = cmpopts.EquateEmpty()

func TestTxIsolation(t *testing.T) {
	s := NewMemStore()
	commit(t, s, func(tx Tx) {
		mustNil(t, tx.Put(bg, pid("old"), &State{Audiences: []string{"a"}}))
		mustNil(t, tx.Define(bg, Definition{Key: "a", Query: `trait('x') = 1`}))
	})
	tx, err := s.Begin(bg)
	mustNil(t, err)
	other, err := s.Begin(bg)
	mustNil(t, err)
	mustNil(t, tx.Put(bg, pid("new"), &State{Audiences: []string{"a", "b"}}))
	mustNil(t, tx.Delete(bg, pid("old")))
	mustNil(t, tx.Define(bg, Definition{Key: "b", Query: `trait('x') = 2`}))

	tests := []struct {
		name   string
		r      Reader
		defs   []string
		a, b   []identity.ProfileID
		hasNew bool
		hasOld bool
	}{
		{"the writing tx sees its own writes", tx, []string{"a", "b"}, pids("new"), pids("new"), true, false},
		{"the store does not", s, []string{"a"}, pids("old"), nil, false, true},
		{"another tx does not", other, []string{"a"}, pids("old"), nil, false, true},
	}
	check := func(t *testing.T, r Reader, defs []string, a, b []identity.ProfileID, hasNew, hasOld bool) {
		t.Helper()
		ds, err := r.Definitions(bg)
		mustNil(t, err)
		var keys []string
		for _, d := range ds {
			keys = append(keys, d.Key)
		}
		if diff := cmp.Diff(defs, keys); diff != "" {
			t.Errorf("definitions (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(a, members(t, r, "a", "", 0), equateEmpty); diff != "" {
			t.Errorf("members of a (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(b, members(t, r, "b", "", 0), equateEmpty); diff != "" {
			t.Errorf("members of b (-want +got):\n%s", diff)
		}
		for id, want := range map[identity.ProfileID]bool{pid("new"): hasNew, pid("old"): hasOld} {
			_, err := r.State(bg, id)
			if want && err != nil {
				t.Errorf("State(%s): %v", id, err)
			}
			if !want && !errors.Is(err, ErrNotFound) {
				t.Errorf("State(%s) = %v, want ErrNotFound", id, err)
			}
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { check(t, tc.r, tc.defs, tc.a, tc.b, tc.hasNew, tc.hasOld) })
	}
	mustNil(t, tx.Commit(bg))
	t.Run("after commit the store sees everything", func(t *testing.T) {
		check(t, s, []string{"a", "b"}, pids("new"), pids("new"), true, false)
	})
	t.Run("and so does a tx begun before", func(t *testing.T) {
		check(t, other, []string{"a", "b"}, pids("new"), pids("new"), true, false)
	})
}

// beginStaged begins a transaction on s and stages in it a profile in audience
// a and the definition of a: writes that tests of transactions which end
// without committing then look for with mustShowNoneStaged.
func beginStaged(t *testing.T, s Store) Tx {
	t.Helper()
	tx, err := s.Begin(bg)
	mustNil(t, err)
	mustNil(t, tx.Put(bg, pid("staged"), &State{Audiences: []string{"a"}, NextChange: t0}))
	mustNil(t, tx.Define(bg, Definition{Key: "a", Query: `trait('x') = 1`}))
	return tx
}

// mustShowNoneStaged checks that s shows none of the writes beginStaged
// stages; when says after what, in messages.
func mustShowNoneStaged(t *testing.T, s Store, when string) {
	t.Helper()
	if _, err := s.State(bg, pid("staged")); !errors.Is(err, ErrNotFound) {
		t.Errorf("State of the staged profile %s: %v, want ErrNotFound", when, err)
	}
	if ds, _ := s.Definitions(bg); len(ds) != 0 {
		t.Errorf("definitions %s: %v, want none", when, ds)
	}
	if got := members(t, s, "a", "", 0); len(got) != 0 {
		t.Errorf("members %s: %v, want none", when, got)
	}
	if got := due(t, s, t0, 0); len(got) != 0 {
		t.Errorf("due %s: %v, want none", when, got)
	}
}

func TestTxRollback(t *testing.T) {
	s := NewMemStore()
	tx := beginStaged(t, s)
	if err := tx.Rollback(bg); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	if err := tx.Rollback(bg); err != nil {
		t.Errorf("second Rollback: %v, want nil", err)
	}
	if err := tx.Commit(bg); !errors.Is(err, ErrTxDone) {
		t.Errorf("Commit after Rollback: %v, want ErrTxDone", err)
	}
	mustShowNoneStaged(t, s, "after Rollback")
}

// txMethods calls every Tx method but Rollback, returning its error.
var txMethods = []struct {
	name string
	call func(ctx context.Context, tx Tx) error
}{
	{"Definitions", func(ctx context.Context, tx Tx) error { _, err := tx.Definitions(ctx); return err }},
	{"State", func(ctx context.Context, tx Tx) error { _, err := tx.State(ctx, pid("p")); return err }},
	{"Members", func(ctx context.Context, tx Tx) error { _, err := tx.Members(ctx, "a", "", 0); return err }},
	{"Due", func(ctx context.Context, tx Tx) error { _, err := tx.Due(ctx, t0, 0); return err }},
	{"Define", func(ctx context.Context, tx Tx) error {
		return tx.Define(ctx, Definition{Key: "z", Query: `trait('z') exists`})
	}},
	{"Put", func(ctx context.Context, tx Tx) error { return tx.Put(ctx, pid("p"), &State{}) }},
	{"Delete", func(ctx context.Context, tx Tx) error { return tx.Delete(ctx, pid("p")) }},
	{"Commit", func(ctx context.Context, tx Tx) error { return tx.Commit(ctx) }},
}

func TestTxDone(t *testing.T) {
	ends := []struct {
		name string
		end  func(tx Tx) error
	}{
		{"committed", func(tx Tx) error { return tx.Commit(bg) }},
		{"rolled back", func(tx Tx) error { return tx.Rollback(bg) }},
	}
	for _, end := range ends {
		for _, m := range txMethods {
			t.Run(end.name+"/"+m.name, func(t *testing.T) {
				s := NewMemStore()
				tx, err := s.Begin(bg)
				mustNil(t, err)
				mustNil(t, end.end(tx))
				if err := m.call(bg, tx); !errors.Is(err, ErrTxDone) {
					t.Errorf("%s after the tx ended: %v, want ErrTxDone", m.name, err)
				}
				if err := tx.Rollback(bg); err != nil {
					t.Errorf("Rollback after the tx ended: %v, want nil", err)
				}
				if _, err := s.State(bg, pid("p")); !errors.Is(err, ErrNotFound) {
					t.Errorf("a write after the tx ended reached the store: %v", err)
				}
			})
		}
	}
}

func TestTxCancelledContext(t *testing.T) {
	cancelled, cancel := context.WithCancel(bg)
	cancel()
	if tx, err := NewMemStore().Begin(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("Begin with a cancelled context = %v, %v; want context.Canceled", tx, err)
	}
	for _, m := range txMethods {
		t.Run(m.name, func(t *testing.T) {
			s := NewMemStore()
			tx := beginStaged(t, s)
			if err := m.call(cancelled, tx); !errors.Is(err, context.Canceled) {
				t.Errorf("%s with a cancelled context: %v, want context.Canceled", m.name, err)
			}
			if m.name == "Commit" {
				// A commit that did not happen ends the tx all the same.
				if err := tx.Commit(bg); !errors.Is(err, ErrTxDone) {
					t.Errorf("Commit after a cancelled Commit: %v, want ErrTxDone", err)
				}
			} else {
				mustNil(t, tx.Rollback(bg))
			}
			mustShowNoneStaged(t, s, "after "+m.name+" with a cancelled context")
		})
	}
}

func TestDefine(t *testing.T) {
	a := Definition{Key: "a", Query: `trait('x') = 1`}
	tests := []struct {
		name   string
		before []Definition // committed first
		define []Definition // in one tx, in order
		is     error        // of the last Define
		want   []Definition
	}{
		{"new", nil, []Definition{a}, nil, []Definition{a}},
		{"same again, committed", []Definition{a}, []Definition{a}, nil, []Definition{a}},
		{"same again, same tx", nil, []Definition{a, a}, nil, []Definition{a}},
		{"other query, committed", []Definition{a}, []Definition{{Key: "a", Query: `trait('x') = 2`}}, ErrConflict, []Definition{a}},
		{"other query, same tx", nil, []Definition{a, {Key: "a", Query: `trait('x') = 2`}}, ErrConflict, []Definition{a}},
		{"order kept", nil, []Definition{{Key: "z", Query: `trait('z') exists`}, a}, nil,
			[]Definition{{Key: "z", Query: `trait('z') exists`}, a}},
		{"a condition would be lost", nil, []Definition{{Key: "c", Condition: Trait("x").Eq(1)}}, ErrInvalid, nil},
		{"no query", nil, []Definition{{Key: "c"}}, ErrInvalid, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewMemStore()
			if tc.before != nil {
				commit(t, s, func(tx Tx) {
					for _, d := range tc.before {
						mustNil(t, tx.Define(bg, d))
					}
				})
			}
			tx, err := s.Begin(bg)
			mustNil(t, err)
			for i, d := range tc.define {
				err := tx.Define(bg, d)
				if i < len(tc.define)-1 {
					mustNil(t, err)
				} else if !errors.Is(err, tc.is) || (tc.is == nil) != (err == nil) {
					t.Errorf("Define(%+v) = %v, want %v", d, err, tc.is)
				}
			}
			mustNil(t, tx.Commit(bg))
			got, err := s.Definitions(bg)
			mustNil(t, err)
			if diff := cmp.Diff(tc.want, got, equateEmpty); diff != "" {
				t.Errorf("definitions (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDefineRace has two transactions define the same key: the second to commit
// must not add a second definition of it.
func TestDefineRace(t *testing.T) {
	a := Definition{Key: "a", Query: `trait('x') = 1`}
	tests := []struct {
		name   string
		second Definition
		is     error
	}{
		{"same definition", a, nil},
		{"other definition", Definition{Key: "a", Query: `trait('x') = 2`}, ErrConflict},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewMemStore()
			tx1, err := s.Begin(bg)
			mustNil(t, err)
			tx2, err := s.Begin(bg)
			mustNil(t, err)
			mustNil(t, tx1.Define(bg, a))
			mustNil(t, tx2.Define(bg, tc.second))
			mustNil(t, tx2.Put(bg, pid("p"), &State{Audiences: []string{"a"}}))
			mustNil(t, tx1.Commit(bg))
			err = tx2.Commit(bg)
			if !errors.Is(err, tc.is) || (tc.is == nil) != (err == nil) {
				t.Fatalf("second Commit = %v, want %v", err, tc.is)
			}
			got, _ := s.Definitions(bg)
			if diff := cmp.Diff([]Definition{a}, got); diff != "" {
				t.Errorf("definitions (-want +got):\n%s", diff)
			}
			_, err = s.State(bg, pid("p"))
			if applied := err == nil; applied != (tc.is == nil) {
				t.Errorf("the second tx's Put applied: %v, want %v", applied, tc.is == nil)
			}
		})
	}
}

func TestStateCopiedAtBoundary(t *testing.T) {
	s := NewMemStore()
	orig := func() *State {
		return &State{
			Audiences:  []string{"a", "b"},
			Counters:   []Counter{{Key: "k", Count: 2, Times: ns(t0, t0.Add(time.Hour))}},
			NextChange: t0.Add(day),
		}
	}
	mutate := func(st *State) {
		st.Audiences[0] = "zzz"
		st.Counters[0].Times[0] = nanos(t0.Add(-day))
		st.Counters[0].Count = 99
		st.Counters = append(st.Counters, Counter{Key: "new", Count: 1})
		st.NextChange = time.Time{}
	}
	st := orig()
	tx, err := s.Begin(bg)
	mustNil(t, err)
	mustNil(t, tx.Put(bg, pid("p"), st))
	mutate(st) // after Put, before Commit
	staged, err := tx.State(bg, pid("p"))
	mustNil(t, err)
	mutate(staged) // a read inside the tx
	mustNil(t, tx.Commit(bg))
	mutate(st) // after Commit
	read, err := s.State(bg, pid("p"))
	mustNil(t, err)
	mutate(read) // a read of committed state

	got, err := s.State(bg, pid("p"))
	mustNil(t, err)
	if diff := cmp.Diff(orig(), got); diff != "" {
		t.Errorf("stored state changed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(pids("p"), members(t, s, "a", "", 0)); diff != "" {
		t.Errorf("members of a (-want +got):\n%s", diff)
	}
	if got := members(t, s, "zzz", "", 0); len(got) != 0 {
		t.Errorf("members of zzz: %v", got)
	}
	if diff := cmp.Diff(pids("p"), due(t, s, t0.Add(day), 0)); diff != "" {
		t.Errorf("due (-want +got):\n%s", diff)
	}
}

func TestPutRefuses(t *testing.T) {
	tx, err := NewMemStore().Begin(bg)
	mustNil(t, err)
	if err := tx.Put(bg, pid("p"), nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("Put(nil) = %v, want ErrInvalid", err)
	}
}

func TestMembers(t *testing.T) {
	s := NewMemStore()
	commit(t, s, func(tx Tx) {
		mustNil(t, tx.Put(bg, pid("3"), &State{Audiences: []string{"a"}}))
		mustNil(t, tx.Put(bg, pid("1"), &State{Audiences: []string{"a", "b"}}))
		mustNil(t, tx.Put(bg, pid("5"), &State{Audiences: []string{"b", "a"}})) // unsorted
		mustNil(t, tx.Put(bg, pid("2"), &State{Audiences: []string{"a"}}))
		mustNil(t, tx.Put(bg, pid("4"), &State{}))
	})
	commit(t, s, func(tx Tx) {
		mustNil(t, tx.Put(bg, pid("2"), &State{Audiences: []string{"b"}})) // a -> b
		mustNil(t, tx.Delete(bg, pid("3")))
		mustNil(t, tx.Put(bg, pid("4"), &State{Audiences: []string{"a", "a"}})) // duplicate
		mustNil(t, tx.Delete(bg, pid("absent")))
	})
	tests := []struct {
		key   string
		after identity.ProfileID
		limit int
		want  []identity.ProfileID
	}{
		{"a", "", 0, pids("1", "4", "5")},
		{"b", "", 0, pids("1", "2", "5")},
		{"c", "", 0, nil},
		{"a", "", 2, pids("1", "4")},
		{"a", pid("1"), 0, pids("4", "5")},
		{"a", pid("1"), 1, pids("4")},
		{"a", pid("4"), 1, pids("5")},
		{"a", pid("5"), 1, nil},
		{"a", pid("0"), 0, pids("1", "4", "5")},
		{"b", pid("3"), 10, pids("5")},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s after %q limit %d", tc.key, tc.after, tc.limit), func(t *testing.T) {
			if diff := cmp.Diff(tc.want, members(t, s, tc.key, tc.after, tc.limit), equateEmpty); diff != "" {
				t.Errorf("Members (-want +got):\n%s", diff)
			}
		})
	}
	st, err := s.State(bg, pid("5"))
	mustNil(t, err)
	if diff := cmp.Diff([]string{"a", "b"}, st.Audiences); diff != "" || !st.IsMember("a") || !st.IsMember("b") {
		t.Errorf("an unsorted Put is kept as %v (-want +got):\n%s", st.Audiences, diff)
	}
}

func TestMembersInTx(t *testing.T) {
	s := NewMemStore()
	commit(t, s, func(tx Tx) {
		for _, id := range []string{"1", "3", "5"} {
			mustNil(t, tx.Put(bg, pid(id), &State{Audiences: []string{"a"}}))
		}
	})
	tx, err := s.Begin(bg)
	mustNil(t, err)
	mustNil(t, tx.Put(bg, pid("2"), &State{Audiences: []string{"a"}})) // joins
	mustNil(t, tx.Put(bg, pid("3"), &State{Audiences: []string{"b"}})) // leaves
	mustNil(t, tx.Delete(bg, pid("5")))                                // deleted
	mustNil(t, tx.Put(bg, pid("1"), &State{Audiences: []string{"a"}})) // stays
	tests := []struct {
		after identity.ProfileID
		limit int
		want  []identity.ProfileID
	}{
		{"", 0, pids("1", "2")},
		{"", 1, pids("1")},
		{pid("1"), 0, pids("2")},
		{pid("2"), 0, nil},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, members(t, tx, "a", tc.after, tc.limit), equateEmpty); diff != "" {
			t.Errorf("tx Members(a, %q, %d) (-want +got):\n%s", tc.after, tc.limit, diff)
		}
	}
	if diff := cmp.Diff(pids("1", "3", "5"), members(t, s, "a", "", 0)); diff != "" {
		t.Errorf("store Members before Commit (-want +got):\n%s", diff)
	}
	mustNil(t, tx.Commit(bg))
	if diff := cmp.Diff(pids("1", "2"), members(t, s, "a", "", 0)); diff != "" {
		t.Errorf("store Members after Commit (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(pids("3"), members(t, s, "b", "", 0)); diff != "" {
		t.Errorf("store Members of b after Commit (-want +got):\n%s", diff)
	}
}

func TestDue(t *testing.T) {
	s := NewMemStore()
	put := func(id string, next time.Time) {
		commit(t, s, func(tx Tx) { mustNil(t, tx.Put(bg, pid(id), &State{NextChange: next})) })
	}
	put("1", t0.Add(2*time.Hour))
	put("2", t0.Add(time.Hour))
	put("3", t0.Add(3*time.Hour))
	put("4", time.Time{})
	steps := []struct {
		name  string
		do    func()
		now   time.Time
		limit int
		want  []identity.ProfileID
	}{
		{"none yet", nil, t0, 0, nil},
		{"earliest first", nil, t0.Add(2 * time.Hour), 0, pids("2", "1")},
		{"at exactly NextChange", nil, t0.Add(time.Hour), 0, pids("2")},
		{"still due until put", nil, t0.Add(2 * time.Hour), 0, pids("2", "1")},
		{"limit", nil, t0.Add(10 * time.Hour), 2, pids("2", "1")},
		{"all, zero NextChange never", nil, t0.Add(10 * time.Hour), 0, pids("2", "1", "3")},
		{"a later NextChange", func() { put("2", t0.Add(5*time.Hour)) }, t0.Add(2 * time.Hour), 0, pids("1")},
		{"order follows the new time", nil, t0.Add(10 * time.Hour), 0, pids("1", "3", "2")},
		{"back to an earlier time", func() { put("2", t0.Add(time.Hour)) }, t0.Add(10 * time.Hour), 0, pids("2", "1", "3")},
		{"zero NextChange leaves", func() { put("1", time.Time{}) }, t0.Add(10 * time.Hour), 0, pids("2", "3")},
		{"unchanged NextChange stays", func() { put("3", t0.Add(3*time.Hour)) }, t0.Add(10 * time.Hour), 0, pids("2", "3")},
		{"delete leaves", func() {
			commit(t, s, func(tx Tx) { mustNil(t, tx.Delete(bg, pid("2"))) })
		}, t0.Add(10 * time.Hour), 0, pids("3")},
		{"deleted and put again", func() { put("2", t0.Add(time.Hour)) }, t0.Add(10 * time.Hour), 0, pids("2", "3")},
	}
	for _, step := range steps {
		if step.do != nil {
			step.do()
		}
		if diff := cmp.Diff(step.want, due(t, s, step.now, step.limit), equateEmpty); diff != "" {
			t.Errorf("%s: Due (-want +got):\n%s", step.name, diff)
		}
	}
}

// TestDueHeapStaysSmall puts one profile over and over: stale heap entries must
// neither resurface nor pile up.
func TestDueHeapStaysSmall(t *testing.T) {
	s := NewMemStore()
	const n = 10000
	for i := 1; i <= n; i++ {
		commit(t, s, func(tx Tx) {
			mustNil(t, tx.Put(bg, pid("p"), &State{NextChange: t0.Add(time.Duration(i) * time.Minute)}))
		})
		if i == n/2 {
			if got := due(t, s, t0.Add(n*time.Minute), 0); len(got) != 1 {
				t.Fatalf("Due after %d puts = %v, want the profile once", i, got)
			}
		}
	}
	if got := due(t, s, t0.Add((n-1)*time.Minute), 0); len(got) != 0 {
		t.Errorf("Due before the current NextChange = %v, want none (a stale entry resurfaced)", got)
	}
	if diff := cmp.Diff(pids("p"), due(t, s, t0.Add(2*n*time.Minute), 0)); diff != "" {
		t.Errorf("Due (-want +got):\n%s", diff)
	}
	s.mu.RLock()
	size := s.due.Len()
	s.mu.RUnlock()
	if size > 100 {
		t.Errorf("the due heap holds %d entries for one profile", size)
	}
}

func TestDelete(t *testing.T) {
	s := NewMemStore()
	commit(t, s, func(tx Tx) {
		mustNil(t, tx.Put(bg, pid("p"), &State{Audiences: []string{"a", "b"}, NextChange: t0}))
		mustNil(t, tx.Put(bg, pid("q"), &State{Audiences: []string{"a"}, NextChange: t0}))
	})
	commit(t, s, func(tx Tx) { mustNil(t, tx.Delete(bg, pid("p"))) })
	if _, err := s.State(bg, pid("p")); !errors.Is(err, ErrNotFound) {
		t.Errorf("State after Delete: %v, want ErrNotFound", err)
	}
	tests := []struct {
		key  string
		want []identity.ProfileID
	}{{"a", pids("q")}, {"b", nil}}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, members(t, s, tc.key, "", 0), equateEmpty); diff != "" {
			t.Errorf("Members(%s) after Delete (-want +got):\n%s", tc.key, diff)
		}
	}
	if diff := cmp.Diff(pids("q"), due(t, s, t0, 0)); diff != "" {
		t.Errorf("Due after Delete (-want +got):\n%s", diff)
	}
}

// TestMemStoreConcurrent is for the race detector: transactions on different
// profiles commit while others read.
func TestMemStoreConcurrent(t *testing.T) {
	s := NewMemStore()
	var wg sync.WaitGroup
	const workers, puts = 8, 50
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range puts {
				tx, err := s.Begin(bg)
				if err != nil {
					t.Error(err)
					return
				}
				id := pid(fmt.Sprintf("%d-%d", w, i%5))
				if err := tx.Put(bg, id, &State{Audiences: []string{"a"}, NextChange: t0.Add(time.Duration(i) * time.Minute)}); err != nil {
					t.Error(err)
				}
				if err := tx.Commit(bg); err != nil {
					t.Error(err)
				}
				if _, err := s.Members(bg, "a", "", 10); err != nil {
					t.Error(err)
				}
				if _, err := s.Due(bg, t0.Add(time.Hour), 10); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if got := members(t, s, "a", "", 0); len(got) != workers*5 {
		t.Errorf("%d members, want %d", len(got), workers*5)
	}
	if got := due(t, s, t0.Add(time.Hour), 0); len(got) != workers*5 {
		t.Errorf("%d due, want %d", len(got), workers*5)
	}
}

// TestModifyStagesOneCopy checks the Modifier fast path: fn's changes are staged
// (sorted and de-duplicated), invisible to others until Commit, an error from fn
// stages nothing, and the state fn saw is not the store's.
func TestModifyStagesOneCopy(t *testing.T) {
	s := NewMemStore()
	tx, err := s.Begin(bg)
	mustNil(t, err)
	m := tx.(Modifier)
	var kept *State
	mustNil(t, m.Modify(bg, pid("p"), func(st *State) error {
		if len(st.Audiences) != 0 || st.Counters != nil {
			t.Errorf("a new profile's state is not empty: %+v", st)
		}
		st.Audiences = []string{"b", "a", "b"}
		kept = st
		return nil
	}))
	if _, err := s.State(bg, pid("p")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("uncommitted Modify visible outside: %v", err)
	}
	boom := errors.New("boom")
	if err := m.Modify(bg, pid("q"), func(st *State) error { st.Audiences = []string{"x"}; return boom }); !errors.Is(err, boom) {
		t.Fatalf("Modify returned %v, want fn's error", err)
	}
	mustNil(t, tx.Commit(bg))
	got, err := s.State(bg, pid("p"))
	mustNil(t, err)
	if diff := cmp.Diff([]string{"a", "b"}, got.Audiences); diff != "" {
		t.Errorf("committed audiences (-want +got):\n%s", diff)
	}
	if _, err := s.State(bg, pid("q")); !errors.Is(err, ErrNotFound) {
		t.Errorf("a failed Modify was committed: %v", err)
	}
	members, err := s.Members(bg, "a", "", 0)
	mustNil(t, err)
	if len(members) != 1 || members[0] != pid("p") {
		t.Errorf("members of a = %v, want [p]", members)
	}
	again, err := s.State(bg, pid("p"))
	mustNil(t, err)
	if again == kept {
		t.Error("State returned the very state Modify's fn was given")
	}
	if err := m.Modify(bg, pid("p"), func(*State) error { return nil }); !errors.Is(err, ErrTxDone) {
		t.Errorf("Modify after Commit = %v, want ErrTxDone", err)
	}
}

// TestDueHeapOrder checks the hand-written heap: whatever order entries are
// pushed in, and after a rebuild, they pop earliest first.
func TestDueHeapOrder(t *testing.T) {
	var h dueHeap
	r := rand.New(rand.NewPCG(1, 2))
	var want []time.Time
	for i := range 500 {
		at := t0.Add(time.Duration(r.IntN(1000)) * time.Minute)
		want = append(want, at)
		h.push(dueEntry{at: at, pid: pid(fmt.Sprint(i))})
		if i == 250 {
			h.init() // a rebuild midway keeps the order too
		}
	}
	slices.SortFunc(want, time.Time.Compare)
	for i, w := range want {
		if got := h.pop().at; !got.Equal(w) {
			t.Fatalf("pop %d = %v, want %v", i, got, w)
		}
	}
	if h.Len() != 0 {
		t.Fatalf("%d entries left", h.Len())
	}
}

// TestModifySharesMembershipsSafely checks what Modify may share with the
// committed state: appending to the memberships in one transaction reaches
// neither the committed state nor another transaction, and a failed fn leaves
// the transaction's staged state as it was.
func TestModifySharesMembershipsSafely(t *testing.T) {
	s := NewMemStore()
	tx0, err := s.Begin(bg)
	mustNil(t, err)
	mustNil(t, tx0.Put(bg, pid("p"), &State{Audiences: []string{"a", "b"}}))
	mustNil(t, tx0.Commit(bg))

	tx1, _ := s.Begin(bg)
	tx2, _ := s.Begin(bg)
	defer tx1.Rollback(bg)
	defer tx2.Rollback(bg)
	mustNil(t, tx1.(Modifier).Modify(bg, pid("p"), func(st *State) error {
		st.Audiences = append(st.Audiences, "c")
		return nil
	}))
	mustNil(t, tx2.(Modifier).Modify(bg, pid("p"), func(st *State) error {
		st.Audiences = append(st.Audiences, "d")
		return nil
	}))
	committed, err := s.State(bg, pid("p"))
	mustNil(t, err)
	if diff := cmp.Diff([]string{"a", "b"}, committed.Audiences); diff != "" {
		t.Errorf("committed memberships changed before any commit (-want +got):\n%s", diff)
	}
	for tx, want := range map[Tx][]string{tx1: {"a", "b", "c"}, tx2: {"a", "b", "d"}} {
		got, err := tx.State(bg, pid("p"))
		mustNil(t, err)
		if diff := cmp.Diff(want, got.Audiences); diff != "" {
			t.Errorf("a transaction's staged memberships (-want +got):\n%s", diff)
		}
	}
	boom := errors.New("boom")
	if err := tx1.(Modifier).Modify(bg, pid("p"), func(st *State) error {
		st.Audiences = []string{"z"}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("Modify = %v, want boom", err)
	}
	got, _ := tx1.State(bg, pid("p"))
	if diff := cmp.Diff([]string{"a", "b", "c"}, got.Audiences); diff != "" {
		t.Errorf("a failed Modify changed the staged state (-want +got):\n%s", diff)
	}
}
