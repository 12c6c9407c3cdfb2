package sqlstore_test

// Attacks on "erasure shreds, then purges" that an adversarial review
// found: racing purgers, a profile id written again, hosts that do not purge.

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/sqlstore"
)

// TestPurgeRacingAnotherPurger: two purgers of one erased profile at once
// (another host's Purge of the same profile, here its first batch, which
// commits while this one's first batch waits for its row locks; then the
// other host dies). This host's batch deletes fewer rows than a batch: the
// purge must go on, not stop as if done. (It stopped, and the erasure was
// FINISHED with the person's rows left for good.)
func TestPurgeRacingAnotherPurger(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	ada, _ := seedCrash(t, s)
	ctx := t.Context()
	msgs := s.table("profile_messages")
	// More sealed events than one purge batch (10,000).
	_, err := s.admin.ExecContext(ctx, `INSERT INTO `+msgs+` (profile_id, message_id, event_name, sealed, ts, received_at)
		SELECT $1, 'bulk-' || lpad(g::text, 6, '0'), 'Bulk', '\x01'::bytea, now(), now() FROM generate_series(1, 10050) g`, string(ada.pid))
	must(t, err)

	p := s.open(t)
	defer p.close()
	pp := &purgingProfiles{sealingStore: profilesOf(p.data)}
	c := p.controller(t, pp)
	hook := func(ctx context.Context) error {
		pp.onPurge.Store(nil)
		// The other host's first batch: the same statement as Purge's,
		// in flight (not committed yet).
		other, err := s.admin.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := other.ExecContext(ctx, `DELETE FROM `+msgs+` WHERE profile_id = $1 AND message_id IN
			(SELECT message_id FROM `+msgs+` WHERE profile_id = $1 LIMIT 10000)`, string(ada.pid)); err != nil {
			other.Rollback()
			return err
		}
		go func() {
			// Commit once this host's purge waits for the other's locks;
			// then the other host dies (it purges no more).
			defer other.Commit()
			for range 500 {
				var n int
				_ = s.admin.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM pg_stat_activity
					WHERE wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%'`, msgs).Scan(&n)
				if n > 0 {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
		return nil
	}
	pp.onPurge.Store(&hook)
	r, err := c.Erase(ctx, userID(ada))
	if err != nil {
		t.Fatalf("Erase: %v", err)
	}
	m, _, l := s.rowsLeft(t, ada.pid)
	if r.Status == privacy.Finished && m+l != 0 {
		t.Errorf("the erasure is FINISHED (purge outcome %+v) with %d of ada's message rows left and listed %d times to purge; "+
			"want FINISHED only once none is left", r.Backends, m, l)
	}
}

// TestShreddedProfileWrittenAgain: a profile id shredded (its key destroyed,
// DeleteShredded) and written again before the purge (the store makes it a
// new key) comes back fresh: a message id the erased profile recorded is no
// repeat, and the purge does not take the new traits and events.
func TestShreddedProfileWrittenAgain(t *testing.T) {
	forEachSeededSite(t, func(t *testing.T, s *site, ada, bob *person) {
		ctx := t.Context()
		p := s.open(t)
		defer p.close()
		_ = p.controller(t, nil) // gives the Store its keys (SealWith)
		ps := p.data.Profiles()
		ktx, err := p.data.Keyring().Begin(ctx)
		must(t, err)
		must(t, ktx.Delete(ctx, ada.pid))
		must(t, ktx.Commit(ctx))
		tx, err := ps.Begin(ctx)
		must(t, err)
		must(t, tx.(profile.ShreddingTx).DeleteShredded(ctx, ada.pid))
		must(t, tx.Commit(ctx))
		// The seed's identify recorded message id "seed-<uid>" (no event).
		now := time.Now().UTC().Truncate(time.Microsecond)
		meta := profile.Metadata{CreatedAt: now, UpdatedAt: now, Version: 1, FirstSeen: now, LastSeen: now}
		tx, err = ps.Begin(ctx)
		must(t, err)
		err = tx.Update(ctx, ada.pid, profile.Update{MessageID: "seed-" + ada.uid, Metadata: meta,
			Set: map[string]profile.Trait{"plan": {Value: "new", UpdatedAt: now}}})
		_ = tx.Rollback(ctx)
		if errors.Is(err, profile.ErrDuplicate) {
			t.Errorf("a new write to the shredded profile with a message id it had recorded = %v; want it recorded fresh", err)
		}
		tx, err = ps.Begin(ctx)
		must(t, err)
		must(t, tx.Update(ctx, ada.pid, profile.Update{MessageID: "fresh-1", Metadata: meta,
			Set:   map[string]profile.Trait{"plan": {Value: "new", UpdatedAt: now}},
			Event: &profile.Event{MessageID: "fresh-1", Name: "New", Timestamp: now, ReceivedAt: now}}))
		must(t, tx.Commit(ctx))
		if _, err := ps.(profile.Purger).Purge(ctx, nil); err != nil {
			t.Fatal(err)
		}
		got, err := ps.Get(ctx, ada.pid)
		must(t, err)
		page, err := ps.Events(ctx, ada.pid, profile.EventQuery{})
		must(t, err)
		if len(got.Traits) != 1 || len(page.Events) != 1 {
			t.Errorf("the profile written again before the purge, after it: traits %v, events %v; want its new trait and event", got.Traits, page.Events)
		}
	})
}

// decoratedProfiles forwards everything of profile.Store (its Begin returns
// the Store's own transactions, ShreddingTx included) but not Purge.
type decoratedProfiles struct{ sealingStore }

// TestDecoratorWithoutPurge: a decorator that forwards the transactions
// (ShreddingTx) but not Purge gets an erasure that deletes every row in its
// commit.
func TestDecoratorWithoutPurge(t *testing.T) {
	forEachSeededSite(t, func(t *testing.T, s *site, ada, bob *person) {
		p := s.open(t)
		defer p.close()
		c := p.controller(t, decoratedProfiles{profilesOf(p.data)})
		r, err := c.Erase(t.Context(), userID(ada))
		if err != nil || r.Status != privacy.Finished {
			t.Fatalf("Erase = %+v, %v", r, err)
		}
		if m, cl, l := s.rowsLeft(t, ada.pid); m+cl+l != 0 {
			t.Errorf("FINISHED with %d messages, %d listings left", m, l)
		}
	})
}

// TestPurgeRecoveredByAHostThatDoesNotPurge: the erasure's purge failed (RUNNING);
// the host restarts with a profile store that does not purge (a decorator):
// its Recover deletes the rows with Delete, the listing in profile_purges
// with them (it stayed for good).
func TestPurgeRecoveredByAHostThatDoesNotPurge(t *testing.T) {
	forEachSeededSite(t, func(t *testing.T, s *site, ada, bob *person) {
		ctx := t.Context()
		p := s.open(t)
		pp := &purgingProfiles{sealingStore: profilesOf(p.data)}
		c := p.controller(t, pp)
		fail := func(context.Context) error { return errors.New("database unavailable") }
		pp.onPurge.Store(&fail)
		r, err := c.Erase(ctx, userID(ada))
		if err != nil || r.Status != privacy.Running {
			t.Fatalf("Erase = %+v, %v; want RUNNING", r, err)
		}
		c.Close()
		p.close()
		q := s.open(t)
		defer q.close()
		c2 := q.controller(t, decoratedProfiles{profilesOf(q.data)})
		if n, err := c2.Recover(ctx); n != 1 || err != nil {
			t.Fatalf("Recover = %d, %v", n, err)
		}
		r, err = c2.Status(ctx, r.ID)
		if err != nil || r.Status != privacy.Finished {
			t.Fatalf("Status = %+v, %v", r, err)
		}
		if m, cl, l := s.rowsLeft(t, ada.pid); m+cl+l != 0 {
			t.Errorf("FINISHED with %d messages and %d listings of ada left", m, l)
		}
	})
}
