package export_test

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy/export"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
	"github.com/google/go-cmp/cmp"
)

var formats = []export.Format{export.JSON, export.NDJSON, export.CSV}

var t0 = time.Date(2024, 3, 1, 9, 30, 0, 123456789, time.UTC)

// richPackage has a bit of everything: traits of every value kind, strings that
// need escaping in JSON and quoting in CSV, nested properties, nil and empty
// properties, zero times, requests with and without outcomes, suppression,
// consent in each of its three statuses and a history of its changes (one with
// an empty set of preferences, which denies all, one with none), accounts (one
// whose group id needs quoting, one without times).
func richPackage() *export.Package {
	return &export.Package{
		Schema:      export.SchemaVersion,
		GeneratedAt: t0.Add(48 * time.Hour),
		RequestID:   "req_access_1",
		Profile: profile.Profile{
			ID: "use_01hq3v5x7k9m2n4p6r8t0w2y4a",
			Traits: map[string]profile.Trait{
				"plan":    {Value: "pro", Source: profile.SourceIdentify, UpdatedAt: t0},
				"age":     {Value: 42.0, Source: "crm", UpdatedAt: t0.Add(time.Second)},
				"ratio":   {Value: -1.5e-7, Source: "crm", UpdatedAt: t0},
				"huge":    {Value: 1e21, Source: "crm", UpdatedAt: t0},
				"vip":     {Value: true, Source: profile.SourceRectification, UpdatedAt: t0},
				"nothing": {Value: nil, Source: "identify"},
				"address": {Value: map[string]any{
					"city":  "Zürich",
					"zip":   "8001",
					"lines": []any{"Bahnhofstrasse 1", "c/o \"Müller\", 3rd floor"},
					"geo":   map[string]any{"lat": 47.37, "lon": 8.54},
				}, Source: "identify", UpdatedAt: t0},
				"tags":    {Value: []any{"a", 1.0, false, nil, map[string]any{}, []any{}}, Source: "identify", UpdatedAt: t0},
				"note":    {Value: "say \"hi\", then\r\nleave\t\u2028 <b>&amp;</b> \x01", Source: "identify", UpdatedAt: t0},
				"empty":   {Value: "", Source: "identify", UpdatedAt: t0},
				"a,b \"c": {Value: 0.0, Source: " leading space", UpdatedAt: t0},
			},
			ExternalIDs: []profile.ExternalID{
				{ID: identity.ID{Type: "email", Value: "a@b.c"}, CreatedAt: t0, FirstMessageID: "m1"},
				{ID: identity.ID{Type: "anonymous_id", Value: "anon, \"1\"\nx"}, CreatedAt: t0.Add(time.Minute), FirstMessageID: "m2"},
				{ID: identity.ID{Type: "user_id", Value: "42"}},
			},
			Metadata: profile.Metadata{
				CreatedAt:      t0,
				UpdatedAt:      t0.Add(time.Hour),
				Version:        1<<63 + 7, // beyond 2^53: must not go through a float
				FirstMessageID: "m1",
				LastMessageID:  "m9",
				FirstSeen:      t0.Add(-time.Hour),
				LastSeen:       t0.Add(2 * time.Hour),
				Consent: profile.NewConsent(map[string]profile.ConsentStatus{
					"Advertising":   profile.ConsentGranted,
					"Analytics":     profile.ConsentDenied,
					"Functional":    profile.ConsentConflict,
					"Sales, \"EU\"": profile.ConsentGranted,
				}, t0.Add(90*time.Minute), nil),
			},
		},
		Events: []profile.Event{
			{MessageID: "m1", Name: "Order Completed", Timestamp: t0, ReceivedAt: t0.Add(time.Millisecond),
				Properties: map[string]any{
					"total": 99.95,
					"items": []any{
						map[string]any{"sku": "A-1", "qty": 2.0, "tags": []any{"x", nil}},
						map[string]any{"sku": "B,2", "qty": 1.0, "gift": true},
					},
					"coupon": nil,
					"nested": map[string]any{"a": map[string]any{"b": map[string]any{"c": "deep\n"}}},
				}},
			{MessageID: "m2", Name: "Page\nViewed", Timestamp: t0.Add(time.Minute)},                            // nil properties
			{MessageID: "m3", Name: "Empty", Timestamp: t0.Add(2 * time.Minute), Properties: map[string]any{}}, // empty, not nil
			{MessageID: "m4", Name: "=HYPERLINK(\"x\")", ReceivedAt: t0},                                       // zero timestamp
		},
		Audiences:   []string{"", "churned, maybe", "vip"},
		Suppression: export.Suppression{Suppressed: true},
		Requests: []export.Request{
			{ID: "req_del_0", Type: "SUPPRESS_WITH_DELETE", Status: "PARTIAL_SUCCESS", Reason: "a destination failed",
				Received: t0, Due: t0.AddDate(0, 1, 0), Finished: t0.Add(time.Hour),
				ExtensionReason: "complex, \"many\" systems", ProfileVersion: 5,
				Outcomes: []export.Outcome{
					{Kind: export.OutcomeBackend, Name: "profiles", Status: "FINISHED", Finished: t0.Add(time.Minute)},
					{Kind: export.OutcomeDestination, Name: "webhook", Status: "FAILED", Err: "timeout\nafter 3 attempts", Finished: t0.Add(time.Hour)},
				}},
			{ID: "req_access_1", Type: "ACCESS", Status: "RUNNING", Received: t0.Add(47 * time.Hour), Due: t0.AddDate(0, 1, 2)},
		},
		Recipients: []export.Recipient{
			{Name: "webhook", FirstSent: t0, LastSent: t0.Add(time.Hour)},
			{Name: "crm, eu"},
		},
		ConsentHistory: []profile.ConsentChange{
			{MessageID: "c1", Type: "track", Event: "Segment Consent Preference Updated", Source: "web, \"eu\"",
				Timestamp: t0, ReceivedAt: t0.Add(time.Millisecond),
				Preferences: map[string]bool{"Advertising": true, "Analytics": false, "Sales, \"EU\"": true}},
			{MessageID: "c2", Type: "identify", Source: "crm", Timestamp: t0.Add(time.Hour), ReceivedAt: t0.Add(time.Hour),
				Preferences: map[string]bool{}}, // an empty set: deny all
			{MessageID: "c3", Type: profile.ConsentMerge, Timestamp: t0.Add(90 * time.Minute), ReceivedAt: t0.Add(3 * time.Hour),
				Preferences: map[string]bool{"Advertising": true, "Analytics": false, "Functional": false, "Sales, \"EU\"": true}},
			{MessageID: "c4", Type: "track", Event: "Order\nCompleted"}, // no preferences, no times
		},
		Accounts: []profile.AccountLink{
			{GroupID: "acme", FirstLinked: t0.Add(-24 * time.Hour), LastLinked: t0.Add(time.Hour)},
			{GroupID: "globex, \"eu\"\nbranch", FirstLinked: t0, LastLinked: t0},
			{GroupID: "initech"}, // no times
		},
	}
}

// emptyPackage has nothing but its header: every collection nil.
func emptyPackage() *export.Package {
	return &export.Package{Schema: export.SchemaVersion, RequestID: "req_0", Profile: profile.Profile{ID: "use_0"}}
}

func write(t testing.TB, f export.Format, p *export.Package) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := export.Write(&b, f, p); err != nil {
		t.Fatalf("Write(%v): %v", f, err)
	}
	return b.Bytes()
}

func read(t testing.TB, f export.Format, data []byte) *export.Package {
	t.Helper()
	p, err := export.Read(bytes.NewReader(data), f)
	if err != nil {
		t.Fatalf("Read(%v): %v", f, err)
	}
	return p
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    *export.Package
	}{
		{"rich", richPackage()},
		{"empty", emptyPackage()},
		{"zero", &export.Package{Schema: export.SchemaVersion}},
		{"every field", everyField(t)},
	} {
		for _, f := range formats {
			t.Run(tc.name+"/"+f.String(), func(t *testing.T) {
				got := read(t, f, write(t, f, tc.p))
				if diff := cmp.Diff(tc.p, got); diff != "" {
					t.Errorf("Read(Write(p)) differs from p (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// everyField returns a Package with every field of every type in it set, found
// by reflection: a field added to profile.Metadata, say, and not carried by the
// formats makes the round trip of this package fail.
func everyField(t *testing.T) *export.Package {
	p := new(export.Package)
	fill(reflect.ValueOf(p).Elem(), "p")
	p.Schema = export.SchemaVersion
	p.Profile.Metadata.Recipients = nil // carried as p.Recipients
	p.Profile.Metadata.Accounts = nil   // carried as p.Accounts
	// Consent's fields are its own (reflection cannot fill them): every
	// status, and a time; its history is carried as p.ConsentHistory.
	p.Profile.Metadata.Consent = profile.NewConsent(map[string]profile.ConsentStatus{
		"p.granted": profile.ConsentGranted, "p.denied": profile.ConsentDenied, "p.conflict": profile.ConsentConflict}, p.Profile.Metadata.LastSeen, nil)
	for i := range p.Requests {
		for j := range p.Requests[i].Outcomes {
			p.Requests[i].Outcomes[j].Kind = export.OutcomeDestination
		}
	}
	// Sanity: the filler reached the leaves.
	if p.Profile.Metadata.LastSeen.IsZero() || p.Requests[0].Outcomes[0].Err == "" || p.Profile.ExternalIDs[0].ID.Value == "" ||
		p.Profile.Metadata.Consent.UpdatedAt().IsZero() || len(p.ConsentHistory[0].Preferences) == 0 || p.ConsentHistory[0].ReceivedAt.IsZero() ||
		p.Accounts[0].GroupID == "" || p.Accounts[0].LastLinked.IsZero() {
		t.Fatalf("everyField left fields zero: %+v", p)
	}
	return p
}

var timeType = reflect.TypeOf(time.Time{})

// fill sets every field of v to a value that is not zero and says where it is.
func fill(v reflect.Value, path string) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(path)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(len(path)))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(len(path)) << 40)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(len(path)) / 8)
	case reflect.Interface:
		v.Set(reflect.ValueOf(path))
	case reflect.Struct:
		if v.Type() == timeType {
			v.Set(reflect.ValueOf(t0.Add(time.Duration(len(path)) * time.Second)))
			return
		}
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), path+"."+v.Type().Field(i).Name)
			}
		}
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fill(s.Index(0), path+"[0]")
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k := reflect.New(v.Type().Key()).Elem()
		fill(k, path+".key")
		e := reflect.New(v.Type().Elem()).Elem()
		fill(e, path+"[key]")
		m.SetMapIndex(k, e)
		v.Set(m)
	default:
		panic("fill: no rule for " + v.Kind().String() + " at " + path)
	}
}

// TestCrossFormat checks the formats carry the same: a package read from one
// format and written in another reads back the same.
func TestCrossFormat(t *testing.T) {
	p := richPackage()
	for _, from := range formats {
		got := read(t, from, write(t, from, p))
		for _, to := range formats {
			again := read(t, to, write(t, to, got))
			if diff := cmp.Diff(p, again); diff != "" {
				t.Errorf("%v then %v: differs (-want +got):\n%s", from, to, diff)
			}
		}
	}
}

// TestDeterministic: the same package gives the same bytes, although traits are
// a map; for CSV that includes the manifest's hashes and the zip's times.
func TestDeterministic(t *testing.T) {
	for _, f := range formats {
		a, b := write(t, f, richPackage()), write(t, f, richPackage())
		if !bytes.Equal(a, b) {
			t.Errorf("%v: two writes of the same package differ", f)
		}
	}
}

func TestParseFormat(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want export.Format
	}{
		{"json", export.JSON}, {"NDJSON", export.NDJSON}, {" csv ", export.CSV}, {"Json", export.JSON},
	} {
		got, err := export.ParseFormat(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseFormat(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if back, err := export.ParseFormat(got.String()); err != nil || back != got {
			t.Errorf("ParseFormat(%v.String()) = %v, %v", got, back, err)
		}
	}
	for _, in := range []string{"", "xml", "jsonl", "json2"} {
		_, err := export.ParseFormat(in)
		if !errors.Is(err, export.ErrInvalid) || !strings.Contains(err.Error(), `"`+in+`"`) {
			t.Errorf("ParseFormat(%q) = %v; want ErrInvalid naming the format", in, err)
		}
	}
	if s := export.Format(0).String(); s != "Format(0)" {
		t.Errorf("Format(0).String() = %q", s)
	}
	for _, f := range []export.Format{0, 4, 255} {
		if _, err := export.NewWriter(&bytes.Buffer{}, f); !errors.Is(err, export.ErrInvalid) || !strings.Contains(err.Error(), f.String()) {
			t.Errorf("NewWriter(%v) = %v; want ErrInvalid naming the format", f, err)
		}
		if _, err := export.Read(strings.NewReader("{}"), f); !errors.Is(err, export.ErrInvalid) {
			t.Errorf("Read(%v) = %v; want ErrInvalid", f, err)
		}
		if err := export.Write(&bytes.Buffer{}, f, emptyPackage()); !errors.Is(err, export.ErrInvalid) {
			t.Errorf("Write(%v) = %v; want ErrInvalid", f, err)
		}
	}
	if got := export.CSV.ContentType(); got != "application/zip" {
		t.Errorf("CSV.ContentType() = %q", got)
	}
}
