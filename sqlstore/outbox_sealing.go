package sqlstore

// The outbox's payloads sealed (encryption at rest, issue 15): given keys,
// the Store seals what it queues for destinations with the keyring's
// forwarding key (keyring.Keys.Forwarding), bound to the item's kind and
// destination; a bundle row is sealed whole, and opened and sealed again
// when a settlement or a replay splits it. One key, not the person's: an
// erasure's deletions must stay readable once the person's key is
// destroyed, and a merge moves a person's queued messages to another
// profile's rows without opening them. What the person's key gave the rest
// of their data, the outbox gets from the keyring at delivery: a message
// about a profile whose key is gone and whose sealed rows are here (a
// backup restored after the erasure) is never sent, as the erasure would
// have emptied it (dropShredded).

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/keyring"
	"github.com/gdprkit/privacy/outbox"
)

// sealedPayload starts a payload the forwarding key sealed; a payload in
// clear is JSON, an object or an array.
const sealedPayload = "s1:"

// payloadField is the associated data's field of an item's payload (a
// bundle row's, kind kindBundle, is sealed whole).
func payloadField(kind, dest string) string { return "outbox:" + kind + ":" + dest }

// forwardingKey returns the key the Store seals its outbox payloads with,
// nil when it seals nothing.
func (s *Store) forwardingKey() (*keyring.DataKey, error) {
	keys := s.keys()
	if keys == nil {
		return nil, nil
	}
	fk := keys.Forwarding()
	if fk == nil {
		return nil, fmt.Errorf("%w: the Store's keys have no forwarding key (keyring.Keys.CheckKeeper was not run)", outbox.ErrInvalid)
	}
	return fk, nil
}

// sealPayloadText seals an encoded payload for field.
func sealPayloadText(fk *keyring.DataKey, field, text string) string {
	return sealedPayloadText(fk.Seal(field, []byte(text)))
}

// sealedPayloadText is the stored text of a payload sealed: sealedPayload,
// then the sealed bytes in base64.
func sealedPayloadText(sealed []byte) string {
	return string(appendSealedPayload(make([]byte, 0, sealedPayloadLen(sealed)), sealed))
}

// appendSealedPayload appends sealedPayloadText's text to b.
func appendSealedPayload(b, sealed []byte) []byte {
	return base64.RawStdEncoding.AppendEncode(append(b, sealedPayload...), sealed)
}

// sealedPayloadLen is the length of sealedPayloadText's text.
func sealedPayloadLen(sealed []byte) int {
	return len(sealedPayload) + base64.RawStdEncoding.EncodedLen(len(sealed))
}

// openPayloadText returns the encoded payload stored, opened when sealed.
func openPayloadText(fk *keyring.DataKey, field, stored string) (string, error) {
	if !strings.HasPrefix(stored, sealedPayload) {
		return stored, nil
	}
	text, err := openPayload(fk, field, stored)
	return string(text), err
}

// openPayload is openPayloadText's text as bytes the caller may keep: a
// claim decodes a bundle's from them, which as a string it copied twice
// more.
func openPayload(fk *keyring.DataKey, field, stored string) ([]byte, error) {
	rest, ok := strings.CutPrefix(stored, sealedPayload)
	if !ok {
		return []byte(stored), nil
	}
	if fk == nil {
		return nil, fmt.Errorf("%w: the outbox holds sealed payloads and the Store was given no keys (keyring.Sealer)", keyring.ErrUndecryptable)
	}
	raw, err := base64.RawStdEncoding.DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("%w: a sealed outbox payload is not base64", keyring.ErrUndecryptable)
	}
	return fk.Open(field, raw)
}

// openedBundle is a bundle row's messages, encoded, in slot order, and
// what seals a part of them again as the row kept them.
type openedBundle struct {
	msgs []json.RawMessage
	fk   *keyring.DataKey // nil when the row was in clear
	dest string
}

// openBundle splits a bundle row's stored payload (bundle rows are sealed
// whole: one seal for their messages), opening it when sealed.
func (s *Store) openBundle(row int64, dest, stored string, present int64) (openedBundle, error) {
	b := openedBundle{dest: dest}
	if strings.HasPrefix(stored, sealedPayload) {
		var err error
		if b.fk, err = s.forwardingKey(); err != nil {
			return b, err
		}
		if stored, err = openPayloadText(b.fk, payloadField(kindBundle, dest), stored); err != nil {
			return b, fmt.Errorf("sqlstore: outbox row %d: %w", row, err)
		}
	}
	var err error
	b.msgs, err = splitBundle(row, stored, present)
	return b, err
}

// join joins messages of the bundle into a payload, sealed as the row was.
func (b openedBundle) join(msgs []json.RawMessage) string {
	text := joinRaw(msgs)
	if b.fk == nil {
		return text
	}
	return sealPayloadText(b.fk, payloadField(kindBundle, b.dest), text)
}

// dropShredded empties the sealed messages of items about a profile whose
// data is shredded, which the deliverer then settles unsent, as an
// erasure's: the profile has no data key, and its sealed rows (or its
// listing to purge) are here. Deletions stay.
func (s *Store) dropShredded(ctx context.Context, sc scannedItems) error {
	keys := s.keys()
	if keys == nil {
		return nil
	}
	items := sc.items
	var pids []identity.ProfileID
	for i := range items {
		if items[i].Message != nil && sc.sealed[i] {
			pids = append(pids, items[i].Profile)
		}
	}
	if len(pids) == 0 {
		return nil
	}
	pids = uniqueIDs(pids)
	ex := s.direct()
	keyed := map[identity.ProfileID]bool{}
	if s.ownKeyring(keys) {
		// Whether a key is there, not the key: its row's profile id alone.
		err := queryProfiles(ctx, s, ex, `SELECT profile_id FROM {p}keyring WHERE profile_id IN (`, "keyring", pids, func(rows *sql.Rows) error {
			var pid string
			if err := rows.Scan(&pid); err != nil {
				return err
			}
			keyed[identity.ProfileID(pid)] = true
			return nil
		})
		if err != nil {
			return err
		}
	} else {
		for _, pid := range pids {
			_, err := keys.Store().Get(ctx, pid)
			switch {
			case err == nil:
				keyed[pid] = true
			case !errors.Is(err, keyring.ErrNotFound):
				return fmt.Errorf("sqlstore: outbox: reading the data key of profile %s: %w", pid, err)
			}
		}
	}
	var keyless []identity.ProfileID
	for _, pid := range pids {
		if !keyed[pid] {
			keyless = append(keyless, pid)
		}
	}
	if len(keyless) == 0 {
		return nil
	}
	// Shredded: sealed rows of the profile that no key opens (a backup
	// restored after the erasure), or its listing to purge. Without either
	// the message goes: a profile merged away since the claim read it (its
	// rows moved, its key destroyed), one whose data is in clear, or an
	// outbox kept apart from the data, whose tables here say nothing.
	shredded := map[identity.ProfileID]bool{}
	for _, q := range []string{
		`SELECT DISTINCT profile_id FROM {p}profile_traits WHERE sealed IS NOT NULL AND profile_id IN (`,
		`SELECT DISTINCT profile_id FROM {p}identity_links WHERE sealed IS NOT NULL AND profile_id IN (`,
		`SELECT DISTINCT profile_id FROM {p}profile_messages WHERE sealed IS NOT NULL AND profile_id IN (`,
		`SELECT profile_id FROM {p}profile_purges WHERE profile_id IN (`,
	} {
		err := queryProfiles(ctx, s, ex, q, "the profiles of outbox messages", keyless, func(rows *sql.Rows) error {
			var pid string
			if err := rows.Scan(&pid); err != nil {
				return err
			}
			shredded[identity.ProfileID(pid)] = true
			return nil
		})
		if err != nil {
			return err
		}
	}
	for i := range items {
		if it := &items[i]; it.Message != nil && sc.sealed[i] && shredded[it.Profile] {
			it.Message = nil
		}
	}
	return nil
}
