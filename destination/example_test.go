package destination_test

import (
	"context"
	"fmt"
	"io"
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

func ExampleVerifySignature() {
	secret := []byte("shared-secret-of-32-bytes-length")

	// The receiver of a webhook checks the signature over the exact body it read
	// before trusting the request.
	verified := func(r io.Reader, header string) bool {
		body, err := io.ReadAll(r)
		if err != nil {
			return false
		}
		return destination.VerifySignature(secret, body, header)
	}

	// A request as the webhook sends it.
	body := `{"type":"delete","requestId":"req_1","profileId":"use_01hx0000000000000000000000","identifiers":["email:ada@example.com"]}`
	req := httptest.NewRequest("POST", "/gdpr", strings.NewReader(body))
	req.Header.Set(destination.SignatureHeader, destination.Sign(secret, []byte(body)))
	fmt.Println(verified(req.Body, req.Header.Get(destination.SignatureHeader)))

	// The same signature over a body changed on the way.
	tampered := strings.Replace(body, "req_1", "req_2", 1)
	fmt.Println(verified(strings.NewReader(tampered), req.Header.Get(destination.SignatureHeader)))
	// Output:
	// true
	// false
}
