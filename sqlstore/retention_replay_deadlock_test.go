package sqlstore_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/sqlstore"
	"github.com/gdprkit/privacy/txscope"
)

// TestRetentionSurvivesADeadlockWithReplay: an operator replays the dead
// letters of ada and bob, bob's (larger id) first, while retention expires
// both: Replay holds bob's row and wants ada's, Expire (ORDER BY id) holds
// ada's and wants bob's. PostgreSQL breaks the deadlock; the run must still
// finish, Replay succeed (or fail retryably), and nothing expired stay queued.
func TestRetentionSurvivesADeadlockWithReplay(t *testing.T) {
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
			privacy.WithDelivery(privacy.Delivery{Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, MaxAttempts: 1, Poll: 5 * time.Millisecond}))
		for _, u := range []string{"ada", "bob"} {
			must(t, c.Collect(ctx, privacy.Track{MessageID: "old-" + u, UserID: u, Event: "Viewed", Timestamp: time.Now().Add(-48 * time.Hour)}))
		}
		for deadline := time.Now().Add(10 * time.Second); len(dead) < 2 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			dead, _ = c.DeadLetters(ctx, "crm", 0, 10)
		}
		if len(dead) != 2 {
			t.Fatalf("dead letters: %v", dead)
		}
		c.Close()
		p.close()
	}
	off.Store(0)
	p := s.open(t)
	c := p.controller(t, nil, retentionPolicy, privacy.WithDestinations(crm), clock,
		privacy.WithDelivery(privacy.Delivery{Backoff: time.Hour, MaxBackoff: time.Hour, Poll: time.Hour}))
	ops := s.open(t)
	fn := s.Schema + ".slow_replay_insert"
	must(t, adminExec(s, `CREATE FUNCTION `+fn+`() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(1); RETURN NEW; END $$ LANGUAGE plpgsql`))
	must(t, adminExec(s, `CREATE TRIGGER slow_replay AFTER INSERT ON `+s.table("outbox")+` FOR EACH ROW WHEN (NEW.state = 'PENDING') EXECUTE FUNCTION `+fn+`()`))
	replayed := make(chan error, 1)
	var replayN int
	start := time.Now()
	go func() {
		var err error
		replayN, err = ops.data.Outbox().Replay(ctx, []uint64{dead[1].ID, dead[0].ID}, time.Now())
		replayed <- err
	}()
	time.Sleep(300 * time.Millisecond)
	rep, err := c.ApplyRetention(ctx, privacy.RetentionOptions{})
	rerr := <-replayed
	must(t, adminExec(s, `DROP TRIGGER slow_replay ON `+s.table("outbox")))
	t.Logf("took %v; retention %+v, %v; replay %d, %v", time.Since(start), rep, err, replayN, rerr)
	if err != nil || rep.Status != privacy.Finished {
		t.Errorf("ApplyRetention = %+v, %v", rep, err)
	}
	if rerr != nil && !errors.Is(rerr, txscope.ErrRetry) {
		t.Errorf("Replay = %v; want success, or a conflict to retry (PostgreSQL may break the deadlock on its side)", rerr)
	}
	got, err := p.data.Outbox().Claim(ctx, outbox.Claim{Owner: "test", Destinations: []string{"crm"},
		Now: time.Now().Add(time.Minute), Until: time.Now().Add(time.Hour), Limit: 10})
	must(t, err)
	for _, it := range got {
		if it.Message != nil {
			t.Errorf("after the run, expired message %s is queued", it.Message.MessageID)
		}
	}
}
