package sqlstore_test

import (
	"context"
	"io"
	"log/slog"
	"os"
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
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/sqlstore"
)

// exitingAtAudienceBegin is the audience store of a process that dies (os.Exit)
// the moment anything begins an audience transaction: in a process that
// only applies retention, that is the recount that follows a page's
// committed prune.
type exitingAtAudienceBegin struct{ audience.Store }

func (a exitingAtAudienceBegin) Begin(ctx context.Context) (audience.Tx, error) {
	os.Exit(crashExitCode)
	return nil, nil
}

// TestRetentionCrashBeforeRecountRecountsOnResume: the process applying retention
// dies after its first page's prune committed and before it recounted the
// audiences of the profiles that lost events. A restarted host's Recover
// finishes the run, Refresh runs: the people whose only Viewed events were
// deleted must leave the audience "viewers" (count >= 1). They stay for
// ever: the resumed run finds nothing left to prune on them, so it recounts
// nothing, and the "stale" mark was in the dead process's memory.
func TestRetentionCrashBeforeRecountRecountsOnResume(t *testing.T) {
	forEachSite(t, func(t *testing.T, s *site) {
		s.Instance = "retention-host"
		ctx := t.Context()
		{
			p := s.open(t)
			c := p.controller(t, nil)
			must(t, c.DefineAudience(ctx, audience.Definition{Key: "viewers", Query: `event('Viewed').count() >= 1`}))
			c.Close()
			p.close()
		}
		users := seedRetentionOld(t, s, 3, 1) // each: one old Viewed, one fresh Viewed
		// Make one person whose every Viewed is old.
		{
			p := s.open(t)
			var off time.Duration = -48 * time.Hour
			c := p.controller(t, nil, privacy.WithClock(func() time.Time { return time.Now().Add(off) }))
			must(t, c.Collect(ctx, privacy.Track{MessageID: "only-old", UserID: "only-old-viewer", Event: "Viewed", Timestamp: time.Now().Add(off)}))
			c.Close()
			p.close()
		}
		_ = users
		p := s.open(t)
		c := p.controller(t, nil)
		old, err := c.Profile(ctx, identity.ID{Type: identity.TypeUserID, Value: "only-old-viewer"})
		must(t, err)
		if m, _ := c.Members(ctx, "viewers"); !slices.Contains(m, old.ID) {
			t.Fatalf("before the run the viewer is no member: %v", m)
		}
		c.Close()
		p.close()

		runCrashingChild(t, s, "TestRetentionCrashBeforeRecountChild", "GDPRKIT_REVIEW_RET_CHILD", "at the recount after its first page")

		p = s.open(t)
		c = p.controller(t, nil, retentionPolicy)
		if n, err := c.Recover(ctx); n != 1 || err != nil {
			t.Fatalf("Recover = %d, %v; want the run finished", n, err)
		}
		if _, err := c.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		page, err := c.Events(ctx, identity.ID{Type: identity.TypeUserID, Value: "only-old-viewer"}, profile.EventQuery{})
		must(t, err)
		if len(page.Events) != 0 {
			t.Fatalf("the viewer still has events %v", page.Events)
		}
		if m, _ := c.Members(ctx, "viewers"); slices.Contains(m, old.ID) {
			t.Errorf("after the crashed run was recovered (and Refresh ran), %s, whose only Viewed event retention deleted, is still in audience viewers (event('Viewed').count() >= 1): membership rests on deleted events", old.ID)
		}
	})
}

func TestRetentionCrashBeforeRecountChild(t *testing.T) {
	s := childSite(t, "GDPRKIT_REVIEW_RET_CHILD", "the process TestRetentionCrashBeforeRecountRecountsOnResume starts, and crashes")
	p := s.open(t)
	c := p.controller(t, nil, retentionPolicy, privacy.WithAudiences(exitingAtAudienceBegin{p.data.Audiences()}))
	rep, err := c.ApplyRetention(t.Context(), privacy.RetentionOptions{})
	t.Fatalf("ApplyRetention = %+v, %v; the process should have died at the recount", rep, err)
}

// TestRetentionTwoHostsStartingTogetherRunOnce: two hosts (replicas of one
// service, deployed together) start Run at the same moment on one
// PostgreSQL database with the same policy, a schedule's period after the
// last round. Of the runs they make, one goes through: the other starts
// none (a run was received within the period), or stands down for it (it
// checked before the first was journaled). Both used to go through, the
// second right after the first finished.
func TestRetentionTwoHostsStartingTogetherRunOnce(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	ctx := t.Context()
	seedRetention(t, s, 150)
	quiet := privacy.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	seen := 0
	for round := range 5 {
		// Each round a schedule's period (an hour) after the last: hosts on
		// one schedule share its rounds, and start none within a period of
		// the last run.
		off := time.Duration(round) * 2 * time.Hour
		var hosts []*privacy.Controller
		for range 2 {
			hosts = append(hosts, s.open(t).controller(t, nil, retentionPolicy, quiet, privacy.WithClock(func() time.Time { return time.Now().Add(off) })))
		}
		rctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, h := range hosts {
			wg.Add(1)
			go func() { defer wg.Done(); <-start; h.Run(rctx) }()
		}
		close(start)
		var runs []*journal.Entry
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			pg, err := s.open(t).jrnl.Journal().List(ctx, journal.Filter{Types: []journal.RequestType{privacy.Retention}, Limit: 100})
			must(t, err)
			runs = pg.Entries
			un := 0
			for _, e := range runs {
				if !e.Status.Ended() {
					un++
				}
			}
			if len(runs) > seen && un == 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		cancel()
		wg.Wait()
		for _, h := range hosts {
			h.Close()
		}
		pg, err := s.open(t).jrnl.Journal().List(ctx, journal.Filter{Types: []journal.RequestType{privacy.Retention}, Limit: 100})
		must(t, err)
		// A run that finds another unfinished with a smaller id stands
		// down, before its first page or between two: of the round's runs,
		// one goes through.
		recs, err := s.open(t).jrnl.AuditLog().Records(ctx, 0, 10000)
		must(t, err)
		worked := 0
		for _, e := range pg.Entries[:len(pg.Entries)-seen] {
			if !e.Status.Ended() {
				t.Errorf("round %d: run %s is %s", round, e.ID, e.Status)
			}
			for _, r := range recs {
				if r.RequestID == e.ID && r.Action == "finished" && !strings.HasPrefix(r.Detail, "stood down") {
					worked++
				}
			}
		}
		if worked != 1 {
			t.Errorf("round %d: of the %d RETENTION runs two hosts starting Run together made, %d went through, want 1", round, len(pg.Entries)-seen, worked)
		}
		seen = len(pg.Entries)
	}
}

// TestRetentionDropsExpiredDeadLettersSQL is the memory test's
// dead letter on both SQL dialects: the pruned event's payload stays in the
// outbox and Replay sends it, values and all.
func TestRetentionDropsExpiredDeadLettersSQL(t *testing.T) {
	forEachSite(t, func(t *testing.T, s *site) {
		ctx := t.Context()
		crm := destination.NewRecorder("crm")
		crm.FailSends(-1)
		var off atomic.Int64
		off.Store(int64(-48 * time.Hour))
		c := s.open(t).controller(t, nil, retentionPolicy, privacy.WithDestinations(crm),
			privacy.WithClock(func() time.Time { return time.Now().Add(time.Duration(off.Load())) }),
			privacy.WithDelivery(privacy.Delivery{Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, MaxAttempts: 3, Poll: 5 * time.Millisecond}))
		must(t, c.Collect(ctx, privacy.Track{MessageID: "old", UserID: "ada", Event: "Viewed", Properties: map[string]any{"note": "canary-dead-letter"}, Timestamp: time.Now().Add(-48 * time.Hour)}))
		var dead []privacy.DeadLetter
		for deadline := time.Now().Add(10 * time.Second); len(dead) == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			dead, _ = c.DeadLetters(ctx, "crm", 0, 10)
		}
		if len(dead) != 1 {
			t.Fatalf("no dead letter: %v", dead)
		}
		off.Store(0)
		rep, err := c.ApplyRetention(ctx, privacy.RetentionOptions{})
		if err != nil || rep.Events != 1 {
			t.Fatalf("ApplyRetention = %+v, %v", rep, err)
		}
		if left, _ := c.DeadLetters(ctx, "crm", 0, 10); len(left) != 0 {
			t.Errorf("after retention deleted the event its dead letter is still held: %+v", left)
		}
		crm.FailSends(0)
		if _, err := c.Replay(ctx, dead[0].ID); err != nil {
			t.Fatal(err)
		}
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		must(t, c.Flush(fctx))
		for _, m := range crm.Messages() {
			if m.MessageID == "old" {
				t.Errorf("Replay sent the event retention deleted: %v", m.Properties)
			}
		}
	})
}

// TestRetentionDropsExpiredMessagesOfABatchSQL: what one collected
// message owes a destination is queued together (one sealed row): here
// the track and the news that it brought the person into an audience.
// After a failed call they wait for a retry an hour on; retention drops the
// expired track from the row and leaves the audience news, payload intact,
// to go out first.
func TestRetentionDropsExpiredMessagesOfABatchSQL(t *testing.T) {
	forEachSite(t, func(t *testing.T, s *site) {
		ctx := t.Context()
		crm := destination.NewRecorder("crm")
		var off atomic.Int64
		off.Store(int64(-48 * time.Hour))
		p := s.open(t)
		c := p.controller(t, nil, retentionPolicy, privacy.WithDestinations(crm),
			privacy.WithClock(func() time.Time { return time.Now().Add(time.Duration(off.Load())) }),
			privacy.WithDelivery(privacy.Delivery{Backoff: time.Hour, MaxBackoff: time.Hour, Poll: 5 * time.Millisecond}))
		must(t, c.DefineAudience(ctx, audience.Definition{Key: "viewers", Query: `event('Viewed').count() >= 1`}))
		must(t, c.Collect(ctx, privacy.Identify{MessageID: "hello", UserID: "ada", Timestamp: time.Now().Add(-48 * time.Hour)}))
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		must(t, c.Flush(fctx)) // crm holds ada: it hears of her audiences
		crm.FailSends(1)
		must(t, c.Collect(ctx, privacy.Track{MessageID: "old", UserID: "ada", Event: "Viewed",
			Properties: map[string]any{"note": "canary-old"}, Timestamp: time.Now().Add(-48 * time.Hour)}))
		// queued returns the messages the queue holds and the rows of them
		// in a call.
		queued := func() (items, held int) {
			t.Helper()
			must(t, p.db.QueryRowContext(ctx, `SELECT COALESCE(SUM(items), 0), COUNT(owner) FROM `+s.table("outbox")+` WHERE state = 'PENDING'`).Scan(&items, &held))
			return items, held
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			sends, _ := crm.Calls()
			if items, held := queued(); sends == 2 && items == 2 && held == 0 {
				break
			}
			if time.Now().After(deadline) {
				items, held := queued()
				t.Fatalf("%d calls, %d messages queued, %d rows in a call; want the track and its audience news back in the queue after a failed call", sends, items, held)
			}
		}
		var rows int
		must(t, p.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+s.table("outbox")+` WHERE kind = 'sends' AND items = 2`).Scan(&rows))
		if rows != 1 {
			t.Fatalf("the track and its news are not one row: %d rows of two", rows)
		}
		off.Store(0)
		rep, err := c.ApplyRetention(ctx, privacy.RetentionOptions{})
		if err != nil || rep.Events != 1 || rep.Messages != 1 {
			t.Fatalf("ApplyRetention = %+v, %v; want the event and its queued message", rep, err)
		}
		got, err := p.data.Outbox().Claim(ctx, outbox.Claim{Owner: "test", Destinations: []string{"crm"},
			Now: time.Now().Add(2 * time.Hour), Until: time.Now().Add(3 * time.Hour), Limit: 10})
		must(t, err)
		var names []string
		for _, it := range got {
			if it.Message == nil {
				t.Fatalf("item %d has no message", it.ID)
			}
			names = append(names, it.Message.Event)
			if it.Message.MessageID == "old" {
				t.Errorf("the expired track is still queued: %v", it.Message.Properties)
			}
		}
		if len(got) == 0 || got[0].Message.Event != destination.AudienceEntered || got[0].Message.Properties["audience_key"] != "viewers" {
			t.Fatalf("after retention the queue hands out %v; want the audience news first, payload intact", names)
		}
	})
}
