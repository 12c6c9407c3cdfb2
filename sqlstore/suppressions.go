package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/suppression"
)

// suppressionList is the suppression list: a row per suppressed identifier,
// keyed by its keyed hash (never the identifier itself), and a row per
// suppressed profile.
type suppressionList struct{ base }

var (
	_ suppression.List         = (*suppressionList)(nil)
	_ suppression.EmptyChecker = (*suppressionList)(nil)
)

// IsEmpty implements suppression.EmptyChecker. Once the list has been seen to
// hold something, by this Store or through it, it answers false without a
// query: a suppression lifted since only costs the collection path its
// checks, while an empty answer must be exact, for every process sharing the
// database. Until then it asks, in the operation's shared transaction when
// there is one, so that it sees what the subjects' locks protect.
func (l *suppressionList) IsEmpty(ctx context.Context) (bool, error) {
	if l.s.notEmpty.Load() {
		return false, nil
	}
	var found bool
	err := l.s.read(ctx, func(ex Executor) error {
		return ex.QueryRowContext(ctx, l.s.sql(`SELECT EXISTS (SELECT 1 FROM {p}suppressed_identifiers) OR EXISTS (SELECT 1 FROM {p}suppressed_profiles)`)).Scan(&found)
	})
	if err != nil {
		return false, fmt.Errorf("sqlstore: checking whether anyone is suppressed: %w", err)
	}
	if found {
		l.s.notEmpty.Store(true)
	}
	return !found, nil
}

func (l *suppressionList) Suppressed(ctx context.Context, h identity.Hash) (bool, error) {
	return readKey(ctx, l.s, nil, h, suppressed)
}

func (l *suppressionList) ProfileSuppressed(ctx context.Context, pid identity.ProfileID) (bool, error) {
	return readKey(ctx, l.s, nil, pid, profileSuppressed)
}

func (l *suppressionList) Len(ctx context.Context) (identifiers, profiles int, err error) {
	err = l.s.read(ctx, func(ex Executor) error {
		return ex.QueryRowContext(ctx, l.s.sql(`SELECT (SELECT COUNT(*) FROM {p}suppressed_identifiers), (SELECT COUNT(*) FROM {p}suppressed_profiles)`)).
			Scan(&identifiers, &profiles)
	})
	if err != nil {
		return 0, 0, fmt.Errorf("sqlstore: counting suppressions: %w", err)
	}
	return identifiers, profiles, nil
}

var (
	_ suppression.KeyChecker      = (*suppressionList)(nil)
	_ suppression.HashBatchReader = (*suppressionList)(nil)
)

// SuppressedBatch implements suppression.HashBatchReader: one statement per
// chunk of batchParams() hashes.
func (l *suppressionList) SuppressedBatch(ctx context.Context, hs []identity.Hash, dst []bool) ([]bool, error) {
	if err := ctx.Err(); err != nil {
		return dst, err
	}
	found := make(map[identity.Hash]bool, len(hs))
	err := l.s.read(ctx, func(ex Executor) error {
		for rest := hs; len(rest) > 0; {
			n := min(len(rest), l.s.batchParams())
			args := make([]any, n)
			for i := range rest[:n] {
				args[i] = rest[i][:]
			}
			rows, err := ex.QueryContext(ctx, l.s.sql(`SELECT id_hash FROM {p}suppressed_identifiers WHERE id_hash IN (`+placeholders(1, n)+`)`), args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var b []byte
				if err := rows.Scan(&b); err != nil {
					rows.Close()
					return err
				}
				var h identity.Hash
				copy(h[:], b)
				found[h] = true
			}
			if err := closeRows(rows); err != nil {
				return err
			}
			rest = rest[n:]
		}
		return nil
	})
	if err != nil {
		return dst, fmt.Errorf("sqlstore: suppression check: %w", err)
	}
	for _, h := range hs {
		dst = append(dst, found[h])
	}
	return dst, nil
}

// RecordKeyCheck implements suppression.KeyChecker, in a table of one row.
func (l *suppressionList) RecordKeyCheck(ctx context.Context, check identity.Hash) (identity.Hash, error) {
	if check.IsZero() {
		return identity.Hash{}, fmt.Errorf("%w: zero key check value", suppression.ErrInvalid)
	}
	s := l.s
	if _, err := s.direct().ExecContext(ctx, s.sql(`INSERT INTO {p}key_check (id, check_value) VALUES (1, $1) ON CONFLICT (id) DO NOTHING`), check[:]); err != nil {
		return identity.Hash{}, fmt.Errorf("sqlstore: recording the key check value: %w", err)
	}
	return l.KeyCheck(ctx)
}

// KeyCheck implements suppression.KeyChecker.
func (l *suppressionList) KeyCheck(ctx context.Context) (identity.Hash, error) {
	s := l.s
	var b []byte
	err := s.direct().QueryRowContext(ctx, s.sql(`SELECT check_value FROM {p}key_check WHERE id = 1`)).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return identity.Hash{}, nil
	}
	if err != nil {
		return identity.Hash{}, fmt.Errorf("sqlstore: reading the key check value: %w", err)
	}
	var h identity.Hash
	if len(b) != len(h) {
		return h, fmt.Errorf("sqlstore: the key check value is %d bytes, want %d", len(b), len(h))
	}
	return identity.Hash(b), nil
}

func (l *suppressionList) Begin(ctx context.Context) (suppression.Tx, error) {
	return beginTx(ctx, l.s, suppression.ErrTxDone, suppression.ErrInvalid, func(p part) suppression.Tx { return &suppressionTx{base: l.base, part: p} })
}

func suppressed(ctx context.Context, s *Store, ex Executor, h identity.Hash) (bool, error) {
	var n int
	err := ex.QueryRowContext(ctx, s.sql(`SELECT COUNT(*) FROM {p}suppressed_identifiers WHERE id_hash = $1`), h[:]).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("sqlstore: suppression check: %w", err)
	}
	return n > 0, nil
}

func profileSuppressed(ctx context.Context, s *Store, ex Executor, pid identity.ProfileID) (bool, error) {
	var n int
	err := ex.QueryRowContext(ctx, s.sql(`SELECT COUNT(*) FROM {p}suppressed_profiles WHERE profile_id = $1`), string(pid)).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("sqlstore: suppression check: %w", err)
	}
	return n > 0, nil
}

type suppressionTx struct {
	base
	part
}

func (tx *suppressionTx) Suppressed(ctx context.Context, h identity.Hash) (bool, error) {
	return readKey(ctx, tx.s, &tx.part, h, suppressed)
}

func (tx *suppressionTx) ProfileSuppressed(ctx context.Context, pid identity.ProfileID) (bool, error) {
	return readKey(ctx, tx.s, &tx.part, pid, profileSuppressed)
}

func (tx *suppressionTx) Add(ctx context.Context, hs ...identity.Hash) error {
	return tx.run(ctx, func(ex Executor) error {
		for rest := hs; len(rest) > 0; {
			n := min(len(rest), chunk)
			var b strings.Builder
			args := make([]any, 0, n)
			b.WriteString(`INSERT INTO {p}suppressed_identifiers (id_hash) VALUES `)
			for i := range rest[:n] {
				if i > 0 {
					b.WriteString(", ")
				}
				args = append(args, rest[i][:])
				fmt.Fprintf(&b, "($%d)", len(args))
			}
			b.WriteString(` ON CONFLICT (id_hash) DO NOTHING`)
			if _, err := ex.ExecContext(ctx, tx.s.sql(b.String()), args...); err != nil {
				return fmt.Errorf("sqlstore: suppressing identifiers: %w", err)
			}
			rest = rest[n:]
		}
		return nil
	})
}

func (tx *suppressionTx) Remove(ctx context.Context, hs ...identity.Hash) error {
	return tx.run(ctx, func(ex Executor) error {
		for rest := hs; len(rest) > 0; {
			n := min(len(rest), chunk)
			args := make([]any, n)
			for i := range rest[:n] {
				args[i] = rest[i][:]
			}
			q := `DELETE FROM {p}suppressed_identifiers WHERE id_hash IN (` + placeholders(1, n) + `)`
			if _, err := ex.ExecContext(ctx, tx.s.sql(q), args...); err != nil {
				return fmt.Errorf("sqlstore: unsuppressing identifiers: %w", err)
			}
			rest = rest[n:]
		}
		return nil
	})
}

var (
	_ suppression.Rekeyer  = (*suppressionTx)(nil)
	_ suppression.KeyGuard = (*suppressionTx)(nil)
)

// RequireKey implements suppression.KeyGuard: on PostgreSQL the check value
// is read FOR SHARE, so a Rekey (FOR UPDATE) waits for this transaction, and
// this one for a Rekey under way; SQLite's single writer serialises them.
func (tx *suppressionTx) RequireKey(ctx context.Context, check identity.Hash) error {
	return tx.run(ctx, func(ex Executor) error {
		q := `SELECT check_value FROM {p}key_check WHERE id = 1`
		if tx.s.d == Postgres {
			q += ` FOR SHARE`
		}
		var b []byte
		err := ex.QueryRowContext(ctx, tx.s.sql(q)).Scan(&b)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return nil // none recorded: New records one before any writer
		case err != nil:
			return fmt.Errorf("sqlstore: reading the key check value: %w", err)
		case !bytes.Equal(b, check[:]):
			return suppression.ErrKeyChanged
		}
		return nil
	})
}

// Rekey implements suppression.Rekeyer: it reads every hash, and replaces
// them all in the transaction.
func (tx *suppressionTx) Rekey(ctx context.Context, rekey func(identity.Hash) identity.Hash, check identity.Hash) (int, error) {
	if err := tx.check(ctx); err != nil {
		return 0, err
	}
	switch {
	case rekey == nil:
		return 0, fmt.Errorf("%w: nil rekey function", suppression.ErrInvalid)
	case check.IsZero():
		return 0, fmt.Errorf("%w: zero key check value", suppression.ErrInvalid)
	}
	var old []identity.Hash
	err := tx.run(ctx, func(ex Executor) error {
		if tx.s.d == Postgres {
			// Writers that state their key (RequireKey) hold the check
			// value's row FOR SHARE: this waits for them, and they for
			// this. The table lock keeps out writers that do not, until
			// the carried hashes are in.
			if _, err := ex.ExecContext(ctx, tx.s.sql(`SELECT 1 FROM {p}key_check WHERE id = 1 FOR UPDATE`)); err != nil {
				return fmt.Errorf("sqlstore: locking the key check value: %w", err)
			}
			if _, err := ex.ExecContext(ctx, tx.s.sql(`LOCK TABLE {p}suppressed_identifiers IN SHARE ROW EXCLUSIVE MODE`)); err != nil {
				return fmt.Errorf("sqlstore: locking the suppression list: %w", err)
			}
		}
		// Taken out and read back in one statement.
		rows, err := ex.QueryContext(ctx, tx.s.sql(`DELETE FROM {p}suppressed_identifiers RETURNING id_hash`))
		if err != nil {
			return fmt.Errorf("sqlstore: rekeying the suppression list: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var b []byte
			if err := rows.Scan(&b); err != nil {
				return fmt.Errorf("sqlstore: reading the suppression list: %w", err)
			}
			var h identity.Hash
			if len(b) != len(h) {
				return fmt.Errorf("sqlstore: the suppression list holds a hash of %d bytes", len(b))
			}
			old = append(old, identity.Hash(b))
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("sqlstore: reading the suppression list: %w", err)
		}
		rows.Close() // before the next statement on the connection
		if _, err := ex.ExecContext(ctx, tx.s.sql(`INSERT INTO {p}key_check (id, check_value) VALUES (1, $1)
			ON CONFLICT (id) DO UPDATE SET check_value = excluded.check_value`), check[:]); err != nil {
			return fmt.Errorf("sqlstore: recording the key check value: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	next := make([]identity.Hash, len(old))
	for i, h := range old {
		next[i] = rekey(h)
	}
	if err := tx.Add(ctx, next...); err != nil {
		return 0, err
	}
	return len(old), nil
}

func (tx *suppressionTx) AddProfile(ctx context.Context, pid identity.ProfileID) error {
	return tx.execProfile(ctx, pid, "suppressing",
		`INSERT INTO {p}suppressed_profiles (profile_id) VALUES ($1) ON CONFLICT (profile_id) DO NOTHING`)
}

func (tx *suppressionTx) RemoveProfile(ctx context.Context, pid identity.ProfileID) error {
	return tx.execProfile(ctx, pid, "unsuppressing", `DELETE FROM {p}suppressed_profiles WHERE profile_id = $1`)
}

// execProfile is AddProfile and RemoveProfile: after checking the transaction
// and refusing an empty pid, it runs q, which takes pid. doing names the
// change in the error.
func (tx *suppressionTx) execProfile(ctx context.Context, pid identity.ProfileID, doing, q string) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	if pid == "" {
		return fmt.Errorf("%w: empty profile id", suppression.ErrInvalid)
	}
	return tx.run(ctx, func(ex Executor) error {
		if _, err := ex.ExecContext(ctx, tx.s.sql(q), string(pid)); err != nil {
			return fmt.Errorf("sqlstore: %s profile %s: %w", doing, pid, err)
		}
		return nil
	})
}
