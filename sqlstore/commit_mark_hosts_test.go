package sqlstore_test

// Attacks of a review of the commit marks, hosts on one PostgreSQL
// database. Recover read the mark (readCommitMark) before it took the
// person's locks. The
// host that held the request (its lease lapsed: a stall, or clocks apart)
// may still be committing: it holds the person's locks until its commit,
// which marks the request; the host that took over read "not marked" before
// and waits for the locks; a collection gets them first and makes the
// person anew; the recovering host then decides the erasure again on the
// person as they are now and erases the new profile: exactly what the marks
// were to prevent. Read under the locks, the mark would have been seen.

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/sqlstore"
)

// gatedProfiles: its transactions run gate at Commit (once armed), and pass
// everything on.
type gatedProfiles struct {
	sealingStore
	gate func()
}

func (g *gatedProfiles) Begin(ctx context.Context) (profile.Tx, error) {
	tx, err := g.sealingStore.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &gatedTx{Tx: tx, g: g}, nil
}

type gatedTx struct {
	profile.Tx
	g *gatedProfiles
}

func (t *gatedTx) Commit(ctx context.Context) error {
	if t.g.gate != nil {
		t.g.gate()
	}
	return t.Tx.Commit(ctx)
}

// slowMarks is an outbox that reads the marks, then runs after: the time
// between the read and what follows, stretched.
type slowMarks struct {
	outbox.Store
	after func()
}

func (s *slowMarks) RequestMarked(ctx context.Context, id string) (bool, error) {
	m, err := s.Store.(outbox.RequestMarks).RequestMarked(ctx, id)
	s.after()
	return m, err
}

func TestMarkReadBeforeTheLocks(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	ctx := t.Context()
	ada, bob := seedCrash(t, s)
	s.Instance = "" // each Controller an instance of its own: three hosts

	// Host A erases ada; its commit waits at the profile store (the person
	// locked, nothing committed).
	pA := s.open(t)
	atCommit, release := make(chan struct{}), make(chan struct{})
	gp := &gatedProfiles{sealingStore: profilesOf(pA.data)}
	gp.gate = func() {
		close(atCommit)
		<-release
	}
	cA := pA.controller(t, gp)
	erased := make(chan error, 1)
	go func() {
		_, err := cA.Erase(context.Background(), userID(ada))
		erased <- err
	}()
	<-atCommit
	gp.gate = nil

	// Host B, whose clock is ahead (or A stalled past its lease), takes the
	// request over and reads its mark: none yet.
	pB := s.open(t)
	markRead, goOn := make(chan struct{}), make(chan struct{})
	cB := pB.controller(t, nil, privacy.WithOutbox(&slowMarks{Store: pB.data.Outbox(), after: func() {
		close(markRead)
		<-goOn
	}}), privacy.WithClock(func() time.Time { return time.Now().Add(time.Hour) }))
	recovered := make(chan error, 1)
	go func() {
		_, err := cB.Recover(context.Background())
		recovered <- err
	}()
	// (Read before the locks, B read "not marked" here; read under the
	// locks, B waits for A's, and reads it after A's commit.)
	readFirst := false
	select {
	case <-markRead:
		readFirst = true
	case err := <-recovered:
		t.Fatalf("Recover returned before reading the mark: %v", err)
	case <-time.After(time.Second):
	}

	// A's commit lands (with its mark); its journal record is refused.
	close(release)
	if err := <-erased; err != nil {
		t.Logf("host A's Erase: %v", err)
	}
	// ada signs up again, on host C, after the erasure committed.
	pC := s.open(t)
	cC := pC.controller(t, nil)
	collected := make(chan error, 1)
	go func() {
		collected <- cC.Collect(ctx, privacy.Identify{MessageID: "again", UserID: ada.uid, Traits: map[string]any{"plan": "new"}, Timestamp: time.Now()})
	}()
	var fresh *profile.Profile
	if readFirst {
		must(t, <-collected)
		var err error
		fresh, err = cC.Profile(ctx, userID(ada))
		must(t, err)
		close(goOn)
	} else {
		<-markRead
		close(goOn)
		must(t, <-collected)
		var err error
		fresh, err = cC.Profile(ctx, userID(ada))
		must(t, err)
	}
	if err := <-recovered; err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if got, err := cC.Profile(ctx, identity.ID{Type: identity.TypeUserID, Value: ada.uid}); err != nil || got.ID != fresh.ID {
		t.Errorf("after B's Recover, the profile collected after the erasure committed = %v, %v; want %s kept (the request was marked when B locked the person)", got, err, fresh.ID)
	}
	checkIntact(t, s, cC, bob)
}

// TestCommitRetryMissesMerge: an erasure's first commit fails (its
// connection terminated: nothing of it committed, its locks are gone);
// before the Controller's retry, another host merges the person into an
// older profile; the retry commits the recorded decision (and marks it), and
// the request is FINISHED while the person's identifiers lead to the merged
// profile. (Not the marks' doing: the retry of commitDecision redoes the
// recorded decision under the decision's profile locks only, while Recover
// would have decided it again on the person as they are now. Listed because
// the brief asked about a failed data commit followed by a merge.)
func TestCommitRetryMissesMerge(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	ctx := t.Context()
	const device = "old-device-retry"
	{
		p := s.open(t)
		c := p.controller(t, nil)
		must(t, c.Collect(ctx, privacy.Track{MessageID: "old", AnonymousID: device, Event: "Seen", Timestamp: time.Now()}))
		c.Close()
		p.close()
	}
	ada, bob := seedCrash(t, s)
	s.Instance = ""
	pA := s.open(t)
	gp := &gatedProfiles{sealingStore: profilesOf(pA.data)}
	cA := pA.controller(t, gp)
	pB := s.open(t)
	cB := pB.controller(t, nil)
	var hookErr error
	gp.gate = func() {
		gp.gate = nil
		if ok, err := decided(pA); err != nil || !ok {
			hookErr = errors.Join(errors.New("commit before the decision"), err)
			return
		}
		if hookErr = terminateTx(s, pA); hookErr != nil {
			return
		}
		// Host B, meanwhile: ada is seen on the old device.
		hookErr = cB.Collect(context.Background(), privacy.Identify{MessageID: "merge", UserID: ada.uid, AnonymousID: device,
			Traits: map[string]any{"city": "Paris"}, Timestamp: time.Now()})
	}
	r, err := cA.Erase(ctx, userID(ada))
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	t.Logf("Erase = %s, %v", r.Status, err)
	if err == nil && r.Status == privacy.Finished {
		for _, id := range []identity.ID{userID(ada), {Type: identity.TypeAnonymousID, Value: device}} {
			if p, err := cB.Profile(ctx, id); !errors.Is(err, privacy.ErrNotFound) {
				t.Errorf("the erasure is FINISHED, yet Profile(%v) = %s %v, %v; want ErrNotFound (the person as they are now)", id, p.ID, p.Traits, err)
			}
		}
	}
	checkIntact(t, s, cB, bob)
}
