package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/outbox"
)

// outboxStore is the outbox: a row per item (migration 0004). Its
// transactions join the Store's shared transaction like every backend's, so
// an item is written with the change that owes it. Deliverers in any number
// of processes claim items with a lease: on PostgreSQL with FOR UPDATE SKIP
// LOCKED, so that they share the work without waiting on one another; on
// SQLite in a write transaction, which holds the database's only write lock.
type outboxStore struct{ base }

var _ outbox.Store = (*outboxStore)(nil)

// Outbox returns the outbox backend.
func (s *Store) Outbox() outbox.Store { return &outboxStore{base{s}} }

// Item kinds, as stored.
const (
	kindSend   = "send"
	kindDelete = "delete"
)

func (o *outboxStore) Begin(ctx context.Context) (outbox.Tx, error) {
	return beginTx(ctx, o.s, outbox.ErrTxDone, outbox.ErrInvalid, func(p part) outbox.Tx { return &outboxTx{base: o.base, part: p} })
}

type outboxTx struct {
	base
	part
}

// encodePayload encodes an item's message or deletion without its profile id
// (the profile_id column holds it, and Merge changes only that).
func encodePayload(it *outbox.Item) (kind, payload string, err error) {
	var v any
	if it.Message != nil {
		m := *it.Message
		m.ProfileID = ""
		kind, v = kindSend, m
	} else {
		d := *it.Deletion
		d.ProfileID = ""
		kind, v = kindDelete, d
	}
	payload, err = encodeJSON(v)
	if err != nil {
		return "", "", fmt.Errorf("%w: the item's payload does not encode as JSON: %v", outbox.ErrInvalid, err)
	}
	return kind, payload, nil
}

// decodePayload sets the item's message or deletion from its stored payload.
func decodePayload(it *outbox.Item, kind string, payload sql.NullString) error {
	if !payload.Valid {
		return nil
	}
	switch kind {
	case kindSend:
		var m destination.Message
		if err := json.Unmarshal([]byte(payload.String), &m); err != nil {
			return fmt.Errorf("sqlstore: outbox item %d: stored message does not decode: %w", it.ID, err)
		}
		m.ProfileID = it.Profile
		it.Message = &m
	case kindDelete:
		var d destination.Deletion
		if err := json.Unmarshal([]byte(payload.String), &d); err != nil {
			return fmt.Errorf("sqlstore: outbox item %d: stored deletion does not decode: %w", it.ID, err)
		}
		d.ProfileID = it.Profile
		it.Deletion = &d
	default:
		return fmt.Errorf("sqlstore: outbox item %d has kind %q", it.ID, kind)
	}
	return nil
}

func (tx *outboxTx) Enqueue(ctx context.Context, items []outbox.Item) error {
	type row struct {
		kind, payload string
	}
	rows := make([]row, len(items))
	for i := range items {
		it := &items[i]
		it.ID = 0
		if err := it.Validate(); err != nil {
			return fmt.Errorf("items[%d]: %w", i, err)
		}
		if err := checkTime("Enqueued", it.Enqueued); err != nil {
			return fmt.Errorf("items[%d]: %w: %v", i, outbox.ErrInvalid, err)
		}
		var err error
		if rows[i].kind, rows[i].payload, err = encodePayload(it); err != nil {
			return fmt.Errorf("items[%d]: %w", i, err)
		}
	}
	s := tx.s
	const newCols = 7 // the columns of a new item that differ from item to item
	return tx.run(ctx, func(ex Executor) error {
		// In the order given, so that the ids follow it: an item with a key
		// on its own, skipped when the key is there; runs of the others many
		// to a statement, their ids returned in the order of the rows (a
		// sequence numbers them as they are inserted).
		for i := 0; i < len(items); {
			if items[i].Key != "" {
				if err := enqueueKeyed(ctx, s, ex, &items[i], rows[i].kind, rows[i].payload); err != nil {
					return err
				}
				i++
				continue
			}
			// As many rows to a statement as a batch method's statement
			// carries (a round trip each on PostgreSQL).
			j := i
			for j < len(items) && items[j].Key == "" && j-i < s.batchParams()/newCols {
				j++
			}
			// The columns every new item has alike are literals: fewer
			// parameters to send and bind.
			ls := s.newListStmt(`INSERT INTO {p}outbox (destination, profile_id, request_id, kind, payload, enqueued, not_before, item_key, state, attempts, last_error) VALUES `, (j-i)*newCols)
			for k := i; k < j; k++ {
				if k > i {
					ls.b.WriteString(", ")
				}
				ls.b.WriteByte('(')
				for c := range newCols {
					if c > 0 {
						ls.b.WriteString(", ")
					}
					ls.param()
				}
				ls.b.WriteString(`, '', 'PENDING', 0, '')`)
				it := &items[k]
				ls.args = append(ls.args, it.Destination, string(it.Profile), it.Request, rows[k].kind, rows[k].payload, s.ts(it.Enqueued), s.ts(it.Enqueued))
			}
			ls.sql(` RETURNING id`)
			ids, err := queryIDs(ctx, ex, ls.b.String(), ls.args)
			if err != nil {
				return fmt.Errorf("sqlstore: outbox enqueue: %w", err)
			}
			if len(ids) != j-i {
				return fmt.Errorf("sqlstore: outbox enqueue: %d ids returned for %d rows", len(ids), j-i)
			}
			slices.Sort(ids)
			for k := i; k < j; k++ {
				items[k].ID = ids[k-i]
			}
			i = j
		}
		return nil
	})
}

// enqueueKeyed inserts an item with a key, unless its destination holds the
// key already (then its ID stays 0).
func enqueueKeyed(ctx context.Context, s *Store, ex Executor, it *outbox.Item, kind, payload string) error {
	var id int64
	err := ex.QueryRowContext(ctx, s.sql(`INSERT INTO {p}outbox (destination, profile_id, request_id, item_key, kind, payload, state, attempts, enqueued, not_before, last_error)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (destination, item_key) WHERE item_key <> '' DO NOTHING RETURNING id`),
		it.Destination, string(it.Profile), it.Request, it.Key, kind, payload, string(outbox.Pending), 0,
		s.ts(it.Enqueued), s.ts(it.Enqueued), "").Scan(&id)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("sqlstore: outbox enqueue: %w", err)
	}
	it.ID = uint64(id)
	return nil
}

// queryIDs runs a statement that returns one id per row.
func queryIDs(ctx context.Context, ex Executor, query string, args []any) ([]uint64, error) {
	rows, err := ex.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	var ids []uint64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, uint64(id))
	}
	return ids, closeRows(rows)
}

func (tx *outboxTx) Merge(ctx context.Context, into, from identity.ProfileID) error {
	if into == "" || from == "" {
		return fmt.Errorf("%w: Merge of an empty profile id", outbox.ErrInvalid)
	}
	if into == from {
		return tx.check(ctx)
	}
	return tx.run(ctx, func(ex Executor) error {
		_, err := ex.ExecContext(ctx, tx.s.sql(`UPDATE {p}outbox SET profile_id = $1 WHERE profile_id = $2`), string(into), string(from))
		if err != nil {
			return fmt.Errorf("sqlstore: outbox merge: %w", err)
		}
		return nil
	})
}

func (tx *outboxTx) Purge(ctx context.Context, pid identity.ProfileID) (int, error) {
	var n int64
	err := tx.run(ctx, func(ex Executor) error {
		if tx.s.d == Postgres {
			// The profile's rows first, all of them: each statement below
			// sees its own snapshot, and a deliverer settling or giving
			// back a held message between two of them would leave it
			// neither deleted nor emptied, to be sent after the erasure.
			// Locked, its Settle and Renew wait for the erasure's commit.
			if _, err := ex.ExecContext(ctx, tx.s.sql(`SELECT id FROM {p}outbox WHERE profile_id = $1 ORDER BY id FOR UPDATE`), string(pid)); err != nil {
				return fmt.Errorf("sqlstore: outbox purge: %w", err)
			}
		}
		res, err := ex.ExecContext(ctx, tx.s.sql(`DELETE FROM {p}outbox WHERE profile_id = $1 AND kind = 'send' AND request_id = ''
			AND (state = 'DEAD' OR state = 'PENDING' AND owner IS NULL)`), string(pid))
		if err != nil {
			return fmt.Errorf("sqlstore: outbox purge: %w", err)
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		// A request's queued message is answered: not sent, the person erased first.
		res, err = ex.ExecContext(ctx, tx.s.sql(`UPDATE {p}outbox SET state = 'NOT_SUPPORTED', payload = NULL, last_error = $2
			WHERE profile_id = $1 AND kind = 'send' AND request_id <> '' AND state = 'PENDING' AND owner IS NULL`), string(pid), outbox.ErasedFirst)
		if err != nil {
			return fmt.Errorf("sqlstore: outbox purge: %w", err)
		}
		k, err := res.RowsAffected()
		if err != nil {
			return err
		}
		n += k
		// A request's dead message keeps its answer, never its payload: it
		// is never replayed after the person's deletion. A held message
		// stays, so that nothing queued after it overtakes its call, but
		// is never delivered again: Settle removes it, whatever it answers.
		_, err = ex.ExecContext(ctx, tx.s.sql(`UPDATE {p}outbox SET payload = NULL WHERE profile_id = $1 AND kind = 'send'
			AND (request_id <> '' AND state = 'DEAD' OR state = 'PENDING' AND owner IS NOT NULL)`), string(pid))
		if err != nil {
			return fmt.Errorf("sqlstore: outbox purge: %w", err)
		}
		return nil
	})
	return int(n), err
}

// itemColumns are the columns scanItems reads; payload is NULL where the
// caller gets none.
const itemColumns = `id, destination, profile_id, request_id, item_key, kind, payload, state, attempts, enqueued, not_before, last_error`

// scanItems reads items, and closes rows.
func scanItems(rows *sql.Rows) ([]outbox.Item, error) {
	var out []outbox.Item
	for rows.Next() {
		var it outbox.Item
		var id int64
		var pid, kind, state string
		var payload sql.NullString
		if err := rows.Scan(&id, &it.Destination, &pid, &it.Request, &it.Key, &kind, &payload, &state, &it.Attempts,
			scanTime(&it.Enqueued), scanTime(&it.NotBefore), &it.LastError); err != nil {
			rows.Close()
			return nil, err
		}
		it.ID, it.Profile, it.State = uint64(id), identity.ProfileID(pid), outbox.State(state)
		if err := decodePayload(&it, kind, payload); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, it)
	}
	return out, closeRows(rows)
}

// idList returns the ids as arguments from $from on.
func idList(ids []uint64) []any {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = int64(id)
	}
	return args
}

func (o *outboxStore) Claim(ctx context.Context, c outbox.Claim) ([]outbox.Item, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if len(c.Destinations) == 0 {
		return nil, ctx.Err()
	}
	if err := checkTime("Claim.Until", c.Until); err != nil {
		return nil, fmt.Errorf("%w: %v", outbox.ErrInvalid, err)
	}
	s := o.s
	args := []any{s.ts(c.Now), c.Limit, c.Owner, s.ts(c.Until)}
	dests := placeholders(len(args)+1, len(c.Destinations))
	for _, d := range c.Destinations {
		args = append(args, d)
	}
	// heads: the oldest PENDING item of each destination and profile (leased
	// or not, due or not), when it is due and not leased: an item waits for
	// every earlier one to answer. The oldest is a scalar subquery in
	// outbox_queue's order, one probe of that index per row the scan (in id
	// order, on outbox_pending) meets, whatever the statistics say: as an
	// anti-join, a planner that thought the table small (a fresh or churned
	// outbox) compared every pair of rows. stop is the profile's first later
	// item that ends the run: a deletion, or one not due or leased.
	//
	// The update finds the rows by primary key (= ANY of an array): with
	// IN, PostgreSQL hashed a scan of the whole table for a hundred rows.
	//
	// runs: the messages after a message head, up to its stop, oldest first,
	// as many as the heads leave of the limit. Only heads are locked (SKIP
	// LOCKED on PostgreSQL): a run is reached through its head, so another
	// deliverer that skipped the head cannot take the run either.
	heads := `SELECT o.id, o.destination, o.profile_id, o.kind,
			(SELECT g.id FROM {p}outbox g WHERE g.state = 'PENDING' AND g.destination = o.destination AND g.profile_id = o.profile_id
				AND g.id > o.id AND (g.kind <> 'send' OR g.not_before > $1{ts} OR g.lease_until >= $1{ts})
				ORDER BY g.profile_id, g.destination, g.id LIMIT 1) AS stop
		FROM {p}outbox o
		WHERE o.state = 'PENDING' AND o.destination IN (` + dests + `) AND o.not_before <= $1{ts}
		AND (o.lease_until IS NULL OR o.lease_until < $1{ts})
		AND o.id = (SELECT e.id FROM {p}outbox e WHERE e.state = 'PENDING' AND e.destination = o.destination
			AND e.profile_id = o.profile_id ORDER BY e.profile_id, e.destination, e.id LIMIT 1)
		ORDER BY o.id LIMIT $2`
	runs := `SELECT f.id FROM h JOIN {p}outbox f ON f.state = 'PENDING' AND f.destination = h.destination
			AND f.profile_id = h.profile_id AND f.id > h.id
		WHERE h.kind = 'send' AND (h.stop IS NULL OR f.id < h.stop)
		ORDER BY f.id LIMIT (SELECT $2 - count(*) FROM h)`
	var q string
	if s.d == Postgres {
		q = `WITH h AS (` + heads + ` FOR UPDATE OF o SKIP LOCKED), r AS (` + runs + `)
			UPDATE {p}outbox o SET owner = $3, lease_until = $4{ts} WHERE o.id = ANY(ARRAY(SELECT id FROM h UNION ALL SELECT id FROM r))
			RETURNING ` + prefixed("o.", itemColumns)
	} else {
		q = `WITH h AS (` + heads + `), r AS (` + runs + `)
			UPDATE {p}outbox SET owner = $3, lease_until = $4 WHERE id IN (SELECT id FROM h UNION ALL SELECT id FROM r)
			RETURNING ` + itemColumns
	}
	var out []outbox.Item
	err := s.write(ctx, func(ex Executor) error {
		rows, err := ex.QueryContext(ctx, s.sql(q), args...)
		if err != nil {
			return err
		}
		out, err = scanItems(rows)
		return err
	})
	if err != nil {
		return nil, retryable(fmt.Errorf("sqlstore: outbox claim: %w", err))
	}
	slices.SortFunc(out, func(a, b outbox.Item) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// prefixed puts the prefix before each of the comma-separated columns.
func prefixed(prefix, cols string) string {
	parts := strings.Split(cols, ", ")
	for i := range parts {
		parts[i] = prefix + parts[i]
	}
	return strings.Join(parts, ", ")
}

func (o *outboxStore) Renew(ctx context.Context, owner string, ids []uint64, until time.Time) error {
	giveUp := until.IsZero()
	if err := checkTime("until", until); err != nil && !giveUp {
		return fmt.Errorf("%w: %v", outbox.ErrInvalid, err)
	}
	s := o.s
	for rest := ids; len(rest) > 0; {
		n := min(len(rest), chunk)
		var err error
		if giveUp {
			args := append([]any{owner}, idList(rest[:n])...)
			err = s.write(ctx, func(ex Executor) error {
				_, err := ex.ExecContext(ctx, s.sql(`UPDATE {p}outbox SET owner = NULL, lease_until = NULL WHERE owner = $1 AND id IN (`+placeholders(2, n)+`)`), args...)
				return err
			})
		} else {
			args := append([]any{owner, s.ts(until)}, idList(rest[:n])...)
			err = s.write(ctx, func(ex Executor) error {
				_, err := ex.ExecContext(ctx, s.sql(`UPDATE {p}outbox SET lease_until = $2{ts} WHERE owner = $1 AND id IN (`+placeholders(3, n)+`)`), args...)
				return err
			})
		}
		if err != nil {
			return retryable(fmt.Errorf("sqlstore: outbox renew: %w", err))
		}
		rest = rest[n:]
	}
	return nil
}

// Only a Pending item has an owner (Claim sets it on Pending items, and
// every change of state clears it), so the statements on the items an owner
// holds name the owner and the ids, not the state: with the state, a
// planner without statistics on the outbox picked the partial index of
// Pending items over the primary key and read the whole of it per id.
func (o *outboxStore) Settle(ctx context.Context, owner string, answers []outbox.Answer) (int, error) {
	for i := range answers {
		if err := answers[i].Validate(); err != nil {
			return 0, fmt.Errorf("answers[%d]: %w", i, err)
		}
		if answers[i].State == outbox.Pending {
			if err := checkTime("NotBefore", answers[i].NotBefore); err != nil {
				return 0, fmt.Errorf("answers[%d]: %w: %v", i, outbox.ErrInvalid, err)
			}
		}
	}
	s := o.s
	var done, notSupported []uint64
	var others []outbox.Answer
	for _, a := range answers {
		switch {
		case a.State == outbox.Delivered:
			done = append(done, a.ID)
		case a.State == outbox.NotSupported && a.Err == "":
			notSupported = append(notSupported, a.ID)
		default:
			others = append(others, a)
		}
	}
	settled := 0
	err := s.write(ctx, func(ex Executor) error {
		settled = 0
		for _, group := range []struct {
			ids   []uint64
			state outbox.State
		}{{done, outbox.Delivered}, {notSupported, outbox.NotSupported}} {
			for rest := group.ids; len(rest) > 0; {
				n := min(len(rest), chunk)
				k, err := settleAll(ctx, s, ex, owner, group.state, rest[:n])
				if err != nil {
					return err
				}
				settled += k
				rest = rest[n:]
			}
		}
		if len(others) > 0 {
			// Purged while held: removed, whatever the answer.
			k, err := removePurged(ctx, s, ex, owner, others)
			if err != nil {
				return err
			}
			settled += k
		}
		for _, a := range others {
			msg := outbox.CutError(a.Err)
			var res sql.Result
			var err error
			switch a.State {
			case outbox.Pending:
				res, err = ex.ExecContext(ctx, s.sql(`UPDATE {p}outbox SET attempts = attempts + 1, not_before = $3{ts}, last_error = $4, owner = NULL, lease_until = NULL
					WHERE id = $1 AND owner = $2`), int64(a.ID), owner, s.ts(a.NotBefore), msg)
			case outbox.Dead:
				res, err = ex.ExecContext(ctx, s.sql(`UPDATE {p}outbox SET state = 'DEAD', attempts = attempts + 1, last_error = $3, owner = NULL, lease_until = NULL
					WHERE id = $1 AND owner = $2`), int64(a.ID), owner, msg)
			default: // NOT_SUPPORTED with a reason, which the request's receipt keeps
				res, err = ex.ExecContext(ctx, s.sql(`DELETE FROM {p}outbox WHERE id = $1 AND owner = $2 AND request_id = ''`), int64(a.ID), owner)
				if err == nil {
					var n int64
					if n, err = res.RowsAffected(); err == nil && n == 0 {
						res, err = ex.ExecContext(ctx, s.sql(`UPDATE {p}outbox SET state = $3, payload = NULL, last_error = $4, owner = NULL, lease_until = NULL
							WHERE id = $1 AND owner = $2`), int64(a.ID), owner, string(a.State), msg)
					}
				}
			}
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			settled += int(n)
		}
		return nil
	})
	if err != nil {
		return 0, retryable(fmt.Errorf("sqlstore: outbox settle: %w", err))
	}
	return len(answers) - settled, nil
}

// removePurged settles the items among answers that owner holds and Purge
// emptied, whatever they answered: one no request awaits goes, a request's
// is answered NOT_SUPPORTED (ErasedFirst). It returns how many it settled.
func removePurged(ctx context.Context, s *Store, ex Executor, owner string, answers []outbox.Answer) (int, error) {
	total := 0
	for rest := answers; len(rest) > 0; {
		n := min(len(rest), chunk)
		ids := make([]uint64, n)
		for i, a := range rest[:n] {
			ids[i] = a.ID
		}
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{`DELETE FROM {p}outbox WHERE owner = $1 AND request_id = '' AND payload IS NULL AND id IN (` + placeholders(2, n) + `)`,
				append([]any{owner}, idList(ids)...)},
			{`UPDATE {p}outbox SET state = 'NOT_SUPPORTED', last_error = $2, owner = NULL, lease_until = NULL
				WHERE owner = $1 AND request_id <> '' AND kind = 'send' AND payload IS NULL AND id IN (` + placeholders(3, n) + `)`,
				append([]any{owner, outbox.ErasedFirst}, idList(ids)...)},
		} {
			res, err := ex.ExecContext(ctx, s.sql(q.sql), q.args...)
			if err != nil {
				return 0, err
			}
			k, err := res.RowsAffected()
			if err != nil {
				return 0, err
			}
			total += int(k)
		}
		rest = rest[n:]
	}
	return total, nil
}

// settleAll settles the items owner holds with an answer that carries no
// error: an item no request awaits goes, a request's keeps its answer but
// not the person's data. It returns how many it settled.
func settleAll(ctx context.Context, s *Store, ex Executor, owner string, state outbox.State, ids []uint64) (int, error) {
	in := placeholders(3, len(ids))
	args := append([]any{owner, string(state)}, idList(ids)...)
	del := `DELETE FROM {p}outbox WHERE owner = $1 AND request_id = '' AND id IN (` + in + `)`
	upd := `UPDATE {p}outbox SET state = $2, payload = NULL, owner = NULL, lease_until = NULL, last_error = ''
		WHERE owner = $1 AND request_id <> '' AND id IN (` + in + `)`
	if s.d == Postgres { // one round trip
		var n int
		err := ex.QueryRowContext(ctx, s.sql(`WITH d AS (`+del+` RETURNING 1), u AS (`+upd+` RETURNING 1)
			SELECT (SELECT COUNT(*) FROM d) + (SELECT COUNT(*) FROM u)`), args...).Scan(&n)
		return n, err
	}
	total := 0
	for _, q := range []string{del, upd} {
		res, err := ex.ExecContext(ctx, s.sql(q), args...)
		if err != nil {
			return 0, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, err
		}
		total += int(n)
	}
	return total, nil
}

func (o *outboxStore) Outcomes(ctx context.Context, request string) ([]outbox.Item, error) {
	out, err := readRows(ctx, o.s, `SELECT `+strings.Replace(itemColumns, "payload", "NULL", 1)+` FROM {p}outbox WHERE request_id = $1 AND request_id <> '' ORDER BY id`,
		[]any{request}, scanItems)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: outbox outcomes: %w", err)
	}
	return out, nil
}

func (o *outboxStore) Forget(ctx context.Context, request string) error {
	err := o.s.write(ctx, func(ex Executor) error {
		if _, err := ex.ExecContext(ctx, o.s.sql(`DELETE FROM {p}outbox WHERE request_id = $1 AND request_id <> '' AND state IN ('DELIVERED', 'NOT_SUPPORTED')`), request); err != nil {
			return err
		}
		// A dead letter stays, the request's no longer: Replay may send it.
		_, err := ex.ExecContext(ctx, o.s.sql(`UPDATE {p}outbox SET request_id = '' WHERE request_id = $1 AND request_id <> '' AND state = 'DEAD'`), request)
		return err
	})
	if err != nil {
		return retryable(fmt.Errorf("sqlstore: outbox forget: %w", err))
	}
	return nil
}

func (o *outboxStore) Dead(ctx context.Context, dest string, after uint64, limit int) ([]outbox.Item, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: Dead limit %d: want a positive number", outbox.ErrInvalid, limit)
	}
	if after > 1<<62 {
		return nil, nil
	}
	out, err := readRows(ctx, o.s, `SELECT `+itemColumns+` FROM {p}outbox WHERE state = 'DEAD' AND id > $1 AND ($2 = '' OR destination = $2) ORDER BY id LIMIT $3`,
		[]any{int64(after), dest, min(limit, 10000)}, scanItems)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: outbox dead letters: %w", err)
	}
	return out, nil
}

func (o *outboxStore) Replay(ctx context.Context, ids []uint64, now time.Time) (int, error) {
	if err := checkTime("now", now); err != nil {
		return 0, fmt.Errorf("%w: %v", outbox.ErrInvalid, err)
	}
	s := o.s
	total := 0
	err := s.write(ctx, func(ex Executor) error {
		total = 0
		for _, id := range ids {
			// A new row, at the end of its queue; the dead one goes.
			var dest, pid, req, key, kind string
			var payload sql.NullString
			err := ex.QueryRowContext(ctx, s.sql(`DELETE FROM {p}outbox WHERE id = $1 AND state = 'DEAD' AND payload IS NOT NULL
				RETURNING destination, profile_id, request_id, item_key, kind, payload`), int64(id)).Scan(&dest, &pid, &req, &key, &kind, &payload)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return err
			}
			if _, err := ex.ExecContext(ctx, s.sql(`INSERT INTO {p}outbox (destination, profile_id, request_id, item_key, kind, payload, state, attempts, enqueued, not_before, last_error)
				VALUES ($1, $2, $3, $4, $5, $6, 'PENDING', 0, $7, $7, '')`), dest, pid, req, key, kind, payload, s.ts(now)); err != nil {
				return err
			}
			total++
		}
		return nil
	})
	if err != nil {
		return 0, retryable(fmt.Errorf("sqlstore: outbox replay: %w", err))
	}
	return total, nil
}

func (o *outboxStore) Stats(ctx context.Context) (map[string]outbox.Counts, error) {
	out, err := readRows(ctx, o.s, `SELECT destination, state, COUNT(*) FROM {p}outbox WHERE state IN ('PENDING', 'DEAD') GROUP BY destination, state`, nil,
		func(rows *sql.Rows) (map[string]outbox.Counts, error) {
			out := map[string]outbox.Counts{}
			for rows.Next() {
				var dest, state string
				var n int
				if err := rows.Scan(&dest, &state, &n); err != nil {
					rows.Close()
					return nil, err
				}
				c := out[dest]
				if state == string(outbox.Dead) {
					c.Dead = n
				} else {
					c.Pending = n
				}
				out[dest] = c
			}
			return out, closeRows(rows)
		})
	if err != nil {
		return nil, fmt.Errorf("sqlstore: outbox stats: %w", err)
	}
	return out, nil
}
