package sqlstore

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/outbox"
)

// SQLite, two processes (two *sql.DB on one file), an erasure whose commit
// stalls past A's lease while A's call about the person runs: A's renewal
// waits for the write lock like every write, and may lose it to B's claim
// when the erasure commits. The row the erasure emptied stays held all the
// same (emptiedLeases): B gets nothing, and sends no deletion under A's call.
func TestSlowErasureSQLiteTwoProcesses(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "x.db")
	sA := newStore(t, sqliteDB(t, path), SQLite)
	sB := newStore(t, sqliteDB(t, path), SQLite)
	rvEnqueue(t, sA, []outbox.Item{rvMsg("d", "P", "m1")})
	held := rvClaim(t, sA, "A", rvT0, 1) // leased until rvT0+1m
	if len(held) != 1 {
		t.Fatalf("claimed %v", rvNames(held))
	}
	tx, err := sA.Outbox().Begin(ctx)
	must(t, err)
	_, err = tx.Purge(ctx, "P")
	must(t, err)
	must(t, tx.Enqueue(ctx, []outbox.Item{{Destination: "d", Profile: "P", Deletion: &destination.Deletion{ProfileID: "P"}, Enqueued: rvT0}}))
	renewed := make(chan error, 1)
	go func() { renewed <- sA.Outbox().Renew(ctx, "A", []uint64{held[0].ID}, rvT0.Add(10*time.Minute)) }()
	time.Sleep(1500 * time.Millisecond) // the erasure stalls; A's renewal waits for the lock
	claimed := make(chan []outbox.Item, 1)
	go func() {
		got, err := sB.Outbox().Claim(ctx, outbox.Claim{Owner: "B", Destinations: []string{"d"},
			Now: rvT0.Add(2 * time.Minute), Until: rvT0.Add(3 * time.Minute), Limit: 10})
		if err != nil {
			t.Error(err)
		}
		claimed <- got
	}()
	time.Sleep(20 * time.Millisecond)
	must(t, tx.Commit(ctx))
	must(t, <-renewed)
	got := <-claimed
	if len(got) != 0 {
		t.Errorf("A's renewal to +10m was waiting when the erasure committed, yet B claimed %v (the emptied row A's call still sends): B drops it and sends P's deletion while A's call runs", rvNames(got))
	}
}
