package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/txscope"
)

// journalStore is the request journal: a row per request with the entry as
// JSON (times to the nanosecond), and beside it the columns that List and
// Unfinished select and order by.
type journalStore struct{ s *Store }

var _ journal.Journal = (*journalStore)(nil)

// write runs a Journal or AuditLog write. It commits on its own, so it is
// durable when it returns, except in two cases. On a Store bound to a caller's
// transaction (WithTx) it runs in that transaction. With SQLite, when ctx
// holds a txscope.Scope in which this Store's shared transaction is open, it
// runs in that transaction: SQLite has one writer, and a write on another
// connection would wait for the open transaction, which its own caller holds,
// until the busy timeout. The write then commits with the backends of the
// Scope, all or nothing.
func (s *Store) write(ctx context.Context, f func(Executor) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ran, err := s.runInSQLiteScope(ctx, f); ran {
		return err
	}
	return f(s.direct())
}

// runInSQLiteScope is the step write and writeTx share: on SQLite, it runs f
// in this Store's shared transaction of the Scope ctx holds (see write). ran
// is false when the write must go elsewhere: another dialect, no such
// transaction, or one that ended meanwhile.
func (s *Store) runInSQLiteScope(ctx context.Context, f func(Executor) error) (ran bool, err error) {
	if s.d != SQLite {
		return false, nil
	}
	scope := txscope.FromContext(ctx)
	if scope == nil {
		return false, nil
	}
	v, ok := scope.Load(s.key)
	if !ok {
		return false, nil
	}
	err = v.(*sharedTx).run(f)
	if errors.Is(err, errEnded) || errors.Is(err, ErrAborted) {
		return false, nil
	}
	return true, err
}

// writeOne runs a Journal write of one statement: in the caller's
// transaction when the Store has one, else on the pool, run again when it
// meets a conflict.
func (s *Store) writeOne(ctx context.Context, f func(Executor) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.ex != nil {
		return f(s.ex)
	}
	for attempt := 0; ; attempt++ {
		err := f(s.direct())
		if err == nil || !IsRetryable(err) || attempt+1 == migrateAttempts || ctx.Err() != nil {
			return err
		}
		if err := sleep(ctx, backoff(attempt+3)); err != nil {
			return err
		}
	}
}

// writeTx runs several statements of a Journal write as one: in the
// transaction write would use, or else in a transaction of its own, run again
// when it meets a conflict.
func (s *Store) writeTx(ctx context.Context, f func(Executor) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.ex != nil {
		return f(s.ex)
	}
	if ran, err := s.runInSQLiteScope(ctx, f); ran {
		return err
	}
	for attempt := 0; ; attempt++ {
		t, err := s.beginTxn(ctx)
		if err == nil {
			if err = f(t); err == nil {
				err = t.commit(ctx)
			} else {
				t.rollback(ctx)
			}
		}
		if err == nil || !IsRetryable(err) || attempt+1 == migrateAttempts || ctx.Err() != nil {
			return err
		}
		if err := sleep(ctx, backoff(attempt+3)); err != nil {
			return err
		}
	}
}

func (j *journalStore) Put(ctx context.Context, e *journal.Entry) error {
	if e == nil || e.ID == "" {
		return fmt.Errorf("%w: entry without an ID", journal.ErrInvalid)
	}
	if err := checkTime("Received", e.Received); err != nil {
		return fmt.Errorf("%w: request %s: %v", journal.ErrInvalid, e.ID, err)
	}
	doc, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("%w: request %s does not encode: %v", journal.ErrInvalid, e.ID, err)
	}
	hashes := slices.Clone(e.SubjectHashes)
	slices.SortFunc(hashes, func(a, b identity.Hash) int { return bytes.Compare(a[:], b[:]) })
	hashes = slices.Compact(hashes)
	s := j.s
	var version uint64
	if s.d == Postgres && len(hashes) <= chunk {
		err = s.writeOne(ctx, func(ex Executor) error {
			var err error
			version, err = putPostgres(ctx, s, ex, e, string(doc), hashes)
			return err
		})
		if !errors.Is(err, errEntryExists) {
			return j.putResult(e, version, err)
		}
		// A Version 0 write over an existing entry: in a transaction, whose
		// statements each see what a concurrent writer committed.
	}
	err = s.writeTx(ctx, func(ex Executor) error {
		if e.Version == 0 { // a new request: stored whatever is there
			err := ex.QueryRowContext(ctx, s.sql(`INSERT INTO {p}journal AS j (request_id, received, request_type, status, entry, version) VALUES ($1, $2, $3, $4, $5, 1)
			ON CONFLICT (request_id) DO UPDATE SET received = excluded.received, request_type = excluded.request_type,
				status = excluded.status, entry = excluded.entry, version = j.version + 1
			RETURNING version`),
				e.ID, s.ts(e.Received), string(e.Type), string(e.Status), string(doc)).Scan(&version)
			if err != nil {
				return err
			}
		} else { // compare-and-swap on the version the writer read
			res, err := ex.ExecContext(ctx, s.sql(`UPDATE {p}journal SET received = $2, request_type = $3, status = $4, entry = $5, version = version + 1
				WHERE request_id = $1 AND version = $6`),
				e.ID, s.ts(e.Received), string(e.Type), string(e.Status), string(doc), int64(e.Version))
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n != 1 {
				return fmt.Errorf("%w: request %s is no longer at version %d", journal.ErrConflict, e.ID, e.Version)
			}
			version = e.Version + 1
		}
		// The subject index: drop hashes the entry no longer names, add the
		// others. An unchanged entry touches no row.
		args := []any{e.ID}
		q := `DELETE FROM {p}journal_subjects WHERE request_id = $1`
		if len(hashes) > 0 && len(hashes) <= chunk {
			for _, h := range hashes {
				args = append(args, h[:])
			}
			q += ` AND id_hash NOT IN (` + placeholders(2, len(hashes)) + `)`
		}
		if _, err := ex.ExecContext(ctx, s.sql(q), args...); err != nil {
			return err
		}
		for rest := hashes; len(rest) > 0; {
			n := min(len(rest), chunk)
			var b strings.Builder
			args := []any{e.ID}
			b.WriteString(`INSERT INTO {p}journal_subjects (id_hash, request_id) VALUES `)
			for i := range rest[:n] {
				if i > 0 {
					b.WriteString(", ")
				}
				args = append(args, rest[i][:])
				fmt.Fprintf(&b, "($%d, $1)", len(args))
			}
			b.WriteString(` ON CONFLICT (id_hash, request_id) DO NOTHING`)
			if _, err := ex.ExecContext(ctx, s.sql(b.String()), args...); err != nil {
				return err
			}
			rest = rest[n:]
		}
		return nil
	})
	return j.putResult(e, version, err)
}

// putResult is Put's answer once its statements ran: the error, classified,
// or the entry's new Version set.
func (j *journalStore) putResult(e *journal.Entry, version uint64, err error) error {
	if errors.Is(err, journal.ErrConflict) {
		return err
	}
	if badText(err) {
		return fmt.Errorf("%w: request %s: %w", journal.ErrInvalid, e.ID, err)
	}
	if err != nil {
		return retryable(fmt.Errorf("sqlstore: journal put of request %s: %w", e.ID, err))
	}
	e.Version = version
	return nil
}

// errEntryExists is putPostgres's answer to a Version 0 write of an entry
// that exists: Put writes it over in a transaction instead.
var errEntryExists = errors.New("sqlstore: the journal entry exists")

// putPostgres writes e and its subject index in one statement, one round
// trip where a transaction of its own would take five: a right writes its
// entry four times or more. The index statements run only when the entry's
// write did (a compare-and-swap that finds another version writes nothing),
// and touch no row when the subjects did not change. A Version 0 write only
// inserts a new entry: over an existing one, a statement whose snapshot
// predates its wait for a concurrent writer's row lock would not see the
// index rows that writer added (errEntryExists). A compare-and-swap has no
// such wait to fear: the version it names was committed before it began.
func putPostgres(ctx context.Context, s *Store, ex Executor, e *journal.Entry, doc string, hashes []identity.Hash) (uint64, error) {
	args := []any{e.ID, s.ts(e.Received), string(e.Type), string(e.Status), doc}
	var b strings.Builder
	if e.Version == 0 { // a new request: stored whatever is there
		b.WriteString(`WITH w AS (INSERT INTO {p}journal (request_id, received, request_type, status, entry, version) VALUES ($1, $2, $3, $4, $5, 1)
			ON CONFLICT (request_id) DO NOTHING RETURNING version)`)
	} else { // compare-and-swap on the version the writer read
		args = append(args, int64(e.Version))
		b.WriteString(`WITH w AS (UPDATE {p}journal SET received = $2, request_type = $3, status = $4, entry = $5, version = version + 1
			WHERE request_id = $1 AND version = $6 RETURNING version)`)
	}
	first := len(args) + 1
	for _, h := range hashes {
		args = append(args, h[:])
	}
	b.WriteString(`, d AS (DELETE FROM {p}journal_subjects WHERE request_id = $1 AND EXISTS (SELECT 1 FROM w)`)
	if len(hashes) > 0 {
		b.WriteString(` AND id_hash NOT IN (` + placeholders(first, len(hashes)) + `)`)
	}
	b.WriteString(`)`)
	if len(hashes) > 0 {
		b.WriteString(`, i AS (INSERT INTO {p}journal_subjects (id_hash, request_id) SELECT v.h, $1 FROM (VALUES `)
		for i := range hashes {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "($%d::bytea)", first+i)
		}
		b.WriteString(`) AS v(h) WHERE EXISTS (SELECT 1 FROM w) ON CONFLICT (id_hash, request_id) DO NOTHING)`)
	}
	b.WriteString(` SELECT version FROM w`)
	var version int64
	err := ex.QueryRowContext(ctx, s.sql(b.String()), args...).Scan(&version)
	switch {
	case errors.Is(err, sql.ErrNoRows) && e.Version == 0:
		return 0, errEntryExists
	case errors.Is(err, sql.ErrNoRows):
		return 0, fmt.Errorf("%w: request %s is no longer at version %d", journal.ErrConflict, e.ID, e.Version)
	}
	return uint64(version), err
}

// decodeEntry decodes a stored entry; its Version is the row's.
func decodeEntry(doc string, version int64) (*journal.Entry, error) {
	var e journal.Entry
	if err := journal.UnmarshalEntry([]byte(doc), &e); err != nil {
		return nil, fmt.Errorf("sqlstore: stored journal entry does not decode: %w", err)
	}
	e.Version = uint64(version)
	return &e, nil
}

func (j *journalStore) Get(ctx context.Context, id string) (*journal.Entry, error) {
	var doc string
	var version int64
	err := j.s.read(ctx, func(ex Executor) error {
		return ex.QueryRowContext(ctx, j.s.sql(`SELECT entry, version FROM {p}journal WHERE request_id = $1`), id).Scan(&doc, &version)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: request %q", journal.ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: journal get of request %q: %w", id, err)
	}
	return decodeEntry(doc, version)
}

// scanEntry reads a row of List or Unfinished, whose last columns are the
// entry and its version: the columns before them into dest, and the entry
// decoded.
func scanEntry(rows *sql.Rows, dest ...any) (*journal.Entry, error) {
	var doc string
	var version int64
	if err := rows.Scan(append(dest, &doc, &version)...); err != nil {
		return nil, err
	}
	return decodeEntry(doc, version)
}

// A List cursor is the position of the last entry returned: its received time
// (Unix microseconds, as stored) and its id.
func encodeJournalCursor(received time.Time, id string) string {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(id)), uint64(received.Truncate(time.Microsecond).UnixMicro()))
	return base64.RawURLEncoding.EncodeToString(append(b, id...))
}

func decodeJournalCursor(s string) (time.Time, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) <= 8 || !utf8.Valid(b[8:]) {
		return time.Time{}, "", fmt.Errorf("%w: malformed cursor %q", journal.ErrInvalid, s)
	}
	return time.UnixMicro(int64(binary.BigEndian.Uint64(b))).UTC(), string(b[8:]), nil
}

func (j *journalStore) List(ctx context.Context, f journal.Filter) (journal.Page, error) {
	limit := f.Limit
	switch {
	case limit == 0:
		limit = 50
	case limit < 0 || limit > 1000:
		return journal.Page{}, fmt.Errorf("%w: limit %d is outside 1..1000", journal.ErrInvalid, limit)
	}
	if n := len(f.Types) + len(f.Statuses); n > maxListParams {
		return journal.Page{}, fmt.Errorf("%w: %d types and statuses, more than %d", journal.ErrInvalid, n, maxListParams)
	}
	s := j.s
	var b strings.Builder
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	b.WriteString(`SELECT received, entry, version FROM {p}journal WHERE 1 = 1`)
	if f.Cursor != "" {
		at, id, err := decodeJournalCursor(f.Cursor)
		if err != nil {
			return journal.Page{}, err
		}
		b.WriteString(" AND (received, request_id) < (" + arg(s.ts(at)) + ", " + arg(id) + ")")
	}
	for _, in := range []struct {
		col    string
		values []string
	}{{"request_type", plainStrings(f.Types)}, {"status", plainStrings(f.Statuses)}} {
		if len(in.values) == 0 {
			continue
		}
		b.WriteString(" AND " + in.col + " IN (" + placeholders(len(args)+1, len(in.values)) + ")")
		for _, v := range in.values {
			args = append(args, v)
		}
	}
	if len(f.Subjects) > 0 {
		if len(f.Subjects) > chunk {
			return journal.Page{}, fmt.Errorf("%w: %d subjects, more than %d", journal.ErrInvalid, len(f.Subjects), chunk)
		}
		b.WriteString(" AND request_id IN (SELECT request_id FROM {p}journal_subjects WHERE id_hash IN (" +
			placeholders(len(args)+1, len(f.Subjects)) + "))")
		for _, h := range f.Subjects {
			args = append(args, h[:])
		}
	}
	b.WriteString(" ORDER BY received DESC, request_id DESC LIMIT " + arg(limit+1))
	var page journal.Page
	more := false
	var lastReceived time.Time
	err := s.read(ctx, func(ex Executor) error {
		rows, err := ex.QueryContext(ctx, s.sql(b.String()), args...)
		if err != nil {
			return err
		}
		page.Entries, more = nil, false
		for rows.Next() {
			if len(page.Entries) == limit {
				more = true // the extra row asked for: there is a next page
				break
			}
			var received time.Time
			e, err := scanEntry(rows, scanTime(&received))
			if err != nil {
				rows.Close()
				return err
			}
			page.Entries = append(page.Entries, e)
			lastReceived = received
		}
		return closeRows(rows)
	})
	if err != nil {
		return journal.Page{}, fmt.Errorf("sqlstore: journal list: %w", err)
	}
	if more {
		page.Next = encodeJournalCursor(lastReceived, page.Entries[limit-1].ID)
	}
	return page, nil
}

func (j *journalStore) Unfinished(ctx context.Context) ([]*journal.Entry, error) {
	s := j.s
	var out []*journal.Entry
	err := s.read(ctx, func(ex Executor) error {
		// The statuses are literals, as in the partial index that serves the
		// query.
		rows, err := ex.QueryContext(ctx, s.sql(`SELECT entry, version FROM {p}journal
			WHERE status IN ('`+string(journal.StatusInitialized)+`', '`+string(journal.StatusRunning)+`') ORDER BY received, request_id`))
		if err != nil {
			return err
		}
		out = nil
		for rows.Next() {
			e, err := scanEntry(rows)
			if err != nil {
				rows.Close()
				return err
			}
			out = append(out, e)
		}
		return closeRows(rows)
	})
	if err != nil {
		return nil, fmt.Errorf("sqlstore: journal unfinished: %w", err)
	}
	return out, nil
}

// plainStrings converts a list of the journal's typed strings for the driver.
func plainStrings[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}
