package keyring

import (
	"crypto/cipher"
	"fmt"

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

// Profile returns the profile the key belongs to.
func (k *DataKey) Profile() identity.ProfileID { return k.profile }

// dataAD is the associated data of a value: the scheme, the profile and the
// field, so that a ciphertext opens only where it was sealed.
func (k *DataKey) dataAD(field string) []byte {
	ad := make([]byte, 0, len("gdprkit/keyring/value/v1")+2+len(k.profile)+len(field))
	ad = append(ad, "gdprkit/keyring/value/v1"...)
	ad = append(ad, 0)
	ad = append(ad, k.profile...)
	ad = append(ad, 0)
	return append(ad, field...)
}

// Seal encrypts plaintext as the value of field (such as "trait:plan" or
// "event:m42:properties") of the key's profile.
func (k *DataKey) Seal(field string, plaintext []byte) []byte {
	return seal(k.aead, plaintext, k.dataAD(field))
}

// Open decrypts what Seal sealed for the same profile and field; anything
// else fails with ErrUndecryptable.
func (k *DataKey) Open(field string, ciphertext []byte) ([]byte, error) {
	return open(k.aead, ciphertext, k.dataAD(field))
}
