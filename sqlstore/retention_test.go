package sqlstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// retentionPolicy keeps events a day.
var retentionPolicy = privacy.WithRetention(privacy.RetentionPolicy{Events: 24 * time.Hour})

// seedRetention collects, for each of n people, two events two days old and
// one fresh, and returns their user ids.
func seedRetention(t testing.TB, s *site, n int) []string {
	return seedRetentionOld(t, s, n, 2)
}

// seedRetentionOld is seedRetention with old events per person.
func seedRetentionOld(t testing.TB, s *site, n, old int) []string {
	t.Helper()
	var tag [3]byte
	rand.Read(tag[:])
	var offset atomic.Int64
	p := s.open(t)
	defer p.close()
	c := p.controller(t, nil, privacy.WithClock(func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }))
	defer c.Close()
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("keep-%s-%03d", hex.EncodeToString(tag[:]), i)
	}
	for _, age := range []time.Duration{48 * time.Hour, 0} {
		offset.Store(int64(-age))
		var msgs []privacy.Message
		for _, u := range users {
			var kinds []string
			for k := range old {
				kinds = append(kinds, fmt.Sprintf("old-%d", k))
			}
			if age == 0 {
				kinds = []string{"fresh"}
			}
			for _, k := range kinds {
				msgs = append(msgs, privacy.Track{MessageID: k + "-" + u, UserID: u, Event: "Viewed",
					Properties: map[string]any{"note": k + "-secret-" + u}, Timestamp: time.Now().Add(-age)})
			}
		}
		for len(msgs) > 0 {
			n := min(len(msgs), 1000)
			must(t, c.CollectBatch(context.Background(), msgs[:n]))
			msgs = msgs[n:]
		}
	}
	return users
}

// storedEvents counts the rows of the site's profile store that hold an
// event, and those of pruned events that still hold anything of it.
func storedEvents(t testing.TB, s *site) (events, leftovers int) {
	t.Helper()
	db := s.dataDB(t)
	must(t, db.QueryRowContext(context.Background(), "SELECT count(*) FROM "+s.table("profile_messages")+" WHERE ts IS NOT NULL").Scan(&events))
	must(t, db.QueryRowContext(context.Background(), "SELECT count(*) FROM "+s.table("profile_messages")+
		" WHERE ts IS NULL AND (event_name IS NOT NULL OR properties IS NOT NULL OR sealed IS NOT NULL OR received_at IS NOT NULL OR source IS NOT NULL)").Scan(&leftovers))
	return events, leftovers
}

// TestRetentionCrashMidRun: the process applying the retention policy dies
// (os.Exit) after its first page of profiles committed. The journal shows
// the run RUNNING; a restarted host's Recover finishes it with the run's
// cutoffs: every old event gone, values and all, every fresh one kept, the
// run FINISHED and the audit chain whole.
func TestRetentionCrashMidRun(t *testing.T) {
	forEachSite(t, func(t *testing.T, s *site) {
		s.Instance = "retention-host"
		ctx := t.Context()
		users := seedRetention(t, s, 250)
		if n, left := storedEvents(t, s); n != 750 || left != 0 {
			t.Fatalf("seeded %d events (%d leftovers), want 750", n, left)
		}
		runCrashingChild(t, s, "TestRetentionCrashMidRunChild", "GDPRKIT_RETENTION_CHILD", "after its first page")
		if n, _ := storedEvents(t, s); n != 750-200 {
			t.Fatalf("after the crash %d events are stored, want %d: the first page's 100 profiles pruned, and no more", n, 750-200)
		}
		p := s.open(t)
		un, err := p.jrnl.Journal().Unfinished(ctx)
		must(t, err)
		if len(un) != 1 || un[0].Type != privacy.Retention || un[0].Status != privacy.Running {
			t.Fatalf("after the crash the journal shows %d unfinished requests (%+v); want the RETENTION run", len(un), un)
		}
		c := p.controller(t, nil, retentionPolicy)
		if n, err := c.Recover(ctx); n != 1 || err != nil {
			t.Fatalf("Recover = %d, %v; want the run finished", n, err)
		}
		if r, err := c.Status(ctx, un[0].ID); err != nil || r.Status != privacy.Finished {
			t.Fatalf("the recovered run is %+v, %v; want FINISHED", r, err)
		}
		if n, left := storedEvents(t, s); n != 250 || left != 0 {
			t.Errorf("after Recover %d events are stored (%d pruned rows still hold something); want the 250 fresh ones, nothing left of the others", n, left)
		}
		for _, u := range []string{users[0], users[249]} {
			page, err := c.Events(ctx, identity.ID{Type: identity.TypeUserID, Value: u}, profile.EventQuery{})
			if err != nil || len(page.Events) != 1 || page.Events[0].MessageID != "fresh-"+u {
				t.Errorf("%s's events after Recover: %+v, %v; want the fresh one", u, page.Events, err)
			}
		}
		if _, err := c.VerifyAudit(ctx); err != nil {
			t.Errorf("VerifyAudit after the recovered run: %v", err)
		}
	})
}

// TestRetentionCrashMidRunChild is the process TestRetentionCrashMidRun
// starts: it applies the policy and dies once its first page committed.
func TestRetentionCrashMidRunChild(t *testing.T) {
	s := childSite(t, "GDPRKIT_RETENTION_CHILD", "the process TestRetentionCrashMidRun starts, and crashes")
	p := s.open(t)
	c := p.controller(t, nil, retentionPolicy)
	rep, err := c.ApplyRetention(t.Context(), privacy.RetentionOptions{Progress: func(r privacy.RetentionReport) {
		if r.Profiles >= 100 {
			os.Exit(crashExitCode)
		}
	}})
	t.Fatalf("ApplyRetention = %+v, %v; the process should have died after its first page", rep, err)
}

// TestRetentionBesideCollection: one process applies the policy while
// another collects fresh events about the same people, on one database.
// Every writer locks, so nothing fresh is lost and nothing old is left.
func TestRetentionBesideCollection(t *testing.T) {
	forEachSite(t, func(t *testing.T, s *site) {
		ctx := t.Context()
		users := seedRetention(t, s, 300)
		pruner := s.open(t).controller(t, nil, retentionPolicy)
		collector := s.open(t).controller(t, nil)
		var wg sync.WaitGroup
		var rep *privacy.RetentionReport
		var rerr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep, rerr = pruner.ApplyRetention(context.WithoutCancel(ctx), privacy.RetentionOptions{})
		}()
		for i, u := range users {
			must(t, collector.Collect(ctx, privacy.Track{MessageID: "during-" + u, UserID: users[(i*7)%len(users)], Event: "Viewed", Timestamp: time.Now()}))
		}
		wg.Wait()
		if rerr != nil || rep.Status != privacy.Finished || rep.Events != 600 {
			t.Fatalf("ApplyRetention beside collection = %+v, %v; want 600 events deleted, FINISHED", rep, rerr)
		}
		if n, left := storedEvents(t, s); n != 600 || left != 0 {
			t.Errorf("after the run %d events are stored (%d leftovers); want 300 fresh and 300 collected during it", n, left)
		}
	})
}

// TestRetentionInactiveProfiles: a person whose profile was last written
// longer ago than the policy allows is erased by the run, journaled as a
// DELETE_INTERNAL with its condition: nothing of them is left in any table
// of the site, in clear (journal and audit log included); an active person
// is kept.
func TestRetentionInactiveProfiles(t *testing.T) {
	forEachSite(t, func(t *testing.T, s *site) {
		ctx := t.Context()
		var tag [3]byte
		rand.Read(tag[:])
		idle, busy := "idle-"+hex.EncodeToString(tag[:]), "busy-"+hex.EncodeToString(tag[:])
		var offset atomic.Int64
		p := s.open(t)
		c := p.controller(t, nil, privacy.WithClock(func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }),
			privacy.WithRetention(privacy.RetentionPolicy{InactiveProfiles: 365 * 24 * time.Hour}))
		offset.Store(int64(-400 * 24 * time.Hour))
		for _, u := range []string{idle, busy} {
			must(t, c.Collect(ctx, privacy.Identify{MessageID: "i-" + u, UserID: u, Traits: map[string]any{"email": u + "@example.com"},
				Timestamp: time.Now().Add(-400 * 24 * time.Hour)}))
		}
		offset.Store(0)
		must(t, c.Collect(ctx, privacy.Track{MessageID: "t-" + busy, UserID: busy, Event: "Back", Timestamp: time.Now()}))
		rep, err := c.ApplyRetention(ctx, privacy.RetentionOptions{})
		if err != nil || rep.Erased != 1 || rep.Status != privacy.Finished {
			t.Fatalf("ApplyRetention = %+v, %v; want the idle person erased", rep, err)
		}
		if got := s.holders(t, idle); len(got) != 0 {
			t.Errorf("the erased idle person is still held in %v", got)
		}
		if got := s.holders(t, busy); len(got) == 0 {
			t.Errorf("the search finds nothing of the active person either: it cannot tell what is left")
		}
		if _, err := c.Profile(ctx, identity.ID{Type: identity.TypeUserID, Value: busy}); err != nil {
			t.Errorf("the active person: %v", err)
		}
		un, err := p.jrnl.Journal().Unfinished(ctx)
		if err != nil || len(un) != 0 {
			t.Errorf("unfinished requests after the run: %d, %v", len(un), err)
		}
		if _, err := c.VerifyAudit(ctx); err != nil {
			t.Errorf("VerifyAudit: %v", err)
		}
	})
}
