package privacy_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/internal/faultinject"
	"github.com/gdprkit/privacy/profile"
	"github.com/google/go-cmp/cmp"
)

// TestRecipientsAreRecorded checks that a profile's metadata names every
// destination its data was handed to, with the first and latest time, and that
// a merge keeps the recipients of both profiles.
func TestRecipientsAreRecorded(t *testing.T) {
	ctx := context.Background()
	clk := newClock(t0)
	crm, ads := destination.NewRecorder("crm"), destination.NewRecorder("ads")
	c, err := privacy.New(privacy.WithClock(clk.now), privacy.WithDestinations(crm, ads))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	collect := func(m privacy.Message) {
		t.Helper()
		if err := c.Collect(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	collect(privacy.Track{UserID: "ada", Event: "E", Timestamp: t0})
	clk.advance(time.Hour)
	collect(privacy.Track{UserID: "ada", Event: "E", Timestamp: t0})
	clk.advance(time.Hour)
	collect(privacy.Track{AnonymousID: "anon-1", Event: "E", Timestamp: t0}) // a profile of its own, for now
	m, err := c.Metadata(ctx, user("ada"))
	if err != nil {
		t.Fatal(err)
	}
	want := []profile.Recipient{
		{Name: "crm", FirstSent: t0, LastSent: t0.Add(time.Hour)},
		{Name: "ads", FirstSent: t0, LastSent: t0.Add(time.Hour)},
	}
	if diff := cmp.Diff(want, m.Recipients); diff != "" {
		t.Errorf("recipients (-want +got):\n%s", diff)
	}

	clk.advance(time.Hour)
	collect(privacy.Identify{UserID: "ada", AnonymousID: "anon-1", Timestamp: t0}) // merges the two
	m, err = c.Metadata(ctx, user("ada"))
	if err != nil {
		t.Fatal(err)
	}
	want = []profile.Recipient{
		{Name: "crm", FirstSent: t0, LastSent: t0.Add(3 * time.Hour)},
		{Name: "ads", FirstSent: t0, LastSent: t0.Add(3 * time.Hour)},
	}
	if diff := cmp.Diff(want, m.Recipients); diff != "" {
		t.Errorf("recipients after the merge (-want +got):\n%s", diff)
	}

	// Without destinations, nobody is named.
	quiet := newEnv(t)
	person(t, quiet, "bob")
	if m, err := quiet.c.Metadata(ctx, user("bob")); err != nil || m.Recipients != nil {
		t.Errorf("recipients without destinations = %v, %v; want none", m.Recipients, err)
	}
}

// failingCommits wraps a profile store so that its commits fail while on is
// set.
func failingCommits(s profile.Store, on *atomic.Bool) profile.Store {
	return faultinject.ProfileStore(s, func(p faultinject.Point) error {
		if p.Step == faultinject.Commit && on.Load() {
			return errors.New("injected commit failure")
		}
		return nil
	})
}

func TestNothingIsDeliveredForAChangeThatDidNotCommit(t *testing.T) {
	rec := destination.NewRecorder("crm")
	var failing atomic.Bool
	c, err := privacy.New(privacy.WithProfiles(failingCommits(profile.NewMemStore(), &failing)), privacy.WithDestinations(rec), fastDelivery())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	define(t, c, "pro", `trait('plan') = 'pro'`)
	failing.Store(true)
	if err := c.Collect(ctx, privacy.Identify{UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(0)}); err == nil {
		t.Fatal("Collect succeeded over a failing commit")
	}
	flush(t, c)
	if got := rec.Messages(); len(got) != 0 {
		t.Fatalf("destination got %d messages for a rolled-back change: %+v", len(got), got)
	}
	if got := members(t, c, "pro"); len(got) != 0 {
		t.Fatalf("audience has members from a rolled-back change: %v", got)
	}
	failing.Store(false)
	if err := c.Collect(ctx, privacy.Identify{UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(1)}); err != nil {
		t.Fatal(err)
	}
	flush(t, c)
	if diff := cmp.Diff([]string{"identify", "track Audience Entered pro"}, received(rec)); diff != "" {
		t.Fatalf("after a good commit (-want +got):\n%s", diff)
	}
}

// hanging blocks every call until released; panicking panics on every call.
type hanging struct{ release chan struct{} }

func (h *hanging) Name() string { return "hanging" }

func (h *hanging) Send(ctx context.Context, _ []destination.Message) error {
	<-h.release // ignores ctx on purpose
	return nil
}

func (h *hanging) Delete(ctx context.Context, _ destination.Deletion) error { <-h.release; return nil }

type panicking struct{}

func (panicking) Name() string { return "panicking" }

func (panicking) Send(context.Context, []destination.Message) error { panic("boom") }

func (panicking) Delete(context.Context, destination.Deletion) error { panic("boom") }

// TestBadDestinationsNeverBlockCollectionOrOthers: destinations that fail,
// panic or hang behind Collect delay only themselves. A hanging call (one
// that ignores its context) holds the person's later items for its
// destination until it returns, so that nothing overtakes it; then they go.
func TestBadDestinationsNeverBlockCollectionOrOthers(t *testing.T) {
	good := destination.NewRecorder("good")
	failing := destination.NewRecorder("failing")
	failing.FailSends(-1)
	flaky := destination.NewRecorder("flaky")
	flaky.FailSends(2)
	hang := &hanging{release: make(chan struct{})}
	c, err := privacy.New(privacy.WithDestinations(good, failing, flaky, hang, panicking{}),
		privacy.WithDelivery(privacy.Delivery{Backoff: time.Millisecond, MaxBackoff: time.Millisecond, MaxAttempts: 3, Timeout: 100 * time.Millisecond, BatchSize: 7}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	const n = 50
	for i := range n {
		// Collect returns while destinations fail, hang and panic behind it.
		if err := c.Collect(ctx, privacy.Track{MessageID: fmt.Sprint("m", i), UserID: "u1", Event: "E", Timestamp: at(i)}); err != nil {
			t.Fatal(err)
		}
	}
	stats := func() map[string]privacy.DeliveryStats {
		st, err := c.DeliveryStats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	waitFor(t, "the other destinations answered", func() bool {
		st := stats()
		return len(good.Messages()) == n && len(flaky.Messages()) == n && st["failing"].Failed == n && st["panicking"].Failed == n
	})
	if got := flaky.Messages(); got[0].MessageID != "m0" || got[n-1].MessageID != fmt.Sprint("m", n-1) {
		t.Fatalf("flaky destination got %d messages (first %v), want all %d in order, each once", len(got), got, n)
	}
	st := stats()
	for _, name := range []string{"failing", "panicking"} {
		if s := st[name]; s.Failed != n || s.Delivered != 0 || s.Pending != 0 || s.Dead != n {
			t.Errorf("%s: stats %+v, want all %d failed after their attempts, dead letters now", name, s, n)
		}
	}
	if s := st["flaky"]; s.Delivered != n || s.Retries != 2 {
		t.Errorf("flaky: stats %+v, want %d delivered after 2 retries", s, n)
	}
	if s := st["hanging"]; s.Pending != n || s.Delivered != 0 {
		t.Errorf("hanging: stats %+v, want all %d pending behind the hanging call", s, n)
	}
	p, err := c.Profile(ctx, user("u1"))
	if err != nil || p.Metadata.Version != n {
		t.Fatalf("store after bad destinations: %v, %v; want version %d", p, err, n)
	}
	close(hang.release)
	flush(t, c)
	if s := stats()["hanging"]; s.Delivered != n || s.Pending != 0 {
		t.Errorf("hanging, released: stats %+v, want all %d delivered", s, n)
	}
}

func TestFlushHonoursItsContext(t *testing.T) {
	hang := &hanging{release: make(chan struct{})}
	c, err := privacy.New(privacy.WithDestinations(hang), privacy.WithDelivery(privacy.Delivery{Timeout: time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Collect(context.Background(), privacy.Track{UserID: "u1", Event: "E", Timestamp: at(0)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Flush(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Flush = %v, want context.Canceled", err)
	}
	close(hang.release)
	flush(t, c)
	c.Close()
	if err := c.Collect(context.Background(), privacy.Track{UserID: "u1", Event: "E", Timestamp: at(0)}); !errors.Is(err, privacy.ErrClosed) {
		t.Fatalf("Collect after Close = %v", err)
	}
}
