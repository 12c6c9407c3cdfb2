package sqlstore_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/sqlstore"
)

// BenchmarkCollectBatchSealed collects batches of privacy.BatchSize track
// messages about known people into PostgreSQL through two Controllers on one
// database, in alternate blocks of sealedBlock batches, in the same run: one
// WithoutEncryption (the baseline), one sealing every event's properties
// with the person's data key (the default). Each has people of its own. It
// reports the rate of each and their ratio (x-clear).
func BenchmarkCollectBatchSealed(b *testing.B) {
	benchSealed(b, func(c *privacy.Controller, uids []string, tag string, n int) []privacy.Message {
		msgs := make([]privacy.Message, privacy.BatchSize)
		for j := range msgs {
			msgs[j] = privacy.Track{MessageID: fmt.Sprintf("%s-%d-%d", tag, n, j), UserID: uids[j%len(uids)], Event: "Product Viewed",
				Properties: map[string]any{"sku": "TENT-2P", "price": 249}, Timestamp: time.Now()}
		}
		return msgs
	})
}

// BenchmarkCollectBatchSealedNewPeople is BenchmarkCollectBatchSealed with
// identify messages of new people, two traits each: every person's data key
// is made, wrapped and stored in the batch's transaction.
func BenchmarkCollectBatchSealedNewPeople(b *testing.B) {
	benchSealed(b, func(c *privacy.Controller, _ []string, tag string, n int) []privacy.Message {
		msgs := make([]privacy.Message, privacy.BatchSize)
		for j := range msgs {
			uid := fmt.Sprintf("%s-%d-%d", tag, n, j)
			msgs[j] = privacy.Identify{MessageID: uid, UserID: uid,
				Traits: map[string]any{"plan": "pro", "color": "teal"}, Timestamp: time.Now()}
		}
		return msgs
	})
}

// benchSealed runs the alternate blocks of the two benchmarks above, with
// batch making each batch.
func benchSealed(b *testing.B, batch func(c *privacy.Controller, uids []string, tag string, n int) []privacy.Message) {
	const sealedBlock = 5
	s := newSite(b, sqlstore.Postgres)
	ctx := b.Context()
	clear := s.open(b).controller(b, nil, privacy.WithoutEncryption())
	sealed := s.open(b).controller(b, nil)
	clearIDs, sealedIDs := seedPeople(b, clear, "clear", benchPeople), seedPeople(b, sealed, "sealed", benchPeople)
	var without, with time.Duration
	n, msgs := 0, 0
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		for i := range sealedBlock {
			must(b, clear.CollectBatch(ctx, batch(clear, clearIDs, "clear", n+i)))
		}
		without += time.Since(start)
		start = time.Now()
		for i := range sealedBlock {
			must(b, sealed.CollectBatch(ctx, batch(sealed, sealedIDs, "sealed", n+i)))
		}
		with += time.Since(start)
		n += sealedBlock
		msgs += sealedBlock * privacy.BatchSize
	}
	b.ReportMetric(float64(msgs)/without.Seconds(), "clear-msgs/s")
	b.ReportMetric(float64(msgs)/with.Seconds(), "sealed-msgs/s")
	b.ReportMetric(without.Seconds()/with.Seconds(), "x-clear")
}

// seedPeople collects an identify for n people named after tag, and returns
// their user ids.
func seedPeople(b *testing.B, c *privacy.Controller, tag string, n int) []string {
	b.Helper()
	var uids []string
	for i := range n {
		uid := fmt.Sprintf("%s-user-%04d", tag, i)
		must(b, c.Collect(b.Context(), privacy.Identify{MessageID: "seed-" + uid, UserID: uid,
			Traits: map[string]any{"plan": "pro"}, Timestamp: time.Now()}))
		uids = append(uids, uid)
	}
	return uids
}

// BenchmarkErasureUnreadable erases a person whose events are sealed, with
// 1,000 and with 100,000 of them, on PostgreSQL, and reports how long from
// the call until they are unreadable everywhere (ms/unreadable: the commit
// that destroys their data key, with their profile, links and clear rows;
// the receipt's backends say when it returned), how long the purge of their
// sealed rows took after it (ms/purge) and at what rate (purged/s), and the
// whole Erase (ns/op). Each iteration collects the person first, untimed,
// through CollectBatch.
func BenchmarkErasureUnreadable(b *testing.B) {
	for _, events := range []int{1_000, 100_000} {
		b.Run(fmt.Sprint("events=", events), func(b *testing.B) {
			s := newSite(b, sqlstore.Postgres)
			ctx := b.Context()
			c := s.open(b).controller(b, nil)
			var unreadable, purge time.Duration
			n := 0
			for b.Loop() {
				b.StopTimer()
				n++
				user := fmt.Sprint("heavy-", n)
				must(b, c.Collect(ctx, privacy.Identify{MessageID: user, UserID: user, Traits: map[string]any{"plan": "pro"}, Timestamp: time.Now()}))
				for i := 0; i < events; i += privacy.BatchSize {
					msgs := make([]privacy.Message, min(privacy.BatchSize, events-i))
					for j := range msgs {
						msgs[j] = privacy.Track{MessageID: fmt.Sprintf("%s-%d", user, i+j), UserID: user, Event: "Viewed",
							Properties: map[string]any{"i": i + j}, Timestamp: time.Now()}
					}
					must(b, c.CollectBatch(ctx, msgs))
				}
				b.StartTimer()
				start := time.Now()
				r, err := c.Erase(ctx, uid(user))
				if err != nil || r.Status != privacy.Finished {
					b.Fatalf("Erase = %+v, %v", r, err)
				}
				var committed, purged time.Time
				for _, o := range r.Backends {
					if o.Name == purgeBackend {
						purged = o.Finished
					} else if o.Finished.After(committed) {
						committed = o.Finished
					}
				}
				if committed.IsZero() || purged.IsZero() {
					b.Fatalf("receipt backends %+v: want the commits and the purge", r.Backends)
				}
				unreadable += committed.Sub(start)
				purge += purged.Sub(committed)
			}
			b.ReportMetric(float64(unreadable.Microseconds())/1e3/float64(n), "ms/unreadable")
			b.ReportMetric(float64(purge.Microseconds())/1e3/float64(n), "ms/purge")
			b.ReportMetric(float64(events*n)/purge.Seconds(), "purged/s")
		})
	}
}
