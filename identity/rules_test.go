package identity

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDefaultRulesMatchSegment(t *testing.T) {
	want := Rules{
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
	if diff := cmp.Diff(want, DefaultRules()); diff != "" {
		t.Errorf("DefaultRules mismatch (-Segment +got):\n%s", diff)
	}
	// Each call returns its own rules: changing one does not change the next.
	r := DefaultRules()
	r.Limits[TypeUserID] = Limit{Max: 9}
	r.Blocked[0].Pattern = "x"
	r.Priority[0] = "x"
	if diff := cmp.Diff(want, DefaultRules()); diff != "" {
		t.Errorf("DefaultRules shares memory between calls (-want +got):\n%s", diff)
	}
	// The defaults compile, and the resolver reports them back unchanged.
	res, err := NewResolver(DefaultRules())
	if err != nil {
		t.Fatalf("NewResolver(DefaultRules()): %v", err)
	}
	if diff := cmp.Diff(want, res.Rules()); diff != "" {
		t.Errorf("Resolver.Rules mismatch (-want +got):\n%s", diff)
	}
}

func TestWindowString(t *testing.T) {
	tests := []struct {
		w    Window
		want string
	}{
		{Ever, "ever"}, {Weekly, "weekly"}, {Monthly, "monthly"}, {Annually, "annually"}, {Window(9), "Window(9)"},
	}
	for _, tt := range tests {
		if got := tt.w.String(); got != tt.want {
			t.Errorf("Window(%d).String() = %q, want %q", int(tt.w), got, tt.want)
		}
	}
}

func TestNewResolverRejectsBadRules(t *testing.T) {
	tests := []struct {
		name   string
		change func(r *Rules)
	}{
		{"bad regex", func(r *Rules) { r.Blocked = append(r.Blocked, Block{Pattern: "("}) }},
		{"bad regex repetition", func(r *Rules) { r.Blocked = append(r.Blocked, Block{Pattern: "a{2000}"}) }},
		{"both value and pattern", func(r *Rules) { r.Blocked = append(r.Blocked, Block{Value: "x", Pattern: "^x$"}) }},
		{"neither value nor pattern", func(r *Rules) { r.Blocked = append(r.Blocked, Block{Type: TypeEmail}) }},
		{"bad block type", func(r *Rules) { r.Blocked = append(r.Blocked, Block{Type: "e mail", Value: "x"}) }},
		{"default limit Max 0", func(r *Rules) { r.DefaultLimit.Max = 0 }},
		{"default limit negative", func(r *Rules) { r.DefaultLimit.Max = -1 }},
		{"type limit Max 0", func(r *Rules) { r.Limits[TypeEmail] = Limit{Max: 0} }},
		{"unknown window", func(r *Rules) { r.Limits[TypeEmail] = Limit{Max: 1, Window: Window(4)} }},
		{"negative window", func(r *Rules) { r.Limits[TypeEmail] = Limit{Max: 1, Window: Window(-1)} }},
		{"bad limit type", func(r *Rules) { r.Limits["ios id"] = Limit{Max: 1} }},
		{"empty limit type", func(r *Rules) { r.Limits[""] = Limit{Max: 1} }},
		{"duplicate priority", func(r *Rules) { r.Priority = []string{TypeUserID, TypeEmail, TypeUserID} }},
		{"duplicate priority after normalising", func(r *Rules) { r.Priority = []string{TypeUserID, " USER_ID "} }},
		{"bad priority type", func(r *Rules) { r.Priority = []string{"user:id"} }},
		{"MaxMerges 0", func(r *Rules) { r.MaxMerges = 0 }},
		{"MaxIdentifiers 0", func(r *Rules) { r.MaxIdentifiers = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := DefaultRules()
			tt.change(&r)
			res, err := NewResolver(r)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("NewResolver = %v, %v; want an error matching ErrInvalid", res, err)
			}
			if res != nil {
				t.Errorf("NewResolver returned a resolver beside its error")
			}
		})
	}
}

func TestNewResolverNormalisesTypes(t *testing.T) {
	r := DefaultRules()
	r.Limits = map[string]Limit{" User_ID ": {Max: 1}, "IOS.ID": {Max: 2, Window: Monthly}}
	r.Priority = []string{"EMAIL", " user_id"}
	res, err := NewResolver(r)
	if err != nil {
		t.Fatal(err)
	}
	got := res.Rules()
	if diff := cmp.Diff(map[string]Limit{"user_id": {Max: 1}, "ios.id": {Max: 2, Window: Monthly}}, got.Limits); diff != "" {
		t.Errorf("limits mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"email", "user_id"}, got.Priority); diff != "" {
		t.Errorf("priority mismatch (-want +got):\n%s", diff)
	}
	// The caller's rules are left alone.
	if _, ok := r.Limits[" User_ID "]; !ok || r.Priority[0] != "EMAIL" {
		t.Errorf("NewResolver changed the caller's rules: %+v", r)
	}
}

// A Resolver is immutable: neither the rules given to NewResolver nor those
// Rules returns can change it afterwards.
func TestResolverRulesAreCopies(t *testing.T) {
	in := DefaultRules()
	res, err := NewResolver(in)
	if err != nil {
		t.Fatal(err)
	}
	in.Blocked[3] = Block{Value: "changed"}
	in.Limits[TypeUserID] = Limit{Max: 50}
	out := res.Rules()
	out.Blocked[3] = Block{Value: "changed"}
	out.Limits[TypeUserID] = Limit{Max: 50}
	out.Limits[TypeEmail] = Limit{Max: 50}
	out.Priority[0] = "zzz"

	if diff := cmp.Diff(DefaultRules(), res.Rules()); diff != "" {
		t.Errorf("resolver rules changed through a copy (-want +got):\n%s", diff)
	}
	// The behaviour did not change either: two user ids still break the limit.
	plan, err := res.Resolve(t.Context(), NewMemGraph(), []Match{{ID: ID{TypeUserID, "u1"}}, {ID: ID{TypeUserID, "u2"}}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]ID{{TypeUserID, "u2"}}, plan.Dropped); diff != "" {
		t.Errorf("dropped mismatch (-want +got):\n%s", diff)
	}
	_, err = res.Check(ID{TypeUserID, "anonymous"})
	if !errors.Is(err, ErrBlocked) {
		t.Errorf("Check(anonymous) = %v, want ErrBlocked", err)
	}
	if err != nil && (!strings.Contains(err.Error(), `Blocked[`) || strings.Contains(err.Error(), "anonymous")) {
		t.Errorf("Check(anonymous) error %q: want the rule named by its place, without the value", err)
	}
}

func TestCheck(t *testing.T) {
	res := newResolver(t, nil)
	tests := []struct {
		name        string
		id          ID
		want        ID
		wantBlocked bool
		wantInvalid bool // invalid but not blocked
	}{
		{name: "anonymous", id: ID{TypeUserID, "anonymous"}, wantBlocked: true},
		{name: "ANONYMOUS", id: ID{TypeUserID, "ANONYMOUS"}, wantBlocked: true},
		{name: "Anonymous padded", id: ID{TypeAnonymousID, "  Anonymous "}, wantBlocked: true},
		{name: "zero UUID", id: ID{TypeAnonymousID, "00000000-0000-0000-0000-000000000000"}, wantBlocked: true},
		{name: "zero", id: ID{"ios.id", "0"}, wantBlocked: true},
		{name: "dashes only", id: ID{"ios.id", "---"}, wantBlocked: true},
		{name: "minus one", id: ID{TypeUserID, "-1"}, wantBlocked: true},
		{name: "null", id: ID{TypeUserID, "null"}, wantBlocked: true},
		{name: "NULL email", id: ID{TypeEmail, "NULL"}, wantBlocked: true},

		{name: "normal user id", id: ID{TypeUserID, "u42"}, want: ID{TypeUserID, "u42"}},
		{name: "normal email normalised", id: ID{" Email", "Ada@Example.com "}, want: ID{TypeEmail, "ada@example.com"}},
		{name: "real UUID", id: ID{TypeAnonymousID, "00000000-0000-0000-0000-000000000001"}, want: ID{TypeAnonymousID, "00000000-0000-0000-0000-000000000001"}},
		{name: "minus two", id: ID{TypeUserID, "-2"}, want: ID{TypeUserID, "-2"}},
		{name: "anonymous as a part", id: ID{TypeUserID, "anonymous1"}, want: ID{TypeUserID, "anonymous1"}},
		{name: "nullable", id: ID{TypeUserID, "nullable"}, want: ID{TypeUserID, "nullable"}},
		{name: "zero then newline then one", id: ID{TypeUserID, "0\n1"}, want: ID{TypeUserID, "0\n1"}},

		{name: "empty value", id: ID{TypeUserID, ""}, wantInvalid: true},
		{name: "bad type", id: ID{"user id", "u1"}, wantInvalid: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := res.Check(tt.id)
			switch {
			case tt.wantBlocked:
				if !errors.Is(err, ErrBlocked) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("Check(%v) = %v, %v; want an error matching ErrBlocked and ErrInvalid", tt.id, got, err)
				}
			case tt.wantInvalid:
				if !errors.Is(err, ErrInvalid) || errors.Is(err, ErrBlocked) {
					t.Fatalf("Check(%v) = %v, %v; want an error matching ErrInvalid but not ErrBlocked", tt.id, got, err)
				}
			default:
				if err != nil {
					t.Fatalf("Check(%v): %v", tt.id, err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("Check(%v) mismatch (-want +got):\n%s", tt.id, diff)
				}
				return
			}
			if !got.IsZero() {
				t.Errorf("Check returned %v beside its error", got)
			}
		})
	}
}

func TestBlockedErrorMatching(t *testing.T) {
	if !errors.Is(ErrBlocked, ErrInvalid) {
		t.Error("ErrBlocked does not match ErrInvalid")
	}
	if errors.Is(ErrInvalid, ErrBlocked) {
		t.Error("ErrInvalid matches ErrBlocked")
	}
	for _, other := range []error{ErrNotFound, ErrConflict, ErrTxDone} {
		if errors.Is(ErrBlocked, other) {
			t.Errorf("ErrBlocked matches %v", other)
		}
	}
}

func TestCheckPerTypeBlock(t *testing.T) {
	res := newResolver(t, func(r *Rules) {
		r.Blocked = append(r.Blocked,
			Block{Type: "EMAIL", Value: "test@example.com"},
			Block{Type: "ios.id", Pattern: `^unknown-`},
		)
	})
	tests := []struct {
		id          ID
		wantBlocked bool
	}{
		{ID{TypeEmail, "test@example.com"}, true},
		{ID{TypeEmail, "TEST@Example.com"}, true},
		{ID{TypeUserID, "test@example.com"}, false},
		{ID{"email.work", "test@example.com"}, false},
		{ID{"ios.id", "unknown-1"}, true},
		{ID{"android.id", "unknown-1"}, false},
		{ID{"ios.id", "x-unknown-1"}, false},
		// The untyped defaults still apply to every type.
		{ID{"ios.id", "null"}, true},
		{ID{TypeEmail, "anonymous"}, true},
	}
	for _, tt := range tests {
		_, err := res.Check(tt.id)
		if got := errors.Is(err, ErrBlocked); got != tt.wantBlocked {
			t.Errorf("Check(%v) = %v; blocked %v, want %v", tt.id, err, got, tt.wantBlocked)
		}
	}
}

func TestOrder(t *testing.T) {
	res := newResolver(t, nil)
	tests := []struct {
		name string
		in   []ID
		want []ID
	}{
		{name: "nil", in: nil, want: nil},
		{name: "one", in: []ID{{"ios.id", "i"}}, want: []ID{{"ios.id", "i"}}},
		{
			name: "priority then alphabetical",
			in: []ID{
				{"ios.id", "i"}, {TypeEmail, "e"}, {TypeAnonymousID, "a"},
				{"android.id", "d"}, {TypeUserID, "u"}, {"ga_client_id", "g"},
			},
			want: []ID{
				{TypeUserID, "u"}, {TypeEmail, "e"},
				{"android.id", "d"}, {TypeAnonymousID, "a"}, {"ga_client_id", "g"}, {"ios.id", "i"},
			},
		},
		{
			name: "duplicates removed, same type by value",
			in: []ID{
				{TypeEmail, "b"}, {TypeUserID, "u2"}, {TypeEmail, "a"}, {TypeEmail, "b"},
				{TypeUserID, "u1"}, {TypeUserID, "u2"}, {"ios.id", "x"}, {"ios.id", "x"},
			},
			want: []ID{{TypeUserID, "u1"}, {TypeUserID, "u2"}, {TypeEmail, "a"}, {TypeEmail, "b"}, {"ios.id", "x"}},
		},
		{
			name: "all duplicates",
			in:   []ID{{TypeEmail, "a"}, {TypeEmail, "a"}, {TypeEmail, "a"}},
			want: []ID{{TypeEmail, "a"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := res.Order(append([]ID(nil), tt.in...))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Order mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOrderCustomPriority(t *testing.T) {
	res := newResolver(t, func(r *Rules) { r.Priority = []string{"ios.id", TypeEmail, TypeUserID} })
	got := res.Order([]ID{{TypeUserID, "u"}, {"android.id", "d"}, {TypeEmail, "e"}, {"ios.id", "i"}, {TypeAnonymousID, "a"}})
	want := []ID{{"ios.id", "i"}, {TypeEmail, "e"}, {TypeUserID, "u"}, {"android.id", "d"}, {TypeAnonymousID, "a"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Order mismatch (-want +got):\n%s", diff)
	}
}
