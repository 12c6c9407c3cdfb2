package segmentapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
)

// notKept are the fields of Segment's examples this library has no value
// for, by path: it does not record which source an identifier or a
// profile's first and last message came from, and an event is listed
// under the profile it was read through.
var notKept = map[string]string{
	"profile-external-ids.json:data[].source_id":            "an identifier's source is not recorded",
	"profile-links.json:data[].external_ids[].source_id":    "an account link's source is not recorded",
	"profile-metadata.json:metadata.first_source_id":        "the first message's source is not recorded in the metadata",
	"profile-metadata.json:metadata.last_source_id":         "the last message's source is not recorded in the metadata",
	"profile-events.json:data[].external_ids":               "the profile's identifiers are at external_ids",
	"profile-events.json:data[].related":                    "the event is read through its profile",
	"profile-traits-verbose.json:traits.plan.source_id":     "", // kept: checked below
	"regulation-list.json:data.regulations[].subjects[]":    "", // kept
	"regulation-get.json:data.regulation.streamStatus[].id": "", // kept
}

// openObjects hold the person's data (traits, properties, a context), not
// fields: the example's keys in them are values, compared by nothing.
var openObjects = map[string]bool{
	"profile-traits.json:traits":                    true,
	"profile-events.json:data[].context":            true,
	"profile-events.json:data[].properties":         true,
	"profile-traits-verbose.json:traits.plan.value": true,
}

// shapeOf lists the paths of v's fields with their JSON kinds: objects by
// key, arrays by their first element ("[]").
func shapeOf(prefix string, v any, out map[string]string) {
	switch x := v.(type) {
	case map[string]any:
		out[prefix] = "object"
		for k, e := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			shapeOf(p, e, out)
		}
	case []any:
		out[prefix] = "array"
		if len(x) > 0 {
			shapeOf(prefix+"[]", x[0], out)
		}
	case string:
		out[prefix] = "string"
	case float64:
		out[prefix] = "number"
	case bool:
		out[prefix] = "bool"
	case nil:
		out[prefix] = "null"
	}
}

// checkShape fails t unless got has every field of Segment's example file
// with the same kind (but those notKept).
func checkShape(t *testing.T, file string, got answer) {
	t.Helper()
	for _, problem := range shapeProblems(t, file, got.body) {
		t.Errorf("%s: %s: %s", file, problem, got.body)
	}
}

// shapeProblems lists how body differs from the shape of Segment's example
// file: the fields it lacks, and those of another kind.
func shapeProblems(t *testing.T, file string, body []byte) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "shapes", file))
	if err != nil {
		t.Fatal(err)
	}
	var want, have any
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if err := json.Unmarshal(body, &have); err != nil {
		return []string{"the answer is not JSON"}
	}
	ws, hs := map[string]string{}, map[string]string{}
	shapeOf("", want, ws)
	shapeOf("", have, hs)
	var paths []string
	for p := range ws {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var problems []string
	for _, p := range paths {
		if why := notKept[file+":"+p]; why != "" || skippedUnder(file, p) || underOpen(file, p) {
			continue
		}
		kind, ok := hs[p]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("the answer has no %q (Segment's example has a %s)", p, ws[p]))
		case kind != ws[p] && !(ws[p] == "null" || kind == "null" && ws[p] == "string"):
			problems = append(problems, fmt.Sprintf("%q is a %s, Segment's example has a %s", p, kind, ws[p]))
		}
	}
	return problems
}

// underOpen reports whether p lies inside one of the openObjects.
func underOpen(file, p string) bool {
	for k := range openObjects {
		if prefix, ok := strings.CutPrefix(k, file+":"); ok && strings.HasPrefix(p, prefix+".") {
			return true
		}
	}
	return false
}

// skippedUnder reports whether p lies under a path notKept.
func skippedUnder(file, p string) bool {
	for k, why := range notKept {
		prefix, ok := strings.CutPrefix(k, file+":")
		if ok && why != "" && strings.HasPrefix(p, prefix+".") || ok && why != "" && strings.HasPrefix(p, prefix+"[]") {
			return true
		}
	}
	return false
}

// TestAnswersHaveSegmentsShapes compares every endpoint's answer with the
// example of Segment's public documentation for it: field names and JSON
// kinds, not values.
func TestAnswersHaveSegmentsShapes(t *testing.T) {
	a := newAPI(t, privacy.WithDestinations(destination.NewRecorder("crm")))
	seed(t, a)
	checkShape(t, "tracking.json", a.post("/v1/track", testWriteKey, `{"userId":"ada","event":"E"}`))
	checkShape(t, "tracking.json", a.post("/v1/batch", testWriteKey, `{"batch":[{"type":"track","userId":"ada","event":"E"}]}`))
	p := space + "users/profiles/user_id:ada/"
	checkShape(t, "profile-traits.json", a.get(p+"traits?include=plan"))
	checkShape(t, "profile-traits-verbose.json", a.get(p+"traits?verbose=true&include=plan"))
	checkShape(t, "profile-external-ids.json", a.get(p+"external_ids?limit=1"))
	checkShape(t, "profile-events.json", a.get(p+"events?include=Order%20Completed"))
	checkShape(t, "profile-metadata.json", a.get(p+"metadata"))
	checkShape(t, "profile-links.json", a.get(p+"links"))
	checkShape(t, "profile-error.json", a.get(space+"users/profiles/user_id:nobody/traits"))

	created := a.regulate(http.MethodPost, "/regulations", `{"regulationType":"SUPPRESS_WITH_DELETE","subjectType":"USER_ID","subjectIds":["ada"]}`)
	checkShape(t, "regulation-create.json", created)
	id := decodeInto[dataWire[map[string]string]](t, created).Data["regulateId"]
	if err := a.c.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkShape(t, "regulation-get.json", a.regulate(http.MethodGet, "/regulations/"+id, ""))
	checkShape(t, "regulation-list.json", a.regulate(http.MethodGet, "/regulations", ""))
	checkShape(t, "suppressions.json", a.regulate(http.MethodGet, "/suppressions", ""))
	checkShape(t, "public-error.json", a.regulate(http.MethodPost, "/regulations", `{"regulationType":"NOPE","subjectType":"USER_ID","subjectIds":["x"]}`))
}

// TestShapeProblemsFindAMissingField keeps the shape check honest: an
// answer without a field of the example, or with one of another kind, is
// told from a whole one.
func TestShapeProblemsFindAMissingField(t *testing.T) {
	if got := shapeProblems(t, "profile-error.json", []byte(`{"error":{"code":"not_found","message":"x"}}`)); len(got) != 0 {
		t.Fatalf("a whole answer: %v", got)
	}
	for _, body := range []string{`{"error":{"code":"not_found"}}`, `{"error":{"code":"not_found","message":3}}`, `not JSON`} {
		if got := shapeProblems(t, "profile-error.json", []byte(body)); len(got) == 0 {
			t.Errorf("%s passed the shape check", body)
		}
	}
}
