package privacy_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/suppression"
	"github.com/google/go-cmp/cmp"
)

func TestRectifyCorrectsHereAndDownstream(t *testing.T) {
	rec := destination.NewRecorder("crm")
	e := newEnv(t, privacy.WithDestinations(rec), fastDelivery())
	ctx := context.Background()
	define(t, e.c, "pro", `trait('plan') = 'pro'`)
	pid := person(t, e, "ada")
	flush(t, e.c)
	rec.Reset()
	// The corrected traits are stamped with the request's time, or just after
	// the newest value they correct when that one is stamped later (here the
	// messages carry times ahead of the Controller's clock).
	at := t0
	for _, k := range []string{"plan", "email", "name"} {
		if tr, ok := e.profile(t, user("ada")).Traits[k]; ok && !tr.UpdatedAt.Before(at) {
			at = tr.UpdatedAt.Add(time.Microsecond)
		}
	}
	r, err := e.c.Rectify(ctx, email("ada@example.com"), map[string]any{"plan": "free", "email": nil, "name": "Ada L."})
	if err != nil {
		t.Fatal(err)
	}
	p := e.profile(t, user("ada"))
	if p.Metadata.Version != r.ProfileVersion || r.ProfileVersion == 0 {
		t.Fatalf("profile version %d, receipt says %d: the caller cannot confirm", p.Metadata.Version, r.ProfileVersion)
	}
	if !at.After(t0) {
		t.Fatalf("the fixture's traits are stamped at %v, not after the clock's %v: the check of the stamp would not tell", at, t0)
	}
	want := map[string]profile.Trait{
		"plan": {Value: "free", Source: profile.SourceRectification, UpdatedAt: at},
		"name": {Value: "Ada L.", Source: profile.SourceRectification, UpdatedAt: at},
	}
	if diff := cmp.Diff(want, p.Traits); diff != "" {
		t.Fatalf("traits after rectification (-want +got):\n%s", diff)
	}
	if got := members(t, e.c, "pro"); len(got) != 0 {
		t.Fatalf("audiences not re-evaluated: %v", got)
	}
	flush(t, e.c)
	var identify *destination.Message
	for _, m := range rec.Messages() {
		if m.Type == destination.TypeIdentify {
			identify = &m
		}
	}
	if identify == nil || identify.MessageID != r.ID || identify.ProfileID != pid || identify.Traits["plan"] != "free" ||
		identify.Traits["email"] != nil || len(identify.IDs) != 4 {
		t.Fatalf("downstream identify = %+v, want the corrected traits for all identifiers", identify)
	}
	if final, _ := e.c.Status(ctx, r.ID); final.Status != privacy.Finished {
		t.Fatalf("final status %s", final.Status)
	}
	// The identity email was removed as a trait only: the person is still found by it.
	if _, err := e.c.Profile(ctx, email("ada@example.com")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Rectify(ctx, user("nobody"), map[string]any{"a": 1}); !errors.Is(err, privacy.ErrNotFound) {
		t.Fatalf("Rectify(unknown) = %v, want ErrNotFound", err)
	}
}

// rectifyLeftToRecover makes ada in a world with an audience, then rectifies
// her traits while every audience commit fails: the rectification is decided
// but not committed, left to Recover.
func rectifyLeftToRecover(t *testing.T, traits map[string]any) (*world, *privacy.Controller, identity.ProfileID, *privacy.Receipt, error) {
	t.Helper()
	w := newWorld(t)
	c := w.controller(t)
	define(t, c, "pro", `trait('plan') = 'pro'`)
	pid := person(t, &env{c: c, graph: w.graph, profiles: w.profiles}, "ada")
	w.f.arm("audiences.commit", 0)
	r, err := c.Rectify(context.Background(), user("ada"), traits)
	w.f.disarm()
	return w, c, pid, r, err
}

// R2: a decided rectification left to Recover, redone after an erasure,
// resurrects the erased profile and sends its traits downstream.
func TestRegressionRecoverRectifyResurrects(t *testing.T) {
	ctx := context.Background()
	w, c, pid, r, err := rectifyLeftToRecover(t, map[string]any{"plan": "free", "phone": "+33 6 12 34 56 78"})
	if err == nil || r.Status != privacy.Running {
		t.Fatalf("want decided-not-committed, got %+v %v", r, err)
	}
	if _, err := c.Erase(ctx, user("ada")); err != nil {
		t.Fatal(err)
	}
	flush(t, c)
	if _, err := w.profiles.Get(ctx, pid); err == nil {
		t.Fatal("erase did not delete")
	}
	w.rec.Reset()
	if n, err := c.Recover(ctx); err != nil {
		t.Fatal(n, err)
	}
	flush(t, c)
	if p, err := w.profiles.Get(ctx, pid); err == nil {
		t.Errorf("erased profile %s is back after Recover, traits %v", pid, p.Traits)
	}
	for _, m := range w.rec.Messages() {
		t.Errorf("sent after the erasure: %+v", m)
	}
}

// R3: Recover re-applies a rectification's absolute metadata: the version goes down.
func TestRegressionRecoverRectifyVersionGoesDown(t *testing.T) {
	ctx := context.Background()
	_, c, _, _, err := rectifyLeftToRecover(t, map[string]any{"plan": "free"})
	if err == nil {
		t.Fatal("want commit failure")
	}
	if err := c.Collect(ctx, privacy.Identify{UserID: "ada", Traits: map[string]any{"x": 1}, Timestamp: at(50)}); err != nil {
		t.Fatal(err)
	}
	m1, _ := c.Metadata(ctx, user("ada"))
	if _, err := c.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	m2, _ := c.Metadata(ctx, user("ada"))
	if m2.Version < m1.Version {
		t.Errorf("version went down from %d to %d (LastMessageID %q -> %q)", m1.Version, m2.Version, m1.LastMessageID, m2.LastMessageID)
	}
}

// blindSuppressions is a suppression list whose transactions cannot answer
// ProfileSuppressed (a backend outage seen inside the request's transaction);
// everything else works.
type blindSuppressions struct{ *suppression.MemList }

func (l blindSuppressions) Begin(ctx context.Context) (suppression.Tx, error) {
	tx, err := l.MemList.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return blindSuppressionsTx{tx}, nil
}

type blindSuppressionsTx struct{ suppression.Tx }

var errListUnavailable = errors.New("suppression list unavailable")

func (blindSuppressionsTx) ProfileSuppressed(context.Context, identity.ProfileID) (bool, error) {
	return false, errListUnavailable
}

// TestRectifyFailsWhenTheSuppressionListCannotAnswer: a rectification asks
// the suppression list, in its transaction, whether the person objected,
// whether or not any audience is defined; when the list cannot answer, the
// request fails and nothing changes. (A review of the layout change found the
// question skipped without audiences.)
func TestRectifyFailsWhenTheSuppressionListCannotAnswer(t *testing.T) {
	ctx := context.Background()
	c, err := privacy.New(privacy.WithSuppressions(blindSuppressions{suppression.NewMemList()}), privacy.WithKey(worldKey))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	id := identity.ID{Type: "user_id", Value: "u-blind"}
	if err := c.Collect(ctx, privacy.Identify{UserID: id.Value, Traits: map[string]any{"plan": "pro"}, Timestamp: time.Now()}); err != nil {
		t.Fatal(err)
	}
	r, err := c.Rectify(ctx, id, map[string]any{"plan": "free"})
	if err == nil || !errors.Is(err, errListUnavailable) {
		t.Errorf("Rectify error = %v, want the suppression list's error", err)
	}
	if r == nil || r.Status != privacy.Failed {
		t.Errorf("Rectify receipt = %+v, want FAILED", r)
	}
	p, err := c.Profile(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Traits["plan"].Value; got != "pro" {
		t.Errorf("plan = %v after a rectification that could not be checked, want pro (unchanged)", got)
	}
}

// TestRecoveredRectificationLeavesANewerRemoval: a rectification
// (plan=free) decided before a crash, recovered after a newer rectification
// on the same person removed the trait, must not set it again: requests on one
// person take effect in the order they were received, and recovering an older
// one never reverses a newer one. (A review found the redo compared only the
// times of traits still present: a removed trait leaves none.)
func TestRecoveredRectificationLeavesANewerRemoval(t *testing.T) {
	w := newWorld(t)
	c := w.controller(t)
	ctx := context.Background()
	person(t, &env{c: c, graph: w.graph, profiles: w.profiles}, "ada")
	older, c2 := crashAfterDecision(t, w, c, privacy.Request{Type: privacy.Rectify, Subjects: []identity.ID{user("ada")},
		Traits: map[string]any{"plan": "free"}})
	newer, err := c2.Rectify(ctx, user("ada"), map[string]any{"plan": nil})
	if err != nil {
		t.Fatalf("the newer rectification = %+v, %v", newer, err)
	}
	flush(t, c2)
	if r, err := c2.Status(ctx, newer.ID); err != nil || r.Status != privacy.Finished {
		t.Fatalf("the newer rectification = %+v, %v; want FINISHED", r, err)
	}
	if p := mustProfile(t, c2, user("ada")); p.Traits["plan"].Value != nil {
		t.Fatalf("plan after the newer removal = %v; want none", p.Traits["plan"].Value)
	}
	if n, err := c2.Recover(ctx); n != 1 || err != nil {
		t.Fatalf("Recover = %d, %v; want 1, nil", n, err)
	}
	flush(t, c2)
	if r, err := c2.Status(ctx, older); err != nil || r.Status != privacy.Finished {
		t.Fatalf("the older rectification after Recover = %+v, %v; want FINISHED", r, err)
	}
	if tr, ok := mustProfile(t, c2, user("ada")).Traits["plan"]; ok {
		t.Errorf("after recovering the older rectification, plan = %+v; want it removed, as the newer request (%s) left it", tr, newer.ID)
	}
}

// TestRecoveredRectificationNeverRetellsAnOlderValue: a message stamped
// ahead of the clock makes a rectification stamp its trait just after it
// (at = newest + 1µs). A rectification decided before a crash and a newer
// one made before Recover both correct that same value, so both get the same
// stamp. Recover then takes the newer one's trait (source rectification,
// same time) for its own ("already as the request left it") and tells the
// destinations the older request's value: downstream, the older request
// undoes the newer one. (A review found it.) The
// redo leaves alone what newer rectifications, decided already, named.
func TestRecoveredRectificationNeverRetellsAnOlderValue(t *testing.T) {
	w := newWorld(t)
	c := w.controller(t)
	ctx := context.Background()
	e := &env{c: c, graph: w.graph, profiles: w.profiles}
	// A client whose clock runs ahead: its message is stamped in the future.
	e.collect(t, privacy.Identify{MessageID: "ahead", UserID: "ada", Traits: map[string]any{"plan": "pro"}, Timestamp: at(1000)})
	_, c2 := crashAfterDecision(t, w, c, privacy.Request{Type: privacy.Rectify, Subjects: []identity.ID{user("ada")},
		Traits: map[string]any{"plan": "free"}})
	newer, err := c2.Rectify(ctx, user("ada"), map[string]any{"plan": "gold"})
	if err != nil {
		t.Fatal(err)
	}
	flush(t, c2)
	if n, err := c2.Recover(ctx); n != 1 || err != nil {
		t.Fatalf("Recover = %d, %v; want 1, nil", n, err)
	}
	flush(t, c2)
	if p := mustProfile(t, c2, user("ada")); p.Traits["plan"].Value != "gold" {
		t.Errorf("plan here after Recover = %v; want gold, the newer request's", p.Traits["plan"].Value)
	}
	var last any
	for _, m := range w.rec.Messages() {
		if v, ok := m.Traits["plan"]; ok && m.Type == "identify" {
			last = v
		}
	}
	if last != "gold" {
		t.Errorf("the last plan the destination was told is %v; want gold, the newer request's (%s)", last, newer.ID)
	}
}

// TestRecoveredRectificationNeverOutlivesANewerErasure: a rectification (by
// user_id; it sets a phone number), its host dead after its intent or after
// its decision, recovered after a newer erasure of the person (naming the same
// identifier, or another of theirs) and after the person came back as a new
// customer under the same user_id, writes nothing of itself onto the new
// profile and tells the destinations nothing: the erasure, received later,
// erased everything before it, and it is found by every identifier it erased.
// (Reviews found the redo following the subject to its new profile without
// asking whether a newer erasure was decided, then an erasure indexed only
// under the identifier it named.)
func TestRecoveredRectificationNeverOutlivesANewerErasure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		record int         // the journal record after which the host dies
		erase  identity.ID // what the erasure names
	}{
		{"decided_erased_by_the_same_identifier", 2, user("ada")},
		{"decided_erased_by_another_identifier", 2, anon("ada-laptop")},
		{"undecided_erased_by_another_identifier", 1, anon("ada-laptop")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			c := w.controller(t)
			ctx := context.Background()
			person(t, &env{c: c, graph: w.graph, profiles: w.profiles}, "ada")
			older, c2 := crashAfterRecord(t, w, c, privacy.Request{Type: privacy.Rectify, Subjects: []identity.ID{user("ada")},
				Traits: map[string]any{"phone": "+33 6 00 00 00 01"}}, tc.record)
			erased, err := c2.Erase(ctx, tc.erase)
			if err != nil {
				t.Fatal(err)
			}
			flush(t, c2)
			if r, err := c2.Status(ctx, erased.ID); err != nil || r.Status != privacy.Finished {
				t.Fatalf("the newer erasure = %+v, %v; want FINISHED", r, err)
			}
			if _, err := c2.Profile(ctx, user("ada")); err == nil {
				t.Fatal("the erasure left the profile the user id leads to")
			}
			// The person comes back later, as a new customer.
			if err := c2.Collect(ctx, privacy.Identify{MessageID: "back", UserID: "ada", Traits: map[string]any{"plan": "basic"}, Timestamp: at(500)}); err != nil {
				t.Fatal(err)
			}
			w.rec.Reset()
			if _, err := c2.Recover(ctx); err != nil {
				t.Fatalf("Recover = %v", err)
			}
			flush(t, c2)
			if r, err := c2.Status(ctx, older); err != nil || !r.Status.Ended() {
				t.Fatalf("the older rectification after Recover = %+v, %v; want it ended", r, err)
			}
			if tr, ok := mustProfile(t, c2, user("ada")).Traits["phone"]; ok {
				t.Errorf("the new profile after recovering the rectification received before the erasure (%s) has phone %+v; want the erased value gone", erased.ID, tr)
			}
			for _, m := range w.rec.Messages() {
				if _, ok := m.Traits["phone"]; ok {
					t.Errorf("a destination was sent the erased phone after the erasure: %+v", m.Traits)
				}
			}
		})
	}
}

// TestRecoveredRectificationSurvivesAnotherPersonsErasure: the converse. A
// rectification of ada decided before a crash; then an erasure of somebody
// else, known only by a shared device's anonymous id; then ada uses that
// device, which links it to her profile. Recover makes her correction: an
// erasure supersedes a rectification only when it erased an identifier the
// rectification names. (A review found the correction dropped, its receipt
// saying an erasure of the same person superseded it.)
func TestRecoveredRectificationSurvivesAnotherPersonsErasure(t *testing.T) {
	w := newWorld(t)
	c := w.controller(t)
	ctx := context.Background()
	person(t, &env{c: c, graph: w.graph, profiles: w.profiles}, "ada")
	if err := c.Collect(ctx, privacy.Track{MessageID: "kiosk-1", AnonymousID: "kiosk", Event: "Viewed", Timestamp: at(4)}); err != nil {
		t.Fatal(err)
	}
	older, c2 := crashAfterDecision(t, w, c, privacy.Request{Type: privacy.Rectify, Subjects: []identity.ID{user("ada")},
		Traits: map[string]any{"plan": "free"}})
	// Somebody else, known only by the kiosk's anonymous id, is erased.
	erased, err := c2.Erase(ctx, anon("kiosk"))
	if err != nil {
		t.Fatal(err)
	}
	flush(t, c2)
	if p := mustProfile(t, c2, user("ada")); p.Traits["plan"].Value != "pro" {
		t.Fatalf("ada's plan before Recover = %v", p.Traits["plan"].Value)
	}
	// Ada then uses the kiosk.
	if err := c2.Collect(ctx, privacy.Identify{MessageID: "kiosk-2", UserID: "ada", AnonymousID: "kiosk", Timestamp: at(600)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Recover(ctx); err != nil {
		t.Fatalf("Recover = %v", err)
	}
	flush(t, c2)
	r, err := c2.Status(ctx, older)
	if err != nil {
		t.Fatal(err)
	}
	if p := mustProfile(t, c2, user("ada")); p.Traits["plan"].Value != "free" {
		t.Errorf("ada's plan after recovering her rectification = %v; want free: the erasure %s erased somebody else (receipt: %s, %q)",
			p.Traits["plan"].Value, erased.ID, r.Status, r.Reason)
	}
}

// TestRecoveredRectificationLeavesAMessagesRemoval: a rectification adds a
// trait the profile did not hold (nickname), commits, and the host dies
// before the request finishes. The person then removes the trait with an
// identify stamped after the rectification (a nil value removes: last updated
// wins). Recover does not set it again: the journal records the profile
// store's commit as done, and a change since then stands. (A review found the
// nickname back: a removal leaves no time to compare.)
func TestRecoveredRectificationLeavesAMessagesRemoval(t *testing.T) {
	w := newWorld(t)
	c := w.controller(t)
	ctx := context.Background()
	person(t, &env{c: c, graph: w.graph, profiles: w.profiles}, "ada")
	_, c2 := crashAfterRecord(t, w, c, privacy.Request{Type: privacy.Rectify, Subjects: []identity.ID{user("ada")},
		Traits: map[string]any{"nickname": "Ada L."}}, 3) // after the commits' outcomes
	if p := mustProfile(t, c2, user("ada")); p.Traits["nickname"].Value != "Ada L." {
		t.Fatalf("nickname after the commits = %v; want Ada L.", p.Traits["nickname"].Value)
	}
	// Later, the person removes it.
	if err := c2.Collect(ctx, privacy.Identify{MessageID: "drop-nick", UserID: "ada", Traits: map[string]any{"nickname": nil}, Timestamp: at(700)}); err != nil {
		t.Fatal(err)
	}
	if tr, ok := mustProfile(t, c2, user("ada")).Traits["nickname"]; ok {
		t.Fatalf("nickname after the removal = %+v; want none", tr)
	}
	if n, err := c2.Recover(ctx); n != 1 || err != nil {
		t.Fatalf("Recover = %d, %v; want 1, nil", n, err)
	}
	flush(t, c2)
	if tr, ok := mustProfile(t, c2, user("ada")).Traits["nickname"]; ok {
		t.Errorf("after recovering the older rectification, nickname = %+v; want it removed, as the newer identify left it", tr)
	}
}
