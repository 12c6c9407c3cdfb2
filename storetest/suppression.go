package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/suppression"
)

var suppressionChecks = []check[suppression.List]{
	{"AddAndCheck", suppressionAddAndCheck},
	{"Remove", suppressionRemove},
	{"Profiles", suppressionProfiles},
	{"WritesAreIdempotent", suppressionIdempotent},
	{"OrderWithinTx", suppressionOrderWithinTx},
	{"EmptyProfileIDIsInvalid", suppressionEmptyProfileID},
	{"CopyAtBoundary", suppressionCopyAtBoundary},
	{"TxSeesOwnWrites", suppressionTxSeesOwnWrites},
	{"UncommittedInvisible", suppressionUncommittedInvisible},
	{"RollbackDiscards", suppressionRollbackDiscards},
	{"RollbackAfterCommitIsNoOp", suppressionRollbackAfterCommit},
	{"TxDone", suppressionTxDone},
	{"CancelledCommitIsAllOrNothing", suppressionCancelledCommit},
	{"ConcurrentWriters", suppressionConcurrentWriters},
	// The optional suppression.EmptyChecker.
	{"IsEmptyAfterIdentifier", suppressionIsEmptyAfterIdentifier},
	{"IsEmptyAfterProfile", suppressionIsEmptyAfterProfile},
	// The optional suppression.KeyChecker and suppression.Rekeyer.
	{"KeyCheckKeepsTheFirst", suppressionKeyCheckKeepsTheFirst},
	{"RekeyCarriesEveryHash", suppressionRekeyCarriesEveryHash},
	{"RekeyRolledBackChangesNothing", suppressionRekeyRolledBack},
	{"RekeyCarriesAConcurrentWrite", suppressionRekeyConcurrentWrite},
	// The optional suppression.BatchReader (batch.go).
	{"ProfileSuppressedBatch", suppressionProfileSuppressedBatch},
	{"ProfileSuppressedBatchTxSeesOwnWrites", suppressionProfileSuppressedBatchTxSeesOwnWrites},
	{"ProfileSuppressedBatchUncommittedInvisible", suppressionProfileSuppressedBatchUncommittedInvisible},
	{"ProfileSuppressedBatchMany", suppressionProfileSuppressedBatchMany},
	{"ProfileSuppressedBatchTxDone", suppressionProfileSuppressedBatchTxDone},
	// The optional suppression.HashBatchReader (batch.go).
	{"SuppressedBatch", suppressionSuppressedBatch},
	{"SuppressedBatchMany", suppressionSuppressedBatchMany},
}

// suppressionView is what a Reader shows of some hashes and profiles.
type suppressionView struct {
	Hashes   map[identity.Hash]bool
	Profiles map[identity.ProfileID]bool
}

func viewSuppressions(t *testing.T, ctx context.Context, r suppression.Reader, hs []identity.Hash, pids []identity.ProfileID) suppressionView {
	t.Helper()
	v := suppressionView{Hashes: map[identity.Hash]bool{}, Profiles: map[identity.ProfileID]bool{}}
	for _, h := range hs {
		ok, err := r.Suppressed(ctx, h)
		must(t, err, "Suppressed")
		v.Hashes[h] = ok
	}
	for _, pid := range pids {
		ok, err := r.ProfileSuppressed(ctx, pid)
		must(t, err, "ProfileSuppressed")
		v.Profiles[pid] = ok
	}
	return v
}

// suppressionFixture: hashes h[0], h[1] and profile p[0] suppressed; h[2],
// h[3] and p[1], p[2] not.
type suppressionFixture struct {
	h []identity.Hash
	p []identity.ProfileID
}

func seedSuppressions(t *testing.T, e *env, l suppression.List) *suppressionFixture {
	t.Helper()
	tag := nextTag()
	f := &suppressionFixture{p: newPIDs(3)}
	for i := 0; i < 4; i++ {
		f.h = append(f.h, hashOf(fmt.Sprint("person-", i, tag)))
	}
	inTx(t, e.ctx, l.Begin, func(tx suppression.Tx) error {
		if err := tx.Add(e.ctx, f.h[0], f.h[1]); err != nil {
			return err
		}
		return tx.AddProfile(e.ctx, f.p[0])
	})
	return f
}

func (f *suppressionFixture) view(t *testing.T, ctx context.Context, r suppression.Reader) suppressionView {
	t.Helper()
	return viewSuppressions(t, ctx, r, f.h, f.p)
}

func (f *suppressionFixture) want(hashes []bool, profiles []bool) suppressionView {
	v := suppressionView{Hashes: map[identity.Hash]bool{}, Profiles: map[identity.ProfileID]bool{}}
	for i, h := range f.h {
		v.Hashes[h] = hashes[i]
	}
	for i, p := range f.p {
		v.Profiles[p] = profiles[i]
	}
	return v
}

func checkLen(t *testing.T, ctx context.Context, l suppression.List, ids, profiles int) {
	t.Helper()
	gi, gp, err := l.Len(ctx)
	must(t, err, "Len")
	if gi != ids || gp != profiles {
		t.Errorf("Len = %d identifiers, %d profiles; want %d, %d", gi, gp, ids, profiles)
	}
}

func suppressionAddAndCheck(t *testing.T, e *env, l suppression.List) {
	checkLen(t, e.ctx, l, 0, 0)
	f := seedSuppressions(t, e, l)
	want := f.want([]bool{true, true, false, false}, []bool{true, false, false})
	if d := diff(want, f.view(t, e.ctx, l)); d != "" {
		t.Errorf("the list after Add and AddProfile (-want +got):\n%s", d)
	}
	checkLen(t, e.ctx, l, 2, 1)
	// A profile id and a hash are separate: the hash of a profile id is not
	// the profile.
	if ok, err := l.Suppressed(e.ctx, hasher.Profile(f.p[0])); err != nil || ok {
		t.Errorf("Suppressed(hash of the suppressed profile's id) = %v, %v; want false: AddProfile suppresses the profile, not a hash", ok, err)
	}
	// Add with no hashes is harmless.
	inTx(t, e.ctx, l.Begin, func(tx suppression.Tx) error { return tx.Add(e.ctx) })
	checkLen(t, e.ctx, l, 2, 1)
}

func suppressionRemove(t *testing.T, e *env, l suppression.List) {
	f := seedSuppressions(t, e, l)
	inTx(t, e.ctx, l.Begin, func(tx suppression.Tx) error {
		if err := tx.Remove(e.ctx, f.h[0], f.h[2]); err != nil { // h[2] was never there
			return err
		}
		return tx.RemoveProfile(e.ctx, f.p[1]) // nor was p[1]
	})
	want := f.want([]bool{false, true, false, false}, []bool{true, false, false})
	if d := diff(want, f.view(t, e.ctx, l)); d != "" {
		t.Errorf("the list after Remove (-want +got):\n%s", d)
	}
	checkLen(t, e.ctx, l, 1, 1)
}

func suppressionProfiles(t *testing.T, e *env, l suppression.List) {
	f := seedSuppressions(t, e, l)
	inTx(t, e.ctx, l.Begin, func(tx suppression.Tx) error {
		if err := tx.AddProfile(e.ctx, f.p[2]); err != nil {
			return err
		}
		return tx.RemoveProfile(e.ctx, f.p[0])
	})
	want := f.want([]bool{true, true, false, false}, []bool{false, false, true})
	if d := diff(want, f.view(t, e.ctx, l)); d != "" {
		t.Errorf("the list after AddProfile and RemoveProfile (-want +got):\n%s", d)
	}
	checkLen(t, e.ctx, l, 2, 1)
}

func suppressionIdempotent(t *testing.T, e *env, l suppression.List) {
	f := seedSuppressions(t, e, l)
	before := f.view(t, e.ctx, l)
	// Replayed, in a new transaction and twice in one.
	for i := 0; i < 2; i++ {
		inTx(t, e.ctx, l.Begin, func(tx suppression.Tx) error {
			for j := 0; j <= i; j++ {
				if err := tx.Add(e.ctx, f.h[0], f.h[1], f.h[0]); err != nil {
					return err
				}
				if err := tx.AddProfile(e.ctx, f.p[0]); err != nil {
					return err
				}
				if err := tx.Remove(e.ctx, f.h[3]); err != nil {
					return err
				}
				if err := tx.RemoveProfile(e.ctx, f.p[2]); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if d := diff(before, f.view(t, e.ctx, l)); d != "" {
		t.Errorf("writing again changed the list (-before +after):\n%s", d)
	}
	checkLen(t, e.ctx, l, 2, 1)
	// Removing twice.
	for i := 0; i < 2; i++ {
		inTx(t, e.ctx, l.Begin, func(tx suppression.Tx) error {
			if err := tx.Remove(e.ctx, f.h[0]); err != nil {
				return err
			}
			return tx.RemoveProfile(e.ctx, f.p[0])
		})
	}
	checkLen(t, e.ctx, l, 1, 0)
}

func suppressionOrderWithinTx(t *testing.T, e *env, l suppression.List) {
	f := seedSuppressions(t, e, l)
	// Writes apply in order: the last one for a hash or profile wins.
	tx, err := l.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	must(t, tx.Add(e.ctx, f.h[2]), "Add")
	must(t, tx.Remove(e.ctx, f.h[2]), "Remove")
	must(t, tx.Remove(e.ctx, f.h[0]), "Remove")
	must(t, tx.Add(e.ctx, f.h[0]), "Add")
	must(t, tx.AddProfile(e.ctx, f.p[1]), "AddProfile")
	must(t, tx.RemoveProfile(e.ctx, f.p[1]), "RemoveProfile")
	must(t, tx.RemoveProfile(e.ctx, f.p[0]), "RemoveProfile")
	must(t, tx.AddProfile(e.ctx, f.p[0]), "AddProfile")
	want := f.want([]bool{true, true, false, false}, []bool{true, false, false})
	if d := diff(want, f.view(t, e.ctx, tx)); d != "" {
		t.Errorf("the transaction's view after writes in order (-want +got):\n%s", d)
	}
	commitTx(t, e.ctx, tx)
	if d := diff(want, f.view(t, e.ctx, l)); d != "" {
		t.Errorf("the list after writes in order (-want +got):\n%s", d)
	}
	checkLen(t, e.ctx, l, 2, 1)
}

func suppressionEmptyProfileID(t *testing.T, e *env, l suppression.List) {
	f := seedSuppressions(t, e, l)
	before := f.view(t, e.ctx, l)
	for _, op := range []struct {
		name string
		call func(suppression.Tx) error
	}{
		{"AddProfile", func(tx suppression.Tx) error { return tx.AddProfile(e.ctx, "") }},
		{"RemoveProfile", func(tx suppression.Tx) error { return tx.RemoveProfile(e.ctx, "") }},
	} {
		tx, err := l.Begin(e.ctx)
		must(t, err, "Begin")
		if err := op.call(tx); !errors.Is(err, suppression.ErrInvalid) {
			t.Errorf("%s with an empty profile id = %v; want ErrInvalid", op.name, err)
		}
		commitAfterRefused(t, e.ctx, tx)
	}
	if d := diff(before, f.view(t, e.ctx, l)); d != "" {
		t.Errorf("refused writes changed the list (-before +after):\n%s", d)
	}
	checkLen(t, e.ctx, l, 2, 1)
}

func suppressionCopyAtBoundary(t *testing.T, e *env, l suppression.List) {
	f := seedSuppressions(t, e, l)
	// The variadic slice is the caller's: changing it after Add changes nothing.
	tx, err := l.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	hs := []identity.Hash{f.h[2]}
	must(t, tx.Add(e.ctx, hs...), "Add")
	hs[0] = f.h[3]
	rm := []identity.Hash{f.h[0]}
	must(t, tx.Remove(e.ctx, rm...), "Remove")
	rm[0] = f.h[1]
	commitTx(t, e.ctx, tx)
	want := f.want([]bool{false, true, true, false}, []bool{true, false, false})
	if d := diff(want, f.view(t, e.ctx, l)); d != "" {
		t.Errorf("changing the slices passed to Add and Remove changed the list (-want +got):\n%s", d)
	}
}

// stageSuppressionWrites stages a write of every kind.
func stageSuppressionWrites(t *testing.T, e *env, tx suppression.Tx, f *suppressionFixture) {
	t.Helper()
	must(t, tx.Add(e.ctx, f.h[2], f.h[3]), "Add")
	must(t, tx.Remove(e.ctx, f.h[0]), "Remove")
	must(t, tx.AddProfile(e.ctx, f.p[1]), "AddProfile")
	must(t, tx.RemoveProfile(e.ctx, f.p[0]), "RemoveProfile")
}

// stagedSuppressions is the fixture with stageSuppressionWrites applied.
func (f *suppressionFixture) staged() suppressionView {
	return f.want([]bool{false, true, true, true}, []bool{false, true, false})
}

func suppressionTxSeesOwnWrites(t *testing.T, e *env, l suppression.List) {
	f := seedSuppressions(t, e, l)
	tx, err := l.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	stageSuppressionWrites(t, e, tx, f)
	if d := diff(f.staged(), f.view(t, e.ctx, tx)); d != "" {
		t.Errorf("what the transaction reads of its own writes (-want +got):\n%s", d)
	}
	commitTx(t, e.ctx, tx)
	if d := diff(f.staged(), f.view(t, e.ctx, l)); d != "" {
		t.Errorf("the list after Commit (-want +got):\n%s", d)
	}
	checkLen(t, e.ctx, l, 3, 1)
}

func suppressionUncommittedInvisible(t *testing.T, e *env, l suppression.List) {
	e.needIsolation(t)
	f := seedSuppressions(t, e, l)
	before := f.view(t, e.ctx, l)
	tx, err := l.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	stageSuppressionWrites(t, e, tx, f)
	readers := map[string]suppression.Reader{"the list": l}
	other, ok := secondTx(t, e, l.Begin)
	if ok {
		readers["another transaction"] = other
	}
	for name, r := range readers {
		if d := diff(before, f.view(t, e.ctx, r)); d != "" {
			t.Errorf("%s sees uncommitted writes (-committed +seen):\n%s", name, d)
		}
	}
	checkLen(t, e.ctx, l, 2, 1)
	if ok {
		must(t, other.Rollback(e.ctx), "Rollback")
	}
	commitTx(t, e.ctx, tx)
	later, err := l.Begin(e.ctx)
	must(t, err, "Begin")
	defer later.Rollback(e.ctx)
	for name, r := range map[string]suppression.Reader{"the list": l, "a new transaction": later} {
		if d := diff(f.staged(), f.view(t, e.ctx, r)); d != "" {
			t.Errorf("%s after Commit (-staged +seen):\n%s", name, d)
		}
	}
}

func suppressionRollbackDiscards(t *testing.T, e *env, l suppression.List) {
	suppressionStaging(t, e, l).checkRollbackDiscards(t, e)
	checkLen(t, e.ctx, l, 2, 1)
}

// suppressionStaging seeds the fixture for the shared transaction checks.
func suppressionStaging(t *testing.T, e *env, l suppression.List) staging[suppression.Reader, suppression.Tx, suppressionView] {
	f := seedSuppressions(t, e, l)
	return staging[suppression.Reader, suppression.Tx, suppressionView]{
		store: l, begin: l.Begin, errDone: suppression.ErrTxDone,
		stage: func(tx suppression.Tx) { stageSuppressionWrites(t, e, tx, f) },
		view:  func(r suppression.Reader) suppressionView { return f.view(t, e.ctx, r) },
		calls: func(tx suppression.Tx) []txMethod {
			return []txMethod{
				{"Suppressed", func(ctx context.Context) error { _, err := tx.Suppressed(ctx, f.h[0]); return err }},
				{"Add", func(ctx context.Context) error { return tx.Add(ctx, f.h[3]) }},
			}
		},
	}
}

func suppressionRollbackAfterCommit(t *testing.T, e *env, l suppression.List) {
	f := seedSuppressions(t, e, l)
	tx, err := l.Begin(e.ctx)
	must(t, err, "Begin")
	stageSuppressionWrites(t, e, tx, f)
	commitTx(t, e.ctx, tx)
	if err := tx.Rollback(e.ctx); err != nil {
		t.Errorf("Rollback after Commit = %v; want nil", err)
	}
	if d := diff(f.staged(), f.view(t, e.ctx, l)); d != "" {
		t.Errorf("Rollback after Commit undid the commit (-committed +after):\n%s", d)
	}
}

func suppressionTxDone(t *testing.T, e *env, l suppression.List) {
	for _, how := range []string{"Commit", "Rollback"} {
		f := seedSuppressions(t, e, l)
		tx, err := l.Begin(e.ctx)
		must(t, err, "Begin")
		must(t, tx.Add(e.ctx, f.h[2]), "Add")
		if how == "Commit" {
			commitTx(t, e.ctx, tx)
		} else {
			must(t, tx.Rollback(e.ctx), "Rollback")
		}
		before := f.view(t, e.ctx, l)
		checkDone(t, e.ctx, how, tx, suppression.ErrTxDone, []txMethod{
			{"Suppressed", func(ctx context.Context) error { _, err := tx.Suppressed(ctx, f.h[0]); return err }},
			{"ProfileSuppressed", func(ctx context.Context) error { _, err := tx.ProfileSuppressed(ctx, f.p[0]); return err }},
			{"Add", func(ctx context.Context) error { return tx.Add(ctx, f.h[3]) }},
			{"Remove", func(ctx context.Context) error { return tx.Remove(ctx, f.h[0]) }},
			{"AddProfile", func(ctx context.Context) error { return tx.AddProfile(ctx, f.p[1]) }},
			{"RemoveProfile", func(ctx context.Context) error { return tx.RemoveProfile(ctx, f.p[0]) }},
		})
		if d := diff(before, f.view(t, e.ctx, l)); d != "" {
			t.Errorf("calls on a transaction ended by %s changed the list (-before +after):\n%s", how, d)
		}
	}
}

func suppressionCancelledCommit(t *testing.T, e *env, l suppression.List) {
	suppressionStaging(t, e, l).checkCancelledCommit(t, e)
}

func suppressionConcurrentWriters(t *testing.T, e *env, l suppression.List) {
	pids := newPIDs(concurrentMax)
	hash := func(n int) identity.Hash { return hashOf(fmt.Sprint("concurrent-", n)) }
	errs := parallel(writers, func(w int) error {
		for i := 0; i < txsPerWriter; i++ {
			n := w*txsPerWriter + i
			// Readers run alongside the writers.
			if _, err := l.Suppressed(e.ctx, hash((n+1)%concurrentMax)); err != nil {
				return err
			}
			tx, err := l.Begin(e.ctx)
			if err != nil {
				return err
			}
			err = tx.Add(e.ctx, hash(n))
			if err == nil {
				err = tx.AddProfile(e.ctx, pids[n])
			}
			if err == nil && n%2 == 1 { // odd ones end unsuppressed
				err = tx.Remove(e.ctx, hash(n))
				if err == nil {
					err = tx.RemoveProfile(e.ctx, pids[n])
				}
			}
			if err == nil {
				err = tx.Commit(e.ctx)
			}
			if err != nil {
				_ = tx.Rollback(e.ctx)
				return errf("writer %d, transaction %d: %w", w, i, err)
			}
		}
		return nil
	})
	reportAll(t, errs)
	for n, pid := range pids {
		want := n%2 == 0
		if ok, err := l.Suppressed(e.ctx, hash(n)); err != nil || ok != want {
			t.Errorf("Suppressed(hash %d) after the concurrent writers = %v, %v; want %v", n, ok, err, want)
		}
		if ok, err := l.ProfileSuppressed(e.ctx, pid); err != nil || ok != want {
			t.Errorf("ProfileSuppressed(%d) after the concurrent writers = %v, %v; want %v", n, ok, err, want)
		}
	}
	checkLen(t, e.ctx, l, concurrentMax/2, concurrentMax/2)
}

// checkIsEmpty asks ec whether the list is empty and compares. Only a true
// answer must be exact: false is always allowed once something was
// suppressed, so the checks never require true after a suppression.
func checkIsEmpty(t *testing.T, ctx context.Context, what string, ec suppression.EmptyChecker, want bool) {
	t.Helper()
	got, err := ec.IsEmpty(ctx)
	must(t, err, "IsEmpty")
	if got != want {
		t.Errorf("IsEmpty %s = %v; want %v", what, got, want)
	}
}

// isEmptyAfter checks that a fresh list is empty, and that it is not once
// suppress commits, nor after a later write that lifts something else.
func isEmptyAfter(t *testing.T, e *env, l suppression.List, suppress func(suppression.Tx) error) {
	ec := optional[suppression.EmptyChecker](t, "the suppression list", l)
	checkLen(t, e.ctx, l, 0, 0)
	checkIsEmpty(t, e.ctx, "of a fresh list", ec, true)
	inTx(t, e.ctx, l.Begin, suppress)
	checkIsEmpty(t, e.ctx, "once a suppression committed", ec, false)
	inTx(t, e.ctx, l.Begin, func(tx suppression.Tx) error {
		if err := tx.Remove(e.ctx, hasher.ID(uid("never-suppressed"))); err != nil {
			return err
		}
		return tx.RemoveProfile(e.ctx, newPID())
	})
	checkIsEmpty(t, e.ctx, "after lifting what was never suppressed", ec, false)
}

func suppressionIsEmptyAfterIdentifier(t *testing.T, e *env, l suppression.List) {
	isEmptyAfter(t, e, l, func(tx suppression.Tx) error { return tx.Add(e.ctx, hasher.ID(uid("ada"+nextTag()))) })
}

func suppressionIsEmptyAfterProfile(t *testing.T, e *env, l suppression.List) {
	isEmptyAfter(t, e, l, func(tx suppression.Tx) error { return tx.AddProfile(e.ctx, newPID()) })
}

// checkValue returns a key check value made of b.
func checkValue(b byte) identity.Hash {
	var h identity.Hash
	for i := range h {
		h[i] = b
	}
	return h
}

func suppressionKeyCheckKeepsTheFirst(t *testing.T, e *env, l suppression.List) {
	kc := optional[suppression.KeyChecker](t, "the suppression list", l)
	if got, err := kc.KeyCheck(e.ctx); err != nil || !got.IsZero() {
		t.Errorf("KeyCheck of a fresh list = %v, %v; want zero (none recorded)", got, err)
	}
	first, second := checkValue(1), checkValue(2)
	for i, give := range []identity.Hash{first, second, first} {
		got, err := kc.RecordKeyCheck(e.ctx, give)
		must(t, err, "RecordKeyCheck")
		if got != first {
			t.Errorf("RecordKeyCheck #%d = %v; want the first recorded, %v", i+1, got, first)
		}
	}
	if got, err := kc.KeyCheck(e.ctx); err != nil || got != first {
		t.Errorf("KeyCheck = %v, %v; want the first recorded, %v", got, err, first)
	}
	if _, err := kc.RecordKeyCheck(e.ctx, identity.Hash{}); !errors.Is(err, suppression.ErrInvalid) {
		t.Errorf("RecordKeyCheck of a zero value = %v; want ErrInvalid", err)
	}
}

// rekeyed is the rekey function of the Rekeyer checks: any function of the
// old hash will do.
func rekeyed(h identity.Hash) identity.Hash { return hasher.Rekey(h) }

func suppressionRekeyCarriesEveryHash(t *testing.T, e *env, l suppression.List) {
	kc := optional[suppression.KeyChecker](t, "the suppression list", l)
	_, err := kc.RecordKeyCheck(e.ctx, checkValue(1))
	must(t, err, "RecordKeyCheck")
	f := seedSuppressions(t, e, l)
	tx, err := l.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	rk := optional[suppression.Rekeyer](t, "the suppression list's transaction", tx)
	// Staged before the Rekey: carried over with the committed ones.
	must(t, tx.Add(e.ctx, f.h[2]), "Add")
	n, err := rk.Rekey(e.ctx, rekeyed, checkValue(2))
	must(t, err, "Rekey")
	if n != 3 {
		t.Errorf("Rekey = %d; want 3 hashes replaced", n)
	}
	// Staged after it: as given.
	must(t, tx.Add(e.ctx, f.h[3]), "Add")
	moved := []identity.Hash{rekeyed(f.h[0]), rekeyed(f.h[1]), rekeyed(f.h[2]), f.h[3]}
	all := append(append([]identity.Hash(nil), f.h...), moved[:3]...)
	want := func() suppressionView {
		v := suppressionView{Hashes: map[identity.Hash]bool{}, Profiles: map[identity.ProfileID]bool{f.p[0]: true, f.p[1]: false, f.p[2]: false}}
		for _, h := range all {
			v.Hashes[h] = false
		}
		for _, h := range moved {
			v.Hashes[h] = true
		}
		return v
	}()
	if d := diff(want, viewSuppressions(t, e.ctx, tx, all, f.p)); d != "" {
		t.Errorf("the transaction after Rekey (-want +got):\n%s", d)
	}
	if ok, err := l.Suppressed(e.ctx, moved[0]); err != nil || ok {
		t.Errorf("before Commit, the list shows a rekeyed hash: %v, %v", ok, err)
	}
	must(t, tx.Commit(e.ctx), "Commit")
	if d := diff(want, viewSuppressions(t, e.ctx, l, all, f.p)); d != "" {
		t.Errorf("the list after Rekey (-want +got):\n%s", d)
	}
	checkLen(t, e.ctx, l, 4, 1)
	if got, err := kc.KeyCheck(e.ctx); err != nil || got != checkValue(2) {
		t.Errorf("KeyCheck after Rekey = %v, %v; want the check value Rekey recorded", got, err)
	}
	// Refused: no function, no check value.
	inTx(t, e.ctx, l.Begin, func(tx suppression.Tx) error {
		rk := tx.(suppression.Rekeyer)
		if _, err := rk.Rekey(e.ctx, nil, checkValue(4)); !errors.Is(err, suppression.ErrInvalid) {
			t.Errorf("Rekey without a function = %v; want ErrInvalid", err)
		}
		if _, err := rk.Rekey(e.ctx, rekeyed, identity.Hash{}); !errors.Is(err, suppression.ErrInvalid) {
			t.Errorf("Rekey without a check value = %v; want ErrInvalid", err)
		}
		return nil
	})
}

func suppressionRekeyRolledBack(t *testing.T, e *env, l suppression.List) {
	kc := optional[suppression.KeyChecker](t, "the suppression list", l)
	_, err := kc.RecordKeyCheck(e.ctx, checkValue(1))
	must(t, err, "RecordKeyCheck")
	f := seedSuppressions(t, e, l)
	before := f.view(t, e.ctx, l)
	tx, err := l.Begin(e.ctx)
	must(t, err, "Begin")
	rk := optional[suppression.Rekeyer](t, "the suppression list's transaction", tx)
	_, err = rk.Rekey(e.ctx, rekeyed, checkValue(2))
	must(t, err, "Rekey")
	must(t, tx.Rollback(e.ctx), "Rollback")
	if d := diff(before, f.view(t, e.ctx, l)); d != "" {
		t.Errorf("a rolled back Rekey changed the list (-before +after):\n%s", d)
	}
	if got, err := kc.KeyCheck(e.ctx); err != nil || got != checkValue(1) {
		t.Errorf("KeyCheck after a rolled back Rekey = %v, %v; want the first check value", got, err)
	}
}

// suppressionRekeyConcurrentWrite: a writer that stated its key
// (suppression.KeyGuard) and a Rekey at once: whichever order they commit
// in, the writer's hash is carried to the new key (a Rekey waits for the
// writer), or the writer's Commit fails with ErrKeyChanged and writes
// nothing (a Rekey committed first); never is it left under the old key.
// A writer stating the old key after the Rekey committed is refused.
func suppressionRekeyConcurrentWrite(t *testing.T, e *env, l suppression.List) {
	e.needConcurrentTx(t)
	kc := optional[suppression.KeyChecker](t, "the suppression list", l)
	_, err := kc.RecordKeyCheck(e.ctx, checkValue(1))
	must(t, err, "RecordKeyCheck")
	h := hashOf("written-during-a-rekey" + nextTag())
	w, err := l.Begin(e.ctx)
	must(t, err, "Begin")
	defer w.Rollback(e.ctx)
	kg := optional[suppression.KeyGuard](t, "the suppression list's transaction", w)
	must(t, kg.RequireKey(e.ctx, checkValue(1)), "RequireKey")
	must(t, w.Add(e.ctx, h), "Add")
	done := make(chan error, 1)
	go func() {
		tx, err := l.Begin(e.ctx)
		if err != nil {
			done <- err
			return
		}
		defer tx.Rollback(e.ctx)
		if _, err := tx.(suppression.Rekeyer).Rekey(e.ctx, rekeyed, checkValue(2)); err != nil {
			done <- err
			return
		}
		done <- tx.Commit(e.ctx)
	}()
	werr := w.Commit(e.ctx)
	must(t, <-done, "the Rekey")
	carried, err := l.Suppressed(e.ctx, rekeyed(h))
	must(t, err, "Suppressed")
	switch {
	case werr == nil && !carried:
		t.Error("the hash written during the Rekey was committed but not carried to the new key")
	case werr != nil && !errors.Is(werr, suppression.ErrKeyChanged):
		t.Errorf("Commit of the writer = %v; want nil or ErrKeyChanged", werr)
	case werr != nil && carried:
		t.Error("the writer's Commit failed, yet its hash is there")
	}
	if ok, err := l.Suppressed(e.ctx, h); err != nil || ok {
		t.Errorf("the hash written during the Rekey stayed under the old key: %v, %v", ok, err)
	}
	late, err := l.Begin(e.ctx)
	must(t, err, "Begin")
	defer late.Rollback(e.ctx)
	if err := late.(suppression.KeyGuard).RequireKey(e.ctx, checkValue(1)); !errors.Is(err, suppression.ErrKeyChanged) {
		t.Errorf("RequireKey of the old key after the Rekey = %v; want ErrKeyChanged", err)
	}
}
