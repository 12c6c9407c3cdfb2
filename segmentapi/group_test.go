package segmentapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/profile"
)

// gatedProfiles counts the profile transactions begun and, while gate is
// set, holds each Begin until the gate opens.
type gatedProfiles struct {
	profile.Store
	begins  atomic.Int64
	waiting atomic.Int64
	gate    atomic.Pointer[chan struct{}]
}

func (g *gatedProfiles) Begin(ctx context.Context) (profile.Tx, error) {
	g.begins.Add(1)
	if ch := g.gate.Load(); ch != nil {
		g.waiting.Add(1)
		<-*ch
		g.waiting.Add(-1)
	}
	return g.Store.Begin(ctx)
}

// holdFirst shuts the store's gate and sends n requests at once, send(i)
// each in its own goroutine, the first once the gate is shut and the others
// once the first's call is held at it: they arrive while a call runs.
// open opens the gate and waits for every request to return.
func (g *gatedProfiles) holdFirst(t *testing.T, n int, send func(i int)) (open func()) {
	t.Helper()
	gate := make(chan struct{})
	g.gate.Store(&gate)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			send(i)
		}()
		if i == 0 {
			waitFor(t, "first call held", func() bool { return g.waiting.Load() == 1 })
		}
	}
	return func() {
		g.gate.Store(nil)
		close(gate)
		wg.Wait()
	}
}

// identify collects an identify of each user, known people for the batches.
func (a *api) identify(t *testing.T, users ...string) {
	t.Helper()
	for _, u := range users {
		if err := a.c.Collect(context.Background(), privacy.Identify{UserID: u, Timestamp: received0}); err != nil {
			t.Fatal(err)
		}
	}
}

// numbered returns prefix-0 ... prefix-(n-1).
func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprint(prefix, i)
	}
	return out
}

// waitFor polls cond for up to ten seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestConcurrentBatchesAreCollectedTogether: batch requests that arrive
// while calls to the Controller run are collected together, in one
// CollectBatch, and each request still gets its own messages' outcomes at
// its own indexes. While a call is held in the profile store and a second
// waits behind it, four more requests of 100 tracks arrive; the four then
// make one call, not four.
func TestConcurrentBatchesAreCollectedTogether(t *testing.T) {
	profiles := &gatedProfiles{Store: profile.NewMemStore()}
	a := newAPI(t, privacy.WithProfiles(profiles))
	a.identify(t, numbered("u-", 200)...)
	// batch is 100 tracks about 100 people from the first (from 0 or 100);
	// the one at index bad has no event, which the Controller refuses.
	batch := func(tag string, first, bad int) string {
		var b strings.Builder
		b.WriteString(`{"batch": [`)
		for i := range 100 {
			if i > 0 {
				b.WriteByte(',')
			}
			event := "Product Viewed"
			if i == bad {
				event = ""
			}
			fmt.Fprintf(&b, `{"type": "track", "messageId": "%s-%d", "userId": "u-%d", "event": %q, "timestamp": "2026-12-07T10:00:00Z"}`, tag, i, first+i, event)
		}
		b.WriteString(`]}`)
		return b.String()
	}
	// One request alone: how many profile transactions a call of it costs.
	before := profiles.begins.Load()
	wantStatus(t, a.post("/v1/batch", testWriteKey, batch("alone", 0, -1)), http.StatusOK)
	perCall := profiles.begins.Load() - before
	if perCall < 1 {
		t.Fatalf("a batch began %d profile transactions", perCall)
	}

	gate := make(chan struct{})
	profiles.gate.Store(&gate)
	before = profiles.begins.Load()
	answers := make([]answer, 6)
	var wg sync.WaitGroup
	send := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = a.post("/v1/batch", testWriteKey, batch(fmt.Sprint("r", i), 100*(i%2), 10*i+3))
		}()
	}
	send(0)
	waitFor(t, "the first call held", func() bool { return profiles.waiting.Load() == 1 })
	// The second starts a call of its own (two run at once), which waits
	// behind the first, for the profile store or for its people's locks.
	send(1)
	time.Sleep(50 * time.Millisecond)
	for i := 2; i < 6; i++ {
		send(i)
	}
	time.Sleep(50 * time.Millisecond)
	profiles.gate.Store(nil)
	close(gate)
	wg.Wait()

	if calls := (profiles.begins.Load() - before) / perCall; calls != 3 {
		t.Errorf("six concurrent batches made %d calls' worth of profile transactions; want 3 (two running, the four others together)", calls)
	}
	for i, got := range answers {
		wantStatus(t, got, http.StatusOK)
		issues, _ := got.json(t)["errors"].([]any)
		if len(issues) != 1 {
			t.Errorf("request %d: %d refusals %s; want its one message without an event", i, len(issues), got.body)
			continue
		}
		if idx := issues[0].(map[string]any)["index"]; idx != float64(10*i+3) {
			t.Errorf("request %d: refusal at index %v; want %d, its own message's", i, idx, 10*i+3)
		}
	}
	for i := range 6 {
		for _, j := range []int{0, 99} {
			if j == 10*i+3 {
				continue
			}
			if evs := a.events(t, user(fmt.Sprint("u-", 100*(i%2)+j))); !hasMessage(evs, fmt.Sprintf("r%d-%d", i, j)) {
				t.Errorf("message r%d-%d was not stored", i, j)
			}
		}
	}
}

func hasMessage(evs []profile.Event, id string) bool {
	for _, e := range evs {
		if e.MessageID == id {
			return true
		}
	}
	return false
}
