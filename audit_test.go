package privacy_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/journal"
)

// flakyAuditLog is an audit log whose appends fail while failing is set.
type flakyAuditLog struct {
	audit.Log
	failing atomic.Bool
}

func (l *flakyAuditLog) Append(ctx context.Context, r audit.Record) error {
	if l.failing.Load() {
		return errors.New("audit storage unavailable")
	}
	return l.Log.Append(ctx, r)
}

// TestAuditWithoutGaps: a request is not reported finished, nor recorded so,
// before every one of its audit records is in the log; while the log fails it
// stays RUNNING, owing them, and Recover appends them and finishes it. A
// request the journal shows ended without the record of its end in the log is
// reported by VerifyAudit. (Audit failures used to be logged only.)
func TestAuditWithoutGaps(t *testing.T) {
	ctx := context.Background()
	log := &flakyAuditLog{Log: audit.NewMemLog()}
	j := journal.NewMemJournal()
	e := newEnv(t, privacy.WithAuditLog(log), privacy.WithJournal(j), privacy.WithInstance("host-1"))
	person(t, e, "ada")

	log.failing.Store(true)
	r, err := e.c.Erase(ctx, user("ada"))
	if err != nil || r.Status != privacy.Running {
		t.Fatalf("Erase while the audit log fails = %+v, %v; want RUNNING: not finished without its records", r, err)
	}
	got, err := j.Get(ctx, r.ID)
	if err != nil || got.Status != privacy.Running || len(got.AuditOwed) == 0 {
		t.Fatalf("the journal shows %+v, %v; want RUNNING, owing its audit records", got, err)
	}
	if _, err := e.c.Profile(ctx, user("ada")); !errors.Is(err, privacy.ErrNotFound) {
		t.Errorf("Profile after the erasure = %v; want ErrNotFound: the data is erased, only the records wait", err)
	}

	log.failing.Store(false)
	if n, err := e.c.Recover(ctx); n != 1 || err != nil {
		t.Fatalf("Recover once the audit log is back = %d, %v; want 1, nil", n, err)
	}
	if r, err := e.c.Status(ctx, r.ID); err != nil || r.Status != privacy.Finished {
		t.Fatalf("Status after Recover = %+v, %v; want FINISHED", r, err)
	}
	recs, err := log.Records(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, rec := range recs {
		if rec.RequestID == r.ID {
			actions = append(actions, rec.Action)
		}
	}
	for _, want := range []string{"received", "decided", "finished"} {
		if !slices.Contains(actions, want) {
			t.Errorf("the request's audit records are %v; %q is missing", actions, want)
		}
	}
	if _, err := e.c.VerifyAudit(ctx); err != nil {
		t.Errorf("VerifyAudit = %v", err)
	}

	// A request recorded ended behind the audit log's back is found.
	ghost := &journal.Entry{ID: "req_ghost", Type: privacy.DeleteOnly, Status: privacy.Finished, Received: t0}
	if err := j.Put(ctx, ghost); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.VerifyAudit(ctx); !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "req_ghost") {
		t.Errorf("VerifyAudit with a request ended without its record = %v; want ErrTampered naming it", err)
	}
}

// auditEnds returns the actions and statuses of the end records ("finished",
// "failed", "invalid") the audit log holds for a request.
func auditEnds(t *testing.T, log audit.Log, id string) []string {
	t.Helper()
	var out []string
	for after := uint64(0); ; {
		rs, err := log.Records(context.Background(), after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.RequestID == id && (r.Action == "finished" || r.Action == "failed" || r.Action == "invalid") {
				out = append(out, r.Action+" "+r.Status)
			}
			after = r.Seq
		}
		if len(rs) < 1000 {
			return out
		}
	}
}

// TestAStaleHolderNeverAuditsAnEnd: host A stalls while its
// erasure's deletion is being delivered; its lease lapses and B takes the
// request over. When A wakes up and its delivery completes, its journal write
// is refused (the claim moved on) before anything reaches the audit log: the
// log shows the request finished once, by the instance that recorded it, B.
// (A review found the end appended before the journal's compare-and-swap.)
//
// A's deliverer stays alive: delivery leases are wall-clock and renewed while
// its call runs, and it retries each timed-out call at once, so B cannot be
// relied on to deliver the deletion while the destination still hangs (A's
// retries could use up MaxAttempts and B would rightly record FAILED). The
// destination answers once B holds the request, before B waits for it.
func TestAStaleHolderNeverAuditsAnEnd(t *testing.T) {
	h := newHosts()
	// A's view of the log counts the end records A appends: the log
	// refuses a record it holds already, so the log alone would not show
	// A's stale end appended before its journal write was refused.
	aLog := &endCountingAuditLog{Log: h.audit}
	a, _, g, r := h.erasingAtA(t, privacy.WithAuditLog(aLog))
	clkB := newClock(t0)
	b := h.host(t, "host-b", clkB, privacy.WithDestinations(destination.NewRecorder("crm")))
	ctx := context.Background()
	// A stalls (it does not renew: its ticker is a third of a minute away);
	// past its lease, B takes the erasure over.
	clkB.advance(2 * time.Minute)
	if n, err := b.Recover(ctx); n != 1 || err != nil {
		t.Fatalf("Recover after A's lease lapsed = %d, %v; want 1, nil", n, err)
	}
	// A wakes up: its delivery completes (unless B's deliverer got the
	// deletion first), and its stale end is refused; B finishes the request.
	close(g.open)
	flush(t, b)
	if e := statusOf(t, h.mem, r.ID); e.Owner != "host-b" || e.Status != privacy.Finished {
		t.Fatalf("after B took over: owner %q, %s; want host-b's, FINISHED", e.Owner, e.Status)
	}
	flush(t, a)
	time.Sleep(20 * time.Millisecond)
	if ends := auditEnds(t, h.audit, r.ID); len(ends) != 1 {
		t.Errorf("the audit log records the request's end %d times: %v; want once, by the instance that recorded it", len(ends), ends)
	}
	if n := aLog.ends.Load(); n != 0 {
		t.Errorf("A, no longer the request's holder, appended its end to the audit log %d times; want never", n)
	}
	if _, err := b.VerifyAudit(ctx); err != nil {
		t.Errorf("VerifyAudit = %v", err)
	}
}

// endCountingAuditLog counts the end records ("finished", "failed",
// "invalid") appended through it.
type endCountingAuditLog struct {
	audit.Log
	ends atomic.Int64
}

func (l *endCountingAuditLog) Append(ctx context.Context, r audit.Record) error {
	if r.Action == "finished" || r.Action == "failed" || r.Action == "invalid" {
		l.ends.Add(1)
	}
	return l.Log.Append(ctx, r)
}

// stallingAuditLog is host A's view of the shared audit log: its first append
// of an end record stalls (a long GC pause, a slow audit database) until
// released.
type stallingAuditLog struct {
	audit.Log
	once     sync.Once
	stalled  chan struct{}
	release  chan struct{}
	appended chan struct{}
}

func (l *stallingAuditLog) Append(ctx context.Context, r audit.Record) error {
	stall := false
	if r.Action == "finished" {
		l.once.Do(func() { stall = true })
	}
	if !stall {
		return l.Log.Append(ctx, r)
	}
	close(l.stalled)
	<-l.release
	defer close(l.appended)
	return l.Log.Append(ctx, r)
}

// TestAStalledHolderNeverAuditsAnEndTwice: host A journals its erasure's end
// as owed (the compare-and-swap succeeds: it still holds the claim) and then
// stalls before its append of the end record reaches the audit log. Past A's
// lease, B takes the request over, finds the end owed, appends it and records
// it. A wakes up and appends the same note: the log holds a request's note
// once, so the end is in it once. (A review found it twice: a check before
// appending cannot see an append still on its way.)
func TestAStalledHolderNeverAuditsAnEndTwice(t *testing.T) {
	h := newHosts()
	g := newGate()
	stalling := &stallingAuditLog{Log: h.audit, stalled: make(chan struct{}), release: make(chan struct{}), appended: make(chan struct{})}
	a := h.host(t, "host-a", newClock(t0), privacy.WithDestinations(g), privacy.WithAuditLog(stalling))
	ctx := context.Background()
	person(t, &env{c: a, graph: h.graph, profiles: h.profiles}, "ada")
	r, err := a.Erase(ctx, user("ada"))
	if err != nil || r.Status != privacy.Running {
		t.Fatalf("Erase = %+v, %v; want RUNNING while the destination waits", r, err)
	}
	close(g.open) // the deletion is delivered: A ends the request
	select {
	case <-stalling.stalled:
	case <-time.After(10 * time.Second):
		t.Fatal("A never appended the end record")
	}
	if e := statusOf(t, h.mem, r.ID); e.Status != privacy.Running || e.Owner != "host-a" {
		t.Fatalf("while A stalls the journal shows %s held by %q; want RUNNING, host-a's, its end owed", e.Status, e.Owner)
	}

	// Past A's lease, B takes the request over and completes the owed end.
	clkB := newClock(t0)
	b := h.host(t, "host-b", clkB, privacy.WithDestinations(destination.NewRecorder("crm")))
	clkB.advance(2 * time.Minute)
	if n, err := b.Recover(ctx); n != 1 || err != nil {
		t.Fatalf("Recover after A's lease lapsed = %d, %v; want 1, nil", n, err)
	}
	if e := statusOf(t, h.mem, r.ID); e.Status != privacy.Finished || e.Owner != "host-b" {
		t.Fatalf("after B's Recover the journal shows %s held by %q; want FINISHED, host-b's", e.Status, e.Owner)
	}

	// A wakes up.
	close(stalling.release)
	<-stalling.appended
	time.Sleep(50 * time.Millisecond)
	if ends := auditEnds(t, h.audit, r.ID); len(ends) != 1 {
		t.Errorf("the audit log records the request's end %d times: %v; want once", len(ends), ends)
	}
}

// countingAuditLog counts the records its Records calls return.
type countingAuditLog struct {
	audit.Log
	read atomic.Int64
}

func (l *countingAuditLog) Records(ctx context.Context, after uint64, limit int) ([]audit.Record, error) {
	rs, err := l.Log.Records(ctx, after, limit)
	l.read.Add(int64(len(rs)))
	return rs, err
}

// TestRecoverNeverReadsTheAuditLog: a Recover after a restart appends what
// the requests it takes over owe without reading the log's history (a log of
// years of records). (A review found a search for records a dead holder had
// appended reading the whole log once per request taken over; the log now
// refuses a note it holds instead.)
func TestRecoverNeverReadsTheAuditLog(t *testing.T) {
	h := newHosts()
	ctx := context.Background()
	const history = 5000
	chain := audit.NewChain(h.audit, worldKey)
	for i := range history {
		if err := chain.Append(ctx, audit.Record{At: t0, Action: "received", RequestID: fmt.Sprint("req_old_", i)}); err != nil {
			t.Fatal(err)
		}
	}
	clk := newClock(t0)
	a := h.host(t, "host-1", clk, privacy.WithDestinations(newGate()))
	person(t, &env{c: a, graph: h.graph, profiles: h.profiles}, "ada")
	r, err := a.Erase(ctx, user("ada"))
	if err != nil || r.Status != privacy.Running {
		t.Fatalf("Erase = %+v, %v; want RUNNING while the destination waits", r, err)
	}
	a.Close() // the process stops; the same instance restarts
	log := &countingAuditLog{Log: h.audit}
	b := h.host(t, "host-1", clk, privacy.WithAuditLog(log), privacy.WithDestinations(destination.NewRecorder("crm")))
	log.read.Store(0) // New checks the key against the last two records
	if n, err := b.Recover(ctx); n != 1 || err != nil {
		t.Fatalf("Recover = %d, %v; want 1, nil", n, err)
	}
	// Each append reads the record before the last (to check the chain is
	// under this Controller's key): a few records, never the history.
	if n := log.read.Load(); n > 8 {
		t.Errorf("Recover of one request read %d audit records; the log had %d before the request was received", n, history)
	}
}
