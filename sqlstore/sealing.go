package sqlstore

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/keyring"
	"github.com/gdprkit/privacy/profile"
)

// Encryption at rest (migration 0009): given keys (SealWith, which a
// Controller calls unless told WithoutEncryption), the profile store seals
// every trait value and every event's properties with the profile's data
// key before they reach the database, and opens them as it reads them. The
// associated data names the profile and the field ("trait:" and the key,
// "event:" and the message id), so a ciphertext copied to another row does
// not open. A sealed trait keeps the JSON null in value, a sealed event NULL
// properties; rows written in clear (before the migration, or without keys)
// are read as they are.

var _ keyring.Sealer = (*profileStore)(nil)

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
	s := ps.s
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
			made := make([]identity.ProfileID, len(missing))
			for i := range missing {
				made[i] = missing[i].Profile
			}
			if err := purgeShredded(ctx, s, ex, made); err != nil {
				return nil, err
			}
			// Another transaction may add one first: its key is the one kept.
			// In profile order, as every batch writes its rows.
			slices.SortFunc(missing, func(a, b keyring.Entry) int { return cmp.Compare(a.Profile, b.Profile) })
			err := execChunks(ctx, s, ex, missing, 3, tupleRows, `INSERT INTO {p}keyring (profile_id, wrapped, created) VALUES `,
				` ON CONFLICT (profile_id) DO NOTHING`,
				func(q *listStmt, e *keyring.Entry) {
					q.args = append(q.args, string(e.Profile), e.Wrapped, s.ts(e.Created))
				})
			if err != nil {
				return nil, fmt.Errorf("sqlstore: making data keys: %w", err)
			}
			again, err := readEntries(ctx, s, ex, made)
			if err != nil {
				return nil, err
			}
			for _, pid := range made {
				e, ok := again[pid]
				if !ok {
					return nil, fmt.Errorf("sqlstore: the data key of profile %s was destroyed as it was made (an erasure in between): %w", pid, keyring.ErrNotFound)
				}
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

// purgeShredded deletes the sealed rows of profiles that have no data key,
// before one is made for them: sealed under a key that was destroyed (rows
// an erasure left in a restored backup, or a data commit that failed after
// the keyring's), no key opens them, and beside the new key's they would
// make every read of the profile fail.
func purgeShredded(ctx context.Context, s *Store, ex Executor, pids []identity.ProfileID) error {
	for _, table := range []string{"profile_traits", "profile_messages"} {
		err := execChunks(ctx, s, ex, pids, 1, func(q *listStmt, n, _ int) { q.params(n); q.sql(`) AND sealed IS NOT NULL`) },
			`DELETE FROM {p}`+table+` WHERE profile_id IN (`, "",
			func(q *listStmt, pid *identity.ProfileID) { q.args = append(q.args, string(*pid)) })
		if err != nil {
			return fmt.Errorf("sqlstore: deleting the shredded rows of profiles: %w", err)
		}
	}
	return nil
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
			return s.shredded(from)
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
