package segmentapi

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/gdprkit/privacy"
)

// grouper collects the messages of concurrent batch requests together, in
// one CollectBatch call for as many of them as wait, up to
// privacy.BatchSize messages a call (a request larger than that is a call
// of its own), as a database groups concurrent commits: a request that
// finds no call running starts one at once, so grouping adds no wait to a
// request alone; requests that arrive while calls run wait for the next.
// On a SQL backend a call costs a dozen statements and a commit whatever
// its size, and calls about the same people wait on each other's locks:
// eight connections sending batches of 100 made eight calls of 100 where
// one of 500 does the work.
//
// Each request gets its own messages' outcomes, in its own order; a call
// that fails as a whole (privacy.ErrClosed, a backend down) fails each
// request in it. The call runs under the context of the first request it
// holds, without its cancellation: one client going away must not fail
// another's messages (a request whose client left still has its messages
// collected, as it would have without grouping once the call began).
type grouper struct {
	c *privacy.Controller
	// most is how many calls run at once: two let one call's work in
	// this process overlap another's in the database.
	most int

	mu      sync.Mutex
	queue   []*submission
	running int
}

// submission is one request's messages and, once done is closed, their
// outcome: nil, a *privacy.BatchError over its messages, or the error of
// the call as a whole.
type submission struct {
	ctx  context.Context
	msgs []privacy.Message
	err  error
	done chan struct{}
}

// collect collects msgs, grouped with other requests' messages, and
// returns what CollectBatch would have returned for them alone.
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
	<-s.done
	return s.err
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
	msgs := group[0].msgs
	if len(group) > 1 {
		msgs = make([]privacy.Message, 0, privacy.BatchSize)
		for _, s := range group {
			msgs = append(msgs, s.msgs...)
		}
	}
	err := g.c.CollectBatch(context.WithoutCancel(group[0].ctx), msgs)
	var be *privacy.BatchError
	perMessage := errors.As(err, &be) && len(be.Errs) == len(msgs)
	at := 0
	for _, s := range group {
		switch {
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
}
