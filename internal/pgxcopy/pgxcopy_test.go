package pgxcopy

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

// Types shaped as pgx v5's: stdlib.Conn, pgx.Conn, pgconn.PgConn and
// pgconn.CommandTag.
type (
	fakeDriverConn struct{ pg *fakePgx }
	fakePgx        struct{ pgConn *fakePgConn }
	fakePgConn     struct {
		got, query string
		err        error
	}
	fakeTag struct{ rows int64 }
)

func (c *fakeDriverConn) Conn() *fakePgx { return c.pg }
func (c *fakePgx) PgConn() *fakePgConn   { return c.pgConn }
func (t fakeTag) RowsAffected() int64    { return t.rows }
func (c *fakePgConn) CopyFrom(ctx context.Context, r io.Reader, sql string) (fakeTag, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return fakeTag{}, err
	}
	c.got, c.query = string(b), sql
	return fakeTag{rows: int64(strings.Count(c.got, "\n"))}, c.err
}

// Shaped otherwise: CopyFrom's arguments in another order; a tag without
// RowsAffected.
type (
	swappedConn   struct{}
	swappedPgx    struct{}
	swappedPgConn struct{}
	taglessConn   struct{}
	taglessPgx    struct{}
	taglessPgConn struct{}
)

func (swappedConn) Conn() *swappedPgx      { return &swappedPgx{} }
func (*swappedPgx) PgConn() *swappedPgConn { return &swappedPgConn{} }
func (*swappedPgConn) CopyFrom(ctx context.Context, sql string, r io.Reader) (fakeTag, error) {
	return fakeTag{}, nil
}
func (taglessConn) Conn() *taglessPgx      { return &taglessPgx{} }
func (*taglessPgx) PgConn() *taglessPgConn { return &taglessPgConn{} }
func (*taglessPgConn) CopyFrom(ctx context.Context, r io.Reader, sql string) (int64, error) {
	return 0, nil
}

// wrapper runs a COPY itself.
type wrapper struct{ calls int }

func (w *wrapper) CopyFrom(ctx context.Context, query string, r io.Reader) (int64, error) {
	w.calls++
	return 7, nil
}

func TestForCallsPgxShapedCopyFrom(t *testing.T) {
	pgConn := &fakePgConn{}
	copyFrom := For(&fakeDriverConn{pg: &fakePgx{pgConn: pgConn}})
	if copyFrom == nil {
		t.Fatal("For found no COPY on a pgx-shaped connection")
	}
	n, err := copyFrom(context.Background(), "COPY t FROM STDIN", strings.NewReader("a\t1\nb\t2\n"))
	if err != nil || n != 2 {
		t.Fatalf("COPY returned %d, %v; want 2 rows, no error", n, err)
	}
	if pgConn.got != "a\t1\nb\t2\n" || pgConn.query != "COPY t FROM STDIN" {
		t.Fatalf("the connection got %q for %q; want the rows and the query as given", pgConn.got, pgConn.query)
	}
	failed := errors.New("copy failed")
	pgConn.err = failed
	if _, err := copyFrom(context.Background(), "COPY t FROM STDIN", strings.NewReader("")); !errors.Is(err, failed) {
		t.Fatalf("COPY returned %v; want the connection's error", err)
	}
}

func TestForFindsNoCopyOnOtherConnections(t *testing.T) {
	for name, dc := range map[string]any{
		"nil":                nil,
		"not a connection":   "conn",
		"nil pgx connection": &fakeDriverConn{},
		"nil PgConn":         &fakeDriverConn{pg: &fakePgx{}},
		"arguments swapped":  swappedConn{},
		"tag without rows":   taglessConn{},
	} {
		if For(dc) != nil {
			t.Errorf("%s: For found a COPY; want none", name)
		}
	}
}

func TestForTakesAConnThatCopiesItself(t *testing.T) {
	w := &wrapper{}
	copyFrom := For(w)
	if copyFrom == nil {
		t.Fatal("For found no COPY on a Conn")
	}
	if n, err := copyFrom(context.Background(), "COPY", strings.NewReader("")); n != 7 || err != nil || w.calls != 1 {
		t.Fatalf("COPY returned %d, %v after %d calls; want the wrapper's 7, no error, one call", n, err, w.calls)
	}
}
