package privacy_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// joinedFailures is a profile store whose transactions refuse to set the
// trait "plan" to "free" with the joined failures of two checks: the value is
// invalid (profile.ErrInvalid), and a related record is missing
// (audience.ErrNotFound), as a composite backend joining its failures
// (DESIGN.md: "several backend failures are joined ... and stay matchable")
// might report.
type joinedFailures struct{ *profile.MemStore }

func (s joinedFailures) Begin(ctx context.Context) (profile.Tx, error) {
	tx, err := s.MemStore.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return joinedFailuresTx{tx}, nil
}

type joinedFailuresTx struct{ profile.Tx }

func (tx joinedFailuresTx) Update(ctx context.Context, pid identity.ProfileID, u profile.Update) error {
	if t, ok := u.Set["plan"]; ok && t.Value == "free" {
		return errors.Join(profile.ErrInvalid, audience.ErrNotFound)
	}
	return tx.Tx.Update(ctx, pid, u)
}

// TestJoinedBackendErrorsMatchEveryRootSentinel: an error joining several
// backends' sentinels matches every root sentinel they stand for, so a write
// refused as invalid stays ErrInvalid (and the rectification INVALID) even
// when joined with a not-found. (A review of the sentinel table found only
// the first matching row wrapped.)
func TestJoinedBackendErrorsMatchEveryRootSentinel(t *testing.T) {
	ctx := context.Background()
	c, err := privacy.New(privacy.WithProfiles(joinedFailures{profile.NewMemStore()}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	id := identity.ID{Type: "user_id", Value: "u-joined"}
	if err := c.Collect(ctx, privacy.Identify{UserID: id.Value, Traits: map[string]any{"plan": "pro"}, Timestamp: time.Now()}); err != nil {
		t.Fatal(err)
	}
	err = c.Collect(ctx, privacy.Identify{UserID: id.Value, Traits: map[string]any{"plan": "free"}, Timestamp: time.Now()})
	if !errors.Is(err, privacy.ErrInvalid) {
		t.Errorf("Collect refused with profile.ErrInvalid joined with audience.ErrNotFound: %v; want it to match privacy.ErrInvalid", err)
	}
	r, err := c.Rectify(ctx, id, map[string]any{"plan": "free"})
	if !errors.Is(err, privacy.ErrInvalid) {
		t.Errorf("Rectify error = %v, want it to match privacy.ErrInvalid", err)
	}
	if !errors.Is(err, privacy.ErrNotFound) {
		t.Errorf("Rectify error = %v, want it to match privacy.ErrNotFound too", err)
	}
	if r == nil || r.Status != privacy.Invalid {
		t.Errorf("Rectify receipt status = %v, want INVALID", r)
	}
}
