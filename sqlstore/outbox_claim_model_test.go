package sqlstore

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/outbox"
)

// A model of the outbox's queues, checked at every claim of several
// deliverers in two processes (from an adversarial review of the claim that
// finds its heads in a window of the oldest rows): what each item's queue
// holds, who holds each item, what was answered.

type modelEntry struct {
	name      string
	del       bool
	done      bool
	holder    string
	delivered int
	blocked   bool // a hog's: never to be handed out during the test
}

type modelQueue struct {
	dest string
	pid  identity.ProfileID
}

type claimModel struct {
	mu         sync.Mutex
	queues     map[modelQueue][]*modelEntry
	byName     map[string]*modelEntry
	violations []string
	claims     int
	handed     int
}

func (m *claimModel) add(q modelQueue, name string, del bool) *modelEntry {
	e := &modelEntry{name: name, del: del}
	m.queues[q] = append(m.queues[q], e)
	m.byName[name] = e
	return e
}

func (m *claimModel) violate(format string, args ...any) {
	if len(m.violations) < 30 {
		m.violations = append(m.violations, fmt.Sprintf(format, args...))
	}
}

func modelName(it outbox.Item) string {
	if it.Message != nil {
		return it.Message.MessageID
	}
	if it.Deletion != nil {
		return it.Deletion.RequestID
	}
	return fmt.Sprintf("<emptied %d>", it.ID)
}

// twoPostgresStores opens two Stores, each its own pool, on one PostgreSQL schema.
func twoPostgresStores(t *testing.T) (*Store, *Store) {
	db1 := postgresDB(t)
	schema := newSchema(t, db1)
	s1 := newStore(t, db1, Postgres, WithSchema(schema))
	db2 := postgresDB(t)
	s2 := newStore(t, db2, Postgres, WithSchema(schema))
	return s1, s2
}

// TestTwoProcessesClaimInOrder: two Stores (two pools) on one
// PostgreSQL outbox, two deliverers each, claiming from one, the other or
// both destinations with limits of 1 to 25, while a producer enqueues
// bundles, singles and deletions; deliveries fail and retry, die, or are
// given back. Two hogs hold more blocked rows than most claims' windows
// (one not due, one leased), so the fallback past the window runs too.
// Checked at every claim: no item handed out that another deliverer holds
// or that was answered; every earlier item of its queue answered or in the
// same claim; a deletion alone. At the end: every item answered, none
// delivered twice.
func TestTwoProcessesClaimInOrder(t *testing.T) {
	s1, s2 := twoPostgresStores(t)
	claimInOrderFromTwo(t, s1, s2)
}

// TestTwoProcessesClaimInOrderSQLite: the same on one SQLite file.
func TestTwoProcessesClaimInOrderSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "o.db")
	s1 := newStore(t, sqliteDB(t, path), SQLite)
	s2 := newStore(t, sqliteDB(t, path), SQLite)
	claimInOrderFromTwo(t, s1, s2)
}

func claimInOrderFromTwo(t *testing.T, s1, s2 *Store) {
	ctx := context.Background()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("GDPRKIT_CLAIM_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d", seed)
	rounds := 250
	if v := os.Getenv("GDPRKIT_CLAIM_ROUNDS"); v != "" {
		rounds, _ = strconv.Atoi(v)
	}
	m := &claimModel{queues: map[modelQueue][]*modelEntry{}, byName: map[string]*modelEntry{}}
	dests := []string{"d1", "d2"}
	now := time.Now
	msg := func(dest string, pid identity.ProfileID, name string, at time.Time) outbox.Item {
		return outbox.Item{Destination: dest, Profile: pid, Enqueued: at,
			Message: &destination.Message{MessageID: name, Type: destination.TypeTrack, Event: "e", ProfileID: pid, Timestamp: at}}
	}
	// The hogs: 90 rows of d1 behind a head not due for an hour, 60 of d2
	// behind a head leased for an hour.
	hog := func(dest string, pid identity.ProfileID, n int) []outbox.Item {
		var items []outbox.Item
		at := now()
		for i := range n {
			name := fmt.Sprintf("%s|%s|%d", dest, pid, i)
			items = append(items, msg(dest, pid, name, at.Add(time.Duration(i)*time.Microsecond)))
			m.add(modelQueue{dest, pid}, name, false).blocked = true
		}
		return items
	}
	rvEnqueue(t, s1, hog("d1", "hog1", 90))
	rvEnqueue(t, s1, hog("d2", "hog2", 60))
	_, err := s1.db.Exec(s1.sql(`UPDATE {p}outbox SET not_before = $1{ts} WHERE id = (SELECT MIN(id) FROM {p}outbox WHERE profile_id = 'hog1')`), s1.ts(now().Add(time.Hour)))
	must(t, err)
	_, err = s1.db.Exec(s1.sql(`UPDATE {p}outbox SET owner = 'ghost', lease_until = $1{ts}, leased_for = 1 WHERE id = (SELECT MIN(id) FROM {p}outbox WHERE profile_id = 'hog2')`), s1.ts(now().Add(time.Hour)))
	must(t, err)
	m.queues[modelQueue{"d2", "hog2"}][0].holder = "ghost"

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var producing sync.WaitGroup
	producing.Add(1)
	go func() { // the producer
		defer producing.Done()
		r := rand.New(rand.NewPCG(seed, 1))
		seq := 0
		for range rounds {
			var items []outbox.Item
			at := now()
			m.mu.Lock()
			for range 1 + r.IntN(3) {
				pid := identity.ProfileID(fmt.Sprintf("P%d", r.IntN(10)))
				dest := dests[r.IntN(2)]
				q := modelQueue{dest, pid}
				switch k := r.IntN(10); {
				case k < 1: // a deletion
					seq++
					name := fmt.Sprintf("%s|%s|del%d", dest, pid, seq)
					items = append(items, outbox.Item{Destination: dest, Profile: pid, Enqueued: at, Deletion: &destination.Deletion{RequestID: name, ProfileID: pid}})
					m.add(q, name, true)
				case k < 5: // a bundle
					for range 2 + r.IntN(4) {
						seq++
						name := fmt.Sprintf("%s|%s|%d", dest, pid, seq)
						items = append(items, msg(dest, pid, name, at))
						m.add(q, name, false)
					}
				default:
					seq++
					name := fmt.Sprintf("%s|%s|%d", dest, pid, seq)
					// alone in its row: another time
					items = append(items, msg(dest, pid, name, at.Add(time.Duration(seq)*time.Nanosecond*1000)))
					m.add(q, name, false)
				}
			}
			m.mu.Unlock()
			tx, err := s1.Outbox().Begin(ctx)
			if err == nil {
				if err = tx.Enqueue(ctx, items); err == nil {
					err = tx.Commit(ctx)
				} else {
					tx.Rollback(ctx)
				}
			}
			if err != nil {
				t.Errorf("enqueue: %v", err)
				return
			}
			time.Sleep(time.Duration(r.IntN(3)) * time.Millisecond)
		}
	}()

	worker := func(s *Store, owner string, wseed uint64) {
		defer wg.Done()
		r := rand.New(rand.NewPCG(seed, wseed))
		for {
			select {
			case <-stop:
				return
			default:
			}
			var ds []string
			switch r.IntN(3) {
			case 0:
				ds = []string{"d1"}
			case 1:
				ds = []string{"d2"}
			default:
				ds = []string{"d2", "d1"}
			}
			limit := 1 + r.IntN(25)
			t0 := now()
			got, err := s.Outbox().Claim(ctx, outbox.Claim{Owner: owner, Destinations: ds, Now: t0, Until: t0.Add(time.Minute), Limit: limit})
			if err != nil {
				t.Errorf("claim: %v", err)
				return
			}
			if len(got) == 0 {
				time.Sleep(time.Millisecond)
				continue
			}
			m.mu.Lock()
			m.claims++
			m.handed += len(got)
			if len(got) > limit {
				m.violate("%s claimed %d items, limit %d", owner, len(got), limit)
			}
			in := map[*modelEntry]bool{}
			perQ := map[modelQueue][]outbox.Item{}
			for _, it := range got {
				e := m.byName[modelName(it)]
				if e == nil {
					m.violate("%s claimed unknown item %s", owner, modelName(it))
					continue
				}
				in[e] = true
				q := modelQueue{it.Destination, it.Profile}
				perQ[q] = append(perQ[q], it)
			}
			for q, its := range perQ {
				for _, it := range its {
					e := m.byName[modelName(it)]
					if e.done {
						m.violate("%s claimed %s, already answered", owner, e.name)
					}
					if e.holder != "" {
						m.violate("%s claimed %s, held by %s", owner, e.name, e.holder)
					}
					if e.blocked {
						m.violate("%s claimed %s behind its hog's blocked head", owner, e.name)
					}
					for _, f := range m.queues[q] {
						if f == e {
							break
						}
						if !f.done && !in[f] {
							m.violate("%s claimed %s while the earlier %s (holder %q) is unanswered", owner, e.name, f.name, f.holder)
							break
						}
					}
					if e.del && len(its) > 1 {
						m.violate("%s claimed deletion %s with %d other items of its queue", owner, e.name, len(its)-1)
					}
					e.holder = owner
				}
			}
			// Answers, per queue in order: after a failure or a give-back
			// the rest of the queue's items go back.
			var answers []outbox.Answer
			var back []uint64
			for _, its := range perQ {
				slices.SortFunc(its, func(a, b outbox.Item) int { return cmp.Compare(a.ID, b.ID) })
				stopped := false
				for _, it := range its {
					e := m.byName[modelName(it)]
					if stopped {
						e.holder = ""
						back = append(back, it.ID)
						continue
					}
					switch k := r.IntN(20); {
					case k < 14:
						e.done, e.holder = true, ""
						e.delivered++
						answers = append(answers, outbox.Answer{ID: it.ID, State: outbox.Delivered})
					case k < 16:
						e.holder = ""
						answers = append(answers, outbox.Answer{ID: it.ID, State: outbox.Pending, NotBefore: now().Add(time.Duration(r.IntN(20)) * time.Millisecond), Err: "down"})
						stopped = true
					case k < 17:
						e.done, e.holder = true, ""
						answers = append(answers, outbox.Answer{ID: it.ID, State: outbox.Dead, Err: "gone"})
					default:
						e.holder = ""
						back = append(back, it.ID)
						stopped = true
					}
				}
			}
			m.mu.Unlock()
			if len(back) > 0 {
				if err := s.Outbox().Renew(ctx, owner, back, time.Time{}); err != nil {
					t.Errorf("renew: %v", err)
					return
				}
			}
			if len(answers) > 0 {
				lost, err := s.Outbox().Settle(ctx, owner, answers)
				if err != nil {
					t.Errorf("settle: %v", err)
					return
				}
				if lost != 0 {
					m.mu.Lock()
					m.violate("%s: Settle lost %d of %d answers", owner, lost, len(answers))
					m.mu.Unlock()
				}
			}
		}
	}
	for i, s := range []*Store{s1, s1, s2, s2} {
		wg.Add(1)
		go worker(s, fmt.Sprintf("w%d", i), uint64(i+2))
	}
	producing.Wait()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		m.mu.Lock()
		left := 0
		for _, e := range m.byName {
			if !e.blocked && !e.done {
				left++
			}
		}
		m.mu.Unlock()
		if left == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	t.Logf("%d claims handed out %d items", m.claims, m.handed)
	for _, v := range m.violations {
		t.Error(v)
	}
	var left []string
	for _, e := range m.byName {
		if !e.blocked && !e.done {
			left = append(left, e.name+" holder "+e.holder)
		}
		if e.delivered > 1 {
			t.Errorf("%s delivered %d times", e.name, e.delivered)
		}
	}
	slices.Sort(left)
	if len(left) > 0 {
		t.Errorf("%d items never answered: %v", len(left), left[:min(len(left), 10)])
	}
}
