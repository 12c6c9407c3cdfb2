package audience

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gdprkit/privacy/profile"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// newSet compiles key, query pairs into a Set.
func newSet(t testing.TB, keyQuery ...string) *Set {
	t.Helper()
	var defs []Definition
	for i := 0; i < len(keyQuery); i += 2 {
		defs = append(defs, Definition{Key: keyQuery[i], Query: keyQuery[i+1]})
	}
	s, err := NewSet(defs...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func event(name string, at time.Time, props map[string]any) *profile.Event {
	return &profile.Event{Name: name, Properties: props, Timestamp: at, ReceivedAt: at}
}

func TestEvaluateTraits(t *testing.T) {
	tests := []struct {
		name   string
		query  string
		traits map[string]any
		want   bool
	}{
		{"equal string", `trait('plan') = 'pro'`, map[string]any{"plan": "pro"}, true},
		{"equal other string", `trait('plan') = 'pro'`, map[string]any{"plan": "free"}, false},
		{"equal is case-sensitive", `trait('plan') = 'pro'`, map[string]any{"plan": "Pro"}, false},
		{"equal missing", `trait('plan') = 'pro'`, nil, false},
		{"equal string to number", `trait('age') = '30'`, map[string]any{"age": 30.0}, false},
		{"equal number", `trait('age') = 30`, map[string]any{"age": 30.0}, true},
		{"equal boolean", `trait('vip') = true`, map[string]any{"vip": true}, true},
		{"equal boolean to string", `trait('vip') = true`, map[string]any{"vip": "true"}, false},
		{"not equal", `trait('plan') != 'pro'`, map[string]any{"plan": "free"}, true},
		{"not equal same", `trait('plan') != 'pro'`, map[string]any{"plan": "pro"}, false},
		{"not equal missing", `trait('plan') != 'pro'`, nil, true},
		{"not equal null", `trait('plan') != 'pro'`, map[string]any{"plan": nil}, true},
		{"less", `trait('age') < 18`, map[string]any{"age": 17.0}, true},
		{"less at bound", `trait('age') < 18`, map[string]any{"age": 18.0}, false},
		{"less with string", `trait('age') < 18`, map[string]any{"age": "17"}, false},
		{"less missing", `trait('age') < 18`, nil, false},
		{"less or equal at bound", `trait('age') <= 18`, map[string]any{"age": 18.0}, true},
		{"greater at bound", `trait('age') > 18`, map[string]any{"age": 18.0}, false},
		{"greater", `trait('age') > 18`, map[string]any{"age": 18.5}, true},
		{"greater or equal at bound", `trait('age') >= 18`, map[string]any{"age": 18.0}, true},
		{"greater or equal below", `trait('age') >= 18`, map[string]any{"age": 17.9}, false},
		{"greater or equal negative", `trait('balance') >= -5`, map[string]any{"balance": -4.0}, true},
		{"contains", `trait('email') contains '@example.com'`, map[string]any{"email": "jo@example.com"}, true},
		{"contains not", `trait('email') contains '@example.com'`, map[string]any{"email": "jo@example.org"}, false},
		{"contains on a number", `trait('zip') contains '12'`, map[string]any{"zip": 12345.0}, false},
		{"contains missing", `trait('email') contains '@'`, nil, false},
		{"contains empty string", `trait('email') contains ''`, map[string]any{"email": ""}, true},
		{"exists", `trait('phone') exists`, map[string]any{"phone": "+33"}, true},
		{"exists false value", `trait('opted') exists`, map[string]any{"opted": false}, true},
		{"exists empty string", `trait('phone') exists`, map[string]any{"phone": ""}, true},
		{"exists missing", `trait('phone') exists`, map[string]any{"email": "x"}, false},
		{"exists null", `trait('phone') exists`, map[string]any{"phone": nil}, false},
		{"list equal member", `trait('tags') = 'a'`, map[string]any{"tags": []any{"a", "b"}}, true},
		{"list equal non-member", `trait('tags') = 'c'`, map[string]any{"tags": []any{"a", "b"}}, false},
		{"list not equal member", `trait('tags') != 'a'`, map[string]any{"tags": []any{"a", "b"}}, false},
		{"list not equal non-member", `trait('tags') != 'c'`, map[string]any{"tags": []any{"a", "b"}}, true},
		{"list of numbers", `trait('ids') = 2`, map[string]any{"ids": []any{1.0, 2.0}}, true},
		{"empty list", `trait('tags') = 'a'`, map[string]any{"tags": []any{}}, false},
		{"object is not equal", `trait('address') = 'Paris'`, map[string]any{"address": map[string]any{"city": "Paris"}}, false},
		{"and", `trait('a') = 1 and trait('b') = 2`, map[string]any{"a": 1.0, "b": 2.0}, true},
		{"and one false", `trait('a') = 1 and trait('b') = 2`, map[string]any{"a": 1.0, "b": 3.0}, false},
		{"or one true", `trait('a') = 1 or trait('b') = 2`, map[string]any{"a": 0.0, "b": 2.0}, true},
		{"or none", `trait('a') = 1 or trait('b') = 2`, nil, false},
		{"not", `not trait('a') exists`, nil, true},
		{"precedence", `trait('a') = 1 or trait('b') = 2 and trait('c') = 3`, map[string]any{"a": 1.0}, true},
		{"parentheses", `(trait('a') = 1 or trait('b') = 2) and trait('c') = 3`, map[string]any{"a": 1.0}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSet(t, "x", tc.query)
			st := &State{}
			s.Evaluate(st, traits(tc.traits), t0, false)
			if got := st.IsMember("x"); got != tc.want {
				t.Errorf("%s with %v: member %v, want %v", tc.query, tc.traits, got, tc.want)
			}
		})
	}
}

func TestEvaluateEventCounts(t *testing.T) {
	tests := []struct {
		name   string
		query  string
		events []map[string]any // properties of Buy events, one per event
		want   bool
	}{
		{"at least one, none", `event('Buy')`, nil, false},
		{"at least one", `event('Buy')`, []map[string]any{nil}, true},
		{"count >= 2 with one", `event('Buy').count() >= 2`, []map[string]any{nil}, false},
		{"count >= 2 with two", `event('Buy').count() >= 2`, []map[string]any{nil, nil}, true},
		{"count > 2 with two", `event('Buy').count() > 2`, []map[string]any{nil, nil}, false},
		{"count = 0 with none", `event('Buy').count() = 0`, nil, true},
		{"count = 0 with one", `event('Buy').count() = 0`, []map[string]any{nil}, false},
		{"count < 2 with one", `event('Buy').count() < 2`, []map[string]any{nil}, true},
		{"count <= 1 with two", `event('Buy').count() <= 1`, []map[string]any{nil, nil}, false},
		{"count != 1 with one", `event('Buy').count() != 1`, []map[string]any{nil}, false},
		{"count != 1 with two", `event('Buy').count() != 1`, []map[string]any{nil, nil}, true},
		{"where number below", `event('Buy').where(property('total') >= 100)`, []map[string]any{{"total": 50.0}}, false},
		{"where number at bound", `event('Buy').where(property('total') >= 100)`, []map[string]any{{"total": 100.0}}, true},
		{"where number as string", `event('Buy').where(property('total') >= 100)`, []map[string]any{{"total": "150"}}, false},
		{"where missing property", `event('Buy').where(property('total') >= 100)`, []map[string]any{nil}, false},
		{"where counts only matches", `event('Buy').where(property('total') >= 100).count() >= 2`,
			[]map[string]any{{"total": 150.0}, {"total": 50.0}, {"total": 200.0}}, true},
		{"where counts only matches, too few", `event('Buy').where(property('total') >= 100).count() >= 2`,
			[]map[string]any{{"total": 150.0}, {"total": 50.0}, {"total": 20.0}}, false},
		{"where string", `event('Buy').where(property('currency') = 'EUR')`, []map[string]any{{"currency": "EUR"}}, true},
		{"where string other", `event('Buy').where(property('currency') = 'EUR')`, []map[string]any{{"currency": "USD"}}, false},
		{"where contains", `event('Buy').where(property('sku') contains 'SHOE')`, []map[string]any{{"sku": "RED-SHOE-42"}}, true},
		{"where exists", `event('Buy').where(property('coupon') exists)`, []map[string]any{{"coupon": "X"}}, true},
		{"where not equal missing", `event('Buy').where(property('coupon') != 'X')`, []map[string]any{nil}, true},
		{"where and", `event('Buy').where(property('total') >= 100 and property('currency') = 'EUR')`,
			[]map[string]any{{"total": 150.0, "currency": "USD"}}, false},
		{"where or", `event('Buy').where(property('total') >= 100 or property('currency') = 'EUR')`,
			[]map[string]any{{"total": 10.0, "currency": "EUR"}}, true},
		{"where not", `event('Buy').where(not property('test') = true)`, []map[string]any{{"test": true}}, false},
		{"where not, passes", `event('Buy').where(not property('test') = true)`, []map[string]any{{"test": false}}, true},
		{"where nested", `event('Buy').where(property('total') >= 100 and (property('currency') = 'EUR' or not property('test') exists))`,
			[]map[string]any{{"total": 150.0, "currency": "USD"}, {"total": 150.0, "currency": "USD", "test": true}}, true},
		{"where nested, none", `event('Buy').where(property('total') >= 100 and (property('currency') = 'EUR' or not property('test') exists))`,
			[]map[string]any{{"total": 150.0, "currency": "USD", "test": true}, {"total": 50.0, "currency": "EUR"}}, false},
		{"other events are not counted", `event('Refund')`, []map[string]any{nil, nil}, false},
		{"not event", `not event('Buy')`, []map[string]any{nil}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSet(t, "x", tc.query)
			st := &State{}
			for i, props := range tc.events {
				at := t0.Add(time.Duration(i) * time.Minute)
				s.Observe(st, event("Buy", at, props), at)
			}
			s.Evaluate(st, nil, t0.Add(time.Hour), false)
			if got := st.IsMember("x"); got != tc.want {
				t.Errorf("member %v, want %v (counters %v)", got, tc.want, st.Counters)
			}
		})
	}
}

func TestObserveReportsChange(t *testing.T) {
	s := newSet(t, "x", `event('Buy').where(property('total') >= 100)`, "y", `trait('a') = 1`)
	tests := []struct {
		name  string
		event *profile.Event
		want  bool
		count int64
	}{
		{"unused event", event("Visit", t0, nil), false, 0},
		{"filtered out", event("Buy", t0, map[string]any{"total": 1.0}), false, 0},
		{"counted", event("Buy", t0, map[string]any{"total": 100.0}), true, 1},
		{"counted again", event("Buy", t0, map[string]any{"total": 101.0}), true, 2},
	}
	st := &State{}
	for _, tc := range tests {
		if got := s.Observe(st, tc.event, t0); got != tc.want {
			t.Errorf("%s: Observe = %v, want %v", tc.name, got, tc.want)
		}
		var total int64
		for _, c := range st.Counters {
			total += c.Count
		}
		if total != tc.count {
			t.Errorf("%s: counted %d events, want %d", tc.name, total, tc.count)
		}
	}
	if !s.UsesEvents("Buy") || s.UsesEvents("Visit") {
		t.Errorf("UsesEvents: Buy %v, Visit %v; want true, false", s.UsesEvents("Buy"), s.UsesEvents("Visit"))
	}
}

// TestEvaluateWindows observes one event at t0 and evaluates at times around
// the window's edges. A window is (now-To, now-From]: an event exactly To old has
// left it, one exactly From old has entered it.
func TestEvaluateWindows(t *testing.T) {
	tests := []struct {
		name  string
		query string
		at    time.Duration // after t0
		want  bool
	}{
		{"within, at once", `event('Buy').within(7 days)`, 0, true},
		{"within, just before the edge", `event('Buy').within(7 days)`, 7*day - time.Nanosecond, true},
		{"within, at the edge", `event('Buy').within(7 days)`, 7 * day, false},
		{"within, after", `event('Buy').within(7 days)`, 8 * day, false},
		{"within hours, at the edge", `event('Buy').within(2 hours)`, 2 * time.Hour, false},
		{"within, count 0 after the edge", `event('Buy').within(7 days).count() = 0`, 7 * day, true},
		{"within, count 0 inside", `event('Buy').within(7 days).count() = 0`, day, false},
		{"in_between, at once", `event('Buy').in_between(1 days, 7 days)`, 0, false},
		{"in_between, just before entering", `event('Buy').in_between(1 days, 7 days)`, day - time.Nanosecond, false},
		{"in_between, entering", `event('Buy').in_between(1 days, 7 days)`, day, true},
		{"in_between, just before leaving", `event('Buy').in_between(1 days, 7 days)`, 7*day - time.Nanosecond, true},
		{"in_between, leaving", `event('Buy').in_between(1 days, 7 days)`, 7 * day, false},
		{"no window counts forever", `event('Buy')`, 36500 * day, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSet(t, "x", tc.query)
			st := &State{}
			s.Observe(st, event("Buy", t0, nil), t0)
			s.Evaluate(st, nil, t0.Add(tc.at), false)
			if got := st.IsMember("x"); got != tc.want {
				t.Errorf("member at t0+%v: %v, want %v", tc.at, got, tc.want)
			}
		})
	}
}

func TestEvaluateWindowCounts(t *testing.T) {
	s := newSet(t, "x", `event('Buy').within(7 days).count() >= 2`)
	st := &State{}
	for _, at := range []time.Time{t0, t0.Add(3 * day), t0.Add(5 * day)} {
		s.Observe(st, event("Buy", at, nil), at)
	}
	tests := []struct {
		at   time.Duration
		want bool
	}{
		{5 * day, true},                 // all three inside
		{7*day - time.Nanosecond, true}, // all three inside
		{7 * day, true},                 // t0 left; two remain
		{10 * day, false},               // t0+3d left
		{12 * day, false},               // none
	}
	for _, tc := range tests {
		s.Evaluate(st, nil, t0.Add(tc.at), false)
		if got := st.IsMember("x"); got != tc.want {
			t.Errorf("member at t0+%v: %v, want %v", tc.at, got, tc.want)
		}
	}
}

func TestCountersShared(t *testing.T) {
	s := newSet(t,
		"big", `event('Buy').where(property('total') >= 100)`,
		"big-recent", `event('Buy').where(property('total')>=100).within(7 days).count() >= 2`,
		"big-upper", `EVENT("Buy").WHERE(PROPERTY("total") >= 100).IN_BETWEEN(1 day, 30 days)`,
		"any", `event('Buy').count() >= 3`,
		"eur", `event('Buy').where(property('currency') = 'EUR')`,
	)
	st := &State{}
	for i, total := range []float64{150, 50, 200} {
		at := t0.Add(time.Duration(i) * time.Hour)
		s.Observe(st, event("Buy", at, map[string]any{"total": total}), at)
	}
	changes := s.Evaluate(st, nil, t0.Add(3*time.Hour), false)
	want := map[string]Counter{
		`event('Buy')`: {Count: 3},
		`event('Buy').where(property('total') >= 100)`: {Count: 2, Times: ns(t0, t0.Add(2*time.Hour))},
		// The EUR counter never matched, so it was never created.
	}
	if diff := cmp.Diff(keyed(want), st.Counters); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
	wantChanges := []Change{{Key: "any", Entered: true}, {Key: "big", Entered: true}, {Key: "big-recent", Entered: true}}
	if diff := cmp.Diff(wantChanges, changes); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
}

func TestEvaluateAudienceReferences(t *testing.T) {
	s := newSet(t,
		"pro", `trait('plan') = 'pro'`,
		"adult-pro", `audience('pro') and trait('age') >= 18`,
		"others", `not audience('adult-pro')`,
		"either", `audience('pro') or audience('others')`,
	)
	tests := []struct {
		name   string
		traits map[string]any
		want   []string
	}{
		{"adult pro", map[string]any{"plan": "pro", "age": 30.0}, []string{"adult-pro", "either", "pro"}},
		{"young pro", map[string]any{"plan": "pro", "age": 12.0}, []string{"either", "others", "pro"}},
		{"adult free", map[string]any{"plan": "free", "age": 30.0}, []string{"either", "others"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := &State{}
			s.Evaluate(st, traits(tc.traits), t0, false)
			if diff := cmp.Diff(tc.want, st.Audiences); diff != "" {
				t.Errorf("memberships (-want +got):\n%s", diff)
			}
		})
	}
}

// TestEvaluateChanges walks one profile through a sequence of evaluations and
// checks what each reports.
func TestEvaluateChanges(t *testing.T) {
	s := newSet(t,
		"pro", `trait('plan') = 'pro'`,
		"buyer", `event('Buy')`,
		"pro-buyer", `audience('pro') and audience('buyer')`,
	)
	st := &State{}
	steps := []struct {
		name     string
		buy      bool
		traits   map[string]any
		excluded bool
		want     []Change
		members  []string
	}{
		{"nothing yet", false, nil, false, nil, nil},
		{"becomes pro", false, map[string]any{"plan": "pro"}, false, []Change{{Key: "pro", Entered: true}}, []string{"pro"}},
		{"unchanged", false, map[string]any{"plan": "pro"}, false, nil, []string{"pro"}},
		{"buys", true, map[string]any{"plan": "pro"}, false,
			[]Change{{Key: "buyer", Entered: true}, {Key: "pro-buyer", Entered: true}}, []string{"buyer", "pro", "pro-buyer"}},
		{"downgrades", false, map[string]any{"plan": "free"}, false,
			[]Change{{Key: "pro"}, {Key: "pro-buyer"}}, []string{"buyer"}},
		{"upgrades again", false, map[string]any{"plan": "pro"}, false,
			[]Change{{Key: "pro", Entered: true}, {Key: "pro-buyer", Entered: true}}, []string{"buyer", "pro", "pro-buyer"}},
		{"suppressed", false, map[string]any{"plan": "pro"}, true,
			[]Change{{Key: "buyer"}, {Key: "pro"}, {Key: "pro-buyer"}}, nil},
		{"still suppressed", true, map[string]any{"plan": "pro"}, true, nil, nil},
		{"suppression lifted", false, map[string]any{"plan": "pro"}, false,
			[]Change{{Key: "buyer", Entered: true}, {Key: "pro", Entered: true}, {Key: "pro-buyer", Entered: true}}, []string{"buyer", "pro", "pro-buyer"}},
	}
	for i, step := range steps {
		now := t0.Add(time.Duration(i) * time.Hour)
		if step.buy {
			s.Observe(st, event("Buy", now, nil), now)
		}
		got := s.Evaluate(st, traits(step.traits), now, step.excluded)
		if diff := cmp.Diff(step.want, got); diff != "" {
			t.Errorf("%s: changes (-want +got):\n%s", step.name, diff)
		}
		if diff := cmp.Diff(step.members, st.Audiences, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: memberships (-want +got):\n%s", step.name, diff)
		}
	}
	if got, _ := st.Counter(`event('Buy')`); got.Count != 2 {
		t.Errorf("counted %d Buy events, want 2: suppression keeps counting", got.Count)
	}
}

func TestNextChange(t *testing.T) {
	tests := []struct {
		name   string
		query  string
		events []time.Duration // Buy events, after t0
		at     time.Duration   // evaluation, after t0
		want   time.Duration   // after t0; -1 for none
	}{
		{"no window", `event('Buy')`, []time.Duration{0}, 0, -1},
		{"trait only", `trait('a') = 1`, nil, 0, -1},
		{"within, no events", `event('Buy').within(7 days)`, nil, 0, -1},
		{"within", `event('Buy').within(7 days)`, []time.Duration{0}, 0, 7 * day},
		{"within, later evaluation", `event('Buy').within(7 days)`, []time.Duration{0}, 3 * day, 7 * day},
		{"within, the oldest leaves first", `event('Buy').within(7 days)`, []time.Duration{day, 2 * day}, 2 * day, 8 * day},
		{"within, next after one left", `event('Buy').within(7 days)`, []time.Duration{day, 2 * day}, 8 * day, 9 * day},
		{"within, all left", `event('Buy').within(7 days)`, []time.Duration{0}, 7 * day, -1},
		{"in_between enters first", `event('Buy').in_between(1 days, 7 days)`, []time.Duration{0}, 0, day},
		{"in_between then leaves", `event('Buy').in_between(1 days, 7 days)`, []time.Duration{0}, day, 7 * day},
		{"in_between, all left", `event('Buy').in_between(1 days, 7 days)`, []time.Duration{0}, 7 * day, -1},
		{"earliest of several windows", `event('Buy').within(30 days) and event('Buy').within(2 hours)`,
			[]time.Duration{0}, 0, 2 * time.Hour},
		{"a future event enters within", `event('Buy').within(7 days)`, []time.Duration{time.Hour}, 0, time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSet(t, "x", tc.query)
			st := &State{}
			for _, d := range tc.events {
				s.Observe(st, event("Buy", t0.Add(d), nil), t0)
			}
			s.Evaluate(st, nil, t0.Add(tc.at), false)
			var want time.Time
			if tc.want >= 0 {
				want = t0.Add(tc.want)
			}
			if !st.NextChange.Equal(want) {
				t.Errorf("NextChange = %v, want %v", st.NextChange, want)
			}
		})
	}
}

// TestNextChangeIsWhenMembershipChanges evaluates at each NextChange in turn and
// checks the membership flips there and not a nanosecond before.
func TestNextChangeIsWhenMembershipChanges(t *testing.T) {
	s := newSet(t, "x", `event('Buy').in_between(1 days, 7 days)`)
	st := &State{}
	s.Observe(st, event("Buy", t0, nil), t0)
	s.Evaluate(st, nil, t0, false)
	want := []struct {
		at     time.Time
		member bool
	}{{t0.Add(day), true}, {t0.Add(7 * day), false}}
	for _, w := range want {
		if !st.NextChange.Equal(w.at) {
			t.Fatalf("NextChange = %v, want %v", st.NextChange, w.at)
		}
		before := st.Clone()
		s.Evaluate(before, nil, w.at.Add(-time.Nanosecond), false)
		if before.IsMember("x") == w.member {
			t.Errorf("membership already %v a nanosecond before %v", w.member, w.at)
		}
		s.Evaluate(st, nil, w.at, false)
		if st.IsMember("x") != w.member {
			t.Errorf("member at %v: %v, want %v", w.at, st.IsMember("x"), w.member)
		}
	}
	if !st.NextChange.IsZero() {
		t.Errorf("NextChange after the last event left = %v, want zero", st.NextChange)
	}
}

func TestMerge(t *testing.T) {
	s := newSet(t,
		"twice", `event('Buy').count() >= 2`,
		"recent", `event('Buy').within(30 days).count() >= 3`,
	)
	const key = `event('Buy')`
	tests := []struct {
		name string
		into *State
		from *State
		want map[string]Counter
	}{
		{"into empty",
			&State{},
			&State{Counters: keyed(map[string]Counter{key: {Count: 2, Times: ns(t0, t0.Add(day))}})},
			map[string]Counter{key: {Count: 2, Times: ns(t0, t0.Add(day))}}},
		{"from empty",
			&State{Counters: keyed(map[string]Counter{key: {Count: 1, Times: ns(t0)}})},
			&State{},
			map[string]Counter{key: {Count: 1, Times: ns(t0)}}},
		{"counts add and times interleave",
			&State{Counters: keyed(map[string]Counter{key: {Count: 2, Times: ns(t0, t0.Add(2*day))}})},
			&State{Counters: keyed(map[string]Counter{key: {Count: 3, Times: ns(t0.Add(day), t0.Add(3*day))}})},
			map[string]Counter{key: {Count: 5, Times: ns(t0, t0.Add(day), t0.Add(2*day), t0.Add(3*day))}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fromBefore := tc.from.Clone()
			s.Merge(tc.into, tc.from)
			if diff := cmp.Diff(keyed(tc.want), tc.into.Counters, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("merged counters (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(fromBefore, tc.from); diff != "" {
				t.Errorf("Merge changed its source (-before +after):\n%s", diff)
			}
		})
	}
	// Two profiles with two recent events between them qualify once merged.
	a := &State{}
	b := &State{}
	s.Observe(a, event("Buy", t0, nil), t0)
	s.Observe(b, event("Buy", t0.Add(time.Hour), nil), t0.Add(time.Hour))
	s.Observe(b, event("Buy", t0.Add(2*time.Hour), nil), t0.Add(2*time.Hour))
	s.Evaluate(a, nil, t0.Add(3*time.Hour), false)
	if len(a.Audiences) != 0 {
		t.Fatalf("before the merge a is in %v", a.Audiences)
	}
	s.Merge(a, b)
	s.Evaluate(a, nil, t0.Add(3*time.Hour), false)
	if diff := cmp.Diff([]string{"recent", "twice"}, a.Audiences); diff != "" {
		t.Errorf("memberships after the merge (-want +got):\n%s", diff)
	}
	if !a.NextChange.Equal(t0.Add(30 * day)) {
		t.Errorf("NextChange after the merge = %v, want %v", a.NextChange, t0.Add(30*day))
	}
}

func TestEvaluateDropsUnusedCounters(t *testing.T) {
	s := newSet(t, "x", `event('Buy')`)
	st := &State{Counters: keyed(map[string]Counter{
		`event('Buy')`:                          {Count: 1},
		`event('Gone')`:                         {Count: 4},
		`event('Buy').where(property('a') = 1)`: {Count: 2},
	})}
	s.Evaluate(st, nil, t0, false)
	want := map[string]Counter{`event('Buy')`: {Count: 1}}
	if diff := cmp.Diff(keyed(want), st.Counters); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
	if !st.IsMember("x") {
		t.Error("the used counter was not read")
	}
}

// TestTimesPruned checks that Observe keeps a counter's timestamps only as far
// back as the widest window over it, and none when no window uses it.
func TestTimesPruned(t *testing.T) {
	s := newSet(t,
		"short", `event('Buy').within(2 days)`,
		"long", `event('Buy').in_between(1 days, 7 days)`,
		"ever", `event('Visit').count() >= 1`,
	)
	observeDaily := func(st *State, from, to int) {
		for i := from; i <= to; i++ {
			at := t0.Add(time.Duration(i) * day)
			s.Observe(st, event("Buy", at, nil), at)
			s.Observe(st, event("Visit", at, nil), at)
		}
	}
	tests := []struct {
		name string
		st   func() *State
		want map[string]Counter
	}{
		{"ten days", func() *State {
			st := &State{}
			observeDaily(st, 0, 9)
			return st
		}, map[string]Counter{
			// Day 2 is exactly 7 days before day 9: out of every window, but kept.
			`event('Buy')`:   {Count: 10, Times: days(2, 3, 4, 5, 6, 7, 8, 9)},
			`event('Visit')`: {Count: 10},
		}},
		{"a gap", func() *State {
			st := &State{}
			observeDaily(st, 0, 3)
			observeDaily(st, 20, 20)
			return st
		}, map[string]Counter{
			`event('Buy')`:   {Count: 5, Times: days(20)},
			`event('Visit')`: {Count: 5},
		}},
		{"a merge's old times go at the next event", func() *State {
			st := &State{}
			observeDaily(st, 0, 3)
			s.Merge(st, &State{Counters: keyed(map[string]Counter{`event('Buy')`: {Count: 1, Times: days(1)}})})
			observeDaily(st, 9, 9)
			return st
		}, map[string]Counter{
			`event('Buy')`:   {Count: 6, Times: days(2, 3, 9)},
			`event('Visit')`: {Count: 5},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(keyed(tc.want), tc.st().Counters, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
		})
	}
}

func days(ds ...int) []int64 {
	out := make([]int64, len(ds))
	for i, d := range ds {
		out[i] = nanos(t0.Add(time.Duration(d) * day))
	}
	return out
}

// ns turns times into a Counter's Unix nanoseconds.
func ns(ts ...time.Time) []int64 {
	out := make([]int64, len(ts))
	for i, t := range ts {
		out[i] = nanos(t)
	}
	return out
}

func TestStateClone(t *testing.T) {
	st := &State{
		Audiences:  []string{"a", "b"},
		Counters:   []Counter{{Key: "k", Count: 2, Times: ns(t0, t0.Add(day))}},
		NextChange: t0,
	}
	c := st.Clone()
	if diff := cmp.Diff(st, c); diff != "" {
		t.Fatalf("clone differs (-want +got):\n%s", diff)
	}
	c.Audiences[0] = "z"
	c.Counters[0].Times[0] = nanos(t0.Add(-day))
	c.Counters[0].Count = 7
	c.Counters[0].Times = append(c.Counters[0].Times, nanos(t0.Add(2*day))) // room for one more: must not reach st
	c.Counters = append(c.Counters, Counter{Key: "j"})
	if st.Audiences[0] != "a" || st.Counters[0].Times[0] != nanos(t0) || st.Counters[0].Count != 2 || len(st.Counters) != 1 || len(st.Counters[0].Times) != 2 {
		t.Errorf("mutating the clone changed the original: %+v", st)
	}
}

// An excluded (suppressed) person is in no audience and time cannot change
// that, so Refresh must not keep visiting them.
func TestEvaluateExcludedHasNoNextChange(t *testing.T) {
	s, err := NewSet(Definition{Key: "recent", Query: `event('E').within(7 days)`})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := &State{}
	s.Observe(st, &profile.Event{MessageID: "m", Name: "E", Timestamp: now, ReceivedAt: now}, now)
	if s.Evaluate(st, nil, now, false); st.NextChange.IsZero() {
		t.Fatal("a windowed member has no NextChange")
	}
	changes := s.Evaluate(st, nil, now, true)
	if len(changes) != 1 || changes[0].Entered || !st.NextChange.IsZero() || len(st.Audiences) != 0 {
		t.Fatalf("excluded: changes %v, audiences %v, NextChange %v; want one exit, none, zero", changes, st.Audiences, st.NextChange)
	}
}

// keyed turns the map form tests write counters in into State's sorted slice.
func keyed(m map[string]Counter) []Counter {
	if len(m) == 0 {
		return nil
	}
	out := make([]Counter, 0, len(m))
	for k, c := range m {
		c.Key = k
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Counter) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// TestTimesOutsideNanosecondRange checks that timestamps an int64 of Unix
// nanoseconds cannot hold saturate instead of wrapping around into a window.
func TestTimesOutsideNanosecondRange(t *testing.T) {
	s := newSet(t, "recent", `event('Buy').within(7 days).count() >= 1`, "ever", `event('Buy').count() >= 1`)
	st := &State{}
	ancient := time.Date(1200, 1, 1, 0, 0, 0, 0, time.UTC)
	s.Observe(st, &profile.Event{MessageID: "m", Name: "Buy", Timestamp: ancient, ReceivedAt: t0}, t0)
	s.Evaluate(st, nil, t0, false)
	if diff := cmp.Diff([]string{"ever"}, st.Audiences); diff != "" {
		t.Errorf("an event from 1200 (-want +got):\n%s", diff)
	}
	if got := addNanos(math.MaxInt64-1, time.Hour); got != math.MaxInt64 {
		t.Errorf("addNanos past the top = %d, want MaxInt64", got)
	}
	if got := addNanos(math.MinInt64+1, -time.Hour); got != math.MinInt64 {
		t.Errorf("addNanos past the bottom = %d, want MinInt64", got)
	}
	if got := nanos(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)); got != math.MaxInt64 {
		t.Errorf("nanos(3000) = %d, want MaxInt64", got)
	}
}

// TestEvaluateConsent: consent('X') compares the person's status for X,
// true, false or 'conflict'; a category never collected is false and does
// not exist.
func TestEvaluateConsent(t *testing.T) {
	consent := map[string]profile.ConsentStatus{"Ads": profile.ConsentGranted, "Stats": profile.ConsentDenied, "Mail": profile.ConsentConflict}
	tests := []struct {
		query string
		want  bool
	}{
		{`consent('Ads') = true`, true},
		{`consent('Ads') = false`, false},
		{`consent('Stats') = false`, true},
		{`consent('Stats') != true`, true},
		{`consent('Mail') = 'conflict'`, true},
		{`consent('Mail') = true`, false},
		{`consent('Mail') = false`, false},
		{`consent('Never') = false`, true},
		{`consent('Never') = true`, false},
		{`consent('Never') exists`, false},
		{`consent('Stats') exists`, true},
		{`consent('Ads') = true and consent('Stats') = true`, false},
	}
	for _, tc := range tests {
		s := newSet(t, "x", tc.query)
		if !s.UsesConsent() {
			t.Errorf("%s: UsesConsent = false", tc.query)
		}
		st := &State{}
		s.EvaluateInputs(st, Inputs{Consent: profile.NewConsent(consent, t0, nil)}, t0, false)
		if got := st.IsMember("x"); got != tc.want {
			t.Errorf("%s: member %v, want %v", tc.query, got, tc.want)
		}
		// Evaluate gives no consent: never collected.
		st = &State{}
		s.Evaluate(st, nil, t0, false)
		if got, want := st.IsMember("x"), newSet(t, "x", tc.query).EvaluateInputs(&State{}, Inputs{}, t0, false) != nil; got != want {
			t.Errorf("%s: Evaluate and EvaluateInputs without consent disagree: %v, %v", tc.query, got, want)
		}
	}
	if newSet(t, "x", `trait('a') = 1`).UsesConsent() {
		t.Error("UsesConsent = true for a set without consent conditions")
	}
}
