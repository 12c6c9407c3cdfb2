package privacy_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
)

func only(name string) map[string]any { return map[string]any{"All": false, name: true} }

func checkNews(t *testing.T, rs ...*destination.Recorder) {
	t.Helper()
	for _, r := range rs {
		if bad := entryBeforeExit(audienceNews(r)); bad != "" {
			t.Errorf("%s heard %v: %s", r.Name(), audienceNews(r), bad)
		}
	}
}

// A merge whose audience commit fails (backends that share no
// transaction). The catch-ups are reckoned from the union of the merged
// profiles' memberships, but the recount that follows starts from the kept
// profile's stored state, which the failed commit left as it was before
// the merge (without the absorbed profile's audiences): it finds the entry
// again and tells every holder, so both destinations hear "entered pro"
// twice.
func TestMergeAudienceCommitFailureEntersTwice(t *testing.T) {
	d1, d2 := destination.NewRecorder("d1"), destination.NewRecorder("d2")
	var fail atomic.Bool
	clk := newClock(t0)
	e := newEnv(t, privacy.WithDestinations(d1, d2), privacy.WithAudiences(failingAudiences{audience.NewMemStore(), &fail}),
		fastDelivery(), privacy.WithClock(clk.now))
	define(t, e.c, "pro", "trait('plan') = 'pro'")
	// The user's profile, created first (the one a merge keeps), held by d1, not in pro.
	e.collect(t, privacy.Identify{MessageID: "b", UserID: "u1", Traits: map[string]any{"name": "Ada"}, Timestamp: at(1), Integrations: only("d1")})
	clk.advance(time.Minute)
	// The anonymous visitor's, held by d2, in pro.
	e.collect(t, privacy.Identify{MessageID: "a", AnonymousID: "laptop", Traits: map[string]any{"plan": "pro"}, Timestamp: at(2), Integrations: only("d2")})
	clk.advance(time.Minute)
	fail.Store(true)
	err := e.c.Collect(context.Background(), privacy.Identify{MessageID: "join", UserID: "u1", AnonymousID: "laptop", Timestamp: at(3)})
	fail.Store(false)
	if err != nil {
		t.Fatalf("join: %v (the message is stored whatever the audience commit)", err)
	}
	if _, err := e.c.Refresh(context.Background()); err != nil { // the recount
		t.Fatal(err)
	}
	e.collect(t, privacy.Identify{MessageID: "free", UserID: "u1", Traits: map[string]any{"plan": "free"}, Timestamp: at(4)})
	flush(t, e.c)
	checkNews(t, d1, d2)
	// The absorbed profile's audience state is gone with it.
	if got := members(t, e.c, "pro"); len(got) != 0 {
		t.Errorf("after leaving pro, members of pro = %v; want none (a merged-away profile left in the audience?)", got)
	}
}

// Three profiles merged at once, each held by a different destination,
// two of them in different audiences: every destination is told the
// entries of the profiles it did not hold before any exit.
func TestThreeWayMerge(t *testing.T) {
	d1, d2, d3 := destination.NewRecorder("d1"), destination.NewRecorder("d2"), destination.NewRecorder("d3")
	clk := newClock(t0)
	e := newEnv(t, privacy.WithDestinations(d1, d2, d3), fastDelivery(), privacy.WithClock(clk.now))
	define(t, e.c, "pro", "trait('plan') = 'pro'")
	define(t, e.c, "fr", "trait('country') = 'FR'")
	e.collect(t, privacy.Identify{MessageID: "u", UserID: "u1", Traits: map[string]any{"name": "Ada"}, Timestamp: at(1), Integrations: only("d1")})
	clk.advance(time.Minute)
	e.collect(t, privacy.Identify{MessageID: "a", AnonymousID: "laptop", Traits: map[string]any{"plan": "pro"}, Timestamp: at(2), Integrations: only("d2")})
	clk.advance(time.Minute)
	e.collect(t, privacy.Identify{MessageID: "m", Traits: map[string]any{"email": "ada@example.com", "country": "FR"}, AnonymousID: "phone", Timestamp: at(3), Integrations: only("d3")})
	clk.advance(time.Minute)
	// One message naming all three: user id, laptop, and the email.
	e.collect(t, privacy.Identify{MessageID: "j", UserID: "u1", AnonymousID: "laptop", Traits: map[string]any{"email": "ada@example.com"}, Timestamp: at(4), Integrations: only("d3")})
	if got := e.profile(t, user("u1")); len(got.ExternalIDs) < 4 {
		t.Fatalf("the three profiles were not merged: %v", ids(got))
	}
	clk.advance(time.Minute)
	e.collect(t, privacy.Identify{MessageID: "x", UserID: "u1", Traits: map[string]any{"plan": "free", "country": "DE"}, Timestamp: at(6)})
	flush(t, e.c)
	checkNews(t, d1, d2, d3)
}

// Integrations route each message to one destination only while the
// memberships change: every holder hears every change, in order.
func TestIntegrationsWhileMembershipsChange(t *testing.T) {
	d1, d2 := destination.NewRecorder("d1"), destination.NewRecorder("d2")
	e := newEnv(t, privacy.WithDestinations(d1, d2), fastDelivery())
	define(t, e.c, "pro", "trait('plan') = 'pro'")
	e.collect(t,
		privacy.Identify{MessageID: "1", UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(1), Integrations: only("d1")},
		privacy.Identify{MessageID: "2", UserID: "u1", Traits: map[string]any{"plan": "free"}, Timestamp: at(2), Integrations: only("d2")},
		privacy.Identify{MessageID: "3", UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(3), Integrations: only("d2")},
		privacy.Identify{MessageID: "4", UserID: "u1", Traits: map[string]any{"plan": "free"}, Timestamp: at(4), Integrations: only("d1")},
	)
	flush(t, e.c)
	checkNews(t, d1, d2)
	if got := audienceNews(d2); len(got) != 4 {
		t.Errorf("d2 (a holder from message 2) heard %v; want entered (catch-up), exited, entered, exited", got)
	}
}

// A batch: the first message makes ads a holder (consent granted), later
// ones of the same person enter and leave audiences.
func TestBatchEarlyJoin(t *testing.T) {
	ads := consentingRecorder{destination.NewRecorder("ads"), []string{"Advertising"}}
	e := newEnv(t, privacy.WithDestinations(ads), fastDelivery())
	define(t, e.c, "pro", "trait('plan') = 'pro'")
	define(t, e.c, "viewer", "event('Viewed')")
	denied, granted := consentCtx(map[string]any{"Advertising": false}), consentCtx(map[string]any{"Advertising": true})
	e.collect(t, privacy.Identify{MessageID: "i1", UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(1), Context: denied})
	if err := e.c.CollectBatch(context.Background(), []privacy.Message{
		privacy.Track{MessageID: "t1", UserID: "u1", Event: "Viewed", Timestamp: at(2), Context: granted},
		privacy.Identify{MessageID: "i2", UserID: "u1", Traits: map[string]any{"plan": "free"}, Timestamp: at(3), Context: granted},
		privacy.Identify{MessageID: "i3", UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(4), Context: granted},
		privacy.Identify{MessageID: "i4", UserID: "u1", Traits: map[string]any{"plan": "free"}, Timestamp: at(5), Context: granted},
	}); err != nil {
		t.Fatal(err)
	}
	flush(t, e.c)
	checkNews(t, ads.Recorder)
	got := audienceNews(ads.Recorder)
	if want := []string{"entered pro", "entered viewer", "exited pro", "entered pro", "exited pro"}; !slices.Equal(got, want) {
		t.Errorf("ads heard %v; want %v", got, want)
	}
}

// A time-windowed audience: a destination made a holder after the window
// closed but before Refresh ran.
func TestJoinAfterWindowBeforeRefresh(t *testing.T) {
	ads := consentingRecorder{destination.NewRecorder("ads"), []string{"Advertising"}}
	crm := destination.NewRecorder("crm")
	clk := newClock(t0)
	e := newEnv(t, privacy.WithDestinations(ads, crm), fastDelivery(), privacy.WithClock(clk.now))
	define(t, e.c, "recent", "event('Viewed').within(1 days)")
	denied, granted := consentCtx(map[string]any{"Advertising": false}), consentCtx(map[string]any{"Advertising": true})
	e.collect(t, privacy.Track{MessageID: "v", UserID: "u1", Event: "Viewed", Timestamp: at(1), Context: denied})
	clk.advance(25 * time.Hour)
	e.collect(t, privacy.Track{MessageID: "o", UserID: "u1", Event: "Other", Timestamp: at(25 * 60), Context: granted})
	if _, err := e.c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.collect(t, privacy.Track{MessageID: "v2", UserID: "u1", Event: "Viewed", Timestamp: at(25*60 + 1), Context: granted})
	clk.advance(25 * time.Hour)
	if _, err := e.c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	flush(t, e.c)
	checkNews(t, ads.Recorder, crm)
}

// DefineAudience on existing people, then a destination joins, then the
// person leaves.
func TestDefineThenJoin(t *testing.T) {
	ads := consentingRecorder{destination.NewRecorder("ads"), []string{"Advertising"}}
	crm := destination.NewRecorder("crm")
	e := newEnv(t, privacy.WithDestinations(ads, crm), fastDelivery())
	denied, granted := consentCtx(map[string]any{"Advertising": false}), consentCtx(map[string]any{"Advertising": true})
	e.collect(t, privacy.Identify{MessageID: "i1", UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(1), Context: denied})
	define(t, e.c, "pro", "trait('plan') = 'pro'")
	e.collect(t, privacy.Track{MessageID: "t1", UserID: "u1", Event: "Viewed", Timestamp: at(2), Context: granted})
	define(t, e.c, "viewer", "event('Viewed')")
	e.collect(t, privacy.Identify{MessageID: "i2", UserID: "u1", Traits: map[string]any{"plan": "free"}, Timestamp: at(3), Context: granted})
	flush(t, e.c)
	checkNews(t, ads.Recorder, crm)
	if got := audienceNews(ads.Recorder); !slices.Contains(got, "entered viewer") {
		t.Errorf("ads heard %v; want the viewer entry too", got)
	}
}

// Suppression and unsuppression around a destination joining, and a
// rectification taking the person out.
func TestSuppressUnsuppressRectify(t *testing.T) {
	ads := consentingRecorder{destination.NewRecorder("ads"), []string{"Advertising"}}
	crm := destination.NewRecorder("crm")
	e := newEnv(t, privacy.WithDestinations(ads, crm), fastDelivery())
	define(t, e.c, "pro", "trait('plan') = 'pro'")
	ctx := context.Background()
	denied, granted := consentCtx(map[string]any{"Advertising": false}), consentCtx(map[string]any{"Advertising": true})
	e.collect(t, privacy.Identify{MessageID: "i1", UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(1), Context: denied})
	if _, err := e.c.Suppress(ctx, user("u1")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Unsuppress(ctx, user("u1")); err != nil {
		t.Fatal(err)
	}
	e.collect(t, privacy.Track{MessageID: "t1", UserID: "u1", Event: "Viewed", Timestamp: at(2), Context: granted})
	if _, err := e.c.Suppress(ctx, user("u1")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Unsuppress(ctx, user("u1")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Rectify(ctx, user("u1"), map[string]any{"plan": "free"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Rectify(ctx, user("u1"), map[string]any{"plan": "pro"}); err != nil {
		t.Fatal(err)
	}
	flush(t, e.c)
	checkNews(t, ads.Recorder, crm)
}

// Erasure, then the same identifiers collected again.
func TestEraseThenRecollect(t *testing.T) {
	crm := destination.NewRecorder("crm")
	e := newEnv(t, privacy.WithDestinations(crm), fastDelivery())
	define(t, e.c, "pro", "trait('plan') = 'pro'")
	ctx := context.Background()
	e.collect(t, privacy.Identify{MessageID: "i1", UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(1)})
	if _, err := e.c.Erase(ctx, user("u1")); err != nil {
		t.Fatal(err)
	}
	flush(t, e.c)
	crm.Reset()
	e.collect(t, privacy.Identify{MessageID: "i2", UserID: "u1", Traits: map[string]any{"plan": "free"}, Timestamp: at(2)})
	e.collect(t, privacy.Identify{MessageID: "i3", UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(3)})
	flush(t, e.c)
	checkNews(t, crm)
}

var _ = identity.ID{}

// A merge whose audience commit fails leaves the absorbed profile's
// audience state (its memberships and event counters) behind; an erasure of
// the person then leaves it too.
func TestMergeAudienceCommitFailureSurvivesErasure(t *testing.T) {
	var fail atomic.Bool
	clk := newClock(t0)
	auds := audience.NewMemStore()
	e := newEnv(t, privacy.WithAudiences(failingAudiences{auds, &fail}), privacy.WithClock(clk.now))
	define(t, e.c, "viewer", "event('Viewed')")
	e.collect(t, privacy.Identify{MessageID: "b", UserID: "u1", Timestamp: at(1)})
	clk.advance(time.Minute)
	e.collect(t, privacy.Track{MessageID: "a", AnonymousID: "laptop", Event: "Viewed", Timestamp: at(2)})
	laptop := e.profile(t, anon("laptop")).ID
	clk.advance(time.Minute)
	fail.Store(true)
	err := e.c.Collect(context.Background(), privacy.Identify{MessageID: "join", UserID: "u1", AnonymousID: "laptop", Timestamp: at(3)})
	fail.Store(false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r, err := e.c.Erase(context.Background(), user("u1")); err != nil || r.Status != privacy.Finished {
		t.Fatalf("Erase = %+v, %v", r, err)
	}
	if _, err := e.c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := members(t, e.c, "viewer"); len(got) != 0 {
		t.Errorf("after the person's erasure, members of viewer = %v (the merged-away profile was %s)", got, laptop)
	}
	if st, err := auds.State(context.Background(), laptop); err == nil {
		t.Errorf("after the person's erasure, the merged-away profile's audience state is still stored: %+v", st)
	}
}
