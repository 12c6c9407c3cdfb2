package privacy_test

import (
	"context"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/profile"
	"github.com/google/go-cmp/cmp"
)

// TestRecipientsAreRecorded checks that a profile's metadata names every
// destination its data was handed to, with the first and latest time, and that
// a merge keeps the recipients of both profiles.
func TestRecipientsAreRecorded(t *testing.T) {
	ctx := context.Background()
	clk := newClock(t0)
	crm, ads := destination.NewRecorder("crm"), destination.NewRecorder("ads")
	c, err := privacy.New(privacy.WithClock(clk.now), privacy.WithDestinations(crm, ads))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	collect := func(m privacy.Message) {
		t.Helper()
		if err := c.Collect(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	collect(privacy.Track{UserID: "ada", Event: "E", Timestamp: t0})
	clk.advance(time.Hour)
	collect(privacy.Track{UserID: "ada", Event: "E", Timestamp: t0})
	clk.advance(time.Hour)
	collect(privacy.Track{AnonymousID: "anon-1", Event: "E", Timestamp: t0}) // a profile of its own, for now
	m, err := c.Metadata(ctx, user("ada"))
	if err != nil {
		t.Fatal(err)
	}
	want := []profile.Recipient{
		{Name: "crm", FirstSent: t0, LastSent: t0.Add(time.Hour)},
		{Name: "ads", FirstSent: t0, LastSent: t0.Add(time.Hour)},
	}
	if diff := cmp.Diff(want, m.Recipients); diff != "" {
		t.Errorf("recipients (-want +got):\n%s", diff)
	}

	clk.advance(time.Hour)
	collect(privacy.Identify{UserID: "ada", AnonymousID: "anon-1", Timestamp: t0}) // merges the two
	m, err = c.Metadata(ctx, user("ada"))
	if err != nil {
		t.Fatal(err)
	}
	want = []profile.Recipient{
		{Name: "crm", FirstSent: t0, LastSent: t0.Add(3 * time.Hour)},
		{Name: "ads", FirstSent: t0, LastSent: t0.Add(3 * time.Hour)},
	}
	if diff := cmp.Diff(want, m.Recipients); diff != "" {
		t.Errorf("recipients after the merge (-want +got):\n%s", diff)
	}

	// Without destinations, nobody is named.
	quiet := newEnv(t)
	person(t, quiet, "bob")
	if m, err := quiet.c.Metadata(ctx, user("bob")); err != nil || m.Recipients != nil {
		t.Errorf("recipients without destinations = %v, %v; want none", m.Recipients, err)
	}
}
