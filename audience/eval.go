package audience

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gdprkit/privacy/profile"
)

// State is what the engine keeps per profile: the audiences it is in and, per
// distinct event condition, a counter of the qualifying events. It is what makes
// membership real-time: a collected event updates the counters of one profile and
// its audiences are re-evaluated from them, without reading its history.
type State struct {
	// Audiences the profile is a member of, sorted.
	Audiences []string
	// Counters, sorted by Key, one per distinct event condition. A slice rather
	// than a map: a state is copied twice per collected message (read, then
	// stored), and a slice copies in one allocation.
	Counters []Counter
	// NextChange is the earliest time at which passing time alone can change a
	// membership (an event entering or leaving a window); zero when never.
	NextChange time.Time
}

// Counter counts the events that match one event condition (name and where).
type Counter struct {
	// Key is the event condition without its window and count, canonical.
	Key string
	// Count is the number of matching events ever.
	Count int64
	// Times are the matching events' timestamps, sorted, kept only when a windowed
	// condition uses the counter, and only as far back as the widest such window.
	//
	// They are Unix nanoseconds (saturated at the ends of int64's range), not
	// time.Time: windows are counted on every collected event, and integers
	// compare, copy and garbage-collect far faster.
	Times []int64
}

// Clone returns a deep copy of s. Every counter's timestamps share one backing
// array, each with room for one more, so a clone costs a few allocations however
// many counters there are, and counting the next event does not reallocate.
func (s *State) Clone() *State {
	c := s.cloneCounters()
	c.Audiences = slices.Clone(s.Audiences)
	return c
}

// cloneCounters is Clone sharing Audiences with s: for a caller that replaces
// the memberships rather than changing them in place (Modifier's contract).
func (s *State) cloneCounters() *State {
	c := &State{Audiences: slices.Clip(s.Audiences), NextChange: s.NextChange} // clipped: an append copies
	if s.Counters == nil {
		return c
	}
	c.Counters = make([]Counter, len(s.Counters))
	total := 0
	for _, v := range s.Counters {
		if v.Times != nil {
			total += len(v.Times) + 1
		}
	}
	backing := make([]int64, total)
	for i, v := range s.Counters {
		if v.Times != nil {
			n := copy(backing, v.Times)
			v.Times, backing = backing[:n:n+1], backing[n+1:]
		}
		c.Counters[i] = v
	}
	return c
}

// Counter returns the counter with the key, or a zero Counter and false.
func (s *State) Counter(key string) (Counter, bool) {
	i, ok := s.counterIndex(key)
	if !ok {
		return Counter{}, false
	}
	return s.Counters[i], true
}

func (s *State) counterIndex(key string) (int, bool) {
	return slices.BinarySearchFunc(s.Counters, key, func(c Counter, key string) int { return strings.Compare(c.Key, key) })
}

// counter returns a pointer to the counter with the key, inserting an empty one
// in key order when there is none.
func (s *State) counter(key string) *Counter {
	i, ok := s.counterIndex(key)
	if !ok {
		s.Counters = slices.Insert(s.Counters, i, Counter{Key: key})
	}
	return &s.Counters[i]
}

// IsMember reports whether the state has the audience.
func (s *State) IsMember(key string) bool {
	_, ok := slices.BinarySearch(s.Audiences, key)
	return ok
}

// counterSpec is one distinct event condition (name and where clause).
type counterSpec struct {
	key    string
	name   string
	filter Condition
	// keep is how far back timestamps are needed: the widest window To of the
	// conditions using the counter; zero when none is windowed.
	keep time.Duration
	// newest, when not zero, is how many of the newest timestamps are enough.
	// Only within windows use the counter, and the events inside a window that
	// ends now are always the newest ones, so the newest threshold+1 of them tell
	// every comparison with the threshold exactly. An in_between window needs
	// them all (newest is zero).
	newest  int
	between bool
	idx     int // position in Set.specList
}

// Set is a compiled, validated set of audience definitions, in dependency order
// (an audience comes after the audiences it refers to). It is immutable and safe
// for concurrent use; Add returns a new Set.
type Set struct {
	defs     []Definition
	conds    []Condition
	index    map[string]int
	counters map[string]*counterSpec
	byEvent  map[string][]*counterSpec
	specs    map[*EventCondition]*counterSpec // every event condition's counter
	specList []*counterSpec
	windowed []windowedCondition
	byKey    []int // definition indexes in key order
	// progs are conds compiled for evaluation, with every lookup by name done
	// once here; traitNames are the distinct traits they read, by slot.
	progs      []node
	traitNames []string
	// consentCats are the distinct consent categories they read, by slot.
	consentCats []string
	scratch     sync.Pool
}

// node kinds.
const (
	nodeTrait uint8 = iota
	nodeEvent
	nodeAudience
	nodeAnd
	nodeOr
	nodeNot
	nodeConsent
)

// node is a compiled condition. Evaluating 50 audiences per collected message is
// on the collection path, so nothing in a node is looked up by name: a trait
// condition reads its trait's slot, an event condition its counter's position,
// an audience condition the referenced audience's position.
type node struct {
	kind    uint8
	op      Op
	slot    int // trait slot, counter position or audience position
	operand any
	window  Window
	count   float64
	kids    []node
}

// compile turns c into a node, giving every trait it reads a slot.
func (s *Set) compile(c Condition, slots map[string]int) node {
	switch x := c.(type) {
	case *TraitCondition:
		slot, ok := slots[x.Name]
		if !ok {
			slot = len(s.traitNames)
			slots[x.Name] = slot
			s.traitNames = append(s.traitNames, x.Name)
		}
		return node{kind: nodeTrait, op: x.Op, slot: slot, operand: x.Operand}
	case *ConsentCondition:
		slot := slices.Index(s.consentCats, x.Category)
		if slot < 0 {
			slot = len(s.consentCats)
			s.consentCats = append(s.consentCats, x.Category)
		}
		return node{kind: nodeConsent, op: x.Op, slot: slot, operand: x.Operand}
	case *EventCondition:
		return node{kind: nodeEvent, op: x.Op, slot: s.specs[x].idx, window: x.Window, count: float64(x.Count)}
	case *AudienceCondition:
		return node{kind: nodeAudience, slot: s.index[x.Key]}
	case *AndCondition:
		return node{kind: nodeAnd, kids: s.compileAll(x.Conditions, slots)}
	case *OrCondition:
		return node{kind: nodeOr, kids: s.compileAll(x.Conditions, slots)}
	case *NotCondition:
		return node{kind: nodeNot, kids: []node{s.compile(x.Condition, slots)}}
	}
	panic(fmt.Sprintf("audience: cannot compile condition %T", c)) // Compile admits no other kind
}

func (s *Set) compileAll(cs []Condition, slots map[string]int) []node {
	out := make([]node, len(cs))
	for i, c := range cs {
		out[i] = s.compile(c, slots)
	}
	return out
}

// windowedCondition is an event condition with a time window, and its counter.
type windowedCondition struct {
	ev   *EventCondition
	spec *counterSpec
}

// NewSet compiles definitions into a Set, refusing malformed ones, duplicate keys,
// references to unknown audiences and cycles, with an error matching ErrInvalid.
func NewSet(defs ...Definition) (*Set, error) {
	s := &Set{}
	for _, d := range defs {
		var err error
		if s, err = s.Add(d); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Add returns a Set with d added. The receiver is unchanged.
func (s *Set) Add(d Definition) (*Set, error) {
	cond, err := d.Compile()
	if err != nil {
		return nil, err
	}
	d = Definition{Key: d.Key, Query: cond.String()} // the canonical form is what is kept
	if _, dup := s.index[d.Key]; dup {
		return nil, fmt.Errorf("%w: audience %s is already defined", ErrConflict, d.Key)
	}
	for _, ref := range References(cond) {
		if ref == d.Key {
			return nil, fmt.Errorf("%w: audience %s refers to itself", ErrInvalid, d.Key)
		}
		if _, ok := s.index[ref]; !ok {
			// Definitions only refer to audiences defined before them, which is
			// also why no cycle can form.
			return nil, fmt.Errorf("%w: audience %s refers to audience %s, which is not defined", ErrInvalid, d.Key, ref)
		}
	}
	n := &Set{
		scratch:  sync.Pool{New: func() any { return new(evaluation) }},
		defs:     append(slices.Clip(s.defs), d),
		conds:    append(slices.Clip(s.conds), cond),
		index:    make(map[string]int, len(s.index)+1),
		counters: make(map[string]*counterSpec, len(s.counters)),
		byEvent:  map[string][]*counterSpec{},
		specs:    map[*EventCondition]*counterSpec{},
	}
	for k, i := range s.index {
		n.index[k] = i
	}
	n.index[d.Key] = len(n.defs) - 1
	for _, c := range n.conds {
		n.addCounters(c)
	}
	// Counters sorted by key, like every State's, so Evaluate finds a state's
	// counters in one merge walk.
	slices.SortFunc(n.specList, func(a, b *counterSpec) int { return strings.Compare(a.key, b.key) })
	for i, spec := range n.specList {
		spec.idx = i
	}
	slots := map[string]int{}
	n.progs = make([]node, len(n.conds))
	for i, c := range n.conds {
		n.progs[i] = n.compile(c, slots)
	}
	n.byKey = make([]int, len(n.defs))
	for i := range n.byKey {
		n.byKey[i] = i
	}
	slices.SortFunc(n.byKey, func(a, b int) int { return strings.Compare(n.defs[a].Key, n.defs[b].Key) })
	return n, nil
}

func (s *Set) addCounters(c Condition) {
	walk(c, func(c Condition) {
		ev, ok := c.(*EventCondition)
		if !ok {
			return
		}
		key := counterKey(ev)
		spec := s.counters[key]
		if spec == nil {
			spec = &counterSpec{key: key, name: ev.Name, filter: ev.Filter, idx: len(s.specList)}
			s.specList = append(s.specList, spec)
			s.counters[key] = spec
			s.byEvent[ev.Name] = append(s.byEvent[ev.Name], spec)
		}
		spec.keep = max(spec.keep, ev.Window.To)
		s.specs[ev] = spec
		if !ev.Window.isZero() {
			s.windowed = append(s.windowed, windowedCondition{ev, spec})
			spec.between = spec.between || ev.Window.From > 0
			spec.newest = max(spec.newest, ev.Count+1)
			if spec.between {
				spec.newest = 0
			}
		}
	})
}

func walk(c Condition, fn func(Condition)) {
	fn(c)
	switch x := c.(type) {
	case *AndCondition:
		for _, s := range x.Conditions {
			walk(s, fn)
		}
	case *OrCondition:
		for _, s := range x.Conditions {
			walk(s, fn)
		}
	case *NotCondition:
		walk(x.Condition, fn)
	}
}

// counterKey names the counter an event condition reads: its name and where.
func counterKey(ev *EventCondition) string {
	var b strings.Builder
	fmt.Fprintf(&b, "event(%s)", literal(ev.Name))
	if ev.Filter != nil {
		fmt.Fprintf(&b, ".where(%s)", ev.Filter)
	}
	return b.String()
}

// Len returns the number of audiences.
func (s *Set) Len() int { return len(s.defs) }

// Definitions returns the definitions in dependency order.
func (s *Set) Definitions() []Definition { return slices.Clone(s.defs) }

// Has reports whether an audience has the key.
func (s *Set) Has(key string) bool {
	_, ok := s.index[key]
	return ok
}

// EventNames returns the names of the events some audience counts.
func (s *Set) EventNames() []string {
	names := make([]string, 0, len(s.byEvent))
	for name := range s.byEvent {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// UsesEvents reports whether any audience counts track events of the name,
// so the collection path can skip the audience state for other events.
func (s *Set) UsesEvents(name string) bool { return len(s.byEvent[name]) > 0 }

// Observe counts a collected event into st's counters. It reports whether any
// counter changed. An event stamped after it was received counts as happening
// when it was received: windows are about the past. Only tracks count
// (Type "track", or "" for events stored before types were kept): event('X')
// is Segment's track event X, not a page or screen named X.
func (s *Set) Observe(st *State, e *profile.Event, now time.Time) bool {
	if e.Type != "" && e.Type != "track" {
		return false
	}
	specs := s.byEvent[e.Name]
	changed := false
	for _, spec := range specs {
		if spec.filter != nil && !evalProperties(spec.filter, e.Properties) {
			continue
		}
		c := st.counter(spec.key)
		c.Count++
		if spec.keep > 0 {
			at := e.Timestamp
			if !e.ReceivedAt.IsZero() && at.After(e.ReceivedAt) {
				at = e.ReceivedAt
			}
			ns := nanos(at)
			i, _ := slices.BinarySearch(c.Times, ns)
			c.Times = slices.Insert(c.Times, i, ns)
			c.Times = prune(c.Times, addNanos(nanos(now), -spec.keep))
			if spec.newest > 0 && len(c.Times) > spec.newest {
				c.Times = append(c.Times[:0], c.Times[len(c.Times)-spec.newest:]...)
			}
		}
		changed = true
	}
	return changed
}

// prune drops timestamps before cutoff, which no window can count any more.
func prune(times []int64, cutoff int64) []int64 {
	i, _ := slices.BinarySearch(times, cutoff)
	if i == 0 {
		return times
	}
	return append(times[:0], times[i:]...)
}

// Merge adds the counters of from into into, as when two profiles merge, and
// its memberships: the next Evaluate then reports an exit from an audience
// the merged-away profile was in and the merged one is not, which those told
// of its entry must hear.
func (s *Set) Merge(into, from *State) {
	for _, fc := range from.Counters {
		c := into.counter(fc.Key)
		c.Count += fc.Count
		c.Times = append(c.Times, fc.Times...)
		slices.Sort(c.Times)
	}
	for _, a := range from.Audiences {
		if i, found := slices.BinarySearch(into.Audiences, a); !found {
			into.Audiences = slices.Insert(into.Audiences, i, a)
		}
	}
}

// Change is a profile entering or leaving an audience.
type Change struct {
	Key     string
	Entered bool // false: exited
}

// Evaluate recomputes st's memberships from its counters and the profile's traits
// at now, in dependency order, updates st.Audiences and st.NextChange, and
// returns what changed. With excluded set (a suppressed person) the profile is in
// no audience. Counters no audience uses any more are dropped. Consent
// conditions see no preference collected: EvaluateInputs gives them one.
func (s *Set) Evaluate(st *State, traits map[string]profile.Trait, now time.Time, excluded bool) []Change {
	return s.evaluate(st, Inputs{Traits: traits}, now, excluded)
}

// Inputs is what evaluating a profile's memberships reads besides its
// counters: its traits, either whole (Traits) or only the values of those
// the audiences read, in TraitNames order (Values, when not nil), and its
// consent preferences.
type Inputs struct {
	Traits  map[string]profile.Trait
	Values  []any
	Consent profile.Consent
}

// EvaluateInputs is Evaluate given everything a condition can read.
func (s *Set) EvaluateInputs(st *State, in Inputs, now time.Time, excluded bool) []Change {
	if in.Values != nil && len(in.Values) != len(s.traitNames) {
		panic(fmt.Sprintf("audience: EvaluateInputs got %d values for %d trait names", len(in.Values), len(s.traitNames)))
	}
	return s.evaluate(st, in, now, excluded)
}

// UsesConsent reports whether any audience reads a consent preference, so
// the collection path re-evaluates when a message changes the person's
// consent.
func (s *Set) UsesConsent() bool { return len(s.consentCats) > 0 }

// TraitNames returns the traits the audiences read, in the order
// EvaluateValues takes their values. The caller must not change it.
func (s *Set) TraitNames() []string { return s.traitNames }

// EvaluateValues is Evaluate given the values of the traits the audiences read
// (nil for a missing one), in TraitNames order, instead of every trait: the
// collection path reads just those on each counted event.
func (s *Set) EvaluateValues(st *State, values []any, now time.Time, excluded bool) []Change {
	if len(values) != len(s.traitNames) {
		panic(fmt.Sprintf("audience: EvaluateValues got %d values for %d trait names", len(values), len(s.traitNames)))
	}
	return s.evaluate(st, Inputs{Values: values}, now, excluded)
}

func (s *Set) evaluate(st *State, in Inputs, now time.Time, excluded bool) []Change {
	scratch, _ := s.scratch.Get().(*evaluation)
	if scratch == nil { // the empty Set has no pool constructor
		scratch = new(evaluation)
	}
	defer s.scratch.Put(scratch)
	e := *scratch
	e.init(s, st, in, now)
	*scratch = e // keep grown buffers for next time
	if !excluded {
		for i := range s.progs {
			e.member[i] = e.eval(&s.progs[i])
		}
	}
	// Walk the memberships in key order against st.Audiences (sorted too): the
	// common case, nothing changed, costs no allocation.
	var next []string
	var changes []Change
	j := 0
	for k, i := range s.byKey {
		key := s.defs[i].Key
		for j < len(st.Audiences) && st.Audiences[j] < key {
			changes = append(changes, Change{Key: st.Audiences[j]}) // an audience no longer defined
			j++
		}
		was := j < len(st.Audiences) && st.Audiences[j] == key
		if was {
			j++
		}
		if e.member[i] != was {
			if next == nil {
				next = make([]string, 0, len(s.byKey))
				for _, i2 := range s.byKey[:k] {
					if e.member[i2] {
						next = append(next, s.defs[i2].Key)
					}
				}
			}
			changes = append(changes, Change{Key: key, Entered: e.member[i]})
		}
		if next != nil && e.member[i] {
			next = append(next, key)
		}
	}
	for ; j < len(st.Audiences); j++ {
		changes = append(changes, Change{Key: st.Audiences[j]})
	}
	if changes != nil {
		if next == nil {
			next = []string{}
			for _, i := range s.byKey {
				if e.member[i] {
					next = append(next, s.defs[i].Key)
				}
			}
		}
		if len(next) == 0 {
			next = nil
		}
		st.Audiences = next
		slices.SortFunc(changes, func(a, b Change) int { return strings.Compare(a.Key, b.Key) })
	}
	s.dropUnused(st)
	st.NextChange = time.Time{}
	if !excluded { // time cannot bring an excluded person into an audience
		st.NextChange = s.nextChange(e)
	}
	return changes
}

// evaluation is the working state of one Evaluate: memberships so far and each
// counter fetched once, on the stack for the usual number of audiences.
type evaluation struct {
	now      int64 // Unix nanoseconds
	member   []bool
	counters []Counter
	traits   []any // by slot; nil for a trait the profile lacks
	consent  []any // by slot; nil for a category never collected
}

// init sizes the buffers for s and fetches st's counters. The buffers come from
// the Set's pool, so evaluating does not allocate.
func (e *evaluation) init(s *Set, st *State, in Inputs, now time.Time) {
	e.now = nanos(now)
	if cap(e.member) < len(s.conds) {
		e.member = make([]bool, len(s.conds))
	}
	e.member = e.member[:len(s.conds)]
	clear(e.member)
	e.counters = e.counters[:0]
	// Both lists are sorted by key, so one merge walk finds every counter.
	j := 0
	for _, spec := range s.specList {
		for j < len(st.Counters) && st.Counters[j].Key < spec.key {
			j++
		}
		var c Counter
		if j < len(st.Counters) && st.Counters[j].Key == spec.key {
			c = st.Counters[j]
		}
		e.counters = append(e.counters, c)
	}
	e.consent = e.consent[:0]
	for _, cat := range s.consentCats {
		e.consent = append(e.consent, consentValue(in.Consent, cat))
	}
	e.traits = e.traits[:0]
	if in.Values != nil {
		e.traits = append(e.traits, in.Values...)
		return
	}
	for _, name := range s.traitNames {
		var v any
		if t, ok := in.Traits[name]; ok {
			v = t.Value
		}
		e.traits = append(e.traits, v)
	}
}

// dropUnused removes counters no audience uses any more.
func (s *Set) dropUnused(st *State) {
	// Both lists are sorted by key: one merge walk tells whether any must go.
	j := 0
	for _, c := range st.Counters {
		for j < len(s.specList) && s.specList[j].key < c.Key {
			j++
		}
		if j == len(s.specList) || s.specList[j].key != c.Key {
			st.Counters = slices.DeleteFunc(st.Counters, func(c Counter) bool { return s.counters[c.Key] == nil })
			break
		}
	}
	if len(st.Counters) == 0 {
		st.Counters = nil
	}
}

// diff returns the changes from the sorted old to the sorted new memberships.
func diff(old, next []string) []Change {
	var out []Change
	i, j := 0, 0
	for i < len(old) || j < len(next) {
		switch {
		case j == len(next) || (i < len(old) && old[i] < next[j]):
			out = append(out, Change{Key: old[i]})
			i++
		case i == len(old) || next[j] < old[i]:
			out = append(out, Change{Key: next[j], Entered: true})
			j++
		default:
			i++
			j++
		}
	}
	return out
}

func (e *evaluation) eval(n *node) bool {
	switch n.kind {
	case nodeTrait:
		return n.op.compare(e.traits[n.slot], n.operand)
	case nodeConsent:
		return evalConsent(n, e.consent[n.slot])
	case nodeEvent:
		return n.op.compareCount(float64(count(e.counters[n.slot], n.window, e.now)), n.count)
	case nodeAudience:
		return e.member[n.slot]
	case nodeAnd:
		for i := range n.kids {
			if !e.eval(&n.kids[i]) {
				return false
			}
		}
		return true
	case nodeOr:
		for i := range n.kids {
			if e.eval(&n.kids[i]) {
				return true
			}
		}
		return false
	case nodeNot:
		return !e.eval(&n.kids[0])
	}
	return false
}

// firstAfter returns the index of the first time after bound in sorted times.
func firstAfter(times []int64, bound int64) int {
	lo, hi := 0, len(times) // by hand: sort.Search's closure would make times escape
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if times[mid] > bound {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// count returns how many of the counter's events fall in the window at now: those
// in (now-To, now-From], so an event exactly To old has just left it.
func count(c Counter, w Window, now int64) int64 {
	if w.isZero() {
		return c.Count
	}
	return int64(firstAfter(c.Times, addNanos(now, -w.From)) - firstAfter(c.Times, addNanos(now, -w.To)))
}

// nextChange is the earliest time after now at which an event enters or leaves a
// window some condition counts; zero when none will.
func (s *Set) nextChange(e evaluation) time.Time {
	now := e.now
	next := int64(math.MaxInt64)
	for _, w := range s.windowed {
		ev, times := w.ev, e.counters[w.spec.idx].Times
		// The next to leave is the oldest event still inside; the next to enter is
		// the oldest event not yet old enough (in an in_between window, or a
		// timestamp in the future).
		if i := firstAfter(times, addNanos(now, -ev.Window.To)); i < len(times) {
			if t := addNanos(times[i], ev.Window.To); t > now && t < next {
				next = t
			}
		}
		if i := firstAfter(times, addNanos(now, -ev.Window.From)); i < len(times) {
			if t := addNanos(times[i], ev.Window.From); t > now && t < next {
				next = t
			}
		}
	}
	if next == math.MaxInt64 {
		return time.Time{}
	}
	return time.Unix(0, next).UTC()
}

// The range of Unix nanoseconds an int64 holds; times beyond it saturate.
var (
	minNanosTime = time.Unix(0, math.MinInt64)
	maxNanosTime = time.Unix(0, math.MaxInt64)
)

// nanos returns t in Unix nanoseconds, saturated at the ends of int64's range.
func nanos(t time.Time) int64 {
	switch {
	case t.Before(minNanosTime):
		return math.MinInt64
	case t.After(maxNanosTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// addNanos returns t+d, saturated at the ends of int64's range.
func addNanos(t int64, d time.Duration) int64 {
	sum := t + int64(d)
	switch {
	case d > 0 && sum < t:
		return math.MaxInt64
	case d < 0 && sum > t:
		return math.MinInt64
	}
	return sum
}

// evalProperties evaluates a where clause against an event's properties.
func evalProperties(c Condition, props map[string]any) bool {
	switch x := c.(type) {
	case *PropertyCondition:
		return x.Op.compare(props[x.Name], x.Operand)
	case *AndCondition:
		for _, sub := range x.Conditions {
			if !evalProperties(sub, props) {
				return false
			}
		}
		return true
	case *OrCondition:
		for _, sub := range x.Conditions {
			if evalProperties(sub, props) {
				return true
			}
		}
		return false
	case *NotCondition:
		return !evalProperties(x.Condition, props)
	}
	return false
}
