package outbox

import (
	"cmp"
	"container/heap"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gdprkit/privacy/identity"
)

// MemStore is the in-memory Store, the Controller's default: what it holds
// goes with the process. It is safe for concurrent use, also by several
// Controllers sharing it.
type MemStore struct {
	mu    sync.Mutex
	next  uint64
	items map[uint64]*memItem
	// queues holds, per destination and profile, the IDs of its Pending
	// items in ascending order: its head is the only one Claim may hand out.
	queues    map[queueKey]*[]uint64
	keys      map[keyKey]uint64
	byRequest map[string]map[uint64]bool
	counts    map[string]*Counts
	// heads holds, per destination, the queues whose head may be due: a
	// min-heap by the time from which it may be (lazily checked on Claim).
	heads map[string]*headHeap
	// marks holds the requests marked (RequestMarkingTx).
	marks map[string]bool
}

type memItem struct {
	Item
	owner string
	until time.Time
}

type queueKey struct {
	dest    string
	profile identity.ProfileID
}

type keyKey struct{ dest, key string }

var (
	_ Store            = (*MemStore)(nil)
	_ RequestMarks     = (*MemStore)(nil)
	_ RequestMarkingTx = (*memTx)(nil)
)

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{items: map[uint64]*memItem{}, queues: map[queueKey]*[]uint64{}, keys: map[keyKey]uint64{},
		byRequest: map[string]map[uint64]bool{}, counts: map[string]*Counts{}, heads: map[string]*headHeap{}}
}

// Begin implements Store.
func (s *MemStore) Begin(ctx context.Context) (Tx, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &memTx{s: s}, nil
}

// memTx stages its writes and applies them, in order, on Commit.
type memTx struct {
	s    *MemStore
	ops  []func()
	keys map[keyKey]bool
	done bool
}

func (tx *memTx) check(ctx context.Context) error {
	if tx.done {
		return ErrTxDone
	}
	return ctx.Err()
}

func (tx *memTx) Enqueue(ctx context.Context, items []Item) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	for i := range items {
		if err := items[i].Validate(); err != nil {
			return fmt.Errorf("items[%d]: %w", i, err)
		}
	}
	s := tx.s
	staged := make([]Item, 0, len(items))
	s.mu.Lock()
	for i := range items {
		it := &items[i]
		it.ID = 0
		if it.Key != "" {
			k := keyKey{it.Destination, it.Key}
			if _, ok := s.keys[k]; ok || tx.keys[k] {
				continue
			}
			if tx.keys == nil {
				tx.keys = map[keyKey]bool{}
			}
			tx.keys[k] = true
		}
		s.next++
		it.ID = s.next
		c := it.Clone()
		c.State, c.Attempts, c.LastError, c.NotBefore = Pending, 0, "", c.Enqueued
		staged = append(staged, c)
	}
	s.mu.Unlock()
	tx.ops = append(tx.ops, func() {
		for _, it := range staged {
			s.insert(it)
		}
	})
	return nil
}

func (tx *memTx) Merge(ctx context.Context, into, from identity.ProfileID) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	if into == "" || from == "" {
		return fmt.Errorf("%w: Merge of an empty profile id", ErrInvalid)
	}
	if into != from {
		tx.ops = append(tx.ops, func() { tx.s.merge(into, from) })
	}
	return nil
}

func (tx *memTx) Purge(ctx context.Context, pid identity.ProfileID) (int, error) {
	if err := tx.check(ctx); err != nil {
		return 0, err
	}
	s := tx.s
	s.mu.Lock()
	removed, _, superseded := s.purgeable(pid)
	n := len(removed) + len(superseded)
	s.mu.Unlock()
	tx.ops = append(tx.ops, func() { s.purge(pid) })
	return n, nil
}

func (tx *memTx) Commit(ctx context.Context) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	tx.done = true
	s := tx.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, op := range tx.ops {
		op()
	}
	tx.ops = nil
	return nil
}

// MarkRequest implements RequestMarkingTx.
func (tx *memTx) MarkRequest(ctx context.Context, id string) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	tx.ops = append(tx.ops, func() {
		if tx.s.marks == nil {
			tx.s.marks = map[string]bool{}
		}
		tx.s.marks[id] = true
	})
	return nil
}

// RequestMarked implements RequestMarks.
func (s *MemStore) RequestMarked(ctx context.Context, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.marks[id], nil
}

func (tx *memTx) Rollback(context.Context) error {
	tx.done, tx.ops = true, nil
	return nil
}

// insert adds a staged item; the caller holds s.mu. One whose key another
// transaction committed meanwhile is skipped.
func (s *MemStore) insert(it Item) {
	if it.Key != "" {
		k := keyKey{it.Destination, it.Key}
		if _, ok := s.keys[k]; ok {
			return
		}
		s.keys[k] = it.ID
	}
	m := &memItem{Item: it}
	s.items[it.ID] = m
	if it.Request != "" {
		if s.byRequest[it.Request] == nil {
			s.byRequest[it.Request] = map[uint64]bool{}
		}
		s.byRequest[it.Request][it.ID] = true
	}
	s.count(it.Destination).Pending++
	s.enqueue(m, it.NotBefore)
}

// enqueue puts a Pending item into its queue, in ID order, and offers the
// queue's head to Claim; the caller holds s.mu.
func (s *MemStore) enqueue(m *memItem, at time.Time) {
	k := queueKey{m.Destination, m.Profile}
	q := s.queues[k]
	if q == nil {
		q = new([]uint64)
		s.queues[k] = q
	}
	i, _ := slices.BinarySearch(*q, m.ID)
	*q = slices.Insert(*q, i, m.ID)
	if i == 0 {
		s.offer(k, at)
	}
}

// dequeue takes an item out of its queue, and offers the queue's new head
// if it changed; the caller holds s.mu.
func (s *MemStore) dequeue(m *memItem) {
	k := queueKey{m.Destination, m.Profile}
	q := s.queues[k]
	if q == nil {
		return
	}
	i, ok := slices.BinarySearch(*q, m.ID)
	if !ok {
		return
	}
	*q = slices.Delete(*q, i, i+1)
	switch {
	case len(*q) == 0:
		delete(s.queues, k)
	case i == 0:
		s.offer(k, s.items[(*q)[0]].NotBefore)
	}
}

// offerHead offers the queue's head at its NotBefore, when there is one.
func (s *MemStore) offerHead(k queueKey) {
	if q := s.queues[k]; q != nil && len(*q) > 0 {
		s.offer(k, s.items[(*q)[0]].NotBefore)
	}
}

// offer tells Claim that the queue's head may be due from at.
func (s *MemStore) offer(k queueKey, at time.Time) {
	h := s.heads[k.dest]
	if h == nil {
		h = &headHeap{}
		s.heads[k.dest] = h
	}
	heap.Push(h, headEntry{at: at, key: k})
}

func (s *MemStore) count(dest string) *Counts {
	c := s.counts[dest]
	if c == nil {
		c = &Counts{}
		s.counts[dest] = c
	}
	return c
}

// remove forgets an item that is no longer Pending; the caller holds s.mu.
func (s *MemStore) remove(m *memItem) {
	delete(s.items, m.ID)
	if m.Key != "" && s.keys[keyKey{m.Destination, m.Key}] == m.ID {
		delete(s.keys, keyKey{m.Destination, m.Key})
	}
	if m.Request != "" {
		delete(s.byRequest[m.Request], m.ID)
		if len(s.byRequest[m.Request]) == 0 {
			delete(s.byRequest, m.Request)
		}
	}
}

// Claim implements Store.
func (s *MemStore) Claim(ctx context.Context, c Claim) ([]Item, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Item
	for _, dest := range c.Destinations {
		h := s.heads[dest]
		var later []headEntry
		for h != nil && h.Len() > 0 && len(out) < c.Limit {
			e := (*h)[0]
			if e.at.After(c.Now) {
				break
			}
			heap.Pop(h)
			q := s.queues[e.key]
			if q == nil {
				continue // emptied since
			}
			m := s.items[(*q)[0]]
			switch {
			case m.owner != "" && !m.until.Before(c.Now):
				later = append(later, headEntry{at: m.until, key: e.key}) // leased: again once the lease lapses
				continue
			case m.NotBefore.After(c.Now):
				later = append(later, headEntry{at: m.NotBefore, key: e.key})
				continue
			}
			m.owner, m.until = c.Owner, c.Until
			out = append(out, m.Clone())
			// The messages after a message, up to the first that is a
			// deletion, not due or leased: the run goes out in order.
			for _, id := range (*q)[1:] {
				f := s.items[id]
				if m.Deletion != nil || len(out) >= c.Limit || f.Deletion != nil || f.NotBefore.After(c.Now) ||
					f.owner != "" && !f.until.Before(c.Now) {
					break
				}
				f.owner, f.until = c.Owner, c.Until
				out = append(out, f.Clone())
			}
			// Offered again at the lease's end: should the owner die, the
			// items are claimed again then.
			later = append(later, headEntry{at: c.Until, key: e.key})
		}
		for _, e := range later {
			heap.Push(h, e)
		}
	}
	slices.SortFunc(out, func(a, b Item) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// Renew implements Store.
func (s *MemStore) Renew(ctx context.Context, owner string, ids []uint64, until time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if m := s.items[id]; m != nil && m.owner == owner && m.State == Pending {
			shortened := until.Before(m.until)
			m.until = until
			if until.IsZero() {
				m.owner = "" // given up
			}
			// Given up early, it is offered then (an extension needs no
			// offer: the one at the old end finds it leased and comes again).
			k := queueKey{m.Destination, m.Profile}
			if q := s.queues[k]; shortened && q != nil && (*q)[0] == m.ID {
				s.offer(k, until)
			}
		}
	}
	return nil
}

// Settle implements Store.
func (s *MemStore) Settle(ctx context.Context, owner string, answers []Answer) (int, error) {
	for i := range answers {
		if err := answers[i].Validate(); err != nil {
			return 0, fmt.Errorf("answers[%d]: %w", i, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	lost := 0
	for _, a := range answers {
		m := s.items[a.ID]
		if m == nil || m.owner != owner || m.State != Pending {
			lost++
			continue
		}
		m.owner, m.until = "", time.Time{}
		// Its lease may have held its queue back: the head may go now.
		s.offerHead(queueKey{m.Destination, m.Profile})
		if m.purged() && !(m.Request != "" && a.State == Delivered) {
			// Not sent again: one no request awaits goes; a request's is
			// answered so (delivered, it says so: it went before the erasure).
			s.dequeue(m)
			s.count(m.Destination).Pending--
			if m.Request == "" {
				s.remove(m)
			} else {
				m.State, m.LastError = NotSupported, ErasedFirst
			}
			continue
		}
		switch a.State {
		case Pending:
			m.Attempts++
			m.NotBefore, m.LastError = a.NotBefore, CutError(a.Err)
			if q := s.queues[queueKey{m.Destination, m.Profile}]; q != nil && (*q)[0] == m.ID {
				s.offer(queueKey{m.Destination, m.Profile}, a.NotBefore)
			}
			continue
		case Dead:
			m.Attempts++
		}
		s.dequeue(m)
		c := s.count(m.Destination)
		c.Pending--
		m.State, m.LastError = a.State, CutError(a.Err)
		switch {
		case a.State == Dead:
			c.Dead++
		case m.Request == "":
			s.remove(m)
		default:
			m.Message, m.Deletion = nil, nil // the answer stays; the person's data goes
		}
	}
	return lost, nil
}

// Outcomes implements Store.
func (s *MemStore) Outcomes(ctx context.Context, request string) ([]Item, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Item
	for id := range s.byRequest[request] {
		it := s.items[id].Item
		it.Message, it.Deletion = nil, nil
		out = append(out, it)
	}
	slices.SortFunc(out, func(a, b Item) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// Forget implements Store.
func (s *MemStore) Forget(ctx context.Context, request string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.byRequest[request] {
		switch m := s.items[id]; {
		case m.State == Dead:
			// A dead letter, the request's no longer: Replay may send it.
			delete(s.byRequest[request], id)
			m.Request = ""
		case m.State.Answered():
			s.remove(m)
		}
	}
	if len(s.byRequest[request]) == 0 {
		delete(s.byRequest, request)
	}
	return nil
}

// Dead implements Store.
func (s *MemStore) Dead(ctx context.Context, dest string, after uint64, limit int) ([]Item, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: Dead limit %d: want a positive number", ErrInvalid, limit)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Item
	for id, m := range s.items {
		if id > after && m.State == Dead && (dest == "" || m.Destination == dest) {
			out = append(out, m.Clone())
		}
	}
	slices.SortFunc(out, func(a, b Item) int { return cmp.Compare(a.ID, b.ID) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Replay implements Store.
func (s *MemStore) Replay(ctx context.Context, ids []uint64, now time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, id := range ids {
		m := s.items[id]
		if m == nil || m.State != Dead || m.Message == nil && m.Deletion == nil {
			continue // a purged message is never sent
		}
		// A new ID: at the end of its queue.
		old := m.ID
		delete(s.items, old)
		s.next++
		m.ID = s.next
		s.items[m.ID] = m
		if k := (keyKey{m.Destination, m.Key}); m.Key != "" && s.keys[k] == old {
			s.keys[k] = m.ID
		}
		if m.Request != "" {
			delete(s.byRequest[m.Request], old)
			s.byRequest[m.Request][m.ID] = true
		}
		m.State, m.Attempts, m.LastError, m.Enqueued, m.NotBefore = Pending, 0, "", now, now
		c := s.count(m.Destination)
		c.Dead--
		c.Pending++
		s.enqueue(m, now)
		n++
	}
	return n, nil
}

// Stats implements Store.
func (s *MemStore) Stats(ctx context.Context) (map[string]Counts, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]Counts{}
	for dest, c := range s.counts {
		if c.Pending > 0 || c.Dead > 0 {
			out[dest] = *c
		}
	}
	return out, nil
}

// purgeable returns the messages Purge removes, and those whose payload it
// drops (a request's Dead ones, and the held ones no request awaits); the
// caller holds s.mu.
func (s *MemStore) purgeable(pid identity.ProfileID) (removed, dropped, superseded []*memItem) {
	for _, m := range s.items {
		switch {
		case m.Profile != pid || m.Message == nil:
		case m.Request == "" && (m.State == Dead || m.State == Pending && m.owner == ""):
			removed = append(removed, m)
		case m.Request != "" && m.State == Pending && m.owner == "":
			superseded = append(superseded, m)
		case m.State == Dead, m.State == Pending:
			// A request's dead message, or a held one: no payload left.
			dropped = append(dropped, m)
		}
	}
	return removed, dropped, superseded
}

// purged reports whether m lost its payload to Purge while it was held.
func (m *memItem) purged() bool {
	return m.State == Pending && m.Message == nil && m.Deletion == nil
}

func (s *MemStore) purge(pid identity.ProfileID) {
	removed, dropped, superseded := s.purgeable(pid)
	for _, m := range superseded {
		s.count(m.Destination).Pending--
		s.dequeue(m)
		m.State, m.LastError, m.Message = NotSupported, ErasedFirst, nil
	}
	for _, m := range removed {
		s.drop(m)
	}
	for _, m := range dropped {
		m.Message = nil // never replayed after the deletion
	}
}

// drop removes a Dead item, or a Pending one no deliverer holds, from the
// store and its counts; the caller holds s.mu.
func (s *MemStore) drop(m *memItem) {
	c := s.count(m.Destination)
	if m.State == Dead {
		c.Dead--
	} else {
		c.Pending--
		s.dequeue(m)
	}
	s.remove(m)
}

func (s *MemStore) merge(into, from identity.ProfileID) {
	var moved []*memItem
	for _, m := range s.items {
		if m.Profile == from {
			moved = append(moved, m)
		}
	}
	slices.SortFunc(moved, func(a, b *memItem) int { return cmp.Compare(a.ID, b.ID) })
	for _, m := range moved {
		pending := m.State == Pending
		if pending {
			s.dequeue(m)
		}
		m.Profile = into
		if m.Message != nil {
			m.Message.ProfileID = into
		}
		if m.Deletion != nil {
			m.Deletion.ProfileID = into
		}
		if pending {
			s.enqueue(m, m.NotBefore)
		}
	}
}

// headEntry offers a queue's head to Claim from a time on.
type headEntry struct {
	at  time.Time
	key queueKey
}

type headHeap []headEntry

func (h headHeap) Len() int           { return len(h) }
func (h headHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h headHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *headHeap) Push(x any)        { *h = append(*h, x.(headEntry)) }
func (h *headHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
