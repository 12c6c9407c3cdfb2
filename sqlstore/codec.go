package sqlstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// Times are kept to the microsecond, the precision of PostgreSQL's
// timestamptz, in both dialects: PostgreSQL as timestamptz, SQLite as integer
// Unix microseconds. Both hold every time from the zero time.Time (year 1) to
// maxTime; others are refused rather than stored wrong.
var (
	minTime = time.Time{}
	maxTime = time.Date(294000, 1, 1, 0, 0, 0, 0, time.UTC)
)

// checkTime returns an error naming field when t is outside what the database
// holds; wrap it in the calling package's ErrInvalid.
func checkTime(field string, t time.Time) error {
	if t.Before(minTime) || !t.Before(maxTime) {
		return fmt.Errorf("%s %v is outside the years 1 to 293999 that the database holds", field, t)
	}
	return nil
}

// ts encodes a time for the dialect, truncated to the microsecond. Call
// checkTime on it first.
func (s *Store) ts(t time.Time) any {
	if s.d == SQLite {
		return t.Truncate(time.Microsecond).UnixMicro()
	}
	return t.UTC().Truncate(time.Microsecond)
}

// tsCeil encodes the smallest stored time not before t: a query bound of
// "at or after t" over microsecond times must round t up, not down.
func (s *Store) tsCeil(t time.Time) any {
	if t.Before(minTime) {
		t = minTime
	}
	if !t.Before(maxTime) {
		t = maxTime
	}
	c := t.Truncate(time.Microsecond)
	if c.Before(t) {
		c = c.Add(time.Microsecond)
	}
	return s.ts(c)
}

// nullTS encodes t, or NULL for the zero time.
func (s *Store) nullTS(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return s.ts(t)
}

// timeScanner reads a time column of either dialect: a time.Time
// (PostgreSQL), Unix microseconds (SQLite), or NULL (the zero time).
type timeScanner struct{ t *time.Time }

func (ts timeScanner) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*ts.t = time.Time{}
	case time.Time:
		*ts.t = v.UTC()
	case int64:
		*ts.t = time.UnixMicro(v).UTC()
	default:
		return fmt.Errorf("sqlstore: cannot read a time from a %T", src)
	}
	return nil
}

// scanTime returns a Scan destination that fills *t.
func scanTime(t *time.Time) timeScanner { return timeScanner{t} }

// checkVersion refuses versions beyond the int64 a bigint column holds.
func checkVersion(v uint64) error {
	if v > math.MaxInt64 {
		return fmt.Errorf("version %d is beyond %d, the largest the database holds", v, int64(math.MaxInt64))
	}
	return nil
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// encodeJSON encodes a trait value or a property map as JSON text. HTML
// characters are kept as they are: the text is data, not markup.
func encodeJSON(v any) (string, error) {
	b := bufPool.Get().(*bytes.Buffer)
	defer bufPool.Put(b)
	b.Reset()
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// decodeValue decodes JSON text into profile.NormalizeValue's canonical form,
// numbers exact (profile.DecodeValue).
func decodeValue(text string) (any, error) {
	v, err := profile.DecodeValue([]byte(text))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: stored JSON does not decode: %s", decodeFailure(err))
	}
	return v, nil
}

// decodeEventText decodes an event's stored properties text: an object (or
// null), or, for an event with a context, [properties, context] (migration
// 0012).
func decodeEventText(text string) (props, ctx map[string]any, err error) {
	if !strings.HasPrefix(text, "[") {
		props, err = decodeMap(text)
		return props, nil, err
	}
	var pair [2]map[string]any
	numbers, err := profile.UnmarshalNumbers([]byte(text), &pair)
	if err == nil && numbers {
		err = profile.ExactMaps(&pair[0], &pair[1])
	}
	if err != nil {
		return nil, nil, fmt.Errorf("sqlstore: stored JSON does not decode: %s", decodeFailure(err))
	}
	return pair[0], pair[1], nil
}

// decodeFailure tells why stored JSON did not decode without quoting it:
// encoding/json's and time's errors quote the values they refuse, which
// are a person's.
func decodeFailure(err error) string {
	var syntax *json.SyntaxError
	var wrongType *json.UnmarshalTypeError
	var badTime *time.ParseError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("invalid JSON at offset %d", syntax.Offset)
	case errors.As(err, &wrongType):
		return fmt.Sprintf("a %s where field %s wants a %s", strings.Fields(wrongType.Value + " value")[0], wrongType.Field, wrongType.Type)
	case errors.As(err, &badTime):
		return "a timestamp that is not RFC 3339"
	}
	return fmt.Sprintf("%T", err)
}

// encodeFailure tells why encoding/json refused a value without quoting
// it: its errors quote the number text or the JSON they refuse, which is a
// person's.
func encodeFailure(err error) string {
	var unsupported *json.UnsupportedValueError
	var wrongType *json.UnsupportedTypeError
	var marshaler *json.MarshalerError
	switch {
	case errors.As(err, &unsupported):
		return "a value JSON cannot hold (NaN or an infinity, or a cycle)"
	case errors.As(err, &wrongType):
		return "a value of type " + wrongType.Type.String()
	case errors.As(err, &marshaler):
		return "a value of type " + marshaler.Type.String() + " that does not marshal"
	}
	return "a value encoding/json refuses (a json.Number or json.RawMessage that is not valid JSON, say)"
}

// nullIfEmpty is s, or SQL NULL when s is empty.
func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// decodeMap decodes a JSON object (or null) into a canonical map.
func decodeMap(text string) (map[string]any, error) {
	var m map[string]any
	if err := profile.UnmarshalExact([]byte(text), &m); err != nil {
		return nil, fmt.Errorf("sqlstore: stored JSON does not decode: %s", decodeFailure(err))
	}
	return m, nil
}

// hashBytes returns the hashes concatenated, never nil (a nil []byte is SQL
// NULL).
func hashBytes(hs []identity.Hash) []byte {
	b := make([]byte, 0, len(hs)*len(identity.Hash{}))
	for _, h := range hs {
		b = append(b, h[:]...)
	}
	return b
}

// bytesHashes splits concatenated hashes; nil when there are none.
func bytesHashes(b []byte) ([]identity.Hash, error) {
	n := len(identity.Hash{})
	if len(b)%n != 0 {
		return nil, fmt.Errorf("sqlstore: stored hashes are %d bytes, not a multiple of %d", len(b), n)
	}
	if len(b) == 0 {
		return nil, nil
	}
	hs := make([]identity.Hash, len(b)/n)
	for i := range hs {
		copy(hs[i][:], b[i*n:])
	}
	return hs, nil
}

// placeholders returns "$from, $from+1, ..." for n parameters.
func placeholders(from, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", from+i)
	}
	return b.String()
}

// chunk is the most rows or parameters one statement carries, well below
// every driver's limit on parameters (PostgreSQL 65535, SQLite 32766).
const chunk = 500

// maxListParams bounds the values of a read's filter lists (event names,
// request types), which go into one statement.
const maxListParams = 10000
