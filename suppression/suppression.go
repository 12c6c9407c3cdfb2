// Package suppression is the backend of the right to object (Art. 21): the list
// of suppressed people that the collection path checks before it stores
// anything.
//
// The list keeps keyed hashes of identifiers (identity.Hash), never the clear
// values, so a person who is erased and suppressed is not stored in clear
// anywhere. It also keeps the ids of suppressed profiles whose data is kept
// (SUPPRESS_ONLY): a profile id is a random pseudonym, and checking it needs no
// hashing, which keeps the check for a known person cheap. The Controller keeps
// one invariant: an identifier linked to a profile is in the list only if the
// profile is, so a message whose identifiers are all linked is checked by profile
// alone, and only unlinked identifiers are hashed.
//
// A list may implement the optional EmptyChecker, which lets the collection
// path skip its check while nobody is suppressed, and BatchReader, which
// checks a batch's profiles in one call.
//
// # Errors
//
// ErrTxDone and ErrInvalid, matchable with errors.Is.
package suppression

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/gdprkit/privacy/identity"
)

// Errors of this package.
var (
	// ErrTxDone: the transaction was already committed or rolled back.
	ErrTxDone = errors.New("suppression: transaction already committed or rolled back")
	// ErrInvalid: an argument the list cannot take (an empty profile id).
	ErrInvalid = errors.New("suppression: invalid")
)

// Reader reads the suppression list.
type Reader interface {
	// Suppressed reports whether the identifier with this keyed hash is
	// suppressed.
	Suppressed(ctx context.Context, h identity.Hash) (bool, error)
	// ProfileSuppressed reports whether the profile is suppressed.
	ProfileSuppressed(ctx context.Context, pid identity.ProfileID) (bool, error)
}

// List is the suppression list backend. Reads on the List itself see committed
// state.
type List interface {
	Reader
	// Len returns how many identifiers and profiles are suppressed.
	Len(ctx context.Context) (identifiers, profiles int, err error)
	// Begin starts a transaction.
	Begin(ctx context.Context) (Tx, error)
}

// Tx is a transaction on a List with database/sql manners: after Commit or
// Rollback every method fails with ErrTxDone, except Rollback, which is then a
// harmless no-op. Every write is idempotent.
type Tx interface {
	Reader
	// Add suppresses the identifiers with these hashes.
	Add(ctx context.Context, hs ...identity.Hash) error
	// Remove ends their suppression.
	Remove(ctx context.Context, hs ...identity.Hash) error
	// AddProfile suppresses the profile; RemoveProfile ends it.
	AddProfile(ctx context.Context, pid identity.ProfileID) error
	RemoveProfile(ctx context.Context, pid identity.ProfileID) error
	// Commit makes the staged writes visible at once.
	Commit(ctx context.Context) error
	// Rollback discards the staged writes.
	Rollback(ctx context.Context) error
}

// Rekeyer is implemented by the transactions of lists whose identifier hashes
// a key rotation can carry to a new key (identity.Hasher.Rekey): the list
// holds only hashes, and an erased person's identifiers are nowhere else, so
// a rotation cannot hash them again from the values. It is optional, but a
// Controller's key cannot be rotated over a list without it.
type Rekeyer interface {
	// Rekey replaces, in the transaction, every suppressed identifier hash h
	// (committed or staged before) by rekey(h), records check as the key
	// check value (KeyChecker) and returns how many hashes it replaced.
	// Suppressed profiles, kept by id, do not change.
	Rekey(ctx context.Context, rekey func(identity.Hash) identity.Hash, check identity.Hash) (int, error)
}

// ErrKeyChanged: the list holds another key check value than the writer's
// (KeyGuard): its key was rotated since the writer started.
var ErrKeyChanged = errors.New("suppression: the list is keyed with another key")

// KeyGuard is implemented by the transactions of lists that record a key
// check value (KeyChecker): a writer states the check value of the key it
// hashes with before it writes, and the transaction fails with an error
// matching ErrKeyChanged unless the list holds that value. The value is read
// under a lock a Rekey waits for (and that waits for a Rekey), so that a
// writer that started before a rotation can never write hashes under the
// old key after it.
type KeyGuard interface {
	RequireKey(ctx context.Context, check identity.Hash) error
}

// KeyChecker is implemented by lists that record the check value of the key
// their hashes are made with (identity.Hasher.Check), so that a Controller
// started with another key is refused rather than silently missing every
// suppression. It is optional; every list that outlives its process should
// have it.
type KeyChecker interface {
	// KeyCheck returns the key check value the list holds, zero when it
	// holds none.
	KeyCheck(ctx context.Context) (identity.Hash, error)
	// RecordKeyCheck records check as the key check value unless the list
	// holds one already, and returns the one it holds.
	RecordKeyCheck(ctx context.Context, check identity.Hash) (identity.Hash, error)
}

// EmptyChecker is implemented by lists that can tell that nothing at all is
// suppressed more cheaply than they can check one person. It is optional: the
// collection path asks it first and skips its checks (no hashing, no lookups)
// while the list is empty; a List without it is checked on every message.
//
// IsEmpty reports whether no identifier and no profile is suppressed, as
// committed, in this process or any other sharing the list. A true answer
// must be exact; false is always safe, so a list may keep answering false once
// it has seen a suppression, without asking its storage again.
type EmptyChecker interface {
	IsEmpty(ctx context.Context) (bool, error)
}

var _ EmptyChecker = (*MemList)(nil)

// MemList is the in-memory List. It is safe for concurrent use; a check is a map
// lookup under a read lock and does not allocate.
type MemList struct {
	mu       sync.RWMutex
	check    identity.Hash // the key check value, zero until the first KeyCheck
	ids      map[identity.Hash]struct{}
	profiles map[identity.ProfileID]struct{}
}

var (
	_ List       = (*MemList)(nil)
	_ KeyChecker = (*MemList)(nil)
)

// KeyCheck implements KeyChecker.
func (l *MemList) KeyCheck(ctx context.Context) (identity.Hash, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.check, nil
}

// RecordKeyCheck implements KeyChecker.
func (l *MemList) RecordKeyCheck(ctx context.Context, check identity.Hash) (identity.Hash, error) {
	if check.IsZero() {
		return identity.Hash{}, fmt.Errorf("%w: zero key check value", ErrInvalid)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.check.IsZero() {
		l.check = check
	}
	return l.check, nil
}

// NewMemList returns an empty in-memory suppression list.
func NewMemList() *MemList {
	return &MemList{ids: map[identity.Hash]struct{}{}, profiles: map[identity.ProfileID]struct{}{}}
}

// Suppressed implements Reader.
func (l *MemList) Suppressed(ctx context.Context, h identity.Hash) (bool, error) {
	l.mu.RLock()
	_, ok := l.ids[h]
	l.mu.RUnlock()
	return ok, nil
}

// ProfileSuppressed implements Reader.
func (l *MemList) ProfileSuppressed(ctx context.Context, pid identity.ProfileID) (bool, error) {
	l.mu.RLock()
	_, ok := l.profiles[pid]
	l.mu.RUnlock()
	return ok, nil
}

// Empty reports whether nothing is suppressed. It is IsEmpty without a
// context.
func (l *MemList) Empty() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.ids) == 0 && len(l.profiles) == 0
}

// IsEmpty implements EmptyChecker: a read lock and two map lengths, so an
// unused list costs the collection path nothing.
func (l *MemList) IsEmpty(ctx context.Context) (bool, error) { return l.Empty(), nil }

// Len implements List.
func (l *MemList) Len(ctx context.Context) (int, int, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.ids), len(l.profiles), nil
}

// Begin implements List.
func (l *MemList) Begin(ctx context.Context) (Tx, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &memTx{l: l}, nil
}

// memOp is one staged write; ops apply in order at Commit.
type memOp struct {
	add     bool
	hash    identity.Hash
	profile identity.ProfileID                // set for profile ops
	rekey   func(identity.Hash) identity.Hash // set for a Rekey
	check   identity.Hash                     // a Rekey's key check value
}

var (
	_ Rekeyer  = (*memTx)(nil)
	_ KeyGuard = (*memTx)(nil)
)

// RequireKey implements KeyGuard.
func (tx *memTx) RequireKey(ctx context.Context, check identity.Hash) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	tx.l.mu.RLock()
	defer tx.l.mu.RUnlock()
	if !tx.l.check.IsZero() && tx.l.check != check {
		return ErrKeyChanged
	}
	tx.required = check // checked again at Commit: a Rekey may commit first
	return nil
}

type memTx struct {
	l    *MemList
	done bool
	ops  []memOp
	// required is the key check value RequireKey stated: Commit fails
	// unless the list still holds it.
	required identity.Hash
}

func (tx *memTx) check(ctx context.Context) error {
	if tx.done {
		return ErrTxDone
	}
	return ctx.Err()
}

func (tx *memTx) Suppressed(ctx context.Context, h identity.Hash) (bool, error) {
	if err := tx.check(ctx); err != nil {
		return false, err
	}
	for i := len(tx.ops) - 1; i >= 0; i-- {
		op := tx.ops[i]
		if op.rekey != nil {
			// Staged after a Rekey: the hashes as they will be.
			_, ok := tx.staged()[h]
			return ok, nil
		}
		if op.profile == "" && op.hash == h {
			return op.add, nil
		}
	}
	return tx.l.Suppressed(ctx, h)
}

// staged returns the identifier hashes as they will be after Commit: a copy
// (a Rekey's reads only, which a rotation makes once).
func (tx *memTx) staged() map[identity.Hash]struct{} {
	tx.l.mu.RLock()
	ids := maps.Clone(tx.l.ids)
	tx.l.mu.RUnlock()
	return applyIDs(ids, tx.ops)
}

// applyIDs applies the identifier writes among ops to ids, in order.
func applyIDs(ids map[identity.Hash]struct{}, ops []memOp) map[identity.Hash]struct{} {
	for _, op := range ops {
		switch {
		case op.profile != "":
		case op.rekey != nil:
			next := make(map[identity.Hash]struct{}, len(ids))
			for h := range ids {
				next[op.rekey(h)] = struct{}{}
			}
			ids = next
		case op.add:
			ids[op.hash] = struct{}{}
		default:
			delete(ids, op.hash)
		}
	}
	return ids
}

// Rekey implements Rekeyer.
func (tx *memTx) Rekey(ctx context.Context, rekey func(identity.Hash) identity.Hash, check identity.Hash) (int, error) {
	if err := tx.check(ctx); err != nil {
		return 0, err
	}
	switch {
	case rekey == nil:
		return 0, fmt.Errorf("%w: nil rekey function", ErrInvalid)
	case check.IsZero():
		return 0, fmt.Errorf("%w: zero key check value", ErrInvalid)
	}
	n := len(tx.staged())
	tx.ops = append(tx.ops, memOp{rekey: rekey, check: check})
	return n, nil
}

func (tx *memTx) ProfileSuppressed(ctx context.Context, pid identity.ProfileID) (bool, error) {
	if err := tx.check(ctx); err != nil {
		return false, err
	}
	for i := len(tx.ops) - 1; i >= 0; i-- {
		if op := tx.ops[i]; op.profile != "" && op.profile == pid { // not an identifier's write
			return op.add, nil
		}
	}
	return tx.l.ProfileSuppressed(ctx, pid)
}

func (tx *memTx) stage(ctx context.Context, add bool, hs []identity.Hash) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	for _, h := range hs {
		tx.ops = append(tx.ops, memOp{add: add, hash: h})
	}
	return nil
}

func (tx *memTx) Add(ctx context.Context, hs ...identity.Hash) error { return tx.stage(ctx, true, hs) }
func (tx *memTx) Remove(ctx context.Context, hs ...identity.Hash) error {
	return tx.stage(ctx, false, hs)
}

func (tx *memTx) stageProfile(ctx context.Context, add bool, pid identity.ProfileID) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	if pid == "" {
		return fmt.Errorf("%w: empty profile id", ErrInvalid)
	}
	tx.ops = append(tx.ops, memOp{add: add, profile: pid})
	return nil
}

func (tx *memTx) AddProfile(ctx context.Context, pid identity.ProfileID) error {
	return tx.stageProfile(ctx, true, pid)
}

func (tx *memTx) RemoveProfile(ctx context.Context, pid identity.ProfileID) error {
	return tx.stageProfile(ctx, false, pid)
}

func (tx *memTx) Commit(ctx context.Context) error {
	if tx.done {
		return ErrTxDone
	}
	tx.done = true
	ops := tx.ops
	tx.ops = nil
	if err := ctx.Err(); err != nil {
		return err
	}
	l := tx.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if !tx.required.IsZero() && !l.check.IsZero() && l.check != tx.required {
		return ErrKeyChanged // a Rekey committed since RequireKey: nothing applied
	}
	for _, op := range ops {
		switch {
		case op.profile != "" && op.add:
			l.profiles[op.profile] = struct{}{}
		case op.profile != "":
			delete(l.profiles, op.profile)
		case op.rekey != nil:
			l.check = op.check
		}
	}
	l.ids = applyIDs(l.ids, ops)
	return nil
}

func (tx *memTx) Rollback(ctx context.Context) error {
	tx.done = true
	tx.ops = nil
	return nil
}
