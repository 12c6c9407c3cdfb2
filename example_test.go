package privacy_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// One person on two devices becomes one profile, found by any identifier.
func ExampleController_Collect() {
	ctx := context.Background()
	c, _ := privacy.New()
	defer c.Close()
	ts := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)

	_ = c.Collect(ctx, privacy.Track{AnonymousID: "laptop", Event: "Product Viewed", Timestamp: ts})
	_ = c.Collect(ctx, privacy.Track{AnonymousID: "phone", Event: "App Opened", Timestamp: ts.Add(time.Hour)})
	_ = c.Collect(ctx, privacy.Identify{AnonymousID: "laptop", UserID: "u42",
		Traits: map[string]any{"email": "Grace@Example.com", "plan": "pro"}, Timestamp: ts.Add(2 * time.Hour)})
	_ = c.Collect(ctx, privacy.Identify{AnonymousID: "phone", UserID: "u42", Timestamp: ts.Add(3 * time.Hour)})

	p, err := c.Profile(ctx, identity.ID{Type: "email", Value: "grace@example.com"})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, e := range p.ExternalIDs {
		fmt.Println(e.ID)
	}
	fmt.Println("plan:", p.Traits["plan"].Value, "version:", p.Metadata.Version)
	// Output:
	// anonymous_id:laptop
	// user_id:u42
	// email:grace@example.com
	// anonymous_id:phone
	// plan: pro version: 3
}

// A batch is stored together; each message has its own outcome.
func ExampleController_CollectBatch() {
	ctx := context.Background()
	c, _ := privacy.New()
	defer c.Close()
	ts := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	_ = c.Collect(ctx, privacy.Identify{UserID: "u42", Timestamp: ts})
	_, _ = c.Suppress(ctx, identity.ID{Type: "user_id", Value: "u7"})

	err := c.CollectBatch(ctx, []privacy.Message{
		privacy.Track{MessageID: "m1", UserID: "u42", Event: "Product Viewed", Timestamp: ts.Add(time.Minute)},
		privacy.Track{MessageID: "m2", UserID: "u42", Timestamp: ts.Add(2 * time.Minute)}, // no event
		privacy.Track{MessageID: "m3", UserID: "u7", Event: "Product Viewed", Timestamp: ts.Add(3 * time.Minute)},
		privacy.Track{MessageID: "m1", UserID: "u42", Event: "Product Viewed", Timestamp: ts.Add(time.Minute)}, // a repeat
	})
	var be *privacy.BatchError
	if errors.As(err, &be) {
		for i, err := range be.Errs {
			fmt.Println(i, err)
		}
	}
	fmt.Println("suppressed:", errors.Is(err, privacy.ErrSuppressed))
	fmt.Printf("%+v\n", c.Stats())
	// Output:
	// 0 <nil>
	// 1 privacy: invalid Event: empty event name
	// 2 privacy: subject is suppressed
	// 3 <nil>
	// suppressed: true
	// {Collected:2 Duplicates:1 Suppressed:1 Refused:1}
}

// Bad input is refused with the field named; nothing is stored.
func ExampleFieldError() {
	c, _ := privacy.New()
	err := c.Collect(context.Background(), privacy.Track{UserID: "u1", Properties: map[string]any{"plan": "pro"}})
	var fe *privacy.FieldError
	fmt.Println(errors.As(err, &fe), fe.Field)
	fmt.Println(err)
	// Output:
	// true Event
	// privacy: invalid Event: empty event name
}

// Events page like the Profile API's events endpoint: newest first, with a cursor.
func ExampleController_Events() {
	ctx := context.Background()
	c, _ := privacy.New()
	ts := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	for i, name := range []string{"Signed Up", "Order Completed", "Order Completed", "Logged Out"} {
		_ = c.Collect(ctx, privacy.Track{UserID: "u1", Event: name, Properties: map[string]any{"n": i}, Timestamp: ts.Add(time.Duration(i) * time.Minute)})
	}
	q := profile.EventQuery{Exclude: []string{"Logged Out"}, Limit: 2}
	for page := 1; ; page++ {
		res, err := c.Events(ctx, identity.ID{Type: "user_id", Value: "u1"}, q)
		if err != nil {
			fmt.Println(err)
			return
		}
		for _, e := range res.Events {
			fmt.Println(page, e.Name, e.Properties["n"])
		}
		if res.Next == "" {
			break
		}
		q.Cursor = res.Next
	}
	// Output:
	// 1 Order Completed 2
	// 1 Order Completed 1
	// 2 Signed Up 0
}

// An audience is defined once and kept current as messages arrive.
func ExampleController_DefineAudience() {
	ctx := context.Background()
	c, _ := privacy.New()
	defer c.Close()
	ts := time.Now().UTC().Add(-time.Hour)
	_ = c.DefineAudience(ctx, audience.Definition{Key: "repeat_buyers",
		Query: `event('Order Completed').where(property('total') >= 100).within(30 days).count() >= 2`})
	for i, total := range []float64{120, 40, 250} {
		_ = c.Collect(ctx, privacy.Track{UserID: "u7", Event: "Order Completed",
			Properties: map[string]any{"total": total}, Timestamp: ts.Add(time.Duration(i) * time.Minute)})
		in, _ := c.Audiences(ctx, identity.ID{Type: "user_id", Value: "u7"})
		fmt.Println("after order", i+1, "audiences:", in)
	}
	// Output:
	// after order 1 audiences: []
	// after order 2 audiences: []
	// after order 3 audiences: [repeat_buyers]
}

// Erasure deletes the person everywhere and forwards the deletion downstream;
// the receipt says what each destination did.
func ExampleController_Erase() {
	ctx := context.Background()
	crm := destination.NewRecorder("crm")
	c, _ := privacy.New(privacy.WithDestinations(crm))
	defer c.Close()
	ts := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	_ = c.Collect(ctx, privacy.Identify{UserID: "u9", AnonymousID: "tablet", Traits: map[string]any{"email": "eve@example.com"}, Timestamp: ts})

	r, _ := c.Erase(ctx, identity.ID{Type: "email", Value: "eve@example.com"})
	_ = c.Flush(ctx)
	r, _ = c.Status(ctx, r.ID)
	fmt.Println(r.Type, r.Status, r.Due.Sub(r.Received) > 27*24*time.Hour)
	for _, o := range r.Destinations {
		fmt.Println(o.Name, o.Status)
	}
	fmt.Println("identifiers forwarded:", len(crm.Deletions()[0].IDs))
	_, err := c.Profile(ctx, identity.ID{Type: "user_id", Value: "u9"})
	fmt.Println(errors.Is(err, privacy.ErrNotFound))
	// Output:
	// DELETE_ONLY FINISHED true
	// crm FINISHED
	// identifiers forwarded: 3
	// true
}

// Suppression stops collection for every identifier of the person at once.
func ExampleController_Suppress() {
	ctx := context.Background()
	c, _ := privacy.New()
	defer c.Close()
	ts := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	_ = c.Collect(ctx, privacy.Identify{UserID: "u3", AnonymousID: "phone", Timestamp: ts})

	r, _ := c.Suppress(ctx, identity.ID{Type: "user_id", Value: "u3"})
	fmt.Println(r.Type, r.Status)
	err := c.Collect(ctx, privacy.Track{AnonymousID: "phone", Event: "App Opened", Timestamp: ts})
	fmt.Println(errors.Is(err, privacy.ErrSuppressed), c.Stats().Suppressed)

	_, _ = c.Unsuppress(ctx, identity.ID{Type: "user_id", Value: "u3"})
	fmt.Println(c.Collect(ctx, privacy.Track{AnonymousID: "phone", Event: "App Opened", Timestamp: ts}))
	// Output:
	// SUPPRESS_ONLY FINISHED
	// true 1
	// <nil>
}

// Segment's other calls, with its common fields: a page view stored as an
// event of type "page", its context kept; a group call as an event named by
// its group; the time corrected for the sender's clock skew.
func ExampleController_Collect_segmentSpec() {
	ctx := context.Background()
	now := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	c, _ := privacy.New(privacy.WithClock(func() time.Time { return now }))
	// The sender's clock runs an hour ahead: it stamped the view at 10:55
	// by its clock and sent it at 11:00, received at 10:00.
	_ = c.Collect(ctx, privacy.Page{UserID: "u1", Name: "Pricing", Category: "Docs",
		Context:   map[string]any{"ip": "203.0.113.9", "locale": "fr-FR"},
		Timestamp: now.Add(55 * time.Minute), SentAt: now.Add(time.Hour), ReceivedAt: now})
	_ = c.Collect(ctx, privacy.Group{UserID: "u1", GroupID: "acme", Traits: map[string]any{"plan": "enterprise"}})

	page, _ := c.Events(ctx, identity.ID{Type: "user_id", Value: "u1"}, profile.EventQuery{Sort: profile.Asc})
	for _, e := range page.Events {
		fmt.Println(e.Type, e.Name, e.Timestamp.Format("15:04"), e.Properties, e.Context["ip"])
	}
	// Output:
	// page Pricing 09:55 map[category:Docs name:Pricing] 203.0.113.9
	// group acme 10:00 map[plan:enterprise] <nil>
}

// A group call puts the group's traits on the account's own profile and
// links the person to it; the person's consent preferences, from the
// context of their messages, are kept with a history and read by audiences.
func ExampleController_Account() {
	ctx := context.Background()
	c, _ := privacy.New()
	defer c.Close()
	ts := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	_ = c.DefineAudience(ctx, audience.Definition{Key: "ads-ok", Query: "consent('Advertising') = true"})

	consent := func(ads bool) map[string]any {
		return map[string]any{"consent": map[string]any{"categoryPreferences": map[string]any{"Advertising": ads, "Analytics": true}}}
	}
	_ = c.Collect(ctx, privacy.Group{UserID: "u42", GroupID: "acme", Traits: map[string]any{"name": "Acme", "employees": 120},
		Timestamp: ts, Context: consent(true)})
	_ = c.Collect(ctx, privacy.Track{UserID: "u42", Event: privacy.ConsentPreferenceUpdated, Timestamp: ts.Add(time.Hour), Context: consent(false)})

	acme, _ := c.Account(ctx, "acme")
	fmt.Println("account:", acme.Traits["name"].Value, acme.Traits["employees"].Value)
	m, _ := c.Metadata(ctx, identity.ID{Type: identity.TypeUserID, Value: "u42"})
	fmt.Println("linked to:", m.Accounts[0].GroupID)
	fmt.Println("advertising:", m.Consent.Status("Advertising"), "analytics:", m.Consent.Status("Analytics"))
	for _, ch := range m.Consent.History() {
		fmt.Println("changed by:", ch.Type, ch.Event, ch.Timestamp.Format(time.Kitchen))
	}
	members, _ := c.Members(ctx, "ads-ok")
	fmt.Println("in ads-ok:", len(members))
	// Output:
	// account: Acme 120
	// linked to: acme
	// advertising: false analytics: true
	// changed by: group  10:00AM
	// changed by: track Segment Consent Preference Updated 11:00AM
	// in ads-ok: 0
}
