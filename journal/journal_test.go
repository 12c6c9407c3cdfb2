package journal

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func hash(b byte) identity.Hash {
	var h identity.Hash
	for i := range h {
		h[i] = b
	}
	return h
}

// fullEntry returns an entry with every field set, nested values included.
func fullEntry(id string) *Entry {
	return &Entry{
		ID:     id,
		Type:   "RECTIFY",
		Status: StatusRunning,
		Reason: "none yet",
		Subjects: []identity.ID{
			{Type: "email", Value: "ann@example.com"},
			{Type: "user_id", Value: "42"},
		},
		SubjectHashes: []identity.Hash{hash(1), hash(2)},
		Traits: map[string]any{
			"name":    "Ann",
			"gone":    nil,
			"address": map[string]any{"city": "Lyon", "zip": "69001"},
			"tags":    []any{"a", map[string]any{"b": "c"}},
		},
		Received:        t0,
		Due:             t0.Add(30 * 24 * time.Hour),
		Finished:        t0.Add(time.Hour),
		ExtensionReason: "complex",
		Decided:         true,
		Decision: Decision{
			Delete:             []identity.ProfileID{"use_a", "use_b"},
			Suppress:           []identity.Hash{hash(3)},
			Unsuppress:         []identity.Hash{hash(4)},
			SuppressProfiles:   []identity.ProfileID{"use_c"},
			UnsuppressProfiles: []identity.ProfileID{"use_d"},
			Rectify: []Rectification{{
				Profile: "use_a",
				Update: profile.Update{
					Metadata: profile.Metadata{Version: 3, UpdatedAt: t0},
					Set: map[string]profile.Trait{
						"name":    {Value: "Ann", Source: profile.SourceRectification, UpdatedAt: t0},
						"address": {Value: map[string]any{"city": "Lyon"}, Source: profile.SourceRectification, UpdatedAt: t0},
					},
					Remove:    []string{"gone"},
					MessageID: "m1",
					Event: &profile.Event{
						MessageID:  "m1",
						Name:       "rectified",
						Properties: map[string]any{"k": map[string]any{"n": "v"}},
					},
				},
			}},
			Forward: []Deletion{{
				Profile: "use_a",
				IDs:     []identity.ID{{Type: "email", Value: "ann@example.com"}},
			}},
		},
		Backends:       []Outcome{{Name: "profiles", Status: "DONE", Finished: t0}},
		Destinations:   []Outcome{{Name: "crm", Status: "FAILED", Err: "timeout"}},
		ProfileVersion: 3,
		Owner:          "host-1",
		Claim:          2,
		LeaseUntil:     t0.Add(time.Minute),
		AuditOwed:      []AuditNote{{At: t0, Action: "decided", Status: StatusRunning, Detail: "d"}},
	}
}

func mustPut(t *testing.T, j *MemJournal, es ...*Entry) {
	t.Helper()
	for _, e := range es {
		if err := j.Put(context.Background(), e); err != nil {
			t.Fatalf("Put(%q): %v", e.ID, err)
		}
	}
}

func mustGet(t *testing.T, j *MemJournal, id string) *Entry {
	t.Helper()
	e, err := j.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%q): %v", id, err)
	}
	return e
}

func ids(es []*Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

func TestPutGet(t *testing.T) {
	tests := []struct {
		name  string
		entry *Entry
	}{
		{"full", fullEntry("r1")},
		{"minimal", &Entry{ID: "r2", Type: "ACCESS", Status: StatusInitialized, Received: t0}},
		{"empty but not nil", &Entry{ID: "r3", Subjects: []identity.ID{}, Traits: map[string]any{}, Decision: Decision{Delete: []identity.ProfileID{}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := NewMemJournal()
			mustPut(t, j, tt.entry)
			got := mustGet(t, j, tt.entry.ID)
			if diff := cmp.Diff(tt.entry, got); diff != "" {
				t.Errorf("Get after Put (-put +got):\n%s", diff)
			}
			if got == tt.entry {
				t.Error("Get returned the pointer that was Put")
			}
		})
	}
}

func TestPutWithoutID(t *testing.T) {
	j := NewMemJournal()
	e := fullEntry("")
	if err := j.Put(context.Background(), e); !errors.Is(err, ErrInvalid) {
		t.Errorf("Put without ID = %v, want ErrInvalid", err)
	}
	page, err := j.List(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Entries) != 0 {
		t.Errorf("List after a refused Put holds %q", ids(page.Entries))
	}
	if _, err := j.Get(context.Background(), ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(\"\") = %v, want ErrNotFound", err)
	}
}

func TestGetUnknown(t *testing.T) {
	j := NewMemJournal()
	mustPut(t, j, fullEntry("r1"))
	e, err := j.Get(context.Background(), "r2")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(unknown) = %v, want ErrNotFound", err)
	}
	if e != nil {
		t.Errorf("Get(unknown) returned an entry %+v", e)
	}
}

// TestCopyAtBoundary checks that the journal shares no memory with its callers:
// changing an entry after Put, or one that Get, List or Unfinished returned,
// never changes what is stored.
func TestCopyAtBoundary(t *testing.T) {
	ctx := context.Background()
	mutations := []struct {
		name   string
		mutate func(e *Entry)
	}{
		{"scalar fields", func(e *Entry) { e.Status, e.Received, e.Decided = "FAILED", t0.Add(time.Hour), false }},
		{"Subjects", func(e *Entry) { e.Subjects[0].Value = "eve@example.com" }},
		{"SubjectHashes", func(e *Entry) { e.SubjectHashes[0] = hash(9) }},
		{"Traits key", func(e *Entry) { e.Traits["name"] = "Eve"; delete(e.Traits, "gone") }},
		{"Traits nested map", func(e *Entry) { e.Traits["address"].(map[string]any)["city"] = "Paris" }},
		{"Traits nested slice", func(e *Entry) {
			tags := e.Traits["tags"].([]any)
			tags[0] = "z"
			tags[1].(map[string]any)["b"] = "x"
		}},
		{"Decision.Delete", func(e *Entry) { e.Decision.Delete[0] = "use_x" }},
		{"Decision.Suppress", func(e *Entry) { e.Decision.Suppress[0] = hash(9) }},
		{"Decision.Unsuppress", func(e *Entry) { e.Decision.Unsuppress[0] = hash(9) }},
		{"Decision.SuppressProfiles", func(e *Entry) { e.Decision.SuppressProfiles[0] = "use_x" }},
		{"Decision.UnsuppressProfiles", func(e *Entry) { e.Decision.UnsuppressProfiles[0] = "use_x" }},
		{"Decision.Rectify profile", func(e *Entry) { e.Decision.Rectify[0].Profile = "use_x" }},
		{"Decision.Rectify Set", func(e *Entry) {
			e.Decision.Rectify[0].Update.Set["name"] = profile.Trait{Value: "Eve"}
		}},
		{"Decision.Rectify Set nested value", func(e *Entry) {
			e.Decision.Rectify[0].Update.Set["address"].Value.(map[string]any)["city"] = "Paris"
		}},
		{"Decision.Rectify Remove", func(e *Entry) { e.Decision.Rectify[0].Update.Remove[0] = "name" }},
		{"Decision.Rectify Event", func(e *Entry) {
			ev := e.Decision.Rectify[0].Update.Event
			ev.Name = "changed"
			ev.Properties["k"].(map[string]any)["n"] = "changed"
		}},
		{"Decision.Forward", func(e *Entry) { e.Decision.Forward[0].Profile = "use_x" }},
		{"Decision.Forward IDs", func(e *Entry) { e.Decision.Forward[0].IDs[0].Value = "eve@example.com" }},
		{"Backends", func(e *Entry) { e.Backends[0].Status = "FAILED" }},
		{"Destinations", func(e *Entry) { e.Destinations[0].Err = "" }},
		{"appending to slices", func(e *Entry) {
			// Appending within capacity must not reach the stored arrays either.
			e.Subjects = append(e.Subjects[:1], identity.ID{Type: "email", Value: "x@y.z"})
			e.Decision.Delete = append(e.Decision.Delete[:0], "use_x")
		}},
	}
	sources := []struct {
		name string
		// get puts fullEntry("r1") in j and returns an entry the caller holds.
		get func(t *testing.T, j *MemJournal) *Entry
	}{
		{"after Put", func(t *testing.T, j *MemJournal) *Entry {
			e := fullEntry("r1")
			mustPut(t, j, e)
			return e
		}},
		{"from Get", func(t *testing.T, j *MemJournal) *Entry {
			mustPut(t, j, fullEntry("r1"))
			return mustGet(t, j, "r1")
		}},
		{"from List", func(t *testing.T, j *MemJournal) *Entry {
			mustPut(t, j, fullEntry("r1"))
			page, err := j.List(ctx, Filter{})
			if err != nil || len(page.Entries) != 1 {
				t.Fatalf("List = %v, %v, want one entry", page, err)
			}
			return page.Entries[0]
		}},
		{"from Unfinished", func(t *testing.T, j *MemJournal) *Entry {
			mustPut(t, j, fullEntry("r1"))
			es, err := j.Unfinished(ctx)
			if err != nil || len(es) != 1 {
				t.Fatalf("Unfinished = %v, %v, want one entry", es, err)
			}
			return es[0]
		}},
	}
	for _, src := range sources {
		for _, m := range mutations {
			t.Run(src.name+"/"+m.name, func(t *testing.T) {
				j := NewMemJournal()
				e := src.get(t, j)
				m.mutate(e)
				want := fullEntry("r1")
				want.Version = 1 // set by the Put
				if diff := cmp.Diff(want, mustGet(t, j, "r1")); diff != "" {
					t.Errorf("stored entry changed (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestCloneIsDeep(t *testing.T) {
	e := fullEntry("r1")
	c := e.Clone()
	if diff := cmp.Diff(e, c); diff != "" {
		t.Fatalf("Clone differs (-orig +clone):\n%s", diff)
	}
	c.Decision.Rectify[0].Update.Event.Properties["k"] = nil
	c.Scrub()
	c.Backends[0].Name = "x"
	c.AuditOwed[0].Action = "x"
	if c.Decision.Rectify[0].Update.Event != nil {
		t.Error("Scrub kept the rectification's event")
	}
	if diff := cmp.Diff(fullEntry("r1"), e); diff != "" {
		t.Errorf("changing the clone changed the original (-want +got):\n%s", diff)
	}
}

// TestPutReplaces checks that Put replaces the entry with the same ID, in Get,
// List and Unfinished, without duplicating it, and keeps List's order when the
// replacement moves Received.
func TestPutReplaces(t *testing.T) {
	ctx := context.Background()
	j := NewMemJournal()
	for i, id := range []string{"a", "b", "c"} {
		mustPut(t, j, &Entry{ID: id, Type: "ACCESS", Status: StatusRunning, Received: t0.Add(time.Duration(i) * time.Minute)})
	}
	repl := &Entry{ID: "a", Type: "ERASE", Status: "COMPLETED", Reason: "done", Received: t0.Add(10 * time.Minute)}
	mustPut(t, j, repl)
	if diff := cmp.Diff(repl, mustGet(t, j, "a")); diff != "" {
		t.Errorf("Get after replacing (-want +got):\n%s", diff)
	}
	page, err := j.List(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a", "c", "b"}, ids(page.Entries)); diff != "" {
		t.Errorf("List after replacing (-want +got):\n%s", diff)
	}
	un, err := j.Unfinished(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"b", "c"}, ids(un)); diff != "" {
		t.Errorf("Unfinished after replacing (-want +got):\n%s", diff)
	}
	// The order stays right for later inserts too.
	mustPut(t, j, &Entry{ID: "d", Received: t0.Add(5 * time.Minute)})
	mustPut(t, j, &Entry{ID: "c", Received: t0.Add(-time.Minute)})
	page, err = j.List(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a", "d", "b", "c"}, ids(page.Entries)); diff != "" {
		t.Errorf("List after more puts (-want +got):\n%s", diff)
	}
}

// orderedEntries returns n entries in the order List must return them: newest
// first by (Received, ID), with ties on Received broken by ID.
func orderedEntries(n int) []*Entry {
	types := []RequestType{"ACCESS", "ERASE", "RECTIFY"}
	statuses := []Status{StatusInitialized, StatusRunning, "COMPLETED", "FAILED"}
	var es []*Entry
	for i := range n {
		es = append(es, &Entry{
			ID:       fmt.Sprintf("r%03d", i),
			Type:     types[i%len(types)],
			Status:   statuses[i%len(statuses)],
			Received: t0.Add(time.Duration(i/3) * time.Minute), // three per minute
		})
	}
	slices.Reverse(es)
	return es
}

// shuffledJournal puts copies of es, as new requests, in a journal in a
// random order.
func shuffledJournal(t *testing.T, es []*Entry, seed uint64) *MemJournal {
	t.Helper()
	j := NewMemJournal()
	shuffled := make([]*Entry, len(es))
	for i, e := range es {
		shuffled[i] = e.Clone()
		shuffled[i].Version = 0
	}
	rand.New(rand.NewPCG(seed, seed)).Shuffle(len(shuffled), func(a, b int) {
		shuffled[a], shuffled[b] = shuffled[b], shuffled[a]
	})
	mustPut(t, j, shuffled...)
	return j
}

// orderedJournal returns orderedEntries(n) and a journal holding them, put in
// the random order seed picks: the fixture of the List and Unfinished tests.
func orderedJournal(t *testing.T, n int, seed uint64) ([]*Entry, *MemJournal) {
	t.Helper()
	es := orderedEntries(n)
	return es, shuffledJournal(t, es, seed)
}

// idsKept returns the IDs of the entries of es that keep accepts (all of them
// when keep is nil), in the order of es: what a filtered List must return.
func idsKept(es []*Entry, keep func(*Entry) bool) []string {
	var kept []string
	for _, e := range es {
		if keep == nil || keep(e) {
			kept = append(kept, e.ID)
		}
	}
	return kept
}

func TestListOrder(t *testing.T) {
	es := orderedEntries(30)
	// Received in another location orders by instant, not by wall clock.
	es[0].Received = es[0].Received.In(time.FixedZone("x", -5*3600))
	for seed := range uint64(5) {
		j := shuffledJournal(t, es, seed)
		page, err := j.List(context.Background(), Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(ids(es), ids(page.Entries)); diff != "" {
			t.Errorf("seed %d: List order (-want +got):\n%s", seed, diff)
		}
		if page.Next != "" {
			t.Errorf("seed %d: Next = %q on the only page", seed, page.Next)
		}
	}
}

func TestListFilters(t *testing.T) {
	es, j := orderedJournal(t, 24, 1)
	tests := []struct {
		name string
		f    Filter
		keep func(e *Entry) bool
	}{
		{"none", Filter{}, func(*Entry) bool { return true }},
		{"one type", Filter{Types: []RequestType{"ERASE"}}, func(e *Entry) bool { return e.Type == "ERASE" }},
		{"two types", Filter{Types: []RequestType{"ERASE", "ACCESS"}}, func(e *Entry) bool { return e.Type != "RECTIFY" }},
		{"one status", Filter{Statuses: []Status{"FAILED"}}, func(e *Entry) bool { return e.Status == "FAILED" }},
		{"two statuses", Filter{Statuses: []Status{StatusInitialized, StatusRunning}}, func(e *Entry) bool {
			return e.Status == StatusInitialized || e.Status == StatusRunning
		}},
		{"type and status", Filter{Types: []RequestType{"RECTIFY"}, Statuses: []Status{"COMPLETED"}}, func(e *Entry) bool {
			return e.Type == "RECTIFY" && e.Status == "COMPLETED"
		}},
		{"unknown type", Filter{Types: []RequestType{"OBJECT"}}, func(*Entry) bool { return false }},
		{"empty lists match all", Filter{Types: []RequestType{}, Statuses: []Status{}}, func(*Entry) bool { return true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := idsKept(es, tt.keep)
			page, err := j.List(context.Background(), tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, ids(page.Entries), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("List (-want +got):\n%s", diff)
			}
			if page.Next != "" {
				t.Errorf("Next = %q on the only page", page.Next)
			}
		})
	}
}

// TestListPaging pages through every entry and checks that the pages have the
// right sizes, that the last one has no Next, and that together they hold every
// matching entry once, in order.
func TestListPaging(t *testing.T) {
	es, j := orderedJournal(t, 120, 2)
	tests := []struct {
		limit   int
		filter  Filter
		keep    func(*Entry) bool
		perPage int
	}{
		{limit: 1, perPage: 1},
		{limit: 7, perPage: 7},
		{limit: 40, perPage: 40}, // divides the total: no empty last page
		{limit: 119, perPage: 119},
		{limit: 120, perPage: 120},
		{limit: 1000, perPage: 1000},
		{limit: 0, perPage: 50}, // the default
		{limit: 4, filter: Filter{Types: []RequestType{"ERASE"}}, keep: func(e *Entry) bool { return e.Type == "ERASE" }, perPage: 4},
		{limit: 3, filter: Filter{Statuses: []Status{"FAILED"}}, keep: func(e *Entry) bool { return e.Status == "FAILED" }, perPage: 3},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("limit=%d/types=%v/statuses=%v", tt.limit, tt.filter.Types, tt.filter.Statuses)
		t.Run(name, func(t *testing.T) {
			want := idsKept(es, tt.keep)
			f := tt.filter
			f.Limit = tt.limit
			var got []string
			for pages := 1; ; pages++ {
				if pages > len(es)+1 {
					t.Fatal("paging does not end")
				}
				page, err := j.List(context.Background(), f)
				if err != nil {
					t.Fatalf("page %d: %v", pages, err)
				}
				got = append(got, ids(page.Entries)...)
				if page.Next == "" {
					if len(page.Entries) == 0 && pages > 1 {
						t.Errorf("page %d is empty: the previous page should have had no Next", pages)
					}
					if len(page.Entries) > tt.perPage {
						t.Errorf("last page %d has %d entries, more than %d", pages, len(page.Entries), tt.perPage)
					}
					if wantPages := max(1, (len(want)+tt.perPage-1)/tt.perPage); pages != wantPages {
						t.Errorf("got %d pages, want %d", pages, wantPages)
					}
					break
				}
				if len(page.Entries) != tt.perPage {
					t.Errorf("page %d has %d entries, want %d", pages, len(page.Entries), tt.perPage)
				}
				f.Cursor = page.Next
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("entries over all pages (-want +got):\n%s", diff)
			}
		})
	}
}

// TestListPagingWhileWriting checks that a cursor keeps its place when entries
// are added before and after it between pages.
func TestListPagingWhileWriting(t *testing.T) {
	ctx := context.Background()
	es, j := orderedJournal(t, 10, 3)
	page, err := j.List(ctx, Filter{Limit: 4})
	if err != nil {
		t.Fatal(err)
	}
	got := ids(page.Entries)
	// A newer entry lands before the cursor, an older one after it.
	mustPut(t, j,
		&Entry{ID: "newest", Received: t0.Add(time.Hour)},
		&Entry{ID: "oldest", Received: t0.Add(-time.Hour)},
	)
	for page.Next != "" {
		page, err = j.List(ctx, Filter{Limit: 4, Cursor: page.Next})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ids(page.Entries)...)
	}
	want := append(ids(es), "oldest")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries over all pages (-want +got):\n%s", diff)
	}
}

func TestListInvalid(t *testing.T) {
	j := NewMemJournal()
	mustPut(t, j, orderedEntries(5)...)
	tests := []struct {
		name string
		f    Filter
	}{
		{"limit -1", Filter{Limit: -1}},
		{"limit 1001", Filter{Limit: 1001}},
		{"cursor not base64", Filter{Cursor: "!!not base64!!"}},
		{"cursor padded base64", Filter{Cursor: base64.URLEncoding.EncodeToString([]byte("r001"))}},
		{"cursor of no request", Filter{Cursor: base64.RawURLEncoding.EncodeToString([]byte("nope"))}},
		{"cursor in clear", Filter{Cursor: "r001"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page, err := j.List(context.Background(), tt.f)
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("List(%+v) = %v, want ErrInvalid", tt.f, err)
			}
			if len(page.Entries) != 0 || page.Next != "" {
				t.Errorf("List(%+v) returned a page %+v along with the error", tt.f, page)
			}
		})
	}
	// The cursor of an entry that exists but does not match the filter is valid.
	c := base64.RawURLEncoding.EncodeToString([]byte("r002"))
	page, err := j.List(context.Background(), Filter{Cursor: c, Types: []RequestType{"OBJECT"}})
	if err != nil || len(page.Entries) != 0 {
		t.Errorf("List with a valid cursor = %v, %v, want an empty page", ids(page.Entries), err)
	}
}

func TestUnfinished(t *testing.T) {
	es, j := orderedJournal(t, 20, 4)
	var want []string
	for _, e := range slices.Backward(es) {
		if e.Status == StatusInitialized || e.Status == StatusRunning {
			want = append(want, e.ID)
		}
	}
	if len(want) == 0 || len(want) == len(es) {
		t.Fatalf("bad fixture: %d of %d unfinished", len(want), len(es))
	}
	got, err := j.Unfinished(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, ids(got)); diff != "" {
		t.Errorf("Unfinished (-want +got):\n%s", diff)
	}
	for _, e := range got {
		if diff := cmp.Diff(mustGet(t, j, e.ID), e); diff != "" {
			t.Errorf("Unfinished entry %s (-stored +got):\n%s", e.ID, diff)
		}
	}

	empty, err := NewMemJournal().Unfinished(context.Background())
	if err != nil || len(empty) != 0 {
		t.Errorf("Unfinished of an empty journal = %v, %v", empty, err)
	}
}

func TestScrub(t *testing.T) {
	e := fullEntry("r1")
	e.Decision.Rectify = append(e.Decision.Rectify, Rectification{Profile: "use_b", Update: profile.Update{Remove: []string{"x"}},
		Traits: []string{"x"}, Held: []string{"x"}})
	e.Decision.Forward = append(e.Decision.Forward, Deletion{Profile: "use_b", IDs: []identity.ID{{Type: "user_id", Value: "7"}}})
	orig := e.Clone()
	e.Scrub()

	if e.Subjects != nil {
		t.Errorf("Subjects = %v after Scrub", e.Subjects)
	}
	if e.Traits != nil {
		t.Errorf("Traits = %v after Scrub", e.Traits)
	}
	for i, d := range e.Decision.Forward {
		if d.IDs != nil {
			t.Errorf("Forward[%d].IDs = %v after Scrub", i, d.IDs)
		}
	}
	for i, r := range e.Decision.Rectify {
		if r.Update.Set != nil || r.Update.Remove != nil || r.Update.Event != nil {
			t.Errorf("Rectify[%d] = Set %v, Remove %v, Event %v after Scrub", i, r.Update.Set, r.Update.Remove, r.Update.Event)
		}
	}
	// Everything else stays, SubjectHashes, the profiles to forward and
	// rectify, and the names of the traits rectified included.
	keep := cmp.Options{
		cmpopts.IgnoreFields(Entry{}, "Subjects", "Traits"),
		cmpopts.IgnoreFields(Deletion{}, "IDs"),
		cmpopts.IgnoreFields(profile.Update{}, "Set", "Remove", "Event"),
	}
	if diff := cmp.Diff(orig, e, keep); diff != "" {
		t.Errorf("Scrub changed what it should keep (-before +after):\n%s", diff)
	}
	if len(e.SubjectHashes) != 2 || len(e.Decision.Forward) != 2 || len(e.Decision.Rectify) != 2 {
		t.Errorf("Scrub dropped hashes or decisions: %+v", e)
	}

	// A scrubbed entry stays scrubbed through the journal, and Scrub is
	// idempotent.
	j := NewMemJournal()
	mustPut(t, j, e)
	got := mustGet(t, j, "r1")
	got.Scrub()
	if diff := cmp.Diff(e, got); diff != "" {
		t.Errorf("scrubbed entry after Put, Get and Scrub (-want +got):\n%s", diff)
	}
	if s := fmt.Sprintf("%+v", got); strings.Contains(s, "ann@example.com") || strings.Contains(s, "Lyon") {
		t.Errorf("clear personal data survived Scrub: %s", s)
	}
}

func TestListFiltersBySubject(t *testing.T) {
	ctx := context.Background()
	j := NewMemJournal()
	ada, bob := identity.Hash{1}, identity.Hash{2}
	for i, hs := range [][]identity.Hash{{ada}, {bob}, {bob, ada}, nil} {
		if err := j.Put(ctx, &Entry{ID: fmt.Sprintf("req_%d", i), Type: "DELETE_ONLY", Status: "FINISHED", SubjectHashes: hs}); err != nil {
			t.Fatal(err)
		}
	}
	page, err := j.List(ctx, Filter{Subjects: []identity.Hash{ada}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range page.Entries {
		ids = append(ids, e.ID)
	}
	if diff := cmp.Diff([]string{"req_2", "req_0"}, ids); diff != "" {
		t.Errorf("ada's requests, newest first (-want +got):\n%s", diff)
	}
}

// TestPutComparesAndSwaps: a Put of an entry read from the journal replaces
// the stored one only if nobody wrote it since; a stale copy fails with
// ErrConflict and changes nothing.
func TestPutComparesAndSwaps(t *testing.T) {
	ctx := context.Background()
	j := NewMemJournal()
	e := &Entry{ID: "r1", Type: DeleteOnly, Status: StatusRunning, Received: t0}
	mustPut(t, j, e)
	if e.Version != 1 {
		t.Fatalf("Version after the first Put = %d, want 1", e.Version)
	}
	a, b := mustGet(t, j, "r1"), mustGet(t, j, "r1")
	a.Status = StatusFinished
	mustPut(t, j, a)
	if a.Version != 2 {
		t.Errorf("Version after a second Put = %d, want 2", a.Version)
	}
	b.ExtensionReason = "stale"
	if err := j.Put(ctx, b); !errors.Is(err, ErrConflict) {
		t.Fatalf("Put of a stale copy = %v, want ErrConflict", err)
	}
	if b.Version != 1 {
		t.Errorf("a refused Put changed the writer's Version to %d", b.Version)
	}
	if got := mustGet(t, j, "r1"); got.Status != StatusFinished || got.ExtensionReason != "" || got.Version != 2 {
		t.Errorf("after a refused Put the entry is %+v; want FINISHED at version 2, no extension", got)
	}
	missing := &Entry{ID: "r2", Status: StatusRunning, Received: t0, Version: 3}
	if err := j.Put(ctx, missing); !errors.Is(err, ErrConflict) {
		t.Errorf("Put by compare-and-swap of an entry never stored = %v, want ErrConflict", err)
	}
	// Version 0 stores whatever is there: a new request.
	fresh := &Entry{ID: "r1", Status: StatusInitialized, Received: t0}
	mustPut(t, j, fresh)
	if fresh.Version != 3 {
		t.Errorf("Version after an unconditional Put over version 2 = %d, want 3", fresh.Version)
	}
}

// TestSealPersonal: what Scrub clears is sealed whole, the rest stays as it
// was, and OpenPersonal brings the entry back (values as JSON reads them);
// an entry with nothing personal seals nothing; a seal that does not open,
// or does not fit the entry, fails naming the request.
func TestSealPersonal(t *testing.T) {
	xor := func(b []byte) []byte { // a stand-in cipher: reversible, not the identity
		out := slices.Clone(b)
		for i := range out {
			out[i] ^= 0x5a
		}
		return out
	}
	open := func(b []byte) ([]byte, error) { return xor(b), nil }
	e := fullEntry("r1")
	sealed := e.Clone()
	if err := sealed.SealPersonal(xor); err != nil {
		t.Fatal(err)
	}
	scrubbed := fullEntry("r1")
	scrubbed.Scrub()
	if len(sealed.Sealed) == 0 || strings.Contains(string(sealed.Sealed), "ann@example.com") {
		t.Fatalf("Sealed = %q; want the personal data, sealed", sealed.Sealed)
	}
	withoutSeal := sealed.Clone()
	withoutSeal.Sealed = nil
	if diff := cmp.Diff(scrubbed, withoutSeal); diff != "" {
		t.Errorf("the sealed entry besides Sealed is not the scrubbed one (-want +got):\n%s", diff)
	}
	if err := sealed.OpenPersonal(open); err != nil {
		t.Fatal(err)
	}
	// As stored in a journal that encodes entries as JSON: numbers are
	// float64, times UTC.
	if diff := cmp.Diff(e, sealed); diff != "" {
		t.Errorf("opened (-want +got):\n%s", diff)
	}
	plain := &Entry{ID: "r2", Decision: Decision{Forward: []Deletion{{Profile: "use_a"}}}}
	if err := plain.SealPersonal(xor); err != nil || plain.Sealed != nil {
		t.Errorf("an entry with nothing personal: Sealed %q, %v; want none", plain.Sealed, err)
	}
	bad := fullEntry("r3")
	if err := bad.SealPersonal(xor); err != nil {
		t.Fatal(err)
	}
	if err := bad.Clone().OpenPersonal(func([]byte) ([]byte, error) { return nil, errors.New("no key") }); err == nil || !strings.Contains(err.Error(), "r3") {
		t.Errorf("OpenPersonal with a failing open = %v; want an error naming the request", err)
	}
	bad.Decision.Forward = nil
	if err := bad.OpenPersonal(open); err == nil {
		t.Error("OpenPersonal of a seal that does not fit the entry: nil error")
	}
}
