package privacy_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// waitStatus polls a request's receipt until it is FINISHED or the
// deadline passes, and returns the last receipt.
func waitStatus(t *testing.T, c *privacy.Controller, id string, d time.Duration) *privacy.Receipt {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got, err := c.Status(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status == privacy.Finished || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func owes(r *privacy.Receipt, name string) bool {
	return slices.ContainsFunc(r.Destinations, func(o privacy.Outcome) bool { return o.Name == name })
}

// A destination removed from the configuration for good: every person it
// ever held stays a recipient. A rectification of any of them now awaits it
// forever (RUNNING, never FINISHED), while an erasure of the same person
// finishes without it. One rule must decide whether a request owes a
// destination not configured here.
func TestRemovedDestinationRectificationVsErasure(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	ads := destination.NewRecorder("ads")
	old := w.controllerWith(t, w.rec, ads)
	for _, u := range []string{"u1", "u2"} {
		if err := old.Collect(ctx, privacy.Identify{UserID: u, Traits: map[string]any{"plan": "free"}, Timestamp: t0}); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, old)
	old.Close()
	c := w.controllerWith(t, w.rec) // ads removed
	rect, err := c.Rectify(ctx, user("u1"), map[string]any{"plan": "pro"})
	if err != nil {
		t.Fatal(err)
	}
	er, err := c.Erase(ctx, user("u2"))
	if err != nil {
		t.Fatal(err)
	}
	flush(t, c)
	rr := waitStatus(t, c, rect.ID, 2*time.Second)
	erR := waitStatus(t, c, er.ID, 2*time.Second)
	if owes(rr, "ads") != owes(erR, "ads") || rr.Status != erR.Status {
		t.Errorf("ads removed: the rectification is %v owing %+v, the erasure %v owing %+v: the same removed recipient owed by one right and not the other",
			rr.Status, rr.Destinations, erR.Status, erR.Destinations)
	}
}

// ads removed from the configuration: the collected messages no longer go
// to it, but every audience change of a person it once held is enqueued for
// it, forever (nobody delivers it): ads, were it configured again, would
// hear "Audience Entered pro" for a trait change it was never sent, and
// until then its queue grows with every membership change of every person
// it ever held.
func TestRemovedDestinationGetsAudienceChangesButNotTheMessages(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	ads := destination.NewRecorder("ads")
	old := w.controllerWith(t, w.rec, ads)
	if err := old.Collect(ctx, privacy.Identify{UserID: "u1", Traits: map[string]any{"plan": "free"}, Timestamp: t0}); err != nil {
		t.Fatal(err)
	}
	flush(t, old)
	old.Close()
	c := w.controllerWith(t, w.rec) // ads removed
	define(t, c, "pro", `trait('plan') = 'pro'`)
	if err := c.Collect(ctx, privacy.Identify{UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	flush(t, c)
	c.Close()
	back := w.controllerWith(t, w.rec, ads)
	flush(t, back)
	var gotIdentify, gotEntered bool
	for _, m := range ads.Messages() {
		if m.Type == "identify" && m.Traits["plan"] == "pro" {
			gotIdentify = true
		}
		if m.Event == destination.AudienceEntered {
			gotEntered = true
		}
	}
	if gotEntered != gotIdentify {
		t.Errorf("ads, removed while u1 became pro: got the identify %v, got Audience Entered %v (%v): an audience change for a message it was never owed", gotIdentify, gotEntered, received(ads))
	}
}

type metaFailing struct {
	profile.Store
	armed *atomic.Bool
}

func (s metaFailing) Begin(ctx context.Context) (profile.Tx, error) {
	tx, err := s.Store.Begin(ctx)
	return metaFailingTx{tx, s.armed}, err
}

type metaFailingTx struct {
	profile.Tx
	armed *atomic.Bool
}

func (t metaFailingTx) Metadata(ctx context.Context, pid identity.ProfileID) (profile.Metadata, error) {
	if t.armed.Load() {
		return profile.Metadata{}, errors.New("injected: metadata read timed out")
	}
	return t.Tx.Metadata(ctx, pid)
}

// u1's messages went to crm only. An objection (SUPPRESS_ONLY) makes u1
// leave "pro"; the profile's metadata read in stageOutbox fails
// transiently, and the exit, with every identifier of u1, goes to every
// configured destination: ads, which never held u1, learns who they are
// and that they were in "pro". A read that cannot tell the holders must not
// widen the audience of the person's data; it should fail the stage (the
// request is retried) instead.
func TestMetadataReadFailureSendsAudienceExitToNonHolders(t *testing.T) {
	ctx := context.Background()
	crm, ads := destination.NewRecorder("crm"), destination.NewRecorder("ads")
	armed := new(atomic.Bool)
	e := newEnv(t, privacy.WithProfiles(metaFailing{profile.NewMemStore(), armed}), privacy.WithDestinations(crm, ads))
	define(t, e.c, "pro", `trait('plan') = 'pro'`)
	e.collect(t, privacy.Identify{UserID: "u1", Traits: map[string]any{"plan": "pro", "email": "u1@example.com"}, Timestamp: at(1),
		Integrations: map[string]any{"All": false, "crm": true}})
	flush(t, e.c)
	if n := len(ads.Messages()); n != 0 {
		t.Fatalf("premise: ads got %v", received(ads))
	}
	armed.Store(true)
	_, err := e.c.Suppress(ctx, user("u1"))
	armed.Store(false)
	if err != nil {
		t.Logf("Suppress: %v", err)
	}
	flush(t, e.c)
	for _, m := range ads.Messages() {
		t.Errorf("ads, which never held u1, got %s %s %v with identifiers %v", m.Type, m.Event, m.Properties, m.IDs)
	}
}

// The same messages through Collect and through CollectBatch must reach
// the same destinations with the same audience changes.
func TestBatchAndCollectSendTheSameAudienceChanges(t *testing.T) {
	onlyAds := map[string]any{"All": false, "ads": true}
	onlyCRM := map[string]any{"All": false, "crm": true}
	cases := map[string][]privacy.Message{
		"first adds ads, second enters": {
			privacy.Track{UserID: "u1", Event: "Viewed", Timestamp: at(2), Integrations: onlyAds},
			privacy.Identify{UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(3), Integrations: onlyCRM},
		},
		"counted event then ads": {
			privacy.Track{UserID: "u1", Event: "Viewed", Timestamp: at(2), Integrations: onlyCRM},
			privacy.Track{UserID: "u1", Event: "Viewed", Timestamp: at(3), Integrations: onlyAds},
			privacy.Identify{UserID: "u1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(4), Integrations: onlyCRM},
		},
		"merge in the batch": {
			privacy.Identify{AnonymousID: "a9", Traits: map[string]any{"plan": "pro"}, Timestamp: at(2), Integrations: onlyAds},
			privacy.Track{UserID: "u1", Event: "Viewed", Timestamp: at(3), Integrations: onlyCRM},
			privacy.Identify{AnonymousID: "a9", UserID: "u1", Timestamp: at(4), Integrations: onlyCRM},
			privacy.Identify{UserID: "u1", Traits: map[string]any{"plan": "free"}, Timestamp: at(5), Integrations: onlyCRM},
		},
	}
	for name, msgs := range cases {
		t.Run(name, func(t *testing.T) {
			run := func(batch bool) map[string][]string {
				crm, ads := destination.NewRecorder("crm"), destination.NewRecorder("ads")
				e := newEnv(t, privacy.WithDestinations(crm, ads))
				define(t, e.c, "pro", `trait('plan') = 'pro'`)
				define(t, e.c, "viewers", `event('Viewed').count() >= 2`)
				e.collect(t, privacy.Identify{UserID: "u1", Traits: map[string]any{"plan": "free"}, Timestamp: at(1), Integrations: onlyCRM})
				e.collectEither(t, batch, msgs...)
				flush(t, e.c)
				return map[string][]string{"crm": received(crm), "ads": received(ads)}
			}
			one, batch := run(false), run(true)
			for _, d := range []string{"crm", "ads"} {
				if !slices.Equal(one[d], batch[d]) {
					t.Errorf("%s: Collect sent %v, CollectBatch %v", d, one[d], batch[d])
				}
			}
		})
	}
}

// Merges: ads was told anonymous a1 entered "pro" (a1's own profile). a1 is
// then merged into u1's profile, whose newer plan is "free": the absorbed
// profile's memberships are dropped with its audience state, and since the
// surviving profile was never in "pro", no exit is owed. ads, which holds
// the person and was told of the entry, keeps them in "pro" for good.
func TestMergeDropsAbsorbedMembershipWithoutExit(t *testing.T) {
	for _, order := range []string{"anon first", "user first"} {
		t.Run(order, func(t *testing.T) {
			crm, ads := destination.NewRecorder("crm"), destination.NewRecorder("ads")
			e := newEnv(t, privacy.WithDestinations(crm, ads))
			define(t, e.c, "pro", `trait('plan') = 'pro'`)
			a := privacy.Identify{AnonymousID: "a1", Traits: map[string]any{"plan": "pro"}, Timestamp: at(1)}
			u := privacy.Identify{UserID: "u1", Traits: map[string]any{"plan": "free"}, Timestamp: at(2)}
			if order == "anon first" {
				e.collect(t, a, u)
			} else {
				e.collect(t, u, a)
			}
			flush(t, e.c)
			if !slices.Contains(received(ads), "track Audience Entered pro") {
				t.Fatalf("premise: ads got %v", received(ads))
			}
			// Links a1 and u1: a merge.
			e.collect(t, privacy.Identify{AnonymousID: "a1", UserID: "u1", Timestamp: at(3)})
			flush(t, e.c)
			if got := e.profile(t, user("u1")); got.Traits["plan"].Value != "free" {
				t.Fatalf("premise: merged plan %v", got.Traits["plan"].Value)
			}
			if m := members(t, e.c, "pro"); len(m) != 0 {
				t.Fatalf("premise: pro members %v", m)
			}
			got := received(ads)
			if !slices.Contains(got, "track Audience Exited pro") {
				t.Errorf("ads, told a1 entered pro, got %v: after the merge nobody is in pro, yet ads never heard the exit", got)
			}
		})
	}
}
