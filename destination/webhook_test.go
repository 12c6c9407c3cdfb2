package destination

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
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
		{"http with port and query", WebhookConfig{Name: "crm", URL: "http://127.0.0.1:8080/h?x=1", Secret: testSecret}},
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

func TestWebhookSignature(t *testing.T) {
	rc := newReceiver(t)
	secret := bytes.Clone(testSecret)
	w := newTestWebhook(t, WebhookConfig{URL: rc.srv.URL, Secret: secret})
	// The webhook keeps its own copy of the secret.
	secret[0] ^= 0xff

	if err := w.Send(context.Background(), []Message{msg("m1")}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	req := rc.only(t)
	tampered := bytes.Replace(req.Body, []byte("m1"), []byte("m2"), 1)
	if bytes.Equal(tampered, req.Body) {
		t.Fatal("test bug: tampering did not change the body")
	}
	tests := []struct {
		name   string
		secret []byte
		body   []byte
		want   bool
	}{
		{"exact body", testSecret, req.Body, true},
		{"tampered body", testSecret, tampered, false},
		{"trailing newline added", testSecret, append(bytes.Clone(req.Body), '\n'), false},
		{"other secret", []byte("another-secret-of-enough-bytes"), req.Body, false},
		{"secret changed after NewWebhook", secret, req.Body, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := VerifySignature(tt.secret, tt.body, req.Signature); got != tt.want {
				t.Errorf("VerifySignature = %v, want %v (header %q)", got, tt.want, req.Signature)
			}
		})
	}
	if want := Sign(testSecret, req.Body); req.Signature != want {
		t.Errorf("%s = %q, want %q", SignatureHeader, req.Signature, want)
	}
}

func TestSignAndVerifySignature(t *testing.T) {
	body := []byte(`{"type":"batch","messages":[]}`)
	sig := Sign(testSecret, body)
	if !strings.HasPrefix(sig, "sha256=") || len(sig) != len("sha256=")+64 {
		t.Fatalf("Sign = %q, want sha256= and 64 hex digits", sig)
	}
	if again := Sign(testSecret, body); again != sig {
		t.Errorf("Sign is not deterministic: %q then %q", sig, again)
	}
	flipped := byte('0')
	if sig[len(sig)-1] == '0' {
		flipped = '1'
	}
	tests := []struct {
		name   string
		header string
		want   bool
	}{
		{"valid", sig, true},
		{"empty header", "", false},
		{"without prefix", strings.TrimPrefix(sig, "sha256="), false},
		{"other algorithm prefix", "sha1=" + strings.TrimPrefix(sig, "sha256="), false},
		{"truncated", sig[:len(sig)-1], false},
		{"one digit changed", sig[:len(sig)-1] + string(flipped), false},
		{"signature of another body", Sign(testSecret, []byte("{}")), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := VerifySignature(testSecret, body, tt.header); got != tt.want {
				t.Errorf("VerifySignature(%q) = %v, want %v", tt.header, got, tt.want)
			}
		})
	}
}

func TestWebhookIdempotencyKey(t *testing.T) {
	tests := []struct {
		name     string
		a, b     []Message
		wantSame bool
	}{
		{"same batch", batchOf("m1", "m2"), batchOf("m1", "m2"), true},
		{"different ids", batchOf("m1", "m2"), batchOf("m1", "m3"), false},
		{"extra message", batchOf("m1", "m2"), batchOf("m1", "m2", "m3"), false},
		{"reordered", batchOf("m1", "m2"), batchOf("m2", "m1"), false},
		{"ids joined differently", batchOf("m1", "m2"), batchOf("m1m2"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t)
			w := newTestWebhook(t, WebhookConfig{URL: rc.srv.URL})
			if err := w.Send(context.Background(), tt.a); err != nil {
				t.Fatal(err)
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
				if !strings.HasPrefix(k, "batch-") || len(k) <= len("batch-") {
					t.Errorf("%s = %q, want batch- and a hash", IdempotencyHeader, k)
				}
			}
			if same := ka == kb; same != tt.wantSame {
				t.Errorf("keys %q and %q: same = %v, want %v", ka, kb, same, tt.wantSame)
			}
		})
	}
}

func TestWebhookStatus(t *testing.T) {
	long := strings.Repeat("x", 600) + "TAIL"
	tests := []struct {
		status  int
		answer  string
		wantErr bool
		want    []string // substrings of the error
		notWant []string
	}{
		{status: http.StatusOK},
		{status: http.StatusCreated, answer: "created"},
		{status: http.StatusAccepted},
		{status: http.StatusNoContent},
		{status: http.StatusBadRequest, answer: "bad batch: missing field\n", wantErr: true,
			want: []string{"400", "Bad Request", "bad batch: missing field", "hook"}},
		{status: http.StatusUnauthorized, answer: "signature mismatch", wantErr: true,
			want: []string{"401", "signature mismatch"}},
		{status: http.StatusNotFound, wantErr: true, want: []string{"404"}},
		{status: http.StatusTooManyRequests, answer: "slow down", wantErr: true, want: []string{"429", "slow down"}},
		{status: http.StatusInternalServerError, answer: "database on fire", wantErr: true,
			want: []string{"500", "database on fire"}},
		{status: http.StatusServiceUnavailable, answer: long, wantErr: true,
			want: []string{"503", strings.Repeat("x", 100)}, notWant: []string{"TAIL"}},
		{status: http.StatusNotModified, wantErr: true, want: []string{"304"}},
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
				for _, s := range tt.want {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("%s: error %q does not contain %q", call.name, err, s)
					}
				}
				for _, s := range tt.notWant {
					if strings.Contains(err.Error(), s) {
						t.Errorf("%s: error %q contains %q", call.name, err, s)
					}
				}
			}
			if n := len(rc.requests()); n != 2 {
				t.Errorf("server received %d requests, want 2", n)
			}
		})
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
			if want := "delete-" + tt.d.RequestID; req.Key != want {
				t.Errorf("%s = %q, want %q", IdempotencyHeader, req.Key, want)
			}
			if reqs[1].Key != req.Key {
				t.Errorf("retry %s = %q, want %q", IdempotencyHeader, reqs[1].Key, req.Key)
			}
			if !VerifySignature(testSecret, req.Body, req.Signature) {
				t.Errorf("signature %q does not verify", req.Signature)
			}
			if VerifySignature([]byte("another-secret-of-enough-bytes"), req.Body, req.Signature) {
				t.Errorf("signature %q verifies under another secret", req.Signature)
			}
		})
	}
}

func TestWebhookUsesConfiguredClient(t *testing.T) {
	rc := newReceiver(t)
	rt := &countingTransport{next: http.DefaultTransport}
	w := newTestWebhook(t, WebhookConfig{URL: rc.srv.URL, Client: &http.Client{Transport: rt}})
	if err := w.Send(context.Background(), []Message{msg("m1")}); err != nil {
		t.Fatal(err)
	}
	if rt.n != 1 {
		t.Errorf("configured client made %d round trips, want 1", rt.n)
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
	wh, err := NewWebhook(WebhookConfig{Name: "w", URL: srv.URL + "/hook", Secret: []byte("0123456789abcdef")})
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
