package profile

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/gdprkit/privacy/identity"
)

// Errors of this package, matchable with errors.Is.
var (
	// ErrNotFound: no such profile.
	ErrNotFound = errors.New("profile: not found")
	// ErrInvalid: a query, cursor or value is malformed.
	ErrInvalid = errors.New("profile: invalid")
	// ErrDuplicate: the message id was already recorded for the profile.
	ErrDuplicate = errors.New("profile: duplicate message")
	// ErrTxDone: the transaction was already committed or rolled back.
	ErrTxDone = errors.New("profile: transaction already committed or rolled back")
)

// Profile is one person's profile: traits with provenance, the identifiers they are
// known by and metadata. Events are read separately, page by page.
type Profile struct {
	ID     identity.ProfileID
	Traits map[string]Trait
	// ExternalIDs are the identifiers linked to the profile, oldest first. The
	// identity graph owns them: a Store neither keeps nor returns them, and the
	// Controller fills them in when it reads a profile.
	ExternalIDs []ExternalID
	Metadata    Metadata
}

// Clone returns a deep copy of p.
func (p *Profile) Clone() *Profile {
	c := *p
	c.Traits = CloneTraits(p.Traits)
	c.ExternalIDs = append([]ExternalID(nil), p.ExternalIDs...)
	c.Metadata = p.Metadata.Clone()
	return &c
}

// Trait is one trait value with its provenance. When two values conflict, the one
// updated last wins.
type Trait struct {
	Value any
	// Source says where the value came from: the source named on the message,
	// "identify" (on an account profile, "group") when it named none, or
	// "rectification".
	Source    string
	UpdatedAt time.Time
}

// Sources of trait values set by the library itself.
const (
	SourceIdentify      = "identify"
	SourceGroup         = "group"
	SourceRectification = "rectification"
)

// CloneTraits returns a deep copy of traits; nil stays nil.
func CloneTraits(traits map[string]Trait) map[string]Trait {
	if traits == nil {
		return nil
	}
	c := make(map[string]Trait, len(traits))
	for k, t := range traits {
		t.Value = CloneValue(t.Value)
		c[k] = t
	}
	return c
}

// ownTraits makes traits, a map given (TraitsTaker), the store's own: its
// values that are maps or slices, which may be the caller's, are copied in
// place; the map itself is kept.
func ownTraits(traits map[string]Trait) map[string]Trait {
	for k, t := range traits {
		switch t.Value.(type) {
		case map[string]any, []any:
			t.Value = CloneValue(t.Value)
			traits[k] = t
		}
	}
	return traits
}

// MergeTraits merges src into dst, keeping for each key the value updated last
// (dst's on a tie), and returns dst (allocated if nil). src is not changed and dst
// shares no memory with it.
func MergeTraits(dst, src map[string]Trait) map[string]Trait {
	if dst == nil {
		dst = make(map[string]Trait, len(src))
	}
	for k, t := range src {
		if have, ok := dst[k]; ok && !t.UpdatedAt.After(have.UpdatedAt) {
			continue
		}
		t.Value = CloneValue(t.Value)
		dst[k] = t
	}
	return dst
}

// ExternalID is one identifier of a profile, as the Profile API's external_ids
// endpoint lists it.
type ExternalID struct {
	ID             identity.ID
	CreatedAt      time.Time
	FirstMessageID string
}

// Metadata is what the Profile API's metadata endpoint returns. Version goes up by
// one with every change to the profile, so a caller can confirm that an update
// (a rectification, say) has been processed.
type Metadata struct {
	CreatedAt      time.Time
	UpdatedAt      time.Time
	Version        uint64
	FirstMessageID string
	LastMessageID  string
	// FirstSeen and LastSeen are the earliest and latest message timestamps.
	FirstSeen time.Time
	LastSeen  time.Time
	// Recipients are the destinations the person's data was sent to, in the
	// order they first were (Art. 19: the recipients an access request names).
	Recipients []Recipient
	// Consent is the person's consent preferences and their history
	// (immutable: copies share it safely).
	Consent Consent
	// Accounts are the accounts (Segment's groups) group calls linked the
	// person to, in the order first linked: at most MaxAccountLinks, those
	// linked last. Each account's traits are on its own profile
	// (identity.AccountProfileID). An account profile's metadata lists none.
	Accounts []AccountLink
}

// AccountLink is one account a person belongs to, linked by a group call.
type AccountLink struct {
	GroupID string
	// FirstLinked and LastLinked are the timestamps of the first and the
	// latest group call that linked them.
	FirstLinked, LastLinked time.Time
}

// MaxAccountLinks bounds Metadata.Accounts: a person belongs to a few
// accounts, and the metadata is read with every message.
const MaxAccountLinks = 100

// Recipient is one destination that was sent a person's data, and when: first
// and most recently (when the message was handed to delivery).
type Recipient struct {
	Name                string
	FirstSent, LastSent time.Time
}

// Clone returns a copy of m that shares no memory with it.
func (m Metadata) Clone() Metadata {
	m.Recipients = slices.Clone(m.Recipients)
	m.Accounts = slices.Clone(m.Accounts)
	return m
}

// Event is one track call stored on a profile.
type Event struct {
	MessageID string
	// Type is the type of the message that made the event: "track",
	// "page", "screen", "group" or "alias"; empty for events stored before
	// types were kept, which were tracks.
	Type       string
	Name       string
	Properties map[string]any
	// Context is the message's context (ip, userAgent, device, ...), kept
	// as given: personal data, sealed where the properties are.
	Context map[string]any
	// Source names the source that sent the message.
	Source string
	// Timestamp is when the event happened, as the message says.
	Timestamp time.Time
	// ReceivedAt is when the library collected it.
	ReceivedAt time.Time
}

// Clone returns a deep copy of e.
func (e Event) Clone() Event {
	e.Properties = cloneMap(e.Properties)
	e.Context = cloneMap(e.Context)
	return e
}

// Update is one write to a profile, applied all or nothing by Tx.Update.
type Update struct {
	// Metadata replaces the profile's metadata.
	Metadata Metadata
	// Set sets traits; Remove removes them (after Set).
	Set    map[string]Trait
	Remove []string
	// MessageID, when not empty, is recorded for de-duplication: an Update whose
	// MessageID the profile has recorded before fails with ErrDuplicate and changes
	// nothing.
	MessageID string
	// Event, when not nil, is appended to the profile's events.
	Event *Event
	// EncodedContext is the Event's Context as JSON (its keys in no
	// particular order), when the Controller encoded it while checking it
	// (EncodeObjectWithin): a store may keep EncodedContext.JSONFor(
	// Event.Context) rather than encode the Context again. It is bound to
	// that very map: it gives nothing for any other.
	EncodedContext EncodedObject
}

// Validate checks what every Store relies on: an Event carries the Update's
// MessageID, so events are unique per profile by message id (paging and replay
// depend on it). It fails with ErrInvalid.
func (u *Update) Validate() error {
	if u.Event != nil && (u.Event.MessageID == "" || u.Event.MessageID != u.MessageID) {
		return fmt.Errorf("%w: update: the event's MessageID must be set and equal the update's", ErrInvalid)
	}
	return nil
}

// clone returns a deep copy of u, so the store keeps nothing the caller
// holds, but for the event's Context, which it leaves out: the in-memory
// store keeps it apart, as JSON. The event is returned apart, by value, to
// spare an allocation on the hot path.
func (u *Update) clone(takeSet bool) (c Update, ev Event, hasEvent bool) {
	c = *u
	c.Metadata = u.Metadata.Clone()
	if takeSet { // TraitsTaker: the map is given, its values are not
		c.Set = ownTraits(u.Set)
	} else {
		c.Set = CloneTraits(u.Set)
	}
	c.Remove = append([]string(nil), u.Remove...)
	c.Event, c.EncodedContext = nil, EncodedObject{}
	if u.Event != nil {
		ev = *u.Event
		ev.Properties, ev.Context = cloneMap(u.Event.Properties), nil
		return c, ev, true
	}
	return c, Event{}, false
}

// apply applies u's trait and metadata changes to p in place.
func (u *Update) apply(p *Profile) {
	p.Metadata = u.Metadata
	if len(u.Set) > 0 && p.Traits == nil {
		p.Traits = make(map[string]Trait, len(u.Set))
	}
	maps.Copy(p.Traits, u.Set)
	for _, k := range u.Remove {
		delete(p.Traits, k)
	}
}
