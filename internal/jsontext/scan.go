package jsontext

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Scanner reads JSON text (RFC 8259) a token at a time, and whole values
// as encoding/json decodes them into an any: objects as map[string]any
// (a repeated key: the last wins), arrays as []any, strings with invalid
// UTF-8 and lone surrogates replaced by U+FFFD. It is written for the
// text this module stores and reads back (the outbox's bundles), where
// encoding/json's reflection cost as much as the values it built.
//
// Errors name the offset and what was wrong, never the text itself, which
// may be personal data.
type Scanner struct {
	b []byte
	i int

	// Number returns the value of a number's text, when it has 16 digits
	// or more or an exponent of three digits or more (a float64 may not
	// hold it exactly; shorter ones are parsed as float64, which holds
	// them). Nil: strconv.ParseFloat's, refused when out of its range,
	// as encoding/json does.
	Number func(text string) (any, bool)
	// MaxDepth bounds the nesting of a value Value reads; zero is
	// encoding/json's 10,000.
	MaxDepth int
}

// ErrSyntax is the error the Scanner returns for text that is not JSON, or
// not the JSON its caller wanted.
var ErrSyntax = errors.New("jsontext: invalid JSON")

// NewScanner returns a Scanner reading b, which it does not change or keep
// beyond its own use: the strings it returns are copies.
func NewScanner(b []byte) *Scanner { return &Scanner{b: b} }

func (s *Scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("%w at offset %d: "+format, append([]any{ErrSyntax, s.i}, args...)...)
}

func (s *Scanner) skipSpace() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// Offset returns how many bytes of the text have been read.
func (s *Scanner) Offset() int { return s.i }

// Peek returns the next byte that is not white space, 0 at the end.
func (s *Scanner) Peek() byte {
	s.skipSpace()
	if s.i == len(s.b) {
		return 0
	}
	return s.b[s.i]
}

// Consume reads c, the next byte that is not white space, and reports
// whether it was there; it reads nothing when it was not.
func (s *Scanner) Consume(c byte) bool {
	if s.Peek() == c && c != 0 {
		s.i++
		return true
	}
	return false
}

// Expect reads c, which must be the next byte that is not white space.
func (s *Scanner) Expect(c byte) error {
	if !s.Consume(c) {
		return s.errorf("want %q", c)
	}
	return nil
}

// End checks that nothing but white space is left.
func (s *Scanner) End() error {
	if s.Peek() != 0 || s.i != len(s.b) {
		return s.errorf("text after the value")
	}
	return nil
}

// Null reads a null, and reports whether the next value was one; it reads
// nothing when it was not.
func (s *Scanner) Null() bool {
	if s.Peek() == 'n' && len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "null" {
		s.i += 4
		return true
	}
	return false
}

// String reads a string.
func (s *Scanner) String() (string, error) {
	b, err := s.StringBytes()
	return string(b), err
}

// StringBytes reads a string and returns its bytes, which may be the
// scanned text's own (a string without escapes): for a key to compare or
// text to parse, which need no copy. They are not to be changed.
func (s *Scanner) StringBytes() ([]byte, error) {
	if s.Peek() != '"' {
		return nil, s.errorf("want a string")
	}
	s.i++
	start := s.i
	// The common case, a string without escapes or control bytes: found
	// eight bytes at a time, then byte by byte.
	rest := s.b[start:]
	n := plainPrefix(rest)
	for n < len(rest) && plainASCII[rest[n]] {
		n++
	}
	if n < len(rest) && rest[n] == '"' {
		s.i = start + n + 1
		return rest[:n:n], nil
	}
	return s.slowString(start, n)
}

// slowString reads the rest of a string that holds an escape, a control
// byte or a byte outside ASCII, from its plain prefix of n bytes.
func (s *Scanner) slowString(start, n int) ([]byte, error) {
	out := make([]byte, 0, n+16)
	out = append(out, s.b[start:start+n]...)
	i := start + n
	for i < len(s.b) {
		c := s.b[i]
		switch {
		case c == '"':
			s.i = i + 1
			return out, nil
		case c == '\\':
			if i+1 >= len(s.b) {
				s.i = i
				return nil, s.errorf("unterminated string")
			}
			e := s.b[i+1]
			switch e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r, ok := hex4(s.b, i+2)
				if !ok {
					s.i = i
					return nil, s.errorf("invalid \\u escape")
				}
				i += 6
				if utf16.IsSurrogate(r) {
					// A pair makes one rune; a lone half is U+FFFD, as
					// encoding/json reads it.
					if r2, ok := hex4(s.b, i+2); ok && i+1 < len(s.b) && s.b[i] == '\\' && s.b[i+1] == 'u' {
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							out = utf8.AppendRune(out, dec)
							i += 6
							continue
						}
					}
					r = utf8.RuneError
				}
				out = utf8.AppendRune(out, r)
				continue
			default:
				s.i = i
				return nil, s.errorf("invalid escape")
			}
			i += 2
		case c < 0x20:
			s.i = i
			return nil, s.errorf("control byte in a string")
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, size := utf8.DecodeRune(s.b[i:])
			if r == utf8.RuneError && size == 1 {
				out = utf8.AppendRune(out, utf8.RuneError)
			} else {
				out = append(out, s.b[i:i+size]...)
			}
			i += size
		}
	}
	s.i = i
	return nil, s.errorf("unterminated string")
}

// hex4 reads the four hex digits of a \u escape at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i < 0 || i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// number reads a number's text, and reports whether a float64 may not hold
// it exactly: 16 digits or more, or an exponent of 3 digits or more.
func (s *Scanner) number() (text string, long bool, err error) {
	s.skipSpace()
	b, start := s.b, s.i
	i := start
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := 0
	switch {
	case i < len(b) && b[i] == '0':
		i++
		digits++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
			digits++
		}
	default:
		return "", false, s.errorf("want a value")
	}
	if i < len(b) && b[i] == '.' {
		i++
		fs := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		if i == fs {
			s.i = i
			return "", false, s.errorf("invalid number")
		}
		digits += i - fs
	}
	expDigits := 0
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		es := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		if i == es {
			s.i = i
			return "", false, s.errorf("invalid number")
		}
		expDigits = i - es
	}
	s.i = i
	return string(b[start:i]), digits >= 16 || expDigits >= 3, nil
}

// Int reads a number that must be an integer within int's range, as
// encoding/json decodes one into an int.
func (s *Scanner) Int() (int, error) {
	text, _, err := s.number()
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(text)
	if err != nil {
		return 0, s.errorf("not an integer within range")
	}
	return n, nil
}

// Value reads any value.
func (s *Scanner) Value() (any, error) {
	limit := s.MaxDepth
	if limit <= 0 {
		limit = 10000
	}
	return s.value(limit)
}

func (s *Scanner) value(depthLeft int) (any, error) {
	switch c := s.Peek(); c {
	case '"':
		return s.String()
	case '{':
		if depthLeft == 0 {
			return nil, s.errorf("nested too deep")
		}
		s.i++
		m := make(map[string]any)
		if s.Consume('}') {
			return m, nil
		}
		for {
			k, err := s.String()
			if err != nil {
				return nil, err
			}
			if err := s.Expect(':'); err != nil {
				return nil, err
			}
			v, err := s.value(depthLeft - 1)
			if err != nil {
				return nil, err
			}
			m[k] = v
			if s.Consume(',') {
				continue
			}
			if err := s.Expect('}'); err != nil {
				return nil, err
			}
			return m, nil
		}
	case '[':
		if depthLeft == 0 {
			return nil, s.errorf("nested too deep")
		}
		s.i++
		l := []any{}
		if s.Consume(']') {
			return l, nil
		}
		for {
			v, err := s.value(depthLeft - 1)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
			if s.Consume(',') {
				continue
			}
			if err := s.Expect(']'); err != nil {
				return nil, err
			}
			return l, nil
		}
	case 't', 'f', 'n':
		for _, lit := range [...]struct {
			text string
			v    any
		}{{"true", true}, {"false", false}, {"null", nil}} {
			if len(s.b)-s.i >= len(lit.text) && string(s.b[s.i:s.i+len(lit.text)]) == lit.text {
				s.i += len(lit.text)
				return lit.v, nil
			}
		}
		return nil, s.errorf("want a value")
	default:
		text, long, err := s.number()
		if err != nil {
			return nil, err
		}
		if long && s.Number != nil {
			v, ok := s.Number(text)
			if !ok {
				return nil, s.errorf("invalid number")
			}
			return v, nil
		}
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return nil, s.errorf("number out of range")
		}
		return f, nil
	}
}
