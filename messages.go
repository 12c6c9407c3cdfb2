package privacy

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
func prepareMessage(in *intake, m Message, out *message, ids []identity.ID) ([]identity.ID, error) {
	switch m := m.(type) {
	case Identify:
		return m.prepare(in, out, ids)
	case Track:
		return m.prepare(in, out, ids)
	case *Identify:
		if m != nil {
			return m.prepare(in, out, ids)
		}
	case *Track:
		if m != nil {
			return m.prepare(in, out, ids)
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

func (m *Identify) prepare(in *intake, out *message, ids []identity.ID) ([]identity.ID, error) {
	out.kind = "identify"
	r := in.resolver
	budget := in.limits.MessageBytes
	ids, err := out.common(in, &budget, m.MessageID, m.UserID, m.AnonymousID, m.ExternalIDs, m.Timestamp, m.Source, ids)
	if err != nil {
		return ids, err
	}
	traits, err := checkTraits(m.Traits, &budget, in.limits)
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

func (m *Track) prepare(in *intake, out *message, ids []identity.ID) ([]identity.ID, error) {
	out.kind = "track"
	budget := in.limits.MessageBytes
	ids, err := out.common(in, &budget, m.MessageID, m.UserID, m.AnonymousID, m.ExternalIDs, m.Timestamp, m.Source, ids)
	if err != nil {
		return ids, err
	}
	if m.Event == "" {
		return ids, fieldErrorf("Event", "empty event name")
	}
	if err := checkName("Event", m.Event); err != nil {
		return ids, err
	}
	if budget -= len(m.Event); budget < 0 {
		return ids, tooLarge("Event", in.limits)
	}
	out.event = m.Event
	if m.Properties != nil {
		if len(m.Properties) > in.limits.Properties {
			return ids, fieldErrorf("Properties", "%d properties, more than %d (Limits.Properties)", len(m.Properties), in.limits.Properties)
		}
		p, err := profile.NormalizeValueWithin("Properties", m.Properties, &budget)
		if errors.Is(err, profile.ErrTooLarge) {
			return ids, tooLarge("Properties", in.limits)
		}
		if err != nil {
			return ids, fieldError("Properties", err)
		}
		out.props = p.(map[string]any)
	}
	return finish(in.resolver, ids)
}

func isPromoted(trait string) bool {
	for _, t := range identity.DefaultTypes {
		if t == trait {
			return true
		}
	}
	return false
}

// checkName checks a name: at most maxNameLength bytes of UTF-8, without NUL
// (which no SQL backend stores in text).
func checkName(field, s string) error {
	switch {
	case len(s) > maxNameLength:
		return fieldErrorf(field, "%d bytes, more than %d", len(s), maxNameLength)
	case !utf8.ValidString(s):
		return fieldErrorf(field, "not valid UTF-8")
	case strings.IndexByte(s, 0) >= 0:
		return fieldErrorf(field, "contains a NUL byte")
	}
	return nil
}

// externalIDOverhead is what an external identifier counts beside its type
// and value: its JSON's least, {"id":"","type":""} and a comma.
const externalIDOverhead = 20

// tooLarge is the error of a message larger than the limit, where the
// budget ran out.
func tooLarge(field string, l *Limits) error {
	return fieldErrorf(field, "the message is larger than %d bytes (Limits.MessageBytes)", l.MessageBytes)
}

// common validates what every message type has and appends its identifiers.
// It spends the budget on the message id, identifiers and source.
func (m *message) common(in *intake, budget *int, msgID, userID, anonID string, ext []identity.ID, ts time.Time, source string, ids []identity.ID) ([]identity.ID, error) {
	r := in.resolver
	switch {
	case ts.IsZero():
		return ids, fieldErrorf("Timestamp", "zero; set it to when the message happened")
	case ts.Before(earliest):
		return ids, fieldErrorf("Timestamp", "before year 1")
	case ts.After(in.now.Add(in.limits.FutureSkew)):
		// A clock ahead of ours: taken as the time it is collected.
		ts = in.now
	}
	m.timestamp = ts.UTC().Truncate(time.Microsecond)
	if err := checkName("MessageID", msgID); err != nil {
		return ids, err
	}
	if len(msgID) > in.limits.MessageIDBytes {
		return ids, fieldErrorf("MessageID", "%d bytes, more than %d (Limits.MessageIDBytes)", len(msgID), in.limits.MessageIDBytes)
	}
	for _, f := range [...]struct {
		name string
		n    int
	}{{"MessageID", len(msgID)}, {"UserID", len(userID)}, {"AnonymousID", len(anonID)}, {"Source", len(source)}} {
		if *budget -= f.n; *budget < 0 {
			return ids, tooLarge(f.name, in.limits)
		}
	}
	for i, id := range ext {
		if *budget -= len(id.Type) + len(id.Value) + externalIDOverhead; *budget < 0 {
			return ids, tooLarge("ExternalIDs["+strconv.Itoa(i)+"]", in.limits)
		}
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
// MaxTraits, names not empty, values JSON, their size within the budget,
// which it counts down. It returns them normalised (a nil value stays nil: it
// removes the trait).
func checkTraits(traits map[string]any, budget *int, l *Limits) (map[string]any, error) {
	if len(traits) > MaxTraits {
		return nil, fieldErrorf("Traits", "%d traits, more than %d", len(traits), MaxTraits)
	}
	out := make(map[string]any, len(traits))
	for k, v := range traits {
		if len(k) > maxNameLength { // before the name is quoted into a path
			return nil, fieldErrorf("Traits", "a trait name of %d bytes, more than %d", len(k), maxNameLength)
		}
		path := fmt.Sprintf("Traits[%q]", k)
		if k == "" {
			return nil, fieldErrorf(path, "empty trait name")
		}
		if err := checkName(path, k); err != nil {
			return nil, err
		}
		if *budget -= len(k); *budget < 0 {
			return nil, tooLarge(path, l)
		}
		n, err := profile.NormalizeValueWithin(path, v, budget)
		if errors.Is(err, profile.ErrTooLarge) {
			return nil, tooLarge(path, l)
		}
		if err != nil {
			return nil, fieldError(path, err)
		}
		out[k] = n
	}
	return out, nil
}
