package export_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/gdprkit/privacy/export"
	"github.com/gdprkit/privacy/profile"
)

// The benchmarks write 100,000 events, a heavy user's history, to io.Discard:
// each format's Writer next to a baseline of the standard library doing the
// plainest equivalent with the same []profile.Event. Compare a format with its
// baseline in the same run (ns/op, or the events/s metric).

const benchEvents = 100_000

var benchData = sync.OnceValue(func() []profile.Event { return manyEvents(benchEvents) })

// writeEvents writes a header and events in format f to w through a Writer.
func writeEvents(w io.Writer, f export.Format, events []profile.Event) error {
	ew, err := export.NewWriter(w, f)
	if err != nil {
		return err
	}
	if err := ew.WriteHeader(header); err != nil {
		return err
	}
	for _, ev := range events {
		if err := ew.WriteEvent(ev); err != nil {
			return err
		}
	}
	return ew.Close()
}

// writeEventsAs is the write of bench for the Writer of format f.
func writeEventsAs(f export.Format) func(io.Writer, []profile.Event) error {
	return func(w io.Writer, events []profile.Event) error { return writeEvents(w, f, events) }
}

// bench runs write with the benchmark's events b.N times, reporting the bytes
// one run writes and the events written per second.
func bench(b *testing.B, write func(w io.Writer, events []profile.Event) error) {
	events := benchData()
	run := func(w io.Writer) {
		if err := write(w, events); err != nil {
			b.Fatal(err)
		}
	}
	var c countingWriter
	run(&c)
	b.SetBytes(int64(c.n))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		run(io.Discard)
	}
	b.ReportMetric(float64(benchEvents)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkNDJSONEvents(b *testing.B) { bench(b, writeEventsAs(export.NDJSON)) }

// BenchmarkNDJSONEventsBaseline: encoding/json's Encoder, one event a line.
func BenchmarkNDJSONEventsBaseline(b *testing.B) {
	bench(b, func(w io.Writer, events []profile.Event) error {
		enc := json.NewEncoder(w)
		for _, ev := range events {
			if err := enc.Encode(ev); err != nil {
				return err
			}
		}
		return nil
	})
}

func BenchmarkJSONEvents(b *testing.B) { bench(b, writeEventsAs(export.JSON)) }

// BenchmarkJSONEventsBaseline: encoding/json's Encoder, the slice as one
// document (which encoding/json builds in memory before writing).
func BenchmarkJSONEventsBaseline(b *testing.B) {
	bench(b, func(w io.Writer, events []profile.Event) error {
		return json.NewEncoder(w).Encode(events)
	})
}

func BenchmarkCSVEvents(b *testing.B) { bench(b, writeEventsAs(export.CSV)) }

// BenchmarkCSVEventsBaseline: encoding/csv with encoding/json for the
// properties column: events.csv alone, neither zipped nor hashed.
func BenchmarkCSVEventsBaseline(b *testing.B) {
	bench(b, func(w io.Writer, events []profile.Event) error {
		cw := csv.NewWriter(w)
		row := make([]string, 5)
		for _, ev := range events {
			props, err := json.Marshal(ev.Properties)
			if err != nil {
				return err
			}
			row[0], row[1] = ev.MessageID, ev.Name
			row[2], row[3] = ev.Timestamp.Format(time.RFC3339Nano), ev.ReceivedAt.Format(time.RFC3339Nano)
			row[4] = string(props)
			if err := cw.Write(row); err != nil {
				return err
			}
		}
		cw.Flush()
		return cw.Error()
	})
}

// BenchmarkReadNDJSON reads back 10,000 events: Read is not on a hot path,
// but should not be pathological.
func BenchmarkReadNDJSON(b *testing.B) {
	p := emptyPackage()
	p.Events = benchData()[:10_000]
	data := write(b, export.NDJSON, p)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for range b.N {
		if _, err := export.Read(bytes.NewReader(data), export.NDJSON); err != nil {
			b.Fatal(err)
		}
	}
}
