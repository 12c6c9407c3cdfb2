package export_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy/export"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

var header = export.Header{Schema: export.SchemaVersion, GeneratedAt: t0, RequestID: "req_1", ProfileID: "use_1"}

// TestWriterRefuses checks that a call out of order or with a bad value fails
// with ErrInvalid naming the problem and writes nothing: the export finished
// after it is byte for byte the export written without it.
func TestWriterRefuses(t *testing.T) {
	ev := profile.Event{MessageID: "m1", Name: "x", Timestamp: t0}
	change := profile.ConsentChange{MessageID: "c1", Type: "track", Timestamp: t0, Preferences: map[string]bool{"Ads": false, "Analytics": true}}
	for _, tc := range []struct {
		name   string
		before func(w *export.Writer) error // valid calls
		bad    func(w *export.Writer) error
		want   string                       // in the error
		after  func(w *export.Writer) error // valid calls, then Close
	}{
		{"event before header", nil, func(w *export.Writer) error { return w.WriteEvent(ev) },
			"event before the header", func(w *export.Writer) error { return w.WriteHeader(header) }},
		{"close before header", nil, func(w *export.Writer) error { return w.Close() },
			"nothing written", func(w *export.Writer) error { return w.WriteHeader(header) }},
		{"header twice", nil, func(w *export.Writer) error { return w.WriteHeader(header) },
			"header after header", nil},
		{"identifier after event", func(w *export.Writer) error { return w.WriteEvent(ev) },
			func(w *export.Writer) error {
				return w.WriteIdentifier(profile.ExternalID{ID: identity.ID{Type: "email", Value: "a@b.c"}})
			},
			"identifier after event", nil},
		{"event after audience", func(w *export.Writer) error { return w.WriteAudience("vip") },
			func(w *export.Writer) error { return w.WriteEvent(ev) }, "event after audience",
			func(w *export.Writer) error { return w.WriteRecipient(export.Recipient{Name: "crm"}) }},
		{"trait after request", func(w *export.Writer) error { return w.WriteRequest(export.Request{ID: "r1"}) },
			func(w *export.Writer) error { return w.WriteTrait("plan", profile.Trait{Value: "pro"}) }, "trait after request", nil},
		{"traits out of order", func(w *export.Writer) error { return w.WriteTrait("b", profile.Trait{Value: 1.0}) },
			func(w *export.Writer) error { return w.WriteTrait("a", profile.Trait{Value: 1.0}) }, `trait "a" after "b"`,
			func(w *export.Writer) error { return w.WriteTrait("c", profile.Trait{Value: 2.0}) }},
		{"trait twice", func(w *export.Writer) error { return w.WriteTrait("b", profile.Trait{Value: 1.0}) },
			func(w *export.Writer) error { return w.WriteTrait("b", profile.Trait{Value: 2.0}) }, `trait "b" appears twice`, nil},
		{"audiences out of order", func(w *export.Writer) error { return w.WriteAudience("vip") },
			func(w *export.Writer) error { return w.WriteAudience("churned") }, `audience "churned" after "vip"`, nil},
		{"request id twice", func(w *export.Writer) error { return w.WriteRequest(export.Request{ID: "r1"}) },
			func(w *export.Writer) error { return w.WriteRequest(export.Request{ID: "r1"}) }, `request id "r1" appears twice`, nil},
		{"outcome kind", nil, func(w *export.Writer) error {
			return w.WriteRequest(export.Request{ID: "r1", Outcomes: []export.Outcome{{Kind: "other", Name: "crm"}}})
		}, `kind "other"`, func(w *export.Writer) error { return w.WriteRequest(export.Request{ID: "r1"}) }},
		{"NaN property", func(w *export.Writer) error { return w.WriteEvent(ev) },
			func(w *export.Writer) error {
				return w.WriteEvent(profile.Event{MessageID: "m2", Properties: map[string]any{"x": []any{math.NaN()}}})
			}, `events[1]: profile: invalid properties["x"][0]: NaN and the infinities are not JSON numbers`,
			func(w *export.Writer) error { return w.WriteEvent(ev) }},
		{"trait value not JSON", nil,
			func(w *export.Writer) error { return w.WriteTrait("f", profile.Trait{Value: func() {}}) }, `traits["f"]`,
			func(w *export.Writer) error { return w.WriteTrait("f", profile.Trait{Value: "ok"}) }},
		{"value nested too deep", nil,
			func(w *export.Writer) error {
				return w.WriteTrait("deep", profile.Trait{Value: nest(profile.MaxDepth + 1)})
			},
			"nested more than", nil},
		{"invalid UTF-8 in a value", nil,
			func(w *export.Writer) error { return w.WriteTrait("s", profile.Trait{Value: "a\xffb"}) }, "UTF-8", nil},
		{"time beyond RFC 3339", nil, func(w *export.Writer) error {
			return w.WriteEvent(profile.Event{MessageID: "m9", Timestamp: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})
		}, "timestamp: year 10000", func(w *export.Writer) error { return w.WriteEvent(ev) }},
		{"request time beyond RFC 3339", nil, func(w *export.Writer) error {
			return w.WriteRequest(export.Request{ID: "r1", Due: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)})
		}, "due: year -1", nil},
		{"trait key not UTF-8", nil,
			func(w *export.Writer) error { return w.WriteTrait("a\xff", profile.Trait{Value: 1.0}) }, "not valid UTF-8", nil},
		{"recipient after consent change", func(w *export.Writer) error { return w.WriteConsentChange(change) },
			func(w *export.Writer) error { return w.WriteRecipient(export.Recipient{Name: "crm"}) }, "recipient after consent_change",
			func(w *export.Writer) error { return w.WriteConsentChange(change) }},
		{"consent change before header", nil, func(w *export.Writer) error { return w.WriteConsentChange(change) },
			"consent_change before the header", func(w *export.Writer) error { return w.WriteHeader(header) }},
		{"preference key not UTF-8", func(w *export.Writer) error { return w.WriteConsentChange(change) },
			func(w *export.Writer) error {
				return w.WriteConsentChange(profile.ConsentChange{MessageID: "c2", Preferences: map[string]bool{"Ads": true, "A\xffs": false}})
			}, `consent_history[1]: preferences: key "A\xffs" is not valid UTF-8`,
			func(w *export.Writer) error { return w.WriteConsentChange(change) }},
		{"consent change time beyond RFC 3339", nil, func(w *export.Writer) error {
			return w.WriteConsentChange(profile.ConsentChange{MessageID: "c9", ReceivedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Preferences: map[string]bool{}})
		}, "consent_history[0]: received_at: year 10000", func(w *export.Writer) error { return w.WriteConsentChange(change) }},
		{"write after close", func(w *export.Writer) error { return w.Close() },
			func(w *export.Writer) error { return w.WriteRecipient(export.Recipient{Name: "crm"}) }, "closed", nil},
	} {
		for _, f := range formats {
			t.Run(tc.name+"/"+f.String(), func(t *testing.T) {
				var got, want bytes.Buffer
				run := func(dst io.Writer, withBad bool) error {
					w, err := export.NewWriter(dst, f)
					if err != nil {
						return err
					}
					start := strings.HasSuffix(tc.name, "before header")
					if !start {
						if err := w.WriteHeader(header); err != nil {
							return fmt.Errorf("header: %w", err)
						}
					}
					if tc.before != nil {
						if err := tc.before(w); err != nil {
							return fmt.Errorf("before: %w", err)
						}
					}
					if withBad {
						err := tc.bad(w)
						if !errors.Is(err, export.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
							t.Errorf("bad call: err = %v; want ErrInvalid with %q", err, tc.want)
						}
					}
					if tc.after != nil {
						if err := tc.after(w); err != nil {
							return fmt.Errorf("after: %w", err)
						}
					}
					return w.Close()
				}
				if err := run(&got, true); err != nil {
					t.Fatalf("with the bad call: %v", err)
				}
				if err := run(&want, false); err != nil {
					t.Fatalf("without the bad call: %v", err)
				}
				if !bytes.Equal(got.Bytes(), want.Bytes()) {
					t.Errorf("the refused call changed the output:\n got %q\nwant %q", got.Bytes(), want.Bytes())
				}
			})
		}
	}
}

func nest(depth int) any {
	var v any = "leaf"
	for range depth {
		v = []any{v}
	}
	return v
}

// TestWriterNormalizes: a value not in canonical form (an int, a time) is
// normalised as profile.NormalizeValue does, not refused.
func TestWriterNormalizes(t *testing.T) {
	p := emptyPackage()
	p.Profile.Traits = map[string]profile.Trait{"n": {Value: map[string]int{"a": 1}}, "t": {Value: t0}}
	for _, f := range formats {
		got := read(t, f, write(t, f, p))
		want := map[string]any{"n": map[string]any{"a": 1.0}, "t": t0.Format(time.RFC3339Nano)}
		for k, v := range want {
			if fmt.Sprint(got.Profile.Traits[k].Value) != fmt.Sprint(v) {
				t.Errorf("%v: trait %s = %#v; want %#v", f, k, got.Profile.Traits[k].Value, v)
			}
		}
	}
}

func TestWriteRefusesMetadataRecipients(t *testing.T) {
	p := emptyPackage()
	p.Profile.Metadata.Recipients = []profile.Recipient{{Name: "crm"}}
	for _, f := range formats {
		err := export.Write(io.Discard, f, p)
		if !errors.Is(err, export.ErrInvalid) || !strings.Contains(err.Error(), "Recipients") {
			t.Errorf("%v: Write = %v; want ErrInvalid naming Recipients", f, err)
		}
	}
	if err := export.Write(io.Discard, export.JSON, nil); !errors.Is(err, export.ErrInvalid) {
		t.Errorf("Write(nil) = %v", err)
	}
	p = emptyPackage()
	p.Schema = "gdprkit.export/v0"
	if err := export.Write(io.Discard, export.NDJSON, p); !errors.Is(err, export.ErrInvalid) || !strings.Contains(err.Error(), "v0") {
		t.Errorf("Write with schema v0 = %v; want ErrInvalid naming it", err)
	}
}

var errBoom = errors.New("boom")

// failingWriter accepts n bytes, then fails.
type failingWriter struct{ n int }

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		n := f.n
		f.n = 0
		return n, errBoom
	}
	f.n -= len(p)
	return len(p), nil
}

// TestWriterFails: an error of the io.Writer half-way is returned, matchable,
// and every later call returns it too.
func TestWriterFails(t *testing.T) {
	events := manyEvents(20000)
	for _, f := range formats {
		t.Run(f.String(), func(t *testing.T) {
			w, err := export.NewWriter(&failingWriter{n: 100 << 10}, f)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.WriteHeader(header); err != nil {
				t.Fatal(err)
			}
			var first error
			i := 0
			for ; i < len(events) && first == nil; i++ {
				first = w.WriteEvent(events[i])
			}
			if first == nil {
				first = w.Close()
			} else if i == len(events) {
				t.Errorf("the error came only with the last event: the writer does not write as it goes")
			}
			if !errors.Is(first, errBoom) {
				t.Fatalf("got %v; want the io.Writer's error", first)
			}
			if errors.Is(first, export.ErrInvalid) {
				t.Errorf("an io.Writer error matches ErrInvalid: %v", first)
			}
			for name, call := range map[string]func() error{
				"WriteEvent":     func() error { return w.WriteEvent(events[0]) },
				"WriteAudience":  func() error { return w.WriteAudience("z") },
				"WriteRecipient": func() error { return w.WriteRecipient(export.Recipient{Name: "x"}) },
				"WriteConsentChange": func() error {
					return w.WriteConsentChange(profile.ConsentChange{MessageID: "c1"})
				},
				"WriteAccount": func() error { return w.WriteAccount(profile.AccountLink{GroupID: "g1"}) },
				"Close":        w.Close,
			} {
				if err := call(); !errors.Is(err, errBoom) {
					t.Errorf("%s after the failure = %v; want the same error", name, err)
				}
			}
		})
	}
}

// countingWriter counts what it is given.
type countingWriter struct{ n int }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += len(p); return len(p), nil }

// TestWriterStreams: output reaches the io.Writer while events are written,
// not at Close, and what is held back stays under a bound.
func TestWriterStreams(t *testing.T) {
	events := manyEvents(30000)
	for _, f := range formats {
		t.Run(f.String(), func(t *testing.T) {
			var c countingWriter
			w, err := export.NewWriter(&c, f)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.WriteHeader(header); err != nil {
				t.Fatal(err)
			}
			var seen []int
			for i, ev := range events {
				if err := w.WriteEvent(ev); err != nil {
					t.Fatal(err)
				}
				if i%10000 == 9999 {
					seen = append(seen, c.n)
				}
			}
			before := c.n
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if seen[0] == 0 || seen[1] <= seen[0] || seen[2] <= seen[1] {
				t.Errorf("bytes written after 10000, 20000, 30000 events: %v; want growing", seen)
			}
			// What Close still has to write is the last buffer (and for CSV the
			// compressor's window and the small files after events.csv).
			if held := c.n - before; held > 256<<10 {
				t.Errorf("Close wrote %d of %d bytes: the writer held too much back", held, c.n)
			}
		})
	}
}

// TestWriterAllocs: once warm, writing an event allocates nothing in the
// streaming formats, so memory cannot grow with the number of events.
func TestWriterAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	events := manyEvents(100)
	for _, f := range formats {
		w, err := export.NewWriter(io.Discard, f)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteHeader(header); err != nil {
			t.Fatal(err)
		}
		i := 0
		allocs := testing.AllocsPerRun(1000, func() {
			if err := w.WriteEvent(events[i%len(events)]); err != nil {
				t.Fatal(err)
			}
			i++
		})
		if allocs > 0 {
			t.Errorf("%v: %v allocations per event; want 0", f, allocs)
		}
	}
}

// manyEvents returns n events like a product's: a handful of properties, one
// nested object and an array.
func manyEvents(n int) []profile.Event {
	names := []string{"Order Completed", "Page Viewed", "Product Added", "Signed In"}
	events := make([]profile.Event, n)
	for i := range events {
		at := t0.Add(time.Duration(i) * time.Second)
		events[i] = profile.Event{
			MessageID: fmt.Sprintf("msg_%08d", i),
			Name:      names[i%len(names)],
			Properties: map[string]any{
				"order_id": fmt.Sprintf("ord_%d", i),
				"total":    float64(i%1000) + 0.99,
				"currency": "EUR",
				"coupon":   nil,
				"gift":     i%2 == 0,
				"products": []any{
					map[string]any{"sku": "SKU-" + fmt.Sprint(i%97), "qty": 2.0, "price": 12.5},
				},
				"page": map[string]any{"path": "/checkout", "title": "Checkout – step 2"},
			},
			Timestamp:  at,
			ReceivedAt: at.Add(150 * time.Millisecond),
		}
	}
	return events
}
