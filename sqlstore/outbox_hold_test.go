package sqlstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/outbox"
)

// claimAllAt claims (as owner) every item free at now and settles what it
// got, discarding emptied rows as the engine does; it returns what it saw.
func claimAllAt(t *testing.T, s *Store, owner string, now time.Time) []string {
	t.Helper()
	ctx := context.Background()
	var seen []string
	for i := 0; i < 5; i++ {
		got, err := s.Outbox().Claim(ctx, outbox.Claim{Owner: owner, Destinations: []string{"d"}, Now: now, Until: now.Add(time.Minute), Limit: 10})
		must(t, err)
		if len(got) == 0 {
			break
		}
		var answers []outbox.Answer
		for _, it := range got {
			switch {
			case it.Deletion != nil:
				seen = append(seen, "deletion")
				answers = append(answers, outbox.Answer{ID: it.ID, State: outbox.Delivered})
			case it.Message == nil:
				seen = append(seen, "<purged>")
				answers = append(answers, outbox.Answer{ID: it.ID, State: outbox.NotSupported, Err: outbox.ErasedFirst})
			default:
				seen = append(seen, it.Message.MessageID)
				answers = append(answers, outbox.Answer{ID: it.ID, State: outbox.Delivered})
			}
		}
		_, err = s.Outbox().Settle(ctx, owner, answers)
		must(t, err)
	}
	return seen
}

func enqueueDeletionAt(t *testing.T, s *Store, at time.Time) {
	t.Helper()
	rvEnqueue(t, s, []outbox.Item{{Destination: "d", Profile: "P", Deletion: &destination.Deletion{ProfileID: "P"}, Enqueued: at}})
}

// A row emptied while held with no hold_until (emptied by the release
// before migration 0008, whose Purge already emptied held rows; or any
// path that leaves hold_until NULL): freeRow's NOT (... AND hold_until >=
// $1) is NULL, not true, so the row is never free again, and the person's
// deletion behind it never goes out, even after its holder died.
func TestEmptiedRowWithoutHoldIsFreeAtItsLease(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		rvEnqueue(t, s, []outbox.Item{rvMsg("d", "P", "m1")})
		if got := rvClaim(t, s, "A", rvT0, 10); len(got) != 1 {
			t.Fatalf("claimed %v", rvNames(got))
		}
		// What 0007's Purge left: payload NULL, owner kept; 0008 adds
		// leased_for 0 and hold_until NULL.
		if _, err := s.db.ExecContext(ctx, s.sql(`UPDATE {p}outbox SET payload = NULL, hold_until = NULL, leased_for = 0 WHERE profile_id = 'P'`)); err != nil {
			t.Fatal(err)
		}
		enqueueDeletionAt(t, s, rvT0.Add(time.Second))
		// A died. A year later:
		seen := claimAllAt(t, s, "B", rvT0.Add(365*24*time.Hour))
		if fmt.Sprint(seen) != "[<purged> deletion]" {
			t.Errorf("a year after A's lease B saw %v; want [<purged> deletion]: the emptied row stays held for ever and the person's deletion never goes", seen)
		}
	})
}

// Renew must not record leased_for as until minus the wall clock, since
// leases (Claim.Now, Claim.Until, Renew's until) are in the caller's time.
// A renewal in the caller's time (as every store test, storetest and any
// caller with its own clock does) gives a negative leased_for, and an
// erasure then gives the held row it empties no hold at all: the deletion
// may go while the holder's call runs (or, with a clock ahead, a hold of
// years).
func TestRenewInTheCallersTimeKeepsTheHold(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		rvEnqueue(t, s, []outbox.Item{rvMsg("d", "P", "m1")})
		held := rvClaim(t, s, "A", rvT0, 10) // leased to +1m, leased_for 1m
		if len(held) != 1 {
			t.Fatalf("claimed %v", rvNames(held))
		}
		must(t, s.Outbox().Renew(ctx, "A", []uint64{held[0].ID}, rvT0.Add(2*time.Minute))) // a 1m lease from +1m
		var leasedFor int64
		must(t, s.db.QueryRowContext(ctx, s.sql(`SELECT leased_for FROM {p}outbox WHERE profile_id = 'P'`)).Scan(&leasedFor))
		tx, err := s.Outbox().Begin(ctx)
		must(t, err)
		_, err = tx.Purge(ctx, "P")
		must(t, err)
		must(t, tx.Commit(ctx))
		enqueueDeletionAt(t, s, rvT0.Add(time.Second))
		// Just past A's lease (+2m): the hold (10 leases) should keep it.
		seen := claimAllAt(t, s, "B", rvT0.Add(2*time.Minute+time.Second))
		if len(seen) != 0 {
			t.Errorf("leased_for after Renew = %v; 1s past A's lease B saw %v: the emptied row had no hold, and the deletion went while A's call may run", time.Duration(leasedFor)*time.Microsecond, seen)
		}
	})
}
