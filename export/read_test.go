package export_test

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy/export"
	"github.com/gdprkit/privacy/profile"
	"github.com/google/go-cmp/cmp"
)

// readFails reads data and checks the error matches ErrInvalid and says want.
func readFails(t *testing.T, f export.Format, data []byte, want string) {
	t.Helper()
	readFailsQuoting(t, f, data, want)
}

// readFailsQuoting is readFails whose error quotes none of values: the
// malformed values of a person's export.
func readFailsQuoting(t *testing.T, f export.Format, data []byte, want string, values ...string) {
	t.Helper()
	p, err := export.Read(bytes.NewReader(data), f)
	if err == nil {
		t.Fatalf("Read(%v) accepted it: %+v", f, p)
	}
	if !errors.Is(err, export.ErrInvalid) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Read(%v) = %v; want ErrInvalid saying %q", f, err, want)
	}
	for _, v := range values {
		if strings.Contains(err.Error(), v) {
			t.Errorf("the error shows the malformed value %q: %v", v, err)
		}
	}
}

func lines(data []byte) []string { return strings.SplitAfter(string(data), "\n") }

func TestReadNDJSONRefuses(t *testing.T) {
	good := write(t, export.NDJSON, richPackage())
	ls := lines(good) // the last element is "" after the final newline
	n := len(ls) - 1
	join := func(parts ...[]string) []byte {
		var b strings.Builder
		for _, p := range parts {
			for _, s := range p {
				b.WriteString(s)
			}
		}
		return []byte(b.String())
	}
	replace := func(i int, s string) []byte {
		c := append([]string(nil), ls...)
		c[i] = s
		return join(c)
	}
	lineOf := func(kind string) int {
		for i, l := range ls {
			if strings.HasPrefix(l, `{"kind":"`+kind+`"`) {
				return i
			}
		}
		t.Fatalf("no %s record", kind)
		return 0
	}
	ev, aud := lineOf("event"), lineOf("audience")
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"truncated after a record", join(ls[:n-1]), "no end record after line"},
		{"truncated mid-line", good[:len(good)-30], "line"},
		{"a record dropped", join(ls[:ev], ls[ev+1:]), "the end record counts 4 event records, the export has 3"},
		{"a record added", join(ls[:ev+1], ls[ev:]), "the end record counts 4 event records, the export has 5"},
		{"after the end", join(ls, []string{ls[ev]}), "data after the end record"},
		{"wrong schema", []byte(strings.Replace(string(good), export.SchemaVersion, "gdprkit.export/v2", 1)),
			`line 1: schema "gdprkit.export/v2"`},
		{"unknown kind", replace(ev, `{"kind":"bogus","x":1}`+"\n"), `line ` + strconv.Itoa(ev+1) + `: unknown kind "bogus"`},
		{"no kind", replace(ev, `{"message_id":"m"}`+"\n"), `has no "kind"`},
		{"unknown field", replace(ev, `{"kind":"event","message_id":"m","colour":"red"}`+"\n"), `unknown field "colour"`},
		{"sections out of order", join(ls[:ev], []string{ls[aud]}, ls[ev:aud], ls[aud+1:]), "event after audience"},
		{"header not first", join(ls[1:2], ls[:1], ls[2:]), "line 1: identifier before the header"},
		{"two headers", join(ls[:1], ls), "line 2: header after header"},
		{"empty line", replace(ev, "\n"), "empty line"},
		{"not JSON", replace(ev, "event m1\n"), "line " + strconv.Itoa(ev+1)},
		{"bad time", replace(ev, `{"kind":"event","message_id":"m","timestamp":"yesterday"}`+"\n"), `a time of 9 bytes is not RFC 3339`},
		{"bad outcome", []byte(strings.Replace(string(good), `"kind":"backend"`, `"kind":"robot"`, 1)), `kind "robot"`},
		{"too deep", replace(ev, `{"kind":"event","message_id":"m","properties":{"x":`+strings.Repeat("[", 40)+strings.Repeat("]", 40)+"}}\n"),
			"nested more than"},
	} {
		t.Run(tc.name, func(t *testing.T) { readFails(t, export.NDJSON, tc.data, tc.want) })
	}
	// A file whose last newline is missing is whole: accepted.
	if _, err := export.Read(bytes.NewReader(bytes.TrimSuffix(good, []byte("\n"))), export.NDJSON); err != nil {
		t.Errorf("without the final newline: %v", err)
	}
}

func TestReadJSONRefuses(t *testing.T) {
	good := string(write(t, export.JSON, richPackage()))
	empty := string(write(t, export.JSON, emptyPackage()))
	for _, tc := range []struct {
		name, data, want string
	}{
		{"empty", "", "truncated"},
		{"truncated", good[:len(good)/2], "truncated"},
		{"not an object", `[1,2]`, `the document: want "{", found "["`},
		{"wrong schema", strings.Replace(good, export.SchemaVersion, "gdprkit.export/v2", 1), `schema "gdprkit.export/v2"`},
		{"no schema", strings.Replace(empty, `"schema":"`+export.SchemaVersion+`",`, "", 1), "no schema"},
		{"unknown key", strings.Replace(empty, `"events":[]`, `"events":[],"colour":1`, 1), `unknown key "colour"`},
		{"unknown member", strings.Replace(good, `"message_id":"m1"`, `"message_id":"m1","colour":1`, 1), `unknown field "colour"`},
		{"duplicate key", strings.Replace(empty, `"events":[]`, `"events":[],"events":[]`, 1), `key "events" appears twice`},
		{"data after", good + `{}`, "data after the end of the document"},
		{"events not an array", strings.Replace(empty, `"events":[]`, `"events":{}`, 1), `events: want "[", found "{"`},
		{"bad time", strings.Replace(good, `"timestamp":"2024`, `"timestamp":"1024x`, 1), "events[0]"},
		{"audiences out of order", strings.Replace(empty, `"audiences":[]`, `"audiences":["b","a"]`, 1), `audiences[1]: audience "a" after "b"`},
		{"request id twice", strings.Replace(empty, `"requests":[]`, `"requests":[{"id":"r"},{"id":"r"}]`, 1), `requests[1]: request id "r" appears twice`},
		{"version not a number", strings.Replace(good, `"version":`, `"version":"1"`+`,"x":`, 1), "metadata"},
		{"too deep", strings.Replace(empty, `"traits":{}`, `"traits":{"t":{"value":`+strings.Repeat("[", 40)+strings.Repeat("]", 40)+`,"source":""}}`, 1), "nested more than"},
	} {
		t.Run(tc.name, func(t *testing.T) { readFails(t, export.JSON, []byte(tc.data), tc.want) })
	}
}

// zipFiles returns the archive's files by name and in order.
func zipFiles(t *testing.T, data []byte) (map[string][]byte, []string) {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	var names []string
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		files[f.Name], names = b, append(names, f.Name)
	}
	return files, names
}

// rezip builds an archive of files in order; with fix, the manifest's hashes
// and row counts are recomputed, so only the change itself can be caught.
func rezip(t *testing.T, files map[string][]byte, names []string, fix bool) []byte {
	t.Helper()
	if fix {
		var m struct {
			Schema      string `json:"schema"`
			GeneratedAt string `json:"generated_at"`
			Files       []struct {
				Name   string `json:"name"`
				SHA256 string `json:"sha256"`
				Rows   int    `json:"rows"`
			} `json:"files"`
		}
		if err := json.Unmarshal(files["manifest.json"], &m); err != nil {
			t.Fatal(err)
		}
		for i, f := range m.Files {
			sum := sha256.Sum256(files[f.Name])
			m.Files[i].SHA256 = hex.EncodeToString(sum[:])
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		files["manifest.json"] = b
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, name := range names {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(files[name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReadCSVRefuses(t *testing.T) {
	good := write(t, export.CSV, richPackage())
	files, names := zipFiles(t, good)
	if want := []string{"profile.csv", "identifiers.csv", "traits.csv", "events.csv", "audiences.csv",
		"requests.csv", "outcomes.csv", "recipients.csv", "consent_history.csv", "accounts.csv", "manifest.json"}; strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("archive has %v; want %v", names, want)
	}
	// The archive rebuilt unchanged reads: the tests below change one thing.
	if _, err := export.Read(bytes.NewReader(rezip(t, files, names, false)), export.CSV); err != nil {
		t.Fatalf("the rebuilt archive: %v", err)
	}
	change := func(name string, edit func(b []byte) []byte, fix bool) []byte {
		c := make(map[string][]byte, len(files))
		for k, v := range files {
			c[k] = append([]byte(nil), v...)
		}
		c[name] = edit(c[name])
		return rezip(t, c, names, fix)
	}
	without := func(name string) []byte {
		var keep []string
		for _, n := range names {
			if n != name {
				keep = append(keep, n)
			}
		}
		return rezip(t, files, keep, false)
	}
	flip := func(at string) func(b []byte) []byte {
		return func(b []byte) []byte {
			i := bytes.Index(b, []byte(at))
			if i < 0 {
				t.Fatalf("no %q to change", at)
			}
			b[i] ^= 0x20
			return b
		}
	}
	sub := func(old, new string) func(b []byte) []byte {
		return func(b []byte) []byte {
			if !bytes.Contains(b, []byte(old)) {
				t.Fatalf("no %q to replace", old)
			}
			return bytes.Replace(b, []byte(old), []byte(new), 1)
		}
	}
	// A byte in the middle of events.csv's compressed data, not one the
	// reader ignores (such as a local header's sizes, given after the data).
	corrupt := append([]byte(nil), good...)
	start := bytes.Index(corrupt, []byte("events.csv"))
	end := start + bytes.Index(corrupt[start:], []byte("PK\x03\x04"))
	if start < 0 || end <= start+100 {
		t.Fatalf("no events.csv data to corrupt at %d to %d", start, end)
	}
	corrupt[(start+end)/2] ^= 0xff
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"a byte changed", change("events.csv", flip("Order Completed"), false), "events.csv: SHA-256"},
		{"a byte changed that breaks the CSV", change("traits.csv", sub(`"`, `x`), false), "traits.csv: SHA-256"},
		{"a row dropped", change("audiences.csv", func(b []byte) []byte { return b[:bytes.LastIndexByte(b[:len(b)-1], '\n')+1] }, false),
			"audiences.csv: SHA-256"},
		{"row count", change("manifest.json", func(b []byte) []byte {
			i := bytes.Index(b, []byte(`"name":"events.csv"`))
			j := i + bytes.Index(b[i:], []byte(`"rows":4`))
			if i < 0 || j < i {
				t.Fatalf("no row count of events.csv in %s", b)
			}
			return append(append(b[:j:j], `"rows":5`...), b[j+len(`"rows":4`):]...)
		}, false),
			"events.csv has 4 rows, manifest.json says 5"},
		{"column missing", change("events.csv", sub("message_id,name,", "name,"), true), `events.csv line 1: column "message_id" is missing`},
		{"unknown column", change("recipients.csv", sub("name,", "name,colour,"), true), `unknown column "colour"`},
		{"short row", change("recipients.csv", sub("webhook,", "webhook"), true), "recipients.csv line 2: 2 fields, the header has 3"},
		{"bad time", change("events.csv", sub("2024-03-01T09:30:00.123456789Z", "March"), true), `events.csv line 2: timestamp: a time of 5 bytes is not RFC 3339`},
		{"bad JSON column", change("traits.csv", sub("42", "42}"), true), "traits.csv line 4: value: not JSON"},
		{"bare quote", change("identifiers.csv", sub("a@b.c", `a"b`), true), `identifiers.csv line 2: a bare '"'`},
		{"unclosed quote", change("recipients.csv", func(b []byte) []byte { return append(b, '"') }, true), "not closed"},
		{"invalid UTF-8", change("identifiers.csv", sub("a@b.c", "a\xffb"), true), "not valid UTF-8"},
		{"outcome for no request", change("outcomes.csv", sub("req_del_0", "req_nope"), true), `request_id "req_nope" is not in requests.csv`},
		{"traits out of order", change("traits.csv", sub("address", "zzz"), true), `trait "age" after "zzz"`},
		{"two profile rows", change("profile.csv", func(b []byte) []byte { return append(b, b[bytes.IndexByte(b, '\n')+1:]...) }, true),
			"profile.csv line 3: header after header"},
		{"wrong schema", change("profile.csv", sub(export.SchemaVersion, "gdprkit.export/v2"), true), `profile.csv line 2: schema "gdprkit.export/v2"`},
		{"manifest schema", change("manifest.json", sub(export.SchemaVersion, "gdprkit.export/v2"), false), `manifest.json: schema "gdprkit.export/v2"`},
		{"manifest time", change("manifest.json", sub(`"generated_at":"2024-03-03`, `"generated_at":"2024-03-04`), false), "generated_at"},
		{"file missing", without("outcomes.csv"), "the archive has no outcomes.csv"},
		{"manifest missing", without("manifest.json"), "the archive has no manifest.json"},
		{"extra file", rezip(t, files, append([]string{"notes.txt"}, names...), false), `unexpected file "notes.txt"`},
		{"not a zip", []byte("schema,generated_at\n"), "not a zip archive"},
		{"corrupt zip", corrupt, "csv"},
	} {
		t.Run(tc.name, func(t *testing.T) { readFails(t, export.CSV, tc.data, tc.want) })
	}
}

func TestReadLimit(t *testing.T) {
	p := richPackage()
	p.Events = manyEvents(2000)
	for _, f := range formats {
		data := write(t, f, p)
		size := len(data)
		if f == export.CSV { // the files uncompressed count too
			files, _ := zipFiles(t, data)
			n := 0
			for _, b := range files {
				n += len(b)
			}
			size = max(size, n)
		}
		if _, err := export.ReadLimit(bytes.NewReader(data), f, int64(size)); err != nil {
			t.Errorf("%v: ReadLimit at the size: %v", f, err)
		}
		_, err := export.ReadLimit(bytes.NewReader(data), f, int64(len(data))-1)
		if !errors.Is(err, export.ErrTooLarge) || !errors.Is(err, export.ErrInvalid) || !strings.Contains(err.Error(), "larger than") {
			t.Errorf("%v: ReadLimit a byte short = %v; want ErrTooLarge", f, err)
		}
	}
	// For CSV the uncompressed files count too: a small archive of large files
	// (here a run of a repeated property) is refused.
	p.Events[0].Properties = map[string]any{"pad": strings.Repeat("a", 4<<20)}
	data := write(t, export.CSV, p)
	if len(data) > 1<<20 {
		t.Fatalf("the archive is %d bytes; the test wants it small", len(data))
	}
	if _, err := export.ReadLimit(bytes.NewReader(data), export.CSV, 2<<20); !errors.Is(err, export.ErrTooLarge) {
		t.Errorf("CSV of 4 MiB uncompressed under a 2 MiB limit: %v; want ErrTooLarge", err)
	}
}

// errReader fails after its data.
type errReader struct{ r io.Reader }

func (e errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		return n, errBoom
	}
	return n, err
}

// TestReadSourceError: an error of the io.Reader is not called invalid input.
func TestReadSourceError(t *testing.T) {
	for _, f := range formats {
		data := write(t, f, richPackage())
		_, err := export.Read(errReader{bytes.NewReader(data[:len(data)/2])}, f)
		if !errors.Is(err, errBoom) || errors.Is(err, export.ErrInvalid) {
			t.Errorf("%v: %v; want the reader's error, not ErrInvalid", f, err)
		}
	}
}

// TestReadExportWithoutEventTypes: an export written before events kept
// their type, source and context (events.csv without those columns, JSON
// events without those members) still reads, with them empty.
func TestReadExportWithoutEventTypes(t *testing.T) {
	p := richPackage()
	t0 := p.Events[0].Timestamp
	p.Events = []profile.Event{ // no line breaks: the test cuts lines
		{MessageID: "m1", Name: "Order Completed", Timestamp: t0, Properties: map[string]any{"total": 99.95}},
		{MessageID: "m3", Name: "Empty", Timestamp: t0.Add(time.Minute), Properties: map[string]any{}},
	}
	files, names := zipFiles(t, write(t, export.CSV, p))
	var old bytes.Buffer
	for i, line := range strings.SplitAfter(string(files["events.csv"]), "\n") {
		if line == "" {
			continue
		}
		// The three columns added last, each empty here: ",,,\n" or the header's names.
		cut := strings.TrimSuffix(line, "\n")
		if i == 0 {
			cut = strings.TrimSuffix(cut, ",type,source,context")
		} else {
			if !strings.HasSuffix(cut, ",,") {
				t.Fatalf("events.csv line %d %q: want the new columns empty", i+1, line)
			}
			cut = strings.TrimSuffix(cut, ",,,")
		}
		old.WriteString(cut + "\n")
	}
	files["events.csv"] = old.Bytes()
	got, err := export.Read(bytes.NewReader(rezip(t, files, names, true)), export.CSV)
	if err != nil {
		t.Fatalf("an events.csv without the type, source and context columns: %v", err)
	}
	if len(got.Events) != len(p.Events) || got.Events[0].Properties["total"] != 99.95 {
		t.Errorf("read back %d events, the first %+v; want %d, as written", len(got.Events), got.Events[0], len(p.Events))
	}
	if _, err := export.Read(bytes.NewReader(write(t, export.JSON, p)), export.JSON); err != nil {
		t.Errorf("a JSON export whose events have no type, source or context: %v", err)
	}
}

// TestEventTypeSourceAndContextRoundTrip: an event's type, source and
// context are written and read back in every format.
func TestEventTypeSourceAndContextRoundTrip(t *testing.T) {
	p := richPackage()
	t0 := p.Events[0].Timestamp
	p.Events = append(p.Events, profile.Event{MessageID: "m9", Type: "page", Source: "web, \"eu\"", Name: "Pricing",
		Timestamp: t0.Add(time.Hour), Properties: map[string]any{"name": "Pricing"},
		Context: map[string]any{"ip": "203.0.113.9", "page": map[string]any{"url": "https://x.example/p?a=1,2\n"}, "consent": map[string]any{"categoryPreferences": map[string]any{"Ads": false}}}})
	for _, f := range []export.Format{export.JSON, export.NDJSON, export.CSV} {
		got, err := export.Read(bytes.NewReader(write(t, f, p)), f)
		if err != nil {
			t.Fatalf("%v: %v", f, err)
		}
		if diff := cmp.Diff(p.Events, got.Events); diff != "" {
			t.Errorf("%v: events read back (-written +read):\n%s", f, diff)
		}
	}
}
