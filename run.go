package privacy

// The background work a host runs beside the Controller (Run): recovering
// what crashes left unfinished and taking over the requests of hosts that
// stopped, refreshing audiences as time moves their windows, and reporting
// requests past their due date.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gdprkit/privacy/journal"
)

// Schedule sets how often Run does each of its tasks. A zero field keeps its
// default.
type Schedule struct {
	// Recover is how often Run recovers what is unfinished and takes over
	// lapsed claims (default: half the lease, so another host's requests wait
	// at most a lease and a half).
	Recover time.Duration
	// Refresh is how often it refreshes audiences (default one minute).
	Refresh time.Duration
	// Overdue is how often it reports requests past their due date (default
	// one hour).
	Overdue time.Duration
	// Retention is how often it applies the retention policy, when there
	// is one (WithRetention; default DefaultRetentionPeriod).
	Retention time.Duration
}

// DefaultRefresh and DefaultOverdue are Schedule's defaults.
const (
	DefaultRefresh = time.Minute
	DefaultOverdue = time.Hour
)

// WithSchedule sets how often Run does its tasks.
func WithSchedule(s Schedule) Option {
	return func(c *config) error {
		if s.Recover < 0 || s.Refresh < 0 || s.Overdue < 0 || s.Retention < 0 {
			return errors.New("WithSchedule: negative period")
		}
		c.schedule = s
		return nil
	}
}

// withDefaults fills in the periods not set.
func (s Schedule) withDefaults(lease time.Duration) Schedule {
	if s.Recover == 0 {
		s.Recover = max(lease/2, time.Millisecond)
	}
	if s.Refresh == 0 {
		s.Refresh = DefaultRefresh
	}
	if s.Overdue == 0 {
		s.Overdue = DefaultOverdue
	}
	if s.Retention == 0 {
		s.Retention = DefaultRetentionPeriod
	}
	return s
}

// Run does the work a host runs in the background, until ctx ends (then it
// returns nil) or the Controller is closed (ErrClosed): at once, and then on
// the Schedule, it recovers what a crash left unfinished and takes over the
// requests of hosts that stopped (Recover); it refreshes audiences as time
// moves their windows (Refresh); it reports, in the log, requests past
// their due date (Overdue); and, in a goroutine of its own so that a long
// run holds up none of these, it finishes a retention run that stopped or
// applies the retention policy, if there is one (ApplyRetention), unless
// another instance's run is under way; Run returns once that round has
// stopped. Errors of a round are logged and the round is tried again at the
// next tick: a backend that is down does not stop Run.
//
// A host starts Run beside its intake and, to shut down, stops its intake,
// cancels Run's context, waits for Flush (or its own deadline), then calls
// Close.
func (c *Controller) Run(ctx context.Context) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	s := c.schedule
	c.runRecover(ctx)
	c.runOverdue(ctx)
	// Retention runs beside the other tasks, one round at a time: a run
	// can take long, and must not hold up recovery.
	var retaining sync.WaitGroup
	defer retaining.Wait()
	rctx, stopRetaining := context.WithCancel(ctx) // ended when Run returns, on Close too
	defer stopRetaining()
	var busy atomic.Bool
	retain := func() {
		if !busy.CompareAndSwap(false, true) {
			return // the last round is still under way
		}
		retaining.Add(1)
		go func() {
			defer retaining.Done()
			defer busy.Store(false)
			c.runRetention(rctx)
		}()
	}
	retain()
	recoverTick, refreshTick, overdueTick := time.NewTicker(s.Recover), time.NewTicker(s.Refresh), time.NewTicker(s.Overdue)
	retentionTick := time.NewTicker(s.Retention)
	defer recoverTick.Stop()
	defer refreshTick.Stop()
	defer overdueTick.Stop()
	defer retentionTick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.stopClaims:
			return ErrClosed
		case <-recoverTick.C:
			c.runRecover(ctx)
		case <-refreshTick.C:
			if _, err := c.Refresh(ctx); err != nil && ctx.Err() == nil {
				c.log.ErrorContext(ctx, "refreshing audiences failed; Run tries again", "err", describe(err))
			}
		case <-overdueTick.C:
			c.runOverdue(ctx)
		case <-retentionTick.C:
			retain()
		}
	}
}

// runRecover is Run's recovery round.
func (c *Controller) runRecover(ctx context.Context) {
	if n, err := c.recover(ctx, false); err != nil && ctx.Err() == nil {
		c.log.ErrorContext(ctx, "recovering requests failed; Run tries again", "recovered", n, "err", describe(err))
	} else if n > 0 {
		c.log.InfoContext(ctx, "requests recovered", "recovered", n)
	}
	// What an erasure listed to purge and no request purges any more (a
	// listing is made only with the key's destruction: purging it is
	// always safe).
	if c.purger != nil {
		if n, err := c.purger.Purge(ctx, nil); err != nil && ctx.Err() == nil {
			c.log.ErrorContext(ctx, "purging erased people's rows failed; Run tries again", "err", describe(err))
		} else if n > 0 {
			c.log.InfoContext(ctx, "erased people's rows purged", "rows", n)
		}
	}
}

// runOverdue is Run's report of the requests past their due date.
func (c *Controller) runOverdue(ctx context.Context) {
	late, err := c.Overdue(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.log.ErrorContext(ctx, "listing overdue requests failed", "err", describe(err))
		}
		return
	}
	for _, r := range late {
		c.log.WarnContext(ctx, "request past its due date (Art. 12(3))", "request", r.ID, "type", string(r.Type),
			"status", string(r.Status), "due", r.Due.Format(time.RFC3339), "late", fmt.Sprint(c.now().Sub(r.Due).Round(time.Minute)))
	}
}

// runRetention is Run's retention round: it finishes a run that stopped
// (Recover leaves them to it), or else, with a policy and no run
// unfinished (another instance's), starts one.
func (c *Controller) runRetention(ctx context.Context) {
	es, err := c.journal.Unfinished(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.log.ErrorContext(ctx, "listing unfinished requests before retention failed; Run tries again", "err", describe(err))
		}
		return
	}
	unfinished := false
	for _, e := range es {
		if e.Type != Retention {
			continue
		}
		unfinished = true
		if c.checkPruner(ctx) != nil {
			return // another instance's to finish
		}
		cl, ok, err := c.takeOver(ctx, e)
		if err == nil && ok {
			err = c.recoverOne(ctx, cl, e)
		}
		if err != nil && ctx.Err() == nil {
			c.log.ErrorContext(ctx, "finishing a stopped retention run failed; Run tries again", "request", e.ID, "err", describe(err))
		}
	}
	if unfinished || c.retention.cutoffs(c.now()).Zero() && c.retention.InactiveProfiles == 0 {
		return
	}
	// Hosts on one schedule share its rounds: none starts a run within a
	// period of the last one received, and a run that finds one received
	// since stands down (two that checked at once).
	since := c.now().Add(-c.schedule.Retention)
	page, err := c.journal.List(ctx, journal.Filter{Types: []RequestType{Retention}, Limit: 1})
	if err != nil {
		if ctx.Err() == nil {
			c.log.ErrorContext(ctx, "listing retention runs failed; Run tries again", "err", describe(err))
		}
		return
	}
	if len(page.Entries) > 0 && !page.Entries[0].Received.Before(since) {
		return
	}
	if _, err := c.ApplyRetention(ctx, RetentionOptions{recentSince: since}); err != nil && ctx.Err() == nil {
		c.log.ErrorContext(ctx, "applying the retention policy failed; Run finishes the run", "err", describe(err))
	}
}
