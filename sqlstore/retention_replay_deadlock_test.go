package sqlstore_test

import (
	"errors"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
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
	dead, p, c, ops := replayAfterRetention(t, s,
		privacy.Track{MessageID: "old-ada", UserID: "ada", Event: "Viewed"}, privacy.Track{MessageID: "old-bob", UserID: "bob", Event: "Viewed"})
	fast := slowOutboxInserts(t, s, "1")
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
	fast()
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
