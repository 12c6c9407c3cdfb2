package export

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gdprkit/privacy/internal/jsontext"
	"github.com/gdprkit/privacy/profile"
)

// The encoders here append to a byte slice, so the Writer reuses one buffer and a
// record costs no allocation beyond sorting map keys. JSON output is what
// encoding/json writes with SetEscapeHTML(false): the same number and string
// forms, map keys sorted.

// appendStr is jsontext.AppendString for strings outside values, where invalid UTF-8 is
// replaced rather than refused.
func appendStr(b []byte, s string) []byte {
	b, _ = jsontext.AppendString(b, s)
	return b
}

// appendFloat appends f as encoding/json does: the shortest form that reads back
// exactly, with an exponent only for very small or large magnitudes.
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendTime appends t in UTC as RFC 3339 with nanoseconds, without quotes. It
// fails for years RFC 3339 cannot write, naming field.
func appendTime(b []byte, field string, t time.Time) ([]byte, error) {
	t = t.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return b, fmt.Errorf("%s: year %d is outside 0 to 9999, which RFC 3339 can write", field, y)
	}
	return t.AppendFormat(b, time.RFC3339Nano), nil
}

// parseTime reads what appendTime writes, accepting any RFC 3339 offset and
// returning UTC; the empty string is the zero time.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("a time of %d bytes is not RFC 3339", len(s))
	}
	t = t.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return time.Time{}, fmt.Errorf("a time in year %d in UTC, outside 0 to 9999", y)
	}
	return t, nil
}

// valueEncoder encodes trait values and event properties. It keeps one key
// buffer per nesting level, so sorting keys does not allocate once warm.
type valueEncoder struct {
	keys [][]string
}

// appendValue appends v as JSON when it is in profile.NormalizeValue's canonical
// form, which is all a store hands out; ok is false otherwise, and the caller
// falls back to NormalizeValue, which also names what is wrong.
func (e *valueEncoder) appendValue(b []byte, v any, depth int) (_ []byte, ok bool) {
	if depth > profile.MaxDepth {
		return b, false
	}
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), true
	case bool:
		return strconv.AppendBool(b, x), true
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return b, false
		}
		return appendFloat(b, x), true
	case string:
		return jsontext.AppendString(b, x)
	case []any:
		if x == nil {
			return append(b, "null"...), true
		}
		b = append(b, '[')
		for i, el := range x {
			if i > 0 {
				b = append(b, ',')
			}
			if b, ok = e.appendValue(b, el, depth+1); !ok {
				return b, false
			}
		}
		return append(b, ']'), true
	case map[string]any:
		if x == nil {
			return append(b, "null"...), true
		}
		if len(e.keys) <= depth {
			e.keys = append(e.keys, make([][]string, depth+1-len(e.keys))...)
		}
		keys := e.keys[depth][:0]
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		e.keys[depth] = keys
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			if b, ok = jsontext.AppendString(b, k); !ok {
				return b, false
			}
			b = append(b, ':')
			if b, ok = e.appendValue(b, x[k], depth+1); !ok {
				return b, false
			}
		}
		clear(keys) // let the strings go
		return append(b, '}'), true
	}
	return b, false
}

// encodeValue appends v as JSON. A value not in canonical form is normalised
// first; one NormalizeValue refuses fails with its error, which names path.
func (e *valueEncoder) encodeValue(b []byte, path string, v any) ([]byte, error) {
	mark := len(b)
	if out, ok := e.appendValue(b, v, 0); ok {
		return out, nil
	}
	n, err := profile.NormalizeValue(path, v)
	if err != nil {
		return b[:mark], err
	}
	out, ok := e.appendValue(b[:mark], n, 0)
	if !ok { // cannot happen: NormalizeValue returns canonical values
		return b[:mark], fmt.Errorf("%s: value %T cannot be encoded", path, n)
	}
	return out, nil
}

// appendCSV appends s as one CSV field, quoted when it must be (RFC 4180) or
// begins with white space (which some readers trim), with invalid UTF-8 bytes
// replaced by U+FFFD.
func appendCSV(b []byte, s string) []byte {
	quote := len(s) > 0 && (s[0] == ' ' || s[0] == '\t')
	ascii := true
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == ',' || c == '"' || c == '\r' || c == '\n':
			quote = true
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	valid := ascii || utf8.ValidString(s)
	if !quote && valid {
		return append(b, s...)
	}
	if quote {
		b = append(b, '"')
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c == '"' {
				b = append(b, '"')
			}
			b = append(b, c)
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = utf8.AppendRune(b, utf8.RuneError)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	if quote {
		b = append(b, '"')
	}
	return b
}

// appendCSVJSON appends JSON text as one CSV field. JSON text is valid UTF-8 and
// has no raw line breaks, so only quotes and commas call for quoting.
func appendCSVJSON(b, text []byte) []byte {
	if !bytes.ContainsAny(text, `",`) {
		return append(b, text...)
	}
	b = append(b, '"')
	for _, c := range text {
		if c == '"' {
			b = append(b, '"')
		}
		b = append(b, c)
	}
	return append(b, '"')
}
