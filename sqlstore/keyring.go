package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/keyring"
)

// keyringStore is the keyring (migration 0006): a row per profile's wrapped
// data key. Its transactions join the Store's shared transaction like every
// backend's, so a key is destroyed in the erasure's own commit; it may as
// well be kept in a Store over another database than the data.
type keyringStore struct{ base }

var _ keyring.Store = (*keyringStore)(nil)

// Keyring returns the keyring backend.
func (s *Store) Keyring() keyring.Store { return &keyringStore{base{s}} }

func (k *keyringStore) Begin(ctx context.Context) (keyring.Tx, error) {
	return beginTx(ctx, k.s, keyring.ErrTxDone, keyring.ErrInvalid, func(p part) keyring.Tx { return &keyringTx{base: k.base, part: p} })
}

func (k *keyringStore) Get(ctx context.Context, pid identity.ProfileID) (keyring.Entry, error) {
	return readKey(ctx, k.s, nil, pid, getKey)
}

func (k *keyringStore) List(ctx context.Context, after identity.ProfileID, limit int) ([]keyring.Entry, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: List limit %d: want a positive number", keyring.ErrInvalid, limit)
	}
	var out []keyring.Entry
	err := k.s.read(ctx, func(ex Executor) error {
		out = nil
		rows, err := ex.QueryContext(ctx, k.s.sql(`SELECT profile_id, wrapped, created FROM {p}keyring
			WHERE profile_id > $1 ORDER BY profile_id LIMIT $2`), string(after), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var e keyring.Entry
			var pid string
			if err := rows.Scan(&pid, &e.Wrapped, scanTime(&e.Created)); err != nil {
				return err
			}
			e.Profile = identity.ProfileID(pid)
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("sqlstore: listing the keyring: %w", err)
	}
	return out, nil
}

// getKey reads a profile's entry.
func getKey(ctx context.Context, s *Store, ex Executor, pid identity.ProfileID) (keyring.Entry, error) {
	e := keyring.Entry{Profile: pid}
	err := ex.QueryRowContext(ctx, s.sql(`SELECT wrapped, created FROM {p}keyring WHERE profile_id = $1`), string(pid)).
		Scan(&e.Wrapped, scanTime(&e.Created))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return keyring.Entry{}, keyring.ErrNotFound
	case err != nil:
		return keyring.Entry{}, fmt.Errorf("sqlstore: reading a data key: %w", err)
	}
	return e, nil
}

type keyringTx struct {
	base
	part
}

func (tx *keyringTx) Get(ctx context.Context, pid identity.ProfileID) (keyring.Entry, error) {
	return readKey(ctx, tx.s, &tx.part, pid, getKey)
}

func (tx *keyringTx) Add(ctx context.Context, e keyring.Entry) (keyring.Entry, error) {
	if err := tx.check(ctx); err != nil {
		return keyring.Entry{}, err
	}
	if err := keyring.Validate(&e); err != nil {
		return keyring.Entry{}, err
	}
	var out keyring.Entry
	err := tx.run(ctx, func(ex Executor) error {
		// Inserted unless there: another transaction's row, once it
		// commits, is the one both see (ON CONFLICT waits for it).
		if _, err := ex.ExecContext(ctx, tx.s.sql(`INSERT INTO {p}keyring (profile_id, wrapped, created) VALUES ($1, $2, $3)
			ON CONFLICT (profile_id) DO NOTHING`), string(e.Profile), e.Wrapped, tx.s.ts(e.Created)); err != nil {
			return fmt.Errorf("sqlstore: adding a data key: %w", err)
		}
		var err error
		out, err = getKey(ctx, tx.s, ex, e.Profile)
		return err
	})
	return out, err
}

func (tx *keyringTx) Rewrap(ctx context.Context, pid identity.ProfileID, wrapped []byte) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	if err := keyring.Validate(&keyring.Entry{Profile: pid, Wrapped: wrapped}); err != nil {
		return err
	}
	return tx.run(ctx, func(ex Executor) error {
		res, err := ex.ExecContext(ctx, tx.s.sql(`UPDATE {p}keyring SET wrapped = $2 WHERE profile_id = $1`), string(pid), wrapped)
		if err != nil {
			return fmt.Errorf("sqlstore: re-wrapping a data key: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return keyring.ErrNotFound
		}
		return nil
	})
}

func (tx *keyringTx) Delete(ctx context.Context, pid identity.ProfileID) error {
	return tx.run(ctx, func(ex Executor) error {
		if _, err := ex.ExecContext(ctx, tx.s.sql(`DELETE FROM {p}keyring WHERE profile_id = $1`), string(pid)); err != nil {
			return fmt.Errorf("sqlstore: destroying a data key: %w", err)
		}
		return nil
	})
}
