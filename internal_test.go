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
	p, err := c.Profile(ctx, identity.ID{Type: "user_id", Value: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	gate := &fakeGate{profiles: map[identity.ProfileID]bool{p.ID: true}}
	c.gate = gate
	// A new identifier arriving with one of a suppressed person is dropped too:
	// the gate sees the profile the known identifier resolves to.
	err = c.Collect(ctx, Track{AnonymousID: "new-device", ExternalIDs: []identity.ID{{Type: "anonymous_id", Value: "a1"}}, Event: "E", Timestamp: ts0})
	if !errors.Is(err, ErrSuppressed) {
		t.Fatalf("err = %v, want ErrSuppressed", err)
	}
	if len(gate.askedIDs) == 0 {
		t.Fatal("the gate was not asked")
	}
	if _, err := graph.Lookup(ctx, identity.ID{Type: "anonymous_id", Value: "new-device"}); !errors.Is(err, identity.ErrNotFound) {
		t.Fatalf("the new device was linked: %v", err)
	}
	page, err := c.Events(ctx, identity.ID{Type: "user_id", Value: "u1"}, profile.EventQuery{})
	if err != nil || len(page.Events) != 0 {
		t.Fatalf("events = %v, %v; want none stored", page.Events, err)
	}
	gate.ids = map[identity.ID]bool{{Type: "user_id", Value: "u9"}: true}
	if err := c.Collect(ctx, Track{UserID: "u9", Event: "E", Timestamp: ts0}); !errors.Is(err, ErrSuppressed) {
		t.Fatalf("suppressed identifier: err = %v, want ErrSuppressed", err)
	}
	if err := c.Collect(ctx, Track{UserID: "u2", Event: "E", Timestamp: ts0}); err != nil {
		t.Fatalf("someone else: %v", err)
	}
	gate.err = errors.New("list unavailable")
	if err := c.Collect(ctx, Track{UserID: "u3", Event: "E", Timestamp: ts0}); !errors.Is(err, gate.err) {
		t.Fatalf("err = %v, want the gate's error: fail closed", err)
	}
	if s := c.Stats(); s.Suppressed != 2 || s.Collected != 2 {
		t.Fatalf("stats = %+v, want 2 suppressed, 2 collected", s)
	}
}

type fakeGate struct {
	ids      map[identity.ID]bool
	profiles map[identity.ProfileID]bool
	err      error
	askedIDs []identity.ID
}

func (g *fakeGate) suppressedID(_ context.Context, id identity.ID) (bool, error) {
	g.askedIDs = append(g.askedIDs, id)
	return g.ids[id], g.err
}

func (g *fakeGate) suppressedProfile(_ context.Context, pid identity.ProfileID) (bool, error) {
	return g.profiles[pid], g.err
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
