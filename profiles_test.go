package privacy_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
	"github.com/google/go-cmp/cmp"
)

func TestReadsOfUnknownPeopleAndBadQueries(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.collect(t, privacy.Track{UserID: "u1", Event: "E", Timestamp: at(0)})
	if _, err := e.c.Profile(ctx, user("nobody")); !errors.Is(err, privacy.ErrNotFound) {
		t.Errorf("Profile(unknown) err = %v, want ErrNotFound", err)
	}
	if _, err := e.c.Events(ctx, user("nobody"), profile.EventQuery{}); !errors.Is(err, privacy.ErrNotFound) {
		t.Errorf("Events(unknown) err = %v, want ErrNotFound", err)
	}
	if _, err := e.c.Profile(ctx, identity.ID{Type: "user_id"}); !errors.Is(err, privacy.ErrInvalid) {
		t.Errorf("Profile(empty id) err = %v, want ErrInvalid", err)
	}
	for _, q := range []profile.EventQuery{{Limit: -1}, {Limit: profile.MaxLimit + 1}, {Sort: "sideways"}, {Cursor: "!!"}, {Start: at(5), End: at(1)}} {
		if _, err := e.c.Events(ctx, user("u1"), q); !errors.Is(err, privacy.ErrInvalid) || !errors.Is(err, profile.ErrInvalid) {
			t.Errorf("Events(%+v) err = %v, want ErrInvalid", q, err)
		}
	}
	if _, err := e.c.Traits(ctx, user("u1"), profile.TraitQuery{Limit: -3}); !errors.Is(err, privacy.ErrInvalid) {
		t.Errorf("Traits(limit -3) err = %v, want ErrInvalid", err)
	}
}

func TestProfileAPIReads(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.collect(t, privacy.Identify{UserID: "u1", AnonymousID: "a1", Traits: map[string]any{"a": 1, "b": 2, "c": 3}, Timestamp: at(0), Source: "ios"})
	for i := range 25 {
		name := "Viewed"
		if i%5 == 0 {
			name = "Paid"
		}
		e.collect(t, privacy.Track{MessageID: fmt.Sprint("e", i), UserID: "u1", Event: name, Timestamp: at(i)})
	}
	tp, err := e.c.Traits(ctx, anon("a1"), profile.TraitQuery{Include: []string{"a", "c"}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]profile.Trait{"a": {Value: 1.0}, "c": {Value: 3.0}}, tp.Traits); diff != "" {
		t.Errorf("traits (-want +got):\n%s", diff)
	}
	tp, err = e.c.Traits(ctx, anon("a1"), profile.TraitQuery{Limit: 1, Verbose: true})
	if err != nil || tp.Next == "" || tp.Traits["a"].Source != "ios" {
		t.Errorf("verbose page = %+v, %v; want trait a from ios and a next cursor", tp, err)
	}
	xp, err := e.c.ExternalIDs(ctx, user("u1"), profile.ExternalIDQuery{Include: []string{"anonymous_id"}})
	if err != nil || len(xp.ExternalIDs) != 1 || xp.ExternalIDs[0].ID != anon("a1") {
		t.Errorf("external ids = %+v, %v; want only anonymous_id:a1", xp, err)
	}
	meta, err := e.c.Metadata(ctx, user("u1"))
	if err != nil || meta.Version != 26 {
		t.Errorf("metadata = %+v, %v; want version 26", meta, err)
	}
	// Newest Paid events first, paged two at a time.
	var got []string
	q := profile.EventQuery{Include: []string{"Paid"}, Limit: 2}
	for {
		page, err := e.c.Events(ctx, user("u1"), q)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range page.Events {
			got = append(got, ev.MessageID)
		}
		if page.Next == "" {
			break
		}
		q.Cursor = page.Next
	}
	if diff := cmp.Diff([]string{"e20", "e15", "e10", "e5", "e0"}, got); diff != "" {
		t.Errorf("paged events (-want +got):\n%s", diff)
	}
}
