package compat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
)

// personal is what the test collects about people: none of it may appear
// in any span, attribute, metric or log line.
var personal = []string{"ada", "Ada", "example.com", "grace", "Grace", "pro-plan", "+33 6", "Signed Up"}

// TestTelemetrySpansMetricsAndLogs drives every right and a batch through
// a Controller with OpenTelemetry's in-memory SDK, and checks the span
// names, the metrics' values, the log lines, and that none of them holds
// a person's identifier or value.
func TestTelemetrySpansMetricsAndLogs(t *testing.T) {
	ctx := context.Background()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	var logs bytes.Buffer
	crm := destination.NewRecorder("crm")
	c, err := privacy.New(privacy.WithTracerProvider(tp), privacy.WithMeterProvider(mp), privacy.WithDestinations(crm),
		privacy.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	ts := time.Now().Add(-time.Hour)
	ada := identity.ID{Type: "email", Value: "ada@example.com"}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Collect(ctx, privacy.Identify{UserID: "ada", Traits: map[string]any{"email": "ada@example.com", "plan": "pro-plan", "phone": "+33 6 12"}, Timestamp: ts}))
	err = c.CollectBatch(ctx, []privacy.Message{
		privacy.Track{UserID: "ada", Event: "Signed Up", Timestamp: ts},
		privacy.Track{UserID: "grace", Event: "Signed Up", Timestamp: ts},
		privacy.Track{UserID: "grace", Timestamp: ts}, // refused: no event
	})
	if err == nil {
		t.Fatal("a batch with a track without an event was taken whole")
	}
	_, err = c.Rectify(ctx, ada, map[string]any{"plan": "pro-plan-2"})
	must(err)
	// Delivered before the erasure below: a rectification whose message an
	// erasure purges first ends FAILED (the destination's outcome is
	// NOT_SUPPORTED, "erased first"), which this test is not about.
	must(c.Flush(ctx))
	_, err = c.Access(ctx, ada)
	must(err)
	_, err = c.Suppress(ctx, identity.ID{Type: "user_id", Value: "grace"})
	must(err)
	if err := c.Collect(ctx, privacy.Track{UserID: "grace", Event: "Signed Up", Timestamp: ts}); !errors.Is(err, privacy.ErrSuppressed) {
		t.Fatalf("a suppressed person's message: %v", err)
	}
	_, err = c.Erase(ctx, ada)
	must(err)
	_, err = c.Apply(ctx, privacy.Request{Type: "ada@example.com", Subjects: []identity.ID{ada}}) // bad input, quoting a person
	if err == nil {
		t.Fatal("a request of an unknown type was taken")
	}
	must(c.Flush(ctx))

	// Spans: one per right, one per batch.
	var names []string
	for _, s := range spans.Ended() {
		names = append(names, s.Name())
		checkAttrs(t, "span "+s.Name(), s.Attributes())
		if strings.Contains(s.Name(), "ada") || strings.Contains(s.Status().Description, "ada") {
			t.Errorf("span %q (status %q) names a person", s.Name(), s.Status().Description)
		}
	}
	for _, want := range []string{"gdprkit.collect_batch", "gdprkit.rectify", "gdprkit.access", "gdprkit.suppress_only", "gdprkit.delete_only", "gdprkit.request"} {
		if !slices.Contains(names, want) {
			t.Errorf("no span %q among %v", want, names)
		}
	}
	for _, s := range spans.Ended() {
		attrs := attrMap(s.Attributes())
		switch s.Name() {
		case "gdprkit.delete_only":
			if attrs["gdprkit.request.type"] != "DELETE_ONLY" || attrs["gdprkit.request.status"] == "" || !strings.HasPrefix(attrs["gdprkit.request.id"], "req_") {
				t.Errorf("erasure span attributes %v", attrs)
			}
		case "gdprkit.collect_batch":
			if attrs["gdprkit.batch.messages"] != "3" || attrs["gdprkit.batch.invalid"] != "1" {
				t.Errorf("batch span attributes %v: want 3 messages, 1 invalid", attrs)
			}
		case "gdprkit.request":
			if attrs["gdprkit.request.type"] != "invalid" || attrs["gdprkit.request.status"] != "INVALID" || attrs["error.type"] != "invalid" {
				t.Errorf("invalid request span attributes %v", attrs)
			}
		}
	}

	// Metrics.
	var rm metricdata.ResourceMetrics
	must(reader.Collect(ctx, &rm))
	got := map[string]map[string]float64{} // metric -> attribute set -> value
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != privacy.InstrumentationName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, privacy.InstrumentationName)
		}
		for _, m := range sm.Metrics {
			got[m.Name] = map[string]float64{}
			record := func(set attribute.Set, v float64) {
				checkAttrs(t, "metric "+m.Name, set.ToSlice())
				got[m.Name][set.Encoded(attribute.DefaultEncoder())] = v
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					record(p.Attributes, float64(p.Value))
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					record(p.Attributes, float64(p.Value))
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					record(p.Attributes, float64(p.Count))
				}
			}
		}
	}
	for metric, want := range map[string]map[string]float64{
		"gdprkit.messages": {
			"gdprkit.message.outcome=collected": 3, "gdprkit.message.outcome=refused": 1,
			"gdprkit.message.outcome=suppressed": 1, "gdprkit.message.outcome=duplicate": 0,
		},
		"gdprkit.requests": {
			"gdprkit.request.status=FINISHED,gdprkit.request.type=RECTIFY":       1,
			"gdprkit.request.status=FINISHED,gdprkit.request.type=ACCESS":        1,
			"gdprkit.request.status=FINISHED,gdprkit.request.type=SUPPRESS_ONLY": 1,
			"gdprkit.request.status=INVALID,gdprkit.request.type=invalid":        1,
		},
		"gdprkit.request.duration": {"gdprkit.request.status=FINISHED,gdprkit.request.type=ACCESS": 1},
		"gdprkit.delivery.pending": {"gdprkit.destination=crm": 0},
		"gdprkit.delivery.dead":    {"gdprkit.destination=crm": 0},
		"gdprkit.requests.overdue": {"": 0},
	} {
		for set, v := range want {
			if have, ok := got[metric][set]; !ok || have != v {
				t.Errorf("%s{%s} = %v (present %v), want %v; all: %v", metric, set, have, ok, v, got[metric])
			}
		}
	}
	if got["gdprkit.delivery.items"]["gdprkit.delivery.result=delivered,gdprkit.destination=crm"] < 2 {
		t.Errorf("delivery items %v: want the messages and the deletion delivered to crm", got["gdprkit.delivery.items"])
	}
	erasures := 0.0
	for set, v := range got["gdprkit.requests"] {
		if strings.Contains(set, "DELETE_ONLY") {
			erasures += v
		}
	}
	if erasures != 1 {
		t.Errorf("erasures counted %v, want 1: %v", erasures, got["gdprkit.requests"])
	}

	// One log line per right, with its id, type, status and duration.
	rights := 0
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if id, ok := rec["request_id"].(string); ok {
			if !strings.HasPrefix(id, "req_") || strings.ContainsAny(id, "@. ") {
				t.Errorf("log line's request id %q", id)
			}
			delete(rec, "request_id") // random letters, which may spell "ada"
		}
		text, _ := json.Marshal(rec)
		for _, p := range personal {
			if strings.Contains(string(text), p) {
				t.Errorf("log line quotes %q: %s", p, line)
			}
		}
		if rec["msg"] == "privacy request" {
			rights++
			if rec["level"] != "INFO" || rec["type"] == nil || rec["status"] == nil || rec["duration"] == nil {
				t.Errorf("right's log line %v", rec)
			}
		}
	}
	if rights != 5 {
		t.Errorf("%d log lines of rights, want 5 (rectify, access, suppress, erase, the invalid one):\n%s", rights, logs.String())
	}
}

// checkAttrs fails t if an attribute's key or value holds personal data.
func checkAttrs(t *testing.T, where string, attrs []attribute.KeyValue) {
	t.Helper()
	for _, a := range attrs {
		if a.Key == privacy.AttrRequestID {
			continue // an id of random letters, which may spell "ada"; checked by its form below
		}
		for _, p := range personal {
			if strings.Contains(string(a.Key), p) || strings.Contains(a.Value.Emit(), p) {
				t.Errorf("%s: attribute %s=%s holds %q", where, a.Key, a.Value.Emit(), p)
			}
		}
	}
}

func attrMap(attrs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, a := range attrs {
		m[string(a.Key)] = a.Value.Emit()
	}
	return m
}

// TestTelemetryIsANoOpByDefault: without providers, a Controller works and
// records nothing anywhere (the global providers are no-ops until a host
// sets them).
func TestTelemetryIsANoOpByDefault(t *testing.T) {
	c, err := privacy.New()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.Collect(ctx, privacy.Track{UserID: "u1", Event: "E"}); err != nil {
		t.Fatal(err)
	}
	r, err := c.Erase(ctx, identity.ID{Type: "user_id", Value: "u1"})
	if err != nil || r.Status != privacy.Finished {
		t.Fatalf("erase: %+v, %v", r, err)
	}
}
