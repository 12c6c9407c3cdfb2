package privacy

// The right to rectification (Art. 16), and its forwarding to recipients
// (Art. 19): RECTIFY.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/profile"
)

// Rectify sets traits (a nil value removes one) on the person known by id, with
// source "rectification", and sends the corrected traits to destinations. The
// receipt's ProfileVersion appears in the profile metadata once processed.
func (c *Controller) Rectify(ctx context.Context, id identity.ID, traits map[string]any) (*Receipt, error) {
	return c.Apply(ctx, Request{Type: Rectify, Subjects: []identity.ID{id}, Traits: traits})
}

// decideRectification builds the profile write that sets and removes the
// traits, with a new version, and the identify that carries them downstream.
// Nobody known by the subject fails the request with ErrNotFound.
func (c *Controller) decideRectification(ctx context.Context, txs *participants, e *journal.Entry, s *deciding, now time.Time) ([]pendingSend, error) {
	if len(s.pids) == 0 {
		// The reason goes to the journal and the audit log: no identifier in it.
		return nil, fmt.Errorf("privacy: %w: nobody is known by Subjects[0]", ErrNotFound)
	}
	pid := s.pids[0]
	erasedBy, corrected, err := c.newerOnRectified(ctx, e, c.personHashesAllKeys(e, s))
	if err != nil {
		return nil, err
	}
	if erasedBy != "" {
		s.superseded = erasedBy
		e.Reason = "superseded by request " + erasedBy + ", an erasure received later, on the same person"
		return nil, nil
	}
	p, err := txs.profiles.Get(ctx, pid)
	if err != nil {
		return nil, backendError("reading profile", err)
	}
	// The traits are stamped with the request's time, or just after the
	// newest value they correct (a message may carry a timestamp ahead of
	// this clock): the correction is newer than everything it corrects, and
	// last updated wins orders every later write, a redo included, against it.
	at := e.Received
	for k := range e.Traits {
		if have, ok := p.Traits[k]; ok && !have.UpdatedAt.Before(at) {
			at = have.UpdatedAt.Add(time.Microsecond)
		}
	}
	u := profile.Update{Metadata: p.Metadata}
	r := journal.Rectification{Profile: pid, At: at}
	told := map[string]any{}
	for _, k := range slices.Sorted(maps.Keys(e.Traits)) {
		if corrected[k] {
			continue // a newer rectification, decided already, set it
		}
		v := e.Traits[k]
		_, held := p.Traits[k]
		r.Traits, told[k] = append(r.Traits, k), v
		if held {
			r.Held = append(r.Held, k)
		}
		if v == nil {
			if held {
				u.Remove = append(u.Remove, k)
			}
			continue
		}
		setTrait(&u, k, profile.Trait{Value: v, Source: profile.SourceRectification, UpdatedAt: at})
	}
	if len(r.Traits) == 0 {
		s.superseded = "newer rectifications"
		e.Reason = "superseded: newer rectifications on the same person, decided already, set every trait this one names"
		return nil, nil
	}
	u.Metadata.Version++
	u.Metadata.UpdatedAt = now
	u.Metadata.Recipients = noteRecipients(u.Metadata.Recipients, c.holders(u.Metadata.Recipients, e.Destinations), now)
	r.Update = u
	s.d.Rectify = []journal.Rectification{r}
	e.ProfileVersion = u.Metadata.Version
	return c.rectifySends(e, told, s.d.Rectify), nil
}

// newerOnRectified is what the requests on the person (any of hashes: the
// subjects and the identifiers of the profile they lead to now) received
// after e and already decided leave a rectification of e: when one of them
// erased an identifier e names, its id (nothing of e is to be written: the
// erasure erased everything of the person before it, and an erasure is found
// by every identifier it erased); and the traits newer rectifications set or
// removed, which e leaves as they left them. An erasure of an identifier the
// person only came to have since (a device somebody else used) is not theirs.
func (c *Controller) newerOnRectified(ctx context.Context, e *journal.Entry, hashes []identity.Hash) (erasedBy string, corrected map[string]bool, err error) {
	newer, err := c.newerDecided(ctx, e, hashes, DeleteOnly, DeleteInternal, SuppressWithDelete, SuppressWithDeleteInternal, Rectify)
	if err != nil {
		return "", nil, err
	}
	corrected = map[string]bool{}
	var mine []identity.Hash // e's subjects under every key: x may hold an older key's
	for _, x := range newer {
		if x.Type.Deletes() {
			if mine == nil {
				mine = c.subjectHashesAllKeys(e)
			}
			if slices.ContainsFunc(x.SubjectHashes, func(h identity.Hash) bool { return slices.Contains(mine, h) }) {
				return x.ID, nil, nil
			}
			continue
		}
		for _, r := range x.Decision.Rectify {
			for _, k := range r.Traits {
				corrected[k] = true
			}
		}
	}
	return "", corrected, nil
}

// stageRectification writes the corrected traits, then has the audiences
// re-evaluated (a suppressed person stays out of them).
func stageRectification(s *stager, d *journal.Decision) error {
	for _, r := range d.Rectify {
		if err := s.txs.profiles.Update(s.ctx, r.Profile, r.Update); err != nil {
			return backendError("profile update", err)
		}
	}
	for _, r := range d.Rectify {
		s.reevaluateLater(reevaluation{pid: r.Profile, ask: true})
	}
	return nil
}

// rectifySends is the identify message that carries a rectification's
// corrected traits (nil for removed ones) to destinations, addressed by the
// person's identifiers; its MessageID is the request id, for de-duplication.
func (c *Controller) rectifySends(e *journal.Entry, traits map[string]any, rs []journal.Rectification) []pendingSend {
	if len(rs) == 0 || traits == nil {
		return nil
	}
	r := rs[0]
	m := destination.Message{MessageID: e.ID, Type: destination.TypeIdentify, ProfileID: r.Profile,
		Traits: maps.Clone(traits), Timestamp: r.Update.Metadata.UpdatedAt}
	if n, err := c.graph.Node(context.Background(), r.Profile); err == nil {
		for _, l := range n.Links {
			m.IDs = append(m.IDs, l.ID)
		}
	}
	// To the person's recipients only (Art. 19): those configured here, and
	// those the request journaled it owes, whatever a redo's host is
	// configured with. A destination their messages never went to
	// (Integrations, consent) is not told of them now.
	return []pendingSend{{msgs: []destination.Message{m}, to: c.holders(r.Update.Metadata.Recipients, e.Destinations), routed: true}}
}

// committed reports whether the journal records the backend's commit of e's
// decision as done.
func committed(e *journal.Entry, backend string) bool {
	return slices.ContainsFunc(e.Backends, func(o journal.Outcome) bool { return o.Name == backend && o.Status == Finished })
}

// redoRectification makes a decided rectification again, as Recover does, on
// the profile as it is now: the one the subject leads to now (a merge since
// the decision may have moved the person), else the one decided. A trait is
// set or removed only where the profile's value is not newer than the
// rectification's time (last updated wins, by time, never by the order of
// replay), and not at all once the journal records the profile store's
// commit as done, and the metadata moves on from what it is now; where the profile
// is already as the request left it, nothing is written, but the audiences
// are evaluated again and destinations told, which the first attempt may not
// have done. It returns the writes and the traits destinations are told (nil
// for those removed). Nothing is redone for a profile erased since.
func (c *Controller) redoRectification(ctx context.Context, txs *participants, e *journal.Entry, matches []identity.Match, now time.Time) ([]journal.Rectification, map[string]any, error) {
	var out []journal.Rectification
	told := map[string]any{}
	for _, r := range e.Decision.Rectify {
		pid := r.Profile
		if len(matches) > 0 && matches[0].Profile != "" {
			pid = matches[0].Profile
		}
		p, err := txs.profiles.Get(ctx, pid)
		if errors.Is(err, profile.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, backendError("reading profile", err)
		}
		// Under every key: a newer request may have been decided before a
		// key rotation, under the keys then.
		hashes := c.subjectHashesAllKeys(e)
		if n, err := txs.graph.Node(ctx, pid); err == nil {
			for _, l := range n.Links {
				hashes = append(hashes, c.hashesOf(l.ID)...)
			}
		}
		erasedBy, corrected, err := c.newerOnRectified(ctx, e, hashes)
		if err != nil {
			return nil, nil, err
		}
		if erasedBy != "" {
			e.Reason = "superseded by request " + erasedBy + ", an erasure received later, on the same person"
			return nil, nil, nil
		}
		at := r.At
		if at.IsZero() { // decided before rectifications recorded their time
			at = e.Received
		}
		// The profile store's commit is recorded as done: the traits were
		// written, and whatever changed them since (a message's removal
		// leaves no time to compare) is newer.
		landed := !e.Committed.IsZero() || committed(e, "profiles") // Committed: once committed, always (Backends are a redo's)
		held := map[string]bool{}
		for _, k := range r.Held {
			held[k] = true
		}
		u := profile.Update{Metadata: p.Metadata}
		for k, v := range e.Traits {
			have, ok := p.Traits[k]
			asLeft := ok && have.Source == profile.SourceRectification && have.UpdatedAt.Equal(at) || v == nil && !ok
			switch {
			case corrected[k]:
				continue // a newer rectification, decided already, set it
			case landed && !asLeft:
				continue // it was written, and changed since: the change stands
			case landed:
				// written, and still as the request left it
			case ok && have.UpdatedAt.After(at):
				continue // written after the rectification: it stands
			case !ok && held[k] && v != nil:
				continue // removed since the decision (a removal leaves no time): it stands
			case ok && have.Source == profile.SourceRectification && have.UpdatedAt.Equal(at):
				// already as the request left it
			case v == nil:
				if ok {
					u.Remove = append(u.Remove, k)
				}
			default:
				setTrait(&u, k, profile.Trait{Value: v, Source: profile.SourceRectification, UpdatedAt: at})
			}
			told[k] = v
		}
		if len(u.Set) > 0 || len(u.Remove) > 0 {
			u.Metadata.Version++
			u.Metadata.UpdatedAt = now
			u.Metadata.Recipients = noteRecipients(u.Metadata.Recipients, c.holders(u.Metadata.Recipients, e.Destinations), now)
		}
		out = append(out, journal.Rectification{Profile: pid, Update: u, At: at, Traits: r.Traits, Held: r.Held})
		e.ProfileVersion = u.Metadata.Version
	}
	if len(told) == 0 {
		told = nil
	}
	return out, told, nil
}
