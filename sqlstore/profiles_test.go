package sqlstore

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

func profileTxn(t *testing.T, ps profile.Store) profile.Tx { return beginTxn(t, ps.Begin) }

// track returns an update recording a tracked event at t0+sec seconds.
func track(version uint64, id, name string, sec int, props map[string]any) profile.Update {
	at := t0.Add(time.Duration(sec) * time.Second)
	return profile.Update{
		Metadata:  profile.Metadata{CreatedAt: t0, UpdatedAt: at, Version: version, FirstMessageID: "first", LastMessageID: id, FirstSeen: t0, LastSeen: at},
		MessageID: id,
		Event:     &profile.Event{MessageID: id, Name: name, Properties: props, Timestamp: at, ReceivedAt: at.Add(time.Millisecond)},
	}
}

func TestProfiles(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		ps := s.Profiles()
		p := identity.NewProfileID(t0)
		if _, err := ps.Get(ctx, p); !errors.Is(err, profile.ErrNotFound) {
			t.Errorf("Get of an unknown profile = %v, want ErrNotFound", err)
		}
		if _, err := ps.Events(ctx, p, profile.EventQuery{}); !errors.Is(err, profile.ErrNotFound) {
			t.Errorf("Events of an unknown profile = %v, want ErrNotFound", err)
		}

		traits := map[string]profile.Trait{
			"plan":    {Value: "pro", Source: "identify", UpdatedAt: t0},
			"age":     {Value: 42.5, Source: "web", UpdatedAt: t0},
			"nested":  {Value: map[string]any{"a": []any{1.0, "two", nil, true}, "html": "<b>&</b>", "nul": "x\x00y"}, Source: "web", UpdatedAt: t0},
			"nothing": {Value: nil, Source: "web", UpdatedAt: t0},
			"gone":    {Value: "soon", UpdatedAt: t0},
		}
		meta := profile.Metadata{CreatedAt: t0, UpdatedAt: t0, Version: 1, FirstMessageID: "m0", LastMessageID: "m0", FirstSeen: t0, LastSeen: t0,
			Recipients: []profile.Recipient{{Name: "crm", FirstSent: t0, LastSent: t0.Add(time.Hour)}, {Name: "ads", FirstSent: t0}}}
		tx := profileTxn(t, ps)
		must(t, tx.Update(ctx, p, profile.Update{Metadata: meta, Set: traits, MessageID: "m0"}))
		// A duplicate fails without aborting the transaction.
		if err := tx.Update(ctx, p, profile.Update{Metadata: meta, MessageID: "m0"}); !errors.Is(err, profile.ErrDuplicate) {
			t.Errorf("Update with a recorded message id = %v, want ErrDuplicate", err)
		}
		meta.Version = 2
		must(t, tx.Update(ctx, p, profile.Update{Metadata: meta, Remove: []string{"gone", "never"}}))
		got, err := tx.Get(ctx, p)
		must(t, err)
		delete(traits, "gone")
		want := &profile.Profile{ID: p, Traits: traits, Metadata: meta}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("tx.Get (-want +got):\n%s", diff)
		}
		must(t, tx.Commit(ctx))
		got, err = ps.Get(ctx, p)
		must(t, err)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Get after commit (-want +got):\n%s", diff)
		}
		m, err := ps.Metadata(ctx, p)
		must(t, err)
		if diff := cmp.Diff(meta, m); diff != "" {
			t.Errorf("Metadata (-want +got):\n%s", diff)
		}
		// What a caller does with what it got does not reach the store.
		got.Traits["nested"].Value.(map[string]any)["a"] = "changed"
		again, err := ps.Get(ctx, p)
		must(t, err)
		if diff := cmp.Diff(want, again); diff != "" {
			t.Errorf("Get after changing a returned value (-want +got):\n%s", diff)
		}
		if page, err := ps.Events(ctx, p, profile.EventQuery{}); err != nil || len(page.Events) != 0 {
			t.Errorf("Events of a profile without events = %+v, %v", page, err)
		}
	})
}

func TestProfileUpdateRefuses(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p := identity.NewProfileID(t0)
		tx := profileTxn(t, s.Profiles())
		for name, u := range map[string]profile.Update{
			"event without the message id": {MessageID: "m", Event: &profile.Event{MessageID: "other"}},
			"version beyond int64":         {Metadata: profile.Metadata{Version: 1 << 63}},
			"time before year 1":           {Metadata: profile.Metadata{CreatedAt: time.Time{}.Add(-time.Second)}},
			"trait that is not JSON":       {Set: map[string]profile.Trait{"f": {Value: func() {}}}},
		} {
			if err := tx.Update(ctx, p, u); !errors.Is(err, profile.ErrInvalid) {
				t.Errorf("%s: Update = %v, want ErrInvalid", name, err)
			}
		}
		must(t, tx.Commit(ctx))
		if _, err := s.Profiles().Get(ctx, p); !errors.Is(err, profile.ErrNotFound) {
			t.Errorf("refused updates wrote something: Get = %v", err)
		}
	})
}

func TestProfileEvents(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		ps := s.Profiles()
		p := identity.NewProfileID(t0)
		tx := profileTxn(t, ps)
		var all []profile.Event
		names := []string{"a", "b", "c"}
		// Out of order, and several at one time: the store orders them by
		// (timestamp, message id).
		for i := 29; i >= 0; i-- {
			u := track(uint64(30-i), fmt.Sprintf("m%02d", i), names[i%3], i/2, map[string]any{"i": float64(i)})
			must(t, tx.Update(ctx, p, u))
			all = append(all, *u.Event)
		}
		must(t, tx.Commit(ctx))
		slices.SortFunc(all, func(a, b profile.Event) int { return profile.CompareEvents(&a, &b) })

		page := func(q profile.EventQuery) []profile.Event {
			t.Helper()
			var out []profile.Event
			for range 100 {
				pg, err := ps.Events(ctx, p, q)
				must(t, err)
				if len(pg.Events) > q.Limit && q.Limit > 0 {
					t.Fatalf("page of %d events, limit %d", len(pg.Events), q.Limit)
				}
				out = append(out, pg.Events...)
				if pg.Next == "" {
					return out
				}
				q.Cursor = pg.Next
			}
			t.Fatal("paging does not end")
			return nil
		}
		filter := func(keep func(e profile.Event) bool, desc bool) []profile.Event {
			var out []profile.Event
			for _, e := range all {
				if keep(e) {
					out = append(out, e)
				}
			}
			if desc {
				slices.Reverse(out)
			}
			return out
		}
		start, end := t0.Add(3*time.Second), t0.Add(10*time.Second)
		for _, tt := range []struct {
			name string
			q    profile.EventQuery
			keep func(e profile.Event) bool
			desc bool
		}{
			{"newest first", profile.EventQuery{Limit: 4}, func(profile.Event) bool { return true }, true},
			{"oldest first", profile.EventQuery{Limit: 7, Sort: profile.Asc}, func(profile.Event) bool { return true }, false},
			{"window", profile.EventQuery{Start: start, End: end, Limit: 3, Sort: profile.Asc},
				func(e profile.Event) bool { return !e.Timestamp.Before(start) && e.Timestamp.Before(end) }, false},
			// Bounds between two microseconds: at or after start rounds up, before end too.
			{"window with nanoseconds", profile.EventQuery{Start: start.Add(-time.Nanosecond), End: end.Add(time.Nanosecond), Limit: 5},
				func(e profile.Event) bool { return !e.Timestamp.Before(start) && !e.Timestamp.After(end) }, true},
			{"include", profile.EventQuery{Include: []string{"a", "c"}, Limit: 2},
				func(e profile.Event) bool { return e.Name != "b" }, true},
			{"exclude", profile.EventQuery{Exclude: []string{"a"}, Limit: 1000, Sort: profile.Asc},
				func(e profile.Event) bool { return e.Name != "a" }, false},
		} {
			want := filter(tt.keep, tt.desc)
			if diff := cmp.Diff(want, page(tt.q)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tt.name, diff)
			}
		}
		if _, err := ps.Events(ctx, p, profile.EventQuery{Cursor: "!!"}); !errors.Is(err, profile.ErrInvalid) {
			t.Errorf("Events with a malformed cursor = %v, want ErrInvalid", err)
		}
		if _, err := ps.Events(ctx, p, profile.EventQuery{Limit: -1}); !errors.Is(err, profile.ErrInvalid) {
			t.Errorf("Events with a negative limit = %v, want ErrInvalid", err)
		}
	})
}

func TestProfileMergeAndDelete(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		ps := s.Profiles()
		into, from := identity.NewProfileID(t0), identity.NewProfileID(t0)
		tx := profileTxn(t, ps)
		must(t, tx.Update(ctx, into, track(1, "shared", "x", 1, nil)))
		must(t, tx.Update(ctx, into, profile.Update{MessageID: "identify-only"}))
		must(t, tx.Update(ctx, from, track(1, "shared", "from-copy", 2, nil)))
		must(t, tx.Update(ctx, from, track(2, "identify-only", "dropped", 3, nil)))
		must(t, tx.Update(ctx, from, track(3, "f1", "kept", 4, map[string]any{"k": "v"})))
		must(t, tx.Update(ctx, from, profile.Update{Metadata: profile.Metadata{Version: 4}, Set: map[string]profile.Trait{"t": {Value: "v"}}}))
		if err := tx.Merge(ctx, into, into); !errors.Is(err, profile.ErrInvalid) {
			t.Errorf("Merge into itself = %v, want ErrInvalid", err)
		}
		if err := tx.Merge(ctx, identity.NewProfileID(t0), from); !errors.Is(err, profile.ErrNotFound) {
			t.Errorf("Merge into a missing profile = %v, want ErrNotFound", err)
		}
		must(t, tx.Merge(ctx, into, from))
		must(t, tx.Merge(ctx, into, from)) // a redo
		must(t, tx.Commit(ctx))

		if _, err := ps.Get(ctx, from); !errors.Is(err, profile.ErrNotFound) {
			t.Errorf("Get of the merged profile = %v, want ErrNotFound", err)
		}
		page, err := ps.Events(ctx, into, profile.EventQuery{Sort: profile.Asc})
		must(t, err)
		var got []string
		for _, e := range page.Events {
			got = append(got, e.MessageID+"/"+e.Name)
		}
		if diff := cmp.Diff([]string{"shared/x", "f1/kept"}, got); diff != "" {
			t.Errorf("events after merge (-want +got):\n%s", diff)
		}
		// from's message ids are into's now.
		tx = profileTxn(t, ps)
		if err := tx.Update(ctx, into, profile.Update{MessageID: "f1"}); !errors.Is(err, profile.ErrDuplicate) {
			t.Errorf("Update with a merged message id = %v, want ErrDuplicate", err)
		}
		must(t, tx.Delete(ctx, into))
		must(t, tx.Delete(ctx, into))
		must(t, tx.Commit(ctx))
		if _, err := ps.Events(ctx, into, profile.EventQuery{}); !errors.Is(err, profile.ErrNotFound) {
			t.Errorf("Events after Delete = %v, want ErrNotFound", err)
		}
		// Nothing of the person is left in any table.
		for _, table := range []string{"profiles", "profile_traits", "profile_messages"} {
			var n int
			must(t, s.db.QueryRowContext(ctx, s.sql(`SELECT COUNT(*) FROM {p}`+table)).Scan(&n))
			if n != 0 {
				t.Errorf("%s: %d rows left after Delete", table, n)
			}
		}
	})
}

func TestProfileIDs(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		ps := s.Profiles()
		var want []identity.ProfileID
		tx := profileTxn(t, ps)
		for range 7 {
			p := identity.NewProfileID(t0)
			want = append(want, p)
			must(t, tx.Update(ctx, p, profile.Update{}))
		}
		must(t, tx.Commit(ctx))
		var got []identity.ProfileID
		after := identity.ProfileID("")
		for {
			ids, err := ps.IDs(ctx, after, 3)
			must(t, err)
			if len(ids) == 0 {
				break
			}
			got = append(got, ids...)
			after = ids[len(ids)-1]
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("IDs (-want +got):\n%s", diff)
		}
		if _, err := ps.IDs(ctx, "", 0); !errors.Is(err, profile.ErrInvalid) {
			t.Errorf("IDs with limit 0 = %v, want ErrInvalid", err)
		}
	})
}
