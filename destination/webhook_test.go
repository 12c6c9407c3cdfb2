package destination

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gdprkit/privacy/identity"
)

var testSecret = []byte("0123456789abcdef-webhook-secret")

// request is what the test server saw of one request.
type request struct {
	Method      string
	Path        string
	ContentType string
	Signature   string
	Key         string
	Body        []byte
}

// receiver is a loopback HTTP server that records every request and answers
// with a configurable status and body.
type receiver struct {
	srv *httptest.Server

	mu     sync.Mutex
	reqs   []request
	status int
	answer string
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	rc := &receiver{status: http.StatusOK}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("server: reading body: %v", err)
		}
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, request{
			Method:      r.Method,
			Path:        r.URL.RequestURI(),
			ContentType: r.Header.Get("Content-Type"),
			Signature:   r.Header.Get(SignatureHeader),
			Key:         r.Header.Get(IdempotencyHeader),
			Body:        body,
		})
		status, answer := rc.status, rc.answer
		rc.mu.Unlock()
		w.WriteHeader(status)
		io.WriteString(w, answer)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) respond(status int, answer string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.status, rc.answer = status, answer
}

func (rc *receiver) requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.reqs...)
}

// only returns the one request the server received.
func (rc *receiver) only(t *testing.T) request {
	t.Helper()
	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("server received %d requests, want 1", len(reqs))
	}
	return reqs[0]
}

func newTestWebhook(t *testing.T, cfg WebhookConfig) *Webhook {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "hook"
	}
	if cfg.Secret == nil {
		cfg.Secret = testSecret
	}
	// The test servers listen on the loopback interface, in clear.
	cfg.AllowInsecureHTTP = true
	w, err := NewWebhook(cfg)
	if err != nil {
		t.Fatalf("NewWebhook: %v", err)
	}
	return w
}

// decode decodes a JSON body into generic values, so that a comparison also
// checks field names and which fields are absent.
func decode(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("body %s is not a JSON object: %v", body, err)
	}
	return v
}

func TestNewWebhookInvalid(t *testing.T) {
	valid := WebhookConfig{Name: "hook", URL: "https://example.com/hook", Secret: testSecret}
	tests := []struct {
		name   string
		change func(*WebhookConfig)
		field  string // what the error must name
	}{
		{"empty name", func(c *WebhookConfig) { c.Name = "" }, "Name"},
		{"empty URL", func(c *WebhookConfig) { c.URL = "" }, "URL"},
		{"no scheme", func(c *WebhookConfig) { c.URL = "example.com/hook" }, "URL"},
		{"ftp", func(c *WebhookConfig) { c.URL = "ftp://example.com/hook" }, "URL"},
		{"mailto", func(c *WebhookConfig) { c.URL = "mailto:dpo@example.com" }, "URL"},
		{"missing host", func(c *WebhookConfig) { c.URL = "http:///hook" }, "URL"},
		{"scheme only", func(c *WebhookConfig) { c.URL = "https://" }, "URL"},
		{"unparsable", func(c *WebhookConfig) { c.URL = "http://exa mple.com/%zz" }, "URL"},
		{"nil secret", func(c *WebhookConfig) { c.Secret = nil }, "Secret"},
		{"secret of 15 bytes", func(c *WebhookConfig) { c.Secret = []byte("0123456789abcde") }, "Secret"},
		{"negative timeout", func(c *WebhookConfig) { c.Timeout = -time.Second }, "Timeout"},
		{"plain http", func(c *WebhookConfig) { c.URL = "http://example.com/hook" }, "AllowInsecureHTTP"},
		{"plain http on the loopback", func(c *WebhookConfig) { c.URL = "http://127.0.0.1:8080/hook" }, "AllowInsecureHTTP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			tt.change(&cfg)
			w, err := NewWebhook(cfg)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("NewWebhook(%+v) = %v, want an error matching ErrInvalid", cfg, err)
			}
			if w != nil {
				t.Errorf("NewWebhook returned a webhook with error %v", err)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name the field %s", err, tt.field)
			}
		})
	}
}

func TestNewWebhookValid(t *testing.T) {
	tests := []struct {
		name string
		cfg  WebhookConfig
	}{
		{"https", WebhookConfig{Name: "crm", URL: "https://example.com/hook", Secret: testSecret}},
		{"http allowed, with port and query", WebhookConfig{Name: "crm", URL: "http://127.0.0.1:8080/h?x=1",
			Secret: testSecret, AllowInsecureHTTP: true}},
		{"upper-case scheme", WebhookConfig{Name: "crm", URL: "HTTPS://example.com/hook", Secret: testSecret}},
		{"secret of exactly 16 bytes", WebhookConfig{Name: "crm", URL: "https://example.com", Secret: []byte("0123456789abcdef")}},
		{"explicit timeout and client", WebhookConfig{Name: "crm", URL: "https://example.com", Secret: testSecret,
			Timeout: time.Second, Client: &http.Client{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := NewWebhook(tt.cfg)
			if err != nil {
				t.Fatalf("NewWebhook: %v", err)
			}
			if got := w.Name(); got != tt.cfg.Name {
				t.Errorf("Name() = %q, want %q", got, tt.cfg.Name)
			}
		})
	}
}

func TestWebhookSendBody(t *testing.T) {
	rc := newReceiver(t)
	w := newTestWebhook(t, WebhookConfig{URL: rc.srv.URL + "/hooks/gdpr?tenant=7"})

	ts := time.Date(2024, 5, 1, 12, 30, 45, 123456789, time.FixedZone("CEST", 2*60*60))
	// Values as JSON decodes them (float64, []any, map[string]any), so that the
	// body must carry them back unchanged.
	traits := map[string]any{
		"name":    "Ada",
		"age":     36.0,
		"vip":     true,
		"address": map[string]any{"city": "London"},
		"tags":    []any{"a", "b"},
		"nothing": nil,
	}
	msgs := []Message{
		{
			MessageID: "msg_1",
			Type:      TypeIdentify,
			ProfileID: "use_01hx0000000000000000000000",
			IDs: []identity.ID{
				{Type: identity.TypeEmail, Value: "ada@example.com"},
				{Type: identity.TypeUserID, Value: "42"},
				{Type: "ios.id", Value: "a:b:c"},
			},
			Traits:    traits,
			Timestamp: ts,
		},
		{
			MessageID:  "msg_2",
			Type:       TypeTrack,
			Event:      AudienceEntered,
			ProfileID:  "use_01hx0000000000000000000000",
			IDs:        []identity.ID{{Type: identity.TypeAnonymousID, Value: "anon-1"}},
			Properties: map[string]any{"audience_key": "big_spenders", "count": 3.0},
			Timestamp:  ts.Add(time.Second),
		},
		{
			MessageID: "msg_3", Type: TypePage, Name: "Pricing", Category: "Docs", ProfileID: "use_01hx0000000000000000000000",
			Context: map[string]any{"ip": "203.0.113.9"}, Timestamp: ts.Add(2 * time.Second),
		},
		{MessageID: "msg_4", Type: TypeGroup, GroupID: "acme", Traits: map[string]any{"plan": "enterprise"}, Timestamp: ts.Add(3 * time.Second)},
		{MessageID: "msg_5", Type: TypeAlias, PreviousID: "anon-1", IDs: []identity.ID{{Type: identity.TypeUserID, Value: "42"}}, Timestamp: ts.Add(4 * time.Second)},
	}
	if err := w.Send(context.Background(), msgs); err != nil {
		t.Fatalf("Send: %v", err)
	}

	req := rc.only(t)
	if req.Method != http.MethodPost {
		t.Errorf("method = %s, want POST", req.Method)
	}
	if req.Path != "/hooks/gdpr?tenant=7" {
		t.Errorf("path = %q, want %q", req.Path, "/hooks/gdpr?tenant=7")
	}
	if req.ContentType != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", req.ContentType)
	}
	want := map[string]any{
		"type": "batch",
		"messages": []any{
			map[string]any{
				"messageId":   "msg_1",
				"type":        "identify",
				"profileId":   "use_01hx0000000000000000000000",
				"identifiers": []any{"email:ada@example.com", "user_id:42", "ios.id:a:b:c"},
				"traits":      traits,
				"timestamp":   "2024-05-01T12:30:45.123456789+02:00",
			},
			map[string]any{
				"messageId":   "msg_2",
				"type":        "track",
				"event":       "Audience Entered",
				"profileId":   "use_01hx0000000000000000000000",
				"identifiers": []any{"anonymous_id:anon-1"},
				"properties":  map[string]any{"audience_key": "big_spenders", "count": 3.0},
				"timestamp":   "2024-05-01T12:30:46.123456789+02:00",
			},
			map[string]any{
				"messageId": "msg_3", "type": "page", "name": "Pricing", "category": "Docs", "profileId": "use_01hx0000000000000000000000",
				"context": map[string]any{"ip": "203.0.113.9"}, "timestamp": "2024-05-01T12:30:47.123456789+02:00",
			},
			map[string]any{"messageId": "msg_4", "type": "group", "groupId": "acme", "traits": map[string]any{"plan": "enterprise"},
				"timestamp": "2024-05-01T12:30:48.123456789+02:00"},
			map[string]any{"messageId": "msg_5", "type": "alias", "previousId": "anon-1", "identifiers": []any{"user_id:42"},
				"timestamp": "2024-05-01T12:30:49.123456789+02:00"},
		},
	}
	if diff := cmp.Diff(want, decode(t, req.Body)); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}

	// The identifiers and timestamp read back to what was sent.
	var typed struct {
		Messages []struct {
			Identifiers []string  `json:"identifiers"`
			Timestamp   time.Time `json:"timestamp"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(req.Body, &typed); err != nil {
		t.Fatal(err)
	}
	if len(typed.Messages) != len(msgs) {
		t.Fatalf("decoded %d messages, want %d", len(typed.Messages), len(msgs))
	}
	for i, m := range typed.Messages {
		var ids []identity.ID
		for _, s := range m.Identifiers {
			id, err := identity.ParseID(s)
			if err != nil {
				t.Errorf("message %d: identifier %q: %v", i, s, err)
			}
			ids = append(ids, id)
		}
		if diff := cmp.Diff(msgs[i].IDs, ids); diff != "" {
			t.Errorf("message %d: identifiers (-want +got):\n%s", i, diff)
		}
		if !m.Timestamp.Equal(msgs[i].Timestamp) {
			t.Errorf("message %d: timestamp %v, want %v", i, m.Timestamp, msgs[i].Timestamp)
		}
	}
}

// verify checks req's signature as a receiver would, now.
func verify(req request, secret []byte) error {
	return VerifyWebhookPayload(secret, req.Signature, req.Key, req.Body, 0, time.Now())
}

func TestWebhookSignature(t *testing.T) {
	rc := newReceiver(t)
	secret := bytes.Clone(testSecret)
	w := newTestWebhook(t, WebhookConfig{URL: rc.srv.URL, Secret: secret})
	// The webhook keeps its own copy of the secret.
	secret[0] ^= 0xff

	before := time.Now().Unix()
	if err := w.Send(context.Background(), []Message{msg("m1")}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	req := rc.only(t)
	var ts int64
	var sig string
	if n, err := fmt.Sscanf(req.Signature, "t=%d,v1=%s", &ts, &sig); n != 2 || err != nil {
		t.Fatalf("%s = %q, want t=<seconds>,v1=<hex>", SignatureHeader, req.Signature)
	}
	if ts < before || ts > time.Now().Unix() {
		t.Errorf("signature timestamp %d is not the time of sending (from %d)", ts, before)
	}
	if len(sig) != 64 {
		t.Errorf("v1 = %q, want 64 hex digits", sig)
	}
	tampered := bytes.Replace(req.Body, []byte("m1"), []byte("m2"), 1)
	if bytes.Equal(tampered, req.Body) {
		t.Fatal("test bug: tampering did not change the body")
	}
	tests := []struct {
		name   string
		secret []byte
		key    string
		body   []byte
		ok     bool
	}{
		{"exact request", testSecret, req.Key, req.Body, true},
		{"tampered body", testSecret, req.Key, tampered, false},
		{"trailing newline added", testSecret, req.Key, append(bytes.Clone(req.Body), '\n'), false},
		{"key swapped", testSecret, "batch-0000", req.Body, false},
		{"other secret", []byte("another-secret-of-enough-bytes"), req.Key, req.Body, false},
		{"secret changed after NewWebhook", secret, req.Key, req.Body, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyWebhookPayload(tt.secret, req.Signature, tt.key, tt.body, 0, time.Now())
			if (err == nil) != tt.ok {
				t.Errorf("VerifyWebhookPayload = %v, want ok %v (header %q)", err, tt.ok, req.Signature)
			}
			if err != nil && !errors.Is(err, ErrSignature) {
				t.Errorf("error %v does not match ErrSignature", err)
			}
		})
	}
}

func TestVerifyWebhookPayload(t *testing.T) {
	body := []byte(`{"type":"batch","messages":[]}`)
	key := "batch-abc"
	at := time.Unix(1_700_000_000, 0)
	header := SignWebhook(testSecret, at, key, body)
	if again := SignWebhook(testSecret, at, key, body); again != header {
		t.Errorf("SignWebhook is not deterministic: %q then %q", header, again)
	}
	sig := strings.TrimPrefix(header, "t=1700000000,v1=")
	if len(sig) != 64 {
		t.Fatalf("SignWebhook = %q, want t=1700000000,v1= and 64 hex digits", header)
	}
	flipped := byte('0')
	if sig[len(sig)-1] == '0' {
		flipped = '1'
	}
	other := SignWebhook([]byte("another-secret-of-enough-bytes"), at, key, body)
	otherSig := other[strings.Index(other, "v1="):]
	tests := []struct {
		name      string
		header    string
		now       time.Time
		tolerance time.Duration
		want      string // in the error; empty: valid
	}{
		{"valid", header, at, 0, ""},
		{"valid at the edge of the default tolerance", header, at.Add(DefaultTolerance), 0, ""},
		{"valid with a second v1 from a rotated secret", header + "," + otherSig, at, 0, ""},
		{"valid with the old secret's v1 first", "t=1700000000," + otherSig + ",v1=" + sig, at, 0, ""},
		{"unknown scheme skipped", header + ",v0=deadbeef", at, 0, ""},
		{"spaces after commas", "t=1700000000, v1=" + sig, at, 0, ""},
		{"hex digits in upper case", "t=1700000000,v1=" + strings.ToUpper(sig), at, 0, ""},
		{"empty header", "", at, 0, "no Gdprkit-Signature header"},
		{"too old", header, at.Add(DefaultTolerance + time.Second), 0, "outside the tolerance"},
		{"from the future", header, at.Add(-DefaultTolerance - time.Second), 0, "outside the tolerance"},
		{"too old for a tighter tolerance", header, at.Add(2 * time.Second), time.Second, "outside the tolerance"},
		{"no timestamp", "v1=" + sig, at, 0, "no timestamp"},
		{"two timestamps", "t=1700000000,t=1700000001,v1=" + sig, at, 0, "two timestamps"},
		{"timestamp not a number", "t=soon,v1=" + sig, at, 0, "not a number"},
		{"timestamp changed", "t=1700000001,v1=" + sig, at, 0, "no signature matches"},
		{"no signature", "t=1700000000", at, 0, "no v1 signature"},
		{"not name=value", "t=1700000000,v1", at, 0, "name=value"},
		{"signature not hex", "t=1700000000,v1=zz" + sig[2:], at, 0, "hex"},
		{"signature truncated", "t=1700000000,v1=" + sig[:62], at, 0, "hex"},
		{"one digit changed", "t=1700000000,v1=" + sig[:63] + string(flipped), at, 0, "no signature matches"},
		{"only another secret's signature", other, at, 0, "no signature matches"},
		{"old body-only form", "sha256=" + sig, at, 0, "no timestamp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyWebhookPayload(testSecret, tt.header, key, body, tt.tolerance, tt.now)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("VerifyWebhookPayload(%q) = %v, want nil", tt.header, err)
				}
				return
			}
			if !errors.Is(err, ErrSignature) {
				t.Fatalf("VerifyWebhookPayload(%q) = %v, want an error matching ErrSignature", tt.header, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
	if err := VerifyWebhookPayload(testSecret, header, "batch-other", body, 0, at); !errors.Is(err, ErrSignature) {
		t.Errorf("a signature checked against another key = %v, want ErrSignature", err)
	}
	// The start of the body moved into the key, under the same signature.
	i := bytes.IndexByte(body, '.')
	if i < 0 {
		body = []byte(`{"type":"batch","note":"a.b"}`)
		header = SignWebhook(testSecret, at, key, body)
		i = bytes.IndexByte(body, '.')
	}
	if err := VerifyWebhookPayload(testSecret, header, key+"."+string(body[:i]), body[i+1:], 0, at); !errors.Is(err, ErrSignature) {
		t.Errorf("the body's start moved into the key = %v, want ErrSignature", err)
	}
}

func TestVerifyWebhook(t *testing.T) {
	body := `{"type":"delete","requestId":"r1"}`
	signed := func(body string, at time.Time) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/gdpr", strings.NewReader(body))
		r.Header.Set(IdempotencyHeader, "delete-1")
		r.Header.Set(SignatureHeader, SignWebhook(testSecret, at, "delete-1", []byte(body)))
		return r
	}
	got, err := VerifyWebhook(signed(body, time.Now()), testSecret, 0)
	if err != nil || string(got) != body {
		t.Fatalf("VerifyWebhook = %q, %v; want the body and no error", got, err)
	}
	if _, err := VerifyWebhook(signed(body, time.Now().Add(-time.Hour)), testSecret, 0); !errors.Is(err, ErrSignature) {
		t.Errorf("an hour-old request = %v, want ErrSignature", err)
	}
	if _, err := VerifyWebhook(signed(body, time.Now().Add(-time.Hour)), testSecret, 2*time.Hour); err != nil {
		t.Errorf("an hour-old request within a 2h tolerance = %v, want nil", err)
	}
	r := signed(body, time.Now())
	r.Header.Set(IdempotencyHeader, "delete-2")
	if _, err := VerifyWebhook(r, testSecret, 0); !errors.Is(err, ErrSignature) {
		t.Errorf("a request whose key was changed = %v, want ErrSignature", err)
	}
	huge := signed(strings.Repeat(" ", MaxWebhookBody+1), time.Now())
	if _, err := VerifyWebhook(huge, testSecret, 0); !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "over") {
		t.Errorf("a body over MaxWebhookBody = %v, want ErrSignature naming the bound", err)
	}
}

func TestWebhookIdempotencyKey(t *testing.T) {
	person := func(m Message, profileID identity.ProfileID) Message {
		m.ProfileID = profileID
		return m
	}
	tests := []struct {
		name     string
		a, b     []Message
		otherDst bool // the second batch goes through another destination
		wantSame bool
	}{
		{"same batch", batchOf("m1", "m2"), batchOf("m1", "m2"), false, true},
		{"same batch, other traits", batchOf("m1"), []Message{{MessageID: "m1", ProfileID: "use_m1"}}, false, true},
		{"different ids", batchOf("m1", "m2"), batchOf("m1", "m3"), false, false},
		{"extra message", batchOf("m1", "m2"), batchOf("m1", "m2", "m3"), false, false},
		{"reordered", batchOf("m1", "m2"), batchOf("m2", "m1"), false, false},
		{"ids joined differently", batchOf("m1", "m2"), batchOf("m1m2"), false, false},
		{"same id, other person", []Message{person(msg("m1"), "use_a")}, []Message{person(msg("m1"), "use_b")}, false, false},
		{"person and id split differently", []Message{person(msg("1x"), "use_a")}, []Message{person(msg("x"), "use_a1")}, false, false},
		{"same batch, other destination", batchOf("m1"), batchOf("m1"), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t)
			w := newTestWebhook(t, WebhookConfig{URL: rc.srv.URL})
			if err := w.Send(context.Background(), tt.a); err != nil {
				t.Fatal(err)
			}
			if tt.otherDst {
				w = newTestWebhook(t, WebhookConfig{Name: "other", URL: rc.srv.URL})
			}
			if err := w.Send(context.Background(), tt.b); err != nil {
				t.Fatal(err)
			}
			reqs := rc.requests()
			if len(reqs) != 2 {
				t.Fatalf("server received %d requests, want 2", len(reqs))
			}
			ka, kb := reqs[0].Key, reqs[1].Key
			for _, k := range []string{ka, kb} {
				if !strings.HasPrefix(k, "batch-") || len(k) != len("batch-")+40 {
					t.Errorf("%s = %q, want batch- and 40 hex digits", IdempotencyHeader, k)
				}
			}
			if same := ka == kb; same != tt.wantSame {
				t.Errorf("keys %q and %q: same = %v, want %v", ka, kb, same, tt.wantSame)
			}
		})
	}
}

func TestWebhookStatus(t *testing.T) {
	tests := []struct {
		status   int
		answer   string
		wantErr  bool
		rejected bool // for good: the outbox must not retry
	}{
		{status: http.StatusOK},
		{status: http.StatusCreated, answer: "created"},
		{status: http.StatusAccepted},
		{status: http.StatusNoContent},
		{status: http.StatusBadRequest, answer: "bad batch: ada@example.com", wantErr: true, rejected: true},
		{status: http.StatusRequestEntityTooLarge, wantErr: true, rejected: true},
		{status: http.StatusUnsupportedMediaType, wantErr: true, rejected: true},
		{status: http.StatusUnprocessableEntity, answer: "no such person: ada@example.com", wantErr: true, rejected: true},
		{status: http.StatusUnauthorized, answer: "signature mismatch", wantErr: true},
		{status: http.StatusForbidden, wantErr: true},
		{status: http.StatusNotFound, wantErr: true},
		{status: http.StatusRequestTimeout, wantErr: true},
		{status: http.StatusTooManyRequests, answer: "slow down", wantErr: true},
		{status: http.StatusInternalServerError, answer: "database on fire: ada@example.com", wantErr: true},
		{status: http.StatusServiceUnavailable, wantErr: true},
		{status: http.StatusNotModified, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			rc := newReceiver(t)
			rc.respond(tt.status, tt.answer)
			w := newTestWebhook(t, WebhookConfig{URL: rc.srv.URL, DeleteSupported: true})
			for _, call := range []struct {
				name string
				do   func() error
			}{
				{"Send", func() error { return w.Send(context.Background(), []Message{msg("m1")}) }},
				{"Delete", func() error { return w.Delete(context.Background(), del("r1")) }},
			} {
				err := call.do()
				if (err != nil) != tt.wantErr {
					t.Fatalf("%s with status %d: error %v, want error %v", call.name, tt.status, err, tt.wantErr)
				}
				if err == nil {
					continue
				}
				if errors.Is(err, ErrNotSupported) || errors.Is(err, ErrInvalid) {
					t.Errorf("%s: error %v matches a sentinel of the package", call.name, err)
				}
				if got := errors.Is(err, ErrRejected); got != tt.rejected {
					t.Errorf("%s: error %v matches ErrRejected = %v, want %v", call.name, err, got, tt.rejected)
				}
				var re *RejectedError
				if call.name == "Send" && tt.rejected {
					if !errors.As(err, &re) || len(re.Rejected) != 1 || re.Rejected[0] == nil {
						t.Errorf("Send: error %v, want a RejectedError naming message 0", err)
					}
				}
				// The status is named; the receiver's answer, which may quote
				// the person, is not kept.
				if !strings.Contains(err.Error(), strconv.Itoa(tt.status)) || !strings.Contains(err.Error(), "hook") {
					t.Errorf("%s: error %q does not name the destination and the status", call.name, err)
				}
				if tt.answer != "" && strings.Contains(err.Error(), tt.answer) {
					t.Errorf("%s: error %q quotes the receiver's answer", call.name, err)
				}
			}
			if n := len(rc.requests()); n != 2 {
				t.Errorf("server received %d requests, want 2", n)
			}
		})
	}
}

// The receiver's reason phrase is its own text, and may quote the request:
// the error names the code and its standard text only.
func TestWebhookKeepsNotTheReasonPhrase(t *testing.T) {
	srv := httptest.NewUnstartedServer(nil)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hj, _ := w.(http.Hijacker)
		conn, buf, err := hj.Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		buf.WriteString("HTTP/1.1 400 ALICE%40EXAMPLE.COM is not valid \xff\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		buf.Flush()
	})
	srv.Start()
	defer srv.Close()
	w := newTestWebhook(t, WebhookConfig{URL: srv.URL})
	err := w.Send(context.Background(), []Message{msg("m1")})
	var re *RejectedError
	if !errors.As(err, &re) || re.Rejected[0] == nil {
		t.Fatalf("Send = %v; want message 0 rejected", err)
	}
	if got := re.Rejected[0].Error(); got != "webhook hook: 400 Bad Request" {
		t.Errorf("the kept reason = %q; want the code and its standard text only", got)
	}
}

// A message the webhook cannot encode fails alone: the other people's
// messages of its batch go out in one request.
func TestWebhookPoisonMessageFailsAlone(t *testing.T) {
	rc := newReceiver(t)
	w := newTestWebhook(t, WebhookConfig{URL: rc.srv.URL})
	var msgs []Message
	for i := range 21 {
		msgs = append(msgs, msg(fmt.Sprintf("m%02d", i)))
	}
	msgs[7].Timestamp = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	msgs[12].Traits = map[string]any{"ratio": math.NaN()}
	msgs[15].Properties = map[string]any{"ch": make(chan int)}

	err := w.Send(context.Background(), msgs)
	var re *RejectedError
	if !errors.As(err, &re) || !errors.Is(err, ErrRejected) {
		t.Fatalf("Send = %v, want a RejectedError", err)
	}
	want := map[int]string{7: "timestamp", 12: "NaN", 15: "chan int"}
	if len(re.Rejected) != len(want) {
		t.Errorf("rejected %v, want messages 7, 12 and 15", re.Rejected)
	}
	for i, says := range want {
		why := re.Rejected[i]
		if why == nil || !errors.Is(why, ErrRejected) || !strings.Contains(why.Error(), says) {
			t.Errorf("message %d rejected with %v, want ErrRejected saying %q", i, why, says)
			continue
		}
		if strings.Contains(why.Error(), msgs[i].MessageID+"@example.com") || strings.Contains(why.Error(), "Ada") {
			t.Errorf("message %d's reason %q quotes the message", i, why)
		}
	}
	req := rc.only(t)
	var got struct {
		Messages []struct {
			MessageID string `json:"messageId"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(req.Body, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Messages) != 18 {
		t.Errorf("the request carried %d messages, want the 18 others", len(got.Messages))
	}
	for _, m := range got.Messages {
		if m.MessageID == "m07" || m.MessageID == "m12" || m.MessageID == "m15" {
			t.Errorf("the request carried the poison message %s", m.MessageID)
		}
	}
}

// A batch the receiver refuses for good is split until the messages it
// refuses are found: the others are delivered, and only those are rejected.
func TestWebhookReceiverRejectionIsolatesMessages(t *testing.T) {
	var mu sync.Mutex
	delivered := map[string]int{}
	requests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var b struct {
			Messages []struct {
				MessageID string `json:"messageId"`
			} `json:"messages"`
		}
		json.Unmarshal(body, &b)
		mu.Lock()
		defer mu.Unlock()
		requests++
		for _, m := range b.Messages {
			if strings.HasPrefix(m.MessageID, "bad") {
				w.WriteHeader(http.StatusUnprocessableEntity)
				return
			}
		}
		for _, m := range b.Messages {
			delivered[m.MessageID]++
		}
	}))
	defer srv.Close()
	w := newTestWebhook(t, WebhookConfig{URL: srv.URL})
	var msgs []Message
	for i := range 16 {
		id := fmt.Sprintf("m%02d", i)
		if i == 3 || i == 11 {
			id = fmt.Sprintf("bad%02d", i)
		}
		msgs = append(msgs, msg(id))
	}
	err := w.Send(context.Background(), msgs)
	var re *RejectedError
	if !errors.As(err, &re) {
		t.Fatalf("Send = %v, want a RejectedError", err)
	}
	if len(re.Rejected) != 2 || re.Rejected[3] == nil || re.Rejected[11] == nil {
		t.Errorf("rejected %v, want messages 3 and 11", re.Rejected)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, m := range msgs {
		if i == 3 || i == 11 {
			continue
		}
		if delivered[m.MessageID] != 1 {
			t.Errorf("message %s delivered %d times, want once", m.MessageID, delivered[m.MessageID])
		}
	}
	// 1 + 2 + 4 + 4 + 4: the halves without a refused message stop splitting.
	if requests > 15 {
		t.Errorf("%d requests to isolate 2 of 16 messages, want at most 15", requests)
	}
}

// A batch split to find a refused message, whose second half then fails for
// a reason that may pass (a 503): the first half was delivered, so only the
// second is to be tried again, and nothing is refused for good.
func TestWebhookTransientFailureDuringSplitRetriesTheRest(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch calls.Add(1) {
		case 1:
			w.WriteHeader(http.StatusBadRequest)
		case 2:
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	w := newTestWebhook(t, WebhookConfig{URL: srv.URL})
	err := w.Send(context.Background(), batchOf("m1", "m2", "m3", "m4"))
	var re *RejectedError
	if !errors.As(err, &re) || len(re.Rejected) != 0 || !slices.Equal(re.Unsent, []int{2, 3}) || re.Err == nil || !strings.Contains(re.Err.Error(), "503") {
		t.Fatalf("Send = %v; want messages 2 and 3 unsent after the 503, none rejected", err)
	}
	if errors.Is(err, ErrRejected) {
		t.Errorf("Send = %v matches ErrRejected, though it refused nothing for good", err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d requests, want 3 (the batch, then each half)", n)
	}
	// Nothing went at all: the error as it is, for the whole batch.
	calls.Store(2)
	if err := w.Send(context.Background(), batchOf("m1")); errors.As(err, &re) || err == nil {
		t.Errorf("Send of a batch that failed whole = %v; want the plain error", err)
	}
}

// checkAbandoned checks that err, what a call to a hanging server returned,
// matches want, and that the call came back before the handler returned: it
// gave up on the request rather than wait for an answer.
func checkAbandoned(t *testing.T, call string, err, want error, returned <-chan struct{}) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s = %v, want an error matching %v", call, err, want)
	}
	select {
	case <-returned:
		t.Fatalf("%s returned only after the handler did", call)
	default:
	}
}

// hangingServer returns a server whose handler blocks until the test ends,
// a channel closed when a request reaches the handler, and one closed when the
// handler returns.
func hangingServer(t *testing.T) (srv *httptest.Server, entered, returned <-chan struct{}) {
	t.Helper()
	release := make(chan struct{})
	in := make(chan struct{})
	out := make(chan struct{})
	var enterOnce, returnOnce sync.Once
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		enterOnce.Do(func() { close(in) })
		<-release
		returnOnce.Do(func() { close(out) })
	}))
	// Cleanups run last-registered first: release the handler, then close the
	// server, which waits for the handler.
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	return srv, in, out
}

func TestWebhookTimeout(t *testing.T) {
	srv, entered, returned := hangingServer(t)
	w := newTestWebhook(t, WebhookConfig{URL: srv.URL, Timeout: 50 * time.Millisecond})

	err := w.Send(context.Background(), []Message{msg("m1")})
	if err == nil {
		t.Fatal("Send to a hanging server succeeded")
	}
	checkAbandoned(t, "Send", err, context.DeadlineExceeded, returned)
	select {
	case <-entered:
	default:
		t.Log("request timed out before it reached the handler")
	}
}

func TestWebhookTimeoutDelete(t *testing.T) {
	srv, _, returned := hangingServer(t)
	w := newTestWebhook(t, WebhookConfig{URL: srv.URL, Timeout: 50 * time.Millisecond, DeleteSupported: true})

	checkAbandoned(t, "Delete", w.Delete(context.Background(), del("r1")), context.DeadlineExceeded, returned)
}

func TestWebhookCancelledContext(t *testing.T) {
	t.Run("cancelled before Send", func(t *testing.T) {
		rc := newReceiver(t)
		w := newTestWebhook(t, WebhookConfig{URL: rc.srv.URL})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := w.Send(ctx, []Message{msg("m1")})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Send = %v, want an error matching context.Canceled", err)
		}
	})
	t.Run("cancelled during Send", func(t *testing.T) {
		srv, entered, returned := hangingServer(t)
		// A long timeout: only the cancellation can end the request.
		w := newTestWebhook(t, WebhookConfig{URL: srv.URL, Timeout: time.Hour})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			<-entered
			cancel()
		}()
		checkAbandoned(t, "Send", w.Send(ctx, []Message{msg("m1")}), context.Canceled, returned)
	})
}

func TestWebhookDeleteNotSupported(t *testing.T) {
	rc := newReceiver(t)
	w := newTestWebhook(t, WebhookConfig{URL: rc.srv.URL})
	err := w.Delete(context.Background(), del("r1"))
	if !errors.Is(err, ErrNotSupported) {
		t.Errorf("Delete = %v, want an error matching ErrNotSupported", err)
	}
	if n := len(rc.requests()); n != 0 {
		t.Errorf("server received %d requests, want none", n)
	}
}

func TestWebhookDelete(t *testing.T) {
	tests := []struct {
		name string
		d    Deletion
		want map[string]any
	}{
		{
			name: "with identifiers",
			d: Deletion{
				RequestID: "req_01",
				ProfileID: "use_01hx0000000000000000000000",
				IDs: []identity.ID{
					{Type: identity.TypeEmail, Value: "ada@example.com"},
					{Type: identity.TypeUserID, Value: "42"},
				},
			},
			want: map[string]any{
				"type":        "delete",
				"requestId":   "req_01",
				"profileId":   "use_01hx0000000000000000000000",
				"identifiers": []any{"email:ada@example.com", "user_id:42"},
			},
		},
		{
			name: "without identifiers",
			d:    Deletion{RequestID: "req_02", ProfileID: "use_01hx0000000000000000000001"},
			want: map[string]any{
				"type":        "delete",
				"requestId":   "req_02",
				"profileId":   "use_01hx0000000000000000000001",
				"identifiers": []any{},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t)
			w := newTestWebhook(t, WebhookConfig{URL: rc.srv.URL + "/delete", DeleteSupported: true})
			if err := w.Delete(context.Background(), tt.d); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			// A retry carries the same key.
			if err := w.Delete(context.Background(), tt.d); err != nil {
				t.Fatalf("Delete again: %v", err)
			}
			reqs := rc.requests()
			if len(reqs) != 2 {
				t.Fatalf("server received %d requests, want 2", len(reqs))
			}
			req := reqs[0]
			if req.Method != http.MethodPost || req.Path != "/delete" {
				t.Errorf("request = %s %s, want POST /delete", req.Method, req.Path)
			}
			if req.ContentType != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", req.ContentType)
			}
			if diff := cmp.Diff(tt.want, decode(t, req.Body)); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			if !strings.HasPrefix(req.Key, "delete-") || len(req.Key) != len("delete-")+40 {
				t.Errorf("%s = %q, want delete- and 40 hex digits", IdempotencyHeader, req.Key)
			}
			if reqs[1].Key != req.Key {
				t.Errorf("retry %s = %q, want %q", IdempotencyHeader, reqs[1].Key, req.Key)
			}
			if err := verify(req, testSecret); err != nil {
				t.Errorf("signature %q does not verify: %v", req.Signature, err)
			}
			if verify(req, []byte("another-secret-of-enough-bytes")) == nil {
				t.Errorf("signature %q verifies under another secret", req.Signature)
			}
		})
	}
}

func TestWebhookUsesConfiguredClient(t *testing.T) {
	rc := newReceiver(t)
	rt := &countingTransport{next: http.DefaultTransport}
	client := &http.Client{Transport: rt}
	w := newTestWebhook(t, WebhookConfig{URL: rc.srv.URL, Client: client})
	if err := w.Send(context.Background(), []Message{msg("m1")}); err != nil {
		t.Fatal(err)
	}
	if rt.n != 1 {
		t.Errorf("configured client made %d round trips, want 1", rt.n)
	}
	if client.CheckRedirect != nil {
		t.Error("NewWebhook changed the caller's client")
	}
}

// An https receiver, the default: the request arrives over TLS, signed.
func TestWebhookOverTLS(t *testing.T) {
	var got request
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got = request{Signature: r.Header.Get(SignatureHeader), Key: r.Header.Get(IdempotencyHeader), Body: body}
		if r.TLS == nil {
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	w, err := NewWebhook(WebhookConfig{Name: "tls", URL: srv.URL, Secret: testSecret, Client: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Send(context.Background(), []Message{msg("m1")}); err != nil {
		t.Fatalf("Send over TLS: %v", err)
	}
	if err := verify(got, testSecret); err != nil {
		t.Errorf("the request over TLS does not verify: %v", err)
	}
}

// Each person of a request, at each destination, gets a deletion key of their
// own, so a receiver that drops repeated keys deletes every one of them.
func TestWebhookDeletionKeys(t *testing.T) {
	rc := newReceiver(t)
	a := newTestWebhook(t, WebhookConfig{Name: "a", URL: rc.srv.URL, DeleteSupported: true})
	b := newTestWebhook(t, WebhookConfig{Name: "b", URL: rc.srv.URL, DeleteSupported: true})
	ctx := context.Background()
	for _, call := range []struct {
		w *Webhook
		d Deletion
	}{
		{a, Deletion{RequestID: "req_1", ProfileID: "use_1"}},
		{a, Deletion{RequestID: "req_1", ProfileID: "use_2"}},
		{a, Deletion{RequestID: "req_1", ProfileID: "use_3"}},
		{a, Deletion{RequestID: "req_2", ProfileID: "use_1"}},
		{b, Deletion{RequestID: "req_1", ProfileID: "use_1"}},
		{a, Deletion{RequestID: "req_1", ProfileID: "use_1"}}, // a retry of the first
		{a, Deletion{RequestID: "req_", ProfileID: "1use_1"}},
	} {
		if err := call.w.Delete(ctx, call.d); err != nil {
			t.Fatal(err)
		}
	}
	reqs := rc.requests()
	keys := map[string]int{}
	for i, r := range reqs {
		if j, seen := keys[r.Key]; seen && !(j == 0 && i == 5) {
			t.Errorf("deletions %d and %d share the key %q", j, i, r.Key)
		}
		keys[r.Key] = i
	}
	if reqs[5].Key != reqs[0].Key {
		t.Errorf("a retried deletion has the key %q, want %q", reqs[5].Key, reqs[0].Key)
	}
	if err := a.Delete(ctx, Deletion{ProfileID: "use_1"}); !errors.Is(err, ErrInvalid) || !errors.Is(err, ErrRejected) {
		t.Errorf("a deletion without a RequestID = %v, want ErrInvalid and ErrRejected", err)
	}
}

type countingTransport struct {
	n    int
	next http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n++
	return c.next.RoundTrip(r)
}

// A redirect is not a delivery: the default client must not follow it and
// report success for a POST that became a bodiless GET.
func TestWebhookTreatsRedirectAsFailure(t *testing.T) {
	var gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hook" {
			http.Redirect(w, r, "/moved", http.StatusFound)
			return
		}
		gets.Add(1)
	}))
	defer srv.Close()
	wh, err := NewWebhook(WebhookConfig{Name: "w", URL: srv.URL + "/hook", Secret: []byte("0123456789abcdef"), AllowInsecureHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	err = wh.Send(context.Background(), []Message{{MessageID: "m1", Type: TypeTrack, Event: "E"}})
	if err == nil || !strings.Contains(err.Error(), "302") {
		t.Fatalf("Send through a redirect = %v, want an error naming the 302", err)
	}
	if gets.Load() != 0 {
		t.Fatal("the redirect was followed")
	}
	if err := wh.Send(context.Background(), nil); err != nil {
		t.Fatalf("empty batch: %v, want nil without a request", err)
	}
}
