package privacy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/txscope"
)

// scanPage is how many profiles DefineAudience reads at a time.
const scanPage = 1000

// DefineAudience validates the definition, stores it and computes the initial
// membership of every existing profile; from then on membership is kept up to date
// as messages are collected. A malformed query, an unknown function, a type
// mismatch, a reference to an undefined audience (which also rules out cycles) or
// a duplicate key is refused with an error matching ErrInvalid (or ErrConflict for
// the duplicate), and nothing is defined.
//
// Profiles that enter the audience are sent "Audience Entered" downstream.
func (c *Controller) DefineAudience(ctx context.Context, d audience.Definition) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	c.defineMu.Lock()
	defer c.defineMu.Unlock()
	next, err := c.set.Load().Add(d)
	switch {
	case errors.Is(err, audience.ErrConflict):
		return fmt.Errorf("privacy: %w: %w", ErrConflict, err)
	case err != nil:
		return fmt.Errorf("privacy: %w: %w", ErrInvalid, err)
	}
	defs := next.Definitions()
	tx, err := c.audiences.Begin(ctx)
	if err != nil {
		return backendError("audience begin", err)
	}
	defer tx.Rollback(ctx)
	if err := tx.Define(ctx, defs[len(defs)-1]); err != nil {
		return backendError("defining audience", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return backendError("audience commit", err)
	}
	// From here the collection path keeps the new audience current; the scan
	// below recounts every profile's events from the store, so a message that
	// lands while it runs is counted once either way.
	c.set.Store(next)
	var after identity.ProfileID
	for {
		pids, err := c.profiles.IDs(ctx, after, scanPage)
		if err != nil {
			return backendError("listing profiles", err)
		}
		for _, pid := range pids {
			if pid.IsAccount() {
				continue // an account is in no audience
			}
			if err := c.reevaluate(ctx, pid, recountEvents); err != nil {
				return fmt.Errorf("privacy: audience %s defined, computing membership of %s: %w", d.Key, pid, err)
			}
		}
		if len(pids) < scanPage {
			return nil
		}
		after = pids[len(pids)-1]
	}
}

// AudienceKeys returns the keys of every defined audience, in the order defined.
func (c *Controller) AudienceKeys() []string {
	defs := c.set.Load().Definitions()
	keys := make([]string, len(defs))
	for i, d := range defs {
		keys[i] = d.Key
	}
	return keys
}

// Members returns the profiles in the audience, in profile id order. An unknown
// key fails with ErrNotFound.
func (c *Controller) Members(ctx context.Context, key string) ([]identity.ProfileID, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	if !c.set.Load().Has(key) {
		return nil, fmt.Errorf("privacy: %w: audience %q is not defined", ErrNotFound, key)
	}
	ids, err := c.audiences.Members(ctx, key, "", 0)
	return ids, backendError("reading members", err)
}

// Audiences returns the keys of the audiences the person known by id is in.
func (c *Controller) Audiences(ctx context.Context, id identity.ID) ([]string, error) {
	pid, held, err := c.lockSubject(ctx, id)
	if err != nil {
		return nil, err
	}
	defer c.locks.unlock(&held)
	st, err := c.audiences.State(ctx, pid)
	if errors.Is(err, audience.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, backendError("reading audiences", err)
	}
	return st.Audiences, nil
}

// Refresh re-evaluates the profiles whose memberships time alone can change (an
// event entering or leaving a within or in_between window), as of the clock's
// now, so people leave audiences when their qualifying events age out, and
// recomputes those whose memberships the audience backend failed to store. Only
// those profiles are read, not everyone. Call it periodically; it returns how
// many profiles it re-evaluated.
func (c *Controller) Refresh(ctx context.Context) (int, error) {
	if err := c.checkOpen(); err != nil {
		return 0, err
	}
	now := c.now()
	done := 0
	var staleErr error
	c.stale.Range(func(k, _ any) bool {
		pid := k.(identity.ProfileID)
		if staleErr = c.reevaluate(ctx, pid, repairState); staleErr != nil {
			return false
		}
		c.stale.Delete(pid)
		done++
		return true
	})
	if staleErr != nil {
		return done, staleErr
	}
	for {
		due, err := c.audiences.Due(ctx, now, scanPage)
		if err != nil {
			return done, backendError("reading due profiles", err)
		}
		if len(due) == 0 {
			return done, nil
		}
		for _, pid := range due {
			if err := c.reevaluate(ctx, pid, keepCounters); err != nil {
				return done, err
			}
			done++
		}
	}
}

// How reevaluate treats a profile's audience state.
type recountMode uint8

const (
	// keepCounters evaluates the stored counters (time has passed).
	keepCounters recountMode = iota
	// recountEvents recounts them from the stored events (a new audience).
	recountEvents
	// repairState recounts them after a failed audience commit, starting
	// from the memberships of every profile merged into this one whose
	// state the failure left: the catch-ups the message owed were reckoned
	// from their union (audience_news.go), and the merged-away states go.
	// Only a failure leaves such states, so only repairs pay for the look.
	repairState
)

// reevaluate recomputes one profile's memberships, as mode says, and tells
// destinations what changed. It
// writes the person's data as every writer does: under the profile's lock in
// this process and, through a txscope.Locker backend, across processes, in
// one operation whose transaction the audience write shares, reading the
// profile there. So an erasure or a merge elsewhere happens wholly before it
// (the profile is gone: so is its audience state) or wholly after.
func (c *Controller) reevaluate(ctx context.Context, pid identity.ProfileID, mode recountMode) error {
	for attempt := 1; ; attempt++ {
		err := c.reevaluateOnce(ctx, pid, mode)
		if !errors.Is(err, txscope.ErrRetry) || attempt == retryAttempts || ctx.Err() != nil {
			return err
		}
		pause(ctx, attempt)
	}
}

// reevaluateOnce is one attempt at reevaluate, in an operation of its own.
func (c *Controller) reevaluateOnce(ctx context.Context, pid identity.ProfileID, mode recountMode) error {
	ctx, closeScope := c.openScope(ctx)
	defer closeScope()
	var held lockSet
	held.add(c.locks.profile(pid))
	c.locks.lock(&held)
	defer c.locks.unlock(&held)
	if err := c.lockRemote(ctx, nil, []identity.ProfileID{pid}); err != nil {
		return err
	}

	set := c.set.Load()
	now := c.now()
	atx, err := c.audiences.Begin(ctx)
	if err != nil {
		return backendError("audience begin", err)
	}
	defer atx.Rollback(ctx)
	p, err := c.profiles.Get(ctx, pid)
	if errors.Is(err, profile.ErrNotFound) {
		// The profile is gone (erased or merged away): so is its audience state.
		if err := atx.Delete(ctx, pid); err != nil {
			return backendError("audience delete", err)
		}
		return backendError("audience commit", atx.Commit(ctx))
	}
	if err != nil {
		return backendError("reading profile", err)
	}
	st, err := atx.State(ctx, pid)
	if errors.Is(err, audience.ErrNotFound) {
		st, err = &audience.State{}, nil
	}
	if err != nil {
		return backendError("reading audience state", err)
	}
	if mode == repairState {
		if n, err := c.graph.Node(ctx, pid); err == nil {
			for _, m := range n.Merges {
				fs, err := atx.State(ctx, m.From)
				if errors.Is(err, audience.ErrNotFound) {
					continue
				} else if err != nil {
					return backendError("reading audience state", err)
				}
				set.Merge(st, fs)
				if err := atx.Delete(ctx, m.From); err != nil {
					return backendError("audience delete", err)
				}
			}
		} else if !errors.Is(err, identity.ErrNotFound) {
			return backendError("reading identifiers", err)
		}
	}
	if mode != keepCounters {
		st.Counters = nil
		if err := c.recount(ctx, set, st, pid, now); err != nil {
			return err
		}
	}
	changes := set.EvaluateInputs(st, audience.Inputs{Traits: p.Traits, Consent: p.Metadata.Consent}, now, c.excluded(ctx, pid))
	if err := atx.Put(ctx, pid, st); err != nil {
		return backendError("audience put", err)
	}
	if len(changes) == 0 || len(c.destinations) == 0 {
		return backendError("audience commit", atx.Commit(ctx))
	}
	// What the changes owe the destinations is written with them.
	otx, err := c.outbox.Begin(ctx)
	if err != nil {
		return backendError("outbox begin", err)
	}
	defer otx.Rollback(ctx)
	ids, err := nodeIDs(ctx, c.graph.Node, pid)
	if err != nil {
		return err
	}
	o := owed{c: c}
	o.audienceChanges(pid, ids, p.Metadata.Version, "t"+strconv.FormatInt(now.UnixNano(), 36), changes, now, c.holders(p.Metadata.Recipients, nil))
	if err := o.enqueue(ctx, otx); err != nil {
		return err
	}
	// A shared transaction commits with its last participant, the
	// audiences'; otherwise what is owed follows what was done.
	first, second := otx.Commit, atx.Commit
	if !c.scoped {
		first, second = atx.Commit, otx.Commit
	}
	if err := first(ctx); err != nil {
		return backendError("audience commit", err)
	}
	if err := second(detach(ctx)); err != nil {
		return backendError("audience commit", err)
	}
	c.deliver.Wake()
	return nil
}

// recount feeds every stored event of the profile that some audience counts
// through the set's counters.
func (c *Controller) recount(ctx context.Context, set *audience.Set, st *audience.State, pid identity.ProfileID, now time.Time) error {
	names := set.EventNames()
	if len(names) == 0 {
		return nil
	}
	q := profile.EventQuery{Include: names, Sort: profile.Asc, Limit: profile.MaxLimit}
	for {
		page, err := c.profiles.Events(ctx, pid, q)
		if err != nil {
			return backendError("reading events", err)
		}
		for i := range page.Events {
			set.Observe(st, &page.Events[i], now)
		}
		if page.Next == "" {
			return nil
		}
		q.Cursor = page.Next
	}
}
