package keyring

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gdprkit/privacy/identity"
)

// Entry is one profile's data key as a Store keeps it: wrapped by a Keeper.
type Entry struct {
	Profile identity.ProfileID
	// Wrapped is the data key as the Keeper encrypted it.
	Wrapped []byte
	// Created is when the key was made.
	Created time.Time
}

// Validate reports, with an error matching ErrInvalid that names the field,
// why a Store cannot take e.
func Validate(e *Entry) error {
	switch {
	case e.Profile == "" || len(e.Profile) > MaxProfileLen:
		return fmt.Errorf("%w: Entry.Profile: want 1 to %d bytes", ErrInvalid, MaxProfileLen)
	case len(e.Wrapped) == 0 || len(e.Wrapped) > MaxWrappedLen:
		return fmt.Errorf("%w: Entry.Wrapped: want 1 to %d bytes", ErrInvalid, MaxWrappedLen)
	}
	return nil
}

// Limits on what a Store takes.
const (
	MaxProfileLen = 256
	// MaxWrappedLen bounds a wrapped key: room for any key management
	// service's envelope around 32 bytes.
	MaxWrappedLen = 4096
)

// Store is the keyring backend. Implementations are safe for concurrent use,
// also by several processes sharing one store, and never keep or return
// memory the caller holds.
type Store interface {
	// Begin starts a transaction.
	Begin(ctx context.Context) (Tx, error)
	// Get returns the profile's entry, as committed, or an error matching
	// ErrNotFound.
	Get(ctx context.Context, pid identity.ProfileID) (Entry, error)
	// List returns up to limit entries whose Profile is greater than after,
	// by Profile: how a rotation walks them all.
	List(ctx context.Context, after identity.ProfileID, limit int) ([]Entry, error)
}

// Tx is a Store transaction. Rollback after Commit is a harmless no-op; any
// other call after either fails with ErrTxDone.
type Tx interface {
	// Get returns the profile's entry as the transaction sees it.
	Get(ctx context.Context, pid identity.ProfileID) (Entry, error)
	// Add stores e unless its profile has an entry already, and returns the
	// entry the store holds for it: e, or the one another transaction
	// committed first (two processes making a new person's key at once end
	// with one). A Store that finds the other only at Commit (MemStore
	// drops the later Add there) returns e: callers read the entry again
	// after Commit, as Keys.For does.
	Add(ctx context.Context, e Entry) (Entry, error)
	// Rewrap replaces the wrapped key of the profile's entry (a key
	// rotation): an error matching ErrNotFound when it has none.
	Rewrap(ctx context.Context, pid identity.ProfileID, wrapped []byte) error
	// Delete destroys the profile's entry, which makes every value sealed
	// under it unreadable for good. Deleting an absent entry is not an error.
	Delete(ctx context.Context, pid identity.ProfileID) error
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// MemStore is the in-memory Store. It is safe for concurrent use.
type MemStore struct {
	mu      sync.RWMutex
	entries map[identity.ProfileID]Entry
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty in-memory keyring.
func NewMemStore() *MemStore { return &MemStore{entries: map[identity.ProfileID]Entry{}} }

func cloneEntry(e Entry) Entry {
	e.Wrapped = bytes.Clone(e.Wrapped)
	return e
}

// Get implements Store.
func (s *MemStore) Get(ctx context.Context, pid identity.ProfileID) (Entry, error) {
	if err := ctx.Err(); err != nil {
		return Entry{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.entries[pid]
	if !ok {
		return Entry{}, ErrNotFound
	}
	return cloneEntry(e), nil
}

// List implements Store.
func (s *MemStore) List(ctx context.Context, after identity.ProfileID, limit int) ([]Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, fmt.Errorf("%w: List limit %d: want a positive number", ErrInvalid, limit)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Entry
	for pid, e := range s.entries {
		if pid > after {
			out = append(out, cloneEntry(e))
		}
	}
	slices.SortFunc(out, func(a, b Entry) int { return cmp.Compare(a.Profile, b.Profile) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Begin implements Store.
func (s *MemStore) Begin(ctx context.Context) (Tx, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &memTx{s: s, staged: map[identity.ProfileID]memOp{}}, nil
}

// memTx stages its writes, the last per profile.
type memTx struct {
	s      *MemStore
	staged map[identity.ProfileID]memOp
	done   bool
}

// memOp is a staged write: an Add, a Rewrap, or (entry nil) a Delete.
type memOp struct {
	entry *Entry
	add   bool
}

func (tx *memTx) check(ctx context.Context) error {
	if tx.done {
		return ErrTxDone
	}
	return ctx.Err()
}

func (tx *memTx) Get(ctx context.Context, pid identity.ProfileID) (Entry, error) {
	if err := tx.check(ctx); err != nil {
		return Entry{}, err
	}
	if op, ok := tx.staged[pid]; ok {
		if op.entry == nil {
			return Entry{}, ErrNotFound
		}
		return cloneEntry(*op.entry), nil
	}
	return tx.s.Get(ctx, pid)
}

func (tx *memTx) Add(ctx context.Context, e Entry) (Entry, error) {
	if err := tx.check(ctx); err != nil {
		return Entry{}, err
	}
	if err := Validate(&e); err != nil {
		return Entry{}, err
	}
	if have, err := tx.Get(ctx, e.Profile); err == nil {
		return have, nil
	}
	c := cloneEntry(e)
	tx.staged[e.Profile] = memOp{entry: &c, add: true}
	return cloneEntry(c), nil
}

func (tx *memTx) Rewrap(ctx context.Context, pid identity.ProfileID, wrapped []byte) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	e, err := tx.Get(ctx, pid)
	if err != nil {
		return err
	}
	e.Wrapped = bytes.Clone(wrapped)
	if err := Validate(&e); err != nil {
		return err
	}
	tx.staged[pid] = memOp{entry: &e, add: tx.staged[pid].add}
	return nil
}

func (tx *memTx) Delete(ctx context.Context, pid identity.ProfileID) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	tx.staged[pid] = memOp{}
	return nil
}

// Commit applies the staged writes at once. An Add whose profile another
// transaction gave an entry since is dropped (the first committed stays), and
// so is a Rewrap of an entry another transaction deleted since (a shredded
// key never comes back).
func (tx *memTx) Commit(ctx context.Context) error {
	if tx.done {
		return ErrTxDone
	}
	tx.done = true
	if err := ctx.Err(); err != nil {
		return err
	}
	tx.s.mu.Lock()
	defer tx.s.mu.Unlock()
	for pid, op := range tx.staged {
		_, held := tx.s.entries[pid]
		switch {
		case op.entry == nil:
			delete(tx.s.entries, pid)
		case op.add != held: // an Add of an absent key, a Rewrap of a held one
			tx.s.entries[pid] = *op.entry
		}
	}
	return nil
}

func (tx *memTx) Rollback(ctx context.Context) error {
	tx.done = true
	tx.staged = nil
	return nil
}
