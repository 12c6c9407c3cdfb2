package privacy

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/suppression"
)

// fiftyAudiences is a realistic mix: trait conditions, event conditions with
// where, windows and counts, and combinations referring to other audiences.
func fiftyAudiences() []audience.Definition {
	var defs []audience.Definition
	for i := range 20 {
		defs = append(defs, audience.Definition{Key: fmt.Sprint("t", i), Query: fmt.Sprintf(`trait('score') >= %d and trait('plan') != 'free'`, i*5)})
	}
	events := []string{"Product Viewed", "Order Completed", "Cart Viewed", "Signed In"}
	for i := range 20 {
		defs = append(defs, audience.Definition{Key: fmt.Sprint("e", i), Query: fmt.Sprintf(
			`event('%s').where(property('price') >= %d).within(%d days).count() >= %d`, events[i%4], i*10, 7+i, 1+i%3)})
	}
	for i := range 10 {
		defs = append(defs, audience.Definition{Key: fmt.Sprint("c", i), Query: fmt.Sprintf(
			`(audience('t%d') and audience('e%d')) or not trait('country') = 'FR'`, i, i)})
	}
	return defs
}

// benchCollectWithAudiences collects track messages for known people among
// `people` profiles, with or without the fifty audiences defined. The difference
// between the two is what audience evaluation costs a collected message.
func benchCollectWithAudiences(b *testing.B, people int, withAudiences bool) {
	ctx := context.Background()
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := populations.get(fmt.Sprint(people, withAudiences), func() *Controller {
		return populate(b, people, withAudiences, ts)
	})
	const active = 1000 // messages go to these people, spread over the population
	users, anons := make([]string, active), make([]string, active)
	for i := range active {
		p := i * (people / active)
		users[i], anons[i] = "u"+strconv.Itoa(p), "a"+strconv.Itoa(p)
	}
	runtime.GC() // the population's garbage is not the measured messages' cost
	var buf []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		p := i % active
		n := populations.next()
		err := c.Collect(ctx, Track{MessageID: benchMessageID(buf, n), UserID: users[p], AnonymousID: anons[p],
			Event: "Order Completed", Properties: benchProps, Timestamp: ts.Add(time.Duration(n))})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// populations caches the benchmark populations across b.N rounds: building a
// million profiles once per round would take longer than measuring.
var populations = &populationCache{m: map[string]*Controller{}, lists: map[string]*suppression.MemList{}}

type populationCache struct {
	mu    sync.Mutex
	m     map[string]*Controller
	lists map[string]*suppression.MemList
	seq   atomic.Int64 // message ids stay unique across rounds
}

func (p *populationCache) getList(key string, build func() *suppression.MemList) *suppression.MemList {
	p.mu.Lock()
	defer p.mu.Unlock()
	return cached(p.lists, key, build)
}

func (p *populationCache) get(key string, build func() *Controller) *Controller {
	p.mu.Lock()
	defer p.mu.Unlock()
	return cached(p.m, key, build)
}

func cached[T any](m map[string]T, key string, build func() T) T {
	if v, ok := m[key]; ok {
		return v
	}
	v := build()
	m[key] = v
	return v
}

func (p *populationCache) next() int { return int(p.seq.Add(1)) }

func populate(b *testing.B, people int, withAudiences bool, ts time.Time) *Controller {
	ctx := context.Background()
	c, err := New(WithClock(func() time.Time { return ts }))
	if err != nil {
		b.Fatal(err)
	}
	if withAudiences { // defined first, so the population is evaluated as it arrives
		for _, d := range fiftyAudiences() {
			if err := c.DefineAudience(ctx, d); err != nil {
				b.Fatal(err)
			}
		}
	}
	for p := range people {
		err := c.Collect(ctx, Identify{MessageID: "i" + strconv.Itoa(p), UserID: "u" + strconv.Itoa(p), AnonymousID: "a" + strconv.Itoa(p),
			Traits: map[string]any{"plan": "pro", "score": float64(p % 100), "country": "FR"}, Timestamp: ts})
		if err != nil {
			b.Fatal(err)
		}
	}
	return c
}

func BenchmarkCollectNoAudiences10k(b *testing.B) { benchCollectWithAudiences(b, 10_000, false) }
func BenchmarkCollect50Audiences10k(b *testing.B) { benchCollectWithAudiences(b, 10_000, true) }
func BenchmarkCollectNoAudiences1M(b *testing.B)  { benchCollectWithAudiences(b, 1_000_000, false) }
func BenchmarkCollect50Audiences1M(b *testing.B)  { benchCollectWithAudiences(b, 1_000_000, true) }

// BenchmarkDefineAudience1M defines one audience over 1M existing profiles, each
// with traits and no events, and reports profiles per second.
func BenchmarkDefineAudience1M(b *testing.B) {
	ctx := context.Background()
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const people = 1_000_000
	c, err := New(WithClock(func() time.Time { return ts }))
	if err != nil {
		b.Fatal(err)
	}
	for p := range people {
		if err := c.Collect(ctx, Identify{UserID: "u" + strconv.Itoa(p), Traits: map[string]any{"plan": "pro", "score": float64(p % 100)}, Timestamp: ts}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if err := c.DefineAudience(ctx, audience.Definition{Key: fmt.Sprint("a", i), Query: `trait('score') >= 50 and trait('plan') = 'pro'`}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(people*b.N)/time.Since(start).Seconds(), "profiles/s")
}

// benchAudienceExtraCost measures what fifty audiences add to a collected
// message on a shared, noisy machine: messages alternate between a Controller
// without audiences and one with them, over the same population, each timed on
// its own, so that whatever else the machine does weighs on both alike.
func benchAudienceExtraCost(b *testing.B, people int) {
	ctx := context.Background()
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	plain := populations.get(fmt.Sprint(people, false), func() *Controller { return populate(b, people, false, ts) })
	with := populations.get(fmt.Sprint(people, true), func() *Controller { return populate(b, people, true, ts) })
	const active = 1000
	users, anons := make([]string, active), make([]string, active)
	for i := range active {
		p := i * (people / active)
		users[i], anons[i] = "u"+strconv.Itoa(p), "a"+strconv.Itoa(p)
	}
	runtime.GC()
	var buf []byte
	var tPlain, tWith time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		p := i % active
		for _, c := range [2]*Controller{plain, with} {
			n := populations.next()
			msg := Track{MessageID: benchMessageID(buf, n), UserID: users[p], AnonymousID: anons[p],
				Event: "Order Completed", Properties: benchProps, Timestamp: ts.Add(time.Duration(n))}
			start := time.Now()
			if err := c.Collect(ctx, msg); err != nil {
				b.Fatal(err)
			}
			if c == plain {
				tPlain += time.Since(start)
			} else {
				tWith += time.Since(start)
			}
		}
	}
	b.ReportMetric(float64(tPlain.Nanoseconds())/float64(b.N), "ns/plain-msg")
	b.ReportMetric(float64(tWith.Nanoseconds())/float64(b.N), "ns/audience-msg")
	b.ReportMetric(float64((tWith-tPlain).Nanoseconds())/float64(b.N), "ns/extra")
}

func BenchmarkAudienceExtraCost10k(b *testing.B) { benchAudienceExtraCost(b, 10_000) }
func BenchmarkAudienceExtraCost1M(b *testing.B)  { benchAudienceExtraCost(b, 1_000_000) }
