package privacy_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
)

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
