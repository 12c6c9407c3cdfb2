package sqlstore

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/keyring"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/txscope"
)

// Encryption at rest (migration 0009): given keys (SealWith, which a
// Controller calls unless told WithoutEncryption), the Store seals every
// trait value, every event's properties and every identifier with the
// profile's data key before they reach the database, and opens them as it
// reads them. The associated data names the profile and the field ("trait:"
// and the key, "event:" and the message id, "id:" and the type and index),
// so a ciphertext copied to another row does not open. A sealed trait keeps
// the JSON null in value, a sealed event NULL properties, a sealed link its
// blind index in id_value; rows written in clear (before the migration, or
// without keys) are read as they are, until SealExisting seals them. The
// sealing table records the keyring the Store seals with.

var (
	_ keyring.Sealer = (*profileStore)(nil)
	_ keyring.Sealer = (*graphStore)(nil)
	_ keyring.Sealer = (*outboxStore)(nil)
)

// sealKeys holds the keys a Store seals with, shared by its copies.
type sealKeys = atomic.Pointer[keyring.Keys]

// SealWith implements keyring.Sealer: from now on the profile store seals
// what it writes with keys' data keys. The Store's own keyring (Keyring)
// is read and written in the same transaction as the data, so a new
// profile's key commits with its first values; a keyring elsewhere makes
// keys in transactions of its own, committed first. The Store records the
// keyring's id at the first call, and refuses another keyring's keys
// (keyring.ErrWrongKeyring): with an empty keyring given by mistake, every
// person would look erased, and their sealed rows be purged at their next
// write.
func (ps *profileStore) SealWith(ctx context.Context, keys *keyring.Keys) error {
	return sealWith(ctx, ps.s, keys)
}

// SealWith implements keyring.Sealer: the graph of a Store seals what it
// writes as the Store's profile store does (they share the keys): each
// identifier's value, kept sealed, is looked up by its blind index
// (keyring.Keys.Index).
func (g *graphStore) SealWith(ctx context.Context, keys *keyring.Keys) error {
	return sealWith(ctx, g.s, keys)
}

// SealWith implements keyring.Sealer: the outbox seals its payloads with
// the keys' forwarding key (outbox_sealing.go).
func (o *outboxStore) SealWith(ctx context.Context, keys *keyring.Keys) error {
	return sealWith(ctx, o.s, keys)
}

// Sealed implements keyring.Sealer.
func (o *outboxStore) Sealed(ctx context.Context) (bool, error) { return sealed(ctx, o.s) }

// Sealed implements keyring.Sealer.
func (ps *profileStore) Sealed(ctx context.Context) (bool, error) { return sealed(ctx, ps.s) }

// Sealed implements keyring.Sealer.
func (g *graphStore) Sealed(ctx context.Context) (bool, error) { return sealed(ctx, g.s) }

// sealed reports whether the Store recorded a keyring (sealWith).
func sealed(ctx context.Context, s *Store) (bool, error) {
	var n int
	if err := s.direct().QueryRowContext(ctx, s.sql(`SELECT COUNT(*) FROM {p}sealing`)).Scan(&n); err != nil {
		return false, fmt.Errorf("sqlstore: reading the keyring's record: %w", err)
	}
	return n > 0, nil
}

// sealWith is the SealWith of the Store's backends.
func sealWith(ctx context.Context, s *Store, keys *keyring.Keys) error {
	id := keys.KeyringID()
	if len(id) == 0 {
		return fmt.Errorf("%w: SealWith: keys whose keeper was not checked (keyring.Keys.CheckKeeper)", keyring.ErrInvalid)
	}
	if _, err := s.direct().ExecContext(ctx, s.sql(`INSERT INTO {p}sealing (id, keyring_id) VALUES (1, $1) ON CONFLICT (id) DO NOTHING`), id); err != nil {
		return fmt.Errorf("sqlstore: recording the keyring: %w", err)
	}
	var recorded []byte
	if err := s.direct().QueryRowContext(ctx, s.sql(`SELECT keyring_id FROM {p}sealing WHERE id = 1`)).Scan(&recorded); err != nil {
		return fmt.Errorf("sqlstore: reading the keyring's record: %w", err)
	}
	if !bytes.Equal(recorded, id) {
		return fmt.Errorf("%w: this Store's data is sealed with the keys of another keyring", keyring.ErrWrongKeyring)
	}
	s.sealing.Store(keys)
	return nil
}

// Keyring returns the keyring of the Store the profile store is a view of,
// which a Controller given this profile store alone keeps its data keys in.
func (ps *profileStore) Keyring() keyring.Store { return ps.s.Keyring() }

// keys returns the keys the Store seals with, or nil.
func (s *Store) keys() *keyring.Keys { return s.sealing.Load() }

// ownKeyring reports whether keys are kept in this Store's own keyring
// table: the same database (or the same caller's transaction) and the same
// tables.
func (s *Store) ownKeyring(keys *keyring.Keys) bool {
	ks, ok := keys.Store().(*keyringStore)
	return ok && ks.s.db == s.db && ks.s.ex == s.ex && ks.s.qual == s.qual && ks.s.d == s.d
}

// dataKeys returns the data keys of pids (repeats allowed), making the
// missing ones when create is set; without create a profile without a key
// is left out. With the Store's own keyring they are read (and made) with
// ex, in the caller's transaction; with a keyring elsewhere, through keys.
func (s *Store) dataKeys(ctx context.Context, ex Executor, keys *keyring.Keys, pids []identity.ProfileID, create bool) (map[identity.ProfileID]*keyring.DataKey, error) {
	out := make(map[identity.ProfileID]*keyring.DataKey, len(pids))
	uniq := uniqueIDs(pids)
	if !s.ownKeyring(keys) {
		for _, pid := range uniq {
			dk, err := keys.Existing(ctx, pid)
			if errors.Is(err, keyring.ErrNotFound) && create {
				if err = purgeShredded(ctx, s, ex, []identity.ProfileID{pid}); err == nil {
					dk, err = keys.For(ctx, pid)
				}
			}
			if errors.Is(err, keyring.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("sqlstore: the data key of profile %s: %w", pid, err)
			}
			out[pid] = dk
		}
		return out, nil
	}
	entries, err := readEntries(ctx, s, ex, uniq)
	if err != nil {
		return nil, err
	}
	if create {
		var missing []keyring.Entry
		for _, pid := range uniq {
			if _, ok := entries[pid]; !ok {
				e, err := keys.NewEntry(ctx, pid)
				if err != nil {
					return nil, err
				}
				missing = append(missing, e)
			}
		}
		if len(missing) > 0 {
			made, err := makeKeys(ctx, s, ex, missing)
			if err != nil {
				return nil, err
			}
			for pid, e := range made {
				entries[pid] = e
			}
		}
	}
	for pid, e := range entries {
		dk, err := keys.Open(ctx, e)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: the data key of profile %s: %w", pid, err)
		}
		out[pid] = dk
	}
	return out, nil
}

// makeKeys adds the missing keys to the Store's own keyring with ex, after
// purging the profiles' shredded rows (purgeShredded), and returns the
// entries it holds then: these, or those another transaction added first.
// On PostgreSQL the purge and the insert are one statement a chunk.
func makeKeys(ctx context.Context, s *Store, ex Executor, missing []keyring.Entry) (map[identity.ProfileID]keyring.Entry, error) {
	// In profile order, as every batch writes its rows.
	slices.SortFunc(missing, func(a, b keyring.Entry) int { return cmp.Compare(a.Profile, b.Profile) })
	pids := make([]identity.ProfileID, len(missing))
	for i := range missing {
		pids[i] = missing[i].Profile
	}
	inserted := map[identity.ProfileID]bool{}
	if s.d == Postgres {
		perStmt := s.batchParams() / 3
		for rest := missing; len(rest) > 0; {
			n := min(len(rest), perStmt)
			q := s.newListStmt(`WITH k (profile_id, wrapped, created) AS (VALUES `, 3*n)
			var ids strings.Builder // the profile ids' placeholders, for the deletes: a list the planner probes the index with
			for i := range rest[:n] {
				if i > 0 {
					q.b.WriteString(", ")
					ids.WriteString(", ")
				}
				q.b.WriteByte('(')
				q.param()
				fmt.Fprintf(&ids, "$%d", q.n)
				q.b.WriteString("::text, ")
				q.param()
				q.b.WriteString("::bytea, ")
				q.param()
				q.b.WriteString("::timestamptz)")
				e := &rest[i]
				q.args = append(q.args, string(e.Profile), e.Wrapped, s.ts(e.Created))
			}
			q.b.WriteString(")")
			for i, table := range shreddedTables {
				fmt.Fprintf(&q.b, ", d%d AS (", i)
				q.sql(`DELETE FROM {p}` + table + ` WHERE profile_id IN (`)
				q.b.WriteString(ids.String())
				q.sql(`)` + shreddedRows(table) + `)`)
			}
			q.sql(`, dp AS (DELETE FROM {p}profile_purges WHERE profile_id IN (`)
			q.b.WriteString(ids.String())
			q.b.WriteString(`))`)
			q.sql(` INSERT INTO {p}keyring (profile_id, wrapped, created) SELECT profile_id, wrapped, created FROM k
				ON CONFLICT (profile_id) DO NOTHING RETURNING profile_id`)
			rows, err := ex.QueryContext(ctx, q.String(), q.args...)
			if err != nil {
				return nil, fmt.Errorf("sqlstore: making data keys: %w", err)
			}
			for rows.Next() {
				var pid string
				if err := rows.Scan(&pid); err != nil {
					rows.Close()
					return nil, fmt.Errorf("sqlstore: making data keys: %w", err)
				}
				inserted[identity.ProfileID(pid)] = true
			}
			if err := closeRows(rows); err != nil {
				return nil, fmt.Errorf("sqlstore: making data keys: %w", err)
			}
			rest = rest[n:]
		}
	} else {
		if err := purgeShredded(ctx, s, ex, pids); err != nil {
			return nil, err
		}
		err := execChunks(ctx, s, ex, missing, 3, tupleRows, `INSERT INTO {p}keyring (profile_id, wrapped, created) VALUES `,
			` ON CONFLICT (profile_id) DO NOTHING`,
			func(q *listStmt, e *keyring.Entry) {
				q.args = append(q.args, string(e.Profile), e.Wrapped, s.ts(e.Created))
			})
		if err != nil {
			return nil, fmt.Errorf("sqlstore: making data keys: %w", err)
		}
	}
	out := make(map[identity.ProfileID]keyring.Entry, len(missing))
	var raced []identity.ProfileID
	for _, e := range missing {
		if inserted[e.Profile] {
			out[e.Profile] = e
		} else {
			raced = append(raced, e.Profile)
		}
	}
	// Not known to be this one's (SQLite does not say; on PostgreSQL,
	// another transaction's first): read back.
	again, err := readEntries(ctx, s, ex, raced)
	if err != nil {
		return nil, err
	}
	for _, pid := range raced {
		e, ok := again[pid]
		if !ok {
			return nil, fmt.Errorf("sqlstore: the data key of profile %s was destroyed as it was made (an erasure in between): %w", pid, keyring.ErrNotFound)
		}
		out[pid] = e
	}
	return out, nil
}

// shreddedTables are the tables that keep sealed rows.
var shreddedTables = []string{"profile_traits", "profile_messages", "identity_links"}

// purgeShredded deletes the sealed rows of profiles that have no data key,
// before one is made for them: sealed under a key that was destroyed (rows
// an erasure left in a restored backup, or a data commit that failed after
// the keyring's), no key opens them, and beside the new key's they would
// make every read of the profile fail. Of a profile an erasure listed in
// profile_purges it deletes every message row (recorded message ids
// too, which would refuse its new messages as repeats) and the listing, so
// that Purge leaves what is written after alone.
func purgeShredded(ctx context.Context, s *Store, ex Executor, pids []identity.ProfileID) error {
	for _, table := range shreddedTables {
		err := execChunks(ctx, s, ex, pids, 1, func(q *listStmt, n, _ int) { q.params(n); q.sql(`)` + shreddedRows(table)) },
			`DELETE FROM {p}`+table+` WHERE profile_id IN (`, "",
			func(q *listStmt, pid *identity.ProfileID) { q.args = append(q.args, string(*pid)) })
		if err != nil {
			return fmt.Errorf("sqlstore: deleting the shredded rows of profiles: %w", err)
		}
	}
	err := execChunks(ctx, s, ex, pids, 1, func(q *listStmt, n, _ int) { q.params(n); q.sql(`)`) },
		`DELETE FROM {p}profile_purges WHERE profile_id IN (`, "",
		func(q *listStmt, pid *identity.ProfileID) { q.args = append(q.args, string(*pid)) })
	if err != nil {
		return fmt.Errorf("sqlstore: deleting the shredded rows of profiles: %w", err)
	}
	return nil
}

// shreddedRows is the condition, after the profile ids', on the rows of
// table that purgeShredded deletes.
func shreddedRows(table string) string {
	if table == "profile_messages" {
		return ` AND (sealed IS NOT NULL OR profile_id IN (SELECT profile_id FROM {p}profile_purges))`
	}
	return ` AND sealed IS NOT NULL`
}

// readEntries reads the keyring entries of pids (distinct) with ex.
func readEntries(ctx context.Context, s *Store, ex Executor, pids []identity.ProfileID) (map[identity.ProfileID]keyring.Entry, error) {
	out := make(map[identity.ProfileID]keyring.Entry, len(pids))
	err := queryProfiles(ctx, s, ex, `SELECT profile_id, wrapped FROM {p}keyring WHERE profile_id IN (`, "keyring", pids, func(rows *sql.Rows) error {
		var pid string
		var wrapped []byte
		if err := rows.Scan(&pid, &wrapped); err != nil {
			return err
		}
		out[identity.ProfileID(pid)] = keyring.Entry{Profile: identity.ProfileID(pid), Wrapped: bytes.Clone(wrapped)}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// The fields a profile's sealed values are bound to.
func traitField(key string) string       { return "trait:" + key }
func eventField(messageID string) string { return "event:" + messageID }

// sealedJSON is a JSON text as a row keeps it: in clear, or sealed (then the
// column of the clear text holds sealedPlaceholder or NULL).
type sealedJSON struct {
	clear  sql.NullString
	sealed []byte
}

// sealedPlaceholder is what a sealed trait's value column holds: value is
// NOT NULL.
const sealedPlaceholder = "null"

// sealText returns what a row stores for text, a JSON text of field: in
// clear without a key, else placeholder and the sealed text.
func sealText(dk *keyring.DataKey, field, text string, placeholder any) (clearCol any, sealedCol any) {
	if dk == nil {
		return text, nil
	}
	return placeholder, dk.Seal(field, []byte(text))
}

// shredded is the error of a read of a profile whose sealed values cannot be
// opened for want of its data key: it was destroyed by an erasure (the rows
// are a copy from before it, such as a restored backup), or the Store has no
// keys.
func (s *Store) shredded(pid identity.ProfileID) error {
	if s.keys() == nil {
		return fmt.Errorf("%w: profile %s holds sealed values and the Store was given no keys (keyring.Sealer)", keyring.ErrUndecryptable, pid)
	}
	return fmt.Errorf("%w: profile %s: %w: its data key was destroyed (erased), so its sealed values cannot be read",
		profile.ErrNotFound, pid, keyring.ErrNotFound)
}

// openText returns the JSON text v keeps for field of the profile, opening
// it with dk when sealed.
func (s *Store) openText(pid identity.ProfileID, dk *keyring.DataKey, field string, v sealedJSON) (string, error) {
	if v.sealed == nil {
		return v.clear.String, nil
	}
	if dk == nil {
		return "", s.shredded(pid)
	}
	text, err := dk.Open(field, v.sealed)
	if err != nil {
		return "", fmt.Errorf("sqlstore: profile %s: %w", pid, err)
	}
	return string(text), nil
}

// openingKeys returns the data keys needed to open the sealed values of
// pids, read with ex: none when nothing is sealed.
func (s *Store) openingKeys(ctx context.Context, ex Executor, pids []identity.ProfileID) (map[identity.ProfileID]*keyring.DataKey, error) {
	keys := s.keys()
	if keys == nil || len(pids) == 0 {
		return nil, nil
	}
	return s.dataKeys(ctx, ex, keys, pids, false)
}

// resealMoved re-seals, for into, the sealed events of from that a merge
// moves to into (those into has not recorded), and destroys from's key in the
// Store's own keyring: what the merge leaves of from is then into's alone to
// read, and into's erasure shreds it. A keyring elsewhere keeps from's key
// (its transactions are not this one's; it seals nothing left).
func (s *Store) resealMoved(ctx context.Context, ex Executor, into, from identity.ProfileID) error {
	keys := s.keys()
	if keys == nil {
		return nil
	}
	rows, err := ex.QueryContext(ctx, s.sql(`SELECT t.message_id, t.sealed FROM {p}profile_messages t
		WHERE t.profile_id = $2 AND t.sealed IS NOT NULL AND NOT EXISTS
		(SELECT 1 FROM {p}profile_messages m WHERE m.profile_id = $1 AND m.message_id = t.message_id)`), string(into), string(from))
	if err != nil {
		return err
	}
	type moved struct {
		id     string
		sealed []byte
	}
	var ms []moved
	for rows.Next() {
		var m moved
		if err := rows.Scan(&m.id, &m.sealed); err != nil {
			rows.Close()
			return err
		}
		ms = append(ms, m)
	}
	if err := closeRows(rows); err != nil {
		return err
	}
	if len(ms) > 0 {
		old, err := s.dataKeys(ctx, ex, keys, []identity.ProfileID{from}, false)
		if err != nil {
			return err
		}
		if old[from] == nil {
			// from was erased (its rows are from before: a restored
			// backup): what no key opens goes, rather than block the merge.
			return purgeShredded(ctx, s, ex, []identity.ProfileID{from})
		}
		dks, err := s.dataKeys(ctx, ex, keys, []identity.ProfileID{into}, true)
		if err != nil {
			return err
		}
		for _, m := range ms {
			text, err := old[from].Open(eventField(m.id), m.sealed)
			if err != nil {
				return fmt.Errorf("profile %s, event %s: %w", from, m.id, err)
			}
			if _, err := ex.ExecContext(ctx, s.sql(`UPDATE {p}profile_messages SET sealed = $3 WHERE profile_id = $1 AND message_id = $2`),
				string(from), m.id, dks[into].Seal(eventField(m.id), text)); err != nil {
				return err
			}
		}
	}
	if s.ownKeyring(keys) {
		if _, err := ex.ExecContext(ctx, s.sql(`DELETE FROM {p}keyring WHERE profile_id = $1`), string(from)); err != nil {
			return err
		}
	}
	return nil
}

// Identifiers (the identity graph). Given keys, a link keeps its value
// sealed (sealed) and, in id_value, the identifier's blind index
// (keyring.Keys.Index); links written in clear keep their value there and
// sealed NULL. A lookup asks for both forms, and takes a sealed link whose
// profile has no data key for none: the person was erased, the row is from
// before (a restored backup).

// linkField is the field an identifier's sealed value is bound to: its type
// and its index, so that it opens on its own link only.
func linkField(typ, index string) string { return "id:" + typ + ":" + index }

// linkForm is an identifier as a link row keeps it.
type linkForm struct {
	typ, value string
	sealed     bool
}

// linkForms returns the forms the links of ids may have, each mapped to its
// identifier: in clear, and with keys by index.
func linkForms(keys *keyring.Keys, ids []identity.ID) (map[linkForm]identity.ID, error) {
	forms := make(map[linkForm]identity.ID, 2*len(ids))
	for _, id := range ids {
		forms[linkForm{id.Type, id.Value, false}] = id
		if keys != nil {
			idx, err := keys.Index(id)
			if err != nil {
				return nil, err
			}
			forms[linkForm{id.Type, idx, true}] = id
		}
	}
	return forms, nil
}

// keyless returns which of pids have no data key: erased.
func (s *Store) keyless(ctx context.Context, ex Executor, keys *keyring.Keys, pids []identity.ProfileID) (map[identity.ProfileID]bool, error) {
	out := map[identity.ProfileID]bool{}
	if len(pids) == 0 {
		return out, nil
	}
	uniq := uniqueIDs(pids)
	if s.ownKeyring(keys) {
		entries, err := readEntries(ctx, s, ex, uniq)
		if err != nil {
			return nil, err
		}
		for _, pid := range uniq {
			if _, ok := entries[pid]; !ok {
				out[pid] = true
			}
		}
		return out, nil
	}
	for _, pid := range uniq {
		_, err := keys.Store().Get(ctx, pid)
		switch {
		case errors.Is(err, keyring.ErrNotFound):
			out[pid] = true
		case err != nil:
			return nil, fmt.Errorf("sqlstore: the data key of profile %s: %w", pid, err)
		}
	}
	return out, nil
}

// openLinks opens the sealed values of a profile's links and returns the
// links: those of a profile without a data key (erased; its rows are from
// before, such as a restored backup) are left out, as lookups leave them.
func (s *Store) openLinks(ctx context.Context, ex Executor, pid identity.ProfileID, links []identity.Link, sealed [][]byte) ([]identity.Link, error) {
	if !slices.ContainsFunc(sealed, func(b []byte) bool { return b != nil }) {
		return links, nil
	}
	if s.keys() == nil {
		return nil, s.shredded(pid)
	}
	dks, err := s.openingKeys(ctx, ex, []identity.ProfileID{pid})
	if err != nil {
		return nil, err
	}
	dk := dks[pid]
	kept := links[:0]
	for i, l := range links {
		switch {
		case sealed[i] == nil:
		case dk == nil:
			continue // shredded
		default:
			value, err := dk.Open(linkField(l.ID.Type, l.ID.Value), sealed[i])
			if err != nil {
				return nil, fmt.Errorf("sqlstore: an identifier of profile %s: %w", pid, err)
			}
			l.ID.Value = string(value)
		}
		kept = append(kept, l)
	}
	return kept, nil
}

// sealedLink is Link with keys: the link inserted sealed, with its index,
// in one statement when the profile exists and the identifier is free in
// both forms; else the identifier's owner looked up in both forms (a link of
// a profile without a key is purged, the profile's shredded rows with it,
// and the insert tried again).
func sealedLink(ctx context.Context, s *Store, ex Executor, keys *keyring.Keys, pid identity.ProfileID, l identity.Link) error {
	fail := func(err error) error { return fmt.Errorf("sqlstore: linking to profile %s: %w", pid, err) }
	dks, err := s.dataKeys(ctx, ex, keys, []identity.ProfileID{pid}, true)
	if err != nil {
		return fail(err)
	}
	idx, err := keys.Index(l.ID)
	if err != nil {
		return err
	}
	sealed := dks[pid].Seal(linkField(l.ID.Type, idx), []byte(l.ID.Value))
	insert := func() (bool, error) {
		res, err := ex.ExecContext(ctx, s.sql(`INSERT INTO {p}identity_links (id_type, id_value, profile_id, ord, linked_at, message_id, sealed)
			SELECT $1{text}, $2{text}, n.profile_id,
				(SELECT COALESCE(MAX(ord), 0) + 1 FROM {p}identity_links WHERE profile_id = $3), $4{ts}, $5{text}, $6{bytes}
			FROM {p}identity_profiles n WHERE n.profile_id = $3
				AND NOT EXISTS (SELECT 1 FROM {p}identity_links WHERE id_type = $1 AND id_value = $7 AND sealed IS NULL)
			ON CONFLICT (id_type, id_value) DO NOTHING`),
			l.ID.Type, idx, string(pid), s.ts(l.LinkedAt), l.MessageID, sealed, l.ID.Value)
		if err != nil {
			return false, err
		}
		n, err := res.RowsAffected()
		return n == 1, err
	}
	if done, err := insert(); err != nil {
		return fail(err)
	} else if done {
		return nil
	}
	var n int
	if err := ex.QueryRowContext(ctx, s.sql(`SELECT COUNT(*) FROM {p}identity_profiles WHERE profile_id = $1`), string(pid)).Scan(&n); err != nil {
		return fail(err)
	}
	if n == 0 {
		return fmt.Errorf("%w: profile %s", identity.ErrNotFound, pid)
	}
	owners, err := linkOwners(ctx, s, ex, keys, l.ID)
	if err != nil {
		return fail(err)
	}
	for owner, sealed := range owners {
		if owner == pid {
			return nil // a redo
		}
		if sealed {
			gone, err := s.keyless(ctx, ex, keys, []identity.ProfileID{owner})
			if err != nil {
				return err
			}
			if gone[owner] {
				if err := purgeShredded(ctx, s, ex, []identity.ProfileID{owner}); err != nil {
					return err
				}
				continue
			}
		}
		return fmt.Errorf("%w: the %s identifier belongs to profile %s, not %s", identity.ErrConflict, l.ID.Type, owner, pid)
	}
	if done, err := insert(); err != nil {
		return fail(err)
	} else if done {
		return nil
	}
	return fmt.Errorf("%w: the %s identifier was linked to another profile meanwhile", identity.ErrConflict, l.ID.Type)
}

// linkOwners returns the profiles the identifier's links name, in either
// form, each with whether its link is sealed.
func linkOwners(ctx context.Context, s *Store, ex Executor, keys *keyring.Keys, id identity.ID) (map[identity.ProfileID]bool, error) {
	idx, err := keys.Index(id)
	if err != nil {
		return nil, err
	}
	rows, err := ex.QueryContext(ctx, s.sql(`SELECT profile_id, sealed IS NOT NULL FROM {p}identity_links
		WHERE id_type = $1 AND ((id_value = $2 AND sealed IS NULL) OR (id_value = $3 AND sealed IS NOT NULL))`), id.Type, id.Value, idx)
	if err != nil {
		return nil, err
	}
	out := map[identity.ProfileID]bool{}
	for rows.Next() {
		var pid string
		var sealed bool
		if err := rows.Scan(&pid, &sealed); err != nil {
			rows.Close()
			return nil, err
		}
		out[identity.ProfileID(pid)] = sealed
	}
	return out, closeRows(rows)
}

// resealLinks re-seals, for into, the sealed links of from that a merge
// moves to into.
func (s *Store) resealLinks(ctx context.Context, ex Executor, into, from identity.ProfileID) error {
	keys := s.keys()
	if keys == nil {
		return nil
	}
	rows, err := ex.QueryContext(ctx, s.sql(`SELECT id_type, id_value, sealed FROM {p}identity_links WHERE profile_id = $1 AND sealed IS NOT NULL`), string(from))
	if err != nil {
		return err
	}
	var links []identity.Link
	var sealed [][]byte
	for rows.Next() {
		var l identity.Link
		var b []byte
		if err := rows.Scan(&l.ID.Type, &l.ID.Value, &b); err != nil {
			rows.Close()
			return err
		}
		links, sealed = append(links, l), append(sealed, b)
	}
	if err := closeRows(rows); err != nil || len(links) == 0 {
		return err
	}
	if gone, err := s.keyless(ctx, ex, keys, []identity.ProfileID{from}); err != nil {
		return err
	} else if gone[from] {
		// from was erased (its rows are from before: a restored backup):
		// what no key opens goes, rather than block the merge.
		return purgeShredded(ctx, s, ex, []identity.ProfileID{from})
	}
	index := make([]string, len(links))
	for i := range links {
		index[i] = links[i].ID.Value
	}
	if links, err = s.openLinks(ctx, ex, from, links, sealed); err != nil {
		return err
	}
	dks, err := s.dataKeys(ctx, ex, keys, []identity.ProfileID{into}, true)
	if err != nil {
		return err
	}
	for i, l := range links {
		if _, err := ex.ExecContext(ctx, s.sql(`UPDATE {p}identity_links SET sealed = $3 WHERE id_type = $1 AND id_value = $2`),
			l.ID.Type, index[i], dks[into].Seal(linkField(l.ID.Type, index[i]), []byte(l.ID.Value))); err != nil {
			return err
		}
	}
	return nil
}

// SealExisting seals, with the keys a Controller gave the Store (SealWith),
// every row kept in clear: trait values, events' properties and identifiers
// written before migration 0009 (or by a host WithoutEncryption). It walks
// the profiles with such rows batch at a time, each profile in a transaction
// of its own under the profile's lock, as a Controller takes it, so it may
// run beside running Controllers (a row changed meanwhile is left as its
// writer left it, sealed). It returns how many rows it sealed, and the
// errors of the profiles it could not seal, joined; the others are sealed
// all the same. An identifier linked in clear that a sealed link of another
// profile also names (two hosts, one not sealing, in the upgrade window) is
// left in clear, with an error matching identity.ErrConflict naming both
// profiles: merge them, or erase one. Without keys it fails with
// keyring.ErrInvalid.
//
// It seals the live rows only: their former versions stay in the database's
// files until it reclaims them (dead tuples on PostgreSQL until a VACUUM,
// free pages on SQLite until a VACUUM), and in backups taken before; run
// VACUUM after it, and let old backups expire.
func (s *Store) SealExisting(ctx context.Context, batch int) (int, error) {
	keys := s.keys()
	if keys == nil {
		return 0, fmt.Errorf("%w: SealExisting: the Store has no keys: start a Controller over it first (it calls SealWith)", keyring.ErrInvalid)
	}
	if batch <= 0 {
		return 0, fmt.Errorf("%w: SealExisting batch %d: want a positive number", keyring.ErrInvalid, batch)
	}
	total := 0
	var errs []error
	for after := ""; ; {
		var pids []identity.ProfileID
		err := s.read(ctx, func(ex Executor) error {
			rows, err := ex.QueryContext(ctx, s.sql(`SELECT profile_id FROM (
				SELECT profile_id FROM {p}profile_traits WHERE sealed IS NULL
				UNION SELECT profile_id FROM {p}profile_messages WHERE sealed IS NULL AND properties IS NOT NULL
				UNION SELECT profile_id FROM {p}identity_links WHERE sealed IS NULL) c
				WHERE profile_id > $1 ORDER BY profile_id LIMIT $2`), after, batch)
			if err != nil {
				return err
			}
			pids, err = scanProfileIDs(rows)
			return err
		})
		if err != nil {
			return total, errors.Join(append(errs, fmt.Errorf("sqlstore: finding rows in clear: %w", err))...)
		}
		if len(pids) == 0 {
			return total, errors.Join(errs...)
		}
		for _, pid := range pids {
			n, err := s.sealProfile(ctx, keys, pid)
			total += n
			if err != nil {
				if ctx.Err() != nil {
					return total, errors.Join(append(errs, err)...)
				}
				errs = append(errs, fmt.Errorf("sqlstore: sealing the rows of profile %s: %w", pid, err))
			}
		}
		after = string(pids[len(pids)-1])
	}
}

// sealProfile seals the rows the profile keeps in clear, in one transaction,
// under the profile's lock, the one a Controller takes (LockSubjects): a
// merge re-seals in Go what it moves, and must not see rows change form in
// between. It makes the profile's key only when there is something to seal:
// a profile erased or merged away while it waited for the lock has nothing
// left, and must not get a key again.
func (s *Store) sealProfile(ctx context.Context, keys *keyring.Keys, pid identity.ProfileID) (int, error) {
	ctx, scope := txscope.NewContext(ctx)
	defer scope.Close()
	if err := s.LockSubjects(ctx, []string{txscope.ProfileKey(string(pid))}); err != nil {
		return 0, err
	}
	tx, err := beginTx(ctx, s, profile.ErrTxDone, profile.ErrInvalid, func(p part) *profileTx { return &profileTx{base: base{s}, part: p} })
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	n := 0
	var conflicts []error
	err = tx.run(ctx, func(ex Executor) error {
		type clearRow struct{ a, b string }
		read := func(q string) ([]clearRow, error) {
			rows, err := ex.QueryContext(ctx, s.sql(q), string(pid))
			if err != nil {
				return nil, err
			}
			var out []clearRow
			for rows.Next() {
				var r clearRow
				if err := rows.Scan(&r.a, &r.b); err != nil {
					rows.Close()
					return nil, err
				}
				out = append(out, r)
			}
			return out, closeRows(rows)
		}
		traits, err := read(`SELECT trait_key, value FROM {p}profile_traits WHERE profile_id = $1 AND sealed IS NULL`)
		if err != nil {
			return err
		}
		events, err := read(`SELECT message_id, properties FROM {p}profile_messages WHERE profile_id = $1 AND sealed IS NULL AND properties IS NOT NULL`)
		if err != nil {
			return err
		}
		links, err := read(`SELECT id_type, id_value FROM {p}identity_links WHERE profile_id = $1 AND sealed IS NULL`)
		if err != nil {
			return err
		}
		if len(traits)+len(events)+len(links) == 0 {
			return nil
		}
		dks, err := s.dataKeys(ctx, ex, keys, []identity.ProfileID{pid}, true)
		if err != nil {
			return err
		}
		dk := dks[pid]
		// Each update applies only to the row as read: one its writer
		// changed meanwhile is sealed already.
		for _, r := range traits {
			res, err := ex.ExecContext(ctx, s.sql(`UPDATE {p}profile_traits SET value = '`+sealedPlaceholder+`', sealed = $3
				WHERE profile_id = $1 AND trait_key = $2 AND sealed IS NULL`), string(pid), r.a, dk.Seal(traitField(r.a), []byte(r.b)))
			if err != nil {
				return err
			}
			n += affected(res)
		}
		for _, r := range events {
			res, err := ex.ExecContext(ctx, s.sql(`UPDATE {p}profile_messages SET properties = NULL, sealed = $3
				WHERE profile_id = $1 AND message_id = $2 AND sealed IS NULL`), string(pid), r.a, dk.Seal(eventField(r.a), []byte(r.b)))
			if err != nil {
				return err
			}
			n += affected(res)
		}
	links:
		for _, r := range links {
			id := identity.ID{Type: r.a, Value: r.b}
			idx, err := keys.Index(id)
			if err != nil {
				return err
			}
			// Another profile's sealed link of the same identifier would
			// collide with this one's index: one without a key is erased
			// (purged); one with a key is a split to resolve.
			owners, err := linkOwners(ctx, s, ex, keys, id)
			if err != nil {
				return err
			}
			for owner, sealed := range owners {
				if owner == pid || !sealed {
					continue
				}
				gone, err := s.keyless(ctx, ex, keys, []identity.ProfileID{owner})
				if err != nil {
					return err
				}
				if !gone[owner] {
					conflicts = append(conflicts, fmt.Errorf("%w: a %s identifier of profile %s is linked, sealed, to profile %s too: left in clear; merge or erase one of them",
						identity.ErrConflict, id.Type, pid, owner))
					continue links
				}
				if err := purgeShredded(ctx, s, ex, []identity.ProfileID{owner}); err != nil {
					return err
				}
			}
			res, err := ex.ExecContext(ctx, s.sql(`UPDATE {p}identity_links SET id_value = $4, sealed = $5
				WHERE profile_id = $1 AND id_type = $2 AND id_value = $3 AND sealed IS NULL`),
				string(pid), r.a, r.b, idx, dk.Seal(linkField(r.a, idx), []byte(r.b)))
			if err != nil {
				return err
			}
			n += affected(res)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, err
	}
	return n, errors.Join(conflicts...)
}

// affected is how many rows res changed (0 when the driver cannot say).
func affected(res sql.Result) int {
	n, err := res.RowsAffected()
	if err != nil {
		return 0
	}
	return int(n)
}
