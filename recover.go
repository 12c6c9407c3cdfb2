package privacy

// Recovery: completing, after a crash, the requests the journal shows
// unfinished.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/outbox"
)

// Recover completes the requests the journal shows unfinished that nobody
// else is working on, as after a crash: those no instance claims, those whose
// claim's lease lapsed (their holder stopped), and those this instance
// claimed before it restarted (WithInstance). Another instance's live
// requests are left to it. A decided request is committed again (every write
// is an idempotent redo) and its destinations are told; an undecided one is
// presumed aborted and run again from the lock step. It returns how many
// requests it completed.
func (c *Controller) Recover(ctx context.Context) (int, error) {
	return c.recover(ctx, true)
}

// recover is Recover; with retention false it leaves the retention runs to
// Run's retention round, so that a long run does not hold up the others.
// The runs come last either way, and a host whose profile store cannot
// prune leaves them to another.
func (c *Controller) recover(ctx context.Context, retention bool) (int, error) {
	if err := c.checkOpen(); err != nil {
		return 0, err
	}
	es, err := c.journal.Unfinished(ctx)
	if err != nil {
		return 0, backendError("journal", err)
	}
	var runs []*journal.Entry
	es = slices.DeleteFunc(es, func(e *journal.Entry) bool {
		if e.Type == Retention {
			runs = append(runs, e)
			return true
		}
		return false
	})
	if retention && len(runs) > 0 && c.checkPruner(ctx) == nil {
		es = append(es, runs...)
	}
	n := 0
	var errs []error
	for _, e := range es {
		cl, ok, err := c.takeOver(ctx, e)
		if err == nil && ok {
			err = c.recoverOne(ctx, cl, e)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("request %s: %w", e.ID, err))
			continue
		}
		if ok {
			n++
		}
	}
	return n, errors.Join(errs...)
}

// recoverOne completes a request Recover took over.
func (c *Controller) recoverOne(ctx context.Context, cl *claim, e *journal.Entry) error {
	if err := c.liftEntry(e); err != nil {
		c.inflight.Delete(e.ID)
		return err
	}
	if at, ok := endOwed(e); ok {
		return c.completeEnd(ctx, cl, e, at) // its holder decided how it ends
	}
	c.settleSoon(ctx, e)
	if e.Type == Retention {
		return c.resumeRetention(ctx, cl, e)
	}
	if e.Type == Access {
		return c.failInterruptedAccess(ctx, cl, e)
	}
	if !e.Decided {
		_, err := c.execute(ctx, cl, e) // presumed aborted: run it again
		return err
	}
	// Lock the person as they are now: what the subjects, and the identifiers
	// the decision forwards, lead to, and every profile the decision touches.
	outer := ctx
	var (
		matches    []identity.Match
		held       lockSet
		err        error
		closeScope func()
	)
	// A person who moved while being locked is locked again in a new scope,
	// as every other operation does (errRestart: nothing was written yet).
	for attempt := 1; ; attempt++ {
		ctx, closeScope = c.openScope(outer)
		matches, held, err = c.lockMatchesAnd(ctx, decisionIDs(e, &e.Decision), nil, decisionProfiles(&e.Decision))
		if !errors.Is(err, errRestart) || attempt == retryAttempts || outer.Err() != nil {
			break
		}
		closeScope()
		pause(outer, attempt)
	}
	defer closeScope()
	if err != nil {
		c.inflight.Delete(e.ID)
		return err
	}
	unlock := sync.OnceFunc(func() { c.locks.unlock(&held) })
	defer unlock()
	// Read under the locks: a holder whose lease lapsed may still be
	// committing, and its commit, with its mark, lands before the locks
	// are had.
	if err := c.readCommitMark(ctx, e); err != nil {
		c.inflight.Delete(e.ID)
		return err
	}
	txs, err := c.begin(ctx)
	if err != nil {
		c.inflight.Delete(e.ID)
		return err
	}
	defer txs.rollback(ctx)
	now := c.now()
	d, sends, err := c.redecide(ctx, txs, e, matches, now)
	if err != nil {
		c.inflight.Delete(e.ID)
		return err
	}
	// The decision as redone is recorded before it commits, as the first one
	// was: a crash now recovers from it.
	e.Decision = d
	err = c.stage(ctx, txs, e, &d, sends, now)
	if err == nil {
		err = c.record(ctx, cl, e)
	}
	if err == nil {
		err = c.commitDecision(ctx, cl, txs, e, &d)
	}
	if err != nil {
		c.inflight.Delete(e.ID)
		return err
	}
	// What the request owes the destinations was written with its first
	// commit; staged again, it is owed once (each item keyed by the
	// request), and a destination configured since is owed a forwarded
	// deletion too (a rectification goes to the person's recipients only).
	// The request awaits every destination it owed, configured here or not.
	c.recordCommitted(outer, cl, e)
	closeScope() // committed: the locks go, as in executeOnce
	unlock()
	c.deliverDecision(outer, cl, e, len(sends) > 0)
	return nil
}

// redecide brings a recorded decision to the person as they are now, for
// Recover. Erasure and objection decide again on what the subjects lead to
// now (a merge since the decision moved the person to another profile) and
// keep everything recorded; unless a request of the other kind on the same
// person, received later, was decided meanwhile: then the suppression list is
// left as that one left it. A rectification is made again on the profile as
// it is now (redoRectification).
func (c *Controller) redecide(ctx context.Context, txs *participants, e *journal.Entry, matches []identity.Match, now time.Time) (journal.Decision, []pendingSend, error) {
	if e.Type == Rectify {
		rs, told, err := c.redoRectification(ctx, txs, e, matches, now)
		if err != nil {
			return journal.Decision{}, nil, err
		}
		d := e.Decision
		d.Rectify = rs
		return d, c.rectifySends(e, told, rs), nil
	}
	committed := allCommitted(e)
	hashes := slices.Clone(e.SubjectHashes)
	s, _, err := c.decide(ctx, txs, e, matches, now)
	if err != nil {
		return journal.Decision{}, nil, err
	}
	d := unionDecisions(e.Decision, s.d)
	if committed {
		// Every backend committed the decision (what is left is the purge,
		// or the destinations): what the subjects lead to now came after
		// it, a person collected anew, and is no part of this request,
		// nor are their identifiers (decideErasure adds those it erases).
		d, e.SubjectHashes = e.Decision, hashes
	}
	if s.superseded != "" {
		d.Suppress, d.Unsuppress, d.SuppressProfiles, d.UnsuppressProfiles = nil, nil, nil, nil
	}
	return d, nil, nil
}

// unionDecisions is what either decision changes.
func unionDecisions(a, b journal.Decision) journal.Decision {
	d := journal.Decision{
		Delete:             unionOf(a.Delete, b.Delete),
		Suppress:           unionOf(a.Suppress, b.Suppress),
		Unsuppress:         unionOf(a.Unsuppress, b.Unsuppress),
		SuppressProfiles:   unionOf(a.SuppressProfiles, b.SuppressProfiles),
		UnsuppressProfiles: unionOf(a.UnsuppressProfiles, b.UnsuppressProfiles),
		Rectify:            a.Rectify,
	}
	forward := map[identity.ProfileID]int{}
	for _, f := range slices.Concat(a.Forward, b.Forward) {
		i, ok := forward[f.Profile]
		if !ok {
			forward[f.Profile] = len(d.Forward)
			d.Forward = append(d.Forward, journal.Deletion{Profile: f.Profile, IDs: slices.Clone(f.IDs)})
			continue
		}
		d.Forward[i].IDs = unionOf(d.Forward[i].IDs, f.IDs)
	}
	return d
}

// unionOf returns the elements of a, then those of b not in a, once each.
func unionOf[T comparable](a, b []T) []T {
	seen := make(map[T]bool, len(a)+len(b))
	var out []T
	for _, x := range slices.Concat(a, b) {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// decisionProfiles lists every profile a decision touches: what a redo locks.
func decisionProfiles(d *journal.Decision) []identity.ProfileID {
	var pids []identity.ProfileID
	pids = append(pids, d.Delete...)
	pids = append(pids, d.SuppressProfiles...)
	pids = append(pids, d.UnsuppressProfiles...)
	for _, r := range d.Rectify {
		pids = append(pids, r.Profile)
	}
	return pids
}

// readCommitMark sets e.Committed when the journal does not show the
// decision's commit but the outbox marked the request in its transaction,
// the last of the decision's (outbox.RequestMarks): the process died, or
// the journal failed, between the commits and the journal's record. The time is the recovery's; the commit's is not known. Without
// the mark, Recover would decide the request again on the person as they are
// now: erase a person collected anew since, or correct again a trait changed
// since.
func (c *Controller) readCommitMark(ctx context.Context, e *journal.Entry) error {
	m, ok := c.outbox.(outbox.RequestMarks)
	if !ok || !e.Committed.IsZero() {
		return nil
	}
	marked, err := m.RequestMarked(ctx, e.ID)
	if err != nil {
		return backendError("outbox request marks", err)
	}
	if marked {
		e.Committed = c.now()
	}
	return nil
}

// checkMarks refuses an outbox that reads request marks whose transactions
// do not write them: a decorator of one that forwards Begin but not
// MarkRequest. Recover would find no mark, and decide again a request that
// committed.
func checkMarks(ctx context.Context, o outbox.Store) error {
	if _, ok := o.(outbox.RequestMarks); !ok {
		return nil
	}
	tx, err := o.Begin(ctx)
	if err != nil {
		return backendError("outbox begin", err)
	}
	_, marks := tx.(outbox.RequestMarkingTx)
	if err := tx.Rollback(ctx); err != nil {
		return backendError("outbox rollback", err)
	}
	if !marks {
		return fmt.Errorf("%w: the outbox (%T) reads request marks (RequestMarked), and its transactions (%T) do not write them: "+
			"a decorator of a marking outbox must forward MarkRequest", ErrInvalid, o, tx)
	}
	return nil
}

// allCommitted reports whether the entry records that every backend
// committed its decision once (Committed is never reset: a redo's failed
// commit rewrites Backends, not the fact).
func allCommitted(e *journal.Entry) bool { return !e.Committed.IsZero() }
