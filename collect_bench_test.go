package privacy

import (
	"context"
	"maps"
	"strconv"
	"testing"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/internal/benchdata"
	"github.com/gdprkit/privacy/profile"
)

// benchPeople is how many known people the Collect benchmarks spread messages
// over, so no single profile's event slice dominates: 10k, issue 19's.
const benchPeople = 10_000

var benchProps = map[string]any{"sku": "TENT-2P", "price": 249.0, "currency": "EUR"}

func benchMessageID(buf []byte, i int) string {
	return string(strconv.AppendInt(append(buf[:0], 'm'), int64(i), 10))
}

// BenchmarkCollectTrackKnown is Collect of a track message (user id and anonymous
// id, three properties) for a person already known, all in memory.
func BenchmarkCollectTrackKnown(b *testing.B) { benchCollectTrackKnown(b, nil) }

// BenchmarkCollectTrackKnown1M is BenchmarkCollectTrackKnown among 1M known
// people: with as many messages, a profile gets one where it got a hundred,
// and each message reaches memory no other touched lately (issue 19: at
// most 1.2x the cost among 10k).
func BenchmarkCollectTrackKnown1M(b *testing.B) { benchCollectTrackKnownAmong(b, 1_000_000, nil) }

// BenchmarkCollectTrackKnownContext is BenchmarkCollectTrackKnown with a
// typical context of about 1 KB (benchContext), as analytics.js sends.
func BenchmarkCollectTrackKnownContext(b *testing.B) { benchCollectTrackKnown(b, benchContext) }

// benchContext is a typical browser context: about 1 KB of JSON.
var benchContext = benchdata.BrowserContext()

// BenchmarkCollectTrackKnownSealed is BenchmarkCollectTrackKnown with the
// profile store sealing in memory: the cost of sealing on the collection
// path, with no database to hide it.
func BenchmarkCollectTrackKnownSealed(b *testing.B) {
	benchCollectTrackKnown(b, nil, WithProfiles(profile.NewSealedMemStore()))
}

func benchCollectTrackKnown(b *testing.B, msgContext map[string]any, opts ...Option) {
	benchCollectTrackKnownAmong(b, benchPeople, msgContext, opts...)
}

func benchCollectTrackKnownAmong(b *testing.B, people int, msgContext map[string]any, opts ...Option) {
	ctx := context.Background()
	c, err := New(opts...)
	if err != nil {
		b.Fatal(err)
	}
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	users := make([]string, people)
	anons := make([]string, people)
	for p := range people {
		users[p], anons[p] = "u"+strconv.Itoa(p), "a"+strconv.Itoa(p)
		if err := c.Collect(ctx, Identify{UserID: users[p], AnonymousID: anons[p], Traits: map[string]any{"plan": "pro"}, Timestamp: ts}); err != nil {
			b.Fatal(err)
		}
	}
	var buf []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		p := i % people
		err := c.Collect(ctx, Track{MessageID: benchMessageID(buf, i), UserID: users[p], AnonymousID: anons[p],
			Event: "Product Viewed", Properties: benchProps, Context: msgContext, Timestamp: ts.Add(time.Duration(i))})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// baselineProfile is the least a profile can be: what the baseline writes.
type baselineProfile struct {
	meta   profile.Metadata
	events []profile.Event
	seen   map[string]struct{}
}

// BenchmarkCollectTrackBaseline does only the unavoidable work of the same
// message in plain Go maps, the yardstick for BenchmarkCollectTrackKnown: look up
// both identifiers, check and record the message id (de-duplication), copy the
// properties (the caller may change its map afterwards), append the event and
// update the metadata. No validation, locking or transactions.
func BenchmarkCollectTrackBaseline(b *testing.B) {
	ids := map[identity.ID]identity.ProfileID{}
	profiles := map[identity.ProfileID]*baselineProfile{}
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	users := make([]string, benchPeople)
	anons := make([]string, benchPeople)
	for p := range benchPeople {
		users[p], anons[p] = "u"+strconv.Itoa(p), "a"+strconv.Itoa(p)
		pid := identity.NewProfileID(ts)
		ids[identity.ID{Type: identity.TypeUserID, Value: users[p]}] = pid
		ids[identity.ID{Type: identity.TypeAnonymousID, Value: anons[p]}] = pid
		profiles[pid] = &baselineProfile{seen: map[string]struct{}{}}
	}
	var buf []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		p := i % benchPeople
		m := Track{MessageID: benchMessageID(buf, i), UserID: users[p], AnonymousID: anons[p],
			Event: "Product Viewed", Properties: benchProps, Timestamp: ts.Add(time.Duration(i))}
		pid := ids[identity.ID{Type: identity.TypeUserID, Value: m.UserID}]
		if other := ids[identity.ID{Type: identity.TypeAnonymousID, Value: m.AnonymousID}]; other != pid {
			b.Fatal("identifiers disagree")
		}
		bp := profiles[pid]
		if _, dup := bp.seen[m.MessageID]; dup {
			continue
		}
		bp.seen[m.MessageID] = struct{}{}
		bp.events = append(bp.events, profile.Event{MessageID: m.MessageID, Name: m.Event,
			Properties: maps.Clone(m.Properties), Timestamp: m.Timestamp})
		bp.meta.Version++
		bp.meta.LastMessageID = m.MessageID
		bp.meta.UpdatedAt = m.Timestamp
	}
}

// BenchmarkCollectIdentifyNew is Collect of an identify for a person not
// seen before (user id, anonymous id, email and two traits), all in
// memory: loading people, identify-heavy traffic. Run it with as many
// iterations as people to load (issue 19: 1M, -benchtime 1000000x).
func BenchmarkCollectIdentifyNew(b *testing.B) {
	ctx := context.Background()
	c, err := New()
	if err != nil {
		b.Fatal(err)
	}
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	users, anons, emails := newPeople(b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		err := c.Collect(ctx, Identify{MessageID: benchMessageID(nil, i), UserID: users[i], AnonymousID: anons[i],
			Traits: map[string]any{"email": emails[i], "plan": "pro", "age": 41.0}, Timestamp: ts})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// newPeople returns n people's user ids, anonymous ids and emails.
func newPeople(n int) (users, anons, emails []string) {
	users, anons, emails = make([]string, n), make([]string, n), make([]string, n)
	for i := range n {
		id := strconv.Itoa(i)
		users[i], anons[i], emails[i] = "u"+id, "a"+id, "p"+id+"@example.com"
	}
	return users, anons, emails
}

// BenchmarkCollectIdentifyNewBaseline does only the unavoidable work of the
// same messages in plain Go maps, the yardstick for
// BenchmarkCollectIdentifyNew: look up the three identifiers (none found),
// make a profile id, link the three to it, copy the traits, record the
// message id and the metadata.
func BenchmarkCollectIdentifyNewBaseline(b *testing.B) {
	type person struct {
		meta   profile.Metadata
		traits map[string]profile.Trait
		seen   map[string]struct{}
	}
	ids := map[identity.ID]identity.ProfileID{}
	profiles := map[identity.ProfileID]*person{}
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	users, anons, emails := newPeople(b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		m := Identify{MessageID: benchMessageID(nil, i), UserID: users[i], AnonymousID: anons[i],
			Traits: map[string]any{"email": emails[i], "plan": "pro", "age": 41.0}, Timestamp: ts}
		keys := [3]identity.ID{{Type: identity.TypeUserID, Value: m.UserID}, {Type: identity.TypeAnonymousID, Value: m.AnonymousID},
			{Type: identity.TypeEmail, Value: m.Traits["email"].(string)}}
		for _, k := range keys {
			if _, ok := ids[k]; ok {
				b.Fatal("a new person is known")
			}
		}
		pid := identity.NewProfileID(ts)
		for _, k := range keys {
			ids[k] = pid
		}
		p := &person{traits: make(map[string]profile.Trait, len(m.Traits)), seen: map[string]struct{}{m.MessageID: {}}}
		for k, v := range m.Traits {
			p.traits[k] = profile.Trait{Value: v, UpdatedAt: ts}
		}
		p.meta = profile.Metadata{CreatedAt: ts, UpdatedAt: ts, Version: 1, FirstMessageID: m.MessageID, LastMessageID: m.MessageID, FirstSeen: ts, LastSeen: ts}
		profiles[pid] = p
	}
}

// BenchmarkCollectBatchInMemory collects, per iteration, one batch of
// BatchSize track messages about known people with CollectBatch on one
// in-memory Controller, and the same messages one Collect at a time on
// another: the ratio says what batching saves when nothing is a round trip.
func BenchmarkCollectBatchInMemory(b *testing.B) {
	ctx := context.Background()
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	seeded := func() *Controller {
		c, err := New()
		if err != nil {
			b.Fatal(err)
		}
		for p := range benchPeople {
			if err := c.Collect(ctx, Identify{UserID: "u" + strconv.Itoa(p), AnonymousID: "a" + strconv.Itoa(p), Timestamp: ts}); err != nil {
				b.Fatal(err)
			}
		}
		return c
	}
	batched, single := seeded(), seeded()
	msgs := make([]Message, BatchSize)
	var buf []byte
	var inBatch, oneByOne time.Duration
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		for j := range msgs {
			p := (n*BatchSize + j) % benchPeople
			msgs[j] = Track{MessageID: benchMessageID(buf, n*BatchSize+j), UserID: "u" + strconv.Itoa(p), AnonymousID: "a" + strconv.Itoa(p),
				Event: "Product Viewed", Properties: benchProps, Timestamp: ts}
		}
		// Alternate which goes first: the second runs among the first's garbage.
		runBatch := func() {
			start := time.Now()
			if err := batched.CollectBatch(ctx, msgs); err != nil {
				b.Fatal(err)
			}
			inBatch += time.Since(start)
		}
		runSingle := func() {
			start := time.Now()
			for _, m := range msgs {
				if err := single.Collect(ctx, m); err != nil {
					b.Fatal(err)
				}
			}
			oneByOne += time.Since(start)
		}
		if n%2 == 0 {
			runBatch()
			runSingle()
		} else {
			runSingle()
			runBatch()
		}
		n++
	}
	b.ReportMetric(float64(n*BatchSize)/inBatch.Seconds(), "batch-msgs/s")
	b.ReportMetric(float64(n*BatchSize)/oneByOne.Seconds(), "single-msgs/s")
	b.ReportMetric(oneByOne.Seconds()/inBatch.Seconds(), "x-single")
}

// TestCollectTrackKnownAllocations holds Collect of a known person's track
// to issue 19's bound of six allocations a message, of which the caller
// makes one (its message id, as BenchmarkCollectTrackKnown does), with room
// to spare: Collect's own are the properties' copy (two), the transaction,
// and now and then the profile's events growing (AllocsPerRun rounds the
// mean down: three). The event handed to the store is pooled. A buffer
// moved to the heap again (the identifiers, a lookup's answers, the event,
// an inserted event) fails it.
func TestCollectTrackKnownAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector (sync.Pool drops items on purpose)")
	}
	ctx := t.Context()
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const people, messages = 100, 3000
	users, anons := make([]string, people), make([]string, people)
	for p := range people {
		users[p], anons[p] = "u"+strconv.Itoa(p), "a"+strconv.Itoa(p)
		if err := c.Collect(ctx, Identify{UserID: users[p], AnonymousID: anons[p], Traits: map[string]any{"plan": "pro"}, Timestamp: ts}); err != nil {
			t.Fatal(err)
		}
	}
	ids := make([]string, messages)
	for i := range ids {
		ids[i] = "m" + strconv.Itoa(i)
	}
	i := 0
	collect := func() {
		p := i % people
		err := c.Collect(ctx, Track{MessageID: ids[i], UserID: users[p], AnonymousID: anons[p],
			Event: "Product Viewed", Properties: benchProps, Timestamp: ts.Add(time.Duration(i))})
		if err != nil {
			t.Fatal(err)
		}
		i++
	}
	for range messages - 1000 { // past the events' first growths
		collect()
	}
	if n := testing.AllocsPerRun(999, collect); n > 3 {
		t.Errorf("Collect of a known person's track: %.1f allocations a message, more than 3 (and the caller's message id)", n)
	}
}
