package privacy_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/txscope"
)

// lockingGraph is an identity graph that says it locks subjects across
// processes: it records every LockSubjects call and fails the first failFirst
// of them with txscope.ErrRetry, as a database breaking a deadlock would.
type lockingGraph struct {
	*identity.MemGraph
	mu        sync.Mutex
	calls     int
	failFirst int
	keys      [][]string
	noScope   bool
}

func (g *lockingGraph) LockSubjects(ctx context.Context, keys []string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls++
	g.keys = append(g.keys, slices.Clone(keys))
	if txscope.FromContext(ctx) == nil {
		g.noScope = true
	}
	if g.failFirst < 0 || g.calls <= g.failFirst {
		return retryError{}
	}
	return nil
}

// retryError is what lockingGraph returns: a conflict marked with ErrRetry.
type retryError struct{}

func (retryError) Error() string { return "deadlock detected" }
func (retryError) Unwrap() error { return txscope.ErrRetry }

func TestCollectLocksSubjectsAcrossProcessesAndRetriesConflicts(t *testing.T) {
	ctx := context.Background()
	g := &lockingGraph{MemGraph: identity.NewMemGraph(), failFirst: 2}
	c, err := privacy.New(privacy.WithIdentity(g))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Collect(ctx, privacy.Identify{UserID: "ada", Traits: map[string]any{"plan": "pro"}, Timestamp: t0}); err != nil {
		t.Fatalf("Collect after two conflicts: %v", err)
	}
	g.mu.Lock()
	calls, noScope, keys := g.calls, g.noScope, g.keys
	g.mu.Unlock()
	if calls < 3 {
		t.Fatalf("LockSubjects called %d times, want the two conflicts and a success", calls)
	}
	if noScope {
		t.Error("LockSubjects was called without a txscope.Scope in the context")
	}
	if !slices.Contains(keys[len(keys)-1], "id:user_id:ada") {
		t.Errorf("locked keys %v, want the identifier's key", keys[len(keys)-1])
	}
	if _, err := c.Profile(ctx, user("ada")); err != nil {
		t.Fatalf("the profile was not stored after the retries: %v", err)
	}

	// A right locks the person's profile too.
	g.mu.Lock()
	g.keys = nil
	g.mu.Unlock()
	r, err := c.Erase(ctx, user("ada"))
	if err != nil || r.Status != privacy.Finished {
		t.Fatalf("Erase: %+v, %v", r, err)
	}
	g.mu.Lock()
	var profileLocked bool
	for _, ks := range g.keys {
		for _, k := range ks {
			profileLocked = profileLocked || len(k) > len("profile:") && k[:len("profile:")] == "profile:"
		}
	}
	g.mu.Unlock()
	if !profileLocked {
		t.Error("the erasure did not lock the person's profile across processes")
	}

	// A conflict that never ends is returned, marked, after a bounded number of tries.
	g.mu.Lock()
	g.failFirst, g.calls = -1, 0
	g.mu.Unlock()
	err = c.Collect(ctx, privacy.Track{UserID: "bob", Event: "E", Timestamp: t0})
	if !errors.Is(err, txscope.ErrRetry) {
		t.Fatalf("Collect with endless conflicts = %v, want ErrRetry", err)
	}
	g.mu.Lock()
	calls = g.calls
	g.mu.Unlock()
	if calls < 2 || calls > 10 {
		t.Errorf("endless conflicts were tried %d times, want a small bound", calls)
	}
	g.mu.Lock()
	g.failFirst = 0 // reads lock too
	g.mu.Unlock()
	if _, err := c.Profile(ctx, user("bob")); !errors.Is(err, privacy.ErrNotFound) {
		t.Errorf("a message that never got its locks was stored: %v", err)
	}
}
