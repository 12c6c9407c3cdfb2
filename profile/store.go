package profile

import (
	"context"
	"time"

	"github.com/gdprkit/privacy/identity"
)

// Reader reads profiles. Every returned value is the caller's to keep and change:
// an implementation never hands out its own memory.
type Reader interface {
	// Get returns the profile's traits and metadata (not its ExternalIDs), or an
	// error matching ErrNotFound.
	Get(ctx context.Context, pid identity.ProfileID) (*Profile, error)
	// Metadata returns the profile's metadata alone, or ErrNotFound.
	Metadata(ctx context.Context, pid identity.ProfileID) (Metadata, error)
	// Events returns one page of the profile's events, or ErrNotFound. A query
	// that fails EventQuery.Normalize fails with ErrInvalid.
	Events(ctx context.Context, pid identity.ProfileID, q EventQuery) (EventPage, error)
}

// Store is the profile store backend: traits, metadata and events per profile. It
// stores and retrieves; trait merging, versions and validation live in the
// Controller. Reads on the Store itself see committed state.
type Store interface {
	Reader
	// IDs returns up to limit ids of committed profiles after the given one ("" to
	// start), in ascending order: a keyset page through every stored profile.
	// Profiles created or deleted while paging may or may not appear.
	IDs(ctx context.Context, after identity.ProfileID, limit int) ([]identity.ProfileID, error)
	// Begin starts a transaction. Writes staged in it are visible to its own
	// reads and to nobody else's until Commit.
	Begin(ctx context.Context) (Tx, error)
}

// Tx is a transaction on a Store with database/sql manners: after Commit or
// Rollback every method fails with ErrTxDone, except Rollback, which is then a
// harmless no-op so that `defer tx.Rollback(ctx)` is the idiom.
//
// Every write is an idempotent redo: applying it again after it took effect leaves
// the same state (an Update with a MessageID then reports ErrDuplicate), because
// recovery replays them.
type Tx interface {
	Reader
	// Update applies u to the profile, creating it when it does not exist. It
	// copies what it keeps. It changes nothing and fails with ErrDuplicate when
	// u.MessageID was recorded for the profile before, and with ErrInvalid when
	// u.Validate does.
	Update(ctx context.Context, pid identity.ProfileID, u Update) error
	// Merge moves the events and recorded message ids of from into into (events
	// whose message id into already has are dropped) and deletes from. Traits and
	// metadata are the caller's to merge, with an Update. Merging a profile that
	// no longer exists is a no-op; into must exist.
	Merge(ctx context.Context, into, from identity.ProfileID) error
	// Delete removes the profile with its traits, events and recorded message
	// ids. Deleting a profile that does not exist is a no-op.
	Delete(ctx context.Context, pid identity.ProfileID) error
	// Commit makes the staged writes visible at once.
	Commit(ctx context.Context) error
	// Rollback discards the staged writes.
	Rollback(ctx context.Context) error
}

// TraitPicker is implemented by transactions that can read a few trait values
// of a profile without copying the whole profile. The collection path uses it
// when present: every counted event re-evaluates the audiences, which read only
// the traits they name.
type TraitPicker interface {
	// PickTraits appends to dst, for each of names in order, the value of the
	// profile's trait (nil when the profile lacks it) and returns dst. The values
	// are the caller's to keep. An unknown profile fails with ErrNotFound.
	PickTraits(ctx context.Context, pid identity.ProfileID, names []string, dst []any) ([]any, error)
}

// TraitsTaker is implemented by transactions that can keep an Update's Set
// map itself rather than a copy of it. The collection path uses it when
// present, for the map it builds for each message. A wrapper that embeds
// Tx hides it (and TraitPicker): the Controller then calls Update, which
// copies.
type TraitsTaker interface {
	// UpdateTakingSet is Update, but for u.Set, which the caller gives up:
	// it neither reads nor changes the map once the call returns. The values
	// in it that are maps or slices remain the caller's (the transaction
	// copies them), as does everything else in u.
	UpdateTakingSet(ctx context.Context, pid identity.ProfileID, u Update) error
}

// ShreddingTx is implemented by transactions of stores that keep values
// sealed under a person's data key (package keyring). An erasure that
// destroys the key in the same decision calls DeleteShredded instead of
// Delete: every sealed copy is unreadable from that commit on, so the store
// may leave the sealed rows to a Purger after it, and the time until a
// person is unreadable does not grow with their events.
type ShreddingTx interface {
	// DeleteShredded is Delete for a profile whose data key the same
	// decision destroys: the profile, its traits and every value it keeps in
	// clear go at once; its sealed rows (with what they keep in clear
	// beside the sealed value: a message id, an event's name and times) may
	// stay, unreadable, until Purger.Purge. Reads find the profile no more.
	// A profile id written again before the purge comes back fresh.
	DeleteShredded(ctx context.Context, pid identity.ProfileID) error
}

// Purger is implemented by stores whose ShreddingTx leaves rows to purge.
type Purger interface {
	// Purge deletes the rows DeleteShredded left of pids (of every profile
	// that has some, when pids is empty), in short transactions, and returns
	// how many it deleted. A profile DeleteShredded did not delete is left
	// alone. It is idempotent: a purge cut short is finished by the next.
	Purge(ctx context.Context, pids []identity.ProfileID) (int64, error)
}

// EventPruner is implemented by transactions of stores that can delete
// profiles' old events in place: the Controller's retention
// (ApplyRetention) needs it. A store without it keeps events until the
// profile goes.
type EventPruner interface {
	// PruneEvents deletes the events of each of pids collected before the
	// cutoff that applies to them (Cutoffs.Expired), and returns how many
	// it deleted of each, in the order of pids. The events' message ids stay
	// recorded, so a resend of a pruned message is still a duplicate, and
	// every copy of a pruned event's values goes with it (sealed or clear).
	// A profile that does not exist, or is named twice, has nothing (more)
	// to prune.
	PruneEvents(ctx context.Context, pids []identity.ProfileID, c Cutoffs) ([]int, error)
}

// Cutoffs say which events retention deletes: those collected before
// Before or, for the sources listed in Sources, before their own cutoff.
// A zero time keeps every event it applies to.
type Cutoffs struct {
	Before  time.Time
	Sources map[string]time.Time
}

// For returns the cutoff that applies to events from source.
func (c Cutoffs) For(source string) time.Time {
	if t, ok := c.Sources[source]; ok {
		return t
	}
	return c.Before
}

// Expired reports whether e was collected before the cutoff that applies
// to it. An event's collection time is its ReceivedAt, or its Timestamp
// when it has none (events stored before ReceivedAt was kept): a sender's
// clock or an import of old events does not make an event expire on
// arrival, since storage limitation counts how long it is held.
func (c Cutoffs) Expired(e *Event) bool {
	cut := c.For(e.Source)
	if cut.IsZero() {
		return false
	}
	at := e.ReceivedAt
	if at.IsZero() {
		at = e.Timestamp
	}
	return at.Before(cut)
}

// Zero reports whether c keeps every event.
func (c Cutoffs) Zero() bool {
	if !c.Before.IsZero() {
		return false
	}
	for _, t := range c.Sources {
		if !t.IsZero() {
			return false
		}
	}
	return true
}
