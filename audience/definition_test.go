package audience

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gdprkit/privacy/profile"
)

func TestCompileKeys(t *testing.T) {
	tests := []struct {
		key string
		ok  bool
	}{
		{"a", true},
		{"vip", true},
		{"0day", true},
		{"big-spenders_2024", true},
		{strings.Repeat("a", 128), true},
		{"", false},
		{"Vip", false},
		{"VIP", false},
		{"big spenders", false},
		{" vip", false},
		{"vip\n", false},
		{strings.Repeat("a", 129), false},
		{"-vip", false},
		{"_vip", false},
		{"vip.pro", false},
		{"café", false},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			c, err := Definition{Key: tc.key, Query: `trait('plan') = 'pro'`}.Compile()
			if tc.ok {
				if err != nil {
					t.Fatalf("Compile: %v", err)
				}
				if diff := cmp.Diff(Trait("plan").Eq("pro"), c); diff != "" {
					t.Errorf("tree (-want +got):\n%s", diff)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "audience key") {
				t.Fatalf("Compile = %v, %v; want an ErrInvalid about the audience key", c, err)
			}
		})
	}
}

func TestCompileRefuses(t *testing.T) {
	tests := []struct {
		name string
		def  Definition
		msg  string
	}{
		{"both query and condition", Definition{Key: "a", Query: `audience('b')`, Condition: InAudience("b")}, "both Query and Condition"},
		{"neither", Definition{Key: "a"}, "neither Query nor Condition"},
		{"syntax error", Definition{Key: "a", Query: `trait('plan') = `}, "line 1, col 17"},
		{"type mismatch", Definition{Key: "a", Condition: Trait("age").Gt("abc")}, "type mismatch"},
		{"ordered with a boolean", Definition{Key: "a", Condition: Trait("age").Le(true)}, "type mismatch"},
		{"equals nothing", Definition{Key: "a", Condition: Trait("age").Eq(nil)}, "needs a string, number or boolean"},
		{"equals a list", Definition{Key: "a", Condition: Trait("tags").Eq([]any{"a"})}, "needs a string, number or boolean"},
		{"empty trait name", Definition{Key: "a", Condition: Trait("").Eq(1)}, "trait name is empty"},
		{"empty event name", Definition{Key: "a", Condition: Event("")}, "event name is empty"},
		{"empty audience key", Definition{Key: "a", Condition: InAudience("")}, "audience key is empty"},
		{"unknown operator", Definition{Key: "a", Condition: &TraitCondition{Name: "x", Op: "~", Operand: "y"}}, "unknown operator"},
		{"and of one", Definition{Key: "a", Condition: And(InAudience("b"))}, "two conditions or more"},
		{"or of none", Definition{Key: "a", Condition: Or()}, "two conditions or more"},
		{"nil in and", Definition{Key: "a", Condition: And(InAudience("b"), nil)}, "nil condition"},
		{"not of nothing", Definition{Key: "a", Condition: Not(nil)}, "not without a condition"},
		{"property at the top", Definition{Key: "a", Condition: Property("total").Gt(1)}, "only allowed inside event(...).where(...)"},
		{"property in an and", Definition{Key: "a", Condition: And(InAudience("b"), Property("total").Gt(1))}, "only allowed inside"},
		{"property under not", Definition{Key: "a", Condition: Not(Property("total").Gt(1))}, "only allowed inside"},
		{"trait inside where", Definition{Key: "a", Condition: Event("x").Where(Trait("plan").Eq("pro"))}, "where() takes property conditions"},
		{"event inside where", Definition{Key: "a", Condition: Event("x").Where(Or(Property("a").Eq(1), Event("y")))}, "where() takes property conditions"},
		{"property type mismatch", Definition{Key: "a", Condition: Event("x").Where(Property("total").Ge("abc"))}, "type mismatch"},
		{"negative count", Definition{Key: "a", Condition: Event("x").CountIs(Ge, -1)}, "negative"},
		{"count contains", Definition{Key: "a", Condition: Event("x").CountIs(Contains, 1)}, "cannot be compared"},
		{"count exists", Definition{Key: "a", Condition: Event("x").CountIs(Exists, 1)}, "cannot be compared"},
		{"negative window", Definition{Key: "a", Condition: Event("x").Within(-time.Hour)}, "time window"},
		{"reversed in_between", Definition{Key: "a", Condition: Event("x").InBetween(7*day, day)}, "time window"},
		{"window not in whole hours", Definition{Key: "a", Condition: Event("x").Within(90 * time.Minute)}, "whole hours"},
		{"in_between not in whole hours", Definition{Key: "a", Condition: Event("x").InBetween(time.Minute, day)}, "whole hours"},
		{"window from without in_between", Definition{Key: "a", Condition: &EventCondition{Name: "x", Op: Ge, Count: 1, Window: Window{From: day, To: 2 * day}}}, "time window"},
		{"window too long", Definition{Key: "a", Condition: Event("x").Within(36501 * day)}, "1 to 36500"},
		{"nested too deep", Definition{Key: "a", Condition: nots(101, InAudience("b"))}, "nested more than 100"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.def.Compile()
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Compile = %v, %v; want an error matching ErrInvalid", c, err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not contain %q", err, tc.msg)
			}
			if _, err := NewSet(tc.def); !errors.Is(err, ErrInvalid) {
				t.Errorf("NewSet: %v, want an error matching ErrInvalid", err)
			}
		})
	}
}

func TestCompileBuilderCondition(t *testing.T) {
	tests := []struct {
		name string
		cond Condition
		want string // the canonical query
	}{
		{"trait", Trait("plan").Eq("pro"), `trait('plan') = 'pro'`},
		{"go integers become numbers", And(Trait("a").Eq(int64(3)), Trait("b").Lt(float32(0.5)), Trait("c").Ge(uint(7))), `trait('a') = 3 and trait('b') < 0.5 and trait('c') >= 7`},
		{"event", Event("Order Completed").Where(Property("total").Ge(100)).Within(30*day).CountIs(Ge, 2),
			`event('Order Completed').where(property('total') >= 100).within(30 days).count() >= 2`},
		{"hours", Event("x").InBetween(6*time.Hour, 30*time.Hour), `event('x').in_between(6 hours, 30 hours).count() >= 1`},
		{"combination", Or(And(InAudience("b"), Not(Trait("x").Exists())), Event("y")), `audience('b') and not trait('x') exists or event('y').count() >= 1`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Definition{Key: "a", Condition: tc.cond}.Compile()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.cond, c); diff != "" {
				t.Errorf("compiled tree differs from the builder's (-want +got):\n%s", diff)
			}
			if c == tc.cond {
				t.Error("Compile returned the caller's tree, not a copy")
			}
			if got := c.String(); got != tc.want {
				t.Errorf("canonical query %q, want %q", got, tc.want)
			}
		})
	}
}

// TestBuilderTreeIsCopied mutates builder trees after they are defined: the Set
// must evaluate what was defined, not what the caller's tree became.
func TestBuilderTreeIsCopied(t *testing.T) {
	trait := &TraitCondition{Name: "plan", Op: Eq, Operand: "pro"}
	ev := Event("Buy").Where(Property("total").Ge(100))
	where := ev.Filter.(*PropertyCondition)
	and := And(InAudience("pro"), ev).(*AndCondition)

	s, err := NewSet(Definition{Key: "pro", Condition: trait})
	if err != nil {
		t.Fatal(err)
	}
	s, err = s.Add(Definition{Key: "buyer", Condition: and})
	if err != nil {
		t.Fatal(err)
	}
	trait.Operand = "free"
	ev.Count = 5
	where.Operand = 1000.0
	and.Conditions = and.Conditions[:1]

	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	st := &State{}
	s.Observe(st, &profile.Event{Name: "Buy", Properties: map[string]any{"total": 150.0}, Timestamp: now}, now)
	s.Evaluate(st, traits(map[string]any{"plan": "pro"}), now, false)
	if diff := cmp.Diff([]string{"buyer", "pro"}, st.Audiences); diff != "" {
		t.Errorf("memberships (-want +got):\n%s", diff)
	}
	want := []Definition{
		{Key: "pro", Query: `trait('plan') = 'pro'`},
		{Key: "buyer", Query: `audience('pro') and event('Buy').where(property('total') >= 100).count() >= 1`},
	}
	if diff := cmp.Diff(want, s.Definitions()); diff != "" {
		t.Errorf("definitions (-want +got):\n%s", diff)
	}
}

func TestSetRefuses(t *testing.T) {
	base := []Definition{
		{Key: "a", Query: `trait('plan') = 'pro'`},
		{Key: "b", Query: `audience('a') and trait('age') >= 18`},
	}
	tests := []struct {
		name string
		def  Definition
		is   error
		msg  string
	}{
		{"duplicate key", Definition{Key: "a", Query: `trait('plan') = 'max'`}, ErrConflict, "already defined"},
		{"duplicate key and query", Definition{Key: "b", Query: `audience('a') and trait('age') >= 18`}, ErrConflict, "already defined"},
		{"self reference", Definition{Key: "c", Query: `trait('x') exists or audience('c')`}, ErrInvalid, "refers to itself"},
		{"self reference under not", Definition{Key: "c", Condition: Not(InAudience("c"))}, ErrInvalid, "refers to itself"},
		{"undefined audience", Definition{Key: "c", Query: `audience('zzz')`}, ErrInvalid, "zzz, which is not defined"},
		{"undefined audience deep down", Definition{Key: "c", Query: `audience('a') and (trait('x') = 1 or not audience('d'))`}, ErrInvalid, "d, which is not defined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSet(base...)
			if err != nil {
				t.Fatal(err)
			}
			before := s.Definitions()
			n, err := s.Add(tc.def)
			if !errors.Is(err, tc.is) || n != nil {
				t.Fatalf("Add = %v, %v; want an error matching %v", n, err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not contain %q", err, tc.msg)
			}
			if diff := cmp.Diff(before, s.Definitions()); diff != "" {
				t.Errorf("a refused Add changed the Set (-before +after):\n%s", diff)
			}
			if _, err := NewSet(append(base[:len(base):len(base)], tc.def)...); !errors.Is(err, tc.is) {
				t.Errorf("NewSet: %v, want an error matching %v", err, tc.is)
			}
		})
	}
}

// TestSetCyclesImpossible shows how cycles are ruled out: a definition may refer
// only to audiences already in the Set, so the one that would close a cycle is
// refused whatever the order.
func TestSetCyclesImpossible(t *testing.T) {
	tests := []struct {
		name string
		defs []Definition
	}{
		{"two", []Definition{{Key: "a", Query: `audience('b')`}, {Key: "b", Query: `audience('a')`}}},
		{"three", []Definition{
			{Key: "a", Query: `trait('x') = 1`},
			{Key: "b", Query: `audience('a') and audience('c')`},
			{Key: "c", Query: `audience('b')`},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := NewSet(tc.defs...); !errors.Is(err, ErrInvalid) {
				t.Fatalf("NewSet = %v, %v; want ErrInvalid", s, err)
			}
		})
	}
}

func TestSetAddLeavesReceiverUnchanged(t *testing.T) {
	s1, err := NewSet(
		Definition{Key: "a", Query: `event('Buy').count() >= 1`},
		Definition{Key: "b", Query: `trait('x') = 1`},
	)
	if err != nil {
		t.Fatal(err)
	}
	defs1 := s1.Definitions()
	// Two Sets grown from the same receiver must not share what they add.
	s2, err := s1.Add(Definition{Key: "c", Query: `event('Visit').within(7 days) and audience('a')`})
	if err != nil {
		t.Fatal(err)
	}
	s3, err := s1.Add(Definition{Key: "d", Query: `audience('b')`})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		set    *Set
		keys   []string
		events []string
	}{
		{"receiver", s1, []string{"a", "b"}, []string{"Buy"}},
		{"first branch", s2, []string{"a", "b", "c"}, []string{"Buy", "Visit"}},
		{"second branch", s3, []string{"a", "b", "d"}, []string{"Buy"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var keys []string
			for _, d := range tc.set.Definitions() {
				keys = append(keys, d.Key)
			}
			if diff := cmp.Diff(tc.keys, keys); diff != "" {
				t.Errorf("keys (-want +got):\n%s", diff)
			}
			if tc.set.Len() != len(tc.keys) {
				t.Errorf("Len() = %d, want %d", tc.set.Len(), len(tc.keys))
			}
			for _, k := range []string{"a", "b", "c", "d"} {
				want := false
				for _, w := range tc.keys {
					want = want || w == k
				}
				if got := tc.set.Has(k); got != want {
					t.Errorf("Has(%q) = %v, want %v", k, got, want)
				}
			}
			if diff := cmp.Diff(tc.events, tc.set.EventNames()); diff != "" {
				t.Errorf("EventNames (-want +got):\n%s", diff)
			}
		})
	}
	if diff := cmp.Diff(defs1, s1.Definitions()); diff != "" {
		t.Errorf("receiver definitions changed (-before +after):\n%s", diff)
	}
	// Definitions returns a copy.
	s1.Definitions()[0].Key = "zzz"
	if s1.Definitions()[0].Key != "a" {
		t.Error("mutating the result of Definitions changed the Set")
	}
	// The receiver evaluates as before: it knows nothing of Visit events.
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	st := &State{}
	if s1.Observe(st, &profile.Event{Name: "Visit", Timestamp: now}, now) {
		t.Error("the receiver counted an event only the derived Set uses")
	}
	if s1.UsesEvents("Visit") || !s2.UsesEvents("Visit") {
		t.Errorf("UsesEvents(Visit): receiver %v, derived %v; want false, true", s1.UsesEvents("Visit"), s2.UsesEvents("Visit"))
	}
}

func TestReferences(t *testing.T) {
	tests := []struct {
		query string
		want  []string
	}{
		{`trait('x') = 1`, nil},
		{`event('x').where(property('audience') = 'a')`, nil},
		{`audience('a')`, []string{"a"}},
		{`audience('b') and (audience('a') or not audience('b')) and not not audience('c') or audience('a')`, []string{"b", "a", "c"}},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			c, err := Parse(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, References(c), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("References (-want +got):\n%s", diff)
			}
		})
	}
}

// traits turns plain values into a profile's trait map.
func traits(m map[string]any) map[string]profile.Trait {
	out := make(map[string]profile.Trait, len(m))
	for k, v := range m {
		out[k] = profile.Trait{Value: v, Source: profile.SourceIdentify}
	}
	return out
}
