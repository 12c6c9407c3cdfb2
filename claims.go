package privacy

// Claims: which Controller works on a request. The instance that receives a
// request claims it in the journal for a lease, which it renews while it
// works; only a lapsed claim, or one of the same instance (a restart: one
// instance never runs twice), is taken over, by Recover. Every journal write
// of a request is a compare-and-swap on the entry's Version, so a former
// holder's writes are refused once another took the request over, and a
// concurrent Extend or lease renewal is merged, never lost.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gdprkit/privacy/journal"
)

// DefaultLease is how long a claim on a request lasts unless its holder
// renews it (WithLease).
const DefaultLease = 30 * time.Second

var (
	// errClaimLost: another instance took the request over; this one must
	// not write it again.
	errClaimLost = errors.New("privacy: another instance took the request over")
	// errOutcomeMoved: the journal holds a later state of the request than
	// this Controller knew it wrote (a write reported failed had landed).
	errOutcomeMoved = errors.New("privacy: the journal holds a later state of the request than this instance wrote")
)

// recordAttempts bounds how often record merges a concurrent writer's change
// and writes again.
const recordAttempts = 10

// claim is this Controller's hold on a request in flight: the claim's token,
// and what it last wrote of the request's state, for record to tell another
// writer's change from a takeover.
type claim struct {
	mu      sync.Mutex // serialises this Controller's writes of the entry
	token   uint64
	status  journal.Status
	decided bool
	// renewing is set while a renewal of the claim is under way: one at a
	// time.
	renewing atomic.Bool
}

// claimNew makes e, a request not yet journaled, this Controller's, and
// marks it in flight.
func (c *Controller) claimNew(e *journal.Entry) *claim {
	e.Owner, e.Claim, e.LeaseUntil = c.instance, 1, c.leaseEnd()
	cl := &claim{token: 1, status: e.Status}
	c.inflight.Store(e.ID, cl)
	return cl
}

// leaseEnd is when a claim written now lapses.
func (c *Controller) leaseEnd() time.Time { return c.now().Add(c.lease) }

// record writes e, a request this Controller holds, to the journal, renewing
// the lease. When another writer came first, it reads the entry again: if
// that writer changed only what is not the holder's (the deadline, by
// Extend; the lease, by a renewal), record takes those changes into e and
// writes again; if another instance took the request over, it fails with
// errClaimLost; if the entry's state is not what this Controller last wrote
// (a write reported failed had landed), with errOutcomeMoved. Either way it
// writes nothing over the newer state.
func (c *Controller) record(ctx context.Context, cl *claim, e *journal.Entry) error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for attempt := 1; ; attempt++ {
		e.LeaseUntil = c.leaseEnd()
		err := c.journal.Put(ctx, e)
		if err == nil {
			cl.status, cl.decided = e.Status, e.Decided
			return nil
		}
		if !errors.Is(err, journal.ErrConflict) || attempt == recordAttempts {
			return backendError("journal", err)
		}
		fresh, gerr := c.journal.Get(ctx, e.ID)
		switch {
		case gerr != nil:
			return backendError("journal", gerr)
		case fresh.Owner != e.Owner || fresh.Claim != e.Claim:
			return errClaimLost
		case fresh.Status != cl.status || fresh.Decided != cl.decided:
			return errOutcomeMoved
		}
		e.Version, e.Due, e.ExtensionReason = fresh.Version, fresh.Due, fresh.ExtensionReason
	}
}

// takeOver claims e, as Recover read it, for this Controller when it may:
// nobody holds it, its holder's lease lapsed, or the holder is this instance
// (a restart). It reports false, having written nothing, when the request is
// in flight here, another instance holds a live claim, or another writer
// changed the entry since it was read.
func (c *Controller) takeOver(ctx context.Context, e *journal.Entry) (*claim, bool, error) {
	if e.Owner != "" && e.Owner != c.instance && !c.now().After(e.LeaseUntil) {
		return nil, false, nil
	}
	cl := &claim{token: e.Claim + 1, status: e.Status, decided: e.Decided}
	if _, busy := c.inflight.LoadOrStore(e.ID, cl); busy {
		return nil, false, nil
	}
	e.Owner, e.Claim, e.LeaseUntil = c.instance, cl.token, c.leaseEnd()
	c.owe(e, "recovering")
	if err := c.journal.Put(ctx, e); err != nil {
		c.inflight.Delete(e.ID)
		if errors.Is(err, journal.ErrConflict) {
			return nil, false, nil
		}
		return nil, false, backendError("journal", err)
	}
	return cl, true, nil
}

// keepClaims renews, every third of the lease, the claims of the requests in
// flight here, until Close: a request waiting long for its destinations keeps
// its claim. Each claim is renewed on its own, with a deadline of a third of
// the lease that Close cancels, so a slow or stuck journal call holds up
// neither the other renewals nor Close.
func (c *Controller) keepClaims() {
	defer c.claimsDone.Done()
	period := max(c.lease/3, time.Millisecond)
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-c.stopClaims:
			return
		case <-tick.C:
		}
		func() {
			ctx, cancel := context.WithTimeout(c.closing, period)
			defer cancel()
			c.watchKey(ctx)
		}()
		c.inflight.Range(func(k, v any) bool {
			id, cl := k.(string), v.(*claim)
			if !cl.renewing.CompareAndSwap(false, true) {
				return true // the last renewal of it is still under way
			}
			go func() {
				defer cl.renewing.Store(false)
				ctx, cancel := context.WithTimeout(c.closing, period)
				defer cancel()
				c.renew(ctx, id, cl)
			}()
			return true
		})
	}
}

// renew moves the lease of a claim this Controller holds on, by a
// compare-and-swap of its own: it never waits for the holder's writes (which
// renew the lease too), and they never wait for it. A failure is harmless:
// the next write of the request, or the next tick, renews it.
func (c *Controller) renew(ctx context.Context, id string, cl *claim) {
	fresh, err := c.journal.Get(ctx, id)
	if err != nil || fresh.Owner != c.instance || fresh.Claim != cl.token || fresh.Status.Ended() {
		return
	}
	fresh.LeaseUntil = c.leaseEnd()
	if err := c.journal.Put(ctx, fresh); err != nil && !errors.Is(err, journal.ErrConflict) {
		c.log.WarnContext(ctx, "renewing a request's claim failed", "request", id, "err", describe(err))
	}
}

// undecided is the receipt and error of a request whose failure could not be
// recorded: the journal may still show it running (or decided), so Recover
// may yet complete it, and the caller must not be told it failed.
func (c *Controller) undecided(e *journal.Entry, cause, recordErr error) (*Receipt, error) {
	r := receiptOf(e)
	r.Status, r.Finished = Running, time.Time{}
	if errors.Is(cause, recordErr) { // the cause is why it could not be recorded
		return r, fmt.Errorf("privacy: request %s: %w; its outcome could not be recorded, so it may still complete: Status tells", e.ID, cause)
	}
	return r, fmt.Errorf("privacy: request %s: %w; its outcome could not be recorded (%w), so it may still complete: Status tells", e.ID, cause, recordErr)
}

// stillHeld fails with errClaimLost when another instance took the request
// over since this Controller claimed it.
func (c *Controller) stillHeld(ctx context.Context, cl *claim, e *journal.Entry) error {
	fresh, err := c.journal.Get(ctx, e.ID)
	if err != nil {
		return backendError("journal", err)
	}
	if fresh.Owner != c.instance || fresh.Claim != cl.token {
		return errClaimLost
	}
	return nil
}
