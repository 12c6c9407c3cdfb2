package privacy_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// FuzzCollectValidation feeds arbitrary fields to Collect: it must never panic;
// a refused message is ErrInvalid with nothing stored, and an accepted one can be
// read back by its user id (unless the rules drop it, blocked) with the trait as
// normalised.
func FuzzCollectValidation(f *testing.F) {
	f.Add("u1", "a1", "email", "a@b.c", "plan", "pro", "Order Completed", int64(1700000000))
	f.Add("anonymous", "", "", "", "", "", "", int64(0))
	f.Add("", "00000000-0000", "ios.id", " ", "k", "\xff", "E", int64(1))
	f.Add("null", "-1", "UPPER.Type", "v", "", "", "\x00", int64(-5))
	rules, err := identity.NewResolver(identity.DefaultRules())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, userID, anonID, extType, extValue, traitKey, traitValue, event string, unix int64) {
		graph, store := identity.NewMemGraph(), profile.NewMemStore()
		c, err := privacy.New(privacy.WithIdentity(graph), privacy.WithProfiles(store))
		if err != nil {
			t.Fatal(err)
		}
		var ts time.Time
		if unix != 0 {
			ts = time.Unix(unix, 0)
		}
		var ext []identity.ID
		if extType != "" || extValue != "" {
			ext = []identity.ID{{Type: extType, Value: extValue}}
		}
		ctx := context.Background()
		msgs := []privacy.Message{
			privacy.Identify{UserID: userID, AnonymousID: anonID, ExternalIDs: ext, Traits: map[string]any{traitKey: traitValue}, Timestamp: ts},
			privacy.Track{UserID: userID, AnonymousID: anonID, ExternalIDs: ext, Event: event, Properties: map[string]any{traitKey: traitValue}, Timestamp: ts},
		}
		for _, m := range msgs {
			before, _ := graph.Len()
			beforeStore := store.Len()
			err := c.Collect(ctx, m)
			if err != nil {
				if !errors.Is(err, privacy.ErrInvalid) {
					t.Fatalf("Collect(%#v) = %v, want nil or ErrInvalid", m, err)
				}
				if after, _ := graph.Len(); after != before || store.Len() != beforeStore {
					t.Fatalf("refused message %#v changed the stores", m)
				}
				continue
			}
			if _, err := rules.Check(identity.ID{Type: identity.TypeUserID, Value: userID}); userID == "" || errors.Is(err, identity.ErrBlocked) {
				continue // no user id, or one dropped as blocked: the message went under the others
			}
			p, err := c.Profile(ctx, identity.ID{Type: "user_id", Value: userID})
			if err != nil {
				t.Fatalf("accepted %#v but cannot read it back: %v", m, err)
			}
			if _, isIdentify := m.(privacy.Identify); isIdentify && p.Traits[traitKey].Value != traitValue {
				t.Fatalf("trait %q = %#v, want %q", traitKey, p.Traits[traitKey].Value, traitValue)
			}
		}
	})
}
