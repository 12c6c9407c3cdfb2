package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/keyring"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
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

var (
	_ outbox.RequestMarkingTx = (*outboxTx)(nil)
	_ outbox.RequestMarks     = (*outboxStore)(nil)
)

// MarkRequest implements outbox.RequestMarkingTx: the mark commits with the
// outbox's transaction, the last of a decision's.
func (tx *outboxTx) MarkRequest(ctx context.Context, id string) error {
	return tx.run(ctx, func(ex Executor) error {
		if _, err := ex.ExecContext(ctx, tx.s.sql(`INSERT INTO {p}request_marks (request_id) VALUES ($1) ON CONFLICT (request_id) DO NOTHING`), id); err != nil {
			return fmt.Errorf("sqlstore: marking request %s: %w", id, err)
		}
		return nil
	})
}

// RequestMarked implements outbox.RequestMarks. Within a Scope it reads
// through the shared transaction, after the locks it holds.
func (o *outboxStore) RequestMarked(ctx context.Context, id string) (bool, error) {
	var n int
	err := o.s.read(ctx, func(ex Executor) error {
		return ex.QueryRowContext(ctx, o.s.sql(`SELECT COUNT(*) FROM {p}request_marks WHERE request_id = $1`), id).Scan(&n)
	})
	if err != nil {
		return false, fmt.Errorf("sqlstore: reading the mark of request %s: %w", id, err)
	}
	return n > 0, nil
}

// encodePayload encodes an item's message or deletion without its profile id
// (the profile_id column holds it, and Merge changes only that); a message
// by hand (encodeSend), in encoding/json's form.
func encodePayload(it *outbox.Item) (kind, payload string, err error) {
	if it.Message != nil {
		payload, err = encodeSend(it.Message)
		return kindSend, payload, err
	}
	d := *it.Deletion
	d.ProfileID = ""
	if payload, err = encodeJSON(d); err != nil {
		return "", "", fmt.Errorf("%w: the item's payload does not encode as JSON: %s", outbox.ErrInvalid, encodeFailure(err))
	}
	return kindDelete, payload, nil
}

// decodeSend decodes a single row's message: by hand (decodeSendByHand),
// every claim decoding what it hands out, or through encoding/json, which
// decodes or refuses what the hand decoder leaves to it.
func decodeSend(text []byte) (destination.Message, error) {
	if b, err := decodeSendByHand(text); err == nil {
		return *b.message(""), nil
	}
	return decodeSendReflecting(text)
}

// decodeSendReflecting is decodeSend through encoding/json, numbers exact.
func decodeSendReflecting(text []byte) (destination.Message, error) {
	var m destination.Message
	numbers, err := profile.UnmarshalNumbers(text, &m)
	if err == nil && numbers {
		err = profile.ExactMaps(&m.Traits, &m.Properties, &m.Context)
	}
	return m, err
}

// decodePayload sets the item's message or deletion from its stored
// payload, opened with fk when sealed.
func decodePayload(fk *keyring.DataKey, it *outbox.Item, kind string, payload sql.NullString) error {
	if !payload.Valid {
		return nil
	}
	text, err := openPayloadText(fk, payloadField(kind, it.Destination), payload.String)
	if err != nil {
		return fmt.Errorf("sqlstore: outbox item %d: %w", it.ID, err)
	}
	switch kind {
	case kindSend:
		m, err := decodeSend([]byte(text))
		if err != nil {
			return fmt.Errorf("sqlstore: outbox item %d: stored message does not decode: %s", it.ID, decodeFailure(err))
		}
		m.ProfileID = it.Profile
		it.Message = &m
	case kindDelete:
		var d destination.Deletion
		if err := json.Unmarshal([]byte(text), &d); err != nil {
			return fmt.Errorf("sqlstore: outbox item %d: stored deletion does not decode: %s", it.ID, decodeFailure(err))
		}
		d.ProfileID = it.Profile
		it.Deletion = &d
	default:
		return fmt.Errorf("sqlstore: outbox item %d has kind %q", it.ID, kind)
	}
	return nil
}

func (tx *outboxTx) Enqueue(ctx context.Context, items []outbox.Item) error {
	for i := range items {
		it := &items[i]
		it.ID = 0
		if err := it.Validate(); err != nil {
			return fmt.Errorf("items[%d]: %w", i, err)
		}
		if err := checkTime("Enqueued", it.Enqueued); err != nil {
			return fmt.Errorf("items[%d]: %w: %v", i, outbox.ErrInvalid, err)
		}
	}
	// Each row encoded before the transaction: a bundle's messages in its
	// own form, joined; a row of one item as the item.
	fk, err := tx.s.forwardingKey()
	if err != nil {
		return err
	}
	groups := enqueueRows(items)
	rows := make([]newOutboxRow, len(groups))
	var bundle []byte // a bundle's text, written for one row after another
	for k, g := range groups {
		r := &rows[k]
		r.items = g
		if len(g) == 1 {
			it := &items[g[0]]
			var err error
			if r.kind, r.payload, err = encodePayload(it); err != nil {
				return fmt.Errorf("items[%d]: %w", g[0], err)
			}
			if fk != nil {
				r.sealed, r.payload = fk.Seal(payloadField(r.kind, it.Destination), []byte(r.payload)), ""
			}
			continue
		}
		// A bundle: its messages in their own form, joined as a JSON
		// array (bundlePayload's text).
		bundle = append(bundle[:0], '[')
		for m, i := range g {
			if m > 0 {
				bundle = append(bundle, ',')
			}
			var err error
			if bundle, err = appendBundled(bundle, items[i].Message, 0); err != nil {
				return fmt.Errorf("items[%d]: %w", i, err)
			}
		}
		bundle = append(bundle, ']')
		r.kind, r.present = kindBundle, firstSlots(len(g))
		if fk != nil { // the row whole: one seal for its messages
			r.sealed = fk.Seal(payloadField(kindBundle, items[g[0]].Destination), bundle)
		} else {
			r.payload = string(bundle)
		}
	}
	s := tx.s
	const newCols = 9 // the columns of a new row that differ from row to row
	return tx.run(ctx, func(ex Executor) error {
		// In the order of their first items, so that a person's rows keep
		// their order: a row with a key on its own, skipped when the key is
		// there; runs of the others many to a statement, their ids returned
		// in the order of the rows (a sequence numbers them as they are
		// inserted).
		for i := 0; i < len(rows); {
			if first := &items[rows[i].items[0]]; first.Key != "" {
				if err := enqueueKeyed(ctx, s, ex, first, rows[i].kind, rows[i].text()); err != nil {
					return err
				}
				i++
				continue
			}
			// The run of rows without a key: sent with COPY when the
			// transaction can and the run is long enough, else as many
			// rows to a statement as a batch method's statement carries
			// (a round trip each on PostgreSQL).
			j := i
			for j < len(rows) && items[rows[j].items[0]].Key == "" {
				j++
			}
			cp := copier(ex)
			if cp == nil || j-i < copyMinRows {
				j = min(j, i+s.batchParams()/newCols)
			}
			var ids []uint64
			var err error
			if cp != nil && j-i >= copyMinRows {
				ids, err = copyOutboxRows(ctx, s, cp, items, rows[i:j])
			} else {
				ls := s.newListStmt(`INSERT INTO {p}outbox (destination, profile_id, request_id, kind, payload, enqueued, not_before, items, present, held, item_key, state, attempts, last_error) VALUES `, (j-i)*newCols)
				ls.tuplesEndingIn(j-i, newCols, `0, '', 'PENDING', 0, ''`)
				for k := i; k < j; k++ {
					r := &rows[k]
					it := &items[r.items[0]]
					ls.args = append(ls.args, it.Destination, string(it.Profile), it.Request, r.kind, r.text(), s.ts(it.Enqueued), s.ts(it.Enqueued), len(r.items), r.present)
				}
				ls.sql(` RETURNING id`)
				ids, err = queryIDs(ctx, ex, ls.b.String(), ls.args)
			}
			if err != nil {
				return fmt.Errorf("sqlstore: outbox enqueue: %w", err)
			}
			if len(ids) != j-i {
				return fmt.Errorf("sqlstore: outbox enqueue: %d ids returned for %d rows", len(ids), j-i)
			}
			slices.Sort(ids)
			for k := i; k < j; k++ {
				r := rows[k].items
				if len(r) == 1 {
					items[r[0]].ID = itemID(int64(ids[k-i]), 0)
					continue
				}
				for m, x := range r {
					items[x].ID = itemID(int64(ids[k-i]), m+1)
				}
			}
			i = j
		}
		return nil
	})
}

// newOutboxRow is a row Enqueue writes, encoded.
type newOutboxRow struct {
	items         []int // indexes into Enqueue's items, the row's first first
	kind, payload string
	sealed        []byte // the payload sealed, when the Store seals (payload is then empty)
	present       int64
}

// text is the row's payload as stored.
func (r *newOutboxRow) text() string {
	if r.sealed != nil {
		return sealedPayloadText(r.sealed)
	}
	return r.payload
}

// textLen is len(r.text()).
func (r *newOutboxRow) textLen() int {
	if r.sealed != nil {
		return sealedPayloadLen(r.sealed)
	}
	return len(r.payload)
}

// copyOutboxRows writes rows with COPY on cp and returns their ids, in
// order: taken from the outbox's sequence first, as the INSERT's default
// would take them, so that a person's rows keep their order.
func copyOutboxRows(ctx context.Context, s *Store, cp *sqlTxn, items []outbox.Item, rows []newOutboxRow) ([]uint64, error) {
	ids, err := queryIDs(ctx, cp, s.sql(`SELECT nextval('{p}outbox_id_seq') FROM generate_series(1, $1)`), []any{len(rows)})
	if err != nil {
		return nil, err
	}
	if len(ids) != len(rows) {
		return nil, fmt.Errorf("%d ids taken for %d rows", len(ids), len(rows))
	}
	slices.Sort(ids)
	size := 0
	for k := range rows {
		size += rows[k].textLen() + len(items[rows[k].items[0]].Profile) + 128 // the other columns, about
	}
	c := newCopyText(size + size/16) // room for some escapes
	for k := range rows {
		r := &rows[k]
		it := &items[r.items[0]]
		c.int(int64(ids[k]))
		c.text(it.Destination)
		c.text(string(it.Profile))
		c.text(it.Request)
		c.text(r.kind)
		if r.sealed != nil { // base64: nothing to escape
			c.field()
			c.b = appendSealedPayload(c.b, r.sealed)
		} else {
			c.text(r.payload)
		}
		c.time(it.Enqueued)
		c.time(it.Enqueued)
		c.int(int64(len(r.items)))
		c.int(r.present)
		c.int(0)          // held
		c.text("")        // item_key
		c.text("PENDING") // state
		c.int(0)          // attempts
		c.text("")        // last_error
		c.endRow()
	}
	if err := cp.copyFrom(ctx, s.sql(`COPY {p}outbox (id, destination, profile_id, request_id, kind, payload, enqueued, not_before, items, present, held, item_key, state, attempts, last_error) FROM STDIN`), c.b, len(rows)); err != nil {
		return nil, err
	}
	c.release()
	return ids, nil
}

// enqueueRows groups the items into rows, each a list of item indexes, in
// the order of their first items: the messages for one destination and
// profile without a key or a request, enqueued at the same time, share a row
// (up to maxBundle of them), until an item of that destination and profile
// that cannot join them comes between; every other item has a row of its
// own.
func enqueueRows(items []outbox.Item) [][]int {
	type queue struct {
		dest    string
		profile string
	}
	rows := make([][]int, 0, len(items))
	open := map[queue]int{} // the row still taking messages, by queue
	for i := range items {
		it := &items[i]
		q := queue{it.Destination, string(it.Profile)}
		if it.Message == nil || it.Key != "" || it.Request != "" {
			delete(open, q)
			rows = append(rows, []int{i})
			continue
		}
		if r, ok := open[q]; ok && len(rows[r]) < maxBundle && items[rows[r][0]].Enqueued.Equal(it.Enqueued) {
			rows[r] = append(rows[r], i)
			continue
		}
		open[q] = len(rows)
		rows = append(rows, []int{i})
	}
	return rows
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
	it.ID = itemID(id, 0)
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
	var n int
	err := tx.run(ctx, func(ex Executor) error {
		n = 0
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
		gone, err := queryIDs(ctx, ex, tx.s.sql(`DELETE FROM {p}outbox WHERE profile_id = $1 AND kind IN ('send', 'sends') AND request_id = ''
			AND (state = 'DEAD' OR state = 'PENDING' AND owner IS NULL) RETURNING items`), []any{string(pid)})
		if err != nil {
			return fmt.Errorf("sqlstore: outbox purge: %w", err)
		}
		for _, k := range gone {
			n += int(k)
		}
		// A request's queued message is answered: not sent, the person erased first.
		res, err := ex.ExecContext(ctx, tx.s.sql(`UPDATE {p}outbox SET state = 'NOT_SUPPORTED', payload = NULL, last_error = $2
			WHERE profile_id = $1 AND kind = 'send' AND request_id <> '' AND state = 'PENDING' AND owner IS NULL`), string(pid), outbox.ErasedFirst)
		if err != nil {
			return fmt.Errorf("sqlstore: outbox purge: %w", err)
		}
		k, err := res.RowsAffected()
		if err != nil {
			return err
		}
		n += int(k)
		// A request's dead message keeps its answer, never its payload: it
		// is never replayed after the person's deletion. A held message
		// stays, so that nothing queued after it overtakes its call, but
		// is never delivered again: Settle removes it, whatever it answers.
		// Of a held bundle, the messages not in a call go at once.
		// A held one stays held a while past its lease (see emptiedLeases).
		grace := fmt.Sprintf("leased_for * %d", emptiedLeases)
		if tx.s.d == Postgres {
			grace += " * interval '1 microsecond'"
		}
		rows, err := ex.QueryContext(ctx, tx.s.sql(`UPDATE {p}outbox SET payload = NULL,
			hold_until = CASE WHEN state = 'PENDING' AND owner IS NOT NULL THEN lease_until + `+grace+` ELSE hold_until END
			WHERE profile_id = $1 AND kind IN ('send', 'sends')
			AND (request_id <> '' AND state = 'DEAD' OR state = 'PENDING' AND owner IS NOT NULL) RETURNING id, present, held`), string(pid))
		if err != nil {
			return fmt.Errorf("sqlstore: outbox purge: %w", err)
		}
		type cut struct{ id, left int64 }
		var cuts []cut
		for rows.Next() {
			var id, present, held int64
			if err := rows.Scan(&id, &present, &held); err != nil {
				rows.Close()
				return err
			}
			if present&^held != 0 {
				cuts = append(cuts, cut{id, present & held})
				n += bits.OnesCount64(uint64(present &^ held))
			}
		}
		if err := closeRows(rows); err != nil {
			return fmt.Errorf("sqlstore: outbox purge: %w", err)
		}
		for _, c := range cuts {
			q, args := `UPDATE {p}outbox SET present = $2, items = $3 WHERE id = $1`, []any{c.id, c.left, bits.OnesCount64(uint64(c.left))}
			if c.left == 0 { // nothing of it in a call
				q, args = `DELETE FROM {p}outbox WHERE id = $1`, args[:1]
			}
			if _, err := ex.ExecContext(ctx, tx.s.sql(q), args...); err != nil {
				return fmt.Errorf("sqlstore: outbox purge: %w", err)
			}
		}
		return nil
	})
	return n, err
}

// itemColumns are the columns scanItems reads; payload is NULL where the
// caller gets none.
const itemColumns = `id, destination, profile_id, request_id, item_key, kind, payload, state, attempts, enqueued, not_before, last_error, present`

// scanItems reads rows of items, a bundle's as one item per message,
// opening sealed payloads with the Store's forwarding key, and closes rows.
func (s *Store) scanItems(rows *sql.Rows) ([]outbox.Item, error) {
	sc, err := s.scanSealedItems(rows, 0)
	return sc.items, err
}

// scannedItems are items read, and which of them were sealed.
type scannedItems struct {
	items  []outbox.Item
	sealed []bool // sealed[i]: items[i]'s payload was sealed
}

// scanSealedItems is scanItems, telling which items were sealed, with room
// made for about items of them (a claim's limit: grown by doubling, the
// slice of a claim of 100 cost as much as the messages' strings).
func (s *Store) scanSealedItems(rows *sql.Rows, items int) (scannedItems, error) {
	fk, err := s.forwardingKey()
	if err != nil {
		rows.Close()
		return scannedItems{}, err
	}
	sc := scannedItems{items: make([]outbox.Item, 0, items), sealed: make([]bool, 0, items)}
	err = s.scanItemsWith(fk, rows, &sc)
	return sc, err
}

// scanItemsWith is scanItems with fk, appending the items to sc and
// noting which were sealed.
func (s *Store) scanItemsWith(fk *keyring.DataKey, rows *sql.Rows, sc *scannedItems) error {
	out := sc.items
	for rows.Next() {
		var it outbox.Item
		var id, present int64
		var pid, kind, state string
		var payload sql.NullString
		if err := rows.Scan(&id, &it.Destination, &pid, &it.Request, &it.Key, &kind, &payload, &state, &it.Attempts,
			scanTime(&it.Enqueued), scanTime(&it.NotBefore), &it.LastError, &present); err != nil {
			rows.Close()
			return err
		}
		it.ID, it.Profile, it.State = itemID(id, 0), identity.ProfileID(pid), outbox.State(state)
		isSealed := payload.Valid && strings.HasPrefix(payload.String, sealedPayload)
		if kind == kindBundle {
			var err error
			if out, err = appendBundle(fk, out, it, id, payload, present); err != nil {
				rows.Close()
				return err
			}
		} else {
			if err := decodePayload(fk, &it, kind, payload); err != nil {
				rows.Close()
				return err
			}
			out = append(out, it)
		}
		for len(sc.sealed) < len(out) {
			sc.sealed = append(sc.sealed, isSealed)
		}
	}
	if len(out) == 0 {
		out, sc.sealed = nil, nil // none, as before the room made for them
	}
	sc.items = out
	return closeRows(rows)
}

// appendBundle appends a bundle's items, each with its message (none when
// the payload is NULL), the row's fields alike.
func appendBundle(fk *keyring.DataKey, out []outbox.Item, it outbox.Item, row int64, payload sql.NullString, present int64) ([]outbox.Item, error) {
	var msgs []bundledMessage
	if payload.Valid {
		text, err := openPayload(fk, payloadField(kindBundle, it.Destination), payload.String)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: outbox row %d: %w", row, err)
		}
		if msgs, err = decodeBundleOf(text, bits.OnesCount64(uint64(present))); err != nil {
			msgs, err = decodeBundleReflecting(string(text))
		}
		if err != nil {
			return nil, fmt.Errorf("sqlstore: outbox row %d: stored bundle does not decode: %s", row, decodeFailure(err))
		}
		if len(msgs) != bits.OnesCount64(uint64(present)) {
			return nil, fmt.Errorf("sqlstore: outbox row %d holds %d messages for %d slots", row, len(msgs), bits.OnesCount64(uint64(present)))
		}
	}
	for i, slot := range slotsOf(present) {
		m := it
		m.ID = itemID(row, slot)
		if msgs != nil {
			m.Message, m.Attempts = msgs[i].message(it.Profile), msgs[i].Attempts
		}
		out = append(out, m)
	}
	return out, nil
}

// decodeBundleReflecting is decodeBundle through encoding/json: for text
// decodeBundle leaves to it, which it decodes as it always has, or refuses
// with its own error.
func decodeBundleReflecting(text string) ([]bundledMessage, error) {
	var msgs []bundledMessage
	numbers, err := profile.UnmarshalNumbers([]byte(text), &msgs)
	for i := 0; err == nil && numbers && i < len(msgs); i++ {
		err = profile.ExactMaps(&msgs[i].Traits, &msgs[i].Properties, &msgs[i].Context)
	}
	return msgs, err
}

// idList returns the rows of the items' IDs (items alone in their rows) as
// arguments.
func idList(ids []uint64) []any {
	args := make([]any, len(ids))
	for i, id := range ids {
		row, _ := splitID(id)
		args[i] = row
	}
	return args
}

// splitSingles parts the IDs of items alone in their rows (slot 0) from
// those of bundled ones.
func splitSingles[T any](all []T, id func(T) uint64) (singles, bundled []T) {
	n := 0 // singles: each slice made to its size
	for _, x := range all {
		if _, slot := splitID(id(x)); slot == 0 {
			n++
		}
	}
	if n > 0 {
		singles = make([]T, 0, n)
	}
	if n < len(all) {
		bundled = make([]T, 0, len(all)-n)
	}
	for _, x := range all {
		if _, slot := splitID(id(x)); slot == 0 {
			singles = append(singles, x)
		} else {
			bundled = append(bundled, x)
		}
	}
	return singles, bundled
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
	window := claimWindow(c.Limit)
	out, err := o.claim(ctx, c, window)
	if err != nil || len(out) >= c.Limit {
		return out, err
	}
	// Short of the limit: when there were more pending rows than the
	// window, the heads past it (other people's queues, behind a backlog
	// whose head is held or not due) are claimed by a scan of them all.
	full, err := o.pastWindow(ctx, c.Destinations, window)
	if err == nil && full {
		rest := c
		rest.Limit = c.Limit - len(out)
		var more []outbox.Item
		if more, err = o.claim(ctx, rest, 0); err == nil {
			out = append(out, more...)
			slices.SortFunc(out, func(a, b outbox.Item) int { return cmp.Compare(a.ID, b.ID) })
		}
	}
	if err != nil && len(out) == 0 {
		return nil, err
	}
	return out, nil // what the first claim took is held: handed out, the rest waits for the next claim
}

// claimWindow is how many of the destinations' oldest pending rows a claim
// of limit items looks among for heads: enough for a limit's worth of heads
// when the people waiting have a few rows each. Walking every pending row
// instead made one person's backlog cost every claim a probe a row: a
// drain of 12,000 rows about one person took 11 s on PostgreSQL and 35 s
// on SQLite.
func claimWindow(limit int) int { return 4*limit + 64 }

// pastWindow reports whether the destinations have more than window
// pending rows. They are counted in outbox_pending's order: unordered, the
// planner, taking the pending rows for few, read the whole table for them,
// every row settled since the last vacuum too (1.7 ms at the end of every
// drain of a busy outbox, against 0.02 ms).
func (o *outboxStore) pastWindow(ctx context.Context, destinations []string, window int) (bool, error) {
	s := o.s
	args := []any{window + 1}
	for _, d := range destinations {
		args = append(args, d)
	}
	var n int
	err := s.read(ctx, func(ex Executor) error {
		return ex.QueryRowContext(ctx, s.sql(`SELECT COUNT(*) FROM (SELECT 1 FROM {p}outbox
			WHERE state = 'PENDING' AND destination IN (`+placeholders(2, len(destinations))+`) ORDER BY destination, id LIMIT $1) x`), args...).Scan(&n)
	})
	if err != nil {
		return false, retryable(fmt.Errorf("sqlstore: outbox claim: %w", err))
	}
	return n > window, nil
}

// claim claims up to c.Limit items for c.Owner, their heads among the
// destinations' oldest window pending rows (0: among them all).
func (o *outboxStore) claim(ctx context.Context, c outbox.Claim, window int) ([]outbox.Item, error) {
	s := o.s
	args := []any{s.ts(c.Now), c.Limit, c.Owner, s.ts(c.Until)}
	dests := placeholders(len(args)+1, len(c.Destinations))
	for _, d := range c.Destinations {
		args = append(args, d)
	}
	args = append(args, c.Until.Sub(c.Now).Microseconds())
	leasedFor := fmt.Sprintf("$%d", len(args))
	// heads: the oldest PENDING row of each destination and profile (leased
	// or not, due or not), when it is due and not leased: a row waits for
	// every earlier one to answer.
	//
	// With a window, they are looked for among the destinations' oldest
	// window pending rows, w: a queue's earlier rows are older, so they are
	// in w too, and a row of w is its queue's oldest when it is the oldest
	// of its queue in w (a window function: as IN a grouping of w, the
	// planner compared every row of w with every queue's oldest). One scan
	// of w and no probe a row: a probe of a
	// queue in its index met every row settlements had deleted since the
	// last vacuum (as a bitmap scan, the planner's choice for a queue it
	// thought one row long, it never marks them dead), 45 a queue on a busy
	// outbox, and a claim of 100 items cost more than the collection that
	// enqueued them.
	//
	// Without one (a claim past a held backlog), the oldest is a scalar
	// subquery in outbox_pending_queue's order, one probe of that index per
	// row the scan (in id order, on outbox_pending) meets, whatever the
	// statistics say (stop below is probed alike): as an anti-join, a
	// planner that thought the table small (a fresh or churned outbox)
	// compared every pair of rows.
	with := `WITH `
	var heads string
	if window > 0 {
		args = append(args, window)
		with += `w AS (SELECT id, destination, profile_id, items, not_before, lease_until, owner, hold_until, payload IS NULL AS emptied
			FROM {p}outbox WHERE state = 'PENDING' AND destination IN (` + dests + `) ORDER BY id LIMIT $` + strconv.Itoa(len(args)) + `), `
		heads = `SELECT o.id, o.items FROM (SELECT w.*, MIN(w.id) OVER (PARTITION BY w.destination, w.profile_id) AS first FROM w) o
		WHERE o.id = o.first AND o.not_before <= $1{ts} AND ` + freeRowWith("o", "o.emptied") + `
		ORDER BY o.id LIMIT $2`
	} else {
		heads = `SELECT o.id, o.items FROM {p}outbox o
		WHERE o.state = 'PENDING' AND o.destination IN (` + dests + `) AND o.not_before <= $1{ts}
		AND ` + freeRow("o") + `
		AND o.id = (SELECT e.id FROM {p}outbox e WHERE e.state = 'PENDING' AND e.destination = o.destination
			AND e.profile_id = o.profile_id ORDER BY e.destination, e.profile_id, e.id LIMIT 1)
		ORDER BY o.id LIMIT $2`
	}
	// hk: the heads the limit reaches, counted in items (a bundle holds
	// several); hl: those of them no other deliverer holds, locked (SKIP
	// LOCKED on PostgreSQL, which checks the state, the lease and the
	// retry time again on the row's latest version: another deliverer may
	// have failed and settled the row since the scan's snapshot), with
	// stop, the profile's first later row that ends the run: a deletion,
	// or one not due or leased. Only what is handed out is locked and
	// looked at further. runs: the rows after a message head, up to its
	// stop, oldest first, as many as the heads leave of the limit. A run
	// is reached through its head, so another deliverer that skipped the
	// head cannot take the run either. The last row may hold more items
	// than the limit leaves: Claim gives the rest back.
	//
	// The update finds the rows by primary key (= ANY of an array): with
	// IN, PostgreSQL hashed a scan of the whole table for a hundred rows.
	hk := `SELECT id FROM (SELECT id, items, SUM(items) OVER (ORDER BY id) AS upto FROM h) x WHERE x.upto - x.items < $2`
	inHeads, lock, greatest := `o.id IN (SELECT id FROM hk)`, "", "max"
	if s.d == Postgres {
		// hk computed once, as an array: as IN, a planner with no
		// statistics yet ran hk again for every pending row (a semi join),
		// and a claim in a burst took 20 s.
		inHeads, lock, greatest = `o.id = ANY(ARRAY(SELECT id FROM hk))`, ` FOR UPDATE OF o SKIP LOCKED`, "GREATEST"
	}
	// The state is tested as (...) IS TRUE, which no partial index's
	// predicate matches, so that the heads are found by primary key: the
	// planner, taking the pending rows for few, read the whole of
	// outbox_pending (whose leading column is the destination) for them,
	// every deleted row's entry too.
	locked := `SELECT o.id, o.destination, o.profile_id, o.kind, o.items FROM {p}outbox o
		WHERE ` + inHeads + ` AND (o.state = 'PENDING') IS TRUE AND o.not_before <= $1{ts} AND ` + freeRow("o") + lock
	// stop is looked for among the limit's worth of rows after the head
	// (a row holds an item or more), and the run's rows too (up to reach,
	// the last of them): a run never reaches further, and a person's
	// backlog is not walked whole for every claim (the run's join read all
	// of it, 20,000 rows, to sort them for its limit).
	hl := `SELECT l.id, l.destination, l.profile_id, l.kind, l.items,
			(SELECT MIN(g.id) FROM (SELECT id, kind, not_before, lease_until, payload, owner, hold_until FROM {p}outbox
				WHERE state = 'PENDING' AND destination = l.destination AND profile_id = l.profile_id AND id > l.id
				ORDER BY destination, profile_id, id LIMIT $2) g
				WHERE g.kind = 'delete' OR g.not_before > $1{ts} OR NOT (` + freeRow("g") + `)) AS stop,
			(SELECT MAX(g.id) FROM (SELECT id FROM {p}outbox
				WHERE state = 'PENDING' AND destination = l.destination AND profile_id = l.profile_id AND id > l.id
				ORDER BY destination, profile_id, id LIMIT $2) g) AS reach
		FROM l`
	left := `$2 - (SELECT COALESCE(SUM(items), 0) FROM hl)`
	runs := `SELECT id FROM (SELECT id, items, SUM(items) OVER (ORDER BY id) AS upto FROM (
			SELECT f.id, f.items FROM hl JOIN {p}outbox f ON f.state = 'PENDING' AND f.destination = hl.destination
				AND f.profile_id = hl.profile_id AND f.id > hl.id AND f.id <= hl.reach
			WHERE hl.kind <> 'delete' AND (hl.stop IS NULL OR f.id < hl.stop)
			ORDER BY f.id LIMIT ` + greatest + `(` + left + `, 0)) f) y
		WHERE y.upto - y.items < ` + left
	with += `h AS (` + heads + `), hk AS (` + hk + `), l AS (` + locked + `), hl AS (` + hl + `), r AS (` + runs + `)`
	var q string
	if s.d == Postgres {
		q = with + ` UPDATE {p}outbox o SET owner = $3, lease_until = $4{ts}, leased_for = ` + leasedFor + `, held = o.present WHERE o.id = ANY(ARRAY(SELECT id FROM hl UNION ALL SELECT id FROM r))
			RETURNING ` + prefixed("o.", itemColumns)
	} else {
		q = with + ` UPDATE {p}outbox SET owner = $3, lease_until = $4, leased_for = ` + leasedFor + `, held = present WHERE id IN (SELECT id FROM hl UNION ALL SELECT id FROM r)
			RETURNING ` + itemColumns
	}
	var sc scannedItems
	err := s.write(ctx, func(ex Executor) error {
		rows, err := ex.QueryContext(ctx, s.sql(q), args...)
		if err != nil {
			return err
		}
		sc, err = s.scanSealedItems(rows, c.Limit)
		return err
	})
	if err != nil {
		return nil, retryable(fmt.Errorf("sqlstore: outbox claim: %w", err))
	}
	out := sc.items
	if err := s.dropShredded(ctx, sc); err != nil {
		// Claimed: given back at once (else their leases lapse), to be
		// claimed again in order.
		ids := make([]uint64, len(out))
		for i, it := range out {
			ids[i] = it.ID
		}
		err = fmt.Errorf("sqlstore: outbox claim: %w", err)
		if rerr := o.Renew(context.WithoutCancel(ctx), c.Owner, ids, time.Time{}); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return nil, retryable(err)
	}
	slices.SortFunc(out, func(a, b outbox.Item) int { return cmp.Compare(a.ID, b.ID) })
	if len(out) > c.Limit {
		// The last row reached past the limit: what is cut off of it is
		// given back at once, as a deliverer gives back what it does not
		// send.
		cut := make([]uint64, 0, len(out)-c.Limit)
		for _, it := range out[c.Limit:] {
			cut = append(cut, it.ID)
		}
		if err := o.Renew(ctx, c.Owner, cut, time.Time{}); err != nil {
			return nil, err
		}
		out = out[:c.Limit]
	}
	return out, nil
}

// freeRow is the condition, on the outbox row t, that no deliverer holds it:
// its lease ended (by $1, the claim's time), and, when an erasure emptied it
// while it was held, the hold that set (hold_until, migration 0008) too.
func freeRow(t string) string { return freeRowWith(t, t+".payload IS NULL") }

// freeRowWith is freeRow on a row whose payload's absence is the
// condition emptied (a claim's window keeps that, not the payload).
func freeRowWith(t, emptied string) string {
	return `(` + t + `.lease_until IS NULL OR ` + t + `.lease_until < $1{ts}) AND NOT (` + emptied + ` AND ` + t + `.owner IS NOT NULL
		AND ` + t + `.hold_until IS NOT NULL AND ` + t + `.hold_until >= $1{ts})`
}

// emptiedLeases is how many lease lengths past its lease then a row an
// erasure emptied while a deliverer held it stays held, whatever its lease
// says meanwhile. The erasure's transaction holds the row locked until it
// commits, and the holder's renewal waits that long: without the hold, a
// commit slower than what was left of the lease let another deliverer take
// the row once the erasure committed, before the holder's renewal landed,
// and send the person's deletion while the holder's call about them still
// ran. A holder that died meanwhile holds the deletion back this much longer
// (with the default lease of 30 seconds, five minutes).
const emptiedLeases = 10

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
	if !giveUp {
		return o.extend(ctx, owner, ids, until)
	}
	singles, bundled := splitSingles(ids, func(id uint64) uint64 { return id })
	if err := giveBackBundles(ctx, s, owner, bundled); err != nil {
		return retryable(fmt.Errorf("sqlstore: outbox renew: %w", err))
	}
	for rest := singles; len(rest) > 0; {
		n := min(len(rest), chunk)
		args := append([]any{owner}, idList(rest[:n])...)
		err := s.write(ctx, func(ex Executor) error {
			_, err := ex.ExecContext(ctx, s.sql(`UPDATE {p}outbox SET owner = NULL, lease_until = NULL WHERE owner = $1 AND present = 0 AND id IN (`+placeholders(2, n)+`)`), args...)
			return err
		})
		if err != nil {
			return retryable(fmt.Errorf("sqlstore: outbox renew: %w", err))
		}
		rest = rest[n:]
	}
	return nil
}

// extend renews owner's leases on the items' rows (a lease is a row's,
// whichever of its items are named) to until. The lease's length
// (leased_for) stays as the claim set it: until is in the caller's time,
// which need not be this clock's.
//
// An erasure's transaction holds the person's rows locked until it commits.
// On PostgreSQL the rows no transaction holds locked are renewed at once;
// the others in the background, which waits for them and counts their lease
// from when it got them (until, plus the wait), so that one person's slow
// erasure neither holds back the renewal of everyone else's rows, as the
// caller renews them again, nor lets the lease of a row it waits for lapse
// when it commits. On SQLite every write waits for the one writer: the
// renewal waits, and counts its lease from when it got the write lock.
func (o *outboxStore) extend(ctx context.Context, owner string, ids []uint64, until time.Time) error {
	s := o.s
	sent := time.Now()
	for rest := ids; len(rest) > 0; {
		n := min(len(rest), chunk)
		part := rest[:n]
		rest = rest[n:]
		if s.d == SQLite || s.ex != nil {
			// SQLite's one writer, or the caller's transaction: waited for
			// in place (a background wait would run in the caller's
			// transaction, and outlive it).
			if err := o.extendWaiting(ctx, owner, part, until, sent); err != nil {
				return err
			}
			continue
		}
		var done []uint64
		err := s.write(ctx, func(ex Executor) error {
			var err error
			done, err = queryIDs(ctx, ex, s.sql(`UPDATE {p}outbox SET lease_until = $2{ts} WHERE id IN (SELECT id FROM {p}outbox
				WHERE owner = $1 AND id IN (`+placeholders(3, n)+`) ORDER BY id FOR UPDATE SKIP LOCKED) RETURNING id`),
				append([]any{owner, s.ts(until)}, idList(part)...))
			return err
		})
		if err != nil {
			return retryable(fmt.Errorf("sqlstore: outbox renew: %w", err))
		}
		// What is left is locked, or no longer owner's: waited for in the
		// background, a row at a time, unless a wait for it runs already.
		var wait []uint64
		for _, id := range part {
			row, _ := splitID(id)
			if slices.Contains(done, uint64(row)) {
				continue
			}
			if _, busy := s.renewing.LoadOrStore(renewal{owner, row}, true); !busy {
				wait = append(wait, id)
			}
		}
		if len(wait) == 0 {
			continue
		}
		go func() {
			defer func() {
				for _, id := range wait {
					row, _ := splitID(id)
					s.renewing.Delete(renewal{owner, row})
				}
			}()
			bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), renewWaitLimit)
			defer cancel()
			// A row at a time: a renewal holding one row's lock while it
			// waits for another's could close a cycle with an erasure
			// locking them the other way round.
			for _, id := range wait {
				_ = o.extendWaiting(bg, owner, []uint64{id}, until, sent) // a failed one: the next renewal tries again
			}
		}()
	}
	return nil
}

// renewal keys a renewal waiting in the background: an owner's of a row
// (another owner that took the row since renews it on its own).
type renewal struct {
	owner string
	row   int64
}

// renewWaitLimit bounds how long a renewal waits in the background for rows
// another transaction holds locked; the caller renews again meanwhile.
const renewWaitLimit = time.Hour

// extendWaiting renews owner's leases on the items' rows, waiting for the
// rows (or SQLite's write lock), to until plus the time since sent.
func (o *outboxStore) extendWaiting(ctx context.Context, owner string, ids []uint64, until, sent time.Time) error {
	s := o.s
	args := append([]any{owner, nil}, idList(ids)...)
	err := s.writeTx(ctx, func(ex Executor) error {
		if s.d == Postgres {
			if _, err := ex.ExecContext(ctx, s.sql(`SELECT id FROM {p}outbox WHERE owner = $1 AND id IN (`+placeholders(2, len(ids))+`) ORDER BY id FOR UPDATE`),
				append([]any{owner}, args[2:]...)...); err != nil {
				return err
			}
		}
		args[1] = s.ts(until.Add(time.Since(sent)))
		_, err := ex.ExecContext(ctx, s.sql(`UPDATE {p}outbox SET lease_until = $2{ts} WHERE owner = $1 AND id IN (`+placeholders(3, len(ids))+`)`), args...)
		return err
	})
	if err != nil {
		return retryable(fmt.Errorf("sqlstore: outbox renew: %w", err))
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
	singles, bundled := splitSingles(answers, func(a outbox.Answer) uint64 { return a.ID })
	var done, notSupported []uint64
	var others []outbox.Answer
	for _, a := range singles {
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
			row, _ := splitID(a.ID)
			var res sql.Result
			var err error
			switch a.State {
			case outbox.Pending:
				res, err = ex.ExecContext(ctx, s.sql(`UPDATE {p}outbox SET attempts = attempts + 1, not_before = $3{ts}, last_error = $4, owner = NULL, lease_until = NULL
					WHERE id = $1 AND owner = $2 AND present = 0`), row, owner, s.ts(a.NotBefore), msg)
			case outbox.Dead:
				res, err = ex.ExecContext(ctx, s.sql(`UPDATE {p}outbox SET state = 'DEAD', attempts = attempts + 1, last_error = $3, owner = NULL, lease_until = NULL
					WHERE id = $1 AND owner = $2 AND present = 0`), row, owner, msg)
			default: // NOT_SUPPORTED with a reason, which the request's receipt keeps
				res, err = ex.ExecContext(ctx, s.sql(`DELETE FROM {p}outbox WHERE id = $1 AND owner = $2 AND request_id = '' AND present = 0`), row, owner)
				if err == nil {
					var n int64
					if n, err = res.RowsAffected(); err == nil && n == 0 {
						res, err = ex.ExecContext(ctx, s.sql(`UPDATE {p}outbox SET state = $3, payload = NULL, last_error = $4, owner = NULL, lease_until = NULL
							WHERE id = $1 AND owner = $2 AND present = 0`), row, owner, string(a.State), msg)
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
	if len(bundled) > 0 {
		k, err := settleBundles(ctx, s, owner, bundled)
		if err != nil {
			return 0, retryable(fmt.Errorf("sqlstore: outbox settle: %w", err))
		}
		settled += k
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
			{`DELETE FROM {p}outbox WHERE owner = $1 AND request_id = '' AND payload IS NULL AND present = 0 AND id IN (` + placeholders(2, n) + `)`,
				append([]any{owner}, idList(ids)...)},
			{`UPDATE {p}outbox SET state = 'NOT_SUPPORTED', last_error = $2, owner = NULL, lease_until = NULL
				WHERE owner = $1 AND request_id <> '' AND kind = 'send' AND payload IS NULL AND present = 0 AND id IN (` + placeholders(3, n) + `)`,
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
	del := `DELETE FROM {p}outbox WHERE owner = $1 AND request_id = '' AND present = 0 AND id IN (` + in + `)`
	upd := `UPDATE {p}outbox SET state = $2, payload = NULL, owner = NULL, lease_until = NULL, last_error = ''
		WHERE owner = $1 AND request_id <> '' AND present = 0 AND id IN (` + in + `)`
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
		[]any{request}, o.s.scanItems)
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
	limit = min(limit, 10000)
	from, _ := splitID(after)
	// Rows from the one after's item is in: each holds at least one item,
	// and the first may hold none after it.
	sc, err := readRows(ctx, o.s, `SELECT `+itemColumns+` FROM {p}outbox WHERE state = 'DEAD' AND id >= $1 AND ($2 = '' OR destination = $2) ORDER BY id LIMIT $3`,
		[]any{from, dest, limit + 1}, func(rows *sql.Rows) (scannedItems, error) { return o.s.scanSealedItems(rows, 0) })
	if err == nil {
		err = o.s.dropShredded(ctx, sc)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: outbox dead letters: %w", err)
	}
	out := sc.items
	out = slices.DeleteFunc(out, func(it outbox.Item) bool { return it.ID <= after })
	return out[:min(len(out), limit)], nil
}

func (o *outboxStore) Replay(ctx context.Context, ids []uint64, now time.Time) (int, error) {
	if err := checkTime("now", now); err != nil {
		return 0, fmt.Errorf("%w: %v", outbox.ErrInvalid, err)
	}
	s := o.s
	singles, bundled := splitSingles(ids, func(id uint64) uint64 { return id })
	rows, masks := slotMasks(bundled)
	total := 0
	err := s.writeTx(ctx, func(ex Executor) error {
		total = 0
		for _, id := range singles {
			// A new row, at the end of its queue; the dead one goes.
			row, _ := splitID(id)
			var dest, pid, req, key, kind string
			var payload sql.NullString
			err := ex.QueryRowContext(ctx, s.sql(`DELETE FROM {p}outbox WHERE id = $1 AND state = 'DEAD' AND payload IS NOT NULL AND present = 0
				RETURNING destination, profile_id, request_id, item_key, kind, payload`), row).Scan(&dest, &pid, &req, &key, &kind, &payload)
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
		for _, row := range rows {
			n, err := replayBundle(ctx, s, ex, row, masks[row], now)
			if err != nil {
				return err
			}
			total += n
		}
		return nil
	})
	if err != nil {
		return 0, retryable(fmt.Errorf("sqlstore: outbox replay: %w", err))
	}
	return total, nil
}

func (o *outboxStore) Stats(ctx context.Context) (map[string]outbox.Counts, error) {
	out, err := readRows(ctx, o.s, `SELECT destination, state, SUM(items) FROM {p}outbox WHERE state IN ('PENDING', 'DEAD') GROUP BY destination, state`, nil,
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
