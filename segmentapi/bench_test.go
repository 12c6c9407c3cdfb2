package segmentapi

// BenchmarkIngest holds ingestion through the Tracking API's /v1/batch
// against calling CollectBatch directly with the same messages, on each
// backend, so that the baseline and the candidate run in one process:
//
//	GDPRKIT_TEST_POSTGRES_DSN=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//		go test -run '^$' -bench BenchmarkIngest -benchtime 400x -count 5 ./segmentapi
//
// The figure is the ratio of direct's time per batch to http's (a
// throughput ratio), per backend. Without the variable the PostgreSQL
// sub-benchmarks skip.

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/sqlstore"
)

const (
	// ingestBatchSize is the number of messages in one batch: one
	// iteration.
	ingestBatchSize = 100
	// ingestPeople is how many known people the batches' messages are
	// about, each identified before the timer starts.
	ingestPeople = 100
	// ingestPostgresEnv names the variable holding the DSN of a PostgreSQL
	// database the benchmarks may create schemas in (as sqlstore's tests).
	ingestPostgresEnv = "GDPRKIT_TEST_POSTGRES_DSN"
	// ingestSQLiteParams is how sqlstore's tests open SQLite
	// (modernc.org/sqlite): writers wait for each other, readers do not
	// wait for writers, transactions take the write lock up front.
	ingestSQLiteParams = "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_txlock=immediate"
)

// ingestKey keys the Controllers' hashes over the SQL backends.
var ingestKey = []byte("segmentapi ingest benchmark key!")

// ingestBackends are the backends BenchmarkIngest runs on; each open
// returns a Controller over a new, empty store, closed (and for
// PostgreSQL, its schema dropped) when the benchmark ends.
var ingestBackends = []struct {
	name string
	open func(b *testing.B) *privacy.Controller
}{
	{"mem", openIngestMem},
	{"sqlite", openIngestSQLite},
	{"postgres", openIngestPostgres},
}

func openIngestMem(b *testing.B) *privacy.Controller {
	return newIngestController(b)
}

func openIngestSQLite(b *testing.B) *privacy.Controller {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(b.TempDir(), "ingest.db")+ingestSQLiteParams)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return newIngestController(b, privacy.WithBackends(migratedIngestStore(b, db, sqlstore.SQLite)), privacy.WithKey(ingestKey))
}

func openIngestPostgres(b *testing.B) *privacy.Controller {
	dsn := os.Getenv(ingestPostgresEnv)
	if dsn == "" {
		b.Skipf("PostgreSQL benchmarks skipped: set %s to the DSN of a database they may create schemas in, such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable", ingestPostgresEnv)
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(8)
	b.Cleanup(func() { db.Close() })
	var r [6]byte
	rand.Read(r[:])
	schema := "gdprkit_ingest_" + hex.EncodeToString(r[:])
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			b.Errorf("dropping schema %s: %v", schema, err)
		}
	})
	return newIngestController(b, privacy.WithBackends(migratedIngestStore(b, db, sqlstore.Postgres, sqlstore.WithSchema(schema))), privacy.WithKey(ingestKey))
}

func migratedIngestStore(b *testing.B, db *sql.DB, d sqlstore.Dialect, opts ...sqlstore.Option) *sqlstore.Store {
	s, err := sqlstore.New(db, d, opts...)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Migrate(b.Context()); err != nil {
		b.Fatal(err)
	}
	return s
}

// newIngestController returns a Controller with opts, closed when the
// benchmark ends (before the pools its cleanups registered earlier).
func newIngestController(b *testing.B, opts ...privacy.Option) *privacy.Controller {
	c, err := privacy.New(opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// ingestUser is the user id of known person p.
func ingestUser(p int) string { return fmt.Sprintf("ingest-user-%04d", p) }

// seedIngestPeople identifies the ingestPeople known people, in one batch.
func seedIngestPeople(b *testing.B, c *privacy.Controller) { seedIngestPeopleN(b, c, ingestPeople) }

// seedIngestPeopleN identifies n known people, in one batch.
func seedIngestPeopleN(b *testing.B, c *privacy.Controller, n int) {
	msgs := make([]privacy.Message, n)
	ts := time.Now().UTC()
	for p := range msgs {
		msgs[p] = privacy.Identify{MessageID: "seed-" + ingestUser(p), UserID: ingestUser(p), Source: testSource,
			Traits: map[string]any{"email": fmt.Sprintf("ingest%04d@example.com", p), "plan": "pro"}, Timestamp: ts}
	}
	for len(msgs) > 0 {
		n := min(len(msgs), privacy.BatchSize)
		if err := c.CollectBatch(b.Context(), msgs[:n]); err != nil {
			b.Fatal(err)
		}
		msgs = msgs[n:]
	}
}

// ingestTimestamp is the messages' timestamp, to the millisecond as
// Segment's libraries send it.
var ingestTimestamp = time.Date(2026, 12, 7, 9, 59, 58, 123_000_000, time.UTC)

// ingestLibrary is the context Segment's libraries put in every message.
func ingestLibrary() map[string]any {
	return map[string]any{"library": map[string]any{"name": "analytics-go", "version": "3.11.0"}}
}

// ingestMessages returns batch n: track messages about the known people,
// each with its own message id, as the Tracking API makes them of the JSON
// ingestBody(n) returns (the receivedAt it stamps aside).
func ingestMessages(n int, sentAt time.Time) []privacy.Message {
	msgs := make([]privacy.Message, ingestBatchSize)
	for j := range msgs {
		msgs[j] = privacy.Track{MessageID: fmt.Sprintf("ingest-%d-%d", n, j), UserID: ingestUser(j % ingestPeople), Event: "Product Viewed",
			Properties: map[string]any{"sku": "TENT-2P", "price": 249, "currency": "EUR"}, Timestamp: ingestTimestamp,
			Source: testSource, Context: ingestLibrary(), SentAt: sentAt, ReceivedAt: sentAt}
	}
	return msgs
}

// ingestWireMessage is a track message as Segment's libraries send it in a
// batch.
type ingestWireMessage struct {
	Type       string         `json:"type"`
	MessageID  string         `json:"messageId"`
	UserID     string         `json:"userId"`
	Event      string         `json:"event"`
	Properties map[string]any `json:"properties"`
	Context    map[string]any `json:"context"`
	Timestamp  string         `json:"timestamp"`
}

// ingestBody returns batch n as the body of /v1/batch, its messages about
// the ingestPeople known people.
func ingestBody(b *testing.B, n int, sentAt time.Time) []byte {
	return ingestBodyAmong(b, n, sentAt, ingestPeople)
}

// ingestBodyAmong returns batch n as the body of /v1/batch, its messages
// about people known people, the batches taking them in turn.
func ingestBodyAmong(b testing.TB, n int, sentAt time.Time, people int) []byte {
	wire := make([]ingestWireMessage, ingestBatchSize)
	for j := range wire {
		wire[j] = ingestWireMessage{Type: "track", MessageID: fmt.Sprintf("ingest-%d-%d", n, j), UserID: ingestUser((n*ingestBatchSize + j) % people),
			Event: "Product Viewed", Properties: map[string]any{"sku": "TENT-2P", "price": 249, "currency": "EUR"},
			Context: ingestLibrary(), Timestamp: ingestTimestamp.Format("2006-01-02T15:04:05.000Z07:00")}
	}
	body, err := json.Marshal(struct {
		Batch  []ingestWireMessage `json:"batch"`
		SentAt string              `json:"sentAt"`
	}{wire, sentAt.Format("2006-01-02T15:04:05.000Z07:00")})
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// BenchmarkIngest stores, per iteration, one batch of 100 track messages
// about known people on a new, empty store of each backend: direct hands
// them to CollectBatch; http POSTs the same messages, as Segment's JSON,
// to /v1/batch of NewTracking served over loopback (httptest.NewServer),
// with a real net/http client keeping its connection alive; http-gzip
// sends the body gzipped, as analytics-node does. Each iteration's batch
// (its messages, or its body, which a client encodes on its own machine),
// with fresh message ids, is made with the timer stopped, not all of them
// up front: a heap holding b.N prepared batches would make the garbage
// collector run less often than in a server, and unequally between the
// variants (a body weighs less than its messages). Building and sending
// the request, and reading the answer, are timed: the client's work is
// included, on the same cores as the server's.
//
// paired runs direct and http in the same loop, each on a store of its
// own, alternating which goes first, and reports each one's time per
// batch and x-http, direct's time over http's: the throughput ratio under
// the same load, a check on the machine's drift. It understates what
// http's garbage costs: the collections it brings on run during either
// half.
//
// http-8conns posts on eight connections at once, about 1,000 people (issue
// 19's load): see benchIngestConcurrent.
func BenchmarkIngest(b *testing.B) {
	for _, be := range ingestBackends {
		b.Run(be.name, func(b *testing.B) {
			b.Run("direct", func(b *testing.B) { benchIngestDirect(b, be.open) })
			b.Run("http", func(b *testing.B) { benchIngestHTTP(b, be.open, false) })
			b.Run("http-gzip", func(b *testing.B) { benchIngestHTTP(b, be.open, true) })
			b.Run("paired", func(b *testing.B) { benchIngestPaired(b, be.open) })
			b.Run("http-8conns", func(b *testing.B) { benchIngestConcurrent(b, be.open, be.name == "postgres") })
		})
	}
}

func benchIngestDirect(b *testing.B, open func(*testing.B) *privacy.Controller) {
	c := open(b)
	seedIngestPeople(b, c)
	sentAt := time.Now().UTC().Truncate(time.Millisecond)
	ctx := b.Context()
	before := c.Stats()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		msgs := ingestMessages(i, sentAt)
		b.StartTimer()
		if err := c.CollectBatch(ctx, msgs); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	checkIngested(b, c, before, b.N)
	b.ReportMetric(float64(b.N*ingestBatchSize)/b.Elapsed().Seconds(), "msgs/s")
}

func benchIngestHTTP(b *testing.B, open func(*testing.B) *privacy.Controller, gzipBody bool) {
	c := open(b)
	seedIngestPeople(b, c)
	cl := newIngestClient(b, c, gzipBody)
	before := c.Stats()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		body := cl.body(b, i)
		b.StartTimer()
		cl.post(b, body)
	}
	b.StopTimer()
	checkIngested(b, c, before, b.N)
	b.ReportMetric(float64(b.N*ingestBatchSize)/b.Elapsed().Seconds(), "msgs/s")
}

func benchIngestPaired(b *testing.B, open func(*testing.B) *privacy.Controller) {
	direct, server := open(b), open(b)
	seedIngestPeople(b, direct)
	seedIngestPeople(b, server)
	cl := newIngestClient(b, server, false)
	sentAt := time.Now().UTC().Truncate(time.Millisecond)
	ctx := b.Context()
	beforeDirect, beforeServer := direct.Stats(), server.Stats()
	var inDirect, inHTTP time.Duration
	runDirect := func(msgs []privacy.Message) {
		start := time.Now()
		if err := direct.CollectBatch(ctx, msgs); err != nil {
			b.Fatal(err)
		}
		inDirect += time.Since(start)
	}
	runHTTP := func(body []byte) {
		start := time.Now()
		cl.post(b, body)
		inHTTP += time.Since(start)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		msgs, body := ingestMessages(i, sentAt), cl.body(b, i)
		b.StartTimer()
		// Alternate which goes first: the second runs among the first's garbage.
		if i%2 == 0 {
			runDirect(msgs)
			runHTTP(body)
		} else {
			runHTTP(body)
			runDirect(msgs)
		}
	}
	b.StopTimer()
	checkIngested(b, direct, beforeDirect, b.N)
	checkIngested(b, server, beforeServer, b.N)
	b.ReportMetric(float64(inDirect.Nanoseconds())/float64(b.N), "direct-ns/batch")
	b.ReportMetric(float64(inHTTP.Nanoseconds())/float64(b.N), "http-ns/batch")
	b.ReportMetric(inDirect.Seconds()/inHTTP.Seconds(), "x-http")
}

// ingestClient posts batches to /v1/batch of a Tracking API over c, served
// on loopback, through one kept-alive connection.
type ingestClient struct {
	client *http.Client
	url    string
	gzip   bool
	sentAt time.Time
	answer bytes.Buffer
}

// serveIngest serves the Tracking API over c on loopback, and counts the
// connections its clients open.
func serveIngest(c *privacy.Controller) (*httptest.Server, *atomic.Int64) {
	srv := httptest.NewUnstartedServer(NewTracking(c, WithWriteKey(testWriteKey, testSource)))
	conns := new(atomic.Int64)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	return srv, conns
}

// newIngestClient serves the Tracking API over c and returns a client of
// it, its connection opened by a first batch of other messages. The
// benchmark fails if the client opened another connection.
func newIngestClient(b *testing.B, c *privacy.Controller, gzipBody bool) *ingestClient {
	srv, conns := serveIngest(c)
	b.Cleanup(func() {
		if n := conns.Load(); n != 1 {
			b.Errorf("the client opened %d connections, want 1 kept alive", n)
		}
	})
	b.Cleanup(srv.Close) // before the Controller closes, and before the count
	tr := &http.Transport{MaxIdleConnsPerHost: 2, DisableCompression: true}
	b.Cleanup(tr.CloseIdleConnections)
	cl := &ingestClient{client: &http.Client{Transport: tr, Timeout: time.Minute}, url: srv.URL + "/v1/batch", gzip: gzipBody,
		sentAt: time.Now().UTC().Truncate(time.Millisecond)}
	cl.post(b, cl.body(b, -1))
	return cl
}

// body returns batch n as the body the client sends.
func (cl *ingestClient) body(b *testing.B, n int) []byte {
	body := ingestBody(b, n, cl.sentAt)
	if cl.gzip {
		body = gzipped(b, string(body))
	}
	return body
}

// post sends body as a client does, and fails b unless every message was
// taken.
func (cl *ingestClient) post(b *testing.B, body []byte) {
	req, err := http.NewRequestWithContext(b.Context(), http.MethodPost, cl.url, bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	req.SetBasicAuth(testWriteKey, "")
	req.Header.Set("Content-Type", "application/json")
	if cl.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := cl.client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	cl.answer.Reset()
	_, err = io.Copy(&cl.answer, resp.Body)
	resp.Body.Close()
	if err != nil {
		b.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(cl.answer.Bytes(), []byte("{\"success\":true}\n")) {
		b.Fatalf("POST /v1/batch: %s: %s", resp.Status, cl.answer.Bytes())
	}
}

// checkIngested fails b unless c stored every message of n batches since
// before, once.
func checkIngested(b *testing.B, c *privacy.Controller, before privacy.Stats, n int) {
	after := c.Stats()
	if got, want := after.Collected-before.Collected, uint64(n*ingestBatchSize); got != want || after.Duplicates != before.Duplicates || after.Refused != before.Refused {
		b.Fatalf("stored %d messages (%d repeats, %d refused), want %d", got, after.Duplicates-before.Duplicates, after.Refused-before.Refused, want)
	}
}
