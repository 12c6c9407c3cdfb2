package sqlstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gdprkit/privacy/outbox"
)

// A deliverer renewing its leases (every third of a lease, as the engine
// does) while one person's erasure holds that person's rows locked past the
// lease: its renewals must not wait for the erasure, or the other people's
// leases lapse meanwhile and another host takes a message whose call still
// runs; and the locked row's lease must hold once the erasure commits.
func TestRenewalsGoOnBehindAnErasure(t *testing.T) {
	ctx := context.Background()
	s := openPostgres(t)
	rvEnqueue(t, s, []outbox.Item{rvMsg("d", "P", "p1")})
	rvEnqueue(t, s, []outbox.Item{rvMsg("d", "Q", "q1")})
	now := time.Now()
	held, err := s.Outbox().Claim(ctx, outbox.Claim{Owner: "A", Destinations: []string{"d"}, Now: now, Until: now.Add(time.Second), Limit: 10})
	must(t, err)
	if len(held) != 2 {
		t.Fatalf("claimed %v", rvNames(held))
	}
	tx, err := s.Outbox().Begin(ctx)
	must(t, err)
	_, err = tx.Purge(ctx, "P")
	must(t, err)
	ids := []uint64{held[0].ID, held[1].ID}
	stop := make(chan struct{})
	renewed := make(chan error, 1)
	go func() {
		for {
			start := time.Now()
			if err := s.Outbox().Renew(ctx, "A", ids, time.Now().Add(time.Second)); err != nil {
				renewed <- err
				return
			}
			if d := time.Since(start); d > 200*time.Millisecond {
				renewed <- fmt.Errorf("a renewal took %v: it waited for the erasure", d)
				return
			}
			select {
			case <-stop:
				renewed <- nil
				return
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	time.Sleep(1500 * time.Millisecond) // the erasure stalls past the lease
	n := time.Now()
	got, err := s.Outbox().Claim(ctx, outbox.Claim{Owner: "B", Destinations: []string{"d"}, Now: n, Until: n.Add(time.Minute), Limit: 10})
	must(t, err)
	must(t, tx.Commit(ctx))
	close(stop)
	must(t, <-renewed)
	if len(got) != 0 {
		t.Errorf("while A renewed behind P's erasure, B claimed %v (Q's message, its call at A still running)", rvNames(got))
	}
	time.Sleep(100 * time.Millisecond) // the background renewal of P's row lands
	n = time.Now()
	if got := rvNamesAt(t, s, "B", n); len(got) != 0 {
		t.Errorf("after the erasure committed, B claimed %v: P's emptied row, A's call about P still running", got)
	}
}

// rvNamesAt claims as owner at now and returns what it got.
func rvNamesAt(t *testing.T, s *Store, owner string, now time.Time) []string {
	t.Helper()
	got, err := s.Outbox().Claim(context.Background(), outbox.Claim{Owner: owner, Destinations: []string{"d"}, Now: now, Until: now.Add(time.Minute), Limit: 10})
	must(t, err)
	return rvNames(got)
}
