package privacy_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
	"github.com/google/go-cmp/cmp"
)

func uidOf(v string) identity.ID { return identity.ID{Type: identity.TypeUserID, Value: v} }

// messageIDsSent returns the ids of the messages r was sent, sorted.
func messageIDsSent(r *destination.Recorder) []string {
	var out []string
	for _, m := range r.Messages() {
		out = append(out, m.MessageID)
	}
	slices.Sort(out)
	return out
}

// onlyEvent returns the person's one stored event.
func onlyEvent(t *testing.T, c *privacy.Controller, id identity.ID) profile.Event {
	t.Helper()
	page, err := c.Events(context.Background(), id, profile.EventQuery{})
	if err != nil || len(page.Events) != 1 {
		t.Fatalf("Events(%v) = %+v, %v; want one event", id, page, err)
	}
	return page.Events[0]
}

// TestTimestampsAsSegmentComputesThem: the time stored is ReceivedAt -
// (SentAt - Timestamp) when SentAt is given, Timestamp when not, ReceivedAt
// (or the clock) when there is no Timestamp (Segment's common spec).
func TestTimestampsAsSegmentComputesThem(t *testing.T) {
	now := t0 // newEnv's clock
	for _, tc := range []struct {
		name string
		msg  privacy.Track
		want time.Time
	}{
		{"no timestamp: the clock", privacy.Track{}, now},
		{"no timestamp: received at", privacy.Track{ReceivedAt: at(-30)}, at(-30)},
		{"timestamp only", privacy.Track{Timestamp: at(-90)}, at(-90)},
		{"original timestamp only", privacy.Track{OriginalTimestamp: at(-80)}, at(-80)},
		// The sender's clock is an hour ahead: it stamped the event at
		// at(50) by its clock, sent it at at(60) by its clock, and it was
		// received at at(-5): it happened ten minutes before.
		{"skew corrected", privacy.Track{Timestamp: at(50), SentAt: at(60), ReceivedAt: at(-5)}, at(-15)},
		{"skew corrected, received now", privacy.Track{Timestamp: at(-2), SentAt: at(-1)}, at(-1)},
		{"timestamp wins over original", privacy.Track{Timestamp: at(-7), OriginalTimestamp: at(-8)}, at(-7)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, privacy.WithLimits(privacy.Limits{})) // the default skew: 5 minutes
			m := tc.msg
			m.UserID, m.Event = "u1", "E"
			e.collect(t, m)
			if got := onlyEvent(t, e.c, uidOf("u1")).Timestamp; !got.Equal(tc.want) {
				t.Errorf("stored at %v; want %v", got, tc.want)
			}
		})
	}
	// A corrected time past the clock by more than the skew is the clock's.
	e := newEnv(t, privacy.WithLimits(privacy.Limits{}))
	e.collect(t, privacy.Track{UserID: "u1", Event: "E", Timestamp: at(10), SentAt: at(-60)})
	if got := onlyEvent(t, e.c, uidOf("u1")).Timestamp; !got.Equal(now) {
		t.Errorf("a corrected time an hour ahead: stored at %v; want the clock's %v", got, now)
	}
}

// TestEveryMessageTypeIsStoredAndSent: page, screen, group and alias are
// stored as events with their type, context and source, and reach
// destinations with Segment's fields.
func TestEveryMessageTypeIsStoredAndSent(t *testing.T) {
	crm := destination.NewRecorder("crm")
	e := newEnv(t, privacy.WithDestinations(crm))
	ctx := context.Background()
	webCtx := map[string]any{"ip": "203.0.113.9", "userAgent": "Mozilla/5.0", "page": map[string]any{"url": "https://x.example/pricing"}}
	e.collect(t,
		privacy.Page{MessageID: "p1", UserID: "u1", Name: "Pricing", Category: "Docs", Properties: map[string]any{"path": "/pricing"},
			Context: webCtx, Source: "web", Timestamp: at(1)},
		privacy.Page{MessageID: "p2", UserID: "u1", Name: "Home", Properties: map[string]any{"name": "kept as sent"}, Timestamp: at(2)},
		privacy.Screen{MessageID: "s1", UserID: "u1", Name: "Settings", Source: "ios", Timestamp: at(3)},
		privacy.Group{MessageID: "g1", UserID: "u1", GroupID: "acme", Traits: map[string]any{"plan": "enterprise", "employees": 120}, Timestamp: at(4)},
		privacy.Alias{MessageID: "a1", UserID: "u1", PreviousID: "anon-old", Timestamp: at(5)},
	)
	page, err := e.c.Events(ctx, uidOf("u1"), profile.EventQuery{Sort: profile.Asc})
	if err != nil {
		t.Fatal(err)
	}
	want := []profile.Event{
		{MessageID: "p1", Type: "page", Name: "Pricing", Properties: map[string]any{"path": "/pricing", "name": "Pricing", "category": "Docs"},
			Context: webCtx, Source: "web", Timestamp: at(1), ReceivedAt: t0},
		{MessageID: "p2", Type: "page", Name: "Home", Properties: map[string]any{"name": "kept as sent"}, Timestamp: at(2), ReceivedAt: t0},
		{MessageID: "s1", Type: "screen", Name: "Settings", Properties: map[string]any{"name": "Settings"}, Source: "ios", Timestamp: at(3), ReceivedAt: t0},
		{MessageID: "g1", Type: "group", Name: "acme", Properties: map[string]any{"plan": "enterprise", "employees": 120.0}, Timestamp: at(4), ReceivedAt: t0},
		{MessageID: "a1", Type: "alias", Properties: map[string]any{"previousId": "anon-old"}, Timestamp: at(5), ReceivedAt: t0},
	}
	if diff := cmp.Diff(want, page.Events); diff != "" {
		t.Errorf("stored events (-want +got):\n%s", diff)
	}
	// The group call's GroupID names its event; it is no identifier of the
	// person (members of a group are different people).
	if p, err := e.c.Profile(ctx, identity.ID{Type: identity.TypeGroupID, Value: "acme"}); !errors.Is(err, privacy.ErrNotFound) {
		t.Errorf("Profile by group_id = %v, %v; want not found", p, err)
	}
	if err := e.c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[string]destination.Message{}
	for _, m := range crm.Messages() {
		got[m.MessageID] = m
	}
	for id, check := range map[string]func(m destination.Message) bool{
		"p1": func(m destination.Message) bool {
			return m.Type == destination.TypePage && m.Name == "Pricing" && m.Category == "Docs" && m.Context["ip"] == "203.0.113.9"
		},
		"s1": func(m destination.Message) bool { return m.Type == destination.TypeScreen && m.Name == "Settings" },
		"g1": func(m destination.Message) bool {
			return m.Type == destination.TypeGroup && m.GroupID == "acme" && m.Traits["plan"] == "enterprise"
		},
		"a1": func(m destination.Message) bool { return m.Type == destination.TypeAlias && m.PreviousID == "anon-old" },
	} {
		if m, ok := got[id]; !ok || !check(m) {
			t.Errorf("the destination got %s as %+v", id, m)
		}
	}
}

// TestAliasDoesNotMerge: as in Segment Unify, an alias is sent on, and
// does not join the previous id's profile to the user's.
func TestAliasDoesNotMerge(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.collect(t, privacy.Track{AnonymousID: "anon-old", Event: "Viewed", Timestamp: at(1)},
		privacy.Identify{UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(2)},
		privacy.Alias{UserID: "u1", PreviousID: "anon-old", Timestamp: at(3)})
	old, err := e.c.Profile(ctx, identity.ID{Type: identity.TypeAnonymousID, Value: "anon-old"})
	if err != nil {
		t.Fatal(err)
	}
	user, err := e.c.Profile(ctx, uidOf("u1"))
	if err != nil {
		t.Fatal(err)
	}
	if old.ID == user.ID {
		t.Errorf("the alias merged anon-old's profile into u1's (%s)", user.ID)
	}
}

// TestIdentifiersFromContext: Segment takes context.traits.email, and the
// device ids of an iOS or Android device, as identifiers.
func TestIdentifiersFromContext(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.collect(t,
		privacy.Track{AnonymousID: "a1", Event: "E", Timestamp: at(1), Context: map[string]any{"traits": map[string]any{"email": "Ada@Example.com"}}},
		privacy.Screen{AnonymousID: "a2", Name: "Home", Timestamp: at(2), Context: map[string]any{"device": map[string]any{"type": "ios", "id": "ios-dev-1", "advertisingId": "idfa-1", "adTrackingEnabled": true, "token": "push-1"}}},
		privacy.Screen{AnonymousID: "a3", Name: "Home", Timestamp: at(3), Context: map[string]any{"device": map[string]any{"type": "android", "id": "and-dev-1"}}},
		privacy.Screen{AnonymousID: "a4", Name: "Home", Timestamp: at(4), Context: map[string]any{"device": map[string]any{"type": "tv", "id": "tv-1"}}},
	)
	for _, tc := range []struct {
		id   identity.ID
		anon string
	}{
		{identity.ID{Type: identity.TypeEmail, Value: "ada@example.com"}, "a1"},
		{identity.ID{Type: "ios.id", Value: "ios-dev-1"}, "a2"},
		{identity.ID{Type: "ios.idfa", Value: "idfa-1"}, "a2"},
		{identity.ID{Type: "ios.push_token", Value: "push-1"}, "a2"},
		{identity.ID{Type: "android.id", Value: "and-dev-1"}, "a3"},
	} {
		p, err := e.c.Profile(ctx, tc.id)
		want, werr := e.c.Profile(ctx, identity.ID{Type: identity.TypeAnonymousID, Value: tc.anon})
		if err != nil || werr != nil || p.ID != want.ID {
			t.Errorf("Profile(%v) = %v, %v; want %s's", tc.id, p, err, tc.anon)
		}
	}
	if _, err := e.c.Profile(ctx, identity.ID{Type: "tv.id", Value: "tv-1"}); !errors.Is(err, privacy.ErrNotFound) {
		t.Errorf("a device of another type made an identifier: %v", err)
	}
}

// TestGroupIDTraitIsNotAnIdentifier: a trait named group_id no longer
// joins the people who share a group; only a Group message's GroupID is
// the identifier.
func TestGroupIDTraitIsNotAnIdentifier(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.collect(t, privacy.Identify{AnonymousID: "a1", Traits: map[string]any{"group_id": "acme"}, Timestamp: at(1)},
		privacy.Identify{AnonymousID: "a2", Traits: map[string]any{"group_id": "acme"}, Timestamp: at(2)})
	p1, err1 := e.c.Profile(ctx, identity.ID{Type: identity.TypeAnonymousID, Value: "a1"})
	p2, err2 := e.c.Profile(ctx, identity.ID{Type: identity.TypeAnonymousID, Value: "a2"})
	if err1 != nil || err2 != nil || p1.ID == p2.ID {
		t.Errorf("two people whose group_id trait is the same: profiles %v, %v (%v, %v); want two", p1, p2, err1, err2)
	}
	if p1 != nil && p1.Traits["group_id"].Value != "acme" {
		t.Errorf("the group_id trait was not kept as a trait: %v", p1.Traits)
	}
}

// TestIntegrationsRouteMessages: a message goes to the destinations its
// Integrations allow, as Segment routes; the profile lists as recipients
// only the destinations it went to.
func TestIntegrationsRouteMessages(t *testing.T) {
	crm, ads := destination.NewRecorder("crm"), destination.NewRecorder("ads")
	e := newEnv(t, privacy.WithDestinations(crm, ads))
	ctx := context.Background()
	e.collect(t,
		privacy.Track{MessageID: "all", UserID: "u1", Event: "E", Timestamp: at(1)},
		privacy.Track{MessageID: "none", UserID: "u1", Event: "E", Timestamp: at(2), Integrations: map[string]any{"All": false}},
		privacy.Track{MessageID: "crm-only", UserID: "u1", Event: "E", Timestamp: at(3), Integrations: map[string]any{"All": false, "crm": true}},
		privacy.Track{MessageID: "not-ads", UserID: "u1", Event: "E", Timestamp: at(4), Integrations: map[string]any{"ads": false}},
		privacy.Track{MessageID: "options", UserID: "u1", Event: "E", Timestamp: at(5), Integrations: map[string]any{"All": false, "ads": map[string]any{"region": "eu"}}},
		privacy.Identify{MessageID: "u2-none", UserID: "u2", Timestamp: at(6), Integrations: map[string]any{"All": false}},
	)
	if err := e.c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := messageIDsSent(crm), []string{"all", "crm-only", "not-ads"}; !slices.Equal(got, want) {
		t.Errorf("crm got %v; want %v", got, want)
	}
	if got, want := messageIDsSent(ads), []string{"all", "options"}; !slices.Equal(got, want) {
		t.Errorf("ads got %v; want %v", got, want)
	}
	p, err := e.c.Profile(ctx, uidOf("u2"))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Metadata.Recipients) != 0 {
		t.Errorf("a person whose messages went nowhere lists recipients %v", p.Metadata.Recipients)
	}
}

// TestBlockedValuesAreDroppedNotRefused: by default a blocked value is left
// out of the identifiers and the message kept, as Segment does; refused
// only when no identifier is left. Without DropBlocked the message is
// refused, as before.
func TestBlockedValuesAreDroppedNotRefused(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.collect(t, privacy.Track{MessageID: "m1", UserID: "u-ok", AnonymousID: "null", Event: "E", Timestamp: at(1)})
	if got := onlyEvent(t, e.c, uidOf("u-ok")); got.MessageID != "m1" {
		t.Errorf("stored %+v; want m1", got)
	}
	if _, err := e.c.Profile(ctx, identity.ID{Type: identity.TypeAnonymousID, Value: "null"}); !errors.Is(err, privacy.ErrNotFound) {
		t.Errorf("the blocked anonymous id was linked: %v", err)
	}
	err := e.c.Collect(ctx, privacy.Track{AnonymousID: "null", Event: "E", Timestamp: at(2)})
	var fe *privacy.FieldError
	if !errors.Is(err, identity.ErrBlocked) || !errors.As(err, &fe) || fe.Field != "AnonymousID" {
		t.Errorf("a message whose only identifier is blocked: %v; want a FieldError on AnonymousID matching ErrBlocked", err)
	}

	strict := identity.DefaultRules()
	strict.DropBlocked = false
	s := newEnv(t, privacy.WithIdentityRules(strict))
	err = s.c.Collect(ctx, privacy.Track{UserID: "u-ok", AnonymousID: "null", Event: "E", Timestamp: at(1)})
	if !errors.Is(err, identity.ErrBlocked) {
		t.Errorf("strict rules: Collect = %v; want ErrBlocked", err)
	}
	if _, err := s.c.Profile(ctx, uidOf("u-ok")); !errors.Is(err, privacy.ErrNotFound) {
		t.Errorf("strict rules: the refused message stored something: %v", err)
	}
}

// consentingRecorder is a Recorder that falls under consent categories.
type consentingRecorder struct {
	*destination.Recorder
	categories []string
}

func (r consentingRecorder) ConsentCategories() []string { return r.categories }

// TestConsentRoutesMessages: a message carrying the person's consent
// preferences goes to a destination that declares categories only if every
// one of them is true; one without preferences goes as before; deletions
// go whatever the consent (Segment's Consent Management).
func TestConsentRoutesMessages(t *testing.T) {
	ads := consentingRecorder{destination.NewRecorder("ads"), []string{"Advertising", "DataSharing"}}
	crm := destination.NewRecorder("crm")
	e := newEnv(t, privacy.WithDestinations(ads, crm))
	ctx := context.Background()
	prefs := func(p map[string]any) map[string]any {
		return map[string]any{"consent": map[string]any{"categoryPreferences": p}}
	}
	e.collect(t,
		privacy.Track{MessageID: "no-consent", UserID: "u1", Event: "E", Timestamp: at(1)},
		privacy.Track{MessageID: "all-true", UserID: "u1", Event: "E", Timestamp: at(2), Context: prefs(map[string]any{"Advertising": true, "DataSharing": true})},
		privacy.Track{MessageID: "one-false", UserID: "u1", Event: "E", Timestamp: at(3), Context: prefs(map[string]any{"Advertising": true, "DataSharing": false})},
		privacy.Track{MessageID: "one-missing", UserID: "u1", Event: "E", Timestamp: at(4), Context: prefs(map[string]any{"Advertising": true})},
		privacy.Page{MessageID: "string-true", UserID: "u1", Name: "P", Timestamp: at(5), Context: prefs(map[string]any{"Advertising": "true", "DataSharing": true})},
	)
	if err := e.c.Flush(ctx); err != nil { // before the erasure, which drops what is still queued
		t.Fatal(err)
	}
	if _, err := e.c.Erase(ctx, uidOf("u1")); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := messageIDsSent(ads.Recorder), []string{"all-true", "no-consent"}; !slices.Equal(got, want) {
		t.Errorf("the destination under consent categories got %v; want %v", got, want)
	}
	if got := messageIDsSent(crm); len(got) != 5 {
		t.Errorf("the destination under no category got %v; want all 5", got)
	}
	if len(ads.Deletions()) != 1 {
		t.Errorf("the destination under consent categories got %d deletions; want the erasure's, whatever the consent", len(ads.Deletions()))
	}
}

// TestExternalIDsInContext: Segment's context.externalIds are identifiers,
// those of the users collection (or none named).
func TestExternalIDsInContext(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.collect(t, privacy.Track{AnonymousID: "a1", Event: "E", Timestamp: at(1), Context: map[string]any{"externalIds": []any{
		map[string]any{"id": "cus_42", "type": "stripe_id", "collection": "users", "encoding": "none"},
		map[string]any{"id": "ada@example.com", "type": "email"},
		map[string]any{"id": "acct_9", "type": "account_id", "collection": "accounts"},
		map[string]any{"id": 7, "type": "bad"},
	}}})
	a1, err := e.c.Profile(ctx, identity.ID{Type: identity.TypeAnonymousID, Value: "a1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []identity.ID{{Type: "stripe_id", Value: "cus_42"}, {Type: identity.TypeEmail, Value: "ada@example.com"}} {
		if p, err := e.c.Profile(ctx, id); err != nil || p.ID != a1.ID {
			t.Errorf("Profile(%v) = %v, %v; want a1's", id, p, err)
		}
	}
	for _, id := range []identity.ID{{Type: "account_id", Value: "acct_9"}, {Type: "bad", Value: "7"}} {
		if _, err := e.c.Profile(ctx, id); !errors.Is(err, privacy.ErrNotFound) {
			t.Errorf("Profile(%v) = %v; want not found (another collection, or not a string)", id, err)
		}
	}
}

// TestGroupIDInExternalIDsIsNotAnIdentifier: a group's id names a group,
// never a person, wherever it comes from.
func TestGroupIDInExternalIDsIsNotAnIdentifier(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ext := map[string]any{"externalIds": []any{map[string]any{"id": "acme", "type": "group_id"}}}
	e.collect(t, privacy.Track{AnonymousID: "a1", Event: "E", Timestamp: at(1), Context: ext},
		privacy.Track{AnonymousID: "a2", Event: "E", Timestamp: at(2), Context: ext})
	p1, err1 := e.c.Profile(ctx, identity.ID{Type: identity.TypeAnonymousID, Value: "a1"})
	p2, err2 := e.c.Profile(ctx, identity.ID{Type: identity.TypeAnonymousID, Value: "a2"})
	if err1 != nil || err2 != nil || p1.ID == p2.ID {
		t.Errorf("two people whose context names one group: profiles %v, %v (%v, %v); want two", p1, p2, err1, err2)
	}
}
