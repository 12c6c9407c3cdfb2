package identity

import (
	"context"
	"fmt"
	"sync"
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
	ids      []stagedID
	nodes    []stagedNode
	idsBuf   [2]stagedID
	nodesBuf [1]stagedNode
	// Past indexFrom entries, lookups go through these indexes (position of the
	// latest entry), so a bulk erasure stays linear.
	idIndex   map[ID]int
	nodeIndex map[ProfileID]int
}

const indexFrom = 16

type stagedID struct {
	id  ID
	pid ProfileID
}

type stagedNode struct {
	pid  ProfileID
	node *Node
}

func (tx *memGraphTx) stagedID(id ID) (ProfileID, bool) {
	if tx.idIndex != nil {
		if i, ok := tx.idIndex[id]; ok {
			return tx.ids[i].pid, true
		}
		return "", false
	}
	for i := len(tx.ids) - 1; i >= 0; i-- {
		if tx.ids[i].id == id {
			return tx.ids[i].pid, true
		}
	}
	return "", false
}

func (tx *memGraphTx) stagedNode(pid ProfileID) (*Node, bool) {
	if tx.nodeIndex != nil {
		if i, ok := tx.nodeIndex[pid]; ok {
			return tx.nodes[i].node, true
		}
		return nil, false
	}
	for i := len(tx.nodes) - 1; i >= 0; i-- {
		if tx.nodes[i].pid == pid {
			return tx.nodes[i].node, true
		}
	}
	return nil, false
}

func (tx *memGraphTx) lookup(id ID) (ProfileID, bool) {
	if pid, ok := tx.stagedID(id); ok {
		return pid, pid != ""
	}
	tx.g.mu.RLock()
	pid, ok := tx.g.ids[id]
	tx.g.mu.RUnlock()
	return pid, ok
}

// node returns the transaction's view of pid; the result must not be changed.
func (tx *memGraphTx) node(pid ProfileID) (*Node, bool) {
	if n, ok := tx.stagedNode(pid); ok {
		return n, n != nil
	}
	tx.g.mu.RLock()
	n, ok := tx.g.nodes[pid]
	tx.g.mu.RUnlock()
	return n, ok
}

// writable returns a private copy of pid's node to change, staged in the tx.
func (tx *memGraphTx) writable(pid ProfileID) (*Node, bool) {
	if n, ok := tx.stagedNode(pid); ok {
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

func (tx *memGraphTx) stageNode(pid ProfileID, n *Node) {
	if tx.nodes == nil {
		tx.nodes = tx.nodesBuf[:0]
	}
	if tx.nodeIndex != nil {
		if i, ok := tx.nodeIndex[pid]; ok {
			tx.nodes[i].node = n
			return
		}
	} else {
		for i := range tx.nodes {
			if tx.nodes[i].pid == pid {
				tx.nodes[i].node = n
				return
			}
		}
	}
	tx.nodes = append(tx.nodes, stagedNode{pid, n})
	switch {
	case tx.nodeIndex != nil:
		tx.nodeIndex[pid] = len(tx.nodes) - 1
	case len(tx.nodes) > indexFrom:
		tx.nodeIndex = make(map[ProfileID]int, 2*len(tx.nodes))
		for i, s := range tx.nodes {
			tx.nodeIndex[s.pid] = i
		}
	}
}

func (tx *memGraphTx) stageID(id ID, pid ProfileID) {
	if tx.ids == nil {
		tx.ids = tx.idsBuf[:0]
	}
	tx.ids = append(tx.ids, stagedID{id, pid})
	switch {
	case tx.idIndex != nil:
		tx.idIndex[id] = len(tx.ids) - 1
	case len(tx.ids) > indexFrom:
		tx.idIndex = make(map[ID]int, 2*len(tx.ids))
		for i, s := range tx.ids {
			tx.idIndex[s.id] = i // later entries overwrite earlier ones
		}
	}
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
		tx.ids, tx.nodes = nil, nil // as database/sql does: a cancelled commit rolls back
		return err
	}
	if len(tx.ids) == 0 && len(tx.nodes) == 0 {
		return nil
	}
	g := tx.g
	g.mu.Lock()
	for _, s := range tx.ids { // in order: a later entry overrides an earlier one
		if s.pid == "" {
			delete(g.ids, s.id)
		} else {
			g.ids[s.id] = s.pid
		}
	}
	for _, s := range tx.nodes {
		if s.node == nil {
			delete(g.nodes, s.pid)
		} else {
			g.nodes[s.pid] = s.node
		}
	}
	g.mu.Unlock()
	return nil
}

func (tx *memGraphTx) Rollback(ctx context.Context) error {
	tx.done = true
	tx.ids, tx.nodes = nil, nil
	return nil
}
