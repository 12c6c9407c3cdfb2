package sqlstore_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/sqlstore"
)

// logDest is a destination that notes every call it answered with success,
// in order ("send <message id>", "delete <request id> <profile id>"), in
// memory and, when file is set, appended to it before the call returns: a
// line there is a delivery, whatever happens to the process next.
type logDest struct {
	name  string
	delay time.Duration // before each call answers
	fail  atomic.Bool   // every call fails while set
	file  *os.File

	mu  sync.Mutex
	log []string
}

func (d *logDest) Name() string { return d.name }

func (d *logDest) Send(ctx context.Context, msgs []destination.Message) error {
	lines := make([]string, len(msgs))
	for i, m := range msgs {
		lines[i] = "send " + m.MessageID
	}
	return d.answer(lines)
}

func (d *logDest) Delete(ctx context.Context, del destination.Deletion) error {
	return d.answer([]string{"delete " + del.RequestID + " " + string(del.ProfileID)})
}

func (d *logDest) answer(lines []string) error {
	time.Sleep(d.delay)
	if d.fail.Load() {
		return errors.New(d.name + " is down")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.file != nil {
		// One write: a kill leaves the call's lines whole or absent.
		if _, err := d.file.WriteString(strings.Join(lines, "\n") + "\n"); err != nil {
			return err
		}
	}
	d.log = append(d.log, lines...)
	return nil
}

func (d *logDest) calls() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.log)
}

// outboxRows counts the site's outbox rows in the state.
func (s *site) outboxRows(t testing.TB, state outbox.State) int {
	t.Helper()
	var n int
	must(t, s.dataDB(t).QueryRowContext(t.Context(), s.q("SELECT count(*) FROM "+s.table("outbox")+" WHERE state = $1"), string(state)).Scan(&n))
	return n
}

// flushWithin flushes c, failing the test after the timeout.
func flushWithin(t testing.TB, c *privacy.Controller, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

// killChildPlan is what the child of TestDeliverySurvivesAKill does.
const (
	killPeople      = 20
	killMessages    = 10 // per person
	killBatch       = 5  // the child's BatchSize: at most this many in flight
	killErased      = 3  // people u0 to u2
	killRectifiedID = "u3"
)

// TestDeliverySurvivesAKill: a child process collects about people, erases
// some and rectifies one, with a slow destination, and is killed (SIGKILL)
// while delivery is under way. A new process with a working destination
// delivers everything committed: every message of the people kept (counted
// by message id: none missing, repeats only for the batch in flight at the
// kill), every deletion, nothing about an erased person after their
// deletion; and every request is FINISHED.
func TestDeliverySurvivesAKill(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			deliverySurvivesAKill(t, d.dialect)
		})
	}
}

func deliverySurvivesAKill(t *testing.T, d sqlstore.Dialect) {
	s := newSite(t, d)
	ctx := t.Context()
	committed := map[string]bool{}
	var requests []string
	erased := map[string]string{} // request id -> "<profile id> <user id>"
	cmd, logPath := startChild(t, s, "TestDeliveryKillChild", func(f []string) {
		switch {
		case len(f) == 2 && f[0] == "committed":
			committed[f[1]] = true
		case len(f) == 4 && f[0] == "erased":
			erased[f[1]] = f[2] + " " + f[3]
			requests = append(requests, f[1])
		case len(f) == 2 && f[0] == "rectified":
			requests = append(requests, f[1])
		}
	})
	// Mid-delivery: something delivered, more still owed.
	waitUntil(t, "the child delivers", func() bool {
		b, _ := os.ReadFile(logPath)
		return len(b) > 0
	})
	pending := s.outboxRows(t, outbox.Pending)
	must(t, cmd.Process.Kill())
	cmd.Wait()
	if pending == 0 {
		t.Fatal("the child delivered everything before the kill: the test proves nothing")
	}
	if len(committed) != killPeople*killMessages || len(requests) != killErased+1 {
		t.Fatalf("the child committed %d messages and %d requests; want %d and %d", len(committed), len(requests), killPeople*killMessages, killErased+1)
	}
	b, err := os.ReadFile(logPath)
	must(t, err)
	before := strings.Split(strings.TrimSpace(string(b)), "\n")

	// The host restarted (the same instance name: it takes its own requests
	// back at once), with the destination working.
	p := s.open(t)
	crm := &logDest{name: "crm"}
	c := p.controller(t, nil, privacy.WithDestinations(crm), privacy.WithInstance("child"),
		privacy.WithDelivery(privacy.Delivery{Poll: 50 * time.Millisecond, Lease: time.Second}))
	if _, err := c.Recover(ctx); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	flushWithin(t, c, 2*time.Minute)
	after := crm.calls()
	timeline := append(slices.Clone(before), after...)
	t.Logf("%d outbox items pending at the kill; %d deliveries before it, %d after", pending, len(before), len(after))

	seen := map[string]int{}
	for _, line := range timeline {
		seen[line]++
	}
	duplicates := 0
	for _, n := range seen {
		duplicates += n - 1
	}
	if duplicates > killBatch {
		t.Errorf("%d deliveries repeated; want at most the %d of the batch in flight at the kill", duplicates, killBatch)
	}
	erasedUsers := map[string]bool{}
	for req, who := range erased {
		pid, uid, _ := strings.Cut(who, " ")
		erasedUsers[uid] = true
		del := slices.Index(timeline, "delete "+req+" "+pid)
		if del < 0 {
			t.Errorf("the deletion of %s (request %s) was never delivered", uid, req)
			continue
		}
		for i, line := range timeline[del+1:] {
			if strings.HasPrefix(line, "send "+uid+"-") {
				t.Errorf("%q delivered after %s's deletion (at %d, the deletion at %d)", line, uid, del+1+i, del)
			}
		}
	}
	checkDelivered(t, slices.Sorted(maps.Keys(committed)), seen, func(uid string) bool { return erasedUsers[uid] })
	for _, id := range requests {
		r, err := c.Status(ctx, id)
		if err != nil || r.Status != privacy.Finished || len(r.Destinations) != 1 || r.Destinations[0].Status != privacy.Finished {
			t.Errorf("request %s after the restart = %+v, %v; want FINISHED, crm FINISHED", id, r, err)
		}
	}
	if n := s.outboxRows(t, outbox.Pending); n != 0 {
		t.Errorf("%d outbox items still pending", n)
	}
}

// startChild starts the test binary again, running only the test child with
// the site and a delivery log file (childSite reads them), and reads the
// child's output until it prints READY, handing each line's fields to line.
// It returns the running child and the log's path; a child that ends first
// fails the test.
func startChild(t *testing.T, s *site, child string, line func(fields []string)) (*exec.Cmd, string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "delivered.log")
	cfg, err := json.Marshal(s)
	must(t, err)
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^"+child+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "GDPRKIT_DELIVERY_CHILD="+string(cfg), "GDPRKIT_DELIVERY_LOG="+logPath)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	sc := bufio.NewScanner(stdout)
	var out strings.Builder
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		f := strings.Fields(sc.Text())
		if len(f) == 1 && f[0] == "READY" {
			return cmd, logPath
		}
		line(f)
	}
	cmd.Process.Kill()
	cmd.Wait()
	t.Fatalf("the child ended before it was ready:\n%s\n%s", out.String(), stderr.String())
	return nil, ""
}

// checkDelivered fails the test for each message id ("<user id>-...")
// committed but never sent in the timeline's counts (seen, by line), but for
// the users erased says to leave out.
func checkDelivered(t *testing.T, committed []string, seen map[string]int, erased func(uid string) bool) {
	t.Helper()
	missing := 0
	for _, id := range committed {
		uid, _, _ := strings.Cut(id, "-")
		if !erased(uid) && seen["send "+id] == 0 {
			missing++
			if missing <= 5 {
				t.Errorf("committed message %s was never delivered", id)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d committed messages never delivered", missing)
	}
}

// deliveryChild is, in a process startChild started, the parent's site and
// the delivery log to append to; it skips the test in any other process.
func deliveryChild(t *testing.T, parent string) (*site, *os.File) {
	s := childSite(t, "GDPRKIT_DELIVERY_CHILD", "the process "+parent+" starts, and kills")
	f, err := os.OpenFile(os.Getenv("GDPRKIT_DELIVERY_LOG"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	must(t, err)
	t.Cleanup(func() { f.Close() })
	return s, f
}

// TestDeliveryKillChild is the process TestDeliverySurvivesAKill starts and
// kills: it collects, erases and rectifies, printing what committed, then
// waits to be killed while its slow destination works through the outbox.
func TestDeliveryKillChild(t *testing.T) {
	s, f := deliveryChild(t, "TestDeliverySurvivesAKill")
	ctx := t.Context()
	p := s.open(t)
	slow := &logDest{name: "crm", delay: 100 * time.Millisecond, file: f}
	c := p.controller(t, nil, privacy.WithDestinations(slow), privacy.WithInstance("child"),
		privacy.WithDelivery(privacy.Delivery{BatchSize: killBatch, Lease: time.Second}))
	base := time.Now()
	for i := range killMessages {
		var batch []privacy.Message
		for u := range killPeople {
			uid := fmt.Sprint("u", u)
			id := fmt.Sprintf("%s-%d", uid, i)
			if i == 0 {
				batch = append(batch, privacy.Identify{MessageID: id, UserID: uid,
					Traits: map[string]any{"email": uid + "@example.com", "plan": "pro"}, Timestamp: base})
			} else {
				batch = append(batch, privacy.Track{MessageID: id, UserID: uid, Event: "Page Viewed", Timestamp: base.Add(time.Duration(i) * time.Second)})
			}
		}
		if err := c.CollectBatch(ctx, batch); err != nil {
			t.Fatalf("CollectBatch: %v", err)
		}
		for _, m := range batch {
			fmt.Printf("committed %s\n", messageID(m))
		}
	}
	for u := range killErased {
		uid := fmt.Sprint("u", u)
		prof, err := c.Profile(ctx, identity.ID{Type: identity.TypeUserID, Value: uid})
		must(t, err)
		r, err := c.Erase(ctx, identity.ID{Type: identity.TypeUserID, Value: uid})
		if err != nil || r.Status != privacy.Running && r.Status != privacy.Finished {
			t.Fatalf("Erase(%s) = %+v, %v", uid, r, err)
		}
		fmt.Printf("erased %s %s %s\n", r.ID, prof.ID, uid)
	}
	r, err := c.Rectify(ctx, identity.ID{Type: identity.TypeUserID, Value: killRectifiedID}, map[string]any{"plan": "gold"})
	if err != nil {
		t.Fatalf("Rectify: %v", err)
	}
	fmt.Printf("rectified %s\n", r.ID)
	fmt.Println("READY")
	time.Sleep(2 * time.Minute)
	t.Fatal("the child was not killed")
}

// messageID returns a collected message's id.
func messageID(m privacy.Message) string {
	switch m := m.(type) {
	case privacy.Identify:
		return m.MessageID
	case privacy.Track:
		return m.MessageID
	}
	return ""
}

// waitUntil polls cond for up to 30 seconds.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// TestTwoInstancesDrainOneOutbox: two Controllers, each with its own pool,
// deliver one PostgreSQL outbox at once: every item is delivered exactly
// once (no lease lapses here, so no repeat is allowed), each person's items
// in the order they were enqueued, and both instances take a share.
func TestTwoInstancesDrainOneOutbox(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	ctx := t.Context()
	const people, perPerson = 100, 20
	producer := s.open(t)
	ob := producer.data.Outbox()
	var order []string // the message ids, in enqueue order
	for start := 0; start < perPerson; start += 5 {
		var items []outbox.Item
		for n := start; n < start+5; n++ {
			for u := range people {
				pid := identity.ProfileID(fmt.Sprintf("use_drain%03d", u))
				id := fmt.Sprintf("%s-%02d", pid, n)
				order = append(order, id)
				items = append(items, outbox.Item{Destination: "crm", Profile: pid, Enqueued: time.Now(),
					Message: &destination.Message{MessageID: id, Type: destination.TypeTrack, Event: "E", ProfileID: pid, Timestamp: time.Now()}})
			}
		}
		tx, err := ob.Begin(ctx)
		must(t, err)
		must(t, tx.Enqueue(ctx, items))
		must(t, tx.Commit(ctx))
	}

	// Both record into one sequence, in the order the calls returned.
	var mu sync.Mutex
	var seq []string
	byInstance := map[string]int{}
	dest := func(instance string) destination.Destination {
		return &funcDest{name: "crm", send: func(msgs []destination.Message) error {
			time.Sleep(time.Millisecond)
			mu.Lock()
			defer mu.Unlock()
			for _, m := range msgs {
				seq = append(seq, m.MessageID)
			}
			byInstance[instance] += len(msgs)
			return nil
		}}
	}
	var cs []*privacy.Controller
	for _, name := range []string{"a", "b"} {
		cs = append(cs, s.open(t).controller(t, nil, privacy.WithDestinations(dest(name)), privacy.WithInstance(name),
			privacy.WithDelivery(privacy.Delivery{BatchSize: 20, Poll: 20 * time.Millisecond})))
	}
	waitUntil(t, "the outbox is drained", func() bool { return s.outboxRows(t, outbox.Pending) == 0 })
	for _, c := range cs {
		flushWithin(t, c, time.Minute)
	}
	mu.Lock()
	defer mu.Unlock()
	count := map[string]int{}
	for _, id := range seq {
		count[id]++
	}
	for _, id := range order {
		if count[id] != 1 {
			t.Errorf("%s delivered %d times; want once", id, count[id])
		}
	}
	// Per person, the order of delivery is the order of enqueue.
	last := map[string]string{}
	for _, id := range seq {
		pid, _, _ := strings.Cut(id, "-")
		if prev := last[pid]; prev != "" && id < prev {
			t.Errorf("%s delivered after %s", id, prev)
		}
		last[pid] = id
	}
	if byInstance["a"] == 0 || byInstance["b"] == 0 {
		t.Errorf("deliveries by instance %v; want both to take a share", byInstance)
	}
	t.Logf("%d items: %v by instance", len(seq), byInstance)
}

// funcDest is a destination whose Send is a function; it cannot delete.
type funcDest struct {
	name string
	send func([]destination.Message) error
}

func (d *funcDest) Name() string { return d.name }

func (d *funcDest) Send(_ context.Context, msgs []destination.Message) error { return d.send(msgs) }

func (d *funcDest) Delete(context.Context, destination.Deletion) error {
	return destination.ErrNotSupported
}

// TestRemovedDestinationStaysOwed: a process erases a person while one of
// its destinations is down; it restarts without that destination. The
// request stays RUNNING, the destination still on its receipt and in the
// delivery stats with the deletion pending, through Recover; once a process
// has the destination again, the deletion is delivered and the request
// FINISHED.
func TestRemovedDestinationStaysOwed(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			s := newSite(t, d.dialect)
			ctx := t.Context()
			ada := identity.ID{Type: identity.TypeUserID, Value: "ada"}

			crm, old := &logDest{name: "crm"}, &logDest{name: "old"}
			old.fail.Store(true)
			p1 := s.open(t)
			c1 := p1.controller(t, nil, privacy.WithDestinations(crm, old), privacy.WithInstance("host"),
				privacy.WithDelivery(privacy.Delivery{Backoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Lease: 200 * time.Millisecond}))
			must(t, c1.Collect(ctx, privacy.Track{MessageID: "m1", UserID: "ada", Event: "E", Timestamp: time.Now()}))
			prof, err := c1.Profile(ctx, ada)
			must(t, err)
			r, err := c1.Erase(ctx, ada)
			must(t, err)
			waitUntil(t, "crm has the deletion, settled", func() bool {
				st, err := c1.DeliveryStats(ctx)
				return err == nil && st["crm"].Pending == 0 && slices.Contains(crm.calls(), "delete "+r.ID+" "+string(prof.ID))
			})
			c1.Close()
			p1.close()

			// Restarted without "old".
			p2 := s.open(t)
			c2 := p2.controller(t, nil, privacy.WithDestinations(crm), privacy.WithInstance("host"))
			if _, err := c2.Recover(ctx); err != nil {
				t.Fatalf("Recover: %v", err)
			}
			flushWithin(t, c2, time.Minute)
			got, err := c2.Status(ctx, r.ID)
			must(t, err)
			outcomes := map[string]privacy.Status{}
			for _, o := range got.Destinations {
				outcomes[o.Name] = o.Status
			}
			if got.Status != privacy.Running || outcomes["old"] != privacy.Running || outcomes["crm"] != privacy.Finished {
				t.Fatalf("after a restart without the destination, the receipt = %+v; want RUNNING, old RUNNING, crm FINISHED", got)
			}
			st, err := c2.DeliveryStats(ctx)
			must(t, err)
			// The deletion; and m1, when its call to old was in flight at
			// the erasure: emptied, held until a deliverer of old lets it go.
			if p := st["old"].Pending; p < 1 || p > 2 {
				t.Errorf("DeliveryStats[old] = %+v; want the deletion pending", st["old"])
			}
			c2.Close()
			p2.close()

			// Back with "old", working.
			p3 := s.open(t)
			old3 := &logDest{name: "old"}
			c3 := p3.controller(t, nil, privacy.WithDestinations(crm, old3), privacy.WithInstance("host"),
				privacy.WithDelivery(privacy.Delivery{Poll: 20 * time.Millisecond}))
			if _, err := c3.Recover(ctx); err != nil {
				t.Fatalf("Recover: %v", err)
			}
			flushWithin(t, c3, time.Minute)
			if diff := slices.Compare(old3.calls(), []string{"delete " + r.ID + " " + string(prof.ID)}); diff != 0 {
				t.Errorf("old got %v; want the deletion alone (ada's message went with her erasure)", old3.calls())
			}
			if got, err := c3.Status(ctx, r.ID); err != nil || got.Status != privacy.Finished {
				t.Errorf("with the destination back, the receipt = %+v, %v; want FINISHED", got, err)
			}
		})
	}
}

// TestAnAmbiguousCommitIsStillDelivered: a message whose commit succeeded in
// the database while the caller got an error is forwarded all the same (its
// outbox row committed with it), and the client's resend, a duplicate, is
// stored once: the destination gets the message, and nothing twice but what
// at least once allows.
//
// PostgreSQL only: a lost answer is a network's; SQLite answers in process.
func TestAnAmbiguousCommitIsStillDelivered(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	ctx := t.Context()
	p := s.open(t)
	crm := &logDest{name: "crm"}
	// No polling: nothing but the collection commits while the fault is armed.
	c := p.controller(t, nil, privacy.WithDestinations(crm), privacy.WithDelivery(privacy.Delivery{Poll: time.Hour}))
	must(t, c.Collect(ctx, privacy.Identify{MessageID: "m0", UserID: "ada", Timestamp: time.Now()}))
	flushWithin(t, c, time.Minute)
	msgs := []privacy.Message{
		privacy.Track{MessageID: "m1", UserID: "ada", Event: "Viewed", Timestamp: time.Now()},
		privacy.Track{MessageID: "m2", UserID: "ada", Event: "Bought", Timestamp: time.Now()},
	}
	// The first as one message, the second in a batch. Either call
	// may retry on its own, find its message stored and succeed.
	p.cnt.loseCommits.Store(1)
	err := c.Collect(ctx, msgs[0])
	if p.cnt.loseCommits.Load() > 0 {
		t.Fatal("the test's fault did not fire")
	}
	t.Logf("Collect with its commit's answer lost: %v", err)
	p.cnt.loseCommits.Store(1)
	err = c.CollectBatch(ctx, msgs[1:])
	if p.cnt.loseCommits.Load() > 0 {
		t.Fatal("the test's fault did not fire")
	}
	t.Logf("CollectBatch with its commit's answer lost: %v", err)
	p.cnt.loseCommits.Store(0)
	// The client sends both again.
	must(t, c.Collect(ctx, msgs[0]))
	must(t, c.CollectBatch(ctx, msgs[1:]))
	flushWithin(t, c, time.Minute)
	got := crm.calls()
	for _, id := range []string{"m1", "m2"} {
		if !slices.Contains(got, "send "+id) {
			t.Errorf("the destination got %v; want %s, whose commit succeeded", got, id)
		}
	}
	prof, err := c.Profile(ctx, identity.ID{Type: identity.TypeUserID, Value: "ada"})
	must(t, err)
	if stored := s.storedMessages(t, s.dataDB(t), prof.ID); !stored["m1"] || !stored["m2"] || len(stored) != 3 {
		t.Errorf("stored %v; want m0, m1 and m2 once each", stored)
	}
}
