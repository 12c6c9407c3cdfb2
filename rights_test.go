package privacy_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

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

func TestEraseDeletesThePersonEverywhere(t *testing.T) {
	rec := destination.NewRecorder("crm")
	e := newEnv(t, privacy.WithDestinations(rec), fastDelivery())
	ctx := context.Background()
	define(t, e.c, "pro", `trait('plan') = 'pro'`)
	pid := person(t, e, "ada")
	other := person(t, e, "bob")
	flush(t, e.c)
	rec.Reset()

	// Any identifier will do: here the anonymous id of the phone.
	r, err := e.c.Erase(ctx, anon("ada-phone"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Type != privacy.DeleteOnly || !r.Due.Equal(r.Received.AddDate(0, 1, 0)) {
		t.Fatalf("receipt %+v: want DELETE_ONLY due a month after receipt", r)
	}
	for _, id := range []identity.ID{user("ada"), anon("ada-laptop"), anon("ada-phone"), email("ada@example.com")} {
		if _, err := e.c.Profile(ctx, id); !errors.Is(err, privacy.ErrNotFound) {
			t.Errorf("Profile(%s) after erasure: %v, want ErrNotFound", id, err)
		}
	}
	if _, err := e.profiles.Get(ctx, pid); !errors.Is(err, profile.ErrNotFound) {
		t.Errorf("the profile store still holds the profile: %v", err)
	}
	if got := members(t, e.c, "pro"); len(got) != 1 || got[0] != other {
		t.Errorf("pro members after erasure = %v, want only bob", got)
	}
	flush(t, e.c)
	dels := rec.Deletions()
	if len(dels) != 1 || dels[0].RequestID != r.ID || dels[0].ProfileID != pid || len(dels[0].IDs) != 4 {
		t.Fatalf("destination deletions = %+v, want one for the request with all four identifiers", dels)
	}
	final, err := e.c.Status(ctx, r.ID)
	if err != nil || final.Status != privacy.Finished || len(final.Destinations) != 1 || final.Destinations[0].Status != privacy.Finished {
		t.Fatalf("final receipt = %+v, %v; want FINISHED with the destination FINISHED", final, err)
	}
	for _, b := range final.Backends {
		if b.Status != privacy.Finished {
			t.Errorf("backend %s: %s", b.Name, b.Status)
		}
	}
	// Bob is untouched; Ada may come back as a new person: erasure is not objection.
	if len(e.events(t, user("bob"))) != 2 {
		t.Error("bob lost events")
	}
	e.collect(t, privacy.Track{UserID: "ada", Event: "Returned", Timestamp: at(9)})
	if p := e.profile(t, user("ada")); p.ID == pid || len(p.ExternalIDs) != 1 {
		t.Fatalf("ada's return resurrected the old profile: %+v", p)
	}
}

func TestEraseOfNobodyFinishesWithNothingToDelete(t *testing.T) {
	rec := destination.NewRecorder("crm")
	e := newEnv(t, privacy.WithDestinations(rec), fastDelivery())
	r, err := e.c.Erase(context.Background(), email("nobody@example.com"))
	if err != nil || r.Status != privacy.Finished {
		t.Fatalf("Erase(unknown) = %+v, %v; want FINISHED", r, err)
	}
	flush(t, e.c)
	if len(rec.Deletions()) != 0 {
		t.Fatal("a deletion was forwarded for nobody")
	}
}

func TestSuppressionStopsCollectionUntilUnsuppressed(t *testing.T) {
	rec := destination.NewRecorder("crm")
	e := newEnv(t, privacy.WithDestinations(rec), fastDelivery())
	ctx := context.Background()
	define(t, e.c, "pro", `trait('plan') = 'pro'`)
	pid := person(t, e, "ada")
	before := e.profile(t, user("ada"))

	r, err := e.c.Suppress(ctx, email("ada@example.com"))
	if err != nil || r.Status != privacy.Finished {
		t.Fatalf("Suppress = %+v, %v", r, err)
	}
	blocked := []privacy.Message{
		privacy.Track{UserID: "ada", Event: "E", Timestamp: at(10)},
		privacy.Track{AnonymousID: "ada-laptop", Event: "E", Timestamp: at(10)},
		// A new identifier arriving with a suppressed one is blocked too.
		privacy.Identify{UserID: "ada", AnonymousID: "ada-tablet", Timestamp: at(10)},
	}
	for _, m := range blocked {
		if err := e.c.Collect(ctx, m); !errors.Is(err, privacy.ErrSuppressed) {
			t.Fatalf("Collect(%+v) = %v, want ErrSuppressed", m, err)
		}
	}
	if s := e.c.Stats(); s.Suppressed != uint64(len(blocked)) {
		t.Fatalf("Stats().Suppressed = %d, want %d", s.Suppressed, len(blocked))
	}
	if _, err := e.graph.Lookup(ctx, anon("ada-tablet")); !errors.Is(err, identity.ErrNotFound) {
		t.Fatal("the new identifier was linked")
	}
	// Data is kept, the person is out of every audience, others are not affected.
	after := e.profile(t, user("ada"))
	if after.Metadata.Version != before.Metadata.Version || len(e.events(t, user("ada"))) != 2 {
		t.Fatal("suppression changed the stored data")
	}
	if got := members(t, e.c, "pro"); len(got) != 0 {
		t.Fatalf("a suppressed person is in an audience: %v", got)
	}
	e.collect(t, privacy.Identify{UserID: "bob", Traits: map[string]any{"plan": "pro"}, Timestamp: at(10)})

	r, err = e.c.Unsuppress(ctx, anon("ada-phone"))
	if err != nil || r.Status != privacy.Finished {
		t.Fatalf("Unsuppress = %+v, %v", r, err)
	}
	e.collect(t, privacy.Track{UserID: "ada", Event: "Back", Timestamp: at(11)})
	if got := len(e.events(t, user("ada"))); got != 3 {
		t.Fatalf("%d events after unsuppress, want 3", got)
	}
	if got := members(t, e.c, "pro"); len(got) != 2 || !slices.Contains(got, pid) {
		t.Fatalf("pro members after unsuppress = %v, want ada back with bob", got)
	}
	flush(t, e.c)
	var adaAudience []string
	for _, m := range rec.Messages() {
		if m.ProfileID == pid && m.Event != "" && strings.HasPrefix(m.Event, "Audience") {
			adaAudience = append(adaAudience, m.Event)
		}
	}
	if diff := cmp.Diff([]string{"Audience Entered", "Audience Exited", "Audience Entered"}, adaAudience); diff != "" {
		t.Fatalf("ada's audience events (-want +got):\n%s", diff)
	}
}

func TestSuppressBeforeFirstSeen(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r, err := e.c.Suppress(ctx, email("future@example.com"))
	if err != nil || r.Status != privacy.Finished {
		t.Fatalf("Suppress(unknown) = %+v, %v; want FINISHED", r, err)
	}
	err = e.c.Collect(ctx, privacy.Identify{UserID: "f1", Traits: map[string]any{"email": "Future@Example.com"}, Timestamp: at(0)})
	if !errors.Is(err, privacy.ErrSuppressed) {
		t.Fatalf("Collect with the suppressed email = %v, want ErrSuppressed", err)
	}
	if p, _ := e.graph.Len(); p != 0 {
		t.Fatal("a profile was built for a suppressed person")
	}
}

func TestSuppressWithDeleteSuppressesThenDeletes(t *testing.T) {
	rec := destination.NewRecorder("crm")
	e := newEnv(t, privacy.WithDestinations(rec), fastDelivery())
	ctx := context.Background()
	person(t, e, "ada")
	for _, typ := range []privacy.RequestType{privacy.SuppressWithDelete} {
		r, err := e.c.Apply(ctx, privacy.Request{Type: typ, Subjects: []identity.ID{user("ada")}})
		if err != nil {
			t.Fatal(err)
		}
		flush(t, e.c)
		if r, _ = e.c.Status(ctx, r.ID); r.Status != privacy.Finished {
			t.Fatalf("status %s", r.Status)
		}
	}
	if _, err := e.c.Profile(ctx, user("ada")); !errors.Is(err, privacy.ErrNotFound) {
		t.Fatal("not deleted")
	}
	// Every identifier the person was known by stays blocked after the deletion.
	for _, m := range []privacy.Message{
		privacy.Track{AnonymousID: "ada-phone", Event: "E", Timestamp: at(9)},
		privacy.Identify{UserID: "x", Traits: map[string]any{"email": "ada@example.com"}, Timestamp: at(9)},
	} {
		if err := e.c.Collect(ctx, m); !errors.Is(err, privacy.ErrSuppressed) {
			t.Fatalf("Collect(%+v) = %v, want ErrSuppressed", m, err)
		}
	}
	if len(rec.Deletions()) != 1 {
		t.Fatalf("%d deletions forwarded, want 1", len(rec.Deletions()))
	}
	// The internal variant does not forward.
	person(t, e, "bob")
	if _, err := e.c.Apply(ctx, privacy.Request{Type: privacy.SuppressWithDeleteInternal, Subjects: []identity.ID{user("bob")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Apply(ctx, privacy.Request{Type: privacy.DeleteInternal, Subjects: []identity.ID{user("bob")}}); err != nil {
		t.Fatal(err)
	}
	flush(t, e.c)
	if len(rec.Deletions()) != 1 {
		t.Fatalf("an internal request forwarded a deletion: %+v", rec.Deletions())
	}
}

func TestRectifyCorrectsHereAndDownstream(t *testing.T) {
	rec := destination.NewRecorder("crm")
	e := newEnv(t, privacy.WithDestinations(rec), fastDelivery())
	ctx := context.Background()
	define(t, e.c, "pro", `trait('plan') = 'pro'`)
	pid := person(t, e, "ada")
	flush(t, e.c)
	rec.Reset()
	r, err := e.c.Rectify(ctx, email("ada@example.com"), map[string]any{"plan": "free", "email": nil, "name": "Ada L."})
	if err != nil {
		t.Fatal(err)
	}
	p := e.profile(t, user("ada"))
	if p.Metadata.Version != r.ProfileVersion || r.ProfileVersion == 0 {
		t.Fatalf("profile version %d, receipt says %d: the caller cannot confirm", p.Metadata.Version, r.ProfileVersion)
	}
	want := map[string]profile.Trait{
		"plan": {Value: "free", Source: profile.SourceRectification, UpdatedAt: t0},
		"name": {Value: "Ada L.", Source: profile.SourceRectification, UpdatedAt: t0},
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

func TestApplyRefusesBadRequestsAndChangesNothing(t *testing.T) {
	many := make([]identity.ID, privacy.MaxSubjects+1)
	for i := range many {
		many[i] = user(fmt.Sprint("u", i))
	}
	traits301 := map[string]any{}
	for i := range 301 {
		traits301[fmt.Sprint("t", i)] = i
	}
	for _, tt := range []struct {
		name  string
		req   privacy.Request
		field string
	}{
		{"unknown type", privacy.Request{Type: "FORGET_ME", Subjects: []identity.ID{user("ada")}}, "Type"},
		{"no subjects", privacy.Request{Type: privacy.DeleteOnly}, "Subjects"},
		{"too many subjects", privacy.Request{Type: privacy.DeleteOnly, Subjects: many}, "Subjects"},
		{"malformed identifier", privacy.Request{Type: privacy.DeleteOnly, Subjects: []identity.ID{{Type: "user id!", Value: "x"}}}, "Subjects[0]"},
		{"empty identifier", privacy.Request{Type: privacy.SuppressOnly, Subjects: []identity.ID{user("ada"), {Type: "email"}}}, "Subjects[1]"},
		{"rectify with 301 traits", privacy.Request{Type: privacy.Rectify, Subjects: []identity.ID{user("ada")}, Traits: traits301}, "Traits"},
		{"rectify with a non-JSON value", privacy.Request{Type: privacy.Rectify, Subjects: []identity.ID{user("ada")}, Traits: map[string]any{"f": func() {}}}, `Traits["f"]`},
		{"rectify nothing", privacy.Request{Type: privacy.Rectify, Subjects: []identity.ID{user("ada")}}, "Traits"},
		{"traits on a deletion", privacy.Request{Type: privacy.DeleteOnly, Subjects: []identity.ID{user("ada")}, Traits: map[string]any{"a": 1}}, "Traits"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			person(t, e, "ada")
			before := e.profile(t, user("ada"))
			r, err := e.c.Apply(context.Background(), tt.req)
			var fe *privacy.FieldError
			if !errors.Is(err, privacy.ErrInvalid) || !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("err = %v, want ErrInvalid on %s", err, tt.field)
			}
			if r == nil || r.Status != privacy.Invalid || !strings.Contains(r.Reason, tt.field) {
				t.Fatalf("receipt = %+v, want INVALID with the reason", r)
			}
			if diff := cmp.Diff(before, e.profile(t, user("ada"))); diff != "" {
				t.Fatalf("an invalid request changed the profile:\n%s", diff)
			}
			if err := e.c.Collect(context.Background(), privacy.Track{UserID: "ada", Event: "E", Timestamp: at(5)}); err != nil {
				t.Fatalf("collection after an invalid request: %v", err)
			}
		})
	}
}

func TestDestinationOutcomesFollowSegmentsRules(t *testing.T) {
	ctx := context.Background()
	flaky := destination.NewRecorder("flaky")
	flaky.FailDeletes(2)
	dead := destination.NewRecorder("dead")
	dead.FailDeletes(-1)
	cannot := destination.NewRecorder("cannot")
	cannot.RefuseDeletes()
	e := newEnv(t, privacy.WithDestinations(flaky, dead, cannot), fastDelivery())
	person(t, e, "ada")
	r, err := e.c.Erase(ctx, user("ada"))
	if err != nil {
		t.Fatal(err)
	}
	flush(t, e.c)
	if got := flaky.Deletions(); len(got) != 1 || got[0].RequestID != r.ID {
		t.Fatalf("flaky destination got %+v, want the deletion once", got)
	}
	if _, deletes := flaky.Calls(); deletes != 3 {
		t.Fatalf("flaky destination was called %d times, want 3 (two failures, one success)", deletes)
	}
	final, err := e.c.Status(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]privacy.Status{}
	for _, o := range final.Destinations {
		got[o.Name] = o.Status
	}
	want := map[string]privacy.Status{"flaky": privacy.Finished, "dead": privacy.Failed, "cannot": privacy.NotSupported}
	if diff := cmp.Diff(want, got); diff != "" || final.Status != privacy.PartialSuccess {
		t.Fatalf("outcomes (-want +got):\n%s\noverall %s, want PARTIAL_SUCCESS", diff, final.Status)
	}

	// With only a destination that never succeeds, the request FAILED, though
	// the internal deletion happened.
	e2 := newEnv(t, privacy.WithDestinations(dead), fastDelivery())
	person(t, e2, "bob")
	r2, err := e2.c.Erase(ctx, user("bob"))
	if err != nil {
		t.Fatal(err)
	}
	flush(t, e2.c)
	if final, _ := e2.c.Status(ctx, r2.ID); final.Status != privacy.Failed {
		t.Fatalf("overall %s, want FAILED", final.Status)
	}
	if _, err := e2.c.Profile(ctx, user("bob")); !errors.Is(err, privacy.ErrNotFound) {
		t.Fatal("the internal deletion did not happen")
	}
}

func TestDeadlinesExtensionsAndOverdue(t *testing.T) {
	clk := newClock(time.Date(2026, 1, 31, 9, 0, 0, 0, time.UTC))
	hang := &hanging{release: make(chan struct{})}
	defer close(hang.release)
	e := newEnv(t, privacy.WithClock(clk.now), privacy.WithDestinations(hang),
		privacy.WithDelivery(privacy.Delivery{Timeout: time.Hour}))
	ctx := context.Background()
	person(t, e, "ada")
	r, err := e.c.Erase(ctx, user("ada"))
	if err != nil {
		t.Fatal(err)
	}
	// One calendar month: 31 January is due on 3 March (time.AddDate normalises 31 February).
	if want := clk.now().AddDate(0, 1, 0); !r.Due.Equal(want) {
		t.Fatalf("due %v, want %v", r.Due, want)
	}
	if _, err := e.c.Extend(ctx, r.ID, 3, "complex"); !errors.Is(err, privacy.ErrInvalid) {
		t.Fatalf("extending by three months: %v, want ErrInvalid", err)
	}
	if _, err := e.c.Extend(ctx, r.ID, 1, ""); !errors.Is(err, privacy.ErrInvalid) {
		t.Fatalf("extending without a reason: %v, want ErrInvalid", err)
	}
	ext, err := e.c.Extend(ctx, r.ID, 2, "the person holds accounts in three regions")
	if err != nil || !ext.Due.Equal(r.Due.AddDate(0, 2, 0)) || ext.ExtensionReason == "" {
		t.Fatalf("Extend = %+v, %v", ext, err)
	}
	if over, err := e.c.Overdue(ctx); err != nil || len(over) != 0 {
		t.Fatalf("Overdue before the due date = %v, %v", over, err)
	}
	clk.advance(100 * 24 * time.Hour) // the hanging destination never acknowledged
	over, err := e.c.Overdue(ctx)
	if err != nil || len(over) != 1 || over[0].ID != r.ID {
		t.Fatalf("Overdue = %v, %v; want the erasure", over, err)
	}
}

func TestRequestsListingAndAudit(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	person(t, e, "ada")
	person(t, e, "bob")
	var ids []string
	for _, req := range []privacy.Request{
		{Type: privacy.SuppressOnly, Subjects: []identity.ID{user("ada")}},
		{Type: privacy.Unsuppress, Subjects: []identity.ID{user("ada")}},
		{Type: privacy.DeleteOnly, Subjects: []identity.ID{user("bob")}},
		{Type: "BOGUS", Subjects: []identity.ID{user("bob")}},
	} {
		r, _ := e.c.Apply(ctx, req)
		ids = append(ids, r.ID)
	}
	page, err := e.c.Requests(ctx, privacy.RequestFilter{Statuses: []privacy.Status{privacy.Finished}, Limit: 2})
	if err != nil || len(page.Receipts) != 2 || page.Next == "" || page.Receipts[0].ID != ids[2] {
		t.Fatalf("first page = %+v, %v", page, err)
	}
	next, err := e.c.Requests(ctx, privacy.RequestFilter{Statuses: []privacy.Status{privacy.Finished}, Limit: 2, Cursor: page.Next})
	if err != nil || len(next.Receipts) != 1 || next.Receipts[0].ID != ids[0] || next.Next != "" {
		t.Fatalf("second page = %+v, %v", next, err)
	}
	inv, _ := e.c.Requests(ctx, privacy.RequestFilter{Statuses: []privacy.Status{privacy.Invalid}})
	if len(inv.Receipts) != 1 || inv.Receipts[0].ID != ids[3] {
		t.Fatalf("invalid requests = %+v", inv)
	}
	if _, err := e.c.Status(ctx, "req_nope"); !errors.Is(err, privacy.ErrNotFound) {
		t.Fatalf("Status(unknown) = %v", err)
	}
	n, err := e.c.VerifyAudit(ctx)
	if err != nil || n < 8 {
		t.Fatalf("VerifyAudit = %d, %v; want every step recorded and verified", n, err)
	}
}

// TestNoResurrection races collectors against an erasure with suppression, for
// many rounds: afterwards nothing of the person exists, and every later message
// about them is refused.
func TestNoResurrection(t *testing.T) {
	rounds := 2000
	if testing.Short() {
		rounds = 300
	}
	e := newEnv(t)
	ctx := context.Background()
	for r := range rounds {
		u := fmt.Sprint("u", r)
		devices := []string{u + "-a", u + "-b", u + "-c"}
		start := make(chan struct{})
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for g := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					dev := devices[(g+i)%len(devices)]
					var m privacy.Message = privacy.Track{UserID: u, AnonymousID: dev, Event: "E", Timestamp: at(i)}
					if i%3 == 2 {
						m = privacy.Track{AnonymousID: dev, Event: "E", Timestamp: at(i)} // a device alone
					}
					err := e.c.Collect(ctx, m)
					if err != nil && !errors.Is(err, privacy.ErrSuppressed) {
						t.Error(err)
						return
					}
					if i > 50 {
						<-stop
						return
					}
				}
			}()
		}
		close(start)
		if _, err := e.c.Apply(ctx, privacy.Request{Type: privacy.SuppressWithDelete, Subjects: []identity.ID{user(u)}}); err != nil {
			t.Fatal(err)
		}
		close(stop)
		wg.Wait()
		if _, err := e.c.Profile(ctx, user(u)); !errors.Is(err, privacy.ErrNotFound) {
			t.Fatalf("round %d: the person exists after erasure: %v", r, err)
		}
		for _, dev := range devices {
			if err := e.c.Collect(ctx, privacy.Track{UserID: u, AnonymousID: dev, Event: "Later", Timestamp: at(99)}); !errors.Is(err, privacy.ErrSuppressed) {
				t.Fatalf("round %d: a later message was accepted: %v", r, err)
			}
		}
	}
	// Devices first seen alone, after the erasure, may make profiles of their own
	// (they were never linked to the person); nothing may carry the person's id.
	pids, _ := e.profiles.IDs(ctx, "", 1_000_000)
	for _, pid := range pids {
		n, err := e.graph.Node(ctx, pid)
		if err != nil {
			t.Fatalf("profile %s stored without a graph node: %v", pid, err)
		}
		for _, l := range n.Links {
			if l.ID.Type == "user_id" {
				t.Fatalf("profile %s still holds %s", pid, l.ID)
			}
		}
	}
}
