package segmentapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/gdprkit/privacy"
)

// FuzzTracking posts any body to the Tracking API's endpoints: the answer is
// always one of the API's (never a server error over in-memory backends),
// always JSON, and a refused message or body stores nothing.
func FuzzTracking(f *testing.F) {
	for _, seed := range []string{
		`{"userId":"u1","event":"Opened","properties":{"n":1.5,"big":123456789012345678901}}`,
		`{"userId":"u1","traits":{"email":"a@b.c","plan":null},"context":{"traits":{"email":"x@y.z"}}}`,
		`{"anonymousId":"a1","name":"Home","category":"Docs","timestamp":"2026-12-07T09:00:00+0100"}`,
		`{"userId":"u1","groupId":"g1","traits":{"name":"Acme"}}`,
		`{"userId":"u1","previousId":"a1","sentAt":"2026-12-07T09:00:00Z"}`,
		`{"batch":[{"type":"track","userId":"u1","event":"E"},{"type":"identify","userId":42}],"context":{"ip":"1.2.3.4"}}`,
		`{"userId":"u1","event":"E","integrations":{"All":false},"context":{"consent":{"categoryPreferences":{"Ads":true}}}}`,
		`{"userId":["u1"]}`, `[1,2]`, `{"batch":{}}`, `{"timestamp":17}`, ``, `null`,
	} {
		f.Add("/v1/track", []byte(seed))
		f.Add("/v1/batch", []byte(seed))
	}
	f.Add("/v1/identify", []byte(`{"userId":"u1","traits":{"a":{"b":[1,{"c":"d"}]}}}`))
	f.Add("/v1/group", []byte(`{"userId":"u1","groupId":7}`))
	a := newAPI(f)
	f.Fuzz(func(t *testing.T, path string, body []byte) {
		if !strings.HasPrefix(path, "/v1/") {
			path = "/v1/track"
		}
		before := a.c.Stats()
		r, err := http.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		if err != nil {
			return // not a request a client could send
		}
		r.SetBasicAuth(testWriteKey, "")
		got := serve(a.tracking, r)
		if got.status == http.StatusTemporaryRedirect || got.status == http.StatusMovedPermanently {
			return // ServeMux sends a path that is not clean ("/v1/.") to its clean form
		}
		var ans trackingAnswer
		if err := json.Unmarshal(got.body, &ans); err != nil {
			t.Fatalf("answer %d is not JSON: %s", got.status, got.body)
		}
		after := a.c.Stats()
		switch got.status {
		case http.StatusOK:
			if !ans.Success {
				t.Fatalf("200 without success: %s", got.body)
			}
		case http.StatusBadRequest, http.StatusNotFound:
			if ans.Success || ans.Message == "" {
				t.Fatalf("a refusal without a reason: %s", got.body)
			}
			if after.Collected != before.Collected {
				t.Fatalf("a refused body stored %d messages", after.Collected-before.Collected)
			}
		default:
			t.Fatalf("status %d for %q: %s", got.status, body, got.body)
		}
	})
}

// FuzzRegulationsCreate posts any body to POST /regulations: the answer is
// 200, 404 (an ACCESS about nobody) or 422, always the Public API's JSON, and
// a refused body changes nothing (no request but an INVALID one).
func FuzzRegulationsCreate(f *testing.F) {
	for _, seed := range []string{
		`{"regulationType":"SUPPRESS_ONLY","subjectType":"USER_ID","subjectIds":["u1"]}`,
		`{"regulationType":"RECTIFY","subjectType":"USER_ID","subjectIds":["u1"],"traits":{"plan":"pro","n":1e400}}`,
		`{"regulationType":"ACCESS","subjectType":"EMAIL","subjectIds":["a@b.c"],"format":"ndjson"}`,
		`{"regulationType":"DELETE_ONLY","subjectType":"EXTERNAL_ID","subjectIds":["phone:+33 1"]}`,
		`{"regulationType":"UNSUPPRESS","subjectType":"ANONYMOUS_ID","subjectIds":[""]}`,
		`{"regulationType":1}`, `[]`, ``, `{"subjectIds":null}`,
	} {
		f.Add([]byte(seed))
	}
	a := newAPI(f)
	wantStatus(f, a.post("/v1/identify", testWriteKey, `{"userId":"u1","traits":{"email":"a@b.c"}}`), http.StatusOK)
	f.Fuzz(func(t *testing.T, body []byte) {
		before := requestCount(t, a.c)
		got := a.regulate(http.MethodPost, "/regulations", string(body))
		switch got.status {
		case http.StatusOK:
			if got.header.Get("Content-Disposition") == "" && !bytes.Contains(got.body, []byte(`"regulateId"`)) {
				t.Fatalf("200 without a regulateId or a download: %s", got.body)
			}
		case http.StatusNotFound, http.StatusUnprocessableEntity:
			var pe publicErrors
			if err := json.Unmarshal(got.body, &pe); err != nil || len(pe.Errors) != 1 || pe.Errors[0].Type == "" {
				t.Fatalf("answer %d is not the Public API's error: %s", got.status, got.body)
			}
			if got.status == http.StatusUnprocessableEntity {
				after := requestCount(t, a.c)
				if after.valid != before.valid {
					t.Fatalf("a refused body made a request: %s", body)
				}
			}
		default:
			t.Fatalf("status %d for %q: %s", got.status, body, got.body)
		}
	})
}

type counts struct{ valid int }

// requestCount counts the requests that are not INVALID.
func requestCount(t *testing.T, c *privacy.Controller) counts {
	t.Helper()
	var n counts
	f := privacy.RequestFilter{Limit: 1000}
	for {
		page, err := c.Requests(t.Context(), f)
		if err != nil {
			t.Fatal(err)
		}
		for _, rc := range page.Receipts {
			if rc.Status != privacy.Invalid {
				n.valid++
			}
		}
		if page.Next == "" {
			return n
		}
		f.Cursor = page.Next
	}
}

// FuzzProfilesQuery reads the Profile API with any path tail and query: the
// answer is 200, 400 or 404 with Segment's JSON, never a server error.
func FuzzProfilesQuery(f *testing.F) {
	for _, seed := range []struct{ id, ep, q string }{
		{"user_id:ada", "traits", "verbose=true&include=plan,age&limit=1"},
		{"email:ada@example.com", "events", "start=2026-12-07&end=2026-12-08T00:00:00Z&sort=asc&limit=2&next=x"},
		{"user_id:ada", "external_ids", "include=email&limit=100"},
		{"anonymous_id:anon-ada", "metadata", ""},
		{"user_id:ada", "links", "limit=20"},
		{"group_id:acme", "traits", "class=audience"},
		{"ada", "events", "exclude=,,,"},
	} {
		f.Add(seed.id, seed.ep, seed.q)
	}
	a := newAPI(f)
	seed(&testing.T{}, a)
	f.Fuzz(func(t *testing.T, id, ep, q string) {
		u := space + "users/profiles/" + id + "/" + ep + "?" + q
		r, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			return // not a URL a client could send
		}
		r.SetBasicAuth(testToken, "")
		got := serve(a.profiles, r)
		switch got.status {
		case http.StatusOK:
			if !json.Valid(got.body) {
				t.Fatalf("200 with a body that is not JSON: %s", got.body)
			}
		case http.StatusBadRequest, http.StatusNotFound, http.StatusMovedPermanently, http.StatusTemporaryRedirect:
			if got.status >= 400 {
				var e profileErrorBody
				if err := json.Unmarshal(got.body, &e); err != nil || e.Error.Code == "" {
					t.Fatalf("answer %d is not Segment's error: %s", got.status, got.body)
				}
			}
		default:
			t.Fatalf("status %d for %s: %s", got.status, u, got.body)
		}
	})
}
