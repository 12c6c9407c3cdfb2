package identity

import (
	"context"
	"errors"
	"time"
)

// Errors of this package, matchable with errors.Is.
var (
	// ErrInvalid: an identifier, profile id or rule set is malformed.
	ErrInvalid = errors.New("identity: invalid")
	// ErrBlocked: an identifier's value is blocked by the rules. It also matches
	// ErrInvalid.
	ErrBlocked = blockedError{}
	// ErrNotFound: no profile is linked to the identifier, or the profile is unknown.
	ErrNotFound = errors.New("identity: not found")
	// ErrConflict: a write contradicts the graph, such as linking an identifier that
	// belongs to another profile or creating a profile that exists.
	ErrConflict = errors.New("identity: conflict")
	// ErrTxDone: the transaction was already committed or rolled back.
	ErrTxDone = errors.New("identity: transaction already committed or rolled back")
)

type blockedError struct{}

func (blockedError) Error() string        { return "identity: blocked" }
func (blockedError) Is(target error) bool { return target == ErrInvalid }

// Link is one identifier of a profile, with when and from which message it was
// first seen.
type Link struct {
	ID        ID
	LinkedAt  time.Time
	MessageID string
}

// Merge records that profile From was merged into the profile holding the record.
type Merge struct {
	From      ProfileID
	At        time.Time
	MessageID string
}

// Node is one profile in the identity graph: its identifiers in the order they were
// linked and the history of profiles merged into it.
type Node struct {
	ID        ProfileID
	CreatedAt time.Time
	Links     []Link
	Merges    []Merge
}

// Clone returns a deep copy of n.
func (n *Node) Clone() *Node {
	c := *n
	c.Links = append([]Link(nil), n.Links...)
	c.Merges = append([]Merge(nil), n.Merges...)
	return &c
}

// Reader reads the identity graph. Every returned value is the caller's to keep:
// an implementation never hands out its own memory.
type Reader interface {
	// Lookup returns the profile id is linked to, or an error matching ErrNotFound.
	Lookup(ctx context.Context, id ID) (ProfileID, error)
	// Node returns the profile's node, or an error matching ErrNotFound.
	Node(ctx context.Context, pid ProfileID) (*Node, error)
}

// Graph is the identity graph backend: a store of profiles and the identifiers
// linked to them. It stores and retrieves; the resolution rules live in Resolver.
// Reads on the Graph itself see committed state.
type Graph interface {
	Reader
	// Begin starts a transaction. Writes staged in it are visible to its own
	// reads and to nobody else's until Commit.
	Begin(ctx context.Context) (Tx, error)
}

// Tx is a transaction on a Graph with database/sql manners: after Commit or
// Rollback every method fails with ErrTxDone, except Rollback, which is then a
// harmless no-op so that `defer tx.Rollback(ctx)` is the idiom.
//
// Every write is an idempotent redo: applying it again after it took effect
// changes nothing and is not an error, because recovery replays them.
type Tx interface {
	Reader
	// Create adds a profile with no identifiers. Creating one that exists with
	// the same CreatedAt is a no-op; any other existing profile is ErrConflict.
	Create(ctx context.Context, pid ProfileID, createdAt time.Time) error
	// Link links an identifier to an existing profile. Linking it again to the
	// same profile is a no-op; to another profile it is ErrConflict.
	Link(ctx context.Context, pid ProfileID, link Link) error
	// Merge moves every identifier of m.From to into, appends m.From's merge
	// history and then m to into's, and deletes m.From. When from no longer exists it is a no-op.
	Merge(ctx context.Context, into ProfileID, m Merge) error
	// Delete removes the profile and every identifier linked to it. Deleting a
	// profile that does not exist is a no-op.
	Delete(ctx context.Context, pid ProfileID) error
	// Commit makes the staged writes visible at once.
	Commit(ctx context.Context) error
	// Rollback discards the staged writes.
	Rollback(ctx context.Context) error
}
