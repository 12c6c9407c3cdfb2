// Package audit is the tamper-evident record of what the Controller did with
// privacy requests, so the controller can demonstrate compliance (Art. 5(2)).
//
// The log is append-only. Each record names people only by keyed hash and is
// chained to the previous one: its Hash is the HMAC-SHA256, under the
// Controller's key and truncated to identity.Hash's 128 bits, of the previous
// record's Hash and its own content. Verify
// walks the chain and reports the first record that was changed, removed or
// inserted; without the key a tamperer cannot recompute the chain.
//
// A record may carry a Note: its number among its request's records. A log
// stores a request's note once, so that a record two writers both owe (a
// request's holder that stalled while another took the request over) is in
// the log once, whoever appends it first.
//
// # Errors
//
// ErrTampered, ErrConflict and ErrDuplicate, matchable with errors.Is.
package audit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gdprkit/privacy/identity"
)

// ErrTampered: the chain does not verify.
var ErrTampered = errors.New("audit: log was tampered with")

// ErrUnknownKey: the log's chain continues under a key that was not given
// to VerifyKeys, or a key given was never rotated to.
var ErrUnknownKey = errors.New("audit: the log is chained under another key")

// ErrConflict is what Log.Append returns when the record's Seq is not the next
// one: another writer (another process sharing the log) appended first. Chain
// then chains the record to the new last one and appends it again.
var ErrConflict = errors.New("audit: another writer appended first")

// ErrDuplicate is what Log.Append returns when the log holds a record of the
// same request with the same Note already: the record was appended, by this
// writer or another.
var ErrDuplicate = errors.New("audit: the request's record is in the log already")

// Record is one audit entry.
type Record struct {
	// Seq numbers records from 1 without gaps.
	Seq         uint64
	At          time.Time
	Action      string // such as "received", "decided", "finished"
	RequestID   string
	RequestType string
	Status      string
	// Subjects are keyed hashes of the identifiers concerned.
	Subjects []identity.Hash
	Detail   string
	// Note, when not 0, numbers the record among its request's records: a
	// log holds one record per RequestID and Note.
	Note uint64 `json:",omitempty"`
	// Hash chains the record to the previous one.
	Hash identity.Hash
}

// Log is the audit log backend: append-only storage of records.
type Log interface {
	// Append stores the record; its Seq is one more than the last one's.
	// Otherwise it stores nothing and fails with an error matching ErrConflict.
	// A record whose Note is not 0, of a request that has a record with that
	// Note stored, is not stored either: Append fails with an error matching
	// ErrDuplicate.
	Append(ctx context.Context, r Record) error
	// Records returns up to limit records with Seq greater than after, in order.
	Records(ctx context.Context, after uint64, limit int) ([]Record, error)
	// Last returns the last record, with ok false when the log is empty.
	Last(ctx context.Context) (r Record, ok bool, err error)
}

// Chain appends records to a Log with their chain hashes. It is safe for
// concurrent use, also by several processes sharing one Log: a record another
// writer got ahead of is chained again to the new last record.
type Chain struct {
	log Log
	key []byte
	// check, when set, is the check value of the keys the writer hashes
	// with (NewKeyedChain).
	check identity.Hash
	mu    sync.Mutex
}

// NewChain returns a Chain over log with the HMAC key.
func NewChain(log Log, key []byte) *Chain { return &Chain{log: log, key: append([]byte(nil), key...)} }

// NewKeyedChain is NewChain for a writer whose keys have the check value
// check (identity.Hasher.Check): its Append fails with an error matching
// ErrUnknownKey, appending nothing, when the log's last record is chained
// under another key, or is the rotation to another key. So a writer left
// running with the old key through a rotation cannot break the chain.
func NewKeyedChain(log Log, key []byte, check identity.Hash) *Chain {
	c := NewChain(log, key)
	c.check = check
	return c
}

// follows reports why the chain cannot go on after last under c's key, or
// nil when it can.
func (c *Chain) follows(ctx context.Context, last Record) error {
	if c.check.IsZero() {
		return nil
	}
	if last.Action == ActionKeyRotated {
		if last.Detail != KeyRotatedDetail(c.check) {
			return fmt.Errorf("%w: the log was rotated to another key (record %d)", ErrUnknownKey, last.Seq)
		}
		return nil
	}
	_, err := keyOf(ctx, c.log, last, [][]byte{c.key})
	return err
}

// Append numbers r, chains it to the last record and appends it, again after
// each conflict with another writer, up to a bound. It fails with an error
// matching ErrDuplicate when the log holds r's request's Note already.
func (c *Chain) Append(ctx context.Context, r Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Stored as a SQL backend would keep it, so the chain hash survives the trip.
	r.At = r.At.UTC().Truncate(time.Microsecond)
	var err error
	for attempt := 0; attempt < appendAttempts; attempt++ {
		last, ok, lerr := c.log.Last(ctx)
		if lerr != nil {
			return fmt.Errorf("audit: reading the last record: %w", lerr)
		}
		var prev identity.Hash
		r.Seq = 1
		if ok {
			if err := c.follows(ctx, last); err != nil {
				return err
			}
			prev, r.Seq = last.Hash, last.Seq+1
		}
		r.Hash = link(c.key, prev, &r)
		if err = c.log.Append(ctx, r); !errors.Is(err, ErrConflict) {
			return err
		}
	}
	return err
}

// appendAttempts bounds how often Append chains a record again after other
// writers got ahead of it.
const appendAttempts = 20

// link computes a record's chain hash from the previous hash and its content.
func link(key []byte, prev identity.Hash, r *Record) identity.Hash {
	content := *r
	content.Hash = identity.Hash{}
	b, _ := json.Marshal(content) // a Record always encodes
	mac := hmac.New(sha256.New, key)
	mac.Write(prev[:])
	mac.Write(b)
	return identity.Hash(mac.Sum(nil)[:len(identity.Hash{})]) // HMAC-SHA256 truncated to 128 bits (RFC 4868)
}

// ActionKeyRotated is the Action of the record a key rotation appends: the
// last record chained under the old key, whose Detail names the new key by
// its check value (KeyRotatedDetail); the records after it are chained
// under the new key.
const ActionKeyRotated = "key rotated"

// keyRotatedPrefix starts a rotation record's Detail.
const keyRotatedPrefix = "to the key with check value "

// KeyRotatedDetail returns the Detail of the record of a rotation to the
// keys whose hasher has the check value check (identity.Hasher.Check).
func KeyRotatedDetail(check identity.Hash) string { return keyRotatedPrefix + check.String() }

// linked is link as a slice.
func linked(key []byte, prev identity.Hash, r *Record) []byte {
	h := link(key, prev, r)
	return h[:]
}

// Verify walks the whole log and checks every link of the chain, under one
// key. It returns the number of records verified, or an error matching
// ErrTampered that names the first record at fault. Records appended while it
// runs are not checked. A log whose key was rotated is verified with
// VerifyKeys.
func Verify(ctx context.Context, log Log, key []byte) (int, error) {
	return VerifyKeys(ctx, log, [][]byte{key})
}

// LastKey returns the index, among keys (oldest first), of the key the
// log's last record is chained under, and that record; ok is false when the
// log is empty. A last record chained under none of them fails with an error
// matching ErrUnknownKey.
func LastKey(ctx context.Context, log Log, keys [][]byte) (i int, last Record, ok bool, err error) {
	last, ok, err = log.Last(ctx)
	if err != nil {
		return 0, last, false, fmt.Errorf("audit: reading the last record: %w", err)
	}
	if !ok {
		return 0, last, false, nil
	}
	i, err = keyOf(ctx, log, last, keys)
	return i, last, true, err
}

// keyOf returns the index, among keys, of the key last (the log's last
// record) is chained under.
func keyOf(ctx context.Context, log Log, last Record, keys [][]byte) (int, error) {
	var prev identity.Hash
	if last.Seq > 1 {
		recs, err := log.Records(ctx, last.Seq-2, 1)
		if err != nil {
			return 0, fmt.Errorf("audit: reading records: %w", err)
		}
		if len(recs) != 1 || recs[0].Seq != last.Seq-1 {
			return 0, fmt.Errorf("%w: record %d, before the last one, is missing", ErrTampered, last.Seq-1)
		}
		prev = recs[0].Hash
	}
	for i := len(keys) - 1; i >= 0; i-- {
		if want := link(keys[i], prev, &last); hmac.Equal(want[:], last.Hash[:]) {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%w: the last record (%d) is chained under none of the keys given", ErrUnknownKey, last.Seq)
}

// CheckKey reports whether the log's last record is chained under the
// current key, the last of keys (every key used, oldest first): what a
// Controller checks when it starts, so that a start with another key is
// refused before it appends a record Verify would call tampered. A log whose
// last record is the rotation to the current key (chained under the key
// before it) passes, and so does an empty log. It fails with an error
// matching ErrUnknownKey.
func CheckKey(ctx context.Context, log Log, keys [][]byte) error {
	if len(keys) == 0 {
		return fmt.Errorf("%w: no key", ErrUnknownKey)
	}
	i, last, ok, err := LastKey(ctx, log, keys)
	switch {
	case err != nil:
		return err
	case !ok || i == len(keys)-1:
		return nil
	case i == len(keys)-2 && IsRotationTo(last, keys):
		return nil
	case i == len(keys)-2:
		return fmt.Errorf("%w: the last record (%d) is chained under the key before the current one, and is not the rotation to it: a key rotation did not finish", ErrUnknownKey, last.Seq)
	}
	return fmt.Errorf("%w: the last record (%d) is chained under an older key than the current one", ErrUnknownKey, last.Seq)
}

// IsRotationTo reports whether r is the record of the rotation to the last
// of keys (every key used, oldest first).
func IsRotationTo(r Record, keys [][]byte) bool {
	if r.Action != ActionKeyRotated {
		return false
	}
	h, err := identity.NewRotatedHasher(keys...)
	return err == nil && r.Detail == KeyRotatedDetail(h.Check())
}

// VerifyKeys is Verify for a log whose key was rotated: keys are every key
// used, oldest first. The chain starts under the first; after each
// ActionKeyRotated record it continues under the next, which must be the key
// that record names (an error matching ErrUnknownKey says it is not).
func VerifyKeys(ctx context.Context, log Log, keys [][]byte) (int, error) {
	if len(keys) == 0 {
		return 0, fmt.Errorf("%w: no key to verify with", ErrUnknownKey)
	}
	// Read the end first and walk up to it, so that records appended during the
	// walk do not make it look short.
	last, ok, err := log.Last(ctx)
	if err != nil {
		return 0, fmt.Errorf("audit: reading the last record: %w", err)
	}
	end := func(after uint64) bool { return ok && after == last.Seq }
	var prev identity.Hash
	var after uint64
	n, k := 0, 0 // records verified; the key they are chained under
	for !end(after) {
		recs, err := log.Records(ctx, after, 1000)
		if err != nil {
			return n, fmt.Errorf("audit: reading records: %w", err)
		}
		for i := range recs {
			r := &recs[i]
			if end(after) {
				break
			}
			if r.Seq != after+1 {
				return n, fmt.Errorf("%w: record %d follows record %d: records are missing or reordered", ErrTampered, r.Seq, after)
			}
			if r.Seq == 1 {
				// A log may start under a later key than the first: one
				// kept where the earlier ones were never used (an
				// in-memory log, a log begun after a rotation).
				for k+1 < len(keys) && !hmac.Equal(r.Hash[:], linked(keys[k], prev, r)) {
					k++
				}
			}
			if want := link(keys[k], prev, r); !hmac.Equal(want[:], r.Hash[:]) {
				return n, fmt.Errorf("%w: record %d does not match its chain hash: it or an earlier one was changed", ErrTampered, r.Seq)
			}
			prev, after = r.Hash, r.Seq
			n++
			if r.Action == ActionKeyRotated {
				if k+1 == len(keys) {
					return n, fmt.Errorf("%w: record %d rotated the key to one not given (%s)", ErrUnknownKey, r.Seq, r.Detail)
				}
				if !IsRotationTo(*r, keys[:k+2]) {
					return n, fmt.Errorf("%w: record %d rotated the key to another than key %d of those given", ErrUnknownKey, r.Seq, k+2)
				}
				k++
			}
		}
		if len(recs) < 1000 {
			break
		}
	}
	if ok && last.Seq != after {
		return n, fmt.Errorf("%w: the log ends at record %d but the walk ended at %d", ErrTampered, last.Seq, after)
	}
	if n > 0 && k+1 != len(keys) {
		return n, fmt.Errorf("%w: the log was never rotated to key %d of the %d given", ErrUnknownKey, k+2, len(keys))
	}
	return n, nil
}

// MemLog is the in-memory Log. It is safe for concurrent use.
type MemLog struct {
	mu    sync.RWMutex
	recs  []Record
	notes map[noteKey]bool
}

// noteKey is a request's note, which a log stores once.
type noteKey struct {
	request string
	note    uint64
}

var _ Log = (*MemLog)(nil)

// NewMemLog returns an empty in-memory audit log.
func NewMemLog() *MemLog { return &MemLog{} }

// Append implements Log.
func (l *MemLog) Append(ctx context.Context, r Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if k := (noteKey{r.RequestID, r.Note}); r.Note != 0 && l.notes[k] {
		return fmt.Errorf("%w: request %s, note %d", ErrDuplicate, r.RequestID, r.Note)
	}
	if want := uint64(len(l.recs)) + 1; r.Seq != want {
		return fmt.Errorf("%w: appending record %d, want %d", ErrConflict, r.Seq, want)
	}
	if r.Note != 0 {
		if l.notes == nil {
			l.notes = map[noteKey]bool{}
		}
		l.notes[noteKey{r.RequestID, r.Note}] = true
	}
	r.Subjects = append([]identity.Hash(nil), r.Subjects...)
	l.recs = append(l.recs, r)
	return nil
}

// Records implements Log.
func (l *MemLog) Records(ctx context.Context, after uint64, limit int) ([]Record, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var out []Record
	for _, r := range l.recs {
		if r.Seq > after && (limit <= 0 || len(out) < limit) {
			r.Subjects = append([]identity.Hash(nil), r.Subjects...)
			out = append(out, r)
		}
	}
	return out, nil
}

// Last implements Log.
func (l *MemLog) Last(ctx context.Context) (Record, bool, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if len(l.recs) == 0 {
		return Record{}, false, nil
	}
	r := l.recs[len(l.recs)-1]
	r.Subjects = append([]identity.Hash(nil), r.Subjects...)
	return r, true, nil
}
