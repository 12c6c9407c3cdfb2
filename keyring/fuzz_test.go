package keyring

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// FuzzOpen feeds arbitrary ciphertexts to a DataKey and a LocalKeeper: each
// is refused with ErrUndecryptable, never a panic, unless it is one they
// sealed; and what they seal opens to itself.
func FuzzOpen(f *testing.F) {
	ctx := context.Background()
	lk, err := NewLocalKeeper([]byte("the fuzzed keeper's secret, 32 b"))
	if err != nil {
		f.Fatal(err)
	}
	dk, err := newDataKey("prof_fuzz", bytes.Repeat([]byte{7}, DataKeySize))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{}, "trait:email")
	f.Add(dk.Seal("trait:email", []byte("ada@example.com")), "trait:email")
	f.Add(dk.Seal("event:m1:properties", nil), "event:m1:properties")
	w, _ := lk.Encrypt(ctx, bytes.Repeat([]byte{1}, DataKeySize))
	f.Add(w, "")
	f.Fuzz(func(t *testing.T, ciphertext []byte, field string) {
		if _, err := dk.Open(field, ciphertext); err != nil && !errors.Is(err, ErrUndecryptable) {
			t.Errorf("DataKey.Open = %v; want nil or ErrUndecryptable", err)
		}
		if _, err := lk.Decrypt(ctx, ciphertext); err != nil && !errors.Is(err, ErrUndecryptable) {
			t.Errorf("LocalKeeper.Decrypt = %v; want nil or ErrUndecryptable", err)
		}
		if got, err := dk.Open(field, dk.Seal(field, ciphertext)); err != nil || !bytes.Equal(got, ciphertext) {
			t.Errorf("Open(Seal(x)) = %q, %v; want x", got, err)
		}
	})
}
