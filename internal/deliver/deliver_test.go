package deliver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/outbox"
)

// scripted is a destination whose answers the test sets: it records every
// call, in order, may block until released, and fails as told.
type scripted struct {
	name   string
	mu     sync.Mutex
	calls  []string // "send:<ids>" or "delete:<request>"
	fail   int      // fail this many calls
	err    error    // with this error (a plain one when nil)
	panic  bool
	reject map[int]error // Send rejects these indexes for good
	gate   chan struct{} // when set, every call waits for it, ignoring its context
	// entered, when set, is closed when the first call reaches the gate.
	entered     chan struct{}
	enteredOnce sync.Once
	slow        time.Duration // every call takes this long
	shared      *callLog      // when set, also records its calls there
}

// callLog records the calls of several destinations in the order they
// completed.
type callLog struct {
	mu    sync.Mutex
	calls []string
}

func (l *callLog) got() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

func (d *scripted) Name() string { return d.name }

func (d *scripted) answer(call string) error {
	d.mu.Lock()
	gate, slow, entered := d.gate, d.slow, d.entered
	d.mu.Unlock()
	if gate != nil {
		if entered != nil {
			d.enteredOnce.Do(func() { close(entered) })
		}
		<-gate // a destination that ignores its context
	}
	time.Sleep(slow)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.panic {
		panic("boom")
	}
	if d.fail != 0 {
		d.fail--
		if d.err != nil {
			return d.err
		}
		return errors.New("503 from " + d.name)
	}
	d.calls = append(d.calls, call)
	if d.shared != nil {
		d.shared.mu.Lock()
		d.shared.calls = append(d.shared.calls, call)
		d.shared.mu.Unlock()
	}
	return nil
}

func (d *scripted) Send(ctx context.Context, msgs []destination.Message) error {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.MessageID
	}
	d.mu.Lock()
	reject := d.reject
	d.mu.Unlock()
	if reject != nil {
		var kept []string
		for i, id := range ids {
			if _, ok := reject[i]; !ok {
				kept = append(kept, id)
			}
		}
		if err := d.answer("send:" + strings.Join(kept, ",")); err != nil {
			return err
		}
		return &destination.RejectedError{Rejected: reject}
	}
	return d.answer("send:" + strings.Join(ids, ","))
}

func (d *scripted) Delete(ctx context.Context, del destination.Deletion) error {
	return d.answer("delete:" + del.RequestID)
}

// release lets every call through the gate, from now on.
func (d *scripted) release() {
	d.mu.Lock()
	gate := d.gate
	d.gate = nil
	d.mu.Unlock()
	close(gate)
}

func (d *scripted) got() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

// sent returns the message ids sent, in order, one per message.
func (d *scripted) sent() []string {
	var out []string
	for _, c := range d.got() {
		if rest, ok := strings.CutPrefix(c, "send:"); ok && rest != "" {
			out = append(out, strings.Split(rest, ",")...)
		}
	}
	return out
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testConfig delivers fast: millisecond backoff, short timeouts and leases.
func testConfig() Config {
	return Config{Horizon: time.Hour, Backoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, Timeout: 500 * time.Millisecond,
		BatchSize: 3, Lease: time.Second, Poll: 5 * time.Millisecond}
}

func start(t *testing.T, s outbox.Store, cfg Config, answered func([]string), dests ...destination.Destination) *Engine {
	t.Helper()
	e := New(s, dests, cfg, fmt.Sprintf("test-%p", t), time.Now, quiet, answered)
	t.Cleanup(e.Close)
	return e
}

func msg(dest string, pid identity.ProfileID, id string) outbox.Item {
	return outbox.Item{Destination: dest, Profile: pid, Enqueued: time.Now(),
		Message: &destination.Message{MessageID: id, Type: destination.TypeTrack, ProfileID: pid, IDs: []identity.ID{{Type: "user_id", Value: "user-" + id}},
			Properties: map[string]any{"note": "secret-" + id}}}
}

func del(dest string, pid identity.ProfileID, request string) outbox.Item {
	return outbox.Item{Destination: dest, Profile: pid, Request: request, Key: request + "/" + string(pid), Enqueued: time.Now(),
		Deletion: &destination.Deletion{RequestID: request, ProfileID: pid, IDs: []identity.ID{{Type: "user_id", Value: "gone"}}}}
}

func put(t *testing.T, s outbox.Store, items ...outbox.Item) {
	t.Helper()
	ctx := context.Background()
	tx, err := s.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Enqueue(ctx, items); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func flush(t *testing.T, e *Engine) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

// TestDeliversInOrderPerProfile: every item goes out once, each profile's in
// the order enqueued, the deletion after the person's messages, messages in
// batches of BatchSize.
func TestDeliversInOrderPerProfile(t *testing.T) {
	s := outbox.NewMemStore()
	crm := &scripted{name: "crm"}
	e := start(t, s, testConfig(), nil, crm)
	put(t, s, msg("crm", "use_a", "a1"), msg("crm", "use_b", "b1"), msg("crm", "use_a", "a2"), msg("crm", "use_a", "a3"),
		del("crm", "use_a", "req-1"), msg("crm", "use_b", "b2"))
	e.Wake()
	flush(t, e)
	var order []string
	for _, c := range crm.got() {
		if rest, ok := strings.CutPrefix(c, "send:"); ok {
			order = append(order, strings.Split(rest, ",")...)
		} else {
			order = append(order, c)
		}
		if n := strings.Count(c, ","); n >= testConfig().BatchSize {
			t.Errorf("a batch of %d messages: %s", n+1, c)
		}
	}
	pos := map[string]int{}
	for i, x := range order {
		if _, dup := pos[x]; dup {
			t.Errorf("%s delivered twice: %v", x, order)
		}
		pos[x] = i
	}
	for _, pair := range [][2]string{{"a1", "a2"}, {"a2", "a3"}, {"a3", "delete:req-1"}, {"b1", "b2"}} {
		a, okA := pos[pair[0]]
		b, okB := pos[pair[1]]
		if !okA || !okB || a > b {
			t.Errorf("%s must go before %s: %v", pair[0], pair[1], order)
		}
	}
	if st := e.Stats()["crm"]; st.Delivered != 6 {
		t.Errorf("Stats = %+v; want 6 delivered", st)
	}
}

// TestAFailedBatchHoldsTheRunBehindIt: a claim hands out a person's run of
// messages, which may span batches; when a batch fails, the person's later
// batches of the claim are given back unsent, so that nothing overtakes the
// retry, while other people's messages go on.
func TestAFailedBatchHoldsTheRunBehindIt(t *testing.T) {
	s := outbox.NewMemStore()
	crm := &scripted{name: "crm", fail: 1}
	cfg := testConfig()
	cfg.BatchSize = 2
	// A retry not due before the next claim, however slow the machine (at
	// 1ms, a claim under the race detector came after it: a1 and a2 went
	// first, as the failed batch's retry).
	cfg.Backoff, cfg.MaxBackoff = 200*time.Millisecond, 200*time.Millisecond
	put(t, s, msg("crm", "use_a", "a1"), msg("crm", "use_a", "a2"), msg("crm", "use_b", "b1"), msg("crm", "use_a", "a3"),
		msg("crm", "use_a", "a4"), msg("crm", "use_a", "a5"))
	e := start(t, s, cfg, nil, crm)
	flush(t, e)
	calls := crm.got()
	if len(calls) == 0 || calls[0] != "send:b1" {
		t.Errorf("calls %v; want b1 first and alone: a3, in its batch, waits for a1's retry", calls)
	}
	var as []string
	for _, id := range crm.sent() {
		if strings.HasPrefix(id, "a") {
			as = append(as, id)
		}
	}
	if want := []string{"a1", "a2", "a3", "a4", "a5"}; !slices.Equal(as, want) {
		t.Errorf("a's messages went out as %v; want %v, each once, in order", as, want)
	}
}

// TestRetriesThenDelivers: failed calls are tried again after a backoff,
// and counted.
func TestRetriesThenDelivers(t *testing.T) {
	s := outbox.NewMemStore()
	crm := &scripted{name: "crm", fail: 2}
	e := start(t, s, testConfig(), nil, crm)
	put(t, s, msg("crm", "use_a", "a1"))
	e.Wake()
	flush(t, e)
	if got := crm.sent(); !slices.Equal(got, []string{"a1"}) {
		t.Errorf("sent %v; want a1 once", got)
	}
	if st := e.Stats()["crm"]; st.Retries != 2 || st.Delivered != 1 {
		t.Errorf("Stats = %+v; want 2 retries, 1 delivered", st)
	}
}

// TestGivesUpAfterItsAttempts: an item still failing after MaxAttempts, or
// past the horizon, is a dead letter, listed with its error, without the
// personal data the destination's error quoted; the person's later items
// are not held back by it.
func TestGivesUpAfterItsAttempts(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(*Config)
	}{
		{"attempts", func(c *Config) { c.MaxAttempts = 3 }},
		{"horizon", func(c *Config) {
			c.Horizon = 20 * time.Millisecond
			c.Backoff, c.MaxBackoff = 5*time.Millisecond, 5*time.Millisecond
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := outbox.NewMemStore()
			crm := &scripted{name: "crm", fail: -1, err: errors.New("no user user-a1 with note secret-a1")}
			cfg := testConfig()
			tc.cfg(&cfg)
			e := start(t, s, cfg, nil, crm)
			put(t, s, msg("crm", "use_a", "a1"))
			e.Wake()
			flush(t, e)
			dead, err := s.Dead(context.Background(), "crm", 0, 10)
			if err != nil || len(dead) != 1 {
				t.Fatalf("Dead = %v, %v; want the item", dead, err)
			}
			// A plain error's text is not kept, only its kind.
			if le := dead[0].LastError; strings.Contains(le, "user-a1") || strings.Contains(le, "secret-a1") || !strings.Contains(le, "*errors.errorString") {
				t.Errorf("the dead letter's error %q quotes the person's data, or does not say what kind of error it was", le)
			}
			if st := e.Stats()["crm"]; st.Failed != 1 || st.Delivered != 0 {
				t.Errorf("Stats = %+v; want 1 failed", st)
			}
			if tc.name == "attempts" && dead[0].Attempts != 3 {
				t.Errorf("Attempts = %d; want 3", dead[0].Attempts)
			}
		})
	}
}

// TestARejectedMessageFailsAlone: a message the destination rejects for good
// (it cannot encode it) dies at once, and the rest of its batch is
// delivered, not retried.
func TestARejectedMessageFailsAlone(t *testing.T) {
	s := outbox.NewMemStore()
	crm := &scripted{name: "crm", reject: map[int]error{1: errors.New("timestamp past year 9999")}}
	cfg := testConfig()
	cfg.BatchSize = 10
	e := start(t, s, cfg, nil, crm)
	put(t, s, msg("crm", "use_a", "a1"), msg("crm", "use_b", "poison"), msg("crm", "use_c", "c1"))
	e.Wake()
	flush(t, e)
	if st := e.Stats()["crm"]; st.Delivered != 2 || st.Failed != 1 || st.Retries != 0 {
		t.Errorf("Stats = %+v; want 2 delivered, 1 failed, no retries", st)
	}
	dead, _ := s.Dead(context.Background(), "crm", 0, 10)
	if len(dead) != 1 || dead[0].Message.MessageID != "poison" || dead[0].Attempts != 1 {
		t.Errorf("Dead = %+v; want the poison message after 1 attempt", dead)
	}
}

// TestADeletionWaitsForALateSend: a send that outlives its timeout keeps its
// item until it returns: the person's deletion waits for it, and goes after
// it, whatever the leases (renewed meanwhile) and other processes.
func TestADeletionWaitsForALateSend(t *testing.T) {
	s := outbox.NewMemStore()
	gate := make(chan struct{})
	log := &callLog{}
	crm := &scripted{name: "crm", gate: gate, shared: log}
	cfg := testConfig()
	cfg.Timeout, cfg.Lease = 20*time.Millisecond, 30*time.Millisecond
	e := start(t, s, cfg, nil, crm)
	put(t, s, msg("crm", "use_a", "a1"))
	e.Wake()
	time.Sleep(10 * time.Millisecond)
	put(t, s, del("crm", "use_a", "req-1"), msg("crm", "use_b", "b1"))
	// A second process with the same destination, as another host.
	other := &scripted{name: "crm", shared: log}
	e2 := start(t, s, cfg, nil, other)
	e.Wake()
	e2.Wake()
	time.Sleep(200 * time.Millisecond) // many timeouts and leases
	if got := log.got(); slices.Contains(got, "delete:req-1") {
		t.Fatalf("the deletion went out while the person's earlier send was still running: %v", got)
	}
	crm.release()
	flush(t, e)
	flush(t, e2)
	got := log.got()
	i, j := slices.Index(got, "send:a1"), slices.Index(got, "delete:req-1")
	if i < 0 || j < 0 || j < i {
		t.Errorf("calls %v; want the late send, then the deletion", got)
	}
	if n := len(crm.sent()) + len(other.sent()); n != 2 {
		t.Errorf("%d messages sent; want a1 and b1 once each (crm %v, other %v)", n, crm.got(), other.got())
	}
}

// TestAPanickingDestinationDelaysOnlyItself: a destination that panics costs
// its calls, never the worker or another destination.
func TestAPanickingDestinationDelaysOnlyItself(t *testing.T) {
	s := outbox.NewMemStore()
	bad := &scripted{name: "bad", panic: true}
	good := &scripted{name: "good"}
	cfg := testConfig()
	cfg.MaxAttempts = 2
	e := start(t, s, cfg, nil, bad, good)
	put(t, s, msg("bad", "use_a", "a1"), msg("good", "use_a", "a1"))
	e.Wake()
	flush(t, e)
	if got := good.sent(); !slices.Equal(got, []string{"a1"}) {
		t.Errorf("good sent %v", got)
	}
	if st := e.Stats()["bad"]; st.Failed != 1 {
		t.Errorf("bad's Stats = %+v; want 1 failed", st)
	}
}

// TestALongCallKeepsItsItems: a call longer than the lease (within its
// timeout) keeps its items, renewed: another process does not deliver them
// meanwhile.
func TestALongCallKeepsItsItems(t *testing.T) {
	s := outbox.NewMemStore()
	slow := &scripted{name: "crm", slow: 150 * time.Millisecond}
	cfg := testConfig()
	cfg.Lease, cfg.Timeout = 30*time.Millisecond, time.Second
	e := start(t, s, cfg, nil, slow)
	put(t, s, msg("crm", "use_a", "a1"))
	e.Wake()
	time.Sleep(20 * time.Millisecond)
	other := &scripted{name: "crm"}
	e2 := start(t, s, cfg, nil, other)
	e2.Wake()
	flush(t, e)
	if got := other.sent(); len(got) != 0 {
		t.Errorf("another process delivered %v while the first one's call ran", got)
	}
	if got := slow.sent(); !slices.Equal(got, []string{"a1"}) {
		t.Errorf("sent %v", got)
	}
}

// TestClosedEngineLeavesItsItems: what an engine held when it closed is
// delivered by the next one once the lease lapses.
func TestClosedEngineLeavesItsItems(t *testing.T) {
	s := outbox.NewMemStore()
	gate := make(chan struct{})
	stuck := &scripted{name: "crm", gate: gate}
	cfg := testConfig()
	cfg.Lease = 50 * time.Millisecond
	e := New(s, []destination.Destination{stuck}, cfg, "first", time.Now, quiet, nil)
	put(t, s, msg("crm", "use_a", "a1"), del("crm", "use_b", "req-1"))
	e.Wake()
	time.Sleep(20 * time.Millisecond)
	e.Close()
	next := &scripted{name: "crm"}
	e2 := start(t, s, cfg, nil, next)
	e2.Wake()
	// What the closed engine held and was not calling goes to the next one;
	// the item of its stuck call waits for the call to return.
	for deadline := time.Now().Add(5 * time.Second); !slices.Contains(next.got(), "delete:req-1"); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the next engine delivered %v; want the deletion the closed one held", next.got())
		}
	}
	time.Sleep(100 * time.Millisecond) // two leases
	if got := next.got(); slices.Contains(got, "send:a1") {
		t.Fatalf("the next engine sent a1 while the closed engine's call of it still ran: %v", got)
	}
	stuck.release()
	flush(t, e2)
	if got := next.got(); !slices.Contains(got, "send:a1") {
		t.Errorf("after the stuck call returned, the next engine delivered %v; want a1 too (at least once)", got)
	}
}

// TestAnsweredTellsTheRequests: the engine tells which requests' items
// answered.
func TestAnsweredTellsTheRequests(t *testing.T) {
	s := outbox.NewMemStore()
	var mu sync.Mutex
	var told []string
	e := start(t, s, testConfig(), func(rs []string) { mu.Lock(); told = append(told, rs...); mu.Unlock() }, &scripted{name: "crm"})
	put(t, s, del("crm", "use_a", "req-1"), msg("crm", "use_b", "b1"))
	e.Wake()
	flush(t, e)
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(told, []string{"req-1"}) {
		t.Errorf("answered told %v; want req-1", told)
	}
}

// TestWaitIsJittered: each wait lies between half and all of the doubled
// backoff, capped.
func TestWaitIsJittered(t *testing.T) {
	c := Config{Backoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	r := rand.New(rand.NewPCG(1, 2))
	seen := map[time.Duration]bool{}
	for attempt := 1; attempt <= 8; attempt++ {
		full := min(100*time.Millisecond<<(attempt-1), time.Second)
		for range 50 {
			w := c.wait(attempt, r)
			if w < full/2 || w > full {
				t.Fatalf("wait(%d) = %v; want within [%v, %v]", attempt, w, full/2, full)
			}
			seen[w] = true
		}
	}
	if len(seen) < 100 {
		t.Errorf("only %d distinct waits in 400: no jitter", len(seen))
	}
}

// TestClosingKeepsARunningCallsItems: an engine closed while a call runs
// (one that ignores its context) keeps renewing the call's leases until it
// returns, so another engine does not send the deletion behind it meanwhile.
func TestClosingKeepsARunningCallsItems(t *testing.T) {
	s := outbox.NewMemStore()
	gate := make(chan struct{})
	log := &callLog{}
	entered := make(chan struct{})
	crm := &scripted{name: "crm", gate: gate, entered: entered, shared: log}
	cfg := testConfig()
	// The library's least lease: a shorter one lapsed whenever the
	// machine was busy enough to delay a renewal by two thirds of it.
	cfg.Timeout, cfg.Lease = 20*time.Millisecond, 100*time.Millisecond
	e := New(s, []destination.Destination{crm}, cfg, "closing", time.Now, quiet, nil)
	put(t, s, msg("crm", "use_a", "a1"))
	e.Wake()
	select {
	case <-entered: // the call is running
	case <-time.After(5 * time.Second):
		t.Fatal("the call never started")
	}
	e.Close()
	put(t, s, del("crm", "use_a", "req-1"))
	other := &scripted{name: "crm", shared: log}
	e2 := start(t, s, cfg, nil, other)
	e2.Wake()
	time.Sleep(600 * time.Millisecond) // many leases
	if got := log.got(); slices.Contains(got, "delete:req-1") {
		t.Fatalf("the deletion went out while the closed engine's call was still running: %v", got)
	}
	crm.release()
	flush(t, e2)
	got := log.got()
	i, j := slices.Index(got, "send:a1"), slices.Index(got, "delete:req-1")
	if i < 0 || j < 0 || j < i {
		t.Errorf("calls %v; want the late send, then the deletion", got)
	}
}

// halfway delivers the first half of its first batch and reports the rest
// unsent; then everything.
type halfway struct {
	mu    sync.Mutex
	calls [][]string
}

func (h *halfway) Name() string { return "crm" }

func (h *halfway) Send(_ context.Context, msgs []destination.Message) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	first := len(h.calls) == 0
	var ids []string
	for _, m := range msgs {
		ids = append(ids, m.MessageID)
	}
	if first {
		half := len(msgs) / 2
		h.calls = append(h.calls, ids[:half])
		var unsent []int
		for i := half; i < len(msgs); i++ {
			unsent = append(unsent, i)
		}
		return &destination.RejectedError{Unsent: unsent, Err: errors.New("went down halfway")}
	}
	h.calls = append(h.calls, ids)
	return nil
}

func (h *halfway) Delete(context.Context, destination.Deletion) error { return nil }

// TestPartOfABatchIsTriedAgain: a destination that delivered part of a batch
// and says which messages it did not send gets only those again, in order.
func TestPartOfABatchIsTriedAgain(t *testing.T) {
	s := outbox.NewMemStore()
	h := &halfway{}
	put(t, s, msg("crm", "use_a", "a1"), msg("crm", "use_a", "a2"), msg("crm", "use_a", "a3"), msg("crm", "use_a", "a4"))
	e := start(t, s, testConfig(), nil, h)
	flush(t, e)
	h.mu.Lock()
	defer h.mu.Unlock()
	var all []string
	for _, c := range h.calls {
		all = append(all, c...)
	}
	if want := []string{"a1", "a2", "a3", "a4"}; !slices.Equal(all, want) {
		t.Errorf("delivered %v over calls %v; want %v, each once, in order", all, h.calls, want)
	}
	if st := e.Stats()["crm"]; st.Delivered != 4 || st.Failed != 0 {
		t.Errorf("Stats = %+v; want 4 delivered", st)
	}
}

// TestAPurgeDuringACallReachesTheRestOfTheClaim: a claim that holds several
// calls' worth (a deletion splits it) sends only its first call's items; the
// rest goes back, so a person erased while that call runs is purged before
// anything more of theirs goes.
func TestAPurgeDuringACallReachesTheRestOfTheClaim(t *testing.T) {
	s := outbox.NewMemStore()
	gate, entered := make(chan struct{}), make(chan struct{})
	var once sync.Once
	crm := &scripted{name: "crm"}
	blocking := &deleteGate{scripted: crm, gate: gate, entered: entered, once: &once}
	put(t, s, msg("crm", "use_p", "p1"), del("crm", "use_q", "req-q"), msg("crm", "use_p", "p3"))
	e := start(t, s, testConfig(), nil, blocking)
	<-entered // the deletion's call is running
	tx, err := s.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Purge(context.Background(), "use_p"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(gate)
	flush(t, e)
	if got := crm.sent(); slices.Contains(got, "p3") {
		t.Errorf("sent %v; p3 went out after its person was erased", got)
	}
}

// deleteGate blocks the first Delete until gate closes.
type deleteGate struct {
	*scripted
	gate, entered chan struct{}
	once          *sync.Once
}

func (d *deleteGate) Delete(ctx context.Context, del destination.Deletion) error {
	d.once.Do(func() { close(d.entered); <-d.gate })
	return d.scripted.Delete(ctx, del)
}

// claimGate is a store whose first claim that hands out items waits, after
// claiming, until the test opens the gate: Close lands between a claim and
// its call.
type claimGate struct {
	outbox.Store
	claimed chan struct{}
	gate    chan struct{}
	once    sync.Once
}

func (s *claimGate) Claim(ctx context.Context, c outbox.Claim) ([]outbox.Item, error) {
	items, err := s.Store.Claim(ctx, c)
	if len(items) > 0 {
		s.once.Do(func() {
			close(s.claimed)
			<-s.gate
		})
	}
	return items, err
}

// TestCloseGivesBackWhatItClaimedAndDidNotSend: items claimed as the engine
// closes are not sent, and are free at once for another deliverer (the next
// start, another process) instead of waiting out the lease. They used to
// stay leased: a restarted host waited the whole lease before delivering
// what the closed one had claimed.
func TestCloseGivesBackWhatItClaimedAndDidNotSend(t *testing.T) {
	s := &claimGate{Store: outbox.NewMemStore(), claimed: make(chan struct{}), gate: make(chan struct{})}
	put(t, s, msg("crm", "use_a", "a1"), msg("crm", "use_b", "b1"))
	crm := &scripted{name: "crm"}
	cfg := testConfig()
	cfg.Lease = time.Hour
	e := New(s, []destination.Destination{crm}, cfg, "closing", time.Now, quiet, nil)
	<-s.claimed
	closed := make(chan struct{})
	go func() { e.Close(); close(closed) }()
	for e.ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	close(s.gate)
	<-closed
	if got := crm.got(); len(got) != 0 {
		t.Errorf("closed engine called the destination: %v", got)
	}
	now := time.Now()
	items, err := s.Store.Claim(context.Background(), outbox.Claim{Owner: "next", Destinations: []string{"crm"}, Now: now, Until: now.Add(time.Minute), Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 {
		t.Errorf("after Close another deliverer claims %d items, want both (given back, not leased for the lease's hour)", len(items))
	}
}

// countedClaims is a store that counts its claims, and holds its second
// one (the first the test's Wake causes) before or after it claims, until
// the test releases it.
type countedClaims struct {
	outbox.Store
	claims  atomic.Int64
	after   bool          // hold the second claim once it has claimed
	holding chan struct{} // closed when the second claim is held
	release chan struct{}
}

func (s *countedClaims) Claim(ctx context.Context, c outbox.Claim) ([]outbox.Item, error) {
	n := s.claims.Add(1)
	if n == 2 && !s.after {
		close(s.holding)
		<-s.release
	}
	items, err := s.Store.Claim(ctx, c)
	if n == 2 && s.after {
		close(s.holding)
		<-s.release
	}
	return items, err
}

// quietly waits until the engine has claimed nothing for a while.
func quietly(s *countedClaims) int64 {
	for last := s.claims.Load(); ; {
		time.Sleep(50 * time.Millisecond)
		n := s.claims.Load()
		if n == last {
			return n
		}
		last = n
	}
}

// TestAWakeBeforeAClaimIsSpentByIt: wakes sent while a claim is under way
// are answered by the claim after it, which the worker makes anyway (to find
// the run's end); they used to make one more claim, empty, once the worker
// was idle. The poll is an hour: only wakes make claims here.
func TestAWakeBeforeAClaimIsSpentByIt(t *testing.T) {
	s := &countedClaims{Store: outbox.NewMemStore(), holding: make(chan struct{}), release: make(chan struct{})}
	crm := &scripted{name: "crm"}
	cfg := testConfig()
	cfg.Poll = time.Hour
	e := start(t, s, cfg, nil, crm)
	if n := quietly(s); n != 1 {
		t.Fatalf("%d claims at the start, want 1", n)
	}
	put(t, s, msg("crm", "use_a", "a1"))
	e.Wake()
	<-s.holding
	for range 3 {
		e.Wake() // announcing nothing the next claim will not see
	}
	close(s.release)
	if n := quietly(s); n != 3 {
		t.Errorf("%d claims, want 3: the first, the one that took a1, one that found nothing", n)
	}
	if got := crm.sent(); !slices.Equal(got, []string{"a1"}) {
		t.Errorf("sent %v, want [a1]", got)
	}
}

// TestAWakeDuringAClaimIsNotLost: an item committed, and its wake sent,
// after a claim took its items is claimed next, without waiting for the
// poll (an hour here).
func TestAWakeDuringAClaimIsNotLost(t *testing.T) {
	s := &countedClaims{Store: outbox.NewMemStore(), after: true, holding: make(chan struct{}), release: make(chan struct{})}
	crm := &scripted{name: "crm"}
	cfg := testConfig()
	cfg.Poll = time.Hour
	e := start(t, s, cfg, nil, crm)
	quietly(s)
	put(t, s, msg("crm", "use_a", "a1"))
	e.Wake()
	<-s.holding // the claim has taken a1
	put(t, s, msg("crm", "use_b", "b1"))
	e.Wake()
	close(s.release)
	deadline := time.Now().Add(5 * time.Second)
	for len(crm.sent()) < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := crm.sent(); !slices.Equal(got, []string{"a1", "b1"}) {
		t.Errorf("sent %v, want [a1 b1]: the wake sent during the claim was lost", got)
	}
}

// failingClaim is a store whose claim number failAt fails, claiming nothing.
type failingClaim struct {
	outbox.Store
	claims atomic.Int64
	failAt int64
}

func (s *failingClaim) Claim(ctx context.Context, c outbox.Claim) ([]outbox.Item, error) {
	if s.claims.Add(1) == s.failAt {
		return nil, errors.New("connection reset by peer")
	}
	return s.Store.Claim(ctx, c)
}

// TestAFailedClaimDoesNotSpendTheWake: an item whose wake came during a
// call is delivered soon (a backoff) when the claim after the call fails,
// not at the next poll (an hour here). A review found it waiting for the
// poll: the failed claim had spent the wake.
func TestAFailedClaimDoesNotSpendTheWake(t *testing.T) {
	s := &failingClaim{Store: outbox.NewMemStore(), failAt: 3} // 1: at the start, 2: takes a1, 3: after a1's call
	gate, entered := make(chan struct{}), make(chan struct{})
	crm := &scripted{name: "crm", gate: gate, entered: entered}
	cfg := testConfig()
	cfg.Poll, cfg.Timeout = time.Hour, 10*time.Second
	e := start(t, s, cfg, nil, crm)
	for s.claims.Load() < 1 {
		time.Sleep(time.Millisecond)
	}
	put(t, s, msg("crm", "use_a", "a1"))
	e.Wake()
	<-entered // a1's call is running
	put(t, s, msg("crm", "use_b", "b1"))
	e.Wake()
	close(gate)
	deadline := time.Now().Add(5 * time.Second)
	for len(crm.sent()) < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := crm.sent(); !slices.Equal(got, []string{"a1", "b1"}) {
		t.Errorf("sent %v, want [a1 b1]: b1 waits for the poll (%d claims)", got, s.claims.Load())
	}
}

// TestALateAnswerWakesTheWorker: a person's message enqueued while the call
// for their earlier one has outlived its timeout waits behind that call;
// when the call answers at last, the message goes at once, not at the
// worker's next poll (an hour here; it was never sent within the test).
func TestALateAnswerWakesTheWorker(t *testing.T) {
	s := outbox.NewMemStore()
	entered := make(chan struct{})
	crm := &scripted{name: "crm", gate: make(chan struct{}), entered: entered}
	cfg := testConfig()
	cfg.Timeout, cfg.Lease, cfg.Poll = 20*time.Millisecond, 10*time.Second, time.Hour
	e := start(t, s, cfg, nil, crm)
	put(t, s, msg("crm", "use_a", "a1"))
	e.Wake()
	<-entered
	put(t, s, msg("crm", "use_a", "a2"))
	e.Wake()
	time.Sleep(100 * time.Millisecond) // the call outlives its timeout; a claim skips a2
	if got := crm.sent(); len(got) != 0 {
		t.Fatalf("sent %v while the first call was still running", got)
	}
	crm.release()
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(crm.sent(), "a2") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := crm.sent(); !slices.Equal(got, []string{"a1", "a2"}) {
		t.Fatalf("sent %v five seconds after the late call answered; want a1, then a2", got)
	}
}
