package privacy_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// clock is a settable clock for tests of time windows.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock        { c := &clock{}; c.set(t); return c }
func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }
func fastDelivery() privacy.Option {
	return privacy.WithDelivery(privacy.Delivery{Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, MaxAttempts: 4, Timeout: time.Second})
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

func TestAudienceMembershipIsRealTime(t *testing.T) {
	rec := destination.NewRecorder("crm")
	e := newEnv(t, privacy.WithDestinations(rec), fastDelivery())
	define(t, e.c, "pro", `trait('plan') = 'pro'`)
	define(t, e.c, "pro_fr", `audience('pro') and trait('country') = 'FR'`)

	e.collect(t, privacy.Identify{MessageID: "i1", UserID: "u1", Traits: map[string]any{"plan": "pro", "country": "FR"}, Timestamp: at(0)})
	pid := e.profile(t, user("u1")).ID
	if diff := cmp.Diff([]identity.ProfileID{pid}, members(t, e.c, "pro_fr")); diff != "" {
		t.Fatalf("pro_fr members (-want +got):\n%s", diff)
	}
	aud, err := e.c.Audiences(context.Background(), user("u1"))
	if err != nil || !cmp.Equal(aud, []string{"pro", "pro_fr"}) {
		t.Fatalf("Audiences = %v, %v; want [pro pro_fr]", aud, err)
	}
	e.collect(t, privacy.Identify{MessageID: "i2", UserID: "u1", Traits: map[string]any{"plan": "free"}, Timestamp: at(1)})
	if got := members(t, e.c, "pro"); len(got) != 0 {
		t.Fatalf("pro members after downgrade: %v", got)
	}
	flush(t, e.c)
	want := []string{"identify", "track Audience Entered pro", "track Audience Entered pro_fr",
		"identify", "track Audience Exited pro", "track Audience Exited pro_fr"}
	if diff := cmp.Diff(want, received(rec)); diff != "" {
		t.Fatalf("destination got (-want +got):\n%s", diff)
	}
	entered := rec.Messages()[1]
	if entered.ProfileID != pid || len(entered.IDs) != 1 || entered.IDs[0] != user("u1") {
		t.Fatalf("Audience Entered is addressed to %s %v, want the profile and its identifiers", entered.ProfileID, entered.IDs)
	}
}

func TestEventAudienceLeavesWhenEventsAgeOut(t *testing.T) {
	clk := newClock(t0)
	rec := destination.NewRecorder("ads")
	e := newEnv(t, privacy.WithClock(clk.now), privacy.WithDestinations(rec), fastDelivery())
	define(t, e.c, "buyers", `event('Order Completed').where(property('total') >= 100).within(30 days).count() >= 2`)
	ctx := context.Background()
	order := func(id string, total float64, ts time.Time) privacy.Message {
		return privacy.Track{MessageID: id, UserID: "u1", Event: "Order Completed", Properties: map[string]any{"total": total}, Timestamp: ts}
	}
	e.collect(t, order("o1", 150, t0), order("o2", 20, t0.Add(time.Hour)))
	if len(members(t, e.c, "buyers")) != 0 {
		t.Fatal("one qualifying order made a member")
	}
	// Bystanders with events no windowed audience counts: Refresh must not visit them.
	for i := range 50 {
		e.collect(t, privacy.Track{UserID: fmt.Sprint("other", i), Event: "Page Viewed", Timestamp: t0})
	}
	clk.advance(10 * 24 * time.Hour)
	e.collect(t, order("o3", 100, clk.now()))
	if len(members(t, e.c, "buyers")) != 1 {
		t.Fatal("two qualifying orders within 30 days did not make a member")
	}
	clk.advance(19 * 24 * time.Hour) // o1 is 29 days old: still in
	if n, err := e.c.Refresh(ctx); err != nil || n != 0 {
		t.Fatalf("Refresh before anything expired = %d, %v; want 0 profiles visited", n, err)
	}
	clk.advance(24 * time.Hour) // o1 is 30 days old: it has left the window
	n, err := e.c.Refresh(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Refresh = %d, %v; want exactly the one profile visited", n, err)
	}
	if len(members(t, e.c, "buyers")) != 0 {
		t.Fatal("still a member after the first order aged out")
	}
	flush(t, e.c)
	var audienceEvents []string
	for _, s := range received(rec) {
		if s != "track Order Completed" && s != "track Page Viewed" {
			audienceEvents = append(audienceEvents, s)
		}
	}
	if diff := cmp.Diff([]string{"track Audience Entered buyers", "track Audience Exited buyers"}, audienceEvents); diff != "" {
		t.Fatalf("audience events (-want +got):\n%s", diff)
	}
}

func TestDefineAudienceComputesInitialMembership(t *testing.T) {
	rec := destination.NewRecorder("crm")
	e := newEnv(t, privacy.WithDestinations(rec), fastDelivery())
	for i := range 30 {
		plan := "free"
		if i%3 == 0 {
			plan = "pro"
		}
		e.collect(t, privacy.Identify{UserID: fmt.Sprint("u", i), Traits: map[string]any{"plan": plan}, Timestamp: at(i)})
		for j := range i % 4 {
			e.collect(t, privacy.Track{UserID: fmt.Sprint("u", i), Event: "Login", Timestamp: at(i + j)})
		}
	}
	define(t, e.c, "pro", `trait('plan') = 'pro'`)
	define(t, e.c, "active", `event('Login').count() >= 3`)
	if got := len(members(t, e.c, "pro")); got != 10 {
		t.Fatalf("pro has %d members, want 10", got)
	}
	if got := len(members(t, e.c, "active")); got != 7 { // i%4 == 3 for i in 0..29
		t.Fatalf("active has %d members, want 7", got)
	}
	// Counting goes on in real time from the backfilled counters.
	e.collect(t, privacy.Track{UserID: "u2", Event: "Login", Timestamp: at(99)}) // u2 had 2 logins
	if got := len(members(t, e.c, "active")); got != 8 {
		t.Fatalf("active has %d members after u2's third login, want 8", got)
	}
	flush(t, e.c)
	entered := 0
	for _, s := range received(rec) {
		if s == "track Audience Entered pro" || s == "track Audience Entered active" {
			entered++
		}
	}
	if entered != 18 {
		t.Fatalf("%d Audience Entered sent, want 18", entered)
	}
}

func TestDefineAudienceRefusesBadDefinitions(t *testing.T) {
	e := newEnv(t)
	define(t, e.c, "vip", `trait('plan') = 'pro'`)
	for _, tt := range []struct {
		def  audience.Definition
		want error
		text string
	}{
		{audience.Definition{Key: "a", Query: `trait('plan') = 'pro' and (trait('x') = 1`}, privacy.ErrInvalid, "line 1, col 42: expected ')'"},
		{audience.Definition{Key: "a", Query: `sum('x') > 1`}, privacy.ErrInvalid, `unknown function "sum"`},
		{audience.Definition{Key: "a", Query: `trait('age') > 'abc'`}, privacy.ErrInvalid, "type mismatch"},
		{audience.Definition{Key: "a", Query: `audience('b')`}, privacy.ErrInvalid, "not defined"},
		{audience.Definition{Key: "a", Query: `audience('a')`}, privacy.ErrInvalid, "refers to itself"},
		{audience.Definition{Key: "vip", Query: `trait('plan') = 'max'`}, privacy.ErrConflict, "already defined"},
		{audience.Definition{Key: "Bad Key", Query: `trait('plan') = 'max'`}, privacy.ErrInvalid, "audience key"},
		{audience.Definition{Key: "a"}, privacy.ErrInvalid, "neither Query nor Condition"},
	} {
		err := e.c.DefineAudience(context.Background(), tt.def)
		if !errors.Is(err, tt.want) || !contains(err, tt.text) {
			t.Errorf("DefineAudience(%+v) = %v, want %v mentioning %q", tt.def, err, tt.want, tt.text)
		}
	}
	if diff := cmp.Diff([]string{"vip"}, e.c.AudienceKeys()); diff != "" {
		t.Fatalf("audiences after refusals (-want +got):\n%s", diff)
	}
	if _, err := e.c.Members(context.Background(), "a"); !errors.Is(err, privacy.ErrNotFound) {
		t.Fatalf("Members of an undefined audience: %v, want ErrNotFound", err)
	}
}

func contains(err error, s string) bool {
	return err != nil && len(s) > 0 && strings.Contains(err.Error(), s)
}

func TestMergedProfilesCountTogether(t *testing.T) {
	e := newEnv(t)
	define(t, e.c, "repeat", `event('Order Completed').count() >= 2`)
	e.collect(t,
		privacy.Track{AnonymousID: "laptop", Event: "Order Completed", Timestamp: at(0)},
		privacy.Track{UserID: "u1", Event: "Order Completed", Timestamp: at(1)},
	)
	if len(members(t, e.c, "repeat")) != 0 {
		t.Fatal("a member before the profiles merged")
	}
	e.collect(t, privacy.Identify{AnonymousID: "laptop", UserID: "u1", Timestamp: at(2)})
	if got := members(t, e.c, "repeat"); len(got) != 1 || got[0] != e.profile(t, user("u1")).ID {
		t.Fatalf("members after merge = %v, want the merged profile", got)
	}
}

// failingCommits fails profile commits while on is set.
type failingCommits struct {
	profile.Store
	on atomic.Bool
}

type failingCommitTx struct {
	profile.Tx
	s *failingCommits
}

func (s *failingCommits) Begin(ctx context.Context) (profile.Tx, error) {
	tx, err := s.Store.Begin(ctx)
	return &failingCommitTx{tx, s}, err
}

func (tx *failingCommitTx) Commit(ctx context.Context) error {
	if tx.s.on.Load() {
		tx.Tx.Rollback(ctx)
		return errors.New("injected commit failure")
	}
	return tx.Tx.Commit(ctx)
}

func TestNothingIsDeliveredForAChangeThatDidNotCommit(t *testing.T) {
	rec := destination.NewRecorder("crm")
	store := &failingCommits{Store: profile.NewMemStore()}
	c, err := privacy.New(privacy.WithProfiles(store), privacy.WithDestinations(rec), fastDelivery())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	define(t, c, "pro", `trait('plan') = 'pro'`)
	store.on.Store(true)
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
	store.on.Store(false)
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

func (panicking) Name() string                                       { return "panicking" }
func (panicking) Send(context.Context, []destination.Message) error  { panic("boom") }
func (panicking) Delete(context.Context, destination.Deletion) error { panic("boom") }

func TestBadDestinationsNeverBlockCollectionOrOthers(t *testing.T) {
	good := destination.NewRecorder("good")
	failing := destination.NewRecorder("failing")
	failing.FailSends(-1)
	flaky := destination.NewRecorder("flaky")
	flaky.FailSends(2)
	hang := &hanging{release: make(chan struct{})}
	defer close(hang.release)
	c, err := privacy.New(privacy.WithDestinations(good, failing, flaky, hang, panicking{}),
		privacy.WithDelivery(privacy.Delivery{Backoff: time.Millisecond, MaxBackoff: time.Millisecond, MaxAttempts: 3, Timeout: 100 * time.Millisecond, BatchSize: 7}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 50
	for i := range n {
		// Collect returns while destinations fail, hang and panic behind it.
		if err := c.Collect(context.Background(), privacy.Track{MessageID: fmt.Sprint("m", i), UserID: "u1", Event: "E", Timestamp: at(i)}); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, c)
	if got := len(good.Messages()); got != n {
		t.Fatalf("healthy destination got %d messages, want %d", got, n)
	}
	if got := flaky.Messages(); len(got) != n || got[0].MessageID != "m0" || got[n-1].MessageID != fmt.Sprint("m", n-1) {
		t.Fatalf("flaky destination got %d messages (first %v), want all %d in order, each once", len(got), got, n)
	}
	stats := c.DeliveryStats()
	for _, name := range []string{"failing", "hanging", "panicking"} {
		if s := stats[name]; s.Failed != n || s.Delivered != 0 || s.Pending != 0 {
			t.Errorf("%s: stats %+v, want all %d failed after their attempts", name, s, n)
		}
	}
	if s := stats["flaky"]; s.Delivered != n || s.Retries != 2 {
		t.Errorf("flaky: stats %+v, want %d delivered after 2 retries", s, n)
	}
	p, err := c.Profile(context.Background(), user("u1"))
	if err != nil || p.Metadata.Version != n {
		t.Fatalf("store after bad destinations: %v, %v; want version %d", p, err, n)
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

// TestConcurrentCollectWithAudiences runs collection on many goroutines while
// audiences are defined and refreshed, under -race, and checks the final
// memberships against a recount.
func TestConcurrentCollectWithAudiences(t *testing.T) {
	e := newEnv(t)
	define(t, e.c, "twice", `event('Buy').count() >= 2`)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				_ = e.c.Collect(context.Background(), privacy.Track{MessageID: fmt.Sprint(w, "-", i), UserID: fmt.Sprint("u", i%10), Event: "Buy", Timestamp: at(i)})
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := e.c.DefineAudience(context.Background(), audience.Definition{Key: "thrice", Query: `event('Buy').count() >= 3`}); err != nil {
			t.Error(err)
		}
		_, _ = e.c.Refresh(context.Background())
	}()
	wg.Wait()
	if got := len(members(t, e.c, "twice")); got != 10 {
		t.Fatalf("twice has %d members, want 10", got)
	}
	if got := len(members(t, e.c, "thrice")); got != 10 {
		t.Fatalf("thrice has %d members, want 10 (each person bought 20 times)", got)
	}
}
