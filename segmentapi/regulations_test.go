package segmentapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/export"
)

// regulate sends a request to the Regulations API with the access token.
func (a *api) regulate(method, path, body string) answer {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+testToken)
	r.Header.Set("Content-Type", publicAPIType)
	return serve(a.regulations, r)
}

type dataWire[T any] struct {
	Data T `json:"data"`
}

func (a *api) create(t *testing.T, body string) string {
	t.Helper()
	got := a.regulate(http.MethodPost, "/regulations", body)
	wantStatus(t, got, http.StatusOK)
	if ct := got.header.Get("Content-Type"); ct != publicAPIType {
		t.Errorf("Content-Type %q, want %q", ct, publicAPIType)
	}
	id := decodeInto[dataWire[map[string]string]](t, got).Data["regulateId"]
	if id == "" {
		t.Fatalf("no regulateId in %s", got.body)
	}
	return id
}

func (a *api) regulation(t *testing.T, id string) wireRegulation {
	t.Helper()
	got := a.regulate(http.MethodGet, "/regulations/"+id, "")
	wantStatus(t, got, http.StatusOK)
	return decodeInto[dataWire[map[string]wireRegulation]](t, got).Data["regulation"]
}

func TestRegulationsDeleteAndReadBack(t *testing.T) {
	crm := destination.NewRecorder("crm")
	a := newAPI(t, privacy.WithDestinations(crm))
	seed(t, a)
	id := a.create(t, `{"regulationType":"SUPPRESS_WITH_DELETE","subjectType":"USER_ID","subjectIds":["ada"]}`)
	if err := a.c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	reg := a.regulation(t, id)
	if reg.ID != id || reg.OverallStatus != "FINISHED" || reg.RegulationType != "SUPPRESS_WITH_DELETE" || reg.CreatedAt == "" ||
		reg.FinishedAt == "" || reg.DueAt == "" || len(reg.StreamStatus) != 1 || len(reg.BackendStatus) == 0 {
		t.Fatalf("regulation %+v", reg)
	}
	ds := reg.StreamStatus[0].DestinationStatus
	if len(ds) != 1 || ds[0].Name != "crm" || ds[0].Status != "FINISHED" {
		t.Errorf("destination status %+v: want crm FINISHED", ds)
	}
	// Gone from the Profile API, kept out of collection.
	wantStatus(t, a.get(space+"users/profiles/user_id:ada/traits"), http.StatusNotFound)
	wantStatus(t, a.post("/v1/track", testWriteKey, `{"userId":"ada","event":"Back"}`), http.StatusOK)
	wantStatus(t, a.get(space+"users/profiles/user_id:ada/events"), http.StatusNotFound)

	// Listed as a suppression, by keyed hash.
	got := a.regulate(http.MethodGet, "/suppressions", "")
	wantStatus(t, got, http.StatusOK)
	sup := decodeInto[dataWire[struct {
		Suppressed []wireSuppressed `json:"suppressed"`
	}]](t, got).Data.Suppressed
	if len(sup) != 1 || sup[0].RegulateID != id || sup[0].SubjectType != "KEYED_HASH" || len(sup[0].SubjectIDs) < 3 {
		t.Fatalf("suppressions %s: want ada's identifiers under %s", got.body, id)
	}
	a.noneQuoted(t, got, `"ada"`, "anon-ada") // quoted: a hash in hex may hold the letters ada

	// Lifted by UNSUPPRESS: no longer listed.
	a.create(t, `{"regulationType":"UNSUPPRESS","subjectType":"USER_ID","subjectIds":["ada"]}`)
	sup = decodeInto[dataWire[struct {
		Suppressed []wireSuppressed `json:"suppressed"`
	}]](t, a.regulate(http.MethodGet, "/suppressions", "")).Data.Suppressed
	if len(sup) != 0 {
		t.Errorf("suppressions after UNSUPPRESS: %+v", sup)
	}
}

func TestRegulationsList(t *testing.T) {
	a := newAPI(t)
	seed(t, a)
	ids := []string{
		a.create(t, `{"regulationType":"SUPPRESS_ONLY","subjectType":"USER_ID","subjectIds":["u1"]}`),
		a.create(t, `{"regulationType":"DELETE_INTERNAL","subjectType":"EMAIL","subjectIds":["Ada@Example.com"]}`),
		a.create(t, `{"regulationType":"SUPPRESS_ONLY","subjectType":"EXTERNAL_ID","subjectIds":["anonymous_id:a9"]}`),
	}
	list := func(query string) ([]wireListEntry, pagination) {
		t.Helper()
		got := a.regulate(http.MethodGet, "/regulations"+query, "")
		wantStatus(t, got, http.StatusOK)
		d := decodeInto[dataWire[struct {
			Regulations []wireListEntry `json:"regulations"`
			Pagination  pagination      `json:"pagination"`
		}]](t, got).Data
		return d.Regulations, d.Pagination
	}
	all, page := list("")
	if len(all) != 3 || all[0].ID != ids[2] || all[2].ID != ids[0] || page.Next != nil {
		t.Fatalf("list %+v %+v: want the three, newest first", all, page)
	}
	if e := all[1]; e.RegulationType != "DELETE_INTERNAL" || e.Status != "FINISHED" || e.SubjectType != "KEYED_HASH" || len(e.Subjects) == 0 || e.CreatedAt == "" {
		t.Errorf("entry %+v", e)
	}
	// Filters, in each spelling the Public API's clients use.
	for _, q := range []string{"?regulationTypes=SUPPRESS_ONLY", "?regulationTypes.0=SUPPRESS_ONLY", "?regulationTypes[0]=SUPPRESS_ONLY&status=FINISHED"} {
		if got, _ := list(q); len(got) != 2 || got[0].RegulationType != "SUPPRESS_ONLY" {
			t.Errorf("%s: %+v", q, got)
		}
	}
	// Cursor paging, dotted and bracketed.
	first, p1 := list("?pagination.count=2")
	if len(first) != 2 || p1.Next == nil {
		t.Fatalf("first page %+v %+v", first, p1)
	}
	second, p2 := list("?pagination[count]=2&pagination[cursor]=" + *p1.Next)
	if len(second) != 1 || second[0].ID != ids[0] || p2.Next != nil || p2.Current != *p1.Next {
		t.Errorf("second page %+v %+v", second, p2)
	}
	for _, q := range []string{"?status=DONE", "?regulationTypes=ERASE", "?pagination.count=0", "?pagination.count=1001"} {
		got := a.regulate(http.MethodGet, "/regulations"+q, "")
		wantStatus(t, got, http.StatusUnprocessableEntity)
		if e := decodeInto[publicErrors](t, got); len(e.Errors) != 1 || e.Errors[0].Type != "input-validation" {
			t.Errorf("%s: %s", q, got.body)
		}
	}
}

func TestRegulationsRectifyAndExtend(t *testing.T) {
	a := newAPI(t)
	seed(t, a)
	id := a.create(t, `{"regulationType":"RECTIFY","subjectType":"USER_ID","subjectIds":["ada"],"traits":{"plan":"team","age":null,"big":12345678901234567891}}`)
	reg := a.regulation(t, id)
	if reg.OverallStatus != "FINISHED" || reg.ProfileVersion == 0 {
		t.Fatalf("rectification %+v", reg)
	}
	tr := decodeInto[traitsWire](t, a.get(space+"users/profiles/user_id:ada/traits"))
	if string(tr.Traits["plan"]) != `"team"` || tr.Traits["age"] != nil || string(tr.Traits["big"]) != "12345678901234567891" {
		t.Errorf("traits after RECTIFY: %v", tr.Traits)
	}
	md := decodeInto[map[string]map[string]any](t, a.get(space+"users/profiles/user_id:ada/metadata"))["metadata"]
	if md["version"].(float64) != float64(reg.ProfileVersion) {
		t.Errorf("metadata version %v, receipt %d", md["version"], reg.ProfileVersion)
	}

	got := a.regulate(http.MethodPost, "/regulations/extensions/"+id, `{"months":2,"reason":"complex request"}`)
	wantStatus(t, got, http.StatusOK)
	ext := decodeInto[dataWire[map[string]wireRegulation]](t, got).Data["regulation"]
	if ext.Extension != "complex request" || ext.DueAt <= reg.DueAt {
		t.Errorf("extended %+v, was due %s", ext, reg.DueAt)
	}
	got = a.regulate(http.MethodPost, "/regulations/extensions/"+id, `{"months":1,"reason":"again"}`)
	wantStatus(t, got, http.StatusUnprocessableEntity)
	wantStatus(t, a.regulate(http.MethodPost, "/regulations/extensions/rq_nope", `{"months":1,"reason":"x"}`), http.StatusNotFound)
}

func TestRegulationsAccessDownload(t *testing.T) {
	a := newAPI(t)
	seed(t, a)
	for _, f := range []string{"", "json", "ndjson", "csv"} {
		body := `{"regulationType":"ACCESS","subjectType":"USER_ID","subjectIds":["ada"]`
		if f != "" {
			body += `,"format":"` + f + `"`
		}
		got := a.regulate(http.MethodPost, "/regulations", body+"}")
		wantStatus(t, got, http.StatusOK)
		format := export.JSON
		if f != "" {
			var err error
			if format, err = export.ParseFormat(f); err != nil {
				t.Fatal(err)
			}
		}
		if ct := got.header.Get("Content-Type"); ct != format.ContentType() || !strings.Contains(got.header.Get("Content-Disposition"), "attachment") {
			t.Errorf("%q: headers %v", f, got.header)
		}
		pkg, err := export.Read(bytes.NewReader(got.body), format)
		if err != nil {
			t.Fatalf("%q: the download does not read back: %v", f, err)
		}
		if pkg.Profile.Traits["plan"].Value != "pro" || len(pkg.Events) != 4 {
			t.Errorf("%q: package traits %v, %d events", f, pkg.Profile.Traits, len(pkg.Events))
		}
		reg := a.regulation(t, pkg.RequestID)
		if reg.RegulationType != "ACCESS" || reg.OverallStatus != "FINISHED" {
			t.Errorf("%q: the access request %+v", f, reg)
		}
	}
	// Unknown person: an error answer, not an empty download.
	got := a.regulate(http.MethodPost, "/regulations", `{"regulationType":"ACCESS","subjectType":"USER_ID","subjectIds":["nobody"]}`)
	wantStatus(t, got, http.StatusNotFound)
	if got.header.Get("Content-Disposition") != "" {
		t.Errorf("a failed access answered a download: %v", got.header)
	}
}

func TestRegulationsBadInputChangesNothing(t *testing.T) {
	a := newAPI(t)
	seed(t, a)
	const secret = "ada@example.com"
	for body, field := range map[string]string{
		`{"regulationType":"ERASE","subjectType":"USER_ID","subjectIds":["ada"]}`:                               "regulationType",
		`{"subjectType":"USER_ID","subjectIds":["ada"]}`:                                                        "regulationType",
		`{"regulationType":"DELETE_ONLY","subjectType":"OBJECT_ID","subjectIds":["ada"]}`:                       "subjectType",
		`{"regulationType":"DELETE_ONLY","subjectType":"USER_ID","subjectIds":[]}`:                              "subjectIds",
		`{"regulationType":"DELETE_ONLY","subjectType":"USER_ID","subjectIds":[""]}`:                            "subjectIds[0]",
		`{"regulationType":"DELETE_ONLY","subjectType":"EXTERNAL_ID","subjectIds":["` + secret + `"]}`:          "subjectIds[0]",
		`{"regulationType":"DELETE_ONLY","subjectType":"USER_ID","subjectIds":"ada"}`:                           "subjectIds",
		`{"regulationType":"DELETE_ONLY","subjectType":"USER_ID","subjectIds":["ada"],"traits":{"a":1}}`:        "traits",
		`{"regulationType":"ACCESS","subjectType":"USER_ID","subjectIds":["ada"],"format":"xml"}`:               "format",
		`{"regulationType":"ACCESS","subjectType":"USER_ID","subjectIds":["ada","bob"]}`:                        "subjectIds",
		`{"regulationType":"RECTIFY","subjectType":"USER_ID","subjectIds":["ada"],"traits":{"email":[1,`:        "",
		`{"regulationType":"DELETE_ONLY","subjectType":"USER_ID","subjectIds":["` + secret + `"],}`:             "",
		`{"regulationType":"RECTIFY","subjectType":"USER_ID","subjectIds":["ada","bob"],"traits":{"plan":"x"}}`: "Subjects",
	} {
		got := a.regulate(http.MethodPost, "/regulations", body)
		wantStatus(t, got, http.StatusUnprocessableEntity)
		e := decodeInto[publicErrors](t, got)
		if len(e.Errors) != 1 || e.Errors[0].Type != "input-validation" || !strings.Contains(e.Errors[0].Field+e.Errors[0].Message, field) {
			t.Errorf("%s: %s, want it to name %q", body, got.body, field)
		}
		a.noneQuoted(t, got, secret)
	}
	// Nothing changed: ada is whole, no request but INVALID ones was made.
	tr := decodeInto[traitsWire](t, a.get(space+"users/profiles/user_id:ada/traits"))
	if string(tr.Traits["plan"]) != `"pro"` || string(tr.Traits["email"]) != `"Ada@Example.com"` {
		t.Errorf("bad input changed ada: %v", tr.Traits)
	}
	page, err := a.c.Requests(context.Background(), privacy.RequestFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, rc := range page.Receipts {
		if rc.Status != privacy.Invalid {
			t.Errorf("bad input made a %s request %s", rc.Status, rc.ID)
		}
	}
	// Over-size body.
	big := `{"regulationType":"DELETE_ONLY","subjectType":"USER_ID","subjectIds":["` + strings.Repeat("x", MaxRegulationBytes) + `"]}`
	wantStatus(t, a.regulate(http.MethodPost, "/regulations", big), http.StatusRequestEntityTooLarge)
}

func TestRegulationsAuthAndUnknownPaths(t *testing.T) {
	a := newAPI(t)
	for _, header := range []string{"", "Bearer tok_wrong", "Basic " + testToken, "bearer " + testToken} {
		r := httptest.NewRequest(http.MethodGet, "/regulations", nil)
		if header != "" {
			r.Header.Set("Authorization", header)
		}
		got := serve(a.regulations, r)
		wantStatus(t, got, http.StatusUnauthorized)
		if e := decodeInto[publicErrors](t, got); len(e.Errors) != 1 || e.Errors[0].Type != "unauthorized" {
			t.Errorf("%q: %s", header, got.body)
		}
	}
	wantStatus(t, a.regulate(http.MethodGet, "/regulations/rq_unknown", ""), http.StatusNotFound)
	wantStatus(t, a.regulate(http.MethodPost, "/regulations/sources/src_web", `{}`), http.StatusNotImplemented)
	wantStatus(t, a.regulate(http.MethodGet, "/nope", ""), http.StatusNotFound)
	// Unauthenticated, an unknown path says nothing more than 401.
	wantStatus(t, serve(a.regulations, httptest.NewRequest(http.MethodGet, "/nope", nil)), http.StatusUnauthorized)
}

func TestRegulationsBackendFailureLogsNoValue(t *testing.T) {
	a := newAPI(t)
	seed(t, a)
	a.c.Close()
	got := a.regulate(http.MethodPost, "/regulations", `{"regulationType":"DELETE_ONLY","subjectType":"USER_ID","subjectIds":["ada"]}`)
	wantStatus(t, got, http.StatusServiceUnavailable)
	if e := decodeInto[publicErrors](t, got); e.Errors[0].Type != "unavailable" {
		t.Errorf("%s", got.body)
	}
	var pe publicErrors
	if err := json.Unmarshal(got.body, &pe); err != nil || errors.Is(err, privacy.ErrClosed) {
		t.Fatal(err)
	}
}

// TestRegulationsLeaveRetentionRunsOut: the retention runs journaled beside
// the regulations are none: not listed, not found by id, not extended.
func TestRegulationsLeaveRetentionRunsOut(t *testing.T) {
	a := newAPI(t, privacy.WithRetention(privacy.RetentionPolicy{Events: 24 * time.Hour}))
	seed(t, a)
	id := a.create(t, `{"regulationType":"SUPPRESS_ONLY","subjectType":"USER_ID","subjectIds":["u1"]}`)
	run, err := a.c.ApplyRetention(context.Background(), privacy.RetentionOptions{})
	if err != nil || run.ID == "" {
		t.Fatalf("ApplyRetention = %+v, %v", run, err)
	}
	got := a.regulate(http.MethodGet, "/regulations", "")
	wantStatus(t, got, http.StatusOK)
	list := decodeInto[dataWire[struct {
		Regulations []wireListEntry `json:"regulations"`
	}]](t, got).Data.Regulations
	if len(list) != 1 || list[0].ID != id {
		t.Errorf("GET /regulations lists %+v; want the one regulation, not the retention run %s", list, run.ID)
	}
	wantStatus(t, a.regulate(http.MethodGet, "/regulations/"+run.ID, ""), http.StatusNotFound)
	wantStatus(t, a.regulate(http.MethodPost, "/regulations/extensions/"+run.ID, `{"months":1,"reason":"busy"}`), http.StatusNotFound)
	if r, err := a.c.Status(context.Background(), run.ID); err != nil || !r.Due.Equal(run.Started.AddDate(0, 1, 0)) {
		t.Errorf("the run after the refused extension: %+v, %v; want its due date unchanged", r, err)
	}
}

// TestRegulationsDeleteRegulationIsRefused: Segment's Delete Regulation
// withdraws a regulation not yet started; here each is carried out as it
// is received, so DELETE answers 422 naming regulateId and changes
// nothing, 404 for no such regulation, and 401 without the token.
func TestRegulationsDeleteRegulationIsRefused(t *testing.T) {
	a := newAPI(t)
	seed(t, a)
	id := a.create(t, `{"regulationType":"SUPPRESS_ONLY","subjectType":"USER_ID","subjectIds":["ada"]}`)
	before := a.regulation(t, id)
	got := a.regulate(http.MethodDelete, "/regulations/"+id, "")
	wantStatus(t, got, http.StatusUnprocessableEntity)
	if e := decodeInto[publicErrors](t, got); len(e.Errors) != 1 || e.Errors[0].Field != "regulateId" || !strings.Contains(e.Errors[0].Message, "cannot be withdrawn") {
		t.Errorf("DELETE answered %s; want one error on regulateId saying it cannot be withdrawn", got.body)
	}
	if after := a.regulation(t, id); after.OverallStatus != before.OverallStatus {
		t.Errorf("after DELETE the regulation is %s, was %s", after.OverallStatus, before.OverallStatus)
	}
	if still, err := a.c.StillSuppressed(context.Background(), id); err != nil || len(still) == 0 {
		t.Errorf("after DELETE the suppression keeps %v suppressed (%v); want ada still", still, err)
	}
	wantStatus(t, a.regulate(http.MethodDelete, "/regulations/rq_unknown", ""), http.StatusNotFound)
	wantStatus(t, serve(a.regulations, httptest.NewRequest(http.MethodDelete, "/regulations/"+id, nil)), http.StatusUnauthorized)
}
