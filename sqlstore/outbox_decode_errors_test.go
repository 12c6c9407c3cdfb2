package sqlstore

import (
	"context"
	"errors"
	"math/bits"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
)

// TestOutboxDecodeErrorsQuoteNoPersonalData: stored rows that do not decode
// (single rows, bundles, deletions) fail Claim, Dead, Expire and Replay
// without quoting what they hold: encoding/json's and time's errors quote
// the value they refuse, and these errors reach logs and receipts. Before,
// a single row's error quoted it in Claim, a bundle's in Expire and Replay.
// (Found by an adversarial review.)
func TestOutboxDecodeErrorsQuoteNoPersonalData(t *testing.T) {
	const canary = "canary-ada@example.com"
	rows := []struct {
		name, kind, payload, state string
		present                    int64
	}{
		{"single timestamp", "send", `{"MessageID":"m","Type":"track","Timestamp":"` + canary + `","ReceivedAt":"` + canary + `"}`, "PENDING", 0},
		{"single type", "send", `{"MessageID":"m","Type":["` + canary + `"],"Timestamp":"2026-01-01T00:00:00Z"}`, "PENDING", 0},
		{"bundle received", "sends", `[{"id":"m","t":"track","ids":[],"tr":null,"p":null,"ts":"2026-01-01T00:00:00Z","r":"` + canary + `","src":"web"},{"id":"m2","t":"track","ids":[],"tr":null,"p":null,"ts":"2026-01-01T00:00:00Z"}]`, "PENDING", 6},
		{"bundle timestamp dead", "sends", `[{"id":"m","t":"track","ids":[],"tr":null,"p":null,"ts":"` + canary + `"},{"id":"m2","t":"track","ids":[],"tr":null,"p":null,"ts":"2026-01-01T00:00:00Z"}]`, "DEAD", 6},
		{"deletion", "delete", `{"IDs":[{"Type":"email","Value":"` + canary + `"}],"RequestID":"` + canary + `",`, "PENDING", 0},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			forEachDialect(t, func(t *testing.T, s *Store) {
				ctx := context.Background()
				var id int64
				must(t, s.db.QueryRow(s.sql(`INSERT INTO {p}outbox (destination, profile_id, request_id, kind, payload, enqueued, not_before, items, present, held, item_key, state, attempts, last_error)
					VALUES ('d', 'P', '', $1, $2, $3{ts}, $3{ts}, $4, $5, 0, '', $6, 0, '') RETURNING id`),
					r.kind, r.payload, s.ts(rvT0), max(1, bits.OnesCount64(uint64(r.present))), r.present, r.state).Scan(&id))
				calls := map[string]error{}
				_, calls["Claim"] = s.Outbox().Claim(ctx, outbox.Claim{Owner: "A", Destinations: []string{"d"}, Now: rvT0, Until: rvT0.Add(time.Minute), Limit: 10})
				_, calls["Dead"] = s.Outbox().Dead(ctx, "", 0, 10)
				tx, err := s.Outbox().Begin(ctx)
				must(t, err)
				_, calls["Expire"] = tx.(outbox.ExpiringTx).Expire(ctx, []identity.ProfileID{"P"}, profile.Cutoffs{Sources: map[string]time.Time{"web": rvT0.Add(time.Hour)}}, rvT0)
				must(t, tx.Rollback(ctx))
				_, calls["Replay"] = s.Outbox().Replay(ctx, []uint64{itemID(id, 0), itemID(id, 1), itemID(id, 2)}, rvT0)
				failed := 0
				for call, err := range calls {
					if err == nil {
						continue
					}
					failed++
					if strings.Contains(err.Error(), "canary") {
						t.Errorf("%s: the error quotes the stored data: %v", call, err)
					}
				}
				if failed == 0 {
					t.Errorf("no call failed on a row that does not decode")
				}
			})
		})
	}
}

// TestAZoneOffsetOfADayIsRefusedAtEnqueue: encoding/json refuses to write
// a time whose zone is a day or more off UTC (time.FixedZone takes one);
// a bundle's hand encoder wrote "+25:00", which no decoder reads, and the
// row then failed every claim of its destination, other people's messages
// too. Enqueue refuses it, as it does for a single row. (Found by an
// adversarial review.)
func TestAZoneOffsetOfADayIsRefusedAtEnqueue(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		for _, n := range []int{1, 2} { // a single row, a bundle
			items := make([]outbox.Item, n)
			for i := range items {
				items[i] = rvMsg("d", "P", "m"+string(rune('0'+i)))
			}
			items[n-1].Message.ReceivedAt = rvT0.In(time.FixedZone("", 25*3600))
			tx, err := s.Outbox().Begin(ctx)
			must(t, err)
			err = tx.Enqueue(ctx, items)
			must(t, tx.Rollback(ctx))
			if !errors.Is(err, outbox.ErrInvalid) {
				t.Errorf("%d messages, one a day and an hour off UTC: Enqueue = %v; want ErrInvalid", n, err)
			}
		}
		rvEnqueue(t, s, []outbox.Item{rvMsg("d", "Q", "other")})
		if got := messageIDs(rvClaim(t, s, "A", rvT0, 10)); len(got) != 1 || got[0] != "other" {
			t.Errorf("claimed %v; want other", got)
		}
	})
}
