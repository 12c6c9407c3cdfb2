package sqlstore

import (
	"context"
	"testing"
	"time"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/outbox"
)

// A renewal of a row another transaction holds locked (a merge, an erasure
// that rolls back) lands once the lock is free, its lease counted from then
// (in the background: Renew does not wait): otherwise another host claims a
// message (not emptied) that a call still sends, and the person's later
// message with it.
func TestRenewWaitsForALockedHeldRow(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		lock func(t *testing.T, tx outbox.Tx)
		end  func(tx outbox.Tx) error
	}{
		{"merge-commit", func(t *testing.T, tx outbox.Tx) { must(t, tx.Merge(ctx, "Q", "P")) }, func(tx outbox.Tx) error { return tx.Commit(ctx) }},
		{"purge-rollback", func(t *testing.T, tx outbox.Tx) {
			_, err := tx.Purge(ctx, "P")
			must(t, err)
		}, func(tx outbox.Tx) error { return tx.Rollback(ctx) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := openPostgres(t)
			rvEnqueue(t, s, []outbox.Item{rvMsg("d", "P", "m1")})
			m2 := rvMsg("d", "P", "m2")
			m2.Enqueued = rvT0.Add(time.Second)
			rvEnqueue(t, s, []outbox.Item{m2})
			held := rvClaim(t, s, "A", rvT0, 1) // m1, leased until rvT0+1m
			if len(held) != 1 {
				t.Fatalf("claimed %v", rvNames(held))
			}
			tx, err := s.Outbox().Begin(ctx)
			must(t, err)
			c.lock(t, tx)
			done := make(chan error, 1)
			go func() { done <- s.Outbox().Renew(ctx, "A", []uint64{held[0].ID}, rvT0.Add(10*time.Minute)) }()
			time.Sleep(300 * time.Millisecond)
			if err := c.end(tx); err != nil && c.name == "merge-commit" {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				must(t, err)
			case <-time.After(10 * time.Second):
				t.Fatal("renewal never returned")
			}
			untilRenewed(t, s)
			// A's call still runs; its renewal to +10m landed.
			got, err := s.Outbox().Claim(ctx, outbox.Claim{Owner: "B", Destinations: []string{"d"},
				Now: rvT0.Add(2 * time.Minute), Until: rvT0.Add(3 * time.Minute), Limit: 10})
			must(t, err)
			if len(got) != 0 {
				t.Errorf("A renewed m1's lease to +10m (Renew returned nil), yet at +2m B claimed %v while A's call runs: m1 sent twice at once and m2 may land before A's m1", rvNames(got))
			}
		})
	}
}

// A held deletion (not emptied) locked by a second erasure: the renewal
// waits for it in the background and then extends it, and no other host
// sends the deletion again while A's runs.
func TestRenewWaitsForAHeldDeletionDuringASecondErasure(t *testing.T) {
	ctx := context.Background()
	s := openPostgres(t)
	d := outbox.Item{Destination: "d", Profile: "P", Deletion: &destination.Deletion{ProfileID: "P"}, Enqueued: rvT0}
	rvEnqueue(t, s, []outbox.Item{d})
	held := rvClaim(t, s, "A", rvT0, 1)
	if len(held) != 1 || held[0].Deletion == nil {
		t.Fatalf("claimed %v", held)
	}
	tx, err := s.Outbox().Begin(ctx)
	must(t, err)
	_, err = tx.Purge(ctx, "P")
	must(t, err)
	done := make(chan error, 1)
	go func() { done <- s.Outbox().Renew(ctx, "A", []uint64{held[0].ID}, rvT0.Add(10*time.Minute)) }()
	time.Sleep(300 * time.Millisecond)
	must(t, tx.Commit(ctx))
	must(t, <-done)
	untilRenewed(t, s)
	got, err := s.Outbox().Claim(ctx, outbox.Claim{Owner: "B", Destinations: []string{"d"},
		Now: rvT0.Add(2 * time.Minute), Until: rvT0.Add(3 * time.Minute), Limit: 10})
	must(t, err)
	if len(got) != 0 {
		t.Errorf("A renewed its deletion's lease to +10m, yet at +2m B claimed %d item(s): the deletion again while A's runs", len(got))
	}
}

// untilRenewed waits until no renewal waits in the background for a row.
func untilRenewed(t *testing.T, s *Store) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		waiting := false
		s.renewing.Range(func(any, any) bool { waiting = true; return false })
		if !waiting {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a renewal still waits for its rows")
		}
	}
}
