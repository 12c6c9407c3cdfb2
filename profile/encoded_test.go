package profile

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/gdprkit/privacy/internal/benchdata"
)

// TestEncodeObjectWithin: one walk gives what NormalizeValueWithin and an
// encoding of its result give: the same object (m itself when canonical),
// JSON that decodes to it, the same budget spent, the same refusals.
func TestEncodeObjectWithin(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    map[string]any
	}{
		{"canonical", map[string]any{"ip": "203.0.113.9", "n": 1.5, "ok": true, "none": nil, "l": []any{"a", 2.0, map[string]any{"k": "v"}},
			"big": json.Number("9007199254740993"), "esc": "quote \" and \\ and \n and é"}},
		{"ints, normalised", map[string]any{"n": 3, "nested": map[string]any{"m": int64(1<<53 + 1)}}},
		{"typed nil, normalised", map[string]any{"m": map[string]any(nil), "s": []any(nil)}},
		{"empty", map[string]any{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b1, b2 := 10000, 10000
			want, err := NormalizeValueWithin("Context", tc.m, &b1)
			if err != nil {
				t.Fatal(err)
			}
			got, text, err := EncodeObjectWithin("Context", tc.m, &b2)
			if err != nil {
				t.Fatal(err)
			}
			if diffValue(want, got) != "" || b1 != b2 {
				t.Errorf("EncodeObjectWithin = %#v, budget %d; want %#v, %d", got, b2, want, b1)
			}
			b, ok := text.JSONFor(got)
			back, err := DecodeValue(b)
			if !ok || err != nil || diffValue(want, back) != "" {
				t.Errorf("its JSON %s (bound: %v) decodes to %#v, %v; want %#v", b, ok, back, err, want)
			}
		})
	}
	for _, bad := range []map[string]any{{"k": math.NaN()}, {"k\xff": 1.0}, {"k": "\xff"}, {"k": func() {}}, {"k": json.Number("1e")}} {
		b := 10000
		if _, _, err := EncodeObjectWithin("Context", bad, &b); !errors.Is(err, ErrInvalid) {
			t.Errorf("EncodeObjectWithin(%#v) = %v; want ErrInvalid", bad, err)
		}
	}
	b := 10
	if _, _, err := EncodeObjectWithin("Context", map[string]any{"k": strings.Repeat("x", 20)}, &b); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over the budget: %v; want ErrTooLarge", err)
	}
	if m, text, err := EncodeObjectWithin("Context", nil, &b); m != nil || !text.Equal(EncodedObject{}) || err != nil {
		t.Errorf("nil: %v, %q, %v", m, text, err)
	}
}

// TestEncodedObjectIsBoundToItsMap: an encoding gives its JSON for the map
// it encoded only, not for an equal one, nor nil; a large context does not
// make the next one keep its capacity.
func TestEncodedObjectIsBoundToItsMap(t *testing.T) {
	m := map[string]any{"ip": "203.0.113.9"}
	b := 1000
	out, enc, err := EncodeObjectWithin("Context", m, &b)
	if err != nil {
		t.Fatal(err)
	}
	if text, ok := enc.JSONFor(out); !ok || string(text) != `{"ip":"203.0.113.9"}` {
		t.Errorf("JSONFor(its map) = %s, %v", text, ok)
	}
	if _, ok := enc.JSONFor(map[string]any{"ip": "203.0.113.9"}); ok {
		t.Error("JSONFor an equal map gave the encoding")
	}
	if _, ok := enc.JSONFor(nil); ok {
		t.Error("JSONFor(nil) gave the encoding")
	}
	big := map[string]any{"s": strings.Repeat("\x00", 200_000)}
	b = MaxValueSize
	if _, _, err := EncodeObjectWithin("Context", big, &b); err != nil {
		t.Fatal(err)
	}
	b = 1000
	small, enc, _ := EncodeObjectWithin("Context", map[string]any{"k": "v"}, &b)
	if text, _ := enc.JSONFor(small); cap(text) > maxSizeHint+64 {
		t.Errorf("a small context's JSON keeps %d bytes of capacity after a large one", cap(text))
	}
}

// BenchmarkEncodeObjectWithin: checking and encoding a typical browser
// context (about 1 KB in nine maps), the collection path's cost of a
// message's context.
func BenchmarkEncodeObjectWithin(b *testing.B) {
	m := benchdata.BrowserContext()
	b.ReportAllocs()
	for range b.N {
		budget := MaxValueSize
		if _, _, err := EncodeObjectWithin("Context", m, &budget); err != nil {
			b.Fatal(err)
		}
	}
}
