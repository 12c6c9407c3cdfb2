package sqlstore_test

import (
	"strings"
	"testing"

	"github.com/gdprkit/privacy/sqlstore"
)

// An enqueue refused for a NUL character, by COPY (40 rows) or INSERT (3):
// the error quotes no value of the rows.
func TestOutboxCopyErrorsQuoteNothing(t *testing.T) {
	for _, field := range []string{"request", "destination", "profile"} {
		for _, n := range []int{40, 3} {
			s := newSite(t, sqlstore.Postgres)
			p := s.open(t)
			ctx := t.Context()
			items := copyHostileItems(n, 0)
			for i := range items {
				if items[i].Message != nil {
					items[i].Message.Properties["canary"] = "CANARYPROP"
				}
			}
			it := &items[n-1]
			switch field {
			case "request":
				it.Request = "CANARYREQ\x00"
			case "destination":
				it.Destination = "CANARYDEST\x00"
			case "profile":
				it.Profile = "use_CANARYPID\x00"
				if it.Message != nil {
					it.Message.ProfileID = it.Profile
				} else {
					it.Deletion.ProfileID = it.Profile
				}
			}
			tx, err := p.data.Outbox().Begin(ctx)
			must(t, err)
			err = tx.Enqueue(ctx, items)
			tx.Rollback(ctx)
			if err == nil || strings.Contains(err.Error(), "CANARY") {
				t.Errorf("%s with a NUL, %d items: Enqueue returned %v; want an error quoting nothing of the rows", field, n, err)
			}
		}
	}
}
