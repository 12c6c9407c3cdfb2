package profile

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzFastPathAgrees: DecodeValue's fast path (plain encoding/json
// when mayRound says no number could round) decodes every JSON text as the
// exact path would.
func FuzzFastPathAgrees(f *testing.F) {
	for _, s := range []string{`[1.5,2e10,123456789012345]`, `{"a":1e-99,"b":0.000000000000001}`, `[123456789012345.6]`, `[9.99999999999999e22]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !json.Valid([]byte(s)) {
			return
		}
		fast, err := DecodeValue([]byte(s))
		if err != nil {
			return
		}
		dec := json.NewDecoder(bytes.NewReader([]byte(s)))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		slow, err := exactNumbers(v)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("DecodeValue(%s) = %#v; the exact path %#v", s, fast, slow)
		}
	})
}
