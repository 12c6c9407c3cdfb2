package segmentapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

func TestTrackingStoresEveryMessageType(t *testing.T) {
	a := newAPI(t)
	ts := `"timestamp":"2026-12-07T09:00:00Z"`
	for path, body := range map[string]string{
		"/v1/identify": `{"messageId":"m1","userId":"u1",` + ts + `,"traits":{"plan":"pro"}}`,
		"/v1/track":    `{"messageId":"m2","userId":"u1",` + ts + `,"event":"Signed Up","properties":{"n":1}}`,
		"/v1/page":     `{"messageId":"m3","userId":"u1",` + ts + `,"name":"Home","category":"Docs"}`,
		"/v1/screen":   `{"messageId":"m4","userId":"u1",` + ts + `,"name":"Settings"}`,
		"/v1/group":    `{"messageId":"m5","userId":"u1",` + ts + `,"groupId":"g1","traits":{"name":"Acme"}}`,
		"/v1/alias":    `{"messageId":"m6","userId":"u1",` + ts + `,"previousId":"anon-1"}`,
	} {
		got := a.post(path, testWriteKey, body)
		wantStatus(t, got, http.StatusOK)
		if v := got.json(t); v["success"] != true {
			t.Errorf("%s answered %s, want success", path, got.body)
		}
	}
	types := map[string]string{}
	for _, e := range a.events(t, user("u1")) {
		types[e.MessageID] = e.Type
		if e.Source != testSource {
			t.Errorf("event %s has source %q, want the write key's %q", e.MessageID, e.Source, testSource)
		}
	}
	want := map[string]string{"m2": "track", "m3": "page", "m4": "screen", "m5": "group", "m6": "alias"}
	for id, typ := range want {
		if types[id] != typ {
			t.Errorf("event %s has type %q, want %q (stored: %v)", id, types[id], typ, types)
		}
	}
	p, err := a.c.Profile(context.Background(), user("u1"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Traits["plan"].Value != "pro" || p.Traits["plan"].Source != testSource {
		t.Errorf("trait plan = %+v, want pro from %s", p.Traits["plan"], testSource)
	}
	acct, err := a.c.Account(context.Background(), "g1")
	if err != nil || acct.Traits["name"].Value != "Acme" {
		t.Errorf("account g1 = %+v, %v; want the group's name", acct, err)
	}
}

func TestTrackingStampsReceivedAt(t *testing.T) {
	a := newAPI(t)
	stamped := received0.Add(-time.Minute)
	a.tracking = NewTracking(a.c, WithWriteKey(testWriteKey, testSource), WithClock(func() time.Time { return stamped }))
	wantStatus(t, a.post("/v1/track", testWriteKey, `{"userId":"u1","event":"Opened"}`), http.StatusOK)
	evs := a.events(t, user("u1"))
	if len(evs) != 1 || !evs[0].Timestamp.Equal(stamped) {
		t.Fatalf("events %+v: want one dated by the handler's receivedAt %v", evs, stamped)
	}
	// Kept as collected by the Controller (its clock), which retention
	// counts from, and shown by the Profile API.
	if !evs[0].ReceivedAt.Equal(received0) {
		t.Errorf("the stored event's ReceivedAt = %v, want the Controller's clock %v", evs[0].ReceivedAt, received0)
	}
}

func TestTrackingAuth(t *testing.T) {
	a := newAPI(t)
	body := `{"userId":"u1","event":"Opened","messageId":"m1"}`
	for name, key := range map[string]string{"missing": "", "wrong": "wk_nope", "password-only": ""} {
		r := httptest.NewRequest(http.MethodPost, "/v1/track", strings.NewReader(body))
		if key != "" {
			r.SetBasicAuth(key, "")
		}
		if name == "password-only" {
			r.SetBasicAuth("", testWriteKey)
		}
		got := serve(a.tracking, r)
		wantStatus(t, got, http.StatusUnauthorized)
		if got.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s key: no WWW-Authenticate challenge", name)
		}
		if v := got.json(t); v["success"] != false || v["code"] != "unauthorized" {
			t.Errorf("%s key answered %s", name, got.body)
		}
	}
	if evs := a.events(t, user("u1")); len(evs) != 0 {
		t.Fatalf("unauthenticated requests stored %d events", len(evs))
	}
	// Each key stamps its own source.
	wantStatus(t, a.post("/v1/track", otherKey, body), http.StatusOK)
	evs := a.events(t, user("u1"))
	if len(evs) != 1 || evs[0].Source != otherSource {
		t.Fatalf("events %+v: want one from %s", evs, otherSource)
	}
	// The write key in the body, as analytics-python sends it.
	wantStatus(t, a.post("/v1/batch", "", `{"writeKey":"`+testWriteKey+`","batch":[{"type":"track","userId":"u1","event":"Opened","messageId":"m2"}]}`), http.StatusOK)
	wantStatus(t, a.post("/v1/track", "", `{"writeKey":"`+testWriteKey+`","userId":"u1","event":"Opened","messageId":"m3"}`), http.StatusOK)
	for _, body := range []string{
		`{"writeKey":"wk_nope","userId":"u1","event":"Opened","messageId":"m4"}`,
		`{"userId":"u1","event":"Opened","messageId":"m4"}`,
		`{"userId":"u1",`, // unreadable and unauthenticated: not described
	} {
		got := a.post("/v1/track", "", body)
		wantStatus(t, got, http.StatusUnauthorized)
	}
	evs = a.events(t, user("u1"))
	if len(evs) != 3 || evs[1].Source != testSource || evs[2].Source != testSource {
		t.Fatalf("events %+v: want m2 and m3 from the body's key's source", evs)
	}
	// No write key configured: nothing is open.
	closed := NewTracking(a.c)
	r := httptest.NewRequest(http.MethodPost, "/v1/track", strings.NewReader(body))
	r.SetBasicAuth(testWriteKey, "")
	wantStatus(t, serve(closed, r), http.StatusUnauthorized)
}

func TestTrackingGzip(t *testing.T) {
	a := newAPI(t)
	post := func(body []byte, encoding string) answer {
		r := httptest.NewRequest(http.MethodPost, "/v1/batch", bytes.NewReader(body))
		r.SetBasicAuth(testWriteKey, "")
		r.Header.Set("Content-Encoding", encoding)
		return serve(a.tracking, r)
	}
	batch := `{"batch":[{"type":"track","userId":"u1","event":"Opened","messageId":"m1"}]}`
	wantStatus(t, post(gzipped(t, batch), "gzip"), http.StatusOK)
	if n := len(a.events(t, user("u1"))); n != 1 {
		t.Fatalf("a gzipped batch stored %d events, want 1", n)
	}
	z := gzipped(t, strings.Replace(batch, "m1", "m2", 1))
	got := post(z[:len(z)-6], "gzip")
	wantStatus(t, got, http.StatusBadRequest)
	if got.json(t)["code"] != "invalid_request" {
		t.Errorf("truncated gzip answered %s", got.body)
	}
	wantStatus(t, post([]byte(batch), "br"), http.StatusUnsupportedMediaType)
	if n := len(a.events(t, user("u1"))); n != 1 {
		t.Fatalf("refused bodies stored events: %d, want 1", n)
	}
}

func TestTrackingSizeLimits(t *testing.T) {
	a := newAPI(t)
	big := strings.Repeat("x", MaxMessageBytes)
	got := a.post("/v1/track", testWriteKey, `{"userId":"u1","event":"Opened","properties":{"p":"`+big+`"}}`)
	wantStatus(t, got, http.StatusBadRequest)
	if v := got.json(t); v["code"] != "payload_too_large" || !strings.Contains(v["message"].(string), "32 KB") {
		t.Errorf("an over-size message answered %s", got.body)
	}
	// A batch over 500 KB, gzipped small: refused after 500 KB decompressed.
	var b strings.Builder
	b.WriteString(`{"batch":[`)
	for i := 0; b.Len() < MaxBatchBytes+1; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"type":"track","userId":"u1","event":"Opened","messageId":"b%d"}`, i)
	}
	b.WriteString(`]}`)
	r := httptest.NewRequest(http.MethodPost, "/v1/batch", bytes.NewReader(gzipped(t, b.String())))
	r.SetBasicAuth(testWriteKey, "")
	r.Header.Set("Content-Encoding", "gzip")
	got = serve(a.tracking, r)
	wantStatus(t, got, http.StatusBadRequest)
	if v := got.json(t); v["code"] != "payload_too_large" || !strings.Contains(v["message"].(string), "500 KB") {
		t.Errorf("an over-size batch answered %s", got.body)
	}
	if n := len(a.events(t, user("u1"))); n != 0 {
		t.Fatalf("over-size bodies stored %d events", n)
	}
	// One over-size message in a batch fails alone.
	got = a.post("/v1/batch", testWriteKey, `{"batch":[`+
		`{"type":"track","userId":"u1","event":"Opened","messageId":"ok"},`+
		`{"type":"track","userId":"u1","event":"Opened","messageId":"big","properties":{"p":"`+big+`"}}]}`)
	wantStatus(t, got, http.StatusOK)
	issues := got.json(t)["errors"].([]any)
	if len(issues) != 1 || issues[0].(map[string]any)["index"] != float64(1) {
		t.Errorf("answer %s: want message 1 refused", got.body)
	}
	if evs := a.events(t, user("u1")); len(evs) != 1 || evs[0].MessageID != "ok" {
		t.Fatalf("events %+v: want only the message within bounds", evs)
	}
}

func TestTrackingBatchOfMoreThan2500RefusesTheRest(t *testing.T) {
	a := newAPI(t)
	var b strings.Builder
	b.WriteString(`{"batch":[`)
	for i := range MaxBatchMessages + 3 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"type":"track","userId":"u1","event":"E","messageId":"%d"}`, i)
	}
	b.WriteString(`]}`)
	got := a.post("/v1/batch", testWriteKey, b.String())
	wantStatus(t, got, http.StatusOK)
	var ans trackingAnswer
	if err := json.Unmarshal(got.body, &ans); err != nil {
		t.Fatal(err)
	}
	if len(ans.Errors) != 1 || ans.Errors[0].Index != MaxBatchMessages || !strings.Contains(ans.Errors[0].Message, "2500 messages: the 3 from") {
		t.Fatalf("answer errors %+v: want one refusal of the 3 messages past %d", ans.Errors, MaxBatchMessages)
	}
	if got := a.c.Stats().Collected; got != MaxBatchMessages {
		t.Errorf("collected %d, want %d", got, MaxBatchMessages)
	}
}

func TestTrackingBadInputNamesFieldQuotesNothing(t *testing.T) {
	a := newAPI(t)
	const secret = "jane@example.com"
	for name, c := range map[string]struct{ body, field string }{
		"syntax":        {`{"userId":"` + secret + `", "event":"Opened",}`, "invalid JSON at byte"},
		"traits type":   {`{"userId":"u1","traits":["` + secret + `"]}`, "traits: want an object"},
		"event type":    {`{"userId":"u1","event":{"e":"` + secret + `"}}`, "event: want a string"},
		"no identifier": {`{"event":"Opened","properties":{"email":"` + secret + `"}}`, "UserID"},
		"bad time":      {`{"userId":"u1","event":"Opened","timestamp":"` + secret + `"}`, "ISO 8601"},
		"not an object": {`["` + secret + `"]`, "want a JSON object"},
	} {
		path := "/v1/track"
		if strings.HasPrefix(name, "traits") {
			path = "/v1/identify"
		}
		got := a.post(path, testWriteKey, c.body)
		wantStatus(t, got, http.StatusBadRequest)
		v := got.json(t)
		if v["success"] != false || v["code"] != "invalid_request" || !strings.Contains(v["message"].(string), c.field) {
			t.Errorf("%s: answer %s, want it to name %q", name, got.body, c.field)
		}
		a.noneQuoted(t, got, secret)
	}
	if n := len(a.events(t, user("u1"))); n != 0 {
		t.Fatalf("bad input stored %d events", n)
	}
	if _, err := a.c.Profile(context.Background(), user("u1")); !errors.Is(err, privacy.ErrNotFound) {
		t.Fatalf("bad input made a profile: %v", err)
	}
}

func TestTrackingBatchOutcomesAndDuplicates(t *testing.T) {
	a := newAPI(t)
	batch := `{"batch":[
		{"type":"track","userId":"u1","event":"Opened","messageId":"m1"},
		{"type":"track","userId":"u1","messageId":"m2"},
		{"type":"bogus","userId":"u1","messageId":"m3"},
		{"type":"track","userId":"u1","event":"Opened","messageId":"m1"},
		"not an object",
		{"type":"identify","userId":"u1","traits":{"plan":"pro"},"messageId":"m5"}]}`
	for range 2 { // sent twice: the repeat is harmless
		got := a.post("/v1/batch", testWriteKey, batch)
		wantStatus(t, got, http.StatusOK)
		var ans trackingAnswer
		if err := json.Unmarshal(got.body, &ans); err != nil {
			t.Fatal(err)
		}
		var idx []int
		for _, is := range ans.Errors {
			idx = append(idx, is.Index)
		}
		if !ans.Success || fmt.Sprint(idx) != "[1 2 4]" {
			t.Fatalf("answer %s: want messages 1, 2 and 4 refused", got.body)
		}
		if !strings.Contains(ans.Errors[0].Message, "Event") || !strings.Contains(ans.Errors[1].Message, "type") {
			t.Errorf("the refusals do not name their fields: %+v", ans.Errors)
		}
	}
	evs := a.events(t, user("u1"))
	if len(evs) != 1 || evs[0].MessageID != "m1" {
		t.Fatalf("events %+v: want m1 once", evs)
	}
}

func TestTrackingSuppressedAnswersAsStored(t *testing.T) {
	a := newAPI(t)
	wantStatus(t, a.post("/v1/identify", testWriteKey, `{"userId":"u1","traits":{"plan":"pro"}}`), http.StatusOK)
	if _, err := a.c.Apply(context.Background(), privacy.Request{Type: privacy.SuppressWithDelete, Subjects: []identity.ID{user("u1")}}); err != nil {
		t.Fatal(err)
	}
	for _, got := range []answer{
		a.post("/v1/track", testWriteKey, `{"userId":"u1","event":"Opened"}`),
		a.post("/v1/batch", testWriteKey, `{"batch":[{"type":"track","userId":"u1","event":"Opened"}]}`),
	} {
		wantStatus(t, got, http.StatusOK)
		if v := got.json(t); v["success"] != true || v["errors"] != nil {
			t.Errorf("a suppressed person's message answered %s: it must not tell the sender", got.body)
		}
	}
	if _, err := a.c.Profile(context.Background(), user("u1")); !errors.Is(err, privacy.ErrNotFound) {
		t.Fatalf("a suppressed person's profile came back: %v", err)
	}
}

func TestTrackingBatchEnvelopeFillsMessages(t *testing.T) {
	a := newAPI(t)
	got := a.post("/v1/batch", testWriteKey, `{"sentAt":"2026-12-07T09:59:00Z","context":{"library":{"name":"analytics-go"},"locale":"fr-FR"},"batch":[
		{"type":"track","userId":"u1","event":"Opened","messageId":"m1","context":{"locale":"de-DE"},"timestamp":"2026-12-07T09:58:00Z"}]}`)
	wantStatus(t, got, http.StatusOK)
	evs := a.events(t, user("u1"))
	if len(evs) != 1 {
		t.Fatalf("events %+v", evs)
	}
	ctx := evs[0].Context
	if ctx["locale"] != "de-DE" || ctx["library"] == nil {
		t.Errorf("context %v: want the message's locale and the batch's library", ctx)
	}
	// Sent one minute after its timestamp, by the client's clock: Segment's
	// skew correction dates it one minute before its receipt.
	if want := received0.Add(-time.Minute); !evs[0].Timestamp.Equal(want) {
		t.Errorf("timestamp %v, want %v", evs[0].Timestamp, want)
	}
}

func TestTrackingKeepsNumbersExactly(t *testing.T) {
	a := newAPI(t)
	wantStatus(t, a.post("/v1/track", testWriteKey, `{"userId":"u1","event":"Paid","properties":{"order":12345678901234567891,"amount":12.5}}`), http.StatusOK)
	evs := a.events(t, user("u1"))
	if len(evs) != 1 {
		t.Fatalf("events %+v", evs)
	}
	if n, ok := evs[0].Properties["order"].(json.Number); !ok || n.String() != "12345678901234567891" {
		t.Errorf("order = %#v, want the exact integer", evs[0].Properties["order"])
	}
	if evs[0].Properties["amount"] != 12.5 {
		t.Errorf("amount = %#v", evs[0].Properties["amount"])
	}
}

func TestTrackingNumericIDsAreTheirText(t *testing.T) {
	a := newAPI(t)
	wantStatus(t, a.post("/v1/track", testWriteKey, `{"userId":42,"event":"Opened"}`), http.StatusOK)
	if n := len(a.events(t, user("42"))); n != 1 {
		t.Fatalf("user 42 has %d events, want 1", n)
	}
}

func TestTrackingUnknownPathAndMethod(t *testing.T) {
	a := newAPI(t)
	wantStatus(t, a.post("/v1/bogus", testWriteKey, `{}`), http.StatusNotFound)
	r := httptest.NewRequest(http.MethodGet, "/v1/track", nil)
	r.SetBasicAuth(testWriteKey, "")
	got := serve(a.tracking, r)
	wantStatus(t, got, http.StatusMethodNotAllowed)
}

// failingProfiles fails every transaction with an error that quotes a
// value, as a database driver's might.
type failingProfiles struct{ *profile.MemStore }

func (failingProfiles) Begin(context.Context) (profile.Tx, error) {
	return nil, errors.New(`pq: duplicate key value (email)=(jane@example.com) violates unique constraint`)
}

func TestTrackingBackendFailureAnswers503LogsNoValue(t *testing.T) {
	a := newAPI(t, privacy.WithProfiles(failingProfiles{profile.NewMemStore()}))
	for _, path := range []string{"/v1/track", "/v1/batch"} {
		body := `{"userId":"jane@example.com","event":"Opened"}`
		if path == "/v1/batch" {
			body = `{"batch":[{"type":"track","userId":"jane@example.com","event":"Opened"}]}`
		}
		got := a.post(path, testWriteKey, body)
		wantStatus(t, got, http.StatusServiceUnavailable)
		if v := got.json(t); v["success"] != false || v["code"] != "server_error" {
			t.Errorf("%s answered %s", path, got.body)
		}
		a.noneQuoted(t, got, "jane@example.com", "duplicate key")
	}
	if !strings.Contains(a.log.String(), "class=backend") {
		t.Errorf("the failure was not logged with its class: %q", a.log.String())
	}
}

func TestTrackingClosedControllerAnswers503(t *testing.T) {
	a := newAPI(t)
	a.c.Close()
	got := a.post("/v1/track", testWriteKey, `{"userId":"u1","event":"Opened"}`)
	wantStatus(t, got, http.StatusServiceUnavailable)
	if got.json(t)["code"] != "unavailable" {
		t.Errorf("answer %s", got.body)
	}
}

func TestTrackingHonoursRequestContext(t *testing.T) {
	a := newAPI(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/track", strings.NewReader(`{"userId":"u1","event":"Opened"}`))
	r.SetBasicAuth(testWriteKey, "")
	got := serve(a.tracking, r)
	wantStatus(t, got, http.StatusServiceUnavailable)
	if n := len(a.events(t, user("u1"))); n != 0 {
		t.Fatalf("a cancelled request stored %d events", n)
	}
	if !strings.Contains(a.log.String(), "class=canceled") {
		t.Errorf("log %q: want the cancellation's class", a.log.String())
	}
}

func TestNewTrackingRefusesBadOptions(t *testing.T) {
	c, err := privacy.New()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for name, opts := range map[string][]Option{
		"empty key":    {WithWriteKey("", "s")},
		"empty source": {WithWriteKey("k", "")},
		"key twice":    {WithWriteKey("k", "s1"), WithWriteKey("k", "s2")},
		"nil logger":   {WithLogger((*slog.Logger)(nil))},
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "segmentapi:") {
					t.Errorf("%s: NewTracking did not panic with the option's error: %v", name, r)
				}
			}()
			NewTracking(c, opts...)
		}()
	}
}
