package privacy_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/google/go-cmp/cmp"
)

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

// R12: SuppressWithDelete decided, identity commit failed: identifiers stay
// linked to an unsuppressed profile while their hashes are suppressed; the gate
// checks the profile and admits the person's messages until Recover.
func TestRegressionSuppressWithDeletePartialAdmits(t *testing.T) {
	w := newWorld(t)
	c := w.controller(t)
	ctx := context.Background()
	person(t, &env{c: c, graph: w.graph, profiles: w.profiles}, "ada")
	w.f.arm("identity.commit", 0)
	r, err := c.Apply(ctx, privacy.Request{Type: privacy.SuppressWithDelete, Subjects: []identity.ID{user("ada")}})
	w.f.disarm()
	t.Logf("apply: %s %v", r.Status, err)
	if s, _ := w.supp.Suppressed(ctx, w.hasher.ID(user("ada"))); !s {
		t.Fatal("suppression not committed")
	}
	if err := c.Collect(ctx, privacy.Track{UserID: "ada", Event: "After", Timestamp: at(9)}); !errors.Is(err, privacy.ErrSuppressed) {
		t.Errorf("identifier is in the list but collection got %v", err)
	}
}

// After SUPPRESS_WITH_DELETE the profile is gone; UNSUPPRESS still lifts every
// identifier that was suppressed with the one it names.
func TestRegressionUnsuppressAfterSuppressWithDelete(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	person(t, e, "ada")
	if _, err := e.c.Apply(ctx, privacy.Request{Type: privacy.SuppressWithDelete, Subjects: []identity.ID{user("ada")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Unsuppress(ctx, user("ada")); err != nil {
		t.Fatal(err)
	}
	for _, m := range []privacy.Message{
		privacy.Track{UserID: "ada", Event: "Back", Timestamp: at(9)},
		privacy.Track{AnonymousID: "ada-phone", Event: "Back", Timestamp: at(9)},
		privacy.Identify{UserID: "ada", AnonymousID: "ada-laptop", Timestamp: at(10)},
	} {
		if err := e.c.Collect(ctx, m); err != nil {
			t.Errorf("after Unsuppress: %+v -> %v", m, err)
		}
	}
}

// An alias naming a suppressed person's id as its previousId would store
// that id among its properties and send it on: it is dropped, by Collect
// and by CollectBatch, whether the person was erased or only suppressed.
func TestAliasOfSuppressedPreviousIDIsDropped(t *testing.T) {
	for _, typ := range []privacy.RequestType{privacy.SuppressWithDelete, privacy.SuppressOnly} {
		for _, batch := range []bool{false, true} {
			t.Run(string(typ)+"/"+pathName(batch), func(t *testing.T) {
				rec := destination.NewRecorder("crm")
				e := newEnv(t, privacy.WithDestinations(rec), fastDelivery())
				e.collect(t, privacy.Identify{UserID: "ada", AnonymousID: "anon-ada", Timestamp: at(0)})
				if _, err := e.c.Apply(context.Background(), privacy.Request{Type: typ, Subjects: []identity.ID{user("ada")}}); err != nil {
					t.Fatal(err)
				}
				flush(t, e.c)
				before := len(received(rec))
				for _, prev := range []string{"ada", "anon-ada"} {
					msg := privacy.Alias{MessageID: "al-" + prev, UserID: "newcomer", PreviousID: prev, Timestamp: at(1)}
					var err error
					if batch {
						err = e.c.CollectBatch(context.Background(), []privacy.Message{msg})
					} else {
						err = e.c.Collect(context.Background(), msg)
					}
					if !errors.Is(err, privacy.ErrSuppressed) {
						t.Fatalf("alias of %s: %v, want ErrSuppressed", prev, err)
					}
				}
				if _, err := e.c.Profile(context.Background(), user("newcomer")); !errors.Is(err, privacy.ErrNotFound) {
					t.Fatalf("the alias was stored: %v", err)
				}
				flush(t, e.c)
				if got := received(rec); len(got) != before {
					t.Fatalf("the alias was sent on: %v", got[before:])
				}
				// An alias of someone else still goes through.
				e.collect(t, privacy.Alias{MessageID: "al-ok", UserID: "newcomer", PreviousID: "anon-other", Timestamp: at(2)})
				if evs := e.events(t, user("newcomer")); len(evs) != 1 {
					t.Fatalf("a free alias was not stored: %+v", evs)
				}
			})
		}
	}
}
