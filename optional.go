package privacy

// Optional interfaces: a backend may implement more than its interface asks,
// to be asked in fewer calls. Every check for one lives here, with its
// fallback, so that an adapter author sees in one file what each buys:
//
//   - suppression.EmptyChecker: while the list is empty, the collection path
//     skips the suppression check (listEmpty). Without it, every message is
//     checked.
//   - suppression.BatchReader: CollectBatch checks a batch's profiles in one
//     call (profilesSuppressed). Without it, ProfileSuppressed once a profile.
//   - identity.BatchReader: identity.LookupAll, in package identity so that
//     adapters and tools share it, looks many identifiers up in one call.
//     Without it, Lookup once an identifier.
//   - profile.TraitPicker: a counted event reads the values of the traits
//     audiences name (traitPickerOf). Without it, the whole profile is read.
//   - profile.BatchTx: CollectBatch reads metadata (metadataBatch), picks
//     traits (pickTraitsBatch) and applies updates (updateAll) in one call
//     each. Without it, once a profile or update, in the same transaction.
//   - audience.Modifier: an audience state is changed with one copy
//     (modifyState). Without it, State then Put.
//   - audience.BatchTx: CollectBatch reads and writes audience states in one
//     call each (stateBatch, putBatch). Without it, once a profile.
//   - txscope.Aware and txscope.Locker: backends sharing a database share a
//     transaction per operation, and lock people across processes (scopeOf).
//     Without them, each backend has its own transactions and only this
//     process's locks.

import (
	"context"
	"errors"
	"fmt"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/suppression"
	"github.com/gdprkit/privacy/txscope"
)

// listEmpty reports whether the suppression list says, through
// suppression.EmptyChecker, that nothing is suppressed. A list without it, or
// one that cannot answer, is not known to be empty: the check goes on.
func listEmpty(ctx context.Context, l suppression.List) bool {
	ec, ok := l.(suppression.EmptyChecker)
	if !ok {
		return false
	}
	empty, err := ec.IsEmpty(ctx)
	return err == nil && empty
}

// profilesSuppressed answers, for each of pids in order, whether the profile
// is suppressed: in one call when l is a suppression.BatchReader.
func profilesSuppressed(ctx context.Context, l suppression.List, pids []identity.ProfileID) ([]bool, error) {
	if br, ok := l.(suppression.BatchReader); ok {
		answers, err := br.ProfileSuppressedBatch(ctx, pids, make([]bool, 0, len(pids)))
		if err == nil && len(answers) != len(pids) {
			err = errors.New("ProfileSuppressedBatch answered for a different number of profiles")
		}
		return answers, err
	}
	answers := make([]bool, len(pids))
	for i, pid := range pids {
		var err error
		if answers[i], err = l.ProfileSuppressed(ctx, pid); err != nil {
			return nil, err
		}
	}
	return answers, nil
}

// updateTakingSet stages u, giving the transaction u.Set itself when it can
// take it (profile.TraitsTaker): the caller built the map for this update
// alone, and reads it no more.
func updateTakingSet(ctx context.Context, ptx profile.Tx, pid identity.ProfileID, u profile.Update) error {
	if taker, ok := ptx.(profile.TraitsTaker); ok {
		return taker.UpdateTakingSet(ctx, pid, u)
	}
	return ptx.Update(ctx, pid, u)
}

// traitPickerOf returns ptx as a profile.TraitPicker, or nil when it is none:
// then the caller reads the whole profile for the traits audiences name.
func traitPickerOf(ptx profile.Tx) profile.TraitPicker {
	picker, _ := ptx.(profile.TraitPicker)
	return picker
}

// modifyState changes the profile's audience state with update (a missing
// state starts empty): with one copy when atx is an audience.Modifier, by
// State and Put otherwise.
func modifyState(ctx context.Context, atx audience.Tx, pid identity.ProfileID, update func(*audience.State) error) error {
	if m, ok := atx.(audience.Modifier); ok {
		return backendError("audience modify", m.Modify(ctx, pid, update))
	}
	st, err := atx.State(ctx, pid)
	if errors.Is(err, audience.ErrNotFound) {
		st, err = &audience.State{}, nil
	}
	if err != nil {
		return backendError("reading audience state", err)
	}
	if err := update(st); err != nil {
		return err
	}
	return backendError("audience put", atx.Put(ctx, pid, st))
}

// metadataBatch reads the metadata of the profiles that exist, in one call
// when ptx is a profile.BatchTx.
func metadataBatch(ctx context.Context, ptx profile.Tx, pids []identity.ProfileID) (map[identity.ProfileID]profile.Metadata, error) {
	if bt, ok := ptx.(profile.BatchTx); ok {
		return bt.MetadataBatch(ctx, pids)
	}
	return readEach(ctx, pids, ptx.Metadata, profile.ErrNotFound)
}

// pickTraitsBatch reads the values of the named traits of each profile that
// exists, in one call when ptx is a profile.BatchTx, one profile at a time
// otherwise (with PickTraits when ptx is a profile.TraitPicker).
func pickTraitsBatch(ctx context.Context, ptx profile.Tx, pids []identity.ProfileID, names []string) (map[identity.ProfileID][]any, error) {
	if len(pids) == 0 {
		return nil, nil
	}
	if bt, ok := ptx.(profile.BatchTx); ok {
		return bt.PickTraitsBatch(ctx, pids, names)
	}
	picker := traitPickerOf(ptx)
	return readEach(ctx, pids, func(ctx context.Context, pid identity.ProfileID) ([]any, error) {
		if picker != nil {
			return picker.PickTraits(ctx, pid, names, make([]any, 0, len(names)))
		}
		p, err := ptx.Get(ctx, pid)
		if err != nil {
			return nil, err
		}
		values := make([]any, len(names))
		for i, name := range names {
			values[i] = p.Traits[name].Value
		}
		return values, nil
	}, profile.ErrNotFound)
}

// updateAll applies the updates, in one call when ptx is a profile.BatchTx,
// and reports for each whether it was a duplicate (its message id recorded
// before).
func updateAll(ctx context.Context, ptx profile.Tx, updates []profile.BatchUpdate) ([]bool, error) {
	if bt, ok := ptx.(profile.BatchTx); ok {
		dups, err := bt.UpdateBatch(ctx, updates, make([]bool, 0, len(updates)))
		if err == nil && len(dups) != len(updates) {
			err = fmt.Errorf("UpdateBatch answered for %d of %d updates", len(dups), len(updates))
		}
		return dups, err
	}
	dups := make([]bool, len(updates))
	for i := range updates {
		err := ptx.Update(ctx, updates[i].Profile, updates[i].Update)
		switch {
		case errors.Is(err, profile.ErrDuplicate):
			dups[i] = true
		case err != nil:
			return nil, err
		}
	}
	return dups, nil
}

// stateBatch reads the audience state of each profile that has one, in one
// call when atx is an audience.BatchTx.
func stateBatch(ctx context.Context, atx audience.Tx, pids []identity.ProfileID) (map[identity.ProfileID]*audience.State, error) {
	if bt, ok := atx.(audience.BatchTx); ok {
		return bt.StateBatch(ctx, pids)
	}
	return readEach(ctx, pids, atx.State, audience.ErrNotFound)
}

// putBatch stages the states, in one call when atx is an audience.BatchTx.
func putBatch(ctx context.Context, atx audience.Tx, states []audience.BatchState) error {
	if bt, ok := atx.(audience.BatchTx); ok {
		return bt.PutBatch(ctx, states)
	}
	for _, s := range states {
		if err := atx.Put(ctx, s.Profile, s.State); err != nil {
			return err
		}
	}
	return nil
}

// readEach is the fallback of the batch reads: read answers for each profile
// one call at a time, leaving out those whose error matches notFound.
func readEach[V any](ctx context.Context, pids []identity.ProfileID, read func(context.Context, identity.ProfileID) (V, error), notFound error) (map[identity.ProfileID]V, error) {
	out := make(map[identity.ProfileID]V, len(pids))
	for _, pid := range pids {
		v, err := read(ctx, pid)
		switch {
		case err == nil:
			out[pid] = v
		case !errors.Is(err, notFound):
			return nil, err
		}
	}
	return out, nil
}

// scopeOf reports whether any backend joins txscope scopes (then each
// operation opens one), and returns the first that locks subjects across
// processes (nil when none does). Locks live in a scope's transaction, so a
// locker makes the Controller scoped too.
func scopeOf(backends ...any) (scoped bool, locker txscope.Locker) {
	for _, b := range backends {
		if _, ok := b.(txscope.Aware); ok {
			scoped = true
		}
		if l, ok := b.(txscope.Locker); ok && locker == nil {
			locker = l
		}
	}
	return scoped || locker != nil, locker
}

// hashesSuppressed reports, for each of hs in order, whether the identifier
// with that keyed hash is suppressed: in one call when l is a
// suppression.HashBatchReader, else one Suppressed each.
func hashesSuppressed(ctx context.Context, l suppression.List, hs []identity.Hash) ([]bool, error) {
	if br, ok := l.(suppression.HashBatchReader); ok {
		return br.SuppressedBatch(ctx, hs, make([]bool, 0, len(hs)))
	}
	out := make([]bool, 0, len(hs))
	for _, h := range hs {
		ok, err := l.Suppressed(ctx, h)
		if err != nil {
			return nil, err
		}
		out = append(out, ok)
	}
	return out, nil
}
