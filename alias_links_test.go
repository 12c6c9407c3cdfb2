package privacy_test

import (
	"context"
	"errors"
	"testing"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
)

// TestAliasLinksPreviousIDWhenConfigured: with identity.Rules.AliasLinks an
// alias links its previousId, as the types listed, to the user id's
// profile: the anonymous visitor's profile merges into the user's, under
// the usual limits (a previousId that is another user id, with user_id
// limited to one per profile, is dropped, not merged). Without it (the
// default, as Segment Unify) nothing merges.
func TestAliasLinksPreviousIDWhenConfigured(t *testing.T) {
	ctx := context.Background()
	visit := func(e *env) {
		e.collect(t,
			privacy.Track{MessageID: "v", AnonymousID: "anon-1", Event: "Viewed", Timestamp: at(1)},
			privacy.Identify{MessageID: "i", UserID: "ada", Timestamp: at(2)},
			privacy.Alias{MessageID: "al", UserID: "ada", PreviousID: "anon-1", Timestamp: at(3)},
		)
	}
	def := newEnv(t)
	visit(def)
	if a, u := def.profile(t, anon("anon-1")), def.profile(t, user("ada")); a.ID == u.ID {
		t.Error("by default an alias merged the anonymous visitor into the user")
	}

	rules := identity.DefaultRules()
	rules.AliasLinks = []string{identity.TypeAnonymousID}
	e := newEnv(t, privacy.WithIdentityRules(rules))
	visit(e)
	a, u := e.profile(t, anon("anon-1")), e.profile(t, user("ada"))
	if a.ID != u.ID {
		t.Fatalf("with AliasLinks the anonymous visitor (%s) and the user (%s) are two profiles", a.ID, u.ID)
	}
	if got := len(mustEvents(t, e.c, user("ada"))); got != 2 {
		t.Errorf("the merged profile holds %d events; want the visit's and the alias's", got)
	}
	// A previousId that is another user's id taken as an anonymous id
	// links nothing: no profile holds it as one.
	e.collect(t, privacy.Identify{MessageID: "i2", UserID: "bob", Timestamp: at(4)},
		privacy.Alias{MessageID: "al2", UserID: "ada", PreviousID: "bob", Timestamp: at(5)})
	if b := e.profile(t, user("bob")); b.ID == u.ID {
		t.Error("an alias merged two users")
	}
	// A blocked previousId is not linked, the alias kept, with DropBlocked
	// off too (the user id names the person).
	strict := rules
	strict.DropBlocked = false
	e3 := newEnv(t, privacy.WithIdentityRules(strict))
	if err := e3.c.Collect(ctx, privacy.Alias{MessageID: "al4", UserID: "ada", PreviousID: "null", Timestamp: at(7)}); err != nil {
		t.Errorf("an alias with a blocked previousId, DropBlocked off: %v; want it stored", err)
	}
	// user_id cannot be listed: the alias names one already.
	rules.AliasLinks = []string{identity.TypeUserID}
	if _, err := privacy.New(privacy.WithIdentityRules(rules)); !errors.Is(err, privacy.ErrInvalid) {
		t.Errorf("AliasLinks listing user_id: New = %v; want ErrInvalid", err)
	}
	// A blocked previousId is dropped, the alias kept.
	if err := e.c.Collect(ctx, privacy.Alias{MessageID: "al3", UserID: "ada", PreviousID: "null", Timestamp: at(6)}); err != nil {
		t.Errorf("an alias with a blocked previousId: %v; want it stored, the previousId not linked", err)
	}
	// Bad rules are refused.
	rules.AliasLinks = []string{"anonymous_id", "ANONYMOUS_ID"}
	if _, err := privacy.New(privacy.WithIdentityRules(rules)); !errors.Is(err, privacy.ErrInvalid) {
		t.Errorf("AliasLinks listing a type twice: New = %v; want ErrInvalid", err)
	}
}
