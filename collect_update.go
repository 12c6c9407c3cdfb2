package privacy

// The profile update a collected message makes, built the same way by Collect
// and CollectBatch: metadata, traits by last-updated-wins, the event, merged
// profiles, recipients.

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/profile"
)

// buildUpdate reads what the message changes and returns the Update that applies
// it: merged profiles first, then the identify traits by last-updated-wins or the
// track event, with the metadata's version one above every merged profile's. With
// wantTraits it also returns the profile's traits as they will be after the update.
func (c *Controller) buildUpdate(ctx context.Context, ptx profile.Tx, plan *identity.Plan, msg *message, now time.Time, wantTraits bool) (profile.Update, map[string]profile.Trait, error) {
	u := profile.Update{MessageID: msg.messageID}
	var cur map[string]profile.Trait // the profile's traits, read only when needed
	fresh := freshMetadata(msg, now)
	meta := fresh
	if !plan.Create {
		needTraits := wantTraits || msg.kind == kindIdentify || len(plan.Absorb) > 0
		var err error
		if needTraits {
			var p *profile.Profile
			if p, err = ptx.Get(ctx, plan.Profile); err == nil {
				meta, cur = p.Metadata, p.Traits
			}
		} else {
			meta, err = ptx.Metadata(ctx, plan.Profile)
		}
		switch {
		case errors.Is(err, profile.ErrNotFound):
			// Linked in the graph, but the profile's commit was lost: start it
			// afresh, and store it before merging anything into it.
			meta = fresh
			if len(plan.Absorb) > 0 {
				if err := ptx.Update(ctx, plan.Profile, profile.Update{Metadata: fresh}); err != nil {
					return u, nil, backendError("profile update", err)
				}
			}
		case err != nil:
			return u, nil, backendError("profile read", err)
		}
	}
	if len(plan.Absorb) > 0 {
		// Who held each profile the message joins, for the audience news
		// each destination is owed (catchUps): the kept one first.
		msg.sides = append(msg.sides[:0], recipientNames(meta.Recipients))
	}
	for _, from := range plan.Absorb {
		p, err := ptx.Get(ctx, from)
		if errors.Is(err, profile.ErrNotFound) {
			msg.sides = append(msg.sides, nil)
			continue
		} else if err != nil {
			return u, nil, backendError("profile read", err)
		}
		if err := ptx.Merge(ctx, plan.Profile, from); err != nil {
			return u, nil, backendError("profile merge", err)
		}
		msg.sides = append(msg.sides, recipientNames(p.Metadata.Recipients))
		meta = mergeMetadata(meta, p.Metadata, msg.messageID, now)
		for k, t := range p.Traits {
			if have, ok := cur[k]; !ok || t.UpdatedAt.After(have.UpdatedAt) {
				if cur == nil {
					cur = map[string]profile.Trait{}
				}
				cur[k] = t
				setTrait(&u, k, t)
			}
		}
	}
	if msg.storesEvent() {
		ev := eventPool.Get().(*profile.Event)
		*ev = eventOf(msg, now)
		u.Event, u.EncodedContext = ev, msg.contextJSON
	} else {
		applyIdentify(&u, msg, cur)
	}
	msg.joined = c.advanceMetadata(&meta, msg, now)
	u.Metadata = meta
	if !wantTraits {
		return u, nil, nil
	}
	return u, traitsAfter(cur, &u), nil // cur is this call's own copy
}

// freshMetadata is the metadata of a profile the message creates, or creates
// afresh when the graph links it but the profile's commit was lost.
func freshMetadata(msg *message, now time.Time) profile.Metadata {
	return profile.Metadata{CreatedAt: now, FirstMessageID: msg.messageID, FirstSeen: msg.timestamp}
}

// advanceMetadata records the message in a profile's metadata: the next
// version, the update time, the last message, the first and last times seen,
// the destinations that will be sent it, and the consent it carries. It
// returns the destinations the message makes recipients for the first time.
func (c *Controller) advanceMetadata(meta *profile.Metadata, msg *message, now time.Time) (joined []string) {
	meta.Version++
	meta.UpdatedAt = now
	meta.LastMessageID = msg.messageID
	if msg.timestamp.Before(meta.FirstSeen) || meta.FirstSeen.IsZero() {
		meta.FirstSeen = msg.timestamp
	}
	if msg.timestamp.After(meta.LastSeen) {
		meta.LastSeen = msg.timestamp
	}
	before := len(meta.Recipients)
	// Collected messages go to this Controller's own destinations: it
	// knows their consent categories, not those of WithRemoteDestinations.
	msg.routed = c.routeMessage(msg, c.local, meta.Recipients)
	meta.Recipients = noteRecipients(meta.Recipients, msg.routed, now)
	for _, r := range meta.Recipients[before:] {
		joined = append(joined, r.Name)
	}
	noteConsent(meta, msg, now)
	noteAccount(meta, msg)
	return joined
}

// eventPool pools the event an Update hands the profile store, which copies
// what it keeps (profile.Tx): made per message, it was an allocation on
// every track. store returns it (releaseEvent) once nothing reads it.
var eventPool = sync.Pool{New: func() any { return new(profile.Event) }}

// releaseEvent clears ev, which refers to a person's data, and returns it to
// the pool; nil is ignored.
func releaseEvent(ev *profile.Event) {
	if ev != nil {
		*ev = profile.Event{}
		eventPool.Put(ev)
	}
}

// eventOf is the event a message other than an identify stores.
func eventOf(msg *message, now time.Time) profile.Event {
	return profile.Event{MessageID: msg.messageID, Type: msg.kind, Name: msg.event, Properties: msg.props,
		Context: msg.context, Source: msg.source, Timestamp: msg.timestamp, ReceivedAt: now}
}

// traitsAfter brings cur, the caller's own copy of a profile's traits (or
// nil), to their state after u, and returns it.
func traitsAfter(cur map[string]profile.Trait, u *profile.Update) map[string]profile.Trait {
	if cur == nil {
		cur = make(map[string]profile.Trait, len(u.Set))
	}
	maps.Copy(cur, u.Set)
	for _, k := range u.Remove {
		delete(cur, k)
	}
	return cur
}

// applyIdentify adds to u the trait changes of the identify msg, given the
// profile's current traits: last updated wins, and a nil value removes.
func applyIdentify(u *profile.Update, msg *message, cur map[string]profile.Trait) {
	applyTraits(u, msg.traits, msg.source, msg.timestamp, cur)
}

// applyTraits adds to u the changes of traits set at ts by source ("" for
// an identify's), given the profile's current traits: last updated wins,
// and a nil value removes.
func applyTraits(u *profile.Update, traits map[string]any, source string, ts time.Time, cur map[string]profile.Trait) {
	if source == "" {
		source = profile.SourceIdentify
	}
	for k, v := range traits {
		if have, ok := cur[k]; ok && have.UpdatedAt.After(ts) {
			continue // the stored value is newer: last updated wins
		}
		if v == nil {
			delete(u.Set, k)
			if _, ok := cur[k]; ok {
				u.Remove = append(u.Remove, k)
			}
			continue
		}
		setTrait(u, k, profile.Trait{Value: v, Source: source, UpdatedAt: ts})
	}
}

func setTrait(u *profile.Update, k string, t profile.Trait) {
	if u.Set == nil {
		u.Set = map[string]profile.Trait{}
	}
	u.Set[k] = t
}

// mergeMetadata combines the metadata of a profile and one merged into it: the
// earlier creation and first message, the later last message, the higher
// version, so no identifier ever sees its profile's version go down, and
// both consents (profile.Consent.Merge), the merge named by the message
// that caused it.
func mergeMetadata(into, from profile.Metadata, messageID string, now time.Time) profile.Metadata {
	into.Consent = into.Consent.Merge(from.Consent, messageID, now)
	into.Accounts = mergeAccounts(slices.Clone(into.Accounts), from.Accounts)
	if from.CreatedAt.Before(into.CreatedAt) {
		into.CreatedAt, into.FirstMessageID = from.CreatedAt, from.FirstMessageID
	}
	if !from.FirstSeen.IsZero() && (into.FirstSeen.IsZero() || from.FirstSeen.Before(into.FirstSeen)) {
		into.FirstSeen = from.FirstSeen
	}
	if from.LastSeen.After(into.LastSeen) {
		into.LastSeen = from.LastSeen
	}
	into.Version = max(into.Version, from.Version)
	into.Recipients = mergeSpans(into.Recipients, from.Recipients, func(r *profile.Recipient) (string, *time.Time, *time.Time) {
		return r.Name, &r.FirstSent, &r.LastSent
	})
	return into
}

// mergeSpans adds the entries of from to into, each key once: an entry into
// lacks is appended, one it has takes the earlier first time and the later
// last time of both. span returns an entry's key and its two times.
func mergeSpans[T any](into, from []T, span func(*T) (key string, first, last *time.Time)) []T {
	for i := range from {
		key, first, last := span(&from[i])
		j := slices.IndexFunc(into, func(have T) bool { k, _, _ := span(&have); return k == key })
		if j < 0 {
			into = append(into, from[i])
			continue
		}
		_, haveFirst, haveLast := span(&into[j])
		if first.Before(*haveFirst) {
			*haveFirst = *first
		}
		if last.After(*haveLast) {
			*haveLast = *last
		}
	}
	return into
}

// holders returns the destinations that hold the person (the recipients rs
// lists) and are configured here or named in owed (what a request journaled
// it owes, whatever the host that redoes it is configured with), never nil:
// a destination configured nowhere any more would be owed work no host ever
// delivers.
func (c *Controller) holders(rs []profile.Recipient, owed []journal.Outcome) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		if slices.Contains(c.destinations, r.Name) || slices.ContainsFunc(owed, func(o journal.Outcome) bool { return o.Name == r.Name }) {
			out = append(out, r.Name)
		}
	}
	return out
}

// recipientNames returns the names of rs.
func recipientNames(rs []profile.Recipient) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Name
	}
	return out
}

// noteRecipients records in rs that the destinations named are being sent
// the person's data now.
func noteRecipients(rs []profile.Recipient, names []string, now time.Time) []profile.Recipient {
	for _, name := range names {
		i := slices.IndexFunc(rs, func(r profile.Recipient) bool { return r.Name == name })
		if i < 0 {
			rs = append(rs, profile.Recipient{Name: name, FirstSent: now, LastSent: now})
			continue
		}
		rs[i].LastSent = now
	}
	return rs
}
