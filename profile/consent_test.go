package profile

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"
)

var consentT0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func change(id string, min int, prefs map[string]bool) ConsentChange {
	return ConsentChange{MessageID: id, Type: "track", Timestamp: consentT0.Add(time.Duration(min) * time.Minute), Preferences: prefs}
}

// apply is Apply that fails the test when the change is not taken.
func apply(t *testing.T, c Consent, ch ConsentChange, always bool) Consent {
	t.Helper()
	c, ok := c.Apply(ch, always)
	if !ok {
		t.Fatalf("Apply(%s) changed nothing", ch.MessageID)
	}
	return c
}

func TestConsentApply(t *testing.T) {
	var c Consent
	c = apply(t, c, change("a", 1, map[string]bool{"Ads": true, "Stats": true}), false)
	if _, ok := c.Apply(change("b", 2, map[string]bool{"Ads": true, "Stats": true}), false); ok {
		t.Error("the same preferences again reported a change")
	}
	if c2 := apply(t, c, change("b2", 2, map[string]bool{"Ads": true, "Stats": true}), true); c2.HistoryLen() != 2 || c.HistoryLen() != 1 {
		t.Errorf("an explicit repeat: history %d (before: %d); want it recorded in a new Consent only", c2.HistoryLen(), c.HistoryLen())
	}
	if _, ok := c.Apply(change("old", 0, map[string]bool{"Ads": false}), true); ok {
		t.Error("a change older than UpdatedAt applied")
	}
	before := c
	c = apply(t, c, change("c", 3, map[string]bool{"Ads": true}), false)
	if c.Status("Stats") != ConsentDenied || c.Status("Ads") != ConsentGranted || c.Status("Never") != ConsentDenied {
		t.Errorf("after c: %v; want Ads granted, Stats denied (left out), Never denied", c.Categories())
	}
	if _, ok := c.Lookup("Never"); ok || c.Len() != 2 {
		t.Errorf("Lookup(Never) found it, or Len = %d; want 2 categories", c.Len())
	}
	if before.Status("Stats") != ConsentGranted || before.HistoryLen() != 1 {
		t.Error("Apply changed the Consent it was called on")
	}
	// Settling a conflict.
	c = NewConsent(map[string]ConsentStatus{"Ads": ConsentConflict, "Stats": ConsentDenied}, consentT0, nil)
	if c.Same(map[string]any{"Ads": false, "Stats": false}) {
		t.Error("Same holds for a category in conflict")
	}
	if c2 := apply(t, c, change("d", 4, map[string]bool{"Ads": true, "Stats": false}), false); c2.Status("Ads") != ConsentGranted {
		t.Errorf("a preference over a conflict: %v; want it settled", c2.Categories())
	}
	// An empty object denies every category, and is kept empty, not nil.
	c = apply(t, c, change("e", 5, map[string]bool{}), false)
	if c.Status("Ads") != ConsentDenied || c.Status("Stats") != ConsentDenied {
		t.Errorf("after an empty object: %v; want all denied", c.Categories())
	}
	if h := c.History(); h[len(h)-1].Preferences == nil {
		t.Error("an empty object recorded as nil preferences")
	}
}

func TestConsentSame(t *testing.T) {
	c := NewConsent(map[string]ConsentStatus{"Ads": ConsentGranted, "Stats": ConsentDenied}, consentT0, nil)
	for prefs, want := range map[*map[string]any]bool{
		{"Ads": true, "Stats": false}:            true,
		{"Ads": true, "Stats": "true"}:           true, // not true: denied
		{"Ads": true}:                            false,
		{"Ads": true, "Stats": false, "X": true}: false,
		{"Ads": false, "Stats": false}:           false,
	} {
		if got := c.Same(*prefs); got != want {
			t.Errorf("Same(%v) = %v; want %v", *prefs, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { c.Same(map[string]any{"Ads": true, "Stats": false}) }); n > 1 {
		t.Errorf("Same allocates %v times; want none but its argument", n)
	}
}

func TestConsentHistoryBound(t *testing.T) {
	var c Consent
	for i := range MaxConsentHistory + 3 {
		c = apply(t, c, change("m", i, map[string]bool{"Ads": i%2 == 0}), false)
	}
	if h := c.History(); len(h) != MaxConsentHistory || !h[0].Timestamp.Equal(consentT0.Add(3*time.Minute)) {
		t.Errorf("history %d from %v; want %d from the 4th", len(h), h[0].Timestamp, MaxConsentHistory)
	}
	long := make([]ConsentChange, MaxConsentHistory+7)
	if NewConsent(nil, time.Time{}, long).HistoryLen() != MaxConsentHistory {
		t.Error("NewConsent kept more than MaxConsentHistory changes")
	}
}

// TestConsentIsImmutable: copies share a Consent safely: what the
// accessors return is a copy, and a change is a new Consent, however the
// earlier one's history array is shared.
func TestConsentIsImmutable(t *testing.T) {
	var c Consent
	c = apply(t, c, change("a", 1, map[string]bool{"Ads": true}), false)
	c = apply(t, c, change("b", 2, map[string]bool{"Ads": false}), false)
	d := c // a copy, as Metadata copies it
	cats, hist := d.Categories(), d.History()
	cats["Ads"] = ConsentGranted
	hist[0].Preferences["Ads"] = false
	hist[0].MessageID = "scribbled"
	if c.Status("Ads") != ConsentDenied || c.History()[0].MessageID != "a" || !c.History()[0].Preferences["Ads"] {
		t.Error("changing what the accessors returned changed the Consent")
	}
	// Two Consents grown from one share its history array: neither sees
	// the other's change.
	x := apply(t, c, change("x", 3, map[string]bool{"Ads": true}), false)
	y := apply(t, c, change("y", 3, map[string]bool{"Stats": true}), false)
	if hx, hy := x.History(), y.History(); hx[2].MessageID != "x" || hy[2].MessageID != "y" || c.HistoryLen() != 2 {
		t.Errorf("histories grown from one: %s, %s, and %d before; want x, y, 2", hx[2].MessageID, hy[2].MessageID, c.HistoryLen())
	}
	prefs := map[string]bool{"Ads": true}
	z := apply(t, c, change("z", 4, prefs), false)
	prefs["Ads"] = false
	if z.History()[2].Preferences["Ads"] != true {
		t.Error("Apply kept the caller's map")
	}
	if n := testing.AllocsPerRun(100, func() { m := Metadata{Consent: z}; _ = m.Clone() }); n > 0 {
		t.Errorf("copying a metadata with consent allocates %v times; want none", n)
	}
}

func TestConsentMerge(t *testing.T) {
	into := apply(t, Consent{}, change("i", 1, map[string]bool{"Ads": true, "Stats": false}), false)
	from := apply(t, Consent{}, change("f", 2, map[string]bool{"Ads": false, "Stats": false, "Mail": false}), false)
	m := into.Merge(from, "join", consentT0)
	want := map[string]ConsentStatus{"Ads": ConsentConflict, "Stats": ConsentDenied, "Mail": ConsentDenied}
	if !maps.Equal(m.Categories(), want) {
		t.Errorf("merged %v; want %v", m.Categories(), want)
	}
	if h := m.History(); len(h) != 3 || h[0].MessageID != "i" || h[1].MessageID != "f" || h[2].Type != ConsentMerge {
		t.Errorf("merged history %+v; want i, f, then the merge", h)
	}
	if into.Status("Ads") != ConsentGranted || into.HistoryLen() != 1 {
		t.Error("Merge changed the Consent it was called on")
	}
	// Granted on one side, never collected on the other: a conflict.
	a := apply(t, Consent{}, change("a", 1, map[string]bool{"Ads": true}), false)
	b := apply(t, Consent{}, change("b", 1, map[string]bool{"Stats": true}), false)
	ab := a.Merge(b, "j", consentT0)
	if ab.Status("Ads") != ConsentConflict || ab.Status("Stats") != ConsentConflict {
		t.Errorf("merged %v; want both in conflict (true against never collected)", ab.Categories())
	}
	// Nothing collected on one side: the other's as they are, no merge entry.
	if got := (Consent{}).Merge(ab, "j2", consentT0); !got.Equal(ab) {
		t.Errorf("merged into an empty consent: %v; want the other's", got.Categories())
	}
	if got := ab.Merge(Consent{}, "j3", consentT0); !got.Equal(ab) {
		t.Errorf("merging an empty consent: %v; want it unchanged", got.Categories())
	}
}

func TestConsentJSONAndStatusString(t *testing.T) {
	c := apply(t, Consent{}, change("a", 1, map[string]bool{}), true)
	c = NewConsent(map[string]ConsentStatus{"Ads": ConsentConflict, "Stats": ConsentGranted}, c.UpdatedAt(), c.History())
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var back Consent
	if err := json.Unmarshal(b, &back); err != nil || !back.Equal(c) {
		t.Errorf("JSON round trip of %s: %v, %v", b, back.Categories(), err)
	}
	if h := back.History(); h[0].Preferences == nil {
		t.Error("empty preferences came back nil")
	}
	var zero Consent
	if b, _ := json.Marshal(zero); string(b) != "{}" {
		t.Errorf("the zero Consent encodes as %s; want {}", b)
	}
	for s, want := range map[ConsentStatus]string{ConsentGranted: "true", ConsentDenied: "false", ConsentConflict: "conflict", 7: "ConsentStatus(7)"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q; want %q", s, s.String(), want)
		}
	}
}

// TestConsentBounds: however many categories and however long the names
// the messages bring, a Consent stays within its bounds, and a repeat of
// the preferences moves UpdatedAt on (an older message arriving after it
// changes nothing).
func TestConsentBounds(t *testing.T) {
	var c Consent
	long := strings.Repeat("x", 1000)
	for i := range 50 {
		prefs := map[string]bool{}
		for j := range MaxConsentCategories {
			prefs[fmt.Sprintf("%s-%d-%d", long, i, j)] = true
		}
		c, _ = c.Apply(change("m", i, prefs), false)
	}
	if c.Len() > MaxConsentCategories {
		t.Errorf("%d categories; want at most %d", c.Len(), MaxConsentCategories)
	}
	size := 0
	for _, ch := range c.History() {
		size += changeBytes(&ch)
	}
	if size > MaxConsentHistoryBytes+changeBytes(&c.history[len(c.history)-1]) || c.HistoryLen() == 0 {
		t.Errorf("history of %d changes takes %d bytes; want at most %d (and the latest kept)", c.HistoryLen(), size, MaxConsentHistoryBytes)
	}
	// A merge of two full consents stays within the bound too.
	var a, b Consent
	pa, pb := map[string]bool{}, map[string]bool{}
	for j := range MaxConsentCategories {
		pa[fmt.Sprint("a", j)], pb[fmt.Sprint("b", j)] = j%2 == 0, j%3 == 0
	}
	a, _ = a.Apply(change("a", 1, pa), false)
	b, _ = b.Apply(change("b", 2, pb), false)
	if m := a.Merge(b, "j", consentT0); m.Len() > MaxConsentCategories {
		t.Errorf("merged %d categories; want at most %d", m.Len(), MaxConsentCategories)
	}
	// Repeats move time on.
	c = Consent{}
	c, _ = c.Apply(change("m1", 1, map[string]bool{"Ads": true}), false)
	c, _ = c.Apply(change("m3", 3, map[string]bool{"Ads": true}), false)
	if c, ok := c.Apply(change("m2", 2, map[string]bool{"Ads": false}), false); ok || c.Status("Ads") != ConsentGranted {
		t.Errorf("an older message after a repeat applied: Ads = %v", c.Status("Ads"))
	}
}
