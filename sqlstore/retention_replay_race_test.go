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
	dead, p, c, ops := replayAfterRetention(t, s, privacy.Track{MessageID: "old", UserID: "ada", Event: "Viewed",
		Properties: map[string]any{"note": "canary-replayed"}})

	replayed := make(chan error, 1)
	var rep *privacy.RetentionReport
	var err error
	fast := slowOutboxInserts(t, s, "1.5")
	go func() {
		_, err := ops.data.Outbox().Replay(ctx, []uint64{dead[0].ID}, time.Now())
		replayed <- err
	}()
	time.Sleep(300 * time.Millisecond) // Replay holds the dead row, asleep in its insert
	rep, err = c.ApplyRetention(ctx, privacy.RetentionOptions{})
	must(t, <-replayed)
	fast()
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

// replayAfterRetention collects tracks dated two days back through a
// Controller whose clock runs two days behind and whose destination, crm,
// refuses every send, until each is a dead letter; then it opens the
// retention host (clock on time, its deliverer polling once an hour, so
// that nothing claims a replayed row while a test looks) and a second
// process for the operator who replays.
func replayAfterRetention(t *testing.T, s *site, tracks ...privacy.Track) (dead []privacy.DeadLetter, p *proc, c *privacy.Controller, ops *proc) {
	t.Helper()
	ctx := t.Context()
	crm := destination.NewRecorder("crm")
	crm.FailSends(-1)
	var off atomic.Int64
	off.Store(int64(-48 * time.Hour))
	clock := privacy.WithClock(func() time.Time { return time.Now().Add(time.Duration(off.Load())) })
	{
		p := s.open(t)
		c := p.controller(t, nil, retentionPolicy, privacy.WithDestinations(crm), clock,
			privacy.WithDelivery(privacy.Delivery{Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, MaxAttempts: 1, Poll: 5 * time.Millisecond}))
		for _, tr := range tracks {
			tr.Timestamp = time.Now().Add(-48 * time.Hour)
			must(t, c.Collect(ctx, tr))
		}
		for deadline := time.Now().Add(10 * time.Second); len(dead) < len(tracks) && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			dead, _ = c.DeadLetters(ctx, "crm", 0, 10)
		}
		if len(dead) != len(tracks) {
			t.Fatalf("dead letters: %v; want %d", dead, len(tracks))
		}
		c.Close()
		p.close()
	}
	off.Store(0)
	p = s.open(t)
	c = p.controller(t, nil, retentionPolicy, privacy.WithDestinations(crm), clock,
		privacy.WithDelivery(privacy.Delivery{Backoff: time.Hour, MaxBackoff: time.Hour, Poll: time.Hour}))
	return dead, p, c, s.open(t)
}

// slowOutboxInserts makes each insert of a PENDING outbox row sleep the
// given seconds (a Replay's, here), so that a Replay holds its rows while
// a test starts retention beside it; the function returned undoes it.
func slowOutboxInserts(t *testing.T, s *site, seconds string) func() {
	t.Helper()
	fn := s.Schema + ".slow_outbox_insert"
	must(t, adminExec(s, `CREATE FUNCTION `+fn+`() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(`+seconds+`); RETURN NEW; END $$ LANGUAGE plpgsql`))
	must(t, adminExec(s, `CREATE TRIGGER slow_outbox_insert AFTER INSERT ON `+s.table("outbox")+` FOR EACH ROW WHEN (NEW.state = 'PENDING') EXECUTE FUNCTION `+fn+`()`))
	return func() { must(t, adminExec(s, `DROP TRIGGER slow_outbox_insert ON `+s.table("outbox"))) }
}

func adminExec(s *site, q string) error {
	_, err := s.admin.ExecContext(context.Background(), q)
	return err
}
