package audience

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// FuzzParse checks that Parse never panics, that a parsed tree renders to a query
// that parses to the same tree and renders identically (the canonical form is a
// fixed point), and that every failure is a *SyntaxError inside the query.
// Seeds are in testdata/fuzz/FuzzParse as well.
func FuzzParse(f *testing.F) {
	for _, tc := range validQueries {
		f.Add(tc.query)
	}
	for _, s := range []string{
		`trait('plan') = 'pro' and (trait('x') = 1`,
		`foo('x') = 1`,
		`trait('age') > 'abc'`,
		`event('x').in_between(30 days, 7 days)`,
		`event('x').where(trait('plan') = 'pro')`,
		"trait('plan') = 'pro'\n  and trait('age') >= 'x'",
		"trait('a\\\xff') = 1",
		strings.Repeat("not ", 60) + "audience('a')",
		strings.Repeat("(", 99) + "audience('a')" + strings.Repeat(")", 99),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, query string) {
		c, err := Parse(query)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q): error %T %v is not a *SyntaxError", query, err, err)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q): error %v does not match ErrInvalid", query, err)
			}
			if se.Line < 1 || se.Col < 1 {
				t.Fatalf("Parse(%q): error at line %d, col %d", query, se.Line, se.Col)
			}
			// The position is inside the query or just past its end.
			lines := strings.Split(query, "\n")
			if se.Line > len(lines) {
				t.Fatalf("Parse(%q): error on line %d of %d", query, se.Line, len(lines))
			}
			if n := utf8.RuneCountInString(lines[se.Line-1]); se.Col > n+1 && len(query) <= MaxQueryLength {
				t.Fatalf("Parse(%q): error at col %d of a line of %d runes", query, se.Col, n)
			}
			return
		}
		s := c.String()
		again, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q) renders %q, which does not parse: %v", query, s, err)
		}
		if s2 := again.String(); s2 != s {
			t.Fatalf("rendering is not idempotent: %q renders %q, which renders %q", query, s, s2)
		}
		if diff := cmp.Diff(c, again); diff != "" {
			t.Fatalf("Parse(%q) differs from the tree it was rendered from (-want +got):\n%s", s, diff)
		}
	})
}
