package profile

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// jsonDepth returns how deeply v nests: 0 for a scalar or an empty container at
// the top, as NormalizeValue counts for MaxDepth.
func jsonDepth(v any, depth int) int {
	deepest := depth
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			deepest = max(deepest, jsonDepth(e, depth+1))
		}
	case []any:
		for _, e := range x {
			deepest = max(deepest, jsonDepth(e, depth+1))
		}
	}
	return deepest
}

// FuzzNormalizeValue checks that whatever encoding/json decodes is canonical (up
// to MaxDepth), and that the same document decoded with json.Number normalizes to
// the same value.
func FuzzNormalizeValue(f *testing.F) {
	for _, s := range []string{
		`null`, `true`, `0`, `-0`, `1.5e300`, `9007199254740993`, `-1e-320`,
		`"x"`, `"\ud800"`, `"\u00e9\n\t\""`, "\"\xff\xfe\"",
		`[]`, `{}`, `[1,"a",null,true,{"b":[]}]`, `{"a":{"b":{"c":[1,2,3]}},"":""}`,
		`{"a":1,"a":2}`, `{"\u0000":0}`,
		strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1),
		strings.Repeat("[", MaxDepth+2) + strings.Repeat("]", MaxDepth+2),
		strings.Repeat(`{"k":`, MaxDepth) + "1" + strings.Repeat("}", MaxDepth),
		strings.Repeat(`{"k":`, MaxDepth+1) + "1" + strings.Repeat("}", MaxDepth+1),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			t.Skip()
		}
		got, err := NormalizeValue("v", v)
		if jsonDepth(v, 0) > MaxDepth {
			var ve *ValueError
			if !errors.Is(err, ErrInvalid) || !errors.As(err, &ve) {
				t.Fatalf("NormalizeValue of a value nested deeper than %d = %v; want a *ValueError", MaxDepth, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("NormalizeValue of decoded JSON %q: %v", data, err)
		}
		if diff := diffValue(v, got); diff != "" {
			t.Fatalf("NormalizeValue changed decoded JSON %q (-in +out):\n%s", data, diff)
		}
		// An object checked and encoded in one walk: the same object, its
		// JSON decoding to it, the same budget spent.
		if m, isMap := v.(map[string]any); isMap {
			b1, b2 := MaxValueSize, MaxValueSize
			if _, err := NormalizeValueWithin("v", m, &b1); err != nil {
				t.Fatal(err)
			}
			om, text, err := EncodeObjectWithin("v", m, &b2)
			if err != nil || b1 != b2 || diffValue(got, om) != "" {
				t.Fatalf("EncodeObjectWithin(%q) = %#v, budget %d, %v; want %#v, budget %d", data, om, b2, err, got, b1)
			}
			b, bound := text.JSONFor(om)
			if back, err := DecodeValue(b); !bound || err != nil || diffValue(got, back) != "" {
				t.Fatalf("EncodeObjectWithin(%q) wrote %s (bound: %v), which decodes to %#v, %v", data, b, bound, back, err)
			}
		}

		// With json.Number, every number is kept exactly: the result must be
		// what DecodeValue reads, equal to the float64 decoding where no
		// number was rounded by it, and canonical.
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var n any
		if err := dec.Decode(&n); err != nil {
			t.Fatalf("decoding %q with UseNumber: %v, but Unmarshal accepted it", data, err)
		}
		got, err = NormalizeValue("v", n)
		if err != nil {
			t.Fatalf("NormalizeValue of %q decoded with UseNumber: %v", data, err)
		}
		exact, err := DecodeValue(data)
		if err != nil {
			t.Fatalf("DecodeValue(%q): %v, but Unmarshal accepted it", data, err)
		}
		if diff := diffValue(got, exact); diff != "" {
			t.Fatalf("DecodeValue(%q) differs from NormalizeValue of its UseNumber decoding (-normalized +decoded):\n%s", data, diff)
		}
		if again, err := NormalizeValue("v", exact); err != nil || diffValue(exact, again) != "" {
			t.Fatalf("DecodeValue(%q) = %#v is not canonical: %#v, %v", data, exact, again, err)
		}
		if !hasNumber(exact) {
			if diff := diffValue(v, exact); diff != "" {
				t.Fatalf("DecodeValue(%q) without an exact number differs from Unmarshal (-float64 +exact):\n%s", data, diff)
			}
		}
		// What is canonical encodes and decodes back the same.
		b, err := json.Marshal(exact)
		if err != nil {
			t.Fatalf("Marshal(%#v): %v", exact, err)
		}
		if back, err := DecodeValue(b); err != nil || diffValue(exact, back) != "" {
			t.Fatalf("DecodeValue(Marshal(%#v)) = %#v, %v", exact, back, err)
		}
	})
}

// FuzzDecodeCursor checks that DecodeCursor never panics, fails only with
// ErrInvalid, and that whatever it accepts re-encodes to an equal cursor.
func FuzzDecodeCursor(f *testing.F) {
	for _, e := range []Event{
		{MessageID: "m1", Timestamp: time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)},
		{MessageID: "", Timestamp: time.Unix(0, 0)},
		{MessageID: "ünï©ødé", Timestamp: time.Date(2300, 1, 1, 0, 0, 0, 1, time.UTC)},
		{MessageID: "x", Timestamp: time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC)},
		{MessageID: "zero"},
	} {
		f.Add(EncodeCursor(Asc, &e))
		f.Add(EncodeCursor(Desc, &e))
	}
	for _, s := range []string{"", "a", "ZA", "***", "ZAAAAAAAAAAAAAAAAA", "YQAAAAAAAAAAO5rKAP8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := DecodeCursor(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("DecodeCursor(%q): %v does not match ErrInvalid", s, err)
			}
			if c != (Cursor{}) {
				t.Fatalf("DecodeCursor(%q) = %+v with an error; want the zero Cursor", s, c)
			}
			return
		}
		if c.Sort != Asc && c.Sort != Desc {
			t.Fatalf("DecodeCursor(%q): sort %q", s, c.Sort)
		}
		if !utf8.ValidString(c.MessageID) {
			t.Fatalf("DecodeCursor(%q): message id %q is not UTF-8", s, c.MessageID)
		}
		if c.Timestamp.Location() != time.UTC {
			t.Fatalf("DecodeCursor(%q): timestamp %v is not UTC", s, c.Timestamp)
		}
		re := EncodeCursor(c.Sort, &Event{Timestamp: c.Timestamp, MessageID: c.MessageID})
		c2, err := DecodeCursor(re)
		if err != nil {
			t.Fatalf("DecodeCursor(%q) accepted, but its re-encoding %q fails: %v", s, re, err)
		}
		if diff := cmp.Diff(c, c2); diff != "" {
			t.Fatalf("cursor %q re-encoded as %q decodes differently (-first +second):\n%s", s, re, diff)
		}
		if again := EncodeCursor(c2.Sort, &Event{Timestamp: c2.Timestamp, MessageID: c2.MessageID}); again != re {
			t.Fatalf("re-encoding is not stable: %q then %q", re, again)
		}
		// An accepted cursor is accepted by a query of its own sort order.
		if _, qc, err := (EventQuery{Sort: c.Sort, Cursor: s}).Normalize(); err != nil || qc != c {
			t.Fatalf("Normalize with cursor %q = %+v, %v; want %+v", s, qc, err, c)
		}
	})
}

// hasNumber reports whether v holds a json.Number.
func hasNumber(v any) bool {
	switch x := v.(type) {
	case json.Number:
		return true
	case map[string]any:
		for _, e := range x {
			if hasNumber(e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if hasNumber(e) {
				return true
			}
		}
	}
	return false
}
