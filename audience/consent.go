package audience

import (
	"fmt"

	"github.com/gdprkit/privacy/profile"
)

// ConsentCondition tests the person's consent preference for a category, as
// the profile keeps it (profile.Consent): consent('Advertising') = true.
// The value compared is true, false, or 'conflict' after a merge of two
// profiles that disagreed; a category never collected is false, as Segment
// counts it, and only "exists" tells it apart.
type ConsentCondition struct {
	Category string
	Op       Op  // Eq, Ne or Exists
	Operand  any // true, false or "conflict"; nil for Exists
}

// ConflictOperand is the operand that matches a category in conflict:
// consent('Advertising') = 'conflict'.
const ConflictOperand = "conflict"

// String renders the condition in the query language.
func (c *ConsentCondition) String() string {
	return comparisonString("consent", c.Category, c.Op, c.Operand)
}

func (c *ConsentCondition) validate() error {
	what := "consent(" + literal(c.Category) + ")"
	if c.Category == "" {
		return fmt.Errorf("consent category is empty")
	}
	switch c.Op {
	case Exists:
		return checkOperand(what, c.Op, c.Operand)
	case Eq, Ne:
		switch v := c.Operand.(type) {
		case bool:
			return nil
		case string:
			if v == ConflictOperand {
				return nil
			}
		}
		return fmt.Errorf("%s %s needs true, false or '%s', not %s", what, c.Op, ConflictOperand, describeOperand(c.Operand))
	}
	return fmt.Errorf("%s takes =, != or exists, not %s", what, c.Op)
}

// describeOperand names an operand in an error: literals of the query,
// never a profile's value.
func describeOperand(v any) string {
	if s, ok := v.(string); ok {
		return literal(s)
	}
	return typeName(v)
}

// ConsentRef starts a consent condition in Go: audience.Consent("Advertising").Eq(true).
type ConsentRef string

// Consent names a consent category for a condition.
func Consent(category string) ConsentRef { return ConsentRef(category) }

// Eq is consent(category) = v: v is true, false or "conflict".
func (c ConsentRef) Eq(v any) Condition {
	return &ConsentCondition{Category: string(c), Op: Eq, Operand: v}
}

// Ne is consent(category) != v.
func (c ConsentRef) Ne(v any) Condition {
	return &ConsentCondition{Category: string(c), Op: Ne, Operand: v}
}

// Exists is consent(category) exists: a preference for it was collected.
func (c ConsentRef) Exists() Condition {
	return &ConsentCondition{Category: string(c), Op: Exists}
}

// consentValue is what a consent condition compares: nil when the category
// was never collected.
func consentValue(consent profile.Consent, category string) any {
	s, ok := consent.Lookup(category)
	switch {
	case !ok:
		return nil
	case s == profile.ConsentGranted:
		return true
	case s == profile.ConsentConflict:
		return ConflictOperand
	}
	return false
}

// evalConsent applies a compiled consent condition to its category's value.
func evalConsent(n *node, v any) bool {
	if n.op == Exists {
		return v != nil
	}
	if v == nil {
		v = false // never collected counts as denied
	}
	return n.op.compare(v, n.operand)
}
