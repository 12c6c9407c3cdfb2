package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/outbox"
)

var rvT0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func rvMsg(dest string, pid identity.ProfileID, id string) outbox.Item {
	m := destination.Message{MessageID: id, Type: destination.TypeTrack, Event: "e", ProfileID: pid, Timestamp: rvT0}
	return outbox.Item{Destination: dest, Profile: pid, Message: &m, Enqueued: rvT0}
}

func rvEnqueue(t *testing.T, s *Store, items []outbox.Item) []outbox.Item {
	t.Helper()
	ctx := context.Background()
	tx, err := s.Outbox().Begin(ctx)
	must(t, err)
	must(t, tx.Enqueue(ctx, items))
	must(t, tx.Commit(ctx))
	return items
}

func rvClaim(t *testing.T, s *Store, owner string, now time.Time, limit int) []outbox.Item {
	t.Helper()
	got, err := s.Outbox().Claim(context.Background(), outbox.Claim{Owner: owner, Destinations: []string{"d"},
		Now: now, Until: now.Add(time.Minute), Limit: limit})
	must(t, err)
	return got
}

func rvNames(items []outbox.Item) []string {
	var out []string
	for _, it := range items {
		if it.Message == nil {
			out = append(out, fmt.Sprintf("<purged %d>", it.ID))
		} else {
			out = append(out, it.Message.MessageID)
		}
	}
	return out
}

// Merge keeps each item's ID: a(P1), b(P2), c(P1) enqueued in one call,
// P2 merged into P1, go out each once, P1's a before its c (sqlstore bundles
// a and c, so b goes last: an interleaving the two queues could have had
// before the merge anyway).
func TestReviewBundleMergeKeepsEachProfilesOrder(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		rvEnqueue(t, s, []outbox.Item{rvMsg("d", "P1", "a"), rvMsg("d", "P2", "b"), rvMsg("d", "P1", "c")})
		tx, err := s.Outbox().Begin(ctx)
		must(t, err)
		must(t, tx.Merge(ctx, "P1", "P2"))
		must(t, tx.Commit(ctx))
		var order []string
		for now := rvT0; len(order) < 3 && now.Before(rvT0.Add(time.Hour)); now = now.Add(time.Minute) {
			got := rvClaim(t, s, "A", now, 10)
			var answers []outbox.Answer
			for _, it := range got {
				order = append(order, it.Message.MessageID)
				answers = append(answers, outbox.Answer{ID: it.ID, State: outbox.Delivered})
			}
			_, err := s.Outbox().Settle(ctx, "A", answers)
			must(t, err)
		}
		pos := map[string]int{}
		for i, m := range order {
			pos[m] = i
		}
		if len(order) != 3 || len(pos) != 3 || pos["a"] > pos["c"] {
			t.Errorf("after the merge the person's messages went out %v; want a, b and c once each, a before c", order)
		}
	})
}

// Attempts "counts the calls that failed": a message given back unsent
// (the claim's limit cut its bundle) was never in a failed call.
func TestReviewBundleAttemptsOfUnsentSlot(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		rvEnqueue(t, s, []outbox.Item{rvMsg("d", "P", "m1"), rvMsg("d", "P", "m2")})
		now := rvT0
		for range 2 { // m1 fails twice, alone in its call
			got := rvClaim(t, s, "A", now, 1)
			if len(got) != 1 || got[0].Message.MessageID != "m1" {
				t.Fatalf("claimed %v; want [m1]", rvNames(got))
			}
			now = now.Add(time.Minute)
			_, err := s.Outbox().Settle(ctx, "A", []outbox.Answer{{ID: got[0].ID, State: outbox.Pending, NotBefore: now, Err: "down"}})
			must(t, err)
		}
		got := rvClaim(t, s, "A", now, 2)
		if len(got) != 2 {
			t.Fatalf("claimed %v; want [m1 m2]", rvNames(got))
		}
		if got[1].Attempts != 0 {
			t.Errorf("m2 was never sent, yet has Attempts %d (m1's): with MaxAttempts 3 the engine gives it up after one failed call", got[1].Attempts)
		}
	})
}

// A purged message Settle answered is removed: it is never handed out
// again, nor counted Pending.
func TestReviewBundlePurgedSettledSlotComesBack(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		rvEnqueue(t, s, []outbox.Item{rvMsg("d", "P", "m1"), rvMsg("d", "P", "m2")})
		got := rvClaim(t, s, "A", rvT0, 2)
		if len(got) != 2 {
			t.Fatalf("claimed %v", rvNames(got))
		}
		tx, err := s.Outbox().Begin(ctx)
		must(t, err)
		_, err = tx.Purge(ctx, "P")
		must(t, err)
		must(t, tx.Commit(ctx))
		lost, err := s.Outbox().Settle(ctx, "A", []outbox.Answer{{ID: got[0].ID, State: outbox.NotSupported, Err: outbox.ErasedFirst}})
		must(t, err)
		if lost != 0 {
			t.Fatalf("lost %d", lost)
		}
		st, err := s.Outbox().Stats(ctx)
		must(t, err)
		if st["d"].Pending != 1 {
			t.Errorf("Stats Pending %d after one of two held purged items was settled; want 1", st["d"].Pending)
		}
		// A dies; its lease lapses; B claims.
		again := rvClaim(t, s, "B", rvT0.Add(2*time.Minute), 10)
		for _, it := range again {
			if it.ID == got[0].ID {
				t.Errorf("item %d, settled (removed) by A, handed out again to B: %v", it.ID, rvNames(again))
			}
		}
	})
}

// A row an erasure emptied while its deliverer held it stays held for
// emptiedLeases lease lengths past its lease then, whatever its lease says meanwhile (the
// holder's renewal may be waiting for the erasure's commit), and no longer:
// a holder that died must not hold the person's deletion back for ever. A
// holder that gives it back lets it go at once.
func TestEmptiedHeldRowStaysHeld(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		rvEnqueue(t, s, []outbox.Item{rvMsg("d", "P", "m1"), rvMsg("d", "Q", "q1")})
		held := rvClaim(t, s, "A", rvT0, 10) // leased until rvT0 + 1 minute
		if len(held) != 2 {
			t.Fatalf("claimed %v", rvNames(held))
		}
		tx, err := s.Outbox().Begin(ctx)
		must(t, err)
		_, err = tx.Purge(ctx, "P")
		must(t, err)
		_, err = tx.Purge(ctx, "Q")
		must(t, err)
		must(t, tx.Commit(ctx))
		var q1 uint64
		for _, it := range held {
			if it.Profile == "Q" {
				q1 = it.ID
			}
		}
		must(t, s.Outbox().Renew(ctx, "A", []uint64{q1}, time.Time{})) // A is done with Q's
		for _, c := range []struct {
			at   time.Time
			want string
		}{
			{rvT0.Add(2 * time.Minute), "[<purged " + fmt.Sprint(q1) + ">]"},               // Q's given back; P's lease lapsed, still held
			{rvT0.Add(time.Minute + emptiedLeases*time.Minute - time.Second), "[]"},        // within the grace
			{rvT0.Add(time.Minute + emptiedLeases*time.Minute + time.Second), "[<purged "}, // past it: let go
		} {
			got := fmt.Sprint(rvNames(rvClaim(t, s, "B", c.at, 10)))
			if got == "[]" && c.want != "[]" || !strings.HasPrefix(got, c.want) {
				t.Errorf("at %v B claimed %s; want %s...", c.at.Sub(rvT0), got, c.want)
			}
		}
	})
}
