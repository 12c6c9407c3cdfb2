package profile

import (
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
// The zero Consent is a person whose consent was never collected. Stores keep
// it with the metadata, in clear (categories, statuses, times, message ids:
// no value the person typed), and delete it with the profile.
type Consent struct {
	// Categories maps every category ever collected to its status. A
	// category never collected is absent; it counts as ConsentDenied.
	Categories map[string]ConsentStatus
	// UpdatedAt is the timestamp of the message that set Categories last:
	// a message older than it changes nothing (the latest preference wins,
	// whatever the order of arrival).
	UpdatedAt time.Time
	// History lists the changes, oldest first: at most MaxConsentHistory,
	// the latest ones.
	History []ConsentChange
}

// MaxConsentHistory is how many changes Consent.History keeps: the latest.
const MaxConsentHistory = 100

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
	// ...) and Event a track's event name, such as "Segment Consent
	// Preference Updated", or "merge" for a change a merge of two
	// profiles made.
	MessageID string
	Type      string
	Event     string
	Source    string
	// Timestamp is when the message says the person chose; ReceivedAt when
	// the library collected it.
	Timestamp  time.Time
	ReceivedAt time.Time
	// Preferences are the message's categoryPreferences as given (after a
	// merge, the statuses the merge set, with conflicts as false).
	Preferences map[string]bool
}

// The Type of a ConsentChange a merge of two profiles made.
const ConsentMerge = "merge"

// Clone returns a deep copy of c.
func (c Consent) Clone() Consent {
	c.Categories = maps.Clone(c.Categories)
	if c.History != nil {
		h := make([]ConsentChange, len(c.History))
		for i, ch := range c.History {
			ch.Preferences = maps.Clone(ch.Preferences)
			h[i] = ch
		}
		c.History = h
	}
	return c
}

// Status returns the status of category: ConsentDenied when it was never
// collected.
func (c *Consent) Status(category string) ConsentStatus { return c.Categories[category] }

// Collected reports whether any consent preference was ever collected.
func (c *Consent) Collected() bool { return len(c.Categories) > 0 || len(c.History) > 0 }

// Apply records ch, a message's preferences, as Segment stores them on the
// profile: every category ch names takes its value, every category known
// before that ch does not name becomes ConsentDenied (an empty Preferences
// denies them all), conflicts are settled. It changes nothing and reports
// false when ch is older than UpdatedAt, or when it would change no status
// and always is false (a message repeating the same preferences is not a
// change; an explicit "Segment Consent Preference Updated" is recorded
// always, as proof renewed). It keeps ch.Preferences.
func (c *Consent) Apply(ch ConsentChange, always bool) bool {
	if ch.Timestamp.Before(c.UpdatedAt) {
		return false
	}
	changed := len(c.Categories) != len(ch.Preferences)
	for k, s := range c.Categories {
		if changed {
			break
		}
		v, ok := ch.Preferences[k]
		changed = !ok || s != statusOf(v)
	}
	if !changed && !always {
		return false
	}
	if c.Categories == nil {
		c.Categories = make(map[string]ConsentStatus, len(ch.Preferences))
	}
	for k := range c.Categories {
		c.Categories[k] = ConsentDenied
	}
	for k, v := range ch.Preferences {
		c.Categories[k] = statusOf(v)
	}
	c.UpdatedAt = ch.Timestamp
	c.History = appendHistory(c.History, ch)
	return true
}

// Merge combines the consent of a profile merged into this one, as Segment
// resolves a profile-level conflict: a category both collected with
// different statuses, or one collected as granted and the other not at all,
// becomes ConsentConflict. A profile that never collected any preference
// takes the other's as they are. The histories are merged in time order.
// now is when the merge happens; mergeID names it in the history.
func (c *Consent) Merge(from Consent, mergeID string, now time.Time) {
	if !from.Collected() {
		return
	}
	if !c.Collected() {
		*c = from.Clone()
		return
	}
	cats := maps.Clone(c.Categories)
	if cats == nil {
		cats = map[string]ConsentStatus{}
	}
	conflict := false
	for k, s := range from.Categories {
		if have := cats[k]; have != s { // an absent category is ConsentDenied
			cats[k], conflict = ConsentConflict, true
		} else {
			cats[k] = s
		}
	}
	for k, s := range cats {
		if _, ok := from.Categories[k]; !ok && s != ConsentDenied {
			cats[k], conflict = ConsentConflict, true
		}
	}
	h := append(slices.Clone(c.History), from.History...)
	sort.SliceStable(h, func(i, j int) bool { return h[i].Timestamp.Before(h[j].Timestamp) })
	for i := range h {
		h[i].Preferences = maps.Clone(h[i].Preferences)
	}
	c.Categories, c.UpdatedAt = cats, maxTime(c.UpdatedAt, from.UpdatedAt)
	c.History = h
	if conflict {
		prefs := make(map[string]bool, len(cats))
		for k, s := range cats {
			prefs[k] = s == ConsentGranted
		}
		c.History = append(c.History, ConsentChange{MessageID: mergeID, Type: ConsentMerge, Timestamp: c.UpdatedAt, ReceivedAt: now, Preferences: prefs})
	}
	if n := len(c.History) - MaxConsentHistory; n > 0 {
		c.History = slices.Delete(c.History, 0, n)
	}
}

func appendHistory(h []ConsentChange, ch ConsentChange) []ConsentChange {
	if len(h) >= MaxConsentHistory {
		h = slices.Delete(h, 0, len(h)-MaxConsentHistory+1)
	}
	return append(h, ch)
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
