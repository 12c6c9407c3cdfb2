package jsontext

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
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

// FuzzAppendScalarsAsEncodingJSON: AppendString and AppendFloat write what
// encoding/json writes (strings without its HTML escapes), byte for byte,
// whatever fast path they take: plain ASCII a word at a time, whole numbers
// as integers.
func FuzzAppendScalarsAsEncodingJSON(f *testing.F) {
	f.Add("plain ascii, longer than eight bytes", 1512.0)
	f.Add("quote\" back\\ nl\n \x00 \x1f \x7f é \u2028 \xff", math.Copysign(0, -1))
	f.Add("0123456\"", 1e21)
	f.Add("01234567\\abcdefg", 9007199254740993.0)
	f.Add("", -1e-7)
	f.Fuzz(func(t *testing.T, s string, x float64) {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		got, valid := AppendString(nil, s)
		same := string(got) == string(bytes.TrimSuffix(want.Bytes(), []byte("\n")))
		if strings.ContainsAny(s, "\b\f") {
			// encoding/json writes these two as \b and \f, AppendString as
			// \u0008 and \u000c (as it always has): the same string.
			var back, wantBack string
			same = json.Unmarshal(got, &back) == nil && json.Unmarshal(want.Bytes(), &wantBack) == nil && back == wantBack
		}
		if !same || valid != utf8.ValidString(s) {
			t.Fatalf("AppendString(%q) = %s, %v; encoding/json writes %s", s, got, valid, want.Bytes())
		}
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return
		}
		wantF, err := json.Marshal(x)
		if err != nil {
			t.Fatal(err)
		}
		if gotF := AppendFloat(nil, x); string(gotF) != string(wantF) {
			t.Fatalf("AppendFloat(%v) = %s; encoding/json writes %s", x, gotF, wantF)
		}
	})
}
