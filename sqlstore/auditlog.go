package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/identity"
)

// auditLog is the audit log: a row per record, keyed by its sequence number.
// The adapter only ever inserts into it; grant the application's database role
// no UPDATE or DELETE on the table to make that a rule of the database too.
type auditLog struct{ s *Store }

var _ audit.Log = (*auditLog)(nil)

func (l *auditLog) Append(ctx context.Context, r audit.Record) error {
	if err := checkTime("At", r.At); err != nil {
		return fmt.Errorf("audit: record %d: %v", r.Seq, err)
	}
	if r.Seq == 0 || r.Seq > 1<<62 {
		return fmt.Errorf("audit: appending record %d: sequence numbers start at 1", r.Seq)
	}
	if r.Note > 1<<62 {
		return fmt.Errorf("audit: appending record %d: note %d is out of range", r.Seq, r.Note)
	}
	s := l.s
	var added int64
	var last uint64
	var dup bool
	err := s.write(ctx, func(ex Executor) error {
		// Inserted only as the next record, and only if the request's note
		// is not stored: a gap is refused, and a second writer racing for
		// the same number (or the same note) hits the primary key (or the
		// note's unique index).
		res, err := ex.ExecContext(ctx, s.sql(`INSERT INTO {p}audit_log (seq, at, action, request_id, request_type, status, subjects, detail, hash, note)
			SELECT $1{bigint}, $2{ts}, $3{text}, $4{text}, $5{text}, $6{text}, $7{bytes}, $8{text}, $9{bytes}, $10{bigint}
			WHERE $1{bigint} = (SELECT COALESCE(MAX(seq), 0) + 1 FROM {p}audit_log)
			AND NOT EXISTS (SELECT 1 FROM {p}audit_log WHERE request_id = $4{text} AND note = $10{bigint} AND note > 0)`),
			int64(r.Seq), s.ts(r.At), r.Action, r.RequestID, r.RequestType, r.Status, hashBytes(r.Subjects), r.Detail, r.Hash[:], int64(r.Note))
		if err != nil {
			return err
		}
		if added, err = res.RowsAffected(); err != nil || added == 1 {
			return err
		}
		var max int64
		err = ex.QueryRowContext(ctx, s.sql(`SELECT COALESCE(MAX(seq), 0), EXISTS (SELECT 1 FROM {p}audit_log WHERE request_id = $1{text} AND note = $2{bigint} AND note > 0) FROM {p}audit_log`),
			r.RequestID, int64(r.Note)).Scan(&max, &dup)
		last = uint64(max)
		return err
	})
	switch {
	case err != nil && isUniqueViolation(err):
		// The primary key or the note's index: Chain appends again, and
		// then finds the note stored if that was it.
		return fmt.Errorf("%w: appending record %d: %w", audit.ErrConflict, r.Seq, err)
	case err != nil:
		return retryable(fmt.Errorf("sqlstore: audit append of record %d: %w", r.Seq, err))
	case dup:
		return fmt.Errorf("%w: request %s, note %d", audit.ErrDuplicate, r.RequestID, r.Note)
	case added != 1:
		return fmt.Errorf("%w: appending record %d, want %d", audit.ErrConflict, r.Seq, last+1)
	}
	return nil
}

const recordColumns = `seq, at, action, request_id, request_type, status, subjects, detail, hash, note`

func scanRecords(rows *sql.Rows) ([]audit.Record, error) {
	var out []audit.Record
	for rows.Next() {
		var r audit.Record
		var seq, note int64
		var subjects, hash []byte
		if err := rows.Scan(&seq, scanTime(&r.At), &r.Action, &r.RequestID, &r.RequestType, &r.Status, &subjects, &r.Detail, &hash, &note); err != nil {
			rows.Close()
			return nil, err
		}
		r.Seq, r.Note = uint64(seq), uint64(note)
		var err error
		if r.Subjects, err = bytesHashes(subjects); err != nil {
			rows.Close()
			return nil, err
		}
		if len(hash) != len(identity.Hash{}) {
			rows.Close()
			return nil, fmt.Errorf("sqlstore: record %d: stored hash is %d bytes, want %d", seq, len(hash), len(identity.Hash{}))
		}
		copy(r.Hash[:], hash)
		out = append(out, r)
	}
	return out, closeRows(rows)
}

func (l *auditLog) Records(ctx context.Context, after uint64, limit int) ([]audit.Record, error) {
	if after > 1<<62 {
		return nil, nil // beyond any sequence number stored
	}
	s := l.s
	q := `SELECT ` + recordColumns + ` FROM {p}audit_log WHERE seq > $1 ORDER BY seq`
	args := []any{int64(after)}
	if limit > 0 {
		q += ` LIMIT $2`
		args = append(args, limit)
	}
	out, err := readRows(ctx, s, q, args, scanRecords)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: audit records: %w", err)
	}
	return out, nil
}

func (l *auditLog) Last(ctx context.Context) (audit.Record, bool, error) {
	out, err := readRows(ctx, l.s, `SELECT `+recordColumns+` FROM {p}audit_log ORDER BY seq DESC LIMIT 1`, nil, scanRecords)
	if err != nil {
		return audit.Record{}, false, fmt.Errorf("sqlstore: audit last: %w", err)
	}
	if len(out) == 0 {
		return audit.Record{}, false, nil
	}
	return out[0], true, nil
}
