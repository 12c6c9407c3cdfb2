package privacy

// The right to erasure (Art. 17), and its forwarding to recipients (Art. 19):
// DELETE_ONLY and DELETE_INTERNAL, and the deleting half of
// SUPPRESS_WITH_DELETE and SUPPRESS_WITH_DELETE_INTERNAL.

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/keyring"
	"github.com/gdprkit/privacy/profile"
)

// Erase deletes the person known by id everywhere and forwards the deletion to
// every destination (DELETE_ONLY).
func (c *Controller) Erase(ctx context.Context, id identity.ID) (*Receipt, error) {
	return c.Apply(ctx, Request{Type: DeleteOnly, Subjects: []identity.ID{id}})
}

// decideErasure deletes every profile the subjects lead to, and the profiles
// merged into them; a forwarding type also names, for destinations, every
// identifier the person was known by.
func (c *Controller) decideErasure(ctx context.Context, txs *participants, e *journal.Entry, s *deciding, _ time.Time) ([]pendingSend, error) {
	if !e.InactiveBefore.IsZero() {
		// A retention run's erasure: the person may have come back since the
		// run found them inactive. Read under their locks, a profile written
		// since is kept, and so is everything merged into it.
		var inactive []identity.ProfileID
		for _, pid := range s.pids {
			md, err := txs.profiles.Metadata(ctx, pid)
			if errors.Is(err, profile.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, backendError("reading metadata", err)
			}
			if md.UpdatedAt.Before(e.InactiveBefore) {
				inactive = append(inactive, pid)
			}
		}
		s.pids = inactive
	}
	s.d.Delete = append(s.d.Delete, s.pids...)
	// The request is found by every identifier it erases, not only those it
	// names (keyed hashes, never the identifiers): a request on the person
	// received before it and recovered after it finds it by any of them and
	// writes nothing of them back.
	for _, pid := range s.pids {
		for _, l := range s.nodes[pid].Links {
			if h := c.hasher.ID(l.ID); !slices.Contains(e.SubjectHashes, h) {
				e.SubjectHashes = append(e.SubjectHashes, h)
			}
		}
	}
	// Profiles merged into these ones are deleted too: should a merge's profile
	// commit have been lost, their data would otherwise outlive the erasure.
	for _, pid := range s.pids {
		for _, m := range s.nodes[pid].Merges {
			s.d.Delete = append(s.d.Delete, m.From)
		}
	}
	if e.Type.Forwards() {
		for _, pid := range s.pids {
			f := journal.Deletion{Profile: pid}
			for _, l := range s.nodes[pid].Links {
				f.IDs = append(f.IDs, l.ID)
			}
			s.d.Forward = append(s.d.Forward, f)
		}
	}
	return nil, nil
}

// stageErasure destroys the decided profiles' data keys (which shreds every
// copy of their sealed values) and deletes them from the identity graph, the
// profile store and the audience engine. A profile store that can
// (profile.ShreddingTx) leaves the sealed rows of a shredded profile to the
// purge after the commit (purgeShredded): the person is unreadable from the
// commit on, however many events they have.
func stageErasure(s *stager, d *journal.Decision) error {
	// Only with a store that purges after: a decorator that passes on the
	// transactions but not Purge would leave the rows for good.
	shredding, _ := s.txs.profiles.(profile.ShreddingTx)
	if s.c.purger == nil {
		shredding = nil
	}
	for _, pid := range d.Delete {
		deleteProfile := s.txs.profiles.Delete
		if s.txs.keyring != nil {
			if err := s.txs.keyring.Delete(s.ctx, pid); err != nil {
				return backendError("keyring delete", err)
			}
			s.c.dataKeys.Forget(pid) // no use of it after this: the store's word counts
			if shredding != nil {
				deleteProfile = shredding.DeleteShredded
			}
		}
		if err := s.txs.graph.Delete(s.ctx, pid); err != nil {
			return backendError("identity delete", err)
		}
		if err := deleteProfile(s.ctx, pid); err != nil {
			return backendError("profile delete", err)
		}
		if err := s.txs.audiences.Delete(s.ctx, pid); err != nil {
			return backendError("audience delete", err)
		}
	}
	return nil
}

// purgeBackend names, in a receipt's Backends, the purge of what an erasure
// left sealed: its Finished says when the rows were gone, where the other
// backends' say when the person became unreadable.
const purgeBackend = "profiles purge"

// purgeShredded purges, after an erasure's commit, the sealed rows the
// profile store left of the profiles it deleted (profile.Purger), and
// records when in the receipt. It reports whether the request may go on to
// finish: a purge that fails leaves it RUNNING, and Recover purges again.
func (c *Controller) purgeShredded(ctx context.Context, cl *claim, e *journal.Entry) bool {
	if c.purger == nil || len(e.Decision.Delete) == 0 {
		return true
	}
	ctx = context.WithoutCancel(ctx)
	o := journal.Outcome{Name: purgeBackend, Status: Finished}
	_, err := c.purger.Purge(ctx, e.Decision.Delete)
	o.Finished = c.now()
	if err != nil {
		err = backendError(purgeBackend, err)
		o.Status, o.Err, o.Finished = Running, c.redact(e, describe(err), nil), time.Time{}
	}
	e.Backends = append(slices.DeleteFunc(e.Backends, func(b journal.Outcome) bool { return b.Name == purgeBackend }), o)
	if err != nil {
		c.log.ErrorContext(ctx, "purging an erased person's rows failed; the request stays RUNNING and Recover purges again", "request", e.ID, "err", describe(err))
		if rerr := c.record(ctx, cl, e); rerr != nil {
			c.log.ErrorContext(ctx, "recording a request failed", "request", e.ID, "err", describe(rerr))
		}
		return false
	}
	return true
}

// recordCommitted journals, before a purge, that every backend committed the
// request's decision: a crash in the purge, and the person collected anew
// meanwhile, must find the request committed, so that Recover redoes what it
// decided and no more (allCommitted). Without a purge the next write is
// soon: nothing is recorded here.
func (c *Controller) recordCommitted(ctx context.Context, cl *claim, e *journal.Entry) {
	if c.purger == nil || len(e.Decision.Delete) == 0 {
		return
	}
	if err := c.record(context.WithoutCancel(ctx), cl, e); err != nil {
		c.log.WarnContext(ctx, "recording an erasure's commit failed; Recover decides it again on the person as they are then", "request", e.ID, "err", describe(err))
	}
}

// purgerOf returns the profile store as the Purger of what its erasures
// leave sealed, when it seals (keys) and purges; else nil, and erasures
// delete everything in their commit.
func purgerOf(profiles profile.Store, keys *keyring.Keys) profile.Purger {
	if p, ok := profiles.(profile.Purger); ok && keys != nil {
		return p
	}
	return nil
}
