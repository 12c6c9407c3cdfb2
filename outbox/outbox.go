package outbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
)

// Errors of this package, matchable with errors.Is.
var (
	// ErrInvalid: an item or an argument the store cannot take. Nothing was
	// written.
	ErrInvalid = errors.New("outbox: invalid")
	// ErrNotFound: no such item.
	ErrNotFound = errors.New("outbox: not found")
	// ErrTxDone: the transaction was committed or rolled back already.
	ErrTxDone = errors.New("outbox: transaction already committed or rolled back")
)

// State is where an item is in its life.
type State string

// The states of an item.
const (
	// Pending: not answered yet (waiting, leased to a deliverer, or waiting
	// for a retry).
	Pending State = "PENDING"
	// Delivered: the destination accepted it.
	Delivered State = "DELIVERED"
	// NotSupported: the destination cannot do it (a deletion it cannot make).
	NotSupported State = "NOT_SUPPORTED"
	// Dead: given up on after the retry horizon, or refused for good by the
	// destination; Replay makes it Pending again.
	Dead State = "DEAD"
)

// Valid reports whether s is one of the states.
func (s State) Valid() bool {
	switch s {
	case Pending, Delivered, NotSupported, Dead:
		return true
	}
	return false
}

// Answered reports whether the destination has answered: every state but
// Pending.
func (s State) Answered() bool { return s.Valid() && s != Pending }

// Item is one piece of work for one destination: a message to send, or a
// deletion to make.
type Item struct {
	// ID is set by the store when the item is enqueued: of two items of one
	// destination and profile, the later one has the larger ID (items of
	// different profiles or destinations are in no particular order).
	ID uint64
	// Destination is the name of the destination the item is for.
	Destination string
	// Profile is the person the item is about: a destination gets each
	// profile's items in ID order.
	Profile identity.ProfileID
	// Request is the id of the privacy request whose receipt awaits the
	// item's answer, or "" (a collected message, an audience change).
	Request string
	// Key, when set, identifies the item among its destination's: an item
	// whose destination and key an item held by the store has already is not
	// enqueued again, so that a request made again after a crash does not
	// owe its work twice.
	Key string
	// Exactly one of Message and Deletion is set.
	Message  *destination.Message
	Deletion *destination.Deletion
	// Enqueued is when the item was enqueued, or replayed: the retry
	// horizon counts from it.
	Enqueued time.Time
	// State is Pending until the destination answers.
	State State
	// Attempts counts the calls that failed; NotBefore is when the next may
	// be made; LastError says why the last one failed, without personal
	// data.
	Attempts  int
	NotBefore time.Time
	LastError string
}

// Clone returns a copy of it that shares nothing with it.
func (it Item) Clone() Item {
	if it.Message != nil {
		m := it.Message.Clone()
		it.Message = &m
	}
	if it.Deletion != nil {
		d := it.Deletion.Clone()
		it.Deletion = &d
	}
	return it
}

// Limits on what a store takes.
const (
	// MaxNameLen bounds Destination, Request, Key and an owner, in bytes.
	MaxNameLen = 256
	// MaxErrorLen bounds LastError, in bytes: a longer one is cut.
	MaxErrorLen = 1024
)

// Validate reports, with an error matching ErrInvalid that names the field,
// why the store cannot enqueue it.
func (it *Item) Validate() error {
	switch {
	case it.Destination == "" || len(it.Destination) > MaxNameLen || !utf8.ValidString(it.Destination):
		return fmt.Errorf("%w: Destination %q: want 1 to %d bytes of UTF-8", ErrInvalid, it.Destination, MaxNameLen)
	case it.Profile == "" || len(it.Profile) > MaxNameLen || !utf8.ValidString(string(it.Profile)):
		return fmt.Errorf("%w: Profile: want 1 to %d bytes of UTF-8", ErrInvalid, MaxNameLen)
	case len(it.Request) > MaxNameLen || !utf8.ValidString(it.Request):
		return fmt.Errorf("%w: Request: want at most %d bytes of UTF-8", ErrInvalid, MaxNameLen)
	case len(it.Key) > MaxNameLen || !utf8.ValidString(it.Key):
		return fmt.Errorf("%w: Key: want at most %d bytes of UTF-8", ErrInvalid, MaxNameLen)
	case (it.Message == nil) == (it.Deletion == nil):
		return fmt.Errorf("%w: an item has exactly one of Message and Deletion", ErrInvalid)
	case it.Message != nil && it.Message.ProfileID != it.Profile:
		return fmt.Errorf("%w: Message.ProfileID is not the item's Profile", ErrInvalid)
	case it.Deletion != nil && it.Deletion.ProfileID != it.Profile:
		return fmt.Errorf("%w: Deletion.ProfileID is not the item's Profile", ErrInvalid)
	}
	return nil
}

// Store holds what destinations are owed, and hands it out to deliverers.
// Implementations are safe for concurrent use, also by several processes
// sharing one store, and never keep or return memory the caller holds.
type Store interface {
	// Begin starts a transaction, in which the Controller writes the items a
	// change owes together with the change.
	Begin(ctx context.Context) (Tx, error)
	// Claim leases to c.Owner, until c.Until, up to c.Limit Pending items
	// of c.Destinations that are due (NotBefore not after c.Now) and not
	// leased to anyone (or whose lease lapsed before c.Now), by ID. Of each
	// destination and profile it hands out a run that starts at its oldest
	// Pending item: a deletion alone, or messages in order up to the first
	// later item that is a deletion, not due or leased. So nothing is handed
	// out while an earlier item of its destination and profile is held or
	// waits for its retry, and a deletion only once everything before it
	// answered. An item with neither Message nor Deletion was purged while a
	// deliverer held it: the deliverer settles it without delivering it.
	Claim(ctx context.Context, c Claim) ([]Item, error)
	// Renew extends to until the leases owner holds on the items, or, with
	// a zero until, gives the items up: they are no longer held, and are
	// claimed again as any other. Items owner no longer holds are left
	// alone. A store whose renewal of an item has to wait (for rows an
	// erasure's transaction holds locked) counts the lease from when it
	// applies it, and may apply it in the background, Renew returning at
	// once: a lease that lapsed while its renewal waited would let the
	// person's deletion go out under a call still running, and a Renew
	// that waited would hold back the renewal of every other item.
	Renew(ctx context.Context, owner string, ids []uint64, until time.Time) error
	// Settle records what the destination answered for items owner holds,
	// and ends their leases; items it no longer holds are left alone, and
	// their number is returned. An item without a Request that answered
	// Delivered or NotSupported is removed, as is one that was purged,
	// whatever its answer; a request's item keeps its answer, without its
	// payload, until Forget. An item answered Dead is listed by Dead, under
	// its ID or, when the store kept it together with items that did not
	// die (sqlstore's bundles), under a new one. An item answered twice
	// counts as lost the second time.
	Settle(ctx context.Context, owner string, answers []Answer) (lost int, err error)
	// Outcomes returns the items of the request, without their payload, by
	// ID.
	Outcomes(ctx context.Context, request string) ([]Item, error)
	// Forget removes the request's Delivered and NotSupported items and lets
	// go of its Dead ones: they stay, payload and all, as dead letters no
	// request awaits, which Replay can send again (a deletion given up on
	// must not be lost with its request). Its Pending items stay.
	Forget(ctx context.Context, request string) error
	// Dead returns up to limit Dead items of the destination ("" for every
	// destination) whose ID is greater than after, by ID.
	Dead(ctx context.Context, dest string, after uint64, limit int) ([]Item, error)
	// Replay makes the Dead items among ids Pending again, due at now, their
	// attempts and horizon started afresh, under new IDs: at the end of
	// their destination and profile's queue, after what was enqueued since
	// (which may have gone out already), so that nothing of the person is
	// ever handed out beside a later item still held. It returns how many
	// it changed (a purged one stays Dead).
	Replay(ctx context.Context, ids []uint64, now time.Time) (int, error)
	// Stats counts the Pending and Dead items of each destination that has
	// any.
	Stats(ctx context.Context) (map[string]Counts, error)
}

// RequestMarkingTx is implemented by outbox transactions that can record,
// in their own commit, that a request's decision was applied. The outbox
// is the last backend a decision commits (what is owed follows what was
// done), so a mark in its transaction means every backend's commit landed,
// whatever database each is in. The Controller marks every decided
// request; Recover, finding one whose commit the journal does not show
// (the process died, or the journal failed, between the commits and the
// journal's record of them), asks the outbox (RequestMarks) rather than
// decide it again on the person as they are by then, who may have been
// collected anew or corrected since. A mark holds the request id only,
// nothing personal.
type RequestMarkingTx interface {
	// MarkRequest records, in the transaction, that the request's decision
	// was applied. Marking twice is harmless.
	MarkRequest(ctx context.Context, id string) error
}

// RequestMarks is implemented by outbox stores whose transactions are
// RequestMarkingTx.
type RequestMarks interface {
	// RequestMarked reports whether a committed transaction marked the
	// request.
	RequestMarked(ctx context.Context, id string) (bool, error)
}

// Tx is a Store transaction. Rollback after Commit is a harmless no-op; any
// other call after either fails with ErrTxDone.
type Tx interface {
	// Enqueue adds the items, Pending and due at their Enqueued time, and
	// sets their IDs; an item whose Destination and Key (when not "") an
	// item in the store has already is skipped, its ID left 0. An invalid
	// item fails the call with ErrInvalid and nothing is enqueued.
	Enqueue(ctx context.Context, items []Item) error
	// Merge moves the items of profile from, whatever their state, to
	// profile into. Each keeps its ID, so each profile's items still go out
	// in the order they were enqueued, and the merged person's one run at a
	// time; between the items of the two, in the order of their IDs, which
	// need not be the order they were enqueued in (a store may keep a
	// profile's items of one call together): until the merge the two were
	// queues of their own, and could have gone out in any interleaving.
	Merge(ctx context.Context, into, from identity.ProfileID) error
	// Purge removes the Pending and Dead messages (not deletions) of the
	// profile that no request awaits and no deliverer holds, and returns how
	// many it removed. A message a deliverer holds (its lease lapsed or not)
	// stays, so that nothing enqueued after it overtakes a call still
	// running, but loses its payload: it is never delivered again. A store
	// may keep it held a while past its lease (its holder's renewal may
	// wait for the purge's commit). Settle
	// removes it whatever its call answered, or, when a request awaits it,
	// records it Delivered if its call delivered it and else NotSupported
	// (ErasedFirst). A request's Dead
	// messages of the profile keep their answer but lose their payload, so
	// Replay never sends them after the person's deletion. A request's
	// Pending messages no deliverer holds are answered NotSupported, with
	// the reason ErasedFirst, without their payload: nothing about the
	// person goes out after their erasure, whether or not a deletion
	// follows, and the request that awaits them can finish.
	Purge(ctx context.Context, pid identity.ProfileID) (int, error)
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// ErasedFirst is the reason Purge gives a request's message it answers: the
// person was erased before it was delivered.
const ErasedFirst = "not sent: the person was erased before it was delivered"

// Claim is what a deliverer asks Store.Claim for.
type Claim struct {
	Owner        string
	Destinations []string
	Now, Until   time.Time
	Limit        int
}

// Validate reports why a store cannot take c, with an error matching
// ErrInvalid.
func (c *Claim) Validate() error {
	switch {
	case c.Owner == "" || len(c.Owner) > MaxNameLen:
		return fmt.Errorf("%w: Claim.Owner: want 1 to %d bytes", ErrInvalid, MaxNameLen)
	case c.Limit <= 0:
		return fmt.Errorf("%w: Claim.Limit %d: want a positive number", ErrInvalid, c.Limit)
	case !c.Until.After(c.Now):
		return fmt.Errorf("%w: Claim.Until is not after Claim.Now", ErrInvalid)
	}
	return nil
}

// Answer is what a destination answered for one item.
type Answer struct {
	ID uint64
	// State is the answer; Pending means the call failed and the item is
	// tried again at NotBefore (its Attempts counted up).
	State     State
	NotBefore time.Time
	// Err says why the call failed (Pending, Dead) or why the destination
	// cannot (NotSupported), without personal data; cut at MaxErrorLen.
	Err string
}

// Validate reports why a store cannot take a, with an error matching
// ErrInvalid.
func (a *Answer) Validate() error {
	if !a.State.Valid() {
		return fmt.Errorf("%w: Answer.State %q", ErrInvalid, a.State)
	}
	return nil
}

// CutError returns s as a store keeps it: valid UTF-8 (invalid bytes
// replaced), without NUL bytes, cut to MaxErrorLen bytes at a rune boundary.
func CutError(s string) string {
	// Text any store takes: valid UTF-8 without NUL (PostgreSQL refuses
	// both, and an answer it cannot record is delivered again forever).
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	s = strings.ReplaceAll(s, "\x00", "")
	if len(s) <= MaxErrorLen {
		return s
	}
	s = s[:MaxErrorLen]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// Counts is how many items of one destination are Pending and Dead.
type Counts struct {
	Pending, Dead int
}
