package compat

// These tests drive package segmentapi's three handlers over real HTTP: the
// real analytics-go v3 client posts to NewTracking in an httptest server,
// what it stored is read back through NewProfiles, erased through
// NewRegulations, and checked gone through NewProfiles again.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/segmentapi"
	analytics "github.com/segmentio/analytics-go/v3"
)

const (
	apiSource   = "src_go"       // the source id of writeKey
	accessToken = "tok_profiles" // the Profile API's and the Regulations API's token
	apiSpace    = "spa_test"
	publicType  = "application/vnd.segment.v1+json"
)

// exchange is one request the Tracking API answered.
type exchange struct {
	method, path string
	status       int
	body         string
}

// exchangeLog records what the Tracking API answered, request by request.
type exchangeLog struct {
	mu  sync.Mutex
	all []exchange
}

func (l *exchangeLog) add(x exchange) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, x)
}

// since returns the exchanges recorded after the first n.
func (l *exchangeLog) since(n int) []exchange {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.all[n:])
}

func (l *exchangeLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.all)
}

// recordingWriter keeps the status and body a handler answers with.
type recordingWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (w *recordingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.body.Write(p)
	return w.ResponseWriter.Write(p)
}

// segmentStack is a Controller behind segmentapi's three handlers: the
// Tracking and Profile APIs on one server, the Regulations API on another.
type segmentStack struct {
	c    *privacy.Controller
	crm  *destination.Recorder
	api  *httptest.Server // /v1/ (Tracking) and /v1/spaces/ (Profile)
	regs *httptest.Server // /regulations, /suppressions
	log  *exchangeLog     // what the Tracking API answered
}

func newSegmentStack(t *testing.T) *segmentStack {
	t.Helper()
	crm := destination.NewRecorder("crm")
	c, err := privacy.New(privacy.WithDestinations(crm))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &segmentStack{c: c, crm: crm, log: &exchangeLog{}}
	tracking := segmentapi.NewTracking(c, segmentapi.WithWriteKey(writeKey, apiSource))
	profiles := segmentapi.NewProfiles(c, segmentapi.WithAccessToken(accessToken))
	regulations := segmentapi.NewRegulations(c, segmentapi.WithAccessToken(accessToken))

	mux := http.NewServeMux()
	mux.Handle("/v1/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &recordingWriter{ResponseWriter: w}
		tracking.ServeHTTP(rw, r)
		s.log.add(exchange{method: r.Method, path: r.URL.Path, status: rw.status, body: rw.body.String()})
	}))
	mux.Handle("/v1/spaces/", profiles)
	s.api = httptest.NewServer(mux)
	t.Cleanup(s.api.Close)
	s.regs = httptest.NewServer(regulations)
	t.Cleanup(s.regs.Close)
	return s
}

// callbacks is an analytics.Callback that counts what the client reports.
type callbacks struct {
	mu       sync.Mutex
	ok       int
	failures []string
}

func (cb *callbacks) Success(analytics.Message) {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	cb.ok++
}

func (cb *callbacks) Failure(m analytics.Message, err error) {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	cb.failures = append(cb.failures, fmt.Sprintf("%T: %v", m, err))
}

func (cb *callbacks) counts() (ok int, failures []string) {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	return cb.ok, slices.Clone(cb.failures)
}

// segmentClient is analytics-go pointed at the stack's Tracking API, with
// key, retrying at once (a refused batch fails in milliseconds, not minutes).
func (s *segmentStack) segmentClient(t *testing.T, key string, batchSize int, cb *callbacks) analytics.Client {
	t.Helper()
	client, err := analytics.NewWithConfig(key, analytics.Config{
		Endpoint:   s.api.URL,
		BatchSize:  batchSize,
		Interval:   20 * time.Millisecond,
		Callback:   cb,
		RetryAfter: func(int) time.Duration { return time.Millisecond },
		Logger:     analytics.StdLogger(log.New(io.Discard, "", 0)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// closeClient closes client and checks every batch it sent since the
// first n exchanges was answered 200 {"success": true}, and its callback
// saw want successes and no failure.
func (s *segmentStack) closeClient(t *testing.T, client analytics.Client, cb *callbacks, n, want int) {
	t.Helper()
	if err := client.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ok, failures := cb.counts()
	if len(failures) > 0 {
		t.Fatalf("analytics-go reported %d failures, the first: %s", len(failures), failures[0])
	}
	if ok != want {
		t.Errorf("analytics-go reported %d messages sent; want %d", ok, want)
	}
	xs := s.log.since(n)
	if len(xs) == 0 {
		t.Fatal("the Tracking API received no request")
	}
	for _, x := range xs {
		if x.method != http.MethodPost || x.path != "/v1/batch" || x.status != http.StatusOK {
			t.Errorf("%s %s answered %d: %s; want POST /v1/batch answered 200", x.method, x.path, x.status, x.body)
			continue
		}
		var a struct {
			Success bool  `json:"success"`
			Errors  []any `json:"errors"`
		}
		if err := json.Unmarshal([]byte(x.body), &a); err != nil || !a.Success || len(a.Errors) != 0 {
			t.Errorf("POST /v1/batch answered %s; want {\"success\": true} without errors", x.body)
		}
	}
}

// reply is an HTTP answer, decoded.
type reply struct {
	status int
	header http.Header
	raw    []byte
	v      map[string]any
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(r.raw)) }

func do(t *testing.T, method, u string, body any, auth func(*http.Request)) reply {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != nil {
		auth(req)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, u, err)
	}
	r := reply{status: res.StatusCode, header: res.Header, raw: raw}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &r.v); err != nil {
			t.Fatalf("%s %s answered %d with no JSON object: %v: %s", method, u, res.StatusCode, err, raw)
		}
	}
	return r
}

func basic(user string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(user, "") }
}

func bearer(token string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
}

// profileURL is the Profile API's URL of endpoint for the profile
// collection/externalID, with the query.
func (s *segmentStack) profileURL(collection, externalID, endpoint string, query url.Values) string {
	u := s.api.URL + "/v1/spaces/" + apiSpace + "/collections/" + collection + "/profiles/" + url.PathEscape(externalID) + "/" + endpoint
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	return u
}

// profileGET reads endpoint of a profile with the access token.
func (s *segmentStack) profileGET(t *testing.T, collection, externalID, endpoint string, query url.Values) reply {
	t.Helper()
	return do(t, http.MethodGet, s.profileURL(collection, externalID, endpoint, query), nil, basic(accessToken))
}

// wantOK fails t unless r answered 200 JSON.
func wantOK(t *testing.T, what string, r reply) {
	t.Helper()
	if r.status != http.StatusOK || r.v == nil {
		t.Fatalf("%s: %s; want 200 with a JSON object", what, r)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q; want application/json", what, ct)
	}
}

// wantNotFound fails t unless r is the Profile API's 404 not_found.
func wantNotFound(t *testing.T, what string, r reply) {
	t.Helper()
	e, _ := r.v["error"].(map[string]any)
	if r.status != http.StatusNotFound || e == nil || e["code"] != "not_found" {
		t.Errorf("%s: %s; want 404 {\"error\": {\"code\": \"not_found\", ...}}", what, r)
		return
	}
	if m, ok := e["message"].(string); !ok || m == "" {
		t.Errorf("%s: %s; want the error's message", what, r)
	}
}

func object(v any) map[string]any { m, _ := v.(map[string]any); return m }
func array(v any) []any           { a, _ := v.([]any); return a }

// stampNear parses an RFC 3339 time and checks it lies in [from, to].
func stampNear(t *testing.T, what string, v any, from, to time.Time) {
	t.Helper()
	s, ok := v.(string)
	if !ok {
		t.Errorf("%s = %v (%T); want an RFC 3339 string", what, v, v)
		return
	}
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Errorf("%s = %q: %v", what, s, err)
		return
	}
	if ts.Before(from.Add(-time.Second)) || ts.After(to.Add(time.Second)) {
		t.Errorf("%s = %v; want between %v and %v", what, ts, from, to)
	}
}

// allEvents pages through a user's events with limit and next until
// cursor.has_more is false, and returns them with the number of pages.
func (s *segmentStack) allEvents(t *testing.T, externalID string, limit int) (events []map[string]any, pages int) {
	t.Helper()
	q := url.Values{"limit": {fmt.Sprint(limit)}}
	for pages < 1000 {
		r := s.profileGET(t, "users", externalID, "events", q)
		wantOK(t, externalID+" events", r)
		pages++
		data, ok := r.v["data"].([]any)
		if !ok {
			t.Fatalf("%s events: %s; want data, an array", externalID, r)
		}
		if len(data) > limit {
			t.Fatalf("%s events: a page of %d with limit=%d", externalID, len(data), limit)
		}
		for _, e := range data {
			events = append(events, object(e))
		}
		cur := object(r.v["cursor"])
		more, ok := cur["has_more"].(bool)
		if !ok {
			t.Fatalf("%s events: %s; want cursor.has_more, a boolean", externalID, r)
		}
		next, _ := cur["next"].(string)
		if !more {
			return events, pages
		}
		if next == "" {
			t.Fatalf("%s events: cursor %v has more but no next", externalID, cur)
		}
		q.Set("next", next)
	}
	t.Fatalf("%s events: still more after 1000 pages", externalID)
	return nil, 0
}

const (
	batchUsers    = 10
	batchMessages = 1000
)

func batchUser(k int) string { return fmt.Sprintf("user_id:u-%d", k) }

// sendAdaAndBatch sends, with analytics-go, every message type for ada and
// 1,000 tracks for 10 users, in batches of 250, and checks every batch was
// taken.
func (s *segmentStack) sendAdaAndBatch(t *testing.T, ts time.Time) {
	t.Helper()
	cb := &callbacks{}
	n := s.log.len()
	client := s.segmentClient(t, writeKey, 250, cb)
	ada := []analytics.Message{
		analytics.Identify{MessageId: "id-1", UserId: "ada", AnonymousId: "anon-ada", Timestamp: ts,
			Traits: analytics.NewTraits().SetEmail("ada@example.com").SetName("Ada Lovelace").Set("plan", "pro").Set("logins", 3)},
		analytics.Track{MessageId: "tr-1", UserId: "ada", Event: "Order Completed", Timestamp: ts.Add(time.Second),
			Properties: analytics.NewProperties().SetRevenue(249).Set("sku", "TENT-2P")},
		analytics.Page{MessageId: "pg-1", UserId: "ada", Name: "Pricing", Timestamp: ts.Add(2 * time.Second),
			Properties: analytics.NewProperties().SetURL("https://shop.example/pricing"),
			Context:    &analytics.Context{Page: analytics.PageInfo{Title: "Pricing"}}},
		analytics.Screen{MessageId: "sc-1", UserId: "ada", Name: "Settings", Timestamp: ts.Add(3 * time.Second)},
		analytics.Group{MessageId: "gr-1", UserId: "ada", GroupId: "acme", Timestamp: ts.Add(4 * time.Second),
			Traits: analytics.NewTraits().SetName("Acme").Set("employees", 120)},
		analytics.Alias{MessageId: "al-1", UserId: "ada", PreviousId: "anon-old", Timestamp: ts.Add(5 * time.Second)},
	}
	enqueue(t, client, ada...)
	for i := range batchMessages {
		enqueue(t, client, analytics.Track{MessageId: fmt.Sprintf("b-%04d", i), UserId: fmt.Sprintf("u-%d", i%batchUsers),
			Event: "Viewed", Properties: analytics.NewProperties().Set("i", i), Timestamp: ts.Add(time.Duration(i) * time.Millisecond)})
	}
	s.closeClient(t, client, cb, n, len(ada)+batchMessages)
}

// TestSegmentAPIAnalyticsGoToProfilesThenErased: the real analytics-go v3
// client sends every message type and a batch of 1,000 to NewTracking; all
// of it is read back through NewProfiles; ada is erased (and suppressed)
// through NewRegulations, then is gone from every Profile API endpoint by
// every identifier, while the others stay; a message about her sent after
// is answered 200 and not stored.
func TestSegmentAPIAnalyticsGoToProfilesThenErased(t *testing.T) {
	s := newSegmentStack(t)
	start := time.Now()
	ts := start.Add(-time.Hour).UTC().Truncate(time.Millisecond)
	s.sendAdaAndBatch(t, ts)
	sent := time.Now()

	t.Run("traits", func(t *testing.T) {
		r := s.profileGET(t, "users", "user_id:ada", "traits", nil)
		wantOK(t, "ada's traits", r)
		traits := object(r.v["traits"])
		for k, want := range map[string]any{"email": "ada@example.com", "name": "Ada Lovelace", "plan": "pro", "logins": 3.0} {
			if traits[k] != want {
				t.Errorf("trait %s = %v; want %v (answer %s)", k, traits[k], want, r)
			}
		}
		if cur := object(r.v["cursor"]); cur == nil || cur["has_more"] != false {
			t.Errorf("traits cursor = %v; want has_more false (4 traits, limit 10)", r.v["cursor"])
		}
		// The same profile by its email.
		byEmail := s.profileGET(t, "users", "email:ada@example.com", "traits", nil)
		wantOK(t, "traits by email", byEmail)
		if object(byEmail.v["traits"])["plan"] != "pro" {
			t.Errorf("traits by email: %s; want ada's", byEmail)
		}

		r = s.profileGET(t, "users", "user_id:ada", "traits", url.Values{"verbose": {"true"}})
		wantOK(t, "ada's verbose traits", r)
		traits = object(r.v["traits"])
		for k, want := range map[string]any{"email": "ada@example.com", "plan": "pro", "logins": 3.0} {
			tr := object(traits[k])
			if tr == nil {
				t.Errorf("verbose trait %s = %v; want {value, source_id, updated_at}", k, traits[k])
				continue
			}
			if tr["value"] != want || tr["source_id"] != apiSource {
				t.Errorf("verbose trait %s = %v; want value %v from source %s", k, tr, want, apiSource)
			}
			// Dated by the identify (its timestamp, corrected for the
			// client's clock skew: within the second), not by its arrival.
			stampNear(t, "verbose trait "+k+" updated_at", tr["updated_at"], ts, ts.Add(time.Second))
		}

		r = s.profileGET(t, "users", "user_id:ada", "traits", url.Values{"include": {"plan"}})
		wantOK(t, "ada's traits include=plan", r)
		if traits := object(r.v["traits"]); len(traits) != 1 || traits["plan"] != "pro" {
			t.Errorf("traits include=plan: %s; want plan only", r)
		}
	})

	t.Run("events of ada: every type, snake_case", func(t *testing.T) {
		events, _ := s.allEvents(t, "user_id:ada", 100)
		byID := map[string]map[string]any{}
		for _, e := range events {
			id, _ := e["message_id"].(string)
			byID[id] = e
			if e["source_id"] != apiSource {
				t.Errorf("event %s: source_id %v; want %s", id, e["source_id"], apiSource)
			}
			for _, camel := range []string{"messageId", "sourceId", "receivedAt"} {
				if _, ok := e[camel]; ok {
					t.Errorf("event %s has %q; the Profile API writes snake_case", id, camel)
				}
			}
		}
		for id, want := range map[string]map[string]any{
			"tr-1": {"type": "track", "event": "Order Completed"},
			"pg-1": {"type": "page", "name": "Pricing"},
			"sc-1": {"type": "screen", "name": "Settings"},
			"gr-1": {"type": "group"},
			"al-1": {"type": "alias"},
		} {
			e, ok := byID[id]
			if !ok {
				t.Errorf("event %s missing among ada's %d events", id, len(events))
				continue
			}
			for k, v := range want {
				if e[k] != v {
					t.Errorf("event %s: %s = %v; want %v (event %v)", id, k, e[k], v, e)
				}
			}
			stampNear(t, "event "+id+" timestamp", e["timestamp"], ts, ts.Add(6*time.Second))
		}
		if p := object(byID["tr-1"]["properties"]); p["revenue"] != 249.0 || p["sku"] != "TENT-2P" {
			t.Errorf("tr-1 properties = %v; want revenue 249 and sku", p)
		}
		if p := object(byID["pg-1"]["properties"]); p["url"] != "https://shop.example/pricing" {
			t.Errorf("pg-1 properties = %v; want its url", p)
		}
		// analytics-go sends its library in the batch's context: every
		// message gets it, beside a context of its own.
		for _, id := range []string{"tr-1", "pg-1"} {
			ctx := object(byID[id]["context"])
			if object(ctx["library"])["name"] != "analytics-go" {
				t.Errorf("event %s context = %v; want the batch's library analytics-go", id, ctx)
			}
		}
		if ctx := object(byID["pg-1"]["context"]); object(ctx["page"])["title"] != "Pricing" {
			t.Errorf("pg-1 context = %v; want its own page title", ctx)
		}
	})

	t.Run("events of the batch, paged", func(t *testing.T) {
		for k := range batchUsers {
			events, pages := s.allEvents(t, batchUser(k), 30)
			want := batchMessages / batchUsers
			if len(events) != want || pages != 4 {
				t.Errorf("%s: %d events in %d pages of 30; want %d in 4", batchUser(k), len(events), pages, want)
			}
			seen := map[string]bool{}
			for _, e := range events {
				id, _ := e["message_id"].(string)
				i := object(e["properties"])["i"]
				f, ok := i.(float64)
				if seen[id] || e["type"] != "track" || e["event"] != "Viewed" || !ok || int(f)%batchUsers != k || id != fmt.Sprintf("b-%04d", int(f)) {
					t.Errorf("%s: event %v repeated or not one sent to it", batchUser(k), e)
				}
				seen[id] = true
			}
		}
	})

	t.Run("external_ids", func(t *testing.T) {
		r := s.profileGET(t, "users", "user_id:ada", "external_ids", nil)
		wantOK(t, "ada's external_ids", r)
		got := map[string]map[string]any{}
		for _, x := range array(r.v["data"]) {
			m := object(x)
			got[fmt.Sprint(m["type"], ":", m["id"])] = m
		}
		for _, want := range []string{"user_id:ada", "email:ada@example.com", "anonymous_id:anon-ada"} {
			x, ok := got[want]
			if !ok {
				t.Errorf("external_ids: %s; want %s among them", r, want)
				continue
			}
			if x["collection"] != "users" || x["encoding"] != "none" {
				t.Errorf("external id %s = %v; want collection users, encoding none", want, x)
			}
			stampNear(t, "external id "+want+" created_at", x["created_at"], start, sent)
		}
		if _, ok := object(r.v["cursor"])["has_more"].(bool); !ok {
			t.Errorf("external_ids: %s; want a cursor", r)
		}
	})

	t.Run("metadata", func(t *testing.T) {
		r := s.profileGET(t, "users", "user_id:ada", "metadata", nil)
		wantOK(t, "ada's metadata", r)
		md := object(r.v["metadata"])
		stampNear(t, "metadata created_at", md["created_at"], start, sent)
		if v, ok := md["version"].(float64); !ok || v < 1 {
			t.Errorf("metadata: %s; want a version of at least 1", r)
		}
	})

	t.Run("links and the account", func(t *testing.T) {
		r := s.profileGET(t, "users", "user_id:ada", "links", nil)
		wantOK(t, "ada's links", r)
		data := array(r.v["data"])
		var linked []string
		for _, l := range data {
			lm := object(l)
			if lm["to_collection"] != "accounts" {
				t.Errorf("link %v; want to_collection accounts", lm)
				continue
			}
			for _, x := range array(lm["external_ids"]) {
				xm := object(x)
				if xm["type"] != "group_id" || xm["collection"] != "accounts" {
					t.Errorf("link to %v; want a group_id of the accounts collection", xm)
				}
				linked = append(linked, fmt.Sprint(xm["id"]))
			}
		}
		if len(data) != 1 || !slices.Equal(linked, []string{"acme"}) {
			t.Errorf("links: %s; want one link to accounts, to group acme", r)
		}

		r = s.profileGET(t, "accounts", "group_id:acme", "traits", nil)
		wantOK(t, "acme's traits", r)
		if traits := object(r.v["traits"]); traits["name"] != "Acme" || traits["employees"] != 120.0 {
			t.Errorf("acme's traits: %s; want name Acme, employees 120", r)
		}
	})
	// Every endpoint answers for ada by each of her identifiers, so that
	// the 404s below are the erasure's, not a path's.
	byIdentifier := []string{"user_id:ada", "email:ada@example.com", "anonymous_id:anon-ada"}
	endpoints := []string{"traits", "events", "external_ids", "links", "metadata"}
	for _, id := range byIdentifier {
		for _, ep := range endpoints {
			wantOK(t, id+" "+ep+" before the erasure", s.profileGET(t, "users", id, ep, nil))
		}
	}
	if t.Failed() {
		t.FailNow() // the erasure below is only meaningful over what was read back
	}

	// Erase (and suppress) ada through the Regulations API.
	r := do(t, http.MethodPost, s.regs.URL+"/regulations", map[string]any{
		"regulationType": "SUPPRESS_WITH_DELETE", "subjectType": "USER_ID", "subjectIds": []string{"ada"}}, bearer(accessToken))
	if r.status != http.StatusOK {
		t.Fatalf("POST /regulations: %s; want 200", r)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, publicType) {
		t.Errorf("POST /regulations: Content-Type %q; want %s", ct, publicType)
	}
	regulateID, _ := object(r.v["data"])["regulateId"].(string)
	if regulateID == "" {
		t.Fatalf("POST /regulations: %s; want {\"data\": {\"regulateId\": ...}}", r)
	}

	var reg map[string]any
	deadline := time.Now().Add(5 * time.Second)
	for {
		r = do(t, http.MethodGet, s.regs.URL+"/regulations/"+url.PathEscape(regulateID), nil, bearer(accessToken))
		if r.status != http.StatusOK {
			t.Fatalf("GET /regulations/%s: %s; want 200", regulateID, r)
		}
		reg = object(object(r.v["data"])["regulation"])
		if reg["overallStatus"] == "FINISHED" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /regulations/%s: %s; want overallStatus FINISHED within 5 s", regulateID, r)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, publicType) {
		t.Errorf("GET /regulations/{id}: Content-Type %q; want %s", ct, publicType)
	}
	if reg["id"] != regulateID || reg["regulationType"] != "SUPPRESS_WITH_DELETE" {
		t.Errorf("regulation %v; want id %s, regulationType SUPPRESS_WITH_DELETE", reg, regulateID)
	}
	erased := time.Now()
	stampNear(t, "regulation createdAt", reg["createdAt"], sent, erased)
	stampNear(t, "regulation finishedAt", reg["finishedAt"], sent, erased)
	streams, ok := reg["streamStatus"].([]any)
	if !ok || len(streams) != 1 {
		t.Fatalf("regulation streamStatus = %v; want one stream", reg["streamStatus"])
	}
	dests, ok := object(streams[0])["destinationStatus"].([]any)
	if !ok {
		t.Fatalf("regulation streamStatus[0] = %v; want destinationStatus, an array", streams[0])
	}
	if len(dests) != 1 || object(dests[0])["name"] != "crm" || object(dests[0])["status"] != "FINISHED" {
		t.Errorf("destinationStatus = %v; want crm FINISHED", dests)
	}

	t.Run("ada gone from every endpoint by every identifier", func(t *testing.T) {
		for _, id := range byIdentifier {
			for _, ep := range endpoints {
				wantNotFound(t, id+" "+ep, s.profileGET(t, "users", id, ep, nil))
			}
		}
	})

	t.Run("the others stay", func(t *testing.T) {
		for k := range batchUsers {
			for _, ep := range []string{"traits", "external_ids", "links", "metadata"} {
				if r := s.profileGET(t, "users", batchUser(k), ep, nil); r.status != http.StatusOK {
					t.Errorf("%s %s: %s; want 200", batchUser(k), ep, r)
				}
			}
			if events, _ := s.allEvents(t, batchUser(k), 100); len(events) != batchMessages/batchUsers {
				t.Errorf("%s: %d events after ada's erasure; want %d", batchUser(k), len(events), batchMessages/batchUsers)
			}
		}
		if r := s.profileGET(t, "accounts", "group_id:acme", "metadata", nil); r.status != http.StatusOK {
			t.Errorf("acme's metadata: %s; want 200 (an account is no person)", r)
		}
	})

	t.Run("listed", func(t *testing.T) {
		r := do(t, http.MethodGet, s.regs.URL+"/suppressions", nil, bearer(accessToken))
		if r.status != http.StatusOK {
			t.Fatalf("GET /suppressions: %s; want 200", r)
		}
		sup := array(object(r.v["data"])["suppressed"])
		if len(sup) != 1 {
			t.Fatalf("GET /suppressions: %s; want one entry", r)
		}
		e := object(sup[0])
		ids := array(e["subjectIds"])
		if e["regulateId"] != regulateID || e["subjectType"] != "KEYED_HASH" || len(ids) == 0 {
			t.Errorf("suppression %v; want regulateId %s, subjectType KEYED_HASH, its subjects", e, regulateID)
		}
		for _, id := range ids {
			if str, _ := id.(string); str == "" || str == "ada" || strings.Contains(str, "@") {
				t.Errorf("suppression subject %q; want a keyed hash, never the identifier", id)
			}
		}

		r = do(t, http.MethodGet, s.regs.URL+"/regulations", nil, bearer(accessToken))
		if r.status != http.StatusOK {
			t.Fatalf("GET /regulations: %s; want 200", r)
		}
		regs := array(object(r.v["data"])["regulations"])
		if len(regs) != 1 || object(regs[0])["id"] != regulateID || object(regs[0])["status"] != "FINISHED" {
			t.Errorf("GET /regulations: %s; want the one regulation, FINISHED", r)
		}
	})

	t.Run("a message about ada after is taken, not stored", func(t *testing.T) {
		cb := &callbacks{}
		n := s.log.len()
		client := s.segmentClient(t, writeKey, 100, cb)
		enqueue(t, client,
			analytics.Track{MessageId: "after-1", UserId: "ada", Event: "Came Back"},
			analytics.Identify{MessageId: "after-2", UserId: "ada", Traits: analytics.NewTraits().SetEmail("ada@example.com")})
		s.closeClient(t, client, cb, n, 2)
		for _, id := range []string{"user_id:ada", "email:ada@example.com"} {
			for _, ep := range []string{"traits", "events", "metadata"} {
				wantNotFound(t, id+" "+ep+" after a new message", s.profileGET(t, "users", id, ep, nil))
			}
		}
	})
}

// TestSegmentAPIRefusesWrongCredentialsOverTheWire: analytics-go with a
// wrong write key is told so (its failure callback) and stores nothing;
// the Profile API refuses a wrong token (401), the Regulations API a
// request without its Bearer token (401), and neither refusal changes
// anything.
func TestSegmentAPIRefusesWrongCredentialsOverTheWire(t *testing.T) {
	s := newSegmentStack(t)

	// A person the right key stores, for the reads below.
	cb := &callbacks{}
	client := s.segmentClient(t, writeKey, 100, cb)
	enqueue(t, client, analytics.Identify{MessageId: "id-1", UserId: "ada", Traits: analytics.NewTraits().SetEmail("ada@example.com")})
	s.closeClient(t, client, cb, 0, 1)

	t.Run("analytics-go with a wrong write key", func(t *testing.T) {
		cb := &callbacks{}
		n := s.log.len()
		client := s.segmentClient(t, "wk_wrong", 100, cb)
		enqueue(t, client,
			analytics.Identify{MessageId: "m-1", UserId: "mallory", Traits: analytics.NewTraits().SetEmail("mallory@example.com")},
			analytics.Track{MessageId: "m-2", UserId: "mallory", Event: "Signed Up"},
			analytics.Identify{MessageId: "m-3", UserId: "ada", Traits: analytics.NewTraits().Set("plan", "stolen")})
		if err := client.Close(); err != nil {
			t.Fatal(err)
		}
		ok, failures := cb.counts()
		if ok != 0 || len(failures) != 3 {
			t.Errorf("analytics-go with a wrong key: %d sent, %d failed (%v); want 0 sent, 3 failed", ok, len(failures), failures)
		}
		xs := s.log.since(n)
		if len(xs) == 0 {
			t.Fatal("the Tracking API received no request from the wrong key")
		}
		for _, x := range xs {
			if x.status != http.StatusUnauthorized {
				t.Errorf("%s %s with a wrong key answered %d: %s; want 401", x.method, x.path, x.status, x.body)
			}
		}
		for _, id := range []string{"user_id:mallory", "email:mallory@example.com"} {
			wantNotFound(t, id+" sent with a wrong key", s.profileGET(t, "users", id, "traits", nil))
		}
		r := s.profileGET(t, "users", "user_id:ada", "traits", nil)
		wantOK(t, "ada's traits", r)
		if _, ok := object(r.v["traits"])["plan"]; ok {
			t.Errorf("ada's traits: %s; a wrong key set plan", r)
		}
	})

	t.Run("Profile API", func(t *testing.T) {
		u := s.profileURL("users", "user_id:ada", "traits", nil)
		if r := do(t, http.MethodGet, u, nil, basic(accessToken)); r.status != http.StatusOK {
			t.Fatalf("with the access token: %s; want 200", r)
		}
		for name, auth := range map[string]func(*http.Request){
			"no credentials":           nil,
			"a wrong token":            basic("tok_wrong"),
			"the write key as a token": basic(writeKey),
			"the token as password":    func(r *http.Request) { r.SetBasicAuth("", accessToken) },
		} {
			r := do(t, http.MethodGet, u, nil, auth)
			e := object(r.v["error"])
			if r.status != http.StatusUnauthorized || e["code"] != "authentication_error" {
				t.Errorf("%s: %s; want 401 authentication_error", name, r)
			}
			if bytes.Contains(r.raw, []byte("ada")) {
				t.Errorf("%s: %s; the refusal quotes the profile", name, r)
			}
		}
	})

	t.Run("Regulations API", func(t *testing.T) {
		create := map[string]any{"regulationType": "SUPPRESS_WITH_DELETE", "subjectType": "USER_ID", "subjectIds": []string{"ada"}}
		for name, auth := range map[string]func(*http.Request){
			"no credentials":           nil,
			"a wrong Bearer token":     bearer("tok_wrong"),
			"the write key":            bearer(writeKey),
			"the token as Basic":       basic(accessToken),
			"the token without Bearer": func(r *http.Request) { r.Header.Set("Authorization", accessToken) },
		} {
			for _, req := range []struct {
				method, path string
				body         any
			}{{http.MethodPost, "/regulations", create}, {http.MethodGet, "/regulations", nil}, {http.MethodGet, "/suppressions", nil}} {
				r := do(t, req.method, s.regs.URL+req.path, req.body, auth)
				errs := array(r.v["errors"])
				if r.status != http.StatusUnauthorized || len(errs) != 1 || object(errs[0])["type"] != "unauthorized" {
					t.Errorf("%s %s with %s: %s; want 401 {\"errors\": [{\"type\": \"unauthorized\"}]}", req.method, req.path, name, r)
				}
			}
		}
		// The refused POSTs erased nothing and recorded no regulation.
		if r := s.profileGET(t, "users", "user_id:ada", "traits", nil); r.status != http.StatusOK {
			t.Errorf("ada's traits after refused regulations: %s; want 200", r)
		}
		r := do(t, http.MethodGet, s.regs.URL+"/regulations", nil, bearer(accessToken))
		if r.status != http.StatusOK || len(array(object(r.v["data"])["regulations"])) != 0 {
			t.Errorf("GET /regulations after refused creates: %s; want 200 and none", r)
		}
	})
}
