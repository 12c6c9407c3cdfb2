package privacy

// The right to rectification (Art. 16), and its forwarding to recipients
// (Art. 19): RECTIFY.

import (
	"context"
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
	u := profile.Update{Metadata: p.Metadata}
	for k, v := range e.Traits {
		if v == nil {
			if _, ok := p.Traits[k]; ok {
				u.Remove = append(u.Remove, k)
			}
			continue
		}
		setTrait(&u, k, profile.Trait{Value: v, Source: profile.SourceRectification, UpdatedAt: now})
	}
	u.Metadata.Version++
	u.Metadata.UpdatedAt = now
	u.Metadata.Recipients = c.noteRecipients(u.Metadata.Recipients, now)
	s.d.Rectify = []journal.Rectification{{Profile: pid, Update: u}}
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

// redoableRectifications returns the rectifications of a decision that a
// recovery may write again: those whose profile exists and has not moved
// past the decided version (at that version, the same write again is
// harmless). Otherwise a redo would bring an erased person back, or set a
// newer version back.
func (c *Controller) redoableRectifications(ctx context.Context, rs []journal.Rectification) []journal.Rectification {
	kept := rs[:0:0]
	for _, r := range rs {
		m, err := c.profiles.Metadata(ctx, r.Profile)
		if err == nil && m.Version <= r.Update.Metadata.Version {
			kept = append(kept, r)
		}
	}
	return kept
}
