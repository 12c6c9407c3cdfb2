package sqlstore_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/sqlstore"
)

// retryingOldTrack opens a host on s whose destination is down, its clock
// 48 hours behind (off moves it; crm is the destination), collects ada's track "old" with note
// among its properties, and waits until the first call failed and the
// message waits, held by no one, for a retry an hour on.
func retryingOldTrack(t *testing.T, s *site, note string) (p *proc, c *privacy.Controller, crm *destination.Recorder, off *atomic.Int64) {
	t.Helper()
	ctx := t.Context()
	crm = destination.NewRecorder("crm")
	crm.FailSends(-1)
	off = new(atomic.Int64)
	off.Store(int64(-48 * time.Hour))
	p = s.open(t)
	c = p.controller(t, nil, retentionPolicy, privacy.WithDestinations(crm),
		privacy.WithClock(func() time.Time { return time.Now().Add(time.Duration(off.Load())) }),
		privacy.WithDelivery(privacy.Delivery{Backoff: time.Hour, MaxBackoff: time.Hour, Poll: time.Hour}))
	must(t, c.Collect(ctx, privacy.Track{MessageID: "old", UserID: "ada", Event: "Viewed",
		Properties: map[string]any{"note": note}, Timestamp: time.Now().Add(-48 * time.Hour)}))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if sends, _ := crm.Calls(); sends >= 1 && s.outboxRows(t, outbox.Pending) == 1 {
			var owned int
			must(t, p.db.QueryRowContext(ctx, `SELECT COUNT(owner) FROM `+s.table("outbox")).Scan(&owned))
			if owned == 0 {
				return p, c, crm, off
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the first call did not fail back to the queue")
		}
	}
}

// TestRetentionDropsMessagesOfADeadDeliverer: a host claimed the queued
// message of an event and died mid-call; its lease ran out a minute ago.
// Nobody holds the message any more: past the hold a row an erasure
// emptied keeps (10 lease lengths), Expire drops it; had it kept every row
// with an owner, the next deliverer would send the deleted event, values
// and all.
func TestRetentionDropsMessagesOfADeadDeliverer(t *testing.T) {
	forEachSite(t, func(t *testing.T, s *site) {
		ctx := t.Context()
		p, c, _, off := retryingOldTrack(t, s, "canary-orphaned")
		// The host that dies: claims the message, never answers.
		got, err := p.data.Outbox().Claim(ctx, outbox.Claim{Owner: "crashed-host", Destinations: []string{"crm"},
			Now: time.Now().Add(2 * time.Hour), Until: time.Now().Add(2*time.Hour + time.Second), Limit: 10})
		must(t, err)
		if len(got) != 1 {
			t.Fatalf("claimed %d", len(got))
		}
		lapsed := func(ago time.Duration) {
			t.Helper()
			var past any = time.Now().Add(-ago).UTC()
			if s.Dialect == sqlstore.SQLite {
				past = time.Now().Add(-ago).UnixMicro()
			}
			_, err = p.db.ExecContext(ctx, s.q(`UPDATE `+s.table("outbox")+` SET lease_until = $1 WHERE owner = 'crashed-host'`), past)
			must(t, err)
		}
		// Lapsed by 5 s of a 1 s lease: still held, as a row an erasure
		// emptied is for 10 lease lengths (its holder's renewal may be
		// waiting for the run's locks).
		lapsed(5 * time.Second)
		off.Store(0)
		rep, err := c.ApplyRetention(ctx, privacy.RetentionOptions{})
		if err != nil || rep.Events != 1 || rep.Messages != 0 {
			t.Fatalf("ApplyRetention = %+v, %v; want the event deleted, its message held still", rep, err)
		}
		// Lapsed a minute ago: its holder is gone.
		lapsed(time.Minute)
		rep, err = c.ApplyRetention(ctx, privacy.RetentionOptions{})
		if err != nil || rep.Messages != 1 {
			t.Fatalf("ApplyRetention = %+v, %v; want the message of the lapsed lease dropped", rep, err)
		}
		again, err := p.data.Outbox().Claim(ctx, outbox.Claim{Owner: "next-host", Destinations: []string{"crm"},
			Now: time.Now().Add(2 * time.Hour), Until: time.Now().Add(3 * time.Hour), Limit: 10})
		must(t, err)
		for _, it := range again {
			if it.Message != nil && it.Message.MessageID == "old" {
				t.Errorf("after retention deleted the event (messages dropped: %d), the expired lease's message is handed out again: %v", rep.Messages, it.Message.Properties)
			}
		}
	})
}
