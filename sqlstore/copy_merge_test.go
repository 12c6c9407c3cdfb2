package sqlstore_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/sqlstore"
)

// 20 pairs: a(P), b(Q), c(P), Q's keyed deletion, d(Q), e(P) in one Enqueue (runs
// copied), then Q merged into P in the same transaction and in a later one:
// each once, each original profile's in order, deletions after what preceded.
func TestOutboxCopyRunsAroundAMergeKeepOrder(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		for _, sameTx := range []bool{false, true} {
			t.Run(fmt.Sprint(sealed, sameTx), func(t *testing.T) {
				s := newSite(t, sqlstore.Postgres)
				p := s.open(t)
				if sealed {
					p.controller(t, nil)
				}
				ctx := t.Context()
				at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
				msg := func(pid identity.ProfileID, id string) outbox.Item {
					m := destination.Message{MessageID: id, Type: destination.TypeTrack, Event: "e\\\t", ProfileID: pid, Timestamp: at}
					return outbox.Item{Destination: "d", Profile: pid, Message: &m, Enqueued: at}
				}
				var items, dels, late []outbox.Item
				for i := range 20 {
					P, Q := identity.ProfileID(fmt.Sprint("use_P", i)), identity.ProfileID(fmt.Sprint("use_Q", i))
					del := destination.Deletion{ProfileID: Q, RequestID: fmt.Sprint("r", i)}
					items = append(items, msg(P, fmt.Sprint(i, "-P-1a")), msg(Q, fmt.Sprint(i, "-Q-1b")), msg(P, fmt.Sprint(i, "-P-2c")))
					dels = append(dels, outbox.Item{Destination: "d", Profile: Q, Request: del.RequestID, Key: del.RequestID, Deletion: &del, Enqueued: at})
					d, e := msg(Q, fmt.Sprint(i, "-Q-3d")), msg(P, fmt.Sprint(i, "-P-4e"))
					d.Enqueued, e.Enqueued = at.Add(time.Second), at.Add(time.Second)
					late = append(late, d, e)
				}
				items = append(append(items, dels...), late...)
				p.cnt.startTrace()
				tx, err := p.data.Outbox().Begin(ctx)
				must(t, err)
				must(t, tx.Enqueue(ctx, items))
				if sameTx {
					for i := range 20 {
						must(t, tx.Merge(ctx, identity.ProfileID(fmt.Sprint("use_P", i)), identity.ProfileID(fmt.Sprint("use_Q", i))))
					}
				}
				must(t, tx.Commit(ctx))
				if !tracedCopy(p.cnt.stopTrace()) {
					t.Fatal("no COPY")
				}
				if !sameTx {
					tx, err := p.data.Outbox().Begin(ctx)
					must(t, err)
					for i := range 20 {
						must(t, tx.Merge(ctx, identity.ProfileID(fmt.Sprint("use_P", i)), identity.ProfileID(fmt.Sprint("use_Q", i))))
					}
					must(t, tx.Commit(ctx))
				}
				var order []string
				for now := at; now.Before(at.Add(time.Hour)); now = now.Add(time.Minute) {
					got, err := p.data.Outbox().Claim(ctx, outbox.Claim{Owner: "A", Destinations: []string{"d"}, Now: now, Until: now.Add(time.Second), Limit: 7})
					must(t, err)
					var ans []outbox.Answer
					for _, it := range got {
						if it.Message != nil {
							order = append(order, it.Message.MessageID)
						} else if it.Deletion != nil {
							order = append(order, it.Deletion.RequestID+"-del")
						} else {
							order = append(order, "purged")
						}
						ans = append(ans, outbox.Answer{ID: it.ID, State: outbox.Delivered})
					}
					_, err = p.data.Outbox().Settle(ctx, "A", ans)
					must(t, err)
				}
				pos := map[string]int{}
				for i, x := range order {
					if _, dup := pos[x]; dup {
						t.Errorf("%s twice", x)
					}
					pos[x] = i
				}
				if len(pos) != len(items) {
					t.Errorf("%d distinct of %d handed out: %v", len(pos), len(items), order)
				}
				for i := range 20 {
					seq := []string{fmt.Sprint(i, "-P-1a"), fmt.Sprint(i, "-P-2c"), fmt.Sprint(i, "-P-4e")}
					for k := 1; k < len(seq); k++ {
						if pos[seq[k-1]] > pos[seq[k]] {
							t.Errorf("%s before %s", seq[k], seq[k-1])
						}
					}
					del := fmt.Sprint("r", i, "-del")
					if pos[fmt.Sprint(i, "-Q-1b")] > pos[del] || pos[del] > pos[fmt.Sprint(i, "-Q-3d")] {
						t.Errorf("pair %d: Q's order around its deletion broken: %v", i, order)
					}
				}
			})
		}
	}
}
