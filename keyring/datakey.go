package keyring

import (
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"sync"

	"github.com/gdprkit/privacy/identity"
)

// DataKeySize is the size of a data key: AES-256.
const DataKeySize = 32

// DataKey is one profile's data key, unwrapped: it seals and opens that
// profile's values. It is safe for concurrent use.
type DataKey struct {
	profile identity.ProfileID
	aead    cipher.AEAD
}

// newDataKey returns the DataKey of raw for the profile.
func newDataKey(pid identity.ProfileID, raw []byte) (*DataKey, error) {
	if len(raw) != DataKeySize {
		return nil, fmt.Errorf("%w: a data key of %d bytes, want %d", ErrUndecryptable, len(raw), DataKeySize)
	}
	aead, err := newGCM(raw)
	if err != nil {
		return nil, err
	}
	return &DataKey{profile: pid, aead: aead}, nil
}

// NewRandomDataKey returns a new random data key for the profile, wrapped by
// nothing and kept by no keyring: for a store whose keys live exactly as long
// as the data they seal, in its own memory (profile.NewSealedMemStore), where
// dropping the key with the profile is the shredding.
func NewRandomDataKey(pid identity.ProfileID) (*DataKey, error) {
	raw := make([]byte, DataKeySize)
	_, _ = rand.Read(raw) // crypto/rand.Read never fails
	defer clear(raw)
	return newDataKey(pid, raw)
}

// Profile returns the profile the key belongs to.
func (k *DataKey) Profile() identity.ProfileID { return k.profile }

// appendAD appends the associated data of a value: the scheme, the profile
// and the field, so that a ciphertext opens only where it was sealed.
func (k *DataKey) appendAD(ad []byte, field string) []byte {
	ad = append(ad, "gdprkit/keyring/value/v1"...)
	ad = append(ad, 0)
	ad = append(ad, k.profile...)
	ad = append(ad, 0)
	return append(ad, field...)
}

// adBufs holds buffers for associated data, which escapes through the AEAD
// interface: a busy collection path would allocate one per value.
var adBufs = sync.Pool{New: func() any { b := make([]byte, 0, 128); return &b }}

// Seal encrypts plaintext as the value of field (such as "trait:plan" or
// "event:m42:properties") of the key's profile.
func (k *DataKey) Seal(field string, plaintext []byte) []byte {
	bp := adBufs.Get().(*[]byte)
	ad := k.appendAD((*bp)[:0], field)
	out := seal(k.aead, plaintext, ad)
	*bp = ad[:0]
	adBufs.Put(bp)
	return out
}

// Open decrypts what Seal sealed for the same profile and field; anything
// else fails with ErrUndecryptable.
func (k *DataKey) Open(field string, ciphertext []byte) ([]byte, error) {
	bp := adBufs.Get().(*[]byte)
	ad := k.appendAD((*bp)[:0], field)
	out, err := open(k.aead, ciphertext, ad)
	*bp = ad[:0]
	adBufs.Put(bp)
	return out, err
}
