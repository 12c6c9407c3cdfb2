package identity

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
)

// Hash is a keyed hash of an identifier or a profile id: what the suppression
// list, receipts and the audit log keep instead of the clear value, so that an
// erased person is not stored in clear anywhere. Without the key it reveals
// nothing, not even for guessable values such as emails. 128 bits: a collision
// among even billions of identifiers is out of reach.
type Hash [16]byte

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

// hashKeyLabel separates the Hasher's use of the key from every other use (the
// audit chain's HMAC, say), and names the scheme's version.
const hashKeyLabel = "gdprkit/identity.Hasher/v2 AES-128-CMAC"

// Hasher computes keyed hashes: AES-128-CMAC (RFC 4493, NIST SP 800-38B) of the
// normalised identifier's String form (or "profile:" and the profile id), under
// a 128-bit subkey derived from the secret key with HMAC-SHA256. CMAC rather
// than HMAC because the suppression check hashes every unknown identifier on
// the collection path, and AES-128 rather than AES-256 because CMAC chains its
// blocks, so each block's rounds are on the critical path: a typical identifier
// takes four blocks, about half of HMAC-SHA256's two compressions. Keep the key
// stable: the same person must hash the same way across restarts for a
// suppression to hold. A Hasher is safe for concurrent use and does not
// allocate per call.
type Hasher struct {
	// inner, when set, is the hasher of the keys before a rotation: this
	// hasher's hashes are its own layer over inner's (NewRotatedHasher).
	inner  *Hasher
	block  cipher.Block
	k1, k2 [aes.BlockSize]byte // CMAC's subkeys for a complete and a padded last block
	pool   sync.Pool           // of *cmacState: Encrypt through the interface would move a stack buffer to the heap
}

type cmacState struct {
	x, buf [aes.BlockSize]byte
}

// NewHasher returns a Hasher with the key, which must be at least MinKeyLength
// bytes (32 random bytes are right).
func NewHasher(key []byte) (*Hasher, error) {
	if len(key) < MinKeyLength {
		return nil, fmt.Errorf("%w: hash key is %d bytes, want at least %d", ErrInvalid, len(key), MinKeyLength)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(hashKeyLabel))
	return newCMACHasher(mac.Sum(nil)[:16])
}

// newCMACHasher returns a Hasher computing AES-CMAC under k itself (16, 24 or 32
// bytes); the tests check it against the published test vectors.
func newCMACHasher(k []byte) (*Hasher, error) {
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("%w: hash key: %v", ErrInvalid, err)
	}
	h := &Hasher{block: block}
	// Subkeys (RFC 4493 2.3): L = AES(0); K1 = L<<1 (^0x87 if L's top bit was
	// set); K2 = K1<<1 likewise.
	var l [aes.BlockSize]byte
	block.Encrypt(l[:], l[:])
	h.k1 = double(l)
	h.k2 = double(h.k1)
	h.pool.New = func() any { return new(cmacState) }
	return h, nil
}

// xor sets dst to dst^src.
func xor(dst, src *[aes.BlockSize]byte) {
	for i := range dst {
		dst[i] ^= src[i]
	}
}

// double multiplies b by x in GF(2^128), as CMAC's subkeys are derived.
func double(b [aes.BlockSize]byte) [aes.BlockSize]byte {
	var out [aes.BlockSize]byte
	carry := b[0] >> 7
	for i := 0; i < aes.BlockSize-1; i++ {
		out[i] = b[i]<<1 | b[i+1]>>7
	}
	out[aes.BlockSize-1] = b[aes.BlockSize-1] << 1
	out[aes.BlockSize-1] ^= 0x87 * carry
	return out
}

// NewRotatedHasher returns the Hasher of a key that was rotated: keys are
// every key used, oldest first (the current key last), each at least
// MinKeyLength bytes. Its hash of a value is the current key's layer over the
// hash under the keys before it (CMAC of "rekey:" and that hash), so that
// the hashes a store holds are carried to a new key by Rekey alone, without
// the values they stand for (an erased person's identifiers are nowhere in
// clear), and someone who learns an old key cannot compute the current
// hashes. With one key it is NewHasher's.
func NewRotatedHasher(keys ...[]byte) (*Hasher, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no hash key", ErrInvalid)
	}
	var h *Hasher
	for i, k := range keys {
		next, err := NewHasher(k)
		if err != nil {
			return nil, fmt.Errorf("key %d of %d: %w", i+1, len(keys), err)
		}
		next.inner = h
		h = next
	}
	return h, nil
}

// ID returns the keyed hash of an identifier, which should be normalised.
func (h *Hasher) ID(id ID) Hash {
	if h.inner != nil {
		return h.Rekey(h.inner.ID(id))
	}
	return h.sum(id.Type, ":", id.Value)
}

// Profile returns the keyed hash of a profile id.
func (h *Hasher) Profile(pid ProfileID) Hash {
	if h.inner != nil {
		return h.Rekey(h.inner.Profile(pid))
	}
	return h.sum("profile", ":", string(pid))
}

// Rekey returns the hash, under this Hasher, of the value whose hash under
// the keys before the current one (the Hasher made without the last of
// NewRotatedHasher's keys) is old: how a key rotation carries a stored hash
// to the new key.
func (h *Hasher) Rekey(old Hash) Hash { return h.sum("rekey", ":", string(old[:])) }

// keyCheckID is what Check hashes: no identifier has its type.
var keyCheckID = ID{Type: "gdprkit-key-check", Value: "v1"}

// Check returns the key's check value: the hash of a constant, which a store
// records at first use so that a later start with another key (or without
// the keys before a rotation) is refused instead of silently hashing people
// differently. It reveals nothing of the key that a hash does not.
func (h *Hasher) Check() Hash { return h.ID(keyCheckID) }

// sum returns the CMAC of the concatenation of the parts, without copying them
// into one buffer.
func (h *Hasher) sum(parts ...string) Hash {
	s := h.pool.Get().(*cmacState)
	s.x = [aes.BlockSize]byte{}
	n := 0 // bytes in s.buf
	for _, p := range parts {
		for len(p) > 0 {
			if n == aes.BlockSize { // a full block with more to come: not the last
				xor(&s.x, &s.buf)
				h.block.Encrypt(s.x[:], s.x[:])
				n = 0
			}
			c := copy(s.buf[n:], p)
			n += c
			p = p[c:]
		}
	}
	if n == aes.BlockSize {
		xor(&s.buf, &h.k1)
	} else {
		s.buf[n] = 0x80
		clear(s.buf[n+1:])
		xor(&s.buf, &h.k2)
	}
	xor(&s.x, &s.buf)
	h.block.Encrypt(s.x[:], s.x[:])
	out := Hash(s.x)
	h.pool.Put(s)
	return out
}
