package identity

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// The identifier types of Segment's identity resolution that a message carries in
// its own fields or that an identify's traits may hold.
const (
	TypeUserID      = "user_id"
	TypeEmail       = "email"
	TypeAnonymousID = "anonymous_id"
	TypeGroupID     = "group_id"
)

// DefaultTypes are Segment's default identifier types: user_id and
// anonymous_id from a message's ids, email from its traits or
// context.traits, the device ids from its context. group_id names a group
// (an account), never a person: a group call's GroupID is no identifier of
// its member. A trait of another name (or of these, but email) is an
// identifier only when Rules.Custom names it.
var DefaultTypes = []string{
	TypeUserID, TypeEmail, TypeAnonymousID, TypeGroupID,
	"android.id", "android.idfa", "android.push_token",
	"ios.id", "ios.idfa", "ios.push_token", "ga_client_id",
}

// MaxValueLength bounds an identifier value, in bytes, so that a runaway client
// cannot use identifiers as a place to store documents.
const MaxValueLength = 1024

// maxTypeLength bounds an identifier type name, in bytes.
const maxTypeLength = 64

// ID is one identifier of a person: a type such as "email" and its value.
// Use NewID or ParseID to get a normalised ID; the zero ID is not valid.
type ID struct {
	Type  string
	Value string
}

// NewID returns the normalised identifier of the given type and value: the type
// lower-cased and trimmed, the value trimmed, an email lower-cased. It fails with
// an error matching ErrInvalid when either part is empty, not UTF-8 or too long, or
// when the type has characters other than a-z, 0-9, '_', '.' and '-'.
func NewID(typ, value string) (ID, error) {
	return ID{Type: typ, Value: value}.Normalize()
}

// ParseID parses the "type:value" form that String returns, for example
// "email:a@b.c" or "user_id:42", and normalises it as NewID does. The value may
// itself contain colons; the type ends at the first one.
func ParseID(s string) (ID, error) {
	typ, value, ok := strings.Cut(s, ":")
	if !ok {
		return ID{}, fmt.Errorf("%w: identifier: want type:value", ErrInvalid)
	}
	return NewID(typ, value)
}

// String returns the "type:value" form that ParseID reads.
func (id ID) String() string { return id.Type + ":" + id.Value }

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id.Type == "" && id.Value == "" }

// Normalize returns id in its canonical form, or an error matching ErrInvalid that
// says what was wrong. It allocates only when something has to change.
func (id ID) Normalize() (ID, error) {
	typ, err := normalizeType(id.Type)
	if err != nil {
		return ID{}, err
	}
	value := strings.TrimSpace(id.Value)
	switch {
	case value == "":
		return ID{}, fmt.Errorf("%w: identifier %s: empty value", ErrInvalid, typ)
	case len(value) > MaxValueLength:
		return ID{}, fmt.Errorf("%w: identifier %s: value is %d bytes, more than %d", ErrInvalid, typ, len(value), MaxValueLength)
	case !utf8.ValidString(value):
		return ID{}, fmt.Errorf("%w: identifier %s: value is not valid UTF-8", ErrInvalid, typ)
	case strings.IndexByte(value, 0) >= 0:
		// No SQL backend stores NUL in text: refused alike everywhere.
		return ID{}, fmt.Errorf("%w: identifier %s: value contains a NUL byte", ErrInvalid, typ)
	}
	if typ == TypeEmail && hasUpper(value) {
		value = strings.ToLower(value)
		// A few runes lower-case to longer encodings (U+023A to U+2C65), so check
		// the length again: a normalised ID must normalise to itself.
		if len(value) > MaxValueLength {
			return ID{}, fmt.Errorf("%w: identifier %s: value is %d bytes once lower-cased, more than %d", ErrInvalid, typ, len(value), MaxValueLength)
		}
	}
	return ID{Type: typ, Value: value}, nil
}

func normalizeType(typ string) (string, error) {
	t := strings.TrimSpace(typ)
	if t == "" {
		return "", fmt.Errorf("%w: identifier type is empty", ErrInvalid)
	}
	if len(t) > maxTypeLength {
		return "", fmt.Errorf("%w: identifier type is %d bytes, more than %d", ErrInvalid, len(t), maxTypeLength)
	}
	if hasUpper(t) {
		t = strings.ToLower(t)
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return "", fmt.Errorf("%w: identifier type: only a-z, 0-9, '_', '.' and '-' are allowed", ErrInvalid)
		}
	}
	return t, nil
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || c >= utf8.RuneSelf {
			return true
		}
	}
	return false
}

// ProfileID is the stable canonical id of one person's profile, "use_" followed by
// 26 lower-case base32 characters. IDs sort by creation time to the millisecond.
type ProfileID string

// ProfilePrefix begins every ProfileID, as in Segment.
const ProfilePrefix = "use_"

var profileEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// NewProfileID returns a new ProfileID: 48 bits of creation time in milliseconds
// then 80 random bits. Within one process ids are strictly increasing, even within
// one millisecond or when the clock steps back (the random part of the previous id
// is incremented, as monotonic ULIDs do), so "the oldest profile" of a merge is
// always the one created first.
func NewProfileID(now time.Time) ProfileID { return ProfileID(NewSortableID(ProfilePrefix, now)) }

// AccountPrefix begins the ProfileID of an account profile (Segment's
// accounts collection: a group's traits, AccountProfileID), never a person's.
const AccountPrefix = "acc_"

// AccountProfileID returns the id of the account profile of the group
// groupID names: AccountPrefix then 26 base32 characters of the SHA-256 of
// groupID, the same on every host and after every restart, so that no
// index is needed to find it. A group id names a group, not a person: it is
// no identifier of the identity graph.
func AccountProfileID(groupID string) ProfileID {
	sum := sha256.Sum256([]byte(groupID))
	return ProfileID(AccountPrefix + profileEncoding.EncodeToString(sum[:16]))
}

// IsAccount reports whether id names an account profile (AccountProfileID).
func (id ProfileID) IsAccount() bool { return strings.HasPrefix(string(id), AccountPrefix) }

// NewSortableID returns prefix followed by 26 characters that sort in creation
// order within the process, as NewProfileID's do: for ids of other things, such
// as privacy requests.
func NewSortableID(prefix string, now time.Time) string {
	var b [16]byte
	ms := uint64(max(now.UnixMilli(), 0))
	lastID.Lock()
	if ms <= lastID.ms {
		ms = lastID.ms
		b = lastID.b
		for i := 15; i >= 6; i-- { // increment the random part
			b[i]++
			if b[i] != 0 {
				break
			}
		}
	} else {
		binary.BigEndian.PutUint64(b[:8], ms<<16)
		if _, err := rand.Read(b[6:]); err != nil {
			lastID.Unlock()
			panic("identity: crypto/rand failed: " + err.Error()) // documented never to fail
		}
		b[6] &= 0x7f // leave room to increment without carrying into the time
	}
	lastID.ms, lastID.b = ms, b
	lastID.Unlock()
	return prefix + profileEncoding.EncodeToString(b[:])
}

// lastID is the previous id NewProfileID returned, for monotonic ids.
var lastID struct {
	sync.Mutex
	ms uint64
	b  [16]byte
}

// ParseProfileID checks that s has the form of a ProfileID.
func ParseProfileID(s string) (ProfileID, error) {
	rest, ok := strings.CutPrefix(s, ProfilePrefix)
	if !ok || len(rest) != 26 {
		return "", fmt.Errorf("%w: profile id %q: want %s followed by 26 characters", ErrInvalid, s, ProfilePrefix)
	}
	b, err := profileEncoding.DecodeString(rest)
	if err != nil {
		return "", fmt.Errorf("%w: profile id %q: %v", ErrInvalid, s, err)
	}
	// The decoder skips CR and LF and ignores the padding bits of the last
	// character; only the canonical spelling of 16 bytes is a ProfileID.
	if len(b) != 16 || profileEncoding.EncodeToString(b) != rest {
		return "", fmt.Errorf("%w: profile id %q: not the canonical encoding of 16 bytes", ErrInvalid, s)
	}
	return ProfileID(s), nil
}
