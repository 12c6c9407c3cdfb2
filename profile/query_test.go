package profile

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// at returns t0 plus sec seconds; unlike a time.Duration, sec may span centuries.
func at(sec int) time.Time { return time.Unix(t0.Unix()+int64(sec), 0).UTC() }

// ascCursor and descCursor are valid cursors of each order, of message m1 at
// at(1) and of m2 at at(2), for the tests of Normalize.
var (
	ascCursor  = EncodeCursor(Asc, &Event{MessageID: "m1", Timestamp: at(1)})
	descCursor = EncodeCursor(Desc, &Event{MessageID: "m2", Timestamp: at(2)})
)

func TestEventQueryNormalizeDefaults(t *testing.T) {
	tests := []struct {
		name       string
		q          EventQuery
		want       EventQuery
		wantCursor Cursor
	}{
		{"zero", EventQuery{}, EventQuery{Limit: DefaultLimit, Sort: Desc}, Cursor{}},
		{"limit and sort kept", EventQuery{Limit: 3, Sort: Asc}, EventQuery{Limit: 3, Sort: Asc}, Cursor{}},
		{"max limit", EventQuery{Limit: MaxLimit}, EventQuery{Limit: MaxLimit, Sort: Desc}, Cursor{}},
		{"limit 1", EventQuery{Limit: 1, Sort: Desc}, EventQuery{Limit: 1, Sort: Desc}, Cursor{}},
		{"window", EventQuery{Start: at(0), End: at(1)}, EventQuery{Start: at(0), End: at(1), Limit: DefaultLimit, Sort: Desc}, Cursor{}},
		{"start only", EventQuery{Start: at(5)}, EventQuery{Start: at(5), Limit: DefaultLimit, Sort: Desc}, Cursor{}},
		{"end only", EventQuery{End: at(5)}, EventQuery{End: at(5), Limit: DefaultLimit, Sort: Desc}, Cursor{}},
		{"asc cursor", EventQuery{Sort: Asc, Cursor: ascCursor},
			EventQuery{Sort: Asc, Limit: DefaultLimit, Cursor: ascCursor},
			Cursor{Sort: Asc, Timestamp: at(1), MessageID: "m1"}},
		{"desc cursor with default sort", EventQuery{Cursor: descCursor},
			EventQuery{Sort: Desc, Limit: DefaultLimit, Cursor: descCursor},
			Cursor{Sort: Desc, Timestamp: at(2), MessageID: "m2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, c, err := tt.q.Normalize()
			if err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("query (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantCursor, c); diff != "" {
				t.Errorf("cursor (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEventQueryNormalizeErrors(t *testing.T) {
	tests := []struct {
		name string
		q    EventQuery
	}{
		{"limit -1", EventQuery{Limit: -1}},
		{"limit 1001", EventQuery{Limit: MaxLimit + 1}},
		{"unknown sort", EventQuery{Sort: "up"}},
		{"upper-case sort", EventQuery{Sort: "ASC"}},
		{"start equals end", EventQuery{Start: at(1), End: at(1)}},
		{"start after end", EventQuery{Start: at(2), End: at(1)}},
		{"cursor not base64", EventQuery{Cursor: "%%%"}},
		{"cursor too short", EventQuery{Cursor: base64.RawURLEncoding.EncodeToString([]byte("d1234"))}},
		{"cursor with bad sort byte", EventQuery{Cursor: "x" + ascCursor[1:]}},
		{"asc cursor on desc query", EventQuery{Sort: Desc, Cursor: ascCursor}},
		{"asc cursor on default query", EventQuery{Cursor: ascCursor}},
		{"desc cursor on asc query", EventQuery{Sort: Asc, Cursor: descCursor}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, c, err := tt.q.Normalize()
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Normalize error = %v, want ErrInvalid", err)
			}
			if c != (Cursor{}) {
				t.Errorf("cursor = %+v with an error, want zero", c)
			}
		})
	}
}

func TestEventQueryMatches(t *testing.T) {
	ev := func(name string, sec int) *Event { return &Event{Name: name, Timestamp: at(sec), MessageID: "m"} }
	tests := []struct {
		name string
		q    EventQuery
		e    *Event
		want bool
	}{
		{"zero query", EventQuery{}, ev("a", 0), true},
		{"at start", EventQuery{Start: at(5)}, ev("a", 5), true},
		{"before start", EventQuery{Start: at(5)}, ev("a", 4), false},
		{"just before start", EventQuery{Start: at(5)}, &Event{Name: "a", Timestamp: at(5).Add(-time.Nanosecond)}, false},
		{"at end", EventQuery{End: at(5)}, ev("a", 5), false},
		{"just before end", EventQuery{End: at(5)}, &Event{Name: "a", Timestamp: at(5).Add(-time.Nanosecond)}, true},
		{"inside window", EventQuery{Start: at(1), End: at(3)}, ev("a", 2), true},
		{"after window", EventQuery{Start: at(1), End: at(3)}, ev("a", 3), false},
		{"other zone same instant", EventQuery{Start: at(5)}, &Event{Timestamp: at(5).In(time.FixedZone("Y", -7200))}, true},
		{"included", EventQuery{Include: []string{"a", "b"}}, ev("b", 0), true},
		{"not included", EventQuery{Include: []string{"a", "b"}}, ev("c", 0), false},
		{"excluded", EventQuery{Exclude: []string{"a"}}, ev("a", 0), false},
		{"not excluded", EventQuery{Exclude: []string{"a"}}, ev("b", 0), true},
		{"included and excluded", EventQuery{Include: []string{"a"}, Exclude: []string{"a"}}, ev("a", 0), false},
		{"included but outside window", EventQuery{Include: []string{"a"}, End: at(1)}, ev("a", 1), false},
		{"name match is exact", EventQuery{Include: []string{"A"}}, ev("a", 0), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.q.Matches(tt.e); got != tt.want {
				t.Errorf("Matches = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCursorRoundTrip(t *testing.T) {
	times := []time.Time{
		t0,
		t0.Add(123456789 * time.Nanosecond),
		time.Unix(0, 0).UTC(),
		time.Unix(-1, 999999999).UTC(),
		at(7).In(time.FixedZone("Z", 5*3600)),
		// Outside the range of UnixNano (1678 to 2262): events may say anything.
		time.Date(2300, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(1600, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		{},
	}
	ids := []string{"", "m", "message-id-0123456789", "ünï©ødé ✓", "with\x00nul"}
	for _, sort := range []Order{Asc, Desc} {
		for _, ts := range times {
			for _, id := range ids {
				e := &Event{MessageID: id, Timestamp: ts, Name: "ignored"}
				s := EncodeCursor(sort, e)
				c, err := DecodeCursor(s)
				if err != nil {
					t.Errorf("DecodeCursor(EncodeCursor(%s, %v, %q)): %v", sort, ts, id, err)
					continue
				}
				if c.Sort != sort || c.MessageID != id || !c.Timestamp.Equal(ts) {
					t.Errorf("round trip of (%s, %v, %q) = (%s, %v, %q)", sort, ts, id, c.Sort, c.Timestamp, c.MessageID)
				}
				if c.Timestamp.Location() != time.UTC {
					t.Errorf("decoded timestamp %v is not in UTC", c.Timestamp)
				}
				// The cursor names the event's own position: the event is not
				// after it, in either order.
				if c.After(e) {
					t.Errorf("cursor of (%s, %v, %q) is before its own event", sort, ts, id)
				}
			}
		}
	}
}

func TestCursorOrderAcrossFarTimes(t *testing.T) {
	// Cursors of events far apart in time must keep their order; with timestamps
	// in int64 nanoseconds they wrap around outside 1678..2262.
	early := &Event{MessageID: "a", Timestamp: time.Date(1500, 1, 1, 0, 0, 0, 0, time.UTC)}
	late := &Event{MessageID: "b", Timestamp: time.Date(2500, 1, 1, 0, 0, 0, 0, time.UTC)}
	c, err := DecodeCursor(EncodeCursor(Asc, early))
	if err != nil {
		t.Fatal(err)
	}
	if !c.After(late) {
		t.Errorf("asc cursor at %v: event at %v is not after it (cursor decoded to %v)", early.Timestamp, late.Timestamp, c.Timestamp)
	}
	c, err = DecodeCursor(EncodeCursor(Desc, late))
	if err != nil {
		t.Fatal(err)
	}
	if !c.After(early) {
		t.Errorf("desc cursor at %v: event at %v is not after it (cursor decoded to %v)", late.Timestamp, early.Timestamp, c.Timestamp)
	}
}

func TestDecodeCursorMalformed(t *testing.T) {
	valid := EncodeCursor(Asc, &Event{MessageID: "m", Timestamp: t0})
	raw, err := base64.RawURLEncoding.DecodeString(valid)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	withByte := func(i int, b byte) string {
		c := slices.Clone(raw)
		c[i] = b
		return enc(c)
	}
	header := len(raw) - len("m") // sort byte and timestamp
	badNanos := slices.Clone(raw)
	binary.BigEndian.PutUint32(badNanos[header-4:header], 1e9)
	tests := map[string]string{
		"empty":               "",
		"not base64":          "***",
		"standard base64":     base64.StdEncoding.EncodeToString(raw),
		"one byte":            enc([]byte("a")),
		"header minus one":    enc(raw[:header-1]),
		"sort byte 'x'":       withByte(0, 'x'),
		"sort byte 'A'":       withByte(0, 'A'),
		"non-UTF-8 id":        enc(append(slices.Clone(raw[:header]), 0xff, 0xfe)),
		"truncated utf-8 id":  enc(append(slices.Clone(raw[:header]), "é"[0])),
		"trailing whitespace": valid + " ",
		"nanoseconds 1e9":     enc(badNanos),
	}
	for name, s := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := DecodeCursor(s)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("DecodeCursor(%q) = %+v, %v; want ErrInvalid", s, c, err)
			}
			if c != (Cursor{}) {
				t.Errorf("cursor = %+v with an error, want zero", c)
			}
		})
	}
}

func TestCursorAfter(t *testing.T) {
	c := func(sort Order) *Cursor { return &Cursor{Sort: sort, Timestamp: at(5), MessageID: "m"} }
	tests := []struct {
		name       string
		e          *Event
		asc, desce bool
	}{
		{"earlier", &Event{Timestamp: at(4), MessageID: "z"}, false, true},
		{"later", &Event{Timestamp: at(6), MessageID: "a"}, true, false},
		{"same time, smaller id", &Event{Timestamp: at(5), MessageID: "l"}, false, true},
		{"same time, larger id", &Event{Timestamp: at(5), MessageID: "n"}, true, false},
		{"same position", &Event{Timestamp: at(5), MessageID: "m"}, false, false},
	}
	for _, tt := range tests {
		if got := c(Asc).After(tt.e); got != tt.asc {
			t.Errorf("%s: asc After = %v, want %v", tt.name, got, tt.asc)
		}
		if got := c(Desc).After(tt.e); got != tt.desce {
			t.Errorf("%s: desc After = %v, want %v", tt.name, got, tt.desce)
		}
	}
}

func TestCompareEvents(t *testing.T) {
	evs := []Event{
		{Timestamp: at(2), MessageID: "a"},
		{Timestamp: at(1), MessageID: "b"},
		{Timestamp: at(1), MessageID: "a"},
		{Timestamp: at(0).In(time.FixedZone("W", 3600)), MessageID: "z"},
	}
	slices.SortFunc(evs, func(a, b Event) int { return CompareEvents(&a, &b) })
	var got []string
	for _, e := range evs {
		got = append(got, fmt.Sprintf("%d/%s", e.Timestamp.Sub(t0)/time.Second, e.MessageID))
	}
	if diff := cmp.Diff([]string{"0/z", "1/a", "1/b", "2/a"}, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

// testTraits returns n traits with keys k00, k01, ... (not in insertion order)
// and a few more whose keys sort before and after them.
func testTraits(n int) map[string]Trait {
	traits := make(map[string]Trait, n+3)
	for i := n - 1; i >= 0; i-- {
		traits[fmt.Sprintf("k%02d", i)] = Trait{Value: float64(i), Source: "src", UpdatedAt: at(i)}
	}
	traits["A"] = Trait{Value: map[string]any{"nested": []any{"x"}}, Source: "identify", UpdatedAt: at(100)}
	traits["zü"] = Trait{Value: "unicode", Source: "rectification", UpdatedAt: at(101)}
	traits["k"] = Trait{Value: nil, Source: "src", UpdatedAt: at(102)}
	return traits
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// selectCase is a case of TestSelectTraitsInclude and TestSelectExternalIDs: a
// query and the keys, in page order, of the one page it must return.
type selectCase[Q any] struct {
	name string
	q    Q
	want []string
}

// runSelectCases runs each of tests as a subtest: selectKeys returns the keys of
// the page selected by the case's query (checking anything else the page must
// hold), and what names those keys in messages.
func runSelectCases[Q any](t *testing.T, what string, tests []selectCase[Q], selectKeys func(t *testing.T, q Q) ([]string, error)) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := selectKeys(t, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", what, diff)
			}
		})
	}
}

func TestSelectTraitsInclude(t *testing.T) {
	traits := testTraits(5)
	tests := []selectCase[TraitQuery]{
		{"all", TraitQuery{}, []string{"A", "k", "k00", "k01", "k02", "k03", "k04", "zü"}},
		{"include", TraitQuery{Include: []string{"k03", "A", "missing"}}, []string{"A", "k03"}},
		{"include none present", TraitQuery{Include: []string{"missing"}}, []string{}},
		{"limit", TraitQuery{Limit: 3}, []string{"A", "k", "k00"}},
		{"include and limit", TraitQuery{Include: []string{"k04", "k01", "zü"}, Limit: 2}, []string{"k01", "k04"}},
	}
	runSelectCases(t, "keys", tests, func(t *testing.T, q TraitQuery) ([]string, error) {
		page, err := SelectTraits(traits, q)
		for _, k := range sortedKeys(page.Traits) {
			if diff := cmp.Diff(traits[k].Value, page.Traits[k].Value); diff != "" {
				t.Errorf("value of %s (-want +got):\n%s", k, diff)
			}
		}
		return sortedKeys(page.Traits), err
	})
	page, err := SelectTraits(testTraits(30), TraitQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Traits) != DefaultLimit || page.Next == "" {
		t.Errorf("zero query over 33 traits: %d traits, Next %q; want %d and a cursor", len(page.Traits), page.Next, DefaultLimit)
	}
}

// walkTraits pages through traits with q, returning the keys in the order the pages
// gave them and failing on an overlong walk.
func walkTraits(t *testing.T, traits map[string]Trait, q TraitQuery) []string {
	t.Helper()
	limit := q.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	return walkKeyPages(t, "traits", limit, len(traits)+1, func() ([]string, string, error) {
		page, err := SelectTraits(traits, q)
		q.Cursor = page.Next
		return sortedKeys(page.Traits), page.Next, err
	})
}

// walkKeyPages walks the pages of a query paged by key (traits, external ids)
// and returns their items in page order: next returns the items of the next
// page and its Next, and moves on. It checks that the pages before the last are
// full, no page holds more than limit items, and the walk ends within maxPages
// pages; what names the items in messages.
func walkKeyPages[T any](t *testing.T, what string, limit, maxPages int, next func() (items []T, cursor string, err error)) []T {
	t.Helper()
	var got []T
	for pages := 0; ; pages++ {
		if pages > maxPages {
			t.Fatalf("more than %d pages: the cursor does not advance", pages)
		}
		items, cursor, err := next()
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		if len(items) > limit {
			t.Errorf("page %d has %d %s, more than the limit %d", pages, len(items), what, limit)
		}
		if cursor != "" && len(items) != limit {
			t.Errorf("page %d has %d %s and a Next; want %d", pages, len(items), what, limit)
		}
		got = append(got, items...)
		if cursor == "" {
			return got
		}
	}
}

func TestSelectTraitsPaging(t *testing.T) {
	traits := testTraits(23)
	all := sortedKeys(traits)
	for _, limit := range []int{1, 2, 3, 5, 26, 27, 100} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			got := walkTraits(t, traits, TraitQuery{Limit: limit})
			if diff := cmp.Diff(all, got); diff != "" {
				t.Errorf("keys over all pages (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("include", func(t *testing.T) {
		include := []string{"k20", "k03", "zü", "A", "k11", "nope"}
		got := walkTraits(t, traits, TraitQuery{Include: include, Limit: 2})
		if diff := cmp.Diff([]string{"A", "k03", "k11", "k20", "zü"}, got); diff != "" {
			t.Errorf("keys over all pages (-want +got):\n%s", diff)
		}
	})
	t.Run("empty", func(t *testing.T) {
		page, err := SelectTraits(nil, TraitQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Traits) != 0 || page.Next != "" {
			t.Errorf("page of no traits = %+v, want empty", page)
		}
	})
}

func TestSelectTraitsVerbose(t *testing.T) {
	traits := testTraits(2)
	page, err := SelectTraits(traits, TraitQuery{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(traits, page.Traits); diff != "" {
		t.Errorf("verbose (-want +got):\n%s", diff)
	}
	page, err = SelectTraits(traits, TraitQuery{})
	if err != nil {
		t.Fatal(err)
	}
	want := make(map[string]Trait, len(traits))
	for k, tr := range traits {
		want[k] = Trait{Value: tr.Value}
	}
	if diff := cmp.Diff(want, page.Traits); diff != "" {
		t.Errorf("not verbose (-want +got):\n%s", diff)
	}
}

func TestSelectTraitsCopies(t *testing.T) {
	traits := testTraits(1)
	want := CloneTraits(traits)
	for _, verbose := range []bool{false, true} {
		page, err := SelectTraits(traits, TraitQuery{Verbose: verbose})
		if err != nil {
			t.Fatal(err)
		}
		m := page.Traits["A"].Value.(map[string]any)
		m["nested"].([]any)[0] = "changed"
		m["added"] = true
		page.Traits["k00"] = Trait{Value: "changed"}
		delete(page.Traits, "zü")
		if diff := cmp.Diff(want, traits); diff != "" {
			t.Fatalf("verbose=%v: changing the page changed the traits (-want +got):\n%s", verbose, diff)
		}
	}
}

// checkInvalidPaging checks that selectPage, a query paged by key with the given
// limit and cursor, refuses the limits and the cursor that both such queries
// (traits, external ids) refuse.
func checkInvalidPaging(t *testing.T, selectPage func(limit int, cursor string) error) {
	t.Helper()
	for name, q := range map[string]struct {
		limit  int
		cursor string
	}{
		"limit -1":   {limit: -1},
		"limit 1001": {limit: MaxLimit + 1},
		"bad cursor": {cursor: "***"},
	} {
		if err := selectPage(q.limit, q.cursor); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: error %v, want ErrInvalid", name, err)
		}
	}
}

func TestSelectTraitsErrors(t *testing.T) {
	checkInvalidPaging(t, func(limit int, cursor string) error {
		_, err := SelectTraits(testTraits(1), TraitQuery{Limit: limit, Cursor: cursor})
		return err
	})
	if _, err := SelectTraits(testTraits(1), TraitQuery{Limit: MaxLimit}); err != nil {
		t.Errorf("limit %d: %v", MaxLimit, err)
	}
}

func testExternalIDs() []ExternalID {
	var ids []ExternalID
	add := func(typ, value string) {
		ids = append(ids, ExternalID{
			ID:             identity.ID{Type: typ, Value: value},
			CreatedAt:      at(len(ids)),
			FirstMessageID: fmt.Sprint("m", len(ids)),
		})
	}
	add("anonymous_id", "anon-1")
	add("email", "a@example.com")
	add("user_id", "42")
	add("email", "b@example.com")
	add("anonymous_id", "anon-2")
	add("email", "c@example.com")
	add("device_id", "dev")
	return ids
}

func idStrings(ids []ExternalID) []string {
	s := []string{}
	for _, e := range ids {
		s = append(s, e.ID.String())
	}
	return s
}

// walkExternalIDs pages through ids with q and returns every id it was given.
func walkExternalIDs(t *testing.T, ids []ExternalID, q ExternalIDQuery) []ExternalID {
	t.Helper()
	return walkKeyPages(t, "ids", q.Limit, len(ids)+1, func() ([]ExternalID, string, error) {
		page, err := SelectExternalIDs(ids, q)
		q.Cursor = page.Next
		return page.ExternalIDs, page.Next, err
	})
}

func TestSelectExternalIDs(t *testing.T) {
	ids := testExternalIDs()
	tests := []selectCase[ExternalIDQuery]{
		{"all", ExternalIDQuery{}, idStrings(ids)},
		{"include email", ExternalIDQuery{Include: []string{"email"}},
			[]string{"email:a@example.com", "email:b@example.com", "email:c@example.com"}},
		{"include two types", ExternalIDQuery{Include: []string{"user_id", "device_id"}},
			[]string{"user_id:42", "device_id:dev"}},
		{"include unknown type", ExternalIDQuery{Include: []string{"phone"}}, []string{}},
		{"limit", ExternalIDQuery{Limit: 2}, []string{"anonymous_id:anon-1", "email:a@example.com"}},
	}
	runSelectCases(t, "ids", tests, func(t *testing.T, q ExternalIDQuery) ([]string, error) {
		page, err := SelectExternalIDs(ids, q)
		return idStrings(page.ExternalIDs), err
	})
}

func TestSelectExternalIDsPaging(t *testing.T) {
	ids := testExternalIDs()
	for _, limit := range []int{1, 2, 3, 6, 7, 8} {
		got := walkExternalIDs(t, ids, ExternalIDQuery{Limit: limit})
		if diff := cmp.Diff(ids, got); diff != "" {
			t.Errorf("limit %d: ids over all pages (-want +got):\n%s", limit, diff)
		}
	}
	for _, limit := range []int{1, 2} {
		got := walkExternalIDs(t, ids, ExternalIDQuery{Include: []string{"email", "anonymous_id"}, Limit: limit})
		want := []string{"anonymous_id:anon-1", "email:a@example.com", "email:b@example.com", "anonymous_id:anon-2", "email:c@example.com"}
		if diff := cmp.Diff(want, idStrings(got)); diff != "" {
			t.Errorf("limit %d with include: ids over all pages (-want +got):\n%s", limit, diff)
		}
	}
}

func TestSelectExternalIDsErrors(t *testing.T) {
	checkInvalidPaging(t, func(limit int, cursor string) error {
		_, err := SelectExternalIDs(testExternalIDs(), ExternalIDQuery{Limit: limit, Cursor: cursor})
		return err
	})
}
