package privacy

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gdprkit/privacy/identity"
)

// others populates c with n people, one identify each.
func others(b *testing.B, c *Controller, n int, ts time.Time) {
	ctx := context.Background()
	for p := range n {
		if err := c.Collect(ctx, Identify{UserID: "other" + strconv.Itoa(p), Traits: map[string]any{"plan": "pro"}, Timestamp: ts}); err != nil {
			b.Fatal(err)
		}
	}
}

// benchErase erases, per iteration, a person with 10,000 events among `people`
// others, all participants in memory and no destination (delivery excluded).
// It reports the median, since a mean hides the garbage collector's share.
func benchErase(b *testing.B, people int) {
	ctx := context.Background()
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := populations.get("erase"+strconv.Itoa(people), func() *Controller {
		c, err := New(WithClock(func() time.Time { return ts }))
		if err != nil {
			b.Fatal(err)
		}
		others(b, c, people, ts)
		return c
	})
	const events = 10_000
	var times []time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		u := "erased" + strconv.Itoa(populations.next())
		for e := range events {
			if err := c.Collect(ctx, Track{MessageID: u + "-" + strconv.Itoa(e), UserID: u, AnonymousID: u + "-dev",
				Event: "Viewed", Properties: benchProps, Timestamp: ts.Add(time.Duration(e) * time.Second)}); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		start := time.Now()
		r, err := c.Erase(ctx, identity.ID{Type: identity.TypeUserID, Value: u})
		times = append(times, time.Since(start))
		if err != nil || r.Status != Finished {
			b.Fatalf("erase %d: %+v, %v", i, r, err)
		}
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Nanoseconds()), "median-ns")
}

func BenchmarkErase10kEventsAmong1k(b *testing.B) { benchErase(b, 1_000) }
func BenchmarkErase10kEventsAmong1M(b *testing.B) { benchErase(b, 1_000_000) }

// BenchmarkBulkErasure erases 5,000 people (a full request) per iteration, each
// with an identify and three events, and reports people per second.
func BenchmarkBulkErasure(b *testing.B) {
	ctx := context.Background()
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c, err := New(WithClock(func() time.Time { return ts }))
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		subjects := make([]identity.ID, MaxSubjects)
		for p := range subjects {
			u := "bulk" + strconv.Itoa(populations.next())
			subjects[p] = identity.ID{Type: identity.TypeUserID, Value: u}
			if err := c.Collect(ctx, Identify{UserID: u, Traits: map[string]any{"plan": "pro"}, Timestamp: ts}); err != nil {
				b.Fatal(err)
			}
			for e := range 3 {
				if err := c.Collect(ctx, Track{UserID: u, Event: "E", Timestamp: ts.Add(time.Duration(e))}); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StartTimer()
		start := time.Now()
		r, err := c.Apply(ctx, Request{Type: DeleteInternal, Subjects: subjects})
		total += time.Since(start)
		if err != nil || r.Status != Finished {
			b.Fatalf("bulk erase: %+v, %v", r, err)
		}
	}
	b.ReportMetric(float64(b.N*MaxSubjects)/total.Seconds(), "people/s")
}
