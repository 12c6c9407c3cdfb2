package audience

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const day = 24 * time.Hour

// validQueries are queries in the language and the trees the builder makes for
// them. The round-trip tests reuse them.
var validQueries = []struct {
	name  string
	query string
	want  Condition
}{
	{"trait equals string", `trait('plan') = 'pro'`, Trait("plan").Eq("pro")},
	{"double equals is equals", `trait('plan') == 'pro'`, Trait("plan").Eq("pro")},
	{"not equal", `trait('plan') != 'free'`, Trait("plan").Ne("free")},
	{"less than", `trait('age') < 18`, Trait("age").Lt(18)},
	{"less or equal decimal", `trait('age') <= 18.5`, Trait("age").Le(18.5)},
	{"greater than negative", `trait('balance') > -3`, Trait("balance").Gt(-3)},
	{"greater or equal", `trait('age') >= 21`, Trait("age").Ge(21)},
	{"fraction without leading digit", `trait('score') > -.25`, Trait("score").Gt(-0.25)},
	{"large number", `trait('n') = 1000000000000000000000`, Trait("n").Eq(1e21)},
	{"small number", `trait('n') = 0.0000001`, Trait("n").Eq(1e-7)},
	{"boolean", `trait('vip') = true`, Trait("vip").Eq(true)},
	{"boolean upper case", `trait('vip') != FALSE`, Trait("vip").Ne(false)},
	{"contains", `trait('email') contains '@example.com'`, Trait("email").Contains("@example.com")},
	{"exists", `trait('phone') exists`, Trait("phone").Exists()},
	{"keywords case-insensitive", `TRAIT('email') CONTAINS 'x' AND NOT Audience('a') Or Trait('p') EXISTS`,
		Or(And(Trait("email").Contains("x"), Not(InAudience("a"))), Trait("p").Exists())},
	{"double-quoted strings", `trait("plan") = "pro"`, Trait("plan").Eq("pro")},
	{"consent granted", `consent('Advertising') = true`, Consent("Advertising").Eq(true)},
	{"consent not denied", `consent('Analytics') != false`, Consent("Analytics").Ne(false)},
	{"consent in conflict", `CONSENT('Advertising') = 'conflict'`, Consent("Advertising").Eq("conflict")},
	{"consent collected", `consent('Functional') exists and trait('plan') = 'pro'`, And(Consent("Functional").Exists(), Trait("plan").Eq("pro"))},
	{"escapes in single quotes", `trait('it\'s') = 'back\\slash "q"'`, Trait("it's").Eq(`back\slash "q"`)},
	{"escapes in double quotes", `trait("say \"hi\"") = "it's"`, Trait(`say "hi"`).Eq("it's")},
	{"any escaped character is itself", `trait('\a\b') = 'x'`, Trait("ab").Eq("x")},
	{"unicode", `trait('名前') = 'Zoë'`, Trait("名前").Eq("Zoë")},
	{"newline inside a string", "trait('a') = 'two\nlines'", Trait("a").Eq("two\nlines")},
	{"event alone is at least one", `event('Signed Up')`, Event("Signed Up")},
	{"event count", `event('Order Completed').count() >= 3`, Event("Order Completed").CountIs(Ge, 3)},
	{"event count zero", `event('x').count() = 0`, Event("x").CountIs(Eq, 0)},
	{"event count double equals", `event('x').count() == 2`, Event("x").CountIs(Eq, 2)},
	{"event count not equal", `event('x').count() != 1`, Event("x").CountIs(Ne, 1)},
	{"event where within count",
		`event('Order Completed').where(property('total') >= 100).within(30 days).count() >= 2`,
		Event("Order Completed").Where(Property("total").Ge(100)).Within(30*day).CountIs(Ge, 2)},
	{"within hours", `event('x').within(12 hours)`, Event("x").Within(12 * time.Hour)},
	{"within singular units", `event('x').within(1 day) or event('y').within(1 hour)`,
		Or(Event("x").Within(day), Event("y").Within(time.Hour))},
	{"within hours that make days", `event('x').within(48 hours)`, Event("x").Within(2 * day)},
	{"in_between", `event('x').in_between(7 days, 30 days).count() < 2`, Event("x").InBetween(7*day, 30*day).CountIs(Lt, 2)},
	{"methods in any order", `event('x').within(7 days).where(property('a') = 'b')`,
		Event("x").Where(Property("a").Eq("b")).Within(7 * day)},
	{"where with and, or, not and parentheses",
		`event('x').where(property('a') = 1 and (property('b') contains 'z' or not property('c') exists))`,
		Event("x").Where(And(Property("a").Eq(1), Or(Property("b").Contains("z"), Not(Property("c").Exists()))))},
	{"where with every operator",
		`event('x').where(property('a') != 'b' and property('n') < 1 and property('n') <= 2 and property('n') > 0 and property('n') >= 0.5 and property('f') = false)`,
		Event("x").Where(And(Property("a").Ne("b"), Property("n").Lt(1), Property("n").Le(2), Property("n").Gt(0), Property("n").Ge(0.5), Property("f").Eq(false)))},
	{"audience", `audience('vip')`, InAudience("vip")},
	{"and binds tighter than or (right)", `trait('a') = 1 or trait('b') = 2 and trait('c') = 3`,
		Or(Trait("a").Eq(1), And(Trait("b").Eq(2), Trait("c").Eq(3)))},
	{"and binds tighter than or (left)", `trait('a') = 1 and trait('b') = 2 or trait('c') = 3`,
		Or(And(Trait("a").Eq(1), Trait("b").Eq(2)), Trait("c").Eq(3))},
	{"parentheses override precedence", `(trait('a') = 1 or trait('b') = 2) and trait('c') = 3`,
		And(Or(Trait("a").Eq(1), Trait("b").Eq(2)), Trait("c").Eq(3))},
	{"and chains flatten", `audience('a') and audience('b') and audience('c')`,
		And(InAudience("a"), InAudience("b"), InAudience("c"))},
	{"or chains flatten", `audience('a') or audience('b') or audience('c')`,
		Or(InAudience("a"), InAudience("b"), InAudience("c"))},
	{"parenthesised and nests", `(audience('a') and audience('b')) and audience('c')`,
		And(And(InAudience("a"), InAudience("b")), InAudience("c"))},
	{"parenthesised or nests", `audience('a') or (audience('b') or audience('c'))`,
		Or(InAudience("a"), Or(InAudience("b"), InAudience("c")))},
	{"not binds tighter than and", `not trait('a') = 1 and trait('b') = 2`,
		And(Not(Trait("a").Eq(1)), Trait("b").Eq(2))},
	{"not of a group", `not (trait('a') = 1 and trait('b') = 2)`,
		Not(And(Trait("a").Eq(1), Trait("b").Eq(2)))},
	{"not not", `not not audience('a')`, Not(Not(InAudience("a")))},
	{"not of an event", `not event('Churned').within(30 days)`, Not(Event("Churned").Within(30 * day))},
	{"redundant parentheses vanish", `((audience('a')))`, InAudience("a")},
	{"whitespace and newlines", "trait('a')=1\n\tand\r\n  audience('b')", And(Trait("a").Eq(1), InAudience("b"))},
	{"no spaces", `event('x').where(property('a')>=1).within(7days).count()>=2`,
		Event("x").Where(Property("a").Ge(1)).Within(7*day).CountIs(Ge, 2)},
	{"mixed", `trait('plan') = 'pro' and not audience('churned') and event('Order Completed').where(property('total') >= 100).within(30 days).count() >= 2`,
		And(Trait("plan").Eq("pro"), Not(InAudience("churned")),
			Event("Order Completed").Where(Property("total").Ge(100)).Within(30*day).CountIs(Ge, 2))},
}

// parseEachValidQuery runs check as a subtest for each of validQueries, with the
// tree Parse made of the query; a query Parse refuses fails its subtest.
func parseEachValidQuery(t *testing.T, check func(t *testing.T, query string, want, parsed Condition)) {
	t.Helper()
	for _, tc := range validQueries {
		t.Run(tc.name, func(t *testing.T) {
			parsed, err := Parse(tc.query)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.query, err)
			}
			check(t, tc.query, tc.want, parsed)
		})
	}
}

func TestParse(t *testing.T) {
	parseEachValidQuery(t, func(t *testing.T, query string, want, got Condition) {
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Parse(%q) tree (-want +got):\n%s", query, diff)
		}
	})
}

func TestStringRoundTrips(t *testing.T) {
	parseEachValidQuery(t, func(t *testing.T, query string, want, c Condition) {
		s := c.String()
		again, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(String()) of %q = %q: %v", query, s, err)
		}
		if diff := cmp.Diff(c, again); diff != "" {
			t.Errorf("Parse(%q) differs from the tree it was rendered from (-want +got):\n%s", s, diff)
		}
		if s != want.String() {
			t.Errorf("parsed tree renders %q, builder tree renders %q", s, want.String())
		}
	})
}

// TestStringCanonical pins the canonical rendering, which Set keeps as the Query
// of a definition.
func TestStringCanonical(t *testing.T) {
	tests := []struct {
		cond Condition
		want string
	}{
		{Trait("plan").Eq("pro"), `trait('plan') = 'pro'`},
		{Trait("it's").Contains(`a\b`), `trait('it\'s') contains 'a\\b'`},
		{Trait("x").Exists(), `trait('x') exists`},
		{Trait("n").Ge(1e21), `trait('n') >= 1000000000000000000000`},
		{Trait("n").Lt(0.5), `trait('n') < 0.5`},
		{Event("x"), `event('x').count() >= 1`},
		{Event("x").Within(36 * time.Hour), `event('x').within(36 hours).count() >= 1`},
		{Event("x").InBetween(day, 7*day).Where(Property("a").Eq(true)).CountIs(Eq, 0),
			`event('x').where(property('a') = true).in_between(1 days, 7 days).count() = 0`},
		{Or(And(Trait("a").Eq(1), Trait("b").Eq(2)), Not(Or(Trait("c").Eq(3), Trait("d").Eq(4)))),
			`trait('a') = 1 and trait('b') = 2 or not (trait('c') = 3 or trait('d') = 4)`},
		{And(Or(InAudience("a"), InAudience("b")), And(InAudience("c"), InAudience("d")), Not(InAudience("e"))),
			`(audience('a') or audience('b')) and (audience('c') and audience('d')) and not audience('e')`},
		{Or(Or(InAudience("a"), InAudience("b")), InAudience("c")), `(audience('a') or audience('b')) or audience('c')`},
		{Not(Not(InAudience("a"))), `not not audience('a')`},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.cond.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name      string
		query     string
		line, col int
		msg       string
	}{
		{"unclosed parenthesis", `trait('plan') = 'pro' and (trait('x') = 1`, 1, 42, "expected ')'"},
		{"unknown function", `foo('x') = 1`, 1, 1, `unknown function "foo"`},
		{"type mismatch", `trait('age') > 'abc'`, 1, 14, "type mismatch"},
		{"ordered comparison with a boolean", `trait('age') <= true`, 1, 14, "type mismatch"},
		{"contains with a number", `trait('name') contains 5`, 1, 15, "type mismatch: trait('name') contains needs a string"},
		{"count with a fraction", `event('x').count() >= 1.5`, 1, 23, "whole number"},
		{"count with a negative number", `event('x').count() >= -1`, 1, 23, "whole number"},
		{"count with a string", `event('x').count() >= '1'`, 1, 23, "whole number"},
		{"count without comparison", `event('x').count()`, 1, 19, "expected a comparison"},
		{"within zero days", `event('x').within(0 days)`, 1, 19, "whole number of days or hours"},
		{"within a fraction", `event('x').within(1.5 days)`, 1, 19, "whole number of days or hours"},
		{"within too long", `event('x').within(36501 days)`, 1, 19, "1 to 36500"},
		{"unknown unit", `event('x').within(7 weeks)`, 1, 21, "expected days or hours"},
		{"in_between reversed", `event('x').in_between(30 days, 7 days)`, 1, 12, "needs a shorter than b"},
		{"in_between equal", `event('x').in_between(7 days, 168 hours)`, 1, 12, "needs a shorter than b"},
		{"window twice", `event('x').within(7 days).in_between(1 days, 7 days)`, 1, 27, "given twice"},
		{"unknown method", `event('x').sum() > 1`, 1, 12, `unknown method "sum"`},
		{"property outside where", `property('total') > 1`, 1, 1, "only allowed inside event(...).where(...)"},
		{"property after an event", `event('x') and property('total') > 1`, 1, 16, "only allowed inside"},
		{"trait inside where", `event('x').where(trait('plan') = 'pro')`, 1, 18, "where(...) takes property conditions"},
		{"audience inside where", `event('x').where(audience('a'))`, 1, 18, "where(...) takes property conditions"},
		{"empty where", `event('x').where()`, 1, 18, "expected a condition"},
		{"empty query", ``, 1, 1, "empty query"},
		{"blank query", "  \n  ", 2, 3, "empty query"},
		{"empty name", `trait('') = 1`, 1, 7, "trait name is empty"},
		{"consent ordered", `consent('Advertising') > 1`, 1, 1, "consent('Advertising') takes =, != or exists"},
		{"consent contains", `consent('Advertising') contains 'x'`, 1, 1, "takes =, != or exists"},
		{"consent with a number", `consent('Advertising') = 1`, 1, 1, "needs true, false or 'conflict'"},
		{"consent with another string", `consent('Advertising') = 'yes'`, 1, 1, "needs true, false or 'conflict', not 'yes'"},
		{"consent inside where", `event('x').where(consent('Advertising') = true)`, 1, 18, "where(...) takes property conditions"},
		{"consent empty category", `consent('') = true`, 1, 9, "consent name is empty"},
		{"name not quoted", `trait(plan) = 1`, 1, 7, "expected a quoted name"},
		{"unclosed string", `trait('plan') = 'pro`, 1, 17, "string is not closed"},
		{"unclosed string after backslash", `trait('plan\`, 1, 7, "string is not closed"},
		{"stray bang", `trait('plan') ! 'pro'`, 1, 15, "unexpected '!'"},
		{"unexpected character", `trait('plan') = 'pro' & audience('a')`, 1, 23, "unexpected character '&'"},
		{"malformed number", `trait('a') = 1.2.3`, 1, 14, "malformed number"},
		{"lone minus", `trait('a') = -`, 1, 14, "malformed number"},
		{"missing value", `trait('a') =`, 1, 13, "expected a value"},
		{"bare word as value", `trait('a') = pro`, 1, 14, "expected a value"},
		{"missing operator", `trait('a') 'pro'`, 1, 12, "expected an operator"},
		{"dangling and", `trait('a') = 'x' and`, 1, 21, "expected a condition"},
		{"two conditions without and", `trait('a') = 1 trait('b') = 2`, 1, 16, "expected 'and', 'or' or the end"},
		{"extra closing parenthesis", `trait('a') = 1)`, 1, 15, "expected 'and', 'or' or the end"},
		{"error on line 2", "trait('plan') = 'pro'\n  and trait('age') >= 'x'", 2, 20, "type mismatch"},
		{"error on line 3 counts runes", "audience('a')\nor\n  'é' = 1", 3, 3, "expected a condition"},
		{"too long", `trait('a') = '` + strings.Repeat("x", MaxQueryLength) + `'`, 1, 1, "more than"},
		{"too long in canonical form", strings.TrimSuffix(strings.Repeat("event('x') or ", 4000), " or "), 1, 1, "in canonical form"},
		{"nested parentheses too deep", strings.Repeat("(", 100) + "audience('a')" + strings.Repeat(")", 100), 1, 101, "nested more than 100 levels"},
		{"nested nots too deep", strings.Repeat("not ", 100) + "audience('a')", 1, 401, "nested more than 100 levels"},
		{"invalid UTF-8", "audience('a') and \xff", 1, 19, "invalid UTF-8"},
		{"invalid UTF-8 in a string", "trait('a\xff') = 1", 1, 9, "invalid UTF-8"},
		{"invalid UTF-8 after a backslash", "trait('a\\\xff') = 1", 1, 10, "invalid UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(tc.query)
			if err == nil {
				t.Fatalf("Parse(%.60q) = %v, want an error", tc.query, c)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not match ErrInvalid", err)
			}
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %T %v is not a *SyntaxError", err, err)
			}
			if se.Line != tc.line || se.Col != tc.col {
				t.Errorf("error at line %d, col %d, want line %d, col %d (%v)", se.Line, se.Col, tc.line, tc.col, err)
			}
			if !strings.Contains(se.Msg, tc.msg) {
				t.Errorf("message %q does not contain %q", se.Msg, tc.msg)
			}
			if want := fmt.Sprintf("line %d, col %d: ", tc.line, tc.col); !strings.Contains(err.Error(), want) {
				t.Errorf("Error() = %q, want it to contain %q", err.Error(), want)
			}
		})
	}
}

// TestParseNestingLimit shows the limit is exactly 100 levels: 99 parentheses
// around a condition (the condition is the 100th level) parse.
func TestParseNestingLimit(t *testing.T) {
	tests := []struct {
		name  string
		query string
		want  Condition
	}{
		{"99 parentheses", strings.Repeat("(", 99) + "audience('a')" + strings.Repeat(")", 99), InAudience("a")},
		{"99 nots", strings.Repeat("not ", 98) + "not audience('a')", nots(99, InAudience("a"))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("tree (-want +got):\n%s", diff)
			}
			if _, err := Parse(got.String()); err != nil {
				t.Errorf("the rendering of a tree at the nesting limit does not parse: %v", err)
			}
		})
	}
}

func nots(n int, c Condition) Condition {
	for range n {
		c = Not(c)
	}
	return c
}
