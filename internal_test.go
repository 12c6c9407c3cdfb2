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
