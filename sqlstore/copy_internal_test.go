package sqlstore

import "testing"

func TestPgxStdlibConnectionCopies(t *testing.T) {
	s := openPostgres(t)
	tx, err := s.beginTxn(t.Context())
	must(t, err)
	defer tx.rollback(t.Context())
	if copier(tx) == nil {
		t.Fatal("pgx's stdlib connection cannot COPY")
	}
}
