package segmentapi

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/gdprkit/privacy/profile"
)

// exampleRequest reads a request body in the shape of Segment's documented
// example (testdata/requests).
func exampleRequest(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "requests", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// eventsByName returns the person's events by name (a track's event, a
// page's or screen's name; the type for the others).
func eventsByName(t *testing.T, a *api, userID string) map[string]profile.Event {
	t.Helper()
	out := map[string]profile.Event{}
	for _, e := range a.events(t, user(userID)) {
		key := e.Name
		if key == "" {
			key = e.Type
		}
		out[key] = e
	}
	return out
}

// TestTrackingTakesSegmentsDocumentedRequests posts the request bodies of
// Segment's HTTP Tracking API examples, one per endpoint, and checks each
// field landed where Segment puts it: traits on the profile, an event with
// its properties and context, a group's traits on the account, an alias on
// the user's profile, a batch's envelope context merged into its messages,
// /v1/import as /v1/batch.
func TestTrackingTakesSegmentsDocumentedRequests(t *testing.T) {
	a := newAPI(t)
	ctx := context.Background()
	for _, r := range []struct{ path, file string }{
		{"/v1/identify", "identify.json"}, {"/v1/track", "track.json"}, {"/v1/page", "page.json"},
		{"/v1/screen", "screen.json"}, {"/v1/group", "group.json"}, {"/v1/alias", "alias.json"},
		{"/v1/batch", "batch.json"}, {"/v1/import", "import.json"},
	} {
		got := a.post(r.path, testWriteKey, exampleRequest(t, r.file))
		wantStatus(t, got, http.StatusOK)
		if v := got.json(t); v["success"] != true {
			t.Errorf("%s with %s answered %s, want success", r.path, r.file, got.body)
		}
	}
	p, err := a.c.Profile(ctx, user("u-7d1f"))
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"email": "grace@example.com", "name": "Grace Hopper", "industry": "Technology"} {
		if p.Traits[k].Value != want {
			t.Errorf("identify's trait %s = %v, want %v", k, p.Traits[k].Value, want)
		}
	}
	evs := eventsByName(t, a, "u-7d1f")
	track := evs["Item Purchased"]
	if track.Type != "track" || track.Properties["revenue"] != 14.99 || track.Properties["name"] != "Compiler Handbook" || track.Context["ip"] != "198.51.100.23" {
		t.Errorf("track's event = %+v; want its properties and context", track)
	}
	if e := evs["Tracking HTTP API"]; e.Type != "page" {
		t.Errorf("page's event = %+v; want a page named as sent", e)
	}
	if e := evs["Settings"]; e.Type != "screen" {
		t.Errorf("screen's event = %+v; want a screen named as sent", e)
	}
	if e := evs["alias"]; e.Properties["previousId"] != "anon-55f0-11aa" {
		t.Errorf("alias's event = %+v; want previousId among its properties", e)
	}
	acct, err := a.c.Account(ctx, "g-4c2e")
	if err != nil || acct.Traits["employees"].Value != 329.0 || acct.Traits["total billed"].Value != 830.0 || acct.Traits["plan"].Value != "Enterprise" {
		t.Errorf("group's account = %+v, %v; want its traits", acct, err)
	}
	for _, u := range []string{"u-90ab", "u-90ac"} { // batch, import
		if bp, err := a.c.Profile(ctx, user(u)); err != nil || bp.Traits["age"].Value != 41.0 {
			t.Errorf("the batch's identify for %s: %+v, %v; want age 41", u, bp, err)
		}
	}
	for _, u := range []string{"u-c3d4", "u-c3d5"} {
		e := eventsByName(t, a, u)["Started Trial"]
		device, _ := e.Context["device"].(map[string]any)
		if e.Properties["shipping"] != "Free" || e.Context["ip"] != "203.0.113.77" || device["name"] != "Pixel 9" {
			t.Errorf("the batch's track for %s = %+v; want its properties, its context and the batch's merged in", u, e)
		}
	}
}

// TestRegulationsTakeSegmentsDocumentedRequest posts the Public API's
// Create Regulation example and reads the regulation back.
func TestRegulationsTakeSegmentsDocumentedRequest(t *testing.T) {
	a := newAPI(t)
	wantStatus(t, a.post("/v1/identify", testWriteKey, exampleRequest(t, "identify.json")), http.StatusOK)
	id := a.create(t, exampleRequest(t, "regulation-create.json"))
	if reg := a.regulation(t, id); reg.RegulationType != "SUPPRESS_WITH_DELETE" || reg.OverallStatus != "FINISHED" {
		t.Errorf("the regulation read back: %+v; want SUPPRESS_WITH_DELETE, FINISHED", reg)
	}
	if _, err := a.c.Profile(context.Background(), user("u-7d1f")); err == nil {
		t.Error("the regulation's subject still has a profile")
	}
}
