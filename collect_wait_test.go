package privacy_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// From an adversarial review of the in-memory graph's version (a first look
// at a person's identifiers that no commit followed is trusted under their
// locks): the test below fails at every run when the version is not
// consulted, or not moved by a commit.

// storedMessageIDs returns every message id stored on any profile, with the
// profile it is on.
func storedMessageIDs(t *testing.T, e *env) map[string]identity.ProfileID {
	t.Helper()
	ctx := context.Background()
	pids, err := e.profiles.IDs(ctx, "", 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]identity.ProfileID{}
	for _, pid := range pids {
		q := profile.EventQuery{Limit: profile.MaxLimit}
		for {
			page, err := e.profiles.Events(ctx, pid, q)
			if errors.Is(err, profile.ErrNotFound) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range page.Events {
				out[ev.MessageID] = pid
			}
			if page.Next == "" {
				break
			}
			q.Cursor = page.Next
		}
	}
	return out
}

// checkNoOrphans: every stored profile is in the graph and the graph has no
// profile the store lacks... (a graph profile whose profile commit has not
// happened is impossible here: no commit fails).
func checkNoOrphans(t *testing.T, e *env, round int) {
	t.Helper()
	ctx := context.Background()
	pids, err := e.profiles.IDs(ctx, "", 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if _, err := e.graph.Node(ctx, pid); err != nil {
			t.Fatalf("round %d: profile %s is stored but not in the graph: %v", round, pid, err)
		}
	}
	if n, _ := e.graph.Len(); n != len(pids) {
		t.Fatalf("round %d: graph has %d profiles, store %d", round, n, len(pids))
	}
}

// gatedProfiles is a profile store whose Begin waits while the gate is shut,
// once armed: an operation that begins it holds its people's locks.
type gatedProfiles struct {
	*profile.MemStore
	armed   atomic.Bool
	entered chan struct{}
	open    chan struct{}
}

func (s *gatedProfiles) Begin(ctx context.Context) (profile.Tx, error) {
	if s.armed.CompareAndSwap(true, false) {
		close(s.entered)
		<-s.open
	}
	return s.MemStore.Begin(ctx)
}

// TestCollectWaitingOnAnErasureOrMergeFollowsIt: a Collect that looked the
// person up while an erasure held them, and waited for the erasure's locks,
// must not store on the erased profile (which would leave it stored but gone
// from the graph, with the erased person's event on it).
func TestCollectWaitingOnAnErasureOrMergeFollowsIt(t *testing.T) {
	for _, kind := range []string{"erase", "merge"} {
		t.Run(kind, func(t *testing.T) {
			st := &gatedProfiles{MemStore: profile.NewMemStore(), entered: make(chan struct{}), open: make(chan struct{})}
			g := identity.NewMemGraph()
			e := newEnv(t, privacy.WithIdentity(g), privacy.WithProfiles(st))
			e.graph, e.profiles = g, st.MemStore
			ctx := context.Background()
			e.collect(t, privacy.Identify{UserID: "u", AnonymousID: "a", Timestamp: at(0)})
			e.collect(t, privacy.Track{AnonymousID: "b", Event: "E", Timestamp: at(0)})
			old, err := e.c.Profile(ctx, anon("a"))
			if err != nil {
				t.Fatal(err)
			}
			st.armed.Store(true)
			first := make(chan error, 1)
			go func() {
				if kind == "erase" {
					_, err := e.c.Erase(ctx, user("u"))
					first <- err
					return
				}
				// u's profile absorbs b's.
				first <- e.c.Collect(ctx, privacy.Identify{MessageID: "merge", UserID: "u", AnonymousID: "b", Timestamp: at(1)})
			}()
			<-st.entered // the first operation holds u's locks
			second := make(chan error, 1)
			late := "a" // on the erased profile
			if kind == "merge" {
				late = "b" // on the profile merged away (u's keeps its id)
			}
			go func() {
				second <- e.c.Collect(ctx, privacy.Track{MessageID: "late", AnonymousID: late, Event: "E", Timestamp: at(2)})
			}()
			time.Sleep(50 * time.Millisecond) // the Collect looks a up and waits for the locks
			close(st.open)
			if err := <-first; err != nil {
				t.Fatal(err)
			}
			if err := <-second; err != nil {
				t.Fatal(err)
			}
			checkNoOrphans(t, e, 0)
			stored := storedMessageIDs(t, e)
			pid, ok := stored["late"]
			if !ok {
				t.Fatal("the late track is stored nowhere")
			}
			if kind == "erase" && pid == old.ID {
				t.Fatalf("the late track is on the erased profile %s", pid)
			}
			if kind == "merge" {
				now, err := e.c.Profile(ctx, anon(late))
				if err != nil || now.ID != pid {
					t.Fatalf("the late track is on %s, a leads to %v (%v)", pid, now, err)
				}
			}
		})
	}
}
