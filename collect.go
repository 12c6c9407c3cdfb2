package privacy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// Collect takes one Identify or Track message: it resolves the identifiers to one
// profile (creating, joining or merging profiles by the identity rules), updates
// the traits or appends the event, and records the message id so a repeat is
// stored once (and counted in Stats().Duplicates, without an error).
//
// Bad input fails with a *FieldError matching ErrInvalid and stores nothing. A
// message about a person who objected fails with ErrSuppressed and stores nothing.
// All of it runs under the per-subject lock, so it never interleaves with a right
// applied to the same person.
func (c *Controller) Collect(ctx context.Context, m Message) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	var msg message
	if err := prepareMessage(c.resolver, m, &msg); err != nil {
		c.stats.refused.Add(1)
		return err
	}
	var matchBuf [4]identity.Match
	matches, held, err := c.lockMatches(ctx, msg.ids, matchBuf[:0])
	if err != nil {
		return err
	}
	defer c.locks.unlock(&held)

	if c.suppressed != nil {
		if yes, err := c.suppressed(ctx, matches); err != nil {
			return fmt.Errorf("privacy: suppression check: %w", err)
		} else if yes {
			c.stats.suppressed.Add(1)
			return ErrSuppressed
		}
	}
	now := c.now()
	plan, err := c.resolver.Resolve(ctx, c.graph, matches, now)
	if err != nil {
		return backendError("resolving identity", err)
	}
	if len(plan.Dropped) > 0 {
		c.log.InfoContext(ctx, "identifiers not linked by the identity rules",
			"profile", plan.Profile, "dropped", len(plan.Dropped), "capped", plan.Capped, "message_id", msg.messageID)
	}
	dup, err := c.store(ctx, &plan, &msg, now)
	switch {
	case err != nil:
		return err
	case dup:
		c.stats.duplicates.Add(1)
	default:
		c.stats.collected.Add(1)
	}
	return nil
}

// lockMatches looks the identifiers up, takes the stripes that guard them and
// looks again: when the second look needs a stripe not held (someone linked or
// merged in between), it lets go and starts over. On success the caller holds the
// returned stripes and must unlock them.
func (c *Controller) lockMatches(ctx context.Context, ids []identity.ID, matches []identity.Match) ([]identity.Match, lockSet, error) {
	for {
		var err error
		if matches, err = identity.LookupAll(ctx, c.graph, ids, matches[:0]); err != nil {
			return nil, lockSet{}, backendError("identity lookup", err)
		}
		var held lockSet
		c.locks.addMatches(&held, matches)
		c.locks.lock(&held)
		if matches, err = identity.LookupAll(ctx, c.graph, ids, matches[:0]); err != nil {
			c.locks.unlock(&held)
			return nil, lockSet{}, backendError("identity lookup", err)
		}
		var need lockSet
		c.locks.addMatches(&need, matches)
		if held.contains(&need) {
			return matches, held, nil
		}
		c.locks.unlock(&held)
		if err := ctx.Err(); err != nil {
			return nil, lockSet{}, err
		}
	}
}

// store writes the resolved message to the graph and the profile store in one
// transaction each, graph first. It reports dup when the profile had already
// recorded the message id; then nothing is written.
func (c *Controller) store(ctx context.Context, plan *identity.Plan, msg *message, now time.Time) (dup bool, err error) {
	var gtx identity.Tx
	if plan.Writes() {
		if gtx, err = c.graph.Begin(ctx); err != nil {
			return false, backendError("identity begin", err)
		}
		defer gtx.Rollback(ctx)
		if err := plan.Apply(ctx, gtx, now, msg.messageID); err != nil {
			return false, backendError("identity", err)
		}
	}
	ptx, err := c.profiles.Begin(ctx)
	if err != nil {
		return false, backendError("profile begin", err)
	}
	defer ptx.Rollback(ctx)

	u, err := c.buildUpdate(ctx, ptx, plan, msg, now)
	if err != nil {
		return false, err
	}
	if err := ptx.Update(ctx, plan.Profile, u); err != nil {
		if errors.Is(err, profile.ErrDuplicate) {
			return true, nil
		}
		return false, backendError("profile update", err)
	}
	if gtx != nil {
		if err := gtx.Commit(ctx); err != nil {
			return false, backendError("identity commit", err)
		}
	}
	// Should this commit fail after the graph's, the next message finds the
	// links without a stored profile and creates it afresh (buildUpdate).
	if err := ptx.Commit(ctx); err != nil {
		return false, backendError("profile commit", err)
	}
	return false, nil
}

// buildUpdate reads what the message changes and returns the Update that applies
// it: merged profiles first, then the identify traits by last-updated-wins or the
// track event, with the metadata's version one above every merged profile's.
func (c *Controller) buildUpdate(ctx context.Context, ptx profile.Tx, plan *identity.Plan, msg *message, now time.Time) (profile.Update, error) {
	u := profile.Update{MessageID: msg.messageID}
	var cur map[string]profile.Trait // the profile's traits, read only when needed
	fresh := profile.Metadata{CreatedAt: now, FirstMessageID: msg.messageID, FirstSeen: msg.timestamp}
	meta := fresh
	if !plan.Create {
		needTraits := msg.kind == "identify" || len(plan.Absorb) > 0
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
			meta = fresh // linked in the graph, but the profile's commit was lost
		case err != nil:
			return u, backendError("profile read", err)
		}
	}
	for _, from := range plan.Absorb {
		p, err := ptx.Get(ctx, from)
		if errors.Is(err, profile.ErrNotFound) {
			continue
		} else if err != nil {
			return u, backendError("profile read", err)
		}
		if err := ptx.Merge(ctx, plan.Profile, from); err != nil {
			return u, backendError("profile merge", err)
		}
		meta = mergeMetadata(meta, p.Metadata)
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
	switch msg.kind {
	case "identify":
		source := msg.source
		if source == "" {
			source = profile.SourceIdentify
		}
		for k, v := range msg.traits {
			if have, ok := cur[k]; ok && have.UpdatedAt.After(msg.timestamp) {
				continue // the stored value is newer: last updated wins
			}
			if v == nil {
				delete(u.Set, k)
				if _, ok := cur[k]; ok {
					u.Remove = append(u.Remove, k)
				}
				continue
			}
			setTrait(&u, k, profile.Trait{Value: v, Source: source, UpdatedAt: msg.timestamp})
		}
	case "track":
		u.Event = &profile.Event{MessageID: msg.messageID, Name: msg.event, Properties: msg.props, Timestamp: msg.timestamp, ReceivedAt: now}
	}
	meta.Version++
	meta.UpdatedAt = now
	meta.LastMessageID = msg.messageID
	if msg.timestamp.Before(meta.FirstSeen) || meta.FirstSeen.IsZero() {
		meta.FirstSeen = msg.timestamp
	}
	if msg.timestamp.After(meta.LastSeen) {
		meta.LastSeen = msg.timestamp
	}
	u.Metadata = meta
	return u, nil
}

func setTrait(u *profile.Update, k string, t profile.Trait) {
	if u.Set == nil {
		u.Set = map[string]profile.Trait{}
	}
	u.Set[k] = t
}

// mergeMetadata combines the metadata of a profile and one merged into it: the
// earlier creation and first message, the later last message, and the higher
// version, so no identifier ever sees its profile's version go down.
func mergeMetadata(into, from profile.Metadata) profile.Metadata {
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
	return into
}
