package privacy_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
)

// runInBackground starts c.Run and returns a function that stops it and
// returns what Run returned.
func runInBackground(t *testing.T, c *privacy.Controller) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return after its context ended")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// TestRunRecoversAndTakesOver: Run completes at once what this host left
// unfinished before it restarted, and takes over another host's requests once
// that host's lease has lapsed.
func TestRunRecoversAndTakesOver(t *testing.T) {
	t.Run("restart", func(t *testing.T) {
		w := newWorld(t)
		c := w.controller(t)
		person(t, &env{c: c, graph: w.graph, profiles: w.profiles}, "ada")
		id, c2 := crashAfterDecision(t, w, c, privacy.Request{Type: privacy.DeleteOnly, Subjects: []identity.ID{user("ada")}})
		stop := runInBackground(t, c2)
		waitFor(t, "Run recovered the erasure", func() bool {
			r, err := c2.Status(context.Background(), id)
			return err == nil && r.Status == privacy.Finished
		})
		if err := stop(); err != nil {
			t.Errorf("Run after its context ended = %v; want nil", err)
		}
	})
	t.Run("takeover", func(t *testing.T) {
		h := newHosts()
		a, _, _, r := h.erasingAtA(t)
		clkB := newClock(t0)
		// B has the destination too: the deletion A could not deliver is
		// owed still, in the outbox both share.
		b := h.host(t, "host-b", clkB, privacy.WithSchedule(privacy.Schedule{Recover: 5 * time.Millisecond}),
			privacy.WithDestinations(destination.NewRecorder("crm")))
		runInBackground(t, b)
		time.Sleep(50 * time.Millisecond) // several of B's rounds, within A's lease
		if e := statusOf(t, h.mem, r.ID); e.Owner != "host-a" {
			t.Fatalf("B's Run took the request over while A's lease holds: owner %q", e.Owner)
		}
		a.Close() // A stops, and its lease lapses
		clkB.advance(2 * time.Minute)
		waitFor(t, "B finished A's erasure", func() bool {
			e := statusOf(t, h.mem, r.ID)
			return e.Owner == "host-b" && e.Status == privacy.Finished
		})
	})
}

// TestRunRefreshesAndReportsOverdue: Run refreshes audiences on its schedule
// and reports requests past their due date in the log; it returns ErrClosed
// once the Controller is closed.
func TestRunRefreshesAndReportsOverdue(t *testing.T) {
	var mu sync.Mutex
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	clk := newClock(t0)
	blocked := newGate()
	e := newEnv(t, privacy.WithClock(clk.now), privacy.WithLogger(logger), privacy.WithDestinations(blocked), fastDelivery(),
		privacy.WithSchedule(privacy.Schedule{Refresh: 5 * time.Millisecond, Overdue: 5 * time.Millisecond}))
	define(t, e.c, "recent", `event('Viewed').within(1 days).count() >= 1`)
	person(t, e, "ada")
	if got := members(t, e.c, "recent"); len(got) != 1 {
		t.Fatalf("members of recent = %v; want ada", got)
	}
	late, err := e.c.Erase(context.Background(), user("ada")) // waits for the gate: stays RUNNING
	if err != nil {
		t.Fatal(err)
	}
	person(t, e, "bob")
	clk.advance(40 * 24 * time.Hour) // bob's view ages out; the erasure is overdue
	runInBackground(t, e.c)
	waitFor(t, "Run refreshed recent", func() bool { return len(members(t, e.c, "recent")) == 0 })
	waitFor(t, "Run reported the overdue request", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(logs.String(), "past its due date") && strings.Contains(logs.String(), late.ID)
	})
	close(blocked.open)
	e.c.Close()
	if err := e.c.Run(context.Background()); !errors.Is(err, privacy.ErrClosed) {
		t.Errorf("Run on a closed Controller = %v; want ErrClosed", err)
	}
}

// writerFunc is an io.Writer made of a function.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
