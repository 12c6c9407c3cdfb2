package sqlstore

import (
	"errors"
	"time"

	"github.com/gdprkit/privacy/internal/jsontext"
	"github.com/gdprkit/privacy/profile"
)

// decodeBundle decodes a bundle's payload as profile.UnmarshalNumbers and
// profile.ExactMaps decode it into []bundledMessage, written out by hand
// (jsontext.Scanner): every claim decodes the bundles it hands out, and
// encoding/json's reflection over bundledMessage was a tenth of a
// delivering process's time. It reads the text encodeBundled writes;
// anything else (a key of another case, a key twice, a value of the wrong
// type, text that is not JSON) gives errNotByHand, for encoding/json to
// decode or refuse as it always has.
func decodeBundle(text []byte) ([]bundledMessage, error) { return decodeBundleOf(text, 0) }

// decodeBundleOf is decodeBundle with room made for the n messages the row
// says it holds (grown by doubling from one, the slice cost a claim more
// than its messages' strings).
func decodeBundleOf(text []byte, n int) ([]bundledMessage, error) {
	s := jsontext.NewScanner(text)
	s.Number = profile.ExactNumber
	// encoding/json bounds nesting at 10,000 levels from the top of the
	// text; a message's maps start two levels down (the bundle's array,
	// the message's object), and Value counts from where it starts.
	s.MaxDepth = 10000 - 2
	var msgs []bundledMessage
	if s.Null() {
		return nil, endOf(s)
	}
	if !s.Consume('[') {
		return nil, errNotByHand
	}
	msgs = make([]bundledMessage, 0, min(max(n, 0), maxBundle))
	if s.Consume(']') {
		return msgs, endOf(s)
	}
	for {
		msgs = append(msgs, bundledMessage{})
		if err := decodeBundled(s, &msgs[len(msgs)-1]); err != nil {
			return nil, err
		}
		if s.Consume(',') {
			continue
		}
		if !s.Consume(']') {
			return nil, errNotByHand
		}
		return msgs, endOf(s)
	}
}

// errNotByHand is decodeBundle's answer to text it leaves to encoding/json.
var errNotByHand = errors.New("sqlstore: bundle not decoded by hand")

func endOf(s *jsontext.Scanner) error {
	if s.End() != nil {
		return errNotByHand
	}
	return nil
}

// The fields of a bundledMessage, each decoded once: a key twice is left to
// encoding/json (which merges a repeated object into the first).
const (
	fieldID = 1 << iota
	fieldType
	fieldEvent
	fieldIDs
	fieldTraits
	fieldProperties
	fieldTimestamp
	fieldName
	fieldCategory
	fieldGroupID
	fieldPreviousID
	fieldContext
	fieldReceivedAt
	fieldSource
	fieldAttempts
	fieldProfileID // a single row's, empty: the row's column holds it
)

// decodeBundled decodes one message of a bundle into m: null leaves m as
// it is, as encoding/json does.
func decodeBundled(s *jsontext.Scanner, m *bundledMessage) error {
	return decodeMessageWith(s, m, bundledField, "t", "v")
}

// bundledField is the field a bundle's key names (0: none).
func bundledField(key []byte) int {
	switch string(key) { // compared, not copied
	case "id":
		return fieldID
	case "t":
		return fieldType
	case "e":
		return fieldEvent
	case "ids":
		return fieldIDs
	case "tr":
		return fieldTraits
	case "p":
		return fieldProperties
	case "ts":
		return fieldTimestamp
	case "n":
		return fieldName
	case "c":
		return fieldCategory
	case "g":
		return fieldGroupID
	case "pr":
		return fieldPreviousID
	case "cx":
		return fieldContext
	case "r":
		return fieldReceivedAt
	case "src":
		return fieldSource
	case "a":
		return fieldAttempts
	}
	return 0
}

// sendField is the field a single row's key names, encoding/json's of
// destination.Message (0: none, or another case, which encoding/json
// matches and the hand decoder leaves to it).
func sendField(key []byte) int {
	switch string(key) {
	case "MessageID":
		return fieldID
	case "Type":
		return fieldType
	case "Event":
		return fieldEvent
	case "IDs":
		return fieldIDs
	case "Traits":
		return fieldTraits
	case "Properties":
		return fieldProperties
	case "Timestamp":
		return fieldTimestamp
	case "Name":
		return fieldName
	case "Category":
		return fieldCategory
	case "GroupID":
		return fieldGroupID
	case "PreviousID":
		return fieldPreviousID
	case "Context":
		return fieldContext
	case "ReceivedAt":
		return fieldReceivedAt
	case "Source":
		return fieldSource
	case "ProfileID":
		return fieldProfileID
	}
	return 0
}

// decodeMessageWith decodes a message object into m, its keys named by
// fieldOf and its identifiers' by typeKey and valueKey; anything else (an
// unknown key, a key twice, a value of the wrong type) gives errNotByHand.
func decodeMessageWith(s *jsontext.Scanner, m *bundledMessage, fieldOf func([]byte) int, typeKey, valueKey string) error {
	if s.Null() {
		return nil
	}
	if !s.Consume('{') {
		return errNotByHand
	}
	if s.Consume('}') {
		return nil
	}
	seen := 0
	for {
		key, err := s.StringBytes()
		if err != nil || !s.Consume(':') {
			return errNotByHand
		}
		field := fieldOf(key)
		switch field {
		case fieldID:
			err = bundledString(s, &m.MessageID)
		case fieldType:
			err = bundledString(s, &m.Type)
		case fieldEvent:
			err = bundledString(s, &m.Event)
		case fieldIDs:
			err = bundledIDs(s, &m.IDs, typeKey, valueKey)
		case fieldTraits:
			err = bundledMap(s, &m.Traits)
		case fieldProperties:
			err = bundledMap(s, &m.Properties)
		case fieldTimestamp:
			err = bundledTime(s, &m.Timestamp)
		case fieldName:
			err = bundledString(s, &m.Name)
		case fieldCategory:
			err = bundledString(s, &m.Category)
		case fieldGroupID:
			err = bundledString(s, &m.GroupID)
		case fieldPreviousID:
			err = bundledString(s, &m.PreviousID)
		case fieldContext:
			err = bundledMap(s, &m.Context)
		case fieldReceivedAt:
			err = bundledTime(s, &m.ReceivedAt)
		case fieldSource:
			err = bundledString(s, &m.Source)
		case fieldAttempts:
			if !s.Null() {
				m.Attempts, err = s.Int()
			}
		case fieldProfileID:
			var ignored string // the row's profile_id column says whose it is
			err = bundledString(s, &ignored)
		default:
			return errNotByHand // another key, maybe of another case: encoding/json's to match
		}
		if err != nil || seen&field != 0 {
			return errNotByHand
		}
		seen |= field
		if s.Consume(',') {
			continue
		}
		if !s.Consume('}') {
			return errNotByHand
		}
		return nil
	}
}

// decodeSendByHand decodes a single row's message as profile.UnmarshalNumbers
// and profile.ExactMaps decode it into a destination.Message, by hand, or
// gives errNotByHand for text it leaves to them.
func decodeSendByHand(text []byte) (bundledMessage, error) {
	s := jsontext.NewScanner(text)
	s.Number = profile.ExactNumber
	s.MaxDepth = 10000 - 1 // encoding/json counts from the top: a map starts a level down
	var m bundledMessage
	if err := decodeMessageWith(s, &m, sendField, "Type", "Value"); err != nil {
		return bundledMessage{}, err
	}
	return m, endOf(s)
}

func bundledString(s *jsontext.Scanner, dst *string) error {
	if s.Null() {
		return nil
	}
	v, err := s.String()
	if err != nil {
		return errNotByHand
	}
	*dst = v
	return nil
}

func bundledMap(s *jsontext.Scanner, dst *map[string]any) error {
	if s.Null() {
		*dst = nil
		return nil
	}
	if s.Peek() != '{' {
		return errNotByHand
	}
	v, err := s.Value()
	if err != nil {
		return errNotByHand
	}
	*dst = v.(map[string]any)
	return nil
}

func bundledTime(s *jsontext.Scanner, dst *time.Time) error {
	if s.Null() {
		return nil
	}
	s.Peek() // past white space: Offset is then the quote's
	start := s.Offset()
	v, err := s.StringBytes()
	// As time.Time's UnmarshalJSON reads it: RFC 3339, strictly, and
	// without unescaping (an escape makes the text longer than v).
	if err != nil || s.Offset()-start != len(v)+2 {
		return errNotByHand
	}
	if err := dst.UnmarshalText(v); err != nil {
		return errNotByHand
	}
	return nil
}

func bundledIDs(s *jsontext.Scanner, dst *[]bundledID, typeKey, valueKey string) error {
	if s.Null() {
		*dst = nil
		return nil
	}
	if !s.Consume('[') {
		return errNotByHand
	}
	ids := []bundledID{}
	if !s.Consume(']') {
		for {
			var id bundledID
			if !s.Null() {
				if !s.Consume('{') {
					return errNotByHand
				}
				var seen [2]bool
				for !s.Consume('}') {
					if seen[0] || seen[1] {
						if !s.Consume(',') {
							return errNotByHand
						}
					}
					key, err := s.StringBytes()
					if err != nil || !s.Consume(':') {
						return errNotByHand
					}
					var at int
					var dst *string
					switch string(key) {
					case typeKey:
						at, dst = 0, &id.Type
					case valueKey:
						at, dst = 1, &id.Value
					default:
						return errNotByHand
					}
					if seen[at] || bundledString(s, dst) != nil {
						return errNotByHand
					}
					seen[at] = true
				}
			}
			ids = append(ids, id)
			if s.Consume(',') {
				continue
			}
			if !s.Consume(']') {
				return errNotByHand
			}
			break
		}
	}
	*dst = ids
	return nil
}
