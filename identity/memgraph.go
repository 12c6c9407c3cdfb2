package identity

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// MemGraph is the in-memory Graph. It is safe for concurrent use. Transactions
// stage their writes privately and apply them under one lock at Commit. It does
// not detect write conflicts between concurrent transactions (the last commit
// wins); the Controller never runs two writers on one profile at once.
type MemGraph struct {
	mu    sync.RWMutex
	ids   map[ID]ProfileID
	nodes map[ProfileID]*Node // committed nodes are never changed in place
	// version counts the commits that changed ids or nodes, moved under mu
	// with them (see Version).
	version atomic.Uint64
}

var _ Graph = (*MemGraph)(nil)

// NewMemGraph returns an empty in-memory identity graph.
func NewMemGraph() *MemGraph {
	return &MemGraph{ids: make(map[ID]ProfileID), nodes: make(map[ProfileID]*Node)}
}

// Lookup implements Reader.
func (g *MemGraph) Lookup(ctx context.Context, id ID) (ProfileID, error) {
	g.mu.RLock()
	pid, ok := g.ids[id]
	g.mu.RUnlock()
	if !ok {
		return "", ErrNotFound // bare: a miss is routine on the collection path, and callers add context
	}
	return pid, nil
}

// Node implements Reader.
func (g *MemGraph) Node(ctx context.Context, pid ProfileID) (*Node, error) {
	g.mu.RLock()
	n, ok := g.nodes[pid]
	var c *Node
	if ok {
		c = n.Clone()
	}
	g.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: profile %s", ErrNotFound, pid)
	}
	return c, nil
}

// Version counts the commits that changed the graph. A reader that reads
// the same Version before and after its lookups knows that no commit changed
// what they saw in between: the Controller then trusts its first look at a
// person's identifiers once it holds their locks, rather than looking again.
func (g *MemGraph) Version() uint64 { return g.version.Load() }

// Len returns the number of profiles and of linked identifiers.
func (g *MemGraph) Len() (profiles, identifiers int) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return len(g.nodes), len(g.ids)
}

// Begin implements Graph.
func (g *MemGraph) Begin(ctx context.Context) (Tx, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &memGraphTx{g: g}, nil
}

// memGraphTx stages writes in order: ids maps an identifier to its new profile
// ("" once unlinked), nodes holds private copies of changed nodes (nil once
// deleted); a later entry overrides an earlier one. Slices rather than maps: a
// transaction stages a handful of entries, and the inline arrays keep the common
// one (one link) inside the transaction's own allocation.
type memGraphTx struct {
	g        *MemGraph
	done     bool
	ids      stage[ID, ProfileID]
	nodes    stage[ProfileID, *Node]
	idsBuf   [2]staged[ID, ProfileID]
	nodesBuf [1]staged[ProfileID, *Node]
}

const indexFrom = 16

// stage is one kind of a transaction's staged writes, identifiers or nodes:
// the entries in order, and past indexFrom entries an index of the position of
// each key's latest entry, so a bulk erasure stays linear. Both kinds share it
// because they differ only in their key and value types.
type stage[K, V comparable] struct {
	entries []staged[K, V]
	index   map[K]int
}

// staged is one staged write: the new value of key, the zero value once
// removed.
type staged[K, V comparable] struct {
	key   K
	value V
}

// find returns the position of key's latest entry.
func (s *stage[K, V]) find(key K) (int, bool) {
	if s.index != nil {
		i, ok := s.index[key]
		return i, ok
	}
	for i := len(s.entries) - 1; i >= 0; i-- {
		if s.entries[i].key == key {
			return i, true
		}
	}
	return 0, false
}

// latest returns the value of key's latest entry, if it has one.
func (s *stage[K, V]) latest(key K) (V, bool) {
	if i, ok := s.find(key); ok {
		return s.entries[i].value, true
	}
	var none V
	return none, false
}

// add appends an entry for key and keeps the index in step, building it once
// the stage grows past indexFrom entries.
func (s *stage[K, V]) add(key K, value V) {
	s.entries = append(s.entries, staged[K, V]{key, value})
	switch {
	case s.index != nil:
		s.index[key] = len(s.entries) - 1
	case len(s.entries) > indexFrom:
		s.index = make(map[K]int, 2*len(s.entries))
		for i, e := range s.entries {
			s.index[e.key] = i // later entries overwrite earlier ones
		}
	}
}

// readThrough returns a transaction's view of key: the latest value staged
// for it (none when staged as removed), else the committed one, read under the
// graph's read lock. committed is g.ids or g.nodes, which are never replaced.
func readThrough[K, V comparable](g *MemGraph, s *stage[K, V], committed map[K]V, key K) (V, bool) {
	if v, ok := s.latest(key); ok {
		var removed V
		return v, v != removed
	}
	g.mu.RLock()
	v, ok := committed[key]
	g.mu.RUnlock()
	return v, ok
}

func (tx *memGraphTx) lookup(id ID) (ProfileID, bool) {
	return readThrough(tx.g, &tx.ids, tx.g.ids, id)
}

// node returns the transaction's view of pid; the result must not be changed.
func (tx *memGraphTx) node(pid ProfileID) (*Node, bool) {
	return readThrough(tx.g, &tx.nodes, tx.g.nodes, pid)
}

// writable returns a private copy of pid's node to change, staged in the tx.
func (tx *memGraphTx) writable(pid ProfileID) (*Node, bool) {
	if n, ok := tx.nodes.latest(pid); ok {
		return n, n != nil
	}
	n, ok := tx.node(pid)
	if !ok {
		return nil, false
	}
	c := *n
	c.Links = make([]Link, len(n.Links), len(n.Links)+1) // room for the link about to be added
	copy(c.Links, n.Links)
	c.Merges = append([]Merge(nil), n.Merges...)
	tx.stageNode(pid, &c)
	return &c, true
}

// reserveLinks makes room for n more links in pid's node when this
// transaction has staged it (made it, or copied it to write), for Plan.Apply.
func (tx *memGraphTx) reserveLinks(pid ProfileID, n int) {
	if tx.done {
		return // what it staged is the graph's once it committed
	}
	if node, ok := tx.nodes.latest(pid); ok && node != nil {
		node.Links = slices.Grow(node.Links, n)
	}
}

// stageNode stages n as pid's node, replacing the node already staged for pid:
// a node has at most one entry.
func (tx *memGraphTx) stageNode(pid ProfileID, n *Node) {
	if tx.nodes.entries == nil {
		tx.nodes.entries = tx.nodesBuf[:0]
	}
	if i, ok := tx.nodes.find(pid); ok {
		tx.nodes.entries[i].value = n
		return
	}
	tx.nodes.add(pid, n)
}

func (tx *memGraphTx) stageID(id ID, pid ProfileID) {
	if tx.ids.entries == nil {
		tx.ids.entries = tx.idsBuf[:0]
	}
	tx.ids.add(id, pid)
}

func (tx *memGraphTx) check(ctx context.Context) error {
	if tx.done {
		return ErrTxDone
	}
	return ctx.Err()
}

func (tx *memGraphTx) Lookup(ctx context.Context, id ID) (ProfileID, error) {
	if err := tx.check(ctx); err != nil {
		return "", err
	}
	pid, ok := tx.lookup(id)
	if !ok {
		return "", fmt.Errorf("%w: identifier %s", ErrNotFound, id)
	}
	return pid, nil
}

func (tx *memGraphTx) Node(ctx context.Context, pid ProfileID) (*Node, error) {
	if err := tx.check(ctx); err != nil {
		return nil, err
	}
	n, ok := tx.node(pid)
	if !ok {
		return nil, fmt.Errorf("%w: profile %s", ErrNotFound, pid)
	}
	return n.Clone(), nil
}

func (tx *memGraphTx) Create(ctx context.Context, pid ProfileID, createdAt time.Time) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	if n, ok := tx.node(pid); ok {
		if n.CreatedAt.Equal(createdAt) {
			return nil
		}
		return fmt.Errorf("%w: profile %s exists", ErrConflict, pid)
	}
	tx.stageNode(pid, &Node{ID: pid, CreatedAt: createdAt})
	return nil
}

func (tx *memGraphTx) Link(ctx context.Context, pid ProfileID, l Link) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	if owner, ok := tx.lookup(l.ID); ok {
		if owner == pid {
			return nil
		}
		return fmt.Errorf("%w: identifier %s belongs to profile %s, not %s", ErrConflict, l.ID, owner, pid)
	}
	n, ok := tx.writable(pid)
	if !ok {
		return fmt.Errorf("%w: profile %s", ErrNotFound, pid)
	}
	n.Links = append(n.Links, l)
	tx.stageID(l.ID, pid)
	return nil
}

func (tx *memGraphTx) Merge(ctx context.Context, into ProfileID, m Merge) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	if m.From == into {
		return fmt.Errorf("%w: cannot merge profile %s into itself", ErrConflict, into)
	}
	from, ok := tx.node(m.From)
	if !ok {
		return nil // already merged: redo is a no-op
	}
	dst, ok := tx.writable(into)
	if !ok {
		return fmt.Errorf("%w: profile %s", ErrNotFound, into)
	}
	for _, l := range from.Links {
		dst.Links = append(dst.Links, l)
		tx.stageID(l.ID, into)
	}
	dst.Merges = append(dst.Merges, from.Merges...) // the history travels with the profile
	dst.Merges = append(dst.Merges, m)
	tx.stageNode(m.From, nil)
	return nil
}

func (tx *memGraphTx) Delete(ctx context.Context, pid ProfileID) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	n, ok := tx.node(pid)
	if !ok {
		return nil
	}
	for _, l := range n.Links {
		tx.stageID(l.ID, "")
	}
	tx.stageNode(pid, nil)
	return nil
}

func (tx *memGraphTx) Commit(ctx context.Context) error {
	if tx.done {
		return ErrTxDone
	}
	tx.done = true
	if err := ctx.Err(); err != nil {
		tx.forget() // as database/sql does: a cancelled commit rolls back
		return err
	}
	if len(tx.ids.entries) == 0 && len(tx.nodes.entries) == 0 {
		return nil
	}
	g := tx.g
	g.mu.Lock()
	for _, s := range tx.ids.entries { // in order: a later entry overrides an earlier one
		if s.value == "" {
			delete(g.ids, s.key)
		} else {
			g.ids[s.key] = s.value
		}
	}
	for _, s := range tx.nodes.entries {
		if s.value == nil {
			delete(g.nodes, s.key)
		} else {
			g.nodes[s.key] = s.value
		}
	}
	g.version.Add(1) // before the lock is let go: a lookup that saw this commit sees the new version
	g.mu.Unlock()
	// Published: the nodes are the graph's now, which changes a node only
	// by a copy (writable); the transaction keeps no way to them.
	tx.forget()
	return nil
}

// forget drops what the transaction staged.
func (tx *memGraphTx) forget() {
	tx.ids.entries, tx.nodes.entries, tx.ids.index, tx.nodes.index = nil, nil, nil, nil
}

func (tx *memGraphTx) Rollback(ctx context.Context) error {
	tx.done = true
	tx.forget()
	return nil
}
