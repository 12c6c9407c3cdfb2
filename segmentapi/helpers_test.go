package segmentapi

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

const (
	testWriteKey = "wk_web"
	testSource   = "src_web"
	otherKey     = "wk_ios"
	otherSource  = "src_ios"
	testToken    = "tok_profiles"
)

var received0 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

// logBuffer is a slog handler's output, safe for concurrent handlers.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// api is a Controller behind the three handlers, with a fixed clock and a
// log kept for inspection.
type api struct {
	c           *privacy.Controller
	tracking    http.Handler
	profiles    http.Handler
	regulations http.Handler
	log         *logBuffer
}

func newAPI(t testing.TB, opts ...privacy.Option) *api {
	t.Helper()
	c, err := privacy.New(append([]privacy.Option{privacy.WithClock(func() time.Time { return received0 })}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return newAPIOver(t, c)
}

func newAPIOver(t testing.TB, c *privacy.Controller) *api {
	a := &api{c: c, log: &logBuffer{}}
	common := []Option{WithLogger(slog.New(slog.NewTextHandler(a.log, nil))), WithClock(func() time.Time { return received0 })}
	a.tracking = NewTracking(c, append(common, WithWriteKey(testWriteKey, testSource), WithWriteKey(otherKey, otherSource))...)
	a.profiles = NewProfiles(c, append(common, WithAccessToken(testToken))...)
	a.regulations = NewRegulations(c, append(common, WithAccessToken(testToken))...)
	return a
}

// answer is a recorded response.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t testing.TB) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(a.body, &v); err != nil {
		t.Fatalf("answer %d is not a JSON object: %v: %s", a.status, err, a.body)
	}
	return v
}

func serve(h http.Handler, r *http.Request) answer {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return answer{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

// post sends body to path of the Tracking API with the write key.
func (a *api) post(path, key, body string) answer {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	if key != "" {
		r.SetBasicAuth(key, "")
	}
	r.Header.Set("Content-Type", "application/json")
	return serve(a.tracking, r)
}

func gzipped(t testing.TB, s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := io.WriteString(zw, s); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func (a *api) events(t testing.TB, id identity.ID) []profile.Event {
	t.Helper()
	page, err := a.c.Events(context.Background(), id, profile.EventQuery{Sort: profile.Asc, Limit: profile.MaxLimit})
	if errors.Is(err, privacy.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return page.Events
}

func user(v string) identity.ID { return identity.ID{Type: "user_id", Value: v} }

// wantStatus fails t unless the answer has the status.
func wantStatus(t testing.TB, got answer, status int) {
	t.Helper()
	if got.status != status {
		t.Fatalf("status %d, want %d: %s", got.status, status, got.body)
	}
}

// quotes fails t if the answer or the log quotes any of the secrets.
func (a *api) noneQuoted(t testing.TB, got answer, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if bytes.Contains(got.body, []byte(s)) {
			t.Errorf("the answer quotes %q: %s", s, got.body)
		}
		if strings.Contains(a.log.String(), s) {
			t.Errorf("the log quotes %q: %s", s, a.log.String())
		}
	}
}
