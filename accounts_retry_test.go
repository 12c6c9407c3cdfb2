package privacy_test

import (
	"context"
	"testing"

	"github.com/gdprkit/privacy"
)

// TestGroupRetriesApplyOnce: a group call repeated (alone, in a
// batch, twice in one batch, after the person merged) changes the account
// once.
func TestGroupRetriesApplyOnce(t *testing.T) {
	e := newEnv(t)
	g := privacy.Group{MessageID: "g1", AnonymousID: "a1", GroupID: "acme", Traits: map[string]any{"n": 1.0}, Timestamp: at(1)}
	e.collect(t, g, g)
	if err := e.c.CollectBatch(context.Background(), []privacy.Message{g, g}); err != nil {
		t.Fatal(err)
	}
	e.collect(t, privacy.Identify{MessageID: "i", UserID: "u1", AnonymousID: "a1", Timestamp: at(2)})
	e.collect(t, g)
	acc := mustAccount(t, e.c, "acme")
	if acc.Metadata.Version != 1 {
		t.Errorf("the account's version is %d after one group call sent 6 times; want 1", acc.Metadata.Version)
	}
	if got := linkedGroups(e.profile(t, user("u1")).Metadata); len(got) != 1 {
		t.Errorf("links = %v", got)
	}
}
