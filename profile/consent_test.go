package profile

import (
	"maps"
	"testing"
	"time"
)

var consentT0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func change(id string, min int, prefs map[string]bool) ConsentChange {
	return ConsentChange{MessageID: id, Type: "track", Timestamp: consentT0.Add(time.Duration(min) * time.Minute), Preferences: prefs}
}

func TestConsentApply(t *testing.T) {
	var c Consent
	if !c.Apply(change("a", 1, map[string]bool{"Ads": true, "Stats": true}), false) {
		t.Fatal("the first preferences changed nothing")
	}
	if c.Apply(change("b", 2, map[string]bool{"Ads": true, "Stats": true}), false) {
		t.Error("the same preferences again reported a change")
	}
	if !c.Apply(change("b2", 2, map[string]bool{"Ads": true, "Stats": true}), true) || len(c.History) != 2 {
		t.Errorf("an explicit repeat: history %d; want it recorded", len(c.History))
	}
	if c.Apply(change("old", 0, map[string]bool{"Ads": false}), true) {
		t.Error("a change older than UpdatedAt applied")
	}
	c.Apply(change("c", 3, map[string]bool{"Ads": true}), false)
	if c.Status("Stats") != ConsentDenied || c.Status("Ads") != ConsentGranted || c.Status("Never") != ConsentDenied {
		t.Errorf("after c: %v; want Ads granted, Stats denied (left out), Never denied", c.Categories)
	}
	if _, ok := c.Categories["Never"]; ok {
		t.Error("Status added a category")
	}
	c.Categories["Ads"] = ConsentConflict
	if !c.Apply(change("d", 4, map[string]bool{"Ads": true, "Stats": false}), false) || c.Status("Ads") != ConsentGranted {
		t.Errorf("a preference equal to all but a conflict: %v; want the conflict settled", c.Categories)
	}
}

func TestConsentHistoryBound(t *testing.T) {
	var c Consent
	for i := range MaxConsentHistory + 3 {
		c.Apply(change("m", i, map[string]bool{"Ads": i%2 == 0}), false)
	}
	if len(c.History) != MaxConsentHistory || !c.History[0].Timestamp.Equal(consentT0.Add(3*time.Minute)) {
		t.Errorf("history %d from %v; want %d from the 4th", len(c.History), c.History[0].Timestamp, MaxConsentHistory)
	}
}

func TestConsentMerge(t *testing.T) {
	var into, from Consent
	into.Apply(change("i", 1, map[string]bool{"Ads": true, "Stats": false}), false)
	from.Apply(change("f", 2, map[string]bool{"Ads": false, "Stats": false, "Mail": false}), false)
	into.Merge(from, "join", consentT0)
	want := map[string]ConsentStatus{"Ads": ConsentConflict, "Stats": ConsentDenied, "Mail": ConsentDenied}
	if !maps.Equal(into.Categories, want) {
		t.Errorf("merged %v; want %v", into.Categories, want)
	}
	if len(into.History) != 3 || into.History[0].MessageID != "i" || into.History[1].MessageID != "f" || into.History[2].Type != ConsentMerge {
		t.Errorf("merged history %+v; want i, f, then the merge", into.History)
	}
	// The merged consent shares nothing with from.
	from.History[0].Preferences["Ads"] = true
	from.Categories["Mail"] = ConsentGranted
	if into.History[1].Preferences["Ads"] || into.Categories["Mail"] != ConsentDenied {
		t.Error("the merged consent shares memory with the merged-away one")
	}

	// Granted on one side, never collected on the other: a conflict.
	var a, b Consent
	a.Apply(change("a", 1, map[string]bool{"Ads": true}), false)
	b.Apply(change("b", 1, map[string]bool{"Stats": true}), false)
	a.Merge(b, "j", consentT0)
	if a.Status("Ads") != ConsentConflict || a.Status("Stats") != ConsentConflict {
		t.Errorf("merged %v; want both in conflict (true against never collected)", a.Categories)
	}
	// Nothing collected on one side: the other's as they are, no merge entry.
	var none Consent
	none.Merge(a, "j2", consentT0)
	if !maps.Equal(none.Categories, a.Categories) || len(none.History) != len(a.History) {
		t.Errorf("merged into an empty consent: %+v; want a's", none)
	}
	none.Categories["Ads"] = ConsentGranted
	if a.Status("Ads") != ConsentConflict {
		t.Error("merging into an empty consent shares memory")
	}
}

func TestConsentCloneAndStatusString(t *testing.T) {
	var c Consent
	c.Apply(change("a", 1, map[string]bool{"Ads": true}), false)
	d := c.Clone()
	d.Categories["Ads"] = ConsentDenied
	d.History[0].Preferences["Ads"] = false
	if c.Status("Ads") != ConsentGranted || !c.History[0].Preferences["Ads"] {
		t.Error("Clone shares memory")
	}
	for s, want := range map[ConsentStatus]string{ConsentGranted: "true", ConsentDenied: "false", ConsentConflict: "conflict", 7: "ConsentStatus(7)"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q; want %q", s, s.String(), want)
		}
	}
}
