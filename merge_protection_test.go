package privacy_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
)

// TestMergeProtection is the "blob profile" failure identity rules guard against:
// 100,000 people all send the same shop-floor device id and the placeholder
// anonymous id "anonymous". None of them may collapse into another's profile.
func TestMergeProtection(t *testing.T) {
	people := 100_000
	if testing.Short() {
		people = 5_000
	}
	shared := identity.ID{Type: "android.id", Value: "shop-kiosk-1"}
	for _, drop := range []bool{false, true} {
		t.Run(fmt.Sprintf("DropBlocked=%v", drop), func(t *testing.T) {
			rules := identity.DefaultRules()
			rules.DropBlocked = drop
			e := newEnv(t, privacy.WithIdentityRules(rules))
			ctx := context.Background()
			for i := range people {
				u := fmt.Sprint("u", i)
				e.collect(t, privacy.Identify{UserID: u, ExternalIDs: []identity.ID{shared}, Timestamp: at(i)})
				err := e.c.Collect(ctx, privacy.Track{UserID: u, AnonymousID: "anonymous", Event: "Visited", Timestamp: at(i)})
				switch {
				case drop && err != nil:
					t.Fatalf("person %d: %v", i, err)
				case !drop && !errors.Is(err, identity.ErrBlocked):
					t.Fatalf("person %d: err = %v, want the blocked anonymous id refused", i, err)
				}
			}
			profiles, links := e.graph.Len()
			if profiles != people {
				t.Fatalf("%d profiles for %d people", profiles, people)
			}
			// Each person's own user id plus, for the first person only, the device.
			if links != people+1 {
				t.Fatalf("%d identifiers linked, want %d", links, people+1)
			}
			first := e.profile(t, shared)
			if got := ids(first); len(got) != 2 || got[0] != "user_id:u0" {
				t.Fatalf("the shared device's profile holds %v, want u0 and the device only", got)
			}
			rules = identity.DefaultRules()
			for _, i := range []int{0, 1, people / 2, people - 1} {
				p := e.profile(t, user(fmt.Sprint("u", i)))
				if n := len(p.ExternalIDs); n > rules.MaxIdentifiers || n > 2 {
					t.Fatalf("person %d has %d identifiers", i, n)
				}
				wantEvents := 0
				if drop {
					wantEvents = 1
				}
				if got := len(e.events(t, user(fmt.Sprint("u", i)))); got != wantEvents {
					t.Fatalf("person %d has %d events, want %d", i, got, wantEvents)
				}
			}
		})
	}
}
