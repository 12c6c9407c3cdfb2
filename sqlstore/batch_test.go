package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/suppression"
	"github.com/gdprkit/privacy/txscope"
)

// countingEx counts the statements sent through it: one round trip each.
type countingEx struct {
	Executor
	n atomic.Int64
}

func (c *countingEx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	c.n.Add(1)
	return c.Executor.ExecContext(ctx, q, args...)
}

func (c *countingEx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	c.n.Add(1)
	return c.Executor.QueryContext(ctx, q, args...)
}

func (c *countingEx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	c.n.Add(1)
	return c.Executor.QueryRowContext(ctx, q, args...)
}

// statements returns how many statements f sent through c.
func (c *countingEx) statements(f func()) int64 {
	before := c.n.Load()
	f()
	return c.n.Load() - before
}

// countedView returns a view of s whose every statement runs, counted, in a
// database transaction of the test's, rolled back when the test ends unless
// the test commits it.
func countedView(t *testing.T, s *Store) (*Store, *countingEx, *sql.Tx) {
	t.Helper()
	tx, err := s.db.BeginTx(t.Context(), nil)
	must(t, err)
	t.Cleanup(func() { tx.Rollback() })
	c := &countingEx{Executor: tx}
	return s.WithTx(c), c, tx
}

// countedPool returns a view of s whose statements outside transactions go,
// counted, to its pool.
func countedPool(s *Store) (*Store, *countingEx) {
	c := &countingEx{Executor: s.db}
	return s.WithTx(c), c
}

// checkSmallBatches calls read, a batch read named name, on lists of every
// length from 1 to 20 of items drawn from pool with r (repeats likely), and
// checks that each answers what want computes, in one statement counted by c.
// noun names the items in failures.
func checkSmallBatches[I, R any](t *testing.T, r *rand.Rand, c *countingEx, pool []I, name, noun string, want func([]I) R, read func([]I) (R, error)) {
	t.Helper()
	for n := 1; n <= 20; n++ {
		items := make([]I, n)
		for i := range items {
			items[i] = pool[r.IntN(len(pool))]
		}
		var got R
		var err error
		sent := c.statements(func() { got, err = read(items) })
		must(t, err)
		if diff := cmp.Diff(want(items), got); diff != "" {
			t.Fatalf("%s of %v (-want +got):\n%s", name, items, diff)
		}
		if sent != 1 {
			t.Errorf("%s of %d %s: %d statements, want 1", name, n, noun, sent)
		}
	}
}

// stmts returns how many statements n rows take at perStmt rows each.
func stmts(n, perStmt int) int64 { return int64((n + perStmt - 1) / perStmt) }

// dumpProfileTables returns every row of the profile store's tables, as text,
// in key order.
func dumpProfileTables(t *testing.T, s *Store, ex Executor) []string {
	t.Helper()
	return dumpRows(t, s, ex,
		`SELECT 'profile', profile_id, created_at, updated_at, version, first_message_id, last_message_id, first_seen, last_seen, CAST(recipients AS text)
			FROM {p}profiles ORDER BY profile_id`,
		`SELECT 'trait', profile_id, trait_key, CAST(value AS text), source, updated_at FROM {p}profile_traits ORDER BY profile_id, trait_key`,
		`SELECT 'message', profile_id, message_id, event_name, CAST(properties AS text), ts, received_at
			FROM {p}profile_messages ORDER BY profile_id, message_id`,
	)
}

// dumpAudienceTables returns every row of the audience states and
// memberships, as text, in key order.
func dumpAudienceTables(t *testing.T, s *Store, ex Executor) []string {
	t.Helper()
	return dumpRows(t, s, ex,
		`SELECT 'state', profile_id, state, next_change FROM {p}audience_states ORDER BY profile_id`,
		`SELECT 'member', audience_key, profile_id FROM {p}audience_members ORDER BY audience_key, profile_id`,
	)
}

// dumpRows returns the rows of the queries, as text, a line each.
func dumpRows(t *testing.T, s *Store, ex Executor, queries ...string) []string {
	t.Helper()
	var out []string
	for _, q := range queries {
		rows, err := ex.QueryContext(t.Context(), s.sql(q))
		must(t, err)
		for _, vals := range ScanAll(t, rows) {
			var b strings.Builder
			for i, v := range vals {
				if i > 0 {
					b.WriteString(" | ")
				}
				switch v := v.(type) {
				case []byte:
					b.Write(v)
				case time.Time:
					b.WriteString(v.UTC().Format(time.RFC3339Nano))
				default:
					fmt.Fprint(&b, v)
				}
			}
			out = append(out, b.String())
		}
	}
	return out
}

// applyOneByOne applies the updates with one Update call each, in one
// transaction, and returns which were duplicates.
func applyOneByOne(t *testing.T, s *Store, updates []profile.BatchUpdate) []bool {
	t.Helper()
	ctx := t.Context()
	tx := profileTxn(t, s.Profiles())
	var dup []bool
	for i, u := range updates {
		err := tx.Update(ctx, u.Profile, u.Update)
		switch {
		case err == nil:
			dup = append(dup, false)
		case errors.Is(err, profile.ErrDuplicate):
			dup = append(dup, true)
		default:
			t.Fatalf("Update %d: %v", i, err)
		}
	}
	must(t, tx.Commit(ctx))
	return dup
}

// applyBatch applies the updates with one UpdateBatch call, in one
// transaction, and returns which were duplicates.
func applyBatch(t *testing.T, s *Store, updates []profile.BatchUpdate) []bool {
	t.Helper()
	ctx := t.Context()
	tx := profileTxn(t, s.Profiles())
	dup, err := tx.(profile.BatchTx).UpdateBatch(ctx, updates, nil)
	must(t, err)
	must(t, tx.Commit(ctx))
	return dup
}

// randomUpdates returns n updates over a few profiles, with message ids
// repeated within the batch and across batches, updates without a message id,
// events, traits set and removed (the same key in both, at times), and
// recipients.
func randomUpdates(r *rand.Rand, round, n int) []profile.BatchUpdate {
	values := []any{"pro", 42.5, nil, true, map[string]any{"a": []any{1.0, "two"}}, "x\u00e9<&>"}
	keys := []string{"k0", "k1", "k2", "k3", "k4", "k5"}
	out := make([]profile.BatchUpdate, n)
	for i := range out {
		seq := round*n + i
		at := t0.Add(time.Duration(seq) * time.Second)
		u := profile.Update{Metadata: profile.Metadata{
			CreatedAt: t0, UpdatedAt: at, Version: uint64(seq + 1),
			FirstMessageID: "first", LastMessageID: fmt.Sprint("last-", seq), FirstSeen: t0, LastSeen: at,
		}}
		if r.IntN(4) == 0 {
			u.Metadata.Recipients = []profile.Recipient{{Name: "crm", FirstSent: t0, LastSent: at}}
		}
		if r.IntN(8) != 0 {
			u.MessageID = fmt.Sprint("m", r.IntN(40))
			if r.IntN(2) == 0 {
				u.Event = &profile.Event{MessageID: u.MessageID, Name: fmt.Sprint("E", r.IntN(3)),
					Properties: map[string]any{"seq": float64(seq)}, Timestamp: at, ReceivedAt: at.Add(time.Millisecond)}
			}
		}
		for range r.IntN(4) {
			if u.Set == nil {
				u.Set = map[string]profile.Trait{}
			}
			u.Set[keys[r.IntN(len(keys))]] = profile.Trait{Value: values[r.IntN(len(values))], Source: fmt.Sprint("src", seq), UpdatedAt: at}
		}
		for range r.IntN(3) {
			u.Remove = append(u.Remove, keys[r.IntN(len(keys))])
		}
		out[i] = profile.BatchUpdate{Profile: identity.ProfileID(fmt.Sprint("use_", r.IntN(8))), Update: u}
	}
	return out
}

// TestUpdateBatchEqualsUpdates applies random batches to one store with
// UpdateBatch and to another with one Update per item: the duplicates
// reported and every row of the profile store's tables must be the same.
func TestUpdateBatchEqualsUpdates(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			batched, oneByOne := d.open(t), d.open(t)
			r := rand.New(rand.NewPCG(1, 2))
			for round := range 4 {
				updates := randomUpdates(r, round, 150)
				got := applyBatch(t, batched, updates)
				want := applyOneByOne(t, oneByOne, updates)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("round %d: duplicates (-Update +UpdateBatch):\n%s", round, diff)
				}
				if !containsBoth(got) {
					t.Fatalf("round %d: the batch had no duplicates or no new messages, a weak test: %v", round, got)
				}
				if diff := cmp.Diff(dumpProfileTables(t, oneByOne, oneByOne.db), dumpProfileTables(t, batched, batched.db)); diff != "" {
					t.Fatalf("round %d: tables (-Update +UpdateBatch):\n%s", round, diff)
				}
			}
			// The reads of the profile API agree too (the tables do, this is
			// for the record).
			for i := range 8 {
				pid := identity.ProfileID(fmt.Sprint("use_", i))
				want, err := oneByOne.Profiles().Get(t.Context(), pid)
				must(t, err)
				got, err := batched.Profiles().Get(t.Context(), pid)
				must(t, err)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("profile %s (-Update +UpdateBatch):\n%s", pid, diff)
				}
			}
		})
	}
}

func containsBoth(dup []bool) bool {
	var yes, no bool
	for _, d := range dup {
		yes, no = yes || d, no || !d
	}
	return yes && no
}

// msg returns an update recording message id on a profile, setting and
// removing traits.
func msg(pid identity.ProfileID, id string, version uint64, set map[string]any, remove ...string) profile.BatchUpdate {
	u := profile.Update{
		Metadata:  profile.Metadata{CreatedAt: t0, UpdatedAt: t0, Version: version, LastMessageID: id, FirstSeen: t0, LastSeen: t0},
		MessageID: id,
		Remove:    remove,
	}
	for k, v := range set {
		if u.Set == nil {
			u.Set = map[string]profile.Trait{}
		}
		u.Set[k] = profile.Trait{Value: v, Source: id, UpdatedAt: t0}
	}
	return profile.BatchUpdate{Profile: pid, Update: u}
}

func TestUpdateBatchDuplicates(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p, q := identity.ProfileID("use_p"), identity.ProfileID("use_q")
		applyBatch(t, s, []profile.BatchUpdate{msg(p, "m1", 1, map[string]any{"a": "1"})})

		tx := profileTxn(t, s.Profiles())
		btx := tx.(profile.BatchTx)
		prefix := []bool{true} // UpdateBatch appends
		dup, err := btx.UpdateBatch(ctx, []profile.BatchUpdate{
			msg(p, "m1", 10, map[string]any{"dup": "committed"}), // recorded before
			msg(p, "m2", 2, map[string]any{"b": "2"}),
			msg(p, "m2", 11, map[string]any{"dup": "in batch"}), // earlier in the batch
			msg(q, "m2", 1, map[string]any{"c": "3"}),           // the same id on another profile
			msg(p, "", 3, nil, "a"),                             // no message id: never a duplicate
			msg(p, "", 4, map[string]any{"a": "again"}),
			msg(p, "m1", 12, nil, "b"), // recorded before, again
		}, prefix)
		must(t, err)
		if want := []bool{true, true, false, true, false, false, false, true}; !cmp.Equal(dup, want) {
			t.Errorf("UpdateBatch duplicates = %v, want %v", dup, want)
		}
		// A later batch in the transaction sees the messages the first
		// recorded.
		dup, err = btx.UpdateBatch(ctx, []profile.BatchUpdate{msg(q, "m2", 13, nil, "c"), msg(q, "m3", 2, nil)}, nil)
		must(t, err)
		if want := []bool{true, false}; !cmp.Equal(dup, want) {
			t.Errorf("second UpdateBatch duplicates = %v, want %v", dup, want)
		}
		// So does Update, and Update's records are seen by UpdateBatch.
		if err := tx.Update(ctx, p, msg(p, "m2", 14, nil).Update); !errors.Is(err, profile.ErrDuplicate) {
			t.Errorf("Update of a message UpdateBatch recorded = %v, want ErrDuplicate", err)
		}
		must(t, tx.Update(ctx, p, msg(p, "m4", 5, nil).Update))
		dup, err = btx.UpdateBatch(ctx, []profile.BatchUpdate{msg(p, "m4", 15, nil)}, nil)
		must(t, err)
		if !cmp.Equal(dup, []bool{true}) {
			t.Errorf("UpdateBatch of a message Update recorded: duplicates = %v, want [true]", dup)
		}
		must(t, tx.Commit(ctx))

		got, err := s.Profiles().Get(ctx, p)
		must(t, err)
		wantTraits := map[string]profile.Trait{"a": {Value: "again", Source: "", UpdatedAt: t0}, "b": {Value: "2", Source: "m2", UpdatedAt: t0}}
		if diff := cmp.Diff(wantTraits, got.Traits); diff != "" {
			t.Errorf("traits of %s (-want +got):\n%s", p, diff)
		}
		if got.Metadata.Version != 5 {
			t.Errorf("version of %s = %d, want 5 (its last update that was not a duplicate)", p, got.Metadata.Version)
		}
		got, err = s.Profiles().Get(ctx, q)
		must(t, err)
		wantTraits = map[string]profile.Trait{"c": {Value: "3", Source: "m2", UpdatedAt: t0}} // the duplicate's Remove did nothing
		if diff := cmp.Diff(wantTraits, got.Traits); diff != "" {
			t.Errorf("traits of %s (-want +got):\n%s", q, diff)
		}
		if got.Metadata.Version != 2 {
			t.Errorf("version of %s = %d, want 2", q, got.Metadata.Version)
		}
	})
}

// TestUpdateBatchTraitOrder: within an update Remove comes after Set; later
// updates override earlier ones; the profile's last update gives its
// metadata; a profile the batch creates exists afterwards.
func TestUpdateBatchTraitOrder(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p := identity.ProfileID("use_new")
		tx := profileTxn(t, s.Profiles())
		md, err := tx.(profile.BatchTx).MetadataBatch(ctx, []identity.ProfileID{p})
		must(t, err)
		if len(md) != 0 {
			t.Fatalf("MetadataBatch of an unknown profile = %v, want none", md)
		}
		_, err = tx.(profile.BatchTx).UpdateBatch(ctx, []profile.BatchUpdate{
			msg(p, "m1", 1, map[string]any{"set-then-removed": 1.0, "removed-then-set": 1.0, "kept": 1.0, "both": 1.0}, "both"),
			msg(p, "m2", 2, nil, "set-then-removed", "removed-then-set", "never-set"),
			msg(p, "m3", 3, map[string]any{"removed-then-set": 3.0, "kept": 3.0}),
		}, nil)
		must(t, err)
		md, err = tx.(profile.BatchTx).MetadataBatch(ctx, []identity.ProfileID{p, p, "use_unknown"})
		must(t, err)
		if len(md) != 1 || md[p].Version != 3 || md[p].LastMessageID != "m3" {
			t.Errorf("MetadataBatch in the transaction = %+v, want %s at version 3", md, p)
		}
		must(t, tx.Commit(ctx))
		got, err := s.Profiles().Get(ctx, p)
		must(t, err)
		want := map[string]profile.Trait{
			"removed-then-set": {Value: 3.0, Source: "m3", UpdatedAt: t0},
			"kept":             {Value: 3.0, Source: "m3", UpdatedAt: t0},
		}
		if diff := cmp.Diff(want, got.Traits); diff != "" {
			t.Errorf("traits (-want +got):\n%s", diff)
		}
	})
}

// TestUpdateBatchInvalid: one bad update fails the whole batch with
// ErrInvalid naming it, before any statement, and the transaction goes on.
func TestUpdateBatchInvalid(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p := identity.ProfileID("use_p")
		applyBatch(t, s, []profile.BatchUpdate{msg(p, "m0", 1, map[string]any{"a": "1"})})
		view, c, sqlTx := countedView(t, s)
		before := dumpProfileTables(t, s, sqlTx)

		badEvent := msg(p, "m2", 2, nil)
		badEvent.Event = &profile.Event{MessageID: "other", Name: "E", Timestamp: t0, ReceivedAt: t0}
		badTime := msg(p, "m2", 2, nil)
		badTime.Metadata.LastSeen = time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC)
		badValue := msg(p, "m2", 2, map[string]any{"nan": math.NaN()})
		badVersion := msg(p, "m2", math.MaxInt64+1, nil)

		bads := map[string]profile.BatchUpdate{"event": badEvent, "time": badTime, "value": badValue, "version": badVersion}
		if s.d == Postgres {
			// Text PostgreSQL refuses, which Update learns from it, the
			// transaction aborted.
			nul := msg(p, "m2", 2, nil)
			nul.Event = &profile.Event{MessageID: "m2", Name: "a\x00b", Timestamp: t0, ReceivedAt: t0}
			bads["NUL"] = nul
			bads["UTF-8"] = msg(p, "m2", 2, map[string]any{"\xff": 1.0})
			bads["message id"] = msg(p, "m2\x00", 2, nil)
		}
		tx := profileTxn(t, view.Profiles())
		for name, bad := range bads {
			batch := []profile.BatchUpdate{msg(p, "m1", 2, map[string]any{"b": "2"}), msg(p, "m0", 3, nil), msg("use_q", "m1", 1, nil), bad}
			var err error
			var dup []bool
			n := c.statements(func() { dup, err = tx.(profile.BatchTx).UpdateBatch(ctx, batch, nil) })
			if !errors.Is(err, profile.ErrInvalid) || !strings.Contains(err.Error(), "update 3 of the batch") {
				t.Errorf("UpdateBatch with a bad %s = %v, want ErrInvalid naming update 3", name, err)
			}
			if n != 0 || dup != nil {
				t.Errorf("UpdateBatch with a bad %s: %d statements, duplicates %v; want none", name, n, dup)
			}
		}
		// Nothing was written, and the transaction is still usable (on
		// PostgreSQL a failed statement would have aborted it).
		dup, err := tx.(profile.BatchTx).UpdateBatch(ctx, []profile.BatchUpdate{msg(p, "m0", 3, nil)}, nil)
		must(t, err)
		if !cmp.Equal(dup, []bool{true}) {
			t.Errorf("duplicates = %v, want [true]", dup)
		}
		must(t, tx.Commit(ctx))
		if diff := cmp.Diff(before, dumpProfileTables(t, s, sqlTx)); diff != "" {
			t.Errorf("a refused batch changed the tables (-before +after):\n%s", diff)
		}
	})
}

// TestBatchEmptyAndDone: empty input sends no statement; after Commit every
// batch method fails with the package's ErrTxDone.
func TestBatchEmptyAndDone(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		view, c, _ := countedView(t, s)
		ptx, err := view.Profiles().Begin(ctx)
		must(t, err)
		gtx, err := view.Graph().Begin(ctx)
		must(t, err)
		stx, err := view.Suppressions().Begin(ctx)
		must(t, err)
		atx, err := view.Audiences().Begin(ctx)
		must(t, err)
		n := c.statements(func() {
			traits, err := ptx.(profile.BatchTx).PickTraitsBatch(ctx, nil, []string{"a"})
			if err != nil || traits == nil || len(traits) != 0 {
				t.Errorf("PickTraitsBatch(nil) = %v, %v; want an empty map", traits, err)
			}
			states, err := atx.(audience.BatchTx).StateBatch(ctx, nil)
			if err != nil || states == nil || len(states) != 0 {
				t.Errorf("StateBatch(nil) = %v, %v; want an empty map", states, err)
			}
			if err := atx.(audience.BatchTx).PutBatch(ctx, nil); err != nil {
				t.Errorf("PutBatch(nil) = %v", err)
			}
			if err := atx.(audience.BatchTx).PutBatch(ctx, []audience.BatchState{}); err != nil {
				t.Errorf("PutBatch(empty) = %v", err)
			}
			dup, err := ptx.(profile.BatchTx).UpdateBatch(ctx, nil, []bool{true})
			if err != nil || !cmp.Equal(dup, []bool{true}) {
				t.Errorf("UpdateBatch(nil) = %v, %v; want dst unchanged", dup, err)
			}
			md, err := ptx.(profile.BatchTx).MetadataBatch(ctx, nil)
			if err != nil || md == nil || len(md) != 0 {
				t.Errorf("MetadataBatch(nil) = %v, %v; want an empty map", md, err)
			}
			pids, err := gtx.(identity.BatchReader).LookupBatch(ctx, nil, []identity.ProfileID{"x"})
			if err != nil || !cmp.Equal(pids, []identity.ProfileID{"x"}) {
				t.Errorf("tx LookupBatch(nil) = %v, %v; want dst unchanged", pids, err)
			}
			pids, err = view.Graph().(identity.BatchReader).LookupBatch(ctx, nil, nil)
			if err != nil || pids != nil {
				t.Errorf("LookupBatch(nil) = %v, %v; want nil", pids, err)
			}
			ok, err := stx.(suppression.BatchReader).ProfileSuppressedBatch(ctx, nil, nil)
			if err != nil || ok != nil {
				t.Errorf("tx ProfileSuppressedBatch(nil) = %v, %v; want nil", ok, err)
			}
			ok, err = view.Suppressions().(suppression.BatchReader).ProfileSuppressedBatch(ctx, nil, nil)
			if err != nil || ok != nil {
				t.Errorf("ProfileSuppressedBatch(nil) = %v, %v; want nil", ok, err)
			}
		})
		if n != 0 {
			t.Errorf("batch methods with empty input sent %d statements, want 0", n)
		}
		// Nested savepoints in the view: they end in reverse order.
		must(t, atx.Commit(ctx))
		must(t, stx.Commit(ctx))
		must(t, gtx.Commit(ctx))
		must(t, ptx.Commit(ctx))
		if _, err := ptx.(profile.BatchTx).UpdateBatch(ctx, nil, nil); !errors.Is(err, profile.ErrTxDone) {
			t.Errorf("UpdateBatch after Commit = %v, want ErrTxDone", err)
		}
		if _, err := ptx.(profile.BatchTx).MetadataBatch(ctx, []identity.ProfileID{"use_1"}); !errors.Is(err, profile.ErrTxDone) {
			t.Errorf("MetadataBatch after Commit = %v, want ErrTxDone", err)
		}
		for _, pids := range [][]identity.ProfileID{nil, {"use_1"}} {
			if _, err := ptx.(profile.BatchTx).PickTraitsBatch(ctx, pids, []string{"a"}); !errors.Is(err, profile.ErrTxDone) {
				t.Errorf("PickTraitsBatch of %d profiles after Commit = %v, want ErrTxDone", len(pids), err)
			}
			if _, err := atx.(audience.BatchTx).StateBatch(ctx, pids); !errors.Is(err, audience.ErrTxDone) {
				t.Errorf("StateBatch of %d profiles after Commit = %v, want ErrTxDone", len(pids), err)
			}
		}
		for _, states := range [][]audience.BatchState{nil, {{Profile: "use_1", State: &audience.State{}}}, {{Profile: "use_1"}}} {
			if err := atx.(audience.BatchTx).PutBatch(ctx, states); !errors.Is(err, audience.ErrTxDone) {
				t.Errorf("PutBatch of %d states after Commit = %v, want ErrTxDone", len(states), err)
			}
		}
		if _, err := gtx.(identity.BatchReader).LookupBatch(ctx, []identity.ID{anon("a")}, nil); !errors.Is(err, identity.ErrTxDone) {
			t.Errorf("LookupBatch after Commit = %v, want ErrTxDone", err)
		}
		if _, err := stx.(suppression.BatchReader).ProfileSuppressedBatch(ctx, []identity.ProfileID{"use_1"}, nil); !errors.Is(err, suppression.ErrTxDone) {
			t.Errorf("ProfileSuppressedBatch after Commit = %v, want ErrTxDone", err)
		}
	})
}

// TestUpdateBatchChunks writes batches of more rows than one statement
// carries, at every step, and counts the statements.
func TestUpdateBatchChunks(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		view, c, sqlTx := countedView(t, s)
		count := func(table string) int {
			t.Helper()
			var n int
			must(t, sqlTx.QueryRowContext(ctx, s.sql(`SELECT COUNT(*) FROM {p}`+table)).Scan(&n))
			return n
		}
		const profiles, withTwo = 1200, 500
		pid := func(i int) identity.ProfileID { return identity.ProfileID(fmt.Sprintf("use_%05d", i)) }
		tx := profileTxn(t, view.Profiles())
		btx := tx.(profile.BatchTx)

		// A: a message per profile setting 6 traits, a second message for
		// some.
		var a []profile.BatchUpdate
		for i := range profiles {
			u := msg(pid(i), fmt.Sprint("a-", i), 1, map[string]any{"k0": 0.0, "k1": 1.0, "k2": 2.0, "k3": 3.0, "k4": 4.0, "k5": 5.0})
			u.Event = &profile.Event{MessageID: u.MessageID, Name: "A", Timestamp: t0, ReceivedAt: t0}
			a = append(a, u)
		}
		for i := range withTwo {
			a = append(a, msg(pid(i), fmt.Sprint("b-", i), 2, nil))
		}
		var dup []bool
		var err error
		n := c.statements(func() { dup, err = btx.UpdateBatch(ctx, a, nil) })
		must(t, err)
		if want := stmts(len(a), s.batchParams()/8) + stmts(profiles, s.batchParams()/11) + stmts(6*profiles, s.batchParams()/5); n != want {
			t.Errorf("UpdateBatch of %d updates on %d profiles setting %d traits: %d statements, want %d", len(a), profiles, 6*profiles, n, want)
		}
		if s.d == Postgres && n > 8 {
			t.Errorf("UpdateBatch sent %d statements, more than a handful", n)
		}
		if len(dup) != len(a) || containsBoth(dup) || dup[0] {
			t.Errorf("UpdateBatch of new messages reported duplicates: %v", dup)
		}
		if got := [3]int{count("profiles"), count("profile_traits"), count("profile_messages")}; got != [3]int{profiles, 6 * profiles, profiles + withTwo} {
			t.Errorf("after A: profiles, traits, messages = %v, want %v", got, [3]int{profiles, 6 * profiles, profiles + withTwo})
		}

		// The metadata of every profile and many unknown ones: more than one
		// statement carries.
		pids := make([]identity.ProfileID, 0, s.batchParams()+profiles)
		for i := range s.batchParams() + profiles {
			pids = append(pids, pid(i))
		}
		var md map[identity.ProfileID]profile.Metadata
		n = c.statements(func() { md, err = btx.MetadataBatch(ctx, pids) })
		must(t, err)
		if want := stmts(len(pids), s.batchParams()); n != want {
			t.Errorf("MetadataBatch of %d profiles: %d statements, want %d", len(pids), n, want)
		}
		if len(md) != profiles {
			t.Errorf("MetadataBatch found %d profiles, want %d", len(md), profiles)
		}
		for i := range profiles {
			want := uint64(1)
			if i < withTwo {
				want = 2
			}
			if md[pid(i)].Version != want {
				t.Fatalf("MetadataBatch: %s at version %d, want %d", pid(i), md[pid(i)].Version, want)
			}
		}

		// B: A's messages again (duplicates, which would set a trait), and a
		// new one per profile removing 5 traits.
		var b []profile.BatchUpdate
		for i := range profiles {
			b = append(b, msg(pid(i), fmt.Sprint("a-", i), 99, map[string]any{"dup": true}))
			b = append(b, msg(pid(i), fmt.Sprint("c-", i), 3, nil, "k0", "k1", "k2", "k3", "k4"))
		}
		n = c.statements(func() { dup, err = btx.UpdateBatch(ctx, b, nil) })
		must(t, err)
		if want := stmts(len(b), s.batchParams()/8) + stmts(profiles, s.batchParams()/11) + stmts(5*profiles, s.batchParams()/2); n != want {
			t.Errorf("UpdateBatch of %d updates removing %d traits: %d statements, want %d", len(b), 5*profiles, n, want)
		}
		for i, d := range dup {
			if d != (i%2 == 0) {
				t.Fatalf("UpdateBatch duplicate %d = %v, want %v", i, d, i%2 == 0)
			}
		}
		if got := [3]int{count("profiles"), count("profile_traits"), count("profile_messages")}; got != [3]int{profiles, profiles, 2*profiles + withTwo} {
			t.Errorf("after B: profiles, traits, messages = %v, want %v", got, [3]int{profiles, profiles, 2*profiles + withTwo})
		}
		md, err = btx.MetadataBatch(ctx, pids[:profiles])
		must(t, err)
		for i := range profiles {
			if md[pid(i)].Version != 3 {
				t.Fatalf("after B: %s at version %d, want 3", pid(i), md[pid(i)].Version)
			}
		}
		must(t, tx.Commit(ctx))
	})
}

// pickOneByOne returns what PickTraits answers for each of pids, those it
// does not find absent: what PickTraitsBatch must return.
func pickOneByOne(t *testing.T, tx profile.Tx, pids []identity.ProfileID, names []string) map[identity.ProfileID][]any {
	t.Helper()
	out := map[identity.ProfileID][]any{}
	for _, pid := range pids {
		values, err := tx.(profile.TraitPicker).PickTraits(t.Context(), pid, names, make([]any, 0, len(names)))
		switch {
		case err == nil:
			out[pid] = values
		case !errors.Is(err, profile.ErrNotFound):
			t.Fatalf("PickTraits of %s: %v", pid, err)
		}
	}
	return out
}

// TestPickTraitsBatch: PickTraitsBatch answers as PickTraits once per
// profile, for lists of profiles and names of every small length with
// repeats and unknown ones, in one statement each; empty names give each
// profile found an empty slice.
func TestPickTraitsBatch(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		r := rand.New(rand.NewPCG(5, 6))
		for round := range 2 {
			applyBatch(t, s, randomUpdates(r, round, 150))
		}
		view, c, _ := countedView(t, s)
		tx := profileTxn(t, view.Profiles())
		// A profile this transaction creates, with a trait whose value is a
		// map.
		_, err := tx.(profile.BatchTx).UpdateBatch(ctx, []profile.BatchUpdate{
			msg("use_new", "m1", 1, map[string]any{"k0": map[string]any{"a": 1.0}, "k1": "new"}),
		}, nil)
		must(t, err)

		pidPool := []identity.ProfileID{"use_0", "use_3", "use_7", "use_new", "use_unknown", ""}
		namePool := []string{"k0", "k1", "k2", "k3", "k4", "k5", "unknown", ""}
		found, empty := 0, 0
		for n := 1; n <= 20; n++ {
			pids := make([]identity.ProfileID, n)
			for i := range pids {
				pids[i] = pidPool[r.IntN(len(pidPool))]
			}
			names := make([]string, r.IntN(12))
			for i := range names {
				names[i] = namePool[r.IntN(len(namePool))]
			}
			want := pickOneByOne(t, tx, pids, names)
			var got map[identity.ProfileID][]any
			sent := c.statements(func() { got, err = tx.(profile.BatchTx).PickTraitsBatch(ctx, pids, names) })
			must(t, err)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("PickTraitsBatch(%v, %q) (-PickTraits +PickTraitsBatch):\n%s", pids, names, diff)
			}
			if sent != 1 {
				t.Errorf("PickTraitsBatch of %d profiles and %d names: %d statements, want 1", n, len(names), sent)
			}
			for _, values := range got {
				found++
				for _, v := range values {
					if v == nil {
						empty++
					}
				}
			}
		}
		if found == 0 || empty == 0 {
			t.Fatalf("the profiles found had %d traits missing of %d answers, a weak test", empty, found)
		}

		// No names: each profile found maps to an empty slice, not nil.
		got, err := tx.(profile.BatchTx).PickTraitsBatch(ctx, []identity.ProfileID{"use_0", "use_unknown", "use_new"}, nil)
		must(t, err)
		if len(got) != 2 || got["use_0"] == nil || len(got["use_0"]) != 0 || got["use_new"] == nil || len(got["use_new"]) != 0 {
			t.Errorf("PickTraitsBatch without names = %#v, want use_0 and use_new to empty slices", got)
		}

		// A name given twice gives two values, each the caller's.
		got, err = tx.(profile.BatchTx).PickTraitsBatch(ctx, []identity.ProfileID{"use_new"}, []string{"k0", "k1", "k0"})
		must(t, err)
		if diff := cmp.Diff([]any{map[string]any{"a": 1.0}, "new", map[string]any{"a": 1.0}}, got["use_new"]); diff != "" {
			t.Fatalf("PickTraitsBatch of a name given twice (-want +got):\n%s", diff)
		}
		got["use_new"][0].(map[string]any)["changed"] = true
		if _, shared := got["use_new"][2].(map[string]any)["changed"]; shared {
			t.Errorf("PickTraitsBatch returned one map for both positions of a name given twice")
		}
		must(t, tx.Rollback(ctx))
	})
}

// TestPickTraitsBatchChunks: more profiles than one statement carries beside
// the names, and more names than half of it.
func TestPickTraitsBatchChunks(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		bp := s.batchParams()
		pid := func(i int) identity.ProfileID { return identity.ProfileID(fmt.Sprintf("use_%05d", i)) }
		// Profiles at both ends of the chunks below.
		existing := []int{0, 1, bp/2 - 1, bp / 2, bp/2 + 1, bp - 5, bp - 4, bp - 3, bp + 9}
		var updates []profile.BatchUpdate
		for _, i := range existing {
			set := map[string]any{"a": float64(i)}
			if i%2 == 1 {
				set["z"] = fmt.Sprint("z", i)
			}
			updates = append(updates, msg(pid(i), "m", 1, set))
		}
		applyBatch(t, s, updates)
		view, c, _ := countedView(t, s)
		tx := profileTxn(t, view.Profiles())

		check := func(pids []identity.ProfileID, names []string, wantStmts int64) {
			t.Helper()
			// PickTraits of the profiles that exist (one per profile would
			// be slow), and of a few that do not.
			var ask []identity.ProfileID
			for _, i := range existing {
				if slices.Contains(pids, pid(i)) {
					ask = append(ask, pid(i))
				}
			}
			want := pickOneByOne(t, tx, append(ask, pids[2], pids[len(pids)-3], "use_unknown"), names)
			var got map[identity.ProfileID][]any
			var err error
			n := c.statements(func() { got, err = tx.(profile.BatchTx).PickTraitsBatch(ctx, pids, names) })
			must(t, err)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("PickTraitsBatch of %d profiles and %d names (-PickTraits +PickTraitsBatch):\n%s", len(pids), len(names), diff)
			}
			if len(got) == 0 {
				t.Errorf("PickTraitsBatch of %d profiles found none, a weak test", len(pids))
			}
			if n != wantStmts {
				t.Errorf("PickTraitsBatch of %d profiles and %d names: %d statements, want %d", len(pids), len(names), n, wantStmts)
			}
		}
		var pids []identity.ProfileID
		for i := range bp + 10 {
			pids = append(pids, pid(i))
		}
		pids = append(pids, pid(0), pid(bp+9)) // repeats
		// Three names, sent as four: bp - 4 profiles a statement.
		names := []string{"z", "a", "none"}
		check(pids, names, stmts(bp+10, bp-4))
		check(pids, nil, stmts(bp+10, bp))

		// More names than half a statement: a statement per chunk of the
		// names and of the profiles, the names that exist at both ends.
		names = []string{"a"}
		for i := range bp/2 + 1 {
			names = append(names, fmt.Sprint("none-", i))
		}
		names = append(names, "z", "a")
		p := bp/2 + bp/4 + 1
		check(pids[:p], names, stmts(p, bp-bp/2)+stmts(p, bp-4))
	})
}

// randomStates returns n states over a few profiles, with audiences unsorted,
// repeated, empty or nil, counters, and NextChange zero or not.
func randomStates(r *rand.Rand, round, n int) []audience.BatchState {
	keys := []string{"a0", "a1", "a2", "a3", "a4", "a5"}
	out := make([]audience.BatchState, n)
	for i := range out {
		seq := round*n + i
		st := &audience.State{}
		switch r.IntN(5) {
		case 0: // nil
		case 1:
			st.Audiences = []string{}
		default:
			for range 1 + r.IntN(4) {
				st.Audiences = append(st.Audiences, keys[r.IntN(len(keys))])
			}
		}
		for j := range r.IntN(3) {
			cn := audience.Counter{Key: fmt.Sprint("c", j), Count: int64(seq)}
			if r.IntN(2) == 0 {
				cn.Times = []int64{t0.UnixNano(), t0.UnixNano() + int64(seq)}
			}
			st.Counters = append(st.Counters, cn)
		}
		if r.IntN(3) != 0 {
			st.NextChange = t0.Add(time.Duration(seq)*time.Second + 789*time.Nanosecond)
		}
		out[i] = audience.BatchState{Profile: identity.ProfileID(fmt.Sprint("use_", r.IntN(8))), State: st}
	}
	return out
}

func audienceTxn(t *testing.T, as audience.Store) audience.Tx { return beginTxn(t, as.Begin) }

// TestPutBatchEqualsPuts applies random batches of states to one store with
// PutBatch and to another with one Put per item: every row of the audience
// tables must be the same, and StateBatch must read what State reads.
func TestPutBatchEqualsPuts(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			batched, oneByOne := d.open(t), d.open(t)
			r := rand.New(rand.NewPCG(7, 8))
			var pids []identity.ProfileID
			for i := range 8 {
				pids = append(pids, identity.ProfileID(fmt.Sprint("use_", i)))
			}
			pids = append(pids, "use_unknown", "use_3")
			var prev []string
			for round := range 5 {
				states := randomStates(r, round, 40)
				if round == 4 {
					states = states[:3] // a small batch: most profiles keep their state
				}
				btx := audienceTxn(t, batched.Audiences())
				must(t, btx.(audience.BatchTx).PutBatch(ctx, states))
				must(t, btx.Commit(ctx))
				otx := audienceTxn(t, oneByOne.Audiences())
				for i, st := range states {
					if err := otx.Put(ctx, st.Profile, st.State); err != nil {
						t.Fatalf("round %d: Put %d: %v", round, i, err)
					}
				}
				must(t, otx.Commit(ctx))

				want := dumpAudienceTables(t, oneByOne, oneByOne.db)
				if diff := cmp.Diff(want, dumpAudienceTables(t, batched, batched.db)); diff != "" {
					t.Fatalf("round %d: tables (-Put +PutBatch):\n%s", round, diff)
				}
				if cmp.Equal(prev, want) {
					t.Fatalf("round %d changed no row, a weak test", round)
				}
				prev = want

				wantStates := map[identity.ProfileID]*audience.State{}
				for _, pid := range pids {
					st, err := oneByOne.Audiences().State(ctx, pid)
					if err == nil {
						wantStates[pid] = st
					} else if !errors.Is(err, audience.ErrNotFound) {
						t.Fatal(err)
					}
				}
				tx := audienceTxn(t, batched.Audiences())
				got, err := tx.(audience.BatchTx).StateBatch(ctx, pids)
				must(t, err)
				if diff := cmp.Diff(wantStates, got); diff != "" {
					t.Fatalf("round %d: StateBatch (-State +StateBatch):\n%s", round, diff)
				}
				must(t, tx.Rollback(ctx))
			}
			// The memberships were removed as well as added.
			var members int
			must(t, batched.db.QueryRowContext(ctx, batched.sql(`SELECT COUNT(*) FROM {p}audience_members`)).Scan(&members))
			if members == 0 {
				t.Errorf("no memberships at the end, a weak test")
			}
		})
	}
}

// TestStateBatch: lists of every small length in one statement, more
// profiles than one statement carries, and a transaction's own writes.
func TestStateBatch(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		bp := s.batchParams()
		pid := func(i int) identity.ProfileID { return identity.ProfileID(fmt.Sprintf("use_%05d", i)) }
		stored := map[identity.ProfileID]*audience.State{
			pid(0):      {Audiences: []string{"a", "b"}, Counters: []audience.Counter{{Key: "k", Count: 2, Times: []int64{1, 2}}}, NextChange: t0},
			pid(7):      {Audiences: []string{}},
			pid(bp - 1): {Counters: []audience.Counter{{Key: "k", Count: 1}}},
			pid(bp):     {Audiences: []string{"c"}, NextChange: t0.Add(time.Hour)},
			pid(bp + 5): {},
		}
		tx := audienceTxn(t, s.Audiences())
		for p, st := range stored {
			must(t, tx.Put(ctx, p, st))
		}
		must(t, tx.Commit(ctx))

		view, c, _ := countedView(t, s)
		tx = audienceTxn(t, view.Audiences())
		btx := tx.(audience.BatchTx)
		r := rand.New(rand.NewPCG(9, 10))
		pool := []identity.ProfileID{pid(0), pid(7), pid(bp + 5), pid(1), ""}
		checkSmallBatches(t, r, c, pool, "StateBatch", "profiles",
			func(pids []identity.ProfileID) map[identity.ProfileID]*audience.State {
				want := map[identity.ProfileID]*audience.State{}
				for _, p := range pids {
					if st, ok := stored[p]; ok {
						want[p] = st
					}
				}
				return want
			},
			func(pids []identity.ProfileID) (map[identity.ProfileID]*audience.State, error) {
				return btx.StateBatch(ctx, pids)
			})

		var pids []identity.ProfileID
		for i := range bp + 10 {
			pids = append(pids, pid(i))
		}
		pids = append(pids, pid(7), pid(0))
		var got map[identity.ProfileID]*audience.State
		var err error
		n := c.statements(func() { got, err = btx.StateBatch(ctx, pids) })
		must(t, err)
		if want := stmts(bp+10, bp); n != want {
			t.Errorf("StateBatch of %d profiles: %d statements, want %d", bp+10, n, want)
		}
		if diff := cmp.Diff(stored, got); diff != "" {
			t.Errorf("StateBatch of %d profiles (-want +got):\n%s", bp+10, diff)
		}
		// The states are the caller's.
		got[pid(0)].Audiences[0] = "changed"
		again, err := btx.StateBatch(ctx, []identity.ProfileID{pid(0)})
		must(t, err)
		if again[pid(0)].Audiences[0] != "a" {
			t.Errorf("a state StateBatch returned is shared")
		}

		// The transaction's own writes.
		must(t, btx.PutBatch(ctx, []audience.BatchState{{Profile: pid(1), State: &audience.State{Audiences: []string{"x"}}}}))
		must(t, tx.Delete(ctx, pid(0)))
		got, err = btx.StateBatch(ctx, []identity.ProfileID{pid(0), pid(1), pid(7)})
		must(t, err)
		want := map[identity.ProfileID]*audience.State{pid(1): {Audiences: []string{"x"}}, pid(7): {Audiences: []string{}}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("StateBatch in the transaction (-want +got):\n%s", diff)
		}
	})
}

// TestPutBatchChunks writes batches of more rows than one statement carries,
// at every step, counts the statements and checks the memberships; and a
// profile with more audiences than one delete carries.
func TestPutBatchChunks(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		bp := s.batchParams()
		view, c, sqlTx := countedView(t, s)
		count := func(where string, args ...any) int {
			t.Helper()
			var n int
			must(t, sqlTx.QueryRowContext(ctx, s.sql(`SELECT COUNT(*) FROM {p}audience_members `+where), args...).Scan(&n))
			return n
		}
		keysOf := func(p identity.ProfileID) []string {
			t.Helper()
			return queryStrings(t, ctx, sqlTx, s.sql(`SELECT audience_key FROM {p}audience_members WHERE profile_id = $1 ORDER BY audience_key`), string(p))
		}
		pid := func(i int) identity.ProfileID { return identity.ProfileID(fmt.Sprintf("use_%05d", i)) }
		// A delete carries bp/5 profiles of two audiences each: exactly two.
		profiles := 2 * bp / 5
		tx := audienceTxn(t, view.Audiences())
		btx := tx.(audience.BatchTx)
		put := func(states []audience.BatchState, want int64) {
			t.Helper()
			var err error
			n := c.statements(func() { err = btx.PutBatch(ctx, states) })
			must(t, err)
			if n != want {
				t.Errorf("PutBatch of %d states: %d statements, want %d", len(states), n, want)
			}
		}

		// A: two audiences each, given in any order.
		var a []audience.BatchState
		for i := range profiles {
			keys := []string{"a0", "a1"}
			if i%2 == 1 {
				keys = []string{"a1", "a0", "a1"}
			}
			a = append(a, audience.BatchState{Profile: pid(i), State: &audience.State{Audiences: keys, NextChange: t0}})
		}
		put(a, stmts(profiles, bp/3)+stmts(profiles, bp/5)+stmts(2*profiles, bp/2))
		if got := count(""); got != 2*profiles {
			t.Errorf("after A: %d memberships, want %d", got, 2*profiles)
		}

		// B: a1 kept, a0 dropped, a3 added.
		var b []audience.BatchState
		for i := range profiles {
			b = append(b, audience.BatchState{Profile: pid(i), State: &audience.State{Audiences: []string{"a3", "a1"}}})
		}
		put(b, stmts(profiles, bp/3)+stmts(profiles, bp/5)+stmts(2*profiles, bp/2))
		for key, want := range map[string]int{"a0": 0, "a1": profiles, "a3": profiles} {
			if got := count(`WHERE audience_key = $1`, key); got != want {
				t.Errorf("after B: %d members of %s, want %d", got, key, want)
			}
		}
		if got := count(""); got != 2*profiles {
			t.Errorf("after B: %d memberships, want %d", got, 2*profiles)
		}
		states, err := btx.StateBatch(ctx, []identity.ProfileID{pid(0), pid(profiles - 1)})
		must(t, err)
		if len(states) != 2 {
			t.Errorf("after B: StateBatch found %d states, want 2", len(states))
		}
		for p, st := range states {
			if !cmp.Equal(st.Audiences, []string{"a1", "a3"}) || !st.NextChange.IsZero() {
				t.Errorf("after B: state of %s = %+v, want B's", p, st)
			}
		}

		// C: a profile with more audiences than one delete carries, two
		// dropping all of theirs (nil and empty), one state overridden later
		// in the batch.
		big := make([]string, bp/2)
		for i := range big {
			big[i] = fmt.Sprintf("b%05d", i)
		}
		c1 := []audience.BatchState{
			{Profile: pid(0), State: &audience.State{Audiences: slices.Clone(big)}},
			{Profile: pid(1), State: &audience.State{}},
			{Profile: pid(2), State: &audience.State{Audiences: []string{"a9"}}},
			{Profile: pid(2), State: &audience.State{Audiences: []string{}}},
		}
		put(c1, 3+stmts(len(big), bp/2)-1)
		if got := keysOf(pid(0)); !cmp.Equal(got, big) {
			t.Errorf("after C: %s in %d audiences, want %d", pid(0), len(got), len(big))
		}
		for _, p := range []identity.ProfileID{pid(1), pid(2)} {
			if got := keysOf(p); got != nil {
				t.Errorf("after C: %s in %v, want none", p, got)
			}
		}
		if got := keysOf(pid(3)); !cmp.Equal(got, []string{"a1", "a3"}) {
			t.Errorf("after C: %s in %v, untouched by C", pid(3), got)
		}

		// D: the big profile again, one audience fewer and one more, with a
		// profile after it in the same delete.
		bigger := append(slices.Clone(big[1:]), "b99999", "b99998")
		put([]audience.BatchState{
			{Profile: pid(0), State: &audience.State{Audiences: bigger}},
			{Profile: pid(3), State: &audience.State{Audiences: []string{"a3"}}},
		}, 3+stmts(len(bigger)+1, bp/2)-1)
		slices.Sort(bigger)
		if got := keysOf(pid(0)); !cmp.Equal(got, bigger) {
			t.Errorf("after D: %s in %d audiences, want %d", pid(0), len(got), len(bigger))
		}
		if got := keysOf(pid(3)); !cmp.Equal(got, []string{"a3"}) {
			t.Errorf("after D: %s in %v, want [a3]", pid(3), got)
		}
		must(t, tx.Commit(ctx))
	})
}

// TestPutBatchInvalid: a bad state fails the whole batch with ErrInvalid
// naming it, before any statement, even when a later state of its profile
// would replace it; and the transaction goes on.
func TestPutBatchInvalid(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p, q := identity.ProfileID("use_p"), identity.ProfileID("use_q")
		tx := audienceTxn(t, s.Audiences())
		must(t, tx.Put(ctx, p, &audience.State{Audiences: []string{"a", "b"}, NextChange: t0}))
		must(t, tx.Commit(ctx))
		view, c, sqlTx := countedView(t, s)
		before := dumpAudienceTables(t, s, sqlTx)

		good := func(pid identity.ProfileID, keys ...string) audience.BatchState {
			return audience.BatchState{Profile: pid, State: &audience.State{Audiences: keys}}
		}
		far := time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC)
		bads := map[string][]audience.BatchState{
			"nil state":           {good(p, "c"), good(q, "a"), good(p), {Profile: q}},
			"NextChange":          {good(p, "c"), good(q, "a"), good(p), {Profile: q, State: &audience.State{NextChange: far}}},
			"NextChange replaced": {{Profile: p, State: &audience.State{NextChange: far}}, good(q, "a"), good(p, "c"), good(p)},
		}
		want := map[string]string{"nil state": "state 3 of the batch", "NextChange": "state 3 of the batch", "NextChange replaced": "state 0 of the batch"}
		if s.d == Postgres {
			bads["NUL profile"] = []audience.BatchState{good(p, "c"), good("use_\x00", "a")}
			bads["UTF-8 audience"] = []audience.BatchState{good(p, "c"), good(q, "a", "\xff")}
			want["NUL profile"], want["UTF-8 audience"] = "state 1 of the batch", "state 1 of the batch"
		}
		atx := audienceTxn(t, view.Audiences())
		for name, batch := range bads {
			var err error
			n := c.statements(func() { err = atx.(audience.BatchTx).PutBatch(ctx, batch) })
			if !errors.Is(err, audience.ErrInvalid) || !strings.Contains(err.Error(), want[name]) {
				t.Errorf("PutBatch with a bad %s = %v, want ErrInvalid naming %s", name, err, want[name])
			}
			if n != 0 {
				t.Errorf("PutBatch with a bad %s: %d statements, want none", name, n)
			}
		}
		if diff := cmp.Diff(before, dumpAudienceTables(t, s, sqlTx)); diff != "" {
			t.Errorf("a refused batch changed the tables (-before +after):\n%s", diff)
		}
		// The transaction is still usable (on PostgreSQL a failed statement
		// would have aborted it).
		must(t, atx.(audience.BatchTx).PutBatch(ctx, []audience.BatchState{good(q, "z")}))
		st, err := atx.State(ctx, q)
		must(t, err)
		if !cmp.Equal(st.Audiences, []string{"z"}) {
			t.Errorf("state of %s = %+v, want [z]", q, st)
		}
		must(t, atx.Commit(ctx))
	})
}

func TestLookupBatch(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		g := s.Graph()
		p, q := identity.ProfileID("use_p"), identity.ProfileID("use_q")
		tx := graphTxn(t, g)
		must(t, tx.Create(ctx, p, t0))
		must(t, tx.Create(ctx, q, t0))
		must(t, tx.Link(ctx, p, identity.Link{ID: email("p@x"), LinkedAt: t0, MessageID: "m1"}))
		must(t, tx.Link(ctx, p, identity.Link{ID: anon("x-0"), LinkedAt: t0, MessageID: "m1"}))
		must(t, tx.Link(ctx, q, identity.Link{ID: anon("x-5199"), LinkedAt: t0, MessageID: "m2"}))
		must(t, tx.Commit(ctx))

		// Lists of every length up to a few padded sizes, with repeats.
		known := map[identity.ID]identity.ProfileID{email("p@x"): p, anon("x-0"): p, anon("x-5199"): q}
		pool := []identity.ID{email("p@x"), anon("x-0"), anon("x-5199"), anon("x-1"), email("x-0"), {Type: "user_id", Value: "p@x"}}
		view, c := countedPool(s)
		r := rand.New(rand.NewPCG(3, 4))
		checkSmallBatches(t, r, c, pool, "LookupBatch", "identifiers",
			func(ids []identity.ID) []identity.ProfileID {
				want := []identity.ProfileID{"prefix"}
				for _, id := range ids {
					want = append(want, known[id])
				}
				return want
			},
			func(ids []identity.ID) ([]identity.ProfileID, error) {
				return view.Graph().(identity.BatchReader).LookupBatch(ctx, ids, []identity.ProfileID{"prefix"})
			})

		// More identifiers than one statement carries, the known ones at
		// both ends.
		var ids []identity.ID
		for i := range 5200 {
			ids = append(ids, anon(fmt.Sprint("x-", i)))
		}
		ids = append(ids, email("p@x"), anon("x-0"))
		var got []identity.ProfileID
		var err error
		n := c.statements(func() { got, err = view.Graph().(identity.BatchReader).LookupBatch(ctx, ids, nil) })
		must(t, err)
		if want := stmts(5201, s.batchParams()/2); n != want {
			t.Errorf("LookupBatch of 5201 identifiers: %d statements, want %d", n, want)
		}
		for i, id := range ids {
			if got[i] != known[id] {
				t.Fatalf("LookupBatch: %v -> %q, want %q", id, got[i], known[id])
			}
		}

		// A transaction sees its own links; the graph reads through the
		// Scope's shared transaction, and sees them with its context only.
		sctx, _ := scoped(t, ctx)
		tx, err = g.Begin(sctx)
		must(t, err)
		defer tx.Rollback(ctx)
		must(t, tx.Link(ctx, q, identity.Link{ID: anon("new"), LinkedAt: t0, MessageID: "m3"}))
		ids = []identity.ID{anon("new"), anon("x-5199"), anon("none")}
		want := []identity.ProfileID{q, q, ""}
		got, err = tx.(identity.BatchReader).LookupBatch(ctx, ids, nil)
		must(t, err)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("tx LookupBatch (-want +got):\n%s", diff)
		}
		got, err = g.(identity.BatchReader).LookupBatch(sctx, ids, nil)
		must(t, err)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("LookupBatch in the Scope (-want +got):\n%s", diff)
		}
		got, err = g.(identity.BatchReader).LookupBatch(ctx, ids, nil)
		must(t, err)
		if diff := cmp.Diff([]identity.ProfileID{"", q, ""}, got); diff != "" {
			t.Errorf("LookupBatch outside the Scope (-want +got):\n%s", diff)
		}
	})
}

func TestProfileSuppressedBatch(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		l := s.Suppressions()
		pid := func(i int) identity.ProfileID { return identity.ProfileID(fmt.Sprintf("use_%05d", i)) }
		tx, err := l.Begin(ctx)
		must(t, err)
		for _, i := range []int{0, 7, s.batchParams() + 5} {
			must(t, tx.AddProfile(ctx, pid(i)))
		}
		must(t, tx.Commit(ctx))

		var pids []identity.ProfileID
		for i := range s.batchParams() + 10 {
			pids = append(pids, pid(i))
		}
		pids = append(pids, pid(7), pid(1))
		view, c := countedPool(s)
		var got []bool
		n := c.statements(func() {
			got, err = view.Suppressions().(suppression.BatchReader).ProfileSuppressedBatch(ctx, pids, []bool{true})
		})
		must(t, err)
		if want := stmts(s.batchParams()+10, s.batchParams()); n != want {
			t.Errorf("ProfileSuppressedBatch of %d profiles: %d statements, want %d", s.batchParams()+10, n, want)
		}
		if len(got) != len(pids)+1 || !got[0] {
			t.Fatalf("ProfileSuppressedBatch returned %d answers after dst, want %d", len(got)-1, len(pids))
		}
		for i, p := range pids {
			want := p == pid(0) || p == pid(7) || p == pid(s.batchParams()+5)
			if got[i+1] != want {
				t.Errorf("ProfileSuppressedBatch: %s -> %v, want %v", p, got[i+1], want)
			}
		}

		// A transaction sees its own writes; the list reads through the
		// Scope's shared transaction.
		sctx, _ := scoped(t, ctx)
		tx, err = l.Begin(sctx)
		must(t, err)
		defer tx.Rollback(ctx)
		must(t, tx.RemoveProfile(ctx, pid(0)))
		must(t, tx.AddProfile(ctx, pid(1)))
		ask := []identity.ProfileID{pid(0), pid(1), pid(7), pid(1)}
		want := []bool{false, true, true, true}
		for name, rd := range map[string]suppression.BatchReader{"tx": tx.(suppression.BatchReader), "list in the scope": l.(suppression.BatchReader)} {
			rctx := ctx
			if name != "tx" {
				rctx = sctx
			}
			got, err := rd.ProfileSuppressedBatch(rctx, ask, nil)
			must(t, err)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s: ProfileSuppressedBatch (-want +got):\n%s", name, diff)
			}
		}
		got, err = l.(suppression.BatchReader).ProfileSuppressedBatch(ctx, ask, nil)
		must(t, err)
		if diff := cmp.Diff([]bool{true, false, true, false}, got); diff != "" {
			t.Errorf("ProfileSuppressedBatch outside the scope (-want +got):\n%s", diff)
		}
	})
}

// TestLockSubjectsStatements: on PostgreSQL the locks not yet held are taken
// in one statement per chunk, and held; SQLite takes none.
func TestLockSubjectsStatements(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		view, c, sqlTx := countedView(t, s)
		ctx, _ := scoped(t, t.Context())
		keys := func(from, to int) []string {
			var out []string
			for i := from; i < to; i++ {
				out = append(out, fmt.Sprint("profile:use_", i))
			}
			return out
		}
		perCall := int64(1)
		if s.d == SQLite {
			perCall = 0
		}
		// The first call begins the shared transaction: a SAVEPOINT here.
		for _, step := range []struct {
			keys []string
			want int64
		}{
			{keys(0, 10), 1 + perCall},
			{keys(0, 10), 0},
			{append(keys(5, 15), keys(5, 15)...), perCall},
			{keys(0, 1), 0},
			{keys(100, 100+chunk+1), 2 * perCall},
			{keys(1000, 1001), perCall},
		} {
			n := c.statements(func() { must(t, view.LockSubjects(ctx, step.keys)) })
			if n != step.want {
				t.Errorf("LockSubjects of %d keys: %d statements, want %d", len(step.keys), n, step.want)
			}
		}
		if s.d != Postgres {
			return
		}
		var held int
		must(t, sqlTx.QueryRowContext(t.Context(),
			`SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted`).Scan(&held))
		if want := 15 + chunk + 1 + 1; held != want {
			t.Errorf("%d advisory locks held, want %d", held, want)
		}
	})
}

// TestLockSubjectsOrder: two transactions lock the same keys, given in
// opposite orders, while a third holds the key in the middle, so that each
// has taken a first lock and waits when the third lets go. Taken in one order
// (ascending hashes), they cannot deadlock: one waits for the other.
func TestLockSubjectsOrder(t *testing.T) {
	s := openPostgres(t)
	holder, hscope := scoped(t, t.Context())
	must(t, s.LockSubjects(holder, []string{"x"}))

	type result struct {
		name  string
		err   error
		scope *txscope.Scope
	}
	results := make(chan result, 2)
	for name, keys := range map[string][]string{"a": {"k1", "x", "k2"}, "b": {"k2", "x", "k1"}} {
		ctx, scope := scoped(t, t.Context())
		go func() { results <- result{name, s.LockSubjects(ctx, keys), scope} }()
	}
	// Wait until both wait for a lock, then let go of x.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		must(t, s.db.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
			AND objsubid = 1 AND (classid::bigint << 32 | objid::bigint) IN ($1, $2, $3)`,
			s.lockKey("k1"), s.lockKey("x"), s.lockKey("k2")).Scan(&waiting))
		if waiting >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d transactions wait for a lock, want 2", waiting)
		}
		time.Sleep(10 * time.Millisecond)
	}
	hscope.Close()
	for range 2 {
		select {
		case r := <-results:
			if r.err != nil {
				t.Errorf("LockSubjects of %s: %v", r.name, r.err)
			}
			r.scope.Close() // lets the other go on
		case <-time.After(20 * time.Second):
			t.Fatal("LockSubjects did not return")
		}
	}
}

// BenchmarkAdapterBatch measures the adapter's side of a batched collection
// of track messages: in one transaction, the locks of the batch's subjects,
// a lookup of its identifiers, a suppression check and the metadata of its
// profiles, and one UpdateBatch recording an event per message. Each batch
// tracks one message for each of size people known before.
//
//	GDPRKIT_TEST_POSTGRES_DSN=... go test -overlay=testdata/testdeps/overlay.json -run '^$' -bench AdapterBatch ./sqlstore/
func BenchmarkAdapterBatch(b *testing.B) {
	for _, d := range dialects {
		for _, size := range []int{100, 500} {
			b.Run(fmt.Sprintf("%s/batch=%d", d.name, size), func(b *testing.B) {
				s := d.open(b)
				ctx, _ := scoped(b, b.Context()) // the setup's two backends in one transaction
				const people = 5000
				pid := func(i int) identity.ProfileID { return identity.ProfileID(fmt.Sprintf("use_%06d", i)) }
				uid := func(i int) identity.ID { return identity.ID{Type: "user_id", Value: fmt.Sprint("u", i)} }
				gtx, err := s.Graph().Begin(ctx)
				must(b, err)
				ptx, err := s.Profiles().Begin(ctx)
				must(b, err)
				for i := range people {
					must(b, gtx.Create(ctx, pid(i), t0))
					must(b, gtx.Link(ctx, pid(i), identity.Link{ID: uid(i), LinkedAt: t0, MessageID: "m"}))
				}
				var first []profile.BatchUpdate
				for i := range people {
					first = append(first, msg(pid(i), "m", 1, map[string]any{"plan": "pro"}))
				}
				_, err = ptx.(profile.BatchTx).UpdateBatch(ctx, first, nil)
				must(b, err)
				must(b, ptx.Commit(ctx))
				must(b, gtx.Commit(ctx))

				r := rand.New(rand.NewPCG(1, 1))
				keys := make([]string, size)
				ids := make([]identity.ID, size)
				pids := make([]identity.ProfileID, size)
				updates := make([]profile.BatchUpdate, size)
				var found []identity.ProfileID
				var suppressed []bool
				var dup []bool
				seq := 0
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					for i := range size {
						p := r.IntN(people)
						seq++
						keys[i], ids[i], pids[i] = "id:"+uid(p).String(), uid(p), pid(p)
						id := fmt.Sprint("t-", seq)
						at := t0.Add(time.Duration(seq) * time.Millisecond)
						updates[i] = profile.BatchUpdate{Profile: pid(p), Update: profile.Update{
							Metadata:  profile.Metadata{CreatedAt: t0, UpdatedAt: at, Version: uint64(seq), FirstMessageID: "m", LastMessageID: id, FirstSeen: t0, LastSeen: at},
							MessageID: id,
							Event:     &profile.Event{MessageID: id, Name: "Viewed", Properties: map[string]any{"page": "/home"}, Timestamp: at, ReceivedAt: at},
						}}
					}
					sctx, scope := txscope.NewContext(b.Context())
					must(b, s.LockSubjects(sctx, keys))
					found, err = s.Graph().(identity.BatchReader).LookupBatch(sctx, ids, found[:0])
					must(b, err)
					suppressed, err = s.Suppressions().(suppression.BatchReader).ProfileSuppressedBatch(sctx, pids, suppressed[:0])
					must(b, err)
					tx, err := s.Profiles().Begin(sctx)
					must(b, err)
					_, err = tx.(profile.BatchTx).MetadataBatch(sctx, pids)
					must(b, err)
					dup, err = tx.(profile.BatchTx).UpdateBatch(sctx, updates, dup[:0])
					must(b, err)
					must(b, tx.Commit(sctx))
					scope.Close()
				}
				b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "msgs/s")
			})
		}
	}
}

func batchController(t *testing.T, s *Store) *privacy.Controller {
	c, err := privacy.New(privacy.WithIdentity(s.Graph()), privacy.WithProfiles(s.Profiles()),
		privacy.WithAudiences(s.Audiences()), privacy.WithSuppressions(s.Suppressions()),
		privacy.WithKey([]byte("batch-test-key-0123456789abcdef")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestCollectBatchOneBadTextFailsOnlyItself: a message with text no SQL
// backend stores (PostgreSQL refuses NUL) is refused, ErrInvalid naming the
// field, on every backend alike, alone: the others of its batch are stored.
// (A review found the whole batch failed; another that PostgreSQL answered
// with its own error where memory and SQLite took the NUL.)
func TestCollectBatchOneBadTextFailsOnlyItself(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		c := batchController(t, s)
		ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		var msgs []privacy.Message
		for i := range 5 {
			if err := c.Collect(ctx, privacy.Identify{MessageID: fmt.Sprint("seed", i), UserID: fmt.Sprint("u", i), Timestamp: ts}); err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, privacy.Track{MessageID: fmt.Sprint("t", i), UserID: fmt.Sprint("u", i), Event: "Viewed", Timestamp: ts})
		}
		msgs[2] = privacy.Track{MessageID: "bad", UserID: "u\x002", Event: "Viewed", Timestamp: ts}
		msgs = append(msgs, privacy.Track{MessageID: "bad-event", UserID: "u3", Event: "Vie\x00wed", Timestamp: ts})
		alone := []error{c.Collect(ctx, msgs[2]), c.Collect(ctx, msgs[5])}
		err := c.CollectBatch(ctx, msgs)
		for i, field := range []string{"UserID", "Event"} {
			var fe *privacy.FieldError
			if !errors.As(alone[i], &fe) || fe.Field != field || !strings.Contains(fe.Reason, "NUL") {
				t.Errorf("Collect with a NUL in %s = %v; want ErrInvalid naming %s and the NUL", field, alone[i], field)
			}
		}
		var be *privacy.BatchError
		if !errors.As(err, &be) {
			t.Fatalf("CollectBatch = %v, want a *BatchError", err)
		}
		for i, e := range be.Errs {
			switch i {
			case 2, 5:
				if !errors.Is(e, privacy.ErrInvalid) || alone[i/5] == nil || e.Error() != alone[i/5].Error() {
					t.Errorf("message %d: batch %v, alone %v; want both refused alike, ErrInvalid", i, e, alone[i/5])
				}
			default:
				if e != nil {
					t.Errorf("message %d refused because of another: %v", i, e)
				}
			}
		}
		for i := range 5 {
			if i == 2 {
				continue
			}
			page, err := c.Events(ctx, identity.ID{Type: identity.TypeUserID, Value: fmt.Sprint("u", i)}, profile.EventQuery{Limit: 10})
			if err != nil || len(page.Events) != 1 {
				t.Errorf("u%d: %d events, %v; want its one", i, len(page.Events), err)
			}
		}
	})
}
