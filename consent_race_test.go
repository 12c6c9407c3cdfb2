package privacy_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/profile"
)

// Concurrent collection of consent and reads of it, on the MemStore and
// the sealed MemStore: under -race, no shared state is written.
func TestConsentSharedUnderRace(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		t.Run(fmt.Sprint("sealed=", sealed), func(t *testing.T) {
			var opts []privacy.Option
			opts = append(opts, privacy.WithDestinations(destination.NewRecorder("crm")), fastDelivery())
			if sealed {
				opts = append(opts, privacy.WithProfiles(profile.NewSealedMemStore()))
			}
			e := newEnv(t, opts...)
			define(t, e.c, "ads", "consent('Advertising') = true")
			ctx := context.Background()
			e.collect(t, privacy.Identify{MessageID: "i0", UserID: "u1", AnonymousID: "a0", Timestamp: at(0), Context: consentCtx(map[string]any{"Advertising": true})})
			var wg sync.WaitGroup
			for g := 0; g < 4; g++ {
				wg.Add(2)
				go func() {
					defer wg.Done()
					for i := 0; i < 50; i++ {
						_ = e.c.Collect(ctx, privacy.Track{MessageID: fmt.Sprintf("t%d-%d", g, i), UserID: "u1", Event: privacy.ConsentPreferenceUpdated,
							Timestamp: at(i + 1), Context: consentCtx(map[string]any{"Advertising": i%2 == 0, fmt.Sprint("c", g): true})})
						_ = e.c.Collect(ctx, privacy.Identify{MessageID: fmt.Sprintf("m%d-%d", g, i), UserID: "u1", AnonymousID: fmt.Sprintf("x%d-%d", g, i), Timestamp: at(i + 1),
							Context: consentCtx(map[string]any{"Advertising": false})})
					}
				}()
				go func() {
					defer wg.Done()
					for i := 0; i < 50; i++ {
						m, err := e.c.Metadata(ctx, user("u1"))
						if err != nil {
							t.Error(err)
							return
						}
						h := m.Consent.History()
						if len(h) > 0 {
							h[0].Preferences["x"] = true
						}
						cats := m.Consent.Categories()
						if cats != nil {
							cats["y"] = profile.ConsentGranted
						}
						_, _ = e.c.Access(ctx, user("u1"))
					}
				}()
			}
			wg.Wait()
			m, _ := e.c.Metadata(ctx, user("u1"))
			for _, ch := range m.Consent.History() {
				if ch.Preferences["x"] {
					t.Errorf("a caller's change to History() reached the store")
				}
			}
			if _, ok := m.Consent.Lookup("y"); ok {
				t.Errorf("a caller's change to Categories() reached the store")
			}
		})
	}
}
