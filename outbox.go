package privacy

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

// Delivery configures how the outbox delivers to destinations.
type Delivery struct {
	// MaxAttempts bounds the tries per message or deletion (default 8).
	MaxAttempts int
	// Backoff is the wait after the first failure, doubled after each further one
	// up to MaxBackoff (defaults 100ms and 30s).
	Backoff, MaxBackoff time.Duration
	// Timeout bounds each call to a destination (default 30s). A destination that
	// ignores its context can still hold its own worker; it never holds the
	// collection path or other destinations.
	Timeout time.Duration
	// BatchSize bounds the messages per Send (default 100).
	BatchSize int
}

func (d Delivery) withDefaults() (Delivery, error) {
	if d.MaxAttempts < 0 || d.Backoff < 0 || d.MaxBackoff < 0 || d.Timeout < 0 || d.BatchSize < 0 {
		return d, errors.New("WithDelivery: negative setting")
	}
	if d.MaxAttempts == 0 {
		d.MaxAttempts = 8
	}
	if d.Backoff == 0 {
		d.Backoff = 100 * time.Millisecond
	}
	if d.MaxBackoff == 0 {
		d.MaxBackoff = 30 * time.Second
	}
	if d.Timeout == 0 {
		d.Timeout = 30 * time.Second
	}
	if d.BatchSize == 0 {
		d.BatchSize = 100
	}
	return d, nil
}

func (d Delivery) backoff(attempt int) time.Duration {
	b := d.Backoff
	for i := 1; i < attempt && b < d.MaxBackoff; i++ {
		b *= 2
	}
	return min(b, d.MaxBackoff)
}

// DeliveryStats counts what the outbox did for one destination.
type DeliveryStats struct {
	// Delivered messages and deletions the destination accepted.
	Delivered uint64
	// Failed ones used up their attempts.
	Failed uint64
	// NotSupported deletions the destination cannot do.
	NotSupported uint64
	// Retries counts failed attempts that were tried again.
	Retries uint64
	// Pending ones wait for delivery.
	Pending int
}

// work is one item for one destination: a message to send or a deletion.
type work struct {
	msg *destination.Message
	del *destination.Deletion
	// done, when set, learns the outcome: nil, an error matching
	// destination.ErrNotSupported, or the last error once attempts ran out.
	done func(error)
}

// outbox delivers destination work after the change that produced it committed:
// at least once, in order per destination, with exponential backoff and a bounded
// number of attempts. Each destination has its own queue and worker, so a slow or
// failing one delays only itself. It is in memory: work not delivered when the
// process stops is lost (the journal of the rights issue makes it durable).
type outbox struct {
	cfg    Delivery
	log    *slog.Logger
	queues []*destQueue
	byName map[string]*destQueue
	ctx    context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	pending int
	idle    chan struct{} // closed when pending drops to zero
}

type destQueue struct {
	o     *outbox
	d     destination.Destination
	mu    sync.Mutex
	items []work
	// inflight is how many items at the head of items a call is delivering.
	inflight int
	wake     chan struct{}
	stats    DeliveryStats
}

func newOutbox(dests []destination.Destination, cfg Delivery, log *slog.Logger) *outbox {
	ctx, stop := context.WithCancel(context.Background())
	o := &outbox{cfg: cfg, log: log, byName: map[string]*destQueue{}, ctx: ctx, stop: stop, idle: closedChan()}
	for _, d := range dests {
		q := &destQueue{o: o, d: d, wake: make(chan struct{}, 1)}
		o.queues = append(o.queues, q)
		o.byName[d.Name()] = q
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

// sendAll queues a copy of each message for every destination.
func (o *outbox) sendAll(msgs []destination.Message) {
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

// sendTracked queues a copy of the messages for every destination; done is
// called once per destination and message with its name and outcome.
func (o *outbox) sendTracked(msgs []destination.Message, done func(name string, err error)) {
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

// purge drops the queued messages about a profile (not a batch already being
// delivered): after an erasure nothing about the person may reach a destination.
func (o *outbox) purge(pid identity.ProfileID) {
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

// deleteAll queues the deletion for every destination; done is called once per
// destination with its name and outcome.
func (o *outbox) deleteAll(d destination.Deletion, done func(name string, err error)) {
	for _, q := range o.queues {
		name := q.d.Name()
		del := d
		q.push(work{del: &del, done: func(err error) { done(name, err) }})
	}
}

func (o *outbox) add(n int) {
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

// flush waits until nothing is pending or ctx ends.
func (o *outbox) flush(ctx context.Context) error {
	o.mu.Lock()
	idle := o.idle
	o.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-o.ctx.Done():
		return fmt.Errorf("privacy: flush: %w (%d deliveries were pending)", ErrClosed, o.pendingCount())
	case <-ctx.Done():
		return fmt.Errorf("privacy: flush: %d deliveries still pending: %w", o.pendingCount(), ctx.Err())
	}
}

func (o *outbox) pendingCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.pending
}

func (o *outbox) close() {
	o.stop()
	o.wg.Wait()
}

func (o *outbox) stats() map[string]DeliveryStats {
	out := make(map[string]DeliveryStats, len(o.queues))
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
