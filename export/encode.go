package export

import (
	"bytes"
	"fmt"
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

// valueEncoder encodes trait values and event properties.
type valueEncoder struct{ jsontext.ValueEncoder }

// encodeValue appends v as JSON. A value not in canonical form is normalised
// first; one NormalizeValue refuses fails with its error, which names path.
func (e *valueEncoder) encodeValue(b []byte, path string, v any) ([]byte, error) {
	mark := len(b)
	if out, ok := e.AppendValue(b, v, profile.MaxDepth); ok {
		return out, nil
	}
	n, err := profile.NormalizeValue(path, v)
	if err != nil {
		return b[:mark], err
	}
	out, ok := e.AppendValue(b[:mark], n, profile.MaxDepth)
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
