package sqlstore

import (
	"context"
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
	var ok bool
	err := l.s.read(ctx, func(ex Executor) (err error) {
		ok, err = suppressed(ctx, l.s, ex, h)
		return err
	})
	return ok, err
}

func (l *suppressionList) ProfileSuppressed(ctx context.Context, pid identity.ProfileID) (bool, error) {
	var ok bool
	err := l.s.read(ctx, func(ex Executor) (err error) {
		ok, err = profileSuppressed(ctx, l.s, ex, pid)
		return err
	})
	return ok, err
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

func (l *suppressionList) Begin(ctx context.Context) (suppression.Tx, error) {
	st, err := l.s.begin(ctx)
	if err != nil {
		return nil, err
	}
	return &suppressionTx{base: l.base, part: part{st: st, errDone: suppression.ErrTxDone, errInvalid: suppression.ErrInvalid}}, nil
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
	var ok bool
	err := tx.run(ctx, func(ex Executor) (err error) {
		ok, err = suppressed(ctx, tx.s, ex, h)
		return err
	})
	return ok, err
}

func (tx *suppressionTx) ProfileSuppressed(ctx context.Context, pid identity.ProfileID) (bool, error) {
	var ok bool
	err := tx.run(ctx, func(ex Executor) (err error) {
		ok, err = profileSuppressed(ctx, tx.s, ex, pid)
		return err
	})
	return ok, err
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

func (tx *suppressionTx) AddProfile(ctx context.Context, pid identity.ProfileID) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	if pid == "" {
		return suppression.ErrInvalid
	}
	return tx.run(ctx, func(ex Executor) error {
		_, err := ex.ExecContext(ctx, tx.s.sql(`INSERT INTO {p}suppressed_profiles (profile_id) VALUES ($1) ON CONFLICT (profile_id) DO NOTHING`),
			string(pid))
		if err != nil {
			return fmt.Errorf("sqlstore: suppressing profile %s: %w", pid, err)
		}
		return nil
	})
}

func (tx *suppressionTx) RemoveProfile(ctx context.Context, pid identity.ProfileID) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	if pid == "" {
		return suppression.ErrInvalid
	}
	return tx.run(ctx, func(ex Executor) error {
		_, err := ex.ExecContext(ctx, tx.s.sql(`DELETE FROM {p}suppressed_profiles WHERE profile_id = $1`), string(pid))
		if err != nil {
			return fmt.Errorf("sqlstore: unsuppressing profile %s: %w", pid, err)
		}
		return nil
	})
}

func (tx *suppressionTx) Commit(ctx context.Context) error   { return tx.commit(ctx) }
func (tx *suppressionTx) Rollback(ctx context.Context) error { return tx.rollback(ctx) }
