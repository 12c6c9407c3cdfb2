package profile

import (
	"encoding/json"
	"maps"
	"slices"
	"sort"
	"strconv"
	"time"
)

// Consent is a person's consent preferences as Segment's Consent Management
// keeps them on the profile: a status per consent category, set from the
// context.consent.categoryPreferences of the messages collected about the
// person, and the changes that set it, the proof of consent Art. 7(1) GDPR
// asks a controller to be able to show.
//
// A Consent is immutable: Apply and Merge return a new one, and the
// accessors return copies. So copying a Metadata copies its Consent for
// free, whatever the length of its history, on the collection path that
// reads and writes the metadata with every message. The zero Consent is a
// person whose consent was never collected. Stores keep it with the
// metadata, in clear (categories, statuses, times, message ids: no value the
// person typed), as its JSON (MarshalJSON), and delete it with the profile.
type Consent struct {
	// Never changed in place once the Consent is made: Apply and Merge
	// make new ones, so that copies share them safely.
	categories map[string]ConsentStatus
	updatedAt  time.Time
	history    []ConsentChange
}

// Bounds of a Consent, read and written with the metadata on every
// message: the latest MaxConsentHistory changes, whose preferences' names
// take at most MaxConsentHistoryBytes all told (older changes go first), and
// at most MaxConsentCategories categories: past it, a category the latest
// preferences do not name is forgotten (it counts as denied either way;
// only "exists" tells it apart).
const (
	MaxConsentHistory      = 100
	MaxConsentHistoryBytes = 64 << 10
	MaxConsentCategories   = 100
	// MaxConsentCategoryBytes bounds a category's name (a CMP's category
	// ids are short: "Advertising", "C0004").
	MaxConsentCategoryBytes = 128
)

// ConsentStatus is one category's consent status.
type ConsentStatus uint8

// The consent statuses, as Segment shows them on a profile: true, false, or
// conflict when two merged profiles disagreed (the next preference collected
// settles it).
const (
	ConsentDenied ConsentStatus = iota
	ConsentGranted
	ConsentConflict
)

// String returns "true", "false" or "conflict", Segment's names.
func (s ConsentStatus) String() string {
	switch s {
	case ConsentDenied:
		return "false"
	case ConsentGranted:
		return "true"
	case ConsentConflict:
		return "conflict"
	}
	return "ConsentStatus(" + strconv.Itoa(int(s)) + ")"
}

// ConsentChange is one message that changed a person's consent, kept as it
// said it: when, what, and from which message and source.
type ConsentChange struct {
	// MessageID is the message's id; Type its type ("identify", "track",
	// ...) or ConsentMerge for a change a merge of two profiles made; Event a
	// track's event name, such as "Segment Consent Preference Updated".
	MessageID string
	Type      string
	Event     string
	Source    string
	// Timestamp is when the message says the person chose; ReceivedAt when
	// the library collected it.
	Timestamp  time.Time
	ReceivedAt time.Time
	// Preferences are the message's categoryPreferences as given (after a
	// merge, the statuses the merge set, with conflicts as false). Empty,
	// not nil, for an empty object, which denies every category.
	Preferences map[string]bool
}

// The Type of a ConsentChange a merge of two profiles made.
const ConsentMerge = "merge"

func (ch ConsentChange) clone() ConsentChange {
	ch.Preferences = maps.Clone(ch.Preferences)
	return ch
}

// NewConsent returns the Consent of the statuses given, set last at
// updatedAt, with the history given (oldest first; the latest
// MaxConsentHistory are kept). It copies what it keeps. Stores and readers
// of exports make one with it.
func NewConsent(categories map[string]ConsentStatus, updatedAt time.Time, history []ConsentChange) Consent {
	c := Consent{categories: maps.Clone(categories), updatedAt: updatedAt}
	if len(c.categories) == 0 {
		c.categories = nil
	}
	history = bound(history)
	if len(history) > 0 {
		c.history = make([]ConsentChange, len(history))
		for i, ch := range history {
			c.history[i] = ch.clone()
		}
	}
	return c
}

// Categories returns a copy of the statuses of every category ever
// collected; nil when none was.
func (c Consent) Categories() map[string]ConsentStatus { return maps.Clone(c.categories) }

// Status returns the status of category: ConsentDenied when it was never
// collected.
func (c Consent) Status(category string) ConsentStatus { return c.categories[category] }

// Lookup returns the status of category and whether it was ever collected.
func (c Consent) Lookup(category string) (ConsentStatus, bool) {
	s, ok := c.categories[category]
	return s, ok
}

// Len returns how many categories were ever collected.
func (c Consent) Len() int { return len(c.categories) }

// UpdatedAt is the timestamp of the message that set the statuses last: a
// message older than it changes nothing (the latest preference wins,
// whatever the order of arrival).
func (c Consent) UpdatedAt() time.Time { return c.updatedAt }

// History returns a copy of the changes, oldest first: at most
// MaxConsentHistory, the latest ones. nil when there are none.
func (c Consent) History() []ConsentChange {
	if len(c.history) == 0 {
		return nil
	}
	out := make([]ConsentChange, len(c.history))
	for i, ch := range c.history {
		out[i] = ch.clone()
	}
	return out
}

// HistoryLen returns how many changes the history holds.
func (c Consent) HistoryLen() int { return len(c.history) }

// WithoutHistory returns c without its history: what an export's header
// holds, the history being a section of its own.
func (c Consent) WithoutHistory() Consent {
	c.history = nil
	return c
}

// Collected reports whether any consent preference was ever collected.
func (c Consent) Collected() bool {
	return len(c.categories) > 0 || len(c.history) > 0 || !c.updatedAt.IsZero()
}

// Equal reports whether c and o hold the same statuses, time and history
// (nil and empty alike, but for a change's Preferences, where they differ).
func (c Consent) Equal(o Consent) bool {
	if !maps.Equal(c.categories, o.categories) || !c.updatedAt.Equal(o.updatedAt) || len(c.history) != len(o.history) {
		return false
	}
	for i, a := range c.history {
		b := o.history[i]
		if a.MessageID != b.MessageID || a.Type != b.Type || a.Event != b.Event || a.Source != b.Source ||
			!a.Timestamp.Equal(b.Timestamp) || !a.ReceivedAt.Equal(b.ReceivedAt) ||
			(a.Preferences == nil) != (b.Preferences == nil) || !maps.Equal(a.Preferences, b.Preferences) {
			return false
		}
	}
	return true
}

// Same reports whether preferences prefs, one per category (true granted,
// any other value denied), would leave the statuses as they are: the same
// categories, each with the same status and none in conflict. It does not
// allocate: the collection path asks it of every message with consent.
func (c Consent) Same(prefs map[string]any) bool {
	if len(c.categories) != len(prefs) {
		return false
	}
	for k, s := range c.categories {
		v, ok := prefs[k]
		if !ok || s == ConsentConflict || (s == ConsentGranted) != (v == true) {
			return false
		}
	}
	return true
}

// Seen returns c as a message at ts that repeats its preferences leaves
// it: UpdatedAt moves on to ts, so that an older message arriving after
// both changes nothing (the latest preference wins). Nothing is recorded.
func (c Consent) Seen(ts time.Time) Consent {
	c.updatedAt = maxTime(c.updatedAt, ts)
	return c
}

// Apply returns c with ch, a message's preferences, recorded as Segment
// stores them on the profile: every category ch names takes its value,
// every category known before that ch does not name becomes ConsentDenied
// (an empty Preferences denies them all), conflicts are settled. It returns
// c and false when ch is older than UpdatedAt; c.Seen(ch.Timestamp) and
// false when it would change no status and always is false (a message
// repeating the same preferences is no change; an explicit "Segment Consent
// Preference Updated" is recorded always, as proof renewed). It copies what
// it keeps of ch.
func (c Consent) Apply(ch ConsentChange, always bool) (Consent, bool) {
	if ch.Timestamp.Before(c.updatedAt) {
		return c, false
	}
	changed := len(c.categories) != len(ch.Preferences)
	for k, s := range c.categories {
		if changed {
			break
		}
		v, ok := ch.Preferences[k]
		changed = !ok || s != statusOf(v)
	}
	if !changed && !always {
		return c.Seen(ch.Timestamp), false
	}
	cats := make(map[string]ConsentStatus, max(len(c.categories), len(ch.Preferences)))
	if len(c.categories)+len(ch.Preferences) <= MaxConsentCategories {
		for k := range c.categories {
			cats[k] = ConsentDenied
		}
	} else { // past the bound, keep the categories ch names and what room is left
		for k := range c.categories {
			if _, named := ch.Preferences[k]; !named && len(cats)+len(ch.Preferences) < MaxConsentCategories {
				cats[k] = ConsentDenied
			}
		}
	}
	for k, v := range ch.Preferences {
		cats[k] = statusOf(v)
	}
	if ch.Preferences == nil {
		ch.Preferences = map[string]bool{}
	}
	return Consent{categories: nonEmpty(cats), updatedAt: ch.Timestamp, history: appendHistory(c.history, ch.clone())}, true
}

// Merge returns the consent of a profile after one with from's consent is
// merged into it, as Segment resolves a profile-level conflict: a category
// both collected with different statuses, or one collected as granted and
// the other not at all, becomes ConsentConflict. A profile that never
// collected any preference takes the other's as they are. The histories are
// merged in time order, and a merge that made a conflict is recorded, named
// mergeID, received now.
func (c Consent) Merge(from Consent, mergeID string, now time.Time) Consent {
	if !from.Collected() {
		return c
	}
	if !c.Collected() {
		return from
	}
	cats := maps.Clone(c.categories)
	if cats == nil {
		cats = map[string]ConsentStatus{}
	}
	conflict := false
	for k, s := range from.categories {
		if have := cats[k]; have != s { // an absent category is ConsentDenied
			cats[k], conflict = ConsentConflict, true
		} else {
			cats[k] = s
		}
	}
	for k, s := range cats {
		if _, ok := from.categories[k]; !ok && s != ConsentDenied {
			cats[k], conflict = ConsentConflict, true
		}
	}
	h := make([]ConsentChange, 0, len(c.history)+len(from.history)+1)
	h = append(append(h, c.history...), from.history...)
	sort.SliceStable(h, func(i, j int) bool { return h[i].Timestamp.Before(h[j].Timestamp) })
	trimCategories(cats)
	out := Consent{categories: nonEmpty(cats), updatedAt: maxTime(c.updatedAt, from.updatedAt), history: h}
	if conflict {
		prefs := make(map[string]bool, len(cats))
		for k, s := range cats {
			prefs[k] = s == ConsentGranted
		}
		out.history = append(out.history, ConsentChange{MessageID: mergeID, Type: ConsentMerge, Timestamp: out.updatedAt, ReceivedAt: now, Preferences: prefs})
	}
	out.history = bound(out.history)
	return out
}

// wireConsent is a Consent's JSON, as stores keep it.
type wireConsent struct {
	Categories map[string]ConsentStatus `json:"categories,omitempty"`
	UpdatedAt  time.Time                `json:"updated_at,omitzero"`
	History    []ConsentChange          `json:"history,omitempty"`
}

// MarshalJSON encodes the Consent for a store.
func (c Consent) MarshalJSON() ([]byte, error) {
	return json.Marshal(wireConsent{c.categories, c.updatedAt, c.history})
}

// UnmarshalJSON decodes what MarshalJSON encoded.
func (c *Consent) UnmarshalJSON(b []byte) error {
	var w wireConsent
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*c = Consent{categories: nonEmpty(w.Categories), updatedAt: w.UpdatedAt, history: w.History}
	if len(c.history) == 0 {
		c.history = nil
	}
	return nil
}

// appendHistory returns a new history: h, then ch, the oldest changes
// dropped past the bounds. h is shared by other Consents and left as is.
func appendHistory(h []ConsentChange, ch ConsentChange) []ConsentChange {
	return bound(append(slices.Clip(h), ch)) // Clip: append copies, never writes into a shared array
}

// bound drops the oldest changes of h past MaxConsentHistory and
// MaxConsentHistoryBytes (the latest change is kept whatever its size).
func bound(h []ConsentChange) []ConsentChange {
	if n := len(h) - MaxConsentHistory; n > 0 {
		h = h[n:]
	}
	size := 0
	for i := len(h) - 1; i >= 0; i-- {
		if size += changeBytes(&h[i]); size > MaxConsentHistoryBytes && i < len(h)-1 {
			return h[i+1:]
		}
	}
	return h
}

// changeBytes is about what a change takes: its strings and preferences.
func changeBytes(ch *ConsentChange) int {
	n := len(ch.MessageID) + len(ch.Type) + len(ch.Event) + len(ch.Source) + 64
	for k := range ch.Preferences {
		n += len(k) + 8
	}
	return n
}

// trimCategories brings the merged cats within MaxConsentCategories:
// denied categories go first, then the others past the bound, in name
// order, so that every host trims alike.
func trimCategories(cats map[string]ConsentStatus) {
	if len(cats) <= MaxConsentCategories {
		return
	}
	keys := slices.Sorted(maps.Keys(cats))
	for _, k := range keys {
		if len(cats) <= MaxConsentCategories {
			return
		}
		if cats[k] == ConsentDenied {
			delete(cats, k)
		}
	}
	for _, k := range slices.Backward(keys) {
		if len(cats) <= MaxConsentCategories {
			return
		}
		delete(cats, k)
	}
}

func nonEmpty(m map[string]ConsentStatus) map[string]ConsentStatus {
	if len(m) == 0 {
		return nil
	}
	return m
}

func statusOf(granted bool) ConsentStatus {
	if granted {
		return ConsentGranted
	}
	return ConsentDenied
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
