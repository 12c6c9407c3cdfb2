package compat

// Invariants of the telemetry (telemetry.go) an adversarial review broke:
// each failed on the first version.

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
)

// gatedDest is a destination whose deletions wait until the gate opens.
type gatedDest struct {
	gate    chan struct{}
	deletes atomic.Int32
}

func (d *gatedDest) Name() string                                            { return "crm" }
func (d *gatedDest) Send(ctx context.Context, _ []destination.Message) error { return nil }
func (d *gatedDest) Delete(ctx context.Context, _ destination.Deletion) error {
	select {
	case <-d.gate:
		d.deletes.Add(1)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// requestPoints returns gdprkit.requests' data points, "TYPE/STATUS" -> n.
func requestPoints(t *testing.T, reader sdkmetric.Reader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "gdprkit.requests" {
				continue
			}
			for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
				typ, _ := p.Attributes.Value(privacy.AttrRequestType)
				st, _ := p.Attributes.Value(privacy.AttrRequestStatus)
				out[typ.AsString()+"/"+st.AsString()] += p.Value
			}
		}
	}
	return out
}

// TestTelemetryRequestsCounterCountsEnds: gdprkit.requests is documented as
// "Privacy requests ended, by type and status". An erasure that waits for
// its destination returns RUNNING from Apply; once the destination answers
// it ends FINISHED. The counter must show it FINISHED (an end), not RUNNING
// (which is no end, and is never corrected).
func TestTelemetryRequestsCounterCountsEnds(t *testing.T) {
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	dest := &gatedDest{gate: make(chan struct{})}
	c, err := privacy.New(privacy.WithMeterProvider(mp), privacy.WithDestinations(dest))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Collect(ctx, privacy.Identify{UserID: "u1", Traits: map[string]any{"plan": "x"}, Timestamp: time.Now()}); err != nil {
		t.Fatal(err)
	}
	r, err := c.Erase(ctx, identity.ID{Type: "user_id", Value: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != privacy.Running {
		t.Fatalf("erasure returned %s, want RUNNING while its destination is held", r.Status)
	}
	close(dest.gate)
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	if st, err := c.Status(ctx, r.ID); err != nil || st.Status != privacy.Finished {
		t.Fatalf("the erasure's receipt: %+v, %v; want FINISHED", st, err)
	}
	got := requestPoints(t, reader)
	if got["DELETE_ONLY/FINISHED"] != 1 || got["DELETE_ONLY/RUNNING"] != 0 {
		t.Errorf("gdprkit.requests = %v; want DELETE_ONLY/FINISHED=1 (the request ended FINISHED) and no RUNNING", got)
	}
}

// hangingJournal is a journal whose Unfinished (what Overdue reads) hangs
// until its context ends, as a database behind a dead network link does,
// and counts its calls.
type hangingJournal struct {
	journal.Journal
	hang  atomic.Bool
	calls atomic.Int32
}

func (j *hangingJournal) Unfinished(ctx context.Context) ([]*journal.Entry, error) {
	j.calls.Add(1)
	if j.hang.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return j.Journal.Unfinished(ctx)
}

// deadlineExporter stands for an OTLP exporter: an export whose context has
// ended fails, and exports nothing.
type deadlineExporter struct {
	mu   sync.Mutex
	got  []string // metric names exported
	errs int
}

func (e *deadlineExporter) Temporality(k sdkmetric.InstrumentKind) metricdata.Temporality {
	return sdkmetric.DefaultTemporalitySelector(k)
}
func (e *deadlineExporter) Aggregation(k sdkmetric.InstrumentKind) sdkmetric.Aggregation {
	return sdkmetric.DefaultAggregationSelector(k)
}
func (e *deadlineExporter) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := ctx.Err(); err != nil {
		e.errs++
		return err
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			e.got = append(e.got, m.Name)
		}
	}
	return nil
}
func (e *deadlineExporter) ForceFlush(context.Context) error { return nil }
func (e *deadlineExporter) Shutdown(context.Context) error   { return nil }

// TestTelemetryMetricsCallbackDoesNotStallTheHostsExport: the observed
// metrics read the database (the outbox's counts, and every unfinished
// request for Overdue) inside the SDK's collection, on every collection.
// With a database that hangs, the callback spends the reader's whole
// collect-and-export budget, and the host loses every metric of the
// collection, its own included. The code's own comment says "What the
// backends cannot answer now is left out of this collection": it should be
// left out without stalling the rest.
func TestTelemetryMetricsCallbackDoesNotStallTheHostsExport(t *testing.T) {
	exp := &deadlineExporter{}
	reader := sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour), sdkmetric.WithTimeout(500*time.Millisecond))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	hostCounter, err := mp.Meter("host").Int64Counter("host.http.requests")
	if err != nil {
		t.Fatal(err)
	}
	j := &hangingJournal{Journal: journal.NewMemJournal()}
	c, err := privacy.New(privacy.WithMeterProvider(mp), privacy.WithJournal(j), privacy.WithKey(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hostCounter.Add(context.Background(), 1)
	j.hang.Store(true)
	start := time.Now()
	_ = mp.ForceFlush(context.Background())
	took := time.Since(start)
	exp.mu.Lock()
	defer exp.mu.Unlock()
	found := false
	for _, n := range exp.got {
		found = found || n == "host.http.requests"
	}
	if !found {
		t.Errorf("with the journal hanging, the collection took %v and exported %v (%d exports failed on their deadline): the host's own metric was lost with the collection", took, exp.got, exp.errs)
	}
}

// TestTelemetryOverdueScanPerCollection: Run reports overdue requests once
// an hour (Schedule.Overdue); the gauge reads and decodes every unfinished
// request at every collection (a Prometheus scrape every 15 s, on every
// host). Ten collections should not cost ten full scans of the journal.
func TestTelemetryOverdueScanPerCollection(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	j := &hangingJournal{Journal: journal.NewMemJournal()}
	c, err := privacy.New(privacy.WithMeterProvider(mp), privacy.WithJournal(j), privacy.WithKey(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before := j.calls.Load()
	for i := 0; i < 10; i++ {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
	}
	if n := j.calls.Load() - before; n > 1 {
		t.Errorf("10 metric collections read every unfinished request %d times", n)
	}
}

// echoDest refuses every call for good, quoting what it was sent.
type echoDest struct{}

func (echoDest) Name() string { return "echo" }
func (echoDest) Send(_ context.Context, msgs []destination.Message) error {
	return fmt.Errorf("%w: cannot take %+v", destination.ErrRejected, msgs)
}
func (echoDest) Delete(_ context.Context, d destination.Deletion) error {
	return fmt.Errorf("%w: no user %v", destination.ErrRejected, d.IDs)
}

// TestTelemetryHoldsNoCanary (held): canaries in identifiers, trait
// values and event names, through a right refused as INVALID with an email
// as its type, an Extend reason, a failing destination quoting its input
// and a batch; nothing reaches a span, attribute, status, metric or log.
func TestTelemetryHoldsNoCanary(t *testing.T) {
	ctx := context.Background()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	var logs bytes.Buffer
	rec := echoDest{}
	c, err := privacy.New(privacy.WithTracerProvider(tp), privacy.WithMeterProvider(mp), privacy.WithDestinations(rec),
		privacy.WithLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	canary := "canary@leak.example"
	ts := time.Now().Add(-time.Minute)
	_ = c.Collect(ctx, privacy.Identify{UserID: canary, Traits: map[string]any{"nested": map[string]any{"v": canary}}, Timestamp: ts})
	_ = c.CollectBatch(ctx, []privacy.Message{privacy.Track{UserID: canary, Event: canary, Timestamp: ts}, privacy.Track{UserID: canary, Timestamp: ts}})
	id := identity.ID{Type: "user_id", Value: canary}
	_, _ = c.Rectify(ctx, id, map[string]any{"x": canary})
	_, _ = c.Access(ctx, id)
	_, _ = c.Apply(ctx, privacy.Request{Type: privacy.RequestType(canary), Subjects: []identity.ID{id}})
	r, _ := c.Erase(ctx, id)
	if r != nil {
		_, _ = c.Extend(ctx, r.ID, 1, "asked by "+canary)
	}
	_, _ = c.Erase(ctx, identity.ID{Type: canary, Value: canary})
	fctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_ = c.Flush(fctx)
	cancel()
	var rm metricdata.ResourceMetrics
	_ = reader.Collect(ctx, &rm)
	var all strings.Builder
	for _, s := range spans.Ended() {
		fmt.Fprintln(&all, s.Name(), s.Status().Description)
		for _, a := range s.Attributes() {
			fmt.Fprintln(&all, a.Key, a.Value.Emit())
		}
		for _, e := range s.Events() {
			fmt.Fprintln(&all, e.Name, e.Attributes)
		}
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			fmt.Fprintf(&all, "%s %+v\n", m.Name, m.Data)
		}
	}
	all.WriteString(logs.String())
	if strings.Contains(strings.ToLower(all.String()), canary) {
		t.Errorf("telemetry quotes the canary:\n%s", all.String())
	}
}
