package keyring

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gdprkit/privacy/identity"
)

var (
	secret      = []byte("the keeper's secret, 32 bytes...")
	otherSecret = []byte("another keeper's secret, 32 b...")
)

func keeper(t *testing.T, s []byte) *LocalKeeper {
	t.Helper()
	k, err := NewLocalKeeper(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestLocalKeeperRoundTripAndRefusals(t *testing.T) {
	ctx := context.Background()
	k := keeper(t, secret)
	wrapped, err := k.Encrypt(ctx, []byte("a data key"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(wrapped, []byte("a data key")) {
		t.Error("the wrapped key holds the key in clear")
	}
	again, _ := k.Encrypt(ctx, []byte("a data key"))
	if bytes.Equal(wrapped, again) {
		t.Error("two encryptions of one key are equal: the nonce is not random")
	}
	if got, err := k.Decrypt(ctx, wrapped); err != nil || string(got) != "a data key" {
		t.Errorf("Decrypt = %q, %v", got, err)
	}
	if _, err := keeper(t, otherSecret).Decrypt(ctx, wrapped); !errors.Is(err, ErrUndecryptable) {
		t.Errorf("Decrypt with another secret = %v; want ErrUndecryptable", err)
	}
	for i := range wrapped {
		bad := bytes.Clone(wrapped)
		bad[i] ^= 1
		if _, err := k.Decrypt(ctx, bad); !errors.Is(err, ErrUndecryptable) {
			t.Fatalf("byte %d flipped: Decrypt = %v; want ErrUndecryptable", i, err)
		}
	}
	for _, short := range [][]byte{nil, {1}, wrapped[:20]} {
		if _, err := k.Decrypt(ctx, short); !errors.Is(err, ErrUndecryptable) {
			t.Errorf("Decrypt of %d bytes = %v; want ErrUndecryptable", len(short), err)
		}
	}
	if _, err := NewLocalKeeper([]byte("short")); !errors.Is(err, ErrInvalid) {
		t.Errorf("NewLocalKeeper(short) = %v; want ErrInvalid", err)
	}
}

// TestDataKeyBindsProfileAndField: a value opens only for the profile and
// field it was sealed for: moved to another row or field, it fails.
func TestDataKeyBindsProfileAndField(t *testing.T) {
	ctx := context.Background()
	keys, err := NewKeys(NewMemStore(), keeper(t, secret), 0)
	if err != nil {
		t.Fatal(err)
	}
	ada, err := keys.For(ctx, "prof_ada")
	if err != nil {
		t.Fatal(err)
	}
	bob, err := keys.For(ctx, "prof_bob")
	if err != nil {
		t.Fatal(err)
	}
	sealed := ada.Seal("trait:email", []byte("ada@example.com"))
	if bytes.Contains(sealed, []byte("ada@example.com")) {
		t.Error("the sealed value holds it in clear")
	}
	if got, err := ada.Open("trait:email", sealed); err != nil || string(got) != "ada@example.com" {
		t.Errorf("Open = %q, %v", got, err)
	}
	if _, err := ada.Open("trait:phone", sealed); !errors.Is(err, ErrUndecryptable) {
		t.Errorf("opened as another field: %v; want ErrUndecryptable", err)
	}
	if _, err := bob.Open("trait:email", sealed); !errors.Is(err, ErrUndecryptable) {
		t.Errorf("opened as another profile's: %v; want ErrUndecryptable", err)
	}
	// The same key bytes under another profile id still refuse it: the
	// profile is in the associated data, not only in the key.
	dk, err := newDataKey("prof_eve", mustRaw(t, keys, "prof_ada"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dk.Open("trait:email", sealed); !errors.Is(err, ErrUndecryptable) {
		t.Errorf("the same key under another profile id opened it: %v", err)
	}
}

// mustRaw returns the profile's raw data key.
func mustRaw(t *testing.T, k *Keys, pid identity.ProfileID) []byte {
	t.Helper()
	e, err := k.store.Get(context.Background(), pid)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := k.keeper.Decrypt(context.Background(), e.Wrapped)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestKeysMakeOneKeyPerProfile: Keys of two processes sharing a store, making
// a new profile's key at once, end with the same key; a destroyed key is
// gone for both at once, cache or no cache.
func TestKeysMakeOneKeyPerProfile(t *testing.T) {
	ctx := context.Background()
	store := NewMemStore()
	var all []*Keys
	for range 2 {
		k, err := NewKeys(store, keeper(t, secret), 0)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, k)
	}
	var wg sync.WaitGroup
	sealed := make([][]byte, 16)
	for i := range sealed {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dk, err := all[i%2].For(ctx, "prof_new")
			if err != nil {
				t.Error(err)
				return
			}
			sealed[i] = dk.Seal("f", []byte(fmt.Sprint(i)))
		}()
	}
	wg.Wait()
	for _, k := range all {
		dk, err := k.Existing(ctx, "prof_new")
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range sealed {
			if got, err := dk.Open("f", s); err != nil || string(got) != fmt.Sprint(i) {
				t.Fatalf("value %d sealed by a racing For: %q, %v; want one key for the profile", i, got, err)
			}
		}
	}
	// Shredded: gone for every Keys at once, though each has it cached.
	tx, err := store.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Delete(ctx, "prof_new"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for _, k := range all {
		if _, err := k.Existing(ctx, "prof_new"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Existing after the key was destroyed = %v; want ErrNotFound", err)
		}
	}
}

// TestRotateRewrapsWithoutTouchingData: every data key is re-wrapped under
// the new keeper; values sealed before still open; the old keeper opens no
// key; a second run re-wraps nothing.
func TestRotateRewrapsWithoutTouchingData(t *testing.T) {
	ctx := context.Background()
	store := NewMemStore()
	old, next := keeper(t, secret), keeper(t, otherSecret)
	keys, err := NewKeys(store, old, 0)
	if err != nil {
		t.Fatal(err)
	}
	sealed := map[identity.ProfileID][]byte{}
	for i := range 7 {
		pid := identity.ProfileID(fmt.Sprint("prof_", i))
		dk, err := keys.For(ctx, pid)
		if err != nil {
			t.Fatal(err)
		}
		sealed[pid] = dk.Seal("v", []byte(pid))
	}
	n, err := Rotate(ctx, store, old, next, 3)
	if err != nil || n != 7 {
		t.Fatalf("Rotate = %d, %v; want 7", n, err)
	}
	after, err := NewKeys(store, next, 0)
	if err != nil {
		t.Fatal(err)
	}
	stale, _ := NewKeys(store, old, 0)
	for pid, s := range sealed {
		dk, err := after.Existing(ctx, pid)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := dk.Open("v", s); err != nil || string(got) != string(pid) {
			t.Errorf("%s after the rotation: %q, %v", pid, got, err)
		}
		if _, err := stale.Existing(ctx, pid); err == nil {
			t.Errorf("%s: the old keeper still unwraps its key", pid)
		}
	}
	if n, err := Rotate(ctx, store, old, next, 3); err != nil || n != 0 {
		t.Errorf("Rotate again = %d, %v; want nothing left", n, err)
	}
}

func TestKeysCacheIsBounded(t *testing.T) {
	ctx := context.Background()
	keys, err := NewKeys(NewMemStore(), keeper(t, secret), 4)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := keys.For(ctx, identity.ProfileID(fmt.Sprint("p", i))); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(keys.cache); n > 4 {
		t.Errorf("the cache holds %d keys; want at most 4", n)
	}
	if _, err := NewKeys(nil, keeper(t, secret), 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("NewKeys without a store = %v; want ErrInvalid", err)
	}
}

// countingKeeper counts the Keeper's Decrypt calls.
type countingKeeper struct {
	Keeper
	decrypts atomic.Int64
}

func (k *countingKeeper) Decrypt(ctx context.Context, ciphertext []byte) ([]byte, error) {
	k.decrypts.Add(1)
	return k.Keeper.Decrypt(ctx, ciphertext)
}

// TestKeysCacheFollowsTheStore: the cache saves the Keeper's calls, never
// the Store's word: a key made in a transaction that rolled back, or replaced
// by another one, is not used from the cache.
func TestKeysCacheFollowsTheStore(t *testing.T) {
	ctx := context.Background()
	store := NewMemStore()
	ck := &countingKeeper{Keeper: keeper(t, secret)}
	keys, err := NewKeys(store, ck, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Made and opened in a transaction that rolls back.
	tx, err := store.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e, err := keys.Make(ctx, tx, "prof_x")
	if err != nil {
		t.Fatal(err)
	}
	lost, err := keys.Open(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Existing(ctx, "prof_x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Existing after the making transaction rolled back = %v; want ErrNotFound", err)
	}
	kept, err := keys.For(ctx, "prof_x")
	if err != nil {
		t.Fatal(err)
	}
	sealed := kept.Seal("f", []byte("v"))
	if _, err := lost.Open("f", sealed); err == nil {
		t.Fatal("the rolled-back key opens what the kept one sealed: For reused it")
	}
	// Busy: the Keeper is not asked again while the store holds the same key.
	before := ck.decrypts.Load()
	for range 50 {
		dk, err := keys.Existing(ctx, "prof_x")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := dk.Open("f", sealed); err != nil || string(got) != "v" {
			t.Fatalf("Open = %q, %v", got, err)
		}
	}
	if n := ck.decrypts.Load() - before; n != 0 {
		t.Errorf("50 reads of a cached key called the Keeper %d times; want 0", n)
	}
	keys.Forget("prof_x")
	if _, err := keys.Existing(ctx, "prof_x"); err != nil {
		t.Fatal(err)
	}
	if n := ck.decrypts.Load() - before; n != 1 {
		t.Errorf("a read after Forget called the Keeper %d times; want 1", n)
	}
}

// TestCheckKeeper: the first check writes the keeper check; another keeper
// is refused, on a store with a check and on one with keys made before
// checks; the right one passes, also after Rotate.
func TestCheckKeeper(t *testing.T) {
	ctx := context.Background()
	right, wrong := keeper(t, secret), keeper(t, otherSecret)
	newKeys := func(s Store, k Keeper) *Keys {
		keys, err := NewKeys(s, k, 0)
		if err != nil {
			t.Fatal(err)
		}
		return keys
	}
	store := NewMemStore()
	if err := newKeys(store, right).CheckKeeper(ctx); err != nil {
		t.Fatalf("the first check: %v", err)
	}
	if _, err := store.Get(ctx, KeeperCheckProfile); err != nil {
		t.Fatalf("the first check wrote no keeper check: %v", err)
	}
	if err := newKeys(store, wrong).CheckKeeper(ctx); !errors.Is(err, ErrWrongKeeper) {
		t.Errorf("another keeper's check = %v; want ErrWrongKeeper", err)
	}
	if err := newKeys(store, right).CheckKeeper(ctx); err != nil {
		t.Errorf("the right keeper's second check: %v", err)
	}
	// Keys made before there were checks.
	old := NewMemStore()
	if _, err := newKeys(old, right).For(ctx, "prof_ada"); err != nil {
		t.Fatal(err)
	}
	if err := newKeys(old, wrong).CheckKeeper(ctx); !errors.Is(err, ErrWrongKeeper) {
		t.Errorf("another keeper's check of a store with keys and no check = %v; want ErrWrongKeeper", err)
	}
	if _, err := old.Get(ctx, KeeperCheckProfile); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused check wrote a keeper check (%v)", err)
	}
	if err := newKeys(old, right).CheckKeeper(ctx); err != nil {
		t.Errorf("the right keeper's check of a store with keys and no check: %v", err)
	}
	before := newKeys(old, right)
	if err := before.CheckKeeper(ctx); err != nil {
		t.Fatal(err)
	}
	if len(before.KeyringID()) == 0 {
		t.Fatal("no KeyringID after CheckKeeper")
	}
	if _, err := Rotate(ctx, old, right, wrong, 0); err != nil {
		t.Fatal(err)
	}
	after := newKeys(old, wrong)
	if err := after.CheckKeeper(ctx); err != nil {
		t.Errorf("the check after Rotate to the new keeper: %v", err)
	}
	if !bytes.Equal(after.KeyringID(), before.KeyringID()) {
		t.Errorf("KeyringID changed with Rotate: %x, then %x", before.KeyringID(), after.KeyringID())
	}
	if other := newKeys(NewMemStore(), wrong); other.CheckKeeper(ctx) != nil || bytes.Equal(other.KeyringID(), after.KeyringID()) {
		t.Error("two keyrings have one KeyringID")
	}
	if err := newKeys(old, right).CheckKeeper(ctx); !errors.Is(err, ErrWrongKeeper) {
		t.Errorf("the old keeper's check after Rotate = %v; want ErrWrongKeeper", err)
	}
}

// TestCheckKeeperAtOnceAgreesOnOneIndexKey: hosts starting together on an
// empty keyring all end with the keeper check the store kept, so they index
// identifiers alike (a host left with its own index key would never find
// the others' people).
func TestCheckKeeperAtOnceAgreesOnOneIndexKey(t *testing.T) {
	ctx := context.Background()
	for round := range 20 {
		store := NewMemStore()
		all := make([]*Keys, 4)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range all {
			k, err := NewKeys(store, keeper(t, secret), 0)
			if err != nil {
				t.Fatal(err)
			}
			all[i] = k
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if err := k.CheckKeeper(ctx); err != nil {
					t.Error(err)
				}
			}()
		}
		close(start)
		wg.Wait()
		id := identity.ID{Type: "email", Value: "a@example.com"}
		want, err := all[0].Index(id)
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range all[1:] {
			got, err := k.Index(id)
			if err != nil {
				t.Fatal(err)
			}
			if got != want || !bytes.Equal(k.KeyringID(), all[0].KeyringID()) {
				t.Fatalf("round %d: host %d indexes %q under keyring %x; host 0 %q under %x: want one keeper check", round, i+1, got, k.KeyringID(), want, all[0].KeyringID())
			}
		}
	}
}

// TestForwardingKey: every host of one keyring derives the same forwarding
// key, which still opens what it sealed after Rotate; another keyring's does
// not open it, and there is none before CheckKeeper.
func TestForwardingKey(t *testing.T) {
	ctx := context.Background()
	open := func(store Store, k Keeper) *Keys {
		t.Helper()
		keys, err := NewKeys(store, k, 0)
		if err != nil {
			t.Fatal(err)
		}
		if keys.Forwarding() != nil {
			t.Fatal("a forwarding key before CheckKeeper")
		}
		if err := keys.CheckKeeper(ctx); err != nil {
			t.Fatal(err)
		}
		return keys
	}
	store := NewMemStore()
	a := open(store, keeper(t, secret))
	sealed := a.Forwarding().Seal("outbox:delete:crm", []byte("ada@example.com"))
	if got, err := open(store, keeper(t, secret)).Forwarding().Open("outbox:delete:crm", sealed); err != nil || string(got) != "ada@example.com" {
		t.Errorf("another host's forwarding key opens %q, %v; want the value", got, err)
	}
	if _, err := a.Forwarding().Open("outbox:delete:other", sealed); !errors.Is(err, ErrUndecryptable) {
		t.Errorf("opened as another field: %v; want ErrUndecryptable", err)
	}
	if _, err := open(NewMemStore(), keeper(t, secret)).Forwarding().Open("outbox:delete:crm", sealed); !errors.Is(err, ErrUndecryptable) {
		t.Errorf("another keyring's forwarding key: %v; want ErrUndecryptable", err)
	}
	if _, err := Rotate(ctx, store, keeper(t, secret), keeper(t, otherSecret), 10); err != nil {
		t.Fatal(err)
	}
	if got, err := open(store, keeper(t, otherSecret)).Forwarding().Open("outbox:delete:crm", sealed); err != nil || string(got) != "ada@example.com" {
		t.Errorf("after Rotate the forwarding key opens %q, %v; want the value", got, err)
	}
}
