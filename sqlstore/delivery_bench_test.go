package sqlstore_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/sqlstore"
)

// countingSink is an in-process destination that counts what it receives.
func countingSink(name string, got *atomic.Int64) *funcDest {
	return &funcDest{name: name, send: func(msgs []destination.Message) error {
		got.Add(int64(len(msgs)))
		return nil
	}}
}

// waitCount waits until got reaches want.
func waitCount(b *testing.B, got *atomic.Int64, want int64) {
	b.Helper()
	for deadline := time.Now().Add(time.Minute); got.Load() < want; time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			b.Fatalf("delivered %d of %d within a minute", got.Load(), want)
		}
	}
}

// BenchmarkCollectBatchDelivered collects batches of privacy.BatchSize track
// messages about known people into PostgreSQL through two Controllers on one
// database, in alternate blocks of deliveredBlock batches, in the same run:
// one without destinations (the baseline), one with an in-process
// destination, to which each batch is owed in the durable outbox, in the
// same transaction, and delivered while the block is collected, as on a
// running host. It reports the rate of each (x-bare: the collection's
// ratio), and the rate of the second counted until the destination has
// received the whole block (x-bare-delivered: collection and delivery end
// to end, on the same two cores). The next block starts once it has.
func BenchmarkCollectBatchDelivered(b *testing.B) {
	const deliveredBlock = 5
	s := newSite(b, sqlstore.Postgres)
	ctx := b.Context()
	bare := s.open(b).controller(b, nil)
	var got atomic.Int64
	owing := s.open(b).controller(b, nil, privacy.WithDestinations(countingSink("sink", &got)),
		privacy.WithDelivery(privacy.Delivery{Poll: 10 * time.Millisecond}))
	uids := seedKnown(b, bare, benchPeople)
	ts := time.Now()
	batch := func(tag string, n int) []privacy.Message {
		msgs := make([]privacy.Message, privacy.BatchSize)
		for j := range msgs {
			msgs[j] = privacy.Track{MessageID: fmt.Sprintf("%s-%d-%d", tag, n, j), UserID: uids[j%len(uids)], Event: "Product Viewed",
				Properties: map[string]any{"sku": "TENT-2P", "price": 249}, Timestamp: ts}
		}
		return msgs
	}
	// A warm-up block, analyzed while it waits: the statistics autovacuum
	// keeps on a queue it has seen loaded.
	warm := got.Load() + deliveredBlock*privacy.BatchSize
	for i := range deliveredBlock {
		must(b, owing.CollectBatch(ctx, batch("warm", i)))
	}
	must(b, execAll(ctx, s.admin, "ANALYZE "+s.table("outbox")))
	waitCount(b, &got, warm)
	var without, with, drain time.Duration
	n, rows := 0, 0
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		for i := range deliveredBlock {
			must(b, bare.CollectBatch(ctx, batch("bare", n+i)))
		}
		without += time.Since(start)

		want := got.Load() + deliveredBlock*privacy.BatchSize
		start = time.Now()
		for i := range deliveredBlock {
			must(b, owing.CollectBatch(ctx, batch("owed", n+i)))
		}
		with += time.Since(start)
		waitCount(b, &got, want)
		drain += time.Since(start)
		n += deliveredBlock
		rows += deliveredBlock * privacy.BatchSize
	}
	b.ReportMetric(float64(rows)/without.Seconds(), "bare-msgs/s")
	b.ReportMetric(float64(rows)/with.Seconds(), "owed-msgs/s")
	b.ReportMetric(float64(rows)/drain.Seconds(), "delivered-msgs/s")
	b.ReportMetric(without.Seconds()/with.Seconds(), "x-bare")
	b.ReportMetric(without.Seconds()/drain.Seconds(), "x-bare-delivered")
}

// BenchmarkOutboxDelivery measures delivery from the PostgreSQL outbox to an
// in-process destination, through a Controller's deliverer: each iteration
// enqueues outboxBenchItems track messages about outboxBenchPeople people
// in one transaction (untimed), then times their delivery, every item claimed with a lease,
// sent in batches and settled. Beside it in the same iteration, as its
// baseline, the least a queue on PostgreSQL does for as many rows: a loop of
// SELECT ... ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED and a DELETE of
// those rows, one transaction each, until the table is empty.
func BenchmarkOutboxDelivery(b *testing.B) {
	const outboxBenchItems, outboxBenchPeople = 10_000, 1_000
	s := newSite(b, sqlstore.Postgres)
	ctx := b.Context()
	p := s.open(b)
	var got atomic.Int64
	// The Controller's deliverer drains what is enqueued below.
	p.controller(b, nil, privacy.WithDestinations(countingSink("sink", &got)),
		privacy.WithDelivery(privacy.Delivery{Poll: 5 * time.Millisecond}))
	ob := p.data.Outbox()
	queue := s.table("bench_queue")
	must(b, execAll(ctx, p.db, "CREATE TABLE "+queue+" (id bigserial PRIMARY KEY, payload text NOT NULL)"))
	ts := time.Now()
	var deliver, bare time.Duration
	n, total := 0, 0
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		items := make([]outbox.Item, outboxBenchItems)
		for i := range items {
			pid := identity.ProfileID(fmt.Sprintf("use_bench%05d", i%outboxBenchPeople))
			items[i] = outbox.Item{Destination: "sink", Profile: pid, Enqueued: ts, Message: &destination.Message{
				MessageID: fmt.Sprintf("m-%d-%d", n, i), Type: destination.TypeTrack, Event: "Product Viewed", ProfileID: pid,
				IDs: []identity.ID{{Type: identity.TypeUserID, Value: string(pid)}}, Properties: map[string]any{"sku": "TENT-2P", "price": 249}, Timestamp: ts}}
		}
		must(b, execAll(ctx, p.db, fmt.Sprintf(`INSERT INTO %s (payload) SELECT '{"type":"track","event":"Product Viewed","properties":{"sku":"TENT-2P","price":249}}'
			FROM generate_series(1, %d)`, queue, outboxBenchItems)))
		// One transaction: the deliverer sees the items when the timer starts.
		want := got.Load() + outboxBenchItems
		tx, err := ob.Begin(ctx)
		must(b, err)
		must(b, tx.Enqueue(ctx, items))
		must(b, tx.Commit(ctx))
		if n == 0 {
			// The statistics autovacuum keeps on a queue it has seen loaded.
			must(b, execAll(ctx, p.db, "ANALYZE "+s.table("outbox")))
		}
		b.StartTimer()

		start := time.Now()
		waitCount(b, &got, want)
		deliver += time.Since(start)

		start = time.Now()
		bareQueueLoop(b, p, queue)
		bare += time.Since(start)
		n++
		total += outboxBenchItems
	}
	b.ReportMetric(float64(total)/deliver.Seconds(), "msgs/s")
	b.ReportMetric(float64(total)/bare.Seconds(), "bare-rows/s")
	b.ReportMetric(bare.Seconds()/deliver.Seconds(), "x-bare")
}

// bareQueueLoop empties the queue table 100 rows a transaction: SELECT ...
// FOR UPDATE SKIP LOCKED, then DELETE them.
func bareQueueLoop(b *testing.B, p *proc, queue string) {
	ctx := b.Context()
	for {
		tx, err := p.db.BeginTx(ctx, nil)
		must(b, err)
		rows, err := tx.QueryContext(ctx, "SELECT id, payload FROM "+queue+" ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED")
		must(b, err)
		var ids []int64
		for rows.Next() {
			var id int64
			var payload string
			must(b, rows.Scan(&id, &payload))
			ids = append(ids, id)
		}
		must(b, rows.Err())
		rows.Close()
		if len(ids) == 0 {
			must(b, tx.Rollback())
			return
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM "+queue+" WHERE id = ANY($1)", ids)
		must(b, err)
		must(b, tx.Commit())
	}
}
