package audience

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gdprkit/privacy/identity"
)

// Reader reads the audience engine's state. Every returned value is the caller's
// to keep: an implementation never hands out its own memory.
type Reader interface {
	// Definitions returns the defined audiences in the order they were defined,
	// each with its canonical Query.
	Definitions(ctx context.Context) ([]Definition, error)
	// State returns the profile's state, or an error matching ErrNotFound.
	State(ctx context.Context, pid identity.ProfileID) (*State, error)
	// Members returns the members of the audience in profile id order, starting
	// after the given id ("" for the start), at most limit of them (0: all).
	Members(ctx context.Context, key string, after identity.ProfileID, limit int) ([]identity.ProfileID, error)
	// Due returns up to limit profiles whose NextChange is at or before now,
	// earliest first.
	Due(ctx context.Context, now time.Time, limit int) ([]identity.ProfileID, error)
}

// Store is the audience engine backend: definitions, and per profile its State,
// indexed by membership and by NextChange. It stores and retrieves; parsing and
// evaluation live in Set. Reads on the Store itself see committed state.
type Store interface {
	Reader
	// Begin starts a transaction. Writes staged in it are visible to its own
	// reads and to nobody else's until Commit.
	Begin(ctx context.Context) (Tx, error)
}

// Tx is a transaction on a Store with database/sql manners: after Commit or
// Rollback every method fails with ErrTxDone, except Rollback, which is then a
// harmless no-op. Every write is an idempotent redo.
type Tx interface {
	Reader
	// Define adds a definition. The same definition again is a no-op; another
	// with the same key is ErrConflict.
	Define(ctx context.Context, d Definition) error
	// Put replaces the profile's state (a copy is kept).
	Put(ctx context.Context, pid identity.ProfileID, s *State) error
	// Delete removes the profile's state and memberships; a no-op when absent.
	Delete(ctx context.Context, pid identity.ProfileID) error
	// Commit makes the staged writes visible at once.
	Commit(ctx context.Context) error
	// Rollback discards the staged writes.
	Rollback(ctx context.Context) error
}

// Modifier is implemented by transactions that can change a profile's state with
// one copy instead of the two of State then Put. The Controller uses it when
// present: it changes a state on every collected event some audience counts.
type Modifier interface {
	// Modify calls fn with the profile's state (an empty State when it has none),
	// staged as by Put when fn returns nil. fn may use the transaction, and must
	// not keep st after it returns. fn may change st's counters in place but
	// must not change the elements of st.Audiences: it assigns a new slice
	// instead (as Set.Evaluate does), so that an implementation can share the
	// unchanged memberships with the committed state rather than copy them. An
	// error from fn is returned and stages nothing.
	Modify(ctx context.Context, pid identity.ProfileID, fn func(st *State) error) error
}

// MemStore is the in-memory audience Store. It is safe for concurrent use.
type MemStore struct {
	mu      sync.RWMutex
	defs    []Definition
	states  map[identity.ProfileID]*State
	members map[string]map[identity.ProfileID]struct{}
	due     dueHeap
}

var (
	_ Store    = (*MemStore)(nil)
	_ Modifier = (*memTx)(nil)
)

// NewMemStore returns an empty in-memory audience store.
func NewMemStore() *MemStore {
	return &MemStore{states: map[identity.ProfileID]*State{}, members: map[string]map[identity.ProfileID]struct{}{}}
}

// Definitions implements Reader.
func (s *MemStore) Definitions(ctx context.Context) ([]Definition, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.defs), nil
}

// State implements Reader.
func (s *MemStore) State(ctx context.Context, pid identity.ProfileID) (*State, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st, ok := s.states[pid]
	if !ok {
		return nil, fmt.Errorf("%w: no audience state for profile %s", ErrNotFound, pid)
	}
	return st.Clone(), nil
}

// Members implements Reader. It sorts the audience's members on every call.
func (s *MemStore) Members(ctx context.Context, key string, after identity.ProfileID, limit int) ([]identity.ProfileID, error) {
	s.mu.RLock()
	set := s.members[key]
	out := make([]identity.ProfileID, 0, len(set))
	for pid := range set {
		if pid > after {
			out = append(out, pid)
		}
	}
	s.mu.RUnlock()
	slices.Sort(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Due implements Reader.
func (s *MemStore) Due(ctx context.Context, now time.Time, limit int) ([]identity.ProfileID, error) {
	s.mu.Lock() // drops stale heap entries as it goes
	defer s.mu.Unlock()
	var out []identity.ProfileID
	var keep []dueEntry
	seen := map[identity.ProfileID]bool{}
	for s.due.Len() > 0 && !s.due[0].at.After(now) && (limit <= 0 || len(out) < limit) {
		e := s.due.pop()
		st, ok := s.states[e.pid]
		if !ok || !st.NextChange.Equal(e.at) || seen[e.pid] {
			continue // stale (the state moved on since this entry was pushed) or a repeat
		}
		seen[e.pid] = true
		out = append(out, e.pid)
		keep = append(keep, e) // still due until the caller puts a new state
	}
	for _, e := range keep {
		s.due.push(e)
	}
	return out, nil
}

// Begin implements Store.
func (s *MemStore) Begin(ctx context.Context) (Tx, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tx := &memTx{s: s}
	tx.staged = tx.inline[:0]
	return tx, nil
}

type memTx struct {
	s    *MemStore
	done bool
	defs []Definition
	// staged holds the states written, in order, nil for deleted. Most
	// transactions touch one profile, so it is a slice; index finds entries once
	// there are more than a few.
	staged []stagedState
	index  map[identity.ProfileID]int
	inline [1]stagedState // staged's first backing, saving an allocation
}

type stagedState struct {
	pid identity.ProfileID
	st  *State
}

// lookup returns the state staged for pid, and whether there is one.
func (tx *memTx) lookup(pid identity.ProfileID) (*State, bool) {
	if tx.index != nil {
		i, ok := tx.index[pid]
		if !ok {
			return nil, false
		}
		return tx.staged[i].st, true
	}
	for i := range tx.staged {
		if tx.staged[i].pid == pid {
			return tx.staged[i].st, true
		}
	}
	return nil, false
}

func (tx *memTx) check(ctx context.Context) error {
	if tx.done {
		return ErrTxDone
	}
	return ctx.Err()
}

func (tx *memTx) Definitions(ctx context.Context) ([]Definition, error) {
	if err := tx.check(ctx); err != nil {
		return nil, err
	}
	committed, _ := tx.s.Definitions(ctx)
	return append(committed, tx.defs...), nil
}

func (tx *memTx) State(ctx context.Context, pid identity.ProfileID) (*State, error) {
	if err := tx.check(ctx); err != nil {
		return nil, err
	}
	if st, ok := tx.lookup(pid); ok {
		if st == nil {
			return nil, fmt.Errorf("%w: no audience state for profile %s", ErrNotFound, pid)
		}
		return st.Clone(), nil
	}
	return tx.s.State(ctx, pid)
}

func (tx *memTx) Members(ctx context.Context, key string, after identity.ProfileID, limit int) ([]identity.ProfileID, error) {
	if err := tx.check(ctx); err != nil {
		return nil, err
	}
	committed, err := tx.s.Members(ctx, key, after, 0)
	if err != nil {
		return nil, err
	}
	out := committed[:0]
	for _, pid := range committed {
		if st, staged := tx.lookup(pid); !staged || (st != nil && st.IsMember(key)) {
			out = append(out, pid)
		}
	}
	for _, e := range tx.staged {
		pid, st := e.pid, e.st
		if st != nil && pid > after && st.IsMember(key) && !slices.Contains(committed, pid) {
			out = append(out, pid)
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (tx *memTx) Due(ctx context.Context, now time.Time, limit int) ([]identity.ProfileID, error) {
	if err := tx.check(ctx); err != nil {
		return nil, err
	}
	return tx.s.Due(ctx, now, limit)
}

func (tx *memTx) Define(ctx context.Context, d Definition) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	if d.Condition != nil || d.Query == "" {
		// Only the Query is kept: a Condition would be lost.
		return fmt.Errorf("%w: audience %s: define it in canonical form, with the Query of Set.Definitions", ErrInvalid, d.Key)
	}
	all, _ := tx.Definitions(ctx)
	for _, have := range all {
		if have.Key == d.Key {
			if have.Query == d.Query {
				return nil
			}
			return fmt.Errorf("%w: audience %s is already defined", ErrConflict, d.Key)
		}
	}
	tx.defs = append(tx.defs, Definition{Key: d.Key, Query: d.Query})
	return nil
}

func (tx *memTx) stage(pid identity.ProfileID, st *State) {
	if tx.index != nil {
		if i, ok := tx.index[pid]; ok {
			tx.staged[i].st = st
			return
		}
	} else {
		for i := range tx.staged {
			if tx.staged[i].pid == pid {
				tx.staged[i].st = st
				return
			}
		}
	}
	tx.staged = append(tx.staged, stagedState{pid, st})
	switch {
	case tx.index != nil:
		tx.index[pid] = len(tx.staged) - 1
	case len(tx.staged) > 8:
		tx.index = make(map[identity.ProfileID]int, len(tx.staged))
		for i, e := range tx.staged {
			tx.index[e.pid] = i
		}
	}
}

func (tx *memTx) Put(ctx context.Context, pid identity.ProfileID, st *State) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	if st == nil {
		return fmt.Errorf("%w: nil audience state for profile %s", ErrInvalid, pid)
	}
	c := st.Clone()
	// The membership index and IsMember rely on sorted, distinct audiences.
	slices.Sort(c.Audiences)
	c.Audiences = slices.Compact(c.Audiences)
	tx.stage(pid, c)
	return nil
}

// Modify implements Modifier: the state fn changes is the transaction's own copy,
// staged as it is.
func (tx *memTx) Modify(ctx context.Context, pid identity.ProfileID, fn func(st *State) error) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	st, staged := tx.lookup(pid)
	switch {
	case staged && st != nil:
		st = st.Clone() // fn's error must leave the staged state as it was
	case staged:
		st = &State{} // deleted in this transaction
	default:
		tx.s.mu.RLock()
		committed, ok := tx.s.states[pid]
		if ok {
			st = committed.cloneCounters() // the memberships are shared, as fn's contract allows
		}
		tx.s.mu.RUnlock()
		if !ok {
			st = &State{}
		}
	}
	if err := fn(st); err != nil {
		return err
	}
	if err := tx.check(ctx); err != nil { // fn may have ended the transaction
		return err
	}
	if !sortedDistinct(st.Audiences) { // what the membership index relies on
		slices.Sort(st.Audiences)
		st.Audiences = slices.Compact(st.Audiences)
	}
	tx.stage(pid, st)
	return nil
}

func (tx *memTx) Delete(ctx context.Context, pid identity.ProfileID) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	tx.stage(pid, nil)
	return nil
}

func (tx *memTx) Commit(ctx context.Context) error {
	if tx.done {
		return ErrTxDone
	}
	tx.done = true
	if err := ctx.Err(); err != nil {
		return err
	}
	s := tx.s
	s.mu.Lock()
	defer s.mu.Unlock()
	// Another transaction may have defined the same keys since Define looked.
	for _, d := range tx.defs {
		for _, have := range s.defs {
			if have.Key == d.Key && have.Query != d.Query {
				return fmt.Errorf("%w: audience %s is already defined", ErrConflict, d.Key)
			}
		}
	}
	for _, d := range tx.defs {
		if !slices.ContainsFunc(s.defs, func(have Definition) bool { return have.Key == d.Key }) {
			s.defs = append(s.defs, d)
		}
	}
	for _, e := range tx.staged {
		pid, st := e.pid, e.st
		old, had := s.states[pid]
		var before, after []string
		if had {
			before = old.Audiences
		}
		if st != nil {
			after = st.Audiences
		}
		// Touch only the memberships that changed: usually none.
		for _, ch := range diff(before, after) {
			if !ch.Entered {
				delete(s.members[ch.Key], pid)
				continue
			}
			m := s.members[ch.Key]
			if m == nil {
				m = map[identity.ProfileID]struct{}{}
				s.members[ch.Key] = m
			}
			m[pid] = struct{}{}
		}
		if st == nil {
			delete(s.states, pid)
			continue
		}
		s.states[pid] = st
		if !st.NextChange.IsZero() && (!had || !old.NextChange.Equal(st.NextChange)) {
			s.due.push(dueEntry{at: st.NextChange, pid: pid})
		}
	}
	if s.due.Len() > 64 && s.due.Len() > 4*len(s.states) {
		s.compactDue()
	}
	return nil
}

// compactDue drops stale heap entries, so the heap stays proportional to the
// number of profiles however often states change.
func (s *MemStore) compactDue() {
	live := s.due[:0]
	for _, e := range s.due {
		if st, ok := s.states[e.pid]; ok && st.NextChange.Equal(e.at) {
			live = append(live, e)
		}
	}
	s.due = live
	s.due.init()
}

func (tx *memTx) Rollback(ctx context.Context) error {
	tx.done = true
	tx.defs, tx.staged, tx.index = nil, nil, nil
	return nil
}

type dueEntry struct {
	at  time.Time
	pid identity.ProfileID
}

// dueHeap is a min-heap of profiles by NextChange; entries go stale when a newer
// state is put and are skipped when popped. It is written out rather than
// through container/heap, whose Push boxes every entry: a state's NextChange
// moves on most collected events.
type dueHeap []dueEntry

func (h dueHeap) Len() int { return len(h) }

func (h dueHeap) less(i, j int) bool { return h[i].at.Before(h[j].at) }

func (h *dueHeap) push(e dueEntry) {
	*h = append(*h, e)
	h.up(len(*h) - 1)
}

func (h *dueHeap) pop() dueEntry {
	old := *h
	e := old[0]
	last := len(old) - 1
	old[0] = old[last]
	*h = old[:last]
	h.down(0)
	return e
}

func (h *dueHeap) init() {
	for i := len(*h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h dueHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			return
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
}

func (h dueHeap) down(i int) {
	for {
		least, l, r := i, 2*i+1, 2*i+2
		if l < len(h) && h.less(l, least) {
			least = l
		}
		if r < len(h) && h.less(r, least) {
			least = r
		}
		if least == i {
			return
		}
		h[i], h[least] = h[least], h[i]
		i = least
	}
}

// sortedDistinct reports whether keys are in increasing order without repeats.
func sortedDistinct(keys []string) bool {
	for i := 1; i < len(keys); i++ {
		if keys[i-1] >= keys[i] {
			return false
		}
	}
	return true
}
