package privacy

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

var ts0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// The suppression gate runs under the subject lock, before anything is written,
// and sees every identifier of the message with its profile.
func TestSuppressionGateDropsBeforeWriting(t *testing.T) {
	graph, store := identity.NewMemGraph(), profile.NewMemStore()
	c, err := New(WithIdentity(graph), WithProfiles(store))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Collect(ctx, Identify{UserID: "u1", AnonymousID: "a1", Timestamp: ts0}); err != nil {
		t.Fatal(err)
	}
	var seen []identity.Match
	c.suppressed = func(_ context.Context, m []identity.Match) (bool, error) {
		seen = append(seen[:0], m...)
		for _, x := range m {
			if x.ID.Value == "u1" {
				return true, nil
			}
		}
		return false, nil
	}
	// A new identifier arriving with a suppressed one is dropped too.
	err = c.Collect(ctx, Track{UserID: "u1", AnonymousID: "new-device", Event: "E", Timestamp: ts0})
	if !errors.Is(err, ErrSuppressed) {
		t.Fatalf("err = %v, want ErrSuppressed", err)
	}
	if len(seen) != 2 || seen[0].Profile == "" || seen[1].Profile != "" {
		t.Fatalf("gate saw %+v, want u1 with its profile and the unlinked new device", seen)
	}
	if _, err := graph.Lookup(ctx, identity.ID{Type: "anonymous_id", Value: "new-device"}); !errors.Is(err, identity.ErrNotFound) {
		t.Fatalf("the new device was linked: %v", err)
	}
	page, err := c.Events(ctx, identity.ID{Type: "user_id", Value: "u1"}, profile.EventQuery{})
	if err != nil || len(page.Events) != 0 {
		t.Fatalf("events = %v, %v; want none stored", page.Events, err)
	}
	if s := c.Stats(); s.Suppressed != 1 || s.Collected != 1 {
		t.Fatalf("stats = %+v, want 1 suppressed, 1 collected", s)
	}
	gateErr := errors.New("list unavailable")
	c.suppressed = func(context.Context, []identity.Match) (bool, error) { return false, gateErr }
	if err := c.Collect(ctx, Track{UserID: "u2", Event: "E", Timestamp: ts0}); !errors.Is(err, gateErr) {
		t.Fatalf("err = %v, want the gate's error: fail closed", err)
	}
}

// failingStore fails the next profile commit, after the graph's has succeeded.
type failingStore struct {
	profile.Store
	failCommits int
}

type failingTx struct {
	profile.Tx
	s *failingStore
}

func (s *failingStore) Begin(ctx context.Context) (profile.Tx, error) {
	tx, err := s.Store.Begin(ctx)
	return &failingTx{tx, s}, err
}

func (tx *failingTx) Commit(ctx context.Context) error {
	if tx.s.failCommits > 0 {
		tx.s.failCommits--
		tx.Tx.Rollback(ctx)
		return errors.New("disk full")
	}
	return tx.Tx.Commit(ctx)
}

// When the profile commit is lost after the graph committed, the next message
// finds the links without a profile and creates it: collection heals itself.
func TestLostProfileCommitHeals(t *testing.T) {
	store := &failingStore{Store: profile.NewMemStore(), failCommits: 1}
	c, err := New(WithProfiles(store))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Collect(ctx, Identify{UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: ts0}); err == nil {
		t.Fatal("Collect succeeded over a failing commit")
	}
	if _, err := c.Profile(ctx, identity.ID{Type: "user_id", Value: "u1"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Profile after the lost commit: %v, want ErrNotFound", err)
	}
	if err := c.Collect(ctx, Identify{UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: ts0}); err != nil {
		t.Fatal(err)
	}
	p, err := c.Profile(ctx, identity.ID{Type: "user_id", Value: "u1"})
	if err != nil || p.Traits["plan"].Value != "pro" || p.Metadata.Version != 1 || p.Metadata.CreatedAt.IsZero() {
		t.Fatalf("healed profile = %+v, %v", p, err)
	}
}
