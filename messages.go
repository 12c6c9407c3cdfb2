package privacy

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// Limits on collected messages.
const (
	// MaxTraits is the most traits one Identify may carry, as in Segment.
	MaxTraits = 300
	// maxNameLength bounds message ids, event names, trait keys and sources.
	maxNameLength = 1024
)

// Message is a Segment-spec message for Collect: Identify or Track.
type Message interface {
	// isMessage seals the interface: only this package's message types
	// implement it.
	isMessage()
}

func (Identify) isMessage() {}
func (Track) isMessage()    {}

// prepareMessage validates m into out and appends its identifiers to ids,
// highest priority first. It switches on the concrete type rather than calling a
// method through the interface, and keeps the identifiers apart from out, so none
// of them escapes to the heap on the collection path.
func prepareMessage(r *identity.Resolver, m Message, out *message, ids []identity.ID) ([]identity.ID, error) {
	switch m := m.(type) {
	case Identify:
		return m.prepare(r, out, ids)
	case Track:
		return m.prepare(r, out, ids)
	case *Identify:
		if m != nil {
			return m.prepare(r, out, ids)
		}
	case *Track:
		if m != nil {
			return m.prepare(r, out, ids)
		}
	}
	return ids, fieldErrorf("Message", "nil message")
}

// Identify tells who a person is and what is known of them (Segment's identify).
// At least one of UserID, AnonymousID and ExternalIDs is required, and so is
// Timestamp. An email trait, or a trait named after another default identifier type
// (identity.DefaultTypes), is promoted to an identifier of the profile.
type Identify struct {
	// MessageID de-duplicates: a message collected twice for one person is stored
	// once. When empty, a random id is assigned.
	MessageID   string
	UserID      string
	AnonymousID string
	ExternalIDs []identity.ID
	// Traits set profile traits; a trait set to nil removes it, "" sets it empty.
	// More than MaxTraits is refused.
	Traits    map[string]any
	Timestamp time.Time
	// Source names the sending source; it becomes the traits' Source.
	Source string
}

// Track records an event a person did (Segment's track). Identifiers as for
// Identify; Event is required.
type Track struct {
	MessageID   string
	UserID      string
	AnonymousID string
	ExternalIDs []identity.ID
	Event       string
	Properties  map[string]any
	Timestamp   time.Time
	Source      string
}

// message is a validated, normalised message.
type message struct {
	kind      string // "identify" or "track"
	messageID string

	timestamp time.Time
	source    string
	traits    map[string]any // identify; a nil value removes the trait
	event     string         // track
	props     map[string]any // track
}

func (m *Identify) prepare(r *identity.Resolver, out *message, ids []identity.ID) ([]identity.ID, error) {
	out.kind = "identify"
	ids, err := out.common(r, m.MessageID, m.UserID, m.AnonymousID, m.ExternalIDs, m.Timestamp, m.Source, ids)
	if err != nil {
		return ids, err
	}
	traits, err := checkTraits(m.Traits)
	if err != nil {
		return ids, err
	}
	out.traits = traits
	for k, v := range traits {
		if s, ok := v.(string); ok && isPromoted(k) {
			// A promoted value that is not a usable identifier stays a trait only.
			if id, err := r.Check(identity.ID{Type: k, Value: s}); err == nil {
				ids = append(ids, id)
			}
		}
	}
	return finish(r, ids)
}

func (m *Track) prepare(r *identity.Resolver, out *message, ids []identity.ID) ([]identity.ID, error) {
	out.kind = "track"
	ids, err := out.common(r, m.MessageID, m.UserID, m.AnonymousID, m.ExternalIDs, m.Timestamp, m.Source, ids)
	if err != nil {
		return ids, err
	}
	if m.Event == "" {
		return ids, fieldErrorf("Event", "empty event name")
	}
	if err := checkName("Event", m.Event); err != nil {
		return ids, err
	}
	out.event = m.Event
	if m.Properties != nil {
		p, err := profile.NormalizeValue("Properties", m.Properties)
		if err != nil {
			return ids, fieldError("Properties", err)
		}
		out.props = p.(map[string]any)
	}
	return finish(r, ids)
}

func isPromoted(trait string) bool {
	for _, t := range identity.DefaultTypes {
		if t == trait {
			return true
		}
	}
	return false
}

func checkName(field, s string) error {
	switch {
	case len(s) > maxNameLength:
		return fieldErrorf(field, "%d bytes, more than %d", len(s), maxNameLength)
	case !utf8.ValidString(s):
		return fieldErrorf(field, "not valid UTF-8")
	}
	return nil
}

// common validates what every message type has and appends its identifiers.
func (m *message) common(r *identity.Resolver, msgID, userID, anonID string, ext []identity.ID, ts time.Time, source string, ids []identity.ID) ([]identity.ID, error) {
	if ts.IsZero() {
		return ids, fieldErrorf("Timestamp", "zero; set it to when the message happened")
	}
	m.timestamp = ts.UTC().Truncate(time.Microsecond)
	if err := checkName("MessageID", msgID); err != nil {
		return ids, err
	}
	if msgID == "" {
		msgID = newMessageID()
	}
	m.messageID = msgID
	if err := checkName("Source", source); err != nil {
		return ids, err
	}
	m.source = source
	var err error
	if userID != "" {
		if ids, err = addID(r, ids, "UserID", identity.ID{Type: identity.TypeUserID, Value: userID}); err != nil {
			return ids, err
		}
	}
	if anonID != "" {
		if ids, err = addID(r, ids, "AnonymousID", identity.ID{Type: identity.TypeAnonymousID, Value: anonID}); err != nil {
			return ids, err
		}
	}
	for i, id := range ext {
		if ids, err = addID(r, ids, "ExternalIDs["+strconv.Itoa(i)+"]", id); err != nil {
			return ids, err
		}
	}
	return ids, nil
}

// addID checks one identifier of the message and appends it, unless it is
// blocked and the rules say to drop blocked identifiers.
func addID(r *identity.Resolver, ids []identity.ID, field string, id identity.ID) ([]identity.ID, error) {
	n, err := r.Check(id)
	switch {
	case err == nil:
		return append(ids, n), nil
	case errors.Is(err, identity.ErrBlocked) && r.DropBlocked():
		return ids, nil
	}
	return ids, fieldError(field, err)
}

func finish(r *identity.Resolver, ids []identity.ID) ([]identity.ID, error) {
	if len(ids) == 0 {
		return ids, fieldErrorf("UserID", "the message has no usable identifier: set UserID, AnonymousID or ExternalIDs")
	}
	return r.Order(ids), nil
}

func newMessageID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return fmt.Sprintf("gdprkit-%x", b)
}

// checkTraits validates traits as an Identify's are validated: at most
// MaxTraits, names not empty, values JSON. It returns them normalised (a nil
// value stays nil: it removes the trait).
func checkTraits(traits map[string]any) (map[string]any, error) {
	if len(traits) > MaxTraits {
		return nil, fieldErrorf("Traits", "%d traits, more than %d", len(traits), MaxTraits)
	}
	out := make(map[string]any, len(traits))
	for k, v := range traits {
		path := fmt.Sprintf("Traits[%q]", k)
		if k == "" {
			return nil, fieldErrorf(path, "empty trait name")
		}
		if err := checkName(path, k); err != nil {
			return nil, err
		}
		n, err := profile.NormalizeValue(path, v)
		if err != nil {
			return nil, fieldError(path, err)
		}
		out[k] = n
	}
	return out, nil
}
