package profile

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Order is the sort order of a page: "asc" (oldest first) or "desc" (newest first).
type Order string

// The orders of the Profile API's sort parameter.
const (
	Asc  Order = "asc"
	Desc Order = "desc"
)

// Page sizes of the Profile API reads.
const (
	DefaultLimit = 10
	MaxLimit     = 1000
)

// EventQuery selects events of one profile, as the Profile API's events endpoint
// does. The zero value asks for the newest DefaultLimit events.
type EventQuery struct {
	// Start (inclusive) and End (exclusive) bound the event timestamps; zero means
	// unbounded.
	Start, End time.Time
	// Include keeps only events with these names; Exclude drops these names.
	Include, Exclude []string
	// Limit is the page size: 0 means DefaultLimit, at most MaxLimit.
	Limit int
	// Sort is Desc (the default) or Asc.
	Sort Order
	// Cursor continues from the page that returned it as Next.
	Cursor string
}

// EventPage is one page of events. Next is empty on the last page.
type EventPage struct {
	Events []Event
	Next   string
}

// Cursor is a decoded EventQuery cursor: the position of the last event returned.
type Cursor struct {
	Sort      Order
	Timestamp time.Time
	MessageID string
}

// Normalize fills in defaults and checks q, returning an error matching ErrInvalid
// that names the field at fault, with the decoded cursor (zero when none).
func (q EventQuery) Normalize() (EventQuery, Cursor, error) {
	if q.Limit == 0 {
		q.Limit = DefaultLimit
	}
	if q.Limit < 0 || q.Limit > MaxLimit {
		return q, Cursor{}, fmt.Errorf("%w: events query: limit %d is outside 1..%d", ErrInvalid, q.Limit, MaxLimit)
	}
	switch q.Sort {
	case "":
		q.Sort = Desc
	case Asc, Desc:
	default:
		return q, Cursor{}, fmt.Errorf("%w: events query: sort %q: want %q or %q", ErrInvalid, q.Sort, Asc, Desc)
	}
	if !q.Start.IsZero() && !q.End.IsZero() && !q.Start.Before(q.End) {
		return q, Cursor{}, fmt.Errorf("%w: events query: start %v is not before end %v", ErrInvalid, q.Start, q.End)
	}
	var c Cursor
	if q.Cursor != "" {
		var err error
		if c, err = DecodeCursor(q.Cursor); err != nil {
			return q, Cursor{}, err
		}
		if c.Sort != q.Sort {
			return q, Cursor{}, fmt.Errorf("%w: events query: cursor was made for sort %q, not %q", ErrInvalid, c.Sort, q.Sort)
		}
	}
	return q, c, nil
}

// Matches reports whether e passes q's time window and name filters (not the
// cursor).
func (q *EventQuery) Matches(e *Event) bool {
	if !q.Start.IsZero() && e.Timestamp.Before(q.Start) {
		return false
	}
	if !q.End.IsZero() && !e.Timestamp.Before(q.End) {
		return false
	}
	if len(q.Include) > 0 && !slices.Contains(q.Include, e.Name) {
		return false
	}
	return !slices.Contains(q.Exclude, e.Name)
}

// CompareEvents orders events by timestamp, then message id: the order a store
// keeps them in and pages through.
func CompareEvents(a, b *Event) int {
	if c := a.Timestamp.Compare(b.Timestamp); c != 0 {
		return c
	}
	return strings.Compare(a.MessageID, b.MessageID)
}

// After reports whether e comes after the cursor position in the cursor's order.
func (c *Cursor) After(e *Event) bool {
	k := CompareEvents(e, &Event{Timestamp: c.Timestamp, MessageID: c.MessageID})
	if c.Sort == Asc {
		return k > 0
	}
	return k < 0
}

// cursorHeader is the length of a cursor before the message id: the sort byte,
// then the timestamp as Unix seconds (8 bytes) and nanoseconds (4 bytes). Not
// UnixNano, which wraps around outside the years 1678 to 2262, and message
// timestamps may be anything.
const cursorHeader = 1 + 8 + 4

// EncodeCursor returns the opaque cursor that continues a page after e.
func EncodeCursor(sort Order, e *Event) string {
	if sort != Asc {
		sort = Desc // the default order, as Normalize fills it in
	}
	b := make([]byte, 0, cursorHeader+len(e.MessageID))
	b = append(b, sort[0])
	b = binary.BigEndian.AppendUint64(b, uint64(e.Timestamp.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(e.Timestamp.Nanosecond()))
	b = append(b, e.MessageID...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursor decodes a cursor made by EncodeCursor, or fails with ErrInvalid.
func DecodeCursor(s string) (Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < cursorHeader || (b[0] != 'a' && b[0] != 'd') ||
		binary.BigEndian.Uint32(b[9:13]) >= 1e9 || !utf8.Valid(b[cursorHeader:]) {
		return Cursor{}, fmt.Errorf("%w: events query: malformed cursor %q", ErrInvalid, s)
	}
	c := Cursor{Sort: Asc, MessageID: string(b[cursorHeader:])}
	if b[0] == 'd' {
		c.Sort = Desc
	}
	c.Timestamp = time.Unix(int64(binary.BigEndian.Uint64(b[1:9])), int64(binary.BigEndian.Uint32(b[9:13]))).UTC()
	return c, nil
}

// TraitQuery selects traits, as the Profile API's traits endpoint does.
type TraitQuery struct {
	// Include keeps only these traits.
	Include []string
	// Limit is the page size: 0 means DefaultLimit, at most MaxLimit.
	Limit int
	// Verbose keeps each trait's Source and UpdatedAt; without it only Value is set.
	Verbose bool
	// Cursor continues from the page that returned it as Next.
	Cursor string
}

// TraitPage is one page of traits, in key order. Next is empty on the last page.
type TraitPage struct {
	Traits map[string]Trait
	Next   string
}

// SelectTraits returns the page of traits that q asks for.
func SelectTraits(traits map[string]Trait, q TraitQuery) (TraitPage, error) {
	limit, after, err := keyPageBounds("traits", q.Limit, q.Cursor)
	if err != nil {
		return TraitPage{}, err
	}
	keys := make([]string, 0, len(traits))
	for k := range traits {
		if k > after && (len(q.Include) == 0 || slices.Contains(q.Include, k)) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var page TraitPage
	if len(keys) > limit {
		keys = keys[:limit]
		page.Next = encodeKeyCursor(keys[limit-1])
	}
	page.Traits = make(map[string]Trait, len(keys))
	for _, k := range keys {
		t := traits[k]
		t.Value = CloneValue(t.Value)
		if !q.Verbose {
			t = Trait{Value: t.Value}
		}
		page.Traits[k] = t
	}
	return page, nil
}

// ExternalIDQuery selects identifiers, as the Profile API's external_ids endpoint
// does.
type ExternalIDQuery struct {
	// Include keeps only identifiers of these types.
	Include []string
	// Limit is the page size: 0 means DefaultLimit, at most MaxLimit.
	Limit int
	// Cursor continues from the page that returned it as Next.
	Cursor string
}

// ExternalIDPage is one page of identifiers, oldest first.
type ExternalIDPage struct {
	ExternalIDs []ExternalID
	Next        string
}

// SelectExternalIDs returns the page of ids (oldest first) that q asks for.
// Its cursor holds the creation time of the last identifier of the page and
// its rank among those created then, never the identifier itself: a cursor travels in
// URLs, which logs and proxies keep. A cursor that matches no identifier of
// ids (another profile's, or one the profile lost to an erasure) fails with
// ErrInvalid, rather than read as the end of the list.
func SelectExternalIDs(ids []ExternalID, q ExternalIDQuery) (ExternalIDPage, error) {
	limit, err := pageLimit("external ids", q.Limit)
	if err != nil {
		return ExternalIDPage{}, err
	}
	start := 0
	if q.Cursor != "" {
		if start, err = resumeIDs(ids, q.Cursor); err != nil {
			return ExternalIDPage{}, err
		}
	}
	var page ExternalIDPage
	last := -1
	for i := start; i < len(ids); i++ {
		e := ids[i]
		if len(q.Include) > 0 && !slices.Contains(q.Include, e.ID.Type) {
			continue
		}
		if len(page.ExternalIDs) == limit {
			page.Next = idCursor(ids, last)
			break
		}
		page.ExternalIDs = append(page.ExternalIDs, e)
		last = i
	}
	return page, nil
}

// idCursorVersion starts an external ids cursor: a time and a rank.
const idCursorVersion = 'r'

// idCursor is the cursor after ids[last]: its creation time, and how many
// identifiers before it were created at that time (those linked by one
// message share it). Neither names the identifier, and both survive a
// merge, which moves a profile's identifiers in a block.
func idCursor(ids []ExternalID, last int) string {
	created := ids[last].CreatedAt
	rank := 0
	for _, e := range ids[:last] {
		if e.CreatedAt.Equal(created) {
			rank++
		}
	}
	b := make([]byte, 13)
	b[0] = idCursorVersion
	binary.BigEndian.PutUint64(b[1:9], uint64(created.UnixNano()))
	binary.BigEndian.PutUint32(b[9:13], uint32(rank))
	return base64.RawURLEncoding.EncodeToString(b)
}

// resumeIDs returns where the page after cursor starts in ids: after the
// identifier created at the cursor's time with the cursor's rank among
// those created then.
func resumeIDs(ids []ExternalID, cursor string) (int, error) {
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(b) != 13 || b[0] != idCursorVersion {
		return 0, fmt.Errorf("%w: external ids query: malformed cursor", ErrInvalid)
	}
	created := int64(binary.BigEndian.Uint64(b[1:9]))
	rank := int(binary.BigEndian.Uint32(b[9:13]))
	for i := range ids {
		if ids[i].CreatedAt.UnixNano() != created {
			continue
		}
		if rank == 0 {
			return i + 1, nil
		}
		rank--
	}
	return 0, fmt.Errorf("%w: external ids query: the cursor matches no identifier of this profile", ErrInvalid)
}

// keyPageBounds checks the limit and cursor of a query paged by key (traits,
// external ids), the same for both, and returns the page size and the key the
// page starts after ("" for the first page).
func keyPageBounds(what string, limit int, cursor string) (int, string, error) {
	size, err := pageLimit(what, limit)
	if err != nil {
		return 0, "", err
	}
	after, err := decodeKeyCursor(what, cursor)
	if err != nil {
		return 0, "", err
	}
	return size, after, nil
}

func pageLimit(what string, limit int) (int, error) {
	if limit == 0 {
		return DefaultLimit, nil
	}
	if limit < 0 || limit > MaxLimit {
		return 0, fmt.Errorf("%w: %s query: limit %d is outside 1..%d", ErrInvalid, what, limit, MaxLimit)
	}
	return limit, nil
}

func encodeKeyCursor(key string) string { return base64.RawURLEncoding.EncodeToString([]byte(key)) }

func decodeKeyCursor(what, s string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || (s != "" && len(b) == 0) {
		return "", fmt.Errorf("%w: %s query: malformed cursor %q", ErrInvalid, what, s)
	}
	return string(b), nil
}
