package keyring

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
)

// Errors of this package, matchable with errors.Is.
var (
	// ErrNotFound: the profile has no data key: none was made, or it was
	// destroyed (its data is shredded).
	ErrNotFound = errors.New("keyring: no data key")
	// ErrInvalid: an argument the store or a key cannot take.
	ErrInvalid = errors.New("keyring: invalid")
	// ErrTxDone: the transaction was committed or rolled back already.
	ErrTxDone = errors.New("keyring: transaction already committed or rolled back")
	// ErrUndecryptable: a ciphertext that does not open: tampered with, moved
	// to another profile or field, or sealed under another key.
	ErrUndecryptable = errors.New("keyring: ciphertext does not decrypt")
	// ErrWrongKeeper: the Keeper is not the one the Store's keys are
	// wrapped by (Keys.CheckKeeper).
	ErrWrongKeeper = errors.New("keyring: not the keeper the keyring's keys are wrapped by")
	// ErrWrongKeyring: the keyring is not the one a backend's data was
	// sealed with (Sealer).
	ErrWrongKeyring = errors.New("keyring: not the keyring the data was sealed with")
)

// Keeper encrypts and decrypts data keys: the method set of Go CDK's
// secrets.Keeper (gocloud.dev/secrets), which a *secrets.Keeper has, so a
// cloud key management service plugs in as it is.
type Keeper interface {
	Encrypt(ctx context.Context, plaintext []byte) ([]byte, error)
	Decrypt(ctx context.Context, ciphertext []byte) ([]byte, error)
}

// localKeeperLabel separates the LocalKeeper's use of a secret from every
// other use of it (the keyed hashes, the audit chain), and names the scheme.
const localKeeperLabel = "gdprkit/keyring.LocalKeeper/v1 AES-256-GCM"

// LocalKeeper is a Keeper whose AES-256-GCM key is derived from a secret with
// HMAC-SHA256: the default, from the Controller's key. It is safe for
// concurrent use.
type LocalKeeper struct {
	aead cipher.AEAD
}

var _ Keeper = (*LocalKeeper)(nil)

// MinSecretLength is the shortest secret NewLocalKeeper takes, in bytes.
const MinSecretLength = 16

// NewLocalKeeper returns the LocalKeeper of secret, at least MinSecretLength
// bytes (32 random bytes are right).
func NewLocalKeeper(secret []byte) (*LocalKeeper, error) {
	if len(secret) < MinSecretLength {
		return nil, fmt.Errorf("%w: keeper secret is %d bytes, want at least %d", ErrInvalid, len(secret), MinSecretLength)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(localKeeperLabel))
	aead, err := newGCM(mac.Sum(nil))
	if err != nil {
		return nil, err
	}
	return &LocalKeeper{aead: aead}, nil
}

// wrapAD is the associated data of what a LocalKeeper encrypts.
var wrapAD = []byte("gdprkit/keyring/wrapped-key/v1")

// Encrypt implements Keeper: a version byte, a random nonce, and the sealed
// plaintext.
func (k *LocalKeeper) Encrypt(ctx context.Context, plaintext []byte) ([]byte, error) {
	return seal(k.aead, plaintext, wrapAD), nil
}

// Decrypt implements Keeper.
func (k *LocalKeeper) Decrypt(ctx context.Context, ciphertext []byte) ([]byte, error) {
	return open(k.aead, ciphertext, wrapAD)
}

// newGCM returns AES-GCM under a 32-byte key.
func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return cipher.NewGCM(block)
}

// sealVersion is the first byte of every ciphertext this package makes.
const sealVersion = 1

// seal returns version || nonce || AES-GCM(plaintext, ad).
func seal(aead cipher.AEAD, plaintext, ad []byte) []byte {
	out := make([]byte, 1+aead.NonceSize(), 1+aead.NonceSize()+len(plaintext)+aead.Overhead())
	out[0] = sealVersion
	_, _ = rand.Read(out[1:]) // crypto/rand.Read never fails
	return aead.Seal(out, out[1:1+aead.NonceSize()], plaintext, ad)
}

// open reverses seal, failing with ErrUndecryptable.
func open(aead cipher.AEAD, ciphertext, ad []byte) ([]byte, error) {
	n := aead.NonceSize()
	if len(ciphertext) < 1+n+aead.Overhead() || ciphertext[0] != sealVersion {
		return nil, fmt.Errorf("%w: malformed (%d bytes)", ErrUndecryptable, len(ciphertext))
	}
	plain, err := aead.Open(nil, ciphertext[1:1+n], ciphertext[1+n:], ad)
	if err != nil {
		return nil, ErrUndecryptable
	}
	return plain, nil
}

// RotatingKeeper is a Keeper across a rotation of its key: it encrypts with
// the current Keeper, and decrypts with the first of the current and then
// the previous ones (newest first) that opens the ciphertext, so keys wrapped
// before the rotation still unwrap until Rotate re-wraps them.
type RotatingKeeper struct {
	current  Keeper
	previous []Keeper
}

var _ Keeper = (*RotatingKeeper)(nil)

// NewRotatingKeeper returns the RotatingKeeper of current and the keepers
// before it, newest first.
func NewRotatingKeeper(current Keeper, previous ...Keeper) (*RotatingKeeper, error) {
	if current == nil || slices.Contains(previous, nil) {
		return nil, fmt.Errorf("%w: NewRotatingKeeper: nil Keeper", ErrInvalid)
	}
	return &RotatingKeeper{current: current, previous: slices.Clone(previous)}, nil
}

// Encrypt implements Keeper with the current keeper.
func (k *RotatingKeeper) Encrypt(ctx context.Context, plaintext []byte) ([]byte, error) {
	return k.current.Encrypt(ctx, plaintext)
}

// Decrypt implements Keeper: the current keeper's answer, or else the first
// previous keeper's that opens it; failing all, the current keeper's error.
func (k *RotatingKeeper) Decrypt(ctx context.Context, ciphertext []byte) ([]byte, error) {
	plain, err := k.current.Decrypt(ctx, ciphertext)
	if err == nil {
		return plain, nil
	}
	for _, p := range k.previous {
		if plain, perr := p.Decrypt(ctx, ciphertext); perr == nil {
			return plain, nil
		}
	}
	return nil, err
}
