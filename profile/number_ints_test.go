package profile

import (
	"encoding/json"
	"testing"
)

// TestGoIntegersKeptExactly: an int64 or uint64 beyond 2^53 that a
// float64 happens to hold (2^60, 2^63) is kept as that float64, whose JSON
// text (its shortest decimal, 1152921504606847000) is another integer; the
// same number given as JSON text is kept as a json.Number, exactly. The
// rule (a float64 only when its shortest decimal text is the same number)
// must not depend on how the number came in.
func TestGoIntegersKeptExactly(t *testing.T) {
	for _, tc := range []struct {
		in   any
		text string
	}{
		{int64(1 << 60), "1152921504606846976"},
		{int64(-1 << 62), "-4611686018427387904"},
		{uint64(1 << 63), "9223372036854775808"},
		{int(1<<53 + 2), "9007199254740994"}, // holds: its shortest text is itself
	} {
		got, err := NormalizeValue("n", tc.in)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := NormalizeValue("n", json.Number(tc.text))
		if got != want {
			t.Errorf("NormalizeValue(%T %s) = %#v; want %#v, as the same number in JSON text", tc.in, tc.text, got, want)
		}
		if b, _ := json.Marshal(got); string(b) != tc.text {
			t.Errorf("NormalizeValue(%T %s) encodes as %s: another number", tc.in, tc.text, b)
		}
	}
}
