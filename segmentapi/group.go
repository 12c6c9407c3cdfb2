package segmentapi

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gdprkit/privacy"
)

// grouper collects the messages of concurrent batch requests together, in
// one CollectBatch call for as many of them as wait, up to
// privacy.BatchSize messages a call (a request larger than that is a call
// of its own), as a database groups concurrent commits: a request that
// finds fewer than most calls running starts one at once, so grouping adds
// no wait to a request alone; requests that arrive while calls run wait
// for the next. On a SQL backend a call costs a dozen statements and a
// commit whatever its size, and calls about the same people wait on each
// other's locks: eight connections sending batches of 100 made eight calls
// of 100 where one of 500 does the work.
//
// Each request gets its own messages' outcomes, in its own order; a call
// that fails as a whole (privacy.ErrClosed, a backend down) fails each
// request in it, and one that panics panics in each request's handler, as
// it would have there without grouping (net/http recovers it per request).
// A call's context is the first request's values, cancelled once every
// request in it has ended: one client going away must not fail another's
// messages, and a call no one waits for any more stops waiting on its
// backend. A request that ends while it waits leaves the queue and is
// answered at once; one that ends while its call runs is answered at once,
// its messages collected or not as the call goes. A request never waits
// longer than stuckAfter for a call to take it: then it starts its own, so
// that calls stuck on other hosts' locks hold no one else back.
type grouper struct {
	c *privacy.Controller
	// most is how many calls run at once: two let one call's work in
	// this process overlap another's in the database.
	most int
	// stuckAfter is how long a request waits for a running call to end
	// before it starts one of its own.
	stuckAfter time.Duration

	mu      sync.Mutex
	queue   []*submission
	running int
}

// submission is one request's messages and, once done is closed, their
// outcome: nil, a *privacy.BatchError over its messages, the error of the
// call as a whole, or what the call panicked with.
type submission struct {
	ctx      context.Context
	msgs     []privacy.Message
	err      error
	panicked any
	done     chan struct{}
}

// collect collects msgs, grouped with other requests' messages, and
// returns what CollectBatch would have returned for them alone, or ctx's
// error when ctx ends first.
func (g *grouper) collect(ctx context.Context, msgs []privacy.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	s := &submission{ctx: ctx, msgs: msgs, done: make(chan struct{})}
	g.mu.Lock()
	g.queue = append(g.queue, s)
	start := g.running < g.most
	if start {
		g.running++
	}
	g.mu.Unlock()
	if start {
		go g.run()
	}
	stuck := time.NewTimer(g.stuckAfter)
	defer stuck.Stop()
	for {
		select {
		case <-s.done:
			if s.panicked != nil {
				panic(s.panicked)
			}
			return s.err
		case <-ctx.Done():
			g.leave(s)
			return ctx.Err()
		case <-stuck.C:
			// Still queued: the running calls are slow (another host's
			// locks, a hung connection), so a call more, this one's.
			if g.leave(s) {
				g.mu.Lock()
				g.queue = append([]*submission{s}, g.queue...)
				g.running++
				g.mu.Unlock()
				go g.run()
			}
		}
	}
}

// leave takes s out of the queue, and reports whether it was there (no
// call has taken it).
func (g *grouper) leave(s *submission) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	i := slices.Index(g.queue, s)
	if i < 0 {
		return false
	}
	g.queue = slices.Delete(g.queue, i, i+1)
	return true
}

// run makes calls until no request waits.
func (g *grouper) run() {
	for {
		g.mu.Lock()
		n, size := 0, 0
		for n < len(g.queue) && (n == 0 || size+len(g.queue[n].msgs) <= privacy.BatchSize) {
			size += len(g.queue[n].msgs)
			n++
		}
		if n == 0 {
			g.running--
			g.mu.Unlock()
			return
		}
		group := g.queue[:n]
		g.queue = slices.Clone(g.queue[n:]) // the done requests' messages not kept
		g.mu.Unlock()
		g.call(group)
	}
}

// call collects a group's messages in one CollectBatch and hands each
// request its part of the outcome.
func (g *grouper) call(group []*submission) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(group[0].ctx))
	defer cancel()
	var waiting atomic.Int64 // the requests whose contexts have not ended
	waiting.Store(int64(len(group)))
	for _, s := range group {
		defer context.AfterFunc(s.ctx, func() {
			if waiting.Add(-1) == 0 {
				cancel()
			}
		})()
	}

	msgs := group[0].msgs
	if len(group) > 1 {
		msgs = make([]privacy.Message, 0, privacy.BatchSize)
		for _, s := range group {
			msgs = append(msgs, s.msgs...)
		}
	}
	var err error
	defer func() {
		// A panic goes to each request's handler, and this goroutine
		// carries on: it holds no lock here.
		p := recover()
		var be *privacy.BatchError
		perMessage := errors.As(err, &be) && len(be.Errs) == len(msgs)
		at := 0
		for _, s := range group {
			switch {
			case p != nil:
				s.panicked = p
			case err == nil:
			case perMessage:
				part := be.Errs[at : at+len(s.msgs)]
				for _, e := range part {
					if e != nil {
						s.err = &privacy.BatchError{Errs: part}
						break
					}
				}
			default:
				s.err = err
			}
			at += len(s.msgs)
			close(s.done)
		}
	}()
	err = g.c.CollectBatch(ctx, msgs)
}
