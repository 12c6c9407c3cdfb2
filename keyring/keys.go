package keyring

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"sync"
	"time"

	"github.com/gdprkit/privacy/identity"
)

// DefaultCacheSize is how many unwrapped data keys Keys keeps by default.
const DefaultCacheSize = 10_000

// Keys gets profiles' data keys: read from the Store, unwrapped by the Keeper
// (or taken from its cache when the Store holds the same wrapped key), or
// made at first use. It is safe for concurrent use, also by several
// processes sharing one Store.
//
// The cache saves the Keeper's call (a key management service's round trip),
// never the Store's read: a key is used only while the Store holds it, so a
// key another process destroyed, or one made in a transaction that rolled
// back, is never used from the cache.
type Keys struct {
	store  Store
	keeper Keeper
	now    func() time.Time
	max    int

	mu      sync.Mutex
	cache   map[identity.ProfileID]cachedKey
	id      []byte    // the keyring's, read by CheckKeeper
	index   hash.Hash // HMAC under the keyring's index key, set by CheckKeeper
	forward *DataKey  // derived from the index key by CheckKeeper
}

// cachedKey is an unwrapped key and the wrapped form it was unwrapped from.
type cachedKey struct {
	wrapped []byte
	dk      *DataKey
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
	return &Keys{store: store, keeper: keeper, now: time.Now, max: cacheSize, cache: map[identity.ProfileID]cachedKey{}}, nil
}

// Store returns the Store the keys are kept in.
func (k *Keys) Store() Store { return k.store }

// cached returns the profile's key from the cache, if it was unwrapped from
// wrapped.
func (k *Keys) cached(pid identity.ProfileID, wrapped []byte) *DataKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.cache[pid]; ok && bytes.Equal(c.wrapped, wrapped) {
		return c.dk
	}
	return nil
}

// keep caches the key, making room by dropping another when full.
func (k *Keys) keep(wrapped []byte, dk *DataKey) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.cache[dk.profile]; !ok && len(k.cache) >= k.max {
		for pid := range k.cache { // an arbitrary one: map order
			delete(k.cache, pid)
			break
		}
	}
	k.cache[dk.profile] = cachedKey{bytes.Clone(wrapped), dk}
}

// Open returns the data key of e, an entry a Store holds: from the cache when
// it was unwrapped from the same wrapped key, else unwrapped by the Keeper.
func (k *Keys) Open(ctx context.Context, e Entry) (*DataKey, error) {
	if dk := k.cached(e.Profile, e.Wrapped); dk != nil {
		return dk, nil
	}
	raw, err := k.keeper.Decrypt(ctx, e.Wrapped)
	if err != nil {
		return nil, fmt.Errorf("keyring: unwrapping the data key: %w", err)
	}
	dk, err := newDataKey(e.Profile, raw)
	clear(raw)
	if err != nil {
		return nil, err
	}
	k.keep(e.Wrapped, dk)
	return dk, nil
}

// Existing returns the profile's data key, or an error matching ErrNotFound
// when it has none: never made, or destroyed (its data is shredded).
func (k *Keys) Existing(ctx context.Context, pid identity.ProfileID) (*DataKey, error) {
	e, err := k.store.Get(ctx, pid)
	if err != nil {
		return nil, err
	}
	return k.Open(ctx, e)
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
	// Read again what the store holds: this key, or the one another process
	// committed first (a Store such as MemStore sees that only at Commit,
	// after Add returned ours).
	return k.Existing(ctx, pid)
}

// Make makes the profile's data key in tx, unless tx sees one already, and
// returns the entry tx holds.
func (k *Keys) Make(ctx context.Context, tx Tx, pid identity.ProfileID) (Entry, error) {
	if e, err := tx.Get(ctx, pid); !errors.Is(err, ErrNotFound) {
		return e, err
	}
	e, err := k.NewEntry(ctx, pid)
	if err != nil {
		return Entry{}, err
	}
	return tx.Add(ctx, e)
}

// NewEntry makes a new data key for the profile and returns it wrapped by
// the Keeper, for a Store to add: how a backend that keeps the keyring in
// its own transaction makes keys (then Open returns the key it holds).
func (k *Keys) NewEntry(ctx context.Context, pid identity.ProfileID) (Entry, error) {
	raw := make([]byte, DataKeySize)
	_, _ = rand.Read(raw) // crypto/rand.Read never fails
	wrapped, err := k.keeper.Encrypt(ctx, raw)
	clear(raw)
	if err != nil {
		return Entry{}, fmt.Errorf("keyring: wrapping a data key: %w", err)
	}
	return Entry{Profile: pid, Wrapped: wrapped, Created: k.now().UTC().Truncate(time.Microsecond)}, nil
}

// Forget drops the profile's key from the cache: an erasure calls it once
// its transaction destroyed the key, so that the unwrapped key does not stay
// in memory.
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

// Sealer is implemented by a backend that can seal what it stores with
// profiles' data keys (sqlstore's profile store does): the Controller hands
// it its Keys at New, once their keeper is checked (CheckKeeper), unless told
// WithoutEncryption. SealWith fails with an error matching ErrWrongKeyring
// when the backend's data was sealed with the keys of another keyring
// (KeyringID).
//
// Sealed reports whether the backend's data was ever sealed (a keyring is
// recorded): then a Controller without its keys (WithoutEncryption, or a
// profile store that cannot seal) is refused, since it would not find the
// sealed identifiers and would link them again, in clear.
type Sealer interface {
	SealWith(ctx context.Context, keys *Keys) error
	Sealed(ctx context.Context) (bool, error)
}

// KeeperCheckProfile is the reserved Entry.Profile of the keeper check: a
// known value the keeper wrapped, written by the first CheckKeeper on a
// Store. Rotate re-wraps it with the data keys; it stands for no profile.
const KeeperCheckProfile identity.ProfileID = "keyring:keeper-check"

// keeperCheck is the value the keeper check wraps.
var keeperCheck = []byte("gdprkit/keyring keeper check v1")

// CheckKeeper checks that the Keeper is the one the Store's keys are wrapped
// by, so that a host started with another one (WithKeeper forgotten, say)
// is refused before it wraps a key that the others cannot unwrap: it
// unwraps the Store's keeper check, or, on a Store without one yet, its
// first data key, then writes the check. It fails with an error matching
// ErrWrongKeeper when the Keeper cannot.
func (k *Keys) CheckKeeper(ctx context.Context) error {
	e, err := k.store.Get(ctx, KeeperCheckProfile)
	if errors.Is(err, ErrNotFound) {
		page, err := k.store.List(ctx, "", 1)
		if err != nil {
			return err
		}
		if len(page) > 0 && page[0].Profile != KeeperCheckProfile {
			if _, err := k.keeper.Decrypt(ctx, page[0].Wrapped); err != nil {
				return fmt.Errorf("%w: it does not unwrap the keyring's data keys (%v)", ErrWrongKeeper, err)
			}
		}
		secret := make([]byte, keyringIDSize+indexKeySize)
		_, _ = rand.Read(secret) // crypto/rand.Read never fails
		wrapped, err := k.keeper.Encrypt(ctx, append(bytes.Clone(keeperCheck), secret...))
		clear(secret)
		if err != nil {
			return fmt.Errorf("keyring: wrapping the keeper check: %w", err)
		}
		tx, err := k.store.Begin(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		// Another process may add one first: Add returns the one kept.
		if _, err = tx.Add(ctx, Entry{Profile: KeeperCheckProfile, Wrapped: wrapped, Created: k.now().UTC().Truncate(time.Microsecond)}); err != nil {
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		// The one kept, read again: a Store may see another's only at Commit.
		if e, err = k.store.Get(ctx, KeeperCheckProfile); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	plain, err := k.keeper.Decrypt(ctx, e.Wrapped)
	if err != nil || len(plain) != len(keeperCheck)+keyringIDSize+indexKeySize || !bytes.Equal(plain[:len(keeperCheck)], keeperCheck) {
		return fmt.Errorf("%w: it does not unwrap the keyring's keeper check", ErrWrongKeeper)
	}
	secret := plain[len(keeperCheck):]
	derive := hmac.New(sha256.New, secret[keyringIDSize:])
	derive.Write([]byte(forwardingLabel))
	raw := derive.Sum(nil)
	forward, err := newDataKey(ForwardingProfile, raw)
	clear(raw)
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.id = bytes.Clone(secret[:keyringIDSize])
	k.index = hmac.New(sha256.New, secret[keyringIDSize:])
	k.forward = forward
	k.mu.Unlock()
	clear(plain)
	return nil
}

// ForwardingProfile is the profile the keyring's forwarding key (Forwarding)
// seals as: a name no profile id takes.
const ForwardingProfile identity.ProfileID = "keyring:forwarding"

// forwardingLabel is what the forwarding key is derived from the index key
// with.
const forwardingLabel = "gdprkit/keyring/forwarding/v1"

// Forwarding returns the keyring's forwarding key: one key, derived from its
// index key (kept wrapped in the keeper check, the same across Rotate), for
// what must stay readable after a person's own key is destroyed (the
// deletions an erasure owes destinations) and what a backend would rather
// not tie to one person's key (an outbox's queued messages). Someone with
// the data alone cannot read what it seals. Nil before CheckKeeper.
func (k *Keys) Forwarding() *DataKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.forward
}

// The sizes of a keyring's id and of its index key, kept with its keeper
// check.
const (
	keyringIDSize = 16
	indexKeySize  = 32
)

// Index returns the keyed hash an identifier is looked up by where its value
// is kept sealed (a blind index: "h1:" and the HMAC-SHA256 of its type and
// value, base64url), under the keyring's index key, which its keeper check
// keeps wrapped: someone with the data alone cannot compute it, and it stays
// the same across Rotate. It fails with ErrInvalid before CheckKeeper.
func (k *Keys) Index(id identity.ID) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.index == nil {
		return "", fmt.Errorf("%w: Index before CheckKeeper", ErrInvalid)
	}
	k.index.Reset()
	k.index.Write([]byte(id.Type))
	k.index.Write([]byte{0})
	k.index.Write([]byte(id.Value))
	return "h1:" + base64.RawURLEncoding.EncodeToString(k.index.Sum(nil)), nil
}

// KeyringID returns the id of the Store's keyring, random, made with its
// keeper check and kept in it (re-wrapped, never changed, by Rotate): a
// backend that seals records it, and refuses a keyring of another id, whose
// keys are not those of its data (an empty keyring given by mistake would
// make every person look erased). Nil before CheckKeeper.
func (k *Keys) KeyringID() []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return bytes.Clone(k.id)
}
