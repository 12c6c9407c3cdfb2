package identity

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchIdentifiers is the size of the benchmark graphs: benchIdentifiers/2
// profiles with a user_id and an anonymous_id each.
const benchIdentifiers = 1_000_000

// benchGraph is a graph of benchIdentifiers identifiers, with what the
// benchmarks need to pick existing ones.
type benchGraph struct {
	g        *MemGraph
	ids      []ID        // ids[2i] is the user_id, ids[2i+1] the anonymous_id of pids[i]
	pids     []ProfileID // the profiles, in creation order
	baseline map[ID]ProfileID
}

var (
	benchOnce   sync.Once
	benchShared *benchGraph
)

// sharedGraph builds the 1M-identifier graph once per test binary.
func sharedGraph(b *testing.B) *benchGraph {
	b.Helper()
	benchOnce.Do(func() {
		d := &benchGraph{
			ids:  make([]ID, 0, benchIdentifiers),
			pids: make([]ProfileID, 0, benchIdentifiers/2),
		}
		d.g = buildGraph(b, benchIdentifiers/2, func(pid ProfileID, u, a ID) {
			d.ids = append(d.ids, u, a)
			d.pids = append(d.pids, pid)
		})
		d.baseline = make(map[ID]ProfileID, len(d.ids))
		for i, id := range d.ids {
			d.baseline[id] = d.pids[i/2]
		}
		benchShared = d
	})
	if benchShared == nil {
		b.Fatal("building the benchmark graph failed")
	}
	return benchShared
}

var benchT0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// benchUserID and benchAnonID make realistic identifier values: a short user id
// and a 36-byte UUID-shaped anonymous id.
func benchUserID(i int) string { return "user-" + strconv.Itoa(i) }

func benchAnonID(i int) string {
	const hex = "0123456789abcdef"
	var buf [36]byte
	x := uint64(i)*0x9e3779b97f4a7c15 + 0x632be59bd9b4e019
	for j := range buf {
		switch j {
		case 8, 13, 18, 23:
			buf[j] = '-'
		default:
			buf[j] = hex[x>>60]
			x = x<<4 | x>>60
			if j%16 == 15 {
				x = x*0xbf58476d1ce4e5b9 + uint64(i)
			}
		}
	}
	return string(buf[:])
}

// buildGraph fills a new MemGraph with the given number of profiles, two
// identifiers each, through transactions of 1,000 profiles. keep, when not nil,
// sees each profile and its identifiers.
func buildGraph(tb testing.TB, profiles int, keep func(pid ProfileID, u, a ID)) *MemGraph {
	tb.Helper()
	ctx := context.Background()
	g := NewMemGraph()
	const batch = 1000
	for start := 0; start < profiles; start += batch {
		tx, err := g.Begin(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		for i := start; i < min(start+batch, profiles); i++ {
			now := benchT0.Add(time.Duration(i) * time.Second)
			pid := NewProfileID(now)
			u := ID{Type: TypeUserID, Value: benchUserID(i)}
			a := ID{Type: TypeAnonymousID, Value: benchAnonID(i)}
			msg := "msg-" + strconv.Itoa(i)
			if err := tx.Create(ctx, pid, now); err != nil {
				tb.Fatal(err)
			}
			if err := tx.Link(ctx, pid, Link{ID: u, LinkedAt: now, MessageID: msg}); err != nil {
				tb.Fatal(err)
			}
			if err := tx.Link(ctx, pid, Link{ID: a, LinkedAt: now, MessageID: msg}); err != nil {
				tb.Fatal(err)
			}
			if keep != nil {
				keep(pid, u, a)
			}
		}
		if err := tx.Commit(ctx); err != nil {
			tb.Fatal(err)
		}
	}
	return g
}

// rng is a tiny deterministic generator, so picking an index costs next to
// nothing beside what is measured.
type rng uint64

func (r *rng) intn(n int) int {
	*r = *r*6364136223846793005 + 1442695040888963407
	return int((uint64(*r) >> 33) % uint64(n))
}

var (
	sinkPID  ProfileID
	sinkPlan Plan
)

// BenchmarkLookup1M is Graph.Lookup of a random existing identifier among 1M.
// Target: under 300 ns/op.
func BenchmarkLookup1M(b *testing.B) {
	d := sharedGraph(b)
	ctx := context.Background()
	r := rng(1)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		pid, err := d.g.Lookup(ctx, d.ids[r.intn(len(d.ids))])
		if err != nil {
			b.Fatal(err)
		}
		sinkPID = pid
	}
}

// BenchmarkLookupBaselineMap1M is the same lookup in a plain map[ID]ProfileID of
// the same 1M entries: no lock, no interface, no error. The yardstick for
// BenchmarkLookup1M.
func BenchmarkLookupBaselineMap1M(b *testing.B) {
	d := sharedGraph(b)
	r := rng(1)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		pid, ok := d.baseline[d.ids[r.intn(len(d.ids))]]
		if !ok {
			b.Fatal("missing")
		}
		sinkPID = pid
	}
}

// BenchmarkResolveKnown1M is the read side of collecting a message of a known
// person: LookupAll of its user_id and anonymous_id, then Resolve.
func BenchmarkResolveKnown1M(b *testing.B) {
	d := sharedGraph(b)
	ctx := context.Background()
	res, err := NewResolver(DefaultRules())
	if err != nil {
		b.Fatal(err)
	}
	r := rng(2)
	matches := make([]Match, 0, 2)
	now := benchT0.AddDate(1, 0, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		p := r.intn(len(d.pids))
		msg := d.ids[2*p : 2*p+2] // already in priority order: user_id, anonymous_id
		matches, err = LookupAll(ctx, d.g, msg, matches[:0])
		if err != nil {
			b.Fatal(err)
		}
		plan, err := res.Resolve(ctx, d.g, matches, now)
		if err != nil {
			b.Fatal(err)
		}
		if plan.Profile != d.pids[p] {
			b.Fatalf("resolved to %s, want %s", plan.Profile, d.pids[p])
		}
		sinkPlan = plan
	}
}

// linkSeq numbers the identifiers BenchmarkLink1M links, so that every run links
// new ones.
var linkSeq atomic.Uint64

// BenchmarkLink1M is one write transaction on the 1M graph: Begin, Link a new
// identifier to an existing profile, Commit. Making the identifier's value (one
// small string) is part of each op. It runs on a graph of its own so the others
// keep exactly 1M identifiers. Target: under 1 µs/op.
func BenchmarkLink1M(b *testing.B) {
	linkGraphOnce.Do(func() {
		linkGraph = buildGraph(b, benchIdentifiers/2, func(pid ProfileID, _, _ ID) {
			linkGraphPIDs = append(linkGraphPIDs, pid)
		})
	})
	if linkGraph == nil {
		b.Fatal("building the benchmark graph failed")
	}
	g, pids := linkGraph, linkGraphPIDs
	ctx := context.Background()
	r := rng(3)
	now := benchT0.AddDate(1, 0, 0)
	var buf []byte
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		pid := pids[r.intn(len(pids))]
		buf = strconv.AppendUint(append(buf[:0], 'd'), linkSeq.Add(1), 10)
		id := ID{Type: "ios.id", Value: string(buf)}
		tx, err := g.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := tx.Link(ctx, pid, Link{ID: id, LinkedAt: now, MessageID: "bench"}); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLinkBaselineMap1M is the yardstick for BenchmarkLink1M: the same new
// identifier (its value made the same way) inserted into a plain
// map[ID]ProfileID that starts with the same 1M entries. No lock, no
// transaction, no node.
func BenchmarkLinkBaselineMap1M(b *testing.B) {
	d := sharedGraph(b)
	m := make(map[ID]ProfileID, len(d.baseline))
	for k, v := range d.baseline {
		m[k] = v
	}
	r := rng(3)
	var buf []byte
	var seq uint64
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		pid := d.pids[r.intn(len(d.pids))]
		seq++
		buf = strconv.AppendUint(append(buf[:0], 'd'), seq, 10)
		m[ID{Type: "ios.id", Value: string(buf)}] = pid
	}
}

var (
	linkGraphOnce sync.Once
	linkGraph     *MemGraph
	linkGraphPIDs []ProfileID
)

// BenchmarkMemoryPerIdentifier builds a fresh graph of 1M identifiers per op and
// reports the live heap it holds per identifier (B/identifier), measured with
// runtime.MemStats after a GC on each side. The figure includes the identifier
// values themselves (user ids of 10-11 bytes, anonymous ids of 36), the profile
// ids, the nodes with their links (LinkedAt, MessageID) and the index.
func BenchmarkMemoryPerIdentifier(b *testing.B) {
	reportHeapPerIdentifier(b, "graph", func() (any, int) {
		g := buildGraph(b, benchIdentifiers/2, nil)
		_, n := g.Len()
		return g, n
	})
}

// BenchmarkMemoryPerIdentifierBaselineMap is the yardstick for
// BenchmarkMemoryPerIdentifier: the same identifiers and profile ids in a plain
// map[ID]ProfileID, without nodes, link times or message ids.
func BenchmarkMemoryPerIdentifierBaselineMap(b *testing.B) {
	reportHeapPerIdentifier(b, "map", func() (any, int) {
		m := make(map[ID]ProfileID)
		for i := range benchIdentifiers / 2 {
			pid := NewProfileID(benchT0.Add(time.Duration(i) * time.Second))
			m[ID{Type: TypeUserID, Value: benchUserID(i)}] = pid
			m[ID{Type: TypeAnonymousID, Value: benchAnonID(i)}] = pid
		}
		return m, len(m)
	})
}

// reportHeapPerIdentifier is the measurement both memory benchmarks share, so
// the graph and its yardstick are measured alike: per op, it runs build between
// two GCs and reports the live heap that what build returns holds per
// identifier (B/identifier). build returns what it built and how many
// identifiers that holds, which must be benchIdentifiers; what names it in the
// failure.
func reportHeapPerIdentifier(b *testing.B, what string, build func() (held any, identifiers int)) {
	b.ReportAllocs()
	var perID float64
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		held, n := build()
		runtime.GC()
		runtime.ReadMemStats(&after)
		if n != benchIdentifiers {
			b.Fatalf("%s holds %d identifiers, want %d", what, n, benchIdentifiers)
		}
		perID = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / benchIdentifiers
		runtime.KeepAlive(held)
	}
	b.ReportMetric(perID, "B/identifier")
}
