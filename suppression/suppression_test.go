package suppression

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/gdprkit/privacy/identity"
)

// hashOf derives a realistic-looking keyed hash from a counter.
func hashOf(i uint64) identity.Hash {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], i)
	sum := sha256.Sum256(b[:])
	return identity.Hash(sum[:len(identity.Hash{})])
}

func pidOf(i int) identity.ProfileID { return identity.ProfileID(fmt.Sprintf("use_test%06d", i)) }

// commit applies f in one transaction and commits it, failing the test on any
// error.
func commit(t testing.TB, l List, f func(Tx) error) {
	t.Helper()
	ctx := context.Background()
	tx, err := l.Begin(ctx)
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	if err := f(tx); err != nil {
		t.Fatalf("staging: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

// inTx begins a transaction on l, stages f in it and ends it with end
// (Tx.Commit or Tx.Rollback), returning the first error: commit's counterpart
// for goroutines, which must not call t.Fatal.
func inTx(ctx context.Context, l List, end func(Tx, context.Context) error, f func(Tx) error) error {
	tx, err := l.Begin(ctx)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		return err
	}
	return end(tx, ctx)
}

// seededList returns a MemList holding hashOf(1) and pidOf(1): the committed
// state that several tests start from.
func seededList(t *testing.T) *MemList {
	t.Helper()
	ctx := context.Background()
	l := NewMemList()
	commit(t, l, func(tx Tx) error {
		if err := tx.Add(ctx, hashOf(1)); err != nil {
			return err
		}
		return tx.AddProfile(ctx, pidOf(1))
	})
	return l
}

func mustSuppressed(t *testing.T, name string, r Reader, h identity.Hash, want bool) {
	t.Helper()
	mustCheck(t, name, "Suppressed", r.Suppressed, h, h.String()[:8], want)
}

func mustProfileSuppressed(t *testing.T, name string, r Reader, pid identity.ProfileID, want bool) {
	t.Helper()
	mustCheck(t, name, "ProfileSuppressed", r.ProfileSuppressed, pid, string(pid), want)
}

// mustCheck fails the test unless check (the Reader method called method)
// answers want for key, shown in the message as shown: the one body of
// mustSuppressed and mustProfileSuppressed.
func mustCheck[K any](t *testing.T, name, method string, check func(context.Context, K) (bool, error), key K, shown string, want bool) {
	t.Helper()
	got, err := check(context.Background(), key)
	if err != nil {
		t.Fatalf("%s: %s: %v", name, method, err)
	}
	if got != want {
		t.Errorf("%s: %s(%s) = %v, want %v", name, method, shown, got, want)
	}
}

func mustLen(t *testing.T, l List, wantIDs, wantProfiles int) {
	t.Helper()
	ids, profiles, err := l.Len(context.Background())
	if err != nil {
		t.Fatalf("Len: %v", err)
	}
	if ids != wantIDs || profiles != wantProfiles {
		t.Errorf("Len = %d, %d, want %d, %d", ids, profiles, wantIDs, wantProfiles)
	}
}

// TestTxIsolation checks that a transaction sees its own writes, while the List
// and another transaction see them only once it commits, and never when it rolls
// back.
func TestTxIsolation(t *testing.T) {
	ctx := context.Background()
	h, pid := hashOf(1), pidOf(1)
	// Each kind of item is added to a list without it and removed from a list
	// with it.
	kinds := []struct {
		suffix      string // of the methods' names: Add, Remove
		add, remove func(Tx) error
		// check reads the item the write changes.
		check func(t *testing.T, name string, r Reader, want bool)
	}{
		{
			suffix: "",
			add:    func(tx Tx) error { return tx.Add(ctx, h) },
			remove: func(tx Tx) error { return tx.Remove(ctx, h) },
			check:  func(t *testing.T, name string, r Reader, want bool) { mustSuppressed(t, name, r, h, want) },
		},
		{
			suffix: "Profile",
			add:    func(tx Tx) error { return tx.AddProfile(ctx, pid) },
			remove: func(tx Tx) error { return tx.RemoveProfile(ctx, pid) },
			check:  func(t *testing.T, name string, r Reader, want bool) { mustProfileSuppressed(t, name, r, pid, want) },
		},
	}
	type test struct {
		name string
		// present sets up the committed state before the transaction.
		present bool
		write   func(Tx) error
		check   func(t *testing.T, name string, r Reader, want bool)
	}
	var tests []test
	for _, k := range kinds {
		tests = append(tests,
			test{name: "Add" + k.suffix, present: false, write: k.add, check: k.check},
			test{name: "Remove" + k.suffix, present: true, write: k.remove, check: k.check})
	}
	for _, tt := range tests {
		for _, end := range []string{"Commit", "Rollback"} {
			t.Run(tt.name+"/"+end, func(t *testing.T) {
				l := NewMemList()
				if tt.present {
					l = seededList(t)
				}
				before, after := tt.present, !tt.present

				tx, err := l.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				other, err := l.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer other.Rollback(ctx)
				if err := tt.write(tx); err != nil {
					t.Fatalf("write: %v", err)
				}
				tt.check(t, "tx", tx, after)
				tt.check(t, "list before end", l, before)
				tt.check(t, "other tx before end", other, before)

				var final bool
				if end == "Commit" {
					err, final = tx.Commit(ctx), after
				} else {
					err, final = tx.Rollback(ctx), before
				}
				if err != nil {
					t.Fatalf("%s: %v", end, err)
				}
				tt.check(t, "list after "+end, l, final)
				tt.check(t, "other tx after "+end, other, final)
				tx2, err := l.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				tt.check(t, "new tx after "+end, tx2, final)
			})
		}
	}
}

// TestRollbackAfterCommit checks that Rollback after Commit is a harmless no-op:
// it returns nil and leaves the committed writes in place.
func TestRollbackAfterCommit(t *testing.T) {
	ctx := context.Background()
	l := NewMemList()
	tx, err := l.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Add(ctx, hashOf(1), hashOf(2)); err != nil {
		t.Fatal(err)
	}
	if err := tx.AddProfile(ctx, pidOf(1)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := tx.Rollback(ctx); err != nil {
			t.Errorf("Rollback %d after Commit = %v, want nil", i+1, err)
		}
	}
	mustLen(t, l, 2, 1)
	mustSuppressed(t, "list", l, hashOf(1), true)
	mustProfileSuppressed(t, "list", l, pidOf(1), true)
}

// TestTxDone checks that every method but Rollback fails with ErrTxDone once the
// transaction has ended, however it ended, and changes nothing.
func TestTxDone(t *testing.T) {
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	ends := []struct {
		name string
		end  func(Tx) error
	}{
		{"Commit", func(tx Tx) error { return tx.Commit(ctx) }},
		{"Rollback", func(tx Tx) error { return tx.Rollback(ctx) }},
		{"Commit with a cancelled context", func(tx Tx) error {
			if err := tx.Commit(cancelled); !errors.Is(err, context.Canceled) {
				return fmt.Errorf("Commit with a cancelled context = %v, want context.Canceled", err)
			}
			return nil
		}},
	}
	methods := []struct {
		name string
		call func(Tx) error
	}{
		{"Suppressed", func(tx Tx) error { _, err := tx.Suppressed(ctx, hashOf(1)); return err }},
		{"ProfileSuppressed", func(tx Tx) error { _, err := tx.ProfileSuppressed(ctx, pidOf(1)); return err }},
		{"Add", func(tx Tx) error { return tx.Add(ctx, hashOf(2)) }},
		{"Remove", func(tx Tx) error { return tx.Remove(ctx, hashOf(1)) }},
		{"AddProfile", func(tx Tx) error { return tx.AddProfile(ctx, pidOf(2)) }},
		{"RemoveProfile", func(tx Tx) error { return tx.RemoveProfile(ctx, pidOf(1)) }},
		{"Commit", func(tx Tx) error { return tx.Commit(ctx) }},
	}
	for _, e := range ends {
		for _, m := range methods {
			t.Run(e.name+"/"+m.name, func(t *testing.T) {
				l := seededList(t)
				tx, err := l.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := e.end(tx); err != nil {
					t.Fatal(err)
				}
				if err := m.call(tx); !errors.Is(err, ErrTxDone) {
					t.Errorf("%s after %s = %v, want ErrTxDone", m.name, e.name, err)
				}
				if err := tx.Rollback(ctx); err != nil {
					t.Errorf("Rollback after %s = %v, want nil", e.name, err)
				}
				mustLen(t, l, 1, 1)
				mustSuppressed(t, "list", l, hashOf(1), true)
				mustSuppressed(t, "list", l, hashOf(2), false)
				mustProfileSuppressed(t, "list", l, pidOf(1), true)
				mustProfileSuppressed(t, "list", l, pidOf(2), false)
			})
		}
	}
}

// TestCommitCancelled checks that Commit with a cancelled context applies none
// of the staged writes and ends the transaction.
func TestCommitCancelled(t *testing.T) {
	ctx := context.Background()
	l := seededList(t)
	tx, err := l.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		tx.Add(ctx, hashOf(2), hashOf(3)),
		tx.Remove(ctx, hashOf(1)),
		tx.AddProfile(ctx, pidOf(2)),
		tx.RemoveProfile(ctx, pidOf(1)),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := tx.Commit(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit = %v, want context.Canceled", err)
	}
	mustLen(t, l, 1, 1)
	mustSuppressed(t, "list", l, hashOf(1), true)
	mustSuppressed(t, "list", l, hashOf(2), false)
	mustSuppressed(t, "list", l, hashOf(3), false)
	mustProfileSuppressed(t, "list", l, pidOf(1), true)
	mustProfileSuppressed(t, "list", l, pidOf(2), false)
	// The writes are gone, not kept for a retry.
	if err := tx.Commit(ctx); !errors.Is(err, ErrTxDone) {
		t.Errorf("Commit after a cancelled Commit = %v, want ErrTxDone", err)
	}
	mustLen(t, l, 1, 1)
}

// TestCancelledContext checks that Begin and the methods of an open transaction
// fail with the context's error, and that the transaction stays usable.
func TestCancelledContext(t *testing.T) {
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	l := NewMemList()
	if tx, err := l.Begin(cancelled); !errors.Is(err, context.Canceled) || tx != nil {
		t.Errorf("Begin with a cancelled context = %v, %v, want nil, context.Canceled", tx, err)
	}
	tx, err := l.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"Suppressed":        func() error { _, err := tx.Suppressed(cancelled, hashOf(1)); return err },
		"ProfileSuppressed": func() error { _, err := tx.ProfileSuppressed(cancelled, pidOf(1)); return err },
		"Add":               func() error { return tx.Add(cancelled, hashOf(1)) },
		"Remove":            func() error { return tx.Remove(cancelled, hashOf(1)) },
		"AddProfile":        func() error { return tx.AddProfile(cancelled, pidOf(1)) },
		"RemoveProfile":     func() error { return tx.RemoveProfile(cancelled, pidOf(1)) },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context = %v, want context.Canceled", name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if !l.Empty() {
		t.Error("writes refused for a cancelled context were applied")
	}
}

// TestIdempotent checks that adding twice and removing what is absent are
// harmless, within one transaction and across transactions.
func TestIdempotent(t *testing.T) {
	ctx := context.Background()
	l := NewMemList()
	for range 2 {
		commit(t, l, func(tx Tx) error {
			if err := tx.Add(ctx, hashOf(1), hashOf(1), hashOf(2)); err != nil {
				return err
			}
			if err := tx.Add(ctx, hashOf(1)); err != nil {
				return err
			}
			if err := tx.AddProfile(ctx, pidOf(1)); err != nil {
				return err
			}
			return tx.AddProfile(ctx, pidOf(1))
		})
		mustLen(t, l, 2, 1)
	}
	commit(t, l, func(tx Tx) error {
		if err := tx.Remove(ctx, hashOf(3), hashOf(3)); err != nil {
			return err
		}
		return tx.RemoveProfile(ctx, pidOf(3))
	})
	mustLen(t, l, 2, 1)
	for range 2 {
		commit(t, l, func(tx Tx) error {
			if err := tx.Remove(ctx, hashOf(1), hashOf(1)); err != nil {
				return err
			}
			return tx.RemoveProfile(ctx, pidOf(1))
		})
		mustLen(t, l, 1, 0)
		mustSuppressed(t, "list", l, hashOf(1), false)
		mustSuppressed(t, "list", l, hashOf(2), true)
		mustProfileSuppressed(t, "list", l, pidOf(1), false)
	}
}

// TestOrderWithinTx checks that the writes of a transaction apply in order: the
// last write to an item wins, in the transaction and once committed.
func TestOrderWithinTx(t *testing.T) {
	ctx := context.Background()
	h, pid := hashOf(7), pidOf(7)
	add := func(tx Tx) error { return tx.Add(ctx, h) }
	remove := func(tx Tx) error { return tx.Remove(ctx, h) }
	addProfile := func(tx Tx) error { return tx.AddProfile(ctx, pid) }
	removeProfile := func(tx Tx) error { return tx.RemoveProfile(ctx, pid) }
	tests := []struct {
		name    string
		profile bool
		writes  []func(Tx) error
		want    bool
	}{
		{"Add then Remove", false, []func(Tx) error{add, remove}, false},
		{"Remove then Add", false, []func(Tx) error{remove, add}, true},
		{"Add Remove Add", false, []func(Tx) error{add, remove, add}, true},
		{"AddProfile then RemoveProfile", true, []func(Tx) error{addProfile, removeProfile}, false},
		{"RemoveProfile then AddProfile", true, []func(Tx) error{removeProfile, addProfile}, true},
	}
	for _, tt := range tests {
		for _, present := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/present=%v", tt.name, present), func(t *testing.T) {
				l := NewMemList()
				if present {
					commit(t, l, func(tx Tx) error {
						if err := add(tx); err != nil {
							return err
						}
						return addProfile(tx)
					})
				}
				check := func(name string, r Reader, want bool) {
					t.Helper()
					if tt.profile {
						mustProfileSuppressed(t, name, r, pid, want)
						mustSuppressed(t, name, r, h, present) // untouched
					} else {
						mustSuppressed(t, name, r, h, want)
						mustProfileSuppressed(t, name, r, pid, present) // untouched
					}
				}
				tx, err := l.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, w := range tt.writes {
					if err := w(tx); err != nil {
						t.Fatal(err)
					}
				}
				check("tx", tx, tt.want)
				if err := tx.Commit(ctx); err != nil {
					t.Fatal(err)
				}
				check("list", l, tt.want)
			})
		}
	}
}

// TestHashAndProfileAreSeparate checks that a profile write does not shadow a
// hash read in a transaction, and the other way round.
func TestHashAndProfileAreSeparate(t *testing.T) {
	ctx := context.Background()
	l := NewMemList()
	commit(t, l, func(tx Tx) error { return tx.Add(ctx, hashOf(1)) })
	tx, err := l.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := tx.RemoveProfile(ctx, pidOf(1)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Add(ctx, hashOf(2)); err != nil {
		t.Fatal(err)
	}
	mustSuppressed(t, "tx", tx, hashOf(1), true)
	mustProfileSuppressed(t, "tx", tx, pidOf(2), false)
}

func TestLenAndEmpty(t *testing.T) {
	ctx := context.Background()
	l := NewMemList()
	check := func(step string, wantIDs, wantProfiles int) {
		t.Helper()
		mustLen(t, l, wantIDs, wantProfiles)
		if got, want := l.Empty(), wantIDs == 0 && wantProfiles == 0; got != want {
			t.Errorf("%s: Empty() = %v, want %v", step, got, want)
		}
	}
	check("new", 0, 0)
	commit(t, l, func(tx Tx) error { return tx.Add(ctx, hashOf(1), hashOf(2), hashOf(3)) })
	check("three hashes", 3, 0)
	commit(t, l, func(tx Tx) error { return tx.AddProfile(ctx, pidOf(1)) })
	check("and a profile", 3, 1)
	commit(t, l, func(tx Tx) error { return tx.Remove(ctx, hashOf(1), hashOf(2), hashOf(3)) })
	check("only the profile", 0, 1)
	commit(t, l, func(tx Tx) error { return tx.RemoveProfile(ctx, pidOf(1)) })
	check("emptied", 0, 0)
	tx, err := l.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Add(ctx, hashOf(9)); err != nil {
		t.Fatal(err)
	}
	check("staged only", 0, 0)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	check("rolled back", 0, 0)
}

// TestConcurrent runs writers, each with its own transactions, against readers
// of the List. A writer's commit must be visible all at once, and the final
// counts must add up. Run with -race.
func TestConcurrent(t *testing.T) {
	const (
		writers = 8
		batches = 20
		batch   = 25
		readers = 4
	)
	ctx := context.Background()
	l := NewMemList()
	// Each writer also adds then removes a scratch hash, to interleave deletes.
	hash := func(w, b, i int) identity.Hash { return hashOf(uint64(w*batches*batch + b*batch + i)) }
	scratch := func(w int) identity.Hash { return hashOf(1<<40 + uint64(w)) }

	errs := make(chan error, writers+readers)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				hs := make([]identity.Hash, batch)
				for i := range hs {
					hs[i] = hash(w, b, i)
				}
				pid := pidOf(w*batches + b)
				if err := inTx(ctx, l, Tx.Commit, func(tx Tx) error {
					if err := tx.Add(ctx, hs...); err != nil {
						return err
					}
					if err := tx.Add(ctx, scratch(w)); err != nil {
						return err
					}
					return tx.AddProfile(ctx, pid)
				}); err != nil {
					errs <- err
					return
				}
				if err := inTx(ctx, l, Tx.Commit, func(tx Tx) error {
					return tx.Remove(ctx, scratch(w))
				}); err != nil {
					errs <- err
					return
				}
				// Rolled back: must leave no trace.
				if err := inTx(ctx, l, Tx.Rollback, func(tx Tx) error {
					if err := tx.RemoveProfile(ctx, pid); err != nil {
						return err
					}
					return tx.Remove(ctx, hs[0])
				}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var rg sync.WaitGroup
	for r := range readers {
		rg.Add(1)
		go func() {
			defer rg.Done()
			rnd := rand.New(rand.NewPCG(uint64(r), 0))
			for {
				select {
				case <-stop:
					return
				default:
				}
				w, b := rnd.IntN(writers), rnd.IntN(batches)
				// A commit is atomic: once the batch's last hash is visible, its
				// first hash and its profile must be too. Read the last one first.
				last, err := l.Suppressed(ctx, hash(w, b, batch-1))
				if err != nil {
					errs <- err
					return
				}
				first, err := l.Suppressed(ctx, hash(w, b, 0))
				if err != nil {
					errs <- err
					return
				}
				prof, err := l.ProfileSuppressed(ctx, pidOf(w*batches+b))
				if err != nil {
					errs <- err
					return
				}
				if last && (!first || !prof) {
					errs <- fmt.Errorf("batch %d/%d: last hash visible but first hash %v, profile %v", w, b, first, prof)
					return
				}
				if _, _, err := l.Len(ctx); err != nil {
					errs <- err
					return
				}
				_ = l.Empty()
			}
		}()
	}
	wg.Wait()
	close(stop)
	rg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mustLen(t, l, writers*batches*batch, writers*batches)
	for w := range writers {
		mustSuppressed(t, "list", l, scratch(w), false)
	}
}

// TestChecksDoNotAllocate checks the promise of MemList's documentation that a
// check does not allocate, which the collection path relies on.
func TestChecksDoNotAllocate(t *testing.T) {
	ctx := context.Background()
	l := seededList(t)
	present, absent := hashOf(1), hashOf(2)
	pPresent, pAbsent := pidOf(1), pidOf(2)
	checks := map[string]func(){
		"Suppressed":        func() { _, _ = l.Suppressed(ctx, present); _, _ = l.Suppressed(ctx, absent) },
		"ProfileSuppressed": func() { _, _ = l.ProfileSuppressed(ctx, pPresent); _, _ = l.ProfileSuppressed(ctx, pAbsent) },
		"Empty":             func() { _ = l.Empty() },
	}
	for name, f := range checks {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s allocates %v times per run, want 0", name, n)
		}
	}
}

// samples returns n random hashes of counters in [lo, lo+span).
func samples(rnd *rand.Rand, n int, lo, span uint64) []identity.Hash {
	hs := make([]identity.Hash, n)
	for i := range hs {
		hs[i] = hashOf(lo + rnd.Uint64N(span))
	}
	return hs
}

// benchCheck runs the sub-benchmarks "absent" and "present" of a suppression
// check, cycling through the sampled keys of each (whose count must be a power
// of two), so that both benchmarks above share one loop and one assertion.
func benchCheck[K any](b *testing.B, name string, check func(context.Context, K) (bool, error), absent, present []K) {
	ctx := context.Background()
	cases := []struct {
		name string
		keys []K
		want bool
	}{
		{"absent", absent, false},
		{"present", present, true},
	}
	for _, c := range cases {
		mask := len(c.keys) - 1
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				ok, err := check(ctx, c.keys[i&mask])
				if err != nil || ok != c.want {
					b.Fatalf("%s = %v, %v, want %v", name, ok, err, c.want)
				}
				i++
			}
		})
	}
}

// BenchmarkSuppressedCheck10M measures the check of the collection path against
// a list of ten million suppressed identifiers. It must not allocate.
func BenchmarkSuppressedCheck10M(b *testing.B) {
	const (
		n     = 10_000_000
		chunk = 1_000_000 // hashes per transaction, to bound the staged ops
		nsamp = 1 << 12
	)
	ctx := context.Background()
	l := NewMemList()
	for lo := uint64(0); lo < n; lo += chunk {
		commit(b, l, func(tx Tx) error {
			hs := make([]identity.Hash, chunk)
			for i := range hs {
				hs[i] = hashOf(lo + uint64(i))
			}
			return tx.Add(ctx, hs...)
		})
	}
	if ids, _, _ := l.Len(ctx); ids != n {
		b.Fatalf("list holds %d hashes, want %d", ids, n)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	benchCheck(b, "Suppressed", l.Suppressed, samples(rnd, nsamp, n, n), samples(rnd, nsamp, 0, n))
}

// BenchmarkProfileSuppressed measures the profile check against a list of a
// million suppressed profiles. It must not allocate.
func BenchmarkProfileSuppressed(b *testing.B) {
	const (
		n     = 1_000_000
		nsamp = 1 << 12
	)
	ctx := context.Background()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	rnd := rand.New(rand.NewPCG(3, 4))
	l := NewMemList()
	presentSample := make([]identity.ProfileID, nsamp)
	commit(b, l, func(tx Tx) error {
		// Keep every profile id with probability nsamp/n, then top the sample up.
		k := 0
		for range n {
			pid := identity.NewProfileID(now)
			if k < nsamp && rnd.IntN(n/nsamp) == 0 {
				presentSample[k] = pid
				k++
			}
			if err := tx.AddProfile(ctx, pid); err != nil {
				return err
			}
		}
		for j := k; j < nsamp; j++ {
			presentSample[j] = presentSample[rnd.IntN(max(k, 1))]
		}
		return nil
	})
	if _, profiles, _ := l.Len(ctx); profiles != n {
		b.Fatalf("list holds %d profiles, want %d", profiles, n)
	}
	absent := make([]identity.ProfileID, nsamp)
	for i := range absent {
		absent[i] = identity.NewProfileID(now.Add(time.Hour))
	}
	benchCheck(b, "ProfileSuppressed", l.ProfileSuppressed, absent, presentSample)
}

func TestEmptyProfileIDIsRefused(t *testing.T) {
	l := NewMemList()
	tx, err := l.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if err := tx.AddProfile(context.Background(), ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("AddProfile(\"\") = %v, want ErrInvalid", err)
	}
	if err := tx.RemoveProfile(context.Background(), ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("RemoveProfile(\"\") = %v, want ErrInvalid", err)
	}
}
