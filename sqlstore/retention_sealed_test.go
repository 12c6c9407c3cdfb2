package sqlstore_test

import (
	"crypto/rand"
	"encoding/hex"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
)

// TestRetentionInactiveErasureLeavesNothingSealed: a sealed store, a
// destination down (messages pending, dead letters), the idle person with
// traits, event properties, consent context, an account link and a device
// id, each carrying a canary. After the retention run erased them (and
// Run's purge), no table of the site holds any canary.
func TestRetentionInactiveErasureLeavesNothingSealed(t *testing.T) {
	forEachSite(t, func(t *testing.T, s *site) {
		ctx := t.Context()
		var tag [3]byte
		rand.Read(tag[:])
		cn := "cnry" + hex.EncodeToString(tag[:])
		var offset atomic.Int64
		crm := destination.NewRecorder("crm")
		crm.FailSends(-1)
		p := s.open(t)
		c := p.controller(t, nil, privacy.WithKeyring(p.data.Keyring()), privacy.WithDestinations(crm),
			privacy.WithClock(func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }),
			privacy.WithDelivery(privacy.Delivery{Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, MaxAttempts: 2, Poll: 5 * time.Millisecond}),
			privacy.WithRetention(privacy.RetentionPolicy{InactiveProfiles: 365 * 24 * time.Hour}))
		offset.Store(int64(-400 * 24 * time.Hour))
		ts := time.Now().Add(-400 * 24 * time.Hour)
		must(t, c.Collect(ctx, privacy.Identify{MessageID: "i-" + cn, UserID: "u-" + cn, AnonymousID: "a-" + cn,
			Traits: map[string]any{"email": "e-" + cn + "@example.com", "nested": map[string]any{"k": "t-" + cn}}, Timestamp: ts,
			Context: map[string]any{"consent": map[string]any{"categoryPreferences": map[string]any{"Advertising": true}}, "ip": "ip-" + cn}}))
		must(t, c.Collect(ctx, privacy.Track{MessageID: "t-" + cn, UserID: "u-" + cn, Event: "Viewed", Properties: map[string]any{"note": "p-" + cn}, Timestamp: ts}))
		must(t, c.Collect(ctx, privacy.Group{MessageID: "g-" + cn, UserID: "u-" + cn, GroupID: "acct", Traits: map[string]any{"name": "Acme"}, Timestamp: ts}))
		time.Sleep(300 * time.Millisecond) // sends die
		offset.Store(0)
		if got := s.holders(t, cn); len(got) == 0 {
			t.Fatal("the canary is held nowhere before the run: the search cannot tell")
		} else {
			t.Logf("before: %v", got)
		}
		rep, err := c.ApplyRetention(ctx, privacy.RetentionOptions{})
		if err != nil || rep.Erased != 1 {
			t.Fatalf("ApplyRetention = %+v, %v", rep, err)
		}
		if _, err := c.Recover(ctx); err != nil {
			t.Fatal(err)
		}
		if got := s.holders(t, cn); len(got) != 0 {
			t.Errorf("after the retention run erased the idle person, %q is held in %v", cn, got)
		}
	})
}
