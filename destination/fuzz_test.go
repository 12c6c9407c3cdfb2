package destination

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// FuzzVerifyWebhookPayload: whatever the header, key and body, verifying
// never panics, refuses with ErrSignature alone, and accepts only what
// SignWebhook signed: the same key and body under the same secret (its hex
// digits in either case).
func FuzzVerifyWebhookPayload(f *testing.F) {
	at := time.Unix(1_700_000_000, 0)
	body := []byte(`{"type":"batch","messages":[]}`)
	f.Add(SignWebhook(testSecret, at, "batch-abc", body), "batch-abc", body)
	f.Add("t=1700000000,v1=00", "delete-1", []byte("{}"))
	f.Add("t=,v1=", "", []byte(nil))
	f.Add("v1=zz,t=1700000000,t=1", "k.k", []byte("."))
	f.Add("sha256=abcdef", "batch-x", []byte("x"))
	f.Add(",,,=,=", "", []byte(""))
	f.Fuzz(func(t *testing.T, header, key string, body []byte) {
		err := VerifyWebhookPayload(testSecret, header, key, body, 0, at)
		if err != nil {
			if !errors.Is(err, ErrSignature) {
				t.Fatalf("VerifyWebhookPayload(%q, %q) = %v; want ErrSignature", header, key, err)
			}
			return
		}
		// Accepted: it must be a signature of exactly this key and body. Hex
		// digits are read in either case, as hex.DecodeString reads them: the
		// same bytes are the same signature.
		if want := SignWebhook(testSecret, at, key, body); !bytes.Contains(bytes.ToLower([]byte(header)), []byte(want[len("t=1700000000,"):])) {
			t.Fatalf("VerifyWebhookPayload accepted %q for key %q, which SignWebhook would sign as %q", header, key, want)
		}
	})
}
