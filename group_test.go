package privacy_test

import (
	"context"
	"testing"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
)

// A group call's Traits are the group's (the company's billing email), not
// the person's: taken as the person's email identifier, they merge every
// member of the group into one profile, exactly as GroupID did.
func TestGroupTraitsAreNotTheMembersIdentifiers(t *testing.T) {
	e := newEnv(t)
	e.collect(t,
		privacy.Track{AnonymousID: "a1", Event: "Viewed", Properties: map[string]any{"secret": "a1's"}, Timestamp: at(0)},
		privacy.Group{AnonymousID: "a1", GroupID: "acme", Traits: map[string]any{"email": "billing@acme.example", "name": "Acme"}, Timestamp: at(1)},
		privacy.Group{AnonymousID: "a2", GroupID: "acme", Traits: map[string]any{"email": "billing@acme.example", "name": "Acme"}, Timestamp: at(2)})
	p1, p2 := e.profile(t, anon("a1")), e.profile(t, anon("a2"))
	if p1.ID == p2.ID {
		t.Errorf("two visitors whose group has the same email trait are one profile %s (identifiers %v)", p1.ID, ids(p1))
	}
	if p, err := e.c.Profile(context.Background(), identity.ID{Type: "email", Value: "billing@acme.example"}); err == nil {
		t.Errorf("the group's email is an identifier of profile %s", p.ID)
	}
}

func TestGroupIDValidated(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, g := range []string{"a\x00b", "\xff\xfe", string(make([]byte, 5000))} {
		if err := e.c.Collect(ctx, privacy.Group{UserID: "u1", GroupID: g, Timestamp: at(1)}); err == nil {
			t.Errorf("GroupID %q accepted", g[:min(len(g), 8)])
		}
		if err := e.c.CollectBatch(ctx, []privacy.Message{privacy.Group{UserID: "u1", GroupID: g, Timestamp: at(1)}}); err == nil {
			t.Errorf("batch GroupID %q accepted", g[:min(len(g), 8)])
		}
	}
}
