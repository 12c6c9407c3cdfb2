package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"sync"
)

// Hash is a keyed hash of an identifier or a profile id: what the suppression
// list, receipts and the audit log keep instead of the clear value, so that an
// erased person is not stored in clear anywhere. Without the key it reveals
// nothing, not even for guessable values such as emails.
type Hash [32]byte

// String returns the hash in hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText encodes h in hex, as String does (and so in JSON).
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes the hex form.
func (h *Hash) UnmarshalText(b []byte) error {
	p, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = p
	return nil
}

// IsZero reports whether h is the zero Hash.
func (h Hash) IsZero() bool { return h == Hash{} }

// ParseHash parses the hex form String returns.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*len(h) {
		return h, fmt.Errorf("%w: hash %q: want %d hex digits", ErrInvalid, s, 2*len(h))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("%w: hash %q: %v", ErrInvalid, s, err)
	}
	return h, nil
}

// MinKeyLength is the shortest key a Hasher accepts, in bytes.
const MinKeyLength = 16

// Hasher computes keyed hashes: HMAC-SHA256 under a secret key of the normalised
// identifier's String form (or "profile:" and the profile id). Keep the key
// stable: the same person must hash the same way across restarts for a
// suppression to hold. A Hasher is safe for concurrent use and does not
// allocate per call.
type Hasher struct {
	key  []byte
	pool sync.Pool // of *hashState
}

type hashState struct {
	mac hash.Hash
	buf []byte
	sum [sha256.Size]byte
}

// NewHasher returns a Hasher with the key, which must be at least MinKeyLength
// bytes (32 random bytes are right).
func NewHasher(key []byte) (*Hasher, error) {
	if len(key) < MinKeyLength {
		return nil, fmt.Errorf("%w: hash key is %d bytes, want at least %d", ErrInvalid, len(key), MinKeyLength)
	}
	h := &Hasher{key: append([]byte(nil), key...)}
	h.pool.New = func() any {
		return &hashState{mac: hmac.New(sha256.New, h.key), buf: make([]byte, 0, 128)}
	}
	return h, nil
}

// ID returns the keyed hash of an identifier, which should be normalised.
func (h *Hasher) ID(id ID) Hash { return h.sum(id.Type, ":", id.Value) }

// Profile returns the keyed hash of a profile id.
func (h *Hasher) Profile(pid ProfileID) Hash { return h.sum("profile", ":", string(pid)) }

func (h *Hasher) sum(a, b, c string) Hash {
	s := h.pool.Get().(*hashState)
	s.mac.Reset()
	s.buf = append(append(append(s.buf[:0], a...), b...), c...)
	s.mac.Write(s.buf)
	out := Hash(s.mac.Sum(s.sum[:0]))
	h.pool.Put(s)
	return out
}
