package segmentapi

// Invariants a second adversarial review broke (derived message ids, the
// one-pass batch decoder, alias checks, cursors, the cost of listing
// suppressions), and what it probed that held: each test named a defect
// failed on the code it reviewed.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/sqlstore"
	"github.com/gdprkit/privacy/suppression"
)

// trackOfSize returns a track message of exactly n bytes of JSON.
func trackOfSize(t *testing.T, user, id string, n int) string {
	t.Helper()
	head := `{"type":"track","userId":"` + user + `","messageId":"` + id + `","event":"Big","properties":{"pad":"`
	tail := `"}}`
	pad := n - len(head) - len(tail)
	if pad < 0 {
		t.Fatal("too small")
	}
	s := head + strings.Repeat("x", pad) + tail
	if len(s) != n {
		t.Fatalf("size %d, want %d", len(s), n)
	}
	return s
}

// Invariant (NewTracking's doc, Segment's limit): a message of a batch is
// refused only when it is larger than MaxMessageBytes. The one-pass
// decoder measures a message from the decoder's offset before it, which
// for every message but the first includes the comma and any whitespace
// after it. analytics-python's json.dumps separates the batch's messages
// with ", ", and pretty-printed bodies indent them: a message of exactly
// 32 KB (taken by /v1/track, taken by analytics-python's own check, taken
// as the batch's first message, taken by the previous decoder, which
// measured the json.RawMessage) is refused as "larger than 32 KB".
func TestBatchMessageSizeIgnoresSeparator(t *testing.T) {
	for name, sep := range map[string]string{"python": ", ", "indented": ",\n    "} {
		t.Run(name, func(t *testing.T) {
			a := newAPI(t)
			small := `{"type":"track","userId":"u1","messageId":"m0","event":"Small"}`
			big := trackOfSize(t, "u1", "m1", MaxMessageBytes)
			got := a.post("/v1/batch", testWriteKey, `{"batch": [`+small+sep+big+`]}`)
			wantStatus(t, got, http.StatusOK)
			var ans trackingAnswer
			if err := json.Unmarshal(got.body, &ans); err != nil {
				t.Fatal(err)
			}
			if len(ans.Errors) > 0 {
				t.Errorf("a %d-byte message (the limit is %d) refused when separated by %q: %+v", len(big), MaxMessageBytes, sep, ans.Errors)
			}
			// The same message alone is taken.
			wantStatus(t, a.post("/v1/track", testWriteKey, trackOfSize(t, "u2", "m2", MaxMessageBytes)), http.StatusOK)
		})
	}
}

// Invariant (NewTracking's doc): only "two identical messages without an
// id are one message". derivedID hashes the source and the body, not the
// type, and on /v1/page, /v1/screen, /v1/identify ... the type is the
// path's, not in the body: the same body sent to /v1/page and /v1/screen
// (a web and a mobile view of one screen name) gets one message id, and
// the second message is dropped as a repeat of the first.
func TestDerivedIDDistinguishesTypes(t *testing.T) {
	a := newAPI(t)
	body := `{"userId":"u1","name":"Home","timestamp":"2026-12-07T09:00:00Z"}`
	wantStatus(t, a.post("/v1/page", testWriteKey, body), http.StatusOK)
	wantStatus(t, a.post("/v1/screen", testWriteKey, body), http.StatusOK)
	evs := a.events(t, user("u1"))
	if len(evs) != 2 {
		t.Errorf("a page and a screen with the same body: %d events stored, want 2 (%+v); duplicates counted: %d",
			len(evs), evs, a.c.Stats().Duplicates)
	}
}

// sqliteAPI is an api over a migrated SQLite sqlstore at a temporary path,
// with its *sql.DB for inspection.
func sqliteAPI(t *testing.T, opts ...privacy.Option) (*api, *sql.DB) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "r2.db")+ingestSQLiteParams)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := sqlstore.New(db, sqlstore.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, err := privacy.New(append([]privacy.Option{privacy.WithBackends(s), privacy.WithKey(ingestKey)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return newAPIOver(t, c), db
}

// sqliteHolders returns the tables of db with a row whose text holds needle.
func sqliteHolders(t *testing.T, db *sql.DB, needle string) []string {
	t.Helper()
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	var out []string
	for _, table := range tables {
		rs, err := db.Query(`SELECT * FROM "` + table + `"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rs.Columns()
		for rs.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rs.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(fmt.Sprint(vals...), needle) || bytes.Contains([]byte(fmt.Sprintf("%s", vals)), []byte(needle)) {
				out = append(out, table)
			}
		}
		rs.Close()
	}
	return out
}

// Held: the message id derived for a message without one is an unkeyed
// hash of its JSON (brute-forceable for a small message about a known
// person). It must not outlive the person's erasure in any table.
func TestDerivedIDGoneAfterErasure(t *testing.T) {
	a, db := sqliteAPI(t, privacy.WithDestinations(destination.NewRecorder("crm")))
	bodies := map[string]string{
		"/v1/identify": `{"userId":"ada","traits":{"email":"ada@example.com"}}`,
		"/v1/track":    `{"userId":"ada","event":"Signed Up"}`,
		"/v1/group":    `{"userId":"ada","groupId":"acme","traits":{"name":"Acme"}}`,
	}
	var ids []string
	for path, body := range bodies {
		wantStatus(t, a.post(path, testWriteKey, body), http.StatusOK)
		ids = append(ids, strings.TrimPrefix(a.c.MessageIDFor(derivedContent(testSource, strings.TrimPrefix(path, "/v1/"), []byte(body))), "gdprkit-d"))
	}
	if err := a.c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if len(sqliteHolders(t, db, id)) == 0 {
			t.Fatalf("derived id %s not stored before the erasure: the probe finds nothing", id)
		}
	}
	a.create(t, `{"regulationType":"SUPPRESS_WITH_DELETE","subjectType":"USER_ID","subjectIds":["ada"]}`)
	if err := a.c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if h := sqliteHolders(t, db, id); len(h) > 0 {
			t.Errorf("derived id %s is still in %v after the erasure", id, h)
		}
	}
}

// steppingClock returns a clock that moves a millisecond each reading.
func steppingClock() func() time.Time {
	var mu sync.Mutex
	now := received0
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Millisecond)
		return now
	}
}

type externalIDsWire struct {
	Data   []wireExternalID `json:"data"`
	Cursor cursor           `json:"cursor"`
}

// Invariant: paging lists every identifier once. The external ids cursor
// holds a position and a creation time, and resumes after the first
// identifier created at that time when the position moved. The
// identifiers one message links (userId, anonymousId, traits.email) share
// one creation time; when a merge into an older profile puts that
// profile's identifiers first, the next page starts again after the first
// of the group, and an identifier of the first page is served twice (the
// previous cursor, the identifier itself, resumed exactly).
func TestExternalIDsCursorAfterMerge(t *testing.T) {
	a := newAPI(t, privacy.WithClock(steppingClock()))
	wantStatus(t, a.post("/v1/track", testWriteKey, `{"messageId":"m0","anonymousId":"a0","event":"Visit"}`), http.StatusOK)
	wantStatus(t, a.post("/v1/identify", testWriteKey, `{"messageId":"m1","userId":"ada","anonymousId":"a1","traits":{"email":"ada@example.com"}}`), http.StatusOK)
	got := a.get(space + "users/profiles/user_id:ada/external_ids?limit=2")
	wantStatus(t, got, http.StatusOK)
	first := decodeInto[externalIDsWire](t, got)
	if len(first.Data) != 2 || first.Cursor.Next == "" {
		t.Fatalf("first page: %s", got.body)
	}
	// ada's profile merges into the older one of a0.
	wantStatus(t, a.post("/v1/track", testWriteKey, `{"messageId":"m2","userId":"ada","anonymousId":"a0","event":"Back"}`), http.StatusOK)
	got = a.get(space + "users/profiles/user_id:ada/external_ids?limit=10&next=" + first.Cursor.Next)
	wantStatus(t, got, http.StatusOK)
	second := decodeInto[externalIDsWire](t, got)
	seen := map[string]bool{}
	for _, x := range first.Data {
		seen[x.Type+":"+x.ID] = true
	}
	for _, x := range second.Data {
		if seen[x.Type+":"+x.ID] {
			t.Errorf("%s:%s is on the first page and again on the next (first %+v, next %+v)", x.Type, x.ID, first.Data, second.Data)
		}
	}
}

// Invariant: a suppressed (and erased) person's identifiers are not stored
// again. admitPrevious checks an alias's previousId as a user id and as an
// anonymous id only: a previousId that is the suppressed person's email
// (linked to her profile, so suppressed with it) is stored again, in clear,
// among the alias's properties, and sent on, after her erasure.
func TestAliasOfSuppressedEmailNotStored(t *testing.T) {
	rec := destination.NewRecorder("crm")
	a := newAPI(t, privacy.WithDestinations(rec))
	seed(t, a) // ada, email Ada@Example.com
	a.create(t, `{"regulationType":"SUPPRESS_WITH_DELETE","subjectType":"USER_ID","subjectIds":["ada"]}`)
	// Suppressed indeed: a message naming that email is dropped.
	if err := a.c.Collect(context.Background(), privacy.Identify{UserID: "someone", Traits: map[string]any{"email": "ada@example.com"}}); !errors.Is(err, privacy.ErrSuppressed) {
		t.Fatalf("identify with ada's email: %v, want ErrSuppressed", err)
	}
	wantStatus(t, a.post("/v1/alias", testWriteKey, `{"userId":"newcomer","previousId":"ada@example.com","messageId":"al-1"}`), http.StatusOK)
	for _, e := range a.events(t, user("newcomer")) {
		if e.Properties["previousId"] == "ada@example.com" {
			t.Errorf("the suppressed, erased person's email is stored again, in clear: %+v", e)
		}
	}
}

// hookedList is a suppression list that runs hook once, on the n-th
// Suppressed call after it is armed, between reading the answer and
// returning it: a request decided in that window.
type hookedList struct {
	suppression.List
	mu    sync.Mutex
	calls int
	n     int
	hook  func()
}

func (l *hookedList) arm(n int, hook func()) {
	l.mu.Lock()
	l.calls, l.n, l.hook = 0, n, hook
	l.mu.Unlock()
}

func (l *hookedList) Suppressed(ctx context.Context, h identity.Hash) (bool, error) {
	ok, err := l.List.Suppressed(ctx, h)
	l.mu.Lock()
	var hook func()
	if l.hook != nil {
		if l.calls++; l.calls == l.n {
			hook, l.hook = l.hook, nil
		}
	}
	l.mu.Unlock()
	if hook != nil {
		hook()
	}
	return ok, err
}

// Invariant: a suppressed (and erased) person's identifiers are not stored
// again. admitPrevious reads the suppression list for the alias's
// previousId without holding that person's locks (collect holds the
// alias's userId's only): a SUPPRESS_WITH_DELETE of the previousId's person
// decided and finished between the check and the store is not seen, and
// the alias stores her user id in clear, after her erasure finished,
// where no later erasure of hers looks (it is on another person's profile).
// Collecting one of her own identifiers cannot race so: the message's
// subjects are locked before admit.
func TestAliasRacingSuppressionNotStored(t *testing.T) {
	list := &hookedList{List: suppression.NewMemList()}
	a := newAPI(t, privacy.WithSuppressions(list), privacy.WithKey(ingestKey))
	seed(t, a)
	done := make(chan error, 1)
	var waited bool
	// The alias's suppression check reads the list for newcomer, then for
	// each id "ada" may be: inside the second read, a SUPPRESS_WITH_DELETE
	// of ada starts, and either waits for the alias (whose check holds ada's
	// locks) or runs in the window.
	list.arm(2, func() {
		go func() {
			_, err := a.c.Apply(context.Background(), privacy.Request{Type: privacy.SuppressWithDelete, Subjects: []identity.ID{user("ada")}})
			done <- err
		}()
		select {
		case err := <-done:
			done <- err
		case <-time.After(500 * time.Millisecond):
			waited = true
		}
	})
	wantStatus(t, a.post("/v1/alias", testWriteKey, `{"userId":"newcomer","previousId":"ada","messageId":"al-1"}`), http.StatusOK)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !waited {
		t.Errorf("the suppression ran between the alias's check and its store")
	}
	if _, err := a.c.Profile(context.Background(), user("ada")); !errors.Is(err, privacy.ErrNotFound) {
		t.Fatalf("ada not erased: %v", err)
	}
}

// countingList counts the suppression list's reads.
type countingList struct {
	suppression.List
	reads atomic.Int64
}

func (l *countingList) Suppressed(ctx context.Context, h identity.Hash) (bool, error) {
	l.reads.Add(1)
	return l.List.Suppressed(ctx, h)
}

// SuppressedBatch counts one read and answers with the list's own batch.
func (l *countingList) SuppressedBatch(ctx context.Context, hs []identity.Hash, dst []bool) ([]bool, error) {
	l.reads.Add(1)
	return l.List.(suppression.HashBatchReader).SuppressedBatch(ctx, hs, dst)
}

// migratedPostgres opens a pool of 8 on GDPRKIT_TEST_POSTGRES_DSN (the test
// skips without it), makes a schema named prefix and random hex, dropped at
// the end, and a migrated sqlstore in it.
func migratedPostgres(t *testing.T, prefix string) (*sql.DB, string, *sqlstore.Store) {
	t.Helper()
	dsn := os.Getenv(ingestPostgresEnv)
	if dsn == "" {
		t.Skip("set " + ingestPostgresEnv)
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(8)
	t.Cleanup(func() { db.Close() })
	var r [6]byte
	rand.Read(r[:])
	schema := prefix + hex.EncodeToString(r[:])
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Exec("DROP SCHEMA " + schema + " CASCADE") })
	s, err := sqlstore.New(db, sqlstore.Postgres, sqlstore.WithSchema(schema))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db, schema, s
}

// postgresAPI is an api over a migrated sqlstore in a new PostgreSQL
// schema, its suppression list counted.
func postgresAPI(t *testing.T, opts ...privacy.Option) (*api, *countingList) {
	t.Helper()
	_, _, s := migratedPostgres(t, "gdprkit_r2_")
	list := &countingList{List: s.Suppressions()}
	c, err := privacy.New(append([]privacy.Option{privacy.WithBackends(s), privacy.WithSuppressions(list), privacy.WithKey(ingestKey)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return newAPIOver(t, c), list
}

// Held: what one page of GET /suppressions costs. StillSuppressed is
// called per regulation of the page and reads the list once per hash (and
// per key), with no batching (suppression.BatchReader is not used), then
// searches the journal again with every hash: a page of 200 regulations of
// 5,000 subjects each is a million round trips.
func TestSuppressionsPageCost(t *testing.T) {
	a, list := postgresAPI(t)
	ids := make([]string, privacy.MaxSubjects)
	for i := range ids {
		ids[i] = fmt.Sprintf(`"u-%05d"`, i)
	}
	body := `{"regulationType":"SUPPRESS_ONLY","subjectType":"USER_ID","subjectIds":[` + strings.Join(ids, ",") + `]}`
	const requests = 1
	for range requests {
		a.create(t, body)
	}
	list.reads.Store(0)
	start := time.Now()
	got := a.regulate(http.MethodGet, "/suppressions", "")
	took := time.Since(start)
	wantStatus(t, got, http.StatusOK)
	t.Logf("GET /suppressions over %d regulations of %d subjects: %v, %d suppression list reads", requests, privacy.MaxSubjects, took, list.reads.Load())
	if n := list.reads.Load(); n > 100 {
		t.Errorf("one page of %d regulations read the suppression list %d times (%v): per hash, per regulation", requests, n, took)
	}
}

// Compatibility: the previous decoder (encoding/json into a struct) read
// the batch's envelope keys as encoding/json reads every key, without
// regard to case, as this package still reads a message's own keys
// ("UserId", "Integrations"). The one-pass decoder compares the envelope's
// keys exactly: {"Batch": [...]} is now refused as having no batch, and an
// envelope's "Integrations" (which destinations may have the messages) or
// "Context" is silently dropped while the same key on a message is kept.
func TestBatchEnvelopeKeysAsMessageKeys(t *testing.T) {
	a := newAPI(t)
	got := a.post("/v1/batch", testWriteKey, `{"Batch":[{"type":"track","userId":"u1","event":"Opened","messageId":"m1"}]}`)
	if got.status != http.StatusOK {
		t.Errorf(`{"Batch": [...]} answered %d (the previous decoder took it): %s`, got.status, got.body)
	}
	wantStatus(t, a.post("/v1/batch", testWriteKey, `{"Context":{"locale":"fr-FR"},"batch":[{"type":"track","userId":"u2","event":"Opened","messageId":"m2","Integrations":{"crm":false}}]}`), http.StatusOK)
	evs := a.events(t, user("u2"))
	if len(evs) != 1 || evs[0].Context["locale"] != "fr-FR" {
		t.Errorf(`the envelope's "Context" was dropped (a message's "Integrations" is read): %+v`, evs)
	}
}

// Held: numbers read by the one-pass decoder (UseNumber for the whole
// body when any message may round) are the values /v1/track stores.
func TestBatchNumbersAsSingle(t *testing.T) {
	props := `{"f":0.1,"i":100,"e":1e2,"neg":-0,"arr":[1.5,{"y":2,"z":[3e0]}],"obj":{"w":2.50}}`
	a := newAPI(t)
	wantStatus(t, a.post("/v1/track", testWriteKey, `{"userId":"s","event":"E","messageId":"s1","properties":`+props+`}`), http.StatusOK)
	wantStatus(t, a.post("/v1/batch", testWriteKey, `{"context":{"c":1.25},"batch":[{"type":"track","userId":"b","event":"E","messageId":"b1","properties":`+props+`},`+
		`{"type":"track","userId":"b2","event":"E","messageId":"b2","properties":{"big":12345678901234567890}}]}`), http.StatusOK)
	single, batch := a.events(t, user("s")), a.events(t, user("b"))
	if len(single) != 1 || len(batch) != 1 {
		t.Fatalf("events %d %d", len(single), len(batch))
	}
	if fmt.Sprintf("%#v", single[0].Properties) != fmt.Sprintf("%#v", batch[0].Properties) {
		t.Errorf("single %#v\nbatch  %#v", single[0].Properties, batch[0].Properties)
	}
	if fmt.Sprintf("%#v", batch[0].Context["c"]) != "1.25" {
		t.Errorf("context %#v", batch[0].Context)
	}
	big := a.events(t, user("b2"))
	if len(big) != 1 || fmt.Sprint(big[0].Properties["big"]) != "12345678901234567890" {
		t.Errorf("big %+v", big)
	}
}

// Held: /suppressions on PostgreSQL (the journal's subject index):
// suppress, lift, suppress again, suppress by another identifier of the
// same person, an UNSUPPRESS that fails before its decision (an unknown
// request type cannot, so: one superseded) — one listing per identifier,
// under the regulation in effect.
func TestSuppressionsOnPostgres(t *testing.T) {
	a, _ := postgresAPI(t, privacy.WithClock(steppingClock()))
	seed(t, a)
	first := a.create(t, `{"regulationType":"SUPPRESS_ONLY","subjectType":"USER_ID","subjectIds":["ada"]}`)
	a.create(t, `{"regulationType":"UNSUPPRESS","subjectType":"USER_ID","subjectIds":["ada"]}`)
	again := a.create(t, `{"regulationType":"SUPPRESS_ONLY","subjectType":"USER_ID","subjectIds":["ada"]}`)
	byEmail := a.create(t, `{"regulationType":"SUPPRESS_ONLY","subjectType":"EMAIL","subjectIds":["ada@example.com"]}`)
	got := listedSuppressions(t, a)
	seen := map[string]string{}
	for _, s := range got {
		if s.RegulateID == first {
			t.Errorf("lifted regulation %s listed", first)
		}
		for _, h := range s.SubjectIDs {
			if prev, ok := seen[h]; ok {
				t.Errorf("hash %s listed under %s and %s", h, prev, s.RegulateID)
			}
			seen[h] = s.RegulateID
		}
	}
	if len(got) != 1 || got[0].RegulateID != byEmail {
		t.Errorf("listed %+v; want all under %s (the latest; %s is taken over)", got, byEmail, again)
	}
}

// rejecting refuses every message for good: each becomes a dead letter.
type rejecting struct{}

func (rejecting) Name() string { return "strict" }
func (rejecting) Send(_ context.Context, ms []destination.Message) error {
	e := &destination.RejectedError{Rejected: map[int]error{}}
	for i := range ms {
		e.Rejected[i] = errors.New("no")
	}
	return e
}
func (rejecting) Delete(context.Context, destination.Deletion) error { return nil }

// Held: the derived ids of dead letters go with the person's erasure.
func TestDerivedIDDeadLettersGoneAfterErasure(t *testing.T) {
	a, db := sqliteAPI(t, privacy.WithDestinations(rejecting{}))
	body := `{"userId":"ada","event":"Signed Up"}`
	wantStatus(t, a.post("/v1/track", testWriteKey, body), http.StatusOK)
	id := a.c.MessageIDFor(derivedContent(testSource, "track", []byte(body)))
	if err := a.c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	dead, err := a.c.DeadLetters(context.Background(), "", 0, 100)
	if err != nil || len(dead) == 0 {
		t.Fatalf("no dead letter: %v", err)
	}
	a.create(t, `{"regulationType":"SUPPRESS_WITH_DELETE","subjectType":"USER_ID","subjectIds":["ada"]}`)
	if err := a.c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	dead, _ = a.c.DeadLetters(context.Background(), "", 0, 100)
	for _, d := range dead {
		if d.MessageID == id {
			t.Errorf("dead letter %+v keeps the derived id after the erasure", d)
		}
	}
	if h := sqliteHolders(t, db, strings.TrimPrefix(id, "api-")); len(h) > 0 {
		t.Errorf("derived id still in %v", h)
	}
}

// Invariant: paging tokens carry no personal data (they travel in URLs,
// which access logs and proxies keep, past the person's erasure). The
// events cursor holds the last event's message id and timestamp; a message
// sent without a messageId (curl, a webhook: the example's own
// instructions) gets derivedID's id, an unkeyed SHA-256 of the source id
// (shown as source_id in every answer) and the message's JSON. From a
// logged cursor, one who guesses the message's template confirms whose it
// was, and when, by trying candidate emails offline: an unsalted hash of
// the email. A keyed id (HMAC under a secret the host keeps) cannot be
// tried so.
func TestEventsCursorNotADictionaryHash(t *testing.T) {
	a := newAPI(t)
	tmpl := `{"userId":%q,"event":"Signed Up","timestamp":%q}`
	for i, ts := range []string{"2026-12-07T09:00:00Z", "2026-12-07T09:05:00Z"} {
		_ = i
		wantStatus(t, a.post("/v1/track", testWriteKey, fmt.Sprintf(tmpl, "ada@example.com", ts)), http.StatusOK)
	}
	got := a.get(space + "users/profiles/user_id:ada@example.com/events?limit=1")
	wantStatus(t, got, http.StatusOK)
	next := decodeInto[struct{ Cursor cursor }](t, got).Cursor.Next
	c, err := profile.DecodeCursor(next)
	if err != nil {
		t.Fatal(err)
	}
	// Offline, with the cursor alone: its time, a template, a list of emails.
	ts := c.Timestamp.Format(time.RFC3339)
	for _, guess := range []string{"bob@example.com", "carol@example.com", "ada@example.com"} {
		// The attacker's best: the unkeyed hash the first version used.
		sum := sha256.Sum256(derivedContent(testSource, "track", []byte(fmt.Sprintf(tmpl, guess, ts))))
		if strings.Contains(c.MessageID, hex.EncodeToString(sum[:16])) {
			t.Errorf("the cursor %q in a URL names %s, by an offline guess of an unkeyed hash", next, guess)
		}
	}
}
