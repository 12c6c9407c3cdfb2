package sqlstore_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/sqlstore"
)

// TestOutboxPurgeRacesASettle: a deliverer in another process holds a
// message about a person whose erasure purges the outbox; its call fails,
// and it settles the message for a retry between two of Purge's statements
// (the erasure's process is paused there, at its driver). The message must
// not come back with its payload after the erasure committed. (Each of
// Purge's statements saw its own snapshot: the settled message was neither
// deleted, being held then, nor emptied, being no longer held, and was sent
// again after the erasure.)
func TestOutboxPurgeRacesASettle(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	ctx := t.Context()
	eraser, deliverer := s.open(t), s.open(t)
	ob := deliverer.data.Outbox()
	now := time.Now()
	tx, err := ob.Begin(ctx)
	must(t, err)
	must(t, tx.Enqueue(ctx, []outbox.Item{{Destination: "d", Profile: "prof_1", Enqueued: now,
		Message: &destination.Message{MessageID: "m1", Type: "identify", ProfileID: "prof_1", Traits: map[string]any{"email": "canary@example.com"}}}}))
	must(t, tx.Commit(ctx))
	held, err := ob.Claim(ctx, outbox.Claim{Owner: "a", Destinations: []string{"d"}, Now: now, Until: now.Add(time.Minute), Limit: 10})
	if err != nil || len(held) != 1 {
		t.Fatalf("Claim = %d items, %v", len(held), err)
	}

	settled := make(chan error, 1)
	var fired atomic.Bool
	pause := func(q string) {
		if !strings.Contains(q, "NOT_SUPPORTED") || !fired.CompareAndSwap(false, true) {
			return
		}
		go func() {
			_, err := ob.Settle(ctx, "a", []outbox.Answer{{ID: held[0].ID, State: outbox.Pending, NotBefore: now, Err: "503"}})
			settled <- err
		}()
		select { // the settle goes through, or waits for the erasure
		case err := <-settled:
			settled <- err
		case <-time.After(300 * time.Millisecond):
		}
	}
	eraser.cnt.before.Store(&pause)
	etx, err := eraser.data.Outbox().Begin(ctx)
	must(t, err)
	_, err = etx.Purge(ctx, "prof_1")
	must(t, err)
	must(t, etx.Commit(ctx))
	eraser.cnt.before.Store(nil)
	if !fired.Load() {
		t.Fatal("Purge sent no statement the test pauses at: the test no longer reaches the window")
	}
	must(t, <-settled)

	again, err := ob.Claim(ctx, outbox.Claim{Owner: "b", Destinations: []string{"d"}, Now: now.Add(time.Second), Until: now.Add(time.Minute), Limit: 10})
	must(t, err)
	for _, it := range again {
		if it.Message != nil {
			t.Errorf("after the erasure committed, item %d is handed out again with its payload: %v", it.ID, it.Message.Traits)
		}
	}
}
