package privacy

// Consent on the profile, as Segment's Consent Management keeps it: every
// message with context.consent.categoryPreferences sets the person's
// preferences (profile.Consent), a change is kept in their history, a
// merge marks disagreements as conflicts.

import (
	"time"

	"github.com/gdprkit/privacy/profile"
)

// ConsentPreferenceUpdated is the track event Segment's consent tools send
// when a person gives or changes their consent preferences. Its consent
// object is recorded in the person's consent history even when it repeats
// the preferences held (proof renewed, where another message repeating them
// is no change), and it reaches every destination its Integrations allow,
// whatever the preferences say: a destination learns that consent was
// withdrawn.
const ConsentPreferenceUpdated = "Segment Consent Preference Updated"

// consentEvent reports whether the message is the ConsentPreferenceUpdated
// track event with a consent object.
func (m *message) consentEvent() bool {
	return m.hasConsent && m.kind == kindTrack && m.event == ConsentPreferenceUpdated
}

// noteConsent records the message's consent preferences in meta, when it
// carries some that change it (or is the explicit event). Consent is
// immutable: an unchanged one costs nothing to carry.
func noteConsent(meta *profile.Metadata, msg *message, now time.Time) {
	if !msg.hasConsent || msg.timestamp.Before(meta.Consent.UpdatedAt()) {
		return
	}
	explicit := msg.consentEvent()
	if !explicit && meta.Consent.Same(msg.consent) {
		meta.Consent = meta.Consent.Seen(msg.timestamp) // a later repeat: an older message must not undo it
		return
	}
	prefs := make(map[string]bool, len(msg.consent))
	for k, v := range msg.consent {
		prefs[k] = v == true
	}
	ch := profile.ConsentChange{MessageID: msg.messageID, Type: msg.kind, Source: msg.source,
		Timestamp: msg.timestamp, ReceivedAt: now, Preferences: prefs}
	if msg.kind == kindTrack {
		ch.Event = msg.event
	}
	meta.Consent, _ = meta.Consent.Apply(ch, explicit)
}
