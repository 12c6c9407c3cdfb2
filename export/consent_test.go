package export_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy/export"
	"github.com/gdprkit/privacy/profile"
	"github.com/google/go-cmp/cmp"
)

// TestConsentRoundTrip: the consent state and its history are written as the
// format says and read back exactly in every format, nil and empty
// preferences apart.
func TestConsentRoundTrip(t *testing.T) {
	p := richPackage()
	wantJSON := `"consent":{"categories":{"Advertising":true,"Analytics":false,"Functional":"conflict","Sales, \"EU\"":true},"updated_at":"2024-03-01T11:00:00.123456789Z"}`
	for _, f := range formats {
		t.Run(f.String(), func(t *testing.T) {
			data := write(t, f, p)
			switch f {
			case export.JSON, export.NDJSON:
				if !bytes.Contains(data, []byte(wantJSON)) {
					t.Errorf("the metadata has no %s:\n%s", wantJSON, data)
				}
				for _, want := range []string{
					`"message_id":"c1","type":"track","event":"Segment Consent Preference Updated","source":"web, \"eu\"","timestamp":"2024-03-01T09:30:00.123456789Z","received_at":"2024-03-01T09:30:00.124456789Z","preferences":{"Advertising":true,"Analytics":false,"Sales, \"EU\"":true}}`,
					`"message_id":"c2","type":"identify","event":"","source":"crm","timestamp":"2024-03-01T10:30:00.123456789Z","received_at":"2024-03-01T10:30:00.123456789Z","preferences":{}}`,
					`"message_id":"c4","type":"track","event":"Order\nCompleted","source":""}`, // no times, no preferences
				} {
					if !bytes.Contains(data, []byte(want)) {
						t.Errorf("no consent change %s in:\n%s", want, data)
					}
				}
				if f == export.NDJSON && !bytes.Contains(data, []byte(`"recipient":2,"consent_change":4,`)) {
					t.Errorf("the end record does not count 4 consent changes:\n%s", data)
				}
			case export.CSV:
				files, _ := zipFiles(t, data)
				prof := string(files["profile.csv"])
				if !strings.HasSuffix(strings.SplitN(prof, "\n", 2)[0], ",suppressed,consent,consent_updated_at") ||
					!strings.Contains(prof, `,true,"{""Advertising"":true,""Analytics"":false,""Functional"":""conflict"",""Sales, \""EU\"""":true}",2024-03-01T11:00:00.123456789Z`+"\n") {
					t.Errorf("profile.csv:\n%s", prof)
				}
				hist := string(files["consent_history.csv"])
				for _, want := range []string{
					"message_id,type,event,source,timestamp,received_at,preferences\n",
					"c2,identify,,crm,2024-03-01T10:30:00.123456789Z,2024-03-01T10:30:00.123456789Z,{}\n",
					"c4,track,\"Order\nCompleted\",,,,\n",
				} {
					if !strings.Contains(hist, want) {
						t.Errorf("consent_history.csv has no %q:\n%s", want, hist)
					}
				}
			}
			got := read(t, f, data)
			if diff := cmp.Diff(p.Profile.Metadata.Consent, got.Profile.Metadata.Consent); diff != "" {
				t.Errorf("consent read back (-written +read):\n%s", diff)
			}
			if diff := cmp.Diff(p.ConsentHistory, got.ConsentHistory); diff != "" {
				t.Errorf("consent history read back (-written +read):\n%s", diff)
			}
			if prefs := got.ConsentHistory[1].Preferences; prefs == nil || len(prefs) != 0 {
				t.Errorf("empty preferences read back as %#v; want an empty map, not nil", prefs)
			}
			if prefs := got.ConsentHistory[3].Preferences; prefs != nil {
				t.Errorf("absent preferences read back as %#v; want nil", prefs)
			}
			if s := got.Profile.Metadata.Consent.Status("Functional"); s != profile.ConsentConflict {
				t.Errorf("Functional read back as %v; want conflict", s)
			}
		})
	}
}

// TestConsentLeftOutWhenNotCollected: no consent, no member or cell; consent
// set only by a time (every category was denied by an empty set) keeps it.
func TestConsentLeftOutWhenNotCollected(t *testing.T) {
	p := emptyPackage()
	for _, f := range []export.Format{export.JSON, export.NDJSON} {
		if data := write(t, f, p); bytes.Contains(data, []byte(`"consent":`)) {
			t.Errorf("%v: a package without consent has a consent member:\n%s", f, data)
		}
	}
	files, _ := zipFiles(t, write(t, export.CSV, p))
	if row := strings.SplitN(string(files["profile.csv"]), "\n", 3)[1]; !strings.HasSuffix(row, ",false,,") {
		t.Errorf("profile.csv row %q: want empty consent cells", row)
	}
	p.Profile.Metadata.Consent = profile.NewConsent(map[string]profile.ConsentStatus{}, t0, nil)
	for _, f := range formats {
		got := read(t, f, write(t, f, p))
		if c := got.Profile.Metadata.Consent; c.Categories() != nil || !c.UpdatedAt().Equal(t0) {
			t.Errorf("%v: consent with no categories read back as %+v; want nil categories updated at %v", f, c, t0)
		}
	}
	if data := write(t, export.JSON, p); !bytes.Contains(data, []byte(`"consent":{"categories":{},"updated_at":"2024-03-01T09:30:00.123456789Z"}`)) {
		t.Errorf("consent with no categories:\n%s", data)
	}
}

// withoutConsent is richPackage as it was before consent was kept (and so
// before accounts were).
func withoutConsent() *export.Package {
	p := richPackage()
	p.Profile.Metadata.Consent = profile.Consent{}
	p.ConsentHistory = nil
	p.Accounts = nil
	return p
}

// oldExport returns what the Writer wrote before consent was kept, for
// withoutConsent(): the same export less its consent_history section, its
// end record's count of consent changes and its consent columns and file
// (and less what accounts added later: see withoutAccountsSection).
func oldExport(t *testing.T, f export.Format) []byte {
	t.Helper()
	data := withoutAccountsSection(t, f, write(t, f, withoutConsent()))
	cut := func(s, old string) string {
		t.Helper()
		if strings.Count(s, old) != 1 {
			t.Fatalf("%v: want one %q in %s", f, old, s)
		}
		return strings.Replace(s, old, "", 1)
	}
	var old []byte
	switch f {
	case export.JSON:
		old = []byte(cut(string(data), `,"consent_history":[]`))
	case export.NDJSON:
		old = []byte(cut(string(data), `,"consent_change":0`))
	case export.CSV:
		files, names := zipFiles(t, data)
		header, row, _ := strings.Cut(string(files["profile.csv"]), "\n")
		header = cut(header, ",consent,consent_updated_at")
		if !strings.HasSuffix(row, ",,\n") {
			t.Fatalf("profile.csv row %q: want the consent cells empty", row)
		}
		files["profile.csv"] = []byte(header + "\n" + strings.TrimSuffix(row, ",,\n") + "\n")
		var m map[string]any
		if err := json.Unmarshal(files["manifest.json"], &m); err != nil {
			t.Fatal(err)
		}
		list := m["files"].([]any)
		if last := list[len(list)-1].(map[string]any); last["name"] != "consent_history.csv" {
			t.Fatalf("the manifest's last file is %v", last["name"])
		}
		m["files"] = list[:len(list)-1]
		var err error
		if files["manifest.json"], err = json.Marshal(m); err != nil {
			t.Fatal(err)
		}
		delete(files, "consent_history.csv")
		if names[len(names)-2] != "consent_history.csv" {
			t.Fatalf("archive has %v", names)
		}
		old = rezip(t, files, append(names[:len(names)-2:len(names)-2], "manifest.json"), true)
		files, _ = zipFiles(t, old)
		data = nil
		for _, b := range files {
			data = append(data, b...)
		}
	}
	if f != export.CSV {
		data = old
	}
	if bytes.Contains(data, []byte("consent")) {
		t.Fatalf("%v: the old export mentions consent:\n%s", f, data)
	}
	return old
}

// TestReadExportWithoutConsent: an export written before consent was kept
// (no consent member, consent_history section, consent_change count,
// consent columns or consent_history.csv) reads, as one without consent.
func TestReadExportWithoutConsent(t *testing.T) {
	want := withoutConsent()
	for _, f := range formats {
		t.Run(f.String(), func(t *testing.T) {
			got, err := export.Read(bytes.NewReader(oldExport(t, f)), f)
			if err != nil {
				t.Fatalf("an export from before consent: %v", err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("read back (-want +got):\n%s", diff)
			}
		})
	}
	// The old JSON document is valid under the schema: consent_history is not
	// required.
	if err := schemaValidator(t)(oldExport(t, export.JSON)); err != nil {
		t.Errorf("a JSON export from before consent does not validate: %v", err)
	}
}

// TestReadCSVConsentHistoryListedIfPresent: consent_history.csv may be
// absent only with its manifest entry; one without the other is refused.
func TestReadCSVConsentHistoryListedIfPresent(t *testing.T) {
	got := readWithoutCSVFile(t, "consent_history.csv")
	if got.ConsentHistory != nil || got.Profile.Metadata.Consent.Len() == 0 {
		t.Errorf("read %d consent changes and categories %v; want none and the categories", len(got.ConsentHistory), got.Profile.Metadata.Consent.Categories())
	}
}

// readWithoutCSVFile checks that name, a CSV file added within the schema
// version, may be absent from an archive only with its manifest entry (one
// without the other is refused), and returns the package read without both:
// an export from before the file (its rows lost with it, as an edited
// manifest allows).
func readWithoutCSVFile(t *testing.T, name string) *export.Package {
	t.Helper()
	files, names := zipFiles(t, write(t, export.CSV, richPackage()))
	var keep []string
	for _, n := range names {
		if n != name {
			keep = append(keep, n)
		}
	}
	// The file gone, the manifest still listing it.
	readFails(t, export.CSV, rezip(t, files, keep, false), "the archive has no "+name)
	// The file there, the manifest not listing it.
	files["manifest.json"] = unlist(t, files["manifest.json"], name)
	readFails(t, export.CSV, rezip(t, files, names, false), "manifest.json does not list "+name)
	got, err := export.Read(bytes.NewReader(rezip(t, files, keep, false)), export.CSV)
	if err != nil {
		t.Fatalf("without %s and its entry: %v", name, err)
	}
	return got
}

// after replaces the first old after the first marker in s.
func after(t *testing.T, s, marker, old, new string) string {
	t.Helper()
	i := strings.Index(s, marker)
	if i < 0 {
		t.Fatalf("no %q", marker)
	}
	j := strings.Index(s[i:], old)
	if j < 0 {
		t.Fatalf("no %q after %q", old, marker)
	}
	return s[:i+j] + new + s[i+j+len(old):]
}

// TestReadRefusesMalformedConsent: a status, preference or time that is not
// what the format allows is refused with ErrInvalid, naming the field and
// not what it held.
func TestReadRefusesMalformedConsent(t *testing.T) {
	const secret = "S3CRET-747"
	type tc struct {
		name, data, want string
	}
	var cases []struct {
		f export.Format
		tc
	}
	add := func(f export.Format, c ...tc) {
		for _, x := range c {
			cases = append(cases, struct {
				f export.Format
				tc
			}{f, x})
		}
	}
	const updated = `"updated_at":"2024-03-01T11:00:00.123456789Z"`
	for _, f := range []export.Format{export.JSON, export.NDJSON} {
		doc := string(write(t, f, richPackage()))
		meta, hist := `"consent":{`, `"consent_history":[`
		if f == export.NDJSON {
			hist = `"kind":"consent_change"`
		}
		add(f,
			tc{"status a string", after(t, doc, meta, `"conflict"`, `"`+secret+`"`), `consent.categories["Functional"]: the status is not true, false or "conflict"`},
			tc{"status a number", after(t, doc, meta, `"Analytics":false`, `"Analytics":747747`), `consent.categories["Analytics"]: the status is not`},
			tc{"status null", after(t, doc, meta, `"Analytics":false`, `"Analytics":null`), `consent.categories["Analytics"]: the status is not`},
			tc{"status an object", after(t, doc, meta, `"Analytics":false`, `"Analytics":{"s":"`+secret+`"}`), `consent.categories["Analytics"]: the status is not`},
			tc{"category twice", after(t, doc, meta, `"Analytics":false`, `"Analytics":false,"Analytics":true`), `consent.categories["Analytics"]: appears twice`},
			tc{"categories not an object", after(t, doc, meta, `"categories":{`, `"categories":["`+secret+`"],"x":{`), `consent.categories: not a JSON object`},
			tc{"consent updated_at", after(t, doc, meta, updated, `"updated_at":"`+secret+`"`), "consent.updated_at: a time of 10 bytes is not RFC 3339"},
			tc{"consent updated_at a number", after(t, doc, meta, updated, `"updated_at":747747`), "consent.updated_at: a time must be an RFC 3339 string"},
			tc{"unknown consent member", after(t, doc, meta, updated, updated+`,"colour":"red"`), `unknown field "colour"`},
			tc{"preference a string", after(t, doc, hist, `"Advertising":true`, `"Advertising":"`+secret+`"`), `preferences["Advertising"]: not a boolean`},
			tc{"preference a number", after(t, doc, hist, `"Advertising":true`, `"Advertising":747747`), `preferences["Advertising"]: not a boolean`},
			tc{"preference null", after(t, doc, hist, `"Advertising":true`, `"Advertising":null`), `preferences["Advertising"]: not a boolean`},
			tc{"preference twice", after(t, doc, hist, `"Advertising":true`, `"Advertising":true,"Advertising":false`), `preferences["Advertising"]: appears twice`},
			tc{"preferences not an object", after(t, doc, hist, `"preferences":{}`, `"preferences":"`+secret+`"`), `preferences: not a JSON object`},
			tc{"timestamp", after(t, doc, hist, `"timestamp":"2024-03-01T09:30:00.123456789Z"`, `"timestamp":"`+secret+`"`), "timestamp: a time of 10 bytes is not RFC 3339"},
			tc{"received_at a number", after(t, doc, hist, `"received_at":"2024-03-01T09:30:00.124456789Z"`, `"received_at":747747`), "received_at: a time must be an RFC 3339 string"},
			tc{"received_at out of range", after(t, doc, hist, `"received_at":"2024-03-01T09:30:00.124456789Z"`, `"received_at":"0000-01-01T00:00:00+01:00"`), "received_at: a time in year -1"},
		)
		if f == export.JSON {
			add(f, tc{"history not an array", after(t, doc, hist, `[`, `"`+secret+`",[`), `consent_history: want "[", found a string`})
			add(f, tc{"change names its element", after(t, doc, hist, `"timestamp":"2024-03-01T10:30`, `"timestamp":"`+secret), "consent_history[1]: timestamp"})
		} else {
			add(f, tc{"change names its line", after(t, doc, hist, `"timestamp":"2024-03-01T10:30`, `"timestamp":"`+secret), "consent_change: timestamp"})
		}
	}
	files, names := zipFiles(t, write(t, export.CSV, richPackage()))
	csvEdit := func(name, old, new string) string {
		c := make(map[string][]byte, len(files))
		for k, v := range files {
			c[k] = v
		}
		c[name] = []byte(after(t, string(files[name]), "\n", old, new))
		return string(rezip(t, c, names, true))
	}
	add(export.CSV,
		tc{"status", csvEdit("profile.csv", `""conflict""`, `""`+secret+`""`), `profile.csv line 2: consent["Functional"]: the status is not true, false or "conflict"`},
		tc{"status a number", csvEdit("profile.csv", `""Analytics"":false`, `""Analytics"":747747`), `profile.csv line 2: consent["Analytics"]: the status is not`},
		tc{"category twice", csvEdit("profile.csv", `""Analytics"":false`, `""Analytics"":false,""Analytics"":false`), `consent["Analytics"]: appears twice`},
		tc{"consent not JSON", csvEdit("profile.csv", `""conflict""`, secret), "profile.csv line 2: consent: not JSON"},
		tc{"consent not an object", csvEdit("profile.csv", `"{""Advertising""`, `"[""`+secret+`""],{""Advertising""`), "consent: not JSON"},
		tc{"consent an array", csvEdit("profile.csv", `"{""Advertising"":true,""Analytics"":false,""Functional"":""conflict"",""Sales, \""EU\"""":true}"`, `"[""`+secret+`""]"`), "profile.csv line 2: consent: not a JSON object"},
		tc{"consent_updated_at", csvEdit("profile.csv", "2024-03-01T11:00:00.123456789Z", secret), "profile.csv line 2: consent_updated_at: a time of 10 bytes is not RFC 3339"},
		tc{"preference a string", csvEdit("consent_history.csv", `""Advertising"":true`, `""Advertising"":""`+secret+`""`), `consent_history.csv line 2: preferences["Advertising"]: not a boolean`},
		tc{"preference null", csvEdit("consent_history.csv", `""Advertising"":true`, `""Advertising"":null`), `consent_history.csv line 2: preferences["Advertising"]: not a boolean`},
		tc{"preferences not JSON", csvEdit("consent_history.csv", `,{}`, `,{`+secret), "consent_history.csv line 3: preferences: not JSON"},
		tc{"timestamp", csvEdit("consent_history.csv", "2024-03-01T09:30:00.123456789Z", secret), "consent_history.csv line 2: timestamp: a time of 10 bytes is not RFC 3339"},
		tc{"received_at", csvEdit("consent_history.csv", "2024-03-01T10:30:00.123456789Z,{}", secret+",{}"), "consent_history.csv line 3: received_at: a time of 10 bytes"},
	)
	for _, c := range cases {
		t.Run(c.f.String()+"/"+c.name, func(t *testing.T) {
			readFailsQuoting(t, c.f, []byte(c.data), c.want, secret, "747747")
		})
	}
}

// TestWriteHeaderRefusesConsent: a header with consent history (a section of
// its own), a status that is none of the three or a category that is not
// UTF-8 is refused with ErrInvalid, writing nothing: the writer then takes a
// good header as if nothing had happened.
func TestWriteHeaderRefusesConsent(t *testing.T) {
	good := header
	ads := map[string]profile.ConsentStatus{"Ads": profile.ConsentGranted}
	good.Metadata.Consent = profile.NewConsent(ads, t0, nil)
	for _, tc := range []struct {
		name    string
		consent profile.Consent
		want    string
	}{
		{"history", profile.NewConsent(ads, t0, []profile.ConsentChange{{MessageID: "c1"}}),
			"Metadata.Consent.History must be empty: consent changes are a section of their own, written with WriteConsentChange"},
		{"status", profile.NewConsent(map[string]profile.ConsentStatus{"Ads": profile.ConsentConflict + 1}, t0, nil),
			`consent.categories["Ads"]: status ConsentStatus(3) is not ConsentDenied, ConsentGranted or ConsentConflict`},
		{"category not UTF-8", profile.NewConsent(map[string]profile.ConsentStatus{"Ads": profile.ConsentGranted, "A\xffs": profile.ConsentDenied}, t0, nil),
			`consent.categories: key "A\xffs" is not valid UTF-8`},
		{"time", profile.NewConsent(ads, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), nil),
			"updated_at: year 10000"}, // CSV names the column consent_updated_at
	} {
		for _, f := range formats {
			t.Run(tc.name+"/"+f.String(), func(t *testing.T) {
				bad := good
				bad.Metadata.Consent = tc.consent
				var got, want bytes.Buffer
				w, err := export.NewWriter(&got, f)
				if err != nil {
					t.Fatal(err)
				}
				if err := w.WriteHeader(bad); !errors.Is(err, export.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("WriteHeader = %v; want ErrInvalid saying %q", err, tc.want)
				}
				if err := w.WriteHeader(good); err != nil {
					t.Fatalf("a good header after the refused one: %v", err)
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				if err := export.Write(&want, f, &export.Package{Schema: export.SchemaVersion, GeneratedAt: good.GeneratedAt,
					RequestID: good.RequestID, Profile: profile.Profile{ID: good.ProfileID, Metadata: good.Metadata}}); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Bytes(), want.Bytes()) {
					t.Errorf("the refused header changed the output:\n got %q\nwant %q", got.Bytes(), want.Bytes())
				}
			})
		}
	}
	// Write refuses a package whose metadata holds the history.
	p := richPackage()
	c := p.Profile.Metadata.Consent
	p.Profile.Metadata.Consent = profile.NewConsent(c.Categories(), c.UpdatedAt(), p.ConsentHistory)
	for _, f := range formats {
		if err := export.Write(io.Discard, f, p); !errors.Is(err, export.ErrInvalid) || !strings.Contains(err.Error(), "Consent.History") {
			t.Errorf("%v: Write with Metadata.Consent.History = %v; want ErrInvalid naming it", f, err)
		}
	}
}

// TestFuzzSeedsWithConsent: the fuzz corpora's consent seeds are exports Read
// accepts, with consent (and the older forms without it), so the fuzzers
// start from consent that reads rather than from an early refusal.
func TestFuzzSeedsWithConsent(t *testing.T) {
	for _, tc := range []struct {
		f           export.Format
		path        string
		wantConsent bool
	}{
		{export.JSON, "testdata/fuzz/FuzzReadJSON/consent", true},
		{export.NDJSON, "testdata/fuzz/FuzzReadNDJSON/consent", true},
		{export.CSV, "testdata/fuzz/FuzzReadCSV/consent", true},
		{export.NDJSON, "testdata/fuzz/FuzzReadNDJSON/no_consent_count", false},
		{export.CSV, "testdata/fuzz/FuzzReadCSV/no_consent_history", false},
	} {
		b, err := os.ReadFile(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		_, lit, ok := strings.Cut(strings.TrimSpace(string(b)), "\n")
		if !ok || !strings.HasPrefix(lit, "[]byte(") || !strings.HasSuffix(lit, ")") {
			t.Fatalf("%s: not a corpus file of one []byte", tc.path)
		}
		data, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lit, "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		p, err := export.Read(strings.NewReader(data), tc.f)
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		c := p.Profile.Metadata.Consent
		has := c.Len() == 3 && c.Status("Functional, \"x\"") == profile.ConsentConflict &&
			len(p.ConsentHistory) == 4 && p.ConsentHistory[1].Preferences != nil && len(p.ConsentHistory[1].Preferences) == 0
		if has != tc.wantConsent || !tc.wantConsent && (c.Collected() || !c.UpdatedAt().IsZero() || p.ConsentHistory != nil) {
			t.Errorf("%s: consent %+v, history %+v; want consent: %v", tc.path, c, p.ConsentHistory, tc.wantConsent)
		}
	}
}
