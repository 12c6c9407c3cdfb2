package sqlstore_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/sqlstore"
)

// TestRetentionRacingReplayLeavesNoExpiredMessage: on PostgreSQL, an
// operator replays a dead letter of an event (another host, or the
// store's Replay) while a retention run prunes the event. Replay moves the
// dead message to a new row (INSERT the new, DELETE the old) in one
// transaction; Expire's SELECT ... FOR UPDATE waits on the old row, finds
// it deleted when Replay commits, and never sees the new row (not in its
// statement's snapshot). Neither serial order leaves the message queued:
// Replay first, Expire drops the new row; Expire first, nothing is left
// to replay. Overlapping, it stayed queued, unheld, after the run
// FINISHED, and the next Claim handed it out, values and all: Expire now
// locks the profiles' rows before it reads them. A trigger slows Replay's
// insert so the two overlap every time; no deliverer runs while they do.
func TestRetentionRacingReplayLeavesNoExpiredMessage(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	ctx := t.Context()
	crm := destination.NewRecorder("crm")
	crm.FailSends(-1)
	var off atomic.Int64
	off.Store(int64(-48 * time.Hour))
	clock := privacy.WithClock(func() time.Time { return time.Now().Add(time.Duration(off.Load())) })
	var dead []privacy.DeadLetter
	{
		p := s.open(t)
		c := p.controller(t, nil, retentionPolicy, privacy.WithDestinations(crm), clock,
			privacy.WithDelivery(privacy.Delivery{Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, MaxAttempts: 3, Poll: 5 * time.Millisecond}))
		must(t, c.Collect(ctx, privacy.Track{MessageID: "old", UserID: "ada", Event: "Viewed",
			Properties: map[string]any{"note": "canary-replayed"}, Timestamp: time.Now().Add(-48 * time.Hour)}))
		for deadline := time.Now().Add(10 * time.Second); len(dead) == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			dead, _ = c.DeadLetters(ctx, "crm", 0, 10)
		}
		if len(dead) != 1 {
			t.Fatalf("no dead letter: %v", dead)
		}
		c.Close()
		p.close()
	}
	off.Store(0)
	// The retention host: its deliverer polls once an hour, so nothing
	// claims the replayed row while the test looks.
	p := s.open(t)
	c := p.controller(t, nil, retentionPolicy, privacy.WithDestinations(crm), clock,
		privacy.WithDelivery(privacy.Delivery{Backoff: time.Hour, MaxBackoff: time.Hour, Poll: time.Hour}))
	ops := s.open(t) // the operator's process

	replayed := make(chan error, 1)
	var rep *privacy.RetentionReport
	var err error
	fn := s.Schema + ".review_slow_insert"
	must(t, adminExec(s, `CREATE FUNCTION `+fn+`() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(1.5); RETURN NEW; END $$ LANGUAGE plpgsql`))
	must(t, adminExec(s, `CREATE TRIGGER review_slow AFTER INSERT ON `+s.table("outbox")+` FOR EACH ROW WHEN (NEW.state = 'PENDING') EXECUTE FUNCTION `+fn+`()`))
	go func() {
		_, err := ops.data.Outbox().Replay(ctx, []uint64{dead[0].ID}, time.Now())
		replayed <- err
	}()
	time.Sleep(300 * time.Millisecond) // Replay holds the dead row, asleep in its insert
	rep, err = c.ApplyRetention(ctx, privacy.RetentionOptions{})
	must(t, <-replayed)
	must(t, adminExec(s, `DROP TRIGGER review_slow ON `+s.table("outbox")))
	if err != nil || rep.Events != 1 || rep.Status != privacy.Finished {
		t.Fatalf("ApplyRetention = %+v, %v; want the event deleted", rep, err)
	}
	got, err := p.data.Outbox().Claim(ctx, outbox.Claim{Owner: "test", Destinations: []string{"crm"},
		Now: time.Now().Add(time.Minute), Until: time.Now().Add(time.Hour), Limit: 10})
	must(t, err)
	for _, it := range got {
		if it.Message != nil && it.Message.MessageID == "old" {
			t.Errorf("after retention deleted the event (messages dropped: %d), its replayed dead letter is queued and handed out: %v", rep.Messages, it.Message.Properties)
		}
	}
}

func adminExec(s *site, q string) error {
	_, err := s.admin.ExecContext(context.Background(), q)
	return err
}
