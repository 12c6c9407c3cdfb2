package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
)

// scripted is a destination whose answers the test sets: it records every
// call, may block until released, and fails as told.
type scripted struct {
	name    string
	mu      sync.Mutex
	batches [][]string // message ids per Send
	deletes []string   // request ids per Delete
	fail    error      // every call fails with it when set
	panics  bool
	gate    chan struct{} // when set, every call waits for it
}

func (d *scripted) Name() string { return d.name }

func (d *scripted) wait(ctx context.Context) error {
	d.mu.Lock()
	gate, fail, panics := d.gate, d.fail, d.panics
	d.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if panics {
		panic("boom")
	}
	return fail
}

func (d *scripted) Send(ctx context.Context, msgs []destination.Message) error {
	if err := d.wait(ctx); err != nil {
		return err
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.MessageID
	}
	d.mu.Lock()
	d.batches = append(d.batches, ids)
	d.mu.Unlock()
	return nil
}

func (d *scripted) Delete(ctx context.Context, del destination.Deletion) error {
	if err := d.wait(ctx); err != nil {
		return err
	}
	d.mu.Lock()
	d.deletes = append(d.deletes, del.RequestID)
	d.mu.Unlock()
	return nil
}

func (d *scripted) sent() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, b := range d.batches {
		out = append(out, b...)
	}
	return out
}

var fast = Config{MaxAttempts: 3, Backoff: time.Millisecond, MaxBackoff: time.Millisecond, Timeout: time.Second, BatchSize: 100}

func newOutbox(t *testing.T, cfg Config, ds ...destination.Destination) *Outbox {
	t.Helper()
	o := New(ds, cfg, slog.New(slog.DiscardHandler))
	t.Cleanup(o.Close)
	return o
}

func messages(pid identity.ProfileID, n int) []destination.Message {
	out := make([]destination.Message, n)
	for i := range out {
		out[i] = destination.Message{MessageID: fmt.Sprintf("%s-%03d", pid, i), Type: destination.TypeTrack, ProfileID: pid}
	}
	return out
}

func flush(t *testing.T, o *Outbox) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func TestDeliversInOrderInBatches(t *testing.T) {
	a, b := &scripted{name: "a"}, &scripted{name: "b"}
	o := newOutbox(t, fast, a, b)
	if got := o.Destinations(); !slices.Equal(got, []string{"a", "b"}) || o.Len() != 2 {
		t.Fatalf("Destinations = %v, Len = %d; want [a b], 2", got, o.Len())
	}
	msgs := messages("use_1", 250)
	o.Send(msgs)
	flush(t, o)
	for _, d := range []*scripted{a, b} {
		var want []string
		for _, m := range msgs {
			want = append(want, m.MessageID)
		}
		if got := d.sent(); !slices.Equal(got, want) {
			t.Errorf("%s got %d messages out of order or missing", d.name, len(got))
		}
		if len(d.batches) != 3 {
			t.Errorf("%s got %d batches for 250 messages of at most 100; want 3", d.name, len(d.batches))
		}
	}
	if s := o.Stats()["a"]; s.Delivered != 250 || s.Pending != 0 || s.Failed != 0 {
		t.Errorf("Stats of a = %+v; want 250 delivered, nothing pending or failed", s)
	}
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	down := &scripted{name: "down", fail: errors.New("503")}
	o := newOutbox(t, fast, down)
	var mu sync.Mutex
	var outcomes []error
	o.SendTracked(messages("use_1", 2), func(name string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if name != "down" {
			t.Errorf("outcome for %q; want down", name)
		}
		outcomes = append(outcomes, err)
	})
	flush(t, o)
	mu.Lock()
	defer mu.Unlock()
	if len(outcomes) != 2 || outcomes[0] == nil || outcomes[1] == nil {
		t.Fatalf("tracked outcomes = %v; want two failures", outcomes)
	}
	// One batch of two messages, tried MaxAttempts times.
	if s := o.Stats()["down"]; s.Failed != 2 || s.Retries != uint64(fast.MaxAttempts-1) || s.Delivered != 0 {
		t.Errorf("Stats = %+v; want 2 failed after %d retries", s, fast.MaxAttempts-1)
	}
}

func TestNotSupportedDeletionIsNotRetried(t *testing.T) {
	d := &scripted{name: "ro", fail: fmt.Errorf("no deletes here: %w", destination.ErrNotSupported)}
	o := newOutbox(t, fast, d)
	got := make(chan error, 1)
	o.Delete(destination.Deletion{RequestID: "req_1"}, func(_ string, err error) { got <- err })
	flush(t, o)
	if err := <-got; !errors.Is(err, destination.ErrNotSupported) {
		t.Fatalf("deletion outcome = %v; want ErrNotSupported", err)
	}
	if s := o.Stats()["ro"]; s.NotSupported != 1 || s.Retries != 0 {
		t.Errorf("Stats = %+v; want 1 not supported, no retries", s)
	}
}

func TestPurgeDropsUntrackedMessagesAboutTheProfile(t *testing.T) {
	gate := make(chan struct{})
	d := &scripted{name: "slow", gate: gate}
	o := newOutbox(t, Config{MaxAttempts: 1, Backoff: time.Millisecond, MaxBackoff: time.Millisecond, Timeout: 10 * time.Second, BatchSize: 1}, d)
	o.Send(messages("use_first", 1)) // the worker takes it and waits at the gate
	deadline := time.Now().Add(5 * time.Second)
	for {
		o.queues[0].mu.Lock()
		busy := o.queues[0].inflight == 1
		o.queues[0].mu.Unlock()
		if busy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the worker never took the first message")
		}
		time.Sleep(time.Millisecond)
	}
	o.Send(messages("use_gone", 3))
	o.Send(messages("use_kept", 1))
	tracked := make(chan error, 1)
	o.SendTracked(messages("use_gone", 1)[:1], func(_ string, err error) { tracked <- err })
	o.Purge("use_gone")
	if s := o.Stats()["slow"]; s.Pending != 3 { // the one in flight, use_kept, the tracked one
		t.Errorf("pending after Purge = %d; want 3", s.Pending)
	}
	close(gate)
	flush(t, o)
	if err := <-tracked; err != nil {
		t.Errorf("a tracked message was purged or failed: %v", err)
	}
	want := []string{"use_first-000", "use_kept-000", "use_gone-000"}
	if got := d.sent(); !slices.Equal(got, want) {
		t.Errorf("delivered %v; want %v (the untracked messages about use_gone dropped)", got, want)
	}
}

func TestPanickingDestinationCostsOnlyItsAttempt(t *testing.T) {
	bad, good := &scripted{name: "bad", panics: true}, &scripted{name: "good"}
	o := newOutbox(t, fast, bad, good)
	o.Send(messages("use_1", 5))
	flush(t, o)
	if s := o.Stats()["bad"]; s.Failed != 5 {
		t.Errorf("Stats of the panicking destination = %+v; want 5 failed", s)
	}
	if got := len(good.sent()); got != 5 {
		t.Errorf("the other destination got %d messages; want 5", got)
	}
}

func TestFlushEndsWithContextOrClose(t *testing.T) {
	gate := make(chan struct{})
	defer close(gate)
	d := &scripted{name: "stuck", gate: gate}
	o := New([]destination.Destination{d}, fast, slog.New(slog.DiscardHandler))
	o.Send(messages("use_1", 2))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := o.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Flush with a deadline = %v; want DeadlineExceeded", err)
	}
	done := make(chan error, 1)
	go func() { done <- o.Flush(context.Background()) }()
	o.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("Flush across Close = %v; want ErrClosed", err)
	}
}
