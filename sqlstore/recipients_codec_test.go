package sqlstore

import (
	"database/sql"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy/profile"
)

// checkRecipients fails unless encodeRecipients refuses what encoding/json
// refuses, and otherwise writes what encoding/json reads back as rs, and
// decodeRecipients reads back as encoding/json does.
func checkRecipients(t *testing.T, rs []profile.Recipient) {
	t.Helper()
	got, err := encodeRecipients(rs)
	want, werr := json.Marshal(rs)
	if err != nil && strings.Contains(err.Error(), "<secret>") {
		t.Fatalf("encodeRecipients error %q quotes a name", err)
	}
	fromJSON, ok := sameAsEncodingJSON(t, "encodeRecipients", got, err, string(want), werr, nil, unmarshalled[[]profile.Recipient])
	if !ok {
		return
	}
	decoded, err := decodeRecipients(got)
	if err != nil || !reflect.DeepEqual(decoded, fromJSON) {
		t.Fatalf("decodeRecipients(%q) = %+v, %v; encoding/json reads %+v", got, decoded, err, fromJSON)
	}
}

// TestRecipientsCodec: recipients written and read by hand are what
// encoding/json writes and reads, nil and empty lists kept apart; a time
// encoding/json would not write is refused, and the error quotes no name.
func TestRecipientsCodec(t *testing.T) {
	at := time.Date(2026, 12, 7, 10, 0, 0, 123456789, time.UTC)
	for _, rs := range [][]profile.Recipient{
		nil,
		{},
		{{Name: "crm", FirstSent: at, LastSent: at.Add(time.Hour)}},
		{{Name: "q\"\\\n\x00<é>\xff", FirstSent: at.In(time.FixedZone("", -5*3600)), LastSent: at}, {Name: "", FirstSent: time.Time{}, LastSent: at}},
		{{Name: "<secret>", FirstSent: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), LastSent: at}},
		{{Name: "<secret>", FirstSent: at, LastSent: at.In(time.FixedZone("", 24*3600))}},
	} {
		checkRecipients(t, rs)
	}
	if _, err := encodeRecipients([]profile.Recipient{{Name: "crm", LastSent: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)}}); err == nil {
		t.Fatal("encodeRecipients wrote year -1")
	}
}

// TestDecodeRecipientsAsEncodingJSON: what is not in encodeRecipients' form
// (white space, another key order or case, escapes, unknown keys, null) is
// read as encoding/json reads it, and what it refuses is refused.
func TestDecodeRecipientsAsEncodingJSON(t *testing.T) {
	for _, text := range []string{
		`null`, `[]`, ` []`, `[ ]`,
		`[{"LastSent":"2026-12-07T10:00:00Z","Name":"crm","FirstSent":"2026-12-07T09:00:00Z"}]`,
		`[{"name":"crm","firstSent":"2026-12-07T09:00:00Z","lastSent":"2026-12-07T10:00:00Z"}]`,
		`[{"Name":"c\u0072m","FirstSent":"2026-12-07T09:00:00Z","LastSent":"2026-12-07T10:00:00Z"}]`,
		`[{"Name":"crm","FirstSent":"2026-12-07T09:00:00Z","LastSent":"2026-12-07T10:00:00Z","More":1}]`,
		`[{"Name":"crm","FirstSent":"2026-12-07T09:00:00Z","LastSent":"2026-12-07T10:00:00Z"}]x`,
		`[{"Name":"crm","FirstSent":"2026-12-07 09:00:00Z","LastSent":"2026-12-07T10:00:00Z"}]`,
		`[{"Name":"crm","FirstSent":"2026-12-07T09:00:00Z","LastSent":"2026-12-07T10:00:00Z"},]`,
		`[{"Name":"a\tb","FirstSent":"2026-12-07T09:00:00Z","LastSent":"2026-12-07T10:00:00Z"}]`,
		`[{"Name":"a` + "\xff" + `","FirstSent":"2026-12-07T09:00:00Z","LastSent":"2026-12-07T10:00:00Z"}]`,
		`[{"Name":"crm","FirstSent":"2026-12-07T09:00:00Z","LastSent":"2026-12-07T10:00:00Z"},{"Name":"b","FirstSent":"0001-01-01T00:00:00Z","LastSent":"2026-12-07T10:00:00+01:00"}]`,
	} {
		checkDecodeRecipients(t, []byte(text))
	}
}

// checkDecodeRecipients fails unless decodeRecipients reads text as
// encoding/json does.
func checkDecodeRecipients(t *testing.T, text []byte) {
	t.Helper()
	got, err := decodeRecipients(string(text))
	var want []profile.Recipient
	werr := json.Unmarshal(text, &want)
	if (err != nil) != (werr != nil) {
		t.Fatalf("decodeRecipients(%q) error %v; encoding/json's %v", text, err, werr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeRecipients(%q) = %+v; encoding/json reads %+v", text, got, want)
	}
}

// FuzzDecodeRecipients holds decodeRecipients to encoding/json's reading.
func FuzzDecodeRecipients(f *testing.F) {
	at := time.Date(2026, 12, 7, 10, 0, 0, 1, time.FixedZone("", 3600))
	for _, rs := range [][]profile.Recipient{{{Name: "crm", FirstSent: at, LastSent: at}}, {{Name: "a"}, {Name: "b\"", LastSent: at}}} {
		text, err := encodeRecipients(rs)
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(text))
	}
	f.Add([]byte(`[{"Name":"x","FirstSent":"2026-12-07T10:00:00\u005a","LastSent":"2026-12-07T10:00:00Z"}]`))
	f.Fuzz(checkDecodeRecipients)
}

// FuzzEncodeRecipients holds encodeRecipients to encoding/json's writing.
func FuzzEncodeRecipients(f *testing.F) {
	f.Add("crm", int64(0), int64(1), 0)
	f.Add("q\"\\\n\x00\xff", int64(-1<<62), int64(1<<62), 25*3600)
	f.Fuzz(func(t *testing.T, name string, first, last int64, offset int) {
		zone := time.FixedZone("", offset%(30*3600))
		checkRecipients(t, []profile.Recipient{{Name: name, FirstSent: time.Unix(0, first).In(zone), LastSent: time.Unix(last, 0)}, {Name: name}})
	})
}

// BenchmarkEncodeRecipients: a profile's recipients, written by hand.
func BenchmarkEncodeRecipients(b *testing.B) {
	at := time.Date(2026, 12, 7, 10, 0, 0, 123456789, time.UTC)
	rs := []profile.Recipient{{Name: "crm", FirstSent: at, LastSent: at}}
	b.ReportAllocs()
	for range b.N {
		if _, err := encodeRecipients(rs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeRecipientsReflecting: the same through encoding/json, its
// baseline (what the store did before).
func BenchmarkEncodeRecipientsReflecting(b *testing.B) {
	at := time.Date(2026, 12, 7, 10, 0, 0, 123456789, time.UTC)
	rs := []profile.Recipient{{Name: "crm", FirstSent: at, LastSent: at}}
	b.ReportAllocs()
	for range b.N {
		if _, err := json.Marshal(rs); err != nil {
			b.Fatal(err)
		}
	}
}

// TestStoredMetadataErrorsQuoteNothing: a profile's stored recipients,
// consent or account links that do not decode (a corrupted or hand-edited
// row) are refused without quoting what they hold; time.ParseError repeats
// the text it could not read, and the error was wrapped whole. From an
// adversarial review.
func TestStoredMetadataErrorsQuoteNothing(t *testing.T) {
	const at = `"2026-12-07T10:00:00Z"`
	for _, bad := range []string{`"<secret>"`, `"2026-12-07T09:00:00Z <secret>"`, `<secret>`, `{"<secret>":1}`} {
		for _, ms := range []metaScan{
			{recipients: sql.NullString{Valid: true, String: `[{"Name":"crm","FirstSent":` + bad + `,"LastSent":` + at + `}]`}},
			{recipients: sql.NullString{Valid: true, String: `[{"Name":` + bad + `}]`}},
			{consent: sql.NullString{Valid: true, String: `{"History":[{"At":` + bad + `}]}`}},
			{consent: sql.NullString{Valid: true, String: bad}},
			{accounts: sql.NullString{Valid: true, String: `[{"GroupID":"g","FirstLinked":` + bad + `}]`}},
		} {
			_, err := ms.metadata()
			if err == nil {
				continue // some of these are JSON encoding/json reads (an object for a string is not)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("stored metadata's error %q quotes what is stored", err)
			}
		}
	}
	ms := metaScan{recipients: sql.NullString{Valid: true, String: `[{"Name":"crm","FirstSent":"<secret>"}]`}}
	if _, err := ms.metadata(); err == nil {
		t.Fatal("recipients with a time that is not one decoded")
	}
}
