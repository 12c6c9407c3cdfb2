package privacy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/export"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// exportFixtures caches the benchmark people across b.N rounds: collecting
// 100,000 events once per round would take longer than measuring.
var exportFixtures sync.Map

type exportFixture struct {
	c      *privacy.Controller
	id     identity.ID
	events []profile.Event
}

// manyEvents is a person with n events of realistic shape.
func manyEvents(b *testing.B, n int) *exportFixture {
	if f, ok := exportFixtures.Load(n); ok {
		return f.(*exportFixture)
	}
	ctx := context.Background()
	c, err := privacy.New()
	if err != nil {
		b.Fatal(err)
	}
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		err := c.Collect(ctx, privacy.Track{MessageID: "m" + strconv.Itoa(i), UserID: "ada", Event: "Order Completed",
			Properties: map[string]any{"order_id": "o-" + strconv.Itoa(i), "total": float64(i%500) + 0.99, "currency": "EUR",
				"items": []any{map[string]any{"sku": "sku-1", "qty": 2.0}}}, Timestamp: ts.Add(time.Duration(i) * time.Second)})
		if err != nil {
			b.Fatal(err)
		}
	}
	pkg, err := c.Access(ctx, user("ada"))
	if err != nil {
		b.Fatal(err)
	}
	f := &exportFixture{c: c, id: user("ada"), events: pkg.Events}
	exportFixtures.Store(n, f)
	return f
}

// BenchmarkExportNDJSON100k exports a person with 100,000 events as NDJSON,
// next to the baseline the issue names: a plain encoding/json encoder writing
// the same events from a slice. Both report events per second.
func BenchmarkExportNDJSON100k(b *testing.B) {
	const n = 100_000
	f := manyEvents(b, n)
	ctx := context.Background()
	b.Run("export", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f.c.Export(ctx, f.id, io.Discard, export.NDJSON); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("baseline-encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			enc := json.NewEncoder(io.Discard)
			for i := range f.events {
				if err := enc.Encode(&f.events[i]); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

// heapSampler is a writer that forces a collection every few writes and keeps
// the largest live heap it saw: the peak of what an export holds.
type heapSampler struct {
	writes int
	peak   uint64
}

func (h *heapSampler) Write(p []byte) (int, error) {
	h.writes++
	if h.writes%8 == 0 {
		h.sample()
	}
	return len(p), nil
}

func (h *heapSampler) sample() {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	h.peak = max(h.peak, m.HeapAlloc)
}

// BenchmarkExportHeap100k measures the peak growth of the live heap while a
// person with 100,000 events is exported (each format): the live heap after a
// forced collection, sampled every 8 writes of the export, minus the live heap
// before it began.
func BenchmarkExportHeap100k(b *testing.B) {
	const n = 100_000
	f := manyEvents(b, n)
	ctx := context.Background()
	for _, format := range []export.Format{export.NDJSON, export.JSON, export.CSV} {
		b.Run(format.String(), func(b *testing.B) {
			var growth uint64
			for b.Loop() {
				h := &heapSampler{}
				runtime.GC()
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				base := m.HeapAlloc
				if _, err := f.c.Export(ctx, f.id, h, format); err != nil {
					b.Fatal(err)
				}
				h.sample()
				growth = max(growth, h.peak-min(h.peak, base))
			}
			b.ReportMetric(float64(growth)/(1<<20), "peak-heap-growth-MiB")
		})
	}
}

// BenchmarkExportLargeProfile exports a person with 1,000 identifiers, 6,000
// traits and 10,000 events, the figure (under 200 ms).
func BenchmarkExportLargeProfile(b *testing.B) {
	ctx := context.Background()
	rules := identity.DefaultRules()
	rules.DefaultLimit = identity.Limit{Max: 1000, Window: identity.Ever}
	c, err := privacy.New(privacy.WithIdentityRules(rules))
	if err != nil {
		b.Fatal(err)
	}
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 999 {
		if err := c.Collect(ctx, privacy.Identify{UserID: "ada", ExternalIDs: []identity.ID{{Type: "device_id", Value: fmt.Sprint("device-", i)}}, Timestamp: ts}); err != nil {
			b.Fatal(err)
		}
	}
	for batch := range 20 {
		traits := map[string]any{}
		for k := range privacy.MaxTraits {
			traits[fmt.Sprintf("trait_%02d_%03d", batch, k)] = fmt.Sprint("value ", batch*1000+k)
		}
		if err := c.Collect(ctx, privacy.Identify{UserID: "ada", Traits: traits, Timestamp: ts}); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 10_000 {
		if err := c.Collect(ctx, privacy.Track{UserID: "ada", Event: "Page Viewed", Properties: map[string]any{"path": "/p/" + strconv.Itoa(i)},
			Timestamp: ts.Add(time.Duration(i) * time.Second)}); err != nil {
			b.Fatal(err)
		}
	}
	pkg, err := c.Access(ctx, user("ada"))
	if err != nil {
		b.Fatal(err)
	}
	if len(pkg.Profile.ExternalIDs) != 1000 || len(pkg.Profile.Traits) != 6000 || len(pkg.Events) != 10_000 {
		b.Fatalf("fixture has %d identifiers, %d traits, %d events", len(pkg.Profile.ExternalIDs), len(pkg.Profile.Traits), len(pkg.Events))
	}
	for _, format := range []export.Format{export.JSON, export.NDJSON, export.CSV} {
		b.Run(format.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Export(ctx, user("ada"), io.Discard, format); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/export")
		})
	}
	b.Run("access", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Access(ctx, user("ada")); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/access")
	})
}
