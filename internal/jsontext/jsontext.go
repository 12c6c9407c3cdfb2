package jsontext

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// plainASCII tells the bytes a JSON string holds as they are: printable
// ASCII but the quote and the backslash.
var plainASCII = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// Eight bytes at once, for plainPrefix.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plainPrefix returns the length of s's longest prefix, in whole words of
// eight bytes, that is plain ASCII (plainASCII): a context's kilobyte of
// URLs and user agents is checked a word at a time rather than a byte.
func plainPrefix[T string | []byte](s T) int {
	n := 0
	for ; len(s) >= 8; s = s[8:] {
		// A little-endian load, which the compiler makes one instruction.
		w := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
			uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
		// A byte's high bit set in any of these: a control byte (below
		// 0x20), a quote, a backslash or a non-ASCII byte. The tests are
		// exact for the word as a whole ("has a zero byte" and "has a byte
		// below n" of Bit Twiddling Hacks), which is all this needs.
		quote, backslash := w^('"'*ones), w^('\\'*ones)
		special := (w - 0x20*ones) | (quote-ones) & ^quote | (backslash-ones) & ^backslash
		if (special&^w|w)&highs != 0 {
			break
		}
		n += 8
	}
	return n
}

// AppendString appends s as a JSON string. Invalid UTF-8 bytes become U+FFFD,
// as encoding/json does; valid reports whether there were none.
func AppendString(b []byte, s string) (_ []byte, valid bool) {
	valid = true
	b = append(b, '"')
	// Most strings are printable ASCII that needs no escape: found eight
	// bytes at a time, then by a table, and copied whole.
	i := plainPrefix(s)
	for i < len(s) && plainASCII[s[i]] {
		i++
	}
	if i == len(s) {
		b = append(b, s...)
		return append(b, '"'), true
	}
	start := 0
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			valid = false
			i++
			start = i
			continue
		}
		// U+2028 and U+2029 end lines in JavaScript; encoding/json escapes them.
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"'), valid
}

// AppendFloat appends f as encoding/json does: the shortest form that reads back
// exactly, with an exponent only for very small or large magnitudes.
func AppendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	// Whole numbers below 2^53 (a screen's width, a count) are written as
	// the integers they are, as strconv would write them, without its
	// shortest-digits search. Negative zero is left to strconv ("-0").
	if abs < 1<<53 && f == math.Trunc(f) && (f != 0 || !math.Signbit(f)) {
		return strconv.AppendInt(b, int64(f), 10)
	}
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

// ValueEncoder encodes trait values and event properties, map keys sorted. It
// keeps one key buffer per nesting level, so sorting keys does not allocate
// once warm; the zero value is ready, and one is not safe for concurrent use.
type ValueEncoder struct {
	keys [][]string
	// Unsorted writes map keys in the map's order, which saves sorting them
	// where the text is only stored and read back.
	Unsorted bool
}

// Reset clears the key buffers, so that the encoder keeps no map key of a
// value it encoded (they may be personal data) once it is put away.
func (e *ValueEncoder) Reset() {
	for i := range e.keys {
		clear(e.keys[i][:cap(e.keys[i])])
	}
}

// AppendValue appends v as JSON when it is in profile.NormalizeValue's
// canonical form (nil, bool, finite float64, UTF-8 string, []any,
// map[string]any), nested at most maxDepth levels; ok is false otherwise,
// and the caller falls back to NormalizeValue, which also names what is
// wrong.
func (e *ValueEncoder) AppendValue(b []byte, v any, maxDepth int) (_ []byte, ok bool) {
	return e.appendValue(b, v, 0, maxDepth)
}

func (e *ValueEncoder) appendValue(b []byte, v any, depth, maxDepth int) (_ []byte, ok bool) {
	if depth > maxDepth {
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
		return AppendFloat(b, x), true
	case string:
		return AppendString(b, x)
	case json.Number: // canonical: JSON number text no float64 holds
		// A number starts with a minus or a digit and ends with a digit:
		// json.Valid takes white space around it, which encoding/json
		// refuses in a json.Number.
		if x == "" || !json.Valid([]byte(x)) || x[0] != '-' && (x[0] < '0' || x[0] > '9') || x[len(x)-1] < '0' || x[len(x)-1] > '9' {
			return b, false
		}
		return append(b, x...), true
	case []any:
		if x == nil {
			return append(b, "null"...), true
		}
		b = append(b, '[')
		for i, el := range x {
			if i > 0 {
				b = append(b, ',')
			}
			if b, ok = e.appendValue(b, el, depth+1, maxDepth); !ok {
				return b, false
			}
		}
		return append(b, ']'), true
	case map[string]any:
		if x == nil {
			return append(b, "null"...), true
		}
		if e.Unsorted {
			b = append(b, '{')
			first := true
			for k, v := range x {
				if !first {
					b = append(b, ',')
				}
				first = false
				if b, ok = AppendString(b, k); !ok {
					return b, false
				}
				b = append(b, ':')
				if b, ok = e.appendValue(b, v, depth+1, maxDepth); !ok {
					return b, false
				}
			}
			return append(b, '}'), true
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
			if b, ok = AppendString(b, k); !ok {
				return b, false
			}
			b = append(b, ':')
			if b, ok = e.appendValue(b, x[k], depth+1, maxDepth); !ok {
				return b, false
			}
		}
		clear(keys) // let the strings go
		return append(b, '}'), true
	}
	return b, false
}
