package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
)

// ErrClosed: Flush was waiting when the outbox was closed.
var ErrClosed = errors.New("outbox: closed")

// Config is how the outbox delivers: the root package's Delivery, with its
// defaults already filled in (every field positive).
type Config struct {
	MaxAttempts         int
	Backoff, MaxBackoff time.Duration
	Timeout             time.Duration
	BatchSize           int
}

// backoff is the wait after the attempt-th failure: Backoff doubled after each
// further one, up to MaxBackoff.
func (d Config) backoff(attempt int) time.Duration {
	b := d.Backoff
	for i := 1; i < attempt && b < d.MaxBackoff; i++ {
		b *= 2
	}
	return min(b, d.MaxBackoff)
}

// Stats counts what the outbox did for one destination; the root package's
// DeliveryStats documents each field.
type Stats struct {
	Delivered, Failed, NotSupported, Retries uint64
	Pending                                  int
}

// work is one item for one destination: a message to send or a deletion.
type work struct {
	msg *destination.Message
	del *destination.Deletion
	// done, when set, learns the outcome: nil, an error matching
	// destination.ErrNotSupported, or the last error once attempts ran out.
	done func(error)
}

// Outbox delivers destination work after the change that produced it committed:
// at least once, in order per destination, with exponential backoff and a bounded
// number of attempts. Each destination has its own queue and worker, so a slow or
// failing one delays only itself. It is safe for concurrent use.
//
// It is in memory: work not delivered when the process stops is lost.
type Outbox struct {
	cfg    Config
	log    *slog.Logger
	queues []*destQueue
	ctx    context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	pending int
	idle    chan struct{} // closed when pending drops to zero
}

// destQueue is one destination's queue, delivered by its own worker (run).
type destQueue struct {
	o     *Outbox
	d     destination.Destination
	mu    sync.Mutex
	items []work
	// inflight is how many items at the head of items a call is delivering.
	inflight int
	wake     chan struct{}
	stats    Stats
}

// New starts an outbox with a worker per destination; Close stops them.
func New(dests []destination.Destination, cfg Config, log *slog.Logger) *Outbox {
	ctx, stop := context.WithCancel(context.Background())
	o := &Outbox{cfg: cfg, log: log, ctx: ctx, stop: stop, idle: closedChan()}
	for _, d := range dests {
		q := &destQueue{o: o, d: d, wake: make(chan struct{}, 1)}
		o.queues = append(o.queues, q)
		o.wg.Add(1)
		go q.run()
	}
	return o
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// Send queues a copy of each message for every destination.
func (o *Outbox) Send(msgs []destination.Message) {
	if len(o.queues) == 0 || len(msgs) == 0 {
		return
	}
	for _, q := range o.queues {
		items := make([]work, len(msgs))
		for i := range msgs {
			m := msgs[i].Clone()
			items[i] = work{msg: &m}
		}
		q.push(items...)
	}
}

// SendTracked queues a copy of the messages for every destination; done is
// called once per destination and message with its name and outcome: nil, an
// error matching destination.ErrNotSupported, or the last error once the
// attempts ran out.
func (o *Outbox) SendTracked(msgs []destination.Message, done func(name string, err error)) {
	for _, q := range o.queues {
		name := q.d.Name()
		items := make([]work, len(msgs))
		for i := range msgs {
			m := msgs[i].Clone()
			items[i] = work{msg: &m, done: func(err error) { done(name, err) }}
		}
		q.push(items...)
	}
}

// Purge drops the untracked messages queued about a profile (not a batch
// already being delivered): after an erasure nothing about the person may
// reach a destination.
func (o *Outbox) Purge(pid identity.ProfileID) {
	n := 0
	for _, q := range o.queues {
		q.mu.Lock()
		keep := q.items[:0:0]
		for i, w := range q.items {
			if i >= q.inflight && w.msg != nil && w.msg.ProfileID == pid && w.done == nil {
				n++
				continue
			}
			keep = append(keep, w)
		}
		q.items = keep
		q.mu.Unlock()
	}
	if n > 0 {
		o.add(-n)
	}
}

// Delete queues the deletion for every destination; done is called once per
// destination with its name and outcome, as for SendTracked.
func (o *Outbox) Delete(d destination.Deletion, done func(name string, err error)) {
	for _, q := range o.queues {
		name := q.d.Name()
		del := d
		q.push(work{del: &del, done: func(err error) { done(name, err) }})
	}
}

func (o *Outbox) add(n int) {
	o.mu.Lock()
	if o.pending == 0 && n > 0 {
		o.idle = make(chan struct{})
	}
	o.pending += n
	if o.pending == 0 {
		close(o.idle)
	}
	o.mu.Unlock()
}

// Flush waits until nothing is pending (delivered, or attempts used up), or
// until ctx ends or the outbox is closed, with an error saying how much is
// still pending.
func (o *Outbox) Flush(ctx context.Context) error {
	o.mu.Lock()
	idle := o.idle
	o.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-o.ctx.Done():
		return fmt.Errorf("%w (%d deliveries were pending)", ErrClosed, o.pendingCount())
	case <-ctx.Done():
		return fmt.Errorf("%d deliveries still pending: %w", o.pendingCount(), ctx.Err())
	}
}

func (o *Outbox) pendingCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.pending
}

// Close stops the workers and waits for them; what is pending stays undelivered.
func (o *Outbox) Close() {
	o.stop()
	o.wg.Wait()
}

// Stats returns, per destination name, what was delivered, given up on and is
// still pending.
func (o *Outbox) Stats() map[string]Stats {
	out := make(map[string]Stats, len(o.queues))
	for _, q := range o.queues {
		q.mu.Lock()
		s := q.stats
		s.Pending = len(q.items)
		q.mu.Unlock()
		out[q.d.Name()] = s
	}
	return out
}

func (q *destQueue) push(items ...work) {
	q.o.add(len(items))
	q.mu.Lock()
	q.items = append(q.items, items...)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// next returns the head of the queue: up to BatchSize consecutive messages, or
// one deletion.
func (q *destQueue) next() []work {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return nil
	}
	if q.items[0].del != nil {
		return q.items[:1:1]
	}
	n := 1
	for n < len(q.items) && n < q.o.cfg.BatchSize && q.items[n].msg != nil {
		n++
	}
	q.inflight = n
	return q.items[:n:n]
}

// finish removes the head batch and records its outcome.
func (q *destQueue) finish(batch []work, err error) {
	q.mu.Lock()
	q.items = q.items[len(batch):]
	q.inflight = 0
	if len(q.items) == 0 {
		q.items = nil // let the backing array go
	}
	switch {
	case err == nil:
		q.stats.Delivered += uint64(len(batch))
	case errors.Is(err, destination.ErrNotSupported):
		q.stats.NotSupported += uint64(len(batch))
	default:
		q.stats.Failed += uint64(len(batch))
	}
	q.mu.Unlock()
	for _, w := range batch {
		if w.done != nil {
			w.done(err)
		}
	}
	q.o.add(-len(batch))
}

func (q *destQueue) run() {
	defer q.o.wg.Done()
	ctx := q.o.ctx
	for {
		batch := q.next()
		if batch == nil {
			select {
			case <-q.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		for attempt := 1; ; attempt++ {
			err := q.call(ctx, batch)
			if err == nil || errors.Is(err, destination.ErrNotSupported) {
				q.finish(batch, err)
				break
			}
			if ctx.Err() != nil {
				return
			}
			if attempt >= q.o.cfg.MaxAttempts {
				q.o.log.Warn("destination gave up", "destination", q.d.Name(), "attempts", attempt, "items", len(batch), "err", err)
				q.finish(batch, err)
				break
			}
			q.mu.Lock()
			q.stats.Retries++
			q.mu.Unlock()
			select {
			case <-time.After(q.o.cfg.backoff(attempt)):
			case <-ctx.Done():
				return
			}
		}
	}
}

// call makes one attempt. The destination runs in its own goroutine, so one that
// ignores its context or panics costs that goroutine, never the worker: past the
// timeout the attempt counts as failed (at least once: it may still land).
func (q *destQueue) call(ctx context.Context, batch []work) error {
	ctx, cancel := context.WithTimeout(ctx, q.o.cfg.Timeout)
	defer cancel()
	var msgs []destination.Message
	if batch[0].del == nil {
		msgs = make([]destination.Message, len(batch))
		for i, w := range batch {
			msgs[i] = *w.msg
		}
	}
	res := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				res <- fmt.Errorf("destination %s panicked: %v", q.d.Name(), r)
			}
		}()
		if msgs == nil {
			res <- q.d.Delete(ctx, *batch[0].del)
		} else {
			res <- q.d.Send(ctx, msgs)
		}
	}()
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return fmt.Errorf("destination %s did not answer within %v: %w", q.d.Name(), q.o.cfg.Timeout, ctx.Err())
	}
}

// Destinations returns the names of the destinations, in the order given to New.
func (o *Outbox) Destinations() []string {
	names := make([]string, len(o.queues))
	for i, q := range o.queues {
		names[i] = q.d.Name()
	}
	return names
}

// Len returns how many destinations the outbox delivers to.
func (o *Outbox) Len() int { return len(o.queues) }
