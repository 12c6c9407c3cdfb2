package audience

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gdprkit/privacy/profile"
)

// Condition is one node of an audience's condition tree. Parse builds one from a
// query; the builder functions (Trait, Event, InAudience, And, Or, Not) build the
// same trees in Go. String renders a condition back in the query language, so
// Parse(c.String()) gives an equal tree.
type Condition interface {
	fmt.Stringer
	// validate checks the node and its children.
	validate() error
}

// Op is a comparison operator.
type Op string

// Comparison operators. The ordered ones (<, <=, >, >=) take numbers.
const (
	Eq       Op = "="
	Ne       Op = "!="
	Lt       Op = "<"
	Le       Op = "<="
	Gt       Op = ">"
	Ge       Op = ">="
	Contains Op = "contains"
	Exists   Op = "exists"
)

// compare applies op to a value (nil when absent) and the operand.
func (op Op) compare(v, operand any) bool {
	switch op {
	case Exists:
		return v != nil
	case Eq:
		return v != nil && equal(v, operand)
	case Ne:
		return v == nil || !equal(v, operand)
	case Contains:
		s, ok1 := v.(string)
		sub, ok2 := operand.(string)
		return ok1 && ok2 && strings.Contains(s, sub)
	}
	a, ok1 := profile.NumberFloat(v) // a number kept exactly compares as its nearest float64
	b, ok2 := operand.(float64)
	return ok1 && ok2 && op.compareCount(a, b) // Lt, Le, Gt or Ge here
}

// compareCount compares two numbers: an event count and its threshold, without
// boxing, or the numeric cases of compare.
func (op Op) compareCount(a, b float64) bool {
	switch op {
	case Eq:
		return a == b
	case Ne:
		return a != b
	case Lt:
		return a < b
	case Le:
		return a <= b
	case Gt:
		return a > b
	case Ge:
		return a >= b
	}
	return false
}

func equal(a, b any) bool {
	switch x := a.(type) {
	case string, float64, bool:
		return a == b
	case json.Number: // the query's numbers are float64s: compared as the nearest
		f, ok := profile.NumberFloat(x)
		return ok && f == b
	case []any: // a list trait equals a value it contains, as Segment's list traits do
		for _, e := range x {
			if equal(e, b) {
				return true
			}
		}
	}
	return false
}

func checkOperand(what string, op Op, operand any) error {
	switch op {
	case Exists:
		if operand != nil {
			return fmt.Errorf("%s exists takes no operand", what)
		}
		return nil
	case Eq, Ne:
		switch operand.(type) {
		case string, float64, bool:
			return nil
		}
		return fmt.Errorf("%s %s needs a string, number or boolean, not %s", what, op, typeName(operand))
	case Contains:
		if _, ok := operand.(string); !ok {
			return fmt.Errorf("type mismatch: %s contains needs a string, not %s", what, typeName(operand))
		}
		return nil
	case Lt, Le, Gt, Ge:
		if _, ok := operand.(float64); !ok {
			return fmt.Errorf("type mismatch: %s %s needs a number, not %s", what, op, typeName(operand))
		}
		return nil
	}
	return fmt.Errorf("unknown operator %q", string(op))
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "nothing"
	}
	return fmt.Sprintf("a %T", v)
}

func literal(v any) string {
	switch x := v.(type) {
	case string:
		return "'" + strings.ReplaceAll(strings.ReplaceAll(x, `\`, `\\`), "'", `\'`) + "'"
	case float64:
		// Plain decimal: the query language has no exponent notation.
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	return fmt.Sprint(v)
}

// TraitCondition compares a profile trait: trait('plan') = 'pro'.
type TraitCondition struct {
	Name    string
	Op      Op
	Operand any // string, float64 or bool; nil for Exists
}

// String renders the condition in the query language.
func (c *TraitCondition) String() string {
	return comparisonString("trait", c.Name, c.Op, c.Operand)
}

func (c *TraitCondition) validate() error {
	return validateComparison("trait", c.Name, c.Op, c.Operand)
}

// PropertyCondition compares an event property inside where(...).
type PropertyCondition struct {
	Name    string
	Op      Op
	Operand any
}

// String renders the condition in the query language.
func (c *PropertyCondition) String() string {
	return comparisonString("property", c.Name, c.Op, c.Operand)
}

func (c *PropertyCondition) validate() error {
	return validateComparison("property", c.Name, c.Op, c.Operand)
}

// comparisonString renders a trait or a property comparison, which differ only
// in fn, the function that names the value compared: trait('plan') = 'pro'.
func comparisonString(fn, name string, op Op, operand any) string {
	if op == Exists {
		return fmt.Sprintf("%s(%s) exists", fn, literal(name))
	}
	return fmt.Sprintf("%s(%s) %s %s", fn, literal(name), op, literal(operand))
}

// validateComparison checks a trait or a property comparison, fn naming which,
// as comparisonString renders them.
func validateComparison(fn, name string, op Op, operand any) error {
	if name == "" {
		return fmt.Errorf("%s name is empty", fn)
	}
	return checkOperand(fmt.Sprintf("%s(%s)", fn, literal(name)), op, operand)
}

// Window bounds the events an EventCondition counts, relative to the time of
// evaluation: within(N days) is From 0, To N days; in_between(a, b) is From a, To
// b. The zero Window counts every event.
type Window struct {
	From, To time.Duration
	// Between marks an in_between window (From may be 0 in either form).
	Between bool
}

func (w Window) isZero() bool { return w == Window{} }

// String renders the window as the method it is written with.
func (w Window) String() string {
	if w.Between {
		return fmt.Sprintf(".in_between(%s, %s)", durationLiteral(w.From), durationLiteral(w.To))
	}
	return fmt.Sprintf(".within(%s)", durationLiteral(w.To))
}

func durationLiteral(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return fmt.Sprintf("%d hours", d/time.Hour)
}

// EventCondition counts the profile's events of one name, optionally filtered by
// properties and a time window, and compares the count:
// event('Order Completed').where(property('total') >= 100).within(30 days).count() >= 2.
// Without .count(), the condition is count >= 1.
type EventCondition struct {
	Name   string
	Filter Condition // the where(...) clause: PropertyConditions, And, Or, Not; nil for none
	Window Window
	Op     Op // Eq, Ne, Lt, Le, Gt or Ge
	Count  int
}

// String renders the condition in the query language.
func (c *EventCondition) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "event(%s)", literal(c.Name))
	if c.Filter != nil {
		fmt.Fprintf(&b, ".where(%s)", c.Filter)
	}
	if !c.Window.isZero() {
		b.WriteString(c.Window.String())
	}
	fmt.Fprintf(&b, ".count() %s %d", c.Op, c.Count)
	return b.String()
}

func (c *EventCondition) validate() error {
	if c.Name == "" {
		return fmt.Errorf("event name is empty")
	}
	switch c.Op {
	case Eq, Ne, Lt, Le, Gt, Ge:
	default:
		return fmt.Errorf("count() cannot be compared with %q", string(c.Op))
	}
	if c.Count < 0 {
		return fmt.Errorf("count() is compared with %d, which is negative", c.Count)
	}
	if w := c.Window; !w.isZero() {
		if w.From < 0 || w.To <= w.From || (w.From != 0 && !w.Between) {
			return fmt.Errorf("time window from %v to %v ago is empty or negative", w.From, w.To)
		}
		// The query language counts whole days or hours: anything finer would be
		// rounded away when the tree is rendered.
		if w.From%time.Hour != 0 || w.To%time.Hour != 0 {
			return fmt.Errorf("time window from %v to %v ago is not in whole hours", w.From, w.To)
		}
	}
	if c.Filter != nil {
		if err := validateWhere(c.Filter); err != nil {
			return err
		}
	}
	return nil
}

// validateWhere checks that a where clause holds only property conditions.
func validateWhere(c Condition) error {
	switch x := c.(type) {
	case *PropertyCondition:
		return x.validate()
	case *AndCondition:
		for _, s := range x.Conditions {
			if err := validateWhere(s); err != nil {
				return err
			}
		}
		return x.validateArity()
	case *OrCondition:
		for _, s := range x.Conditions {
			if err := validateWhere(s); err != nil {
				return err
			}
		}
		return x.validateArity()
	case *NotCondition:
		if x.Condition == nil {
			return fmt.Errorf("not without a condition")
		}
		return validateWhere(x.Condition)
	}
	return fmt.Errorf("where() takes property conditions, not %s", c)
}

// AudienceCondition is membership of another audience: audience('vip').
type AudienceCondition struct {
	Key string
}

// String renders the condition in the query language.
func (c *AudienceCondition) String() string { return fmt.Sprintf("audience(%s)", literal(c.Key)) }

func (c *AudienceCondition) validate() error {
	if c.Key == "" {
		return fmt.Errorf("audience key is empty")
	}
	return nil
}

// AndCondition holds when all of its conditions hold.
type AndCondition struct{ Conditions []Condition }

// OrCondition holds when any of its conditions holds.
type OrCondition struct{ Conditions []Condition }

// NotCondition holds when its condition does not.
type NotCondition struct{ Condition Condition }

// String renders the condition in the query language. The renderings of and, or
// and not put parentheses only where the tree needs them (an and or an or inside
// an and, an or inside an or, an and or an or under not), so a rendering never
// nests deeper than the query it was parsed from and stays within the parser's
// nesting limit.
func (c *AndCondition) String() string { return join(c.Conditions, " and ", isAndOr) }

// String renders the condition in the query language.
func (c *OrCondition) String() string { return join(c.Conditions, " or ", isOr) }

// String renders the condition in the query language.
func (c *NotCondition) String() string {
	if isAndOr(c.Condition) {
		return "not (" + c.Condition.String() + ")"
	}
	return "not " + c.Condition.String()
}

func isOr(c Condition) bool { _, ok := c.(*OrCondition); return ok }

func isAndOr(c Condition) bool {
	_, and := c.(*AndCondition)
	return and || isOr(c)
}

func join(cs []Condition, sep string, group func(Condition) bool) string {
	parts := make([]string, len(cs))
	for i, s := range cs {
		if group(s) {
			parts[i] = "(" + s.String() + ")"
		} else {
			parts[i] = s.String()
		}
	}
	return strings.Join(parts, sep)
}

func (c *AndCondition) validateArity() error {
	if len(c.Conditions) < 2 {
		return fmt.Errorf("and needs two conditions or more")
	}
	return nil
}

func (c *OrCondition) validateArity() error {
	if len(c.Conditions) < 2 {
		return fmt.Errorf("or needs two conditions or more")
	}
	return nil
}

func (c *AndCondition) validate() error { return validateAll(c.Conditions, c.validateArity) }
func (c *OrCondition) validate() error  { return validateAll(c.Conditions, c.validateArity) }

func (c *NotCondition) validate() error {
	if c.Condition == nil {
		return fmt.Errorf("not without a condition")
	}
	return c.Condition.validate()
}

func validateAll(cs []Condition, arity func() error) error {
	if err := arity(); err != nil {
		return err
	}
	for _, s := range cs {
		if s == nil {
			return fmt.Errorf("nil condition")
		}
		if _, isProp := s.(*PropertyCondition); isProp {
			return fmt.Errorf("%s is only allowed inside event(...).where(...)", s)
		}
		if err := s.validate(); err != nil {
			return err
		}
	}
	return nil
}
