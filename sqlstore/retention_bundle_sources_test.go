package sqlstore_test

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/outbox"
)

// TestRetentionBatchBundleBySourceSQL: a batch puts one person's messages
// from three sources in one sealed bundle row; they die. Three days on,
// retention drops only the crm one (48h); the default (30 days) and ledger
// (kept) ones stay with their IDs, attempts, order and values, and replay.
func TestRetentionBatchBundleBySourceSQL(t *testing.T) {
	forEachSite(t, func(t *testing.T, s *site) {
		ctx := t.Context()
		crm := destination.NewRecorder("crm")
		var off atomic.Int64
		off.Store(int64(-72 * time.Hour))
		p := s.open(t)
		c := p.controller(t, nil, privacy.WithRetention(privacy.RetentionPolicy{Events: 30 * 24 * time.Hour,
			Sources: map[string]time.Duration{"crm": 48 * time.Hour, "ledger": 0}}), privacy.WithDestinations(crm),
			privacy.WithClock(func() time.Time { return time.Now().Add(time.Duration(off.Load())) }),
			privacy.WithDelivery(privacy.Delivery{Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, MaxAttempts: 2, Poll: 5 * time.Millisecond}))
		ts := time.Now().Add(-72 * time.Hour)
		must(t, c.Collect(ctx, privacy.Identify{MessageID: "hello", UserID: "ada", Timestamp: ts}))
		flushWithin(t, c, 10*time.Second)
		crm.FailSends(-1)
		var msgs []privacy.Message
		for i, src := range []string{"web", "crm", "ledger", "web"} {
			msgs = append(msgs, privacy.Track{MessageID: fmt.Sprintf("m%d-%s", i, src), UserID: "ada", Event: "Viewed", Source: src,
				Properties: map[string]any{"n": i, "src": src}, Timestamp: ts})
		}
		must(t, c.CollectBatch(ctx, msgs))
		var dead []privacy.DeadLetter
		for deadline := time.Now().Add(10 * time.Second); len(dead) < 4 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			dead, _ = c.DeadLetters(ctx, "crm", 0, 10)
		}
		if len(dead) != 4 {
			t.Fatalf("dead letters %+v; want 4", dead)
		}
		// The premise: the four are one dead bundle row.
		var rows, bundled int
		must(t, p.db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(CASE WHEN kind = 'sends' AND state = 'DEAD' AND items = 4 THEN 1 ELSE 0 END), 0) FROM `+s.table("outbox")).Scan(&rows, &bundled))
		if rows != 1 || bundled != 1 {
			t.Fatalf("the outbox holds %d rows, %d of them a dead bundle of 4; want the one", rows, bundled)
		}
		off.Store(0)
		rep, err := c.ApplyRetention(ctx, privacy.RetentionOptions{})
		if err != nil || rep.Events != 1 || rep.Messages != 1 {
			t.Fatalf("ApplyRetention = %+v, %v; want the crm event and its dead letter", rep, err)
		}
		left, err := c.DeadLetters(ctx, "crm", 0, 10)
		must(t, err)
		want := slices.DeleteFunc(slices.Clone(dead), func(d privacy.DeadLetter) bool { return d.MessageID == "m1-crm" })
		if fmt.Sprint(left) != fmt.Sprint(want) {
			t.Fatalf("dead letters after retention\n%+v\nwant\n%+v", left, want)
		}
		st, err := p.data.Outbox().Stats(ctx)
		must(t, err)
		if st["crm"] != (outbox.Counts{Dead: 3}) {
			t.Errorf("stats %+v; want 3 dead", st)
		}
		crm.FailSends(0)
		crm.Reset()
		var ids []uint64
		for _, d := range left {
			ids = append(ids, d.ID)
		}
		n, err := c.Replay(ctx, ids...)
		if err != nil || n != 3 {
			t.Fatalf("Replay = %d, %v", n, err)
		}
		flushWithin(t, c, 10*time.Second)
		var got []string
		for _, m := range crm.Messages() {
			got = append(got, fmt.Sprintf("%s:%v:%v", m.MessageID, m.Properties["n"], m.Properties["src"]))
		}
		if fmt.Sprint(got) != "[m0-web:0:web m2-ledger:2:ledger m3-web:3:web]" {
			t.Errorf("replayed %v", got)
		}
	})
}
