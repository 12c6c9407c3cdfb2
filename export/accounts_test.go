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

// TestAccountsRoundTrip: the accounts are written, last, as the format says,
// and read back exactly in every format, into Package.Accounts and not the
// metadata.
func TestAccountsRoundTrip(t *testing.T) {
	p := richPackage()
	for _, f := range formats {
		t.Run(f.String(), func(t *testing.T) {
			data := write(t, f, p)
			switch f {
			case export.JSON:
				want := `,"accounts":[{"group_id":"acme","first_linked":"2024-02-29T09:30:00.123456789Z","last_linked":"2024-03-01T10:30:00.123456789Z"},` +
					`{"group_id":"globex, \"eu\"\nbranch","first_linked":"2024-03-01T09:30:00.123456789Z","last_linked":"2024-03-01T09:30:00.123456789Z"},` +
					`{"group_id":"initech"}]}` + "\n"
				if !bytes.HasSuffix(data, []byte(want)) {
					t.Errorf("the document does not end with %s:\n%s", want, data)
				}
			case export.NDJSON:
				want := `{"kind":"account","group_id":"acme","first_linked":"2024-02-29T09:30:00.123456789Z","last_linked":"2024-03-01T10:30:00.123456789Z"}` + "\n" +
					`{"kind":"account","group_id":"globex, \"eu\"\nbranch","first_linked":"2024-03-01T09:30:00.123456789Z","last_linked":"2024-03-01T09:30:00.123456789Z"}` + "\n" +
					`{"kind":"account","group_id":"initech"}` + "\n" +
					`{"kind":"end","counts":{"identifier":3,"trait":11,"event":4,"audience":3,"request":2,"recipient":2,"consent_change":4,"account":3}}` + "\n"
				if !bytes.HasSuffix(data, []byte(want)) {
					t.Errorf("the export does not end with\n%s\nin:\n%s", want, data)
				}
			case export.CSV:
				files, names := zipFiles(t, data)
				if names[len(names)-2] != "accounts.csv" {
					t.Errorf("archive has %v; want accounts.csv last before the manifest", names)
				}
				want := "group_id,first_linked,last_linked\n" +
					"acme,2024-02-29T09:30:00.123456789Z,2024-03-01T10:30:00.123456789Z\n" +
					"\"globex, \"\"eu\"\"\nbranch\",2024-03-01T09:30:00.123456789Z,2024-03-01T09:30:00.123456789Z\n" +
					"initech,,\n"
				if got := string(files["accounts.csv"]); got != want {
					t.Errorf("accounts.csv:\n%s\nwant:\n%s", got, want)
				}
				var m struct {
					Files []struct {
						Name string `json:"name"`
						Rows int    `json:"rows"`
					} `json:"files"`
				}
				if err := json.Unmarshal(files["manifest.json"], &m); err != nil {
					t.Fatal(err)
				}
				if last := m.Files[len(m.Files)-1]; last.Name != "accounts.csv" || last.Rows != 3 {
					t.Errorf("the manifest's last file is %+v; want accounts.csv with 3 rows", last)
				}
			}
			got := read(t, f, data)
			if diff := cmp.Diff(p.Accounts, got.Accounts); diff != "" {
				t.Errorf("accounts read back (-written +read):\n%s", diff)
			}
			if got.Profile.Metadata.Accounts != nil {
				t.Errorf("Profile.Metadata.Accounts read back as %v; want nil", got.Profile.Metadata.Accounts)
			}
		})
	}
	// None: an empty section, read back as nil.
	for _, f := range formats {
		if got := read(t, f, write(t, f, emptyPackage())); got.Accounts != nil {
			t.Errorf("%v: a package without accounts read back %v; want nil", f, got.Accounts)
		}
	}
}

// withoutAccountsSection returns data, an export of a package without
// accounts, as the Writer wrote it before accounts were kept: less the
// accounts member (JSON), the end record's account count (NDJSON), or
// accounts.csv and its manifest entry (CSV).
func withoutAccountsSection(t *testing.T, f export.Format, data []byte) []byte {
	t.Helper()
	cut := func(old string) []byte {
		t.Helper()
		if n := bytes.Count(data, []byte(old)); n != 1 {
			t.Fatalf("%v: want one %q, found %d in:\n%s", f, old, n, data)
		}
		return bytes.Replace(data, []byte(old), nil, 1)
	}
	switch f {
	case export.JSON:
		return cut(`,"accounts":[]`)
	case export.NDJSON:
		return cut(`,"account":0`)
	}
	files, names := zipFiles(t, data)
	if len(names) < 2 || names[len(names)-2] != "accounts.csv" || names[len(names)-1] != "manifest.json" {
		t.Fatalf("archive has %v; want accounts.csv then manifest.json last", names)
	}
	if got := string(files["accounts.csv"]); got != "group_id,first_linked,last_linked\n" {
		t.Fatalf("accounts.csv has rows:\n%s", got)
	}
	delete(files, "accounts.csv")
	files["manifest.json"] = unlist(t, files["manifest.json"], "accounts.csv")
	return rezip(t, files, append(names[:len(names)-2:len(names)-2], "manifest.json"), false)
}

// unlist returns manifest.json without its entry for the file name.
func unlist(t *testing.T, manifest []byte, name string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(manifest, &m); err != nil {
		t.Fatal(err)
	}
	list := m["files"].([]any)
	var keep []any
	for _, e := range list {
		if e.(map[string]any)["name"] != name {
			keep = append(keep, e)
		}
	}
	if len(keep) != len(list)-1 {
		t.Fatalf("manifest.json lists %s %d times; want once", name, len(list)-len(keep))
	}
	m["files"] = keep
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReadExportWithoutAccounts: an export written before accounts were kept
// (no accounts member, account count or accounts.csv, with consent) reads,
// as one without accounts; the JSON document validates. NDJSON account
// records without their count are still refused.
func TestReadExportWithoutAccounts(t *testing.T) {
	want := richPackage()
	want.Accounts = nil
	for _, f := range formats {
		t.Run(f.String(), func(t *testing.T) {
			old := withoutAccountsSection(t, f, write(t, f, want))
			if f != export.CSV && bytes.Contains(old, []byte("account")) {
				t.Fatalf("the old export mentions accounts:\n%s", old)
			}
			got, err := export.Read(bytes.NewReader(old), f)
			if err != nil {
				t.Fatalf("an export from before accounts: %v", err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("read back (-want +got):\n%s", diff)
			}
			if f == export.JSON {
				if err := schemaValidator(t)(old); err != nil {
					t.Errorf("a JSON export from before accounts does not validate: %v", err)
				}
			}
		})
	}
	data := string(write(t, export.NDJSON, richPackage()))
	if !strings.Contains(data, `,"account":3}}`) {
		t.Fatalf("no count of 3 accounts in:\n%s", data)
	}
	readFails(t, export.NDJSON, []byte(strings.Replace(data, `,"account":3}}`, `}}`, 1)),
		"the end record counts 0 account records, the export has 3")
}

// TestReadCSVAccountsListedIfPresent: accounts.csv may be absent only with
// its manifest entry; one without the other is refused.
func TestReadCSVAccountsListedIfPresent(t *testing.T) {
	got := readWithoutCSVFile(t, "accounts.csv")
	if got.Accounts != nil || len(got.ConsentHistory) != 4 {
		t.Errorf("read %d accounts and %d consent changes; want none and 4", len(got.Accounts), len(got.ConsentHistory))
	}
}

const accountSecret = "S3CRET-747"

// secretAccounts is a package with two accounts, the first's group id
// accountSecret, an error must not show.
func secretAccounts() *export.Package {
	p := emptyPackage()
	p.Accounts = []profile.AccountLink{
		{GroupID: accountSecret, FirstLinked: t0, LastLinked: t0.Add(time.Hour)},
		{GroupID: "initech", FirstLinked: t0.Add(time.Minute), LastLinked: t0.Add(time.Minute)},
	}
	return p
}

// TestReadRefusesMalformedAccounts: a repeated group id, a time that is not
// RFC 3339, an unknown member or column, a group id that is not UTF-8 (CSV)
// or an account out of place is refused with ErrInvalid, naming the field
// and not what it held.
func TestReadRefusesMalformedAccounts(t *testing.T) {
	type tc struct {
		f                export.Format
		name, data, want string
	}
	var cases []tc
	const (
		first = `"first_linked":"2024-03-01T09:30:00.123456789Z"`
		last  = `"last_linked":"2024-03-01T09:31:00.123456789Z"`
	)
	for _, f := range []export.Format{export.JSON, export.NDJSON} {
		doc := string(write(t, f, secretAccounts()))
		marker := `"accounts":[`
		if f == export.NDJSON {
			marker = `"kind":"account"`
		}
		edit := func(old, new string) string { return after(t, doc, marker, old, new) }
		cases = append(cases,
			tc{f, "group_id twice", edit(`"group_id":"initech"`, `"group_id":"`+accountSecret+`"`), "account group_id appears twice"},
			tc{f, "first_linked", edit(first, `"first_linked":"`+accountSecret+`"`), "first_linked: a time of 10 bytes is not RFC 3339"},
			tc{f, "last_linked a number", edit(last, `"last_linked":747747`), "last_linked: a time must be an RFC 3339 string"},
			tc{f, "last_linked out of range", edit(last, `"last_linked":"0000-01-01T00:00:00+01:00"`), "last_linked: a time in year -1"},
			tc{f, "group_id not a string", edit(`"group_id":"initech"`, `"group_id":747747`), "group_id"},
			tc{f, "unknown member", edit(`"group_id":"initech"`, `"group_id":"initech","colour":"red"`), `unknown field "colour"`},
		)
		if f == export.JSON {
			cases = append(cases,
				tc{f, "names its element", edit(last, `"last_linked":"`+accountSecret+`"`), "accounts[1]: last_linked: a time of 10 bytes"},
				tc{f, "not an array", edit(`[`, `"`+accountSecret+`",[`), `accounts: want "[", found a string`},
				tc{f, "twice in the document", edit(`"accounts":[`, `"accounts":[],"accounts":[`), `key "accounts" appears twice`})
		} else {
			// The header, the two accounts, the end, and "" after the final
			// newline.
			ls := lines([]byte(doc))
			if len(ls) != 5 || !strings.HasPrefix(ls[1], `{"kind":"account"`) || !strings.HasPrefix(ls[3], `{"kind":"end"`) {
				t.Fatalf("lines: %q", ls)
			}
			n := len(ls) - 1
			cases = append(cases,
				tc{f, "names its record", edit(last, `"last_linked":"`+accountSecret+`"`), "line 3: account: last_linked: a time of 10 bytes"},
				tc{f, "count", strings.Replace(doc, `"account":2}}`, `"account":3}}`, 1), "the end record counts 3 account records, the export has 2"},
				tc{f, "recipient after account", strings.Join(append(ls[:n-1:n-1], `{"kind":"recipient","name":"crm"}`+"\n", ls[n-1]), ""),
					"line 4: recipient after account"},
				tc{f, "account before the header", strings.Join(append([]string{ls[1], ls[0]}, ls[2:]...), ""), "line 1: account before the header"})
		}
	}
	files, names := zipFiles(t, write(t, export.CSV, secretAccounts()))
	csvEdit := func(old, new string, fix bool) string {
		c := make(map[string][]byte, len(files))
		for k, v := range files {
			c[k] = v
		}
		if !bytes.Contains(c["accounts.csv"], []byte(old)) {
			t.Fatalf("accounts.csv has no %q:\n%s", old, c["accounts.csv"])
		}
		c["accounts.csv"] = bytes.Replace(c["accounts.csv"], []byte(old), []byte(new), 1)
		return string(rezip(t, c, names, fix))
	}
	cases = append(cases,
		tc{export.CSV, "group_id twice", csvEdit("initech", accountSecret, true), "accounts.csv line 3: account group_id appears twice"},
		tc{export.CSV, "first_linked", csvEdit("2024-03-01T09:30:00.123456789Z", accountSecret, true), "accounts.csv line 2: first_linked: a time of 10 bytes is not RFC 3339"},
		tc{export.CSV, "last_linked", csvEdit("2024-03-01T10:30:00.123456789Z", "747747", true), "accounts.csv line 2: last_linked: a time of 6 bytes is not RFC 3339"},
		tc{export.CSV, "group_id not UTF-8", csvEdit("initech", "init\xffech", true), "accounts.csv line 3: field 1 is not valid UTF-8"},
		tc{export.CSV, "group_id column missing", csvEdit("group_id,", "", true), `accounts.csv line 1: column "group_id" is missing`},
		tc{export.CSV, "unknown column", csvEdit("last_linked", "last_linked,colour", true), `accounts.csv line 1: unknown column "colour"`},
		tc{export.CSV, "changed", csvEdit("initech", "initecH", false), "accounts.csv: SHA-256"},
	)
	for _, c := range cases {
		t.Run(c.f.String()+"/"+c.name, func(t *testing.T) {
			readFailsQuoting(t, c.f, []byte(c.data), c.want, accountSecret, "747747")
		})
	}
}

// TestWriteAccountRefuses: a repeated group id, one that is not UTF-8, a time
// RFC 3339 cannot write or an account out of order is refused with
// ErrInvalid, naming the field and not the group id, and writes nothing: the
// export finished after it is byte for byte the export written without it.
func TestWriteAccountRefuses(t *testing.T) {
	good := profile.AccountLink{GroupID: accountSecret, FirstLinked: t0, LastLinked: t0.Add(time.Hour)}
	next := profile.AccountLink{GroupID: "initech"}
	for _, tc := range []struct {
		name     string
		bad      func(w *export.Writer) error
		want     string
		noHeader bool // the bad call comes first
	}{
		{"group_id twice", func(w *export.Writer) error {
			return w.WriteAccount(profile.AccountLink{GroupID: accountSecret, FirstLinked: t0})
		}, "account group_id appears twice", false},
		{"group_id not UTF-8", func(w *export.Writer) error {
			return w.WriteAccount(profile.AccountLink{GroupID: accountSecret + "\xff"})
		}, "account group_id is not valid UTF-8", false},
		{"first_linked beyond RFC 3339", func(w *export.Writer) error {
			return w.WriteAccount(profile.AccountLink{GroupID: accountSecret + "-2", FirstLinked: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})
		}, "accounts[1]: first_linked: year 10000", false},
		{"last_linked before RFC 3339", func(w *export.Writer) error {
			return w.WriteAccount(profile.AccountLink{GroupID: accountSecret + "-2", FirstLinked: t0, LastLinked: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)})
		}, "accounts[1]: last_linked: year -1", false},
		{"consent change after account", func(w *export.Writer) error {
			return w.WriteConsentChange(profile.ConsentChange{MessageID: "c1"})
		}, "consent_change after account", false},
		{"recipient after account", func(w *export.Writer) error {
			return w.WriteRecipient(export.Recipient{Name: "crm"})
		}, "recipient after account", false},
		{"account before header", func(w *export.Writer) error { return w.WriteAccount(good) }, "account before the header", true},
	} {
		for _, f := range formats {
			t.Run(tc.name+"/"+f.String(), func(t *testing.T) {
				var got, want bytes.Buffer
				run := func(dst io.Writer, withBad bool) error {
					w, err := export.NewWriter(dst, f)
					if err != nil {
						return err
					}
					bad := func() {
						err := tc.bad(w)
						if !errors.Is(err, export.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
							t.Errorf("bad call: err = %v; want ErrInvalid with %q", err, tc.want)
						} else if strings.Contains(err.Error(), accountSecret) {
							t.Errorf("the error shows the group id: %v", err)
						}
					}
					if withBad && tc.noHeader {
						bad()
					}
					if err := w.WriteHeader(header); err != nil {
						return err
					}
					if err := w.WriteAccount(good); err != nil {
						return err
					}
					if withBad && !tc.noHeader {
						bad()
					}
					if err := w.WriteAccount(next); err != nil {
						return err
					}
					return w.Close()
				}
				if err := run(&got, true); err != nil {
					t.Fatalf("with the bad call: %v", err)
				}
				if err := run(&want, false); err != nil {
					t.Fatalf("without the bad call: %v", err)
				}
				if !bytes.Equal(got.Bytes(), want.Bytes()) {
					t.Errorf("the refused call changed the output:\n got %q\nwant %q", got.Bytes(), want.Bytes())
				}
				if p := read(t, f, got.Bytes()); len(p.Accounts) != 2 || p.Accounts[1] != next {
					t.Errorf("read back accounts %+v; want the good one and %+v", p.Accounts, next)
				}
			})
		}
	}
	// A package with a repeated group id is refused by Write.
	p := richPackage()
	p.Accounts = append(p.Accounts, profile.AccountLink{GroupID: "acme"})
	for _, f := range formats {
		if err := export.Write(io.Discard, f, p); !errors.Is(err, export.ErrInvalid) || !strings.Contains(err.Error(), "group_id appears twice") {
			t.Errorf("%v: Write with a repeated group id = %v; want ErrInvalid saying it appears twice", f, err)
		}
	}
}

// TestWriteHeaderRefusesAccounts: a header with accounts in its metadata (a
// section of their own) is refused with ErrInvalid, writing nothing; and so
// is a package holding them there.
func TestWriteHeaderRefusesAccounts(t *testing.T) {
	bad := header
	bad.Metadata.Accounts = []profile.AccountLink{{GroupID: "acme", FirstLinked: t0}}
	for _, f := range formats {
		t.Run(f.String(), func(t *testing.T) {
			var got, want bytes.Buffer
			w, err := export.NewWriter(&got, f)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.WriteHeader(bad); !errors.Is(err, export.ErrInvalid) ||
				!strings.Contains(err.Error(), "Metadata.Accounts must be empty: accounts are a section of their own, written with WriteAccount") {
				t.Errorf("WriteHeader = %v; want ErrInvalid naming Metadata.Accounts", err)
			}
			if err := w.WriteHeader(header); err != nil {
				t.Fatalf("a good header after the refused one: %v", err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := export.Write(&want, f, &export.Package{Schema: export.SchemaVersion, GeneratedAt: header.GeneratedAt,
				RequestID: header.RequestID, Profile: profile.Profile{ID: header.ProfileID}}); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Errorf("the refused header changed the output:\n got %q\nwant %q", got.Bytes(), want.Bytes())
			}
		})
	}
	p := richPackage()
	p.Profile.Metadata.Accounts = p.Accounts
	for _, f := range formats {
		if err := export.Write(io.Discard, f, p); !errors.Is(err, export.ErrInvalid) || !strings.Contains(err.Error(), "Metadata.Accounts") {
			t.Errorf("%v: Write with Metadata.Accounts = %v; want ErrInvalid naming it", f, err)
		}
	}
}

// TestScannerAccounts: a Scanner returns the accounts as records of their
// own, last before the end, and stops at a repeated group id after the
// records before it.
func TestScannerAccounts(t *testing.T) {
	p := richPackage()
	data := write(t, export.NDJSON, p)
	s := export.NewScanner(bytes.NewReader(data), 0)
	var kinds []export.RecordKind
	var got []profile.AccountLink
	for s.Scan() {
		r := s.Record()
		kinds = append(kinds, r.Kind)
		if r.Kind == export.KindAccount {
			got = append(got, r.Account)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p.Accounts, got); diff != "" {
		t.Errorf("account records (-written +scanned):\n%s", diff)
	}
	n := len(kinds)
	if n < 4 || kinds[n-4] != export.KindConsentChange || kinds[n-3] != export.KindAccount || kinds[n-1] != export.KindAccount {
		t.Errorf("record kinds %v; want the three accounts last, after the consent changes", kinds)
	}
	// A repeated group id: the first account is returned, then Err says why
	// the second is not.
	dup := strings.Replace(string(data), `"group_id":"initech"`, `"group_id":"acme"`, 1)
	s = export.NewScanner(strings.NewReader(dup), 0)
	var accounts int
	for s.Scan() {
		if s.Record().Kind == export.KindAccount {
			accounts++
		}
	}
	if err := s.Err(); accounts != 2 || !errors.Is(err, export.ErrInvalid) || !strings.Contains(err.Error(), "account group_id appears twice") {
		t.Errorf("a repeated group id: %d accounts scanned, Err = %v; want 2 and ErrInvalid saying it appears twice", accounts, err)
	}
}

// accountsSeed is the package the fuzz corpora's accounts seeds hold.
func accountsSeed() *export.Package {
	at := time.Date(2024, 5, 1, 12, 0, 0, 5, time.UTC)
	return &export.Package{
		Schema:      export.SchemaVersion,
		GeneratedAt: at,
		RequestID:   "r",
		Profile:     profile.Profile{ID: "use_1", Metadata: profile.Metadata{Version: 3}},
		ConsentHistory: []profile.ConsentChange{
			{MessageID: "c1", Type: "track", Timestamp: at, Preferences: map[string]bool{"Ads": true}},
		},
		Accounts: []profile.AccountLink{
			{GroupID: "acme", FirstLinked: at, LastLinked: at.Add(time.Hour)},
			{GroupID: "globex, \"x\"\n2", FirstLinked: at},
			{GroupID: "initech"},
		},
	}
}

// corpusBytes returns the []byte of a fuzz corpus file of one.
func corpusBytes(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	head, lit, ok := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if !ok || head != "go test fuzz v1" || !strings.HasPrefix(lit, "[]byte(") || !strings.HasSuffix(lit, ")") {
		t.Fatalf("%s: not a corpus file of one []byte", path)
	}
	data, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lit, "[]byte("), ")"))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(data)
}

// TestFuzzSeedsWithAccounts: each fuzz corpus has a seed with accounts that
// Read accepts, so the fuzzers start from accounts that read rather than
// from an early refusal.
func TestFuzzSeedsWithAccounts(t *testing.T) {
	for _, tc := range []struct {
		f    export.Format
		path string
	}{
		{export.JSON, "testdata/fuzz/FuzzReadJSON/accounts"},
		{export.NDJSON, "testdata/fuzz/FuzzReadNDJSON/accounts"},
		{export.CSV, "testdata/fuzz/FuzzReadCSV/accounts"},
	} {
		p, err := export.Read(bytes.NewReader(corpusBytes(t, tc.path)), tc.f)
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		if diff := cmp.Diff(accountsSeed(), p); diff != "" {
			t.Errorf("%s read (-want +got):\n%s", tc.path, diff)
		}
	}
}
