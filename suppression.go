package privacy

// The right to object (Art. 21): SUPPRESS_ONLY and UNSUPPRESS, the
// suppressing half of SUPPRESS_WITH_DELETE and SUPPRESS_WITH_DELETE_INTERNAL,
// and the suppression check of the collection path, which keeps an objecting
// person out of the profiles and the audiences.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
)

// Suppress stops collection for the person known by id, on every identifier
// linked to them, and keeps them out of audiences (SUPPRESS_ONLY).
func (c *Controller) Suppress(ctx context.Context, id identity.ID) (*Receipt, error) {
	return c.Apply(ctx, Request{Type: SuppressOnly, Subjects: []identity.ID{id}})
}

// Unsuppress ends the suppression of the person known by id (UNSUPPRESS).
func (c *Controller) Unsuppress(ctx context.Context, id identity.ID) (*Receipt, error) {
	return c.Apply(ctx, Request{Type: Unsuppress, Subjects: []identity.ID{id}})
}

// StillSuppressed returns what the suppressing request id (SUPPRESS_ONLY,
// SUPPRESS_WITH_DELETE, SUPPRESS_WITH_DELETE_INTERNAL) suppressed and keeps
// suppressed now: the keyed hashes, under the current key, of the
// identifiers it suppressed (the subjects and every identifier linked to
// them then) that are suppressed and that no later decided suppression or
// UNSUPPRESS of the same person took over. So each suppressed identifier
// is answered for by one request, the one in effect, whatever its status
// (a request decided while a destination is still failing is RUNNING, and
// in effect). It is what a listing of suppressions can show: the
// suppression list holds keyed hashes only, never an identifier. Another
// type of request, or one that suppressed nothing (undecided, failed
// before its decision), returns none; an unknown id fails with
// ErrNotFound. Requests made before a key rotation (RotateKey) are carried
// to the current key.
func (c *Controller) StillSuppressed(ctx context.Context, id string) ([]identity.Hash, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	if !storableText(id) {
		return nil, fmt.Errorf("privacy: %w: no request has that id", ErrNotFound)
	}
	e, err := c.journal.Get(ctx, id)
	if errors.Is(err, journal.ErrNotFound) {
		return nil, fmt.Errorf("privacy: %w: no request has that id", ErrNotFound)
	}
	if err != nil {
		return nil, backendError("journal", err)
	}
	if !e.Type.Suppresses() || e.Type == Unsuppress || !e.Decided || len(e.Decision.Suppress) == 0 {
		return nil, nil
	}
	// The keys the request's hashes were made under are not recorded once it
	// is done (its subjects are scrubbed): under the wrong keys, a lifted
	// hash matches nothing, so the keys under which any is suppressed now
	// are the request's, newest first.
	made := uniqueHashes(e.Decision.Suppress)
	var held []identity.Hash
	for from := len(c.hashers) - 1; from >= 0 && len(held) == 0; from-- {
		lifted := c.lift(made, from)
		answers, err := hashesSuppressed(ctx, c.suppressions, lifted)
		if err != nil {
			return nil, backendError("suppression", err)
		}
		for i, ok := range answers {
			if ok {
				held = append(held, lifted[i])
			}
		}
	}
	if len(held) == 0 {
		return nil, nil
	}
	// A later suppression or UNSUPPRESS of the same person is the one in
	// effect for what it named: found by the hashes as this request made
	// them and, after a rotation, as they are now.
	search := made
	if !slices.Equal(held, made) {
		search = uniqueHashes(slices.Concat(made, held))
	}
	newer, err := c.newerDecided(ctx, e, search, SuppressOnly, SuppressWithDelete, SuppressWithDeleteInternal, Unsuppress)
	if err != nil {
		return nil, err
	}
	if len(newer) == 0 {
		return held, nil
	}
	taken := map[identity.Hash]bool{}
	for _, x := range newer {
		for from := range c.hashers {
			for _, h := range c.lift(slices.Concat(x.Decision.Suppress, x.Decision.Unsuppress), from) {
				taken[h] = true
			}
		}
	}
	return slices.DeleteFunc(held, func(h identity.Hash) bool { return taken[h] }), nil
}

// uniqueHashes returns hs without repeats, in their order.
func uniqueHashes(hs []identity.Hash) []identity.Hash {
	seen := make(map[identity.Hash]bool, len(hs))
	out := make([]identity.Hash, 0, len(hs))
	for _, h := range hs {
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out
}

// decideSuppression suppresses every identifier of every person the subjects
// lead to, the subjects themselves (a subject nobody knows yet is suppressed
// before it is seen), and the people's profiles.
func (c *Controller) decideSuppression(ctx context.Context, _ *participants, e *journal.Entry, s *deciding, _ time.Time) ([]pendingSend, error) {
	hashes := c.personHashes(e, s)
	if err := c.checkNewer(ctx, e, s, c.personHashesAllKeys(e, s), Unsuppress); err != nil || s.superseded != "" {
		return nil, err
	}
	// The profiles too: the identifiers' hashes and their profile's mark commit
	// together, so a linked identifier is blocked through its profile even if a
	// later participant's commit (a deletion) has not happened yet.
	s.d.Suppress, s.d.SuppressProfiles = hashes, s.pids
	return nil, nil
}

// decideUnsuppression lifts what decideSuppression would suppress, and
// everything suppressed together with the subjects.
func (c *Controller) decideUnsuppression(ctx context.Context, _ *participants, e *journal.Entry, s *deciding, _ time.Time) ([]pendingSend, error) {
	// A person suppressed and deleted has no profile left to find their other
	// identifiers by; the journal still has the hashes that request suppressed.
	more, err := c.suppressedTogether(ctx, e.Subjects)
	if err != nil {
		return nil, err
	}
	hashes := append(c.personHashes(e, s), more...)
	if err := c.checkNewer(ctx, e, s, append(c.personHashesAllKeys(e, s), more...), SuppressOnly, SuppressWithDelete, SuppressWithDeleteInternal); err != nil || s.superseded != "" {
		return nil, err
	}
	s.d.Unsuppress, s.d.UnsuppressProfiles = hashes, s.pids
	return nil, nil
}

// checkNewer enforces the order of objection and its lifting on one person:
// requests take effect in the order they were received, so a suppression,
// or its lifting, never undoes one of the other kind received later and
// already decided (one received later and not decided yet comes after this
// one anyway: it waits for the person's locks). It marks s superseded by such
// a request, when there is one among those naming any of hashes.
func (c *Controller) checkNewer(ctx context.Context, e *journal.Entry, s *deciding, hashes []identity.Hash, kinds ...RequestType) error {
	newer, err := c.newerDecided(ctx, e, hashes, kinds...)
	if err != nil || len(newer) == 0 {
		return err
	}
	s.superseded = newer[0].ID
	e.Reason = "superseded by request " + newer[0].ID + ", received later, on the same person"
	return nil
}

// personHashes returns the keyed hashes of the request's subjects and of
// every identifier of the people they lead to.
func (c *Controller) personHashes(e *journal.Entry, s *deciding) []identity.Hash {
	hashes := append([]identity.Hash(nil), e.SubjectHashes...)
	for _, pid := range s.pids {
		for _, l := range s.nodes[pid].Links {
			hashes = append(hashes, c.hasher.ID(l.ID))
		}
	}
	return hashes
}

// personHashesAllKeys is personHashes under every key the Controller has
// used: how the journal is searched for the person's newer requests, which
// a host may have decided before a key rotation, under the keys then.
func (c *Controller) personHashesAllKeys(e *journal.Entry, s *deciding) []identity.Hash {
	hashes := c.subjectHashesAllKeys(e)
	for _, pid := range s.pids {
		for _, l := range s.nodes[pid].Links {
			hashes = append(hashes, c.hashesOf(l.ID)...)
		}
	}
	return hashes
}

// subjectHashesAllKeys returns the hashes of the request's subjects: those
// it was made with, and, from the subjects in clear while it is unfinished,
// their hashes under every key the Controller has used.
func (c *Controller) subjectHashesAllKeys(e *journal.Entry) []identity.Hash {
	out := slices.Clone(e.SubjectHashes)
	for _, id := range e.Subjects {
		if n, err := id.Normalize(); err == nil {
			out = append(out, c.hashesOf(n)...)
		}
	}
	return out
}

// suppressedTogether returns the hashes suppressed by any earlier suppressing
// request that suppressed one of these hashes: everything suppressed together
// with the subjects.
func (c *Controller) suppressedTogether(ctx context.Context, subjects []identity.ID) ([]identity.Hash, error) {
	// Each subject's hash under every key used, and which keys made it: a
	// request decided before a rotation holds the hashes of the keys then,
	// carried to the current ones once it is found.
	want := make(map[identity.Hash]int, len(subjects)*len(c.hashers))
	for _, id := range subjects {
		n, err := id.Normalize()
		if err != nil {
			continue
		}
		for i, h := range c.hashesOf(n) {
			want[h] = i
		}
	}
	var out []identity.Hash
	f := journal.Filter{Types: []RequestType{SuppressOnly, SuppressWithDelete, SuppressWithDeleteInternal}, Limit: 1000}
	for {
		page, err := c.journal.List(ctx, f)
		if err != nil {
			return nil, backendError("journal", err)
		}
		for _, e := range page.Entries {
			if !e.Decided {
				continue
			}
			for _, h := range e.Decision.Suppress {
				if from, ok := want[h]; ok {
					out = append(out, c.lift(e.Decision.Suppress, from)...)
					break
				}
			}
		}
		if page.Next == "" {
			return out, nil
		}
		f.Cursor = page.Next
	}
}

// stageSuppression writes the suppression list's part of a decision, then has
// the audiences re-evaluated: suppressed people leave every audience,
// unsuppressed ones are evaluated again.
func stageSuppression(s *stager, d *journal.Decision) error {
	tx := s.txs.supp
	if len(d.Suppress) > 0 {
		if err := tx.Add(s.ctx, d.Suppress...); err != nil {
			return backendError("suppression add", err)
		}
	}
	if len(d.Unsuppress) > 0 {
		if err := tx.Remove(s.ctx, d.Unsuppress...); err != nil {
			return backendError("suppression remove", err)
		}
	}
	for _, pid := range d.SuppressProfiles {
		if err := tx.AddProfile(s.ctx, pid); err != nil {
			return backendError("suppression add", err)
		}
	}
	for _, pid := range d.UnsuppressProfiles {
		if err := tx.RemoveProfile(s.ctx, pid); err != nil {
			return backendError("suppression remove", err)
		}
	}
	for _, pid := range d.SuppressProfiles {
		s.reevaluateLater(reevaluation{pid: pid, excluded: true})
	}
	for _, pid := range d.UnsuppressProfiles {
		s.reevaluateLater(reevaluation{pid: pid})
	}
	return nil
}

// admit is the suppression check of the collection path: it fails with ErrSuppressed (counted in Stats)
// when any identifier of the message, or any profile they resolve to, is
// suppressed, and fails closed when the list cannot answer.
func (c *Controller) admit(ctx context.Context, matches []identity.Match) error {
	if listEmpty(ctx, c.suppressions) {
		return nil
	}
	for _, m := range matches {
		// A linked identifier is suppressed only with its profile (the list's
		// invariant), so it costs a profile lookup; only unlinked ones are hashed.
		var blocked bool
		var err error
		if m.Profile != "" {
			blocked, err = c.suppressions.ProfileSuppressed(ctx, m.Profile)
		} else {
			blocked, err = c.suppressions.Suppressed(ctx, c.hasher.ID(m.ID))
		}
		if err != nil {
			return fmt.Errorf("privacy: suppression check: %w", err)
		}
		if blocked {
			c.stats.suppressed.Add(1)
			return ErrSuppressed
		}
	}
	return nil
}

// admitBatch is admit for a batch: every identifier of a pending item is
// linked to its profile, so the check is by profile alone (the list's
// invariant), in one call when the list is a suppression.BatchReader.
func (c *Controller) admitBatch(ctx context.Context, items []batchItem, pids []identity.ProfileID) error {
	if listEmpty(ctx, c.suppressions) {
		return nil
	}
	answers, err := profilesSuppressed(ctx, c.suppressions, pids)
	if err != nil {
		return fmt.Errorf("privacy: suppression check: %w", err)
	}
	blocked := make(map[identity.ProfileID]bool, len(pids))
	for i, pid := range pids {
		blocked[pid] = answers[i]
	}
	for i := range items {
		if it := &items[i]; it.outcome == outcomePending && blocked[it.profile] {
			it.outcome = outcomeSuppressed
		}
	}
	return nil
}

// excluded reports whether the profile must be kept out of every audience: the
// person objected.
func (c *Controller) excluded(ctx context.Context, pid identity.ProfileID) bool {
	yes, err := c.suppressions.ProfileSuppressed(ctx, pid)
	return yes || err != nil // when unsure, keep them out
}
