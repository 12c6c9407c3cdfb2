package sqlstore_test

// From an adversarial review of the cross-process locks of a person who
// moved between the Controller's two looks: two Controllers on one
// PostgreSQL schema merge people's anonymous profiles into their user
// profiles without pause while one of them erases or suppresses those
// people.

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/sqlstore"
)

type mergeAttempt struct {
	id         string
	anon       string // the anonymous id it carries
	withUID    bool   // it names the user id too (it merges)
	start, end time.Time
	err        error
}

type mergePerson struct {
	uid, fate string
	mu        sync.Mutex
	attempts  []mergeAttempt
	r0, r1    time.Time // the right's Apply
}

func (p *mergePerson) add(a mergeAttempt) {
	p.mu.Lock()
	p.attempts = append(p.attempts, a)
	p.mu.Unlock()
}

// TestTwoHostsMergesRacingErasure: hosts A and B each, for random
// people, collect a track by a new anonymous id alone (a profile of its
// own), then an identify by the user id and that anonymous id (the
// anonymous profile merged into the person's), then a track by the
// anonymous id alone again; B meanwhile erases (DELETE_ONLY) or suppresses
// (SUPPRESS_WITH_DELETE) some of the people. Afterwards nothing the person
// was known by before the right survives it, nothing collected about a
// suppressed person after it is stored, and no Collect failed otherwise.
func TestTwoHostsMergesRacingErasure(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	ctx := t.Context()
	// Room for every merge: the default rules keep five anonymous ids and
	// 100 merges per profile, and drop the merges past them.
	rules := identity.DefaultRules()
	rules.DefaultLimit = identity.Limit{Max: 100000, Window: identity.Ever}
	rules.MaxMerges, rules.MaxIdentifiers = 100000, 100000
	a := s.open(t).controller(t, nil, privacy.WithIdentityRules(rules))
	b := s.open(t).controller(t, nil, privacy.WithIdentityRules(rules))

	var tag [3]byte
	rand.Read(tag[:])
	var people []*mergePerson
	for i := range 9 {
		fate := []string{"suppress", "erase", "keep"}[i%3]
		p := &mergePerson{uid: fmt.Sprintf("mu-%s-%02d", hex.EncodeToString(tag[:]), i), fate: fate}
		must(t, a.Collect(ctx, privacy.Identify{MessageID: "seed-" + p.uid, UserID: p.uid, Traits: map[string]any{"plan": "pro"}, Timestamp: time.Now()}))
		people = append(people, p)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	chain := func(c *privacy.Controller, via string, seed uint64) {
		defer wg.Done()
		r := mrand.New(mrand.NewPCG(seed, 7))
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			p := people[r.IntN(len(people))]
			x := fmt.Sprintf("x-%s-%s-%04d", p.uid, via, n)
			msgs := []struct {
				m       privacy.Message
				withUID bool
			}{
				{privacy.Track{MessageID: x + "-1", AnonymousID: x, Event: "Pre", Timestamp: time.Now()}, false},
				{privacy.Identify{MessageID: x + "-2", UserID: p.uid, AnonymousID: x, Traits: map[string]any{"n": n}, Timestamp: time.Now()}, true},
				{privacy.Track{MessageID: x + "-3", AnonymousID: x, Event: "Post", Timestamp: time.Now()}, false},
			}
			for k, m := range msgs {
				start := time.Now()
				err := c.Collect(ctx, m.m)
				p.add(mergeAttempt{id: fmt.Sprintf("%s-%d", x, k+1), anon: x, withUID: m.withUID, start: start, end: time.Now(), err: err})
			}
		}
	}
	for g := range 3 {
		wg.Add(1)
		go chain(a, fmt.Sprint("A", g), uint64(g))
	}
	for g := range 2 {
		wg.Add(1)
		go chain(b, fmt.Sprint("B", g), uint64(10+g))
	}
	time.Sleep(150 * time.Millisecond)
	for _, p := range people {
		if p.fate == "keep" {
			continue
		}
		typ := privacy.DeleteOnly
		if p.fate == "suppress" {
			typ = privacy.SuppressWithDelete
		}
		time.Sleep(time.Duration(30+mrand.IntN(60)) * time.Millisecond)
		start := time.Now()
		r, err := b.Apply(ctx, privacy.Request{Type: typ, Subjects: []identity.ID{{Type: identity.TypeUserID, Value: p.uid}}})
		end := time.Now()
		p.mu.Lock()
		p.r0, p.r1 = start, end
		p.mu.Unlock()
		if err != nil || r.Status != privacy.Finished {
			t.Errorf("%s of %s = %+v, %v; want FINISHED", typ, p.uid, r, err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()

	stored := map[string]string{} // message id -> profile
	rows, err := s.admin.QueryContext(ctx, "SELECT message_id, profile_id FROM "+s.table("profile_messages"))
	must(t, err)
	for rows.Next() {
		var id, pid string
		must(t, rows.Scan(&id, &pid))
		stored[id] = pid
	}
	must(t, rows.Err())
	rows.Close()

	total := 0
	for _, p := range people {
		// When each anonymous id was linked to the user id (the identify's end).
		linked := map[string]time.Time{}
		for _, at := range p.attempts {
			if at.withUID && at.err == nil {
				linked[at.anon] = at.end
			}
		}
		for _, at := range p.attempts {
			total++
			_, isStored := stored[at.id]
			if at.err != nil {
				if !(p.fate == "suppress" && errors.Is(at.err, privacy.ErrSuppressed)) {
					t.Errorf("%s (%s): Collect %s = %v", p.uid, p.fate, at.id, at.err)
				}
				if isStored {
					t.Errorf("%s: %s is stored, but its Collect failed: %v", p.uid, at.id, at.err)
				}
				continue
			}
			if p.fate == "keep" {
				if !isStored {
					t.Errorf("%s: %s was collected and is not stored", p.uid, at.id)
				}
				continue
			}
			// The person's, when the right began: by the user id, or by an
			// anonymous id linked to it before.
			l, wasLinked := linked[at.anon]
			theirs := at.withUID || wasLinked && l.Before(p.r0)
			if theirs && at.end.Before(p.r0) && isStored {
				t.Errorf("%s (%s): %s, collected before the right, survived it (profile %s)", p.uid, p.fate, at.id, stored[at.id])
			}
			if p.fate == "suppress" && at.start.After(p.r1) && (at.withUID || wasLinked && l.Before(p.r0)) {
				t.Errorf("%s: %s, begun after SUPPRESS_WITH_DELETE finished, was stored (err nil)", p.uid, at.id)
			}
		}
	}
	t.Logf("%d messages", total)
}
