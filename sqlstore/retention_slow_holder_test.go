package sqlstore_test

import (
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/sqlstore"
)

// TestRetentionKeepsASlowHoldersMessageBeforeTheDeletion: a deliverer (slow-host) claimed
// ada's queued message of an old event, with a 30 s lease, and is still
// calling the destination; its renewal is late, so its lease lapsed two
// seconds ago. Erasing ada then keeps the row (Purge: "a message a
// deliverer holds (its lease lapsed or not) stays"), emptied and held for
// emptiedLeases leases past its lease (hold_until), so ada's deletion is
// not sent before slow-host's call returns. The same erasure after a
// retention run must not be weaker: Expire deletes the lapsed row, and the
// deletion goes out at once, under slow-host's call still running; the
// call's Settle then finds nothing (lost).
func TestRetentionKeepsASlowHoldersMessageBeforeTheDeletion(t *testing.T) {
	for _, retention := range []bool{false, true} {
		name := "erasure only"
		if retention {
			name = "retention then erasure"
		}
		t.Run(name, func(t *testing.T) {
			s := newSite(t, sqlstore.Postgres)
			ctx := t.Context()
			p, c, crm, off := retryingOldTrack(t, s, "x")
			// slow-host claims it with a 30 s lease and calls the destination.
			got, err := p.data.Outbox().Claim(ctx, outbox.Claim{Owner: "slow-host", Destinations: []string{"crm"},
				Now: time.Now().Add(2 * time.Hour), Until: time.Now().Add(2*time.Hour + 30*time.Second), Limit: 10})
			must(t, err)
			if len(got) != 1 {
				t.Fatalf("claimed %d", len(got))
			}
			// Its renewal is late: the lease lapsed two seconds ago.
			_, err = p.db.ExecContext(ctx, `UPDATE `+s.table("outbox")+` SET lease_until = $1 WHERE owner = 'slow-host'`,
				time.Now().Add(-2*time.Second).UTC())
			must(t, err)

			off.Store(0)
			if retention {
				rep, err := c.ApplyRetention(ctx, privacy.RetentionOptions{})
				if err != nil || rep.Events != 1 {
					t.Fatalf("ApplyRetention = %+v, %v", rep, err)
				}
				t.Logf("retention dropped %d messages", rep.Messages)
			}
			if _, err := c.Erase(ctx, identity.ID{Type: identity.TypeUserID, Value: "ada"}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second) // the controller's deliverer was woken by the erasure's deletion
			if dels := crm.Deletions(); len(dels) != 0 {
				t.Errorf("ada's deletion was sent to crm while slow-host's call about ada still runs (%d deletions)", len(dels))
			}
			lost, err := p.data.Outbox().Settle(ctx, "slow-host", []outbox.Answer{{ID: got[0].ID, State: outbox.Delivered}})
			must(t, err)
			if lost != 0 {
				t.Errorf("slow-host's Settle of its call lost %d answers", lost)
			}
		})
	}
}
