package audience

import (
	"context"
	"errors"
	"fmt"

	"github.com/gdprkit/privacy/identity"
)

// BatchState is one profile's state in a PutBatch.
type BatchState struct {
	Profile identity.ProfileID
	State   *State
}

// BatchTx is implemented by transactions that read and write the states of
// many profiles in a few calls, as a SQL adapter does with multi-row
// statements. It is optional: the Controller's batched collection uses it when
// present, and calls State and Put once per profile otherwise.
type BatchTx interface {
	// StateBatch returns the state of each of the profiles that has one, as
	// State would (the caller's to keep and change); the others are absent.
	StateBatch(ctx context.Context, pids []identity.ProfileID) (map[identity.ProfileID]*State, error)
	// PutBatch replaces the states, as one Put call each would, in order (of
	// two states of one profile the later wins). A nil state fails the whole
	// batch with ErrInvalid before anything is staged.
	PutBatch(ctx context.Context, states []BatchState) error
}

// StateBatch implements BatchTx.
func (tx *memTx) StateBatch(ctx context.Context, pids []identity.ProfileID) (map[identity.ProfileID]*State, error) {
	if err := tx.check(ctx); err != nil {
		return nil, err
	}
	out := make(map[identity.ProfileID]*State, len(pids))
	for _, pid := range pids {
		st, err := tx.State(ctx, pid)
		switch {
		case err == nil:
			out[pid] = st
		case !errors.Is(err, ErrNotFound):
			return nil, err
		}
	}
	return out, nil
}

// PutBatch implements BatchTx.
func (tx *memTx) PutBatch(ctx context.Context, states []BatchState) error {
	if err := tx.check(ctx); err != nil {
		return err
	}
	for i, s := range states {
		if s.State == nil {
			return fmt.Errorf("%w: state %d of the batch: nil audience state for profile %s", ErrInvalid, i, s.Profile)
		}
	}
	for _, s := range states {
		if err := tx.Put(ctx, s.Profile, s.State); err != nil {
			return err
		}
	}
	return nil
}
