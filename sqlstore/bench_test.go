package sqlstore_test

// Benchmarks of the Controller over the SQL adapter, each beside a baseline
// measured in the same run on the same pool, so that the ratio means
// something on a noisy machine:
//
//	GDPRKIT_TEST_POSTGRES_DSN=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//		go test -overlay=testdata/testdeps/overlay.json -run '^$' -bench 'CollectTrack|BareInsert' -count 5 ./sqlstore/
//	GDPRKIT_TEST_POSTGRES_DSN=... go test -overlay=testdata/testdeps/overlay.json -run '^$' -bench Erase1000Events -benchtime 30x -timeout 30m ./sqlstore/
//
// Without the variable the PostgreSQL sub-benchmarks skip.

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/sqlstore"
)

// benchPeople is how many known people the collection benchmarks spread
// their messages over.
const benchPeople = 100

// seedKnown collects an identify for n people and returns their user ids.
func seedKnown(b *testing.B, c *privacy.Controller, n int) []string {
	b.Helper()
	var uids []string
	for i := range n {
		uid := fmt.Sprintf("bench-user-%04d", i)
		must(b, c.Collect(b.Context(), privacy.Identify{MessageID: "seed-" + uid, UserID: uid,
			Traits: map[string]any{"email": fmt.Sprintf("bench%04d@example.com", i), "plan": "pro"}, Timestamp: time.Now()}))
		uids = append(uids, uid)
	}
	return uids
}

// loopMessages is the loop of the benchmarks that handle a message per
// iteration (BenchmarkCollectTrack and its baseline BenchmarkBareInsert):
// send handles message i, and the messages a second and the statements a
// message that p's pool sent are reported, so that the two compare alike.
func loopMessages(b *testing.B, p *proc, send func(i int)) {
	before := p.cnt.snapshot()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		send(i)
		i++
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(p.cnt.snapshot().sub(before).total())/float64(i), "stmts/msg")
}

// BenchmarkCollectTrack collects track messages about known people through a
// Controller on every backend of the Store, one Collect at a time: the
// figure to hold against BenchmarkBareInsert's.
func BenchmarkCollectTrack(b *testing.B) {
	for _, d := range testDialects {
		b.Run(d.name, func(b *testing.B) {
			s := newSite(b, d.dialect)
			p := s.open(b)
			c := p.controller(b, nil)
			uids := seedKnown(b, c, benchPeople)
			ctx := b.Context()
			ts := time.Now()
			var trace []string
			loopMessages(b, p, func(i int) {
				if i == 10 {
					p.cnt.startTrace()
				}
				err := c.Collect(ctx, privacy.Track{MessageID: fmt.Sprintf("bench-%d", i), UserID: uids[i%len(uids)], Event: "Product Viewed",
					Properties: map[string]any{"sku": "TENT-2P", "price": 249}, Timestamp: ts})
				if err != nil {
					b.Fatal(err)
				}
				if i == 10 {
					trace = p.cnt.stopTrace()
				}
			})
			logTrace(b, "the statements of one Collect", trace)
		})
	}
}

// scratchTable creates a table shaped as the adapter's events table
// (profile_messages: the same columns, primary key and index) and returns
// its name and the adapter's own insert statement for it.
func scratchTable(b *testing.B, s *site, db *sql.DB) (string, string) {
	b.Helper()
	ctx := b.Context()
	name := s.table("bench_scratch")
	if s.Dialect == sqlstore.Postgres {
		must(b, execAll(ctx, db, "CREATE TABLE "+name+" (LIKE "+s.table("profile_messages")+" INCLUDING ALL)"))
	} else {
		// The adapter's DDL for the events table and its index, renamed.
		rows, err := db.QueryContext(ctx, `SELECT sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL ORDER BY type = 'index'`,
			s.table("profile_messages"))
		must(b, err)
		var ddl []string
		for rows.Next() {
			var q string
			must(b, rows.Scan(&q))
			q = strings.ReplaceAll(q, s.table("profile_messages"), name)
			q = strings.ReplaceAll(q, sqlstore.DefaultTablePrefix+"profile_events", sqlstore.DefaultTablePrefix+"bench_scratch_events")
			ddl = append(ddl, q)
		}
		must(b, rows.Err())
		if len(ddl) < 2 { // the table and its indexes: the events' and, since migration 0009, the clear ones'
			b.Fatalf("the events table's DDL: %q", ddl)
		}
		must(b, execAll(ctx, db, ddl...))
	}
	insert := s.q(`INSERT INTO ` + name + ` (profile_id, message_id, event_name, properties, ts, received_at)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (profile_id, message_id) DO NOTHING`)
	return name, insert
}

func execAll(ctx context.Context, db interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, queries ...string) error {
	for _, q := range queries {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// tsArg is a time as the adapter stores it: timestamptz on PostgreSQL,
// integer Unix microseconds on SQLite.
func tsArg(s *site, t time.Time) any {
	if s.Dialect == sqlstore.SQLite {
		return t.UnixMicro()
	}
	return t
}

// BenchmarkBareInsert is BenchmarkCollectTrack's baseline: the row a tracked
// message stores, inserted with the adapter's statement into a table of the
// same shape, one transaction per message, on the same kind of pool.
func BenchmarkBareInsert(b *testing.B) {
	for _, d := range testDialects {
		b.Run(d.name, func(b *testing.B) {
			s := newSite(b, d.dialect)
			p := s.open(b)
			_, insert := scratchTable(b, s, p.db)
			ctx := b.Context()
			ts := tsArg(s, time.Now())
			loopMessages(b, p, func(i int) {
				tx, err := p.db.BeginTx(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := tx.ExecContext(ctx, insert, fmt.Sprintf("use_bench%04d", i%benchPeople), fmt.Sprintf("bench-%d", i),
					"Product Viewed", `{"price":249,"sku":"TENT-2P"}`, ts, ts); err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// eraseSizes are the numbers of other people BenchmarkErase1000Events erases
// among, per dialect. Loading a million takes about a minute on a small
// machine, for each dialect.
var eraseSizes = map[sqlstore.Dialect][]struct {
	label string
	n     int
}{
	sqlstore.Postgres: {{"10k", 10_000}, {"1M", 1_000_000}},
	sqlstore.SQLite:   {{"10k", 10_000}, {"1M", 1_000_000}},
}

// BenchmarkErase1000Events erases (DELETE_ONLY, through the Controller, in
// clear: WithoutEncryption) a person with 1,000 events among many others, and reports the median time
// per erasure and the statements (round trips) each one sends, the journal's
// and the audit log's included.
//
// The person is collected through the Controller once, as a template; each
// iteration copies the template's rows, untimed, under a new profile id and
// new identifiers, and erases the copy. The others are loaded with set-based
// SQL into the adapter's tables: each has two identifiers, a profile, two
// traits, three recorded messages (an identify and two events), an audience
// state and one or two memberships.
func BenchmarkErase1000Events(b *testing.B) {
	for _, d := range testDialects {
		b.Run(d.name, func(b *testing.B) {
			for _, size := range eraseSizes[d.dialect] {
				b.Run("others="+size.label, func(b *testing.B) { benchErase(b, d.dialect, size.n) })
			}
		})
	}
}

func benchErase(b *testing.B, d sqlstore.Dialect, others int) {
	s := newSite(b, d)
	ctx := b.Context()
	p := s.open(b)
	// In clear: the copies are made by SQL, under new profile ids and
	// identifiers, which sealed values (bound to their profile, identifiers
	// looked up by their index) would not follow.
	c := p.controller(b, nil, privacy.WithoutEncryption())
	must(b, c.DefineAudience(ctx, audience.Definition{Key: "pro", Query: `trait('plan') = 'pro'`}))
	must(b, c.DefineAudience(ctx, audience.Definition{Key: "viewers", Query: `event('Viewed').count() >= 1`}))

	// The template: an identify and 1,000 tracks, through the Controller.
	const uid = "erase-template"
	start := time.Now()
	must(b, c.Collect(ctx, privacy.Identify{MessageID: "tmpl-identify", UserID: uid, AnonymousID: "tmpl-device",
		Traits: map[string]any{"email": "template@example.com", "plan": "pro", "name": "Template"}, Timestamp: start}))
	for i := range 1000 {
		must(b, c.Collect(ctx, privacy.Track{MessageID: fmt.Sprintf("tmpl-%04d", i), UserID: uid, Event: "Viewed",
			Properties: map[string]any{"i": i, "sku": "TENT-2P"}, Timestamp: start.Add(-time.Duration(i) * time.Second)}))
	}
	prof, err := c.Profile(ctx, identity.ID{Type: identity.TypeUserID, Value: uid})
	must(b, err)
	tmpl := prof.ID
	b.Logf("template with 1,000 events collected through the Controller in %v", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	loadOthers(b, s, p.db, tmpl, others)
	b.Logf("%d other people loaded in %v", others, time.Since(start).Round(time.Millisecond))

	var took []time.Duration
	var trips []int64
	var last counts
	var pid identity.ProfileID
	var trace []string
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		b.StopTimer()
		n++
		suffix := fmt.Sprintf("-copy%d", n)
		pid = cloneProfile(b, s, p.db, tmpl, suffix)
		before := p.cnt.snapshot()
		if n == 2 { // the first may prepare statements on new connections
			p.cnt.startTrace()
		}
		b.StartTimer()
		t0 := time.Now()
		r, err := c.Erase(ctx, identity.ID{Type: identity.TypeUserID, Value: uid + suffix})
		took = append(took, time.Since(t0))
		if err != nil || r.Status != privacy.Finished {
			b.Fatalf("Erase = %+v, %v", r, err)
		}
		last = p.cnt.snapshot().sub(before)
		trips = append(trips, last.total())
		if n == 2 {
			trace = p.cnt.stopTrace()
		}
	}
	b.StopTimer()
	if got := s.storedMessages(b, s.dataDB(b), pid); len(got) != 0 {
		b.Fatalf("the last erased copy still has %d messages", len(got))
	}
	slices.Sort(took)
	slices.Sort(trips)
	b.ReportMetric(float64(took[len(took)/2])/float64(time.Millisecond), "ms/erase")
	b.ReportMetric(float64(trips[len(trips)/2]), "roundtrips/erase")
	b.Logf("%d erasures: median %v (min %v, max %v); statements per erasure: median %d, last %v",
		len(took), took[len(took)/2], took[0], took[len(took)-1], trips[len(trips)/2], last)
	logTrace(b, "the statements of the second erasure", trace)
}

// logTrace logs the statements of a trace, with -test.v.
func logTrace(b *testing.B, title string, trace []string) {
	if !testing.Verbose() || len(trace) == 0 {
		return
	}
	var lines strings.Builder
	for i, q := range trace {
		fmt.Fprintf(&lines, "\n  %2d %.110s", i+1, q)
	}
	b.Logf("%s:%s", title, lines.String())
}

// cloneProfile copies every row of the template profile under a new profile
// id, with suffix appended to its identifiers' values, and returns the id.
func cloneProfile(b *testing.B, s *site, db *sql.DB, tmpl identity.ProfileID, suffix string) identity.ProfileID {
	b.Helper()
	ctx := b.Context()
	pid := identity.NewProfileID(time.Now())
	cast := ""
	if s.Dialect == sqlstore.Postgres {
		cast = "::text"
	}
	tx, err := db.BeginTx(ctx, nil)
	must(b, err)
	defer tx.Rollback()
	for _, q := range []string{
		`INSERT INTO {t}identity_profiles (profile_id, created_at) SELECT $2` + cast + `, created_at FROM {t}identity_profiles WHERE profile_id = $1`,
		`INSERT INTO {t}identity_links (id_type, id_value, profile_id, ord, linked_at, message_id)
			SELECT id_type, id_value || $3` + cast + `, $2` + cast + `, ord, linked_at, message_id FROM {t}identity_links WHERE profile_id = $1`,
		`INSERT INTO {t}identity_merges (profile_id, ord, from_id, merged_at, message_id)
			SELECT $2` + cast + `, ord, from_id, merged_at, message_id FROM {t}identity_merges WHERE profile_id = $1`,
		`INSERT INTO {t}profiles (profile_id, created_at, updated_at, version, first_message_id, last_message_id, first_seen, last_seen, recipients)
			SELECT $2` + cast + `, created_at, updated_at, version, first_message_id, last_message_id, first_seen, last_seen, recipients FROM {t}profiles WHERE profile_id = $1`,
		`INSERT INTO {t}profile_traits (profile_id, trait_key, value, source, updated_at)
			SELECT $2` + cast + `, trait_key, value, source, updated_at FROM {t}profile_traits WHERE profile_id = $1`,
		`INSERT INTO {t}profile_messages (profile_id, message_id, event_name, properties, ts, received_at)
			SELECT $2` + cast + `, message_id, event_name, properties, ts, received_at FROM {t}profile_messages WHERE profile_id = $1`,
		`INSERT INTO {t}audience_states (profile_id, state, next_change) SELECT $2` + cast + `, state, next_change FROM {t}audience_states WHERE profile_id = $1`,
		`INSERT INTO {t}audience_members (audience_key, profile_id) SELECT audience_key, $2` + cast + ` FROM {t}audience_members WHERE profile_id = $1`,
	} {
		q = s.q(strings.ReplaceAll(q, "{t}", s.table("")))
		if _, err := tx.ExecContext(ctx, q, argsFor(q, string(tmpl), string(pid), suffix)...); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	must(b, tx.Commit())
	return pid
}

// loadOthers loads n people straight into the adapter's tables, in one
// transaction of set-based statements: on PostgreSQL from generate_series, on
// SQLite from a recursive CTE. Their audience state is the template's.
func loadOthers(b *testing.B, s *site, db *sql.DB, tmpl identity.ProfileID, n int) {
	b.Helper()
	ctx := b.Context()
	var state string
	must(b, db.QueryRowContext(ctx, s.q("SELECT state FROM "+s.table("audience_states")+" WHERE profile_id = $1"), string(tmpl)).Scan(&state))
	// One connection, for SQLite's temporary table and a page cache big
	// enough to hold the transaction.
	conn, err := db.Conn(ctx)
	must(b, err)
	defer conn.Close()
	if s.Dialect == sqlstore.SQLite {
		must(b, execAll(ctx, conn, "PRAGMA cache_size = -524288"))
		defer conn.ExecContext(context.Background(), "PRAGMA cache_size = -2000")
	}
	tx, err := conn.BeginTx(ctx, nil)
	must(b, err)
	defer tx.Rollback()
	// Every insert is sorted by the table's primary key: appending to a
	// B-tree is much cheaper than inserting at random.
	var queries []string
	if s.Dialect == sqlstore.Postgres {
		// others(i, pid, at): profile ids spread over the index as real ones are.
		others := `(SELECT i, ('use_' || substr(md5(i::text), 1, 26)) COLLATE "C" AS pid, now() - i * interval '1 second' AS at FROM generate_series(1, $1::int) i) o`
		queries = []string{
			`INSERT INTO {t}identity_profiles (profile_id, created_at) SELECT pid, at FROM ` + others + ` ORDER BY 1`,
			`INSERT INTO {t}identity_links (id_type, id_value, profile_id, ord, linked_at, message_id)
				SELECT 'user_id', 'other-' || i, pid, 1, at, 'm-' || i FROM ` + others + `
				UNION ALL SELECT 'email', 'other' || i || '@example.com', pid, 2, at, 'm-' || i FROM ` + others + ` ORDER BY 1, 2`,
			`INSERT INTO {t}profiles (profile_id, created_at, updated_at, version, first_message_id, last_message_id, first_seen, last_seen, recipients)
				SELECT pid, at, at, 3, 'm-' || i, 'm-' || i || '-2', at, at, NULL FROM ` + others + ` ORDER BY 1`,
			`INSERT INTO {t}profile_traits (profile_id, trait_key, value, source, updated_at)
				SELECT pid, 'email', ('"other' || i || '@example.com"')::json, '', at FROM ` + others + `
				UNION ALL SELECT pid, 'plan', CASE WHEN i % 2 = 0 THEN '"pro"' ELSE '"free"' END::json, '', at FROM ` + others + ` ORDER BY 1, 2`,
			`INSERT INTO {t}profile_messages (profile_id, message_id, event_name, properties, ts, received_at)
				SELECT pid, 'm-' || i, NULL, NULL, NULL, NULL FROM ` + others + `
				UNION ALL SELECT pid, 'm-' || i || '-' || k, 'Viewed', ('{"i":' || k || '}')::json, at + k * interval '1 second', at
				FROM ` + others + `, generate_series(1, 2) k ORDER BY 1, 2`,
			`INSERT INTO {t}audience_states (profile_id, state, next_change) SELECT pid, $2::text, NULL FROM ` + others + ` ORDER BY 1`,
			`INSERT INTO {t}audience_members (audience_key, profile_id) SELECT 'viewers', pid FROM ` + others + `
				UNION ALL SELECT 'pro', pid FROM ` + others + ` WHERE i % 2 = 0 ORDER BY 1, 2`,
		}
	} else {
		// A temporary table of the others, on the transaction's connection.
		now := time.Now().UnixMicro()
		queries = []string{
			`CREATE TEMP TABLE others (i INTEGER PRIMARY KEY, pid TEXT NOT NULL, at INTEGER NOT NULL)`,
			`WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $1)
				INSERT INTO others SELECT i, 'use_' || lower(hex(randomblob(13))), ` + fmt.Sprint(now) + ` - i * 1000000 FROM s`,
			`INSERT INTO {t}identity_profiles (profile_id, created_at) SELECT pid, at FROM others ORDER BY 1`,
			`INSERT INTO {t}identity_links (id_type, id_value, profile_id, ord, linked_at, message_id)
				SELECT 'user_id', 'other-' || i, pid, 1, at, 'm-' || i FROM others
				UNION ALL SELECT 'email', 'other' || i || '@example.com', pid, 2, at, 'm-' || i FROM others ORDER BY 1, 2`,
			`INSERT INTO {t}profiles (profile_id, created_at, updated_at, version, first_message_id, last_message_id, first_seen, last_seen, recipients)
				SELECT pid, at, at, 3, 'm-' || i, 'm-' || i || '-2', at, at, NULL FROM others ORDER BY 1`,
			`INSERT INTO {t}profile_traits (profile_id, trait_key, value, source, updated_at)
				SELECT pid, 'email', '"other' || i || '@example.com"', '', at FROM others
				UNION ALL SELECT pid, 'plan', CASE WHEN i % 2 = 0 THEN '"pro"' ELSE '"free"' END, '', at FROM others ORDER BY 1, 2`,
			`INSERT INTO {t}profile_messages (profile_id, message_id, event_name, properties, ts, received_at)
				SELECT pid, 'm-' || i, NULL, NULL, NULL, NULL FROM others
				UNION ALL SELECT pid, 'm-' || i || '-' || k, 'Viewed', '{"i":' || k || '}', at + k * 1000000, at
				FROM others, (SELECT 1 AS k UNION ALL SELECT 2) ORDER BY 1, 2`,
			`INSERT INTO {t}audience_states (profile_id, state, next_change) SELECT pid, $2, NULL FROM others ORDER BY 1`,
			`INSERT INTO {t}audience_members (audience_key, profile_id) SELECT 'viewers', pid FROM others
				UNION ALL SELECT 'pro', pid FROM others WHERE i % 2 = 0 ORDER BY 1, 2`,
			`DROP TABLE others`,
		}
	}
	for _, q := range queries {
		q = s.q(strings.ReplaceAll(q, "{t}", s.table("")))
		if _, err := tx.ExecContext(ctx, q, argsFor(q, n, state)...); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	must(b, tx.Commit())
	_, err = db.ExecContext(ctx, "ANALYZE")
	must(b, err)
	var count int
	must(b, db.QueryRowContext(ctx, "SELECT count(*) FROM "+s.table("profiles")).Scan(&count))
	if count != n+1 {
		b.Fatalf("%d profiles after loading %d others; want %d", count, n, n+1)
	}
}

// argsFor returns the first arguments of args, as many as q's highest
// parameter ($N, or ?N) asks for: PostgreSQL refuses extra ones.
func argsFor(q string, args ...any) []any {
	n := 0
	for i := 1; i <= len(args); i++ {
		if strings.Contains(q, fmt.Sprintf("$%d", i)) || strings.Contains(q, fmt.Sprintf("?%d", i)) {
			n = i
		}
	}
	return args[:n]
}

// BenchmarkCollectBatch collects batches of privacy.BatchSize track messages
// about known people through CollectBatch, and beside each batch, as its
// baseline in the same run, stores the same rows in a table shaped as the
// adapter's events table two ways: a bare loop of one INSERT per row in one
// transaction on one connection (the "bare INSERT loop"), and one multi-row
// INSERT (about the least a database can do for them). It reports the rate of
// each and the ratios, and the statements each batch sends.
//
// With audiences, two are defined, one on a trait and one counting the
// tracked event, so every message updates its person's audience state.
func BenchmarkCollectBatch(b *testing.B) {
	for _, d := range testDialects {
		for _, audiences := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/audiences=%v", d.name, audiences), func(b *testing.B) { benchCollectBatch(b, d.dialect, audiences) })
		}
	}
}

func benchCollectBatch(b *testing.B, dialect sqlstore.Dialect, audiences bool) {
	s := newSite(b, dialect)
	p := s.open(b)
	c := p.controller(b, nil)
	if audiences {
		must(b, c.DefineAudience(b.Context(), audience.Definition{Key: "pro", Query: `trait('plan') = 'pro'`}))
		must(b, c.DefineAudience(b.Context(), audience.Definition{Key: "viewers", Query: `event('Product Viewed').count() >= 3`}))
	}
	uids := seedKnown(b, c, benchPeople)
	name, insert := scratchTable(b, s, p.db)
	ctx := b.Context()
	ts := time.Now()
	const props = `{"price":249,"sku":"TENT-2P"}`
	msgs := make([]privacy.Message, privacy.BatchSize)
	var collect, loop, multi time.Duration
	var stmts int64
	var trace []string
	n, rows := 0, 0
	b.ReportAllocs()
	for b.Loop() {
		for j := range msgs {
			msgs[j] = privacy.Track{MessageID: fmt.Sprintf("bench-%d-%d", n, j), UserID: uids[j%len(uids)], Event: "Product Viewed",
				Properties: map[string]any{"sku": "TENT-2P", "price": 249}, Timestamp: ts}
		}
		before := p.cnt.snapshot()
		if n == 1 {
			p.cnt.startTrace()
		}
		start := time.Now()
		if err := c.CollectBatch(ctx, msgs); err != nil {
			b.Fatal(err)
		}
		collect += time.Since(start)
		if n == 1 {
			trace = p.cnt.stopTrace()
		}
		stmts += p.cnt.snapshot().sub(before).total()

		b.StopTimer()
		loop += timeInsertLoop(b, p.db, insert, n, len(msgs), tsArg(s, ts), props)
		multi += timeMultiRowInsert(b, s, p.db, name, n, len(msgs), tsArg(s, ts), props)
		b.StartTimer()
		n++
		rows += len(msgs)
	}
	b.ReportMetric(float64(rows)/collect.Seconds(), "msgs/s")
	b.ReportMetric(float64(rows)/loop.Seconds(), "loop-rows/s")
	b.ReportMetric(float64(rows)/multi.Seconds(), "multirow-rows/s")
	b.ReportMetric(loop.Seconds()/collect.Seconds(), "x-loop")
	b.ReportMetric(multi.Seconds()/collect.Seconds(), "x-multirow")
	b.ReportMetric(float64(stmts)/float64(n), "stmts/batch")
	logTrace(b, "the statements of one CollectBatch", trace)
}

// timeInsertLoop inserts the rows of batch n one INSERT at a time, in one
// transaction on one connection, and returns how long it took.
func timeInsertLoop(b *testing.B, db *sql.DB, insert string, n, size int, ts any, props string) time.Duration {
	b.Helper()
	ctx := b.Context()
	start := time.Now()
	conn, err := db.Conn(ctx)
	must(b, err)
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	must(b, err)
	for j := range size {
		if _, err := tx.ExecContext(ctx, insert, fmt.Sprintf("use_bench%04d", j%benchPeople), fmt.Sprintf("loop-%d-%d", n, j),
			"Product Viewed", props, ts, ts); err != nil {
			b.Fatal(err)
		}
	}
	must(b, tx.Commit())
	return time.Since(start)
}

// timeMultiRowInsert inserts the rows of batch n with multi-row INSERTs, in
// one transaction, and returns how long it took. The statements are sized as
// the adapter's: 500 rows on PostgreSQL; on SQLite, whose driver binds
// numbered parameters in quadratic time, 166 rows (under 1,000 parameters)
// with anonymous ones.
func timeMultiRowInsert(b *testing.B, s *site, db *sql.DB, table string, n, size int, ts any, props string) time.Duration {
	b.Helper()
	ctx := b.Context()
	perStmt := 500
	if s.Dialect == sqlstore.SQLite {
		perStmt = 166
	}
	start := time.Now()
	tx, err := db.BeginTx(ctx, nil)
	must(b, err)
	for lo := 0; lo < size; lo += perStmt {
		var q strings.Builder
		q.WriteString("INSERT INTO " + table + " (profile_id, message_id, event_name, properties, ts, received_at) VALUES ")
		var args []any
		for j := lo; j < min(lo+perStmt, size); j++ {
			if j > lo {
				q.WriteString(", ")
			}
			if k := len(args); s.Dialect == sqlstore.SQLite {
				q.WriteString("(?, ?, ?, ?, ?, ?)")
			} else {
				fmt.Fprintf(&q, "($%d, $%d, $%d, $%d, $%d, $%d)", k+1, k+2, k+3, k+4, k+5, k+6)
			}
			args = append(args, fmt.Sprintf("use_bench%04d", j%benchPeople), fmt.Sprintf("multi-%d-%d", n, j), "Product Viewed", props, ts, ts)
		}
		q.WriteString(" ON CONFLICT (profile_id, message_id) DO NOTHING")
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			b.Fatal(err)
		}
	}
	must(b, tx.Commit())
	return time.Since(start)
}
