package privacy_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
)

// mergingLockerGraph is the world's graph that locks subjects across
// processes (txscope.Locker): at the first LockSubjects after arm, another
// host merges the person (its hook) while this one waits for the locks,
// as a PostgreSQL advisory lock held by that host's merge would have it.
type mergingLockerGraph struct {
	*identity.MemGraph
	mu   sync.Mutex
	hook func()
}

func (g *mergingLockerGraph) LockSubjects(ctx context.Context, keys []string) error {
	g.mu.Lock()
	h := g.hook
	g.hook = nil
	g.mu.Unlock()
	if h != nil {
		h()
	}
	return nil
}

// TestRecoverRetriesAPersonMovedWhileLocking: Recover of a decided
// erasure, whose person another host merges into an older profile while
// Recover waits for their cross-process locks, completes the request, as
// every other operation does when the person moved while being locked
// (errRestart: Collect, Apply, Access, CollectBatch, reevaluate run again in
// a new scope). Recover handed errRestart back: it reported "the subjects
// changed while being locked" and left the decided request unfinished (and
// claimed by this host) until a later Recover. From an adversarial review.
func TestRecoverRetriesAPersonMovedWhileLocking(t *testing.T) {
	w := newWorld(t)
	c := w.controller(t)
	ctx := context.Background()
	e := &env{c: c, graph: w.graph, profiles: w.profiles}
	e.collect(t, privacy.Track{MessageID: "old", AnonymousID: "old-device", Event: "Seen", Timestamp: at(-10)})
	person(t, e, "ada")
	id, other := crashAfterDecision(t, w, c, privacy.Request{Type: privacy.DeleteOnly, Subjects: []identity.ID{user("ada")}})

	g := &mergingLockerGraph{MemGraph: w.graph}
	c3, err := privacy.New(
		privacy.WithIdentity(g),
		privacy.WithProfiles(w.profiles),
		privacy.WithAudiences(w.auds),
		privacy.WithSuppressions(w.supp),
		privacy.WithJournal(w.journal),
		privacy.WithOutbox(w.outbox),
		privacy.WithDestinations(w.rec), privacy.WithKey(worldKey), testLimits,
		privacy.WithInstance("host-1"),
		privacy.WithClock(func() time.Time { return t0 }),
		privacy.WithDelivery(privacy.Delivery{Backoff: time.Millisecond, MaxBackoff: time.Millisecond, MaxAttempts: 3, Lease: 100 * time.Millisecond}),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	// Another host (its own stripes) merges ada into the older profile of
	// old-device while c3 waits for her cross-process locks.
	g.hook = func() { mergeIntoOlder(t, other) }
	n, err := c3.Recover(ctx)
	if n != 1 || err != nil {
		t.Errorf("Recover = %d, %v; want 1, nil (a person who moved while being locked is locked again)", n, err)
	}
	flush(t, c3)
	if r, err := c3.Status(ctx, id); err != nil || r.Status != privacy.Finished {
		t.Errorf("Status = %+v, %v; want FINISHED", r, err)
	}
	for _, who := range []identity.ID{user("ada"), anon("old-device"), anon("ada-phone")} {
		if p, err := c3.Profile(ctx, who); !errors.Is(err, privacy.ErrNotFound) {
			t.Errorf("Profile(%s) after Recover = %+v, %v; want ErrNotFound", who, p, err)
		}
	}
}
