package privacy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/export"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
	"github.com/google/go-cmp/cmp"
)

// consentCtx is a message context carrying consent preferences.
func consentCtx(prefs map[string]any) map[string]any {
	return map[string]any{"ip": "203.0.113.9", "consent": map[string]any{"categoryPreferences": prefs}}
}

func mustMetadata(t *testing.T, c *privacy.Controller, id identity.ID) profile.Metadata {
	t.Helper()
	m, err := c.Metadata(context.Background(), id)
	if err != nil {
		t.Fatalf("Metadata(%v): %v", id, err)
	}
	return m
}

// statuses renders a consent's categories as category=status, sorted.
func statuses(c profile.Consent) []string {
	var out []string
	for k, s := range c.Categories() {
		out = append(out, k+"="+s.String())
	}
	slices.Sort(out)
	return out
}

// historyIDs returns the message ids of a consent's history, in order.
func historyIDs(c profile.Consent) []string {
	var out []string
	for _, ch := range c.History() {
		out = append(out, ch.MessageID)
	}
	return out
}

// TestConsentOnTheProfile: the profile keeps the latest preferences per
// category as Segment stores them (a category a message leaves out is
// false, an empty object denies all, no consent object or an empty one
// changes nothing, an older message changes nothing), and a history of the
// changes with when, what, and which message and source.
func TestConsentOnTheProfile(t *testing.T) {
	e := newEnv(t)
	u := user("u1")
	e.collect(t,
		privacy.Identify{MessageID: "m1", UserID: "u1", Source: "web", Timestamp: at(1),
			Context: consentCtx(map[string]any{"Advertising": true, "Analytics": false})},
		// The same preferences again: no change, no history.
		privacy.Track{MessageID: "m2", UserID: "u1", Event: "Viewed", Timestamp: at(2),
			Context: consentCtx(map[string]any{"Advertising": true, "Analytics": false})},
		// No consent object, an empty one: nothing changes.
		privacy.Track{MessageID: "m3", UserID: "u1", Event: "Viewed", Timestamp: at(3)},
		privacy.Track{MessageID: "m4", UserID: "u1", Event: "Viewed", Timestamp: at(4), Context: map[string]any{"consent": map[string]any{}}},
	)
	m := mustMetadata(t, e.c, u)
	if got, want := statuses(m.Consent), []string{"Advertising=true", "Analytics=false"}; !slices.Equal(got, want) {
		t.Fatalf("consent after m1..m4 = %v; want %v", got, want)
	}
	if got := historyIDs(m.Consent); !slices.Equal(got, []string{"m1"}) {
		t.Fatalf("history = %v; want [m1]: a repeat or a message without preferences is no change", got)
	}
	ch := m.Consent.History()[0]
	if ch.Type != "identify" || ch.Source != "web" || !ch.Timestamp.Equal(at(1)) || !ch.ReceivedAt.Equal(t0) ||
		!maps.Equal(ch.Preferences, map[string]bool{"Advertising": true, "Analytics": false}) {
		t.Errorf("history[0] = %+v; want the identify from web at at(1), received at t0, with its preferences", ch)
	}

	e.collect(t,
		// Analytics left out: false; Functional new.
		privacy.Page{MessageID: "m5", UserID: "u1", Name: "Home", Source: "app", Timestamp: at(5),
			Context: consentCtx(map[string]any{"Advertising": false, "Functional": true})},
		// Older than the last change: changes nothing.
		privacy.Track{MessageID: "m6", UserID: "u1", Event: "Late", Timestamp: at(4),
			Context: consentCtx(map[string]any{"Advertising": true, "Analytics": true, "Functional": true})},
	)
	m = mustMetadata(t, e.c, u)
	if got, want := statuses(m.Consent), []string{"Advertising=false", "Analytics=false", "Functional=true"}; !slices.Equal(got, want) {
		t.Errorf("consent after m5, m6 = %v; want %v (a category left out is false, an older message changes nothing)", got, want)
	}
	if got := historyIDs(m.Consent); !slices.Equal(got, []string{"m1", "m5"}) {
		t.Errorf("history = %v; want [m1 m5]", got)
	}
	if !m.Consent.UpdatedAt().Equal(at(5)) {
		t.Errorf("UpdatedAt = %v; want at(5), the last change's timestamp", m.Consent.UpdatedAt())
	}

	// An empty categoryPreferences denies every category.
	e.collect(t, privacy.Track{MessageID: "m7", UserID: "u1", Event: "Viewed", Timestamp: at(7), Context: consentCtx(map[string]any{})})
	m = mustMetadata(t, e.c, u)
	if got, want := statuses(m.Consent), []string{"Advertising=false", "Analytics=false", "Functional=false"}; !slices.Equal(got, want) {
		t.Errorf("consent after an empty categoryPreferences = %v; want %v", got, want)
	}
	if h := m.Consent.History(); len(h) != 3 || h[2].MessageID != "m7" || h[2].Preferences == nil || len(h[2].Preferences) != 0 {
		t.Errorf("history = %+v; want m7 last, with empty (not nil) preferences", h)
	}
}

// TestConsentPreferenceUpdatedIsProof: Segment's consent event is recorded
// even when it repeats the preferences held (proof renewed), and it reaches
// a destination under consent categories that holds the person whatever
// the preferences, so that the destination learns that consent was
// withdrawn; another message denied by them does not reach it, and neither
// does the notice reach a destination that never held the person (it would
// make it a holder of what the person denied it).
func TestConsentPreferenceUpdatedIsProof(t *testing.T) {
	ads := consentingRecorder{destination.NewRecorder("ads"), []string{"Advertising"}}
	stats := consentingRecorder{destination.NewRecorder("stats"), []string{"Analytics"}}
	e := newEnv(t, privacy.WithDestinations(ads, stats), fastDelivery())
	adsOnly := consentCtx(map[string]any{"Advertising": true, "Analytics": false})
	denied := consentCtx(map[string]any{"Advertising": false, "Analytics": false})
	e.collect(t,
		privacy.Track{MessageID: "m0", UserID: "u1", Event: "Viewed", Timestamp: at(0), Context: adsOnly},
		privacy.Track{MessageID: "m1", UserID: "u1", Event: "Viewed", Timestamp: at(1), Context: denied},
		privacy.Track{MessageID: "m2", UserID: "u1", Event: privacy.ConsentPreferenceUpdated, Timestamp: at(2), Context: denied},
		privacy.Track{MessageID: "m3", UserID: "u1", Event: "Viewed", Timestamp: at(3), Context: denied},
	)
	flush(t, e.c)
	m := mustMetadata(t, e.c, user("u1"))
	if got := historyIDs(m.Consent); !slices.Equal(got, []string{"m0", "m1", "m2"}) {
		t.Errorf("history = %v; want [m0 m1 m2]: the consent event is recorded though it repeats m1", got)
	}
	if h := m.Consent.History(); len(h) == 3 && h[2].Event != privacy.ConsentPreferenceUpdated {
		t.Errorf("history[2].Event = %q; want %q", h[2].Event, privacy.ConsentPreferenceUpdated)
	}
	if got := messageIDsSent(ads.Recorder); !slices.Equal(got, []string{"m0", "m2"}) {
		t.Errorf("the destination under Advertising got %v; want m0, then only the consent event m2", got)
	}
	if got := messageIDsSent(stats.Recorder); len(got) != 0 {
		t.Errorf("the destination under Analytics, never allowed, got %v; want nothing, not even the notice", got)
	}
	var names []string
	for _, r := range m.Recipients {
		names = append(names, r.Name)
	}
	if !slices.Equal(names, []string{"ads"}) {
		t.Errorf("recipients = %v; want [ads]", names)
	}
}

// TestMalformedConsentIsRefused: a consent object or preferences of
// another shape would otherwise be read as no consent, and the message
// would reach every destination unenforced: it is refused, naming the
// field, and nothing is stored.
func TestMalformedConsentIsRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, tc := range []struct {
		field string
		c     map[string]any
	}{
		{"Context.consent", map[string]any{"consent": "yes"}},
		{"Context.consent", map[string]any{"consent": []any{true}}},
		{"Context.consent.categoryPreferences", map[string]any{"consent": map[string]any{"categoryPreferences": "all"}}},
		{"Context.consent.categoryPreferences", map[string]any{"consent": map[string]any{"categoryPreferences": []any{"Advertising"}}}},
	} {
		err := e.c.Collect(ctx, privacy.Track{UserID: "u-bad", Event: "E", Timestamp: at(1), Context: tc.c})
		var fe *privacy.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !errors.Is(err, privacy.ErrInvalid) {
			t.Errorf("consent %v: Collect = %v; want a FieldError on %s matching ErrInvalid", tc.c, err, tc.field)
		}
	}
	if _, err := e.c.Profile(ctx, user("u-bad")); !errors.Is(err, privacy.ErrNotFound) {
		t.Errorf("Profile after refused messages = %v; want not found", err)
	}
	// A preference other than true is not consent.
	e.collect(t, privacy.Track{MessageID: "s", UserID: "u2", Event: "E", Timestamp: at(1), Context: consentCtx(map[string]any{"Advertising": "true", "Analytics": true})})
	if got, want := statuses(mustMetadata(t, e.c, user("u2")).Consent), []string{"Advertising=false", "Analytics=true"}; !slices.Equal(got, want) {
		t.Errorf("consent with a string \"true\" = %v; want %v", got, want)
	}
}

// TestConsentMergeConflicts: two profiles merged with different
// preferences for a category hold it in conflict, as Segment marks a
// profile-level conflict; the histories are joined and the merge recorded;
// the next preference settles the conflict. A profile that never collected
// consent takes the other's as they are.
func TestConsentMergeConflicts(t *testing.T) {
	e := newEnv(t)
	e.collect(t,
		privacy.Track{MessageID: "a", AnonymousID: "laptop", Event: "E", Timestamp: at(1), Context: consentCtx(map[string]any{"Advertising": true, "Analytics": true})},
		privacy.Identify{MessageID: "b", UserID: "u1", Timestamp: at(2), Context: consentCtx(map[string]any{"Advertising": false, "Analytics": true})},
		privacy.Identify{MessageID: "join", UserID: "u1", AnonymousID: "laptop", Timestamp: at(3)},
	)
	m := mustMetadata(t, e.c, user("u1"))
	if got, want := statuses(m.Consent), []string{"Advertising=conflict", "Analytics=true"}; !slices.Equal(got, want) {
		t.Fatalf("consent after the merge = %v; want %v", got, want)
	}
	if got, want := historyIDs(m.Consent), []string{"a", "b", "join"}; !slices.Equal(got, want) {
		t.Errorf("history after the merge = %v; want %v", got, want)
	}
	if last := m.Consent.History()[m.Consent.HistoryLen()-1]; last.Type != profile.ConsentMerge {
		t.Errorf("the merge's history entry has type %q; want %q", last.Type, profile.ConsentMerge)
	}
	e.collect(t, privacy.Track{MessageID: "c", UserID: "u1", Event: "E", Timestamp: at(4), Context: consentCtx(map[string]any{"Advertising": true, "Analytics": true})})
	if got, want := statuses(mustMetadata(t, e.c, user("u1")).Consent), []string{"Advertising=true", "Analytics=true"}; !slices.Equal(got, want) {
		t.Errorf("consent after the next preference = %v; want %v: it settles the conflict", got, want)
	}

	// One side never collected consent: no conflict.
	e.collect(t,
		privacy.Track{MessageID: "d", AnonymousID: "phone", Event: "E", Timestamp: at(1), Context: consentCtx(map[string]any{"Advertising": true})},
		privacy.Identify{MessageID: "e", UserID: "u2", Timestamp: at(2)},
		privacy.Identify{MessageID: "join2", UserID: "u2", AnonymousID: "phone", Timestamp: at(3)},
	)
	m = mustMetadata(t, e.c, user("u2"))
	if got, want := statuses(m.Consent), []string{"Advertising=true"}; !slices.Equal(got, want) {
		t.Errorf("consent after merging a profile without consent = %v; want %v", got, want)
	}
	if got := historyIDs(m.Consent); !slices.Equal(got, []string{"d"}) {
		t.Errorf("history = %v; want [d]", got)
	}
}

// TestConsentHistoryIsBounded: the history keeps the latest
// MaxConsentHistory changes.
func TestConsentHistoryIsBounded(t *testing.T) {
	e := newEnv(t)
	n := profile.MaxConsentHistory + 5
	for i := range n {
		e.collect(t, privacy.Track{MessageID: "m" + string(rune('A'+i/26)) + string(rune('a'+i%26)), UserID: "u1", Event: "E", Timestamp: at(i),
			Context: consentCtx(map[string]any{"Advertising": i%2 == 0})})
	}
	h := mustMetadata(t, e.c, user("u1")).Consent.History()
	if len(h) != profile.MaxConsentHistory {
		t.Fatalf("history holds %d changes; want %d", len(h), profile.MaxConsentHistory)
	}
	if !h[0].Timestamp.Equal(at(5)) || !h[len(h)-1].Timestamp.Equal(at(n-1)) {
		t.Errorf("history spans %v..%v; want the latest: at(5)..at(%d)", h[0].Timestamp, h[len(h)-1].Timestamp, n-1)
	}
}

// TestConsentAudience: consent('X') = true in a query follows the person's
// preferences as messages change them, on Collect and CollectBatch, and
// 'conflict' matches a category in conflict.
func TestConsentAudience(t *testing.T) {
	for _, batch := range []bool{false, true} {
		name := pathName(batch)
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			define(t, e.c, "ads-ok", "consent('Advertising') = true")
			define(t, e.c, "ads-conflict", "consent('Advertising') = 'conflict'")
			define(t, e.c, "asked", "consent('Advertising') exists")
			send := func(msgs ...privacy.Message) {
				t.Helper()
				e.collectEither(t, batch, msgs...)
			}
			// A page counted by no audience still re-evaluates: its consent changed.
			send(privacy.Identify{MessageID: "i", UserID: "u1", Timestamp: at(1)})
			send(privacy.Page{MessageID: "p1", UserID: "u1", Name: "Home", Timestamp: at(2), Context: consentCtx(map[string]any{"Advertising": true})})
			pid := e.profile(t, user("u1")).ID
			if got := members(t, e.c, "ads-ok"); !slices.Equal(got, []identity.ProfileID{pid}) {
				t.Errorf("ads-ok after consent given = %v; want [%s]", got, pid)
			}
			send(privacy.Page{MessageID: "p2", UserID: "u1", Name: "Home", Timestamp: at(3), Context: consentCtx(map[string]any{"Advertising": false})})
			if got := members(t, e.c, "ads-ok"); len(got) != 0 {
				t.Errorf("ads-ok after consent withdrawn = %v; want none", got)
			}
			if got := members(t, e.c, "asked"); !slices.Equal(got, []identity.ProfileID{pid}) {
				t.Errorf("asked = %v; want [%s]", got, pid)
			}
			if batch {
				return // a merge is Collect's
			}
			send(privacy.Track{MessageID: "t", AnonymousID: "a1", Event: "E", Timestamp: at(4), Context: consentCtx(map[string]any{"Advertising": true})},
				privacy.Identify{MessageID: "join", UserID: "u1", AnonymousID: "a1", Timestamp: at(5)})
			if got := members(t, e.c, "ads-conflict"); !slices.Equal(got, []identity.ProfileID{pid}) {
				t.Errorf("ads-conflict after a merge that disagreed = %v; want [%s]", got, pid)
			}
		})
	}
}

// TestConsentInBatchDoesNotLeak: consecutive messages of one person in a
// batch each change their consent; every update keeps its own consent, so
// the audiences see each message's (an entry then an exit), and its own
// history.
func TestConsentInBatchDoesNotLeak(t *testing.T) {
	crm := destination.NewRecorder("crm")
	e := newEnv(t, privacy.WithDestinations(crm), fastDelivery())
	define(t, e.c, "ads-ok", "consent('Advertising') = true")
	// Known people: the batch path stores them (unknown ones go alone).
	e.collect(t, privacy.Identify{MessageID: "i1", UserID: "u1", Timestamp: at(0)}, privacy.Identify{MessageID: "i2", UserID: "u2", Timestamp: at(0)})
	err := e.c.CollectBatch(context.Background(), []privacy.Message{
		privacy.Track{MessageID: "b1", UserID: "u1", Event: "E", Timestamp: at(1), Context: consentCtx(map[string]any{"Advertising": true})},
		privacy.Track{MessageID: "b2", UserID: "u1", Event: "E", Timestamp: at(2), Context: consentCtx(map[string]any{"Advertising": false})},
		privacy.Track{MessageID: "b3", UserID: "u2", Event: "E", Timestamp: at(2), Context: consentCtx(map[string]any{"Functional": true})},
	})
	if err != nil {
		t.Fatal(err)
	}
	m1 := mustMetadata(t, e.c, user("u1"))
	if got := historyIDs(m1.Consent); !slices.Equal(got, []string{"b1", "b2"}) {
		t.Errorf("u1's history = %v; want [b1 b2]", got)
	}
	if got, want := statuses(m1.Consent), []string{"Advertising=false"}; !slices.Equal(got, want) {
		t.Errorf("u1's consent = %v; want %v", got, want)
	}
	if got := historyIDs(mustMetadata(t, e.c, user("u2")).Consent); !slices.Equal(got, []string{"b3"}) {
		t.Errorf("u2's history = %v; want [b3]", got)
	}
	flush(t, e.c)
	var changes []string
	for _, s := range received(crm) {
		if s != "track E" && s != "identify" {
			changes = append(changes, s)
		}
	}
	if want := []string{"track " + destination.AudienceEntered + " ads-ok", "track " + destination.AudienceExited + " ads-ok"}; !slices.Equal(changes, want) {
		t.Errorf("audience changes sent = %v; want %v: b1's consent, then b2's", changes, want)
	}
}

// TestAccessAndExportCarryConsent: the person's consent state and history
// are in what Access returns and in every export format, read back whole.
func TestAccessAndExportCarryConsent(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.collect(t,
		privacy.Identify{MessageID: "m1", UserID: "u1", Source: "web", Timestamp: at(1), Context: consentCtx(map[string]any{"Advertising": true})},
		privacy.Track{MessageID: "m2", UserID: "u1", Event: privacy.ConsentPreferenceUpdated, Timestamp: at(2), Context: consentCtx(map[string]any{})},
	)
	want := mustMetadata(t, e.c, user("u1")).Consent
	pkg, err := e.c.Access(ctx, user("u1"))
	if err != nil {
		t.Fatal(err)
	}
	check := func(where string, pkg *export.Package) {
		t.Helper()
		if got := statuses(pkg.Profile.Metadata.Consent); !slices.Equal(got, statuses(want)) || !pkg.Profile.Metadata.Consent.UpdatedAt().Equal(want.UpdatedAt()) {
			t.Errorf("%s: consent %v at %v; want %v at %v", where, got, pkg.Profile.Metadata.Consent.UpdatedAt(), statuses(want), want.UpdatedAt())
		}
		if diff := cmp.Diff(want.History(), pkg.ConsentHistory); diff != "" {
			t.Errorf("%s: consent history (-want +got):\n%s", where, diff)
		}
		if pkg.Profile.Metadata.Consent.HistoryLen() != 0 {
			t.Errorf("%s: the history is in the metadata too", where)
		}
	}
	check("Access", pkg)
	for f, got := range exportedEveryWay(t, e.c, user("u1")) {
		check(fmt.Sprintf("Export(%v)", f), got)
	}
}

// exportedEveryWay exports the person in every format and reads each back.
func exportedEveryWay(t *testing.T, c *privacy.Controller, id identity.ID) map[export.Format]*export.Package {
	t.Helper()
	out := map[export.Format]*export.Package{}
	for _, f := range []export.Format{export.JSON, export.NDJSON, export.CSV} {
		var buf bytes.Buffer
		if _, err := c.Export(context.Background(), id, &buf, f); err != nil {
			t.Fatalf("Export(%v): %v", f, err)
		}
		got, err := export.Read(bytes.NewReader(buf.Bytes()), f)
		if err != nil {
			t.Fatalf("Read(%v): %v", f, err)
		}
		out[f] = got
	}
	return out
}

// TestConsentRepeatMovesTimeOn: a message repeating the preferences held
// is no change but is later: an older message arriving after it changes
// nothing (the latest preference wins, whatever the order of arrival), on
// Collect and CollectBatch. (A review found the late withdrawal won.)
func TestConsentRepeatMovesTimeOn(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(pathName(batch), func(t *testing.T) {
			e := newEnv(t)
			send := func(m privacy.Message) {
				t.Helper()
				e.collectEither(t, batch, m)
			}
			granted, denied := consentCtx(map[string]any{"Advertising": true}), consentCtx(map[string]any{"Advertising": false})
			e.collect(t, privacy.Identify{MessageID: "m1", UserID: "u1", Timestamp: at(1), Context: granted})
			send(privacy.Track{MessageID: "m3", UserID: "u1", Event: "E", Timestamp: at(3), Context: granted})
			send(privacy.Track{MessageID: "m2", UserID: "u1", Event: "E", Timestamp: at(2), Context: denied}) // late
			m := mustMetadata(t, e.c, user("u1"))
			if got, want := statuses(m.Consent), []string{"Advertising=true"}; !slices.Equal(got, want) {
				t.Errorf("consent = %v; want %v: m3 (t3) is the latest preference, m2 (t2) arrived late", got, want)
			}
		})
	}
}

// TestConsentSizeIsBounded: a message naming more than
// profile.MaxConsentCategories categories is refused, and however many
// categories messages rotate through, the person's consent stays small: it
// is read and written with every message. (A review left 2.7 MB of consent
// on one person with 110 messages.)
func TestConsentSizeIsBounded(t *testing.T) {
	e := newEnv(t)
	prefs := func(n, round int) map[string]any {
		m := map[string]any{}
		for i := range n {
			m[fmt.Sprintf("category-%03d-%05d-%s", round, i, strings.Repeat("x", 40))] = i%2 == 0
		}
		return m
	}
	err := e.c.Collect(context.Background(), privacy.Track{UserID: "u1", Event: "E", Timestamp: at(0), Context: consentCtx(prefs(profile.MaxConsentCategories+1, 0))})
	var fe *privacy.FieldError
	if !errors.As(err, &fe) || fe.Field != "Context.consent.categoryPreferences" {
		t.Errorf("a message with %d categories: %v; want a FieldError on its preferences", profile.MaxConsentCategories+1, err)
	}
	for i := range 110 {
		e.collect(t, privacy.Track{MessageID: fmt.Sprintf("m%d", i), UserID: "u1", Event: "E", Timestamp: at(i), Context: consentCtx(prefs(profile.MaxConsentCategories, i))})
	}
	m := mustMetadata(t, e.c, user("u1"))
	b, err := json.Marshal(m.Consent)
	if err != nil {
		t.Fatal(err)
	}
	if limit := profile.MaxConsentHistoryBytes + profile.MaxConsentCategories*200; len(b) > 2*limit || m.Consent.Len() > profile.MaxConsentCategories {
		t.Errorf("the person's consent holds %d bytes and %d categories; want about %d bytes at most and %d categories", len(b), m.Consent.Len(), limit, profile.MaxConsentCategories)
	}
}
