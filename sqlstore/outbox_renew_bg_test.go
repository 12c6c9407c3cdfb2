package sqlstore

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/gdprkit/privacy/outbox"
)

// bgLock holds the outbox row id locked in a transaction of its own (as a
// merge or an erasure of the row's person does) until the returned func.
func bgLock(t *testing.T, s *Store, id uint64) func() {
	t.Helper()
	row, _ := splitID(id)
	tx, err := s.db.BeginTx(context.Background(), nil)
	must(t, err)
	var got int64
	must(t, tx.QueryRow(s.sql(`SELECT id FROM {p}outbox WHERE id = $1 FOR UPDATE`), row).Scan(&got))
	return func() { _ = tx.Rollback() }
}

// bgLease reads the row's owner and lease.
func bgLease(t *testing.T, s *Store, id uint64) (owner sql.NullString, until sql.NullTime) {
	row, _ := splitID(id)
	must(t, s.db.QueryRow(s.sql(`SELECT owner, lease_until FROM {p}outbox WHERE id = $1`), row).Scan(&owner, &until))
	return
}

// A's background waiter for rows [s, r] is blocked on s (S's erasure). A lost
// r meanwhile (its lease lapsed), B claimed it. B's renewal of r meets r
// locked (P's merge): its wait is suppressed because the renewing map holds
// r for A's waiter, which never renews B's lease. B's lease lapses under
// B's running call and C claims r.
func TestRenewalsOfOneRowByTwoOwners(t *testing.T) {
	ctx := context.Background()
	s := openPostgres(t)
	ms := rvMsg("d", "S", "ms")
	mr := rvMsg("d", "P", "mr")
	mr.Enqueued = rvT0.Add(time.Second)
	rvEnqueue(t, s, []outbox.Item{ms})
	rvEnqueue(t, s, []outbox.Item{mr})
	held := rvClaim(t, s, "A", rvT0.Add(2*time.Second), 2) // ms, mr until +1m
	if len(held) != 2 {
		t.Fatalf("claimed %v", rvNames(held))
	}
	sID, rID := held[0].ID, held[1].ID
	// S's erasure holds s for a while.
	erase, err := s.Outbox().Begin(ctx)
	must(t, err)
	_, err = erase.Purge(ctx, "S")
	must(t, err)
	unlockY := bgLock(t, s, rID) // a brief lock on r at A's renewal
	must(t, s.Outbox().Renew(ctx, "A", []uint64{sID, rID}, rvT0.Add(30*time.Second)))
	time.Sleep(300 * time.Millisecond)
	unlockY() // A's waiter still waits for s
	time.Sleep(100 * time.Millisecond)
	// A's lease on r lapsed (+30s); B claims r at +5m.
	got, err := s.Outbox().Claim(ctx, outbox.Claim{Owner: "B", Destinations: []string{"d"},
		Now: rvT0.Add(5 * time.Minute), Until: rvT0.Add(6 * time.Minute), Limit: 10})
	must(t, err)
	if len(got) != 1 || got[0].ID != rID {
		t.Fatalf("B claimed %v", rvNames(got))
	}
	// P's merge holds r while B renews it to +20m.
	unlockZ := bgLock(t, s, rID)
	must(t, s.Outbox().Renew(ctx, "B", []uint64{rID}, rvT0.Add(20*time.Minute)))
	time.Sleep(300 * time.Millisecond)
	unlockZ()
	time.Sleep(300 * time.Millisecond)
	must(t, erase.Commit(ctx))
	untilRenewed(t, s)
	owner, until := bgLease(t, s, rID)
	t.Logf("r: owner %v lease_until %v", owner.String, until.Time)
	got, err = s.Outbox().Claim(ctx, outbox.Claim{Owner: "C", Destinations: []string{"d"},
		Now: rvT0.Add(10 * time.Minute), Until: rvT0.Add(11 * time.Minute), Limit: 10})
	must(t, err)
	for _, it := range got {
		if it.ID == rID {
			t.Errorf("B renewed r to +20m (Renew returned nil), yet at +10m C claimed it while B's call runs: its renewal was suppressed by A's waiter's entry for the same row")
		}
	}
}

// Renew through a Store bound to the caller's transaction (WithTx) waits
// for a locked row in place, in the caller's transaction, rather than in a
// background wait that would outlive it: the lease is renewed when Renew
// returns and the caller commits.
func TestRenewInACallersTransactionWaitsInPlace(t *testing.T) {
	ctx := context.Background()
	s := openPostgres(t)
	rvEnqueue(t, s, []outbox.Item{rvMsg("d", "P", "m1")})
	held := rvClaim(t, s, "A", rvT0, 1)
	unlock := bgLock(t, s, held[0].ID) // P's merge
	tx, err := s.db.BeginTx(ctx, nil)
	must(t, err)
	renewed := make(chan error, 1)
	go func() {
		renewed <- s.WithTx(tx).Outbox().Renew(ctx, "A", []uint64{held[0].ID}, rvT0.Add(20*time.Minute))
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-renewed:
		t.Fatalf("Renew returned (%v) while the row was locked: it did not wait in place", err)
	default:
	}
	unlock()
	must(t, <-renewed)
	must(t, tx.Commit())
	_, until := bgLease(t, s, held[0].ID)
	if until.Time.Before(rvT0.Add(20 * time.Minute)) {
		t.Errorf("Renew to +20m returned nil, lease_until is %v", until.Time)
	}
}
