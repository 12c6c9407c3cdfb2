package identity

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestNewID(t *testing.T) {
	long := strings.Repeat("v", MaxValueLength)
	longType := strings.Repeat("t", maxTypeLength)
	tests := []struct {
		name        string
		typ, value  string
		want        ID
		wantInvalid bool
	}{
		{name: "already normal", typ: "user_id", value: "42", want: ID{"user_id", "42"}},
		{name: "type lower-cased", typ: "USER_ID", value: "42", want: ID{"user_id", "42"}},
		{name: "type trimmed", typ: " \tEmail\n", value: "a@b.c", want: ID{"email", "a@b.c"}},
		{name: "value trimmed", typ: "user_id", value: "  u1 \r\n", want: ID{"user_id", "u1"}},
		{name: "value unicode space trimmed", typ: "user_id", value: "\u00a0u1\u2003", want: ID{"user_id", "u1"}},
		{name: "non-email value keeps its case", typ: "user_id", value: "AbC", want: ID{"user_id", "AbC"}},
		{name: "device id keeps its case", typ: "Android.ID", value: "AbC-1", want: ID{"android.id", "AbC-1"}},
		{name: "email lower-cased", typ: "email", value: "Ada@Example.COM", want: ID{"email", "ada@example.com"}},
		{name: "email type upper-cased too", typ: "EMAIL", value: " ADA@EXAMPLE.COM ", want: ID{"email", "ada@example.com"}},
		{name: "email non-ASCII lower-cased", typ: "email", value: "ÉLODIE@ÄÖÜ.DE", want: ID{"email", "élodie@äöü.de"}},
		{name: "email Greek and Cyrillic", typ: "email", value: "ΣΩ@ПРИМЕР.РФ", want: ID{"email", "σω@пример.рф"}},
		{name: "email already lower non-ASCII", typ: "email", value: "élodie@x.fr", want: ID{"email", "élodie@x.fr"}},
		{name: "value may hold colons", typ: "url", value: "http://x:8080/", want: ID{"url", "http://x:8080/"}},
		{name: "type allows digits dot dash underscore", typ: "a-b.c_9", value: "x", want: ID{"a-b.c_9", "x"}},
		{name: "value at the length limit", typ: "user_id", value: long, want: ID{"user_id", long}},
		{name: "value over the limit before trimming only", typ: "user_id", value: " " + long + " ", want: ID{"user_id", long}},
		{name: "type at the length limit", typ: longType, value: "x", want: ID{longType, "x"}},
		{name: "non-ASCII value", typ: "user_id", value: "日本", want: ID{"user_id", "日本"}},

		{name: "empty type", typ: "", value: "x", wantInvalid: true},
		{name: "blank type", typ: " \t", value: "x", wantInvalid: true},
		{name: "empty value", typ: "user_id", value: "", wantInvalid: true},
		{name: "blank value", typ: "user_id", value: " \t\n", wantInvalid: true},
		{name: "oversized value", typ: "user_id", value: long + "v", wantInvalid: true},
		{name: "oversized type", typ: longType + "t", value: "x", wantInvalid: true},
		{name: "non-UTF-8 value", typ: "user_id", value: "a\xffb", wantInvalid: true},
		{name: "truncated UTF-8 value", typ: "email", value: "a@b\xc3", wantInvalid: true},
		{name: "non-UTF-8 type", typ: "user\xff", value: "x", wantInvalid: true},
		{name: "space inside type", typ: "user id", value: "x", wantInvalid: true},
		{name: "colon in type", typ: "user:id", value: "x", wantInvalid: true},
		{name: "slash in type", typ: "user/id", value: "x", wantInvalid: true},
		{name: "non-ASCII type", typ: "émail", value: "x", wantInvalid: true},
		{name: "NUL in type", typ: "user\x00id", value: "x", wantInvalid: true},
		// An email that lower-cases to more than MaxValueLength bytes (U+023A is 2
		// bytes, its lower case U+2C65 is 3) must be refused, not stored oversized.
		{name: "email growing past the limit when lower-cased", typ: "email", value: strings.Repeat("Ⱥ", MaxValueLength/2), wantInvalid: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NewID(tt.typ, tt.value)
			if tt.wantInvalid {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("NewID(%.40q, %.40q) = %.60v, %v; want an error matching ErrInvalid", tt.typ, tt.value, got, err)
				}
				if !got.IsZero() {
					t.Errorf("NewID returned %v beside its error, want the zero ID", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewID(%q, %q): %v", tt.typ, tt.value, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("NewID(%q, %q) mismatch (-want +got):\n%s", tt.typ, tt.value, diff)
			}
			// Normalize agrees with NewID and is idempotent.
			again, err := got.Normalize()
			if err != nil {
				t.Fatalf("Normalize of a normalised ID: %v", err)
			}
			if diff := cmp.Diff(got, again); diff != "" {
				t.Errorf("Normalize not idempotent (-first +second):\n%s", diff)
			}
			viaStruct, err := ID{Type: tt.typ, Value: tt.value}.Normalize()
			if err != nil || viaStruct != got {
				t.Errorf("ID{%q, %q}.Normalize() = %v, %v; want %v", tt.typ, tt.value, viaStruct, err, got)
			}
		})
	}
}

// An email within the byte limit that lower-cases to a longer one that still fits
// is accepted lower-cased.
func TestNewIDEmailGrowthWithinLimit(t *testing.T) {
	value := strings.Repeat("Ⱥ", 100)
	got, err := NewID(TypeEmail, value)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Repeat("ⱥ", 100); got.Value != want {
		t.Errorf("value = %q, want %q", got.Value, want)
	}
	// The same value under a type that is not lower-cased is kept as is.
	got, err = NewID(TypeUserID, strings.Repeat("Ⱥ", MaxValueLength/2))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Value) != MaxValueLength {
		t.Errorf("user_id value is %d bytes, want %d", len(got.Value), MaxValueLength)
	}
}

// checkParse runs parse (named name in messages) on in and checks the error
// contract ParseID and ParseProfileID share: an invalid input fails with an
// error matching ErrInvalid and yields the zero value, a valid one parses
// without error. It reports whether in parsed, for the caller to check got.
func checkParse[T comparable](t *testing.T, name string, parse func(string) (T, error), in string, wantInvalid bool) (got T, ok bool) {
	t.Helper()
	got, err := parse(in)
	if wantInvalid {
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("%s(%q) = %#v, %v; want an error matching ErrInvalid", name, in, got, err)
		}
		var zero T
		if got != zero {
			t.Errorf("%s returned %#v beside its error, want the zero value", name, got)
		}
		return got, false
	}
	if err != nil {
		t.Fatalf("%s(%q): %v", name, in, err)
	}
	return got, true
}

func TestParseID(t *testing.T) {
	tests := []struct {
		in          string
		want        ID
		wantInvalid bool
	}{
		{in: "email:A@B.C", want: ID{"email", "a@b.c"}},
		{in: "user_id:42", want: ID{"user_id", "42"}},
		{in: " USER_ID : 42 ", want: ID{"user_id", "42"}},
		{in: "a:b:c", want: ID{"a", "b:c"}},
		{in: "url:https://example.com:443/x", want: ID{"url", "https://example.com:443/x"}},
		{in: "user_id::", want: ID{"user_id", ":"}},
		{in: "ios.id:ABC", want: ID{"ios.id", "ABC"}},

		{in: "", wantInvalid: true},
		{in: "email", wantInvalid: true},
		{in: ":x", wantInvalid: true},
		{in: "user_id:", wantInvalid: true},
		{in: "user_id:   ", wantInvalid: true},
		{in: "user id:x", wantInvalid: true},
		{in: "\xff:x", wantInvalid: true},
		{in: "user_id:\xff", wantInvalid: true},
		{in: "user_id:" + strings.Repeat("x", MaxValueLength+1), wantInvalid: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := checkParse(t, "ParseID", ParseID, tt.in, tt.wantInvalid)
			if !ok {
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseID(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestIDString(t *testing.T) {
	tests := []struct {
		id   ID
		want string
	}{
		{ID{"email", "a@b.c"}, "email:a@b.c"},
		{ID{"user_id", "a:b"}, "user_id:a:b"},
		{ID{"url", "http://x:1/"}, "url:http://x:1/"},
		{ID{"user_id", "日本"}, "user_id:日本"},
		{ID{"ios.id", strings.Repeat("z", MaxValueLength)}, "ios.id:" + strings.Repeat("z", MaxValueLength)},
	}
	for _, tt := range tests {
		if got := tt.id.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.id, got, tt.want)
		}
		back, err := ParseID(tt.id.String())
		if err != nil {
			t.Errorf("ParseID(%q): %v", tt.id.String(), err)
			continue
		}
		if diff := cmp.Diff(tt.id, back); diff != "" {
			t.Errorf("String/ParseID round trip mismatch (-want +got):\n%s", diff)
		}
	}
}

func TestIDIsZero(t *testing.T) {
	tests := []struct {
		id   ID
		want bool
	}{
		{ID{}, true},
		{ID{Type: "email"}, false},
		{ID{Value: "x"}, false},
		{ID{"email", "x"}, false},
	}
	for _, tt := range tests {
		if got := tt.id.IsZero(); got != tt.want {
			t.Errorf("%#v.IsZero() = %v, want %v", tt.id, got, tt.want)
		}
	}
}

// profileIDMillis decodes the creation time in milliseconds from a ProfileID.
func profileIDMillis(t *testing.T, pid ProfileID) int64 {
	t.Helper()
	b, err := profileEncoding.DecodeString(string(pid[len(ProfilePrefix):]))
	if err != nil || len(b) != 16 {
		t.Fatalf("decoding %q: %d bytes, %v", pid, len(b), err)
	}
	return int64(binary.BigEndian.Uint64(b[:8]) >> 16)
}

func TestNewProfileID(t *testing.T) {
	// Start past every id this process made so far, so the time part is fresh.
	lastID.Lock()
	base := time.UnixMilli(max(time.Now().UnixMilli(), int64(lastID.ms))).Add(time.Hour).Truncate(time.Millisecond)
	lastID.Unlock()

	tests := []struct {
		name     string
		at       time.Time
		wantTime time.Time // the creation time the id carries
	}{
		{"fresh", base, base},
		{"one millisecond later", base.Add(time.Millisecond), base.Add(time.Millisecond)},
		{"same millisecond", base.Add(time.Millisecond + time.Microsecond), base.Add(time.Millisecond)},
		{"same instant again", base.Add(time.Millisecond), base.Add(time.Millisecond)},
		{"one second later", base.Add(time.Second), base.Add(time.Second)},
		{"clock stepped back", base, base.Add(time.Second)},
		{"clock stepped back a year", base.AddDate(-1, 0, 0), base.Add(time.Second)},
		{"one minute later", base.Add(time.Minute), base.Add(time.Minute)},
	}
	var prev ProfileID
	for _, tt := range tests {
		pid := NewProfileID(tt.at)
		if !strings.HasPrefix(string(pid), ProfilePrefix) {
			t.Errorf("%s: NewProfileID = %q, want prefix %q", tt.name, pid, ProfilePrefix)
		}
		if len(pid) != 30 {
			t.Errorf("%s: NewProfileID = %q is %d characters, want 30", tt.name, pid, len(pid))
		}
		if got, err := ParseProfileID(string(pid)); err != nil || got != pid {
			t.Errorf("%s: ParseProfileID(%q) = %q, %v; want it back", tt.name, pid, got, err)
		}
		if got, want := profileIDMillis(t, pid), tt.wantTime.UnixMilli(); got != want {
			t.Errorf("%s: id %s carries time %v, want %v", tt.name, pid, time.UnixMilli(got).UTC(), time.UnixMilli(want).UTC())
		}
		if pid <= prev {
			t.Errorf("%s: id %s does not sort after the previous one %s", tt.name, pid, prev)
		}
		prev = pid
	}

	// Many ids of one millisecond: all distinct and strictly increasing.
	at := base.Add(time.Hour)
	ids := make([]ProfileID, 1000)
	for i := range ids {
		ids[i] = NewProfileID(at)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i-1] >= ids[i] {
			t.Fatalf("ids of one millisecond not strictly increasing: %s then %s", ids[i-1], ids[i])
		}
	}
	if !strings.HasPrefix(string(ids[len(ids)-1]), string(ids[0][:len(ProfilePrefix)+9])) {
		// 48 bits of time fill the first 9 base32 characters and 3 bits of the 10th.
		t.Errorf("ids of the same millisecond differ in their time part: %s and %s", ids[0], ids[len(ids)-1])
	}
}

// NewProfileID is safe for concurrent use and never hands out an id twice.
func TestNewProfileIDConcurrent(t *testing.T) {
	const goroutines, each = 8, 500
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	results := make([][]ProfileID, goroutines)
	concurrently(t, goroutines, func(g int) error {
		for range each {
			results[g] = append(results[g], NewProfileID(at))
		}
		return nil
	})
	seen := map[ProfileID]bool{}
	for _, ids := range results {
		if !slices.IsSorted(ids) {
			t.Errorf("ids of one goroutine are not increasing")
		}
		for _, pid := range ids {
			if seen[pid] {
				t.Fatalf("NewProfileID returned %s twice", pid)
			}
			seen[pid] = true
		}
	}
	if len(seen) != goroutines*each {
		t.Errorf("%d distinct ids, want %d", len(seen), goroutines*each)
	}
}

func TestParseProfileID(t *testing.T) {
	valid := string(NewProfileID(time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)))
	body := valid[len(ProfilePrefix):]
	tests := []struct {
		name, in    string
		wantInvalid bool
	}{
		{name: "new id", in: valid},
		{name: "all zeros", in: "use_" + strings.Repeat("0", 26)},
		{name: "highest canonical", in: "use_" + strings.Repeat("z", 25) + "w"},

		{name: "empty", in: "", wantInvalid: true},
		{name: "prefix only", in: "use_", wantInvalid: true},
		{name: "no prefix", in: body + "0000", wantInvalid: true},
		{name: "wrong prefix", in: "usr_" + body, wantInvalid: true},
		{name: "upper-case prefix", in: "USE_" + body, wantInvalid: true},
		{name: "upper-case body", in: "use_" + strings.ToUpper(strings.Repeat("a", 26)), wantInvalid: true},
		{name: "too short", in: valid[:29], wantInvalid: true},
		{name: "too long", in: valid + "0", wantInvalid: true},
		{name: "letter i not in the alphabet", in: "use_" + strings.Repeat("i", 26), wantInvalid: true},
		{name: "letter u not in the alphabet", in: "use_" + strings.Repeat("0", 25) + "u", wantInvalid: true},
		{name: "space", in: "use_" + strings.Repeat("0", 25) + " ", wantInvalid: true},
		{name: "padding", in: "use_" + strings.Repeat("0", 25) + "=", wantInvalid: true},
		{name: "non-UTF-8", in: "use_" + strings.Repeat("0", 25) + "\xff", wantInvalid: true},
		// The base32 decoder skips CR and LF, so 24 characters and a line break
		// decode to 15 bytes; such an id must not pass.
		{name: "CRLF inside", in: "use_" + strings.Repeat("0", 24) + "\r\n", wantInvalid: true},
		{name: "LF inside", in: "use_" + strings.Repeat("0", 12) + "\n" + strings.Repeat("0", 12) + "\n", wantInvalid: true},
		// The last character carries 3 bits of data and 2 of padding; a set
		// padding bit makes a second spelling of the same id.
		{name: "non-canonical last character", in: "use_" + strings.Repeat("0", 25) + "1", wantInvalid: true},
		{name: "profile id of another shape", in: "use_123", wantInvalid: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := checkParse(t, "ParseProfileID", ParseProfileID, tt.in, tt.wantInvalid)
			if !ok {
				return
			}
			if string(got) != tt.in {
				t.Errorf("ParseProfileID(%q) = %q", tt.in, got)
			}
		})
	}
}

// Every rune the default types and the error paths rely on is handled as bytes;
// make sure the checks agree with utf8 on what a valid value is.
func TestNewIDRejectsEveryInvalidUTF8Byte(t *testing.T) {
	for b := 0x80; b <= 0xff; b++ {
		s := "x" + string([]byte{byte(b)}) + "y"
		_, err := NewID(TypeUserID, s)
		if utf8.ValidString(s) {
			t.Fatalf("test bug: %q is valid UTF-8", s)
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("NewID(user_id, %q) = %v, want ErrInvalid", s, err)
		}
	}
}

// Normalize allocates only when something has to change.
func TestNormalizeAllocations(t *testing.T) {
	tests := []struct {
		id   ID
		want float64
	}{
		{ID{"user_id", "u1"}, 0},
		{ID{"email", "ada@example.com"}, 0},
		{ID{" user_id ", " u1 "}, 0}, // trimming re-slices
		{ID{"email", "Ada@example.com"}, 1},
	}
	for _, tt := range tests {
		var err error
		got := testing.AllocsPerRun(100, func() { _, err = tt.id.Normalize() })
		if err != nil {
			t.Fatalf("Normalize(%v): %v", tt.id, err)
		}
		if got != tt.want {
			t.Errorf("Normalize(%#v) makes %v allocations, want %v", tt.id, got, tt.want)
		}
	}
}
