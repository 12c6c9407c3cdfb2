package privacy

// Recovery: completing, after a crash, the requests the journal shows
// unfinished.

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
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
	if err := c.checkOpen(); err != nil {
		return 0, err
	}
	es, err := c.journal.Unfinished(ctx)
	if err != nil {
		return 0, backendError("journal", err)
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
	c.audit(ctx, e, "recovering")
	if e.Type == Access {
		return c.failInterruptedAccess(ctx, cl, e)
	}
	if !e.Decided {
		_, err := c.execute(ctx, cl, e) // presumed aborted: run it again
		return err
	}
	// Lock the subjects and every profile the decision touches.
	ctx, closeScope := c.openScope(ctx)
	defer closeScope()
	_, held, err := c.lockMatchesAnd(ctx, slices.Clone(e.Subjects), nil, decisionProfiles(&e.Decision))
	if err != nil {
		c.inflight.Delete(e.ID)
		return err
	}
	d := e.Decision
	d.Rectify = c.redoableRectifications(ctx, d.Rectify)
	txs, err := c.begin(ctx)
	if err != nil {
		c.locks.unlock(&held)
		c.inflight.Delete(e.ID)
		return err
	}
	defer txs.rollback(ctx)
	now := c.now()
	changes, err := c.stage(ctx, txs, &d, now)
	if err == nil {
		err = c.commitDecision(ctx, cl, txs, e, &d)
	}
	if err != nil {
		c.locks.unlock(&held)
		c.inflight.Delete(e.ID)
		return err
	}
	c.deliverAudienceChanges(ctx, e, changes, now)
	// Destinations are told again, all of them: at least once, and they
	// de-duplicate on the request id. A rectification already in effect sends
	// nothing.
	e.Destinations = nil
	c.deliverDecision(ctx, cl, e, c.rectifySends(e.ID, e.Traits, d.Rectify))
	c.locks.unlock(&held)
	return nil
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
