package profile

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/gdprkit/privacy/identity"
)

// BatchUpdate is one Update of a batch, with the profile it applies to.
type BatchUpdate struct {
	Profile identity.ProfileID
	Update
}

// BatchTx is implemented by transactions that read and write many profiles in
// a few calls, as a SQL adapter does with multi-row statements. It is
// optional: the Controller's batched collection uses it when present, and
// calls Metadata and Update once per message otherwise.
type BatchTx interface {
	// MetadataBatch returns the metadata of each of the profiles that exists,
	// as Metadata would; unknown profiles are absent from the map.
	MetadataBatch(ctx context.Context, pids []identity.ProfileID) (map[identity.ProfileID]Metadata, error)
	// UpdateBatch applies the updates in order, as one Update call each would,
	// and appends to dup, for each in order, whether it was a duplicate: its
	// MessageID was recorded for its profile before, by an earlier update of
	// the batch too. A duplicate changes nothing. Every update is checked
	// before anything is written: one that Update would refuse with ErrInvalid
	// fails the whole batch, which then changes nothing. After any other error
	// the transaction's state is unknown; roll it back.
	UpdateBatch(ctx context.Context, updates []BatchUpdate, dup []bool) ([]bool, error)
	// PickTraitsBatch returns, for each of the profiles that exists, the
	// values of the named traits in the order of names (nil where the profile
	// lacks one), as PickTraits would; unknown profiles are absent. The
	// values are the caller's to keep.
	PickTraitsBatch(ctx context.Context, pids []identity.ProfileID, names []string) (map[identity.ProfileID][]any, error)
}

// PickTraitsBatch implements BatchTx. The transaction's staged writes are
// replayed once for the whole batch, not once per profile.
func (tx *memTx) PickTraitsBatch(ctx context.Context, pids []identity.ProfileID, names []string) (map[identity.ProfileID][]any, error) {
	if err := tx.check(ctx); err != nil {
		return nil, err
	}
	touched := make(map[identity.ProfileID]bool, len(tx.ops))
	for i := range tx.ops {
		touched[tx.ops[i].pid], touched[tx.ops[i].from] = true, true
	}
	var replayed map[identity.ProfileID]*memProfile
	for _, pid := range pids {
		if touched[pid] {
			replayed, _ = tx.view(pid) // a private copy: nothing stays locked
			break
		}
	}
	out := make(map[identity.ProfileID][]any, len(pids))
	tx.s.mu.RLock()
	defer tx.s.mu.RUnlock()
	for _, pid := range pids {
		p := tx.s.profiles[pid]
		if touched[pid] {
			p = replayed[pid]
		}
		if p == nil {
			continue
		}
		values := make([]any, len(names))
		for i, name := range names {
			if t, ok := p.traits[name]; ok {
				v, err := p.traitValue(name, t)
				if err != nil {
					return nil, err
				}
				values[i] = v
			}
		}
		out[pid] = values
	}
	return out, nil
}

// MetadataBatch implements BatchTx.
func (tx *memTx) MetadataBatch(ctx context.Context, pids []identity.ProfileID) (map[identity.ProfileID]Metadata, error) {
	if err := tx.check(ctx); err != nil {
		return nil, err
	}
	out := make(map[identity.ProfileID]Metadata, len(pids))
	for _, pid := range pids {
		m, err := tx.Metadata(ctx, pid)
		switch {
		case err == nil:
			out[pid] = m
		case !errors.Is(err, ErrNotFound):
			return nil, err
		}
	}
	return out, nil
}

// UpdateBatch implements BatchTx. It looks at each profile of the batch once,
// where Update calls in a row would rebuild the transaction's view each time.
func (tx *memTx) UpdateBatch(ctx context.Context, updates []BatchUpdate, dup []bool) ([]bool, error) {
	if err := tx.check(ctx); err != nil {
		return dup, err
	}
	for i := range updates {
		if err := updates[i].Validate(); err != nil {
			return dup, fmt.Errorf("update %d of the batch: %w", i, err)
		}
	}
	type key struct {
		pid identity.ProfileID
		id  string
	}
	byProfile := make(map[identity.ProfileID][]string, len(updates)/4) // the message ids of each profile's updates
	for i := range updates {
		if u := &updates[i]; u.MessageID != "" {
			byProfile[u.Profile] = append(byProfile[u.Profile], u.MessageID)
		}
	}
	seen := make(map[key]bool, len(updates)) // message ids recorded, before or earlier in the batch
	for pid, ids := range byProfile {
		m, locked := tx.view(pid)
		if p := m[pid]; p != nil {
			for _, id := range ids {
				if _, ok := p.seen[id]; ok {
					seen[key{pid, id}] = true
				}
			}
		}
		tx.release(locked)
	}
	var keys map[identity.ProfileID]stagingKey // a sealed store's: each profile's key, looked up once
	if tx.s.sealed {
		keys = make(map[identity.ProfileID]stagingKey, len(byProfile))
		for i := range updates {
			pid := updates[i].Profile
			if _, ok := keys[pid]; !ok {
				k, own := tx.keyFor(pid)
				keys[pid] = stagingKey{k, own}
			}
		}
	}
	tx.ops = slices.Grow(tx.ops, len(updates))
	staged, answered := len(tx.ops), len(dup) // to leave tx as it was when a value does not seal
	for i := range updates {
		u := &updates[i]
		k := key{u.Profile, u.MessageID}
		if u.MessageID != "" && seen[k] {
			dup = append(dup, true)
			continue
		}
		if u.MessageID != "" {
			seen[k] = true
		}
		op, err := tx.stage(u.Profile, &u.Update, keys[u.Profile], false)
		if err != nil {
			clear(tx.ops[staged:])
			tx.ops = tx.ops[:staged]
			return dup[:answered], fmt.Errorf("update %d of the batch: %w", i, err)
		}
		tx.ops = append(tx.ops, op)
		dup = append(dup, false)
	}
	return dup, nil
}
