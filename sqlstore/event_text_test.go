package sqlstore

import (
	"errors"
	"testing"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// UpdateBatch refuses, before any statement, text PostgreSQL's text
// refuses, "so that the caller may go on without the bad update": the
// event's new Source and Type columns are not checked, so a NUL in them
// aborts the PostgreSQL transaction instead.
func TestUpdateBatchChecksEventSourceAndType(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		if s.d != Postgres {
			t.Skip("PostgreSQL's text only")
		}
		ctx := t.Context()
		p := identity.ProfileID("use_p")
		for name, ev := range map[string]profile.Event{
			"source": {MessageID: "m2", Name: "E", Source: "web\x00", Timestamp: t0, ReceivedAt: t0},
			"type":   {MessageID: "m2", Name: "E", Type: "page\xff", Timestamp: t0, ReceivedAt: t0},
		} {
			view, _, _ := countedView(t, s)
			tx := profileTxn(t, view.Profiles())
			bad := msg(p, "m2", 2, nil)
			bad.Event = &ev
			_, err := tx.(profile.BatchTx).UpdateBatch(ctx, []profile.BatchUpdate{msg(p, "m1", 1, nil), bad}, nil)
			if !errors.Is(err, profile.ErrInvalid) {
				t.Errorf("UpdateBatch with a bad event %s = %v; want ErrInvalid before any statement", name, err)
			}
			if _, err := tx.(profile.BatchTx).UpdateBatch(ctx, []profile.BatchUpdate{msg(p, "m1", 1, nil)}, nil); err != nil {
				t.Errorf("after a refused event %s, the transaction is unusable: %v", name, err)
			}
			_ = tx.Rollback(ctx)
		}
	})
}
