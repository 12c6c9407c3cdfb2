package journal

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// An entry sealed before consent and account links were sealed: its sealed
// part holds the old fields only, and its consent and links stayed in clear.
// It must still open, and opening it must not lose them.
func TestOldSealedEntryOpens(t *testing.T) {
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	consent := profile.NewConsent(map[string]profile.ConsentStatus{"Advertising": profile.ConsentGranted}, ts,
		[]profile.ConsentChange{{MessageID: "m1", Type: "track", Timestamp: ts, Preferences: map[string]bool{"Advertising": true}}})
	e := &Entry{ID: "r1", Decision: Decision{Rectify: []Rectification{{Profile: "use_x", Update: profile.Update{
		Metadata: profile.Metadata{Consent: consent, Accounts: []profile.AccountLink{{GroupID: "acme"}}}}}}}}
	// The old SealPersonal: these fields only.
	old := struct {
		Subjects []identity.ID
		Rectify  []struct {
			Set                           map[string]profile.Trait
			FirstMessageID, LastMessageID string
		}
	}{Subjects: []identity.ID{{Type: "user_id", Value: "u1"}}}
	old.Rectify = append(old.Rectify, struct {
		Set                           map[string]profile.Trait
		FirstMessageID, LastMessageID string
	}{Set: map[string]profile.Trait{"phone": {Value: "+33"}}, FirstMessageID: "f", LastMessageID: "l"})
	b, _ := json.Marshal(old)
	e.Sealed = b
	if err := e.OpenPersonal(func(b []byte) ([]byte, error) { return append([]byte(nil), b...), nil }); err != nil {
		t.Fatalf("an entry sealed in the old format does not open: %v", err)
	}
	u := e.Decision.Rectify[0].Update
	if u.Set["phone"].Value != "+33" || u.Metadata.FirstMessageID != "f" {
		t.Errorf("opened: %+v", u)
	}
	if !u.Metadata.Consent.Equal(consent) {
		t.Errorf("opening an entry sealed in the old format replaced its consent (kept in clear then) with %+v", u.Metadata.Consent.Categories())
	}
	if len(u.Metadata.Accounts) != 1 {
		t.Errorf("opening an entry sealed in the old format dropped its account links: %v", u.Metadata.Accounts)
	}
}
