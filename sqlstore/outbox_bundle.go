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
	"github.com/gdprkit/privacy/internal/jsontext"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
)

// Bundles (migration 0007). The messages one Enqueue call owes a destination
// about one person, without a key or a request, are one row of kind
// kindBundle: a batch of 500 messages about 100 people writes 100 rows, not
// 500, and a claim hands out 100 messages in a few rows. Each message has a
// slot in its row, 1 to maxBundle: its item's ID is the row's id times
// slotRange plus the slot (a row of one item has slot 0). The row's payload
// is the JSON array of its messages in slot order; present is the bitmask
// of their slots, items their number, and held the slots handed out to the
// row's owner and neither answered nor given back: the row stays leased
// while any is, so that a deliverer that gives back the rest of a claim
// while a call runs keeps what the call holds. A row's retry time and lease
// are its messages' together; each message counts its own failed calls (in
// the payload), so one handed out apart from the rest (a claim's limit cut
// the row) does not lend its failures to those never sent. A message that
// answers Dead leaves for a row of its own, and Dead lists it under its new
// ID.
const (
	kindBundle = "sends"
	slotBits   = 6
	slotRange  = 1 << slotBits
	// maxBundle is the most messages a row holds: slots 1 to 62 keep the
	// bitmasks clear of a signed 64-bit integer's sign bit.
	maxBundle = slotRange - 2
)

// itemID is the ID of the item in the slot of the row.
func itemID(row int64, slot int) uint64 { return uint64(row)<<slotBits | uint64(slot) }

// splitID is itemID's inverse.
func splitID(id uint64) (row int64, slot int) {
	return int64(id >> slotBits), int(id & (slotRange - 1))
}

// slotsOf lists the slots of a mask, in order.
func slotsOf(mask int64) []int {
	out := make([]int, 0, bits.OnesCount64(uint64(mask)))
	for m := uint64(mask); m != 0; m &= m - 1 {
		out = append(out, bits.TrailingZeros64(m))
	}
	return out
}

// firstSlots is the mask of slots 1 to n.
func firstSlots(n int) int64 { return int64(1)<<(n+1) - 2 }

// bundledMessage is a destination.Message as a bundle keeps it: short keys
// (a batch's rows are most of what the outbox writes), without the profile
// id, which is the row's. Round trips as the Message's own encoding does:
// nil and empty maps and lists stay apart.
type bundledMessage struct {
	MessageID  string         `json:"id"`
	Type       string         `json:"t"`
	Event      string         `json:"e,omitempty"`
	IDs        []bundledID    `json:"ids"`
	Traits     map[string]any `json:"tr"`
	Properties map[string]any `json:"p"`
	Timestamp  time.Time      `json:"ts"`
	// Segment's other message types and common fields, left out when empty.
	Name       string         `json:"n,omitempty"`
	Category   string         `json:"c,omitempty"`
	GroupID    string         `json:"g,omitempty"`
	PreviousID string         `json:"pr,omitempty"`
	Context    map[string]any `json:"cx,omitempty"`
	ReceivedAt time.Time      `json:"r,omitzero"`
	Source     string         `json:"src,omitempty"`
	// Attempts counts the message's failed calls.
	Attempts int `json:"a,omitempty"`
}

type bundledID struct {
	Type  string `json:"t"`
	Value string `json:"v"`
}

// encodeBundled encodes a message for a bundle, as encoding/json would
// encode its bundledMessage, written out by hand: a batch encodes one per
// message it collects, and reflection over the struct cost as much as the
// maps it holds.
func encodeBundled(m *destination.Message, attempts int) (string, error) {
	b, err := appendBundled(make([]byte, 0, 256), m, attempts)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// appendBundled appends encodeBundled's text to b.
func appendBundled(b []byte, m *destination.Message, attempts int) ([]byte, error) {
	if err := checkMessageTimes(m); err != nil {
		return b, err
	}
	b = append(b, `{"id":`...)
	b, _ = jsontext.AppendString(b, m.MessageID)
	b = append(b, `,"t":`...)
	b, _ = jsontext.AppendString(b, m.Type)
	if m.Event != "" {
		b = append(b, `,"e":`...)
		b, _ = jsontext.AppendString(b, m.Event)
	}
	b = append(b, `,"ids":`...)
	b = appendIDs(b, m.IDs, `{"t":`, `,"v":`)
	for _, f := range []struct {
		key string
		v   map[string]any
	}{{`,"tr":`, m.Traits}, {`,"p":`, m.Properties}} {
		var err error
		if b, err = appendMapOrNull(append(b, f.key...), f.v); err != nil {
			return b, err
		}
	}
	b = append(b, `,"ts":"`...)
	b = m.Timestamp.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if !m.ReceivedAt.IsZero() {
		b = append(b, `,"r":"`...)
		b = m.ReceivedAt.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	for _, f := range []struct{ key, v string }{{`,"n":`, m.Name}, {`,"c":`, m.Category}, {`,"g":`, m.GroupID}, {`,"pr":`, m.PreviousID}, {`,"src":`, m.Source}} {
		if f.v != "" {
			b = append(b, f.key...)
			b, _ = jsontext.AppendString(b, f.v)
		}
	}
	if len(m.Context) > 0 {
		b = append(b, `,"cx":`...)
		var err error
		if b, err = appendBundledMap(b, m.Context); err != nil {
			return b, err
		}
	}
	if attempts > 0 {
		b = append(b, `,"a":`...)
		b = strconv.AppendInt(b, int64(attempts), 10)
	}
	return append(b, '}'), nil
}

// checkMessageTimes refuses a message whose times encoding/json would not
// write (rfc3339Writable).
func checkMessageTimes(m *destination.Message) error {
	for _, f := range []struct {
		name string
		t    time.Time
	}{{"Timestamp", m.Timestamp}, {"ReceivedAt", m.ReceivedAt}} {
		if err := rfc3339Writable(f.t); err != nil {
			return errNotEncoded(f.name, err)
		}
	}
	return nil
}

// appendIDs appends ids as a JSON array of objects, each opened by
// typeKey (`{"t":`) and its value after valueKey (`,"v":`); null when nil.
func appendIDs(b []byte, ids []identity.ID, typeKey, valueKey string) []byte {
	if ids == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, typeKey...)
		b, _ = jsontext.AppendString(b, id.Type)
		b = append(b, valueKey...)
		b, _ = jsontext.AppendString(b, id.Value)
		b = append(b, '}')
	}
	return append(b, ']')
}

// errNotEncoded is the error of a message whose field the outbox cannot
// encode, as encoding/json words it.
func errNotEncoded(field string, err error) error {
	return fmt.Errorf("%w: the item's payload does not encode as JSON: %s %v", outbox.ErrInvalid, field, err)
}

// rfc3339Writable refuses the times encoding/json refuses to write, which
// RFC 3339 cannot: a year outside 0 to 9999, or a zone offset of a day or
// more (time.FixedZone takes one, and a row holding "+25:00" would be read
// by no decoder, failing every claim of its destination).
func rfc3339Writable(t time.Time) error {
	if y := t.Year(); y < 0 || y > 9999 {
		return fmt.Errorf("year %d outside 0 to 9999", y)
	}
	if _, off := t.Zone(); off <= -24*60*60 || off >= 24*60*60 {
		return fmt.Errorf("zone offset of %d minutes, a day or more", off/60)
	}
	return nil
}

// appendBundledMap appends m as encoding/json encodes it, but for the
// order of its keys, which decoding does not keep: by hand (jsontext) when
// m is in profile.NormalizeValue's canonical form, as the messages the
// Controller owes are, and through encoding/json otherwise (a value of
// another type, invalid UTF-8 to replace).
func appendBundledMap(b []byte, m map[string]any) ([]byte, error) {
	enc := jsontext.ValueEncoder{Unsorted: true}
	if out, ok := enc.AppendValue(b, m, maxBundledDepth); ok {
		return out, nil
	}
	text, err := encodeJSON(m)
	if err != nil {
		return b, fmt.Errorf("%w: the item's payload does not encode as JSON: %s", outbox.ErrInvalid, encodeFailure(err))
	}
	return append(b, text...), nil
}

// appendMapOrNull is appendBundledMap, null for a nil map.
func appendMapOrNull(b []byte, m map[string]any) ([]byte, error) {
	if m == nil {
		return append(b, "null"...), nil
	}
	return appendBundledMap(b, m)
}

// maxBundledDepth bounds the nesting appendBundledMap writes by hand; a
// deeper value (the Controller's are bounded far below it) goes through
// encoding/json.
const maxBundledDepth = 256

// withAttempts returns the encoded bundled message with its attempts set by
// to from what they were.
func withAttempts(raw json.RawMessage, to func(int) int) (json.RawMessage, error) {
	var b bundledMessage
	// Numbers stay as their text (json.Number), encoded back as they were.
	if _, err := profile.UnmarshalNumbers(raw, &b); err != nil {
		return nil, fmt.Errorf("sqlstore: outbox: a stored bundled message does not decode: %s", decodeFailure(err))
	}
	enc, err := encodeBundled(b.message(""), to(b.Attempts))
	return json.RawMessage(enc), err
}

// oneMore and none are what withAttempts sets: a failed call more, or none
// (a replay starts afresh).
func oneMore(n int) int { return n + 1 }
func none(int) int      { return 0 }

// message is the destination.Message of the profile that b keeps.
func (b *bundledMessage) message(pid identity.ProfileID) *destination.Message {
	m := &destination.Message{MessageID: b.MessageID, Type: b.Type, Event: b.Event, ProfileID: pid,
		Traits: b.Traits, Properties: b.Properties, Timestamp: b.Timestamp,
		Name: b.Name, Category: b.Category, GroupID: b.GroupID, PreviousID: b.PreviousID, Context: b.Context,
		ReceivedAt: b.ReceivedAt, Source: b.Source}
	if b.IDs != nil {
		m.IDs = make([]identity.ID, len(b.IDs))
		for i, id := range b.IDs {
			m.IDs[i] = identity.ID(id)
		}
	}
	return m
}

// bundlePayload joins encoded messages into a bundle's payload.
func bundlePayload(msgs []string) string {
	n := 2 + len(msgs)
	for _, m := range msgs {
		n += len(m)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteByte('[')
	for i, m := range msgs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(m)
	}
	b.WriteByte(']')
	return b.String()
}

// splitBundle returns a bundle's messages, encoded, in slot order, checked
// against the row's present slots.
func splitBundle(row int64, payload string, present int64) ([]json.RawMessage, error) {
	var msgs []json.RawMessage
	if err := json.Unmarshal([]byte(payload), &msgs); err != nil {
		return nil, fmt.Errorf("sqlstore: outbox row %d: stored bundle does not decode: %s", row, decodeFailure(err))
	}
	if len(msgs) != bits.OnesCount64(uint64(present)) {
		return nil, fmt.Errorf("sqlstore: outbox row %d holds %d messages for %d slots", row, len(msgs), bits.OnesCount64(uint64(present)))
	}
	return msgs, nil
}

// joinRaw is bundlePayload of already encoded messages.
func joinRaw(msgs []json.RawMessage) string {
	s := make([]string, len(msgs))
	for i, m := range msgs {
		s[i] = string(m)
	}
	return bundlePayload(s)
}

// slotMasks groups bundled items' IDs by row: the rows, in order, and the
// mask of the slots named in each.
func slotMasks(ids []uint64) ([]int64, map[int64]int64) {
	masks := map[int64]int64{}
	var rows []int64
	for _, id := range ids {
		row, slot := splitID(id)
		if _, ok := masks[row]; !ok {
			rows = append(rows, row)
		}
		masks[row] |= 1 << slot
	}
	slices.Sort(rows)
	return rows, masks
}

// bundleAnswers are the answers to one bundle's items, by slot.
type bundleAnswers struct {
	row   int64
	mask  int64 // the slots answered
	plain bool  // every answer removes its message (Delivered, NotSupported)
	by    map[int]outbox.Answer
}

// groupBundleAnswers collects the answers to bundled items by row, in row
// order; a repeated answer to one item counts once (the first).
func groupBundleAnswers(answers []outbox.Answer) []*bundleAnswers {
	byRow := map[int64]*bundleAnswers{}
	var out []*bundleAnswers
	for _, a := range answers {
		row, slot := splitID(a.ID)
		g := byRow[row]
		if g == nil {
			g = &bundleAnswers{row: row, plain: true, by: map[int]outbox.Answer{}}
			byRow[row] = g
			out = append(out, g)
		}
		if _, dup := g.by[slot]; dup {
			continue
		}
		g.by[slot] = a
		g.mask |= 1 << slot
		if a.State != outbox.Delivered && a.State != outbox.NotSupported {
			g.plain = false
		}
	}
	slices.SortFunc(out, func(a, b *bundleAnswers) int { return cmp.Compare(a.row, b.row) })
	return out
}

// settleBundles records the answers to bundled items owner holds, and returns
// how many it settled. A row answered whole, every message removed, goes in
// one statement with the others like it; any other row is read and written
// back in a transaction of its own.
func settleBundles(ctx context.Context, s *Store, owner string, answers []outbox.Answer) (int, error) {
	groups := groupBundleAnswers(answers)
	settled := 0
	var rest []*bundleAnswers
	var whole []*bundleAnswers
	for _, g := range groups {
		if g.plain {
			whole = append(whole, g)
		} else {
			rest = append(rest, g)
		}
	}
	for len(whole) > 0 {
		n := min(len(whole), chunk/2)
		part := whole[:n]
		whole = whole[n:]
		ls := s.newListStmt(`DELETE FROM {p}outbox WHERE owner = `, 1+2*n)
		ls.param()
		ls.args = append(ls.args, owner)
		ls.sql(` AND payload IS NOT NULL AND (held & present) = present AND (id, present) IN `)
		ls.valuesTable(n, 2, "{bigint}")
		for _, g := range part {
			ls.args = append(ls.args, g.row, g.mask)
		}
		ls.sql(` RETURNING id`)
		var gone []uint64
		err := s.write(ctx, func(ex Executor) error {
			var err error
			gone, err = queryIDs(ctx, ex, ls.String(), ls.args)
			return err
		})
		if err != nil {
			return settled, err
		}
		for _, g := range part {
			if slices.Contains(gone, uint64(g.row)) {
				settled += bits.OnesCount64(uint64(g.mask))
			} else {
				rest = append(rest, g)
			}
		}
	}
	for _, g := range rest {
		var k int
		err := s.writeTx(ctx, func(ex Executor) error {
			var err error
			k, err = settleBundle(ctx, s, ex, owner, g)
			return err
		})
		if err != nil {
			return settled, err
		}
		settled += k
	}
	return settled, nil
}

// settleBundle records the answers to one bundle, read and written back in
// the caller's transaction, and returns how many it settled: only answers to
// slots the row holds and has handed out to owner count.
func settleBundle(ctx context.Context, s *Store, ex Executor, owner string, g *bundleAnswers) (int, error) {
	lock := ""
	if s.d == Postgres {
		lock = " FOR UPDATE"
	}
	var payload sql.NullString
	var present, held int64
	var dest string
	err := ex.QueryRowContext(ctx, s.sql(`SELECT payload, present, held, destination FROM {p}outbox
		WHERE id = $1 AND owner = $2 AND kind = 'sends' AND state = 'PENDING'`+lock), g.row, owner).Scan(&payload, &present, &held, &dest)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	valid := g.mask & present & held
	if valid == 0 {
		return 0, nil
	}
	stillHeld := held &^ valid
	release := stillHeld&present == 0
	if !payload.Valid {
		// Purged while held: its messages never go out, the answered ones
		// leave it, and the row goes once nothing of it is in a call.
		if release {
			_, err = ex.ExecContext(ctx, s.sql(`DELETE FROM {p}outbox WHERE id = $1`), g.row)
		} else {
			left := present &^ valid
			_, err = ex.ExecContext(ctx, s.sql(`UPDATE {p}outbox SET held = $2, present = $3, items = $4 WHERE id = $1`),
				g.row, stillHeld&left, left, bits.OnesCount64(uint64(left)))
		}
		return bits.OnesCount64(uint64(valid)), err
	}
	b, err := s.openBundle(g.row, dest, payload.String, present)
	if err != nil {
		return 0, err
	}
	msgs := b.msgs
	var kept, dead []json.RawMessage
	var keptMask, deadMask int64
	var retry bool
	var notBefore time.Time
	var retryErr, deadErr string
	for i, slot := range slotsOf(present) {
		a, answered := g.by[slot]
		switch {
		case !answered || valid&(1<<slot) == 0:
			kept, keptMask = append(kept, msgs[i]), keptMask|1<<slot
		case a.State == outbox.Pending:
			m, err := withAttempts(msgs[i], oneMore)
			if err != nil {
				return 0, err
			}
			kept, keptMask = append(kept, m), keptMask|1<<slot
			if !retry || a.NotBefore.After(notBefore) {
				notBefore = a.NotBefore
			}
			if !retry {
				retryErr = outbox.CutError(a.Err)
			}
			retry = true
		case a.State == outbox.Dead:
			m, err := withAttempts(msgs[i], oneMore)
			if err != nil {
				return 0, err
			}
			dead, deadMask = append(dead, m), deadMask|1<<slot
			if deadErr == "" {
				deadErr = outbox.CutError(a.Err)
			}
		}
	}
	if len(kept) == 0 && len(dead) > 0 {
		// Every message died: the row itself is the dead letter, under the
		// same IDs.
		_, err = ex.ExecContext(ctx, s.sql(`UPDATE {p}outbox SET state = 'DEAD', payload = $2, present = $3, items = $4, held = 0,
			last_error = $5, owner = NULL, lease_until = NULL WHERE id = $1`),
			g.row, b.join(dead), deadMask, len(dead), deadErr)
		return bits.OnesCount64(uint64(valid)), err
	}
	if len(dead) > 0 {
		if _, err := ex.ExecContext(ctx, s.sql(`INSERT INTO {p}outbox (destination, profile_id, request_id, item_key, kind, payload, state, attempts,
			enqueued, not_before, last_error, items, present, held)
			SELECT destination, profile_id, '', '', 'sends', $2, 'DEAD', 0, enqueued, not_before, $3, $4, $5, 0 FROM {p}outbox WHERE id = $1`),
			g.row, b.join(dead), deadErr, len(dead), deadMask); err != nil {
			return 0, err
		}
	}
	if len(kept) == 0 {
		_, err = ex.ExecContext(ctx, s.sql(`DELETE FROM {p}outbox WHERE id = $1`), g.row)
		return bits.OnesCount64(uint64(valid)), err
	}
	// A retry sets the row's time and error; else they stay (NULL).
	var due, why any
	if retry {
		due, why = s.ts(notBefore), retryErr
	}
	_, err = ex.ExecContext(ctx, s.sql(`UPDATE {p}outbox SET payload = $2, present = $3, items = $4, held = $5,
		owner = CASE WHEN $6 THEN NULL ELSE owner END, lease_until = CASE WHEN $6 THEN NULL ELSE lease_until END,
		not_before = COALESCE($7{ts}, not_before), last_error = COALESCE($8{text}, last_error) WHERE id = $1`),
		g.row, b.join(kept), keptMask, len(kept), stillHeld&keptMask, release, due, why)
	return bits.OnesCount64(uint64(valid)), err
}

// giveBackBundles ends owner's hold on the bundled items: a row's lease ends
// once none of its items is held.
func giveBackBundles(ctx context.Context, s *Store, owner string, ids []uint64) error {
	rows, masks := slotMasks(ids)
	for _, row := range rows {
		err := s.write(ctx, func(ex Executor) error {
			_, err := ex.ExecContext(ctx, s.sql(`UPDATE {p}outbox SET held = held & ~$3{bigint},
				owner = CASE WHEN (held & ~$3{bigint} & present) = 0 THEN NULL ELSE owner END,
				lease_until = CASE WHEN (held & ~$3{bigint} & present) = 0 THEN NULL ELSE lease_until END
				WHERE id = $1 AND owner = $2 AND kind = 'sends'`), row, owner, masks[row])
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// replayBundle makes the dead messages of the bundle among slots Pending
// again, as a new row at the end of their queue, and returns how many.
func replayBundle(ctx context.Context, s *Store, ex Executor, row int64, slots int64, now time.Time) (int, error) {
	lock := ""
	if s.d == Postgres {
		lock = " FOR UPDATE"
	}
	var payload, dest string
	var present int64
	err := ex.QueryRowContext(ctx, s.sql(`SELECT payload, present, destination FROM {p}outbox
		WHERE id = $1 AND kind = 'sends' AND state = 'DEAD' AND payload IS NOT NULL`+lock), row).Scan(&payload, &present, &dest)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	chosen := slots & present
	if chosen == 0 {
		return 0, nil
	}
	b, err := s.openBundle(row, dest, payload, present)
	if err != nil {
		return 0, err
	}
	msgs := b.msgs
	var again, left []json.RawMessage
	for i, slot := range slotsOf(present) {
		if chosen&(1<<slot) != 0 {
			m, err := withAttempts(msgs[i], none)
			if err != nil {
				return 0, err
			}
			again = append(again, m)
		} else {
			left = append(left, msgs[i])
		}
	}
	if _, err := ex.ExecContext(ctx, s.sql(`INSERT INTO {p}outbox (destination, profile_id, request_id, item_key, kind, payload, state, attempts,
		enqueued, not_before, last_error, items, present, held)
		SELECT destination, profile_id, '', '', 'sends', $2, 'PENDING', 0, $3{ts}, $3{ts}, '', $4, $5, 0 FROM {p}outbox WHERE id = $1`),
		row, b.join(again), s.ts(now), len(again), firstSlots(len(again))); err != nil {
		return 0, err
	}
	if len(left) == 0 {
		_, err = ex.ExecContext(ctx, s.sql(`DELETE FROM {p}outbox WHERE id = $1`), row)
	} else {
		_, err = ex.ExecContext(ctx, s.sql(`UPDATE {p}outbox SET payload = $2, present = $3, items = $4 WHERE id = $1`),
			row, b.join(left), present&^chosen, len(left))
	}
	return len(again), err
}
