package segmentapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/segmentapi"
)

// send makes a request and returns the status and the body.
func send(method, url, body string, auth func(*http.Request)) (int, string) {
	r, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	auth(r)
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		panic(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		panic(err)
	}
	return res.StatusCode, strings.TrimSpace(string(b))
}

// A host mounts the Tracking API, and Segment's libraries send to it with
// the write key as the HTTP Basic user name.
func ExampleNewTracking() {
	c, err := privacy.New()
	if err != nil {
		panic(err)
	}
	defer c.Close()
	srv := httptest.NewServer(segmentapi.NewTracking(c, segmentapi.WithWriteKey("wk_web", "src_web")))
	defer srv.Close()
	writeKey := func(r *http.Request) { r.SetBasicAuth("wk_web", "") }

	fmt.Println(send("POST", srv.URL+"/v1/batch", `{"batch":[
		{"type":"identify","messageId":"m1","userId":"ada","traits":{"plan":"pro"}},
		{"type":"track","messageId":"m2","userId":"ada","event":"Signed Up"},
		{"type":"track","messageId":"m3","userId":"ada"}]}`, writeKey))
	fmt.Println(send("POST", srv.URL+"/v1/track", `{"userId":"ada","event":"Signed Up"}`, func(*http.Request) {}))

	page, err := c.Events(context.Background(), identity.ID{Type: "user_id", Value: "ada"}, profile.EventQuery{})
	if err != nil {
		panic(err)
	}
	for _, e := range page.Events {
		fmt.Println(e.MessageID, e.Name, e.Source)
	}
	// Output:
	// 200 {"success":true,"errors":[{"index":2,"code":"invalid_request","message":"privacy: invalid Event: empty event name"}]}
	// 401 {"success":false,"code":"unauthorized","message":"a valid write key is required, as the HTTP Basic user name or the body's writeKey"}
	// m2 Signed Up src_web
}

// The Profile API reads a person by any identifier, with the access token
// as the HTTP Basic user name; an erased person is not found.
func ExampleNewProfiles() {
	c, err := privacy.New()
	if err != nil {
		panic(err)
	}
	defer c.Close()
	ctx := context.Background()
	ada := identity.ID{Type: "user_id", Value: "ada"}
	if err := c.Collect(ctx, privacy.Identify{MessageID: "m1", UserID: "ada", Traits: map[string]any{"email": "ada@example.com", "plan": "pro"}}); err != nil {
		panic(err)
	}
	srv := httptest.NewServer(segmentapi.NewProfiles(c, segmentapi.WithAccessToken("tok")))
	defer srv.Close()
	token := func(r *http.Request) { r.SetBasicAuth("tok", "") }
	base := srv.URL + "/v1/spaces/spa_1/collections/users/profiles/"

	fmt.Println(send("GET", base+"email:ada@example.com/traits?include=plan", "", token))
	if _, err := c.Erase(ctx, ada); err != nil {
		panic(err)
	}
	fmt.Println(send("GET", base+"user_id:ada/traits", "", token))
	// Output:
	// 200 {"traits":{"plan":"pro"},"cursor":{"url":"/v1/spaces/spa_1/collections/users/profiles/email:ada@example.com/traits","has_more":false,"next":""}}
	// 404 {"error":{"code":"not_found","message":"Profile was not found."}}
}

// Regulations are created as in Segment's Public API, with a Bearer token,
// and read back by id.
func ExampleNewRegulations() {
	c, err := privacy.New()
	if err != nil {
		panic(err)
	}
	defer c.Close()
	if err := c.Collect(context.Background(), privacy.Track{UserID: "ada", Event: "Signed Up"}); err != nil {
		panic(err)
	}
	srv := httptest.NewServer(segmentapi.NewRegulations(c, segmentapi.WithAccessToken("tok")))
	defer srv.Close()
	bearer := func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok") }

	status, body := send("POST", srv.URL+"/regulations", `{"regulationType":"SUPPRESS_WITH_DELETE","subjectType":"USER_ID","subjectIds":["ada"]}`, bearer)
	var created struct {
		Data struct {
			RegulateID string `json:"regulateId"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &created); err != nil {
		panic(err)
	}
	fmt.Println(status, strings.HasPrefix(created.Data.RegulateID, "req_"))
	_, body = send("GET", srv.URL+"/regulations/"+created.Data.RegulateID, "", bearer)
	fmt.Println(strings.Contains(body, `"overallStatus":"FINISHED"`), strings.Contains(body, `"regulationType":"SUPPRESS_WITH_DELETE"`))
	fmt.Println(send("POST", srv.URL+"/regulations", `{"regulationType":"ERASE","subjectType":"USER_ID","subjectIds":["ada"]}`, bearer))
	// Output:
	// 200 true
	// true true
	// 422 {"errors":[{"type":"input-validation","message":"unknown regulationType","field":"regulationType"}]}
}
