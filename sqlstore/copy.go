package sqlstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/gdprkit/privacy/internal/pgxcopy"
)

// Rows sent with COPY, on PostgreSQL through pgx.
//
// A statement of many rows sends them as parameters, and pgx builds each
// statement's parameters and message in buffers it shrinks back to a
// kilobyte after every statement: the rows of a large INSERT are copied
// about four times into memory allocated anew, for every statement (for a
// batch's outbox rows, about 1 MB of garbage for 150 KB of rows). COPY streams
// rows written once, by a buffer kept for the next, through pgx's connection
// (pgconn.PgConn.CopyFrom, whose own buffer is pooled; found by
// internal/pgxcopy without importing pgx). It is taken only inside a
// transaction of the Store's own on pgx's database/sql driver; any other
// driver, or a transaction of the caller's (WithExecutor), keeps the
// statement.

// copyMinRows is the fewest rows sent with COPY: fewer go in one INSERT,
// one round trip where COPY takes two (its ids are taken first).
const copyMinRows = 16

// copier returns the transaction ex that can COPY, or nil.
func copier(ex Executor) *sqlTxn {
	if t, ok := ex.(*sqlTxn); ok && t.canCopy() {
		return t
	}
	return nil
}

// canCopy reports whether the transaction's connection is pgx's. It is
// asked while the transaction runs a statement (sharedTx.mu held).
func (t *sqlTxn) canCopy() bool {
	if !t.copyAsked {
		t.copyAsked = true
		_ = t.conn.Raw(func(dc any) error {
			t.copyOK = pgxcopy.For(dc) != nil
			return nil
		})
	}
	return t.copyOK
}

// copyFrom runs query, a COPY ... FROM STDIN, on the transaction's
// connection with data as its rows, and checks that it copied rows rows.
func (t *sqlTxn) copyFrom(ctx context.Context, query string, data []byte, rows int) error {
	return t.conn.Raw(func(dc any) error {
		copyFrom := pgxcopy.For(dc)
		if copyFrom == nil {
			return pgxcopy.ErrNoCopy
		}
		n, err := copyFrom(ctx, query, bytes.NewReader(data))
		if err != nil && ctx.Err() != nil {
			// pgx closes the connection to stop a COPY, and answers
			// with the write that failed: the cause is the context's.
			return fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		if err != nil {
			return err
		}
		if n != int64(rows) {
			return fmt.Errorf("sqlstore: COPY took %d rows of %d", n, rows)
		}
		return nil
	})
}

// copyText writes rows in COPY's text format: fields separated by tabs,
// rows ended by newlines, a backslash, tab, newline or carriage return in a
// value escaped with a backslash.
type copyText struct {
	b     []byte
	inRow bool // a value of the row was written: the next one follows a tab
}

// copyBuffers keeps a few of copyText's buffers from one COPY to the next.
// Not a sync.Pool: the garbage collector empties a pool every other cycle,
// and a process collecting batches runs cycles faster than it copies.
var copyBuffers = make(chan *copyText, 4)

// maxKeptCopyBuffer is the largest buffer kept for the next COPY.
const maxKeptCopyBuffer = 1 << 20

// newCopyText returns an empty copyText with room for about size bytes.
func newCopyText(size int) *copyText {
	var c *copyText
	select {
	case c = <-copyBuffers:
	default:
		c = new(copyText)
	}
	c.b, c.inRow = c.b[:0], false
	c.b = slices.Grow(c.b, size)
	return c
}

// release keeps c for the next COPY, unless it grew too large or enough
// are kept. Only after a COPY that succeeded: after a failure, pgx may
// return before its writer stopped reading the rows.
func (c *copyText) release() {
	if cap(c.b) > maxKeptCopyBuffer {
		return
	}
	select {
	case copyBuffers <- c:
	default:
	}
}

// field starts a value: a tab unless it is the row's first.
func (c *copyText) field() {
	if c.inRow {
		c.b = append(c.b, '\t')
	}
	c.inRow = true
}

func (c *copyText) text(s string) {
	c.field()
	for i := 0; i < len(s); i++ {
		switch b := s[i]; b {
		case '\\':
			c.b = append(c.b, '\\', '\\')
		case '\t':
			c.b = append(c.b, '\\', 't')
		case '\n':
			c.b = append(c.b, '\\', 'n')
		case '\r':
			c.b = append(c.b, '\\', 'r')
		default:
			c.b = append(c.b, b)
		}
	}
}

func (c *copyText) int(n int64) {
	c.field()
	c.b = strconv.AppendInt(c.b, n, 10)
}

// time writes t as Store.ts stores it: in UTC, to the microsecond
// (truncated, as pgx truncates a time it sends; PostgreSQL would round
// more digits written as text).
func (c *copyText) time(t time.Time) {
	c.field()
	c.b = t.UTC().Truncate(time.Microsecond).AppendFormat(c.b, "2006-01-02 15:04:05.000000")
	c.b = append(c.b, '+', '0', '0')
}

// endRow ends a row.
func (c *copyText) endRow() {
	c.b = append(c.b, '\n')
	c.inRow = false
}
