package keyring

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gdprkit/privacy/identity"
)

// DefaultCacheSize is how many unwrapped data keys Keys keeps by default.
const DefaultCacheSize = 10_000

// Keys gets profiles' data keys: from its cache, or from the Store, unwrapped
// by the Keeper, or made at first use. It is safe for concurrent use, also
// by several processes sharing one Store.
type Keys struct {
	store  Store
	keeper Keeper
	now    func() time.Time
	max    int

	mu    sync.Mutex
	cache map[identity.ProfileID]*DataKey
}

// NewKeys returns Keys over store and keeper, caching up to cacheSize
// unwrapped keys (0 or less means DefaultCacheSize).
func NewKeys(store Store, keeper Keeper, cacheSize int) (*Keys, error) {
	if store == nil || keeper == nil {
		return nil, fmt.Errorf("%w: NewKeys needs a Store and a Keeper", ErrInvalid)
	}
	if cacheSize <= 0 {
		cacheSize = DefaultCacheSize
	}
	return &Keys{store: store, keeper: keeper, now: time.Now, max: cacheSize, cache: map[identity.ProfileID]*DataKey{}}, nil
}

// cached returns the profile's key from the cache.
func (k *Keys) cached(pid identity.ProfileID) *DataKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cache[pid]
}

// keep caches the key, making room by dropping another when full.
func (k *Keys) keep(dk *DataKey) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.cache) >= k.max {
		for pid := range k.cache { // an arbitrary one: map order
			delete(k.cache, pid)
			break
		}
	}
	k.cache[dk.profile] = dk
}

// Existing returns the profile's data key, or an error matching ErrNotFound
// when it has none: never made, or destroyed (its data is shredded).
func (k *Keys) Existing(ctx context.Context, pid identity.ProfileID) (*DataKey, error) {
	if dk := k.cached(pid); dk != nil {
		return dk, nil
	}
	e, err := k.store.Get(ctx, pid)
	if err != nil {
		return nil, err
	}
	return k.unwrap(ctx, e)
}

// For returns the profile's data key, making it (in a transaction of its
// own) if it has none.
func (k *Keys) For(ctx context.Context, pid identity.ProfileID) (*DataKey, error) {
	dk, err := k.Existing(ctx, pid)
	if !errors.Is(err, ErrNotFound) {
		return dk, err
	}
	tx, err := k.store.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := k.Make(ctx, tx, pid); err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	// Read back: another process may have committed its key first.
	return k.Existing(ctx, pid)
}

// Make makes the profile's data key in tx, unless tx sees one already, and
// returns the entry tx holds.
func (k *Keys) Make(ctx context.Context, tx Tx, pid identity.ProfileID) (Entry, error) {
	if e, err := tx.Get(ctx, pid); !errors.Is(err, ErrNotFound) {
		return e, err
	}
	raw := make([]byte, DataKeySize)
	_, _ = rand.Read(raw) // crypto/rand.Read never fails
	wrapped, err := k.keeper.Encrypt(ctx, raw)
	clear(raw)
	if err != nil {
		return Entry{}, fmt.Errorf("keyring: wrapping a data key: %w", err)
	}
	return tx.Add(ctx, Entry{Profile: pid, Wrapped: wrapped, Created: k.now().UTC().Truncate(time.Microsecond)})
}

// unwrap unwraps e and caches it.
func (k *Keys) unwrap(ctx context.Context, e Entry) (*DataKey, error) {
	raw, err := k.keeper.Decrypt(ctx, e.Wrapped)
	if err != nil {
		return nil, fmt.Errorf("keyring: unwrapping the data key: %w", err)
	}
	dk, err := newDataKey(e.Profile, raw)
	clear(raw)
	if err != nil {
		return nil, err
	}
	k.keep(dk)
	return dk, nil
}

// Forget drops the profile's key from the cache: an erasure calls it before
// and after its transaction destroys the key, so that no value is sealed or
// opened under it from then on.
func (k *Keys) Forget(pid identity.ProfileID) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.cache, pid)
}

// Rotate re-wraps every data key of store, unwrapped by from and wrapped by
// to, in transactions of up to batch keys (0 or less: 500), without touching
// the data they seal. It returns how many it re-wrapped. Run again after a
// failure with the same keepers, it re-wraps what is left: a key to already
// opens it, and is skipped.
func Rotate(ctx context.Context, store Store, from, to Keeper, batch int) (int, error) {
	if store == nil || from == nil || to == nil {
		return 0, fmt.Errorf("%w: Rotate needs a Store and two Keepers", ErrInvalid)
	}
	if batch <= 0 {
		batch = 500
	}
	n := 0
	for after := identity.ProfileID(""); ; {
		page, err := store.List(ctx, after, batch)
		if err != nil {
			return n, err
		}
		if len(page) == 0 {
			return n, nil
		}
		tx, err := store.Begin(ctx)
		if err != nil {
			return n, err
		}
		done := 0
		for _, e := range page {
			if _, err := to.Decrypt(ctx, e.Wrapped); err == nil {
				continue // re-wrapped by a run before
			}
			raw, err := from.Decrypt(ctx, e.Wrapped)
			if err != nil {
				_ = tx.Rollback(ctx)
				return n, fmt.Errorf("keyring: unwrapping the data key of a profile with the old keeper: %w", err)
			}
			wrapped, err := to.Encrypt(ctx, raw)
			clear(raw)
			if err != nil {
				_ = tx.Rollback(ctx)
				return n, fmt.Errorf("keyring: wrapping a data key with the new keeper: %w", err)
			}
			if err := tx.Rewrap(ctx, e.Profile, wrapped); err != nil && !errors.Is(err, ErrNotFound) {
				_ = tx.Rollback(ctx)
				return n, err
			}
			done++
		}
		if err := tx.Commit(ctx); err != nil {
			return n, err
		}
		n += done
		after = page[len(page)-1].Profile
	}
}
