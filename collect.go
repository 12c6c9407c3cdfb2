package privacy

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/txscope"
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
	if !c.scoped {
		return c.collect(ctx, m)
	}
	// A backend shared with other processes may report a conflict (a deadlock
	// between their locks, a serialization failure): then nothing was stored,
	// and the message is simply collected again.
	var err error
	for attempt := 1; attempt <= retryAttempts; attempt++ {
		sctx, closeScope := c.openScope(ctx)
		err = c.collect(sctx, m)
		closeScope()
		if !errors.Is(err, txscope.ErrRetry) || ctx.Err() != nil {
			return err
		}
		pause(ctx, attempt)
	}
	return err
}

// collect is one attempt at Collect.
func (c *Controller) collect(ctx context.Context, m Message) error {
	// The message and its identifiers live on the stack: the identifiers are kept
	// apart from msg because store lets msg's fields escape.
	var msg message
	var idBuf [4]identity.ID
	in := c.intake()
	ids, err := prepareMessage(&in, m, &msg, idBuf[:0])
	if err != nil {
		c.stats.refused.Add(1)
		return err
	}
	var matchBuf [4]identity.Match
	matches, plan, held, now, err := c.resolveLocked(ctx, ids, matchBuf[:0], accountOf(&msg), previousIDs(msg.previous))
	if err != nil {
		return err
	}
	locked := true
	defer func() {
		if locked {
			c.locks.unlock(&held)
		}
	}()

	if len(plan.Dropped) > 0 {
		c.log.InfoContext(ctx, "identifiers not linked by the identity rules",
			"profile", plan.Profile, "dropped", len(plan.Dropped), "capped", plan.Capped)
	}
	dup, recount, err := c.store(ctx, &plan, &msg, matches, now)
	switch {
	case err != nil:
		return err
	case dup:
		c.stats.duplicates.Add(1)
	default:
		c.stats.collected.Add(1)
	}
	if recount {
		// The audience commit failed after the message was stored: recompute the
		// memberships from the stored events, once the lock is let go (reevaluate
		// takes it again) and before returning.
		locked = false
		c.locks.unlock(&held)
		if err := c.reevaluate(context.WithoutCancel(ctx), plan.Profile, repairState); err != nil {
			c.stale.Store(plan.Profile, struct{}{}) // the next Refresh tries again
			c.log.ErrorContext(ctx, "recomputing memberships failed; Refresh will retry", "profile", plan.Profile, "err", describe(err))
		}
	}
	return nil
}

// resolveLocked locks the message's subjects, and the account profile it
// writes to when not "", and the guard identifiers (an alias's previous id:
// checked, not linked), runs the suppression check on all of them and
// resolves the identity plan of the message's own. A plan that creates a profile also holds the new profile's
// stripe, so nothing reaches the profile by id before it is stored. On
// success the caller holds the returned stripes and must unlock them.
func (c *Controller) resolveLocked(ctx context.Context, ids []identity.ID, buf []identity.Match, account identity.ProfileID, guard []identity.ID) ([]identity.Match, identity.Plan, lockSet, time.Time, error) {
	var also []identity.ProfileID
	if account != "" {
		also = []identity.ProfileID{account}
	}
	locked := ids
	if len(guard) > 0 {
		locked = append(slices.Clip(ids), guard...)
	}
	for {
		matches, held, err := c.lockMatchesAnd(ctx, locked, buf, also)
		if err != nil {
			return nil, identity.Plan{}, lockSet{}, time.Time{}, err
		}
		fail := func(err error) ([]identity.Match, identity.Plan, lockSet, time.Time, error) {
			c.locks.unlock(&held)
			return nil, identity.Plan{}, lockSet{}, time.Time{}, err
		}
		if err := c.admit(ctx, matches); err != nil {
			return fail(err)
		}
		matches = matches[:len(ids)]
		now := c.now()
		plan, err := c.resolver.Resolve(ctx, c.graph, matches, now)
		if err != nil {
			return fail(backendError("resolving identity", err))
		}
		if plan.Create && !c.locks.tryAdd(&held, c.locks.profile(plan.Profile)) {
			c.locks.unlock(&held)
			if c.remoteLocked(ctx) {
				return nil, identity.Plan{}, lockSet{}, time.Time{}, errRestart // as in lockMatchesAnd
			}
			runtime.Gosched()
			continue
		}
		return matches, plan, held, now, nil
	}
}

// previousIDs are the identifiers an alias's previous id may be of (a user
// id, an anonymous id, an email): the alias stores it among its properties
// and sends it on, so it is refused when any of them is suppressed, checked
// under their locks so that no suppression lands between the check and the
// store.
func previousIDs(previous string) []identity.ID {
	if previous == "" {
		return nil
	}
	var out []identity.ID
	for _, typ := range []string{identity.TypeUserID, identity.TypeAnonymousID, identity.TypeEmail} {
		if id, err := identity.NewID(typ, previous); err == nil {
			out = append(out, id)
		}
	}
	return out
}

// store writes the resolved message to the graph, the profile store and the
// audience engine, in one transaction each, committed in that order, then queues
// what destinations must hear. It reports dup when the profile had already
// recorded the message id; then nothing is written or sent.
func (c *Controller) store(ctx context.Context, plan *identity.Plan, msg *message, matches []identity.Match, now time.Time) (dup, recount bool, err error) {
	set := c.set.Load()
	// Only these can change a membership now: new traits, a new or merged profile,
	// an event some audience counts, or consent some audience reads. Time
	// passing is Refresh's business.
	withAudiences := set.Len() > 0 && (msg.kind == kindIdentify || plan.Create || len(plan.Absorb) > 0 ||
		(msg.kind == kindTrack && set.UsesEvents(msg.event)) || (msg.hasConsent && set.UsesConsent()))

	var gtx identity.Tx
	if plan.Writes() {
		if gtx, err = c.graph.Begin(ctx); err != nil {
			return false, false, backendError("identity begin", err)
		}
		defer gtx.Rollback(ctx)
		if err := plan.Apply(ctx, gtx, now, msg.messageID); err != nil {
			return false, false, backendError("identity", err)
		}
	}
	ptx, err := c.profiles.Begin(ctx)
	if err != nil {
		return false, false, backendError("profile begin", err)
	}
	defer ptx.Rollback(ctx)

	// A counted event changes no trait: the audiences need only the values of
	// the traits they name, which a TraitPicker reads without copying the
	// profile.
	picker := traitPickerOf(ptx)
	pick := picker != nil && withAudiences && msg.storesEvent() && !plan.Create && len(plan.Absorb) == 0
	u, traits, err := c.buildUpdate(ctx, ptx, plan, msg, now, withAudiences && !pick)
	defer releaseEvent(u.Event) // read by the update and the audiences, which copy what they keep
	if err != nil {
		return false, false, err
	}
	var values []any
	if pick { // before the update, which the transaction would have to replay
		vb := traitValues.Get().(*[]any)
		defer func() { clear((*vb)[:cap(*vb)]); traitValues.Put(vb) }()
		values, err = picker.PickTraits(ctx, plan.Profile, set.TraitNames(), (*vb)[:0])
		*vb = values[:0]
		if errors.Is(err, profile.ErrNotFound) { // to be stored afresh: no traits yet
			values, err = make([]any, len(set.TraitNames())), nil
		}
		if err != nil {
			return false, false, backendError("profile read", err)
		}
	}
	// A destination the message makes a recipient for the first time is
	// owed the audiences the person is in: read them, with the traits they
	// need (which this message, no identify, leaves as they are).
	catchUp := len(msg.joined) > 0 && set.Len() > 0
	if catchUp && !withAudiences {
		withAudiences = true
		if picker != nil {
			values, err = picker.PickTraits(ctx, plan.Profile, set.TraitNames(), nil)
		} else {
			var p *profile.Profile
			if p, err = ptx.Get(ctx, plan.Profile); err == nil {
				traits = p.Traits
			}
		}
		if errors.Is(err, profile.ErrNotFound) {
			values, err = make([]any, len(set.TraitNames())), nil
		}
		if err != nil {
			return false, false, backendError("profile read", err)
		}
	}
	if err := updateTakingSet(ctx, ptx, plan.Profile, u); err != nil {
		if errors.Is(err, profile.ErrDuplicate) {
			return true, false, nil
		}
		return false, false, backendError("profile update", err)
	}
	if msg.kind == kindGroup {
		if err := c.updateAccount(ctx, ptx, msg, now); err != nil {
			return false, false, err
		}
	}
	var atx audience.Tx
	var changes []audience.Change
	var reckon *reckoning // with catchUp or a merge, what the changes are reckoned from
	if withAudiences {
		if atx, err = c.audiences.Begin(ctx); err != nil {
			return false, false, backendError("audience begin", err)
		}
		defer atx.Rollback(ctx)
		in := audience.Inputs{Traits: traits, Values: values, Consent: u.Metadata.Consent}
		if changes, reckon, err = c.stageAudiences(ctx, atx, set, plan, u.Event, in, now, catchUp || len(plan.Absorb) > 0); err != nil {
			return false, false, err
		}
	}
	// The outbox: a merged profile's items follow the person; what the
	// message owes the destinations is written with it.
	var otx outbox.Tx
	if len(c.destinations) > 0 || len(plan.Absorb) > 0 {
		if otx, err = c.outbox.Begin(ctx); err != nil {
			return false, false, backendError("outbox begin", err)
		}
		defer otx.Rollback(ctx)
		for _, from := range plan.Absorb {
			if err := otx.Merge(ctx, plan.Profile, from); err != nil {
				return false, false, backendError("outbox merge", err)
			}
		}
	}
	if c.scoped {
		// Participants may share one transaction, which commits with the last of
		// them: commit the audiences and the outbox before the profile, so that
		// a failure of the real commit is the profile's, and fails the message
		// as a whole.
		if err := c.oweCollected(ctx, otx, plan.Profile, msg, matches, &u.Metadata, changes, reckon, now); err != nil {
			return false, false, err
		}
		if atx != nil {
			if err := atx.Commit(ctx); err != nil {
				return false, false, backendError("audience commit", err)
			}
		}
		if otx != nil {
			if err := otx.Commit(ctx); err != nil {
				return false, false, backendError("outbox commit", err)
			}
		}
	}
	if gtx != nil {
		if err := gtx.Commit(ctx); err != nil {
			return false, false, backendError("identity commit", err)
		}
		// Once a commit has happened, a cancelled context must not stop the
		// rest: a merge committed in the graph but not in the store would orphan
		// the merged profile's data.
		ctx = detach(ctx)
	}
	// Should a later commit fail after the graph's, the next message finds the
	// links without a stored profile and creates it afresh (buildUpdate).
	if err := ptx.Commit(ctx); err != nil {
		return false, false, backendError("profile commit", err)
	}
	if atx != nil && !c.scoped {
		if err := atx.Commit(detach(ctx)); err != nil {
			// The message is stored (its id recorded), so failing now would turn
			// the client's retry into a duplicate and lose it: deliver it, and
			// recompute the memberships from the stored events instead.
			c.log.ErrorContext(ctx, "audience commit failed; recomputing memberships", "profile", plan.Profile, "err", describe(err))
			// The catch-ups still hold: they are reckoned from the state the
			// recount starts from, and the recount's changes follow them.
			changes, recount = nil, true
		}
	}
	if otx != nil && !c.scoped {
		// Backends that share no transaction: what is owed follows what was
		// stored (a failed audience commit owes no audience change).
		ctx = detach(ctx)
		err := c.oweCollected(ctx, otx, plan.Profile, msg, matches, &u.Metadata, changes, reckon, now)
		if err == nil {
			err = backendError("outbox commit", otx.Commit(ctx))
		}
		if err != nil {
			c.log.ErrorContext(ctx, "the outbox did not take what a stored message owes the destinations", "profile", plan.Profile, "err", describe(err))
		}
	}
	if len(c.destinations) > 0 {
		c.deliver.Wake()
	}
	return false, recount, nil
}

// oweCollected writes in otx what a stored message owes the destinations:
// the message, addressed by its own identifiers, and the audience news of
// each destination that holds the person after it (audience_news.go),
// addressed by every identifier of the profile.
func (c *Controller) oweCollected(ctx context.Context, otx outbox.Tx, pid identity.ProfileID, msg *message, matches []identity.Match,
	meta *profile.Metadata, changes []audience.Change, reckon *reckoning, now time.Time) error {
	if otx == nil || len(c.destinations) == 0 {
		return nil
	}
	o := owed{c: c}
	o.collected(pid, msg, matches, now)
	if newsOwed(changes, reckon) { // holders allocates: not on every message
		c.oweNews(ctx, &o, pid, msg, matches, meta.Version, c.holders(meta.Recipients, nil), changes, reckon, now)
	}
	return o.enqueue(ctx, otx)
}

// stageAudiences updates the profile's audience state in atx: merged profiles'
// counters are added, the event is counted, memberships are re-evaluated.
func (c *Controller) stageAudiences(ctx context.Context, atx audience.Tx, set *audience.Set, plan *identity.Plan,
	ev *profile.Event, in audience.Inputs, now time.Time, reckon bool) ([]audience.Change, *reckoning, error) {
	w := audienceWorks.Get().(*audienceWork)
	defer w.release()
	*w = audienceWork{fn: w.fn, c: c, ctx: ctx, atx: atx, set: set, pid: plan.Profile, absorb: plan.Absorb,
		ev: ev, in: in, now: now}
	if reckon {
		w.reckon = new(reckoning)
	}
	if err := modifyState(ctx, atx, w.pid, w.fn); err != nil {
		return nil, nil, err
	}
	return w.changes, w.reckon, nil
}

// traitValues pools the buffers the picked trait values go in.
var traitValues = sync.Pool{New: func() any { return new([]any) }}

// audienceWork is what stageAudiences' update needs, pooled with the update
// bound to it once: a closure made per message would cost the collection path
// an allocation or two, and it runs on every counted event.
type audienceWork struct {
	fn      func(*audience.State) error // w.update, made once per pooled value
	c       *Controller
	ctx     context.Context
	atx     audience.Tx
	set     *audience.Set
	pid     identity.ProfileID
	absorb  []identity.ProfileID
	ev      *profile.Event
	in      audience.Inputs
	now     time.Time
	changes []audience.Change
	// reckon, when not nil, is filled with what the changes are reckoned
	// from.
	reckon *reckoning
}

var audienceWorks = sync.Pool{New: func() any {
	w := &audienceWork{}
	w.fn = w.update
	return w
}}

// release forgets what the work referred to and returns it to the pool.
func (w *audienceWork) release() {
	*w = audienceWork{fn: w.fn}
	audienceWorks.Put(w)
}

// update adds merged profiles' counters to st, counts the event and
// re-evaluates the memberships, keeping what changed.
func (w *audienceWork) update(st *audience.State) error {
	if w.reckon != nil { // before merging: called again on a retry
		w.reckon.before = append(w.reckon.before[:0], slices.Clone(st.Audiences))
	}
	for _, from := range w.absorb {
		fs, err := w.atx.State(w.ctx, from)
		switch {
		case err == nil:
			if w.reckon != nil {
				w.reckon.before = append(w.reckon.before, slices.Clone(fs.Audiences))
			}
			w.set.Merge(st, fs)
		case !errors.Is(err, audience.ErrNotFound):
			return backendError("reading audience state", err)
		default:
			if w.reckon != nil {
				w.reckon.before = append(w.reckon.before, nil)
			}
		}
		if err := w.atx.Delete(w.ctx, from); err != nil {
			return backendError("audience delete", err)
		}
	}
	if w.ev != nil {
		w.set.Observe(st, w.ev, w.now)
	}
	excluded := w.c.excluded(w.ctx, w.pid)
	if w.reckon != nil {
		w.reckon.base = slices.Clone(st.Audiences)
	}
	w.changes = w.set.EvaluateInputs(st, w.in, w.now, excluded)
	return nil
}

// detach returns ctx without its cancellation, for work that must finish once a
// commit has happened; a context that cannot be cancelled is returned as is,
// sparing the collection path an allocation.
func detach(ctx context.Context) context.Context {
	if ctx.Done() == nil {
		return ctx
	}
	return context.WithoutCancel(ctx)
}
