package profile

import (
	"encoding/json"
	"math/big"
	"strconv"
	"strings"
	"testing"
)

// FuzzExactNumber checks exactNumber against encoding/json's grammar and
// math/big's exact arithmetic: it accepts exactly JSON number text, and
// gives a float64 exactly when the float64's shortest text is the same
// number, the text otherwise.
func FuzzExactNumber(f *testing.F) {
	for _, s := range []string{"0", "-0", "1", "0.1", "12.5e-1", "9007199254740992", "9007199254740993", "1e400", "-1e-400",
		"0.10000000000000000555", "1E+2", "1.", "01", "+1", "-", ".5", "1e", "00", "1e99999999999999999999", "123456789012345678901234567890"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, ok := exactNumber(s)
		var n json.Number
		isNumber := json.Unmarshal([]byte(s), &n) == nil && strings.TrimSpace(s) == s && s != "" && s[0] != '"'
		if ok != isNumber {
			t.Fatalf("exactNumber(%q) ok = %v; encoding/json says a number: %v", s, ok, isNumber)
		}
		if !ok {
			return
		}
		d, _ := parseDecimal(s)
		if i := strings.IndexAny(s, "eE"); d.exp > 1000 || d.exp < -1000 || len(s) > 200 || i >= 0 && len(s)-i > 5 {
			if d.digits == "" && v != 0.0 {
				t.Fatalf("exactNumber(%q) = %#v; want 0", s, v)
			}
			_, isText := v.(json.Number)
			if d.digits != "" && (d.exp+int64(len(d.digits)) > 400 || d.exp < -1200) && !isText {
				t.Fatalf("exactNumber(%q) = %#v; want the text, far past a float64", s, v)
			}
			return // too large for big.Rat in a fuzz run
		}
		want, ok1 := new(big.Rat).SetString(s)
		if !ok1 {
			t.Fatalf("big.Rat does not read %q", s)
		}
		switch x := v.(type) {
		case float64:
			got, _ := new(big.Rat).SetString(strconv.FormatFloat(x, 'g', -1, 64))
			if got.Cmp(want) != 0 {
				t.Fatalf("exactNumber(%q) = %v, whose text is another number", s, x)
			}
		case json.Number:
			if string(x) != s {
				t.Fatalf("exactNumber(%q) = %q; want the text as given", s, x)
			}
			if f, err := strconv.ParseFloat(s, 64); err == nil {
				if got, _ := new(big.Rat).SetString(strconv.FormatFloat(f, 'g', -1, 64)); got.Cmp(want) == 0 {
					t.Fatalf("exactNumber(%q) kept the text though %v holds it", s, f)
				}
			}
		default:
			t.Fatalf("exactNumber(%q) = %T", s, v)
		}
	})
}

func TestUnmarshalExact(t *testing.T) {
	var m map[string]any
	if err := UnmarshalExact([]byte(`{"big":9007199254740993,"small":1.5,"nested":[12345678901234567890,"x"]}`), &m); err != nil {
		t.Fatal(err)
	}
	if m["big"] != json.Number("9007199254740993") || m["small"] != 1.5 {
		t.Errorf("UnmarshalExact = %#v", m)
	}
	if l := m["nested"].([]any); l[0] != json.Number("12345678901234567890") || l[1] != "x" {
		t.Errorf("nested = %#v", l)
	}
	// Text without a long digit run takes the plain path, alike.
	var v any
	if err := UnmarshalExact([]byte(`[1, 2.5, "a"]`), &v); err != nil || v.([]any)[1] != 2.5 {
		t.Errorf("UnmarshalExact plain = %#v, %v", v, err)
	}
	if err := UnmarshalExact([]byte(`{"a":12345678901234567890} {}`), &v); err == nil {
		t.Error("UnmarshalExact took text after the value")
	}
	var wrong struct{ A any }
	if err := UnmarshalExact([]byte(`{"A":12345678901234567890}`), &wrong); err == nil {
		t.Error("UnmarshalExact into a struct, which it cannot make exact, succeeded")
	}
	if f, ok := NumberFloat(json.Number("9007199254740993")); !ok || f != 9007199254740992 {
		t.Errorf("NumberFloat = %v, %v", f, ok)
	}
	if _, ok := NumberFloat("1"); ok {
		t.Error("NumberFloat of a string")
	}
}
