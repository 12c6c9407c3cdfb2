package identity

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"time"
)

// Window is the period a per-type limit counts identifiers over.
type Window int

// The windows of Segment's identity resolution settings.
const (
	Ever Window = iota
	Weekly
	Monthly
	Annually
)

// String names the window as Segment does.
func (w Window) String() string {
	switch w {
	case Ever:
		return "ever"
	case Weekly:
		return "weekly"
	case Monthly:
		return "monthly"
	case Annually:
		return "annually"
	}
	return fmt.Sprintf("Window(%d)", int(w))
}

// since returns the earliest link time that still counts at now.
func (w Window) since(now time.Time) time.Time {
	switch w {
	case Weekly:
		return now.AddDate(0, 0, -7)
	case Monthly:
		return now.AddDate(0, -1, 0)
	case Annually:
		return now.AddDate(-1, 0, 0)
	}
	return time.Time{}
}

// Limit caps how many identifiers of one type a profile may hold, counting those
// linked within the window.
type Limit struct {
	Max    int
	Window Window
}

// Block names identifier values that are never used for resolution: an exact value
// (compared case-insensitively) or a regular expression over the whole value. Type
// restricts the block to one identifier type; empty means every type.
type Block struct {
	Type    string
	Value   string
	Pattern string
}

// Rules are the identity resolution settings. The zero value is not useful; start
// from DefaultRules and change what you need.
type Rules struct {
	// Blocked values are dropped from a message's identifiers (or refuse
	// it, without DropBlocked).
	Blocked []Block
	// DropBlocked makes a blocked identifier be ignored, as Segment does ("these
	// values remain in the payload on the event itself"), instead of refusing
	// the whole message; DefaultRules sets it. A message left with no
	// identifier is still refused. Unset, a blocked value refuses the message:
	// the strict behaviour, for hosts that want to hear of every one.
	DropBlocked bool
	// Limits per identifier type; types not listed get DefaultLimit.
	Limits       map[string]Limit
	DefaultLimit Limit
	// Priority lists identifier types from the most to the least trusted; types not
	// listed follow, alphabetically. When linking would break a limit, the
	// lowest-priority identifier on the message is dropped and matching is retried.
	Priority []string
	// MaxMerges and MaxIdentifiers are hard caps per profile: past them a profile
	// takes no new merges or identifiers, but messages still resolve to it.
	MaxMerges      int
	MaxIdentifiers int
	// Custom lists identifiers taken from a trait or an event property, as
	// Segment's custom identifiers are: beside the top-level ids,
	// traits.email, context.traits.email, context.externalIds and the
	// device ids, which are always taken, a value is an identifier only
	// when configured here.
	Custom []CustomID
	// AliasLinks lists the identifier types an alias call's previousId is
	// taken as, beside its userId, so that it links (and merges, under the
	// limits and priority above) the profiles they name: "anonymous_id",
	// say, for a client that aliases the anonymous id it had to the user id
	// it now has. Empty by default: as in Segment Unify, an alias merges
	// nothing and only goes on to destinations. user_id cannot be listed
	// (the alias names one already). Like an identify naming a user id and
	// an anonymous id, a linking alias trusts its sender: collect it from
	// authenticated sources only.
	AliasLinks []string
}

// CustomID takes the identifier Type from a message's Trait (an identify's
// or a group's traits) or Property (the properties of a track, page or
// screen): a string value, or a number written as an integer. Set one of
// Trait and Property.
type CustomID struct {
	Type     string
	Trait    string
	Property string
}

// DefaultRules returns Segment's defaults: the suggested blocked values
// (`^[0-]*$`, "-1", "null", "anonymous"), dropped from a message's
// identifiers (DropBlocked), a limit of one user_id ever and five of
// every other type ever, priority user_id then email then alphabetical, and caps of
// 100 merges and 1,000 identifiers per profile.
func DefaultRules() Rules {
	return Rules{
		Blocked: []Block{
			{Pattern: `^[0-]*$`},
			{Value: "-1"},
			{Value: "null"},
			{Value: "anonymous"},
		},
		DropBlocked:    true,
		Limits:         map[string]Limit{TypeUserID: {Max: 1, Window: Ever}},
		DefaultLimit:   Limit{Max: 5, Window: Ever},
		Priority:       []string{TypeUserID, TypeEmail},
		MaxMerges:      100,
		MaxIdentifiers: 1000,
	}
}

// compiledRules is Rules validated and prepared for the hot path.
type compiledRules struct {
	Rules
	blocks   []compiledBlock
	priority map[string]int
	// traitIDs and propertyIDs map a trait or property key to the
	// identifier types taken from it (Custom).
	traitIDs, propertyIDs map[string][]string
}

type compiledBlock struct {
	typ     string
	value   string
	re      *regexp.Regexp
	charset func(rune) bool // set when the pattern is ^[class]*$, which is matched without the regexp engine
}

func compileRules(r Rules) (*compiledRules, error) {
	c := &compiledRules{Rules: r, priority: make(map[string]int, len(r.Priority))}
	c.Blocked = slices.Clone(r.Blocked) // the resolver keeps its own copy
	if r.DefaultLimit.Max < 1 {
		return nil, fmt.Errorf("%w: rules: DefaultLimit.Max is %d, want at least 1", ErrInvalid, r.DefaultLimit.Max)
	}
	c.Limits = make(map[string]Limit, len(r.Limits))
	for typ, l := range r.Limits {
		t, err := normalizeType(typ)
		if err != nil {
			return nil, fmt.Errorf("rules: limit: %w", err)
		}
		if l.Max < 1 {
			return nil, fmt.Errorf("%w: rules: limit for %s is %d, want at least 1", ErrInvalid, t, l.Max)
		}
		if l.Window < Ever || l.Window > Annually {
			return nil, fmt.Errorf("%w: rules: limit for %s has unknown window %d", ErrInvalid, t, int(l.Window))
		}
		c.Limits[t] = l
	}
	if r.MaxMerges < 1 || r.MaxIdentifiers < 1 {
		return nil, fmt.Errorf("%w: rules: MaxMerges and MaxIdentifiers must be at least 1 (have %d and %d)", ErrInvalid, r.MaxMerges, r.MaxIdentifiers)
	}
	c.Priority = nil
	for _, typ := range r.Priority {
		t, err := normalizeType(typ)
		if err != nil {
			return nil, fmt.Errorf("rules: priority: %w", err)
		}
		if _, dup := c.priority[t]; dup {
			return nil, fmt.Errorf("%w: rules: priority lists %s twice", ErrInvalid, t)
		}
		c.priority[t] = len(c.Priority)
		c.Priority = append(c.Priority, t)
	}
	c.Custom = nil
	for i, cu := range r.Custom {
		t, err := normalizeType(cu.Type)
		if err != nil {
			return nil, fmt.Errorf("rules: custom[%d]: %w", i, err)
		}
		var m *map[string][]string
		key := cu.Trait
		switch {
		case (cu.Trait == "") == (cu.Property == ""):
			return nil, fmt.Errorf("%w: rules: custom[%d] (%s): set one of Trait and Property", ErrInvalid, i, t)
		case cu.Trait != "":
			m = &c.traitIDs
		default:
			m, key = &c.propertyIDs, cu.Property
		}
		if *m == nil {
			*m = map[string][]string{}
		}
		if slices.Contains((*m)[key], t) {
			return nil, fmt.Errorf("%w: rules: custom[%d] takes %s from %q twice", ErrInvalid, i, t, key)
		}
		(*m)[key] = append((*m)[key], t)
		c.Custom = append(c.Custom, CustomID{Type: t, Trait: cu.Trait, Property: cu.Property})
	}
	c.AliasLinks = nil
	for i, typ := range r.AliasLinks {
		t, err := normalizeType(typ)
		if err != nil {
			return nil, fmt.Errorf("rules: alias links[%d]: %w", i, err)
		}
		if slices.Contains(c.AliasLinks, t) {
			return nil, fmt.Errorf("%w: rules: alias links list %s twice", ErrInvalid, t)
		}
		if t == TypeUserID {
			// The alias's own userId is one; with the user_id limit, the
			// previous one would take its place, or be dropped.
			return nil, fmt.Errorf("%w: rules: alias links cannot list %s: an alias already names the user id", ErrInvalid, t)
		}
		c.AliasLinks = append(c.AliasLinks, t)
	}
	for i, b := range r.Blocked {
		cb := compiledBlock{value: b.Value}
		if b.Type != "" {
			t, err := normalizeType(b.Type)
			if err != nil {
				return nil, fmt.Errorf("rules: blocked[%d]: %w", i, err)
			}
			cb.typ = t
		}
		switch {
		case b.Value != "" && b.Pattern != "":
			return nil, fmt.Errorf("%w: rules: blocked[%d] sets both Value and Pattern", ErrInvalid, i)
		case b.Value == "" && b.Pattern == "":
			return nil, fmt.Errorf("%w: rules: blocked[%d] sets neither Value nor Pattern", ErrInvalid, i)
		case b.Pattern != "":
			re, err := regexp.Compile(b.Pattern)
			if err != nil {
				return nil, fmt.Errorf("%w: rules: blocked[%d]: %v", ErrInvalid, i, err)
			}
			cb.re = re
			cb.charset = charsetOnly(b.Pattern)
		}
		c.blocks = append(c.blocks, cb)
	}
	return c, nil
}

// charsetOnly recognises patterns of the form ^[class]*$ (such as Segment's
// suggested ^[0-]*$) and returns a membership test for the class, so the check runs
// without the regexp engine on the collection path. It returns nil otherwise.
func charsetOnly(pattern string) func(rune) bool {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil
	}
	re = re.Simplify()
	if re.Op != syntax.OpConcat || len(re.Sub) != 3 ||
		re.Sub[0].Op != syntax.OpBeginText || re.Sub[2].Op != syntax.OpEndText ||
		re.Sub[1].Op != syntax.OpStar || re.Sub[1].Sub[0].Op != syntax.OpCharClass {
		return nil
	}
	ranges := slices.Clone(re.Sub[1].Sub[0].Rune)
	return func(r rune) bool {
		for i := 0; i+1 < len(ranges); i += 2 {
			if ranges[i] <= r && r <= ranges[i+1] {
				return true
			}
		}
		return false
	}
}

func (b *compiledBlock) matches(id ID) bool {
	if b.typ != "" && b.typ != id.Type {
		return false
	}
	switch {
	case b.charset != nil:
		for _, r := range id.Value {
			if !b.charset(r) {
				return false
			}
		}
		return true
	case b.re != nil:
		return b.re.MatchString(id.Value)
	}
	return strings.EqualFold(b.value, id.Value)
}

// blocked reports whether rules block id, and which rule did.
func (c *compiledRules) blocked(id ID) (int, Block, bool) {
	for i := range c.blocks {
		if c.blocks[i].matches(id) {
			return i, c.Rules.Blocked[i], true
		}
	}
	return -1, Block{}, false
}

func (c *compiledRules) limit(typ string) Limit {
	if l, ok := c.Limits[typ]; ok {
		return l
	}
	return c.DefaultLimit
}

// less orders identifiers by priority: listed types first in their order, then the
// rest alphabetically by type, then by value so the order is total.
func (c *compiledRules) less(a, b ID) int {
	pa, oka := c.priority[a.Type]
	pb, okb := c.priority[b.Type]
	switch {
	case oka && okb && pa != pb:
		return pa - pb
	case oka && !okb:
		return -1
	case !oka && okb:
		return 1
	}
	if a.Type != b.Type {
		return strings.Compare(a.Type, b.Type)
	}
	return strings.Compare(a.Value, b.Value)
}
