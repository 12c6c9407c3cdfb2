package destination

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Headers the webhook sets on every request.
const (
	// SignatureHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256>", the
	// MAC taken under the shared secret over the timestamp, a dot, the
	// idempotency key, a dot and the body, in the style of Stripe's: a
	// receiver checks it with VerifyWebhook, which also refuses a timestamp
	// outside its tolerance, so that a captured request cannot be replayed
	// later, nor its key swapped for another.
	SignatureHeader = "Gdprkit-Signature"
	// IdempotencyHeader carries a key that is the same on every retry of the
	// same request: "delete-" and a hash of the destination, the request and
	// the person for a deletion; "batch-" and a hash of the destination and
	// each message's person and id, in order, for a batch.
	IdempotencyHeader = "Idempotency-Key"
)

// DefaultTolerance is how far a signature's timestamp may be from the
// receiver's clock when VerifyWebhook is given no tolerance: Stripe's default.
const DefaultTolerance = 5 * time.Minute

// MaxWebhookBody bounds the body VerifyWebhook reads.
const MaxWebhookBody = 64 << 20

// ErrSignature: a webhook request's signature is missing, malformed, too old
// or too new, or does not match.
var ErrSignature = errors.New("destination: webhook signature not valid")

// WebhookConfig configures a Webhook.
type WebhookConfig struct {
	// Name of the destination (required).
	Name string
	// URL receives an HTTP POST per batch (required). It must be https,
	// since the requests carry personal data, unless AllowInsecureHTTP.
	URL string
	// AllowInsecureHTTP lets URL be plain http, for a receiver on the same
	// host or in a test; personal data then crosses the network in clear.
	AllowInsecureHTTP bool
	// Secret signs every request with HMAC-SHA256 (required, at least 16 bytes).
	Secret []byte
	// Timeout bounds each request (default 10s).
	Timeout time.Duration
	// Client sends the requests (default: a new http.Client). The webhook
	// uses a copy that does not follow redirects unless the client says how.
	Client *http.Client
	// DeleteSupported makes Delete POST a deletion; without it Delete reports
	// ErrNotSupported.
	DeleteSupported bool
}

// Webhook is a Destination that POSTs JSON to a URL: {"type":"batch","messages":[...]}
// for Send and {"type":"delete",...} for Delete, signed (SignatureHeader) and
// keyed (IdempotencyHeader).
//
// A 2xx answer is success. 400, 413, 415 and 422 say the content can never be
// accepted: a batch answered so is split in halves until the messages at fault
// are found, and those alone are rejected for good (a RejectedError), as is a
// message that cannot be encoded as JSON. Any other answer, or none within the
// timeout, is an error the outbox retries, 401, 403 and 404 included, since
// those are usually a configuration the operator can fix.
type Webhook struct {
	cfg WebhookConfig
	now func() time.Time
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
	if u.Scheme == "http" && !cfg.AllowInsecureHTTP {
		return nil, fmt.Errorf("%w: webhook %s: URL %q is plain http, which would send personal data unencrypted: use https, or set AllowInsecureHTTP", ErrInvalid, cfg.Name, cfg.URL)
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
	client := &http.Client{}
	if cfg.Client != nil {
		c := *cfg.Client
		client = &c
	}
	if client.CheckRedirect == nil {
		// A redirect would turn the POST into a GET without a body that still
		// looks like success: any 3xx is an error instead.
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	cfg.Client = client
	cfg.Secret = bytes.Clone(cfg.Secret)
	return &Webhook{cfg: cfg, now: time.Now}, nil
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
	// Segment's names for the other message types' fields.
	Name       string         `json:"name,omitempty"`
	Category   string         `json:"category,omitempty"`
	GroupID    string         `json:"groupId,omitempty"`
	PreviousID string         `json:"previousId,omitempty"`
	Context    map[string]any `json:"context,omitempty"`
}

// Send implements Destination: one POST for the batch, keyed by its content,
// so a retried batch carries the same key. A message that cannot be encoded,
// or that the receiver refuses for good, is reported in a RejectedError and
// the others are delivered.
func (w *Webhook) Send(ctx context.Context, msgs []Message) error {
	if len(msgs) == 0 {
		return nil
	}
	encoded := make([][]byte, len(msgs))
	rejected := map[int]error{}
	var sendable []int
	for i, m := range msgs {
		b, err := encodeMessage(m)
		if err != nil {
			rejected[i] = Kept(ErrRejected, "webhook %s: message %d cannot be encoded as JSON: %s", w.cfg.Name, i, err)
			continue
		}
		encoded[i] = b
		sendable = append(sendable, i)
	}
	delivered := map[int]bool{}
	if len(sendable) > 0 {
		if err := w.sendPart(ctx, msgs, encoded, sendable, rejected, delivered); err != nil {
			if len(rejected) == 0 && len(delivered) == 0 {
				return err // nothing went: the batch is tried again whole
			}
			// Part of it went, or was refused for good: only the rest is
			// tried again.
			var unsent []int
			for _, i := range sendable {
				if !delivered[i] && rejected[i] == nil {
					unsent = append(unsent, i)
				}
			}
			return &RejectedError{Rejected: rejected, Unsent: unsent, Err: err}
		}
	}
	if len(rejected) > 0 {
		return &RejectedError{Rejected: rejected}
	}
	return nil
}

// sendPart posts the messages at idx. When the receiver refuses them for
// good, it splits them in halves to find the ones at fault and records those
// in rejected; any other error is returned, and the whole batch is retried.
func (w *Webhook) sendPart(ctx context.Context, msgs []Message, encoded [][]byte, idx []int, rejected map[int]error, delivered map[int]bool) error {
	var body bytes.Buffer
	body.WriteString(`{"type":"batch","messages":[`)
	key := sha256.New()
	fmt.Fprintf(key, "%d:%s", len(w.cfg.Name), w.cfg.Name)
	for n, i := range idx {
		if n > 0 {
			body.WriteByte(',')
		}
		body.Write(encoded[i])
		// Length-prefixed, so that no two different batches hash alike.
		fmt.Fprintf(key, "\x00%d:%s%d:%s", len(msgs[i].ProfileID), msgs[i].ProfileID, len(msgs[i].MessageID), msgs[i].MessageID)
	}
	body.WriteString(`]}`)
	err := w.post(ctx, body.Bytes(), "batch-"+hex.EncodeToString(key.Sum(nil))[:40])
	if err == nil {
		for _, i := range idx {
			delivered[i] = true
		}
		return nil
	}
	if !errors.Is(err, ErrRejected) {
		return err
	}
	if len(idx) == 1 {
		rejected[idx[0]] = err
		return nil
	}
	half := len(idx) / 2
	if err := w.sendPart(ctx, msgs, encoded, idx[:half], rejected, delivered); err != nil {
		return err
	}
	return w.sendPart(ctx, msgs, encoded, idx[half:], rejected, delivered)
}

// encodeMessage is m's JSON, or an error that says what could not be encoded
// without quoting it: the error is kept, and the message is personal data.
func encodeMessage(m Message) ([]byte, error) {
	wm := wireMessage{MessageID: m.MessageID, Type: m.Type, Event: m.Event, ProfileID: string(m.ProfileID),
		Traits: m.Traits, Properties: m.Properties, Timestamp: m.Timestamp,
		Name: m.Name, Category: m.Category, GroupID: m.GroupID, PreviousID: m.PreviousID, Context: m.Context}
	for _, id := range m.IDs {
		wm.Identities = append(wm.Identities, id.String())
	}
	b, err := json.Marshal(wm)
	if err == nil {
		return b, nil
	}
	if y := m.Timestamp.Year(); y < 0 || y > 9999 {
		return nil, errors.New("its timestamp is outside the years 0 to 9999")
	}
	var typeErr *json.UnsupportedTypeError
	var valueErr *json.UnsupportedValueError
	var marshalerErr *json.MarshalerError
	switch {
	case errors.As(err, &typeErr):
		return nil, fmt.Errorf("it holds a value of type %s", typeErr.Type)
	case errors.As(err, &valueErr):
		return nil, errors.New("it holds a value JSON has no form for (NaN, an infinity or a cycle)")
	case errors.As(err, &marshalerErr):
		return nil, fmt.Errorf("a value of type %s failed to encode itself", marshalerErr.Type)
	}
	return nil, errors.New("it holds a value JSON cannot encode")
}

// Delete implements Destination. Its key is the same for every retry of the
// deletion, and different for each destination, request and person.
func (w *Webhook) Delete(ctx context.Context, d Deletion) error {
	if !w.cfg.DeleteSupported {
		return ErrNotSupported
	}
	if d.RequestID == "" {
		return Kept(fmt.Errorf("%w: %w", ErrRejected, ErrInvalid), "webhook %s: a deletion needs a RequestID", w.cfg.Name)
	}
	ids := make([]string, len(d.IDs))
	for i, id := range d.IDs {
		ids[i] = id.String()
	}
	body, err := json.Marshal(struct {
		Type        string   `json:"type"`
		RequestID   string   `json:"requestId"`
		ProfileID   string   `json:"profileId"`
		Identifiers []string `json:"identifiers"`
	}{"delete", d.RequestID, string(d.ProfileID), ids})
	if err != nil {
		return Kept(ErrRejected, "webhook %s: the deletion cannot be encoded as JSON", w.cfg.Name)
	}
	key := sha256.New()
	fmt.Fprintf(key, "%d:%s%d:%s%d:%s", len(w.cfg.Name), w.cfg.Name, len(d.RequestID), d.RequestID, len(d.ProfileID), d.ProfileID)
	return w.post(ctx, body, "delete-"+hex.EncodeToString(key.Sum(nil))[:40])
}

// post sends body, signed, and classifies the answer. Errors name the status
// only: a receiver's answer may quote the request, which is personal data.
func (w *Webhook) post(ctx context.Context, body []byte, key string) error {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook %s: %w", w.cfg.Name, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(IdempotencyHeader, key)
	req.Header.Set(SignatureHeader, SignWebhook(w.cfg.Secret, w.now(), key, body))
	resp, err := w.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", w.cfg.Name, err)
	}
	defer resp.Body.Close()
	// Drain a little so the connection can be reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	// The code and its standard text, never the reason phrase the receiver
	// sent, which it chose and may quote the request.
	code := resp.StatusCode
	status := strconv.Itoa(code) + " " + http.StatusText(code)
	switch {
	case code >= 200 && code <= 299:
		return nil
	case code == http.StatusBadRequest || code == http.StatusRequestEntityTooLarge ||
		code == http.StatusUnsupportedMediaType || code == http.StatusUnprocessableEntity:
		return Kept(ErrRejected, "webhook %s: %s", w.cfg.Name, status)
	default:
		return Kept(nil, "webhook %s: %s", w.cfg.Name, status)
	}
}

// SignWebhook returns the SignatureHeader value for a request with the given
// idempotency key and body, signed at time t under secret.
func SignWebhook(secret []byte, t time.Time, key string, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(webhookMAC(secret, ts, key, body))
}

func webhookMAC(secret []byte, ts, key string, body []byte) []byte {
	mac := hmac.New(sha256.New, secret)
	io.WriteString(mac, ts)
	mac.Write([]byte{'.'})
	io.WriteString(mac, key)
	mac.Write([]byte{'.'})
	mac.Write(body)
	return mac.Sum(nil)
}

// VerifyWebhook checks a webhook request the way a receiver must before it
// trusts it: it reads the body (at most MaxWebhookBody bytes) and checks the
// SignatureHeader against the body and the IdempotencyHeader under secret,
// with the timestamp within tolerance of now (DefaultTolerance when tolerance
// is not positive). It returns the body, or an error matching ErrSignature
// that says what was wrong.
//
// A receiver that also drops a key it has already seen within the tolerance
// cannot be made to apply a captured request twice.
func VerifyWebhook(r *http.Request, secret []byte, tolerance time.Duration) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxWebhookBody+1))
	if err != nil {
		return nil, fmt.Errorf("webhook: reading the body: %w", err)
	}
	if len(body) > MaxWebhookBody {
		return nil, fmt.Errorf("%w: the body is over %d bytes", ErrSignature, MaxWebhookBody)
	}
	err = VerifyWebhookPayload(secret, r.Header.Get(SignatureHeader), r.Header.Get(IdempotencyHeader), body, tolerance, time.Now())
	if err != nil {
		return nil, err
	}
	return body, nil
}

// VerifyWebhookPayload is VerifyWebhook for a body already read: it checks
// header, a SignatureHeader value, against the key and body under secret, with
// its timestamp within tolerance of now (DefaultTolerance when tolerance is not
// positive). A header may carry several v1 signatures; one match is enough.
// A signature's hex digits are read in either case: they stand for the same
// bytes.
func VerifyWebhookPayload(secret []byte, header, key string, body []byte, tolerance time.Duration, now time.Time) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	// The MAC is over timestamp.key.body: a key with a dot in it could be
	// the start of a body moved into the key. The webhook's keys have none.
	if strings.Contains(key, ".") {
		return fmt.Errorf("%w: the %s holds a '.'", ErrSignature, IdempotencyHeader)
	}
	if header == "" {
		return fmt.Errorf("%w: no %s header", ErrSignature, SignatureHeader)
	}
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		name, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return fmt.Errorf("%w: %s is not a list of name=value", ErrSignature, SignatureHeader)
		}
		switch name {
		case "t":
			if ts != "" {
				return fmt.Errorf("%w: %s has two timestamps", ErrSignature, SignatureHeader)
			}
			ts = value
		case "v1":
			sig, err := hex.DecodeString(value)
			if err != nil || len(sig) != sha256.Size {
				return fmt.Errorf("%w: a v1 signature is not %d hex bytes", ErrSignature, sha256.Size)
			}
			sigs = append(sigs, sig)
		}
		// Other schemes are skipped, so a sender can add one without
		// breaking receivers.
	}
	if ts == "" {
		return fmt.Errorf("%w: %s has no timestamp (t=)", ErrSignature, SignatureHeader)
	}
	if len(sigs) == 0 {
		return fmt.Errorf("%w: %s has no v1 signature", ErrSignature, SignatureHeader)
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: the timestamp %q is not a number of seconds", ErrSignature, ts)
	}
	if age := now.Sub(time.Unix(secs, 0)); age > tolerance || age < -tolerance {
		return fmt.Errorf("%w: the timestamp is %v from now, outside the tolerance of %v", ErrSignature, age.Round(time.Second), tolerance)
	}
	want := webhookMAC(secret, ts, key, body)
	for _, sig := range sigs {
		if hmac.Equal(sig, want) {
			return nil
		}
	}
	return fmt.Errorf("%w: no signature matches the body and key under this secret", ErrSignature)
}
