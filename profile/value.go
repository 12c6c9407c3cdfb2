package profile

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxDepth bounds how deeply trait values and event properties may nest.
const MaxDepth = 32

// A ValueError says which part of a value is not a JSON value, and why,
// without the value: its text may be kept (in a receipt, a log) after the
// value is gone. It matches
// ErrInvalid, and ErrTooLarge when the value was larger than allowed.
type ValueError struct {
	Path   string // such as `traits["address"]["zip"]`
	Reason string
	// tooLarge: the value's size went over the budget.
	tooLarge bool
}

// ErrTooLarge: a value larger than its size budget (NormalizeValueWithin).
var ErrTooLarge = errors.New("profile: value too large")

// Error names the path, as ShownPath shows it, and the reason.
func (e *ValueError) Error() string { return "profile: invalid " + ShownPath(e.Path) + ": " + e.Reason }

// maxShownKey bounds a key ShownPath shows, in bytes.
const maxShownKey = 64

// ShownPath returns a path (a ValueError's, a field's) as error texts show it: its top-level
// trait or property name, cut to 64 bytes, and the keys below it replaced by
// "[…]" (`Traits["address"]["zip"]` shows as `Traits["address"][…]`), indexes
// kept. A name is a name, chosen by the host; the keys below it may be data
// (a map keyed by email), and the text of an error is kept after the person
// is erased.
func ShownPath(field string) string {
	i := strings.IndexByte(field, '[')
	if i < 0 {
		return field
	}
	var b strings.Builder
	b.WriteString(field[:i])
	keys := 0
	for rest := field[i:]; rest != ""; {
		if rest[0] != '[' {
			b.WriteString(rest) // not a path this package built: as it is
			break
		}
		if q, err := strconv.QuotedPrefix(rest[1:]); err == nil && strings.HasPrefix(rest[1+len(q):], "]") {
			rest = rest[len(q)+2:]
			if keys++; keys > 1 {
				b.WriteString("[…]")
				continue
			}
			k, _ := strconv.Unquote(q)
			if len(k) > maxShownKey {
				k = strings.ToValidUTF8(k[:maxShownKey], "") + "…"
			}
			b.WriteString("[" + strconv.Quote(k) + "]")
			continue
		}
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			b.WriteString(rest)
			break
		}
		b.WriteString(rest[:end+1]) // an index
		rest = rest[end+1:]
	}
	return b.String()
}

// Is makes a ValueError match ErrInvalid, and ErrTooLarge when it says so.
func (e *ValueError) Is(target error) bool {
	return target == ErrInvalid || e.tooLarge && target == ErrTooLarge
}

// NormalizeValue checks that v is a JSON value and returns it in canonical form:
// nil, bool, float64, json.Number, string, []any or map[string]any, all the way
// down. Every number is kept exactly, as Segment takes any JSON number: as a
// float64 when one holds it (every integer up to 2^53, 0.1, 1e300), else as a
// json.Number with its JSON text (an integer beyond 2^53, a decimal with more
// digits than a float64 keeps, an exponent past its range); DecodeValue reads
// them back alike. time.Time becomes an RFC 3339 string, and other
// types go through encoding/json. A typed nil (a nil map, slice or pointer)
// becomes nil, JSON's null, which is all a store that keeps JSON gives back.
// Strings and keys must be UTF-8; NaN and the infinities are refused. v itself is returned when it is already canonical, so the
// common case does not allocate; path names v in error messages. A value larger
// than MaxValueSize (see NormalizeValueWithin) is refused.
func NormalizeValue(path string, v any) (any, error) {
	budget := MaxValueSize
	return NormalizeValueWithin(path, v, &budget)
}

// MaxValueSize bounds the size of a value NormalizeValue takes (1 MiB), as
// NormalizeValueWithin counts it.
const MaxValueSize = 1 << 20

// ValueOverhead is what NormalizeValueWithin counts for each value besides
// the bytes of its strings and keys: no more than its JSON takes (a
// string's quotes; a number's digit and the comma after it; a bool or null,
// an array's or an object's brackets take more), so that a value whose JSON
// is within a budget in bytes is within it as counted too.
const ValueOverhead = 2

// NormalizeValueWithin is NormalizeValue within a size budget, which it
// counts down: the bytes of every string and map key in v, plus
// ValueOverhead for each value (each string, number, bool, null, array and
// object, nested ones included): about the size of its JSON, never more
// than it by more than a byte. A value whose size is more than *budget is
// refused, with a ValueError naming the part of it where the budget ran out.
// The walk stops there, so its time is bounded by the budget whatever v
// holds: a map that several parts of v share counts once for each, as it
// would once encoded.
func NormalizeValueWithin(path string, v any, budget *int) (any, error) {
	limit := *budget
	if isCanonical(v, 0, budget) {
		return v, nil
	}
	if *budget < 0 {
		return nil, tooLarge(path, limit)
	}
	*budget = limit
	return normalize(path, v, 0, &sizer{limit: limit, left: budget})
}

// sizer counts a value's size down from limit as normalize walks it.
type sizer struct {
	limit int
	left  *int
}

// spend counts n bytes, and fails, naming path, once the budget is spent.
func (z *sizer) spend(path string, n int) error {
	*z.left -= n
	if *z.left < 0 {
		return tooLarge(path, z.limit)
	}
	return nil
}

// afford fails, naming path, when the budget cannot hold n more values:
// checked before a map or slice of n elements is made, so that a length that
// costs its caller nothing (2^25 empty structs) is refused before it is
// allocated. Each element spends its own as it is walked.
func (z *sizer) afford(path string, n int) error {
	if n > *z.left/ValueOverhead {
		return tooLarge(path, z.limit)
	}
	return nil
}

func tooLarge(path string, limit int) error {
	return &ValueError{Path: path, Reason: fmt.Sprintf("larger than the %d bytes allowed", limit), tooLarge: true}
}

// isCanonical reports whether v is canonical, counting its size down from
// *left; it stops, false, once *left is below 0.
func isCanonical(v any, depth int, left *int) bool {
	if depth > MaxDepth {
		return false
	}
	*left -= ValueOverhead
	if *left < 0 {
		return false
	}
	switch x := v.(type) {
	case nil, bool:
		*left -= scalarExtra(x)
		return *left >= 0
	case string:
		*left -= len(x)
		return *left >= 0 && utf8.ValidString(x)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
		*left -= scalarExtra(x)
		return *left >= 0
	case json.Number:
		*left -= scalarExtra(x)
		return *left >= 0 && canonicalNumber(x)
	case map[string]any:
		if x == nil {
			return false // JSON's null: normalised to nil
		}
		for k, e := range x {
			*left -= len(k)
			if *left < 0 || !utf8.ValidString(k) || !isCanonical(e, depth+1, left) {
				return false
			}
		}
		return true
	case []any:
		if x == nil {
			return false // JSON's null: normalised to nil
		}
		for _, e := range x {
			if !isCanonical(e, depth+1, left) {
				return false
			}
		}
		return true
	}
	return false
}

// normalize normalises v and counts it, a scalar by its JSON's length.
func normalize(path string, v any, depth int, z *sizer) (any, error) {
	out, err := normalizeValue(path, v, depth, z)
	if err != nil || !isScalar(v) {
		return out, err // a pointer or a marshaler: its value counted itself
	}
	if err := z.spend(path, scalarExtra(out)); err != nil {
		return nil, err
	}
	return out, nil
}

// isScalar reports whether v is a bool, a number or nil, of any type.
func isScalar(v any) bool {
	if v == nil {
		return true
	}
	if _, ok := v.(json.Number); ok {
		return true
	}
	switch reflect.TypeOf(v).Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		_, marshals := v.(json.Marshaler)
		_, marshalsText := v.(encoding.TextMarshaler)
		return !marshals && !marshalsText
	}
	return false
}

func normalizeValue(path string, v any, depth int, z *sizer) (any, error) {
	if depth > MaxDepth {
		return nil, &ValueError{Path: path, Reason: fmt.Sprintf("nested more than %d levels deep", MaxDepth)}
	}
	if err := z.spend(path, ValueOverhead); err != nil {
		return nil, err
	}
	switch x := v.(type) {
	case nil, bool:
		return x, nil
	case string:
		return checkString(path, x, z)
	case float64:
		return checkFloat(path, x)
	case float32:
		return checkFloat(path, float64(x))
	case int:
		return checkInt(path, int64(x))
	case int8:
		return float64(x), nil
	case int16:
		return float64(x), nil
	case int32:
		return float64(x), nil
	case int64:
		return checkInt(path, x)
	case uint:
		return checkUint(path, uint64(x))
	case uint8:
		return float64(x), nil
	case uint16:
		return float64(x), nil
	case uint32:
		return float64(x), nil
	case uint64:
		return checkUint(path, x)
	case json.Number:
		n, ok := exactNumber(string(x))
		if !ok {
			return nil, &ValueError{Path: path, Reason: "not a JSON number"}
		}
		return n, nil
	case time.Time:
		return checkString(path, x.Format(time.RFC3339Nano), z)
	case map[string]any:
		if x == nil {
			return nil, nil // as every other typed nil: what JSON keeps of it
		}
		if err := z.afford(path, len(x)); err != nil {
			return nil, err
		}
		m := make(map[string]any, len(x))
		for k, e := range x {
			if err := z.spend(path, len(k)); err != nil { // before a long key is quoted
				return nil, err
			}
			p := path + "[" + strconv.Quote(k) + "]"
			if !utf8.ValidString(k) {
				return nil, &ValueError{Path: p, Reason: "key is not valid UTF-8"}
			}
			n, err := normalize(p, e, depth+1, z)
			if err != nil {
				return nil, err
			}
			m[k] = n
		}
		return m, nil
	case []any:
		if x == nil {
			return nil, nil
		}
		if err := z.afford(path, len(x)); err != nil {
			return nil, err
		}
		s := make([]any, len(x))
		for i, e := range x {
			n, err := normalize(path+"["+strconv.Itoa(i)+"]", e, depth+1, z)
			if err != nil {
				return nil, err
			}
			s[i] = n
		}
		return s, nil
	}
	return normalizeReflect(path, v, depth, z)
}

// normalizeReflect handles the remaining kinds: typed slices and string-keyed maps
// element by element, anything else (structs, json.Marshalers) through a JSON round
// trip, so whatever encoding/json accepts is accepted.
func normalizeReflect(path string, v any, depth int, z *sizer) (any, error) {
	rv := reflect.ValueOf(v)
	_, marshals := v.(json.Marshaler)
	_, marshalsText := v.(encoding.TextMarshaler)
	if marshals || marshalsText {
		return normalizeJSON(path, v, depth, z)
	}
	switch rv.Kind() {
	case reflect.Bool:
		return rv.Bool(), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return checkInt(path, rv.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return checkUint(path, rv.Uint())
	case reflect.Float32, reflect.Float64:
		return checkFloat(path, rv.Float())
	case reflect.String:
		return checkString(path, rv.String(), z)
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return nil, nil
		}
		if _, ok := v.(json.Marshaler); !ok {
			// depth+1: a pointer that leads back to itself must end in an error,
			// not in a stack overflow.
			*z.left += ValueOverhead // the value it points to is this value
			return normalize(path, rv.Elem().Interface(), depth+1, z)
		}
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			return nil, nil
		}
		if rv.Type().Elem().Kind() != reflect.Uint8 { // []byte goes through JSON, as base64
			// Spent before the slice is made: a []struct{} of 2^25
			// elements costs its caller nothing.
			if err := z.afford(path, rv.Len()); err != nil {
				return nil, err
			}
			s := make([]any, rv.Len())
			for i := range s {
				n, err := normalize(path+"["+strconv.Itoa(i)+"]", rv.Index(i).Interface(), depth+1, z)
				if err != nil {
					return nil, err
				}
				s[i] = n
			}
			return s, nil
		}
	case reflect.Map:
		if rv.Type().Key().Kind() == reflect.String {
			if rv.IsNil() {
				return nil, nil
			}
			if err := z.afford(path, rv.Len()); err != nil {
				return nil, err
			}
			m := make(map[string]any, rv.Len())
			it := rv.MapRange()
			for it.Next() {
				k := it.Key().String()
				if err := z.spend(path, len(k)); err != nil {
					return nil, err
				}
				p := path + "[" + strconv.Quote(k) + "]"
				if !utf8.ValidString(k) {
					return nil, &ValueError{Path: p, Reason: "key is not valid UTF-8"}
				}
				n, err := normalize(p, it.Value().Interface(), depth+1, z)
				if err != nil {
					return nil, err
				}
				m[k] = n
			}
			return m, nil
		}
	case reflect.Func, reflect.Chan, reflect.Complex64, reflect.Complex128, reflect.UnsafePointer:
		return nil, &ValueError{Path: path, Reason: fmt.Sprintf("a %T is not a JSON value", v)}
	}
	return normalizeJSON(path, v, depth, z)
}

// normalizeJSON normalises v by a round trip through encoding/json, keeping
// numbers exact (an integer beyond 2^53 is kept as a json.Number, not
// rounded).
func normalizeJSON(path string, v any, depth int, z *sizer) (any, error) {
	// Counted before it is encoded, on a copy of the budget: encoding/json
	// expands a pointer each place it appears, so a value of a few shared
	// structs would encode to an exponential size before the budget saw it.
	left := *z.left + ValueOverhead // v itself, counted already
	if err := (&sizer{limit: z.limit, left: &left}).walk(path, reflect.ValueOf(v), depth); err != nil {
		return nil, err
	}
	// The count of a value is about its JSON's length: twice the budget is
	// past it. What a json.Marshaler makes is measured before anything
	// copies or decodes it (a json.RawMessage is its own bytes).
	bound := 2*(*z.left+ValueOverhead) + 64
	var b []byte
	var err error
	if m, ok := v.(json.Marshaler); ok {
		if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() {
			return nil, nil
		}
		if b, err = m.MarshalJSON(); err == nil && len(b) <= bound && !json.Valid(b) {
			err = errors.New("invalid JSON")
		}
	} else {
		// Without HTML escaping, which would make "<" six bytes.
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		err = enc.Encode(v)
		b = buf.Bytes()
	}
	if err != nil {
		return nil, &ValueError{Path: path, Reason: fmt.Sprintf("a %T is not a JSON value", v)}
	}
	if len(b) > bound {
		return nil, tooLarge(path, z.limit)
	}
	var out any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return nil, &ValueError{Path: path, Reason: fmt.Sprintf("a %T does not encode to JSON", v)}
	}
	*z.left += ValueOverhead // out is this value, counted already
	return normalize(path, out, depth, z)
}

// walk counts v's size as it would encode, without encoding it, stopping
// once the budget is spent or v nests more than MaxDepth deep: its time is
// bounded by the budget. What a json.Marshaler or encoding.TextMarshaler
// holds is its own: it counts as one value, and what it encodes to is
// counted afterwards.
func (z *sizer) walk(path string, v reflect.Value, depth int) error {
	if depth > MaxDepth {
		return &ValueError{Path: path, Reason: fmt.Sprintf("nested more than %d levels deep", MaxDepth)}
	}
	if err := z.spend(path, ValueOverhead); err != nil {
		return err
	}
	if !v.IsValid() {
		return nil
	}
	if v.CanInterface() {
		switch v.Interface().(type) {
		case json.Marshaler, encoding.TextMarshaler:
			return nil
		}
	}
	switch v.Kind() {
	case reflect.String:
		return z.spend(path, v.Len())
	case reflect.Bool:
		return z.spend(path, scalarExtra(v.Bool()))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return z.spend(path, numberSize(float64(v.Int()))-1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return z.spend(path, numberSize(float64(v.Uint()))-1)
	case reflect.Float32, reflect.Float64:
		return z.spend(path, numberSize(v.Float())-1)
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		// Not a level of its own (encoded, it is the value it points to),
		// but counted: a cycle of pointers spends the budget.
		return z.walk(path, v.Elem(), depth)
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			if f := t.Field(i); f.IsExported() || f.Anonymous {
				if err := z.spend(path, len(f.Name)); err != nil {
					return err
				}
				if err := z.walk(path, v.Field(i), depth+1); err != nil {
					return err
				}
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return z.spend(path, (v.Len()+2)/3*4) // base64
		}
		if err := z.afford(path, v.Len()); err != nil {
			return err
		}
		for i := range v.Len() {
			if err := z.walk(path, v.Index(i), depth+1); err != nil {
				return err
			}
		}
	case reflect.Map:
		if err := z.afford(path, v.Len()); err != nil {
			return err
		}
		for it := v.MapRange(); it.Next(); {
			if k := it.Key(); k.Kind() == reflect.String {
				if err := z.spend(path, k.Len()); err != nil {
					return err
				}
			}
			if err := z.walk(path, it.Value(), depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// scalarExtra is what a canonical scalar's JSON takes beyond ValueOverhead:
// a number its digits (as encoding/json writes it), true and null 4 bytes,
// false 5.
func scalarExtra(v any) int {
	switch x := v.(type) {
	case float64:
		return numberSize(x) - 1
	case bool:
		if x {
			return 2
		}
		return 3
	case nil:
		return 2
	case json.Number:
		return len(x) - 1
	}
	return 0
}

// numberSize returns the length of f as encoding/json writes it; integers
// below 1e15, the common case, without formatting.
func numberSize(f float64) int {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		n := 1
		if f < 0 {
			n, f = 2, -f
		}
		for f >= 10 {
			f /= 10
			n++
		}
		return n
	}
	var buf [32]byte
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	return len(strconv.AppendFloat(buf[:0], f, format, -1, 64))
}

// checkString checks a string value and counts its bytes.
func checkString(path, s string, z *sizer) (any, error) {
	if !utf8.ValidString(s) {
		return nil, &ValueError{Path: path, Reason: "not valid UTF-8"}
	}
	if err := z.spend(path, len(s)); err != nil {
		return nil, err
	}
	return s, nil
}

func checkFloat(path string, f float64) (any, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, &ValueError{Path: path, Reason: "NaN and the infinities are not JSON numbers"}
	}
	return f, nil
}

func checkInt(path string, i int64) (any, error) { return intNumber(i), nil }

func checkUint(path string, u uint64) (any, error) { return uintNumber(u), nil }

// CloneValue returns a deep copy of a canonical value (see NormalizeValue): maps
// and slices are copied, scalars returned as they are.
func CloneValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return cloneMap(x)
	case []any:
		if x == nil {
			return x
		}
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = CloneValue(e)
		}
		return s
	}
	return v
}

// cloneMap deep-copies a map of canonical values; nil stays nil.
func cloneMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	c := make(map[string]any, len(m))
	for k, e := range m {
		c[k] = CloneValue(e)
	}
	return c
}
