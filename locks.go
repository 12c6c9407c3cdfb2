package privacy

// Locking people: every writer and reader of a person's data holds the
// person's stripes in this process and, through a txscope.Locker backend, the
// same keys across processes, so a message racing a right never interleaves
// with it.

import (
	"context"
	"fmt"
	"hash/maphash"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/txscope"
)

// lockStripes is the number of mutexes subjects hash onto. Two subjects sharing a
// stripe only wait for each other; correctness does not depend on the count.
const lockStripes = 4096

// subjectLocks is the per-subject lock in this process: collection, reads and
// rights on one person serialise on the stripes of the person's profile and
// identifiers. Across processes, a backend that implements txscope.Locker
// locks the same keys in its database (lockRemote).
// Stripes are always taken in ascending order, so holders of several never
// deadlock.
type subjectLocks struct {
	seed    maphash.Seed
	stripes [lockStripes]sync.Mutex
}

func newSubjectLocks() *subjectLocks { return &subjectLocks{seed: maphash.MakeSeed()} }

// lockSet is a sorted set of stripe indexes; the inline array keeps the common case
// (a message with a few identifiers) free of allocation.
type lockSet struct {
	n      int
	inline [8]uint16
	more   []uint16
}

func (s *lockSet) slice() []uint16 {
	if s.more != nil {
		return s.more
	}
	return s.inline[:s.n]
}

func (s *lockSet) add(i uint16) {
	cur := s.slice()
	at, found := slices.BinarySearch(cur, i)
	if found {
		return
	}
	if s.more == nil && s.n < len(s.inline) {
		copy(s.inline[at+1:s.n+1], s.inline[at:s.n])
		s.inline[at] = i
		s.n++
		return
	}
	if s.more == nil {
		s.more = slices.Clone(cur) // leaving the inline array
	}
	s.more = slices.Insert(s.more, at, i)
}

// contains reports whether every stripe of o is in s.
func (s *lockSet) contains(o *lockSet) bool {
	cur := s.slice()
	for _, i := range o.slice() {
		if _, ok := slices.BinarySearch(cur, i); !ok {
			return false
		}
	}
	return true
}

func (l *subjectLocks) profile(pid identity.ProfileID) uint16 {
	return uint16(maphash.String(l.seed, string(pid)) % lockStripes)
}

func (l *subjectLocks) identifier(id identity.ID) uint16 {
	return uint16(maphash.Comparable(l.seed, id) % lockStripes)
}

// addMatches adds the stripes that guard the matches: every identifier's own (so
// two messages cannot create two profiles for one new identifier, and nobody
// reaches a profile through an identifier while it is being created) and the
// profile of each linked one (so writers of one profile take turns).
func (l *subjectLocks) addMatches(s *lockSet, matches []identity.Match) {
	for _, m := range matches {
		s.add(l.identifier(m.ID))
		if m.Profile != "" {
			s.add(l.profile(m.Profile))
		}
	}
}

// appendMatches appends the stripes addMatches would add, unsorted and with
// repeats: for a batch, sorting once beats inserting each in order.
func (l *subjectLocks) appendMatches(dst []uint16, matches []identity.Match) []uint16 {
	for _, m := range matches {
		dst = append(dst, l.identifier(m.ID))
		if m.Profile != "" {
			dst = append(dst, l.profile(m.Profile))
		}
	}
	return dst
}

// setAll makes s the set of the stripes in idx, which it takes over.
func (s *lockSet) setAll(idx []uint16) {
	slices.Sort(idx)
	*s = lockSet{more: slices.Compact(idx)}
	if s.more == nil {
		s.more = []uint16{}
	}
}

// tryAdd takes stripe i without waiting, as the creator of a new profile does
// for the profile's own stripe while already holding others: waiting there
// could deadlock against the ascending order. It reports false when the stripe
// is busy; the caller then lets go of everything and starts over.
func (l *subjectLocks) tryAdd(s *lockSet, i uint16) bool {
	if _, held := slices.BinarySearch(s.slice(), i); held {
		return true
	}
	if !l.stripes[i].TryLock() {
		return false
	}
	s.add(i)
	return true
}

func (l *subjectLocks) lock(s *lockSet) {
	for _, i := range s.slice() {
		l.stripes[i].Lock()
	}
}

func (l *subjectLocks) unlock(s *lockSet) {
	cur := s.slice()
	for j := len(cur) - 1; j >= 0; j-- {
		l.stripes[cur[j]].Unlock()
	}
}

// openScope marks ctx as one operation whose participants may share a backend
// transaction (package txscope), and returns the function that ends it. It costs
// nothing unless a backend cares.
func (c *Controller) openScope(ctx context.Context) (context.Context, func()) {
	if !c.scoped {
		return ctx, func() {}
	}
	ctx, s := txscope.NewContext(ctx)
	return ctx, s.Close
}

// lockRemote takes, through the backend that implements txscope.Locker, the
// cross-process locks of the identifiers and profiles an operation works on,
// after the in-process ones. Without such a backend it does nothing.
func (c *Controller) lockRemote(ctx context.Context, matches []identity.Match, pids []identity.ProfileID) error {
	if !c.remoteLocked(ctx) {
		return nil // reads outside an operation lock in this process only
	}
	keys := make([]string, 0, 2*len(matches)+len(pids))
	for _, m := range matches {
		keys = append(keys, txscope.IDKey(m.ID.String()))
		if m.Profile != "" {
			keys = append(keys, txscope.ProfileKey(string(m.Profile)))
		}
	}
	for _, pid := range pids {
		keys = append(keys, txscope.ProfileKey(string(pid)))
	}
	if err := c.locker.LockSubjects(ctx, keys); err != nil {
		return backendError("locking subjects", err)
	}
	return nil
}

// retryAttempts bounds how often an operation is run again after a conflict
// the backend marked with txscope.ErrRetry.
const retryAttempts = 10

// errRestart asks for an operation to start over in a new scope: the people it
// locked moved (a merge, a new profile) while it waited for them.
var errRestart = fmt.Errorf("privacy: the subjects changed while being locked: %w", txscope.ErrRetry)

// remoteLocked reports whether the operation of ctx holds cross-process locks.
func (c *Controller) remoteLocked(ctx context.Context) bool {
	return c.locker != nil && txscope.FromContext(ctx) != nil
}

// pause waits a little, more with each attempt and at random, before an
// operation that met a conflict starts over, so that two rivals do not meet
// again in lockstep.
func pause(ctx context.Context, attempt int) {
	d := time.Duration(mrand.Int64N(int64(attempt)*int64(time.Millisecond) + 1))
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

// memGraphVersion is the in-memory graph's count of the commits that
// changed it (identity.MemGraph.Version), and whether the Controller's graph
// is that one: a first look at identifiers that no commit followed need not
// be made again under their locks. Only it: another Graph's Version, if it
// had one, could mean anything.
func (c *Controller) memGraphVersion() (uint64, bool) {
	if g, ok := c.graph.(*identity.MemGraph); ok {
		return g.Version(), true
	}
	return 0, false
}

// lockMatches looks the identifiers up, takes the stripes that guard them and
// looks again (on the in-memory graph, only when a commit followed the first
// look): when the second look needs a stripe not held, or, across processes,
// a profile whose lock was not taken (someone linked or merged in between),
// it lets go and starts over. On success the caller holds the returned
// stripes and must unlock them.
func (c *Controller) lockMatches(ctx context.Context, ids []identity.ID, matches []identity.Match) ([]identity.Match, lockSet, error) {
	return c.lockMatchesAnd(ctx, ids, matches, nil)
}

// lockMatchesAnd is lockMatches that also holds the stripes of the given
// profiles, all taken together in ascending order.
func (c *Controller) lockMatchesAnd(ctx context.Context, ids []identity.ID, matches []identity.Match, pids []identity.ProfileID) ([]identity.Match, lockSet, error) {
	for {
		var err error
		before, versioned := c.memGraphVersion()
		if matches, err = identity.LookupAll(ctx, c.graph, ids, matches[:0]); err != nil {
			return nil, lockSet{}, backendError("identity lookup", err)
		}
		var held lockSet
		c.locks.addMatches(&held, matches)
		for _, pid := range pids {
			held.add(c.locks.profile(pid))
		}
		c.locks.lock(&held)
		// Another process may be working on the same person: take its locks too,
		// then look again (through the locked transaction) before trusting the
		// first look.
		if err := c.lockRemote(ctx, matches, pids); err != nil {
			c.locks.unlock(&held)
			return nil, lockSet{}, err
		}
		if now, _ := c.memGraphVersion(); versioned && now == before {
			return matches, held, nil // nothing committed since the first look
		}
		// The cross-process locks are those of the first look's profiles:
		// a person the second look finds elsewhere was not locked there,
		// though that profile's stripe may be one held already (stripes are
		// shared by hash).
		var lockedProfiles []identity.ProfileID
		if c.remoteLocked(ctx) {
			lockedProfiles = append(matchProfiles(matches), pids...)
		}
		if matches, err = identity.LookupAll(ctx, c.graph, ids, matches[:0]); err != nil {
			c.locks.unlock(&held)
			return nil, lockSet{}, backendError("identity lookup", err)
		}
		var need lockSet
		c.locks.addMatches(&need, matches)
		if held.contains(&need) && (lockedProfiles == nil || allIn(matchProfiles(matches), lockedProfiles)) {
			return matches, held, nil
		}
		c.locks.unlock(&held)
		if c.remoteLocked(ctx) {
			// The backend's locks stay held until the scope's transaction ends:
			// waiting for a stripe while holding them could deadlock with a
			// goroutine that holds the stripe and waits for them, a cycle the
			// database cannot see. Start the operation over in a new scope.
			return nil, lockSet{}, errRestart
		}
		if err := ctx.Err(); err != nil {
			return nil, lockSet{}, err
		}
	}
}

// matchProfiles returns the profiles of the matches that have one.
func matchProfiles(matches []identity.Match) []identity.ProfileID {
	out := make([]identity.ProfileID, 0, len(matches))
	for _, m := range matches {
		if m.Profile != "" {
			out = append(out, m.Profile)
		}
	}
	return out
}

// allIn reports whether every one of pids is in of.
func allIn(pids, of []identity.ProfileID) bool {
	for _, pid := range pids {
		if !slices.Contains(of, pid) {
			return false
		}
	}
	return true
}

// lockSubject resolves id to its profile and holds the profile's stripe, so the
// caller sees (or changes) the person whole. The caller must unlock the set.
func (c *Controller) lockSubject(ctx context.Context, id identity.ID) (identity.ProfileID, lockSet, error) {
	if err := c.checkOpen(); err != nil {
		return "", lockSet{}, err
	}
	n, err := id.Normalize()
	if err != nil {
		return "", lockSet{}, fieldError("ID", err)
	}
	matches, held, err := c.lockMatches(ctx, []identity.ID{n}, nil)
	if err != nil {
		return "", lockSet{}, err
	}
	if matches[0].Profile == "" {
		c.locks.unlock(&held)
		return "", lockSet{}, fmt.Errorf("%w: no profile has the %s identifier given", ErrNotFound, n.Type)
	}
	return matches[0].Profile, held, nil
}
