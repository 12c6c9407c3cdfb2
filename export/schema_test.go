package export_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/gdprkit/privacy/export"
	"github.com/gdprkit/privacy/internal/testdeps"
)

// newSchemaValidator compiles schema.json into a function validating a JSON
// document against it. testdata/testdeps/export.go sets it, through the
// overlay, with a JSON Schema validator (draft 2020-12, formats asserted).
var newSchemaValidator func(schema []byte) (func(doc []byte) error, error)

// TestMain needs the validator.
func TestMain(m *testing.M) {
	var missing []string
	if newSchemaValidator == nil {
		missing = append(missing, "a JSON Schema validator")
	}
	testdeps.Main(m, "export", missing)
}

// schemaValidator returns a function validating a JSON document against
// schema.json.
func schemaValidator(t *testing.T) func(doc []byte) error {
	t.Helper()
	validate, err := newSchemaValidator(export.JSONSchema())
	if err != nil {
		t.Fatal(err)
	}
	return validate
}

// TestJSONSchema validates real Writer output against schema.json, and checks
// that documents broken in each way the schema forbids fail.
func TestJSONSchema(t *testing.T) {
	validate := schemaValidator(t)
	for name, p := range map[string]*export.Package{"rich": richPackage(), "empty": emptyPackage(), "every field": everyField(t)} {
		if err := validate(write(t, export.JSON, p)); err != nil {
			t.Errorf("%s: the Writer's output does not validate: %v", name, err)
		}
	}
	good := string(write(t, export.JSON, richPackage()))
	for _, tc := range []struct{ name, old, new string }{
		{"wrong schema version", `"schema":"gdprkit.export/v1"`, `"schema":"gdprkit.export/v2"`},
		{"no events", `"events":[`, `"evts":[`},
		{"unknown member", `"message_id":"m1"`, `"message_id":"m1","colour":"red"`},
		{"time not RFC 3339", `"timestamp":"2024-03-01T09:30:00.123456789Z"`, `"timestamp":"yesterday"`},
		{"outcome kind", `"kind":"backend"`, `"kind":"robot"`},
		{"version negative", `"version":9223372036854775815`, `"version":-1`},
		{"suppressed not a boolean", `"suppressed":true`, `"suppressed":"yes"`},
		{"audiences repeated", `"audiences":["",`, `"audiences":["","",`},
		{"properties not an object", `"properties":{}`, `"properties":[]`},
		{"consent status", `"Functional":"conflict"`, `"Functional":"maybe"`},
		{"consent status a string", `"Advertising":true`, `"Advertising":"true"`},
		{"consent without categories", `"consent":{"categories":{"Advertising":true,"Analytics":false,"Functional":"conflict","Sales, \"EU\"":true},`, `"consent":{`},
		{"consent member unknown", `"consent":{"categories":`, `"consent":{"colour":"red","categories":`},
		{"consent time", `"updated_at":"2024-03-01T11:00:00.123456789Z"}`, `"updated_at":"soon"}`},
		{"preference not a boolean", `"preferences":{"Advertising":true`, `"preferences":{"Advertising":"yes"`},
		{"preferences not an object", `"preferences":{}`, `"preferences":[]`},
		{"consent change member unknown", `"message_id":"c1"`, `"message_id":"c1","colour":"red"`},
		{"consent change without message_id", `"message_id":"c1",`, ``},
		{"consent change not an object", `"consent_history":[{`, `"consent_history":[7,{`},
		{"account member unknown", `{"group_id":"acme"`, `{"group_id":"acme","colour":"red"`},
		{"account without group_id", `{"group_id":"acme",`, `{`},
		{"group_id not a string", `{"group_id":"acme"`, `{"group_id":7`},
		{"account time", `"first_linked":"2024-02-29T09:30:00.123456789Z"`, `"first_linked":"soon"`},
		{"account not an object", `"accounts":[{`, `"accounts":["acme",{`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(good, tc.old) {
				t.Fatalf("the document has no %s", tc.old)
			}
			if err := validate([]byte(strings.Replace(good, tc.old, tc.new, 1))); err == nil {
				t.Errorf("a document with %s validates", tc.new)
			}
		})
	}
}

// TestJSONSchemaVersion: the schema pins the version this package writes, so
// a new version cannot ship with the old schema.
func TestJSONSchemaVersion(t *testing.T) {
	var s struct {
		Properties struct {
			Schema struct {
				Const string `json:"const"`
			} `json:"schema"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(export.JSONSchema(), &s); err != nil {
		t.Fatal(err)
	}
	if s.Properties.Schema.Const != export.SchemaVersion {
		t.Errorf("schema.json pins %q; SchemaVersion is %q", s.Properties.Schema.Const, export.SchemaVersion)
	}
	b := export.JSONSchema()
	b[0] = 'x'
	if export.JSONSchema()[0] == 'x' {
		t.Error("JSONSchema returns the package's own slice")
	}
}
