package privacy_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

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
