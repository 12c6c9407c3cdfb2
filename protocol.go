package privacy

// The protocol every right goes through, whatever the right: the request is
// journaled (Apply), its subjects locked, every backend's transaction begun
// (begin), what it changes decided (decide, which asks each right's file) and
// staged (stage, likewise), the decision journaled, every backend committed
// (commitDecision), the recipients told through the outbox (deliverDecision),
// and the request finished (finish) or failed before its decision (fail).
// Recover (recover.go) completes what a crash left unfinished.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/keyring"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/suppression"
	"github.com/gdprkit/privacy/txscope"
)

// Apply applies a request atomically across every backend and returns its
// receipt. Bad input (an unknown type, no subjects, more than MaxSubjects, a
// malformed identifier, more than MaxTraits traits or a value that is not JSON)
// gets an INVALID receipt and an error matching ErrInvalid, and changes nothing.
//
// The protocol: the request is journaled first; its subjects are locked so
// collection cannot interleave; every backend stages its part in a transaction;
// the commit decision is journaled; every backend commits; then destinations are
// told through the outbox. A failure before the decision rolls everything back
// (FAILED); after it, the request always completes, if need be by Recover.
func (c *Controller) Apply(ctx context.Context, req Request) (*Receipt, error) {
	return c.right(ctx, req.Type, func(ctx context.Context) (*Receipt, error) { return c.apply(ctx, req) })
}

// apply is Apply, its telemetry aside.
func (c *Controller) apply(ctx context.Context, req Request) (*Receipt, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	now := c.now()
	e := &journal.Entry{ID: newRequestID(now), Type: req.Type, Status: Initialized, Received: now, Due: now.AddDate(0, 1, 0),
		InactiveBefore: req.inactiveBefore}
	if err := c.validateRequest(&req, e); err != nil {
		if !req.Type.Valid() {
			e.Type = UnknownType // the journal keeps no text of the caller's as a type
		}
		e.Status, e.Reason, e.Finished = Invalid, c.redact(e, describe(err), req.Subjects), now
		e.Subjects = nil
		return c.refuse(ctx, e, err)
	}
	e.Status = Running
	// Claimed (and in flight) from before its intent is recorded, so no
	// Recover, here or elsewhere, runs it a second time.
	cl := c.claimNew(e)
	c.owe(e, "received")
	if err := c.record(ctx, cl, e); err != nil { // step 1: intent before any backend
		return c.intentFailed(ctx, cl, e, err)
	}
	c.settleSoon(ctx, e)
	return c.execute(ctx, cl, e)
}

// refuse records a request refused as INVALID, which ends it at once: its
// audit record first, then the journal.
func (c *Controller) refuse(ctx context.Context, e *journal.Entry, err error) (*Receipt, error) {
	c.owe(e, "invalid")
	if aerr := c.settle(ctx, e); aerr != nil {
		return nil, errors.Join(err, aerr)
	}
	if perr := c.journal.Put(ctx, e); perr != nil {
		return nil, errors.Join(err, backendError("journal", perr))
	}
	c.tel.ended(ctx, e)
	return receiptOf(e), err
}

// intentFailed ends a request whose intent record failed: nothing is
// recorded and no error is kept, or else (the write landed after all) the
// request is recorded FAILED, if it still can be.
func (c *Controller) intentFailed(ctx context.Context, cl *claim, e *journal.Entry, err error) (*Receipt, error) {
	if _, gerr := c.journal.Get(context.WithoutCancel(ctx), e.ID); errors.Is(gerr, journal.ErrNotFound) {
		c.inflight.Delete(e.ID)
		return nil, err
	}
	e.Version = 1 // the version the intent has if it landed, and nobody wrote it since
	return c.fail(ctx, cl, e, err)
}

// execute runs steps 2 to 5 of the protocol for a journaled, undecided request.
// A conflict a shared backend reports before the decision (txscope.ErrRetry)
// changed nothing, so the attempt is simply run again, a few times.
func (c *Controller) execute(ctx context.Context, cl *claim, e *journal.Entry) (*Receipt, error) {
	for attempt := 1; ; attempt++ {
		r, err, failed := c.executeOnce(ctx, cl, e)
		if failed == nil {
			return r, err
		}
		if !errors.Is(failed, txscope.ErrRetry) || attempt == retryAttempts || ctx.Err() != nil {
			return c.fail(ctx, cl, e, failed)
		}
		pause(ctx, attempt)
	}
}

// executeOnce is one attempt at execute. A failure before the decision is
// returned as failed, with nothing changed, for execute to retry or record.
func (c *Controller) executeOnce(ctx context.Context, cl *claim, e *journal.Entry) (r *Receipt, err, failed error) {
	outer := ctx
	ctx, closeScope := c.openScope(ctx)
	defer closeScope()
	var matchBuf []identity.Match
	matches, held, err := c.lockMatches(ctx, e.Subjects, matchBuf) // step 2
	if err != nil {
		return nil, nil, err
	}
	unlock := sync.OnceFunc(func() { c.locks.unlock(&held) })
	defer unlock()

	txs, err := c.begin(ctx) // step 3: prepare
	if err != nil {
		return nil, nil, err
	}
	defer txs.rollback(ctx)
	now := c.now()
	s, sends, err := c.decide(ctx, txs, e, matches, now)
	var d journal.Decision
	if err == nil {
		d = s.d
		err = c.stage(ctx, txs, e, &d, sends, now)
	}
	if err != nil {
		return nil, nil, err
	}
	e.Decided, e.Decision = true, d // step 4: the decision, then the commits
	c.owe(e, "decided")
	if err := c.record(ctx, cl, e); err != nil {
		e.Decided, e.Decision = false, journal.Decision{}
		e.AuditOwed = e.AuditOwed[:len(e.AuditOwed)-1]
		return nil, nil, err
	}
	c.settleSoon(ctx, e)
	if err := c.commitDecision(ctx, cl, txs, e, &e.Decision); err != nil {
		c.inflight.Delete(e.ID) // decided: Recover completes it
		return receiptOf(e), err, nil
	}
	// Committed: the person's locks go (closing the scope releases the
	// cross-process ones) before the purge and the wait for destinations,
	// which write nothing of theirs that another request could race.
	c.recordCommitted(outer, cl, e) // under the locks: nothing of the person is collected anew before
	closeScope()
	unlock()
	c.deliverDecision(outer, cl, e, len(sends) > 0) // step 5
	return receiptOf(e), nil, nil
}

// participants holds one open transaction per backend of a request.
type participants struct {
	keyring   keyring.Tx // nil when nothing is sealed
	graph     identity.Tx
	profiles  profile.Tx
	audiences audience.Tx
	supp      suppression.Tx
	outbox    outbox.Tx
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
	if p.keyring != nil { // before the data: an erasure shreds first
		add("keyring", p.keyring.Commit, p.keyring.Rollback)
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
	if p.outbox != nil { // last: with backends that share no transaction, what is owed follows what was done
		add("outbox", p.outbox.Commit, p.outbox.Rollback)
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
	// The list must still be keyed with this Controller's key, checked in
	// the transaction that writes it: a host left running through a
	// rotation must not write hashes under the old key.
	if kg, ok := p.supp.(suppression.KeyGuard); ok {
		if err := kg.RequireKey(ctx, c.hasher.Check()); err != nil {
			p.rollback(ctx)
			if errors.Is(err, suppression.ErrKeyChanged) {
				c.keyLost.Store(true)
			}
			return nil, backendError("suppression key check", err)
		}
	}
	if c.dataKeys != nil {
		if p.keyring, err = c.dataKeys.Store().Begin(ctx); err != nil {
			p.rollback(ctx)
			return nil, backendError("keyring begin", err)
		}
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
	if p.outbox, err = c.outbox.Begin(ctx); err != nil {
		p.rollback(ctx)
		return nil, backendError("outbox begin", err)
	}
	return p, nil
}

// deciding is what the decide step works with: the people a request names,
// as their profiles in the order the subjects lead to them and each profile's
// identifiers and merges (read in the request's transaction), and the
// decision the rights' steps build.
type deciding struct {
	pids  []identity.ProfileID
	nodes map[identity.ProfileID]*identity.Node
	d     journal.Decision
	// superseded names a request on the same person, received later and
	// already decided, that this one must not undo: its suppression-list part
	// is then left out.
	superseded string
}

// decider is one right's part of the decide step: it adds to s.d what the
// right changes for the people, and returns the messages it sends to
// destinations. It only reads.
type decider func(c *Controller, ctx context.Context, txs *participants, e *journal.Entry, s *deciding, now time.Time) ([]pendingSend, error)

// deciders gives each request type the decide steps of its rights, in order.
// A new right is a file with its decide and stage steps, and a line here and
// in stage.
var deciders = map[RequestType][]decider{
	SuppressOnly:               {(*Controller).decideSuppression},
	Unsuppress:                 {(*Controller).decideUnsuppression},
	SuppressWithDelete:         {(*Controller).decideSuppression, (*Controller).decideErasure},
	SuppressWithDeleteInternal: {(*Controller).decideSuppression, (*Controller).decideErasure},
	DeleteOnly:                 {(*Controller).decideErasure},
	DeleteInternal:             {(*Controller).decideErasure},
	Rectify:                    {(*Controller).decideRectification},
}

// decide works out what the request changes for the resolved subjects, by the
// steps its type's rights give. It only reads.
func (c *Controller) decide(ctx context.Context, txs *participants, e *journal.Entry, matches []identity.Match, now time.Time) (*deciding, []pendingSend, error) {
	s := &deciding{nodes: make(map[identity.ProfileID]*identity.Node, len(matches))}
	for _, m := range matches {
		if m.Profile == "" || s.nodes[m.Profile] != nil {
			continue
		}
		n, err := txs.graph.Node(ctx, m.Profile)
		if err != nil {
			return nil, nil, backendError("reading identifiers", err)
		}
		s.pids = append(s.pids, m.Profile)
		s.nodes[m.Profile] = n
	}
	var sends []pendingSend
	for _, step := range deciders[e.Type] {
		more, err := step(c, ctx, txs, e, s, now)
		if err != nil {
			return nil, nil, err
		}
		sends = append(sends, more...)
	}
	return s, sends, nil
}

// stager applies a decision to the open transactions (each right's stage
// step), then
// re-evaluates the audiences of the people whose memberships it changes, once
// every write is staged.
type stager struct {
	c       *Controller
	ctx     context.Context
	txs     *participants
	now     time.Time
	reevals []reevaluation
}

// reevaluation is a profile whose memberships a decision changes.
type reevaluation struct {
	pid identity.ProfileID
	// excluded keeps the person out of every audience; ask, instead, asks the
	// suppression list in the transaction.
	excluded, ask bool
}

// stage applies a decision to the open transactions, and re-evaluates the
// audiences of the people whose membership it changes. Every write is an
// idempotent redo, so recovery stages the same decision again.
func (c *Controller) stage(ctx context.Context, txs *participants, e *journal.Entry, d *journal.Decision, sends []pendingSend, now time.Time) error {
	// Each right's part, in this order: the suppression list first (a linked
	// identifier is blocked through its profile before the profile's deletion
	// commits), then deletions, then corrections. (Called one by one rather
	// than through a table, so that the stager stays on the stack.)
	s := stager{c: c, ctx: ctx, txs: txs, now: now}
	// The mark commits with the outbox, the last of the decision's
	// commits: Recover tells by it that every one landed, should the
	// journal not get to record it.
	if m, ok := txs.outbox.(outbox.RequestMarkingTx); ok {
		if err := m.MarkRequest(ctx, e.ID); err != nil {
			return backendError("outbox request mark", err)
		}
	}
	if err := stageSuppression(&s, d); err != nil {
		return err
	}
	if err := stageErasure(&s, d); err != nil {
		return err
	}
	if err := stageRectification(&s, d); err != nil {
		return err
	}
	changes := map[identity.ProfileID][]audience.Change{}
	for _, r := range s.reevals {
		if err := s.reevaluate(r, changes); err != nil {
			return err
		}
	}
	return s.stageOutbox(e, d, sends, changes)
}

// stageOutbox writes, in the request's transaction, what it owes the
// destinations: the deletions it forwards and the messages it sends, which
// the request awaits (each keyed by the request, so that a redo owes them
// once), and who entered or left audiences. An erased person's queued
// messages are removed first, and nothing about them follows their deletion.
func (s *stager) stageOutbox(e *journal.Entry, d *journal.Decision, sends []pendingSend, changes map[identity.ProfileID][]audience.Change) error {
	ctx, txs := s.ctx, s.txs
	for _, pid := range d.Delete {
		if _, err := txs.outbox.Purge(ctx, pid); err != nil {
			return backendError("outbox purge", err)
		}
	}
	o := owed{c: s.c}
	if e.Type.Forwards() && (len(d.Forward) > 0 || len(sends) > 0) {
		// The destinations owed are journaled with the decision: a redo by a
		// host configured without one of them still owes it, and its receipt
		// shows it until it answers.
		for _, name := range owedNames(s.c.destinations, d, sends) {
			if !slices.ContainsFunc(e.Destinations, func(o journal.Outcome) bool { return o.Name == name }) {
				e.Destinations = append(e.Destinations, journal.Outcome{Name: name, Status: Running})
			}
		}
		o.dests = make([]string, len(e.Destinations))
		for i, out := range e.Destinations {
			o.dests[i] = out.Name
		}
		for _, f := range d.Forward {
			o.deletion(destination.Deletion{RequestID: e.ID, ProfileID: f.Profile, IDs: f.IDs})
		}
		for _, snd := range sends {
			for _, m := range snd.msgs {
				if snd.routed {
					o.messageTo(snd.to, m, e.ID, e.ID+"/"+string(m.ProfileID)+"/"+m.Type)
				} else {
					o.message(m, e.ID, e.ID+"/"+string(m.ProfileID)+"/"+m.Type)
				}
			}
		}
	}
	o.dests = nil // audience changes: the destinations configured
	for _, pid := range slices.Sorted(maps.Keys(changes)) {
		if slices.Contains(d.Delete, pid) {
			continue // erased: nothing about them after their deletion
		}
		// Owed to those that hold the person: none when the profile is gone,
		// and, when its metadata cannot be read, the request fails this
		// attempt rather than tell every destination.
		version, holders := e.ProfileVersion, []string{}
		switch m, err := txs.profiles.Metadata(ctx, pid); {
		case err == nil:
			version, holders = m.Version, s.c.holders(m.Recipients, nil)
		case !errors.Is(err, profile.ErrNotFound):
			return backendError("reading profile", err)
		}
		ids, err := nodeIDs(ctx, txs.graph.Node, pid)
		if err != nil {
			return err
		}
		o.audienceChanges(pid, ids, version, e.ID, changes[pid], s.now, holders)
	}
	return o.enqueue(ctx, txs.outbox)
}

// owedNames returns the destinations a decision owes work: every one
// configured when it forwards deletions or sends to all, else those its
// sends name.
func owedNames(configured []string, d *journal.Decision, sends []pendingSend) []string {
	if len(d.Forward) > 0 {
		return configured
	}
	var out []string
	for _, snd := range sends {
		if !snd.routed {
			return configured
		}
		for _, name := range snd.to {
			if !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	return out
}

// reevaluateLater notes a profile whose memberships the decision changes.
func (s *stager) reevaluateLater(r reevaluation) { s.reevals = append(s.reevals, r) }

// reevaluate evaluates one profile's memberships in the transaction and
// stages its audience state; an erased profile has none left.
func (s *stager) reevaluate(r reevaluation, changes map[identity.ProfileID][]audience.Change) error {
	excluded := r.excluded
	if r.ask {
		// Asked whether or not any audience is defined: a list that cannot
		// answer fails the request before anything commits.
		var err error
		if excluded, err = s.txs.supp.ProfileSuppressed(s.ctx, r.pid); err != nil {
			return backendError("suppression check", err)
		}
	}
	set := s.c.set.Load()
	if set.Len() == 0 {
		return nil
	}
	p, err := s.txs.profiles.Get(s.ctx, r.pid)
	if errors.Is(err, profile.ErrNotFound) {
		return nil
	}
	if err != nil {
		return backendError("reading profile", err)
	}
	st, err := s.txs.audiences.State(s.ctx, r.pid)
	if errors.Is(err, audience.ErrNotFound) {
		st, err = &audience.State{}, nil
	}
	if err != nil {
		return backendError("reading audience state", err)
	}
	changes[r.pid] = set.EvaluateInputs(st, audience.Inputs{Traits: p.Traits, Consent: p.Metadata.Consent}, s.now, excluded)
	return backendError("audience put", s.txs.audiences.Put(s.ctx, r.pid, st))
}

// commitAttempts bounds the tries per participant commit before the request is
// left to Recover.
const commitAttempts = 3

// commitDecision commits every participant of a decided request. The caller's
// context no longer counts: after the decision the request must complete. A
// failed Commit leaves its transaction finished, so a retry makes the
// decision again, as Recover does, on the person as they are now (the
// failed commit let go of their cross-process locks, and another process
// may have merged them meanwhile; one whose mark shows it landed is redone
// as decided), journals it, stages it in new transactions (every write is
// an idempotent redo) and commits those, with backoff. What is still
// failing after the last attempt is left to Recover. It records the
// backends' outcomes.
func (c *Controller) commitDecision(ctx context.Context, cl *claim, txs *participants, e *journal.Entry, d *journal.Decision) error {
	ctx = context.WithoutCancel(ctx)
	var err error
	// Each redo's scope is closed before the next begins (and at the end):
	// one left open would keep its shared transaction and the person's
	// cross-process locks, and the next redo would wait for them for ever.
	closeAttempt := func() {}
	defer func() { closeAttempt() }()
	for attempt := 1; ; attempt++ {
		// Only transactions staged whole are committed: a redo that failed
		// to lock, begin or stage is rolled back and tried again (its
		// half-staged writes committed would have been taken for the
		// decision's).
		if txs != nil {
			if err = c.commitAll(ctx, txs, e); err == nil {
				if e.Committed.IsZero() {
					e.Committed = c.now()
				}
				return nil
			}
			txs.rollback(ctx)
			txs = nil
		}
		if attempt == commitAttempts {
			break
		}
		time.Sleep(time.Duration(attempt) * 10 * time.Millisecond)
		// The failed attempt's shared transaction (and the cross-process locks
		// it held) is gone: a new scope, the locks again, then the redo.
		closeAttempt()
		sctx, closeScope := c.openScope(ctx)
		closeAttempt = closeScope
		matches, lerr := c.lockDecision(sctx, e, d)
		if lerr != nil {
			err = lerr
			continue
		}
		// Under the person's locks again: should another instance have taken
		// the request over meanwhile, it redoes the decision itself, after
		// these locks; this one must not write anything more.
		if err = c.stillHeld(sctx, cl, e); err != nil {
			break
		}
		// A commit reported failed may have landed (its mark says so); one
		// that did not left the person free meanwhile, for another process
		// to merge: the decision is made again on the person as they are
		// now, as Recover makes it, and journaled before it commits.
		if err = c.readCommitMark(sctx, e); err != nil {
			continue
		}
		next, berr := c.begin(sctx)
		if berr != nil {
			err = berr
			continue
		}
		now := c.now()
		nd, sends, rerr := c.redecide(sctx, next, e, matches, now)
		if rerr == nil {
			e.Decision, *d = nd, nd
			rerr = c.stage(sctx, next, e, d, sends, now)
		}
		if rerr == nil {
			rerr = c.record(ctx, cl, e)
		}
		if err = rerr; err != nil {
			next.rollback(sctx)
			continue
		}
		txs = next
	}
	if perr := c.record(ctx, cl, e); perr != nil {
		err = errors.Join(err, perr)
	}
	return fmt.Errorf("privacy: request %s is decided but not fully committed; Recover completes it: %w", e.ID, err)
}

// lockDecision takes, in the scope of ctx, the cross-process locks of what a
// decided request touches, and returns what its identifiers lead to now:
// its subjects, the identifiers its decision forwards, and every profile
// its decision names. (The caller holds the in-process locks.)
func (c *Controller) lockDecision(ctx context.Context, e *journal.Entry, d *journal.Decision) ([]identity.Match, error) {
	ids := decisionIDs(e, d)
	matches, err := identity.LookupAll(ctx, c.graph, ids, nil)
	if err != nil {
		return nil, backendError("identity lookup", err)
	}
	if err := c.lockRemote(ctx, matches, decisionProfiles(d)); err != nil {
		return nil, err
	}
	// Looked up again through the locked transaction: the first look may
	// predate a merge the locks waited for.
	if matches, err = identity.LookupAll(ctx, c.graph, ids, matches[:0]); err != nil {
		return nil, backendError("identity lookup", err)
	}
	if err := c.lockRemote(ctx, matches, nil); err != nil {
		return nil, err
	}
	return matches, nil
}

// decisionIDs lists the identifiers a decided request is about: its
// subjects and those its decision forwards.
func decisionIDs(e *journal.Entry, d *journal.Decision) []identity.ID {
	ids := slices.Clone(e.Subjects)
	for _, f := range d.Forward {
		ids = append(ids, f.IDs...)
	}
	return ids
}

// commitAll commits the participants in order, recording each outcome, and
// stops at the first failure.
func (c *Controller) commitAll(ctx context.Context, txs *participants, e *journal.Entry) error {
	e.Backends = e.Backends[:0]
	for _, p := range txs.all() {
		o := journal.Outcome{Name: p.name, Status: Finished}
		err := p.commit(ctx)
		o.Finished = c.now() // when it committed: with a shared transaction, the last one's says when all did
		if err != nil {
			err = backendError(p.name+" commit", err)
			o.Status, o.Err, o.Finished = Running, c.redact(e, describe(err), nil), time.Time{}
		}
		e.Backends = append(e.Backends, o)
		if err != nil {
			return err
		}
	}
	return nil
}

// fail records that a request failed before its decision: nothing changed.
// Only once that is recorded is the caller told FAILED (or INVALID): a
// request whose failure could not be recorded may still be completed by
// Recover, so its receipt says RUNNING.
func (c *Controller) fail(ctx context.Context, cl *claim, e *journal.Entry, err error) (*Receipt, error) {
	defer c.inflight.Delete(e.ID)
	f := e.Clone()
	f.Status, f.Reason, f.Finished = Failed, c.redact(e, describe(err), nil), c.now()
	if errors.Is(err, ErrInvalid) {
		f.Status = Invalid
	}
	f.Scrub()
	if rerr := c.end(context.WithoutCancel(ctx), cl, e, f, "failed"); rerr != nil {
		return c.undecided(e, err, rerr)
	}
	return receiptOf(f), err
}

// pendingSend is a message a request sends to every destination, tracked in
// its receipt.
type pendingSend struct {
	msgs []destination.Message
	// to, when routed, names the destinations owed the messages; else
	// every destination is.
	to     []string
	routed bool
}

// deliverDecision finishes a committed request, or, when it owes
// destinations work (written with its commit), records which ones and awaits
// their answers. A request recovered keeps the destinations it owed before,
// configured here or not: one removed from the configuration stays RUNNING in
// the receipt until it answers.
func (c *Controller) deliverDecision(ctx context.Context, cl *claim, e *journal.Entry, sends bool) {
	if !c.purgeShredded(ctx, cl, e) {
		c.inflight.Delete(e.ID)
		return
	}
	owes := e.Type.Forwards() && (len(e.Decision.Forward) > 0 || sends) && (len(c.destinations) > 0 || len(e.Destinations) > 0)
	// What the outbox holds for the request counts too: a destination that
	// is owed work since the commit, though a crash before its outcome was
	// journaled and a restart without it in the configuration left it out
	// of the entry, keeps the request running.
	var owed []string
	if items, err := c.outbox.Outcomes(context.WithoutCancel(ctx), e.ID); err != nil {
		c.log.WarnContext(ctx, "reading a request's delivery outcomes failed; it awaits them", "request", e.ID, "err", describe(err))
		owes = owes || e.Type.Forwards()
	} else {
		for _, it := range items {
			if !slices.Contains(owed, it.Destination) {
				owed = append(owed, it.Destination)
			}
		}
	}
	if !owes && len(owed) == 0 {
		c.finish(ctx, cl, e)
		return
	}
	c.deliver.Wake() // what the commit owes goes out now, not at the next poll
	names := slices.Clone(owed)
	if owes {
		names = append(names, c.destinations...)
	}
	for _, name := range names {
		if !slices.ContainsFunc(e.Destinations, func(o journal.Outcome) bool { return o.Name == name }) {
			e.Destinations = append(e.Destinations, journal.Outcome{Name: name, Status: Running})
		}
	}
	if err := c.record(context.WithoutCancel(ctx), cl, e); errors.Is(err, errClaimLost) || errors.Is(err, errOutcomeMoved) {
		c.inflight.Delete(e.ID)
		return // the request is another instance's now: it awaits the answers
	}
	a := &awaited{cl: cl, e: e.Clone()}
	c.awaiting.Store(e.ID, a)
	c.checkRequest(context.WithoutCancel(ctx), e.ID)
	a.mu.Lock()
	if a.e.Status.Ended() { // every destination had answered already
		*e = *a.e
	}
	a.mu.Unlock()
}

// awaited is a request this Controller holds that waits for its
// destinations' answers.
type awaited struct {
	mu sync.Mutex
	cl *claim
	e  *journal.Entry
}

// checkRequest records what the destinations answered for an awaited
// request, from the outbox, and finishes it once every destination it owed
// work answered.
func (c *Controller) checkRequest(ctx context.Context, id string) {
	v, ok := c.awaiting.Load(id)
	if !ok {
		return
	}
	a := v.(*awaited)
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, still := c.awaiting.Load(id); !still {
		return
	}
	items, err := c.outbox.Outcomes(ctx, id)
	if err != nil {
		c.log.WarnContext(ctx, "reading a request's delivery outcomes failed; it is checked again", "request", id, "err", describe(err))
		return
	}
	changed, answered := false, true
	for i := range a.e.Destinations {
		o := &a.e.Destinations[i]
		st, why := outcomeOf(items, o.Name)
		if st == Running {
			answered = false
		}
		if st != o.Status {
			o.Status, o.Err, changed = st, why, true // scrubbed by the deliverer (scrubDelivery)
			if st != Running {
				o.Finished = c.now()
			}
		}
	}
	if answered {
		// Forgotten once finished, not before: Flush, which checks every
		// request awaiting, waits for this one until then.
		defer c.awaiting.Delete(id)
		c.finish(ctx, a.cl, a.e)
		if a.e.Status.Ended() {
			if err := c.outbox.Forget(ctx, id); err != nil {
				c.log.WarnContext(ctx, "forgetting a finished request's delivery outcomes failed", "request", id, "err", describe(err))
			}
		}
		return
	}
	if changed {
		if err := c.record(ctx, a.cl, a.e); errors.Is(err, errClaimLost) || errors.Is(err, errOutcomeMoved) {
			c.awaiting.Delete(id)
			c.inflight.Delete(id) // another instance awaits it now
		}
	}
}

// outcomeOf is a destination's outcome of a request, from the request's
// items: RUNNING while one is pending, FAILED when one was given up on,
// NOT_SUPPORTED when one cannot be done, FINISHED when all were delivered
// (or none was owed), with the error of the item that decided it.
func outcomeOf(items []outbox.Item, dest string) (Status, string) {
	st, why := Finished, ""
	for _, it := range items {
		if it.Destination != dest {
			continue
		}
		switch {
		case it.State == outbox.Pending:
			return Running, ""
		case it.State == outbox.Dead:
			st, why = Failed, it.LastError
		case it.State == outbox.NotSupported && st != Failed:
			st, why = NotSupported, it.LastError
		}
	}
	return st, why
}

// checkAwaiting checks every request awaiting its destinations.
func (c *Controller) checkAwaiting(ctx context.Context) {
	c.awaiting.Range(func(k, _ any) bool {
		c.checkRequest(ctx, k.(string))
		return true
	})
}

// finish completes a request: the overall status follows Segment's rules, the
// clear personal data is scrubbed, the receipt is journaled.
// A request whose audit records the log cannot take stays RUNNING, owing them:
// Recover completes it again (idempotently), and appends them first.
func (c *Controller) finish(ctx context.Context, cl *claim, e *journal.Entry) {
	defer c.inflight.Delete(e.ID)
	ctx = context.WithoutCancel(ctx)
	f := e.Clone()
	f.Status = overall(f)
	f.Finished = c.now()
	f.Scrub()
	if err := c.end(ctx, cl, e, f, "finished"); err != nil {
		// The entry stays RUNNING; Recover completes it (idempotently), and
		// appends the audit records it owes first.
		c.log.ErrorContext(ctx, "recording a finished request failed; it stays RUNNING", "request", e.ID, "err", describe(err))
		return
	}
	*e = *f
}

// overall is Segment's rule: FINISHED when every destination finished,
// FAILED when every destination failed or one cannot delete (NOT_SUPPORTED:
// Segment "returns a FAILED status because of a failure on an unsupported
// destination, even if the deletion from the Segment Internal Systems and
// supported destinations were completed successfully"), PARTIAL_SUCCESS in
// between. The per-destination outcomes say which.
func overall(e *journal.Entry) Status {
	failed := 0
	for _, o := range e.Destinations {
		switch o.Status {
		case NotSupported:
			return Failed
		case Failed:
			failed++
		}
	}
	switch {
	case failed == 0:
		return Finished
	case failed == len(e.Destinations):
		return Failed
	}
	return PartialSuccess
}
