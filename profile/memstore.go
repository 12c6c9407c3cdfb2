package profile

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/keyring"
)

// MemStore is the in-memory Store. It is safe for concurrent use. A transaction
// records its writes as a list of operations and applies them under one lock at
// Commit, so a commit is atomic to readers. It does not detect write conflicts
// between concurrent transactions; the Controller never runs two writers on one
// profile at once.
type MemStore struct {
	mu       sync.RWMutex
	profiles map[identity.ProfileID]*memProfile

	// sorted is a snapshot of the profile ids for IDs, rebuilt when a scan starts
	// after profiles were created or deleted (dirty).
	idxMu  sync.Mutex
	sorted []identity.ProfileID
	dirty  atomic.Bool

	sealed bool // NewSealedMemStore
}

var (
	_ Store       = (*MemStore)(nil)
	_ TraitPicker = (*memTx)(nil)
	_ EventPruner = (*memTx)(nil)
)

// memProfile is one stored profile. Events are kept sorted by CompareEvents.
type memProfile struct {
	meta   Metadata
	traits map[string]Trait
	events []Event
	seen   map[string]struct{} // recorded message ids

	// In a sealed store: the profile's data key, which sealed its trait
	// values (sealedValue) and its events' properties, kept in props by
	// message id (the events hold none).
	key   *keyring.DataKey
	props map[string][]byte
	// ctxs holds each event's context as JSON, sealed in a sealed store,
	// at the event's index (the events hold none; nil: no context): a
	// message's context, a kilobyte of nested maps, costs one copy of
	// bytes rather than a copy of every map, and takes a third of the
	// memory. A slice beside events rather than a map by message id: an
	// append rather than a map that grows with every event.
	ctxs [][]byte
}

func (p *memProfile) clone() *memProfile {
	c := &memProfile{meta: p.meta, traits: CloneTraits(p.traits), seen: make(map[string]struct{}, len(p.seen)), key: p.key}
	if p.props != nil {
		c.props = maps.Clone(p.props) // the sealed bytes are never changed in place
	}
	c.ctxs = slices.Clone(p.ctxs)
	c.events = make([]Event, len(p.events))
	for i := range p.events {
		c.events[i] = p.events[i].Clone()
	}
	for id := range p.seen {
		c.seen[id] = struct{}{}
	}
	return c
}

// insert adds e, with its context's JSON (nil: none), in order; the
// common case, a newer event, is an append.
func (p *memProfile) insert(e Event, ctx []byte) {
	if ctx != nil && p.ctxs == nil {
		p.ctxs = make([][]byte, len(p.events), cap(p.events))
	}
	n := len(p.events)
	if n == 0 || CompareEvents(&p.events[n-1], &e) < 0 {
		p.events = append(p.events, e)
		if p.ctxs != nil {
			p.ctxs = append(p.ctxs, ctx)
		}
		return
	}
	// A search by hand: through slices.BinarySearchFunc's function value,
	// &e escaped and every event inserted cost an allocation.
	i, j := 0, n
	for i < j {
		h := int(uint(i+j) >> 1)
		if CompareEvents(&p.events[h], &e) < 0 {
			i = h + 1
		} else {
			j = h
		}
	}
	p.events = slices.Insert(p.events, i, e)
	if p.ctxs != nil {
		p.ctxs = slices.Insert(p.ctxs, i, ctx)
	}
}

// contextAt returns the JSON of the context of the event at i, nil when
// it has none.
func (p *memProfile) contextAt(i int) []byte {
	if p.ctxs == nil {
		return nil
	}
	return p.ctxs[i]
}

// NewMemStore returns an empty in-memory profile store. It keeps values in
// clear: see NewSealedMemStore.
func NewMemStore() *MemStore {
	return &MemStore{profiles: make(map[identity.ProfileID]*memProfile)}
}

// NewSealedMemStore returns an empty in-memory profile store that keeps trait
// values and event properties sealed (AES-256-GCM) under a data key per
// profile, made with the profile and dropped with it: what it holds between a
// write and a read is ciphertext bound to its profile and field, and an
// erased person's values left in memory not yet reused cannot be opened once
// the key is gone. The keys are in the same memory, so it does not protect
// against someone who can read the whole process; that is why the in-memory
// default (NewMemStore) keeps values in clear, while sqlstore, whose rows
// outlive the process in backups, seals by default. Reads open
// transparently, and a merge re-seals the merged events under the kept
// profile's key. Values come back as JSON decodes them (numbers as float64),
// which is the form the Controller stores.
func NewSealedMemStore() *MemStore {
	s := NewMemStore()
	s.sealed = true
	return s
}

// Len returns the number of profiles stored.
func (s *MemStore) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.profiles)
}

// Get implements Reader.
func (s *MemStore) Get(ctx context.Context, pid identity.ProfileID) (*Profile, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return getProfile(s.profiles, pid)
}

// Metadata implements Reader.
func (s *MemStore) Metadata(ctx context.Context, pid identity.ProfileID) (Metadata, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return getMetadata(s.profiles, pid)
}

// Events implements Reader.
func (s *MemStore) Events(ctx context.Context, pid identity.ProfileID, q EventQuery) (EventPage, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return getEvents(s.profiles, pid, q)
}

// IDs implements Store. A scan from the start re-sorts the ids when profiles were
// created or deleted since the last one; later pages read that snapshot.
func (s *MemStore) IDs(ctx context.Context, after identity.ProfileID, limit int) ([]identity.ProfileID, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: IDs: limit %d, want at least 1", ErrInvalid, limit)
	}
	s.idxMu.Lock()
	defer s.idxMu.Unlock()
	if s.sorted == nil || (after == "" && s.dirty.Load()) {
		s.dirty.Store(false)
		s.mu.RLock()
		ids := make([]identity.ProfileID, 0, len(s.profiles))
		for pid := range s.profiles {
			ids = append(ids, pid)
		}
		s.mu.RUnlock()
		slices.Sort(ids)
		s.sorted = ids
	}
	i, found := slices.BinarySearch(s.sorted, after)
	if found {
		i++
	}
	return slices.Clone(s.sorted[i:min(i+limit, len(s.sorted))]), nil
}

// Begin implements Store.
func (s *MemStore) Begin(ctx context.Context) (Tx, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tx := &memTx{s: s, first: firstOps.Get().(*[1]memOp)}
	tx.ops = tx.first[:0]
	return tx, nil
}

func notFound(pid identity.ProfileID) error { return fmt.Errorf("%w: profile %s", ErrNotFound, pid) }

func getProfile(m map[identity.ProfileID]*memProfile, pid identity.ProfileID) (*Profile, error) {
	p, ok := m[pid]
	if !ok {
		return nil, notFound(pid)
	}
	traits, err := p.cloneTraits()
	if err != nil {
		return nil, err
	}
	return &Profile{ID: pid, Traits: traits, Metadata: p.meta.Clone()}, nil
}

func getMetadata(m map[identity.ProfileID]*memProfile, pid identity.ProfileID) (Metadata, error) {
	p, ok := m[pid]
	if !ok {
		return Metadata{}, notFound(pid)
	}
	return p.meta.Clone(), nil
}

func getEvents(m map[identity.ProfileID]*memProfile, pid identity.ProfileID, q EventQuery) (EventPage, error) {
	q, cur, err := q.Normalize()
	if err != nil {
		return EventPage{}, err
	}
	p, ok := m[pid]
	if !ok {
		return EventPage{}, notFound(pid)
	}
	evs := p.events
	// Narrow to the time window and the cursor by binary search, then filter names.
	lo, hi := 0, len(evs)
	if !q.Start.IsZero() {
		lo, _ = slices.BinarySearchFunc(evs, q.Start, func(e Event, t time.Time) int { return e.Timestamp.Compare(t) })
	}
	if !q.End.IsZero() {
		hi, _ = slices.BinarySearchFunc(evs, q.End, func(e Event, t time.Time) int { return e.Timestamp.Compare(t) })
	}
	if q.Cursor != "" {
		at := &Event{Timestamp: cur.Timestamp, MessageID: cur.MessageID}
		i, found := slices.BinarySearchFunc(evs, at, func(e Event, b *Event) int { return CompareEvents(&e, b) })
		if q.Sort == Asc {
			if found {
				i++
			}
			lo = max(lo, i)
		} else {
			hi = min(hi, i)
		}
	}
	var page EventPage
	var failed error
	take := func(i int) bool {
		e := &evs[i]
		if !q.Matches(e) {
			return true
		}
		if len(page.Events) == q.Limit {
			page.Next = EncodeCursor(q.Sort, &page.Events[q.Limit-1])
			return false
		}
		c, err := p.cloneEvent(e, p.contextAt(i))
		if err != nil {
			failed = err
			return false
		}
		page.Events = append(page.Events, c)
		return true
	}
	if q.Sort == Asc {
		for i := lo; i < hi && take(i); i++ {
		}
	} else {
		for i := hi - 1; i >= lo && take(i); i-- {
		}
	}
	if failed != nil {
		return EventPage{}, failed
	}
	return page, nil
}

type opKind uint8

const (
	opUpdate opKind = iota
	opMerge
	opDelete
	opPrune
)

// memOp is one staged write. apply is the only code that changes profiles, used
// both at Commit and to show a transaction its own writes.
type memOp struct {
	kind     opKind
	pid      identity.ProfileID
	from     identity.ProfileID
	u        Update // with Event nil: the event is held in ev
	ev       Event
	hasEvent bool

	// In a sealed store: the key u's values and the event's properties
	// (props) are sealed under, and whether it was made for this write
	// (ownKey: the profile did not exist) or is an existing profile's.
	key    *keyring.DataKey
	ownKey bool
	props  []byte
	ctx    []byte

	cut Cutoffs // opPrune's
}

// apply applies op to the profiles in m. final says it is the op's last
// application (Commit's, onto the store): a profile it makes may then keep
// the op's trait map, which the op owns (cloned when staged), rather than a
// copy of it. A transaction's view applies its ops again and again, to
// copies, so there they lend nothing.
func (op *memOp) apply(m map[identity.ProfileID]*memProfile, final bool) {
	switch op.kind {
	case opUpdate:
		p := m[op.pid]
		if p == nil {
			if op.key != nil && !op.ownKey {
				// The key was the profile's, deleted since by another
				// transaction: the profile made again gets a key of its
				// own, or the deleted one's sealed values would open
				// with it.
				op.rekey(newKey(op.pid))
				op.ownKey = true
			}
			p = &memProfile{seen: map[string]struct{}{}, key: op.key}
			if op.key != nil {
				p.props = map[string][]byte{}
			}
			m[op.pid] = p
		}
		if op.u.MessageID != "" {
			if _, dup := p.seen[op.u.MessageID]; dup {
				return
			}
			p.seen[op.u.MessageID] = struct{}{}
		}
		if op.key != nil && op.key != p.key {
			op.rekey(p.key)
			op.ownKey = false
		}
		prof := Profile{Traits: p.traits}
		if final && prof.Traits == nil && len(op.u.Set) > 0 {
			prof.Traits, op.u.Set = op.u.Set, nil
		}
		op.u.apply(&prof)
		p.traits, p.meta = prof.Traits, prof.Metadata
		if op.hasEvent {
			p.insert(op.ev, op.ctx)
			if op.props != nil {
				p.props[op.ev.MessageID] = op.props
			}
		}
	case opMerge:
		from, into := m[op.from], m[op.pid]
		if from == nil || into == nil {
			return
		}
		for i, e := range from.events {
			if _, dup := into.seen[e.MessageID]; !dup || e.MessageID == "" {
				raw := from.contextAt(i)
				if raw != nil && from.key != nil {
					raw = reseal(from.key, into.key, sealedContextField(e.MessageID), raw)
				}
				into.insert(e, raw)
				if sealed, ok := from.props[e.MessageID]; ok {
					into.props[e.MessageID] = reseal(from.key, into.key, sealedEventField(e.MessageID), sealed)
				}
			}
		}
		for id := range from.seen {
			into.seen[id] = struct{}{}
		}
		delete(m, op.from)
	case opDelete:
		delete(m, op.pid)
	case opPrune:
		if p := m[op.pid]; p != nil {
			p.prune(op.cut)
		}
	}
}

// prune drops the events op.cut says have expired, with their sealed
// properties and contexts; their message ids stay seen. A new slice: a
// reader's copy may share the old one.
func (p *memProfile) prune(c Cutoffs) int {
	kept := make([]Event, 0, len(p.events))
	var keptCtxs [][]byte
	if p.ctxs != nil {
		keptCtxs = make([][]byte, 0, len(p.ctxs))
	}
	var gone []string
	for i := range p.events {
		if c.Expired(&p.events[i]) {
			gone = append(gone, p.events[i].MessageID)
			continue
		}
		kept = append(kept, p.events[i])
		if p.ctxs != nil {
			keptCtxs = append(keptCtxs, p.ctxs[i])
		}
	}
	if len(gone) == 0 {
		return 0
	}
	p.events, p.ctxs = kept, keptCtxs
	for _, id := range gone {
		if slices.ContainsFunc(kept, func(e Event) bool { return e.MessageID == id }) {
			continue // an event without a message id shares the empty one
		}
		delete(p.props, id)
	}
	return len(gone)
}

type memTx struct {
	s    *MemStore
	done bool
	ops  []memOp
	// first is the room for the first op, which most transactions (one
	// collected message) are: an op is large (a whole Update and Event),
	// so the room is reused from one transaction to the next (firstOps)
	// rather than allocated with each. The transaction gives it back, cleared,
	// when it ends; a call after that fails with ErrTxDone before it looks
	// at ops.
	first *[1]memOp
}

var firstOps = sync.Pool{New: func() any { return new([1]memOp) }}

// end ends the transaction: its ops are forgotten and the room for the
// first given back.
func (tx *memTx) end() {
	tx.done, tx.ops = true, nil
	if tx.first != nil {
		*tx.first = [1]memOp{}
		firstOps.Put(tx.first)
		tx.first = nil
	}
}

func (tx *memTx) check(ctx context.Context) error {
	if tx.done {
		return ErrTxDone
	}
	return ctx.Err()
}

// touches reports whether a staged write concerns pid.
func (tx *memTx) touches(pid identity.ProfileID) bool {
	for i := range tx.ops {
		if tx.ops[i].pid == pid || tx.ops[i].from == pid {
			return true
		}
	}
	return false
}

// view returns the profiles as this transaction sees them. Without staged writes
// on pid it is the committed map and the store stays read-locked until the caller
// calls tx.release(locked); otherwise it is a private copy of the touched profiles
// with the staged writes applied. Reading one's own writes is rare (the Controller
// reads before it writes), so the copy is affordable.
func (tx *memTx) view(pid identity.ProfileID) (m map[identity.ProfileID]*memProfile, locked bool) {
	tx.s.mu.RLock()
	if !tx.touches(pid) {
		return tx.s.profiles, true
	}
	m = make(map[identity.ProfileID]*memProfile)
	for i := range tx.ops {
		for _, id := range [2]identity.ProfileID{tx.ops[i].pid, tx.ops[i].from} {
			if p, ok := tx.s.profiles[id]; ok && m[id] == nil {
				m[id] = p.clone()
			}
		}
	}
	tx.s.mu.RUnlock()
	for i := range tx.ops {
		tx.ops[i].apply(m, false)
	}
	return m, false
}

func (tx *memTx) release(locked bool) {
	if locked {
		tx.s.mu.RUnlock()
	}
}

func (tx *memTx) Get(ctx context.Context, pid identity.ProfileID) (*Profile, error) {
	if err := tx.check(ctx); err != nil {
		return nil, err
	}
	m, locked := tx.view(pid)
	defer tx.release(locked)
	return getProfile(m, pid)
}

// PickTraits implements TraitPicker.
func (tx *memTx) PickTraits(ctx context.Context, pid identity.ProfileID, names []string, dst []any) ([]any, error) {
	if err := tx.check(ctx); err != nil {
		return dst, err
	}
	m, locked := tx.view(pid)
	defer tx.release(locked)
	p, ok := m[pid]
	if !ok {
		return dst, notFound(pid)
	}
	for _, name := range names {
		var v any
		if t, ok := p.traits[name]; ok {
			var err error
			if v, err = p.traitValue(name, t); err != nil {
				return dst, err
			}
		}
		dst = append(dst, v)
	}
	return dst, nil
}

func (tx *memTx) Metadata(ctx context.Context, pid identity.ProfileID) (Metadata, error) {
	if err := tx.check(ctx); err != nil {
		return Metadata{}, err
	}
	m, locked := tx.view(pid)
	defer tx.release(locked)
	return getMetadata(m, pid)
}

func (tx *memTx) Events(ctx context.Context, pid identity.ProfileID, q EventQuery) (EventPage, error) {
	if err := tx.check(ctx); err != nil {
		return EventPage{}, err
	}
	m, locked := tx.view(pid)
	defer tx.release(locked)
	return getEvents(m, pid, q)
}

func (tx *memTx) Update(ctx context.Context, pid identity.ProfileID, u Update) error {
	return tx.update(ctx, pid, &u, false)
}

// UpdateTakingSet implements TraitsTaker.
func (tx *memTx) UpdateTakingSet(ctx context.Context, pid identity.ProfileID, u Update) error {
	return tx.update(ctx, pid, &u, true)
}

func (tx *memTx) update(ctx context.Context, pid identity.ProfileID, u *Update, takeSet bool) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	if err := u.Validate(); err != nil {
		return err
	}
	if u.MessageID != "" {
		m, locked := tx.view(pid)
		var dup bool
		if p := m[pid]; p != nil {
			_, dup = p.seen[u.MessageID]
		}
		tx.release(locked)
		if dup {
			return fmt.Errorf("%w: message %s on profile %s", ErrDuplicate, u.MessageID, pid)
		}
	}
	op, err := tx.stage(pid, u, stagingKey{}, takeSet)
	if err != nil {
		return err
	}
	tx.ops = append(tx.ops, op)
	return nil
}

func (tx *memTx) Merge(ctx context.Context, into, from identity.ProfileID) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	if into == from {
		return fmt.Errorf("%w: cannot merge profile %s into itself", ErrInvalid, into)
	}
	m, locked := tx.view(into)
	_, ok := m[into]
	tx.release(locked)
	if !ok {
		return notFound(into)
	}
	tx.ops = append(tx.ops, memOp{kind: opMerge, pid: into, from: from})
	return nil
}

func (tx *memTx) Delete(ctx context.Context, pid identity.ProfileID) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	tx.ops = append(tx.ops, memOp{kind: opDelete, pid: pid})
	return nil
}

// PruneEvents implements EventPruner.
func (tx *memTx) PruneEvents(ctx context.Context, pids []identity.ProfileID, c Cutoffs) ([]int, error) {
	if err := tx.check(ctx); err != nil {
		return nil, err
	}
	counts := make([]int, len(pids))
	if c.Zero() {
		return counts, nil
	}
	c.Sources = maps.Clone(c.Sources)
	for i, pid := range pids {
		if slices.Contains(pids[:i], pid) {
			continue // pruned already
		}
		m, locked := tx.view(pid)
		if p := m[pid]; p != nil {
			for j := range p.events {
				if c.Expired(&p.events[j]) {
					counts[i]++
				}
			}
		}
		tx.release(locked)
		if counts[i] > 0 {
			tx.ops = append(tx.ops, memOp{kind: opPrune, pid: pid, cut: c})
		}
	}
	return counts, nil
}

func (tx *memTx) Commit(ctx context.Context) error {
	if tx.done {
		return ErrTxDone
	}
	ops := tx.ops
	defer tx.end()
	if err := ctx.Err(); err != nil {
		return err // as database/sql does: a cancelled commit rolls back
	}
	if len(ops) == 0 {
		return nil
	}
	tx.s.mu.Lock()
	before := len(tx.s.profiles)
	for i := range ops {
		ops[i].apply(tx.s.profiles, true)
		if ops[i].kind == opMerge || ops[i].kind == opDelete {
			tx.s.dirty.Store(true)
		}
	}
	if len(tx.s.profiles) != before {
		tx.s.dirty.Store(true)
	}
	tx.s.mu.Unlock()
	return nil
}

func (tx *memTx) Rollback(ctx context.Context) error {
	tx.end()
	return nil
}
