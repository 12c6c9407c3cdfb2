package privacy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/internal/faultinject"
	"github.com/gdprkit/privacy/profile"
	"github.com/google/go-cmp/cmp"
)

// TestRecipientsAreRecorded checks that a profile's metadata names every
// destination its data was handed to, with the first and latest time, and that
// a merge keeps the recipients of both profiles.
func TestRecipientsAreRecorded(t *testing.T) {
	ctx := context.Background()
	clk := newClock(t0)
	crm, ads := destination.NewRecorder("crm"), destination.NewRecorder("ads")
	c, err := privacy.New(privacy.WithClock(clk.now), privacy.WithDestinations(crm, ads))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	collect := func(m privacy.Message) {
		t.Helper()
		if err := c.Collect(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	collect(privacy.Track{UserID: "ada", Event: "E", Timestamp: t0})
	clk.advance(time.Hour)
	collect(privacy.Track{UserID: "ada", Event: "E", Timestamp: t0})
	clk.advance(time.Hour)
	collect(privacy.Track{AnonymousID: "anon-1", Event: "E", Timestamp: t0}) // a profile of its own, for now
	m, err := c.Metadata(ctx, user("ada"))
	if err != nil {
		t.Fatal(err)
	}
	want := []profile.Recipient{
		{Name: "crm", FirstSent: t0, LastSent: t0.Add(time.Hour)},
		{Name: "ads", FirstSent: t0, LastSent: t0.Add(time.Hour)},
	}
	if diff := cmp.Diff(want, m.Recipients); diff != "" {
		t.Errorf("recipients (-want +got):\n%s", diff)
	}

	clk.advance(time.Hour)
	collect(privacy.Identify{UserID: "ada", AnonymousID: "anon-1", Timestamp: t0}) // merges the two
	m, err = c.Metadata(ctx, user("ada"))
	if err != nil {
		t.Fatal(err)
	}
	want = []profile.Recipient{
		{Name: "crm", FirstSent: t0, LastSent: t0.Add(3 * time.Hour)},
		{Name: "ads", FirstSent: t0, LastSent: t0.Add(3 * time.Hour)},
	}
	if diff := cmp.Diff(want, m.Recipients); diff != "" {
		t.Errorf("recipients after the merge (-want +got):\n%s", diff)
	}

	// Without destinations, nobody is named.
	quiet := newEnv(t)
	person(t, quiet, "bob")
	if m, err := quiet.c.Metadata(ctx, user("bob")); err != nil || m.Recipients != nil {
		t.Errorf("recipients without destinations = %v, %v; want none", m.Recipients, err)
	}
}

// failingCommits wraps a profile store so that its commits fail while on is
// set.
func failingCommits(s profile.Store, on *atomic.Bool) profile.Store {
	return faultinject.ProfileStore(s, func(p faultinject.Point) error {
		if p.Step == faultinject.Commit && on.Load() {
			return errors.New("injected commit failure")
		}
		return nil
	})
}

func TestNothingIsDeliveredForAChangeThatDidNotCommit(t *testing.T) {
	rec := destination.NewRecorder("crm")
	var failing atomic.Bool
	c, err := privacy.New(privacy.WithProfiles(failingCommits(profile.NewMemStore(), &failing)), privacy.WithDestinations(rec), fastDelivery())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	define(t, c, "pro", `trait('plan') = 'pro'`)
	failing.Store(true)
	if err := c.Collect(ctx, privacy.Identify{UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(0)}); err == nil {
		t.Fatal("Collect succeeded over a failing commit")
	}
	flush(t, c)
	if got := rec.Messages(); len(got) != 0 {
		t.Fatalf("destination got %d messages for a rolled-back change: %+v", len(got), got)
	}
	if got := members(t, c, "pro"); len(got) != 0 {
		t.Fatalf("audience has members from a rolled-back change: %v", got)
	}
	failing.Store(false)
	if err := c.Collect(ctx, privacy.Identify{UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(1)}); err != nil {
		t.Fatal(err)
	}
	flush(t, c)
	if diff := cmp.Diff([]string{"identify", "track Audience Entered pro"}, received(rec)); diff != "" {
		t.Fatalf("after a good commit (-want +got):\n%s", diff)
	}
}

// hanging blocks every call until released; panicking panics on every call.
type hanging struct{ release chan struct{} }

func (h *hanging) Name() string { return "hanging" }

func (h *hanging) Send(ctx context.Context, _ []destination.Message) error {
	<-h.release // ignores ctx on purpose
	return nil
}

func (h *hanging) Delete(ctx context.Context, _ destination.Deletion) error { <-h.release; return nil }

type panicking struct{}

func (panicking) Name() string { return "panicking" }

func (panicking) Send(context.Context, []destination.Message) error { panic("boom") }

func (panicking) Delete(context.Context, destination.Deletion) error { panic("boom") }

// TestBadDestinationsNeverBlockCollectionOrOthers: destinations that fail,
// panic or hang behind Collect delay only themselves. A hanging call (one
// that ignores its context) holds the person's later items for its
// destination until it returns, so that nothing overtakes it; then they go.
func TestBadDestinationsNeverBlockCollectionOrOthers(t *testing.T) {
	good := destination.NewRecorder("good")
	failing := destination.NewRecorder("failing")
	failing.FailSends(-1)
	flaky := destination.NewRecorder("flaky")
	flaky.FailSends(2)
	hang := &hanging{release: make(chan struct{})}
	c, err := privacy.New(privacy.WithDestinations(good, failing, flaky, hang, panicking{}),
		privacy.WithDelivery(privacy.Delivery{Backoff: time.Millisecond, MaxBackoff: time.Millisecond, MaxAttempts: 3, Timeout: 100 * time.Millisecond, BatchSize: 7}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	const n = 50
	for i := range n {
		// Collect returns while destinations fail, hang and panic behind it.
		if err := c.Collect(ctx, privacy.Track{MessageID: fmt.Sprint("m", i), UserID: "u1", Event: "E", Timestamp: at(i)}); err != nil {
			t.Fatal(err)
		}
	}
	stats := func() map[string]privacy.DeliveryStats {
		st, err := c.DeliveryStats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	waitFor(t, "the other destinations answered", func() bool {
		st := stats()
		return len(good.Messages()) == n && len(flaky.Messages()) == n && st["failing"].Failed == n && st["panicking"].Failed == n
	})
	if got := flaky.Messages(); got[0].MessageID != "m0" || got[n-1].MessageID != fmt.Sprint("m", n-1) {
		t.Fatalf("flaky destination got %d messages (first %v), want all %d in order, each once", len(got), got, n)
	}
	st := stats()
	for _, name := range []string{"failing", "panicking"} {
		if s := st[name]; s.Failed != n || s.Delivered != 0 || s.Pending != 0 || s.Dead != n {
			t.Errorf("%s: stats %+v, want all %d failed after their attempts, dead letters now", name, s, n)
		}
	}
	// Two calls failed, each with a batch of up to 7 items to retry.
	if s := st["flaky"]; s.Delivered != n || s.Retries < 2 || s.Retries > 2*7 {
		t.Errorf("flaky: stats %+v, want %d delivered after 2 failed calls", s, n)
	}
	if s := st["hanging"]; s.Pending != n || s.Delivered != 0 {
		t.Errorf("hanging: stats %+v, want all %d pending behind the hanging call", s, n)
	}
	p, err := c.Profile(ctx, user("u1"))
	if err != nil || p.Metadata.Version != n {
		t.Fatalf("store after bad destinations: %v, %v; want version %d", p, err, n)
	}
	close(hang.release)
	flush(t, c)
	if s := stats()["hanging"]; s.Delivered != n || s.Pending != 0 {
		t.Errorf("hanging, released: stats %+v, want all %d delivered", s, n)
	}
}

func TestFlushHonoursItsContext(t *testing.T) {
	hang := &hanging{release: make(chan struct{})}
	c, err := privacy.New(privacy.WithDestinations(hang), privacy.WithDelivery(privacy.Delivery{Timeout: time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Collect(context.Background(), privacy.Track{UserID: "u1", Event: "E", Timestamp: at(0)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Flush(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Flush = %v, want context.Canceled", err)
	}
	close(hang.release)
	flush(t, c)
	c.Close()
	if err := c.Collect(context.Background(), privacy.Track{UserID: "u1", Event: "E", Timestamp: at(0)}); !errors.Is(err, privacy.ErrClosed) {
		t.Fatalf("Collect after Close = %v", err)
	}
}

// ledger is a destination that keeps, in order, every call it answered
// with success ("send <message id>" or "delete <request id> <profile id>"),
// and asks answer, when set, what to answer first.
type ledger struct {
	name   string
	answer func(msgs []destination.Message, d *destination.Deletion) error

	mu  sync.Mutex
	log []string
}

func (l *ledger) Name() string { return l.name }

func (l *ledger) Send(ctx context.Context, msgs []destination.Message) error {
	if l.answer != nil {
		if err := l.answer(msgs, nil); err != nil {
			var re *destination.RejectedError
			if errors.As(err, &re) {
				l.mu.Lock()
				for i, m := range msgs {
					if re.Rejected[i] == nil {
						l.log = append(l.log, "send "+m.MessageID)
					}
				}
				l.mu.Unlock()
			}
			return err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range msgs {
		l.log = append(l.log, "send "+m.MessageID)
	}
	return nil
}

func (l *ledger) Delete(ctx context.Context, d destination.Deletion) error {
	if l.answer != nil {
		if err := l.answer(nil, &d); err != nil {
			return err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.log = append(l.log, "delete "+d.RequestID+" "+string(d.ProfileID))
	return nil
}

func (l *ledger) calls() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.log)
}

// TestDeadLettersAndReplay: items a destination refuses for good, or keeps
// failing past MaxAttempts, become dead letters the host lists, counts and
// replays once the destination is fixed; an erasure removes the person's
// dead messages, so they are never replayed after it.
func TestDeadLettersAndReplay(t *testing.T) {
	ctx := context.Background()
	var broken atomic.Bool
	broken.Store(true)
	crm := &ledger{name: "crm", answer: func(msgs []destination.Message, _ *destination.Deletion) error {
		if !broken.Load() || msgs == nil {
			return nil
		}
		if msgs[0].MessageID == "flaky" {
			// Quotes the person: the kept error must not.
			return fmt.Errorf("crm is down, could not store %v", msgs[0].IDs)
		}
		return fmt.Errorf("%w: crm refuses %v", destination.ErrRejected, msgs[0].IDs)
	}}
	c, err := privacy.New(privacy.WithDestinations(crm), privacy.WithDelivery(privacy.Delivery{
		Backoff: time.Millisecond, MaxBackoff: time.Millisecond, MaxAttempts: 3, BatchSize: 1}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, m := range []privacy.Message{
		privacy.Track{MessageID: "a1", UserID: "ada", Event: "E", Timestamp: at(0)},
		privacy.Track{MessageID: "a2", UserID: "ada", Event: "E", Timestamp: at(1)},
		privacy.Identify{MessageID: "b1", UserID: "bob", Traits: map[string]any{"email": "bob@example.com"}, Timestamp: at(2)},
		privacy.Track{MessageID: "flaky", UserID: "cy", Event: "E", Timestamp: at(3)},
	} {
		if err := c.Collect(ctx, m); err != nil {
			t.Fatalf("Collect %d: %v", i, err)
		}
	}
	flush(t, c)
	dead, err := c.DeadLetters(ctx, "crm", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	byMessage := map[string]privacy.DeadLetter{}
	for _, d := range dead {
		byMessage[d.MessageID] = d
		for _, v := range []string{"user_id:ada", "user_id:bob", "user_id:cy", "bob@example.com"} {
			if strings.Contains(d.LastError, v) {
				t.Errorf("dead letter %s keeps the person's %q in its error %q", d.MessageID, v, d.LastError)
			}
		}
	}
	if len(dead) != 4 || byMessage["a1"].Attempts != 1 || byMessage["flaky"].Attempts != 3 {
		t.Fatalf("dead letters = %+v; want a1, a2, b1 refused at once, flaky after its 3 attempts", dead)
	}
	if st, err := c.DeliveryStats(ctx); err != nil || st["crm"].Dead != 4 || st["crm"].Pending != 0 || st["crm"].Failed != 4 {
		t.Fatalf("DeliveryStats = %+v, %v; want 4 dead, none pending", st["crm"], err)
	}
	// Paging: after the first, three.
	if rest, err := c.DeadLetters(ctx, "", dead[0].ID, 100); err != nil || len(rest) != 3 {
		t.Errorf("DeadLetters after the first = %d, %v; want 3", len(rest), err)
	}
	if _, err := c.DeadLetters(ctx, "crm", 0, 0); !errors.Is(err, privacy.ErrInvalid) || !strings.Contains(err.Error(), "limit") {
		t.Errorf("DeadLetters with limit 0 = %v; want ErrInvalid naming limit", err)
	}

	// Bob is erased: his dead message goes with him.
	if _, err := c.Erase(ctx, user("bob")); err != nil {
		t.Fatal(err)
	}
	broken.Store(false)
	n, err := c.Replay(ctx, byMessage["a1"].ID, byMessage["a2"].ID, byMessage["b1"].ID, byMessage["flaky"].ID, 1<<60)
	if err != nil || n != 3 {
		t.Fatalf("Replay = %d, %v; want 3 (not bob's, erased, nor an unknown id)", n, err)
	}
	flush(t, c)
	sends := slices.DeleteFunc(crm.calls(), func(s string) bool { return strings.HasPrefix(s, "delete") })
	if i, j := slices.Index(sends, "send a1"), slices.Index(sends, "send a2"); i < 0 || j < i {
		t.Errorf("sent after the replay %v; want a1 before a2, in the person's order", sends)
	}
	slices.Sort(sends)
	if diff := cmp.Diff([]string{"send a1", "send a2", "send flaky"}, sends); diff != "" {
		t.Errorf("sent after the replay (-want +got):\n%s", diff)
	}
	if st, err := c.DeliveryStats(ctx); err != nil || st["crm"].Dead != 0 || st["crm"].Pending != 0 {
		t.Errorf("DeliveryStats after the replay = %+v, %v; want nothing dead or pending", st["crm"], err)
	}
	if n, err := c.Replay(ctx, byMessage["a1"].ID); err != nil || n != 0 {
		t.Errorf("a second Replay = %d, %v; want 0", n, err)
	}
}

// TestInternalErasuresPurgeTheQueue: DELETE_INTERNAL and
// SUPPRESS_WITH_DELETE_INTERNAL tell no destination, and leave nothing of
// the person queued for one either: not what waits for a retry, nor what a
// call in flight at the erasure holds, should that call fail.
func TestInternalErasuresPurgeTheQueue(t *testing.T) {
	ctx := context.Background()
	var down atomic.Bool
	down.Store(true)
	gate, entered := make(chan struct{}), make(chan struct{})
	var first sync.Once
	crm := &ledger{name: "crm", answer: func([]destination.Message, *destination.Deletion) error {
		first.Do(func() {
			close(entered)
			<-gate // in flight while the person is erased
		})
		if down.Load() {
			return errors.New("crm is down")
		}
		return nil
	}}
	c, err := privacy.New(privacy.WithDestinations(crm),
		privacy.WithDelivery(privacy.Delivery{Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, u := range []string{"ada", "bob", "cy"} {
		for i := range 3 {
			if err := c.Collect(ctx, privacy.Track{MessageID: fmt.Sprint(u, i), UserID: u, Event: "E", Timestamp: at(i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	<-entered
	for u, typ := range map[string]privacy.RequestType{"ada": privacy.DeleteInternal, "bob": privacy.SuppressWithDeleteInternal} {
		r, err := c.Apply(ctx, privacy.Request{Type: typ, Subjects: []identity.ID{user(u)}})
		if err != nil || r.Status != privacy.Finished || len(r.Destinations) != 0 {
			t.Fatalf("%s of %s = %+v, %v; want FINISHED, no destination", typ, u, r, err)
		}
	}
	close(gate) // the call in flight fails: crm is still down
	time.Sleep(20 * time.Millisecond)
	down.Store(false)
	flush(t, c)
	if diff := cmp.Diff([]string{"send cy0", "send cy1", "send cy2"}, crm.calls()); diff != "" {
		t.Errorf("delivered after the internal erasures (-want +got):\n%s", diff)
	}
}

// TestDeletionWaitsForALateSend: a send that outlives its timeout, still
// running at the destination when the person is erased, lands before the
// deletion, never after it; the erasure is FINISHED only once the deletion
// is delivered.
func TestDeletionWaitsForALateSend(t *testing.T) {
	ctx := context.Background()
	release := make(chan struct{})
	var entered sync.Once
	inSend := make(chan struct{})
	crm := &ledger{name: "crm", answer: func(msgs []destination.Message, _ *destination.Deletion) error {
		if msgs != nil && msgs[0].MessageID == "slow" {
			entered.Do(func() { close(inSend) })
			<-release // ignores its context, as a stuck HTTP client would
		}
		return nil
	}}
	c, err := privacy.New(privacy.WithDestinations(crm), privacy.WithDelivery(privacy.Delivery{
		Timeout: 20 * time.Millisecond, Lease: 150 * time.Millisecond, Backoff: time.Millisecond, MaxBackoff: time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Collect(ctx, privacy.Identify{MessageID: "slow", UserID: "ada", Traits: map[string]any{"phone": "+33600000000"}, Timestamp: at(0)}); err != nil {
		t.Fatal(err)
	}
	<-inSend
	r, err := c.Erase(ctx, user("ada"))
	if err != nil || r.Status != privacy.Running {
		t.Fatalf("Erase = %+v, %v; want RUNNING while the deletion waits", r, err)
	}
	// Well past the timeout and several leases: the deletion still waits.
	time.Sleep(300 * time.Millisecond)
	if got := crm.calls(); len(got) != 0 {
		t.Fatalf("with the send still running, the destination got %v; want nothing", got)
	}
	close(release)
	flush(t, c)
	got := crm.calls()
	if len(got) != 2 || got[0] != "send slow" || !strings.HasPrefix(got[1], "delete "+r.ID) {
		t.Fatalf("the destination got %v; want the late send, then the deletion", got)
	}
	if r, err := c.Status(ctx, r.ID); err != nil || r.Status != privacy.Finished || r.Destinations[0].Status != privacy.Finished {
		t.Errorf("Status = %+v, %v; want FINISHED, crm FINISHED", r, err)
	}
}

// TestRejectedMessageFailsAlone: through the webhook, a batch in which the
// receiver refuses one person's message for good delivers the 20 others; the
// refused one is a dead letter.
func TestRejectedMessageFailsAlone(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	got := map[string]int{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Messages []struct {
				MessageID string `json:"messageId"`
			} `json:"messages"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		for _, m := range body.Messages {
			if m.MessageID == "poison" {
				w.WriteHeader(http.StatusUnprocessableEntity)
				return
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for _, m := range body.Messages {
			got[m.MessageID]++
		}
	}))
	defer srv.Close()
	hook, err := destination.NewWebhook(destination.WebhookConfig{Name: "hook", URL: srv.URL, Secret: []byte("0123456789abcdef"), Client: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	// One CollectBatch enqueues them together: the poison message and the
	// others go in one batch.
	c, err := privacy.New(privacy.WithDestinations(hook), privacy.WithDelivery(privacy.Delivery{BatchSize: 100, Backoff: time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msgs := []privacy.Message{privacy.Track{MessageID: "poison", UserID: "u-poison", Event: "E", Timestamp: at(0)}}
	for i := range 20 {
		msgs = append(msgs, privacy.Track{MessageID: fmt.Sprint("m", i), UserID: fmt.Sprint("u", i), Event: "E", Timestamp: at(i)})
	}
	if err := c.CollectBatch(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	flush(t, c)
	mu.Lock()
	for i := range 20 {
		if n := got[fmt.Sprint("m", i)]; n != 1 {
			t.Errorf("m%d delivered %d times, want once", i, n)
		}
	}
	mu.Unlock()
	dead, err := c.DeadLetters(ctx, "hook", 0, 10)
	if err != nil || len(dead) != 1 || dead[0].MessageID != "poison" || !strings.Contains(dead[0].LastError, "422") {
		t.Fatalf("dead letters = %+v, %v; want the poison message alone, with the 422", dead, err)
	}
	if st, err := c.DeliveryStats(ctx); err != nil || st["hook"].Delivered != 20 || st["hook"].Failed != 1 {
		t.Errorf("DeliveryStats = %+v, %v; want 20 delivered, 1 failed", st["hook"], err)
	}
}

// TestDeliverySettingsAreChecked: a setting that would let leases lapse
// while calls run, poll in a loop, or is negative is refused, naming it.
func TestDeliverySettingsAreChecked(t *testing.T) {
	for _, tc := range []struct {
		d     privacy.Delivery
		field string
	}{
		{privacy.Delivery{Lease: time.Microsecond}, "Delivery.Lease"},
		{privacy.Delivery{Lease: -time.Second}, "Delivery.Lease"},
		{privacy.Delivery{Poll: time.Nanosecond}, "Delivery.Poll"},
		{privacy.Delivery{Timeout: time.Nanosecond}, "Delivery.Timeout"},
		{privacy.Delivery{Horizon: -time.Hour}, "Delivery.Horizon"},
		{privacy.Delivery{Backoff: -1}, "Delivery.Backoff"},
		{privacy.Delivery{MaxAttempts: -1}, "Delivery.MaxAttempts"},
		{privacy.Delivery{BatchSize: 501}, "Delivery.BatchSize"},
		{privacy.Delivery{BatchSize: -1}, "Delivery.BatchSize"},
	} {
		c, err := privacy.New(privacy.WithDelivery(tc.d))
		var fe *privacy.FieldError
		if !errors.Is(err, privacy.ErrInvalid) || !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("New with %+v = %v; want ErrInvalid naming %s", tc.d, err, tc.field)
		}
		if c != nil {
			c.Close()
		}
	}
	c, err := privacy.New(privacy.WithDelivery(privacy.Delivery{Lease: 100 * time.Millisecond, Poll: time.Millisecond, BatchSize: 500}))
	if err != nil {
		t.Fatalf("New with the smallest lease and poll and the largest batch = %v", err)
	}
	c.Close()
}

// TestAudienceChangesAreEachTheirOwnMessage: objections and their lifting
// move a person in and out of an audience without a new profile version;
// each move is a message of its own, so a destination that drops repeated
// message ids (as the Recorder does) ends with the person out.
func TestAudienceChangesAreEachTheirOwnMessage(t *testing.T) {
	ctx := context.Background()
	rec := destination.NewRecorder("crm")
	c, err := privacy.New(privacy.WithDestinations(rec), fastDelivery())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	define(t, c, "pro", `trait('plan') = 'pro'`)
	if err := c.Collect(ctx, privacy.Identify{UserID: "ada", Traits: map[string]any{"plan": "pro"}, Timestamp: at(0)}); err != nil {
		t.Fatal(err)
	}
	for _, apply := range []func(context.Context, identity.ID) (*privacy.Receipt, error){c.Suppress, c.Unsuppress, c.Suppress} {
		if _, err := apply(ctx, user("ada")); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, c)
	var moves []string
	for _, m := range rec.Messages() {
		if m.Event == destination.AudienceEntered || m.Event == destination.AudienceExited {
			moves = append(moves, m.Event)
		}
	}
	want := []string{destination.AudienceEntered, destination.AudienceExited, destination.AudienceEntered, destination.AudienceExited}
	if diff := cmp.Diff(want, moves); diff != "" {
		t.Errorf("audience moves the destination kept (-want +got):\n%s", diff)
	}
}

// TestAnErasureSupersedesAQueuedRectification: a rectification's corrected
// traits, still queued when the person is erased (internally or not), are
// never sent: the rectification's receipt says so, and finishes. The first
// call to crm, about the person's first message, is held until the erasure
// has committed, then fails: a call in flight at the erasure may still go out
// (the deletion waits for it), so without the hold the test would depend on
// whether a retry had claimed the messages just before the erasure.
func TestAnErasureSupersedesAQueuedRectification(t *testing.T) {
	for _, typ := range []privacy.RequestType{privacy.DeleteInternal, privacy.SuppressWithDeleteInternal, privacy.DeleteOnly} {
		t.Run(string(typ), func(t *testing.T) {
			ctx := context.Background()
			var down atomic.Bool
			down.Store(true)
			held, release := make(chan struct{}), make(chan struct{})
			var first sync.Once
			crm := &ledger{name: "crm", answer: func(msgs []destination.Message, _ *destination.Deletion) error {
				wasHeld := false
				if msgs != nil {
					first.Do(func() {
						close(held)
						<-release
						wasHeld = true
					})
				}
				if wasHeld || down.Load() {
					return errors.New("crm is down")
				}
				return nil
			}}
			c, err := privacy.New(privacy.WithDestinations(crm),
				privacy.WithDelivery(privacy.Delivery{Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Collect(ctx, privacy.Identify{MessageID: "m1", UserID: "ada", Traits: map[string]any{"email": "ada@example.com"}, Timestamp: at(0)}); err != nil {
				t.Fatal(err)
			}
			<-held // the call about m1 is in flight
			rect, err := c.Rectify(ctx, user("ada"), map[string]any{"email": "ada-new@example.com"})
			if err != nil || rect.Status != privacy.Running {
				t.Fatalf("Rectify = %+v, %v; want RUNNING while crm is down", rect, err)
			}
			if _, err := c.Apply(ctx, privacy.Request{Type: typ, Subjects: []identity.ID{user("ada")}}); err != nil {
				t.Fatal(err)
			}
			close(release) // the held call fails: crm is still down
			down.Store(false)
			flush(t, c)
			for _, call := range crm.calls() {
				if strings.HasPrefix(call, "send") {
					t.Errorf("after the erasure crm got %q", call)
				}
			}
			r, err := c.Status(ctx, rect.ID)
			if err != nil || !r.Status.Ended() || len(r.Destinations) != 1 || r.Destinations[0].Status != privacy.NotSupported {
				t.Errorf("the rectification's receipt = %+v, %v; want ended, crm NOT_SUPPORTED (erased first)", r, err)
			}
		})
	}
}

// nodeFailingGraph fails Node while failing is set, as a graph whose read
// fails for a moment.
type nodeFailingGraph struct {
	identity.Graph
	failing atomic.Bool
}

func (g *nodeFailingGraph) Node(ctx context.Context, pid identity.ProfileID) (*identity.Node, error) {
	if g.failing.Load() {
		return nil, errors.New("graph unavailable")
	}
	return g.Graph.Node(ctx, pid)
}

// TestAudienceChangeNeverOwedWithoutIdentifiers: when the person's
// identifiers cannot be read as a collected message changes their
// audiences, the change is owed with the message's identifiers, never with
// none (a destination would match it to nobody).
func TestAudienceChangeNeverOwedWithoutIdentifiers(t *testing.T) {
	ctx := context.Background()
	g := &nodeFailingGraph{Graph: identity.NewMemGraph()}
	rec := destination.NewRecorder("crm")
	e := newEnv(t, privacy.WithIdentity(g), privacy.WithDestinations(rec), fastDelivery())
	if err := e.c.DefineAudience(ctx, audience.Definition{Key: "pros", Query: `trait('plan') = 'pro'`}); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Collect(ctx, privacy.Identify{MessageID: "m1", UserID: "ada", Timestamp: t0}); err != nil {
		t.Fatal(err)
	}
	g.failing.Store(true)
	err := e.c.Collect(ctx, privacy.Identify{MessageID: "m2", UserID: "ada", Traits: map[string]any{"plan": "pro"}, Timestamp: t0.Add(time.Minute)})
	g.failing.Store(false)
	if err != nil {
		t.Fatal(err)
	}
	flush(t, e.c)
	entered := 0
	for _, m := range rec.Messages() {
		if m.Event == destination.AudienceEntered {
			entered++
			if !slices.Contains(m.IDs, user("ada")) {
				t.Errorf("an %s owed without the person's identifier: %+v", m.Event, m.IDs)
			}
		}
	}
	if entered != 1 {
		t.Errorf("%d Audience Entered delivered; want 1", entered)
	}
}
