package export

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gdprkit/privacy/internal/jsontext"
	"github.com/google/go-cmp/cmp"
)

// jsonEncode is encoding/json's output without HTML escaping, which the value
// encoder must match byte for byte.
func jsonEncode(t *testing.T, v any) string {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

var tricky = []string{
	"", "plain", `quote " and \ backslash`, "line\nbreak\r\n\ttab", "\x00\x01\x1f\x7f",
	"<b>&amp;</b>", "Zürich – ✓ 😀", "\u2028\u2029", "bad \xff byte", "\xed\xa0\x80 surrogate", "a\xc3",
}

func TestAppendValueMatchesEncodingJSON(t *testing.T) {
	values := []any{
		nil, true, false, 0.0, math.Copysign(0, -1), 1.0, -1.5, 1e20, 1e21, 123456789.123, 1e-6, 1e-7, -2.5e-9,
		math.MaxFloat64, math.SmallestNonzeroFloat64, float64(1 << 53), 0.1 + 0.2,
		[]any{}, map[string]any{}, []any{1.0, "a", nil, []any{true}},
		map[string]any{"b": 1.0, "a": map[string]any{"z": []any{}, "y": nil}, "": "empty key", "é": 2.0},
	}
	for _, s := range tricky {
		values = append(values, s, map[string]any{s: s})
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		values = append(values, math.Float64frombits(r.Uint64()), r.NormFloat64()*math.Pow(10, float64(r.IntN(60)-30)))
	}
	var e valueEncoder
	for _, v := range values {
		if f, ok := v.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
			continue
		}
		got, err := e.encodeValue(nil, "v", v)
		if invalid := !utf8Valid(fmt.Sprint(v)); invalid || err != nil {
			// Values must be UTF-8, as profile.NormalizeValue has them;
			// encoding/json would replace the bytes instead.
			if !invalid || err == nil || !strings.Contains(err.Error(), "UTF-8") {
				t.Errorf("encodeValue(%#v) = %s, %v", v, got, err)
			}
			continue
		}
		if want := jsonEncode(t, v); string(got) != want {
			t.Errorf("encodeValue(%#v) = %s; encoding/json writes %s", v, got, want)
		}
	}
}

func utf8Valid(s string) bool { return utf8.ValidString(s) }

// replaceInvalid replaces each invalid UTF-8 byte of s by U+FFFD.
func replaceInvalid(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// TestAppendStringReplaces: outside values, invalid UTF-8 is replaced as
// encoding/json replaces it.
func TestAppendStringReplaces(t *testing.T) {
	for _, s := range tricky {
		got, valid := jsontext.AppendString(nil, s)
		if want := jsonEncode(t, s); string(got) != want {
			t.Errorf("jsontext.AppendString(%q) = %s; encoding/json writes %s", s, got, want)
		}
		if valid != utf8Valid(s) {
			t.Errorf("jsontext.AppendString(%q) says valid = %v", s, valid)
		}
	}
}

// TestCSVFieldRoundTrip: every string, written as CSV fields, reads back
// exactly, CR LF inside a field included; invalid UTF-8 reads back replaced.
func TestCSVFieldRoundTrip(t *testing.T) {
	fields := append([]string{" lead", "trail ", ",", `"`, `""`, "a,b", "\r", "\n", "x\r\ny"}, tricky...)
	var b []byte
	for i, s := range fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendCSV(b, s)
	}
	b = append(b, '\n')
	b = appendCSVJSON(b, []byte(`{"a":"b,c"}`))
	b = append(b, ",\n"...)
	b = append(b, `""`+"\n"...) // a lone empty field, as WriteAudience writes it
	p := &csvParser{r: bufio.NewReader(bytes.NewReader(b)), line: 1}
	var got [][]string
	for {
		rec, _, err := p.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("next: %v in %q", err, b)
		}
		got = append(got, append([]string(nil), rec...))
	}
	want := make([]string, len(fields))
	for i, s := range fields {
		want[i] = replaceInvalid(s)
	}
	if diff := cmp.Diff([][]string{want, {`{"a":"b,c"}`, ""}, {""}}, got); diff != "" {
		t.Errorf("fields read back differ (-want +got):\n%s\nfrom %q", diff, b)
	}
	if p.line != 3+strings.Count(strings.Join(fields, ""), "\n")+1 {
		t.Errorf("line = %d after %q", p.line, b)
	}
}
