package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/bits"
	"time"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
)

var _ outbox.ExpiringTx = (*outboxTx)(nil)

// expiryFields are the fields of a stored message that outbox.Expired
// reads, in the single row's encoding (destination.Message's own) and a
// bundle's (bundledMessage's short keys): decoding only these leaves the
// values alone.
type expiryFields struct {
	Type       string
	Source     string
	ReceivedAt time.Time
}

type bundledExpiryFields struct {
	Type       string    `json:"t"`
	Source     string    `json:"src"`
	ReceivedAt time.Time `json:"r"`
}

func (f expiryFields) expired(c profile.Cutoffs) bool {
	return outbox.Expired(c, &destination.Message{Type: f.Type, Source: f.Source, ReceivedAt: f.ReceivedAt})
}

// Expire implements outbox.ExpiringTx. It reads the profiles' queued and
// dead message rows that no request awaits, judges each message by
// outbox.Expired, and deletes the expired ones; of a bundle, the expired
// messages no deliverer holds leave it and the rest stay, their payload
// written back without them (sealed again when it was). On PostgreSQL it
// first locks every row of the profiles, as Purge does, then reads them,
// locked, in a statement of its own: one statement that waited for a
// Replay's lock would find the replayed row deleted and not see its new
// one, committed after the statement's snapshot; and no deliverer claims a
// row between the read and the write.
func (tx *outboxTx) Expire(ctx context.Context, pids []identity.ProfileID, c profile.Cutoffs, now time.Time) (int, error) {
	for i, pid := range pids {
		if pid == "" {
			return 0, fmt.Errorf("%w: Expire: pids[%d] is empty", outbox.ErrInvalid, i)
		}
	}
	if c.Zero() || len(pids) == 0 {
		return 0, tx.check(ctx)
	}
	n := 0
	err := tx.run(ctx, func(ex Executor) error {
		n = 0
		for start := 0; start < len(pids); start += chunk {
			k, err := tx.expireChunk(ctx, ex, pids[start:min(start+chunk, len(pids))], c, now)
			if err != nil {
				return fmt.Errorf("sqlstore: outbox expire: %w", err)
			}
			n += k
		}
		return nil
	})
	return n, err
}

// expiringRow is a row Expire reads.
type expiringRow struct {
	id            int64
	dest, kind    string
	payload       string
	present, held int64
	state         string
	leaseUntil    time.Time
	leasedFor     int64 // microseconds
}

func (tx *outboxTx) expireChunk(ctx context.Context, ex Executor, pids []identity.ProfileID, c profile.Cutoffs, now time.Time) (int, error) {
	s := tx.s
	of := func(head string) *listStmt {
		ls := s.newListStmt(head, len(pids))
		ls.params(len(pids))
		for _, pid := range pids {
			ls.args = append(ls.args, string(pid))
		}
		return ls
	}
	if s.d == Postgres {
		lock := of(`SELECT id FROM {p}outbox WHERE profile_id IN (`)
		lock.sql(`) ORDER BY id FOR UPDATE`)
		// Its rows are not what the read below goes by, even when it finds
		// none: after waiting for a Replay it does not see the new row
		// (TestRetentionRacingReplayLeavesNoExpiredMessage).
		if _, err := ex.ExecContext(ctx, lock.String(), lock.args...); err != nil {
			return 0, err
		}
	}
	ls := of(`SELECT id, destination, kind, payload, present, held, state, lease_until, leased_for FROM {p}outbox WHERE profile_id IN (`)
	ls.sql(`) AND kind IN ('send', 'sends') AND request_id = '' AND state IN ('PENDING', 'DEAD') AND payload IS NOT NULL ORDER BY id`)
	if s.d == Postgres {
		ls.sql(` FOR UPDATE`)
	}
	rows, err := ex.QueryContext(ctx, ls.String(), ls.args...)
	if err != nil {
		return 0, err
	}
	var read []expiringRow
	for rows.Next() {
		var r expiringRow
		var payload sql.NullString
		if err := rows.Scan(&r.id, &r.dest, &r.kind, &payload, &r.present, &r.held, &r.state, scanTime(&r.leaseUntil), &r.leasedFor); err != nil {
			rows.Close()
			return 0, err
		}
		r.payload = payload.String
		read = append(read, r)
	}
	if err := closeRows(rows); err != nil {
		return 0, err
	}
	fk, err := s.forwardingKey()
	if err != nil {
		return 0, err
	}
	var gone []any // rows deleted whole
	n := 0
	for i := range read {
		r := &read[i]
		// A held row's messages in a call stay: Settle answers them. Of a
		// single row, the one message is in the call. Held while its lease
		// runs and emptiedLeases lease lengths more, as a row an erasure
		// emptied is: the holder's renewal may be waiting for this very
		// transaction's locks, its call still running, and a deletion
		// enqueued after the row went must not overtake that call. Past
		// that its holder is gone, and the row goes.
		held := int64(0)
		grace := time.Duration(r.leasedFor) * time.Microsecond * emptiedLeases
		if r.state == string(outbox.Pending) && !r.leaseUntil.IsZero() && !r.leaseUntil.Add(grace).Before(now.Truncate(time.Microsecond)) {
			if r.kind == kindSend {
				continue
			}
			held = r.held
		}
		if r.kind == kindSend {
			text, err := openPayloadText(fk, payloadField(kindSend, r.dest), r.payload)
			if err != nil {
				return 0, fmt.Errorf("row %d: %w", r.id, err)
			}
			var f expiryFields
			if err := json.Unmarshal([]byte(text), &f); err != nil {
				return 0, fmt.Errorf("row %d: stored message does not decode: %s", r.id, decodeFailure(err))
			}
			if f.expired(c) {
				gone, n = append(gone, r.id), n+1
			}
			continue
		}
		b, err := s.openBundle(r.id, r.dest, r.payload, r.present)
		if err != nil {
			return 0, err
		}
		var kept []json.RawMessage
		var keptMask int64
		for j, slot := range slotsOf(r.present) {
			var f bundledExpiryFields
			if err := json.Unmarshal(b.msgs[j], &f); err != nil {
				return 0, fmt.Errorf("row %d: a stored bundled message does not decode: %s", r.id, decodeFailure(err))
			}
			if held&(1<<slot) == 0 && expiryFields(f).expired(c) {
				continue
			}
			kept, keptMask = append(kept, b.msgs[j]), keptMask|1<<slot
		}
		dropped := bits.OnesCount64(uint64(r.present &^ keptMask))
		switch {
		case dropped == 0:
		case len(kept) == 0:
			gone = append(gone, r.id)
		default:
			if _, err := ex.ExecContext(ctx, s.sql(`UPDATE {p}outbox SET payload = $2, present = $3, items = $4 WHERE id = $1`),
				r.id, b.join(kept), keptMask, len(kept)); err != nil {
				return 0, err
			}
		}
		n += dropped
	}
	if len(gone) > 0 {
		ls := s.newListStmt(`DELETE FROM {p}outbox WHERE id IN (`, len(gone))
		ls.params(len(gone))
		ls.args = append(ls.args, gone...)
		ls.sql(`)`)
		if _, err := ex.ExecContext(ctx, ls.String(), ls.args...); err != nil {
			return 0, err
		}
	}
	return n, nil
}
