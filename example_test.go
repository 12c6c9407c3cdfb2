package privacy_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gdprkit/privacy"
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

// Bad input is refused with the field named; nothing is stored.
func ExampleFieldError() {
	c, _ := privacy.New()
	err := c.Collect(context.Background(), privacy.Identify{UserID: "u1", AnonymousID: "00000000-0000"})
	var fe *privacy.FieldError
	fmt.Println(errors.As(err, &fe), fe.Field)
	fmt.Println(err)
	// Output:
	// true Timestamp
	// privacy: invalid Timestamp: zero; set it to when the message happened
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
