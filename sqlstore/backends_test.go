package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/suppression"
)

func hash(b byte) identity.Hash {
	var h identity.Hash
	for i := range h {
		h[i] = b
	}
	return h
}

func TestAudiences(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		as := s.Audiences()
		tx := audienceTxn(t, as)
		defs := []audience.Definition{{Key: "vip", Query: `trait('plan') = 'pro'`}, {Key: "all", Query: `trait('plan') exists`}}
		for _, d := range defs {
			must(t, tx.Define(ctx, d))
			must(t, tx.Define(ctx, d)) // a redo
		}
		if err := tx.Define(ctx, audience.Definition{Key: "vip", Query: `trait('plan') = 'free'`}); !errors.Is(err, audience.ErrConflict) {
			t.Errorf("Define of a defined key = %v, want ErrConflict", err)
		}
		if err := tx.Define(ctx, audience.Definition{Key: "x"}); !errors.Is(err, audience.ErrInvalid) {
			t.Errorf("Define without a query = %v, want ErrInvalid", err)
		}
		if err := tx.Put(ctx, "use_x", nil); !errors.Is(err, audience.ErrInvalid) {
			t.Errorf("Put(nil) = %v, want ErrInvalid", err)
		}
		var pids []identity.ProfileID
		for i := range 5 {
			pid := identity.NewProfileID(t0)
			pids = append(pids, pid)
			st := &audience.State{
				Audiences:  []string{"vip", "all", "vip"}, // unsorted and repeated: Put sorts them
				Counters:   []audience.Counter{{Key: "event('Buy')", Count: int64(i), Times: []int64{t0.UnixNano() + 1, t0.UnixNano() + 2}}, {Key: "z", Times: []int64{}}},
				NextChange: t0.Add(time.Duration(5-i) * time.Hour),
			}
			if i%2 == 1 {
				st.Audiences = []string{"all"}
			}
			must(t, tx.Put(ctx, pid, st))
		}
		if got, err := as.Members(ctx, "all", "", 0); err != nil || len(got) != 0 {
			t.Errorf("Members before commit = %v, %v; want none", got, err)
		}
		must(t, tx.Commit(ctx))

		got, err := as.Definitions(ctx)
		must(t, err)
		if diff := cmp.Diff(defs, got); diff != "" {
			t.Errorf("Definitions (-want +got):\n%s", diff)
		}
		st, err := as.State(ctx, pids[0])
		must(t, err)
		want := &audience.State{Audiences: []string{"all", "vip"},
			Counters:   []audience.Counter{{Key: "event('Buy')", Count: 0, Times: []int64{t0.UnixNano() + 1, t0.UnixNano() + 2}}, {Key: "z", Times: []int64{}}},
			NextChange: t0.Add(5 * time.Hour)}
		if diff := cmp.Diff(want, st); diff != "" {
			t.Errorf("State (-want +got):\n%s", diff)
		}
		if _, err := as.State(ctx, "use_none"); !errors.Is(err, audience.ErrNotFound) {
			t.Errorf("State of an unknown profile = %v, want ErrNotFound", err)
		}
		members, err := as.Members(ctx, "all", "", 0)
		must(t, err)
		if diff := cmp.Diff(pids, members); diff != "" {
			t.Errorf("Members(all) (-want +got):\n%s", diff)
		}
		members, err = as.Members(ctx, "vip", pids[0], 1)
		must(t, err)
		if diff := cmp.Diff(pids[2:3], members); diff != "" {
			t.Errorf("Members(vip, after first, 1) (-want +got):\n%s", diff)
		}
		due, err := as.Due(ctx, t0.Add(3*time.Hour), 0)
		must(t, err)
		if diff := cmp.Diff([]identity.ProfileID{pids[4], pids[3], pids[2]}, due); diff != "" {
			t.Errorf("Due (-want +got):\n%s", diff)
		}

		// Modify, then Delete: memberships follow.
		tx = audienceTxn(t, as)
		must(t, tx.(audience.Modifier).Modify(ctx, pids[0], func(st *audience.State) error {
			st.Audiences = []string{"all"}
			st.NextChange = time.Time{}
			return nil
		}))
		must(t, tx.(audience.Modifier).Modify(ctx, "use_new", func(st *audience.State) error {
			if st.Audiences != nil || st.Counters != nil {
				t.Errorf("Modify of a profile without state got %+v, want an empty State", st)
			}
			st.Audiences = []string{"vip"}
			return nil
		}))
		must(t, tx.Delete(ctx, pids[2]))
		must(t, tx.Delete(ctx, pids[2]))
		must(t, tx.Commit(ctx))
		members, err = as.Members(ctx, "vip", "", 0)
		must(t, err)
		if diff := cmp.Diff([]identity.ProfileID{pids[4], "use_new"}, members); diff != "" {
			t.Errorf("Members(vip) after Modify and Delete (-want +got):\n%s", diff)
		}
		due, err = as.Due(ctx, t0.Add(10*time.Hour), 2)
		must(t, err)
		if diff := cmp.Diff([]identity.ProfileID{pids[4], pids[3]}, due); diff != "" {
			t.Errorf("Due after Modify and Delete (-want +got):\n%s", diff)
		}
	})
}

func TestSuppressions(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		l := s.Suppressions()
		tx := beginTxn(t, l.Begin)
		must(t, tx.Add(ctx, hash(1), hash(2), hash(1)))
		must(t, tx.Add(ctx, hash(2)))
		must(t, tx.Remove(ctx, hash(2), hash(9)))
		must(t, tx.AddProfile(ctx, "use_a"))
		must(t, tx.AddProfile(ctx, "use_a"))
		if err := tx.AddProfile(ctx, ""); !errors.Is(err, suppression.ErrInvalid) {
			t.Errorf("AddProfile(\"\") = %v, want ErrInvalid", err)
		}
		if ok, err := tx.Suppressed(ctx, hash(1)); err != nil || !ok {
			t.Errorf("tx.Suppressed = %v, %v; want true", ok, err)
		}
		if ok, err := l.Suppressed(ctx, hash(1)); err != nil || ok {
			t.Errorf("Suppressed before commit = %v, %v; want false", ok, err)
		}
		must(t, tx.Commit(ctx))
		for h, want := range map[identity.Hash]bool{hash(1): true, hash(2): false, hash(3): false} {
			if ok, err := l.Suppressed(ctx, h); err != nil || ok != want {
				t.Errorf("Suppressed(%x) = %v, %v; want %v", h[0], ok, err, want)
			}
		}
		if ok, err := l.ProfileSuppressed(ctx, "use_a"); err != nil || !ok {
			t.Errorf("ProfileSuppressed = %v, %v; want true", ok, err)
		}
		if ids, profiles, err := l.Len(ctx); err != nil || ids != 1 || profiles != 1 {
			t.Errorf("Len = %d, %d, %v; want 1, 1", ids, profiles, err)
		}
		// Many at once: more than one statement's worth.
		many := make([]identity.Hash, 1200)
		for i := range many {
			many[i][0], many[i][1], many[i][15] = byte(i), byte(i>>8), 0xee
		}
		tx = beginTxn(t, l.Begin)
		must(t, tx.Add(ctx, many...))
		must(t, tx.RemoveProfile(ctx, "use_a"))
		must(t, tx.Commit(ctx))
		if ids, profiles, err := l.Len(ctx); err != nil || ids != 1201 || profiles != 0 {
			t.Errorf("Len after adding many = %d, %d, %v; want 1201, 0", ids, profiles, err)
		}
		tx = beginTxn(t, l.Begin)
		must(t, tx.Remove(ctx, many...))
		must(t, tx.Commit(ctx))
		if ids, _, err := l.Len(ctx); err != nil || ids != 1 {
			t.Errorf("Len after removing many = %d, %v; want 1", ids, err)
		}
	})
}

// fullEntry is a journal entry with every field set.
func fullEntry(id string, received time.Time, status journal.Status) *journal.Entry {
	return &journal.Entry{
		ID: id, Type: "SUPPRESS_WITH_DELETE", Status: status, Reason: "none yet",
		Subjects:      []identity.ID{email("ann@example.com"), {Type: "user_id", Value: "42"}},
		SubjectHashes: []identity.Hash{hash(1), hash(2)},
		Traits:        map[string]any{"name": "Ann", "gone": nil, "tags": []any{"a", map[string]any{"b": 1.5}}},
		Received:      received, Due: received.AddDate(0, 1, 0), Finished: received.Add(time.Nanosecond),
		ExtensionReason: "complex", Decided: true,
		Decision: journal.Decision{
			Delete:   []identity.ProfileID{"use_a"},
			Suppress: []identity.Hash{hash(3)}, Unsuppress: []identity.Hash{},
			Rectify: []journal.Rectification{{Profile: "use_a", Update: profile.Update{
				Metadata: profile.Metadata{Version: 3, UpdatedAt: received},
				Set:      map[string]profile.Trait{"name": {Value: "Ann", Source: profile.SourceRectification, UpdatedAt: received}},
				Remove:   []string{"gone"}, MessageID: "m1",
				Event: &profile.Event{MessageID: "m1", Name: "rectified", Properties: map[string]any{"k": "v"}},
			}}},
			Forward: []journal.Deletion{{Profile: "use_a", IDs: []identity.ID{email("ann@example.com")}}},
		},
		Backends:     []journal.Outcome{{Name: "profiles", Status: "FINISHED", Finished: received}},
		Destinations: []journal.Outcome{{Name: "crm", Status: "FAILED", Err: "timeout"}},
	}
}

func TestJournal(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		j := s.Journal()
		if err := j.Put(ctx, &journal.Entry{}); !errors.Is(err, journal.ErrInvalid) {
			t.Errorf("Put without an ID = %v, want ErrInvalid", err)
		}
		if _, err := j.Get(ctx, "nope"); !errors.Is(err, journal.ErrNotFound) {
			t.Errorf("Get of an unknown request = %v, want ErrNotFound", err)
		}
		statuses := []journal.Status{journal.StatusRunning, "FINISHED", journal.StatusInitialized, "FAILED"}
		var all []*journal.Entry
		for i := range 10 {
			// Received out of id order, and two at one time, so that the id breaks ties.
			e := fullEntry(fmt.Sprintf("req_%02d", i), t0.Add(time.Duration((i*7)%10/2)*time.Minute), statuses[i%4])
			must(t, j.Put(ctx, e))
			all = append(all, e)
		}
		got, err := j.Get(ctx, "req_03")
		must(t, err)
		if diff := cmp.Diff(all[3], got); diff != "" {
			t.Errorf("Get after Put (-put +got):\n%s", diff)
		}
		// Replacing moves the entry.
		all[3].Received, all[3].Status = t0.Add(time.Hour), "FINISHED"
		must(t, j.Put(ctx, all[3]))

		newestFirst := slices.Clone(all)
		slices.SortFunc(newestFirst, func(a, b *journal.Entry) int {
			if c := b.Received.Compare(a.Received); c != 0 {
				return c
			}
			return cmpString(b.ID, a.ID)
		})
		var ids, wantIDs []string
		for _, e := range newestFirst {
			wantIDs = append(wantIDs, e.ID)
		}
		f := journal.Filter{Limit: 3}
		for {
			page, err := j.List(ctx, f)
			must(t, err)
			for _, e := range page.Entries {
				ids = append(ids, e.ID)
			}
			if page.Next == "" {
				break
			}
			f.Cursor = page.Next
		}
		if diff := cmp.Diff(wantIDs, ids); diff != "" {
			t.Errorf("List over all pages (-want +got):\n%s", diff)
		}
		page, err := j.List(ctx, journal.Filter{Statuses: []journal.Status{"FAILED"}, Types: []journal.RequestType{"SUPPRESS_WITH_DELETE"}})
		must(t, err)
		if len(page.Entries) != 1 || page.Entries[0].ID != "req_07" || page.Next != "" {
			t.Errorf("List of FAILED entries: %d, next %q; want req_07 alone", len(page.Entries), page.Next)
		}
		// By subject: entries naming a hash, through the subject index,
		// which follows replacements.
		all[5].SubjectHashes = []identity.Hash{hash(7), hash(7), hash(2)}
		must(t, j.Put(ctx, all[5]))
		page, err = j.List(ctx, journal.Filter{Subjects: []identity.Hash{hash(7), hash(8)}})
		must(t, err)
		if len(page.Entries) != 1 || page.Entries[0].ID != "req_05" {
			t.Errorf("List by subject: %v, want req_05 alone", entryIDs(page.Entries))
		}
		page, err = j.List(ctx, journal.Filter{Subjects: []identity.Hash{hash(1)}, Limit: 100})
		must(t, err)
		if len(page.Entries) != 9 {
			t.Errorf("List by a subject all but one name: %d entries, want 9", len(page.Entries))
		}
		for _, f := range []journal.Filter{{Limit: -1}, {Limit: 1001}, {Cursor: "%%"}} {
			if _, err := j.List(ctx, f); !errors.Is(err, journal.ErrInvalid) {
				t.Errorf("List(%+v) = %v, want ErrInvalid", f, err)
			}
		}
		unfinished, err := j.Unfinished(ctx)
		must(t, err)
		var gotU, wantU []string
		for _, e := range unfinished {
			gotU = append(gotU, e.ID)
		}
		for i := len(newestFirst) - 1; i >= 0; i-- {
			if e := newestFirst[i]; e.Status == journal.StatusInitialized || e.Status == journal.StatusRunning {
				wantU = append(wantU, e.ID)
			}
		}
		if diff := cmp.Diff(wantU, gotU); diff != "" {
			t.Errorf("Unfinished (-want +got):\n%s", diff)
		}
	})
}

// TestJournalPutInOneStatement: on PostgreSQL a journal write, the entry and
// its subject index, is one statement, so one round trip (a right writes its
// entry four times or more); the index follows the subjects, and a
// compare-and-swap that finds another version changes neither the entry nor
// the index.
func TestJournalPutInOneStatement(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		counting := &countingEx{Executor: s.direct()}
		j := s.WithTx(counting).Journal()
		e := &journal.Entry{ID: "req_1", Type: "DELETE_ONLY", Status: journal.StatusRunning, Received: t0,
			SubjectHashes: []identity.Hash{hash(1), hash(2)}}
		must(t, j.Put(ctx, e))
		stale := e.Clone()
		e.SubjectHashes = []identity.Hash{hash(2), hash(3)}
		n := counting.statements(func() { must(t, j.Put(ctx, e)) })
		if want := map[Dialect]int64{Postgres: 1, SQLite: 3}[s.d]; n != want {
			t.Errorf("a compare-and-swap write took %d statements, want %d", n, want)
		}
		stale.SubjectHashes, stale.Status = []identity.Hash{hash(4)}, "FINISHED"
		if err := j.Put(ctx, stale); !errors.Is(err, journal.ErrConflict) {
			t.Fatalf("a write on a stale version = %v, want ErrConflict", err)
		}
		for h, want := range map[byte]bool{1: false, 2: true, 3: true, 4: false} {
			page, err := j.List(ctx, journal.Filter{Subjects: []identity.Hash{hash(h)}})
			must(t, err)
			if got := len(page.Entries) == 1; got != want {
				t.Errorf("List by subject %d finds the request: %v, want %v", h, got, want)
			}
		}
		got, err := j.Get(ctx, e.ID)
		must(t, err)
		if got.Status != journal.StatusRunning || got.Version != e.Version {
			t.Errorf("after the refused write: %s at version %d, want RUNNING at %d", got.Status, got.Version, e.Version)
		}
	})
}

func entryIDs(es []*journal.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestAuditLog(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		l := s.AuditLog()
		if _, ok, err := l.Last(ctx); err != nil || ok {
			t.Errorf("Last of an empty log = %v, %v", ok, err)
		}
		key := []byte("0123456789abcdef0123456789abcdef")
		c := audit.NewChain(l, key)
		for i := range 12 {
			r := audit.Record{At: t0.Add(time.Duration(i) * time.Second).Add(789 * time.Nanosecond), Action: "received",
				RequestID: fmt.Sprintf("req_%d", i), RequestType: "DELETE_ONLY", Status: "RUNNING", Detail: "d"}
			if i%2 == 0 {
				r.Subjects = []identity.Hash{hash(byte(i)), hash(0xff)}
			}
			must(t, c.Append(ctx, r))
		}
		if n, err := audit.Verify(ctx, l, key); err != nil || n != 12 {
			t.Errorf("Verify = %d, %v; want 12", n, err)
		}
		if err := l.Append(ctx, audit.Record{Seq: 14, At: t0}); err == nil {
			t.Error("Append leaving a gap succeeded")
		}
		if err := l.Append(ctx, audit.Record{Seq: 5, At: t0}); err == nil {
			t.Error("Append of an existing sequence number succeeded")
		}
		recs, err := l.Records(ctx, 10, 0)
		must(t, err)
		if len(recs) != 2 || recs[0].Seq != 11 || recs[1].Seq != 12 || recs[1].Subjects != nil || len(recs[0].Subjects) != 2 {
			t.Errorf("Records(after 10) = %+v", recs)
		}
		last, ok, err := l.Last(ctx)
		if err != nil || !ok || last.Seq != 12 {
			t.Errorf("Last = %+v, %v, %v", last, ok, err)
		}
		if diff := cmp.Diff(recs[1], last); diff != "" {
			t.Errorf("Last differs from the last of Records (-records +last):\n%s", diff)
		}
	})
}

// TestNoClearIdentifiersInSuppressions checks the suppression tables hold
// keyed hashes and profile ids only.
func TestNoClearIdentifiersInSuppressions(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		hasher, err := identity.NewHasher([]byte("0123456789abcdef0123456789abcdef"))
		must(t, err)
		tx, err := s.Suppressions().Begin(ctx)
		must(t, err)
		must(t, tx.Add(ctx, hasher.ID(email("secret@example.com"))))
		must(t, tx.Commit(ctx))
		var b []byte
		must(t, s.db.QueryRowContext(ctx, s.sql(`SELECT id_hash FROM {p}suppressed_identifiers`)).Scan(&b))
		if len(b) != len(identity.Hash{}) || string(b) == "secret@example.com" {
			t.Errorf("stored %q, want a %d-byte hash", b, len(identity.Hash{}))
		}
	})
}

// TestJournalIndexUnderConcurrentPuts: two writers (two processes, each on
// its own connection) write the same request while a third holds the entry's
// row for a moment; A's write goes first, then B's, a Put with Version 0
// ("stored whatever is there"), which waits for A's row lock. The subject
// index must name what the stored entry names. (A review found a one-statement
// Version 0 write, whose snapshot predates that wait, leaving A's index rows.)
func TestJournalIndexUnderConcurrentPuts(t *testing.T) {
	s := openPostgres(t)
	ctx := t.Context()
	j := s.Journal()
	base := &journal.Entry{ID: "req_1", Type: "DELETE_ONLY", Status: journal.StatusRunning, Received: t0,
		SubjectHashes: []identity.Hash{hash(1)}}
	must(t, j.Put(ctx, base))

	for _, mode := range []string{"A compare-and-swap", "A version 0"} {
		t.Run(mode, func(t *testing.T) {
			cur, err := j.Get(ctx, "req_1")
			must(t, err)
			// C holds the row, so that A and B both start before either writes.
			c, err := s.db.BeginTx(ctx, nil)
			must(t, err)
			defer c.Rollback()
			var one int
			must(t, c.QueryRowContext(ctx, s.sql(`SELECT 1 FROM {p}journal WHERE request_id = 'req_1' FOR UPDATE`)).Scan(&one))

			a := cur.Clone()
			a.SubjectHashes = []identity.Hash{hash(2)}
			if mode == "A version 0" {
				a.Version = 0
			}
			b := cur.Clone()
			b.Version, b.SubjectHashes = 0, []identity.Hash{hash(3)}
			errs := make(chan error, 2)
			go func() { errs <- j.Put(context.Background(), a) }()
			time.Sleep(200 * time.Millisecond) // A waits on C first
			go func() { errs <- j.Put(context.Background(), b) }()
			time.Sleep(200 * time.Millisecond) // then B, behind A
			must(t, c.Commit())
			for range 2 {
				if err := <-errs; err != nil {
					t.Fatalf("Put: %v", err)
				}
			}
			got, err := j.Get(ctx, "req_1")
			must(t, err)
			for _, h := range []byte{1, 2, 3} {
				page, err := j.List(ctx, journal.Filter{Subjects: []identity.Hash{hash(h)}})
				must(t, err)
				listed := len(page.Entries) == 1
				named := slices.Contains(got.SubjectHashes, hash(h))
				if listed != named {
					t.Errorf("subject %d: the stored entry (version %d) names it: %v; List by it finds the entry: %v", h, got.Version, named, listed)
				}
			}
			// Back to subject 1 for the next mode.
			got.SubjectHashes = []identity.Hash{hash(1)}
			must(t, j.Put(ctx, got))
		})
	}
}
