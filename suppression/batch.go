package suppression

import (
	"context"

	"github.com/gdprkit/privacy/identity"
)

// HashBatchReader is implemented by lists that check many identifiers'
// keyed hashes in one call on committed state, as a SQL adapter does in a
// statement per few hundred. It is optional: listing a suppressing
// request's effect (the Controller's StillSuppressed) asks Suppressed once
// per hash otherwise.
type HashBatchReader interface {
	// SuppressedBatch appends to dst, for each of hs in order, whether the
	// identifier with that keyed hash is suppressed, and returns dst. It
	// answers as Suppressed would for each.
	SuppressedBatch(ctx context.Context, hs []identity.Hash, dst []bool) ([]bool, error)
}

// BatchReader is implemented by lists (and their transactions) that check many
// profiles in one call, as a SQL adapter does in one statement. It is
// optional: the Controller's batched collection checks a whole batch with it
// when present, and asks ProfileSuppressed once per profile otherwise.
type BatchReader interface {
	// ProfileSuppressedBatch appends to dst, for each of pids in order, whether
	// the profile is suppressed, and returns dst. It answers as
	// ProfileSuppressed would for each.
	ProfileSuppressedBatch(ctx context.Context, pids []identity.ProfileID, dst []bool) ([]bool, error)
}

// ProfileSuppressedBatch implements BatchReader, under one read lock.
func (l *MemList) ProfileSuppressedBatch(ctx context.Context, pids []identity.ProfileID, dst []bool) ([]bool, error) {
	if err := ctx.Err(); err != nil {
		return dst, err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	for _, pid := range pids {
		_, ok := l.profiles[pid]
		dst = append(dst, ok)
	}
	return dst, nil
}

// ProfileSuppressedBatch implements BatchReader: the transaction's own writes
// first.
func (tx *memTx) ProfileSuppressedBatch(ctx context.Context, pids []identity.ProfileID, dst []bool) ([]bool, error) {
	if err := tx.check(ctx); err != nil {
		return dst, err
	}
	for _, pid := range pids {
		ok, err := tx.ProfileSuppressed(ctx, pid)
		if err != nil {
			return dst, err
		}
		dst = append(dst, ok)
	}
	return dst, nil
}
