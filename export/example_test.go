package export_test

import (
	"bytes"
	"fmt"
	"log"
	"time"

	"github.com/gdprkit/privacy/export"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// Write a small package as NDJSON, one record per line, and read it back.
func Example() {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	p := &export.Package{
		Schema:      export.SchemaVersion,
		GeneratedAt: at,
		RequestID:   "req_1",
		Profile: profile.Profile{
			ID:          "use_1",
			Traits:      map[string]profile.Trait{"plan": {Value: "pro", Source: "identify", UpdatedAt: at}},
			ExternalIDs: []profile.ExternalID{{ID: identity.ID{Type: "email", Value: "a@b.c"}, CreatedAt: at, FirstMessageID: "m1"}},
			Metadata: profile.Metadata{Version: 2, Consent: profile.NewConsent(
				map[string]profile.ConsentStatus{"Advertising": profile.ConsentDenied, "Analytics": profile.ConsentGranted}, at, nil)},
		},
		Events:     []profile.Event{{MessageID: "m1", Name: "Signed Up", Properties: map[string]any{"trial": true}, Timestamp: at}},
		Audiences:  []string{"vip"},
		Recipients: []export.Recipient{{Name: "crm", FirstSent: at, LastSent: at}},
		ConsentHistory: []profile.ConsentChange{{MessageID: "m0", Type: "track", Event: "Segment Consent Preference Updated",
			Timestamp: at, Preferences: map[string]bool{"Advertising": false, "Analytics": true}}},
		Accounts: []profile.AccountLink{{GroupID: "acme", FirstLinked: at, LastLinked: at}},
	}
	var buf bytes.Buffer
	if err := export.Write(&buf, export.NDJSON, p); err != nil {
		log.Fatal(err)
	}
	fmt.Print(buf.String())

	back, err := export.Read(&buf, export.NDJSON)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(back.Events), back.Profile.Traits["plan"].Value, back.Profile.Metadata.Consent.Status("Analytics"), back.Accounts[0].GroupID)
	// Output:
	// {"kind":"header","schema":"gdprkit.export/v1","request_id":"req_1","generated_at":"2024-05-01T12:00:00Z","profile_id":"use_1","metadata":{"version":2,"first_message_id":"","last_message_id":"","consent":{"categories":{"Advertising":false,"Analytics":true},"updated_at":"2024-05-01T12:00:00Z"}},"suppression":{"suppressed":false}}
	// {"kind":"identifier","type":"email","value":"a@b.c","first_message_id":"m1","created_at":"2024-05-01T12:00:00Z"}
	// {"kind":"trait","key":"plan","value":"pro","source":"identify","updated_at":"2024-05-01T12:00:00Z"}
	// {"kind":"event","message_id":"m1","name":"Signed Up","timestamp":"2024-05-01T12:00:00Z","properties":{"trial":true}}
	// {"kind":"audience","key":"vip"}
	// {"kind":"recipient","name":"crm","first_sent":"2024-05-01T12:00:00Z","last_sent":"2024-05-01T12:00:00Z"}
	// {"kind":"consent_change","message_id":"m0","type":"track","event":"Segment Consent Preference Updated","source":"","timestamp":"2024-05-01T12:00:00Z","preferences":{"Advertising":false,"Analytics":true}}
	// {"kind":"account","group_id":"acme","first_linked":"2024-05-01T12:00:00Z","last_linked":"2024-05-01T12:00:00Z"}
	// {"kind":"end","counts":{"identifier":1,"trait":1,"event":1,"audience":1,"request":0,"recipient":1,"consent_change":1,"account":1}}
	// 1 pro true acme
}

// A Writer streams an export section by section, as a caller reading its
// stores page by page would; sections it has nothing for are left empty.
func ExampleWriter() {
	var buf bytes.Buffer
	w, err := export.NewWriter(&buf, export.JSON)
	if err != nil {
		log.Fatal(err)
	}
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	if err := w.WriteHeader(export.Header{GeneratedAt: at, RequestID: "req_1", ProfileID: "use_1"}); err != nil {
		log.Fatal(err)
	}
	for page := range 2 { // say, two pages of events from the store
		if err := w.WriteEvent(profile.Event{MessageID: fmt.Sprint("m", page), Name: "Page Viewed", Timestamp: at}); err != nil {
			log.Fatal(err)
		}
	}
	if err := w.WriteAudience("readers"); err != nil {
		log.Fatal(err)
	}
	// Out of order: refused, and nothing is written.
	fmt.Println(w.WriteEvent(profile.Event{MessageID: "m9"}))
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	fmt.Print(buf.String())
	// Output:
	// export: invalid: write event after audience: sections come in the order header, identifier, trait, event, audience, request, recipient, consent_change, account
	// {"schema":"gdprkit.export/v1","request_id":"req_1","generated_at":"2024-05-01T12:00:00Z","suppression":{"suppressed":false},"profile":{"id":"use_1","metadata":{"version":0,"first_message_id":"","last_message_id":""},"external_ids":[],"traits":{}},"events":[{"message_id":"m0","name":"Page Viewed","timestamp":"2024-05-01T12:00:00Z"},{"message_id":"m1","name":"Page Viewed","timestamp":"2024-05-01T12:00:00Z"}],"audiences":["readers"],"requests":[],"recipients":[],"consent_history":[],"accounts":[]}
}
