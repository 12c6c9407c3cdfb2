package privacy_test

// Attacks of a review of issue 16's first part, kept: each failed on the
// code as reviewed because of the defect it names.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/internal/memscan"
	"github.com/gdprkit/privacy/profile"
)

// A message its Integrations keep from a destination can still make the
// person enter an audience; the audience event (with every identifier of
// the profile) went to every destination, while the profile listed as
// recipients only those the message went to (Art. 15(1)(c)). The audience
// changes a message causes now go where it goes: what a destination was
// sent and what the access report lists agree.
func TestUnroutedMessagesAudienceChangeListsItsRecipients(t *testing.T) {
	crm, ads := destination.NewRecorder("crm"), destination.NewRecorder("ads")
	e := newEnv(t, privacy.WithDestinations(crm, ads))
	ctx := context.Background()
	define(t, e.c, "viewers", `event('Viewed').count() >= 1`)
	e.collect(t, privacy.Track{MessageID: "m1", UserID: "u1", Event: "Viewed", Timestamp: at(1),
		Integrations: map[string]any{"All": false, "ads": true}})
	flush(t, e.c)
	pkg, err := e.c.Access(ctx, uidOf("u1"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range pkg.Recipients {
		names = append(names, r.Name)
	}
	for _, d := range []*destination.Recorder{crm, ads} {
		var sent []string
		for _, m := range d.Messages() {
			sent = append(sent, m.Type+" "+m.Event)
		}
		if listed := slices.Contains(names, d.Name()); listed != (len(sent) > 0) {
			t.Errorf("%s was sent %v about u1, and the access report lists recipients %v", d.Name(), sent, names)
		}
	}
	if !slices.ContainsFunc(ads.Messages(), func(m destination.Message) bool { return m.Event == destination.AudienceEntered }) {
		t.Error("ads, which the message went to, did not hear of the audience it entered")
	}
}

// Segment's correction is ReceivedAt - (SentAt - Timestamp): a sender whose
// clock is right (SentAt == ReceivedAt) keeps its Timestamp exactly, however
// long ago it was (a historical import). time.Time.Sub saturates at about
// 292 years, so an older Timestamp is moved.
func TestSkewCorrectionOfAnOldTimestamp(t *testing.T) {
	for _, ts := range []time.Time{
		time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC),
	} {
		e := newEnv(t)
		e.collect(t, privacy.Track{UserID: "u1", Event: "E", Timestamp: ts, SentAt: at(0), ReceivedAt: at(0)})
		if got := onlyEvent(t, e.c, uidOf("u1")).Timestamp; !got.Equal(ts) {
			t.Errorf("Timestamp %v sent and received at the same time: stored at %v; want %v", ts, got, ts)
		}
	}
}

// A person in two groups: the stored group events must say which group each
// is (Segment's Profile API returns a group call's groupId); here the stored
// event holds the group's traits only, so whose traits they are is lost.
func TestStoredGroupEventKeepsItsGroupID(t *testing.T) {
	e := newEnv(t)
	e.collect(t,
		privacy.Group{MessageID: "g1", UserID: "u1", GroupID: "acme", Traits: map[string]any{"plan": "enterprise"}, Timestamp: at(1)},
		privacy.Group{MessageID: "g2", UserID: "u1", GroupID: "globex", Traits: map[string]any{"plan": "free"}, Timestamp: at(2)})
	for _, ev := range e.events(t, uidOf("u1")) {
		want := map[string]string{"g1": "acme", "g2": "globex"}[ev.MessageID]
		if !strings.Contains(fmt.Sprint(ev.Name, ev.Properties), want) {
			t.Errorf("stored group event %s = %+v: nothing in it names its group %q", ev.MessageID, ev, want)
		}
	}
}

// An alias names the user id the person has now; with that id blocked (a
// client sending the string "null"), DropBlocked drops it and the alias is
// kept on whatever identifier is left, then sent on without any user id:
// the destination is told previousId is ... nobody. An alias whose UserID
// is not usable must be refused, as an alias without one is.
func TestAliasWithBlockedUserIDIsRefused(t *testing.T) {
	crm := destination.NewRecorder("crm")
	e := newEnv(t, privacy.WithDestinations(crm))
	ctx := context.Background()
	err := e.c.Collect(ctx, privacy.Alias{MessageID: "a1", UserID: "null", AnonymousID: "anon-1", PreviousID: "old-id", Timestamp: at(1)})
	if err == nil {
		flush(t, e.c)
		for _, m := range crm.Messages() {
			if m.MessageID == "a1" && !slices.ContainsFunc(m.IDs, func(id identity.ID) bool { return id.Type == identity.TypeUserID }) {
				t.Errorf("an alias whose UserID is blocked was accepted and sent with no user id: %+v", m)
			}
		}
		return
	}
	if !errors.Is(err, identity.ErrBlocked) {
		t.Errorf("Collect = %v; want ErrBlocked", err)
	}
}

// The issue: "a trait named group_id became an identifier and merged two
// anonymous users who shared a group". A Group call's GroupID is now that
// identifier, with the same effect: two visitors who each say they belong
// to one company become one person (one profile, each other's events and
// traits, each other's Access and erasure).
func TestGroupCallsDoNotMergeTheirMembers(t *testing.T) {
	e := newEnv(t)
	e.collect(t,
		privacy.Track{AnonymousID: "a1", Event: "Viewed", Properties: map[string]any{"secret": "a1's"}, Timestamp: at(0)},
		privacy.Group{AnonymousID: "a1", GroupID: "acme", Timestamp: at(1)},
		privacy.Group{AnonymousID: "a2", GroupID: "acme", Timestamp: at(2)})
	p1, p2 := e.profile(t, anon("a1")), e.profile(t, anon("a2"))
	if p1.ID == p2.ID {
		t.Errorf("two anonymous visitors who sent a group call for the same group are one profile %s (identifiers %v): a2 reads a1's events %v",
			p1.ID, ids(p1), e.events(t, anon("a2")))
	}
}

// One member of a company objects and is erased: the group's id, linked to
// their profile as an identifier, is suppressed with the rest, and every
// other member's group call for that company is refused from then on.
func TestErasingAGroupMemberDoesNotSuppressTheGroup(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.collect(t, privacy.Group{UserID: "u1", GroupID: "globex", Timestamp: at(1)},
		privacy.Group{UserID: "u2", GroupID: "globex", Timestamp: at(2)})
	if _, err := e.c.Apply(ctx, privacy.Request{Type: privacy.SuppressWithDelete, Subjects: []identity.ID{user("u1")}}); err != nil {
		t.Fatal(err)
	}
	flush(t, e.c)
	for _, u := range []string{"u2", "u3"} {
		if err := e.c.Collect(ctx, privacy.Group{UserID: u, GroupID: "globex", Traits: map[string]any{"plan": "pro"}, Timestamp: at(3)}); err != nil {
			t.Errorf("%s's group call for globex after u1 (another member) was erased: %v; want it collected", u, err)
		}
	}
}

// A context planted with a canary, through every collection path and
// merges on the sealed MemStore, then erasures: the store never holds it
// in clear.
func TestSealedStoreHoldsNoContextCanary(t *testing.T) {
	ctx := context.Background()
	const canary = "canary-ctx-Wm3-ip@example.org"
	store := profile.NewSealedMemStore()
	c, err := privacy.New(privacy.WithProfiles(store), privacy.WithDestinations(destination.NewRecorder("crm")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cx := map[string]any{"ip": canary, "traits": map[string]any{"name": canary}, "page": map[string]any{canary: []any{canary}}}
	for i := range 20 {
		u, a := fmt.Sprintf("u%d", i%3), fmt.Sprintf("a%d", i)
		_ = c.Collect(ctx, privacy.Page{AnonymousID: a, Name: "P", Context: cx, Timestamp: at(i)})
		_ = c.Collect(ctx, privacy.Identify{UserID: u, AnonymousID: a, Context: cx, Timestamp: at(i)}) // merges a into u
		_ = c.CollectBatch(ctx, []privacy.Message{
			privacy.Screen{UserID: u, Name: "S", Context: cx, Timestamp: at(i)},
			privacy.Track{UserID: u, Event: "T", Context: cx, Timestamp: at(i)},
			privacy.Alias{UserID: u, PreviousID: a, Context: cx, Timestamp: at(i)},
		})
		if i%7 == 6 {
			_, _ = c.Erase(ctx, identity.ID{Type: "user_id", Value: u})
		}
	}
	ev, err := c.Events(ctx, identity.ID{Type: "user_id", Value: "u1"}, profile.EventQuery{Limit: profile.MaxLimit})
	if err != nil || len(ev.Events) == 0 || ev.Events[0].Context["ip"] != canary {
		t.Fatalf("Events = %+v, %v", ev, err)
	}
	if memscan.Holds(store, canary) {
		t.Error("the sealed store holds the context canary in clear")
	}
}

// An audience on a track event counts the pages and screens that happen to
// bear the event's name: a visitor who only saw the "Order Completed"
// confirmation page (a page call) is a buyer, and audiences defined before
// pages existed change meaning.
func TestPageViewIsNotTheTrackEventOfTheSameName(t *testing.T) {
	crm := destination.NewRecorder("crm")
	e := newEnv(t, privacy.WithDestinations(crm))
	define(t, e.c, "buyers", `event('Order Completed').count() >= 1`)
	e.collect(t, privacy.Page{UserID: "u1", Name: "Order Completed", Timestamp: at(1)},
		privacy.Screen{UserID: "u2", Name: "Order Completed", Timestamp: at(1)})
	if m := members(t, e.c, "buyers"); len(m) != 0 {
		t.Errorf("buyers (event('Order Completed')) has members %v, who only viewed a page or screen of that name", m)
	}
}

// Integrations kept the person from "ads": ads never received anything of
// them, and the profile rightly does not list ads as a recipient. A
// rectification then sends the corrected traits, with every identifier of
// the profile, to ads too (and lists ads as a recipient): the right to
// rectification (Art. 19: notify the recipients) discloses the person to a
// destination their messages were kept from.
func TestRectificationGoesOnlyToRecipients(t *testing.T) {
	crm, ads := destination.NewRecorder("crm"), destination.NewRecorder("ads")
	e := newEnv(t, privacy.WithDestinations(crm, ads))
	ctx := context.Background()
	only := map[string]any{"All": false, "crm": true}
	e.collect(t, privacy.Identify{UserID: "u1", Traits: map[string]any{"email": "ada@example.com", "plan": "free"}, Timestamp: at(1), Integrations: only},
		privacy.Track{UserID: "u1", Event: "E", Timestamp: at(2), Integrations: only})
	flush(t, e.c)
	if n := len(ads.Messages()); n != 0 {
		t.Fatalf("ads got %d messages before the rectification; want none (the premise)", n)
	}
	if _, err := e.c.Rectify(ctx, uidOf("u1"), map[string]any{"plan": "pro"}); err != nil {
		t.Fatal(err)
	}
	flush(t, e.c)
	for _, m := range ads.Messages() {
		t.Errorf("ads, which never received u1, got from the rectification %s with identifiers %v and traits %v", m.Type, m.IDs, m.Traits)
	}
}

// Segment takes android.idfa from context.device.advertisingId only "when
// context.device.type = 'android' AND context.device.adTrackingEnabled =
// true" (Unify's externalIDs table). A person who turned ad tracking off
// (an Android device still reports its advertising id then) has it linked
// to their profile here, kept and sent on as an identifier.
func TestAdvertisingIDNotTakenWhenAdTrackingIsOff(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i, typ := range []string{"android"} {
		e.collect(t, privacy.Screen{AnonymousID: fmt.Sprint("a", i), Name: "Home", Timestamp: at(1),
			Context: map[string]any{"device": map[string]any{"type": typ, "id": "dev-" + typ, "advertisingId": "adid-" + typ, "adTrackingEnabled": false}}})
		if p, err := e.c.Profile(ctx, identity.ID{Type: typ + ".idfa", Value: "adid-" + typ}); err == nil {
			t.Errorf("%s.idfa taken from a device whose adTrackingEnabled is false: profile %s has identifiers %v", typ, p.ID, ids(p))
		}
	}
}

// Issue 16: "a same-named trait alone no longer makes an identifier unless
// configured" (Segment takes traits.email, not a trait named user_id or
// ios.id). Only group_id was taken out: a trait named after any other
// default type still links, and merges, profiles.
func TestSameNamedTraitIsNotAnIdentifier(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.collect(t,
		privacy.Identify{AnonymousID: "a1", Traits: map[string]any{"ios.id": "shared-kiosk-ipad", "user_id": "u-claimed"}, Timestamp: at(1)},
		privacy.Identify{AnonymousID: "a2", Traits: map[string]any{"ios.id": "shared-kiosk-ipad"}, Timestamp: at(2)})
	for _, id := range []identity.ID{{Type: "ios.id", Value: "shared-kiosk-ipad"}, uidOf("u-claimed")} {
		if p, err := e.c.Profile(ctx, id); err == nil {
			t.Errorf("a trait named %s made an identifier: profile %s has %v", id.Type, p.ID, ids(p))
		}
	}
	if p1, p2 := e.profile(t, anon("a1")), e.profile(t, anon("a2")); p1.ID == p2.ID {
		t.Errorf("two visitors whose trait ios.id is the same were merged into %s", p1.ID)
	}
}
