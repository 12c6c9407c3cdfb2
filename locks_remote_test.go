package privacy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/txscope"
)

// movingGraph is an identity graph that locks subjects across processes
// (it records the keys) and whose second look at an identifier finds it on
// another profile than the first did: another host merged or re-created
// the person between the two looks.
type movingGraph struct {
	*identity.MemGraph
	first, second identity.ProfileID

	mu     sync.Mutex
	looks  int
	locked []string
}

// look is where the graph answers every identifier is: the first profile
// at odd looks, the second at even ones.
func (g *movingGraph) look() identity.ProfileID {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.looks++
	if g.looks%2 == 0 {
		return g.second
	}
	return g.first
}

func (g *movingGraph) Lookup(ctx context.Context, id identity.ID) (identity.ProfileID, error) {
	return g.look(), nil
}

func (g *movingGraph) LookupBatch(ctx context.Context, ids []identity.ID, dst []identity.ProfileID) ([]identity.ProfileID, error) {
	pid := g.look()
	for range ids {
		dst = append(dst, pid)
	}
	return dst, nil
}

func (g *movingGraph) LockSubjects(ctx context.Context, keys []string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.locked = append(g.locked, keys...)
	return nil
}

// TestAPersonMovedBetweenLooksIsLockedAcrossProcesses: when the look under
// the locks finds a person on another profile than the first look did,
// lockMatchesAnd does not hand it out unless that profile's cross-process
// lock is held, even when the profile's in-process stripe is one it holds
// already (stripes are shared by hash: a profile's may be another's). It
// handed it out so, and another host could change that profile meanwhile.
// From an adversarial review.
func TestAPersonMovedBetweenLooksIsLockedAcrossProcesses(t *testing.T) {
	g := &movingGraph{MemGraph: identity.NewMemGraph(), first: "use_first"}
	c, err := New(WithIdentity(g))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.locker == nil {
		t.Fatal("the graph's LockSubjects was not taken as the cross-process locker")
	}
	// A profile whose stripe is the first profile's.
	stripe := c.locks.profile(g.first)
	for i := 0; g.second == ""; i++ {
		if pid := identity.ProfileID(fmt.Sprintf("use_second%d", i)); c.locks.profile(pid) == stripe {
			g.second = pid
		}
	}
	ctx, end := c.openScope(context.Background())
	defer end()
	id := identity.ID{Type: identity.TypeUserID, Value: "ada"}
	matches, held, err := c.lockMatchesAnd(ctx, []identity.ID{id}, nil, nil)
	if err != nil {
		if !errors.Is(err, txscope.ErrRetry) {
			t.Fatalf("lockMatchesAnd: %v; want it handed out locked, or started over", err)
		}
		return // started over: nothing handed out unlocked
	}
	defer c.locks.unlock(&held)
	g.mu.Lock()
	locked := slices.Clone(g.locked)
	g.mu.Unlock()
	for _, m := range matches {
		if m.Profile != "" && !slices.Contains(locked, txscope.ProfileKey(string(m.Profile))) {
			t.Fatalf("handed out %s on profile %s, whose cross-process lock is not held (held: %v)", m.ID, m.Profile, locked)
		}
	}
}
