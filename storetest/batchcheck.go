package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/gdprkit/privacy/identity"
)

// The one check every optional batch method gets: it must answer as the
// single-item method does, one call at a time, and as the check expects. The
// helpers below are that check's parts, written once for every batch
// interface; batch.go gives each interface its fixtures.

// optional returns v as the optional interface I, or skips the check, naming
// what v is ("the identity graph") and the interface.
func optional[I any](t *testing.T, what string, v any) I {
	t.Helper()
	i, ok := v.(I)
	if !ok {
		t.Skipf("%s does not implement the optional %v", what, reflect.TypeFor[I]())
	}
	return i
}

// beginOptional begins a transaction, rolled back when the check ends, and
// returns it with its optional interface I, or skips the check.
func beginOptional[T ender, I any](t *testing.T, e *env, what string, begin func(context.Context) (T, error)) (T, I) {
	t.Helper()
	tx, err := begin(e.ctx)
	must(t, err, "Begin")
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return tx, optional[I](t, what+"'s transaction", tx)
}

// needOptionalTx skips the check when the transactions begin gives do not
// implement I.
func needOptionalTx[T ender, I any](t *testing.T, e *env, what string, begin func(context.Context) (T, error)) {
	t.Helper()
	tx, err := begin(e.ctx)
	must(t, err, "Begin")
	_, ok := any(tx).(I)
	must(t, tx.Rollback(e.ctx), "Rollback")
	if !ok {
		t.Skipf("%s's transaction does not implement the optional %v", what, reflect.TypeFor[I]())
	}
}

// appendOnto calls a batch method that appends one answer per item to dst,
// with a dst that already holds prefix, checks that prefix is kept and n
// answers appended, and returns them.
func appendOnto[V any](t *testing.T, what, method string, n int, prefix []V, call func(dst []V) ([]V, error)) []V {
	t.Helper()
	dst := make([]V, len(prefix), len(prefix)+2)
	copy(dst, prefix)
	got, err := call(dst)
	if err != nil {
		t.Fatalf("%s: %s of %d items: %v", what, method, n, err)
	}
	if len(got) != len(prefix)+n {
		t.Fatalf("%s: %s of %d items onto a dst of length %d returned length %d; want %d: dst with one answer per item appended",
			what, method, n, len(prefix), len(got), len(prefix)+n)
	}
	if d := diff(prefix, got[:len(prefix)]); d != "" {
		t.Errorf("%s: %s did not keep what dst held (-want +got):\n%s", what, method, d)
	}
	return got[len(prefix):]
}

// sameAsEach checks a batch method's answers against what the check expects
// and against the single-item method's, one call at a time.
func sameAsEach[A any](t *testing.T, what, method, single string, want, got, each A) {
	t.Helper()
	if d := diff(want, got); d != "" {
		t.Errorf("%s: %s (-want +got):\n%s", what, method, d)
	}
	if d := diff(each, got); d != "" {
		t.Errorf("%s: %s answers otherwise than %s one at a time (-%s +%s):\n%s", what, method, single, single, method, d)
	}
}

// eachInOrder answers keys one read at a time, in order: the zero answer
// where the read's error matches notFound.
func eachInOrder[K, V any](t *testing.T, single string, keys []K, read func(K) (V, error), notFound error) []V {
	t.Helper()
	out := make([]V, len(keys))
	for i, k := range keys {
		v, err := read(k)
		switch {
		case notFound != nil && errors.Is(err, notFound):
		case err != nil:
			t.Fatalf("%s(%v): %v", single, k, err)
		default:
			out[i] = v
		}
	}
	return out
}

// eachFound answers pids one read at a time, leaving out those whose read's
// error matches notFound.
func eachFound[V any](t *testing.T, single string, pids []identity.ProfileID, read func(identity.ProfileID) (V, error), notFound error) map[identity.ProfileID]V {
	t.Helper()
	out := map[identity.ProfileID]V{}
	for _, pid := range pids {
		v, err := read(pid)
		switch {
		case errors.Is(err, notFound):
		case err != nil:
			t.Fatalf("%s(%s): %v", single, pid, err)
		default:
			out[pid] = v
		}
	}
	return out
}

// only returns m restricted to pids.
func only[V any](m map[identity.ProfileID]V, pids []identity.ProfileID) map[identity.ProfileID]V {
	out := map[identity.ProfileID]V{}
	for _, pid := range pids {
		if v, ok := m[pid]; ok {
			out[pid] = v
		}
	}
	return out
}

// answered lines keys up with their answers, for readable diffs.
type answered[K, V any] struct {
	Key    K
	Answer V
}

func lineUp[K, V any](keys []K, vals []V) []answered[K, V] {
	out := make([]answered[K, V], max(len(keys), len(vals)))
	for i := range out {
		if i < len(keys) {
			out[i].Key = keys[i]
		}
		if i < len(vals) {
			out[i].Answer = vals[i]
		}
	}
	return out
}

// listBatch is a batch read that appends one answer per key to dst
// (identity.BatchReader's LookupBatch, suppression.BatchReader's
// ProfileSuppressedBatch), on a backend B and its transactions T. The checks
// run on it the same way for every such read.
type listBatch[B any, T ender, K, V any] struct {
	what           string // "the identity graph"
	onStore        string // the subtest on the store itself: "OnGraph"
	method, single string
	store          B
	begin          func(context.Context) (T, error)
	// batch returns r's batch read, when r (the store or a transaction)
	// implements the interface.
	batch func(r any) (func(context.Context, []K, []V) ([]V, error), bool)
	// read is r's single-item read.
	read     func(ctx context.Context, r any, k K) (V, error)
	notFound error // a read's error that means the zero answer
	prefix   []V   // what dst holds before a call
	errDone  error // the package's ErrTxDone
}

// on returns r's batch read, or skips the check.
func (b *listBatch[B, T, K, V]) on(t *testing.T, r any, what string) func(context.Context, []K, []V) ([]V, error) {
	t.Helper()
	read, ok := b.batch(r)
	if !ok {
		t.Skipf("%s does not implement the optional %s", what, b.method)
	}
	return read
}

// tx begins a transaction, rolled back when the check ends, or skips the
// check when it has no batch read.
func (b *listBatch[B, T, K, V]) tx(t *testing.T, e *env) T {
	t.Helper()
	tx, err := b.begin(e.ctx)
	must(t, err, "Begin")
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	b.on(t, tx, b.what+"'s transaction")
	return tx
}

// check checks that r's batch read answers keys as want says and as its
// single read does, one at a time, appending to a dst that holds something.
func (b *listBatch[B, T, K, V]) check(t *testing.T, ctx context.Context, what string, r any, keys []K, want []V) {
	t.Helper()
	read := b.on(t, r, what)
	got := appendOnto(t, what, b.method, len(keys), b.prefix, func(dst []V) ([]V, error) { return read(ctx, keys, dst) })
	each := eachInOrder(t, b.single, keys, func(k K) (V, error) { return b.read(ctx, r, k) }, b.notFound)
	sameAsEach(t, what, b.method, b.single, lineUp(keys, want), lineUp(keys, got), lineUp(keys, each))
}

// checkBasics checks committed answers on the store and in a transaction,
// and the edge cases: no keys, and a nil dst.
func (b *listBatch[B, T, K, V]) checkBasics(t *testing.T, e *env, keys []K, want []V) {
	run := func(t *testing.T, r any) {
		b.check(t, e.ctx, "committed state", r, keys, want)
		read := b.on(t, r, b.what)
		for _, in := range [][]K{nil, {}} {
			got, err := read(e.ctx, in, b.prefix)
			if err != nil || diff(b.prefix, got) != "" {
				t.Errorf("%s of nothing = %v, %v; want dst as it was, %v", b.method, got, err, b.prefix)
			}
		}
		got, err := read(e.ctx, keys[:3], nil)
		if err != nil || diff(want[:3], got) != "" {
			t.Errorf("%s onto a nil dst = %v, %v; want %v", b.method, got, err, want[:3])
		}
	}
	t.Run(b.onStore, func(t *testing.T) { run(t, b.store) })
	t.Run("InTx", func(t *testing.T) { run(t, b.tx(t, e)) })
}

// checkTxSeesOwnWrites checks the batch read of a transaction with writes
// staged (stage stages them and says what the transaction answers), then of
// the store once they commit.
func (b *listBatch[B, T, K, V]) checkTxSeesOwnWrites(t *testing.T, e *env, stage func(T) (keys []K, committed, staged []V)) {
	tx := b.tx(t, e)
	keys, _, staged := stage(tx)
	b.check(t, e.ctx, "the transaction's own writes", tx, keys, staged)
	commitTx(t, e.ctx, tx)
	if _, ok := b.batch(b.store); ok {
		b.check(t, e.ctx, b.what+" after Commit", b.store, keys, staged)
	} else {
		t.Logf("%s itself does not implement %s: not checking it after Commit", b.what, b.method)
	}
}

// checkUncommittedInvisible checks that the store, and another transaction,
// answer as committed while a transaction has writes staged, and as staged
// once it commits.
func (b *listBatch[B, T, K, V]) checkUncommittedInvisible(t *testing.T, e *env, stage func(T) (keys []K, committed, staged []V)) {
	e.needIsolation(t)
	b.on(t, b.store, b.what)
	tx, err := b.begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	keys, committed, staged := stage(tx)
	b.check(t, e.ctx, b.what+", while a transaction has writes staged", b.store, keys, committed)
	if other, ok := secondTx(t, e, b.begin); ok {
		if _, ok := b.batch(other); ok {
			b.check(t, e.ctx, "another transaction", other, keys, committed)
		}
		must(t, other.Rollback(e.ctx), "Rollback")
	}
	commitTx(t, e.ctx, tx)
	b.check(t, e.ctx, b.what+" after Commit", b.store, keys, staged)
}

// checkTxDone checks that the batch read of a transaction ended by Commit or
// Rollback fails with the package's ErrTxDone, with keys and without.
func (b *listBatch[B, T, K, V]) checkTxDone(t *testing.T, e *env, keys func() []K) {
	for _, how := range []string{"Commit", "Rollback"} {
		ks := keys()
		tx := b.tx(t, e)
		read := b.on(t, tx, b.what)
		if how == "Commit" {
			commitTx(t, e.ctx, tx)
		} else {
			must(t, tx.Rollback(e.ctx), "Rollback")
		}
		checkDone(t, e.ctx, how, tx, b.errDone, []txMethod{
			{b.method, func(ctx context.Context) error {
				_, err := read(ctx, ks, nil)
				return err
			}},
			{b.method + " (nothing)", func(ctx context.Context) error {
				_, err := read(ctx, nil, nil)
				return err
			}},
		})
	}
}
