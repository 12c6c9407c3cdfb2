package privacy_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// env is a Controller over in-memory backends the test can inspect.
type env struct {
	c        *privacy.Controller
	graph    *identity.MemGraph
	profiles *profile.MemStore
}

// testLimits lets the tests' messages be stamped up to a day after their
// fixed clock (the default takes a Timestamp more than 5 minutes ahead as
// the clock's time; TestFutureTimestampIsTheClocksTime checks it).
var testLimits = privacy.WithLimits(privacy.Limits{FutureSkew: 24 * time.Hour})

func newEnv(t testing.TB, opts ...privacy.Option) *env {
	t.Helper()
	e := &env{graph: identity.NewMemGraph(), profiles: profile.NewMemStore()}
	opts = append([]privacy.Option{privacy.WithIdentity(e.graph), privacy.WithProfiles(e.profiles), privacy.WithKey(worldKey), testLimits,
		privacy.WithClock(func() time.Time { return t0 })}, opts...)
	c, err := privacy.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	e.c = c
	return e
}

func (e *env) collect(t testing.TB, msgs ...privacy.Message) {
	t.Helper()
	for i, m := range msgs {
		if err := e.c.Collect(context.Background(), m); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
}

// collectEither collects msgs with Collect, one by one, or with
// CollectBatch, together, when batch is set: the tests that hold on both
// paths run through it.
func (e *env) collectEither(t testing.TB, batch bool, msgs ...privacy.Message) {
	t.Helper()
	if !batch {
		e.collect(t, msgs...)
		return
	}
	if err := e.c.CollectBatch(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
}

// pathName names the subtest of a path: "Collect" or "CollectBatch".
func pathName(batch bool) string {
	if batch {
		return "CollectBatch"
	}
	return "Collect"
}

func (e *env) profile(t testing.TB, id identity.ID) *profile.Profile {
	t.Helper()
	p, err := e.c.Profile(context.Background(), id)
	if err != nil {
		t.Fatalf("Profile(%s): %v", id, err)
	}
	return p
}

func (e *env) events(t testing.TB, id identity.ID) []profile.Event {
	t.Helper()
	page, err := e.c.Events(context.Background(), id, profile.EventQuery{Sort: profile.Asc, Limit: profile.MaxLimit})
	if err != nil {
		t.Fatalf("Events(%s): %v", id, err)
	}
	return page.Events
}

func ids(p *profile.Profile) []string {
	var out []string
	for _, e := range p.ExternalIDs {
		out = append(out, e.ID.String())
	}
	return out
}

func user(v string) identity.ID { return identity.ID{Type: "user_id", Value: v} }

func anon(v string) identity.ID { return identity.ID{Type: "anonymous_id", Value: v} }

func email(v string) identity.ID { return identity.ID{Type: "email", Value: v} }

func at(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

// clock is a settable clock for tests of time windows.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.set(t); return c }

func (c *clock) now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }

func (c *clock) set(t time.Time) { c.ns.Store(t.UnixNano()) }

func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func fastDelivery() privacy.Option {
	return privacy.WithDelivery(privacy.Delivery{Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, MaxAttempts: 4, Timeout: time.Second,
		Lease: 200 * time.Millisecond})
}

func flush(t testing.TB, c *privacy.Controller) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// events returns "type event key" summaries of what a recorder got.
func received(r *destination.Recorder) []string {
	var out []string
	for _, m := range r.Messages() {
		s := m.Type
		if m.Event != "" {
			s += " " + m.Event
		}
		if k, ok := m.Properties["audience_key"]; ok {
			s += " " + k.(string)
		}
		out = append(out, s)
	}
	return out
}

func define(t testing.TB, c *privacy.Controller, key, query string) {
	t.Helper()
	if err := c.DefineAudience(context.Background(), audience.Definition{Key: key, Query: query}); err != nil {
		t.Fatalf("DefineAudience(%s): %v", key, err)
	}
}

func members(t testing.TB, c *privacy.Controller, key string) []identity.ProfileID {
	t.Helper()
	ids, err := c.Members(context.Background(), key)
	if err != nil {
		t.Fatalf("Members(%s): %v", key, err)
	}
	return ids
}

func contains(err error, s string) bool {
	return err != nil && len(s) > 0 && strings.Contains(err.Error(), s)
}

// person collects one person on two devices with traits and events, in an
// audience, and returns their profile id.
func person(t testing.TB, e *env, u string) identity.ProfileID {
	t.Helper()
	e.collect(t,
		privacy.Track{MessageID: u + "-t1", AnonymousID: u + "-laptop", Event: "Viewed", Timestamp: at(0)},
		privacy.Identify{MessageID: u + "-i1", AnonymousID: u + "-laptop", UserID: u,
			Traits: map[string]any{"email": u + "@example.com", "plan": "pro"}, Timestamp: at(1)},
		privacy.Track{MessageID: u + "-t2", AnonymousID: u + "-phone", Event: "Opened", Timestamp: at(2)},
		privacy.Identify{MessageID: u + "-i2", AnonymousID: u + "-phone", UserID: u, Timestamp: at(3)},
	)
	return e.profile(t, user(u)).ID
}

func mustEvents(t *testing.T, c *privacy.Controller, id identity.ID) []profile.Event {
	t.Helper()
	page, err := c.Events(context.Background(), id, profile.EventQuery{Limit: profile.MaxLimit})
	if err != nil {
		t.Fatalf("Events(%s): %v", id, err)
	}
	return page.Events
}

func mustProfile(t *testing.T, c *privacy.Controller, id identity.ID) *profile.Profile {
	t.Helper()
	p, err := c.Profile(context.Background(), id)
	if err != nil {
		t.Fatalf("Profile(%s): %v", id, err)
	}
	return p
}
