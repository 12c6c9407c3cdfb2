package identity

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseID: ParseID never panics; what it accepts is already normalised
// (Normalize is idempotent), within the documented bounds, and String() parses
// back to the same ID. What it refuses is an error matching ErrInvalid.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{
		"email:A@B.C",
		"user_id:",
		":x",
		"a:b:c",
		"user_id:\xff\xfe",
		" USER_ID : 42 ",
		"email:" + strings.Repeat("Ⱥ", MaxValueLength/2),
		"android.id:00000000-0000-0000-0000-000000000000",
		"\u212aey:v", // KELVIN SIGN lower-cases to ASCII k
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseID(%q) error %v does not match ErrInvalid", s, err)
			}
			if !id.IsZero() {
				t.Fatalf("ParseID(%q) returned %#v beside its error", s, id)
			}
			return
		}
		checkNormalised(t, id)
		if n, err := id.Normalize(); err != nil || n != id {
			t.Fatalf("Normalize not idempotent: ParseID(%q) = %#v, Normalize gives %#v, %v", s, id, n, err)
		}
		if n, err := NewID(id.Type, id.Value); err != nil || n != id {
			t.Fatalf("NewID(%q, %q) = %#v, %v; want it unchanged", id.Type, id.Value, n, err)
		}
		back, err := ParseID(id.String())
		if err != nil || back != id {
			t.Fatalf("ParseID(%q) = %#v, %v; want %#v", id.String(), back, err, id)
		}
	})
}

// checkNormalised checks the documented invariants of a normalised ID.
func checkNormalised(t *testing.T, id ID) {
	t.Helper()
	if id.Type == "" || len(id.Type) > maxTypeLength {
		t.Fatalf("type %q: empty or longer than %d", id.Type, maxTypeLength)
	}
	for i := 0; i < len(id.Type); i++ {
		c := id.Type[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			t.Fatalf("type %q has byte %q", id.Type, c)
		}
	}
	if id.Value == "" || len(id.Value) > MaxValueLength {
		t.Fatalf("value of %d bytes: empty or longer than %d", len(id.Value), MaxValueLength)
	}
	if !utf8.ValidString(id.Value) {
		t.Fatalf("value %q is not UTF-8", id.Value)
	}
	if strings.TrimSpace(id.Value) != id.Value {
		t.Fatalf("value %q is not trimmed", id.Value)
	}
	if id.Type == TypeEmail && strings.ToLower(id.Value) != id.Value {
		t.Fatalf("email %q is not lower-case", id.Value)
	}
}

// charsetPatterns are ^[class]*$ patterns that compileRules must recognise and
// match without the regexp engine.
var charsetPatterns = []string{
	`^[0-]*$`,          // Segment's suggestion
	`^[0-9a-f-]*$`,     // hex and dashes
	`^[^a-z]*$`,        // negated class: includes U+FFFD and every non-letter
	`(?i)^[a-c]*$`,     // case folding widens the class
	`^[\s.]*$`,         // Perl class inside
	`^[\p{Greek}_]*$`,  // Unicode class
	`\A[x\x{FFFD}]*\z`, // \A and \z are ^ and $ here; U+FFFD stands for invalid bytes
	`^[0-]*?$`,         // non-greedy star matches the same strings
}

// FuzzBlockedCharset: the charsetOnly fast path of a blocked pattern must agree
// with regexp.MatchString on every value, valid UTF-8 or not. It checks the fixed
// charsetPatterns and, when it compiles, the fuzzed pattern itself.
func FuzzBlockedCharset(f *testing.F) {
	f.Add(`^[0-]*$`, "00000000-0000-0000-0000-000000000000")
	f.Add(`^[0-]*$`, "0-0-1")
	f.Add(`^[ab]*$`, "")
	f.Add(`^[^0]*$`, "\xff\xfe")
	f.Add(`(?m)^[0-]*$`, "0\nx")
	f.Add(`^[0-]*$\n`, "0\n")
	f.Add(`(?i)^[k]*$`, "K\u212a")
	f.Fuzz(func(t *testing.T, pattern, value string) {
		for _, p := range charsetPatterns {
			checkCharset(t, p, value, true)
		}
		if pattern == "" || len(pattern) > 200 {
			return // rules refuse an empty pattern; keep the regexp compiler fast
		}
		if _, err := regexp.Compile(pattern); err == nil {
			checkCharset(t, pattern, value, false)
		}
	})
}

// checkCharset compares the compiled block for pattern with regexp.MatchString on
// value. With wantFast, the pattern must take the charsetOnly fast path.
func checkCharset(t *testing.T, pattern, value string, wantFast bool) {
	t.Helper()
	c, err := compileRules(Rules{
		Blocked:        []Block{{Pattern: pattern}},
		DefaultLimit:   Limit{Max: 1},
		MaxMerges:      1,
		MaxIdentifiers: 1,
	})
	if err != nil {
		t.Fatalf("compileRules with pattern %q: %v", pattern, err)
	}
	b := &c.blocks[0]
	if wantFast && b.charset == nil {
		t.Fatalf("pattern %q does not take the charset fast path", pattern)
	}
	got := b.matches(ID{Type: "t", Value: value})
	want := regexp.MustCompile(pattern).MatchString(value)
	if got != want {
		t.Fatalf("pattern %q on %q: block matches = %v (fast path %v), regexp.MatchString = %v", pattern, value, got, b.charset != nil, want)
	}
}
