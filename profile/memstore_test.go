package profile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/google/go-cmp/cmp"
)

// pidN returns a well-formed profile id; ids sort as their numbers do.
func pidN(i int) identity.ProfileID { return identity.ProfileID(fmt.Sprintf("use_%026d", i)) }

var (
	pidA = pidN(1)
	pidB = pidN(2)
	pidC = pidN(3)
)

// event returns an event at t0 plus sec seconds, with a property naming it.
func event(id, name string, sec int) *Event {
	return &Event{
		MessageID:  id,
		Name:       name,
		Properties: map[string]any{"id": id, "nested": map[string]any{"sec": float64(sec)}},
		Timestamp:  at(sec),
		ReceivedAt: at(sec + 1000),
	}
}

// track is the Update that stores e as message e.MessageID.
func track(version uint64, e *Event) Update {
	return Update{
		MessageID: e.MessageID,
		Event:     e,
		Metadata:  Metadata{Version: version, LastMessageID: e.MessageID, LastSeen: e.Timestamp},
	}
}

// inTx runs fn in a transaction and commits it.
func inTx(t *testing.T, s Store, fn func(tx Tx) error) {
	t.Helper()
	fnErr, commitErr := runTx(t, s, fn)
	if fnErr != nil {
		t.Fatalf("in transaction: %v", fnErr)
	}
	if commitErr != nil {
		t.Fatalf("Commit: %v", commitErr)
	}
}

// runTx runs fn in a transaction of its own and commits it unless fn fails. It
// returns fn's error and Commit's apart, for inTx to tell them apart and update
// not to.
func runTx(t *testing.T, s Store, fn func(tx Tx) error) (fnErr, commitErr error) {
	t.Helper()
	ctx := t.Context()
	tx, err := s.Begin(ctx)
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	defer tx.Rollback(ctx)
	if err := fn(tx); err != nil {
		return err, nil
	}
	return nil, tx.Commit(ctx)
}

// openTx begins a transaction on s that is rolled back when the test ends: the
// transaction a test reads and writes through, committed or not.
func openTx(t *testing.T, s Store) Tx {
	t.Helper()
	tx, err := s.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(context.Background()) })
	return tx
}

// update applies u to pid in a transaction of its own.
func update(t *testing.T, s Store, pid identity.ProfileID, u Update) error {
	t.Helper()
	fnErr, commitErr := runTx(t, s, func(tx Tx) error { return tx.Update(t.Context(), pid, u) })
	if fnErr != nil {
		return fnErr
	}
	return commitErr
}

func mustUpdate(t *testing.T, s Store, pid identity.ProfileID, u Update) {
	t.Helper()
	if err := update(t, s, pid, u); err != nil {
		t.Fatalf("Update %s: %v", pid, err)
	}
}

// allEvents walks every page of q and returns the events in page order. It checks
// the page sizes and that the walk ends.
func allEvents(t *testing.T, r Reader, pid identity.ProfileID, q EventQuery) []Event {
	t.Helper()
	limit := q.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	var evs []Event
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("more than 1000 pages: the cursor does not advance")
		}
		page, err := r.Events(t.Context(), pid, q)
		if err != nil {
			t.Fatalf("Events page %d: %v", pages, err)
		}
		if len(page.Events) > limit {
			t.Fatalf("page %d has %d events, more than the limit %d", pages, len(page.Events), limit)
		}
		if page.Next != "" && len(page.Events) != limit {
			t.Errorf("page %d has %d events and a Next; want %d", pages, len(page.Events), limit)
		}
		evs = append(evs, page.Events...)
		if page.Next == "" {
			return evs
		}
		q.Cursor = page.Next
	}
}

func messageIDs(evs []Event) []string {
	ids := []string{}
	for _, e := range evs {
		ids = append(ids, e.MessageID)
	}
	return ids
}

// stored is everything a Reader shows of one profile.
type stored struct {
	Profile *Profile
	Meta    Metadata
	Events  []Event
}

// dump returns what r shows of each of pids; missing profiles are left out.
func dump(t *testing.T, r Reader, pids ...identity.ProfileID) map[identity.ProfileID]stored {
	t.Helper()
	out := map[identity.ProfileID]stored{}
	for _, pid := range pids {
		p, err := r.Get(t.Context(), pid)
		if errors.Is(err, ErrNotFound) {
			if _, err := r.Events(t.Context(), pid, EventQuery{}); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get %s is ErrNotFound but Events gives %v", pid, err)
			}
			if _, err := r.Metadata(t.Context(), pid); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get %s is ErrNotFound but Metadata gives %v", pid, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Get %s: %v", pid, err)
		}
		meta, err := r.Metadata(t.Context(), pid)
		if err != nil {
			t.Fatalf("Metadata %s: %v", pid, err)
		}
		out[pid] = stored{p, meta, allEvents(t, r, pid, EventQuery{Sort: Asc, Limit: MaxLimit})}
	}
	return out
}

func TestMemStoreUpdateCreates(t *testing.T) {
	s := NewMemStore()
	ctx := t.Context()
	if s.Len() != 0 {
		t.Fatalf("new store has %d profiles", s.Len())
	}
	meta := Metadata{CreatedAt: at(0), UpdatedAt: at(0), Version: 1, FirstMessageID: "m1", LastMessageID: "m1", FirstSeen: at(0), LastSeen: at(0)}
	traits := map[string]Trait{
		"name":    {Value: "Ada", Source: SourceIdentify, UpdatedAt: at(0)},
		"address": {Value: map[string]any{"city": "Paris", "lines": []any{"1", "2"}}, Source: "crm", UpdatedAt: at(0)},
	}
	e := event("m1", "signup", 0)
	mustUpdate(t, s, pidA, Update{Metadata: meta, Set: traits, MessageID: "m1", Event: e})

	if s.Len() != 1 {
		t.Errorf("Len = %d, want 1", s.Len())
	}
	p, err := s.Get(ctx, pidA)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&Profile{ID: pidA, Traits: traits, Metadata: meta}, p); diff != "" {
		t.Errorf("Get (-want +got):\n%s", diff)
	}
	gotMeta, err := s.Metadata(ctx, pidA)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(meta, gotMeta); diff != "" {
		t.Errorf("Metadata (-want +got):\n%s", diff)
	}
	page, err := s.Events(ctx, pidA, EventQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(EventPage{Events: []Event{*e}}, page); diff != "" {
		t.Errorf("Events (-want +got):\n%s", diff)
	}
	// An Update with neither traits nor an event still creates the profile.
	mustUpdate(t, s, pidB, Update{Metadata: Metadata{Version: 1}})
	if got, err := s.Metadata(ctx, pidB); err != nil || got.Version != 1 {
		t.Errorf("Metadata of a profile with no traits = %+v, %v; want version 1", got, err)
	}
	if page, err := s.Events(ctx, pidB, EventQuery{}); err != nil || len(page.Events) != 0 || page.Next != "" {
		t.Errorf("Events of a profile with no events = %+v, %v; want an empty page", page, err)
	}
}

func TestMemStoreNotFound(t *testing.T) {
	s := NewMemStore()
	ctx := t.Context()
	mustUpdate(t, s, pidA, Update{Metadata: Metadata{Version: 1}})
	tx := openTx(t, s)
	for name, r := range map[string]Reader{"store": s, "tx": tx} {
		if p, err := r.Get(ctx, pidB); !errors.Is(err, ErrNotFound) || p != nil {
			t.Errorf("%s: Get unknown = %v, %v; want nil, ErrNotFound", name, p, err)
		}
		if _, err := r.Metadata(ctx, pidB); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: Metadata unknown: %v, want ErrNotFound", name, err)
		}
		if _, err := r.Events(ctx, pidB, EventQuery{}); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: Events unknown: %v, want ErrNotFound", name, err)
		}
		// An invalid query is refused before the profile is looked up.
		if _, err := r.Events(ctx, pidA, EventQuery{Limit: -1}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Events with limit -1: %v, want ErrInvalid", name, err)
		}
		if _, err := r.Events(ctx, pidA, EventQuery{Cursor: "!"}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Events with a malformed cursor: %v, want ErrInvalid", name, err)
		}
	}
}

func TestMemStoreSetThenRemove(t *testing.T) {
	s := NewMemStore()
	tr := func(v any) Trait { return Trait{Value: v, Source: "s", UpdatedAt: at(0)} }
	mustUpdate(t, s, pidA, Update{Set: map[string]Trait{"keep": tr("k"), "old": tr("o")}})
	mustUpdate(t, s, pidA, Update{
		Set:    map[string]Trait{"a": tr(1.0), "b": tr(2.0), "keep": tr("k2")},
		Remove: []string{"a", "old", "never-there"},
	})
	p, err := s.Get(t.Context(), pidA)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Trait{"b": tr(2.0), "keep": tr("k2")}
	if diff := cmp.Diff(want, p.Traits); diff != "" {
		t.Errorf("traits (-want +got):\n%s", diff)
	}
	// Removing every trait leaves a profile without traits, not no profile.
	mustUpdate(t, s, pidA, Update{Remove: []string{"b", "keep"}, Metadata: Metadata{Version: 9}})
	p, err = s.Get(t.Context(), pidA)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Traits) != 0 || p.Metadata.Version != 9 {
		t.Errorf("after removing all traits: %+v, want no traits and version 9", p)
	}
}

func TestMemStoreDuplicate(t *testing.T) {
	s := NewMemStore()
	ctx := t.Context()
	first := track(1, event("m1", "first", 1))
	first.Set = map[string]Trait{"a": {Value: "one", Source: "s", UpdatedAt: at(1)}}
	mustUpdate(t, s, pidA, first)
	mustUpdate(t, s, pidB, track(1, event("m1", "other profile", 1))) // ids are per profile
	before := dump(t, s, pidA, pidB)

	again := track(2, event("m1", "second", 2))
	again.Set = map[string]Trait{"a": {Value: "two"}, "b": {Value: "new"}}
	again.Remove = []string{"a"}
	tx, err := s.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Update(ctx, pidA, again); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("Update with a recorded message id: %v, want ErrDuplicate", err)
	}
	// Not even the transaction sees a change.
	if diff := cmp.Diff(before[pidA], dump(t, tx, pidA)[pidA]); diff != "" {
		t.Errorf("the transaction sees a change after ErrDuplicate (-before +after):\n%s", diff)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, dump(t, s, pidA, pidB)); diff != "" {
		t.Errorf("ErrDuplicate changed the store (-before +after):\n%s", diff)
	}

	// A message id staged earlier in the same transaction is a duplicate too.
	inTx(t, s, func(tx Tx) error {
		if err := tx.Update(ctx, pidA, track(2, event("m2", "x", 2))); err != nil {
			return err
		}
		if err := tx.Update(ctx, pidA, track(3, event("m2", "y", 3))); !errors.Is(err, ErrDuplicate) {
			t.Errorf("second Update with m2 in one transaction: %v, want ErrDuplicate", err)
		}
		return nil
	})
	evs := allEvents(t, s, pidA, EventQuery{Sort: Asc})
	if diff := cmp.Diff([]string{"m1", "m2"}, messageIDs(evs)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if evs[1].Name != "x" {
		t.Errorf("event m2 is %q, want the first one, x", evs[1].Name)
	}
	if m, _ := s.Metadata(ctx, pidA); m.Version != 2 {
		t.Errorf("version %d, want 2", m.Version)
	}
	// Updates without a message id are never duplicates.
	mustUpdate(t, s, pidA, Update{Metadata: Metadata{Version: 3}})
	mustUpdate(t, s, pidA, Update{Metadata: Metadata{Version: 4}})
}

func TestMemStoreEventsSorted(t *testing.T) {
	s := NewMemStore()
	// Appended out of order, with ties on the timestamp.
	order := []struct {
		id  string
		sec int
	}{{"e", 5}, {"b", 1}, {"c3", 3}, {"a3", 3}, {"z", 9}, {"a", 0}, {"b3", 3}, {"y", 8}, {"d", 4}, {"x", -10}}
	for i, o := range order {
		mustUpdate(t, s, pidA, track(uint64(i+1), event(o.id, "ev", o.sec)))
	}
	want := []string{"x", "a", "b", "a3", "b3", "c3", "d", "e", "y", "z"}
	got := allEvents(t, s, pidA, EventQuery{Sort: Asc, Limit: MaxLimit})
	if diff := cmp.Diff(want, messageIDs(got)); diff != "" {
		t.Errorf("asc (-want +got):\n%s", diff)
	}
	if !slices.IsSortedFunc(got, func(a, b Event) int { return CompareEvents(&a, &b) }) {
		t.Error("events are not sorted by CompareEvents")
	}
	got = allEvents(t, s, pidA, EventQuery{Limit: MaxLimit})
	slices.Reverse(want)
	if diff := cmp.Diff(want, messageIDs(got)); diff != "" {
		t.Errorf("desc (the default) (-want +got):\n%s", diff)
	}
	// Events written in one transaction are sorted as well.
	inTx(t, s, func(tx Tx) error {
		for i, sec := range []int{7, 2, 6} {
			if err := tx.Update(t.Context(), pidB, track(uint64(i+1), event(fmt.Sprint("t", sec), "ev", sec))); err != nil {
				return err
			}
		}
		return nil
	})
	got = allEvents(t, s, pidB, EventQuery{Sort: Asc})
	if diff := cmp.Diff([]string{"t2", "t6", "t7"}, messageIDs(got)); diff != "" {
		t.Errorf("one transaction (-want +got):\n%s", diff)
	}
}

// storeEvents stores events with the given timestamps (seconds from t0) on pid, one
// message each, in a scrambled order, and returns them in ascending order.
func storeEvents(t *testing.T, s Store, pid identity.ProfileID, names []string, secs ...int) []Event {
	t.Helper()
	var evs []Event
	for i, sec := range secs {
		name := names[i%len(names)]
		evs = append(evs, *event(fmt.Sprintf("m%03d", i), name, sec))
	}
	scrambled := slices.Clone(evs)
	for i := range scrambled { // a fixed permutation
		j := (i * 7) % len(scrambled)
		scrambled[i], scrambled[j] = scrambled[j], scrambled[i]
	}
	for i := range scrambled {
		mustUpdate(t, s, pid, track(uint64(i+1), &scrambled[i]))
	}
	slices.SortFunc(evs, func(a, b Event) int { return CompareEvents(&a, &b) })
	return evs
}

func TestMemStoreEventsPaging(t *testing.T) {
	far := []int{
		-400 * 365 * 24 * 3600, // around 1624, before UnixNano's range
		300 * 365 * 24 * 3600,  // around 2323, after it
	}
	tests := []struct {
		name string
		secs []int
	}{
		{"ten", []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"nine, full last page", []int{9, 8, 7, 6, 5, 4, 3, 2, 1}},
		{"ties", []int{1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3}},
		{"one", []int{5}},
		{"far timestamps", append([]int{0, 1, 2, 3}, far[0], far[0], far[1], far[1]+1)},
	}
	for _, tt := range tests {
		for _, sort := range []Order{Asc, Desc} {
			for _, limit := range []int{1, 3, len(tt.secs), len(tt.secs) + 1} {
				t.Run(fmt.Sprintf("%s/%s/limit %d", tt.name, sort, limit), func(t *testing.T) {
					s := NewMemStore()
					want := storeEvents(t, s, pidA, []string{"a", "b"}, tt.secs...)
					if sort == Desc {
						slices.Reverse(want)
					}
					got := allEvents(t, s, pidA, EventQuery{Sort: sort, Limit: limit})
					if diff := cmp.Diff(want, got); diff != "" {
						t.Errorf("events over all pages (-want +got):\n%s", diff)
					}
				})
			}
		}
	}
	t.Run("page count", func(t *testing.T) {
		s := NewMemStore()
		storeEvents(t, s, pidA, []string{"a"}, 0, 1, 2, 3, 4, 5, 6, 7, 8)
		q := EventQuery{Limit: 3, Sort: Asc}
		pages := 0
		for {
			page, err := s.Events(t.Context(), pidA, q)
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Events) == 0 {
				t.Fatalf("page %d is empty", pages)
			}
			pages++
			if page.Next == "" {
				break
			}
			q.Cursor = page.Next
		}
		if pages != 3 {
			t.Errorf("9 events, limit 3: %d pages, want 3", pages)
		}
	})
	t.Run("default limit", func(t *testing.T) {
		s := NewMemStore()
		storeEvents(t, s, pidA, []string{"a"}, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
		page, err := s.Events(t.Context(), pidA, EventQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Events) != DefaultLimit || page.Next == "" {
			t.Fatalf("zero query: %d events, Next %q; want %d and a cursor", len(page.Events), page.Next, DefaultLimit)
		}
		if page.Events[0].MessageID != "m011" {
			t.Errorf("zero query starts at %s, want the newest, m011", page.Events[0].MessageID)
		}
	})
}

func TestMemStoreEventsFilters(t *testing.T) {
	s := NewMemStore()
	names := []string{"view", "click", "buy"}
	all := storeEvents(t, s, pidA, names, 0, 1, 2, 3, 3, 3, 4, 5, 6, 7, 8, 9, 10, 10, 11, 12, 13, 14, 15, 16)
	tests := []struct {
		name string
		q    EventQuery
		keep func(e Event) bool
	}{
		{"window", EventQuery{Start: at(3), End: at(10)},
			func(e Event) bool { return !e.Timestamp.Before(at(3)) && e.Timestamp.Before(at(10)) }},
		{"start only", EventQuery{Start: at(10)},
			func(e Event) bool { return !e.Timestamp.Before(at(10)) }},
		{"end only", EventQuery{End: at(4)},
			func(e Event) bool { return e.Timestamp.Before(at(4)) }},
		{"window between events", EventQuery{Start: at(3).Add(time.Millisecond), End: at(4)},
			func(e Event) bool { return false }},
		{"window outside events", EventQuery{Start: at(100), End: at(200)},
			func(e Event) bool { return false }},
		{"include", EventQuery{Include: []string{"buy"}},
			func(e Event) bool { return e.Name == "buy" }},
		{"include two", EventQuery{Include: []string{"buy", "view", "unknown"}},
			func(e Event) bool { return e.Name == "buy" || e.Name == "view" }},
		{"exclude", EventQuery{Exclude: []string{"view"}},
			func(e Event) bool { return e.Name != "view" }},
		{"window and include", EventQuery{Start: at(2), End: at(12), Include: []string{"click"}},
			func(e Event) bool {
				return !e.Timestamp.Before(at(2)) && e.Timestamp.Before(at(12)) && e.Name == "click"
			}},
		{"window and exclude", EventQuery{Start: at(3), End: at(14), Exclude: []string{"click", "buy"}},
			func(e Event) bool {
				return !e.Timestamp.Before(at(3)) && e.Timestamp.Before(at(14)) && e.Name == "view"
			}},
		{"include and exclude", EventQuery{Include: []string{"view", "click"}, Exclude: []string{"click"}},
			func(e Event) bool { return e.Name == "view" }},
	}
	for _, tt := range tests {
		for _, sort := range []Order{Asc, Desc} {
			for _, limit := range []int{1, 2, 3, MaxLimit} {
				t.Run(fmt.Sprintf("%s/%s/limit %d", tt.name, sort, limit), func(t *testing.T) {
					var want []Event
					for _, e := range all {
						if tt.keep(e) {
							want = append(want, e)
						}
					}
					if sort == Desc {
						slices.Reverse(want)
					}
					q := tt.q
					q.Sort, q.Limit = sort, limit
					got := allEvents(t, s, pidA, q)
					if diff := cmp.Diff(want, got); diff != "" {
						t.Errorf("events over all pages (-want +got):\n%s", diff)
					}
				})
			}
		}
	}
}

func TestMemStoreEventsCursorSurvivesWrites(t *testing.T) {
	// A cursor names a position, not an index: events stored between two pages
	// do not make the walk repeat or skip the events it had not reached.
	s := NewMemStore()
	storeEvents(t, s, pidA, []string{"a"}, 0, 2, 4, 6, 8)
	page, err := s.Events(t.Context(), pidA, EventQuery{Sort: Asc, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	mustUpdate(t, s, pidA, track(10, event("early", "a", 1))) // before the cursor
	mustUpdate(t, s, pidA, track(11, event("late", "a", 5)))  // after it
	rest := allEvents(t, s, pidA, EventQuery{Sort: Asc, Limit: 2, Cursor: page.Next})
	got := append(messageIDs(page.Events), messageIDs(rest)...)
	if diff := cmp.Diff([]string{"m000", "m001", "m002", "late", "m003", "m004"}, got); diff != "" {
		t.Errorf("walk (-want +got):\n%s", diff)
	}
}

// mergeSetup stores two profiles for the merge tests:
//
//	A: m1 at 1, m3 at 3, message mx without an event, trait "a".
//	B: m2 at 2, m3 at 30 (the same message, stored on both), my without an event,
//	   mx at 7 (a message A has recorded), an event without a message id at 5, m4
//	   at 4, trait "b".
func mergeSetup(t *testing.T) *MemStore {
	t.Helper()
	s := NewMemStore()
	mustUpdate(t, s, pidA, track(1, event("m1", "a", 1)))
	mustUpdate(t, s, pidA, track(2, event("m3", "a", 3)))
	mustUpdate(t, s, pidA, Update{MessageID: "mx", Metadata: Metadata{Version: 3},
		Set: map[string]Trait{"a": {Value: "A", Source: "s", UpdatedAt: at(0)}}})
	mustUpdate(t, s, pidB, track(1, event("m2", "b", 2)))
	mustUpdate(t, s, pidB, track(2, event("m3", "b", 30)))
	mustUpdate(t, s, pidB, Update{MessageID: "my", Metadata: Metadata{Version: 3},
		Set: map[string]Trait{"b": {Value: "B", Source: "s", UpdatedAt: at(0)}}})
	mustUpdate(t, s, pidB, track(4, event("mx", "b", 7)))
	mustUpdate(t, s, pidB, track(5, event("m5", "b", 5)))
	mustUpdate(t, s, pidB, track(6, event("m4", "b", 4)))
	return s
}

func TestMemStoreMerge(t *testing.T) {
	ctx := t.Context()
	s := mergeSetup(t)
	before := dump(t, s, pidA, pidB)
	inTx(t, s, func(tx Tx) error { return tx.Merge(ctx, pidA, pidB) })

	after := dump(t, s, pidA, pidB, pidC)
	if _, ok := after[pidB]; ok {
		t.Error("the merged profile still exists")
	}
	if s.Len() != 1 {
		t.Errorf("Len = %d, want 1", s.Len())
	}
	a := after[pidA]
	if diff := cmp.Diff(before[pidA].Profile, a.Profile); diff != "" {
		t.Errorf("Merge changed the target's traits or metadata (-before +after):\n%s", diff)
	}
	type pos struct {
		ID   string
		Name string
		Sec  int
	}
	var got []pos
	for _, e := range a.Events {
		got = append(got, pos{e.MessageID, e.Name, int(e.Timestamp.Sub(t0) / time.Second)})
	}
	want := []pos{{"m1", "a", 1}, {"m2", "b", 2}, {"m3", "a", 3}, {"m4", "b", 4}, {"m5", "b", 5}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("target's events (-want +got):\n%s", diff)
	}
	// The moved events are whole, properties and all.
	for _, e := range a.Events {
		if e.MessageID == "m2" {
			if diff := cmp.Diff(*event("m2", "b", 2), e); diff != "" {
				t.Errorf("moved event (-want +got):\n%s", diff)
			}
		}
	}
	// The source's recorded message ids moved too, and the target's stayed.
	for _, id := range []string{"m1", "m2", "m3", "m4", "mx", "my"} {
		if err := update(t, s, pidA, Update{MessageID: id}); !errors.Is(err, ErrDuplicate) {
			t.Errorf("Update of the target with %s after the merge: %v, want ErrDuplicate", id, err)
		}
	}

	// Merging again, with the source gone, is a no-op.
	inTx(t, s, func(tx Tx) error { return tx.Merge(ctx, pidA, pidB) })
	if diff := cmp.Diff(after, dump(t, s, pidA, pidB, pidC)); diff != "" {
		t.Errorf("second Merge changed the store (-before +after):\n%s", diff)
	}
}

func TestMemStoreMergeErrors(t *testing.T) {
	ctx := t.Context()
	s := mergeSetup(t)
	before := dump(t, s, pidA, pidB, pidC)
	tx, err := s.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Merge(ctx, pidC, pidA); !errors.Is(err, ErrNotFound) {
		t.Errorf("Merge into a missing profile: %v, want ErrNotFound", err)
	}
	if err := tx.Merge(ctx, pidA, pidA); !errors.Is(err, ErrInvalid) {
		t.Errorf("Merge into itself: %v, want ErrInvalid", err)
	}
	if err := tx.Merge(ctx, pidC, pidC); !errors.Is(err, ErrInvalid) {
		t.Errorf("Merge of a missing profile into itself: %v, want ErrInvalid", err)
	}
	if err := tx.Merge(ctx, pidA, pidC); err != nil {
		t.Errorf("Merge of a missing source: %v, want nil", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, dump(t, s, pidA, pidB, pidC)); diff != "" {
		t.Errorf("failed and no-op merges changed the store (-before +after):\n%s", diff)
	}
	// A target created earlier in the same transaction exists for Merge.
	inTx(t, s, func(tx Tx) error {
		if err := tx.Update(ctx, pidC, Update{Metadata: Metadata{Version: 1}}); err != nil {
			return err
		}
		return tx.Merge(ctx, pidC, pidB)
	})
	if _, err := s.Get(ctx, pidB); !errors.Is(err, ErrNotFound) {
		t.Errorf("source after merging into a new profile: %v, want ErrNotFound", err)
	}
	evs := allEvents(t, s, pidC, EventQuery{Sort: Asc})
	if diff := cmp.Diff([]string{"m2", "m4", "m5", "mx", "m3"}, messageIDs(evs)); diff != "" {
		t.Errorf("events of the new target (-want +got):\n%s", diff)
	}
}

func TestMemStoreDelete(t *testing.T) {
	ctx := t.Context()
	s := NewMemStore()
	u := track(1, event("m1", "a", 1))
	u.Set = map[string]Trait{"old": {Value: "x"}}
	mustUpdate(t, s, pidA, u)
	mustUpdate(t, s, pidA, track(2, event("m2", "a", 2)))
	mustUpdate(t, s, pidB, track(1, event("m1", "b", 1)))
	other := dump(t, s, pidB)

	inTx(t, s, func(tx Tx) error { return tx.Delete(ctx, pidA) })
	if got := dump(t, s, pidA); len(got) != 0 {
		t.Errorf("deleted profile still readable: %+v", got)
	}
	if s.Len() != 1 {
		t.Errorf("Len = %d, want 1", s.Len())
	}
	// Deleting twice, or a profile that never existed, is a no-op.
	inTx(t, s, func(tx Tx) error {
		if err := tx.Delete(ctx, pidA); err != nil {
			return err
		}
		return tx.Delete(ctx, pidC)
	})
	if diff := cmp.Diff(other, dump(t, s, pidA, pidB, pidC)); diff != "" {
		t.Errorf("deleting twice changed the store (-want +got):\n%s", diff)
	}
	// The recorded message ids went with it: the same message is accepted again,
	// and the new profile has none of the old traits or events.
	again := track(1, event("m1", "again", 3))
	if err := update(t, s, pidA, again); err != nil {
		t.Fatalf("Update with the message id of a deleted profile: %v", err)
	}
	p, err := s.Get(ctx, pidA)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Traits) != 0 {
		t.Errorf("recreated profile has the old traits %v", p.Traits)
	}
	evs := allEvents(t, s, pidA, EventQuery{})
	if diff := cmp.Diff([]Event{*again.Event}, evs); diff != "" {
		t.Errorf("recreated profile's events (-want +got):\n%s", diff)
	}
	if err := update(t, s, pidA, Update{MessageID: "m2"}); err != nil {
		t.Errorf("m2 of the deleted profile: %v, want it accepted", err)
	}
}

func TestMemTxSeesOwnWrites(t *testing.T) {
	ctx := t.Context()
	s := NewMemStore()
	u := track(1, event("m1", "a", 1))
	u.Set = map[string]Trait{"t": {Value: "v", Source: "s", UpdatedAt: at(1)}}

	tx := openTx(t, s)
	other := openTx(t, s)

	if err := tx.Update(ctx, pidA, u); err != nil {
		t.Fatal(err)
	}
	want := map[identity.ProfileID]stored{pidA: {
		Profile: &Profile{ID: pidA, Traits: u.Set, Metadata: u.Metadata},
		Meta:    u.Metadata,
		Events:  []Event{*u.Event},
	}}
	if diff := cmp.Diff(want, dump(t, tx, pidA)); diff != "" {
		t.Errorf("the transaction's own view (-want +got):\n%s", diff)
	}
	if got := dump(t, s, pidA); len(got) != 0 {
		t.Errorf("the store sees an uncommitted write: %+v", got)
	}
	if got := dump(t, other, pidA); len(got) != 0 {
		t.Errorf("another transaction sees an uncommitted write: %+v", got)
	}
	if s.Len() != 0 {
		t.Errorf("Len = %d before Commit, want 0", s.Len())
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, dump(t, s, pidA)); diff != "" {
		t.Errorf("the store after Commit (-want +got):\n%s", diff)
	}
}

func TestMemTxSeesOwnMergeAndDelete(t *testing.T) {
	ctx := t.Context()
	s := NewMemStore()
	mustUpdate(t, s, pidA, track(1, event("a1", "a", 1)))
	mustUpdate(t, s, pidB, track(1, event("b1", "b", 2)))
	committed := dump(t, s, pidA, pidB)

	tx := openTx(t, s)
	other := openTx(t, s)

	if err := tx.Merge(ctx, pidA, pidB); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Get(ctx, pidB); !errors.Is(err, ErrNotFound) {
		t.Errorf("tx: merged source: %v, want ErrNotFound", err)
	}
	if got := messageIDs(allEvents(t, tx, pidA, EventQuery{Sort: Asc})); !slices.Equal(got, []string{"a1", "b1"}) {
		t.Errorf("tx: target's events %v, want [a1 b1]", got)
	}
	if err := tx.Update(ctx, pidA, Update{MessageID: "b1"}); !errors.Is(err, ErrDuplicate) {
		t.Errorf("tx: Update with the source's message id after Merge: %v, want ErrDuplicate", err)
	}
	for name, r := range map[string]Reader{"store": s, "other tx": other} {
		if diff := cmp.Diff(committed, dump(t, r, pidA, pidB)); diff != "" {
			t.Errorf("%s sees the uncommitted merge (-want +got):\n%s", name, diff)
		}
	}

	if err := tx.Delete(ctx, pidA); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, tx, pidA, pidB); len(got) != 0 {
		t.Errorf("tx: deleted profiles still readable: %+v", got)
	}
	if _, err := tx.Metadata(ctx, pidA); !errors.Is(err, ErrNotFound) {
		t.Errorf("tx: Metadata of a deleted profile: %v, want ErrNotFound", err)
	}
	if err := tx.Merge(ctx, pidA, pidC); !errors.Is(err, ErrNotFound) {
		t.Errorf("tx: Merge into a profile deleted in the transaction: %v, want ErrNotFound", err)
	}
	// Recreated in the same transaction: a fresh profile.
	if err := tx.Update(ctx, pidA, track(7, event("a1", "new", 9))); err != nil {
		t.Fatalf("tx: Update after Delete: %v", err)
	}
	if got := messageIDs(allEvents(t, tx, pidA, EventQuery{})); !slices.Equal(got, []string{"a1"}) {
		t.Errorf("tx: recreated profile's events %v, want [a1]", got)
	}
	for name, r := range map[string]Reader{"store": s, "other tx": other} {
		if diff := cmp.Diff(committed, dump(t, r, pidA, pidB)); diff != "" {
			t.Errorf("%s sees the uncommitted delete (-want +got):\n%s", name, diff)
		}
	}

	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got := dump(t, s, pidA, pidB)
	if _, ok := got[pidB]; ok || len(got) != 1 {
		t.Fatalf("after Commit: %v, want only the recreated %s", got, pidA)
	}
	if got[pidA].Meta.Version != 7 || got[pidA].Events[0].Name != "new" {
		t.Errorf("after Commit: %+v, want the recreated profile", got[pidA])
	}
}

func TestMemTxRollback(t *testing.T) {
	ctx := t.Context()
	s := NewMemStore()
	mustUpdate(t, s, pidA, track(1, event("m1", "a", 1)))
	mustUpdate(t, s, pidB, track(1, event("m1", "b", 1)))
	before := dump(t, s, pidA, pidB, pidC)

	tx, err := s.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	steps := []error{
		tx.Update(ctx, pidA, track(2, event("m2", "a", 2))),
		tx.Update(ctx, pidC, Update{Metadata: Metadata{Version: 1}}),
		tx.Merge(ctx, pidA, pidB),
		tx.Delete(ctx, pidC),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Errorf("second Rollback: %v, want nil", err)
	}
	if diff := cmp.Diff(before, dump(t, s, pidA, pidB, pidC)); diff != "" {
		t.Errorf("Rollback left changes (-before +after):\n%s", diff)
	}
	// The message id is free again: the rolled-back Update recorded nothing.
	mustUpdate(t, s, pidA, track(2, event("m2", "a", 2)))

	// Rollback after Commit is harmless and undoes nothing.
	tx, err = s.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Delete(ctx, pidB); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	committed := dump(t, s, pidA, pidB, pidC)
	if _, ok := committed[pidB]; ok {
		t.Fatal("Delete was not committed")
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Errorf("Rollback after Commit: %v, want nil", err)
	}
	if diff := cmp.Diff(committed, dump(t, s, pidA, pidB, pidC)); diff != "" {
		t.Errorf("Rollback after Commit changed the store (-before +after):\n%s", diff)
	}
}

func TestMemTxDone(t *testing.T) {
	ends := map[string]func(tx Tx) error{
		"commit":   func(tx Tx) error { return tx.Commit(t.Context()) },
		"rollback": func(tx Tx) error { return tx.Rollback(t.Context()) },
		"cancelled commit": func(tx Tx) error {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if err := tx.Commit(ctx); !errors.Is(err, context.Canceled) {
				return fmt.Errorf("cancelled Commit: %v, want context.Canceled", err)
			}
			return nil
		},
	}
	calls := map[string]func(tx Tx) error{
		"Get":      func(tx Tx) error { _, err := tx.Get(t.Context(), pidA); return err },
		"Metadata": func(tx Tx) error { _, err := tx.Metadata(t.Context(), pidA); return err },
		"Events":   func(tx Tx) error { _, err := tx.Events(t.Context(), pidA, EventQuery{}); return err },
		"Update":   func(tx Tx) error { return tx.Update(t.Context(), pidB, Update{MessageID: "late"}) },
		"Merge":    func(tx Tx) error { return tx.Merge(t.Context(), pidA, pidC) },
		"Delete":   func(tx Tx) error { return tx.Delete(t.Context(), pidA) },
		"Commit":   func(tx Tx) error { return tx.Commit(t.Context()) },
	}
	for endName, end := range ends {
		t.Run(endName, func(t *testing.T) {
			s := NewMemStore()
			mustUpdate(t, s, pidA, track(1, event("m1", "a", 1)))
			mustUpdate(t, s, pidC, track(1, event("c1", "c", 1)))
			tx, err := s.Begin(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if err := end(tx); err != nil {
				t.Fatal(err)
			}
			before := dump(t, s, pidA, pidB, pidC)
			for name, call := range calls {
				if err := call(tx); !errors.Is(err, ErrTxDone) {
					t.Errorf("%s after %s: %v, want ErrTxDone", name, endName, err)
				}
			}
			if err := tx.Rollback(t.Context()); err != nil {
				t.Errorf("Rollback after %s: %v, want nil", endName, err)
			}
			if diff := cmp.Diff(before, dump(t, s, pidA, pidB, pidC)); diff != "" {
				t.Errorf("calls after %s changed the store (-before +after):\n%s", endName, diff)
			}
		})
	}
}

func TestMemTxCancelledContext(t *testing.T) {
	s := NewMemStore()
	mustUpdate(t, s, pidA, track(1, event("m1", "a", 1)))
	before := dump(t, s, pidA, pidB)

	ctx, cancel := context.WithCancel(t.Context())
	tx, err := s.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Update(ctx, pidB, track(1, event("b1", "b", 1))); err != nil {
		t.Fatal(err)
	}
	if err := tx.Delete(ctx, pidA); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := tx.Get(ctx, pidA); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled context: %v, want context.Canceled", err)
	}
	if err := tx.Update(ctx, pidC, Update{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Update with a cancelled context: %v, want context.Canceled", err)
	}
	if err := tx.Commit(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit with a cancelled context: %v, want context.Canceled", err)
	}
	if diff := cmp.Diff(before, dump(t, s, pidA, pidB, pidC)); diff != "" {
		t.Errorf("a cancelled Commit applied writes (-before +after):\n%s", diff)
	}
	if s.Len() != 1 {
		t.Errorf("Len = %d, want 1", s.Len())
	}
	if err := tx.Commit(t.Context()); !errors.Is(err, ErrTxDone) {
		t.Errorf("Commit after a cancelled Commit: %v, want ErrTxDone", err)
	}
	if err := tx.Rollback(t.Context()); err != nil {
		t.Errorf("Rollback after a cancelled Commit: %v", err)
	}
	if _, err := s.Begin(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Begin with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestMemStoreCopiesAtBoundary(t *testing.T) {
	ctx := t.Context()
	s := NewMemStore()
	mustUpdate(t, s, pidA, Update{Set: map[string]Trait{"gone": {Value: "g"}, "kept": {Value: "k"}}})

	// What the caller passes in.
	set := map[string]Trait{
		"m": {Value: map[string]any{"k": "v", "l": []any{"x", map[string]any{"deep": 1.0}}}, Source: "s", UpdatedAt: at(1)},
		"s": {Value: "str", Source: "s", UpdatedAt: at(1)},
	}
	remove := []string{"gone"}
	ev := event("m1", "ev", 1)
	recipients := []Recipient{{Name: "crm", FirstSent: at(1), LastSent: at(2)}}
	u := Update{Set: set, Remove: remove, MessageID: "m1", Event: ev, Metadata: Metadata{Version: 2, Recipients: recipients}}
	// What must be stored, built apart so that it shares nothing with the above.
	wantMeta := Metadata{Version: 2, Recipients: []Recipient{{Name: "crm", FirstSent: at(1), LastSent: at(2)}}}
	want := map[identity.ProfileID]stored{pidA: {
		Profile: &Profile{ID: pidA, Metadata: wantMeta, Traits: map[string]Trait{
			"m":    {Value: map[string]any{"k": "v", "l": []any{"x", map[string]any{"deep": 1.0}}}, Source: "s", UpdatedAt: at(1)},
			"s":    {Value: "str", Source: "s", UpdatedAt: at(1)},
			"kept": {Value: "k"},
		}},
		Meta:   wantMeta,
		Events: []Event{*event("m1", "ev", 1)},
	}}

	mutateInput := func(tag string) {
		recipients[0].Name = tag
		set["m"].Value.(map[string]any)["k"] = tag
		set["m"].Value.(map[string]any)["l"].([]any)[0] = tag
		set["m"].Value.(map[string]any)["l"].([]any)[1].(map[string]any)["deep"] = tag
		set["s"] = Trait{Value: tag}
		set[tag] = Trait{Value: tag}
		remove[0] = "kept"
		ev.Name = tag
		ev.Timestamp = at(99)
		ev.Properties["id"] = tag
		ev.Properties["nested"].(map[string]any)["sec"] = tag
		ev.Properties[tag] = tag
	}

	tx := openTx(t, s)
	if err := tx.Update(ctx, pidA, u); err != nil {
		t.Fatal(err)
	}
	mutateInput("after Update")
	// What the transaction hands out is a copy too, even of its staged writes.
	p, err := tx.Get(ctx, pidA)
	if err != nil {
		t.Fatal(err)
	}
	p.Traits["m"].Value.(map[string]any)["k"] = "changed via tx.Get"
	p.Traits["x"] = Trait{Value: "added via tx.Get"}
	p.Metadata.Recipients[0].Name = "changed via tx.Get"
	if m, err := tx.Metadata(ctx, pidA); err == nil {
		m.Recipients[0].Name = "changed via tx.Metadata"
	}
	page, err := tx.Events(ctx, pidA, EventQuery{})
	if err != nil {
		t.Fatal(err)
	}
	page.Events[0].Properties["nested"].(map[string]any)["sec"] = "changed via tx.Events"
	if diff := cmp.Diff(want, dump(t, tx, pidA)); diff != "" {
		t.Errorf("transaction view after mutations (-want +got):\n%s", diff)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	mutateInput("after Commit")
	if diff := cmp.Diff(want, dump(t, s, pidA)); diff != "" {
		t.Errorf("stored after mutating the input (-want +got):\n%s", diff)
	}

	// What the store hands out is the caller's to change.
	p, err = s.Get(ctx, pidA)
	if err != nil {
		t.Fatal(err)
	}
	p.Traits["m"].Value.(map[string]any)["k"] = "changed via Get"
	p.Traits["m"].Value.(map[string]any)["l"].([]any)[1].(map[string]any)["deep"] = "changed via Get"
	delete(p.Traits, "s")
	p.Metadata.Version = 100
	p.Metadata.Recipients[0].Name = "changed via Get"
	if m, err := s.Metadata(ctx, pidA); err == nil {
		m.Recipients[0].Name = "changed via Metadata"
	}
	page, err = s.Events(ctx, pidA, EventQuery{})
	if err != nil {
		t.Fatal(err)
	}
	page.Events[0].Properties["nested"].(map[string]any)["sec"] = "changed via Events"
	page.Events[0].Properties["added"] = true
	page.Events[0].Name = "changed via Events"
	if diff := cmp.Diff(want, dump(t, s, pidA)); diff != "" {
		t.Errorf("stored after mutating what reads returned (-want +got):\n%s", diff)
	}
}

// redoSetup returns a store with profiles A and B, each with traits and events.
func redoSetup(t *testing.T) *MemStore {
	t.Helper()
	s := NewMemStore()
	u := track(1, event("a1", "a", 1))
	u.Set = map[string]Trait{"x": {Value: 1.0, Source: "s", UpdatedAt: at(1)}, "y": {Value: "y"}}
	mustUpdate(t, s, pidA, u)
	u = track(1, event("b1", "b", 2))
	u.Set = map[string]Trait{"z": {Value: []any{"z"}}}
	mustUpdate(t, s, pidB, u)
	return s
}

func TestMemStoreIdempotentRedo(t *testing.T) {
	ctx := t.Context()
	redo := Update{
		Metadata: Metadata{Version: 2, UpdatedAt: at(5)},
		Set:      map[string]Trait{"x": {Value: 2.0, Source: "s", UpdatedAt: at(5)}, "w": {Value: map[string]any{"k": "v"}}},
		Remove:   []string{"y"},
	}
	writes := map[string]func(tx Tx) error{
		"Update": func(tx Tx) error { return tx.Update(ctx, pidA, redo) },
		"Merge":  func(tx Tx) error { return tx.Merge(ctx, pidA, pidB) },
		"Delete": func(tx Tx) error { return tx.Delete(ctx, pidA) },
	}
	for name, write := range writes {
		t.Run(name, func(t *testing.T) {
			once := redoSetup(t)
			inTx(t, once, write)
			want := dump(t, once, pidA, pidB)
			if diff := cmp.Diff(dump(t, redoSetup(t), pidA, pidB), want); diff == "" {
				t.Fatal("the write changed nothing; the test proves nothing")
			}

			twice := redoSetup(t)
			inTx(t, twice, write)
			inTx(t, twice, write)
			if diff := cmp.Diff(want, dump(t, twice, pidA, pidB)); diff != "" {
				t.Errorf("applied in two transactions (-once +twice):\n%s", diff)
			}

			sameTx := redoSetup(t)
			inTx(t, sameTx, func(tx Tx) error {
				if err := write(tx); err != nil {
					return err
				}
				return write(tx)
			})
			if diff := cmp.Diff(want, dump(t, sameTx, pidA, pidB)); diff != "" {
				t.Errorf("applied twice in one transaction (-once +twice):\n%s", diff)
			}
		})
	}
	t.Run("Update with MessageID", func(t *testing.T) {
		s := redoSetup(t)
		u := redo
		u.MessageID = "r1"
		inTx(t, s, func(tx Tx) error { return tx.Update(ctx, pidA, u) })
		want := dump(t, s, pidA, pidB)
		if err := update(t, s, pidA, u); !errors.Is(err, ErrDuplicate) {
			t.Errorf("redo of an Update with a MessageID: %v, want ErrDuplicate", err)
		}
		if diff := cmp.Diff(want, dump(t, s, pidA, pidB)); diff != "" {
			t.Errorf("redo changed the store (-once +twice):\n%s", diff)
		}
	})
}

func TestMemStoreIDs(t *testing.T) {
	ctx := t.Context()
	s := NewMemStore()
	if ids, err := s.IDs(ctx, "", 10); err != nil || len(ids) != 0 {
		t.Errorf("IDs of an empty store = %v, %v; want none", ids, err)
	}
	var want []identity.ProfileID
	for _, i := range []int{17, 3, 9, 1, 12, 20, 5, 8, 2, 14, 11} {
		mustUpdate(t, s, pidN(i), Update{})
		want = append(want, pidN(i))
	}
	slices.Sort(want)
	walk := func(limit int) []identity.ProfileID {
		var got []identity.ProfileID
		var after identity.ProfileID
		for pages := 0; pages <= len(want)+1; pages++ {
			ids, err := s.IDs(ctx, after, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(ids) > limit {
				t.Fatalf("%d ids, more than the limit %d", len(ids), limit)
			}
			got = append(got, ids...)
			if len(ids) < limit {
				return got
			}
			after = ids[len(ids)-1]
		}
		t.Fatal("IDs does not advance")
		return nil
	}
	for _, limit := range []int{1, 3, 11, 100} {
		if diff := cmp.Diff(want, walk(limit)); diff != "" {
			t.Errorf("limit %d (-want +got):\n%s", limit, diff)
		}
	}
	// A scan from the start sees deletions and merges.
	inTx(t, s, func(tx Tx) error {
		if err := tx.Delete(ctx, pidN(9)); err != nil {
			return err
		}
		return tx.Merge(ctx, pidN(1), pidN(20))
	})
	want = slices.DeleteFunc(want, func(p identity.ProfileID) bool { return p == pidN(9) || p == pidN(20) })
	if diff := cmp.Diff(want, walk(4)); diff != "" {
		t.Errorf("after Delete and Merge (-want +got):\n%s", diff)
	}
	for _, limit := range []int{0, -1} {
		if _, err := s.IDs(ctx, "", limit); !errors.Is(err, ErrInvalid) {
			t.Errorf("limit %d: %v, want ErrInvalid", limit, err)
		}
	}
}

func TestMemStoreConcurrent(t *testing.T) {
	const (
		writers     = 8
		perWriter   = 4  // profiles per writer
		updates     = 15 // updates per profile
		readers     = 4
		readerLoops = 200
	)
	ctx := t.Context()
	s := NewMemStore()
	pid := func(w, p int) identity.ProfileID { return pidN(1000 + w*perWriter + p) }

	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range updates {
				for p := range perWriter {
					tx, err := s.Begin(ctx)
					if err != nil {
						t.Error(err)
						return
					}
					u := track(uint64(i+1), event(fmt.Sprintf("w%d-p%d-%d", w, p, i), "ev", i))
					u.Set = map[string]Trait{"count": {Value: float64(i)}, fmt.Sprint("t", i): {Value: true}}
					if err := tx.Update(ctx, pid(w, p), u); err != nil {
						t.Error(err)
					}
					// Read its own write, then redo the message: a duplicate.
					if m, err := tx.Metadata(ctx, pid(w, p)); err != nil || m.Version != uint64(i+1) {
						t.Errorf("tx.Metadata = %+v, %v; want version %d", m, err, i+1)
					}
					if err := tx.Update(ctx, pid(w, p), u); !errors.Is(err, ErrDuplicate) {
						t.Errorf("redo in the transaction: %v, want ErrDuplicate", err)
					}
					if i%5 == 4 { // now and then, abandon one and redo it
						tx.Rollback(ctx)
						if tx, err = s.Begin(ctx); err != nil {
							t.Error(err)
							return
						}
						if err := tx.Update(ctx, pid(w, p), u); err != nil {
							t.Error(err)
						}
					}
					if err := tx.Commit(ctx); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range readerLoops {
				target := pid((r+i)%writers, i%perWriter)
				p, err := s.Get(ctx, target)
				switch {
				case errors.Is(err, ErrNotFound):
				case err != nil:
					t.Error(err)
				default:
					// A commit is atomic: the count trait and the version agree.
					if c, ok := p.Traits["count"].Value.(float64); !ok || uint64(c)+1 != p.Metadata.Version {
						t.Errorf("torn read: count %v, version %d", p.Traits["count"].Value, p.Metadata.Version)
					}
				}
				if _, err := s.Events(ctx, target, EventQuery{Sort: Asc, Limit: 5}); err != nil && !errors.Is(err, ErrNotFound) {
					t.Error(err)
				}
				if _, err := s.IDs(ctx, "", 3); err != nil {
					t.Error(err)
				}
				tx, err := s.Begin(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := tx.Metadata(ctx, target); err != nil && !errors.Is(err, ErrNotFound) {
					t.Error(err)
				}
				tx.Rollback(ctx)
			}
		}()
	}
	wg.Wait()

	if got := s.Len(); got != writers*perWriter {
		t.Errorf("Len = %d, want %d", got, writers*perWriter)
	}
	for w := range writers {
		for p := range perWriter {
			prof, err := s.Get(ctx, pid(w, p))
			if err != nil {
				t.Fatal(err)
			}
			if prof.Metadata.Version != updates || prof.Traits["count"].Value != float64(updates-1) || len(prof.Traits) != updates+1 {
				t.Errorf("%s: version %d, count %v, %d traits; want %d, %d, %d", pid(w, p),
					prof.Metadata.Version, prof.Traits["count"].Value, len(prof.Traits), updates, updates-1, updates+1)
			}
			evs := allEvents(t, s, pid(w, p), EventQuery{Sort: Asc, Limit: 4})
			if len(evs) != updates {
				t.Errorf("%s: %d events, want %d", pid(w, p), len(evs), updates)
			}
			for i, e := range evs {
				if want := fmt.Sprintf("w%d-p%d-%d", w, p, i); e.MessageID != want {
					t.Errorf("%s: event %d is %s, want %s", pid(w, p), i, e.MessageID, want)
				}
			}
		}
	}
}

// An event must carry its update's message id: events are unique per profile by
// message id, which paging and replay rely on.
func TestMemStoreRefusesEventsWithoutTheMessageID(t *testing.T) {
	ctx := t.Context()
	s := NewMemStore()
	tx := openTx(t, s)
	for _, u := range []Update{
		{Event: &Event{Name: "E", Timestamp: t0}},
		{MessageID: "m1", Event: &Event{Name: "E", Timestamp: t0}},
		{MessageID: "m1", Event: &Event{MessageID: "m2", Name: "E", Timestamp: t0}},
	} {
		if err := tx.Update(ctx, pidA, u); !errors.Is(err, ErrInvalid) {
			t.Errorf("Update(%+v) = %v, want ErrInvalid", u, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Len() != 0 {
		t.Fatalf("refused updates created %d profiles", s.Len())
	}
}

func TestMemTxPickTraits(t *testing.T) {
	ctx := t.Context()
	s := NewMemStore()
	mustUpdate(t, s, pidA, Update{Set: map[string]Trait{"plan": {Value: "pro"}, "tags": {Value: []any{"a"}}}})
	tx := openTx(t, s)
	got, err := tx.(TraitPicker).PickTraits(ctx, pidA, []string{"tags", "missing", "plan"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]any{[]any{"a"}, nil, "pro"}, got); diff != "" {
		t.Errorf("picked (-want +got):\n%s", diff)
	}
	got[0].([]any)[0] = "changed" // the caller's own
	again, _ := tx.(TraitPicker).PickTraits(ctx, pidA, []string{"tags"}, nil)
	if again[0].([]any)[0] != "a" {
		t.Error("PickTraits handed out the store's memory")
	}
	if _, err := tx.(TraitPicker).PickTraits(ctx, pidB, []string{"plan"}, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown profile: %v, want ErrNotFound", err)
	}
	// The transaction's own writes are seen.
	if err := tx.Update(ctx, pidA, Update{Set: map[string]Trait{"plan": {Value: "free"}}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := tx.(TraitPicker).PickTraits(ctx, pidA, []string{"plan"}, nil); got[0] != "free" {
		t.Errorf("after a staged update, plan = %v, want free", got[0])
	}
}

// TestMemStoreContextsFollowTheirEvents: a store keeps each event's context
// beside the event, so an event stored out of order, one without a context
// among others with one, a merge and a prune must each leave every event
// with its own context and no other's.
func TestMemStoreContextsFollowTheirEvents(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		t.Run(fmt.Sprintf("sealed=%v", sealed), func(t *testing.T) {
			ctx := t.Context()
			s := NewMemStore()
			if sealed {
				s = NewSealedMemStore()
			}
			// Each event's context names it; m1 and m4 have none. The first
			// event stored has none, and the others come out of order.
			withContext := func(version uint64, id string, sec int, has bool) Update {
				e := event(id, "e", sec)
				if has {
					e.Context = map[string]any{"of": id}
				}
				return track(version, e)
			}
			mustUpdate(t, s, pidA, withContext(1, "m1", 10, false))
			mustUpdate(t, s, pidA, withContext(2, "m3", 30, true))
			mustUpdate(t, s, pidA, withContext(3, "m2", 20, true))
			mustUpdate(t, s, pidA, withContext(4, "m0", 5, true))
			mustUpdate(t, s, pidB, withContext(1, "m5", 25, true))
			mustUpdate(t, s, pidB, withContext(2, "m4", 15, false))
			mustUpdate(t, s, pidB, withContext(3, "m6", 2, true))
			inTx(t, s, func(tx Tx) error { return tx.Merge(ctx, pidA, pidB) })
			check := func(want ...string) {
				t.Helper()
				evs := allEvents(t, s, pidA, EventQuery{Sort: Asc})
				if got := messageIDs(evs); !slices.Equal(got, want) {
					t.Fatalf("events %v; want %v", got, want)
				}
				for _, e := range evs {
					var want map[string]any
					if e.MessageID != "m1" && e.MessageID != "m4" {
						want = map[string]any{"of": e.MessageID}
					}
					if diffValue(want, e.Context) != "" {
						t.Errorf("event %s has context %v; want %v", e.MessageID, e.Context, want)
					}
				}
			}
			check("m6", "m0", "m1", "m4", "m2", "m5", "m3")
			// ReceivedAt is Timestamp + 1000 s: a cutoff at 1,016 s drops
			// m6, m0, m1 and m4 (received at 1,002 to 1,015 s).
			inTx(t, s, func(tx Tx) error {
				_, err := tx.(EventPruner).PruneEvents(ctx, []identity.ProfileID{pidA}, Cutoffs{Before: at(1016)})
				return err
			})
			check("m2", "m5", "m3")
		})
	}
}

// TestMemStoreNewProfileTraitsSurviveLaterWrites holds the store to keeping
// a new profile's traits as committed, now that Commit lets a profile it
// makes keep the staged op's trait map: the transaction's views before the
// commit must lend nothing, a later write in the same transaction adds to
// the map, the caller's map stays the caller's, and a later transaction
// that rolls back leaves the profile as it was.
func TestMemStoreNewProfileTraitsSurviveLaterWrites(t *testing.T) {
	ctx := t.Context()
	s := NewMemStore()
	first := map[string]Trait{"plan": {Value: "pro", UpdatedAt: at(1)}, "age": {Value: 41.0, UpdatedAt: at(1)}}
	tx := openTx(t, s)
	if err := tx.Update(ctx, pidA, Update{Set: first}); err != nil {
		t.Fatal(err)
	}
	// A view applies the staged op to a copy; the read's traits are the
	// reader's to change.
	seen, err := tx.Get(ctx, pidA)
	if err != nil {
		t.Fatal(err)
	}
	seen.Traits["plan"] = Trait{Value: "changed by the reader"}
	if err := tx.Update(ctx, pidA, Update{Set: map[string]Trait{"email": {Value: "p@example.com", UpdatedAt: at(2)}}, Remove: []string{"age"}}); err != nil {
		t.Fatal(err)
	}
	first["plan"] = Trait{Value: "changed by the caller"}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]Trait{"plan": {Value: "pro", UpdatedAt: at(1)}, "email": {Value: "p@example.com", UpdatedAt: at(2)}}
	got, err := s.Get(ctx, pidA)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got.Traits); diff != "" {
		t.Errorf("traits after the commit (-want +got):\n%s", diff)
	}

	later := openTx(t, s)
	if err := later.Update(ctx, pidA, Update{Set: map[string]Trait{"plan": {Value: "free", UpdatedAt: at(3)}}, Remove: []string{"email"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := later.Get(ctx, pidA); err != nil {
		t.Fatal(err)
	}
	if err := later.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err = s.Get(ctx, pidA); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got.Traits); diff != "" {
		t.Errorf("traits after a rolled back write (-want +got):\n%s", diff)
	}
}

// TestMemTxEndedLeavesTheNextTransactionAlone holds the reuse of a
// transaction's room for its first op: once a transaction ended, the next
// one may hold that room, and calls on the ended one must neither write
// through it nor clear what the next one staged.
func TestMemTxEndedLeavesTheNextTransactionAlone(t *testing.T) {
	ctx := t.Context()
	for _, end := range []string{"commit", "rollback"} {
		t.Run(end, func(t *testing.T) {
			s := NewMemStore()
			for round := range 50 { // the pool may hand out a fresh room: try more than once
				old := openTx(t, s)
				if err := old.Update(ctx, pidA, track(1, event(fmt.Sprint("a", round), "a", round))); err != nil {
					t.Fatal(err)
				}
				var err error
				if end == "commit" {
					err = old.Commit(ctx)
				} else {
					err = old.Rollback(ctx)
				}
				if err != nil {
					t.Fatal(err)
				}
				next := openTx(t, s)
				b := track(1, event(fmt.Sprint("b", round), "b", round))
				if err := next.Update(ctx, pidB, b); err != nil {
					t.Fatal(err)
				}
				if err := old.Update(ctx, pidC, track(1, event(fmt.Sprint("c", round), "c", round))); !errors.Is(err, ErrTxDone) {
					t.Fatalf("Update on an ended transaction: %v, want ErrTxDone", err)
				}
				if err := old.Rollback(ctx); err != nil {
					t.Fatalf("Rollback on an ended transaction: %v", err)
				}
				if err := next.Commit(ctx); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Get(ctx, pidC); !errors.Is(err, ErrNotFound) {
					t.Fatalf("the ended transaction's write reached the store: Get(pidC) = %v", err)
				}
				page, err := s.Events(ctx, pidB, EventQuery{Limit: MaxLimit})
				if err != nil {
					t.Fatal(err)
				}
				if n := len(page.Events); n != round+1 || !slices.ContainsFunc(page.Events, func(e Event) bool { return e.MessageID == b.MessageID }) {
					t.Fatalf("round %d: profile B holds %d events, want %d with %s", round, n, round+1, b.MessageID)
				}
			}
		})
	}
}

// TestHandedOverTraitsAreTheStoresOwn: a store that keeps a map given to it
// (TraitsTaker) still copies the values in it that are maps or
// slices, which the caller may hold and change; and a store that made the
// profile holds the traits the Update set.
func TestHandedOverTraitsAreTheStoresOwn(t *testing.T) {
	ctx := t.Context()
	for name, s := range map[string]Store{"clear": NewMemStore(), "sealed": NewSealedMemStore()} {
		t.Run(name, func(t *testing.T) {
			address := map[string]any{"zip": "75001", "lines": []any{"1 rue de Rivoli"}}
			tags := []any{"vip"}
			u := Update{Set: map[string]Trait{"plan": {Value: "pro", UpdatedAt: at(1)}, "address": {Value: address, UpdatedAt: at(1)},
				"tags": {Value: tags, UpdatedAt: at(1)}}}
			tx := openTx(t, s)
			taker, ok := tx.(TraitsTaker)
			if !ok {
				t.Fatalf("%T is not a TraitsTaker", tx)
			}
			if err := taker.UpdateTakingSet(ctx, pidA, u); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			address["zip"] = "changed by the caller"
			address["lines"].([]any)[0] = "changed by the caller"
			tags[0] = "changed by the caller"
			got, err := s.Get(ctx, pidA)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]Trait{"plan": {Value: "pro", UpdatedAt: at(1)},
				"address": {Value: map[string]any{"zip": "75001", "lines": []any{"1 rue de Rivoli"}}, UpdatedAt: at(1)},
				"tags":    {Value: []any{"vip"}, UpdatedAt: at(1)}}
			if diff := cmp.Diff(want, got.Traits); diff != "" {
				t.Errorf("traits after the caller changed its values (-want +got):\n%s", diff)
			}
		})
	}
}
