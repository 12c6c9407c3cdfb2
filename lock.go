package privacy

import (
	"hash/maphash"
	"slices"
	"sync"

	"github.com/gdprkit/privacy/identity"
)

// lockStripes is the number of mutexes subjects hash onto. Two subjects sharing a
// stripe only wait for each other; correctness does not depend on the count.
const lockStripes = 4096

// subjectLocks is the per-subject lock of DESIGN.md: collection, reads and rights
// on one person serialise on the stripes of the person's profile and identifiers.
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
