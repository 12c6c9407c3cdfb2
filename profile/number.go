package profile

// Numbers as Segment takes them: any JSON number. A number is kept as a
// float64 when the float64's shortest decimal text is the same number (every
// integer up to 2^53, 0.1, 1e300, ...); any other (an integer beyond 2^53
// that a float64 would round, a decimal with more digits than a float64
// holds, an exponent past its range) is kept exactly, as a json.Number
// holding its JSON text.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// ExactNumber returns the canonical form of the JSON number text s, as
// UnmarshalExact decodes it: a float64 when it holds s exactly, else
// json.Number(s). ok is false when s is not a JSON number. A decoder of
// its own (internal/jsontext's Scanner) takes it for numbers.
func ExactNumber(s string) (v any, ok bool) { return exactNumber(s) }

// exactNumber returns the canonical form of the JSON number text s: a
// float64 when it holds s exactly, else json.Number(s). ok is false when s
// is not a JSON number.
func exactNumber(s string) (v any, ok bool) {
	d, ok := parseDecimal(s)
	if !ok {
		return nil, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err == nil && !math.IsInf(f, 0) {
		if fd, _ := parseDecimal(strconv.FormatFloat(f, 'g', -1, 64)); fd == d {
			return f, true
		}
	}
	return json.Number(s), true
}

// intNumber is the canonical form of an integer, as exactNumber makes it
// of its decimal text: a float64 up to 2^53, and past it when the float64's
// text is the same number (1e300 is, 2^60 is not: a float64 writes it
// 1152921504606847000).
func intNumber(i int64) any {
	if -1<<53 <= i && i <= 1<<53 {
		return float64(i)
	}
	v, _ := exactNumber(strconv.FormatInt(i, 10))
	return v
}

func uintNumber(u uint64) any {
	if u <= 1<<53 {
		return float64(u)
	}
	v, _ := exactNumber(strconv.FormatUint(u, 10))
	return v
}

// IntegerText returns the decimal text of n, a canonical number, when it
// is an integer of at most 64 digits, however it was written
// ("1.5e1" and "15" alike), and whether it is one.
func IntegerText(n any) (string, bool) {
	var d decimal
	switch x := n.(type) {
	case float64:
		if x != math.Trunc(x) || math.IsInf(x, 0) {
			return "", false
		}
		d, _ = parseDecimal(strconv.FormatFloat(x, 'g', -1, 64))
	case json.Number:
		var ok bool
		if d, ok = parseDecimal(string(x)); !ok {
			return "", false
		}
	default:
		return "", false
	}
	if d.digits == "" {
		return "0", true
	}
	if d.exp < 0 || int64(len(d.digits))+d.exp > 64 {
		return "", false
	}
	s := d.digits + strings.Repeat("0", int(d.exp))
	if d.neg {
		s = "-" + s
	}
	return s, true
}

// canonicalNumber reports whether n is a number in canonical form: JSON
// number text that no float64 holds exactly.
func canonicalNumber(n json.Number) bool {
	v, ok := exactNumber(string(n))
	_, isNumber := v.(json.Number)
	return ok && isNumber
}

// decimal is a JSON number reduced to compare by value: its sign, its
// significant digits without leading or trailing zeros, and the exponent of
// the last of them. Zero is the empty digits, whatever its sign.
type decimal struct {
	neg    bool
	digits string
	exp    int64
}

// maxExponent bounds the exponents parseDecimal reads; past it a number is
// far beyond any float64, and only the exact text can hold it.
const maxExponent = 1 << 40

// parseDecimal parses JSON number text (RFC 8259's grammar) into a decimal,
// in time linear in its length whatever its exponent.
func parseDecimal(s string) (decimal, bool) {
	var d decimal
	i := 0
	if i < len(s) && s[i] == '-' {
		d.neg = true
		i++
	}
	start := i
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && '1' <= s[i] && s[i] <= '9':
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		return d, false
	}
	intPart := s[start:i]
	frac := ""
	if i < len(s) && s[i] == '.' {
		i++
		fs := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if i == fs {
			return d, false
		}
		frac = s[fs:i]
	}
	var exp int64
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		eneg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			eneg = s[i] == '-'
			i++
		}
		es := i
		for i < len(s) && isDigit(s[i]) {
			if exp < maxExponent {
				exp = exp*10 + int64(s[i]-'0')
			}
			i++
		}
		if i == es {
			return d, false
		}
		if eneg {
			exp = -exp
		}
	}
	if i != len(s) {
		return d, false
	}
	digits := strings.TrimLeft(intPart+frac, "0")
	exp -= int64(len(frac))
	trimmed := strings.TrimRight(digits, "0")
	exp += int64(len(digits) - len(trimmed))
	d.digits = trimmed
	d.exp = exp
	if d.digits == "" {
		d.neg, d.exp = false, 0
	}
	return d, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// numberFloat returns a canonical number as a float64, the nearest one for
// a json.Number: what an ordered comparison uses.
func numberFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil && !math.IsInf(f, 0) {
			return 0, false
		}
		return f, true
	}
	return 0, false
}

// NumberFloat returns v, a number of a canonical value (a float64 or a
// json.Number), as the nearest float64; ok is false for any other value.
func NumberFloat(v any) (f float64, ok bool) { return numberFloat(v) }

// DecodeValue decodes JSON text into a canonical value (see NormalizeValue):
// every number exactly as exactNumber keeps it, not rounded to a float64 as
// encoding/json decodes them. Stores use it to read back what they keep.
func DecodeValue(b []byte) (any, error) {
	var v any
	if err := UnmarshalExact(b, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// UnmarshalExact is json.Unmarshal into dst with every number in the maps
// and slices it decodes (into an any, or a map[string]any field, at any
// depth) kept exactly: a float64 when that holds it, else a json.Number.
// Text without a number a float64 could round (no run of 16 or more
// digits, no exponent of three digits) takes encoding/json's plain path.
func UnmarshalExact(b []byte, dst any) error {
	switch dst.(type) {
	case *any, *map[string]any, *[]any:
	default:
		return fmt.Errorf("profile: UnmarshalExact into %T: want *any, *map[string]any or *[]any", dst)
	}
	numbers, err := UnmarshalNumbers(b, dst)
	if err != nil || !numbers {
		return err
	}
	return exactNumbersIn(dst)
}

// UnmarshalNumbers is json.Unmarshal into any dst (a struct, say), with
// numbers decoded as json.Number when b may hold one a float64 would round:
// then numbers is true, and the caller makes the values in dst canonical
// with ExactMaps (or ExactNumbers). Text without such a number takes
// encoding/json's plain path.
func UnmarshalNumbers(b []byte, dst any) (numbers bool, err error) {
	if !mayRound(b) {
		return false, json.Unmarshal(b, dst)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(dst); err != nil {
		return true, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return true, fmt.Errorf("invalid JSON: text after the value")
	}
	return true, nil
}

// ExactMaps makes the values of each map canonical after UnmarshalNumbers,
// in place: each json.Number a float64 holds exactly becomes the float64.
func ExactMaps(ms ...*map[string]any) error {
	for _, m := range ms {
		if _, err := exactNumbers(*m); err != nil {
			return err
		}
	}
	return nil
}

// MayRound reports whether JSON text may hold a number a float64 would not
// hold exactly (see mayRound): a decoder of its own (a json.Decoder
// streaming a batch, say) then decodes with UseNumber and makes the values
// canonical with ExactMaps, as UnmarshalNumbers does.
func MayRound(b []byte) bool { return mayRound(b) }

// mayRound reports whether JSON text may hold a number a float64 would not
// hold exactly: a run of 16 or more digits (dots within it aside), or an
// exponent of three or more digits. Runs inside strings count too: such
// text only takes the slower, exact path.
func mayRound(b []byte) bool {
	run := 0
	for i, c := range b {
		switch {
		case isDigit(c):
			if run++; run >= 16 {
				return true
			}
		case c == '.':
		case (c == 'e' || c == 'E') && i > 0 && isDigit(b[i-1]):
			j := i + 1
			if j < len(b) && (b[j] == '+' || b[j] == '-') {
				j++
			}
			k := j
			for k < len(b) && isDigit(b[k]) {
				k++
			}
			if k-j >= 3 {
				return true
			}
			run = 0
		default:
			run = 0
		}
	}
	return false
}

// exactNumbersIn replaces, in what dst points to, each json.Number a
// float64 holds exactly by the float64.
func exactNumbersIn(dst any) error {
	switch p := dst.(type) {
	case *any:
		v, err := exactNumbers(*p)
		*p = v
		return err
	case *map[string]any:
		_, err := exactNumbers(*p)
		return err
	case *[]any:
		_, err := exactNumbers(*p)
		return err
	}
	return fmt.Errorf("profile: UnmarshalExact into %T: want *any, *map[string]any or *[]any", dst)
}

// ExactNumbers returns v, decoded by encoding/json with UseNumber, with
// each json.Number in canonical form (see DecodeValue), changing maps and
// slices in place.
func ExactNumbers(v any) (any, error) { return exactNumbers(v) }

func exactNumbers(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		n, ok := exactNumber(string(x))
		if !ok {
			return nil, fmt.Errorf("invalid JSON number")
		}
		return n, nil
	case map[string]any:
		for k, e := range x {
			n, err := exactNumbers(e)
			if err != nil {
				return nil, err
			}
			x[k] = n
		}
	case []any:
		for i, e := range x {
			n, err := exactNumbers(e)
			if err != nil {
				return nil, err
			}
			x[i] = n
		}
	}
	return v, nil
}
