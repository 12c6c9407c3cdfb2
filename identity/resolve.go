package identity

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Resolver applies the identity resolution rules. It is the portable layer: it
// reads any Graph and plans the writes, so every backend resolves identically.
// A Resolver is immutable and safe for concurrent use.
type Resolver struct {
	rules *compiledRules
}

// NewResolver validates the rules and returns a Resolver for them, or an error
// matching ErrInvalid that names the faulty rule.
func NewResolver(r Rules) (*Resolver, error) {
	c, err := compileRules(r)
	if err != nil {
		return nil, err
	}
	return &Resolver{rules: c}, nil
}

// Rules returns a copy of the (normalised) rules the resolver applies.
func (r *Resolver) Rules() Rules {
	c := r.rules.Rules
	c.Blocked = slices.Clone(c.Blocked)
	c.Limits = maps.Clone(c.Limits)
	c.Priority = slices.Clone(c.Priority)
	c.Custom = slices.Clone(c.Custom)
	c.AliasLinks = slices.Clone(c.AliasLinks)
	return c
}

// AliasLinks returns the identifier types an alias's previousId is taken
// as (Rules.AliasLinks). The slice is the resolver's: do not change it.
func (r *Resolver) AliasLinks() []string { return r.rules.AliasLinks }

// DropBlocked reports whether blocked identifiers are dropped rather than refused.
func (r *Resolver) DropBlocked() bool { return r.rules.DropBlocked }

// TraitIDs returns the identifier types the rules take from the trait key
// (Rules.Custom), or nil. The slice is the resolver's: do not change it.
func (r *Resolver) TraitIDs(key string) []string { return r.rules.traitIDs[key] }

// PropertyIDs returns the identifier types the rules take from the event
// property key (Rules.Custom), or nil. The slice is the resolver's: do not
// change it.
func (r *Resolver) PropertyIDs(key string) []string { return r.rules.propertyIDs[key] }

// HasCustom reports whether the rules take identifiers from traits or
// properties beyond Segment's defaults.
func (r *Resolver) HasCustom() bool { return len(r.rules.Custom) > 0 }

// Check normalises id and applies the blocked values. A blocked identifier gets an
// error matching ErrBlocked (and so ErrInvalid) that names the rule.
func (r *Resolver) Check(id ID) (ID, error) {
	n, err := id.Normalize()
	if err != nil {
		return ID{}, err
	}
	if i, b, blocked := r.rules.blocked(n); blocked {
		// Named by its place, and its pattern, which is configuration: an
		// exact value may be someone's identifier, which an error's text
		// must not quote.
		rule := fmt.Sprintf("Blocked[%d]", i)
		if b.Pattern != "" {
			rule += " " + b.Pattern
		}
		return ID{}, fmt.Errorf("%w: identifier %s: value is blocked by rule %s", ErrBlocked, n.Type, rule)
	}
	return n, nil
}

// Order sorts ids from the highest to the lowest priority and removes duplicates.
func (r *Resolver) Order(ids []ID) []ID {
	if len(ids) > 1 {
		slices.SortFunc(ids, r.rules.less)
		ids = slices.Compact(ids)
	}
	return ids
}

// Match is one identifier of a message and the profile it is linked to ("" when
// it is not linked yet).
type Match struct {
	ID      ID
	Profile ProfileID
}

// Plan is what resolving one message decided: the profile it belongs to and the
// writes that make the graph say so. Apply carries them out.
type Plan struct {
	// Profile is the profile the message resolves to.
	Profile ProfileID
	// Create is set when Profile is new.
	Create bool
	// Absorb lists profiles merged into Profile, oldest first.
	Absorb []ProfileID
	// Link lists identifiers to link to Profile.
	Link []ID
	// Dropped lists identifiers the limits or caps kept from being linked.
	Dropped []ID
	// Capped is set when a hard cap (merges or identifiers) stopped a merge or link.
	Capped bool
}

// Writes reports whether applying the plan changes the graph.
func (p *Plan) Writes() bool { return p.Create || len(p.Absorb) > 0 || len(p.Link) > 0 }

// Resolve decides which profile the message with these matches (highest priority
// first, as Order sorts them) belongs to, following Segment's rules: no match
// creates a profile, one joins it, several merge into the oldest. When linking or
// merging would break a per-type limit, the lowest-priority identifier is dropped
// and matching is retried. Past the hard caps nothing is merged or linked, but the
// message still resolves to the profile of its highest-priority match.
//
// Resolve only reads rd; the caller must keep the matched profiles from changing
// until the plan is applied (the Controller holds their locks).
func (r *Resolver) Resolve(ctx context.Context, rd Reader, matches []Match, now time.Time) (Plan, error) {
	if len(matches) == 0 {
		return Plan{}, fmt.Errorf("%w: a message needs at least one identifier", ErrInvalid)
	}
	// Fast path: every identifier is already linked to the same profile.
	if pid := matches[0].Profile; pid != "" {
		same := true
		for _, m := range matches[1:] {
			if m.Profile != pid {
				same = false
				break
			}
		}
		if same {
			return Plan{Profile: pid}, nil
		}
	}

	var plan Plan
	nodes := map[ProfileID]*Node{}
	active := slices.Clone(matches)
	for ; ; active = active[:len(active)-1] {
		if len(active) < len(matches) {
			plan.Dropped = append(plan.Dropped, matches[len(active)].ID)
		}
		var profiles []*Node
		var fresh []ID
		for _, m := range active {
			if m.Profile == "" {
				fresh = append(fresh, m.ID)
				continue
			}
			n, ok := nodes[m.Profile]
			if !ok {
				var err error
				if n, err = rd.Node(ctx, m.Profile); err != nil {
					return Plan{}, fmt.Errorf("identity: reading profile %s: %w", m.Profile, err)
				}
				nodes[m.Profile] = n
			}
			if !slices.Contains(profiles, n) {
				profiles = append(profiles, n)
			}
		}
		if len(active) > 1 && r.breaksLimit(profiles, fresh, now) {
			continue
		}
		switch len(profiles) {
		case 0:
			plan.Profile, plan.Create = NewProfileID(now), true
			plan.Link = r.capLinks(&plan, 0, fresh)
			return plan, nil
		case 1:
			plan.Profile = profiles[0].ID
			plan.Link = r.capLinks(&plan, len(profiles[0].Links), fresh)
			return plan, nil
		}
		merges, links := len(profiles)-1, 0
		for _, n := range profiles {
			merges += len(n.Merges)
			links += len(n.Links)
		}
		if merges > r.rules.MaxMerges || links > r.rules.MaxIdentifiers {
			plan.Profile, plan.Capped = profiles[0].ID, true
			plan.Dropped = append(plan.Dropped, fresh...)
			return plan, nil
		}
		oldest := slices.Clone(profiles)
		slices.SortFunc(oldest, func(a, b *Node) int {
			if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
				return c
			}
			return cmpProfileID(a.ID, b.ID)
		})
		plan.Profile = oldest[0].ID
		for _, n := range oldest[1:] {
			plan.Absorb = append(plan.Absorb, n.ID)
		}
		plan.Link = r.capLinks(&plan, links, fresh)
		return plan, nil
	}
}

func cmpProfileID(a, b ProfileID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// capLinks returns the fresh identifiers that fit under MaxIdentifiers beside the
// have already linked, marking the rest as dropped.
func (r *Resolver) capLinks(plan *Plan, have int, fresh []ID) []ID {
	room := r.rules.MaxIdentifiers - have
	if room >= len(fresh) {
		return fresh
	}
	room = max(room, 0)
	plan.Capped = true
	plan.Dropped = append(plan.Dropped, fresh[room:]...)
	return fresh[:room]
}

// breaksLimit reports whether joining the profiles and linking fresh identifiers
// would leave a type with more identifiers within its window than its limit, and
// more than any one of the profiles already had (so a profile that predates
// stricter rules can still take other identifiers).
func (r *Resolver) breaksLimit(profiles []*Node, fresh []ID, now time.Time) bool {
	if len(profiles)+len(fresh) < 2 && len(fresh) <= 1 {
		return false
	}
	type count struct{ total, most int }
	counts := map[string]*count{}
	get := func(typ string) *count {
		c := counts[typ]
		if c == nil {
			c = &count{}
			counts[typ] = c
		}
		return c
	}
	own := map[string]int{}
	for _, n := range profiles {
		clear(own)
		for _, l := range n.Links {
			if !l.LinkedAt.Before(r.rules.limit(l.ID.Type).Window.since(now)) {
				own[l.ID.Type]++
			}
		}
		for typ, k := range own {
			c := get(typ)
			c.total += k
			c.most = max(c.most, k)
		}
	}
	for _, id := range fresh {
		get(id.Type).total++
	}
	for typ, c := range counts {
		if c.total > r.rules.limit(typ).Max && c.total > c.most {
			return true
		}
	}
	return false
}

// linkReserver is a Tx that can make room for a profile's links ahead of
// them (the in-memory graph's): a new person's identifiers then share one
// allocation rather than a slice grown link by link.
type linkReserver interface {
	reserveLinks(pid ProfileID, n int)
}

// Apply carries the plan out in tx: it creates the profile, merges the absorbed
// profiles into it and links the new identifiers, each write stamped with now and
// the message id. Every step is an idempotent redo, so applying it twice is safe.
func (p *Plan) Apply(ctx context.Context, tx Tx, now time.Time, messageID string) error {
	if p.Create {
		if err := tx.Create(ctx, p.Profile, now); err != nil {
			return fmt.Errorf("identity: creating profile %s: %w", p.Profile, err)
		}
	}
	for _, from := range p.Absorb {
		if err := tx.Merge(ctx, p.Profile, Merge{From: from, At: now, MessageID: messageID}); err != nil {
			return fmt.Errorf("identity: merging profile %s into %s: %w", from, p.Profile, err)
		}
	}
	if r, ok := tx.(linkReserver); ok && len(p.Link) > 1 {
		r.reserveLinks(p.Profile, len(p.Link))
	}
	for _, id := range p.Link {
		if err := tx.Link(ctx, p.Profile, Link{ID: id, LinkedAt: now, MessageID: messageID}); err != nil {
			return fmt.Errorf("identity: linking %s to %s: %w", id, p.Profile, err)
		}
	}
	return nil
}
