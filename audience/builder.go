package audience

import "time"

// TraitRef starts a trait condition in Go: audience.Trait("plan").Eq("pro").
type TraitRef string

// Trait names a profile trait for a condition.
func Trait(name string) TraitRef { return TraitRef(name) }

func (t TraitRef) cond(op Op, v any) *TraitCondition {
	return &TraitCondition{Name: string(t), Op: op, Operand: number(v)}
}

// Eq is trait(name) = v.
func (t TraitRef) Eq(v any) Condition { return t.cond(Eq, v) }

// Ne is trait(name) != v.
func (t TraitRef) Ne(v any) Condition { return t.cond(Ne, v) }

// Lt is trait(name) < v.
func (t TraitRef) Lt(v any) Condition { return t.cond(Lt, v) }

// Le is trait(name) <= v.
func (t TraitRef) Le(v any) Condition { return t.cond(Le, v) }

// Gt is trait(name) > v.
func (t TraitRef) Gt(v any) Condition { return t.cond(Gt, v) }

// Ge is trait(name) >= v.
func (t TraitRef) Ge(v any) Condition { return t.cond(Ge, v) }

// Contains is trait(name) contains s.
func (t TraitRef) Contains(s string) Condition { return t.cond(Contains, s) }

// Exists is trait(name) exists.
func (t TraitRef) Exists() Condition { return t.cond(Exists, nil) }

// PropertyRef starts a property condition for Event(...).Where.
type PropertyRef string

// Property names an event property for a where condition.
func Property(name string) PropertyRef { return PropertyRef(name) }

func (p PropertyRef) cond(op Op, v any) *PropertyCondition {
	return &PropertyCondition{Name: string(p), Op: op, Operand: number(v)}
}

// Eq is property(name) = v.
func (p PropertyRef) Eq(v any) Condition { return p.cond(Eq, v) }

// Ne is property(name) != v.
func (p PropertyRef) Ne(v any) Condition { return p.cond(Ne, v) }

// Lt is property(name) < v.
func (p PropertyRef) Lt(v any) Condition { return p.cond(Lt, v) }

// Le is property(name) <= v.
func (p PropertyRef) Le(v any) Condition { return p.cond(Le, v) }

// Gt is property(name) > v.
func (p PropertyRef) Gt(v any) Condition { return p.cond(Gt, v) }

// Ge is property(name) >= v.
func (p PropertyRef) Ge(v any) Condition { return p.cond(Ge, v) }

// Contains is property(name) contains s.
func (p PropertyRef) Contains(s string) Condition { return p.cond(Contains, s) }

// Exists is property(name) exists.
func (p PropertyRef) Exists() Condition { return p.cond(Exists, nil) }

// Event starts an event condition: at least one event of the name, until Count
// says otherwise.
func Event(name string) *EventCondition { return &EventCondition{Name: name, Op: Ge, Count: 1} }

// Where filters the events counted by their properties.
func (c *EventCondition) Where(w Condition) *EventCondition { c.Filter = w; return c }

// Within counts only events of the last d.
func (c *EventCondition) Within(d time.Duration) *EventCondition {
	c.Window = Window{To: d}
	return c
}

// InBetween counts only events between to and from ago (from < to).
func (c *EventCondition) InBetween(from, to time.Duration) *EventCondition {
	c.Window = Window{From: from, To: to, Between: true}
	return c
}

// CountIs compares the number of events counted with n.
func (c *EventCondition) CountIs(op Op, n int) *EventCondition {
	c.Op, c.Count = op, n
	return c
}

// InAudience is membership of the audience with the key.
func InAudience(key string) Condition { return &AudienceCondition{Key: key} }

// And holds when all of cs hold.
func And(cs ...Condition) Condition { return &AndCondition{Conditions: cs} }

// Or holds when any of cs holds.
func Or(cs ...Condition) Condition { return &OrCondition{Conditions: cs} }

// Not holds when c does not.
func Not(c Condition) Condition { return &NotCondition{Condition: c} }

// number turns Go numbers into the float64 the query language compares.
func number(v any) any {
	switch x := v.(type) {
	case int:
		return float64(x)
	case int8:
		return float64(x)
	case int16:
		return float64(x)
	case int32:
		return float64(x)
	case int64:
		return float64(x)
	case uint:
		return float64(x)
	case uint8:
		return float64(x)
	case uint16:
		return float64(x)
	case uint32:
		return float64(x)
	case uint64:
		return float64(x)
	case float32:
		return float64(x)
	}
	return v
}
