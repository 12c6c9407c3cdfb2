package privacy

// Telemetry through OpenTelemetry's API (the SDK is the host's): a span for
// every right and every CollectBatch, and metrics of collection, requests,
// delivery and overdue requests; and one log line per right. No attribute,
// span name or log field holds an identifier or a value: request ids,
// types, statuses, outcome names, destination names and counts only.

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/gdprkit/privacy/journal"
)

// InstrumentationName names the library's tracer and meter.
const InstrumentationName = "github.com/gdprkit/privacy"

// The attribute keys the library's telemetry uses.
const (
	AttrRequestID      = attribute.Key("gdprkit.request.id")
	AttrRequestType    = attribute.Key("gdprkit.request.type")
	AttrRequestStatus  = attribute.Key("gdprkit.request.status")
	AttrMessageOutcome = attribute.Key("gdprkit.message.outcome")
	AttrDestination    = attribute.Key("gdprkit.destination")
	AttrDeliveryResult = attribute.Key("gdprkit.delivery.result")
	AttrBatchMessages  = attribute.Key("gdprkit.batch.messages")
	AttrErrorType      = attribute.Key("error.type") // OpenTelemetry's semantic convention
)

// WithTracerProvider sets where the Controller's spans go (default
// otel.GetTracerProvider(): nothing, until the host sets a global one).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return notNil("WithTracerProvider", "tracer provider", tp == nil, func(c *config) { c.tracerProvider = tp })
}

// WithMeterProvider sets where the Controller's metrics go (default
// otel.GetMeterProvider(): nothing, until the host sets a global one).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return notNil("WithMeterProvider", "meter provider", mp == nil, func(c *config) { c.meterProvider = mp })
}

// telemetry holds the Controller's instruments.
type telemetry struct {
	tracer   trace.Tracer
	requests metric.Int64Counter
	duration metric.Float64Histogram
	reg      metric.Registration

	mu         sync.Mutex
	last       backendView // the latest refresh's
	refreshed  time.Time   // when the latest refresh started
	refreshing chan struct{}
}

// backendView is what the observed metrics read from the backends.
type backendView struct {
	delivery  map[string]DeliveryStats
	overdue   int
	overdueOK bool
}

// How often, at most, the observed metrics read the backends; how long a
// refresh may take; how long a collection waits for one.
const (
	observeEvery   = 15 * time.Second
	refreshTimeout = 10 * time.Second
	observeWait    = 100 * time.Millisecond
)

// view returns the backends' latest view, starting a refresh when it is
// older than observeEvery and waiting for it up to observeWait.
func (t *telemetry) view(c *Controller) backendView {
	t.mu.Lock()
	done := t.refreshing
	if done == nil && time.Since(t.refreshed) >= observeEvery {
		done = make(chan struct{})
		t.refreshing, t.refreshed = done, time.Now()
		go t.refresh(c, done)
	}
	t.mu.Unlock()
	if done != nil {
		select {
		case <-done:
		case <-time.After(observeWait):
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last
}

// refresh reads the backends into t.last, within refreshTimeout.
func (t *telemetry) refresh(c *Controller, done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), refreshTimeout)
	defer cancel()
	var v backendView
	if stats, err := c.DeliveryStats(ctx); err == nil {
		v.delivery = stats
	}
	if late, err := c.Overdue(ctx); err == nil {
		v.overdue, v.overdueOK = len(late), true
	}
	t.mu.Lock()
	if v.delivery == nil {
		v.delivery = t.last.delivery // kept from before rather than dropped
	}
	t.last, t.refreshing = v, nil
	t.mu.Unlock()
	close(done)
}

// newTelemetry makes the instruments, and registers the observed ones:
// collection counters (Stats), delivery per destination (DeliveryStats),
// overdue requests (Overdue).
func newTelemetry(c *Controller, tp trace.TracerProvider, mp metric.MeterProvider) (*telemetry, error) {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(InstrumentationName)
	t := &telemetry{tracer: tp.Tracer(InstrumentationName)}
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	var err error
	t.requests, err = m.Int64Counter("gdprkit.requests", metric.WithUnit("{request}"),
		metric.WithDescription("Privacy requests ended (by whichever instance ended them), by type and final status."))
	add(err)
	t.duration, err = m.Float64Histogram("gdprkit.request.duration", metric.WithUnit("s"),
		metric.WithDescription("A privacy request's life, from received to ended (destinations' answers included), by type and final status."))
	add(err)
	messages, err := m.Int64ObservableCounter("gdprkit.messages", metric.WithUnit("{message}"),
		metric.WithDescription("Messages given to Collect and CollectBatch, by outcome: collected, duplicate, suppressed, refused."))
	add(err)
	delivered, err := m.Int64ObservableCounter("gdprkit.delivery.items", metric.WithUnit("{item}"),
		metric.WithDescription("Items this Controller delivered to a destination, by result: delivered, failed (given up), not_supported, retried."))
	add(err)
	pending, err := m.Int64ObservableGauge("gdprkit.delivery.pending", metric.WithUnit("{item}"),
		metric.WithDescription("Items waiting in the outbox for a destination."))
	add(err)
	dead, err := m.Int64ObservableGauge("gdprkit.delivery.dead", metric.WithUnit("{item}"),
		metric.WithDescription("Dead letters of a destination, waiting for Replay."))
	add(err)
	overdue, err := m.Int64ObservableGauge("gdprkit.requests.overdue", metric.WithUnit("{request}"),
		metric.WithDescription("Unfinished requests past their due date (Art. 12(3))."))
	add(err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	t.reg, err = m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		if c.closed.Load() {
			return nil
		}
		s := c.Stats()
		for _, v := range []struct {
			outcome string
			n       uint64
		}{{"collected", s.Collected}, {"duplicate", s.Duplicates}, {"suppressed", s.Suppressed}, {"refused", s.Refused}} {
			o.ObserveInt64(messages, int64(v.n), metric.WithAttributes(AttrMessageOutcome.String(v.outcome)))
		}
		// Read from the backends at most every observeEvery, by a refresh
		// of its own that this collection waits for only briefly: a slow
		// or hanging database costs the host's metrics export no more, and
		// many collections cost no more reads. What no refresh could read
		// yet is left out, not reported as zero.
		view := t.view(c)
		for name, d := range view.delivery {
			dest := AttrDestination.String(name)
			for _, v := range []struct {
				result string
				n      uint64
			}{{"delivered", d.Delivered}, {"failed", d.Failed}, {"not_supported", d.NotSupported}, {"retried", d.Retries}} {
				o.ObserveInt64(delivered, int64(v.n), metric.WithAttributes(dest, AttrDeliveryResult.String(v.result)))
			}
			o.ObserveInt64(pending, int64(d.Pending), metric.WithAttributes(dest))
			o.ObserveInt64(dead, int64(d.Dead), metric.WithAttributes(dest))
		}
		if view.overdueOK {
			o.ObserveInt64(overdue, int64(view.overdue))
		}
		return nil
	}, messages, delivered, pending, dead, overdue)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// close unregisters the observed instruments.
func (t *telemetry) close() {
	if t.reg != nil {
		_ = t.reg.Unregister()
	}
}

// spanName is a right's span name: gdprkit. and its type in lower case,
// "gdprkit.suppress_with_delete".
func spanName(typ RequestType) string {
	if !typ.Valid() && typ != Retention {
		return "gdprkit.request"
	}
	return "gdprkit." + strings.ToLower(string(typ))
}

// right runs a right (apply) in its span, then records how the call
// returned: the span's attributes and status (RUNNING while destinations
// have yet to answer), and one log line. The request is counted when it
// ends (ended), wherever it ends.
func (c *Controller) right(ctx context.Context, typ RequestType, apply func(context.Context) (*Receipt, error)) (*Receipt, error) {
	ctx, span := c.tel.tracer.Start(ctx, spanName(typ), trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(AttrRequestType.String(requestTypeName(typ))))
	start := time.Now()
	r, err := apply(ctx)
	took := time.Since(start)

	status := "ERROR" // no receipt: the request was never journaled
	if r != nil {
		status = string(r.Status)
		span.SetAttributes(AttrRequestID.String(r.ID))
	}
	span.SetAttributes(AttrRequestStatus.String(status))
	if err != nil {
		// The error's kind, never its text: the span outlives the person.
		span.SetAttributes(AttrErrorType.String(ErrorKind(err)))
		span.SetStatus(codes.Error, ErrorKind(err))
	}
	span.End()
	args := []any{slog.String("type", requestTypeName(typ)), slog.String("status", status), slog.Duration("duration", took)}
	if r != nil {
		args = append(args, slog.String("request_id", r.ID))
	}
	if err != nil {
		args = append(args, slog.String("error", ErrorKind(err)))
	}
	c.log.InfoContext(ctx, "privacy request", args...)
	return r, err
}

// ended counts a request that ended, once, with its final status and its
// life from received to finished by the Controller's clock.
func (t *telemetry) ended(ctx context.Context, e *journal.Entry) {
	attrs := metric.WithAttributes(AttrRequestType.String(requestTypeName(e.Type)), AttrRequestStatus.String(string(e.Status)))
	t.requests.Add(ctx, 1, attrs)
	t.duration.Record(ctx, max(e.Finished.Sub(e.Received), 0).Seconds(), attrs)
}

// requestTypeName is typ as telemetry shows it: an unknown type (bad
// input, which may be anything) is "invalid".
func requestTypeName(typ RequestType) string {
	if typ.Valid() || typ == Retention {
		return string(typ)
	}
	return "invalid"
}

// ErrorKind names what err, returned by the Controller, is: "invalid",
// "not_found", "suppressed", "conflict", "closed", "key_mismatch",
// "canceled", "deadline_exceeded", or "backend" for anything else. It is
// what telemetry and logs may show of an error: a sentinel's name, never
// the error's text, which a backend may have filled with the value it
// refused.
func ErrorKind(err error) string {
	switch {
	case errors.Is(err, ErrInvalid):
		return "invalid"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrSuppressed):
		return "suppressed"
	case errors.Is(err, ErrConflict):
		return "conflict"
	case errors.Is(err, ErrClosed):
		return "closed"
	case errors.Is(err, ErrKeyMismatch):
		return "key_mismatch"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline_exceeded"
	}
	return "backend"
}

// batchSpan starts CollectBatch's span.
func (c *Controller) batchSpan(ctx context.Context, n int) (context.Context, trace.Span) {
	return c.tel.tracer.Start(ctx, "gdprkit.collect_batch", trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(AttrBatchMessages.Int(n)))
}

// endBatchSpan records a batch's outcomes on its span: how many messages
// were not stored, by why.
func endBatchSpan(span trace.Span, errs []error) {
	if !span.IsRecording() { // no tracer set: nothing to count for
		span.End()
		return
	}
	counts := map[string]int{}
	for _, err := range errs {
		if err != nil {
			counts[ErrorKind(err)]++
		}
	}
	for kind, n := range counts {
		span.SetAttributes(attribute.Int("gdprkit.batch."+kind, n))
	}
	if counts["backend"] > 0 || counts["closed"] > 0 || counts["canceled"] > 0 || counts["deadline_exceeded"] > 0 {
		span.SetStatus(codes.Error, "messages not stored")
	}
	span.End()
}
