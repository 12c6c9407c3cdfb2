package storetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/profile"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var journalChecks = []check[journal.Journal]{
	{"PutGet", journalPutGet},
	{"NotFound", journalNotFound},
	{"PutReplaces", journalPutReplaces},
	{"PutIsIdempotent", journalPutIsIdempotent},
	{"PutWithoutIDIsInvalid", journalPutWithoutID},
	{"CopyAtBoundary", journalCopyAtBoundary},
	{"ListOrder", journalListOrder},
	{"ListFilters", journalListFilters},
	{"ListPaging", journalListPaging},
	{"ListDefaultLimit", journalListDefaultLimit},
	{"ListCursorSurvivesWrites", journalListCursorSurvivesWrites},
	{"Unfinished", journalUnfinished},
	{"ConcurrentWriters", journalConcurrentWriters},
	{"PutComparesAndSwaps", journalPutComparesAndSwaps},
	{"ConcurrentCompareAndSwap", journalConcurrentCompareAndSwap},
}

// diffEntries compares entries as the checks before versions did: the
// Version a journal sets is checked on its own (JournalPutComparesAndSwaps).
func diffEntries(want, got any) string {
	return diff(want, got, cmpopts.IgnoreFields(journal.Entry{}, "Version"))
}

// journalPIDs are the profiles fullEntry names.
var journalPIDs = newPIDs(2)

// fullEntry returns an entry with every field set, received at sec.
func fullEntry(id string, sec int) *journal.Entry {
	p := journalPIDs
	rectEvent := ev("rect-"+id, "Rectified", sec)
	return &journal.Entry{
		ID: id, Type: "DELETE_ONLY", Status: journal.StatusRunning, Reason: "a reason",
		Subjects:      []identity.ID{uid("ada"), email("ada@example.com")},
		SubjectHashes: []identity.Hash{hashOf("ada"), hasher.ID(email("ada@example.com"))},
		Traits: map[string]any{"plan": "free", "phone": nil, "score": 4.5,
			"address": map[string]any{"city": "Paris", "lines": []any{"1 rue", 2.0, true}}},
		Received: at(sec), Due: at(sec).AddDate(0, 1, 0), Finished: at(sec + 5),
		ExtensionReason: "a complex request",
		Decided:         true,
		Decision: journal.Decision{
			Delete:             []identity.ProfileID{p[0], p[1]},
			Suppress:           []identity.Hash{hashOf("s1"), hashOf("s2")},
			Unsuppress:         []identity.Hash{hashOf("u1")},
			SuppressProfiles:   []identity.ProfileID{p[0]},
			UnsuppressProfiles: []identity.ProfileID{p[1]},
			Rectify: []journal.Rectification{{Profile: p[0], Update: profile.Update{
				Metadata: profile.Metadata{CreatedAt: at(0), UpdatedAt: at(sec), Version: 7, FirstMessageID: "m1", LastMessageID: "m9",
					FirstSeen: at(0), LastSeen: at(sec), Recipients: []profile.Recipient{{Name: "crm", FirstSent: at(0), LastSent: at(sec)}}},
				Set:       map[string]profile.Trait{"plan": {Value: "free", Source: profile.SourceRectification, UpdatedAt: at(sec)}, "tags": {Value: []any{"a", map[string]any{"k": "v"}}, Source: "x", UpdatedAt: at(1)}},
				Remove:    []string{"phone"},
				MessageID: rectEvent.MessageID,
				Event:     rectEvent,
			}, At: at(sec + 2), Traits: []string{"phone", "plan"}, Held: []string{"plan"}}},
			Forward: []journal.Deletion{{Profile: p[0], IDs: []identity.ID{uid("ada"), anon("ada-phone")}}, {Profile: p[1]}},
		},
		Backends: []journal.Outcome{{Name: "identity", Status: "FINISHED", Finished: at(sec + 1)},
			{Name: "profiles", Status: journal.StatusRunning, Err: "injected"}},
		Destinations:   []journal.Outcome{{Name: "crm", Status: journal.StatusRunning}},
		ProfileVersion: 7,
		Owner:          "host-1",
		Claim:          3,
		LeaseUntil:     at(sec + 60),
		AuditOwed: []journal.AuditNote{{At: at(sec), Action: "received", Status: journal.StatusRunning, Note: 1},
			{At: at(sec + 1), Action: "decided", Status: journal.StatusRunning, Detail: "a detail", Note: 2}},
		AuditNotes: 2,
	}
}

// entry returns a small entry.
func entry(id string, typ journal.RequestType, status journal.Status, sec int) *journal.Entry {
	return &journal.Entry{ID: id, Type: typ, Status: status, Received: at(sec), Due: at(sec).AddDate(0, 1, 0),
		SubjectHashes: []identity.Hash{hashOf(id)}}
}

func put(t *testing.T, e *env, j journal.Journal, es ...*journal.Entry) {
	t.Helper()
	for _, x := range es {
		if err := j.Put(e.ctx, x); err != nil {
			t.Fatalf("Put(%s): %v", x.ID, err)
		}
	}
}

func get(t *testing.T, e *env, j journal.Journal, id string) *journal.Entry {
	t.Helper()
	x, err := j.Get(e.ctx, id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return x
}

// list walks every page of f and returns the ids in page order, checking
// the pages as allEvents does.
func list(t *testing.T, e *env, j journal.Journal, f journal.Filter) []string {
	t.Helper()
	limit := f.Limit
	if limit == 0 {
		limit = 50
	}
	var ids []string
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatalf("List(%+v): more than 1000 pages; the cursor does not advance", f)
		}
		page, err := j.List(e.ctx, f)
		if err != nil {
			t.Fatalf("List(%+v), page %d: %v", f, pages+1, err)
		}
		switch {
		case len(page.Entries) > limit:
			t.Fatalf("List(%+v), page %d: %d entries, more than the limit %d", f, pages+1, len(page.Entries), limit)
		case page.Next != "" && len(page.Entries) != limit:
			t.Errorf("List(%+v), page %d: %d entries and a Next; want a full page of %d", f, pages+1, len(page.Entries), limit)
		case pages > 0 && len(page.Entries) == 0:
			t.Errorf("List(%+v), page %d: empty, after a page that had a Next; the page before was the last and should have had none", f, pages+1)
		}
		for _, x := range page.Entries {
			ids = append(ids, x.ID)
		}
		if page.Next == "" {
			return ids
		}
		f.Cursor = page.Next
	}
}

func journalPutGet(t *testing.T, e *env, j journal.Journal) {
	want := fullEntry("req-1", 10)
	put(t, e, j, fullEntry("req-1", 10))
	if d := diffEntries(want, get(t, e, j, "req-1")); d != "" {
		t.Errorf("Get of a stored entry (-want +got):\n%s", d)
	}
	// A small entry, and a scrubbed one, round-trip too.
	small := entry("req-2", "SUPPRESS_ONLY", "INITIALIZED", 11)
	scrubbed := fullEntry("req-3", 12)
	scrubbed.Status = "FINISHED"
	scrubbed.Scrub()
	put(t, e, j, small, scrubbed)
	for _, want := range []*journal.Entry{small, scrubbed} {
		if d := diffEntries(want, get(t, e, j, want.ID)); d != "" {
			t.Errorf("Get(%s) (-want +got):\n%s", want.ID, d)
		}
	}
	// A scrubbed entry keeps no clear data: nil and empty are the same to the
	// suite, but nothing may come back.
	got := get(t, e, j, "req-3")
	if len(got.Subjects) != 0 || len(got.Traits) != 0 {
		t.Errorf("a scrubbed entry came back with subjects %v, traits %v", got.Subjects, got.Traits)
	}
}

func journalNotFound(t *testing.T, e *env, j journal.Journal) {
	put(t, e, j, entry("req-1", "DELETE_ONLY", "FINISHED", 1))
	if x, err := j.Get(e.ctx, "req-unknown"); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("Get of an unknown id = %+v, %v; want ErrNotFound", x, err)
	}
	if x, err := j.Get(e.ctx, "REQ-1"); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("Get(REQ-1), only req-1 stored = %+v, %v; want ErrNotFound: ids are case-sensitive", x, err)
	}
}

func journalPutReplaces(t *testing.T, e *env, j journal.Journal) {
	put(t, e, j, fullEntry("req-1", 10), entry("req-2", "SUPPRESS_ONLY", "FINISHED", 20))
	// As the Controller finishes a request: status, outcomes, scrubbed.
	done := fullEntry("req-1", 10)
	done.Status, done.Finished = "FINISHED", at(30)
	done.Destinations[0].Status = "FINISHED"
	done.Scrub()
	put(t, e, j, done)
	if d := diffEntries(done, get(t, e, j, "req-1")); d != "" {
		t.Errorf("Get after a replacing Put (-want +got):\n%s", d)
	}
	if d := diffEntries([]string{"req-2", "req-1"}, list(t, e, j, journal.Filter{})); d != "" {
		t.Errorf("List after a replacing Put (-want +got):\n%s", d)
	}
	un, err := j.Unfinished(e.ctx)
	must(t, err, "Unfinished")
	if len(un) != 0 {
		t.Errorf("Unfinished after the request finished = %d entries; want none", len(un))
	}
}

func journalPutIsIdempotent(t *testing.T, e *env, j journal.Journal) {
	x := fullEntry("req-1", 10)
	put(t, e, j, x, x, entry("req-2", "DELETE_ONLY", "RUNNING", 5))
	put(t, e, j, x)
	if d := diffEntries(fullEntry("req-1", 10), get(t, e, j, "req-1")); d != "" {
		t.Errorf("Get after the same Put three times (-want +got):\n%s", d)
	}
	if d := diffEntries([]string{"req-1", "req-2"}, list(t, e, j, journal.Filter{})); d != "" {
		t.Errorf("List after the same Put three times (-want +got):\n%s", d)
	}
	un, err := j.Unfinished(e.ctx)
	must(t, err, "Unfinished")
	var ids []string
	for _, x := range un {
		ids = append(ids, x.ID)
	}
	if d := diffEntries([]string{"req-2", "req-1"}, ids); d != "" {
		t.Errorf("Unfinished after the same Put three times (-want +got):\n%s", d)
	}
}

func journalPutWithoutID(t *testing.T, e *env, j journal.Journal) {
	if err := j.Put(e.ctx, entry("", "DELETE_ONLY", "RUNNING", 1)); !errors.Is(err, journal.ErrInvalid) {
		t.Errorf("Put of an entry without an ID = %v; want ErrInvalid", err)
	}
	if ids := list(t, e, j, journal.Filter{}); len(ids) != 0 {
		t.Errorf("List after a refused Put = %v; want nothing", ids)
	}
}

func journalCopyAtBoundary(t *testing.T, e *env, j journal.Journal) {
	scribble := func(x *journal.Entry) {
		x.Status = "SCRIBBLED"
		x.Subjects[0] = uid("scribbled")
		x.SubjectHashes[0] = hashOf("scribbled")
		x.Traits["plan"] = "scribbled"
		x.Traits["address"].(map[string]any)["lines"].([]any)[0] = "scribbled"
		d := &x.Decision
		d.Delete[0] = "use_scribbled"
		d.Suppress[0], d.Unsuppress[0] = hashOf("scribbled"), hashOf("scribbled")
		d.SuppressProfiles[0], d.UnsuppressProfiles[0] = "use_scribbled", "use_scribbled"
		u := &d.Rectify[0].Update
		u.Set["plan"] = profile.Trait{Value: "scribbled"}
		u.Set["tags"].Value.([]any)[1].(map[string]any)["k"] = "scribbled"
		u.Remove[0] = "scribbled"
		u.Event.Properties["nested"].(map[string]any)["list"].([]any)[0] = "scribbled"
		u.Event.Name = "scribbled"
		u.Metadata.Recipients[0].Name = "scribbled"
		d.Forward[0].IDs[0] = uid("scribbled")
		x.Backends[0].Status = "SCRIBBLED"
		x.Destinations[0].Err = "scribbled"
	}
	in := fullEntry("req-1", 10)
	want := fullEntry("req-1", 10) // not in.Clone(): the reference's Clone is not trusted here
	put(t, e, j, in)
	scribble(in)
	got := get(t, e, j, "req-1")
	if d := diffEntries(want, got); d != "" {
		t.Errorf("changing an entry after Put changed the stored one (-want +got):\n%s", d)
	}
	scribble(got)
	page, err := j.List(e.ctx, journal.Filter{})
	must(t, err, "List")
	scribble(page.Entries[0])
	un, err := j.Unfinished(e.ctx)
	must(t, err, "Unfinished")
	scribble(un[0])
	if d := diffEntries(want, get(t, e, j, "req-1")); d != "" {
		t.Errorf("changing entries returned by Get, List and Unfinished changed the stored one (-want +got):\n%s", d)
	}
}

func journalListOrder(t *testing.T, e *env, j journal.Journal) {
	secs := []int{30, 10, 50, 20, 40}
	for i, sec := range secs {
		put(t, e, j, entry(fmt.Sprint("req-", i), "DELETE_ONLY", "FINISHED", sec))
	}
	// Newest first, by Received.
	want := []string{"req-2", "req-4", "req-0", "req-3", "req-1"}
	if d := diffEntries(want, list(t, e, j, journal.Filter{})); d != "" {
		t.Errorf("List, newest first (-want +got):\n%s", d)
	}
	// Put again received later: it moves.
	put(t, e, j, entry("req-1", "DELETE_ONLY", "FINISHED", 60))
	want = []string{"req-1", "req-2", "req-4", "req-0", "req-3"}
	if d := diffEntries(want, list(t, e, j, journal.Filter{})); d != "" {
		t.Errorf("List after req-1 was put again, received later (-want +got):\n%s", d)
	}
}

func journalListFilters(t *testing.T, e *env, j journal.Journal) {
	types := []journal.RequestType{"DELETE_ONLY", "SUPPRESS_ONLY", "RECTIFY"}
	statuses := []journal.Status{"FINISHED", "RUNNING", "FAILED", "INVALID"}
	var all []*journal.Entry
	for i := 0; i < 24; i++ {
		x := entry(fmt.Sprintf("req-%02d", i), types[i%3], statuses[i%4], i)
		if i%5 == 0 { // one person's requests
			x.SubjectHashes = append(x.SubjectHashes, hashOf("shared"))
		}
		all = append(all, x)
	}
	put(t, e, j, all...)
	filters := []journal.Filter{
		{Types: []journal.RequestType{"RECTIFY"}},
		{Types: []journal.RequestType{"RECTIFY", "DELETE_ONLY"}},
		{Statuses: []journal.Status{"RUNNING"}},
		{Statuses: []journal.Status{"FAILED", "INVALID"}},
		{Types: []journal.RequestType{"SUPPRESS_ONLY"}, Statuses: []journal.Status{"RUNNING", "FINISHED"}},
		{Types: []journal.RequestType{"ACCESS"}},
		{Types: []journal.RequestType{"RECTIFY"}, Statuses: []journal.Status{"FINISHED"}},
		{Subjects: []identity.Hash{hashOf("req-05")}},
		{Subjects: []identity.Hash{hashOf("req-05"), hashOf("req-17"), hashOf("nobody")}},
		{Subjects: []identity.Hash{hashOf("shared")}},
		{Subjects: []identity.Hash{hashOf("shared")}, Types: []journal.RequestType{"DELETE_ONLY"}, Statuses: []journal.Status{"FINISHED", "RUNNING"}},
	}
	for _, f := range filters {
		var want []string
		for i := len(all) - 1; i >= 0; i-- {
			x := all[i]
			named := len(f.Subjects) == 0 || slices.ContainsFunc(x.SubjectHashes, func(h identity.Hash) bool { return slices.Contains(f.Subjects, h) })
			if named && (len(f.Types) == 0 || slices.Contains(f.Types, x.Type)) && (len(f.Statuses) == 0 || slices.Contains(f.Statuses, x.Status)) {
				want = append(want, x.ID)
			}
		}
		for _, limit := range []int{0, 1, 3} {
			f.Limit = limit
			if d := diffEntries(want, list(t, e, j, f)); d != "" {
				t.Errorf("List(types %v, statuses %v, %d subjects, limit %d) (-want +got):\n%s", f.Types, f.Statuses, len(f.Subjects), limit, d)
			}
		}
	}
}

func journalListPaging(t *testing.T, e *env, j journal.Journal) {
	// Out of order, some received at the same time: whatever order a backend
	// gives ties, the pages must walk it without repeats or gaps.
	order := rand.Perm(23)
	for _, i := range order {
		put(t, e, j, entry(fmt.Sprintf("req-%02d", i), "DELETE_ONLY", "FINISHED", i/2))
	}
	whole := list(t, e, j, journal.Filter{Limit: 1000})
	if len(whole) != 23 {
		t.Fatalf("List with a limit of 1000 = %d entries; want all 23", len(whole))
	}
	// Newest first.
	page, err := j.List(e.ctx, journal.Filter{Limit: 1000})
	must(t, err, "List")
	for i := 1; i < len(page.Entries); i++ {
		if page.Entries[i].Received.After(page.Entries[i-1].Received) {
			t.Errorf("List: %s (received %v) after %s (received %v); want newest first",
				page.Entries[i].ID, page.Entries[i].Received, page.Entries[i-1].ID, page.Entries[i-1].Received)
		}
	}
	for _, limit := range []int{1, 2, 5, 22, 23, 24} {
		if d := diffEntries(whole, list(t, e, j, journal.Filter{Limit: limit})); d != "" {
			t.Errorf("walking the journal %d at a time (-want the single page +got):\n%s", limit, d)
		}
	}
}

func journalListDefaultLimit(t *testing.T, e *env, j journal.Journal) {
	for i := 0; i < 53; i++ {
		put(t, e, j, entry(fmt.Sprintf("req-%02d", i), "DELETE_ONLY", "FINISHED", i))
	}
	page, err := j.List(e.ctx, journal.Filter{})
	must(t, err, "List")
	if len(page.Entries) != 50 || page.Next == "" {
		t.Fatalf("List with the zero Filter = %d entries, Next %q; want the default page of 50 and a Next", len(page.Entries), page.Next)
	}
	rest, err := j.List(e.ctx, journal.Filter{Cursor: page.Next})
	must(t, err, "List")
	if d := diffEntries([]string{"req-02", "req-01", "req-00"}, idsOf(rest.Entries)); d != "" || rest.Next != "" {
		t.Errorf("the second page (Next %q) (-want +got):\n%s", rest.Next, d)
	}
}

func idsOf(es []*journal.Entry) []string {
	var ids []string
	for _, x := range es {
		ids = append(ids, x.ID)
	}
	return ids
}

func journalListCursorSurvivesWrites(t *testing.T, e *env, j journal.Journal) {
	for i := 0; i < 10; i++ {
		put(t, e, j, entry(fmt.Sprintf("req-%02d", i), "DELETE_ONLY", "RUNNING", i))
	}
	page, err := j.List(e.ctx, journal.Filter{Limit: 3})
	must(t, err, "List")
	// New requests arrive, and one on the next page changes status.
	put(t, e, j, entry("req-10", "DELETE_ONLY", "RUNNING", 10), entry("req-11", "DELETE_ONLY", "RUNNING", 11))
	put(t, e, j, entry("req-05", "DELETE_ONLY", "FINISHED", 5))
	got := append(idsOf(page.Entries), list(t, e, j, journal.Filter{Limit: 3, Cursor: page.Next})...)
	want := []string{"req-09", "req-08", "req-07", "req-06", "req-05", "req-04", "req-03", "req-02", "req-01", "req-00"}
	if d := diffEntries(want, got); d != "" {
		t.Errorf("walk with writes between pages (-want +got):\n%s", d)
	}
}

func journalUnfinished(t *testing.T, e *env, j journal.Journal) {
	statuses := []journal.Status{journal.StatusRunning, "FINISHED", journal.StatusInitialized, "FAILED", "PARTIAL_SUCCESS", "INVALID", journal.StatusRunning}
	secs := []int{50, 10, 30, 20, 40, 60, 5}
	for i, st := range statuses {
		put(t, e, j, entry(fmt.Sprint("req-", i), "DELETE_ONLY", st, secs[i]))
	}
	un, err := j.Unfinished(e.ctx)
	must(t, err, "Unfinished")
	// Oldest first.
	if d := diffEntries([]string{"req-6", "req-2", "req-0"}, idsOf(un)); d != "" {
		t.Errorf("Unfinished (-want +got):\n%s", d)
	}
	if len(un) > 0 {
		if d := diffEntries(entry("req-6", "DELETE_ONLY", journal.StatusRunning, 5), un[0]); d != "" {
			t.Errorf("an entry from Unfinished (-want +got):\n%s", d)
		}
	}
	// Finishing one takes it off.
	put(t, e, j, entry("req-2", "DELETE_ONLY", "FINISHED", 30))
	un, err = j.Unfinished(e.ctx)
	must(t, err, "Unfinished")
	if d := diffEntries([]string{"req-6", "req-0"}, idsOf(un)); d != "" {
		t.Errorf("Unfinished after one finished (-want +got):\n%s", d)
	}
}

func journalConcurrentWriters(t *testing.T, e *env, j journal.Journal) {
	errs := parallel(writers, func(w int) error {
		for i := 0; i < txsPerWriter; i++ {
			n := w*txsPerWriter + i
			x := entry(fmt.Sprintf("req-%03d", n), "DELETE_ONLY", journal.StatusRunning, n)
			if err := j.Put(e.ctx, x); err != nil {
				return err
			}
			if _, err := j.Unfinished(e.ctx); err != nil { // readers alongside the writers
				return err
			}
			if _, err := j.List(e.ctx, journal.Filter{Limit: 5}); err != nil {
				return err
			}
			x.Status, x.Finished = "FINISHED", at(n).Add(time.Second)
			if err := j.Put(e.ctx, x); err != nil {
				return err
			}
		}
		return nil
	})
	reportAll(t, errs)
	got := list(t, e, j, journal.Filter{Limit: 1000})
	var want []string
	for n := concurrentMax - 1; n >= 0; n-- {
		want = append(want, fmt.Sprintf("req-%03d", n))
	}
	if d := diffEntries(want, got); d != "" {
		t.Errorf("List after the concurrent writers (-want +got):\n%s", d)
	}
	un, err := j.Unfinished(e.ctx)
	must(t, err, "Unfinished")
	if len(un) != 0 {
		t.Errorf("Unfinished after every request finished = %v; want none", idsOf(un))
	}
}

// journalPutComparesAndSwaps: a Put of an entry read from the journal
// replaces the stored one only if nobody wrote it since, and sets the
// writer's Version; a stale copy fails with ErrConflict and changes nothing.
func journalPutComparesAndSwaps(t *testing.T, e *env, j journal.Journal) {
	x := entry("req-1", "DELETE_ONLY", "RUNNING", 10)
	put(t, e, j, x)
	if x.Version == 0 {
		t.Fatalf("Put left the entry's Version 0; want the stored entry's version")
	}
	a, b := get(t, e, j, "req-1"), get(t, e, j, "req-1")
	if a.Version != x.Version {
		t.Errorf("Get returned Version %d; the Put that stored it set %d", a.Version, x.Version)
	}
	a.Status, a.Finished = "FINISHED", at(20)
	put(t, e, j, a)
	if a.Version <= x.Version {
		t.Errorf("Version after a second Put = %d; want more than %d", a.Version, x.Version)
	}
	stale := b.Version
	b.ExtensionReason = "stale"
	if err := j.Put(e.ctx, b); !errors.Is(err, journal.ErrConflict) {
		t.Fatalf("Put of a stale copy (version %d, stored %d) = %v; want ErrConflict", stale, a.Version, err)
	}
	if b.Version != stale {
		t.Errorf("a refused Put changed the writer's Version from %d to %d", stale, b.Version)
	}
	got := get(t, e, j, "req-1")
	if got.Status != "FINISHED" || got.ExtensionReason != "" || got.Version != a.Version {
		t.Errorf("after a refused Put: status %s, extension %q, version %d; want FINISHED, none, %d", got.Status, got.ExtensionReason, got.Version, a.Version)
	}
	if un, err := j.Unfinished(e.ctx); err != nil || len(un) != 0 {
		t.Errorf("Unfinished after a refused Put of a RUNNING copy = %d entries, %v; want none", len(un), err)
	}
	// An entry never stored cannot be swapped.
	ghost := entry("req-ghost", "DELETE_ONLY", "RUNNING", 11)
	ghost.Version = 7
	if err := j.Put(e.ctx, ghost); !errors.Is(err, journal.ErrConflict) {
		t.Errorf("Put by compare-and-swap of an entry never stored = %v; want ErrConflict", err)
	}
	if x, err := j.Get(e.ctx, "req-ghost"); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("Get after the refused Put = %+v, %v; want ErrNotFound", x, err)
	}
	// Version 0 stores whatever is there.
	again := entry("req-1", "DELETE_ONLY", "INITIALIZED", 10)
	put(t, e, j, again)
	if again.Version <= a.Version {
		t.Errorf("Version after an unconditional Put = %d; want more than %d", again.Version, a.Version)
	}
}

// journalConcurrentCompareAndSwap: writers racing to swap the same version
// of an entry: exactly one wins.
func journalConcurrentCompareAndSwap(t *testing.T, e *env, j journal.Journal) {
	const rounds, racers = 20, 4
	x := entry("req-1", "DELETE_ONLY", "RUNNING", 10)
	put(t, e, j, x)
	for round := range rounds {
		base := get(t, e, j, "req-1")
		var wins atomic.Int32
		errs := parallel(racers, func(w int) error {
			c := base.Clone()
			c.ExtensionReason = fmt.Sprint("racer ", w)
			switch err := j.Put(e.ctx, c); {
			case err == nil:
				wins.Add(1)
			case !errors.Is(err, journal.ErrConflict):
				return err
			}
			return nil
		})
		for _, err := range errs {
			if err != nil {
				t.Fatalf("round %d: Put: %v", round, err)
			}
		}
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d of %d writers swapped version %d; want exactly one", round, n, racers, base.Version)
		}
	}
}
