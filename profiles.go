package privacy

import (
	"context"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// Profile returns the profile of the person known by id (any linked identifier):
// traits, identifiers and metadata. An unknown id fails with ErrNotFound.
func (c *Controller) Profile(ctx context.Context, id identity.ID) (*profile.Profile, error) {
	pid, held, err := c.lockSubject(ctx, id)
	if err != nil {
		return nil, err
	}
	defer c.locks.unlock(&held)
	return c.readProfile(ctx, pid)
}

func (c *Controller) readProfile(ctx context.Context, pid identity.ProfileID) (*profile.Profile, error) {
	p, err := c.profiles.Get(ctx, pid)
	if err != nil {
		return nil, backendError("reading profile", err)
	}
	node, err := c.graph.Node(ctx, pid)
	if err != nil {
		return nil, backendError("reading identifiers", err)
	}
	p.ID = pid
	p.ExternalIDs = make([]profile.ExternalID, len(node.Links))
	for i, l := range node.Links {
		p.ExternalIDs[i] = profile.ExternalID{ID: l.ID, CreatedAt: l.LinkedAt, FirstMessageID: l.MessageID}
	}
	return p, nil
}

// Traits returns a page of the person's traits, as the Profile API's traits
// endpoint does.
func (c *Controller) Traits(ctx context.Context, id identity.ID, q profile.TraitQuery) (profile.TraitPage, error) {
	return selectFrom(c, ctx, id, "traits", func(p *profile.Profile) (profile.TraitPage, error) { return profile.SelectTraits(p.Traits, q) })
}

// ExternalIDs returns a page of the identifiers the person is known by, oldest
// first, as the Profile API's external_ids endpoint does.
func (c *Controller) ExternalIDs(ctx context.Context, id identity.ID, q profile.ExternalIDQuery) (profile.ExternalIDPage, error) {
	return selectFrom(c, ctx, id, "external ids", func(p *profile.Profile) (profile.ExternalIDPage, error) {
		return profile.SelectExternalIDs(p.ExternalIDs, q)
	})
}

// selectFrom reads the person's profile, as Profile does, and selects a page
// of it.
func selectFrom[P any](c *Controller, ctx context.Context, id identity.ID, what string, sel func(*profile.Profile) (P, error)) (P, error) {
	p, err := c.Profile(ctx, id)
	if err != nil {
		var zero P
		return zero, err
	}
	page, err := sel(p)
	return page, backendError(what, err)
}

// Metadata returns the person's profile metadata, as the Profile API's metadata
// endpoint does. Its Version confirms that an update was processed.
func (c *Controller) Metadata(ctx context.Context, id identity.ID) (profile.Metadata, error) {
	pid, held, err := c.lockSubject(ctx, id)
	if err != nil {
		return profile.Metadata{}, err
	}
	defer c.locks.unlock(&held)
	m, err := c.profiles.Metadata(ctx, pid)
	return m, backendError("reading metadata", err)
}

// Events returns a page of the person's events, as the Profile API's events
// endpoint does: newest first unless q.Sort is profile.Asc, continued with the
// page's Next as q.Cursor. A malformed query fails with ErrInvalid.
func (c *Controller) Events(ctx context.Context, id identity.ID, q profile.EventQuery) (profile.EventPage, error) {
	if _, _, err := q.Normalize(); err != nil {
		return profile.EventPage{}, backendError("events query", err)
	}
	pid, held, err := c.lockSubject(ctx, id)
	if err != nil {
		return profile.EventPage{}, err
	}
	defer c.locks.unlock(&held)
	page, err := c.profiles.Events(ctx, pid, q)
	return page, backendError("reading events", err)
}
