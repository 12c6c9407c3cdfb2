package profile

import (
	"encoding/json"
	"math"
	"reflect"
	"sync/atomic"
	"unsafe"

	"github.com/gdprkit/privacy/internal/jsontext"
)

// EncodedObject is an object's JSON as EncodeObjectWithin wrote it, bound
// to the map it encoded: a store takes the JSON only for that very map
// (JSONFor), so that no caller can make it keep text other than the
// object's. The zero EncodedObject is bound to nothing.
type EncodedObject struct {
	of   unsafe.Pointer // the map encoded
	json []byte
}

// JSONFor returns the JSON of m, when e is m's encoding (the same map, not
// an equal one), and whether it is. The JSON is the store's to keep: the
// Controller does not change it.
func (e EncodedObject) JSONFor(m map[string]any) ([]byte, bool) {
	if m == nil || e.of == nil || reflect.ValueOf(m).UnsafePointer() != e.of {
		return nil, false
	}
	return e.json, true
}

// Equal reports whether e and o are the same encoding of the same map.
func (e EncodedObject) Equal(o EncodedObject) bool {
	return e.of == o.of && string(e.json) == string(o.json)
}

// EncodeObjectWithin is NormalizeValueWithin for a JSON object that also
// returns its JSON (keys in no particular order), in one walk over a value
// already in canonical form, where checking it and then encoding it for a
// store take two: the collection path does this for every message's
// context. The object returned is m itself when canonical; the encoding is
// bound to the object returned (Update.EncodedContext hands it to a
// store). A nil m gives nil and the zero EncodedObject.
func EncodeObjectWithin(path string, m map[string]any, budget *int) (map[string]any, EncodedObject, error) {
	out, b, err := encodeObjectWithin(path, m, budget)
	if err != nil || out == nil {
		return nil, EncodedObject{}, err
	}
	return out, EncodedObject{of: reflect.ValueOf(out).UnsafePointer(), json: b}, nil
}

// maxSizeHint bounds the capacity EncodeObjectWithin starts from: one
// large context must not make every later one keep its size.
const maxSizeHint = 4 << 10

func encodeObjectWithin(path string, m map[string]any, budget *int) (map[string]any, []byte, error) {
	if m == nil {
		return nil, nil, nil
	}
	// Written straight into the buffer the caller keeps, sized as the last
	// one was: a pooled buffer copied out cost more (the pool empties with
	// every collection, and the copy is one more walk).
	b := make([]byte, 0, min(encodedSizeHint.Load(), maxSizeHint)+64)
	left := *budget
	var ok bool
	if b, ok = appendCanonical(b, m, 0, &left); ok {
		*budget = left
		encodedSizeHint.Store(int64(len(b)))
		if cap(b) > 2*len(b)+64 { // kept by the store: not much more than it needs
			b = append([]byte(nil), b...)
		}
		return m, b, nil
	}
	clear(b) // what was written of it: personal data
	n, err := NormalizeValueWithin(path, m, budget)
	if err != nil {
		return nil, nil, err
	}
	out, _ := n.(map[string]any)
	enc := jsontext.ValueEncoder{Unsorted: true}
	if b, ok = enc.AppendValue(b[:0], out, MaxDepth); !ok {
		return nil, nil, &ValueError{Path: path, Reason: "not a JSON value"} // cannot happen: out is canonical
	}
	return out, b, nil
}

// encodedSizeHint is the size of the last object EncodeObjectWithin
// encoded: messages of one host carry contexts of about one size.
var encodedSizeHint atomic.Int64

// appendCanonical appends v's JSON to b and reports whether v is canonical
// and within *left as isCanonical counts it (which it counts down alike).
// When it reports false, what it appended is to be dropped.
func appendCanonical(b []byte, v any, depth int, left *int) (_ []byte, ok bool) {
	if depth > MaxDepth {
		return b, false
	}
	*left -= ValueOverhead
	if *left < 0 {
		return b, false
	}
	switch x := v.(type) {
	case nil:
		*left -= scalarExtra(x)
		return append(b, "null"...), *left >= 0
	case bool:
		*left -= scalarExtra(x)
		if x {
			return append(b, "true"...), *left >= 0
		}
		return append(b, "false"...), *left >= 0
	case string:
		*left -= len(x)
		if *left < 0 {
			return b, false
		}
		return jsontext.AppendString(b, x) // false when not UTF-8
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return b, false
		}
		*left -= scalarExtra(x)
		return jsontext.AppendFloat(b, x), *left >= 0
	case json.Number:
		*left -= scalarExtra(x)
		if *left < 0 || !canonicalNumber(x) {
			return b, false
		}
		return append(b, x...), true
	case map[string]any:
		if x == nil {
			return b, false // JSON's null: normalised to nil
		}
		b = append(b, '{')
		first := true
		for k, e := range x {
			*left -= len(k)
			if *left < 0 {
				return b, false
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			if b, ok = jsontext.AppendString(b, k); !ok { // not UTF-8
				return b, false
			}
			b = append(b, ':')
			if b, ok = appendCanonical(b, e, depth+1, left); !ok {
				return b, false
			}
		}
		return append(b, '}'), true
	case []any:
		if x == nil {
			return b, false
		}
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			if b, ok = appendCanonical(b, e, depth+1, left); !ok {
				return b, false
			}
		}
		return append(b, ']'), true
	}
	return b, false
}
