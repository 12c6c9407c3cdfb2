package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/keyring"
)

// KeyringMaker is what a Harness also implements when its adapter provides a
// keyring: the "Keyring" checks run on the store it makes.
type KeyringMaker interface {
	// MakeKeyring returns an empty keyring, or an error matching
	// ErrNotImplemented.
	MakeKeyring(ctx context.Context) (keyring.Store, error)
}

// makeKeyring is the Harness's MakeKeyring, or ErrNotImplemented.
func makeKeyring(h Harness, ctx context.Context) (keyring.Store, error) {
	m, ok := h.(KeyringMaker)
	if !ok {
		return nil, fmt.Errorf("%w: the Harness has no MakeKeyring method (storetest.KeyringMaker)", ErrNotImplemented)
	}
	return m.MakeKeyring(ctx)
}

var keyringChecks = []check[keyring.Store]{
	{"AddThenGet", keyringAddThenGet},
	{"AddKeepsTheFirst", keyringAddKeepsTheFirst},
	{"ConcurrentAddsKeepOne", keyringConcurrentAdds},
	{"RewrapAndDelete", keyringRewrapAndDelete},
	{"DeleteWinsOverALaterRewrap", keyringDeleteWins},
	{"RollbackDiscards", keyringRollbackDiscards},
	{"ListPages", keyringListPages},
	{"CopyAtBoundary", keyringCopyAtBoundary},
	{"TxDone", keyringTxDone},
	{"InvalidInput", keyringInvalid},
}

var keyringT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func keyEntry(pid identity.ProfileID, b byte) keyring.Entry {
	return keyring.Entry{Profile: pid, Wrapped: bytes.Repeat([]byte{b}, 60), Created: keyringT0}
}

// keyringTx runs f in a committed transaction of s.
func keyringTx(t *testing.T, ctx context.Context, s keyring.Store, f func(keyring.Tx) error) {
	t.Helper()
	inTx(t, ctx, s.Begin, f)
}

func wantEntry(t *testing.T, ctx context.Context, s keyring.Store, want keyring.Entry) {
	t.Helper()
	got, err := s.Get(ctx, want.Profile)
	if err != nil {
		t.Fatalf("Get(%s) = %v; want its entry", want.Profile, err)
	}
	if !bytes.Equal(got.Wrapped, want.Wrapped) || !got.Created.Equal(want.Created) || got.Profile != want.Profile {
		t.Errorf("Get(%s) = %+v; want %+v", want.Profile, got, want)
	}
}

func keyringAddThenGet(t *testing.T, e *env, s keyring.Store) {
	pid := newPID()
	if _, err := s.Get(e.ctx, pid); !errors.Is(err, keyring.ErrNotFound) {
		t.Errorf("Get of a profile without a key = %v; want ErrNotFound", err)
	}
	want := keyEntry(pid, 1)
	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	got, err := tx.Add(e.ctx, want)
	must(t, err, "Add")
	if !bytes.Equal(got.Wrapped, want.Wrapped) {
		t.Errorf("Add = %+v; want the entry added", got)
	}
	if g, err := tx.Get(e.ctx, pid); err != nil || !bytes.Equal(g.Wrapped, want.Wrapped) {
		t.Errorf("the transaction's Get = %+v, %v; want its own Add", g, err)
	}
	if e.caps.NoIsolation == "" && e.caps.NoConcurrentTx == "" {
		if _, err := s.Get(e.ctx, pid); !errors.Is(err, keyring.ErrNotFound) {
			t.Errorf("Get before Commit = %v; want ErrNotFound", err)
		}
	}
	must(t, tx.Commit(e.ctx), "Commit")
	wantEntry(t, e.ctx, s, want)
}

func keyringAddKeepsTheFirst(t *testing.T, e *env, s keyring.Store) {
	pid := newPID()
	first, second := keyEntry(pid, 1), keyEntry(pid, 2)
	keyringTx(t, e.ctx, s, func(tx keyring.Tx) error { _, err := tx.Add(e.ctx, first); return err })
	keyringTx(t, e.ctx, s, func(tx keyring.Tx) error {
		got, err := tx.Add(e.ctx, second)
		if err == nil && !bytes.Equal(got.Wrapped, first.Wrapped) {
			t.Errorf("Add over a committed key = %+v; want the committed one", got)
		}
		return err
	})
	wantEntry(t, e.ctx, s, first)
}

// keyringConcurrentAdds: transactions of several goroutines add a key for
// one profile at once; once all committed, the store holds one of them.
func keyringConcurrentAdds(t *testing.T, e *env, s keyring.Store) {
	e.needConcurrentTx(t)
	pid := newPID()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tx, err := s.Begin(e.ctx)
			if err != nil {
				t.Error(err)
				return
			}
			defer tx.Rollback(e.ctx)
			if _, err := tx.Add(e.ctx, keyEntry(pid, byte(i+1))); err != nil {
				t.Error(err)
				return
			}
			if err := tx.Commit(e.ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, err := s.Get(e.ctx, pid)
	must(t, err, "Get")
	if len(got.Wrapped) != 60 || got.Wrapped[0] < 1 || got.Wrapped[0] > 4 || !bytes.Equal(got.Wrapped, bytes.Repeat(got.Wrapped[:1], 60)) {
		t.Errorf("after concurrent adds the store holds %+v; want one of the keys added", got)
	}
}

func keyringRewrapAndDelete(t *testing.T, e *env, s keyring.Store) {
	pid, other := newPID(), newPID()
	keyringTx(t, e.ctx, s, func(tx keyring.Tx) error { _, err := tx.Add(e.ctx, keyEntry(pid, 1)); return err })
	keyringTx(t, e.ctx, s, func(tx keyring.Tx) error { return tx.Rewrap(e.ctx, pid, bytes.Repeat([]byte{9}, 70)) })
	want := keyEntry(pid, 9)
	want.Wrapped = bytes.Repeat([]byte{9}, 70)
	wantEntry(t, e.ctx, s, want)
	keyringTx(t, e.ctx, s, func(tx keyring.Tx) error {
		if err := tx.Rewrap(e.ctx, other, []byte{1}); !errors.Is(err, keyring.ErrNotFound) {
			t.Errorf("Rewrap of a profile without a key = %v; want ErrNotFound", err)
		}
		return nil
	})
	keyringTx(t, e.ctx, s, func(tx keyring.Tx) error {
		if err := tx.Delete(e.ctx, pid); err != nil {
			return err
		}
		if _, err := tx.Get(e.ctx, pid); !errors.Is(err, keyring.ErrNotFound) {
			t.Errorf("the transaction's Get after its Delete = %v; want ErrNotFound", err)
		}
		return tx.Delete(e.ctx, other) // absent: not an error
	})
	if _, err := s.Get(e.ctx, pid); !errors.Is(err, keyring.ErrNotFound) {
		t.Errorf("Get after Delete = %v; want ErrNotFound", err)
	}
}

// keyringDeleteWins: a key deleted by one transaction is not brought back
// by another that re-wraps it and commits after (a rotation racing an
// erasure): a shredded key stays shredded.
func keyringDeleteWins(t *testing.T, e *env, s keyring.Store) {
	e.needConcurrentTx(t)
	pid := newPID()
	keyringTx(t, e.ctx, s, func(tx keyring.Tx) error { _, err := tx.Add(e.ctx, keyEntry(pid, 1)); return err })
	rot, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	defer rot.Rollback(e.ctx)
	keyringTx(t, e.ctx, s, func(tx keyring.Tx) error { return tx.Delete(e.ctx, pid) })
	err = rot.Rewrap(e.ctx, pid, []byte{7, 7, 7})
	if err != nil && !errors.Is(err, keyring.ErrNotFound) {
		t.Fatalf("Rewrap after a committed Delete = %v", err)
	}
	_ = rot.Commit(e.ctx) // a failure is as good: the key stays deleted either way
	if got, err := s.Get(e.ctx, pid); !errors.Is(err, keyring.ErrNotFound) {
		t.Errorf("after a Delete and a later Rewrap the store holds %+v, %v; want it deleted", got, err)
	}
}

func keyringRollbackDiscards(t *testing.T, e *env, s keyring.Store) {
	pid, kept := newPID(), newPID()
	keyringTx(t, e.ctx, s, func(tx keyring.Tx) error { _, err := tx.Add(e.ctx, keyEntry(kept, 1)); return err })
	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	_, err = tx.Add(e.ctx, keyEntry(pid, 2))
	must(t, err, "Add")
	must(t, tx.Delete(e.ctx, kept), "Delete")
	must(t, tx.Rollback(e.ctx), "Rollback")
	if _, err := s.Get(e.ctx, pid); !errors.Is(err, keyring.ErrNotFound) {
		t.Errorf("a rolled back Add is there: %v", err)
	}
	wantEntry(t, e.ctx, s, keyEntry(kept, 1))
}

func keyringListPages(t *testing.T, e *env, s keyring.Store) {
	pids := newPIDs(5)
	keyringTx(t, e.ctx, s, func(tx keyring.Tx) error {
		for i, pid := range pids {
			if _, err := tx.Add(e.ctx, keyEntry(pid, byte(i+1))); err != nil {
				return err
			}
		}
		return nil
	})
	var got []identity.ProfileID
	for after := identity.ProfileID(""); ; {
		page, err := s.List(e.ctx, after, 2)
		must(t, err, "List")
		if len(page) > 2 {
			t.Fatalf("List(limit 2) returned %d", len(page))
		}
		if len(page) == 0 {
			break
		}
		for _, en := range page {
			if en.Profile <= after {
				t.Fatalf("List after %s returned %s", after, en.Profile)
			}
			got = append(got, en.Profile)
			after = en.Profile
		}
	}
	seen := 0
	for _, p := range got {
		for _, q := range pids {
			if p == q {
				seen++
			}
		}
	}
	if seen != len(pids) {
		t.Errorf("List walked %v; want every one of %v, in order", got, pids)
	}
}

func keyringCopyAtBoundary(t *testing.T, e *env, s keyring.Store) {
	pid := newPID()
	given := keyEntry(pid, 1)
	keyringTx(t, e.ctx, s, func(tx keyring.Tx) error {
		_, err := tx.Add(e.ctx, given)
		given.Wrapped[0] = 99 // the caller's slice, changed after Add
		return err
	})
	got, err := s.Get(e.ctx, pid)
	must(t, err, "Get")
	got.Wrapped[1] = 99 // the returned slice, changed
	wantEntry(t, e.ctx, s, keyEntry(pid, 1))
}

func keyringTxDone(t *testing.T, e *env, s keyring.Store) {
	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	must(t, tx.Commit(e.ctx), "Commit")
	pid := newPID()
	if _, err := tx.Add(e.ctx, keyEntry(pid, 1)); !errors.Is(err, keyring.ErrTxDone) {
		t.Errorf("Add after Commit = %v; want ErrTxDone", err)
	}
	if err := tx.Delete(e.ctx, pid); !errors.Is(err, keyring.ErrTxDone) {
		t.Errorf("Delete after Commit = %v; want ErrTxDone", err)
	}
	if err := tx.Commit(e.ctx); !errors.Is(err, keyring.ErrTxDone) {
		t.Errorf("Commit after Commit = %v; want ErrTxDone", err)
	}
	if err := tx.Rollback(e.ctx); err != nil {
		t.Errorf("Rollback after Commit = %v; want a no-op", err)
	}
}

func keyringInvalid(t *testing.T, e *env, s keyring.Store) {
	keyringTx(t, e.ctx, s, func(tx keyring.Tx) error {
		for name, en := range map[string]keyring.Entry{
			"no profile":     {Wrapped: []byte{1}},
			"no key":         {Profile: newPID()},
			"a key too long": {Profile: newPID(), Wrapped: make([]byte, keyring.MaxWrappedLen+1)},
		} {
			if _, err := tx.Add(e.ctx, en); !errors.Is(err, keyring.ErrInvalid) {
				t.Errorf("Add of %s = %v; want ErrInvalid", name, err)
			}
		}
		return nil
	})
	if _, err := s.List(e.ctx, "", 0); !errors.Is(err, keyring.ErrInvalid) {
		t.Errorf("List with limit 0 = %v; want ErrInvalid", err)
	}
}
