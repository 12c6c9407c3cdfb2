package privacy_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
)

func recipientNames(t *testing.T, e *env, u string) []string {
	t.Helper()
	pkg, err := e.c.Access(context.Background(), uidOf(u))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range pkg.Recipients {
		names = append(names, r.Name)
	}
	return names
}

// A rectification goes to the person's recipients only; the audience change
// it causes (the corrected trait enters them into an audience) still goes to
// every configured destination, with every identifier of the profile: ads,
// which Integrations kept from the person, hears of them through the
// rectification after all.
func TestRectificationsAudienceChangeGoesOnlyToRecipients(t *testing.T) {
	crm, ads := destination.NewRecorder("crm"), destination.NewRecorder("ads")
	e := newEnv(t, privacy.WithDestinations(crm, ads))
	ctx := context.Background()
	define(t, e.c, "pro", `trait('plan') = 'pro'`)
	only := map[string]any{"All": false, "crm": true}
	e.collect(t, privacy.Identify{UserID: "u1", Traits: map[string]any{"plan": "free"}, Timestamp: at(1), Integrations: only})
	flush(t, e.c)
	if n := len(ads.Messages()); n != 0 {
		t.Fatalf("premise: ads got %d messages", n)
	}
	if _, err := e.c.Rectify(ctx, uidOf("u1"), map[string]any{"plan": "pro"}); err != nil {
		t.Fatal(err)
	}
	flush(t, e.c)
	names := recipientNames(t, e, "u1")
	for _, m := range ads.Messages() {
		t.Errorf("ads (not a recipient; recipients listed %v) got from the rectification %s %s with identifiers %v", names, m.Type, m.Event, m.IDs)
	}
}

// An audience defined after the person was collected (or Refresh) sends
// "Audience Entered", with the person's identifiers, to every destination,
// and lists none of them as a recipient: what ads was sent and what the
// access report lists disagree (Art. 15(1)(c)), and a later rectification
// skips ads, which holds the person (Art. 19).
func TestDefineAudienceChangeListsItsRecipients(t *testing.T) {
	crm, ads := destination.NewRecorder("crm"), destination.NewRecorder("ads")
	e := newEnv(t, privacy.WithDestinations(crm, ads))
	only := map[string]any{"All": false, "crm": true}
	e.collect(t, privacy.Identify{UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(1), Integrations: only})
	define(t, e.c, "pro", `trait('plan') = 'pro'`)
	flush(t, e.c)
	names := recipientNames(t, e, "u1")
	for _, d := range []*destination.Recorder{crm, ads} {
		sent := received(d)
		if listed := slices.Contains(names, d.Name()); listed != (len(sent) > 0) {
			t.Errorf("%s was sent %v about u1; the access report lists recipients %v", d.Name(), sent, names)
		}
	}
}

// A person whose messages went to no destination: the rectification owes
// nobody anything; the request must finish.
func TestRectificationOfPersonWithNoRecipientsFinishes(t *testing.T) {
	crm, ads := destination.NewRecorder("crm"), destination.NewRecorder("ads")
	e := newEnv(t, privacy.WithDestinations(crm, ads))
	ctx := context.Background()
	e.collect(t, privacy.Identify{UserID: "u1", Traits: map[string]any{"plan": "free"}, Timestamp: at(1), Integrations: map[string]any{"All": false}})
	r, err := e.c.Rectify(ctx, uidOf("u1"), map[string]any{"plan": "pro"})
	if err != nil {
		t.Fatal(err)
	}
	flush(t, e.c)
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := e.c.Status(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status == privacy.Finished {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rectification of a person with no recipients: status %v, destinations %+v", got.Status, got.Destinations)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(crm.Messages()) + len(ads.Messages()); n != 0 {
		t.Errorf("%d messages sent", n)
	}
}

// ads was told u1 entered "pro" (it is a recipient, with the entry). A later
// message its Integrations keep from ads makes u1 leave "pro": the exit
// follows the message's routing only, so ads, which holds the membership,
// is never told it ended and keeps u1 in "pro" for good (inaccurate data a
// recipient holds, Art. 5(1)(d), 19). Routing by the message is right for
// a destination that holds nothing of the person; one that was told of the
// membership must hear of its end.
func TestAudienceExitReachesADestinationToldOfTheEntry(t *testing.T) {
	crm, ads := destination.NewRecorder("crm"), destination.NewRecorder("ads")
	e := newEnv(t, privacy.WithDestinations(crm, ads))
	define(t, e.c, "pro", `trait('plan') = 'pro'`)
	e.collect(t, privacy.Identify{UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(1)})
	flush(t, e.c)
	if !slices.Contains(received(ads), "track Audience Entered pro") {
		t.Fatalf("premise: ads got %v", received(ads))
	}
	e.collect(t, privacy.Identify{UserID: "u1", Traits: map[string]any{"plan": "free"}, Timestamp: at(2), Integrations: map[string]any{"ads": false}})
	flush(t, e.c)
	if m := members(t, e.c, "pro"); len(m) != 0 {
		t.Fatalf("premise: pro members %v", m)
	}
	if !slices.Contains(received(ads), "track Audience Exited pro") {
		t.Errorf("ads, told u1 entered pro, got %v: never told u1 left", received(ads))
	}
}

// The same through CollectBatch.
func TestAudienceExitReachesADestinationToldOfTheEntryBatch(t *testing.T) {
	crm, ads := destination.NewRecorder("crm"), destination.NewRecorder("ads")
	e := newEnv(t, privacy.WithDestinations(crm, ads))
	define(t, e.c, "pro", `trait('plan') = 'pro'`)
	ctx := context.Background()
	if err := e.c.CollectBatch(ctx, []privacy.Message{
		privacy.Identify{UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(1)},
		privacy.Identify{UserID: "u1", Traits: map[string]any{"plan": "free"}, Timestamp: at(2), Integrations: map[string]any{"ads": false}},
	}); err != nil {
		t.Fatal(err)
	}
	flush(t, e.c)
	got := received(ads)
	if slices.Contains(got, "track Audience Entered pro") && !slices.Contains(got, "track Audience Exited pro") {
		t.Errorf("ads, told u1 entered pro, got %v: never told u1 left", got)
	}
}

// TestHoldersConfiguredNowhereAreNotOwed: a destination that held the
// person but is configured nowhere any more (removed) is owed no
// rectification nor audience change: nothing would ever deliver them, and
// the rectification would wait for it for good.
func TestHoldersConfiguredNowhereAreNotOwed(t *testing.T) {
	ctx := context.Background()
	crm, old := destination.NewRecorder("crm"), destination.NewRecorder("old")
	e := newEnv(t, privacy.WithDestinations(crm, old))
	e.collect(t, privacy.Identify{UserID: "u1", Traits: map[string]any{"plan": "free"}, Timestamp: at(1)})
	flush(t, e.c)
	// The same data, a host configured without old (removed for good).
	e2 := newEnv(t, privacy.WithDestinations(crm), privacy.WithIdentity(e.graph), privacy.WithProfiles(e.profiles))
	r, err := e2.c.Rectify(ctx, user("u1"), map[string]any{"plan": "pro"})
	if err != nil {
		t.Fatal(err)
	}
	flush(t, e2.c)
	got, err := e2.c.Status(ctx, r.ID)
	if err != nil || got.Status != privacy.Finished || slices.ContainsFunc(got.Destinations, func(o privacy.Outcome) bool { return o.Name == "old" }) {
		t.Errorf("a rectification of a person held by a destination configured nowhere: %+v, %v; want FINISHED, not owed to old", got, err)
	}
}
