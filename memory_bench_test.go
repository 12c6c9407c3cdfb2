package privacy

import (
	"context"
	"maps"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// memoryPeople is how many people BenchmarkMemoryPerProfile loads: issue 19
// states its memory figure at 1M profiles.
const memoryPeople = 1_000_000

// memoryPerson is what BenchmarkMemoryPerProfile's baseline keeps of a
// person in plain maps and slices: the links of their identifiers, their
// traits, events and metadata, and the message ids seen.
type memoryPerson struct {
	links  []identity.Link
	traits map[string]profile.Trait
	events []profile.Event
	seen   map[string]struct{}
	meta   profile.Metadata
}

// BenchmarkMemoryPerProfile loads memoryPeople people into a Controller on
// the in-memory defaults, each with an identify (user id, anonymous id, an
// email and two more traits) and a track (two properties), and reports the
// live heap it holds per profile once collected (lib-B/profile). Beside it,
// in the same run, the same people in plain maps and slices
// (maps-B/profile): an identifier to profile map and, per profile, its
// links, traits, events, the message ids seen and its metadata. x-maps is
// the ratio of the two. The inputs (ids, message ids) are made before
// either is measured and shared by both. Run it once (-benchtime 1x): each
// iteration loads them all again.
func BenchmarkMemoryPerProfile(b *testing.B) {
	ctx := context.Background()
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	users, anons, emails := newPeople(memoryPeople)
	identifies, tracks := make([]string, memoryPeople), make([]string, memoryPeople)
	for i := range memoryPeople {
		identifies[i], tracks[i] = "i"+strconv.Itoa(i), "t"+strconv.Itoa(i)
	}
	var lib, plain float64
	for b.Loop() {
		before := liveHeap()
		c, err := New()
		if err != nil {
			b.Fatal(err)
		}
		for i := range memoryPeople {
			err := c.Collect(ctx, Identify{MessageID: identifies[i], UserID: users[i], AnonymousID: anons[i],
				Traits: map[string]any{"email": emails[i], "plan": "pro", "age": 41.0}, Timestamp: ts})
			if err == nil {
				err = c.Collect(ctx, Track{MessageID: tracks[i], UserID: users[i], Event: "Product Viewed",
					Properties: map[string]any{"sku": "TENT-2P", "price": 249.0}, Timestamp: ts.Add(time.Second)})
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		lib = float64(liveHeap()-before) / memoryPeople
		if s, ok := c.profiles.(*profile.MemStore); !ok || s.Len() != memoryPeople {
			b.Fatalf("the Controller's profile store is %T; want a MemStore holding %d profiles", c.profiles, memoryPeople)
		}
		runtime.KeepAlive(c)
		c = nil

		before = liveHeap()
		ids := map[identity.ID]identity.ProfileID{}
		people := map[identity.ProfileID]*memoryPerson{}
		for i := range memoryPeople {
			pid := identity.NewProfileID(ts)
			p := &memoryPerson{seen: map[string]struct{}{identifies[i]: {}, tracks[i]: {}}}
			for _, id := range [3]identity.ID{{Type: identity.TypeUserID, Value: users[i]},
				{Type: identity.TypeAnonymousID, Value: anons[i]}, {Type: identity.TypeEmail, Value: emails[i]}} {
				ids[id] = pid
				p.links = append(p.links, identity.Link{ID: id, LinkedAt: ts, MessageID: identifies[i]})
			}
			traits := map[string]any{"email": emails[i], "plan": "pro", "age": 41.0}
			p.traits = make(map[string]profile.Trait, len(traits))
			for k, v := range traits {
				p.traits[k] = profile.Trait{Value: v, Source: profile.SourceIdentify, UpdatedAt: ts}
			}
			p.events = append(p.events, profile.Event{MessageID: tracks[i], Type: "track", Name: "Product Viewed",
				Properties: maps.Clone(map[string]any{"sku": "TENT-2P", "price": 249.0}), Timestamp: ts.Add(time.Second), ReceivedAt: ts})
			p.meta = profile.Metadata{CreatedAt: ts, UpdatedAt: ts, Version: 2, FirstMessageID: identifies[i], LastMessageID: tracks[i],
				FirstSeen: ts, LastSeen: ts.Add(time.Second)}
			people[pid] = p
		}
		plain = float64(liveHeap()-before) / memoryPeople
		if len(ids) != 3*memoryPeople || len(people) != memoryPeople {
			b.Fatalf("the baseline holds %d identifiers and %d people", len(ids), len(people))
		}
		runtime.KeepAlive(ids)
		runtime.KeepAlive(people)
	}
	b.ReportMetric(lib, "lib-B/profile")
	b.ReportMetric(plain, "maps-B/profile")
	b.ReportMetric(lib/plain, "x-maps")
}

// liveHeap returns the bytes of the heap still reachable, after collecting
// what is not.
func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
