package segmentapi

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/sqlstore"
	"github.com/gdprkit/privacy/txscope"
)

// identifyBatch: n identifies of users prefix-0..n-1, trait plan=val, one timestamp.
func identifyBatch(tag, prefix, val string, n int) string {
	var b strings.Builder
	b.WriteString(`{"batch": [`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type": "identify", "messageId": "%s-%d", "userId": "%s-%d", "traits": {"plan": %q}, "timestamp": "2026-12-07T10:00:00Z"}`, tag, i, prefix, i, val)
	}
	b.WriteString(`]}`)
	return b.String()
}

// loggedProfiles records, in commit order, the message ids of the updates
// each committed profile transaction made.
type loggedProfiles struct {
	profile.Store
	mu  sync.Mutex
	seq map[string]int // message id -> commit sequence number
	n   int
}

type loggedTx struct {
	profile.Tx
	s   *loggedProfiles
	ids []string
}

func (l *loggedProfiles) Begin(ctx context.Context) (profile.Tx, error) {
	tx, err := l.Store.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &loggedTx{Tx: tx, s: l}, nil
}

func (t *loggedTx) Update(ctx context.Context, pid identity.ProfileID, u profile.Update) error {
	err := t.Tx.Update(ctx, pid, u)
	if err == nil && u.MessageID != "" {
		t.ids = append(t.ids, u.MessageID)
	}
	return err
}

func (t *loggedTx) Commit(ctx context.Context) error {
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	if err := t.Tx.Commit(ctx); err != nil {
		return err
	}
	t.s.n++
	for _, id := range t.ids {
		if _, ok := t.s.seq[id]; !ok {
			t.s.seq[id] = t.s.n
		}
	}
	return nil
}

func (l *loggedProfiles) at(id string) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, ok := l.seq[id]
	return n, ok
}

// A client sends batch A, waits for its answer, then batch B about the same
// people, while other clients keep the grouper busy: every message of A
// must be committed before any of B, and A's must be stored when A is
// answered.
func TestGroupedBatchesKeepAClientsOrder(t *testing.T) {
	store := &loggedProfiles{Store: profile.NewMemStore(), seq: map[string]int{}}
	a := newAPI(t, privacy.WithProfiles(store))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				a.post("/v1/batch", testWriteKey, identifyBatch(fmt.Sprint("noise", w, "-", k), fmt.Sprint("n", w), "x", 50))
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	for it := range 30 {
		pfx := fmt.Sprint("seq", it)
		wantStatus(t, a.post("/v1/batch", testWriteKey, identifyBatch(pfx+"A", pfx, "A", 20)), http.StatusOK)
		lastA := 0
		for i := range 20 {
			n, ok := store.at(fmt.Sprint(pfx, "A-", i))
			if !ok {
				t.Fatalf("iteration %d: A's message %d not committed when A was answered", it, i)
			}
			lastA = max(lastA, n)
		}
		wantStatus(t, a.post("/v1/batch", testWriteKey, identifyBatch(pfx+"B", pfx, "B", 20)), http.StatusOK)
		for i := range 20 {
			n, ok := store.at(fmt.Sprint(pfx, "B-", i))
			if !ok {
				t.Fatalf("iteration %d: B's message %d not committed when B was answered", it, i)
			}
			if n <= lastA {
				t.Fatalf("iteration %d: B's message %d committed at %d, not after A's last at %d", it, i, n, lastA)
			}
		}
	}
}

// Concurrent grouped requests from two write keys: each message keeps its
// own request's source.
func TestGroupedBatchesKeepTheirSources(t *testing.T) {
	profiles := &gatedProfiles{Store: profile.NewMemStore()}
	a := newAPI(t, privacy.WithProfiles(profiles))
	answers := make([]answer, 8)
	open := profiles.holdFirst(t, 8, func(i int) {
		key := testWriteKey
		if i%2 == 1 {
			key = otherKey
		}
		answers[i] = a.post("/v1/batch", key, identifyBatch(fmt.Sprint("s", i), fmt.Sprint("src", i), "p", 10))
	})
	time.Sleep(100 * time.Millisecond)
	open()
	for i := range 8 {
		wantStatus(t, answers[i], http.StatusOK)
		want := testSource
		if i%2 == 1 {
			want = otherSource
		}
		for j := range 10 {
			p, err := a.c.Profile(context.Background(), user(fmt.Sprintf("src%d-%d", i, j)))
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Traits["plan"].Source; got != want {
				t.Errorf("request %d message %d: source %q, want %q", i, j, got, want)
			}
		}
	}
}

// Close while grouped requests wait: no request is told 200 for messages
// that were not stored.
func TestGroupedBatchesAnsweredOnCloseAsStored(t *testing.T) {
	for round := range 5 {
		profiles := &gatedProfiles{Store: profile.NewMemStore()}
		a := newAPI(t, privacy.WithProfiles(profiles))
		pids := make([]identity.ProfileID, 60)
		for i := range 60 {
			if err := a.c.Collect(context.Background(), privacy.Identify{UserID: fmt.Sprint("c-", i), Timestamp: received0}); err != nil {
				t.Fatal(err)
			}
			p, err := a.c.Profile(context.Background(), user(fmt.Sprint("c-", i)))
			if err != nil {
				t.Fatal(err)
			}
			pids[i] = p.ID
		}
		answers := make([]answer, 6)
		open := profiles.holdFirst(t, 6, func(i int) {
			var b strings.Builder
			b.WriteString(`{"batch":[`)
			for j := range 10 {
				if j > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `{"type":"track","messageId":"c%d-%d","userId":"c-%d","event":"E","timestamp":"2026-12-07T10:00:00Z"}`, i, j, i*10+j)
			}
			b.WriteString(`]}`)
			answers[i] = a.post("/v1/batch", testWriteKey, b.String())
		})
		time.Sleep(50 * time.Millisecond)
		closed := make(chan struct{})
		go func() { a.c.Close(); close(closed) }()
		time.Sleep(time.Duration(round) * 5 * time.Millisecond)
		open()
		<-closed
		var st []int
		for _, got := range answers {
			st = append(st, got.status)
		}
		t.Logf("round %d: statuses %v", round, st)
		for i, got := range answers {
			if got.status != http.StatusOK {
				continue
			}
			// read through the store directly: the Controller is closed
			for j := range 10 {
				found := false
				page, err := profiles.Store.Events(context.Background(), pids[i*10+j], profile.EventQuery{Limit: 100})
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range page.Events {
					if e.MessageID == fmt.Sprintf("c%d-%d", i, j) {
						found = true
					}
				}
				if !found {
					t.Errorf("round %d request %d: answered 200 %s but message %d not stored", round, i, got.body, j)
				}
			}
		}
	}
}

var _ = identity.ID{}
var _ atomic.Int64
var _ = httptest.NewServer
var _ = os.Getenv
var _ = exec.Command

// hungProfiles: while hang is set, Begin waits for its context to end, as a
// database call waiting on a lock another session holds does.
type hungProfiles struct {
	profile.Store
	hang    atomic.Bool
	waiting atomic.Int64
}

func (h *hungProfiles) Begin(ctx context.Context) (profile.Tx, error) {
	if h.hang.Load() {
		h.waiting.Add(1)
		defer h.waiting.Add(-1)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return h.Store.Begin(ctx)
}

// A batch request whose client went away returns, as it did before
// grouping: its context's end reaches the backend. With a backend that
// waits (a lock held elsewhere), a grouped call never ends, and every
// later batch request queues behind it for good, its client gone or not.
func TestAGroupedBatchWhoseClientLeftReturns(t *testing.T) {
	profiles := &hungProfiles{Store: profile.NewMemStore()}
	a := newAPI(t, privacy.WithProfiles(profiles))
	a.identify(t, numbered("h-", 3)...)
	profiles.hang.Store(true)
	done := make(chan answer, 3)
	cancels := make([]context.CancelFunc, 3)
	for i := range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		cancels[i] = cancel
		body := fmt.Sprintf(`{"batch":[{"type":"track","messageId":"h%d","userId":"h-%d","event":"E"}]}`, i, i)
		r := httptest.NewRequest(http.MethodPost, "/v1/batch", strings.NewReader(body)).WithContext(ctx)
		r.SetBasicAuth(testWriteKey, "")
		go func() { done <- serve(a.tracking, r) }()
	}
	// One call or two, as the requests happen to be grouped.
	waitFor(t, "a call waiting in the backend", func() bool { return profiles.waiting.Load() >= 1 })
	for _, cancel := range cancels {
		cancel() // every client goes away
	}
	for i := range 3 {
		select {
		case got := <-done:
			t.Logf("answer %d: %d %s", i, got.status, got.body)
		case <-time.After(3 * time.Second):
			t.Fatalf("%d of 3 batch requests returned 3s after their clients went away; the rest wait forever", i)
		}
	}
	// No one waits for the calls any more: their contexts end, and they
	// stop waiting on the backend.
	waitFor(t, "the calls to leave the backend", func() bool { return profiles.waiting.Load() == 0 })
	profiles.hang.Store(false)
}

// pgGroupAPI is an api over a migrated sqlstore in a new PostgreSQL schema,
// and a function that holds, in another session's transaction, the subject
// lock sqlstore takes for an identifier (another host's operation).
func pgGroupAPI(t *testing.T) (*api, func(id string) *sql.Tx) {
	db, schema, s := migratedPostgres(t, "gdprkit_ga_")
	c, err := privacy.New(privacy.WithBackends(s), privacy.WithKey(ingestKey))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	hold := func(id string) *sql.Tx {
		h := sha256.New()
		h.Write([]byte("gdprkit subject\x00"))
		h.Write([]byte(schema + "." + sqlstore.DefaultTablePrefix))
		h.Write([]byte{0})
		h.Write([]byte(txscope.IDKey(id)))
		key := int64(binary.BigEndian.Uint64(h.Sum(nil)))
		tx, err := db.BeginTx(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec("SELECT pg_advisory_xact_lock($1)", key); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tx.Rollback() })
		return tx
	}
	return newAPIOver(t, c), hold
}

func postCtx(a *api, ctx context.Context, body string) answer {
	req := httptest.NewRequest(http.MethodPost, "/v1/batch", strings.NewReader(body)).WithContext(ctx)
	req.SetBasicAuth(testWriteKey, "")
	return serve(a.tracking, req)
}

// The same on PostgreSQL: another host holds a person's subject lock (its
// operation stuck: a paused VM, a long erasure). A client sends a batch
// about that person and gives up after 300 ms. Before grouping the query
// was cancelled with the request and the handler answered; now the call
// runs without cancellation and the handler waits for as long as the
// other host holds the lock.
func TestAGroupedBatchWhoseClientLeftReturnsPostgres(t *testing.T) {
	a, hold := pgGroupAPI(t)
	a.identify(t, "locked")
	other := hold("user_id:locked")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan answer, 1)
	go func() {
		done <- postCtx(a, ctx, `{"batch":[{"type":"track","messageId":"l1","userId":"locked","event":"E"}]}`)
	}()
	select {
	case got := <-done:
		t.Logf("answered %d %s", got.status, got.body)
	case <-time.After(5 * time.Second):
		t.Errorf("the batch request has not returned 5s after its client gave up (300 ms): it waits on the other host's lock")
		other.Rollback()
		<-done
	}
}

// Head of line: two batches wait on persons another host holds locked;
// a third client's batch about somebody else entirely, sent after them,
// must be stored as it was before grouping, not wait behind them.
func TestABatchIsNotHeldBehindStuckCallsPostgres(t *testing.T) {
	a, hold := pgGroupAPI(t)
	a.identify(t, "locked1", "locked2", "free")
	l1, l2 := hold("user_id:locked1"), hold("user_id:locked2")
	var wg sync.WaitGroup
	for i, u := range []string{"locked1", "locked2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			got := postCtx(a, context.Background(), fmt.Sprintf(`{"batch":[{"type":"track","messageId":"w%d","userId":%q,"event":"E"}]}`, i, u))
			t.Logf("locked batch %d: %d after %v", i, got.status, time.Since(start))
		}()
		time.Sleep(200 * time.Millisecond) // the first in its call before the second comes: two calls
	}
	time.Sleep(300 * time.Millisecond)
	done := make(chan answer, 1)
	go func() {
		done <- postCtx(a, context.Background(), `{"batch":[{"type":"track","messageId":"f1","userId":"free","event":"E"}]}`)
	}()
	select {
	case got := <-done:
		wantStatus(t, got, http.StatusOK)
	case <-time.After(5 * time.Second):
		t.Errorf("a batch about an unlocked person has waited 5s behind two batches about persons another host holds locked")
		<-func() chan answer { l1.Rollback(); l2.Rollback(); return done }()
	}
	l1.Rollback()
	l2.Rollback()
	wg.Wait()
}

// panickyProfiles: a profile transaction's Update panics for the message id
// "boom" (a backend bug one message's content trips).
type panickyProfiles struct{ profile.Store }

type panickyTx struct{ profile.Tx }

func (p panickyProfiles) Begin(ctx context.Context) (profile.Tx, error) {
	tx, err := p.Store.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return panickyTx{tx}, nil
}

func (p panickyTx) Update(ctx context.Context, pid identity.ProfileID, u profile.Update) error {
	if u.MessageID == "boom" {
		panic("profile store bug")
	}
	return p.Tx.Update(ctx, pid, u)
}

// A panic while collecting one request's batch is that request's: an
// http.Server recovers a handler's panic and goes on serving others (as it
// did before grouping). Run in a child process, since the defect kills it.
func TestAPanicInAGroupedCallFailsItsRequestsNotTheServer(t *testing.T) {
	if os.Getenv("GDPRKIT_GROUP_PANIC_CHILD") == "1" {
		a := newAPI(t, privacy.WithProfiles(panickyProfiles{profile.NewMemStore()}))
		a.identify(t, "p1")
		srv := httptest.NewServer(a.tracking)
		defer srv.Close()
		post := func(body string) (int, error) {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/batch", strings.NewReader(body))
			req.SetBasicAuth(testWriteKey, "")
			resp, err := srv.Client().Do(req)
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			return resp.StatusCode, nil
		}
		_, err := post(`{"batch":[{"type":"track","messageId":"boom","userId":"p1","event":"E"}]}`)
		t.Logf("the panicking batch: %v", err)
		status, err := post(`{"batch":[{"type":"track","messageId":"ok","userId":"p1","event":"E"}]}`)
		if err != nil || status != http.StatusOK {
			t.Fatalf("the next batch: %d %v", status, err)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAPanicInAGroupedCallFailsItsRequestsNotTheServer$", "-test.count=1")
	cmd.Env = append(os.Environ(), "GDPRKIT_GROUP_PANIC_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		lines := strings.Split(string(out), "\n")
		t.Errorf("the server process died of one batch's panic (%v); its output begins:\n%s", err, strings.Join(lines[:min(len(lines), 12)], "\n"))
	}
}

// Grouped with others, a request gets what it alone would: gzip and
// body-writeKey requests keep their source; the same messageId sent by two
// requests about one person is stored once and both are answered 200; a
// request's invalid messages (no event, bad types) are refused at its own
// indexes, never another's; canaries of one request appear in no answer.
func TestGroupedBatchesOfEveryKindKeepTheirOutcomes(t *testing.T) {
	profiles := &gatedProfiles{Store: profile.NewMemStore()}
	a := newAPI(t, privacy.WithProfiles(profiles))
	a.identify(t, numbered("m-", 10)...)
	type req struct {
		body    string
		gzip    bool
		key     string // "" : writeKey in the body
		source  string
		refused []int
	}
	tr := func(id, u, ev string) string {
		return fmt.Sprintf(`{"type":"track","messageId":%q,"userId":%q,"event":%q,"properties":{"secret":"canary-%s"},"timestamp":"2026-12-07T10:00:00Z"}`, id, u, ev, id)
	}
	reqs := []req{
		{body: `{"batch":[` + tr("warm", "m-9", "E") + `]}`, key: testWriteKey, source: testSource},
		{body: `{"batch":[` + tr("g1", "m-1", "E") + `,` + tr("g2", "m-2", "") + `]}`, gzip: true, key: testWriteKey, source: testSource, refused: []int{1}},
		{body: `{"writeKey":"` + otherKey + `","batch":[` + tr("b1", "m-3", "E") + `,{"type":"track","userId":5},` + tr("b2", "m-4", "E") + `]}`, source: otherSource, refused: []int{1}},
		{body: `{"batch":[` + tr("dup", "m-5", "First") + `]}`, key: otherKey, source: otherSource},
		{body: `{"batch":[` + tr("dup", "m-5", "Second") + `,` + tr("d2", "m-6", "") + `,` + tr("d3", "m-6", "E") + `]}`, key: testWriteKey, source: testSource, refused: []int{1}},
	}
	answers := make([]answer, len(reqs))
	open := profiles.holdFirst(t, len(reqs), func(i int) {
		rq := reqs[i]
		var r *http.Request
		if rq.gzip {
			r = httptest.NewRequest(http.MethodPost, "/v1/batch", strings.NewReader(string(gzipped(t, rq.body))))
			r.Header.Set("Content-Encoding", "gzip")
		} else {
			r = httptest.NewRequest(http.MethodPost, "/v1/batch", strings.NewReader(rq.body))
		}
		if rq.key != "" {
			r.SetBasicAuth(rq.key, "")
		}
		answers[i] = serve(a.tracking, r)
	})
	time.Sleep(100 * time.Millisecond)
	open()
	for i, got := range answers {
		wantStatus(t, got, http.StatusOK)
		issues, _ := got.json(t)["errors"].([]any)
		var idx []int
		for _, is := range issues {
			idx = append(idx, int(is.(map[string]any)["index"].(float64)))
		}
		if fmt.Sprint(idx) != fmt.Sprint(reqs[i].refused) {
			t.Errorf("request %d: refused %v, want %v: %s", i, idx, reqs[i].refused, got.body)
		}
		if strings.Contains(string(got.body), "canary") {
			t.Errorf("request %d: the answer quotes a canary: %s", i, got.body)
		}
	}
	if strings.Contains(a.log.String(), "canary") {
		t.Errorf("the log quotes a canary: %s", a.log.String())
	}
	n := 0
	for _, e := range a.events(t, user("m-5")) {
		if e.MessageID == "dup" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("message dup stored %d times", n)
	}
	// Each event keeps its own request's source.
	want := map[string]string{"g1": testSource, "b1": otherSource, "b2": otherSource, "d3": testSource}
	for u, id := range map[string]string{"m-1": "g1", "m-3": "b1", "m-4": "b2", "m-6": "d3"} {
		found := false
		for _, e := range a.events(t, user(u)) {
			if e.MessageID == id {
				found = true
				if e.Source != want[id] {
					t.Errorf("%s: source %q, want %q", id, e.Source, want[id])
				}
			}
		}
		if !found {
			t.Errorf("%s: not stored", id)
		}
	}
}

// PostgreSQL refuses some text (NUL in a JSON value) that may fail a
// whole batch: grouped with it, another request's messages are still
// stored and answered 200, and the bad one is answered on its own.
func TestABadBatchFailsAloneInItsGroupPostgres(t *testing.T) {
	a, hold := pgGroupAPI(t)
	a.identify(t, "l1", "l2", "ok", "bad")
	l1, l2 := hold("user_id:l1"), hold("user_id:l2")
	var wg sync.WaitGroup
	for _, u := range []string{"l1", "l2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			postCtx(a, context.Background(), fmt.Sprintf(`{"batch":[{"type":"track","messageId":"w-%s","userId":%q,"event":"E"}]}`, u, u))
		}()
		time.Sleep(200 * time.Millisecond)
	}
	answers := make([]answer, 2)
	bodies := []string{
		`{"batch":[{"type":"track","messageId":"ok1","userId":"ok","event":"E","properties":{"a":"fine"}},{"type":"identify","messageId":"ok2","userId":"ok","traits":{"plan":"p"}}]}`,
		`{"batch":[{"type":"track","messageId":"bad1","userId":"bad","event":"E","properties":{"a":"x\u0000y","k\u0000":"v"}},{"type":"identify","messageId":"bad2","userId":"bad","traits":{"n\u0000":"a\u0000b"}}]}`,
	}
	for i := range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); answers[i] = postCtx(a, context.Background(), bodies[i]) }()
	}
	time.Sleep(200 * time.Millisecond)
	l1.Rollback()
	l2.Rollback()
	wg.Wait()
	t.Logf("ok: %d %s; bad: %d %s", answers[0].status, answers[0].body, answers[1].status, answers[1].body)
	wantStatus(t, answers[0], http.StatusOK)
	if issues, _ := answers[0].json(t)["errors"].([]any); len(issues) > 0 {
		t.Errorf("the good request got refusals: %s", answers[0].body)
	}
	if !hasMessage(a.events(t, user("ok")), "ok1") {
		t.Errorf("ok1 not stored")
	}
	for _, e := range a.events(t, user("bad")) {
		t.Logf("bad's event %s: %q", e.MessageID, e.Properties)
	}
}

// A finished request's submission (its messages, its request's context) is
// not kept by the grouper's queue after its call.
func TestGrouperKeepsNoFinishedRequest(t *testing.T) {
	profiles := &gatedProfiles{Store: profile.NewMemStore()}
	a := newAPI(t, privacy.WithProfiles(profiles))
	g := &grouper{c: a.c, most: 2}
	gate := make(chan struct{})
	profiles.gate.Store(&gate)
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.collect(context.Background(), []privacy.Message{privacy.Track{UserID: fmt.Sprint("r-", i), Event: "E", Properties: map[string]any{"secret": "canary"}}})
		}()
		if i < 2 {
			waitFor(t, "call held", func() bool { return profiles.waiting.Load() == int64(i+1) })
		}
	}
	time.Sleep(50 * time.Millisecond)
	profiles.gate.Store(nil)
	close(gate)
	wg.Wait()
	// A call's goroutine answers its requests, then finds the queue empty
	// and counts itself out: after the requests returned, not before.
	waitFor(t, "every call to end once its requests returned", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.running == 0
	})
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, s := range g.queue[:cap(g.queue)] {
		if s != nil {
			t.Errorf("queue slot %d still holds a finished submission", i)
		}
	}
}
