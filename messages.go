package privacy

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// Limits on collected messages.
const (
	// MaxTraits bounds the traits of one Identify or Group: Segment rejects
	// those with MaxTraits or more.
	MaxTraits = 300
	// maxNameLength bounds message ids, event names, trait keys and sources.
	maxNameLength = 1024
)

// Message is a Segment-spec message for Collect: Identify, Track, Page,
// Screen, Group or Alias (or a pointer to one).
type Message interface {
	// isMessage seals the interface: only this package's message types
	// implement it.
	isMessage()
}

func (Identify) isMessage() {}
func (Track) isMessage()    {}
func (Page) isMessage()     {}
func (Screen) isMessage()   {}
func (Group) isMessage()    {}
func (Alias) isMessage()    {}

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
	case Page:
		return m.prepare(in, out, ids)
	case *Page:
		if m != nil {
			return m.prepare(in, out, ids)
		}
	case Screen:
		return m.prepare(in, out, ids)
	case *Screen:
		if m != nil {
			return m.prepare(in, out, ids)
		}
	case Group:
		return m.prepare(in, out, ids)
	case *Group:
		if m != nil {
			return m.prepare(in, out, ids)
		}
	case Alias:
		return m.prepare(in, out, ids)
	case *Alias:
		if m != nil {
			return m.prepare(in, out, ids)
		}
	}
	return ids, fieldErrorf("Message", "nil message")
}

// Segment's common fields, on every message type:
//
//   - Context is what the sending library knows of the circumstances (ip,
//     userAgent, device, page, campaign, locale, library, traits, consent,
//     ...), kept as given: a JSON object within the message's size limit.
//     Its traits.email is an identifier, as traits.email is, and so is each
//     of its externalIds ({id, type}, in the users collection); on a device
//     whose type is "ios" or "android", device.id, device.advertisingId
//     (when device.adTrackingEnabled is true) and device.token are the
//     identifiers <type>.id, <type>.idfa and <type>.push_token.
//   - Integrations names the destinations the message goes to: a key per
//     destination name, true or an object to send, false not to; "All"
//     applies to those not named (by default all are sent).
//   - Timestamp (or OriginalTimestamp, when Timestamp is zero) is when the
//     message happened by the sender's clock; SentAt, when the sender sent
//     it by that clock; ReceivedAt, when it reached the host (zero: when
//     it is collected). The time stored is Segment's: ReceivedAt -
//     (SentAt - Timestamp) when SentAt is given, which corrects the
//     sender's clock skew; Timestamp when it is not; ReceivedAt when
//     neither Timestamp nor OriginalTimestamp is.
//   - Source names the sending source; it becomes the traits' Source and
//     the stored event's.

// Identify tells who a person is and what is known of them (Segment's identify).
// At least one of UserID, AnonymousID and ExternalIDs is required. The email
// trait is an identifier of the profile too, and so is a trait the identity
// rules name (identity.Rules.Custom).
type Identify struct {
	// MessageID de-duplicates: a message collected twice for one person is stored
	// once. When empty, a random id is assigned.
	MessageID   string
	UserID      string
	AnonymousID string
	ExternalIDs []identity.ID
	// Traits set profile traits; a trait set to nil removes it, "" sets it empty.
	// MaxTraits or more are refused.
	Traits    map[string]any
	Timestamp time.Time
	// Source names the sending source; it becomes the traits' Source.
	Source string
	// Segment's common fields (see Message).
	Context           map[string]any
	Integrations      map[string]any
	SentAt            time.Time
	ReceivedAt        time.Time
	OriginalTimestamp time.Time
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
	// Segment's common fields (see Message).
	Context           map[string]any
	Integrations      map[string]any
	SentAt            time.Time
	ReceivedAt        time.Time
	OriginalTimestamp time.Time
}

// Page records a page a person viewed on a website (Segment's page). It is
// stored as an event of type "page" named Name; Name and Category are
// added to its properties (as analytics.js does) unless they hold those
// keys already. Identifiers as for Identify.
type Page struct {
	MessageID   string
	UserID      string
	AnonymousID string
	ExternalIDs []identity.ID
	Name        string
	Category    string
	Properties  map[string]any
	Timestamp   time.Time
	Source      string
	// Segment's common fields (see Message).
	Context           map[string]any
	Integrations      map[string]any
	SentAt            time.Time
	ReceivedAt        time.Time
	OriginalTimestamp time.Time
}

// Screen records a screen a person viewed in a mobile app (Segment's
// screen), stored as an event of type "screen" named Name, which is added
// to its properties unless they hold it already. Identifiers as for
// Identify.
type Screen struct {
	MessageID   string
	UserID      string
	AnonymousID string
	ExternalIDs []identity.ID
	Name        string
	Properties  map[string]any
	Timestamp   time.Time
	Source      string
	// Segment's common fields (see Message).
	Context           map[string]any
	Integrations      map[string]any
	SentAt            time.Time
	ReceivedAt        time.Time
	OriginalTimestamp time.Time
}

// Group ties a person to a group (an account, a company: Segment's group).
// GroupID is required; the message is stored as an event of type "group"
// named GroupID, whose properties are the group's Traits (MaxTraits or more
// are refused), and sent to destinations. The group's id is not an
// identifier of the person: members of one group are different people.
// Identifiers as for Identify.
type Group struct {
	MessageID   string
	UserID      string
	AnonymousID string
	ExternalIDs []identity.ID
	GroupID     string
	Traits      map[string]any
	Timestamp   time.Time
	Source      string
	// Segment's common fields (see Message).
	Context           map[string]any
	Integrations      map[string]any
	SentAt            time.Time
	ReceivedAt        time.Time
	OriginalTimestamp time.Time
}

// Alias tells that PreviousID (an earlier user id or anonymous id) is the
// person UserID is now (Segment's alias). As in Segment Unify it does not
// merge profiles: it is stored as an event of type "alias" on UserID's
// profile, with previousId among its properties, and sent to destinations.
// An alias whose PreviousID is suppressed, as a user id, an anonymous id
// or an email, is dropped with ErrSuppressed: it would store and send on
// the id of a person who objected. identity.Rules.AliasLinks makes PreviousID an
// identifier of the types it lists, linked to UserID's profile under the
// usual merge protection. UserID and PreviousID are required.
type Alias struct {
	MessageID   string
	UserID      string
	AnonymousID string
	PreviousID  string
	Timestamp   time.Time
	Source      string
	// Segment's common fields (see Message).
	Context           map[string]any
	Integrations      map[string]any
	SentAt            time.Time
	ReceivedAt        time.Time
	OriginalTimestamp time.Time
}

// Message types, as message.kind and destination.Message.Type.
const (
	kindIdentify = "identify"
	kindTrack    = "track"
	kindPage     = "page"
	kindScreen   = "screen"
	kindGroup    = "group"
	kindAlias    = "alias"
)

// message is a validated, normalised message.
type message struct {
	kind      string // kindIdentify, kindTrack, ...
	messageID string

	timestamp time.Time // as Segment computes it
	source    string
	traits    map[string]any // identify; a nil value removes the trait
	event     string         // the stored event's name: a track's event, a page's or screen's name
	props     map[string]any // the stored event's properties
	category  string         // page
	groupID   string         // group
	previous  string         // alias

	context      map[string]any
	contextJSON  profile.EncodedObject // context's JSON (checkContext)
	integrations map[string]any
	// consent is context.consent.categoryPreferences when hasConsent: the
	// message sets the person's consent (a value other than true is false).
	consent    map[string]any
	hasConsent bool

	// routed are the destinations the message goes to, and joined those
	// it makes the person's recipients for the first time (both set by
	// advanceMetadata).
	routed, joined []string
	// sides are, for a message that merges profiles, the recipients of each
	// profile it joins: the kept one, then plan.Absorb's (buildUpdate).
	sides [][]string

	dropped error // the first blocked identifier dropped (addID)
}

// storesEvent reports whether the message is stored as an event (every
// kind but identify).
func (m *message) storesEvent() bool { return m.kind != kindIdentify }

// envelope is what every message type has, handed to message.common.
type envelope struct {
	messageID, userID, anonID, source string
	ext                               []identity.ID
	timestamp, original, sentAt, recv time.Time
	context, integrations             map[string]any
}

func (m *Identify) prepare(in *intake, out *message, ids []identity.ID) ([]identity.ID, error) {
	r := in.resolver
	budget, ids, err := out.start(in, kindIdentify, envelope{m.MessageID, m.UserID, m.AnonymousID, m.Source, m.ExternalIDs,
		m.Timestamp, m.OriginalTimestamp, m.SentAt, m.ReceivedAt, m.Context, m.Integrations}, ids)
	if err != nil {
		return ids, err
	}
	traits, err := checkTraits(m.Traits, &budget, in.limits)
	if err != nil {
		return ids, err
	}
	out.traits = traits
	if s, ok := traits[identity.TypeEmail].(string); ok {
		// A value that is not a usable identifier stays a trait only.
		if id, err := r.Check(identity.ID{Type: identity.TypeEmail, Value: s}); err == nil {
			ids = append(ids, id)
		}
	}
	ids = customIDs(r, traits, r.TraitIDs, ids)
	return out.finish(r, ids)
}

func (m *Track) prepare(in *intake, out *message, ids []identity.ID) ([]identity.ID, error) {
	budget, ids, err := out.start(in, kindTrack, envelope{m.MessageID, m.UserID, m.AnonymousID, m.Source, m.ExternalIDs,
		m.Timestamp, m.OriginalTimestamp, m.SentAt, m.ReceivedAt, m.Context, m.Integrations}, ids)
	if err != nil {
		return ids, err
	}
	if m.Event == "" {
		return ids, fieldErrorf("Event", "empty event name")
	}
	if err := out.name(in, &budget, "Event", m.Event); err != nil {
		return ids, err
	}
	if out.props, err = checkProperties(in, &budget, "Properties", m.Properties, nil); err != nil {
		return ids, err
	}
	return out.finish(in.resolver, customIDs(in.resolver, out.props, in.resolver.PropertyIDs, ids))
}

func (m *Page) prepare(in *intake, out *message, ids []identity.ID) ([]identity.ID, error) {
	budget, ids, err := out.start(in, kindPage, envelope{m.MessageID, m.UserID, m.AnonymousID, m.Source, m.ExternalIDs,
		m.Timestamp, m.OriginalTimestamp, m.SentAt, m.ReceivedAt, m.Context, m.Integrations}, ids)
	if err != nil {
		return ids, err
	}
	if err := out.name(in, &budget, "Name", m.Name); err != nil {
		return ids, err
	}
	if err := checkName("Category", m.Category); err != nil {
		return ids, err
	}
	if budget -= len(m.Category); budget < 0 {
		return ids, tooLarge("Category", in.limits)
	}
	out.category = m.Category
	if out.props, err = checkProperties(in, &budget, "Properties", m.Properties, []string{"name", m.Name, "category", m.Category}); err != nil {
		return ids, err
	}
	return out.finish(in.resolver, customIDs(in.resolver, out.props, in.resolver.PropertyIDs, ids))
}

func (m *Screen) prepare(in *intake, out *message, ids []identity.ID) ([]identity.ID, error) {
	budget, ids, err := out.start(in, kindScreen, envelope{m.MessageID, m.UserID, m.AnonymousID, m.Source, m.ExternalIDs,
		m.Timestamp, m.OriginalTimestamp, m.SentAt, m.ReceivedAt, m.Context, m.Integrations}, ids)
	if err != nil {
		return ids, err
	}
	if err := out.name(in, &budget, "Name", m.Name); err != nil {
		return ids, err
	}
	if out.props, err = checkProperties(in, &budget, "Properties", m.Properties, []string{"name", m.Name}); err != nil {
		return ids, err
	}
	return out.finish(in.resolver, customIDs(in.resolver, out.props, in.resolver.PropertyIDs, ids))
}

func (m *Group) prepare(in *intake, out *message, ids []identity.ID) ([]identity.ID, error) {
	r := in.resolver
	budget, ids, err := out.start(in, kindGroup, envelope{m.MessageID, m.UserID, m.AnonymousID, m.Source, m.ExternalIDs,
		m.Timestamp, m.OriginalTimestamp, m.SentAt, m.ReceivedAt, m.Context, m.Integrations}, ids)
	if err != nil {
		return ids, err
	}
	if m.GroupID == "" {
		return ids, fieldErrorf("GroupID", "empty; a group message names its group")
	}
	// The group's id is the event's name, not an identifier of the person:
	// as one, it merged every member of a group into one profile, and an
	// erasure of one suppressed the group for all.
	if err := out.name(in, &budget, "GroupID", m.GroupID); err != nil {
		return ids, err
	}
	out.groupID = m.GroupID
	traits, err := checkTraits(m.Traits, &budget, in.limits)
	if err != nil {
		return ids, err
	}
	// The group's traits, not the person's: kept on the group event, with
	// nil values kept as null (they remove nothing).
	out.props = traits
	return out.finish(r, customIDs(r, traits, r.TraitIDs, ids))
}

func (m *Alias) prepare(in *intake, out *message, ids []identity.ID) ([]identity.ID, error) {
	if m.UserID == "" {
		return ids, fieldErrorf("UserID", "empty; an alias names the user id the person has now")
	}
	if _, err := in.resolver.Check(identity.ID{Type: identity.TypeUserID, Value: m.UserID}); err != nil {
		// Refused whatever DropBlocked says: an alias without its user id
		// would tell destinations the previous id is nobody.
		return ids, fieldError("UserID", err)
	}
	if m.PreviousID == "" {
		return ids, fieldErrorf("PreviousID", "empty; an alias names the id the person had before")
	}
	budget, ids, err := out.start(in, kindAlias, envelope{m.MessageID, m.UserID, m.AnonymousID, m.Source, nil,
		m.Timestamp, m.OriginalTimestamp, m.SentAt, m.ReceivedAt, m.Context, m.Integrations}, ids)
	if err != nil {
		return ids, err
	}
	if err := checkName("PreviousID", m.PreviousID); err != nil {
		return ids, err
	}
	if len(m.PreviousID) > identity.MaxValueLength {
		return ids, fieldErrorf("PreviousID", "%d bytes, more than %d", len(m.PreviousID), identity.MaxValueLength)
	}
	if budget -= len(m.PreviousID); budget < 0 {
		return ids, tooLarge("PreviousID", in.limits)
	}
	out.previous = m.PreviousID
	out.props = map[string]any{"previousId": m.PreviousID}
	// Linked only when the rules say as what (identity.Rules.AliasLinks).
	// A blocked previousId is not linked, whatever DropBlocked says: the
	// alias's user id names the person.
	for _, typ := range in.resolver.AliasLinks() {
		id, err := in.resolver.Check(identity.ID{Type: typ, Value: m.PreviousID})
		switch {
		case err == nil:
			ids = append(ids, id)
		case !errors.Is(err, identity.ErrBlocked):
			return ids, fieldError("PreviousID", err)
		}
	}
	return out.finish(in.resolver, ids)
}

// start begins preparing a message of the kind given: the common fields,
// within the message's size budget, which it returns for the rest.
func (m *message) start(in *intake, kind string, e envelope, ids []identity.ID) (int, []identity.ID, error) {
	m.kind = kind
	budget := in.limits.MessageBytes
	ids, err := m.common(in, &budget, &e, ids)
	return budget, ids, err
}

// name checks a stored event's name and spends it from the budget.
func (m *message) name(in *intake, budget *int, field, name string) error {
	if err := checkName(field, name); err != nil {
		return err
	}
	if *budget -= len(name); *budget < 0 {
		return tooLarge(field, in.limits)
	}
	m.event = name
	return nil
}

// checkProperties validates a stored event's properties, and adds the
// pairs of add (key, value, ...) whose value is not empty and whose key the
// properties do not hold.
func checkProperties(in *intake, budget *int, field string, props map[string]any, add []string) (map[string]any, error) {
	if props == nil && !hasValue(add) {
		return nil, nil
	}
	if len(props) > in.limits.Properties {
		return nil, fieldErrorf(field, "%d properties, more than %d (Limits.Properties)", len(props), in.limits.Properties)
	}
	var out map[string]any
	cloned := false
	if props != nil {
		p, err := profile.NormalizeValueWithin(field, props, budget)
		if errors.Is(err, profile.ErrTooLarge) {
			return nil, tooLarge(field, in.limits)
		}
		if err != nil {
			return nil, fieldError(field, err)
		}
		out, _ = p.(map[string]any)
	}
	for i := 0; i+1 < len(add); i += 2 {
		k, v := add[i], add[i+1]
		if v == "" {
			continue
		}
		if _, ok := out[k]; ok {
			continue
		}
		if !cloned {
			// NormalizeValue may have returned the caller's own map.
			out, cloned = maps.Clone(out), true
			if out == nil {
				out = map[string]any{}
			}
		}
		out[k] = v
	}
	return out, nil
}

// hasValue reports whether any value of the pairs (key, value, ...) is not
// empty.
func hasValue(pairs []string) bool {
	for i := 1; i < len(pairs); i += 2 {
		if pairs[i] != "" {
			return true
		}
	}
	return false
}

// customIDs appends the identifiers the rules take from values
// (Rules.Custom: typesOf is the resolver's TraitIDs or PropertyIDs): a
// string, or a number written as an integer. A value that is not a usable
// identifier stays where it is only.
func customIDs(r *identity.Resolver, values map[string]any, typesOf func(string) []string, ids []identity.ID) []identity.ID {
	if !r.HasCustom() {
		return ids
	}
	for k, v := range values {
		types := typesOf(k)
		if types == nil {
			continue
		}
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case float64, json.Number: // an integer, however it was written
			var ok bool
			if s, ok = profile.IntegerText(x); !ok {
				continue
			}
		default:
			continue
		}
		for _, typ := range types {
			if id, err := r.Check(identity.ID{Type: typ, Value: s}); err == nil {
				ids = append(ids, id)
			}
		}
	}
	return ids
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
// It spends the budget on the message id, identifiers, source, context and
// integrations.
func (m *message) common(in *intake, budget *int, e *envelope, ids []identity.ID) ([]identity.ID, error) {
	r := in.resolver
	ts, err := segmentTime(in, e)
	if err != nil {
		return ids, err
	}
	m.timestamp = ts.UTC().Truncate(time.Microsecond)
	msgID := e.messageID
	if err := checkName("MessageID", msgID); err != nil {
		return ids, err
	}
	if len(msgID) > in.limits.MessageIDBytes {
		return ids, fieldErrorf("MessageID", "%d bytes, more than %d (Limits.MessageIDBytes)", len(msgID), in.limits.MessageIDBytes)
	}
	for _, f := range [...]struct {
		name string
		n    int
	}{{"MessageID", len(msgID)}, {"UserID", len(e.userID)}, {"AnonymousID", len(e.anonID)}, {"Source", len(e.source)}} {
		if *budget -= f.n; *budget < 0 {
			return ids, tooLarge(f.name, in.limits)
		}
	}
	for i, id := range e.ext {
		if *budget -= len(id.Type) + len(id.Value) + externalIDOverhead; *budget < 0 {
			return ids, tooLarge("ExternalIDs["+strconv.Itoa(i)+"]", in.limits)
		}
	}
	if msgID == "" {
		msgID = newMessageID()
	}
	m.messageID = msgID
	if err := checkName("Source", e.source); err != nil {
		return ids, err
	}
	m.source = e.source
	// Assigned one by one, not through pointers into m, which would move the
	// message to the heap.
	if m.storesEvent() {
		m.context, m.contextJSON, err = checkContext(in, budget, e.context)
	} else { // an identify: no event keeps the context's JSON
		m.context, err = checkObject(in, budget, "Context", e.context)
	}
	if err != nil {
		return ids, err
	}
	if m.integrations, err = checkObject(in, budget, "Integrations", e.integrations); err != nil {
		return ids, err
	}
	if m.consent, m.hasConsent, err = consentOf(m.context); err != nil {
		return ids, err
	}
	if e.userID != "" {
		if ids, err = m.addID(r, ids, "UserID", identity.ID{Type: identity.TypeUserID, Value: e.userID}); err != nil {
			return ids, err
		}
	}
	if e.anonID != "" {
		if ids, err = m.addID(r, ids, "AnonymousID", identity.ID{Type: identity.TypeAnonymousID, Value: e.anonID}); err != nil {
			return ids, err
		}
	}
	for i, id := range e.ext {
		if ids, err = m.addID(r, ids, "ExternalIDs["+strconv.Itoa(i)+"]", id); err != nil {
			return ids, err
		}
	}
	return contextIDs(r, m.context, ids), nil
}

// checkContext is checkObject for the context, which it also encodes, in
// the same walk: the stored event keeps its JSON (Update.EncodedContext).
func checkContext(in *intake, budget *int, v map[string]any) (map[string]any, profile.EncodedObject, error) {
	out, b, err := profile.EncodeObjectWithin("Context", v, budget)
	if errors.Is(err, profile.ErrTooLarge) {
		return nil, b, tooLarge("Context", in.limits)
	}
	if err != nil {
		return nil, b, fieldError("Context", err)
	}
	return out, b, nil
}

// consentOf returns a message context's consent.categoryPreferences, and
// whether it has them, as Segment reads them: a context without a consent
// object, or a consent object without categoryPreferences, says nothing of
// consent; an empty categoryPreferences denies every category. A consent
// object or preferences of another shape are refused rather than taken as
// no consent, which would send the message everywhere unenforced. A
// preference other than true (a string "true", say) is not consent: it
// counts as false, for routing and on the profile.
func consentOf(ctx map[string]any) (map[string]any, bool, error) {
	v, ok := ctx["consent"]
	if !ok || v == nil {
		return nil, false, nil
	}
	consent, ok := v.(map[string]any)
	if !ok {
		return nil, false, fieldErrorf("Context.consent", "must be an object holding categoryPreferences")
	}
	p, ok := consent["categoryPreferences"]
	if !ok || p == nil {
		return nil, false, nil
	}
	prefs, ok := p.(map[string]any)
	if !ok {
		return nil, false, fieldErrorf("Context.consent.categoryPreferences", "must be an object of true or false per consent category")
	}
	if len(prefs) > profile.MaxConsentCategories {
		return nil, false, fieldErrorf("Context.consent.categoryPreferences", "%d categories, more than %d (profile.MaxConsentCategories)", len(prefs), profile.MaxConsentCategories)
	}
	for k := range prefs {
		if len(k) > profile.MaxConsentCategoryBytes {
			return nil, false, fieldErrorf("Context.consent.categoryPreferences", "a category name of %d bytes, more than %d (profile.MaxConsentCategoryBytes)", len(k), profile.MaxConsentCategoryBytes)
		}
	}
	return prefs, true, nil
}

// checkObject normalises a message's JSON object field (nil stays nil)
// within the budget.
func checkObject(in *intake, budget *int, field string, v map[string]any) (map[string]any, error) {
	if v == nil {
		return nil, nil
	}
	n, err := profile.NormalizeValueWithin(field, v, budget)
	if errors.Is(err, profile.ErrTooLarge) {
		return nil, tooLarge(field, in.limits)
	}
	if err != nil {
		return nil, fieldError(field, err)
	}
	out, _ := n.(map[string]any)
	return out, nil
}

// segmentTime is the message's time as Segment computes it (see Message),
// checked: a time past the clock by more than Limits.FutureSkew is taken as
// the clock's.
func segmentTime(in *intake, e *envelope) (time.Time, error) {
	for _, f := range [...]struct {
		name string
		t    time.Time
	}{{"Timestamp", e.timestamp}, {"OriginalTimestamp", e.original}, {"SentAt", e.sentAt}, {"ReceivedAt", e.recv}} {
		if !f.t.IsZero() && f.t.Before(earliest) {
			return time.Time{}, fieldErrorf(f.name, "before year 1")
		}
	}
	original := e.timestamp
	if original.IsZero() {
		original = e.original
	}
	received := e.recv
	if received.IsZero() {
		received = in.now
	}
	ts := original
	switch {
	case original.IsZero():
		ts = received
	case !e.sentAt.IsZero():
		// The sender's clock skew (received - sentAt) corrected; added to
		// the original rather than subtracting their gap from received, which
		// a time.Duration (±292 years) cannot hold for an old timestamp.
		ts = original.Add(received.Sub(e.sentAt))
	}
	switch {
	case ts.Before(earliest):
		return time.Time{}, fieldErrorf("Timestamp", "before year 1 once corrected by SentAt and ReceivedAt")
	case ts.After(in.now.Add(in.limits.FutureSkew)):
		// A clock ahead of ours: taken as the time it is collected.
		ts = in.now
	}
	return ts, nil
}

// contextIDs appends the identifiers a message's context holds, as Segment
// takes them: traits.email, externalIds (of the users collection), and on
// an iOS or Android device its id and advertising id. A value that is not a usable identifier (blocked, too
// long) is left in the context only.
func contextIDs(r *identity.Resolver, ctx map[string]any, ids []identity.ID) []identity.ID {
	if ctx == nil {
		return ids
	}
	add := func(typ string, v any) {
		if s, ok := v.(string); ok && s != "" {
			if id, err := r.Check(identity.ID{Type: typ, Value: s}); err == nil {
				ids = append(ids, id)
			}
		}
	}
	if traits, ok := ctx["traits"].(map[string]any); ok {
		add(identity.TypeEmail, traits["email"])
	}
	// Segment's externalIds, [{id, type, collection, encoding}]: a user's
	// identifiers named by their type.
	if ext, ok := ctx["externalIds"].([]any); ok {
		for _, x := range ext {
			if e, ok := x.(map[string]any); ok {
				if typ, ok := e["type"].(string); ok && typ != "" && typ != identity.TypeGroupID { // a group's, not the person's
					if c, _ := e["collection"].(string); c == "" || c == "users" {
						add(typ, e["id"])
					}
				}
			}
		}
	}
	if device, ok := ctx["device"].(map[string]any); ok {
		switch platform, _ := device["type"].(string); strings.ToLower(platform) {
		case "ios", "android":
			p := strings.ToLower(platform)
			add(p+".id", device["id"])
			if device["adTrackingEnabled"] == true { // as Segment: only when the person lets ads track them
				add(p+".idfa", device["advertisingId"])
			}
			add(p+".push_token", device["token"])
		}
	}
	return ids
}

// addID checks one identifier of the message and appends it, unless it is
// blocked and the rules say to drop blocked identifiers.
// The first one dropped is kept, to name should none be left.
func (m *message) addID(r *identity.Resolver, ids []identity.ID, field string, id identity.ID) ([]identity.ID, error) {
	n, err := r.Check(id)
	switch {
	case err == nil:
		return append(ids, n), nil
	case errors.Is(err, identity.ErrBlocked) && r.DropBlocked():
		if m.dropped == nil {
			m.dropped = fieldError(field, fmt.Errorf("%w; the message has no other identifier", err))
		}
		return ids, nil
	}
	return ids, fieldError(field, err)
}

// finish orders the message's identifiers, and refuses it when none is
// left: the blocked one dropped first is named, if any.
func (m *message) finish(r *identity.Resolver, ids []identity.ID) ([]identity.ID, error) {
	if len(ids) == 0 {
		if m.dropped != nil {
			return ids, m.dropped
		}
		return ids, fieldErrorf("UserID", "the message has no usable identifier: set UserID, AnonymousID or ExternalIDs")
	}
	return r.Order(ids), nil
}

// MessageIDFor returns a message id for a message sent without one, derived
// from content (what makes the message itself: its source, its type, its
// JSON as sent) under the Controller's key, so that a message sent again
// (a batch resent after an error, a client retrying an answer it lost) gets
// the same id and is a repeat, stored once, on every host sharing the key
// and across restarts; and so that the id, which answers and paging cursors
// show, tells nothing of the content to whoever reads it (a plain hash of a
// short message could be reversed by trying candidates). An intake that
// cannot tell a resend from a new message without an id uses it (package
// segmentapi does); others leave MessageID empty and get a random one.
func (c *Controller) MessageIDFor(content []byte) string {
	sum := sha256.Sum256(content)
	// A keyed hash of a type no identifier has, so that it stands for no
	// person's identifier.
	h := c.hasher.ID(identity.ID{Type: "gdprkit.message-digest", Value: hex.EncodeToString(sum[:])})
	return "gdprkit-d" + hex.EncodeToString(h[:])
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
	if len(traits) >= MaxTraits {
		return nil, fieldErrorf("Traits", "%d traits; Segment takes fewer than %d", len(traits), MaxTraits)
	}
	out := make(map[string]any, len(traits))
	for k, v := range traits {
		if len(k) > maxNameLength { // before the name is quoted into a path
			return nil, fieldErrorf("Traits", "a trait name of %d bytes, more than %d", len(k), maxNameLength)
		}
		// The trait's path names it in errors only: it is made once one is
		// found, rather than for every trait of every message.
		if k == "" {
			return nil, fieldErrorf(traitPath(k), "empty trait name")
		}
		if err := checkName(traitPathLater, k); err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				fe.Field = traitPath(k)
			}
			return nil, err
		}
		if *budget -= len(k); *budget < 0 {
			return nil, tooLarge(traitPath(k), l)
		}
		n, err := profile.NormalizeValueWithin("", v, budget)
		if err != nil {
			path := traitPath(k)
			var ve *profile.ValueError
			if errors.As(err, &ve) {
				ve.Path = path + ve.Path // the walk's path is the part's within the trait
			}
			if errors.Is(err, profile.ErrTooLarge) {
				return nil, tooLarge(path, l)
			}
			return nil, fieldError(path, err)
		}
		out[k] = n
	}
	return out, nil
}

// traitPath names trait k in an error: Traits["k"].
func traitPath(k string) string { return fmt.Sprintf("Traits[%q]", k) }

// traitPathLater stands for a trait's path in an error checkTraits names
// once it has one (traitPath).
const traitPathLater = ""
