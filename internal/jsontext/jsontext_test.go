package jsontext

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"
)

func TestAppendValueDecodesAsWhatItEncoded(t *testing.T) {
	var e ValueEncoder
	for _, v := range []any{
		nil, true, false, 0.0, math.Copysign(0, -1), 1e21, 1e-7, 249.0, math.MaxFloat64, math.SmallestNonzeroFloat64,
		"", "plain", "quote\" back\\ nl\n tab\t cr\r bell\x07 del\x7f", "<html>&", "é ☃ 𝄞", "\u2028",
		[]any{}, []any{1.0, "a", nil, []any{map[string]any{}}},
		map[string]any{}, map[string]any{"k\"ey": map[string]any{"x": []any{false}}},
	} {
		b, ok := e.AppendValue(nil, v, 64)
		if !ok {
			t.Errorf("AppendValue(%#v) refused a canonical value", v)
			continue
		}
		var got any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Errorf("AppendValue(%#v) = %q, not JSON: %v", v, b, err)
			continue
		}
		if !reflect.DeepEqual(got, v) {
			t.Errorf("AppendValue(%#v) decodes as %#v", v, got)
		}
	}
	for _, v := range []any{math.NaN(), math.Inf(1), 3, "bad \xff utf-8", []any{struct{}{}}, map[string]any{"x": int64(1)}} {
		if b, ok := e.AppendValue(nil, v, 64); ok {
			t.Errorf("AppendValue(%#v) = %q; want it refused (not in canonical form)", v, b)
		}
	}
}

// FuzzAppendValue checks that AppendValue's text decodes as what it encoded,
// for any JSON value decoded as the Controller stores values.
// Unlike encoding/json, it refuses invalid UTF-8 rather than replace it, and
// encoding/json never decodes any.
func FuzzAppendValue(f *testing.F) {
	for _, s := range []string{`null`, `{"a":[1,2.5e300,"x\u0000y",{"b":null}]}`, `"\ud834\udd1e"`, `-0`, `[true,false]`} {
		f.Add([]byte(s))
	}
	var e ValueEncoder
	f.Fuzz(func(t *testing.T, data []byte) {
		var v any
		if json.Unmarshal(data, &v) != nil {
			return
		}
		b, ok := e.AppendValue(nil, v, 64)
		if !ok {
			t.Fatalf("AppendValue refused %q: what encoding/json decodes is always canonical", data)
		}
		var got any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("AppendValue(%q) = %q, not JSON: %v", data, b, err)
		}
		if !reflect.DeepEqual(got, v) {
			t.Fatalf("AppendValue(%q) = %q, decodes as %#v, want %#v", data, b, got, v)
		}
		unsorted := ValueEncoder{Unsorted: true}
		u, ok := unsorted.AppendValue(nil, v, 64)
		var back any
		if !ok || json.Unmarshal(u, &back) != nil || !reflect.DeepEqual(back, v) {
			t.Fatalf("AppendValue unsorted(%q) = %q, %v; decodes as %#v, want %#v", data, u, ok, back, v)
		}
	})
}
