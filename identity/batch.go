package identity

import (
	"context"
	"errors"
	"sync"
)

// BatchReader is implemented by graphs (and their transactions) that look many
// identifiers up in one call, as a SQL adapter does in one statement. It is
// optional: LookupAll uses it when present, and the Controller's batched
// collection then looks up a whole batch in one call.
type BatchReader interface {
	// LookupBatch appends to dst, for each of ids in order, the profile the
	// identifier is linked to, or "" when it is linked to none, and returns
	// dst. It answers as Lookup would for each; an identifier may appear more
	// than once. It keeps neither ids nor dst once it returns: the caller
	// reuses both.
	LookupBatch(ctx context.Context, ids []ID, dst []ProfileID) ([]ProfileID, error)
}

// LookupBatch implements BatchReader, under one read lock.
func (g *MemGraph) LookupBatch(ctx context.Context, ids []ID, dst []ProfileID) ([]ProfileID, error) {
	if err := ctx.Err(); err != nil {
		return dst, err
	}
	g.mu.RLock()
	defer g.mu.RUnlock()
	for _, id := range ids {
		dst = append(dst, g.ids[id])
	}
	return dst, nil
}

// LookupBatch implements BatchReader: the transaction's own writes first.
func (tx *memGraphTx) LookupBatch(ctx context.Context, ids []ID, dst []ProfileID) ([]ProfileID, error) {
	if err := tx.check(ctx); err != nil {
		return dst, err
	}
	for _, id := range ids {
		pid, _ := tx.lookup(id)
		dst = append(dst, pid)
	}
	return dst, nil
}

// LookupAll appends a Match per identifier to dst, with the profile each is
// linked to ("" when none), in one call when rd is a BatchReader.
func LookupAll(ctx context.Context, rd Reader, ids []ID, dst []Match) ([]Match, error) {
	if br, ok := rd.(BatchReader); ok && len(ids) > 1 {
		// The call is through an interface, which the compiler assumes
		// keeps what it is given: the identifiers and the answers go in
		// pooled buffers, so that neither the caller's identifiers (on its
		// stack) nor a buffer of answers is moved to the heap per lookup.
		// A BatchReader keeps neither (see LookupBatch).
		scratch := lookupScratches.Get().(*lookupScratch)
		defer scratch.putBack()
		in := append(scratch.ids[:0], ids...) // past eight: a buffer of its own
		pids, err := br.LookupBatch(ctx, in, scratch.pids[:0])
		if err != nil {
			return dst, err
		}
		if len(pids) != len(ids) {
			return dst, errors.New("identity: LookupBatch answered for a different number of identifiers")
		}
		for i, id := range ids {
			dst = append(dst, Match{ID: id, Profile: pids[i]})
		}
		return dst, nil
	}
	for _, id := range ids {
		pid, err := rd.Lookup(ctx, id)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return dst, err
		}
		dst = append(dst, Match{ID: id, Profile: pid})
	}
	return dst, nil
}

// lookupScratch is LookupAll's pair of buffers for a batch lookup of a
// message's identifiers (a handful; more take buffers of their own).
type lookupScratch struct {
	ids  [8]ID
	pids [8]ProfileID
}

var lookupScratches = sync.Pool{New: func() any { return new(lookupScratch) }}

// putBack clears the buffers (identifiers are personal data) and returns
// them to the pool.
func (s *lookupScratch) putBack() {
	clear(s.ids[:])
	clear(s.pids[:])
	lookupScratches.Put(s)
}
