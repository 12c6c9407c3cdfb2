package privacy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/suppression"
)

// errNotSupported is what a destination answers when it cannot delete.
var errNotSupported = destination.ErrNotSupported

// participants holds one open transaction per backend of a request.
type participants struct {
	graph     identity.Tx
	profiles  profile.Tx
	audiences audience.Tx
	supp      suppression.Tx
}

type participant struct {
	name     string
	commit   func(context.Context) error
	rollback func(context.Context) error
}

// all returns the participants in commit order.
func (p *participants) all() []participant {
	var out []participant
	add := func(name string, commit, rollback func(context.Context) error) {
		out = append(out, participant{name, commit, rollback})
	}
	if p.supp != nil { // suppression first: "suppression first" of SUPPRESS_WITH_DELETE
		add("suppression", p.supp.Commit, p.supp.Rollback)
	}
	if p.graph != nil {
		add("identity", p.graph.Commit, p.graph.Rollback)
	}
	if p.profiles != nil {
		add("profiles", p.profiles.Commit, p.profiles.Rollback)
	}
	if p.audiences != nil {
		add("audiences", p.audiences.Commit, p.audiences.Rollback)
	}
	return out
}

func (p *participants) rollback(ctx context.Context) {
	for _, x := range p.all() {
		_ = x.rollback(context.WithoutCancel(ctx)) // harmless after Commit
	}
}

// begin opens a transaction on every backend; on an error it rolls back those
// already open.
func (c *Controller) begin(ctx context.Context) (*participants, error) {
	p := &participants{}
	var err error
	if p.supp, err = c.suppressions.Begin(ctx); err != nil {
		return nil, backendError("suppression begin", err)
	}
	if p.graph, err = c.graph.Begin(ctx); err != nil {
		p.rollback(ctx)
		return nil, backendError("identity begin", err)
	}
	if p.profiles, err = c.profiles.Begin(ctx); err != nil {
		p.rollback(ctx)
		return nil, backendError("profile begin", err)
	}
	if p.audiences, err = c.audiences.Begin(ctx); err != nil {
		p.rollback(ctx)
		return nil, backendError("audience begin", err)
	}
	return p, nil
}

// pendingSend is a message a request sends to every destination, tracked in
// its receipt.
type pendingSend struct {
	msgs []destination.Message
}

// decide works out what the request changes for the resolved subjects. It
// only reads.
func (c *Controller) decide(ctx context.Context, txs *participants, e *journal.Entry, matches []identity.Match, now time.Time) (journal.Decision, []pendingSend, error) {
	typ := e.Type
	var d journal.Decision
	var pids []identity.ProfileID
	seen := make(map[identity.ProfileID]bool, len(matches))
	for _, m := range matches {
		if m.Profile != "" && !seen[m.Profile] {
			seen[m.Profile] = true
			pids = append(pids, m.Profile)
		}
	}
	nodes := make(map[identity.ProfileID]*identity.Node, len(pids))
	for _, pid := range pids {
		n, err := txs.graph.Node(ctx, pid)
		if err != nil {
			return d, nil, backendError("reading identifiers", err)
		}
		nodes[pid] = n
	}
	if typ.Suppresses() || typ == Unsuppress {
		// Every identifier of every resolved person, and the subjects themselves
		// (a subject nobody knows yet is suppressed before it is seen).
		hashes := append([]identity.Hash(nil), e.SubjectHashes...)
		for _, pid := range pids {
			for _, l := range nodes[pid].Links {
				hashes = append(hashes, c.hasher.ID(l.ID))
			}
		}
		if typ == Unsuppress {
			// A person suppressed and deleted has no profile left to find their
			// other identifiers by; the journal still has the hashes that request
			// suppressed.
			more, err := c.suppressedTogether(ctx, e.SubjectHashes)
			if err != nil {
				return d, nil, err
			}
			d.Unsuppress, d.UnsuppressProfiles = append(hashes, more...), pids
		} else {
			// The profiles too, for every suppressing type: the identifiers' hashes
			// and their profile's mark commit together, so a linked identifier is
			// blocked through its profile even if a later participant's commit
			// (the deletion) has not happened yet.
			d.Suppress, d.SuppressProfiles = hashes, pids
		}
	}
	if typ.Deletes() {
		d.Delete = pids
		// Profiles merged into these ones are deleted too: should a merge's profile
		// commit have been lost, their data would otherwise outlive the erasure.
		for _, pid := range pids {
			for _, m := range nodes[pid].Merges {
				d.Delete = append(d.Delete, m.From)
			}
		}
		if typ.Forwards() {
			for _, pid := range pids {
				f := journal.Deletion{Profile: pid}
				for _, l := range nodes[pid].Links {
					f.IDs = append(f.IDs, l.ID)
				}
				d.Forward = append(d.Forward, f)
			}
		}
	}
	var sends []pendingSend
	if typ == Rectify {
		if len(pids) == 0 {
			// The reason goes to the journal and the audit log: no identifier in it.
			return d, nil, fmt.Errorf("privacy: %w: nobody is known by Subjects[0]", ErrNotFound)
		}
		pid := pids[0]
		p, err := txs.profiles.Get(ctx, pid)
		if err != nil {
			return d, nil, backendError("reading profile", err)
		}
		u := profile.Update{Metadata: p.Metadata}
		for k, v := range e.Traits {
			if v == nil {
				if _, ok := p.Traits[k]; ok {
					u.Remove = append(u.Remove, k)
				}
				continue
			}
			if u.Set == nil {
				u.Set = map[string]profile.Trait{}
			}
			u.Set[k] = profile.Trait{Value: v, Source: profile.SourceRectification, UpdatedAt: now}
		}
		u.Metadata.Version++
		u.Metadata.UpdatedAt = now
		u.Metadata.Recipients = c.noteRecipients(u.Metadata.Recipients, now)
		d.Rectify = []journal.Rectification{{Profile: pid, Update: u}}
		e.ProfileVersion = u.Metadata.Version
		sends = c.rectifySends(&journal.Entry{ID: e.ID, Traits: e.Traits, Decision: d})
	}
	return d, sends, nil
}

// rectifySends is the identify message that carries a rectification's
// corrected traits (nil for removed ones) to destinations, addressed by the
// person's identifiers; its MessageID is the request id, for de-duplication.
func (c *Controller) rectifySends(e *journal.Entry) []pendingSend {
	if len(e.Decision.Rectify) == 0 || e.Traits == nil {
		return nil
	}
	r := e.Decision.Rectify[0]
	m := destination.Message{MessageID: e.ID, Type: destination.TypeIdentify, ProfileID: r.Profile,
		Traits: maps.Clone(e.Traits), Timestamp: r.Update.Metadata.UpdatedAt}
	if n, err := c.graph.Node(context.Background(), r.Profile); err == nil {
		for _, l := range n.Links {
			m.IDs = append(m.IDs, l.ID)
		}
	}
	return []pendingSend{{msgs: []destination.Message{m}}}
}

// stage applies a decision to the open transactions, and re-evaluates the
// audiences of the people whose membership it changes. Every write is an
// idempotent redo, so recovery stages the same decision again.
func (c *Controller) stage(ctx context.Context, txs *participants, d *journal.Decision, now time.Time) (map[identity.ProfileID][]audience.Change, error) {
	if len(d.Suppress) > 0 {
		if err := txs.supp.Add(ctx, d.Suppress...); err != nil {
			return nil, backendError("suppression add", err)
		}
	}
	if len(d.Unsuppress) > 0 {
		if err := txs.supp.Remove(ctx, d.Unsuppress...); err != nil {
			return nil, backendError("suppression remove", err)
		}
	}
	for _, pid := range d.SuppressProfiles {
		if err := txs.supp.AddProfile(ctx, pid); err != nil {
			return nil, backendError("suppression add", err)
		}
	}
	for _, pid := range d.UnsuppressProfiles {
		if err := txs.supp.RemoveProfile(ctx, pid); err != nil {
			return nil, backendError("suppression remove", err)
		}
	}
	for _, pid := range d.Delete {
		if err := txs.graph.Delete(ctx, pid); err != nil {
			return nil, backendError("identity delete", err)
		}
		if err := txs.profiles.Delete(ctx, pid); err != nil {
			return nil, backendError("profile delete", err)
		}
		if err := txs.audiences.Delete(ctx, pid); err != nil {
			return nil, backendError("audience delete", err)
		}
	}
	for _, r := range d.Rectify {
		if err := txs.profiles.Update(ctx, r.Profile, r.Update); err != nil {
			return nil, backendError("profile update", err)
		}
	}
	// Memberships follow: suppressed people leave every audience, unsuppressed
	// and rectified ones are evaluated again.
	changes := map[identity.ProfileID][]audience.Change{}
	reeval := func(pid identity.ProfileID, excluded bool) error {
		if c.set.Load().Len() == 0 {
			return nil
		}
		p, err := txs.profiles.Get(ctx, pid)
		if errors.Is(err, profile.ErrNotFound) {
			return nil
		}
		if err != nil {
			return backendError("reading profile", err)
		}
		st, err := txs.audiences.State(ctx, pid)
		if errors.Is(err, audience.ErrNotFound) {
			st, err = &audience.State{}, nil
		}
		if err != nil {
			return backendError("reading audience state", err)
		}
		changes[pid] = c.set.Load().Evaluate(st, p.Traits, now, excluded)
		return backendError("audience put", txs.audiences.Put(ctx, pid, st))
	}
	for _, pid := range d.SuppressProfiles {
		if err := reeval(pid, true); err != nil {
			return nil, err
		}
	}
	for _, pid := range d.UnsuppressProfiles {
		if err := reeval(pid, false); err != nil {
			return nil, err
		}
	}
	for _, r := range d.Rectify {
		suppressed, err := txs.supp.ProfileSuppressed(ctx, r.Profile)
		if err != nil {
			return nil, backendError("suppression check", err)
		}
		if err := reeval(r.Profile, suppressed); err != nil {
			return nil, err
		}
	}
	return changes, nil
}

// suppressedTogether returns the hashes suppressed by any earlier suppressing
// request that suppressed one of these hashes: everything suppressed together
// with the subjects.
func (c *Controller) suppressedTogether(ctx context.Context, subjects []identity.Hash) ([]identity.Hash, error) {
	want := make(map[identity.Hash]bool, len(subjects))
	for _, h := range subjects {
		want[h] = true
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
				if want[h] {
					out = append(out, e.Decision.Suppress...)
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

func deletionOf(requestID string, f journal.Deletion) destination.Deletion {
	return destination.Deletion{RequestID: requestID, ProfileID: f.Profile, IDs: f.IDs}
}
