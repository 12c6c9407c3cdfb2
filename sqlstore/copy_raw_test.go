package sqlstore_test

import (
	"database/sql"
	"testing"

	"github.com/gdprkit/privacy/sqlstore"
	"github.com/google/go-cmp/cmp"
)

// The production path (pgx's stdlib connection, no test wrapper): hostile
// rows copied equal those inserted.
func TestOutboxCopyOnPgxsOwnPool(t *testing.T) {
	a := newSite(t, sqlstore.Postgres)
	db, err := sql.Open("pgx", a.DSN)
	must(t, err)
	defer db.Close()
	st, err := sqlstore.New(db, sqlstore.Postgres, sqlstore.WithSchema(a.Schema))
	must(t, err)
	ctx := t.Context()
	tx, err := st.Outbox().Begin(ctx)
	must(t, err)
	must(t, tx.Enqueue(ctx, copyHostileItems(48, 150<<10)))
	must(t, tx.Commit(ctx))
	var seq int64
	must(t, a.admin.QueryRowContext(ctx, "SELECT last_value FROM "+a.table("outbox_id_seq")).Scan(&seq))
	b := newSite(t, sqlstore.Postgres)
	pb := b.open(t)
	ib := copyHostileItems(48, 150<<10)
	for i := 0; i < len(ib); i += 15 {
		enqueueOn(t, pb, ib[i:min(i+15, len(ib))])
	}
	if diff := cmp.Diff(dumpOutbox(t, b), dumpOutbox(t, a)); diff != "" {
		t.Errorf("(-insert +copy):\n%.3000s", diff)
	}
}
