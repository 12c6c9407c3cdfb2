// Package journal is the durable record of privacy requests that makes a right
// atomic across backends and survivable across crashes: the Controller writes a
// request's intent before it touches any backend, its commit decision before it
// commits, and every outcome after. Recovery reads the unfinished entries back
// and completes them: a decided request is redone, an undecided one re-run.
//
// An entry holds what recovery needs of the person (the subjects, the
// identifiers to forward to destinations, the traits of a rectification) only
// until the request finishes; then they are scrubbed and the keyed hashes
// stay. A Controller that encrypts at rest stores them sealed meanwhile
// (Entry.SealPersonal), so the journal holds none of them in clear.
//
// # Errors
//
// ErrNotFound and ErrInvalid, matchable with errors.Is.
package journal

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// Errors of this package.
var (
	ErrNotFound = errors.New("journal: not found")
	ErrInvalid  = errors.New("journal: invalid")
	// ErrConflict: a Put by compare-and-swap found the entry at another
	// Version than the writer read (another writer came first), or gone.
	ErrConflict = errors.New("journal: conflict: the entry changed since it was read")
)

// RequestType is the kind of a privacy request. The values mirror Segment's
// regulation types, plus RECTIFY and ACCESS. The root package's RequestType is
// this type, so the journal and the receipts speak one vocabulary.
type RequestType string

// Request types.
const (
	// SuppressOnly blocks new data and keeps existing data (Art. 21).
	SuppressOnly RequestType = "SUPPRESS_ONLY"
	// Unsuppress ends a suppression; data sent afterwards is kept.
	Unsuppress RequestType = "UNSUPPRESS"
	// SuppressWithDelete suppresses, deletes everything and forwards the
	// deletion to destinations (Art. 17, 19, 21).
	SuppressWithDelete RequestType = "SUPPRESS_WITH_DELETE"
	// SuppressWithDeleteInternal suppresses and deletes internally only.
	SuppressWithDeleteInternal RequestType = "SUPPRESS_WITH_DELETE_INTERNAL"
	// DeleteOnly deletes everything and forwards the deletion (Art. 17, 19).
	DeleteOnly RequestType = "DELETE_ONLY"
	// DeleteInternal deletes internally only.
	DeleteInternal RequestType = "DELETE_INTERNAL"
	// Rectify corrects traits here and downstream (Art. 16, 19).
	Rectify RequestType = "RECTIFY"
	// Access exports everything held about the person (Art. 15, 20).
	Access RequestType = "ACCESS"
	// Retention is not a request one makes (Valid is false): the root
	// package's ApplyRetention journals each run of its retention policy
	// under it (Art. 5(1)(e)), with its cutoffs in Traits until it ends.
	Retention RequestType = "RETENTION"
)

// Valid reports whether t is one of the request types above.
func (t RequestType) Valid() bool {
	switch t {
	case SuppressOnly, Unsuppress, SuppressWithDelete, SuppressWithDeleteInternal, DeleteOnly, DeleteInternal, Rectify, Access:
		return true
	}
	return false
}

// Deletes reports whether a request of this type erases the person.
func (t RequestType) Deletes() bool {
	return t == SuppressWithDelete || t == SuppressWithDeleteInternal || t == DeleteOnly || t == DeleteInternal
}

// Suppresses reports whether a request of this type suppresses the person.
func (t RequestType) Suppresses() bool {
	return t == SuppressOnly || t == SuppressWithDelete || t == SuppressWithDeleteInternal
}

// Forwards reports whether a request of this type reaches destinations.
func (t RequestType) Forwards() bool {
	return t == SuppressWithDelete || t == DeleteOnly || t == Rectify
}

// Status is the state of a request, overall or at one backend or destination.
// The values mirror Segment's. The root package's Status is this type.
type Status string

// Statuses. A request is INITIALIZED, then RUNNING, and ends in one of the
// others; an outcome at a destination may also be NOT_SUPPORTED.
const (
	StatusInitialized    Status = "INITIALIZED"
	StatusRunning        Status = "RUNNING"
	StatusFinished       Status = "FINISHED"
	StatusPartialSuccess Status = "PARTIAL_SUCCESS"
	StatusFailed         Status = "FAILED"
	StatusInvalid        Status = "INVALID"
	StatusNotSupported   Status = "NOT_SUPPORTED"
)

// Ended reports whether a request in this status is over: neither INITIALIZED
// nor RUNNING. Unfinished returns the entries that have not ended.
func (s Status) Ended() bool { return s != StatusInitialized && s != StatusRunning }

// Outcome is the result of a request at one backend or destination.
type Outcome struct {
	Name     string
	Status   Status
	Err      string
	Finished time.Time
}

// Rectification is the profile write a rectification decided.
type Rectification struct {
	Profile identity.ProfileID
	Update  profile.Update
	// At is the time the rectified traits are stamped with: the request's
	// receipt, or just after the newest value it corrects. Last updated wins
	// orders every other write of those traits against it, a redo included.
	At time.Time
	// Traits names the traits the rectification sets or removes, and Held
	// those of them the profile held when it was decided. Names, never
	// values: Scrub keeps them, so that an older request recovered later can
	// leave what this one corrected alone.
	Traits, Held []string
}

// AuditNote is an audit record a request owes: its state change is
// journaled, and its record not yet appended to the audit log. The Controller
// appends what a request owes before it records the request's end, so a
// request the journal shows ended has every one of its audit records.
type AuditNote struct {
	At     time.Time
	Action string
	Status Status
	Detail string
	// Note numbers the record among the request's (audit.Record.Note): the
	// audit log holds it once, whichever holder appends it.
	Note uint64
}

// Deletion is a person to delete at the destinations: every identifier they were
// known by, in clear until every destination has acknowledged.
type Deletion struct {
	Profile identity.ProfileID
	IDs     []identity.ID
}

// Decision is what a request decided to change: enough to redo the commit after
// a crash without resolving the subjects again.
type Decision struct {
	// Delete lists profiles to delete from the graph, the store and the audiences.
	Delete []identity.ProfileID
	// Suppress and Unsuppress list keyed hashes of identifiers; SuppressProfiles
	// and UnsuppressProfiles list profiles whose data is kept.
	Suppress, Unsuppress                 []identity.Hash
	SuppressProfiles, UnsuppressProfiles []identity.ProfileID
	// Rectify lists the profile writes of a rectification.
	Rectify []Rectification
	// Forward lists the deletions to send to destinations.
	Forward []Deletion
}

// Entry is one request as the journal keeps it.
type Entry struct {
	ID     string
	Type   RequestType
	Status Status
	// Reason says why a request is INVALID or FAILED.
	Reason string
	// Subjects are the identifiers the request named: in clear until the request
	// finishes, then removed. SubjectHashes stay.
	Subjects      []identity.ID
	SubjectHashes []identity.Hash
	// Traits are a rectification's new values (nil removes), until finished.
	Traits                  map[string]any
	Received, Due, Finished time.Time
	// ExtensionReason is why Due was extended (Art. 12(3)).
	ExtensionReason string
	// Decided is set once Decision is recorded: from then on the request always
	// completes.
	Decided  bool
	Decision Decision
	// Committed is when every backend first committed the decision; it is
	// never reset (a redo whose commit fails leaves it): Recover then redoes
	// the recorded decision, and decides nothing anew on the person as they
	// are by then.
	Committed time.Time `json:",omitzero"`
	// Backends and Destinations hold one outcome each.
	Backends, Destinations []Outcome
	// ProfileVersion is the profile's version after a rectification.
	ProfileVersion uint64
	// InactiveBefore, on an erasure a retention run made, is its
	// condition: only the profiles last written before it are erased, as
	// read under the person's locks when the erasure is decided.
	InactiveBefore time.Time `json:",omitzero"`

	// Version counts the entry's writes; the journal sets it. A Put of an
	// entry read from the journal (Version above 0) replaces the stored one
	// only if that one still has this Version: a writer working from a stale
	// copy fails with ErrConflict instead of undoing a newer state.
	Version uint64
	// Owner names the Controller instance that holds the request's claim,
	// Claim counts the claims taken on it (a fencing token: a takeover moves
	// it on, so the former holder's writes no longer match), and LeaseUntil
	// is when the claim lapses unless renewed. Only an expired claim, or one
	// of the same instance (a restart), is taken over.
	Owner      string
	Claim      uint64
	LeaseUntil time.Time
	// AuditOwed lists the audit records the request owes, oldest first.
	AuditOwed []AuditNote
	// AuditNotes counts the notes the request has owed: the next is numbered
	// one more.
	AuditNotes uint64
	// Sealed, when set, holds what Scrub clears, sealed with SealPersonal
	// (a Controller that encrypts at rest does so before every Put, and
	// opens it after every read): those fields are then empty as stored.
	Sealed []byte `json:",omitempty"`
}

// personal is what an entry keeps of a person: what Scrub clears.
type personal struct {
	Subjects []identity.ID   `json:",omitempty"`
	Traits   map[string]any  `json:",omitempty"`
	Forward  [][]identity.ID `json:",omitempty"` // by Decision.Forward's index
	Rectify  []rectified     `json:",omitempty"` // by Decision.Rectify's index
}

// rectified is what Scrub clears of a Rectification.
type rectified struct {
	Set                           map[string]profile.Trait `json:",omitempty"`
	Remove                        []string                 `json:",omitempty"`
	Event                         *profile.Event           `json:",omitempty"`
	FirstMessageID, LastMessageID string                   `json:",omitempty"`
	// The metadata's consent (categories, message ids) and account links
	// (group ids) are the person's too. Pointers: an entry sealed before
	// they were sealed lacks them, and opening it keeps its own.
	Consent  *profile.Consent       `json:",omitempty"`
	Accounts *[]profile.AccountLink `json:",omitempty"`
}

// exactNumbers makes the values p holds canonical after
// profile.UnmarshalNumbers.
func (p *personal) exactNumbers() error {
	if err := profile.ExactMaps(&p.Traits); err != nil {
		return err
	}
	for i := range p.Rectify {
		if err := exactUpdate(p.Rectify[i].Set, p.Rectify[i].Event); err != nil {
			return err
		}
	}
	return nil
}

// exactUpdate makes the values of a rectification's traits and event
// canonical after profile.UnmarshalNumbers.
func exactUpdate(set map[string]profile.Trait, ev *profile.Event) error {
	for k, t := range set {
		v, err := profile.ExactNumbers(t.Value)
		if err != nil {
			return err
		}
		t.Value = v
		set[k] = t
	}
	if ev != nil {
		return profile.ExactMaps(&ev.Properties, &ev.Context)
	}
	return nil
}

// UnmarshalEntry decodes an entry encoded with encoding/json, keeping every
// value's numbers exact (profile.DecodeValue): a rectification's traits do
// not come back rounded for its redo.
func UnmarshalEntry(b []byte, e *Entry) error {
	numbers, err := profile.UnmarshalNumbers(b, e)
	if err != nil || !numbers {
		return err
	}
	if err := profile.ExactMaps(&e.Traits); err != nil {
		return err
	}
	for i := range e.Decision.Rectify {
		u := &e.Decision.Rectify[i].Update
		if err := exactUpdate(u.Set, u.Event); err != nil {
			return err
		}
	}
	return nil
}

// SealPersonal moves what Scrub clears into Sealed, as seal returns it (an
// encryption of the JSON it is given); the fields are then as Scrub leaves
// them. An entry with nothing to seal keeps Sealed nil.
func (e *Entry) SealPersonal(seal func([]byte) []byte) error {
	var p personal
	p.Subjects, p.Traits = e.Subjects, e.Traits
	some := len(p.Subjects) > 0 || len(p.Traits) > 0
	for _, f := range e.Decision.Forward {
		p.Forward = append(p.Forward, f.IDs)
		some = some || len(f.IDs) > 0
	}
	for _, r := range e.Decision.Rectify {
		u := &r.Update
		m := &u.Metadata
		r := rectified{Set: u.Set, Remove: u.Remove, Event: u.Event, FirstMessageID: m.FirstMessageID, LastMessageID: m.LastMessageID}
		if m.Consent.Collected() {
			r.Consent = &m.Consent
		}
		if len(m.Accounts) > 0 {
			r.Accounts = &m.Accounts
		}
		p.Rectify = append(p.Rectify, r)
		some = some || len(u.Set) > 0 || len(u.Remove) > 0 || u.Event != nil || m.FirstMessageID != "" || m.LastMessageID != "" ||
			m.Consent.Collected() || len(m.Accounts) > 0
	}
	e.Sealed = nil
	if !some {
		return nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("journal: request %s: sealing its personal data: %w", e.ID, err)
	}
	e.Scrub()
	e.Sealed = seal(b)
	clear(b)
	return nil
}

// OpenPersonal puts back what SealPersonal sealed, opened by open, and
// empties Sealed.
func (e *Entry) OpenPersonal(open func([]byte) ([]byte, error)) error {
	if e.Sealed == nil {
		return nil
	}
	b, err := open(e.Sealed)
	if err != nil {
		return fmt.Errorf("journal: request %s: opening its personal data: %w", e.ID, err)
	}
	var p personal
	numbers, err := profile.UnmarshalNumbers(b, &p)
	clear(b)
	if err == nil && numbers {
		err = p.exactNumbers()
	}
	if err != nil || len(p.Forward) > len(e.Decision.Forward) || len(p.Rectify) > len(e.Decision.Rectify) {
		return fmt.Errorf("journal: request %s: its sealed personal data does not fit the entry", e.ID)
	}
	e.Subjects, e.Traits = p.Subjects, p.Traits
	for i, ids := range p.Forward {
		e.Decision.Forward[i].IDs = ids
	}
	for i, r := range p.Rectify {
		u := &e.Decision.Rectify[i].Update
		u.Set, u.Remove, u.Event = r.Set, r.Remove, r.Event
		u.Metadata.FirstMessageID, u.Metadata.LastMessageID = r.FirstMessageID, r.LastMessageID
		if r.Consent != nil {
			u.Metadata.Consent = *r.Consent
		}
		if r.Accounts != nil {
			u.Metadata.Accounts = *r.Accounts
		}
	}
	e.Sealed = nil
	return nil
}

// Clone returns a deep copy of e.
func (e *Entry) Clone() *Entry {
	c := *e
	c.Subjects = slices.Clone(e.Subjects)
	c.SubjectHashes = slices.Clone(e.SubjectHashes)
	if e.Traits != nil {
		c.Traits = make(map[string]any, len(e.Traits))
		for k, v := range e.Traits {
			c.Traits[k] = profile.CloneValue(v)
		}
	}
	c.Backends = slices.Clone(e.Backends)
	c.AuditOwed = slices.Clone(e.AuditOwed)
	c.Destinations = slices.Clone(e.Destinations)
	d := &c.Decision
	d.Delete = slices.Clone(d.Delete)
	d.Suppress, d.Unsuppress = slices.Clone(d.Suppress), slices.Clone(d.Unsuppress)
	d.SuppressProfiles, d.UnsuppressProfiles = slices.Clone(d.SuppressProfiles), slices.Clone(d.UnsuppressProfiles)
	d.Rectify = slices.Clone(d.Rectify)
	for i := range d.Rectify {
		d.Rectify[i].Traits, d.Rectify[i].Held = slices.Clone(d.Rectify[i].Traits), slices.Clone(d.Rectify[i].Held)
		u := &d.Rectify[i].Update
		u.Metadata = u.Metadata.Clone()
		u.Set = profile.CloneTraits(u.Set)
		u.Remove = slices.Clone(u.Remove)
		if u.Event != nil {
			ev := u.Event.Clone()
			u.Event = &ev
		}
	}
	d.Forward = slices.Clone(d.Forward)
	for i := range d.Forward {
		d.Forward[i].IDs = slices.Clone(d.Forward[i].IDs)
	}
	c.Sealed = slices.Clone(e.Sealed)
	return &c
}

// Scrub removes the clear personal data a finished request no longer needs:
// its subjects, traits and forwarded identifiers, and what its rectifications
// wrote, the message ids of the profile's metadata included (the person's
// own messages', which outlive nothing else after an erasure).
func (e *Entry) Scrub() {
	e.Subjects, e.Traits = nil, nil
	for i := range e.Decision.Forward {
		e.Decision.Forward[i].IDs = nil
	}
	for i := range e.Decision.Rectify {
		u := &e.Decision.Rectify[i].Update
		u.Set, u.Remove, u.Event = nil, nil, nil
		u.Metadata.FirstMessageID, u.Metadata.LastMessageID = "", ""
		u.Metadata.Consent, u.Metadata.Accounts = profile.Consent{}, nil
	}
}

// Filter selects entries for List.
type Filter struct {
	Types    []RequestType
	Statuses []Status
	// Subjects, when set, selects the entries naming any of these keyed hashes
	// among their SubjectHashes: one person's requests.
	Subjects []identity.Hash
	// Limit is the page size (default 50, at most 1000).
	Limit int
	// Cursor continues from the page that returned it as Next.
	Cursor string
}

// Page is one page of entries, newest first.
type Page struct {
	Entries []*Entry
	Next    string
}

// Journal is the journal backend. Put is durable when it returns.
type Journal interface {
	// Put stores a copy of e and sets e.Version to the stored entry's new
	// Version. With e.Version 0 it stores the entry whatever is stored under
	// its ID (a new request); otherwise it replaces only an entry whose
	// stored Version is e.Version (compare-and-swap), and fails with an error
	// matching ErrConflict, storing nothing, when the stored one has another
	// Version or none is stored.
	Put(ctx context.Context, e *Entry) error
	// Get returns the entry, or an error matching ErrNotFound.
	Get(ctx context.Context, id string) (*Entry, error)
	// List returns entries matching the filter, newest first.
	List(ctx context.Context, f Filter) (Page, error)
	// Unfinished returns the entries whose status is INITIALIZED or RUNNING,
	// oldest first.
	Unfinished(ctx context.Context) ([]*Entry, error)
}

// MemJournal is the in-memory Journal. It is safe for concurrent use.
type MemJournal struct {
	mu      sync.RWMutex
	entries map[string]*Entry
	order   []string // ids by (Received, ID), oldest first
}

var _ Journal = (*MemJournal)(nil)

// NewMemJournal returns an empty in-memory journal.
func NewMemJournal() *MemJournal { return &MemJournal{entries: map[string]*Entry{}} }

// Put implements Journal.
func (j *MemJournal) Put(ctx context.Context, e *Entry) error {
	if e.ID == "" {
		return fmt.Errorf("%w: entry without an ID", ErrInvalid)
	}
	c := e.Clone()
	j.mu.Lock()
	defer j.mu.Unlock()
	var version uint64
	if old, ok := j.entries[e.ID]; ok {
		version = old.Version
	}
	if e.Version != 0 && e.Version != version {
		return fmt.Errorf("%w: request %s is at version %d, not %d", ErrConflict, e.ID, version, e.Version)
	}
	c.Version = version + 1
	defer func() { e.Version = c.Version }()
	if old, ok := j.entries[e.ID]; ok && !old.Received.Equal(c.Received) {
		// The replacement moves in the order: take the old position out.
		j.order = slices.DeleteFunc(j.order, func(id string) bool { return id == e.ID })
		delete(j.entries, e.ID)
	}
	if _, ok := j.entries[e.ID]; !ok {
		i := sort.Search(len(j.order), func(i int) bool { return !j.less(j.order[i], c) })
		j.order = slices.Insert(j.order, i, e.ID)
	}
	j.entries[e.ID] = c
	return nil
}

func (j *MemJournal) less(id string, e *Entry) bool {
	o := j.entries[id]
	if !o.Received.Equal(e.Received) {
		return o.Received.Before(e.Received)
	}
	return o.ID < e.ID
}

// Get implements Journal.
func (j *MemJournal) Get(ctx context.Context, id string) (*Entry, error) {
	j.mu.RLock()
	defer j.mu.RUnlock()
	e, ok := j.entries[id]
	if !ok {
		return nil, fmt.Errorf("%w: request %q", ErrNotFound, id)
	}
	return e.Clone(), nil
}

// List implements Journal. The cursor is the position of the last entry returned.
func (j *MemJournal) List(ctx context.Context, f Filter) (Page, error) {
	limit := f.Limit
	switch {
	case limit == 0:
		limit = 50
	case limit < 0 || limit > 1000:
		return Page{}, fmt.Errorf("%w: limit %d is outside 1..1000", ErrInvalid, limit)
	}
	start := -1
	if f.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(f.Cursor)
		if err != nil {
			return Page{}, fmt.Errorf("%w: malformed cursor %q", ErrInvalid, f.Cursor)
		}
		start = -2
		// One read lock from finding the cursor to reading the page, so a
		// concurrent Put cannot shift the positions in between.
		j.mu.RLock()
		defer j.mu.RUnlock()
		for i, id := range j.order {
			if id == string(b) {
				start = i
			}
		}
		if start == -2 {
			return Page{}, fmt.Errorf("%w: cursor %q names no request", ErrInvalid, f.Cursor)
		}
	} else {
		j.mu.RLock()
		defer j.mu.RUnlock()
	}
	if start == -1 {
		start = len(j.order)
	}
	var page Page
	for i := start - 1; i >= 0; i-- {
		e := j.entries[j.order[i]]
		if (len(f.Types) > 0 && !slices.Contains(f.Types, e.Type)) || (len(f.Statuses) > 0 && !slices.Contains(f.Statuses, e.Status)) {
			continue
		}
		if len(f.Subjects) > 0 && !slices.ContainsFunc(e.SubjectHashes, func(h identity.Hash) bool { return slices.Contains(f.Subjects, h) }) {
			continue
		}
		if len(page.Entries) == limit {
			page.Next = base64.RawURLEncoding.EncodeToString([]byte(page.Entries[limit-1].ID))
			break
		}
		page.Entries = append(page.Entries, e.Clone())
	}
	return page, nil
}

// Unfinished implements Journal.
func (j *MemJournal) Unfinished(ctx context.Context) ([]*Entry, error) {
	j.mu.RLock()
	defer j.mu.RUnlock()
	var out []*Entry
	for _, id := range j.order {
		if e := j.entries[id]; !e.Status.Ended() {
			out = append(out, e.Clone())
		}
	}
	return out, nil
}
