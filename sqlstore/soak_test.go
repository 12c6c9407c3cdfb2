package sqlstore_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/sqlstore"
)

// The soak: two processes on one PostgreSQL database collect about people and
// apply their rights (erasure, objection with and without deletion, an
// objection then its lifting, rectification), and each may die (os.Exit)
// right after a random journal record; then a third process recovers what
// they left, applies what no child finished, and the invariants of the rights
// are checked against everything in the database.
//
// The short version runs in the test suite. The long one:
//
//	GDPRKIT_SOAK_ROUNDS=50 GDPRKIT_TEST_POSTGRES_DSN=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	    go test -overlay=testdata/testdeps/overlay.json -run '^TestSoak$' -timeout 60m -v ./sqlstore
//
// GDPRKIT_SOAK_SEED replays one round's seed, as printed.

// soakFates are what happens to the people of a soak: "lift" objects and
// then lifts the objection (SUPPRESS_ONLY, then UNSUPPRESS).
var soakFates = []string{"keep", "swd", "erase", "object", "rectify", "lift"}

// soakChildOf is the child process that applies person i's rights: people
// are assigned by runs of len(soakFates), so each child has every fate.
func soakChildOf(i int) int { return (i / len(soakFates)) % 2 }

// soakPerson is one person of a soak, as the processes share it.
type soakPerson struct {
	UID, Email string
	Anons      []string
	Fate       string
}

// soakPlan is what a child process does.
type soakPlan struct {
	Site   *site
	Seed   uint64
	Child  int
	People []soakPerson
	// Start is when the first phase (collection about everyone) begins;
	// Phase1 and Phase2 are the phases' lengths. In the second phase the
	// rights of the people assigned to this child are applied, after Guard,
	// while collection goes on for everyone but the erased.
	Start                 time.Time
	Phase1, Phase2, Guard time.Duration
	// Assigned are the indexes of the people whose right this child applies.
	Assigned []int
	// CrashAfter is the journal record after which the child dies (0: none).
	CrashAfter int
	Lease      time.Duration
}

// soakLine is one line a child reports: an attempt begun, its outcome, a
// right applied.
type soakLine struct {
	Kind   string // "begin", "end", "right"
	Person int
	ID     string // message id, or request id
	// Anon is the anonymous id a message carries; WithUser, whether it
	// carries the user id too (then it links the device to the person).
	Anon     string
	WithUser bool
	Identify bool // an identify, which links the email too
	At       time.Time
	Err      string
	Status   string
	Request  string
}

const soakChildEnv = "GDPRKIT_SOAK_CHILD"

// soakExit is how a child dies at its crash point.
const soakExit = 77

func TestSoak(t *testing.T) {
	postgresDSN(t) // or skip
	rounds := 1
	if v := os.Getenv("GDPRKIT_SOAK_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("GDPRKIT_SOAK_ROUNDS=%q: want a positive number", v)
		}
		rounds = n
	}
	for round := range rounds {
		seed := uint64(time.Now().UnixNano()) + uint64(round)
		if v := os.Getenv("GDPRKIT_SOAK_SEED"); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				t.Fatalf("GDPRKIT_SOAK_SEED=%q: %v", v, err)
			}
			seed = n
		}
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { soakRound(t, seed) })
	}
}

func soakRound(t *testing.T, seed uint64) {
	t.Logf("soak seed %d (replay with GDPRKIT_SOAK_SEED=%d)", seed, seed)
	r := mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	s := newSite(t, sqlstore.Postgres)
	ctx := t.Context()
	tag := strconv.FormatUint(seed%100000, 36)
	var people []soakPerson
	for i := range 20 {
		p := soakPerson{UID: fmt.Sprintf("soak-%s-%02d", tag, i), Email: fmt.Sprintf("soak-%s-%02d@example.com", tag, i), Fate: soakFates[i%len(soakFates)]}
		for a := range 3 {
			// Neither devices nor message ids contain the user id: the
			// checks look for each value anywhere, and a device only ever
			// seen alone is not known to be the person's.
			p.Anons = append(p.Anons, fmt.Sprintf("dev-%s-%02d-%d", tag, i, a))
		}
		people = append(people, p)
	}
	start := time.Now().Add(500 * time.Millisecond)
	lines := make([][]soakLine, 2)
	var wg sync.WaitGroup
	for child := range 2 {
		plan := soakPlan{Site: s, Seed: seed + uint64(child), Child: child, People: people, Start: start,
			Phase1: 1500 * time.Millisecond, Phase2: 2 * time.Second, Guard: 200 * time.Millisecond, Lease: 300 * time.Millisecond}
		for i := range people {
			if soakChildOf(i) == child && people[i].Fate != "keep" {
				plan.Assigned = append(plan.Assigned, i)
			}
		}
		// Only the rights write the journal (a child's are a few dozen
		// records): most crash points fall in the middle of one.
		if r.IntN(4) != 0 {
			plan.CrashAfter = 1 + r.IntN(30)
		}
		t.Logf("child %d: crash after journal record %d (0: none)", child, plan.CrashAfter)
		cfg, err := json.Marshal(plan)
		must(t, err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestSoakChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), soakChildEnv+"="+string(cfg))
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			var ee *exec.ExitError
			switch {
			case errors.As(err, &ee) && ee.ExitCode() == soakExit:
				t.Logf("child %d died at its crash point", child)
			case err != nil:
				t.Errorf("child %d: %v\n%s", child, err, out.String())
			}
			sc := bufio.NewScanner(&out)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				if rest, ok := strings.CutPrefix(sc.Text(), "SOAK "); ok {
					var l soakLine
					if err := json.Unmarshal([]byte(rest), &l); err == nil {
						lines[child] = append(lines[child], l)
					}
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	// A third process, another host: once the children's leases lapse it
	// takes over and completes what they left; then it applies every right
	// no child got to journal, so each fate is met.
	time.Sleep(2 * 300 * time.Millisecond)
	p := s.open(t)
	c := p.controller(t, nil)
	for attempt := 0; ; attempt++ {
		if _, err := c.Recover(ctx); err != nil {
			t.Logf("Recover: %v", err)
		}
		un, err := p.jrnl.Journal().Unfinished(ctx)
		must(t, err)
		if len(un) == 0 {
			break
		}
		if attempt == 20 {
			t.Fatalf("after 20 rounds of Recover, %d requests are unfinished: %+v", len(un), un)
		}
		time.Sleep(100 * time.Millisecond)
	}
	hasher, err := identity.NewHasher(testKey)
	must(t, err)
	for i, person := range people {
		// Each of the person's requests no child finished is applied, in
		// order: a lifted objection is lifted after the objection.
		for _, req := range soakRequests(person) {
			if soakApplied(t, p, hasher, person, req.Type) != nil {
				continue
			}
			r, err := c.Apply(ctx, req)
			if err != nil || r.Status != privacy.Finished {
				t.Fatalf("applying %s's %s (%s) after the children = %+v, %v", person.UID, req.Type, person.Fate, r, err)
			}
			t.Logf("person %d's %s was never finished by a child: applied now", i, req.Type)
		}
	}
	must(t, c.Flush(ctx))
	soakCheck(t, s, p, c, hasher, people, lines)
}

// soakRequests are the requests that meet a person's fate, in order.
func soakRequests(p soakPerson) []privacy.Request {
	subject := []identity.ID{{Type: identity.TypeEmail, Value: p.Email}}
	switch p.Fate {
	case "keep":
		return nil
	case "swd":
		return []privacy.Request{{Type: privacy.SuppressWithDelete, Subjects: subject}}
	case "erase":
		return []privacy.Request{{Type: privacy.DeleteOnly, Subjects: subject}}
	case "object":
		return []privacy.Request{{Type: privacy.SuppressOnly, Subjects: subject}}
	case "lift":
		return []privacy.Request{{Type: privacy.SuppressOnly, Subjects: subject}, {Type: privacy.Unsuppress, Subjects: subject}}
	}
	return []privacy.Request{{Type: privacy.Rectify, Subjects: subject, Traits: map[string]any{"plan": "rectified"}}}
}

// soakApplied returns the person's FINISHED request of the type, if any.
func soakApplied(t *testing.T, p *proc, hasher *identity.Hasher, person soakPerson, typ privacy.RequestType) *journal.Entry {
	t.Helper()
	h := hasher.ID(identity.ID{Type: identity.TypeEmail, Value: person.Email})
	page, err := p.jrnl.Journal().List(t.Context(), journal.Filter{Subjects: []identity.Hash{h}, Limit: 1000})
	must(t, err)
	for _, e := range page.Entries {
		if e.Type == typ && (e.Status == privacy.Finished || e.Status == privacy.PartialSuccess) {
			return e
		}
	}
	return nil
}

func soakCheck(t *testing.T, s *site, p *proc, c *privacy.Controller, hasher *identity.Hasher, people []soakPerson, lines [][]soakLine) {
	ctx := t.Context()
	// Every request ended; every FAILED one was never decided.
	for f := (journal.Filter{Limit: 1000}); ; {
		page, err := p.jrnl.Journal().List(ctx, f)
		must(t, err)
		for _, e := range page.Entries {
			switch {
			case !e.Status.Ended():
				t.Errorf("request %s is %s after recovery", e.ID, e.Status)
			case (e.Status == privacy.Failed || e.Status == privacy.Invalid) && e.Decided:
				t.Errorf("request %s ended %s after its decision: it may have been applied", e.ID, e.Status)
			case len(e.Subjects) > 0 || len(e.AuditOwed) > 0:
				t.Errorf("request %s ended %s keeping clear subjects or owing audit records", e.ID, e.Status)
			}
		}
		if page.Next == "" {
			break
		}
		f.Cursor = page.Next
	}
	// The audit chain verifies and holds every ended request's end.
	if _, err := c.VerifyAudit(ctx); err != nil {
		t.Errorf("VerifyAudit: %v", err)
	}

	begun := map[string]soakLine{}
	ended := map[string]soakLine{}
	for _, ls := range lines {
		for _, l := range ls {
			switch l.Kind {
			case "begin":
				begun[l.ID] = l
			case "end":
				ended[l.ID] = l
			}
		}
	}
	// linked are the values a collected message linked to each person: the
	// user id and email, and every device seen with the user id. (A device
	// only ever seen alone is not known to be the person's.)
	linked := make([][]string, len(people))
	for i, person := range people {
		linked[i] = []string{person.UID, person.Email}
	}
	for id, b := range begun {
		if e, ok := ended[id]; ok && e.Err == "" && b.WithUser && !slices.Contains(linked[b.Person], b.Anon) {
			linked[b.Person] = append(linked[b.Person], b.Anon)
		}
	}
	stored := soakStoredMessages(t, s, p)
	for i, person := range people {
		switch person.Fate {
		case "swd", "erase":
			// Nothing of the person anywhere: what was collected before was
			// erased, and (suppressed, or not collected about in the second
			// phase) nothing came after.
			for _, v := range linked[i] {
				if h := s.holders(t, v); len(h) > 0 {
					t.Errorf("person %d (%s) was erased, yet %s is in %v", i, person.Fate, v, h)
					soakExplain(t, s, p, hasher, person, i, lines)
				}
			}
		case "object", "lift":
			e := soakApplied(t, p, hasher, person, privacy.SuppressOnly)
			if e == nil {
				t.Errorf("person %d: no finished SUPPRESS_ONLY", i)
				continue
			}
			// Nothing begun after the objection finished is stored; for a
			// lifted objection, nothing that also ended before the lifting
			// was received.
			var lifted time.Time
			if person.Fate == "lift" {
				u := soakApplied(t, p, hasher, person, privacy.Unsuppress)
				if u == nil {
					t.Errorf("person %d: no finished UNSUPPRESS", i)
					continue
				}
				lifted = u.Received
				soakCollectsAgain(t, s, p, c, person)
			}
			for id := range stored {
				b, ok := begun[id]
				if !ok || b.Person != i || !b.At.After(e.Finished) {
					continue
				}
				if !b.WithUser && !soakDeviceKnown(begun, ended, i, b.Anon, b.At) {
					continue // a device not yet seen with the user id: its own profile, not known to be the person's
				}
				if end, ok := ended[id]; lifted.IsZero() || ok && end.At.Before(lifted) {
					t.Errorf("person %d objected (finished %v, lifted %v), yet message %s (device %s, with the user id: %v), begun at %v, is stored",
						i, e.Finished, lifted, id, b.Anon, b.WithUser, b.At)
				}
			}
		case "rectify":
			prof, err := c.Profile(ctx, identity.ID{Type: identity.TypeUserID, Value: person.UID})
			if err != nil || prof.Traits["plan"].Value != "rectified" {
				t.Errorf("person %d after the rectification: %+v, %v; want plan rectified", i, prof, err)
			}
		case "keep":
			for id, l := range ended {
				if l.Person == i && l.Err == "" && !stored[id] {
					t.Errorf("person %d: message %s was collected (no error) but is not stored", i, id)
				}
			}
		}
	}
}

// soakCollectsAgain checks that a person whose objection was lifted is
// collected about again: a new message is accepted and stored.
func soakCollectsAgain(t *testing.T, s *site, p *proc, c *privacy.Controller, person soakPerson) {
	t.Helper()
	id := "m" + strings.TrimPrefix(person.UID, "soak") + "-after-lifting"
	if err := c.Collect(t.Context(), privacy.Track{MessageID: id, UserID: person.UID, Event: "Returned", Timestamp: time.Now()}); err != nil {
		t.Errorf("collecting about %s after the objection was lifted: %v", person.UID, err)
		return
	}
	if !soakStoredMessages(t, s, p)[id] {
		t.Errorf("collecting about %s after the objection was lifted: accepted, but not stored", person.UID)
	}
}

// soakExplain logs, for a failed check, where the person's identifiers are
// linked and the requests that named them.
func soakExplain(t *testing.T, s *site, p *proc, hasher *identity.Hasher, person soakPerson, i int, lines [][]soakLine) {
	t.Helper()
	for child, ls := range lines {
		for _, l := range ls {
			if l.Person == i {
				t.Logf("  child %d %s %s %s anon=%s user=%v identify=%v err=%q request=%s %s", child, l.At.Format("15:04:05.000000"), l.Kind, l.ID, l.Anon, l.WithUser, l.Identify, l.Err, l.Request, l.Status)
			}
		}
	}
	for _, v := range append([]string{person.UID, person.Email}, person.Anons...) {
		rows, err := s.dataDB(t).QueryContext(t.Context(), s.q("SELECT id_type, profile_id, message_id FROM "+s.table("identity_links")+" WHERE id_value = $1"), v)
		must(t, err)
		for rows.Next() {
			var typ, prof, msg string
			must(t, rows.Scan(&typ, &prof, &msg))
			t.Logf("  %s %s is linked to profile %s by message %s", typ, v, prof, msg)
		}
		must(t, rows.Close())
	}
	for _, id := range []identity.ID{{Type: identity.TypeEmail, Value: person.Email}, {Type: identity.TypeUserID, Value: person.UID}} {
		page, err := p.jrnl.Journal().List(t.Context(), journal.Filter{Subjects: []identity.Hash{hasher.ID(id)}, Limit: 1000})
		must(t, err)
		for _, e := range page.Entries {
			t.Logf("  request %s %s %s decided=%v received %v finished %v reason %q decision %+v outcomes %+v",
				e.ID, e.Type, e.Status, e.Decided, e.Received, e.Finished, e.Reason, e.Decision, e.Backends)
		}
	}
}

// soakStoredMessages returns the message ids stored for anyone.
func soakStoredMessages(t *testing.T, s *site, p *proc) map[string]bool {
	t.Helper()
	rows, err := s.dataDB(t).QueryContext(t.Context(), s.q("SELECT message_id FROM "+s.table("profile_messages")))
	must(t, err)
	out := map[string]bool{}
	for rows.Next() {
		var id string
		must(t, rows.Scan(&id))
		out[id] = true
	}
	must(t, rows.Err())
	must(t, rows.Close())
	return out
}

// soakJournal counts the journal's records and kills the process after the
// one the plan names.
type soakJournal struct {
	journal.Journal
	mu    sync.Mutex
	n     int
	crash int
}

func (j *soakJournal) Put(ctx context.Context, e *journal.Entry) error {
	if err := j.Journal.Put(ctx, e); err != nil {
		return err
	}
	j.mu.Lock()
	j.n++
	die := j.crash > 0 && j.n == j.crash
	j.mu.Unlock()
	if die {
		fmt.Println("SOAK-CRASH after journal record", j.n)
		os.Exit(soakExit)
	}
	return nil
}

// TestSoakChild is a process of TestSoak.
// soakDeviceKnown reports whether a message carrying person's user id with
// the device anon was collected (ended without an error) before at: from
// then on the graph links the device to the person. Under load a device may
// not have been seen with the user id before the person objected, and a
// message about it alone then rightly starts a profile of its own.
func soakDeviceKnown(begun, ended map[string]soakLine, person int, anon string, at time.Time) bool {
	for id, e := range ended {
		if b, ok := begun[id]; ok && b.Person == person && b.WithUser && b.Anon == anon && e.Err == "" && e.At.Before(at) {
			return true
		}
	}
	return false
}

func TestSoakChild(t *testing.T) {
	cfg := os.Getenv(soakChildEnv)
	if cfg == "" {
		t.Skip("a process TestSoak starts")
	}
	var plan soakPlan
	must(t, json.Unmarshal([]byte(cfg), &plan))
	p := plan.Site.open(t)
	c, err := privacy.New(
		privacy.WithIdentity(p.data.Graph()), privacy.WithProfiles(p.data.Profiles()),
		privacy.WithAudiences(p.data.Audiences()), privacy.WithSuppressions(p.data.Suppressions()),
		privacy.WithJournal(&soakJournal{Journal: p.jrnl.Journal(), crash: plan.CrashAfter}),
		privacy.WithAuditLog(p.jrnl.AuditLog()), privacy.WithKey(testKey),
		privacy.WithInstance(fmt.Sprint("soak-child-", plan.Child)), privacy.WithLease(plan.Lease),
		privacy.WithSchedule(privacy.Schedule{Recover: plan.Lease / 2}),
	)
	must(t, err)
	defer c.Close()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { _ = c.Run(ctx) }()

	var outMu sync.Mutex
	report := func(l soakLine) {
		b, _ := json.Marshal(l)
		outMu.Lock()
		fmt.Println("SOAK " + string(b))
		outMu.Unlock()
	}
	time.Sleep(time.Until(plan.Start))
	phase2 := plan.Start.Add(plan.Phase1)
	end := phase2.Add(plan.Phase2)
	var wg sync.WaitGroup
	// The rights, at random times in the second phase, after its guard, and
	// not before this child has identified its people: under load that loop
	// ran into the second phase, and a right on an email not yet collected
	// rightly found no one (or suppressed the email alone, and a later
	// message with the user id but no email made a profile of its own),
	// which the checks took for failures. Rights alone write the journal,
	// so no crash point cuts the loop short.
	identified := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-identified
		rr := mrand.New(mrand.NewPCG(plan.Seed, plan.Seed+2))
		for _, i := range rr.Perm(len(plan.Assigned)) {
			person := plan.People[plan.Assigned[i]]
			at := phase2.Add(plan.Guard + time.Duration(rr.Int64N(int64(plan.Phase2-plan.Guard))))
			time.Sleep(time.Until(at))
			for k, req := range soakRequests(person) {
				if k > 0 {
					time.Sleep(time.Duration(50+rr.IntN(150)) * time.Millisecond)
				}
				rc, err := c.Apply(context.Background(), req)
				l := soakLine{Kind: "right", Person: plan.Assigned[i], At: time.Now()}
				if rc != nil {
					l.Request, l.Status = rc.ID, string(rc.Status)
				}
				if err != nil {
					l.Err = err.Error()
				}
				report(l)
				if err != nil {
					break // the next request waits for this one: the third process applies it
				}
			}
		}
	}()
	// Each person is identified once first, by the child they are
	// assigned to, so their email is known to the graph: the rights name
	// people by email, and a person whose random messages held no identify
	// would be known to nobody by it.
	for i, person := range plan.People {
		if soakChildOf(i) != plan.Child {
			continue
		}
		id := fmt.Sprintf("m%s-c%d-first", strings.TrimPrefix(person.UID, "soak"), plan.Child)
		report(soakLine{Kind: "begin", Person: i, ID: id, At: time.Now(), Anon: person.Anons[0], WithUser: true, Identify: true})
		err := c.Collect(context.Background(), privacy.Identify{MessageID: id, UserID: person.UID, AnonymousID: person.Anons[0],
			Traits: map[string]any{"email": person.Email, "plan": "free"}, Timestamp: time.Now()})
		l := soakLine{Kind: "end", Person: i, ID: id, At: time.Now()}
		if err != nil {
			l.Err = err.Error()
		}
		report(l)
	}
	close(identified)
	// Collection: about everyone in the first phase, about everyone but the
	// erased in the second (the rectified by tracks only). Devices first seen
	// alone make profiles of their own, which later messages merge.
	for w := range 3 {
		wg.Add(1)
		rw := mrand.New(mrand.NewPCG(plan.Seed, uint64(10+w)))
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(end); n++ {
				second := !time.Now().Before(phase2)
				i := rw.IntN(len(plan.People))
				person := plan.People[i]
				if second && person.Fate == "erase" {
					continue
				}
				id := fmt.Sprintf("m%s-c%d-w%d-%d", strings.TrimPrefix(person.UID, "soak"), plan.Child, w, n)
				anon := person.Anons[rw.IntN(len(person.Anons))]
				var m privacy.Message
				withUser, identify := true, false
				switch k := rw.IntN(4); {
				case k == 0 && !(second && person.Fate == "rectify"):
					identify = true
					m = privacy.Identify{MessageID: id, UserID: person.UID, AnonymousID: anon,
						Traits: map[string]any{"email": person.Email, "plan": []string{"free", "pro"}[rw.IntN(2)]}, Timestamp: time.Now()}
				case k == 1:
					withUser = false
					m = privacy.Track{MessageID: id, AnonymousID: anon, Event: "Seen", Timestamp: time.Now()}
				default:
					m = privacy.Track{MessageID: id, UserID: person.UID, AnonymousID: anon, Event: "Viewed", Timestamp: time.Now()}
				}
				report(soakLine{Kind: "begin", Person: i, ID: id, At: time.Now(), Anon: anon, WithUser: withUser, Identify: identify})
				err := c.Collect(context.Background(), m)
				l := soakLine{Kind: "end", Person: i, ID: id, At: time.Now()}
				if err != nil {
					l.Err = err.Error()
				}
				report(l)
				time.Sleep(time.Duration(rw.IntN(3)) * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	must(t, c.Flush(context.Background()))
}
