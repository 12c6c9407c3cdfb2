package sqlstore_test

// Erasure shreds, then purges: the person is unreadable from the erasure's
// commit, which destroys their data key; their sealed rows are purged after
// it, and a crash or a failure in between leaves the request to Recover.

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/sqlstore"
)

// purgingProfiles is a sealing profile store whose Purge runs the armed hook
// first. Its transactions are the store's own, so DeleteShredded is there.
type purgingProfiles struct {
	sealingStore
	onPurge atomic.Pointer[func(context.Context) error]
}

func (f *purgingProfiles) Purge(ctx context.Context, pids []identity.ProfileID) (int64, error) {
	if h := f.onPurge.Load(); h != nil {
		if err := (*h)(ctx); err != nil {
			return 0, err
		}
	}
	return f.sealingStore.(profile.Purger).Purge(ctx, pids)
}

// purgeBackend is the receipt's name for the purge after an erasure.
const purgeBackend = "profiles purge"

// rowsLeft counts pid's rows in the data database: all its messages, the
// events among them kept in clear, and its listing in profile_purges.
func (s *site) rowsLeft(t testing.TB, pid identity.ProfileID) (messages, clearEvents, listed int) {
	t.Helper()
	db := s.dataDB(t)
	for _, c := range []struct {
		n     *int
		query string
	}{
		{&messages, "SELECT COUNT(*) FROM " + s.table("profile_messages") + " WHERE profile_id = $1"},
		{&clearEvents, "SELECT COUNT(*) FROM " + s.table("profile_messages") + " WHERE profile_id = $1 AND sealed IS NULL AND ts IS NOT NULL"},
		{&listed, "SELECT COUNT(*) FROM " + s.table("profile_purges") + " WHERE profile_id = $1"},
	} {
		must(t, db.QueryRowContext(t.Context(), s.q(c.query), string(pid)).Scan(c.n))
	}
	return messages, clearEvents, listed
}

// addClearEvent writes an event for pid in clear, as a host
// WithoutEncryption, or one before migration 0009, left it.
func addClearEvent(t *testing.T, s *site, pid identity.ProfileID, canary string) {
	t.Helper()
	var at any = time.Now().UTC().Truncate(time.Microsecond)
	if s.Dialect == sqlstore.SQLite {
		at = time.Now().UnixMicro()
	}
	_, err := s.dataDB(t).ExecContext(t.Context(), s.q("INSERT INTO "+s.table("profile_messages")+
		" (profile_id, message_id, event_name, properties, ts, received_at) VALUES ($1, $2, 'Legacy', $3, $4, $4)"),
		string(pid), "legacy-"+canary, `{"note":"`+canary+`"}`, at)
	must(t, err)
}

// checkPurgeOutcome checks the receipt's purge outcome: finished, and no
// earlier than any backend's commit.
func checkPurgeOutcome(t *testing.T, r *privacy.Receipt) {
	t.Helper()
	var purge *privacy.Outcome
	var committed time.Time
	for i, o := range r.Backends {
		if o.Name == purgeBackend {
			purge = &r.Backends[i]
		} else if o.Finished.After(committed) {
			committed = o.Finished
		}
	}
	if purge == nil || purge.Status != privacy.Finished || purge.Finished.Before(committed) || committed.IsZero() {
		t.Fatalf("receipt backends %+v: want %q FINISHED after every commit", r.Backends, purgeBackend)
	}
}

// forEachSite runs f, in parallel, on a new site per dialect.
func forEachSite(t *testing.T, f func(t *testing.T, s *site)) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			f(t, newSite(t, d.dialect))
		})
	}
}

// forEachSeededSite runs f on a new site per dialect, seeded with ada and bob
// (seedCrash).
func forEachSeededSite(t *testing.T, f func(t *testing.T, s *site, ada, bob *person)) {
	forEachSite(t, func(t *testing.T, s *site) {
		ada, bob := seedCrash(t, s)
		f(t, s, ada, bob)
	})
}

// checkErased checks that the erasure r finished with its purge, and left
// nothing of ada and everything of bob.
func checkErased(t *testing.T, s *site, r *privacy.Receipt, cs []*privacy.Controller, ps []*proc, ada, bob *person) {
	t.Helper()
	checkPurgeOutcome(t, r)
	if m, c, l := s.rowsLeft(t, ada.pid); m+c+l != 0 {
		t.Errorf("after the purge ada has %d messages, %d clear events, %d listings; want none", m, c, l)
	}
	checkGone(t, s, cs, ps, ada)
	checkIntact(t, s, cs[0], bob)
}

// TestErasureShredsThenPurges: while the purge has not run, the erased
// person's sealed events are still in the database, and nobody can read
// them: the erasure's commit destroyed their key and deleted, with the
// profile and the links, every event kept in clear. Then the purge leaves
// nothing, and the receipt says when.
func TestErasureShredsThenPurges(t *testing.T) {
	forEachSeededSite(t, func(t *testing.T, s *site, ada, bob *person) {
		ctx := t.Context()
		addClearEvent(t, s, ada.pid, "legacy-canary-"+ada.uid)
		if _, clear, _ := s.rowsLeft(t, ada.pid); clear != 1 {
			t.Fatalf("ada has %d events in clear; want the one written without keys", clear)
		}
		p := s.open(t)
		defer p.close()
		pp := &purgingProfiles{sealingStore: profilesOf(p.data)}
		c := p.controller(t, pp)
		reader := s.open(t)
		defer reader.close()
		other := reader.controller(t, nil)

		var messages, clear, listed int
		var profileErr, eventsErr, exportErr error
		hold := func(ctx context.Context) error {
			messages, clear, listed = s.rowsLeft(t, ada.pid)
			_, profileErr = other.Profile(ctx, userID(ada))
			_, eventsErr = reader.data.Profiles().Events(ctx, ada.pid, profile.EventQuery{})
			_, exportErr = other.Access(ctx, userID(ada))
			return nil
		}
		pp.onPurge.Store(&hold)
		r, err := c.Erase(ctx, userID(ada))
		if err != nil || r.Status != privacy.Finished {
			t.Fatalf("Erase = %+v, %v; want FINISHED", r, err)
		}
		if messages < 20 || listed != 1 {
			t.Errorf("before the purge ada has %d messages, listed %d times to purge; want her 20 sealed events left to the purge, listed once", messages, listed)
		}
		if clear != 0 {
			t.Errorf("before the purge ada still has %d events in clear; want them deleted in the erasure's commit", clear)
		}
		for what, err := range map[string]error{"Profile": profileErr, "Events": eventsErr, "Access": exportErr} {
			if !errors.Is(err, privacy.ErrNotFound) && !errors.Is(err, profile.ErrNotFound) {
				t.Errorf("%s of the erased person before the purge = %v; want not found", what, err)
			}
		}
		checkErased(t, s, r, []*privacy.Controller{c, other}, []*proc{p, reader}, ada, bob)
	})
}

// TestPurgeFailsThenRecovers: a purge that fails leaves the request RUNNING,
// saying why without the person's identifiers; Recover purges and finishes it.
func TestPurgeFailsThenRecovers(t *testing.T) {
	forEachSeededSite(t, func(t *testing.T, s *site, ada, bob *person) {
		ctx := t.Context()
		p := s.open(t)
		defer p.close()
		pp := &purgingProfiles{sealingStore: profilesOf(p.data)}
		c := p.controller(t, pp)
		fail := func(context.Context) error {
			return errors.New("the database went away while purging " + ada.uid)
		}
		pp.onPurge.Store(&fail)
		r, err := c.Erase(ctx, userID(ada))
		if err != nil || r.Status != privacy.Running {
			t.Fatalf("Erase with a failing purge = %+v, %v; want RUNNING", r, err)
		}
		var saw bool
		for _, o := range r.Backends {
			if o.Name == purgeBackend {
				saw = o.Status == privacy.Running && o.Err != ""
				if strings.Contains(o.Err, ada.uid) {
					t.Errorf("the purge's error %q names the person", o.Err)
				}
			}
		}
		if !saw {
			t.Errorf("receipt backends %+v: want %q RUNNING with its error", r.Backends, purgeBackend)
		}
		if m, _, l := s.rowsLeft(t, ada.pid); m == 0 || l != 1 {
			t.Errorf("after the failed purge ada has %d messages, listed %d; want them left and listed", m, l)
		}
		if _, err := c.Profile(ctx, userID(ada)); !errors.Is(err, privacy.ErrNotFound) {
			t.Errorf("Profile before the purge = %v; want ErrNotFound", err)
		}
		pp.onPurge.Store(nil)
		if n, err := c.Recover(ctx); n != 1 || err != nil {
			t.Fatalf("Recover = %d, %v; want 1, nil", n, err)
		}
		r, err = c.Status(ctx, r.ID)
		if err != nil || r.Status != privacy.Finished {
			t.Fatalf("Status after Recover = %+v, %v; want FINISHED", r, err)
		}
		checkErased(t, s, r, []*privacy.Controller{c}, []*proc{p}, ada, bob)
	})
}

// TestCrashBeforeThePurge: the process dies (os.Exit) after the erasure's
// commit, as the purge starts. The person is unreadable already; a new
// process's Recover purges their rows and finishes the request.
func TestCrashBeforeThePurge(t *testing.T) {
	forEachSeededSite(t, func(t *testing.T, s *site, ada, bob *person) {
		ctx := t.Context()
		runCrashingChild(t, s, "TestCrashBeforeThePurgeChild", "GDPRKIT_PURGE_CRASH_CHILD", "at the purge", "GDPRKIT_CRASH_SUBJECT="+ada.uid)

		if m, _, l := s.rowsLeft(t, ada.pid); m < 20 || l != 1 {
			t.Fatalf("after the crash ada has %d messages, listed %d; want her sealed events left, listed to purge", m, l)
		}
		p := s.open(t)
		defer p.close()
		c := p.controller(t, nil)
		if _, err := c.Profile(ctx, userID(ada)); !errors.Is(err, privacy.ErrNotFound) {
			t.Errorf("Profile after the crash, before Recover = %v; want ErrNotFound", err)
		}
		if _, err := p.data.Profiles().Events(ctx, ada.pid, profile.EventQuery{}); !errors.Is(err, profile.ErrNotFound) {
			t.Errorf("Events after the crash, before Recover = %v; want profile.ErrNotFound", err)
		}
		un, err := p.jrnl.Journal().Unfinished(ctx)
		must(t, err)
		if len(un) != 1 || !un[0].Decided {
			t.Fatalf("after the crash the journal shows %d unfinished requests (%+v); want the decided erasure", len(un), un)
		}
		if n, err := c.Recover(ctx); n != 1 || err != nil {
			t.Fatalf("Recover = %d, %v; want 1, nil", n, err)
		}
		r, err := c.Status(ctx, un[0].ID)
		if err != nil || r.Status != privacy.Finished {
			t.Fatalf("Status after Recover = %+v, %v; want FINISHED", r, err)
		}
		checkErased(t, s, r, []*privacy.Controller{c}, []*proc{p}, ada, bob)
	})
}

// TestCrashBeforeThePurgeChild is the process TestCrashBeforeThePurge
// starts: it erases the subject and dies as the purge starts.
func TestCrashBeforeThePurgeChild(t *testing.T) {
	s := childSite(t, "GDPRKIT_PURGE_CRASH_CHILD", "the process TestCrashBeforeThePurge starts, and crashes")
	p := s.open(t)
	pp := &purgingProfiles{sealingStore: profilesOf(p.data)}
	c := p.controller(t, pp)
	die := func(context.Context) error {
		os.Exit(crashExitCode)
		return nil
	}
	pp.onPurge.Store(&die)
	r, err := c.Erase(t.Context(), identity.ID{Type: identity.TypeUserID, Value: os.Getenv("GDPRKIT_CRASH_SUBJECT")})
	t.Fatalf("Erase = %+v, %v; the process should have died at the purge", r, err)
}

// TestPurgeLeavesTheLiving: Purge touches only what an erasure listed.
func TestPurgeLeavesTheLiving(t *testing.T) {
	forEachSeededSite(t, func(t *testing.T, s *site, ada, bob *person) {
		p := s.open(t)
		defer p.close()
		c := p.controller(t, nil)
		purger := p.data.Profiles().(profile.Purger)
		for _, pids := range [][]identity.ProfileID{{ada.pid, bob.pid}, nil} {
			if n, err := purger.Purge(t.Context(), pids); n != 0 || err != nil {
				t.Errorf("Purge(%v) = %d, %v; want 0, nil", pids, n, err)
			}
		}
		checkIntact(t, s, c, ada)
		checkIntact(t, s, c, bob)
	})
}

// TestRunPurgesWhatIsListed: a listing no request purges any more (left by
// a host of an older version, say) is purged by Run's recovery round.
func TestRunPurgesWhatIsListed(t *testing.T) {
	forEachSeededSite(t, func(t *testing.T, s *site, ada, bob *person) {
		ctx := t.Context()
		p := s.open(t)
		defer p.close()
		c := p.controller(t, nil, privacy.WithSchedule(privacy.Schedule{Recover: 20 * time.Millisecond}))
		// Shredded and listed, behind the Controller's back.
		ktx, err := p.data.Keyring().Begin(ctx)
		must(t, err)
		must(t, ktx.Delete(ctx, ada.pid))
		must(t, ktx.Commit(ctx))
		tx, err := p.data.Profiles().Begin(ctx)
		must(t, err)
		must(t, tx.(profile.ShreddingTx).DeleteShredded(ctx, ada.pid))
		must(t, tx.Commit(ctx))
		if m, _, l := s.rowsLeft(t, ada.pid); m == 0 || l != 1 {
			t.Fatalf("ada has %d messages, listed %d; want rows listed to purge", m, l)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.Run(runCtx) }()
		deadline := time.Now().Add(10 * time.Second)
		for {
			m, c, l := s.rowsLeft(t, ada.pid)
			if m+c+l == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Run left %d messages, %d listings of ada after 10 s; want them purged", m, l)
			}
			time.Sleep(20 * time.Millisecond)
		}
		stop()
		<-done
		checkIntact(t, s, c, bob)
	})
}
