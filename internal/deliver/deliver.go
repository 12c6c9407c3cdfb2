package deliver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/outbox"
)

// ErrClosed: Flush was waiting when the engine was closed.
var ErrClosed = errors.New("deliver: closed")

// Config is how the engine delivers: the fields of the root package's
// Delivery (see there), with its defaults filled in (every duration and size
// positive; MaxAttempts 0 means no bound but the horizon). A claim holds at
// most BatchSize items, one call's worth, so that an erasure committing
// during a call purges what the deliverer has not claimed yet.
type Config struct {
	Horizon             time.Duration
	MaxAttempts         int
	Backoff, MaxBackoff time.Duration // each wait drawn between half and all of it
	Timeout             time.Duration
	BatchSize           int
	Lease               time.Duration // renewed every third of it while a call runs
	Poll                time.Duration
	// Scrub, when set, takes the person's data out of the text kept of a
	// destination's error (a KeptError's, which the destination vouches
	// for) before it is stored.
	Scrub func(text string, batch []outbox.Item) string
	// Describe, when set, tells an outbox store's error in a log line
	// without its text, which may quote what the store was given; unset,
	// the line gives the error's type.
	Describe func(error) string
}

// describe is how a log line tells an outbox store's error.
func (e *Engine) describe(err error) string {
	if e.cfg.Describe != nil {
		return e.cfg.Describe(err)
	}
	return fmt.Sprintf("%T", err)
}

// wait is the wait after the attempt-th failed call, with jitter.
func (c Config) wait(attempt int, r *rand.Rand) time.Duration {
	b := c.Backoff
	for i := 1; i < attempt && b < c.MaxBackoff; i++ {
		b *= 2
	}
	b = min(b, c.MaxBackoff)
	half := b / 2
	return half + time.Duration(r.Int64N(int64(b-half)+1))
}

// Stats counts what this engine did for one destination since it started.
type Stats struct {
	Delivered, Failed, NotSupported, Retries uint64
}

// Engine delivers what a Store holds to the destinations, at least once, in
// order per destination and profile: one worker per destination claims
// items with a lease, calls the destination, and settles each item's answer.
// A slow, failing, hanging or panicking destination delays only itself; a
// call that outlives its timeout keeps its items (their lease renewed) until
// it returns, so that nothing about the person overtakes it.
type Engine struct {
	store    outbox.Store
	cfg      Config
	owner    string
	now      func() time.Time
	log      *slog.Logger
	answered func(requests []string)

	ctx     context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup
	workers []*worker

	heldMu sync.Mutex
	held   map[uint64]bool // items claimed and not yet settled
	// calling are the held items whose call is running: after Close, their
	// leases are still renewed until it returns.
	calling map[uint64]bool

	changed chan struct{} // closed and replaced when an item is settled
	chMu    sync.Mutex
}

type worker struct {
	e    *Engine
	d    destination.Destination
	wake chan struct{}
	rnd  *rand.Rand

	mu    sync.Mutex
	stats Stats
	// due is the earliest retry this worker set, not yet reached: it looks
	// again then rather than at the next poll.
	due time.Time
}

// New starts an engine delivering store's items to the destinations, claiming
// them as owner (unique per process), with the clock now. answered, when not
// nil, learns the requests some of whose items answered. Close stops it.
func New(store outbox.Store, dests []destination.Destination, cfg Config, owner string, now func() time.Time,
	log *slog.Logger, answered func(requests []string)) *Engine {
	ctx, stop := context.WithCancel(context.Background())
	e := &Engine{store: store, cfg: cfg, owner: owner, now: now, log: log, answered: answered, ctx: ctx, stop: stop,
		held: map[uint64]bool{}, calling: map[uint64]bool{}, changed: make(chan struct{})}
	for i, d := range dests {
		w := &worker{e: e, d: d, wake: make(chan struct{}, 1), rnd: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(i)))}
		e.workers = append(e.workers, w)
		e.wg.Add(1)
		go w.run()
	}
	if len(dests) > 0 {
		go e.renew()
	}
	return e
}

// Destinations returns the names of the destinations, in the order given.
func (e *Engine) Destinations() []string {
	out := make([]string, len(e.workers))
	for i, w := range e.workers {
		out[i] = w.d.Name()
	}
	return out
}

// Wake tells every worker that items were enqueued.
func (e *Engine) Wake() {
	for _, w := range e.workers {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// Close stops the workers and waits for them (a claim under way finishes
// first). Items claimed and not yet sent are given back at once; a call
// still running is left to finish on its own, and its items' leases are
// renewed until it returns, so that no other deliverer sends what follows
// them meanwhile.
func (e *Engine) Close() {
	e.stop()
	e.wg.Wait()
}

// Stats returns, per destination, what the engine did since it started.
func (e *Engine) Stats() map[string]Stats {
	out := make(map[string]Stats, len(e.workers))
	for _, w := range e.workers {
		w.mu.Lock()
		out[w.d.Name()] = w.stats
		w.mu.Unlock()
	}
	return out
}

// Flush waits until the store holds no Pending item for these destinations,
// or ctx ends, or the engine closes.
func (e *Engine) Flush(ctx context.Context) error {
	for {
		e.chMu.Lock()
		changed := e.changed
		e.chMu.Unlock()
		pending, err := e.pending(ctx)
		if err != nil {
			return err
		}
		e.heldMu.Lock()
		held := len(e.held)
		e.heldMu.Unlock()
		if pending == 0 && held == 0 { // nothing owed, and what was answered is counted
			return nil
		}
		e.Wake()
		select {
		case <-changed:
		case <-time.After(min(e.cfg.Poll, 50*time.Millisecond)):
		case <-e.ctx.Done():
			return fmt.Errorf("%w (%d deliveries were pending)", ErrClosed, pending)
		case <-ctx.Done():
			return fmt.Errorf("%d deliveries still pending: %w", pending, ctx.Err())
		}
	}
}

// pending counts the Pending items of the engine's destinations.
func (e *Engine) pending(ctx context.Context) (int, error) {
	st, err := e.store.Stats(ctx)
	if err != nil {
		return 0, fmt.Errorf("deliver: counting pending items: %w", err)
	}
	n := 0
	for _, w := range e.workers {
		n += st[w.d.Name()].Pending
	}
	return n, nil
}

// settled tells Flush that items answered.
func (e *Engine) settled() {
	e.chMu.Lock()
	close(e.changed)
	e.changed = make(chan struct{})
	e.chMu.Unlock()
}

func (e *Engine) hold(items []outbox.Item) {
	e.heldMu.Lock()
	for _, it := range items {
		e.held[it.ID] = true
	}
	e.heldMu.Unlock()
}

func (e *Engine) release(answers []outbox.Answer) {
	e.heldMu.Lock()
	for _, a := range answers {
		delete(e.held, a.ID)
	}
	e.heldMu.Unlock()
}

// renew extends, every third of the lease, the leases of the items the
// engine holds, so that a long call keeps them. Once the engine is closed it
// renews only the items of calls still running, and returns when none is.
func (e *Engine) renew() {
	tick := time.NewTicker(max(e.cfg.Lease/3, time.Millisecond))
	defer tick.Stop()
	for range tick.C {
		closed := e.ctx.Err() != nil
		e.heldMu.Lock()
		from := e.held
		if closed {
			from = e.calling
		}
		ids := make([]uint64, 0, len(from))
		for id := range from {
			ids = append(ids, id)
		}
		e.heldMu.Unlock()
		if len(ids) == 0 {
			if closed {
				return
			}
			continue
		}
		slices.Sort(ids)
		err := e.store.Renew(context.WithoutCancel(e.ctx), e.owner, ids, e.now().Add(e.cfg.Lease))
		if err != nil {
			e.log.Warn("renewing the outbox leases failed", "items", len(ids), "err", e.describe(err))
		}
	}
}

// calls marks the batch's items as in a call, or no longer.
func (e *Engine) calls(batch []outbox.Item, in bool) {
	e.heldMu.Lock()
	defer e.heldMu.Unlock()
	for _, it := range batch {
		if in {
			e.calling[it.ID] = true
		} else {
			delete(e.calling, it.ID)
		}
	}
}

func (w *worker) run() {
	defer w.e.wg.Done()
	e := w.e
	name := w.d.Name()
	poll := time.NewTimer(0)
	defer poll.Stop()
	for {
		// A wake sent before this claim starts is spent by it: Wake follows
		// the commit of what it announces, so the claim sees those items,
		// and waking again for them would only make an empty claim (one a
		// batch, when the next batch commits while this one is claimed).
		// A wake sent once the claim has started stays, and wakes the
		// worker when it is idle.
		select {
		case <-w.wake:
		default:
		}
		now := e.now()
		// A claim is not cut short by Close: cancelled mid-query, its
		// update could commit unseen, its items held by nobody until the
		// lease lapsed. It is bounded by the lease, past which it would
		// hold nothing anyway; what it returns after Close is given back.
		claimCtx, cancel := context.WithTimeout(context.WithoutCancel(e.ctx), e.cfg.Lease)
		items, err := e.store.Claim(claimCtx, outbox.Claim{Owner: e.owner, Destinations: []string{name}, Now: now,
			Until: now.Add(e.cfg.Lease), Limit: e.cfg.BatchSize})
		cancel()
		failed := err != nil && e.ctx.Err() == nil
		if failed {
			e.log.Warn("claiming outbox items failed", "destination", name, "err", e.describe(err))
		}
		if len(items) > 0 {
			e.hold(items)
			w.deliver(items)
			if e.ctx.Err() != nil {
				return // what it did not send is given back
			}
			continue
		}
		wait := w.idle(now)
		if failed {
			// The claim saw nothing, so the wake it spent, if any, still
			// stands: it is tried again after a backoff, not a poll.
			wait = min(wait, max(e.cfg.Backoff, time.Millisecond))
		}
		poll.Reset(wait)
		select {
		case <-e.ctx.Done():
			return
		case <-w.wake:
		case <-poll.C:
		}
	}
}

// idle is how long the worker waits for work before it looks again: a poll,
// or less when a retry it set is due sooner.
func (w *worker) idle(now time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	wait := w.e.cfg.Poll
	if !w.due.IsZero() {
		if d := w.due.Sub(now); d < wait {
			wait = max(d, 0)
		}
		if !w.due.After(now) {
			w.due = time.Time{}
		}
	}
	return wait
}

// deliver makes one call for the claimed items: a deletion alone, or the
// messages before the first deletion, at most BatchSize of them, in ID
// order. The rest it gives back unsent at once (their leases ended), to be
// claimed again: a call holds only what it sends, so an erasure that commits
// while it runs purges the rest of the claim before anything of it goes,
// and a person's later items wait behind the call (a claim skips a
// destination and profile while any of its items is held).
func (w *worker) deliver(items []outbox.Item) {
	items = w.discardPurged(items)
	if len(items) == 0 {
		return
	}
	j := 1
	if items[0].Deletion == nil {
		for j < len(items) && items[j].Message != nil && j < w.e.cfg.BatchSize {
			j++
		}
	}
	if w.e.ctx.Err() != nil {
		// Closing: nothing of the claim was sent, so it is given back at
		// once, for another process or the next start to deliver without
		// waiting out the lease.
		w.giveBack(items)
		return
	}
	w.giveBack(items[j:])
	w.call(items[:j])
}

// giveBack ends the leases of items claimed but not to be sent now, so that
// they are claimed again.
func (w *worker) giveBack(items []outbox.Item) {
	if len(items) == 0 {
		return
	}
	e := w.e
	back := make([]uint64, len(items))
	answers := make([]outbox.Answer, len(items))
	for i, it := range items {
		back[i], answers[i] = it.ID, outbox.Answer{ID: it.ID}
	}
	if err := e.store.Renew(context.WithoutCancel(e.ctx), e.owner, back, time.Time{}); err != nil {
		e.log.Warn("giving back outbox items failed; they are claimed again when their leases lapse", "destination", w.d.Name(), "items", len(back), "err", e.describe(err))
	}
	e.release(answers)
}

// discardPurged settles, without a call, the items Purge emptied while a
// deliverer held them (the person was erased: they must never go out), and
// returns the others.
func (w *worker) discardPurged(items []outbox.Item) []outbox.Item {
	var answers []outbox.Answer
	var kept []outbox.Item // a copy, made at the first purged item: most claims have none
	for i, it := range items {
		if it.Message == nil && it.Deletion == nil {
			if answers == nil {
				kept = append(make([]outbox.Item, 0, len(items)-1), items[:i]...)
			}
			answers = append(answers, outbox.Answer{ID: it.ID, State: outbox.NotSupported, Err: outbox.ErasedFirst})
			continue
		}
		if answers != nil {
			kept = append(kept, it)
		}
	}
	if len(answers) == 0 {
		return items
	}
	if _, err := w.e.store.Settle(context.WithoutCancel(w.e.ctx), w.e.owner, answers); err != nil {
		w.e.log.Warn("settling purged outbox items failed; they are discarded at their next claim", "destination", w.d.Name(), "items", len(answers), "err", w.e.describe(err))
	}
	w.e.release(answers)
	w.e.settled()
	return kept
}

// call makes one call for the batch and settles its answers. The destination
// runs in its own goroutine, so one that ignores its context or panics costs
// that goroutine, never the worker: past the timeout the worker moves on,
// and the batch's items stay held until the call returns, then are settled
// with what it returned.
func (w *worker) call(batch []outbox.Item) {
	e := w.e
	res := make(chan error, 1)
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.Timeout)
	e.calls(batch, true)
	go func() {
		defer e.calls(batch, false)
		defer func() {
			if r := recover(); r != nil {
				res <- destination.Kept(nil, "destination %s panicked", w.d.Name())
			}
		}()
		if batch[0].Deletion != nil {
			res <- w.d.Delete(ctx, *batch[0].Deletion)
			return
		}
		msgs := make([]destination.Message, len(batch))
		for i, it := range batch {
			msgs[i] = *it.Message
		}
		res <- w.d.Send(ctx, msgs)
	}()
	select {
	case err := <-res:
		cancel()
		w.settle(batch, err)
		return
	case <-ctx.Done():
	}
	select {
	case err := <-res: // it answered as the time ran out
		cancel()
		w.settle(batch, err)
		return
	default:
	}
	if e.ctx.Err() != nil {
		cancel()
		return // closing: the leases lapse
	}
	e.log.Warn("a destination call outlived its timeout; its items wait for it", "destination", w.d.Name(), "items", len(batch))
	go func() {
		err := <-res
		cancel()
		if err != nil {
			err = &lateError{name: w.d.Name(), timeout: e.cfg.Timeout, err: err}
		}
		w.settle(batch, err)
		// The person's later items waited behind this call, skipped by the
		// claims made meanwhile: an idle worker would find them only at its
		// next poll.
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}()
}

// settle records the call's answer for each item of the batch.
func (w *worker) settle(batch []outbox.Item, err error) {
	e := w.e
	now := e.now()
	answers := make([]outbox.Answer, len(batch))
	var rejected *destination.RejectedError
	errors.As(err, &rejected)
	var delivered, dead, notSupported, retries uint64
	scrubbed := map[string]string{}
	for i, it := range batch {
		a := outbox.Answer{ID: it.ID}
		switch {
		case err == nil:
			a.State = outbox.Delivered
		case rejected != nil && it.Message != nil:
			switch why, ok := rejected.Rejected[i]; {
			case ok:
				a.State, a.Err = outbox.Dead, w.kept(why)
			case slices.Contains(rejected.Unsent, i) && w.gaveUp(it, now):
				a.State, a.Err = outbox.Dead, w.kept(rejected.Err)
			case slices.Contains(rejected.Unsent, i):
				a.State, a.Err, a.NotBefore = outbox.Pending, w.kept(rejected.Err), now.Add(e.cfg.wait(it.Attempts+1, w.rnd))
			default:
				a.State = outbox.Delivered
			}
		case errors.Is(err, destination.ErrNotSupported):
			a.State, a.Err = outbox.NotSupported, w.kept(err)
		case errors.Is(err, destination.ErrRejected) || w.gaveUp(it, now):
			a.State, a.Err = outbox.Dead, w.kept(err)
		default:
			a.State, a.Err, a.NotBefore = outbox.Pending, w.kept(err), now.Add(e.cfg.wait(it.Attempts+1, w.rnd))
		}
		switch a.State {
		case outbox.Delivered:
			delivered++
		case outbox.Dead:
			dead++
		case outbox.NotSupported:
			notSupported++
		default:
			retries++
		}
		if a.Err != "" {
			// A batch's items mostly share one error: scrubbed once.
			clean, ok := scrubbed[a.Err]
			if !ok {
				clean = a.Err
				if e.cfg.Scrub != nil {
					clean = e.cfg.Scrub(clean, batch)
				}
				clean = outbox.CutError(clean)
				scrubbed[a.Err] = clean
			}
			a.Err = clean
		}
		answers[i] = a
	}
	if dead > 0 {
		e.log.Warn("destination items given up on; listed as dead letters", "destination", w.d.Name(), "items", dead)
	}
	if e.ctx.Err() != nil {
		e.release(answers)
		return // closed meanwhile: the leases lapse, and the items go again
	}
	var serr error
	for attempt := 0; attempt < 3; attempt++ {
		if _, serr = e.store.Settle(context.WithoutCancel(e.ctx), e.owner, answers); serr == nil {
			break
		}
		time.Sleep(time.Duration(attempt+1) * 50 * time.Millisecond)
	}
	if serr != nil {
		e.release(answers)
		// Given back, or else their leases lapse: they are delivered again,
		// at least once (and an item an erasure emptied, which a store may
		// keep held while its owner lives, is let go).
		e.log.Error("settling outbox items failed; they will be delivered again", "destination", w.d.Name(), "items", len(answers), "err", e.describe(serr))
		ids := make([]uint64, len(answers))
		for i, a := range answers {
			ids[i] = a.ID
		}
		if err := e.store.Renew(context.WithoutCancel(e.ctx), e.owner, ids, time.Time{}); err != nil {
			e.log.Warn("giving back outbox items failed; they are claimed again when their leases lapse", "destination", w.d.Name(), "items", len(ids), "err", e.describe(err))
		}
		return
	}
	w.mu.Lock()
	for _, a := range answers {
		if a.State == outbox.Pending && (!w.due.After(now) || a.NotBefore.Before(w.due)) {
			w.due = a.NotBefore
		}
	}
	w.stats.Delivered += delivered
	w.stats.Failed += dead
	w.stats.NotSupported += notSupported
	w.stats.Retries += retries
	w.mu.Unlock()
	e.release(answers) // after the stats: Flush waits for what is held
	var requests []string
	for _, it := range batch {
		if it.Request != "" && !slices.Contains(requests, it.Request) {
			requests = append(requests, it.Request)
		}
	}
	e.settled()
	if len(requests) > 0 && e.answered != nil {
		e.answered(requests)
	}
}

// kept is what is kept of a destination's error: a KeptError's text, or
// else only its kind, since its text may quote what the destination was
// sent.
func (w *worker) kept(err error) string {
	name := w.d.Name()
	var late *lateError
	if errors.As(err, &late) {
		return fmt.Sprintf("destination %s did not answer within %v, then: %s", name, late.timeout, w.kept(late.err))
	}
	var kept *destination.KeptError
	switch {
	case errors.As(err, &kept):
		return kept.Text
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("destination %s: timed out", name)
	case errors.Is(err, context.Canceled):
		return fmt.Sprintf("destination %s: call canceled", name)
	case errors.Is(err, destination.ErrNotSupported):
		return fmt.Sprintf("destination %s: deletion not supported", name)
	case errors.Is(err, destination.ErrRejected):
		return fmt.Sprintf("destination %s: rejected for good", name)
	}
	inner := err
	for errors.Unwrap(inner) != nil {
		inner = errors.Unwrap(inner)
	}
	return fmt.Sprintf("destination %s failed (%T; its text is not kept, as it may quote the person: return a destination.KeptError to keep one)", name, inner)
}

// lateError is a call's error that came after its timeout.
type lateError struct {
	name    string
	timeout time.Duration
	err     error
}

// Error says the call was late, without the destination's own text, which
// may quote the person (kept tells what of it is kept).
func (e *lateError) Error() string {
	return fmt.Sprintf("destination %s did not answer within %v", e.name, e.timeout)
}

func (e *lateError) Unwrap() error { return e.err }

// gaveUp reports whether an item whose call just failed is out of time or
// attempts.
func (w *worker) gaveUp(it outbox.Item, now time.Time) bool {
	c := w.e.cfg
	return now.Sub(it.Enqueued) >= c.Horizon || c.MaxAttempts > 0 && it.Attempts+1 >= c.MaxAttempts
}
