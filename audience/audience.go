package audience

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Errors of this package, matchable with errors.Is.
var (
	// ErrInvalid: a malformed query or definition (a *SyntaxError gives the
	// position), a cycle between audiences, or an unknown audience.
	ErrInvalid = errors.New("audience: invalid")
	// ErrNotFound: no audience has the key.
	ErrNotFound = errors.New("audience: not found")
	// ErrConflict: an audience with the key is already defined.
	ErrConflict = errors.New("audience: conflict")
	// ErrTxDone: the transaction was already committed or rolled back.
	ErrTxDone = errors.New("audience: transaction already committed or rolled back")
)

// keyPattern is what an audience key may look like: it travels to destinations
// as a trait name and in event properties.
var keyPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_\-]{0,127}$`)

// Definition defines an audience: a key and either a Query in the query language
// or a Condition built in Go (not both).
type Definition struct {
	Key       string
	Query     string
	Condition Condition
}

// Compile validates d and returns its condition tree, parsing Query when set.
func (d Definition) Compile() (Condition, error) {
	if !keyPattern.MatchString(d.Key) {
		return nil, fmt.Errorf("%w: audience key %q: want 1 to 128 of a-z, 0-9, '_' and '-', starting with a letter or digit", ErrInvalid, d.Key)
	}
	switch {
	case strings.IndexByte(d.Query, 0) >= 0:
		// No SQL backend stores NUL in text: refused alike everywhere.
		return nil, fmt.Errorf("%w: audience %s: the query holds a NUL byte", ErrInvalid, d.Key)
	case d.Query != "" && d.Condition != nil:
		return nil, fmt.Errorf("%w: audience %s sets both Query and Condition", ErrInvalid, d.Key)
	case d.Query != "":
		c, err := Parse(d.Query)
		if err != nil {
			return nil, fmt.Errorf("audience %s: %w", d.Key, err)
		}
		return c, nil
	case d.Condition != nil:
		if _, isProp := d.Condition.(*PropertyCondition); isProp {
			return nil, fmt.Errorf("%w: audience %s: %s is only allowed inside event(...).where(...)", ErrInvalid, d.Key, d.Condition)
		}
		if err := d.Condition.validate(); err != nil {
			return nil, fmt.Errorf("%w: audience %s: %v", ErrInvalid, d.Key, err)
		}
		// Parsing the rendered tree checks it once more and leaves the caller no
		// pointer into what is defined.
		c, err := Parse(d.Condition.String())
		if err != nil {
			return nil, fmt.Errorf("audience %s: %w", d.Key, err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("%w: audience %s has neither Query nor Condition", ErrInvalid, d.Key)
}

// References returns the keys of the audiences c depends on, in order of first
// appearance.
func References(c Condition) []string {
	var keys []string
	var walk func(Condition)
	walk = func(c Condition) {
		switch x := c.(type) {
		case *AudienceCondition:
			for _, k := range keys {
				if k == x.Key {
					return
				}
			}
			keys = append(keys, x.Key)
		case *AndCondition:
			for _, s := range x.Conditions {
				walk(s)
			}
		case *OrCondition:
			for _, s := range x.Conditions {
				walk(s)
			}
		case *NotCondition:
			walk(x.Condition)
		}
	}
	walk(c)
	return keys
}
