package privacy

// The right to rectification (Art. 16), and its forwarding to recipients
// (Art. 19): RECTIFY.

import (
	"context"
	"errors"
	"fmt"
	"maps"
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
	for k, v := range e.Traits {
		if v == nil {
			if _, ok := p.Traits[k]; ok {
				u.Remove = append(u.Remove, k)
			}
			continue
		}
		setTrait(&u, k, profile.Trait{Value: v, Source: profile.SourceRectification, UpdatedAt: at})
	}
	u.Metadata.Version++
	u.Metadata.UpdatedAt = now
	u.Metadata.Recipients = c.noteRecipients(u.Metadata.Recipients, now)
	s.d.Rectify = []journal.Rectification{{Profile: pid, Update: u, At: at}}
	e.ProfileVersion = u.Metadata.Version
	return c.rectifySends(e.ID, e.Traits, s.d.Rectify), nil
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
func (c *Controller) rectifySends(requestID string, traits map[string]any, rs []journal.Rectification) []pendingSend {
	if len(rs) == 0 || traits == nil {
		return nil
	}
	r := rs[0]
	m := destination.Message{MessageID: requestID, Type: destination.TypeIdentify, ProfileID: r.Profile,
		Traits: maps.Clone(traits), Timestamp: r.Update.Metadata.UpdatedAt}
	if n, err := c.graph.Node(context.Background(), r.Profile); err == nil {
		for _, l := range n.Links {
			m.IDs = append(m.IDs, l.ID)
		}
	}
	return []pendingSend{{msgs: []destination.Message{m}}}
}

// redoRectification makes a decided rectification again, as Recover does, on
// the profile as it is now: the one the subject leads to now (a merge since
// the decision may have moved the person), else the one decided. A trait is
// set or removed only where the profile's value is not newer than the
// rectification's time (last updated wins, by time, never by the order of
// replay), and the metadata moves on from what it is now; where the profile
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
		at := r.At
		if at.IsZero() { // decided before rectifications recorded their time
			at = e.Received
		}
		u := profile.Update{Metadata: p.Metadata}
		for k, v := range e.Traits {
			have, ok := p.Traits[k]
			switch {
			case ok && have.UpdatedAt.After(at):
				continue // written after the rectification: it stands
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
			u.Metadata.Recipients = c.noteRecipients(u.Metadata.Recipients, now)
		}
		out = append(out, journal.Rectification{Profile: pid, Update: u, At: at})
		e.ProfileVersion = u.Metadata.Version
	}
	if len(told) == 0 {
		told = nil
	}
	return out, told, nil
}
