package destination_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
)

func ExampleRecorder() {
	rec := destination.NewRecorder("crm")
	ts := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	msgs := []destination.Message{
		{
			MessageID: "msg_1",
			Type:      destination.TypeIdentify,
			ProfileID: "use_01hx0000000000000000000000",
			IDs:       []identity.ID{{Type: identity.TypeEmail, Value: "ada@example.com"}},
			Traits:    map[string]any{"name": "Ada", "plan": "pro"},
			Timestamp: ts,
		},
		{
			MessageID:  "msg_2",
			Type:       destination.TypeTrack,
			Event:      destination.AudienceEntered,
			ProfileID:  "use_01hx0000000000000000000000",
			Properties: map[string]any{"audience_key": "big_spenders"},
			Timestamp:  ts,
		},
	}
	ctx := context.Background()
	if err := rec.Send(ctx, msgs); err != nil {
		fmt.Println(err)
	}
	// A retried batch is recorded once, as a de-duplicating destination would.
	if err := rec.Send(ctx, msgs); err != nil {
		fmt.Println(err)
	}

	for _, m := range rec.Messages() {
		fmt.Println(m.MessageID, m.Type, m.Event, m.IDs, m.Traits, m.Properties)
	}
	sends, _ := rec.Calls()
	fmt.Println("send calls:", sends)
	// Output:
	// msg_1 identify  [email:ada@example.com] map[name:Ada plan:pro] map[]
	// msg_2 track Audience Entered [] map[] map[audience_key:big_spenders]
	// send calls: 2
}

func ExampleVerifyWebhook() {
	secret := []byte("shared-secret-of-32-bytes-length")

	// The receiver's handler checks the request before it trusts the body.
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := destination.VerifyWebhook(r, secret, 0)
		if err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		// Drop a key already applied, then apply the body.
		fmt.Println("applied", r.Header.Get(destination.IdempotencyHeader), len(body) > 0)
	})

	// A request as the webhook sends it.
	body := `{"type":"delete","requestId":"req_1","profileId":"use_01hx0000000000000000000000","identifiers":["email:ada@example.com"]}`
	send := func(body string, signedAt time.Time) int {
		req := httptest.NewRequest("POST", "/gdpr", strings.NewReader(body))
		req.Header.Set(destination.IdempotencyHeader, "delete-1")
		req.Header.Set(destination.SignatureHeader, destination.SignWebhook(secret, signedAt, "delete-1", []byte(body)))
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		return rec.Code
	}
	fmt.Println(send(body, time.Now()))
	// A captured request replayed an hour later.
	fmt.Println(send(body, time.Now().Add(-time.Hour)))
	// Output:
	// applied delete-1 true
	// 200
	// 401
}
