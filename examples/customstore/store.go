package main

// This file is the adapter: a profile.Store written from scratch, for adapter
// authors to read next to the interface's documentation (package profile,
// store.go). Each contract point is marked "Contract:" where the code keeps it.
//
// The design is copy-on-write under one mutex. The committed state is an
// immutable snapshot: a map from profile id to a record, neither of which is
// ever changed once published. A reader takes the current snapshot under the
// mutex and reads it without any lock. A transaction keeps private copies of
// the records it changes and, at Commit, publishes a new snapshot that shares
// every record it did not touch. Simple and obviously atomic, at the price of
// copying the map of profiles on every commit: fine for an example or a small
// embedded deployment; a database adapter maps Begin and Commit onto a database
// transaction instead.

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// Store is a copy-on-write profile.Store. It is safe for concurrent use. Like
// the in-memory default, it does not detect write conflicts between concurrent
// transactions (the last commit of a profile wins): the Controller never runs
// two writers on one person at once.
type Store struct {
	mu   sync.Mutex // guards snap, the pointer; never held while reading a snapshot
	snap *snapshot
}

// Contract: the compiler checks the method set; the conformance suite checks
// the behaviour.
var _ profile.Store = (*Store)(nil)

// snapshot is one committed state. Immutable once published.
type snapshot struct {
	profiles map[identity.ProfileID]*record
}

// record is one stored profile. Immutable once published: a transaction that
// changes a profile works on a copy (see clone).
type record struct {
	meta   profile.Metadata
	traits map[string]profile.Trait
	events []profile.Event     // sorted by profile.CompareEvents, the order pages walk
	seen   map[string]struct{} // message ids recorded, for de-duplication
}

// clone returns a copy of r that a transaction may change. The values inside
// (trait values, event properties, recipients) are immutable and shared: they
// were copied on the way in, and are copied again on the way out.
func (r *record) clone() *record {
	return &record{
		meta:   r.meta,
		traits: maps.Clone(r.traits),
		events: slices.Clone(r.events),
		seen:   maps.Clone(r.seen),
	}
}

// NewStore returns an empty Store.
func NewStore() *Store {
	return &Store{snap: &snapshot{profiles: map[identity.ProfileID]*record{}}}
}

// current returns the committed snapshot. Contract: "Reads on the Store itself
// see committed state" — a snapshot is only ever published whole, by Commit.
func (s *Store) current() *snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap
}

// Len returns the number of stored profiles.
func (s *Store) Len() int { return len(s.current().profiles) }

// Get implements profile.Reader.
func (s *Store) Get(ctx context.Context, pid identity.ProfileID) (*profile.Profile, error) {
	return getProfile(s.current().profiles[pid], pid)
}

// Metadata implements profile.Reader.
func (s *Store) Metadata(ctx context.Context, pid identity.ProfileID) (profile.Metadata, error) {
	return getMetadata(s.current().profiles[pid], pid)
}

// Events implements profile.Reader.
func (s *Store) Events(ctx context.Context, pid identity.ProfileID, q profile.EventQuery) (profile.EventPage, error) {
	return getEvents(s.current().profiles[pid], pid, q)
}

// IDs implements profile.Store: a keyset page of the committed profile ids.
func (s *Store) IDs(ctx context.Context, after identity.ProfileID, limit int) ([]identity.ProfileID, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: IDs: limit %d, want at least 1", profile.ErrInvalid, limit)
	}
	var ids []identity.ProfileID
	for pid := range s.current().profiles {
		if pid > after { // Contract: strictly after, so the last id of a page starts the next
			ids = append(ids, pid)
		}
	}
	slices.Sort(ids) // Contract: ascending order
	return ids[:min(limit, len(ids))], nil
}

// Begin implements profile.Store.
func (s *Store) Begin(ctx context.Context) (profile.Tx, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &tx{s: s, staged: map[identity.ProfileID]*record{}}, nil
}

// Contract: "Every returned value is the caller's to keep and change". Reads
// copy what they hand out: traits (values included), metadata's recipients,
// and events' properties.
func getProfile(r *record, pid identity.ProfileID) (*profile.Profile, error) {
	if r == nil {
		return nil, notFound(pid)
	}
	return &profile.Profile{ID: pid, Traits: profile.CloneTraits(r.traits), Metadata: r.meta.Clone()}, nil
}

func getMetadata(r *record, pid identity.ProfileID) (profile.Metadata, error) {
	if r == nil {
		return profile.Metadata{}, notFound(pid)
	}
	return r.meta.Clone(), nil
}

// Contract: ErrNotFound for a profile that does not exist, wrapped with %w so
// errors.Is matches it.
func notFound(pid identity.ProfileID) error {
	return fmt.Errorf("%w: profile %s", profile.ErrNotFound, pid)
}

// getEvents pages through r's events with the portable helpers of package
// profile, which every backend shares: Normalize (defaults and validation),
// Matches (time window and names), Cursor.After (keyset position) and
// EncodeCursor (the page's Next). A database adapter turns the same rules into
// a WHERE clause and an ORDER BY timestamp, message_id.
func getEvents(r *record, pid identity.ProfileID, q profile.EventQuery) (profile.EventPage, error) {
	// Contract: "A query that fails EventQuery.Normalize fails with ErrInvalid".
	q, cur, err := q.Normalize()
	if err != nil {
		return profile.EventPage{}, err
	}
	if r == nil {
		return profile.EventPage{}, notFound(pid)
	}
	var page profile.EventPage
	take := func(e *profile.Event) bool {
		if !q.Matches(e) || (q.Cursor != "" && !cur.After(e)) {
			return true // filtered out, or not past the cursor yet: keep walking
		}
		if len(page.Events) == q.Limit {
			// One more matching event exists: this page is not the last.
			// Contract: the cursor is a position (the last event returned), not
			// an index, so events stored between two pages do not shift it.
			page.Next = profile.EncodeCursor(q.Sort, &page.Events[q.Limit-1])
			return false
		}
		page.Events = append(page.Events, e.Clone())
		return true
	}
	if q.Sort == profile.Asc {
		for i := 0; i < len(r.events) && take(&r.events[i]); i++ {
		}
	} else {
		for i := len(r.events) - 1; i >= 0 && take(&r.events[i]); i-- {
		}
	}
	return page, nil
}

// tx is a transaction: private copies of the records it changed (nil for
// deleted ones), published at Commit.
//
// Contract: "Writes staged in it are visible to its own reads and to nobody
// else's until Commit" — reads look in staged first, then at the committed
// snapshot; nobody else ever sees staged.
type tx struct {
	s      *Store
	done   bool
	staged map[identity.ProfileID]*record
}

// check is the first thing every method does. Contract: after Commit or
// Rollback every method fails with ErrTxDone (Rollback excepted).
func (t *tx) check(ctx context.Context) error {
	if t.done {
		return profile.ErrTxDone
	}
	return ctx.Err()
}

// view returns the transaction's view of pid: its own staged record, or the
// committed one. The result must not be changed.
func (t *tx) view(pid identity.ProfileID) *record {
	if r, ok := t.staged[pid]; ok {
		return r
	}
	return t.s.current().profiles[pid]
}

// writable returns a private copy of pid's record to change, staged in the
// transaction (copying the committed one the first time), or nil when the
// profile does not exist.
func (t *tx) writable(pid identity.ProfileID) *record {
	if r, ok := t.staged[pid]; ok {
		return r
	}
	r := t.s.current().profiles[pid]
	if r == nil {
		return nil
	}
	r = r.clone()
	t.staged[pid] = r
	return r
}

func (t *tx) Get(ctx context.Context, pid identity.ProfileID) (*profile.Profile, error) {
	if err := t.check(ctx); err != nil {
		return nil, err
	}
	return getProfile(t.view(pid), pid)
}

func (t *tx) Metadata(ctx context.Context, pid identity.ProfileID) (profile.Metadata, error) {
	if err := t.check(ctx); err != nil {
		return profile.Metadata{}, err
	}
	return getMetadata(t.view(pid), pid)
}

func (t *tx) Events(ctx context.Context, pid identity.ProfileID, q profile.EventQuery) (profile.EventPage, error) {
	if err := t.check(ctx); err != nil {
		return profile.EventPage{}, err
	}
	return getEvents(t.view(pid), pid, q)
}

// Update implements profile.Tx.
func (t *tx) Update(ctx context.Context, pid identity.ProfileID, u profile.Update) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	// Contract: ErrInvalid when u.Validate does (an event must carry the
	// update's message id), checked before anything changes.
	if err := u.Validate(); err != nil {
		return err
	}
	// Contract: a message id recorded before (committed, or earlier in this
	// transaction) is ErrDuplicate and changes nothing. This is what makes a
	// replayed message, or a redo after a crash, harmless.
	if u.MessageID != "" {
		if r := t.view(pid); r != nil {
			if _, dup := r.seen[u.MessageID]; dup {
				return fmt.Errorf("%w: message %s on profile %s", profile.ErrDuplicate, u.MessageID, pid)
			}
		}
	}
	// Contract: "creating it when it does not exist".
	r := t.writable(pid)
	if r == nil {
		r = &record{traits: map[string]profile.Trait{}, seen: map[string]struct{}{}}
		t.staged[pid] = r
	}
	if u.MessageID != "" {
		r.seen[u.MessageID] = struct{}{}
	}
	// Contract: "It copies what it keeps" — the caller may change u's maps,
	// slices and event afterwards. Metadata replaces the old one whole; Set
	// comes before Remove.
	r.meta = u.Metadata.Clone()
	maps.Copy(r.traits, profile.CloneTraits(u.Set))
	for _, k := range u.Remove {
		delete(r.traits, k)
	}
	if u.Event != nil {
		e := u.Event.Clone()
		i, _ := slices.BinarySearchFunc(r.events, &e, func(a profile.Event, b *profile.Event) int { return profile.CompareEvents(&a, b) })
		r.events = slices.Insert(r.events, i, e)
	}
	return nil
}

// Merge implements profile.Tx.
func (t *tx) Merge(ctx context.Context, into, from identity.ProfileID) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	if into == from {
		return fmt.Errorf("%w: cannot merge profile %s into itself", profile.ErrInvalid, into)
	}
	// Contract: "into must exist".
	dst := t.writable(into)
	if dst == nil {
		return notFound(into)
	}
	// Contract: "Merging a profile that no longer exists is a no-op" — the
	// redo of a merge that already happened.
	src := t.view(from)
	if src == nil {
		return nil
	}
	// Contract: from's events move, except those whose message id into has
	// already recorded; then its recorded ids; traits and metadata stay the
	// caller's business.
	for _, e := range src.events {
		if _, dup := dst.seen[e.MessageID]; dup {
			continue
		}
		i, _ := slices.BinarySearchFunc(dst.events, &e, func(a profile.Event, b *profile.Event) int { return profile.CompareEvents(&a, b) })
		dst.events = slices.Insert(dst.events, i, e) // shared, immutable properties: no copy needed
	}
	for id := range src.seen {
		dst.seen[id] = struct{}{}
	}
	t.staged[from] = nil // deleted, with its recorded ids
	return nil
}

// Delete implements profile.Tx. Contract: deleting a profile that does not
// exist is a no-op, so recovery may redo it.
func (t *tx) Delete(ctx context.Context, pid identity.ProfileID) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	t.staged[pid] = nil
	return nil
}

// Commit implements profile.Tx. Contract: "Commit makes the staged writes
// visible at once" — the new snapshot is built aside and published with one
// pointer swap under the mutex.
func (t *tx) Commit(ctx context.Context) error {
	if t.done {
		return profile.ErrTxDone
	}
	t.done = true
	staged := t.staged
	t.staged = nil
	// As database/sql does, a cancelled context rolls back instead.
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(staged) == 0 {
		return nil
	}
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	next := &snapshot{profiles: maps.Clone(t.s.snap.profiles)}
	for pid, r := range staged {
		if r == nil {
			delete(next.profiles, pid)
		} else {
			next.profiles[pid] = r
		}
	}
	t.s.snap = next
	return nil
}

// Rollback implements profile.Tx. Contract: harmless after Commit or another
// Rollback, so that `defer tx.Rollback(ctx)` is the idiom.
func (t *tx) Rollback(ctx context.Context) error {
	t.done = true
	t.staged = nil
	return nil
}

// String describes what the store holds, for the example's output.
func (s *Store) String() string {
	snap := s.current()
	events := 0
	for _, r := range snap.profiles {
		events += len(r.events)
	}
	return fmt.Sprintf("%d profile(s), %d event(s)", len(snap.profiles), events)
}
