package privacy_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
	"github.com/google/go-cmp/cmp"
)

func mustAccount(t *testing.T, c *privacy.Controller, groupID string) *profile.Profile {
	t.Helper()
	p, err := c.Account(context.Background(), groupID)
	if err != nil {
		t.Fatalf("Account(%q): %v", groupID, err)
	}
	return p
}

// traitValues renders a profile's traits as key=value, sorted.
func traitValues(p *profile.Profile) []string {
	var out []string
	for k, tr := range p.Traits {
		out = append(out, k+"="+stringOf(tr.Value))
	}
	slices.Sort(out)
	return out
}

func stringOf(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return "?"
}

// linkedGroups returns the group ids of a person's account links, in order.
func linkedGroups(m profile.Metadata) []string {
	var out []string
	for _, l := range m.Accounts {
		out = append(out, l.GroupID)
	}
	return out
}

// TestGroupMakesAnAccountProfile: a group call puts the group's traits on
// the account's profile (the value updated last wins, nil removes), links
// the person to the account, and leaves the members separate people.
func TestGroupMakesAnAccountProfile(t *testing.T) {
	e := newEnv(t)
	e.collect(t,
		privacy.Group{MessageID: "g1", UserID: "u1", GroupID: "acme", Traits: map[string]any{"name": "Acme", "plan": "basic", "industry": "tools"}, Timestamp: at(1)},
		privacy.Group{MessageID: "g2", UserID: "u2", GroupID: "acme", Source: "crm", Traits: map[string]any{"plan": "enterprise", "industry": nil}, Timestamp: at(3)},
		// Older than g2: its plan loses.
		privacy.Group{MessageID: "g3", UserID: "u1", GroupID: "acme", Traits: map[string]any{"plan": "free"}, Timestamp: at(2)},
		privacy.Group{MessageID: "g4", UserID: "u1", GroupID: "globex", Traits: map[string]any{"name": "Globex"}, Timestamp: at(4)},
	)
	acme := mustAccount(t, e.c, "acme")
	if got, want := traitValues(acme), []string{"name=Acme", "plan=enterprise"}; !slices.Equal(got, want) {
		t.Errorf("acme's traits = %v; want %v (last updated wins, nil removes)", got, want)
	}
	if acme.ID != identity.AccountProfileID("acme") || !acme.ID.IsAccount() {
		t.Errorf("acme's id = %s; want the account id %s", acme.ID, identity.AccountProfileID("acme"))
	}
	if len(acme.ExternalIDs) != 1 || acme.ExternalIDs[0].ID != (identity.ID{Type: privacy.TypeGroupID, Value: "acme"}) {
		t.Errorf("acme's external ids = %v; want its group id", acme.ExternalIDs)
	}
	if got := acme.Traits["plan"].Source; got != "crm" {
		t.Errorf("plan's source = %q; want crm, g2's", got)
	}
	if got := acme.Traits["name"].Source; got != profile.SourceGroup {
		t.Errorf("name's source = %q; want %q for a group call that names none", got, profile.SourceGroup)
	}
	if m := acme.Metadata; m.Version != 3 || m.FirstMessageID != "" || m.LastMessageID != "" || !m.FirstSeen.Equal(at(1)) || !m.LastSeen.Equal(at(3)) {
		t.Errorf("acme's metadata = %+v; want version 3, seen at(1)..at(3), and no message id (they are the members')", m)
	}
	p1, p2 := e.profile(t, user("u1")), e.profile(t, user("u2"))
	if p1.ID == p2.ID {
		t.Fatal("two members of one account are one profile")
	}
	if got := linkedGroups(p1.Metadata); !slices.Equal(got, []string{"acme", "globex"}) {
		t.Errorf("u1's accounts = %v; want [acme globex]", got)
	}
	if l := p1.Metadata.Accounts[0]; !l.FirstLinked.Equal(at(1)) || !l.LastLinked.Equal(at(2)) {
		t.Errorf("u1's acme link = %+v; want first at(1), last at(2)", l)
	}
	if len(p1.Traits) != 0 {
		t.Errorf("u1's traits = %v; want none: a group's traits are the account's", p1.Traits)
	}
	if _, err := e.c.Account(context.Background(), "initech"); !errors.Is(err, privacy.ErrNotFound) {
		t.Errorf("Account(unknown) = %v; want ErrNotFound", err)
	}
	for _, bad := range []string{"", "a\x00b"} {
		var fe *privacy.FieldError
		if _, err := e.c.Account(context.Background(), bad); !errors.As(err, &fe) || fe.Field != "GroupID" {
			t.Errorf("Account(%q) = %v; want a FieldError on GroupID", bad, err)
		}
	}
}

// TestErasureRemovesAccountLinks: erasing a member removes their links
// with their profile; the account and the other members' links stay.
func TestErasureRemovesAccountLinks(t *testing.T) {
	e := newEnv(t)
	e.collect(t,
		privacy.Group{MessageID: "g1", UserID: "u1", GroupID: "acme", Traits: map[string]any{"name": "Acme"}, Timestamp: at(1)},
		privacy.Group{MessageID: "g2", UserID: "u2", GroupID: "acme", Timestamp: at(2)},
	)
	if r, err := e.c.Erase(context.Background(), user("u1")); err != nil || r.Status != privacy.Finished {
		t.Fatalf("Erase = %+v, %v", r, err)
	}
	if _, err := e.c.Metadata(context.Background(), user("u1")); !errors.Is(err, privacy.ErrNotFound) {
		t.Errorf("the erased member's metadata: %v; want not found", err)
	}
	if got := linkedGroups(mustMetadata(t, e.c, user("u2"))); !slices.Equal(got, []string{"acme"}) {
		t.Errorf("the other member's accounts = %v; want [acme]", got)
	}
	if got := traitValues(mustAccount(t, e.c, "acme")); !slices.Equal(got, []string{"name=Acme"}) {
		t.Errorf("the account after a member's erasure: %v; want it kept", got)
	}
	// The erased member comes back: no link until a new group call.
	e.collect(t, privacy.Track{MessageID: "t", UserID: "u1", Event: "E", Timestamp: at(3)})
	if got := mustMetadata(t, e.c, user("u1")).Accounts; len(got) != 0 {
		t.Errorf("a member collected anew after erasure is linked to %v; want none", got)
	}
}

// TestAccountLinksMergeAndStayOutOfAudiences: a merge keeps both
// profiles' links; an account is in no audience, though its traits match.
func TestAccountLinksMergeAndStayOutOfAudiences(t *testing.T) {
	e := newEnv(t)
	e.collect(t,
		privacy.Group{MessageID: "g1", AnonymousID: "laptop", GroupID: "acme", Traits: map[string]any{"plan": "pro"}, Timestamp: at(1)},
		privacy.Group{MessageID: "g2", UserID: "u1", GroupID: "globex", Traits: map[string]any{"plan": "pro"}, Timestamp: at(2)},
		privacy.Group{MessageID: "g3", UserID: "u1", GroupID: "acme", Timestamp: at(3)},
		privacy.Identify{MessageID: "join", UserID: "u1", AnonymousID: "laptop", Traits: map[string]any{"plan": "free"}, Timestamp: at(4)},
	)
	m := mustMetadata(t, e.c, user("u1"))
	if got := linkedGroups(m); !slices.Equal(got, []string{"acme", "globex"}) {
		t.Errorf("accounts after the merge = %v; want [acme globex], each once, in the order first linked", got)
	}
	if l := m.Accounts[0]; !l.FirstLinked.Equal(at(1)) || !l.LastLinked.Equal(at(3)) {
		t.Errorf("acme's link after the merge = %+v; want at(1)..at(3)", l)
	}
	define(t, e.c, "pro", "trait('plan') = 'pro'")
	if got := members(t, e.c, "pro"); len(got) != 0 {
		t.Errorf("members of pro = %v; want none: the accounts are no people, u1 is on free", got)
	}
}

// TestGroupInBatchAndSuppressed: a batch's group calls reach the account;
// a suppressed person's group call changes nothing, neither their links nor
// the account.
func TestGroupInBatchAndSuppressed(t *testing.T) {
	e := newEnv(t)
	e.collect(t, privacy.Identify{MessageID: "i1", UserID: "u1", Timestamp: at(0)}, privacy.Identify{MessageID: "i2", UserID: "u2", Timestamp: at(0)})
	if _, err := e.c.Suppress(context.Background(), user("u2")); err != nil {
		t.Fatal(err)
	}
	err := e.c.CollectBatch(context.Background(), []privacy.Message{
		privacy.Track{MessageID: "t1", UserID: "u1", Event: "E", Timestamp: at(1)},
		privacy.Group{MessageID: "g1", UserID: "u1", GroupID: "acme", Traits: map[string]any{"name": "Acme"}, Timestamp: at(2)},
		privacy.Group{MessageID: "g2", UserID: "u2", GroupID: "acme", Traits: map[string]any{"name": "Hijacked"}, Timestamp: at(3)},
		privacy.Group{MessageID: "g3", UserID: "u2", GroupID: "evil", Traits: map[string]any{"name": "Evil"}, Timestamp: at(3)},
	})
	var be *privacy.BatchError
	if !errors.As(err, &be) || be.Errs[0] != nil || be.Errs[1] != nil || !errors.Is(be.Errs[2], privacy.ErrSuppressed) {
		t.Fatalf("CollectBatch = %v; want the suppressed person's group calls refused, the others stored", err)
	}
	if got := traitValues(mustAccount(t, e.c, "acme")); !slices.Equal(got, []string{"name=Acme"}) {
		t.Errorf("acme = %v; want name=Acme: a suppressed person's group call changed it", got)
	}
	if _, err := e.c.Account(context.Background(), "evil"); !errors.Is(err, privacy.ErrNotFound) {
		t.Errorf("an account only a suppressed person named: %v; want not found", err)
	}
	if got := linkedGroups(mustMetadata(t, e.c, user("u1"))); !slices.Equal(got, []string{"acme"}) {
		t.Errorf("u1's accounts = %v; want [acme]", got)
	}
}

// TestAccessAndExportCarryAccountLinks: the accounts a person is linked to
// are in what Access returns and in every export format.
func TestAccessAndExportCarryAccountLinks(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.collect(t,
		privacy.Group{MessageID: "g1", UserID: "u1", GroupID: "acme", Timestamp: at(1)},
		privacy.Group{MessageID: "g2", UserID: "u1", GroupID: "globex", Timestamp: at(2)},
	)
	want := mustMetadata(t, e.c, user("u1")).Accounts
	pkg, err := e.c.Access(ctx, user("u1"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, pkg.Accounts); diff != "" || len(pkg.Profile.Metadata.Accounts) != 0 {
		t.Errorf("Access: accounts (-want +got):\n%s; in the metadata too: %v", diff, pkg.Profile.Metadata.Accounts)
	}
	for f, got := range exportedEveryWay(t, e.c, user("u1")) {
		if diff := cmp.Diff(want, got.Accounts); diff != "" {
			t.Errorf("Export(%v): accounts (-want +got):\n%s", f, diff)
		}
	}
}
