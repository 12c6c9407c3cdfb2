package destination

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Headers the webhook sets on every request.
const (
	// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the body under
	// the shared secret; receivers verify it with VerifySignature.
	SignatureHeader = "X-Gdprkit-Signature"
	// IdempotencyHeader carries a key that is the same on every retry of a
	// request, so the receiver can drop repeats.
	IdempotencyHeader = "Idempotency-Key"
)

// WebhookConfig configures a Webhook.
type WebhookConfig struct {
	// Name of the destination (required).
	Name string
	// URL receives an HTTP POST per batch (required, http or https).
	URL string
	// Secret signs every body with HMAC-SHA256 (required, at least 16 bytes).
	Secret []byte
	// Timeout bounds each request (default 10s).
	Timeout time.Duration
	// Client sends the requests (default: a new http.Client).
	Client *http.Client
	// DeleteSupported makes Delete POST a deletion; without it Delete reports
	// ErrNotSupported.
	DeleteSupported bool
}

// Webhook is a Destination that POSTs JSON to a URL: {"type":"batch","messages":[...]}
// for Send and {"type":"delete",...} for Delete, signed with HMAC-SHA256. A 2xx
// answer is success; anything else, or no answer within the timeout, is an error
// and the outbox retries.
type Webhook struct {
	cfg WebhookConfig
}

var _ Destination = (*Webhook)(nil)

// NewWebhook checks cfg and returns the webhook, or an error matching ErrInvalid
// that names the field at fault.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	if cfg.Name == "" {
		return nil, fmt.Errorf("%w: webhook: Name is empty", ErrInvalid)
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: webhook %s: URL %q is not an http(s) URL", ErrInvalid, cfg.Name, cfg.URL)
	}
	if len(cfg.Secret) < 16 {
		return nil, fmt.Errorf("%w: webhook %s: Secret is %d bytes, want at least 16", ErrInvalid, cfg.Name, len(cfg.Secret))
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("%w: webhook %s: negative Timeout", ErrInvalid, cfg.Name)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Client == nil {
		// A redirect would turn the POST into a GET without a body that still
		// looks like success: any 3xx is an error instead.
		cfg.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	cfg.Secret = bytes.Clone(cfg.Secret)
	return &Webhook{cfg: cfg}, nil
}

// Name implements Destination.
func (w *Webhook) Name() string { return w.cfg.Name }

// wireMessage is the JSON form of a Message.
type wireMessage struct {
	MessageID  string         `json:"messageId"`
	Type       string         `json:"type"`
	Event      string         `json:"event,omitempty"`
	ProfileID  string         `json:"profileId,omitempty"`
	Identities []string       `json:"identifiers,omitempty"`
	Traits     map[string]any `json:"traits,omitempty"`
	Properties map[string]any `json:"properties,omitempty"`
	Timestamp  time.Time      `json:"timestamp"`
}

// Send implements Destination: one POST for the batch. The idempotency key hashes
// the batch's message ids, so a retried batch carries the same key.
func (w *Webhook) Send(ctx context.Context, msgs []Message) error {
	if len(msgs) == 0 {
		return nil
	}
	body := struct {
		Type     string        `json:"type"`
		Messages []wireMessage `json:"messages"`
	}{Type: "batch"}
	key := sha256.New()
	for _, m := range msgs {
		wm := wireMessage{MessageID: m.MessageID, Type: m.Type, Event: m.Event, ProfileID: string(m.ProfileID),
			Traits: m.Traits, Properties: m.Properties, Timestamp: m.Timestamp}
		for _, id := range m.IDs {
			wm.Identities = append(wm.Identities, id.String())
		}
		body.Messages = append(body.Messages, wm)
		io.WriteString(key, m.MessageID)
		key.Write([]byte{0})
	}
	return w.post(ctx, body, "batch-"+hex.EncodeToString(key.Sum(nil))[:32])
}

// Delete implements Destination.
func (w *Webhook) Delete(ctx context.Context, d Deletion) error {
	if !w.cfg.DeleteSupported {
		return ErrNotSupported
	}
	if d.RequestID == "" {
		return fmt.Errorf("%w: webhook %s: a deletion needs a RequestID, its idempotency key", ErrInvalid, w.cfg.Name)
	}
	ids := make([]string, len(d.IDs))
	for i, id := range d.IDs {
		ids[i] = id.String()
	}
	body := struct {
		Type        string   `json:"type"`
		RequestID   string   `json:"requestId"`
		ProfileID   string   `json:"profileId"`
		Identifiers []string `json:"identifiers"`
	}{"delete", d.RequestID, string(d.ProfileID), ids}
	return w.post(ctx, body, "delete-"+d.RequestID)
}

func (w *Webhook) post(ctx context.Context, body any, idempotencyKey string) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("webhook %s: encoding: %w", w.cfg.Name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("webhook %s: %w", w.cfg.Name, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(SignatureHeader, Sign(w.cfg.Secret, b))
	req.Header.Set(IdempotencyHeader, idempotencyKey)
	resp, err := w.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", w.cfg.Name, err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook %s: %s: %s", w.cfg.Name, resp.Status, strings.TrimSpace(string(snippet)))
	}
	return nil
}

// Sign returns the signature header value for body: "sha256=" and the hex
// HMAC-SHA256 under secret.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// VerifySignature reports, in constant time, whether header is body's signature
// under secret. Receivers of the webhook call it before trusting a request.
func VerifySignature(secret, body []byte, header string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(header))
}
