package profile

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// pooledEncoderHolds reports whether an encoder sealJSON's pool hands out
// holds s in clear: in its buffer, up to its capacity, or its key buffers.
// It looks at several, since the race detector makes sync.Pool drop some.
func pooledEncoderHolds(s string) bool {
	var got []*sealEncoder
	defer func() {
		for _, se := range got {
			sealEncoders.Put(se)
		}
	}()
	for range 8 {
		se := sealEncoders.Get().(*sealEncoder)
		got = append(got, se)
		if strings.Contains(string(se.buf[:cap(se.buf)]), s) {
			return true
		}
		// jsontext.ValueEncoder.keys, unexported: read through reflect.
		keys := reflect.ValueOf(&se.ValueEncoder).Elem().FieldByName("keys")
		for i := range keys.Len() {
			level := keys.Index(i)
			level = level.Slice(0, level.Cap())
			for j := range level.Len() {
				if strings.Contains(level.Index(j).String(), s) {
					return true
				}
			}
		}
	}
	return false
}

// A value the sealed store refuses (not JSON) must leave no clear copy in the
// store's encoder pool: "the pool keeps no value in clear".
func TestSealPoolKeepsNoRefusedValueInClear(t *testing.T) {
	ctx := t.Context()
	s := NewSealedMemStore()
	for range 20 {
		tx := openTx(t, s)
		bad := map[string]any{"email": canary, "z": make(chan int)} // AppendValue writes the email, then stops at the chan
		err := tx.Update(ctx, pidA, Update{Metadata: Metadata{Version: 1}, Set: map[string]Trait{"x": {Value: bad}}})
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("Update = %v, want ErrInvalid", err)
		}
		_ = tx.Rollback(ctx)
		if pooledEncoderHolds(canary) {
			t.Fatal("after a refused value, sealJSON's pooled encoder holds the canary in clear")
		}
	}
}

// A value the store accepts but AppendValue does not encode (a store caller's
// own, not in canonical form) is normalised first; its map keys, which
// may be personal data (a map keyed by email), must not stay in the pool.
func TestSealPoolKeepsNoMapKeyInClear(t *testing.T) {
	ctx := t.Context()
	s := NewSealedMemStore()
	for i := range 20 {
		tx := openTx(t, s)
		v := map[string]any{canary: "verified", "zz": 1} // int: not canonical
		if err := tx.Update(ctx, pidA, Update{Metadata: Metadata{Version: uint64(i + 1)}, Set: map[string]Trait{"x": {Value: v}}}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if holds(s, canary) {
			t.Fatal("the store holds the canary in clear")
		}
		if pooledEncoderHolds(canary) {
			t.Fatal("after a value sealed after normalising, sealJSON's pooled encoder holds a map key (the canary) in clear")
		}
	}
}

// "deletion drops the key": a profile deleted and made again must not get
// the deleted profile's key back, or the erased person's sealed values still
// in memory open with the new profile's key.
func TestSealedDeletedKeyIsNotRevived(t *testing.T) {
	ctx := t.Context()
	s := NewSealedMemStore()
	mustUpdate(t, s, pidA, canaryUpdate("m1"))
	s.mu.RLock()
	oldSealed := []byte(s.profiles[pidA].traits["email"].Value.(sealedValue))
	s.mu.RUnlock()

	// A transaction stages a write on the profile (under its key); meanwhile
	// another deletes the profile (an erasure) and commits.
	late := openTx(t, s)
	if err := late.Update(ctx, pidA, Update{Metadata: Metadata{Version: 9}, Set: map[string]Trait{"plan": {Value: "pro"}}}); err != nil {
		t.Fatal(err)
	}
	inTx(t, s, func(tx Tx) error { return tx.Delete(ctx, pidA) })
	if err := late.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	s.mu.RLock()
	p := s.profiles[pidA]
	s.mu.RUnlock()
	if p == nil {
		t.Fatal("the late write made no profile")
	}
	if text, err := p.key.Open(sealedTraitField("email"), oldSealed); err == nil {
		t.Fatalf("the deleted profile's key was revived: the erased value opens under the new profile's key: %s", text)
	}
}
