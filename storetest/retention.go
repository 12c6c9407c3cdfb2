package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// profilePruneEvents checks the optional profile.EventPruner: the events
// collected before their cutoff go (per source, or the global one; an
// event without a collection time by its timestamp), the counts returned
// per profile in order (a profile named twice, or unknown, counting 0),
// the transaction's own reads without them and others' with them until
// Commit, the message ids still recorded, traits and metadata untouched,
// a second prune finding nothing, zero cutoffs and an unknown profile
// nothing, Rollback discarding.
func profilePruneEvents(t *testing.T, e *env, s profile.Store) {
	pid, other := newPID(), newPID()
	// ev: received at sec+1000; even seconds from source "web", odd from "".
	var stored []profile.Event
	inTx(t, e.ctx, s.Begin, func(tx profile.Tx) error {
		for i, sec := range []int{0, 1, 2, 3, 4, 5} {
			x := ev("m"+string(rune('0'+i)), "Viewed", sec)
			stored = append(stored, *x)
			if err := tx.Update(e.ctx, pid, track(uint64(i+1), x)); err != nil {
				return err
			}
		}
		legacy := ev("old", "Viewed", 7) // source "", no ReceivedAt: collected at its timestamp
		legacy.ReceivedAt = time.Time{}
		stored = append(stored, *legacy)
		if err := tx.Update(e.ctx, pid, track(7, legacy)); err != nil {
			return err
		}
		for i, sec := range []int{0, 1} { // both expire
			if err := tx.Update(e.ctx, other, track(uint64(i+1), ev("n"+string(rune('0'+i)), "Viewed", sec))); err != nil {
				return err
			}
		}
		return nil
	})
	before := viewProfiles(t, e.ctx, s, pid)[pid]
	// "" events before 1003 (m1 at 1001, old at its timestamp 7); web events
	// before 1005 (m0, m2, m4).
	cut := profile.Cutoffs{Before: at(1003), Sources: map[string]time.Time{"web": at(1005)}}
	wantKept := []string{"m3", "m5"}

	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	pruner, ok := tx.(profile.EventPruner)
	if !ok {
		t.Skip("the transaction does not implement the optional profile.EventPruner")
	}
	counts, err := pruner.PruneEvents(e.ctx, []identity.ProfileID{pid, other, pid, newPID()}, cut)
	must(t, err, "PruneEvents")
	if !slices.Equal(counts, []int{5, 2, 0, 0}) {
		t.Errorf("PruneEvents = %v, want [5 2 0 0] (m0, m1, m2, m4 and old; n0 and n1; the first profile again; an unknown one)", counts)
	}
	if got := messageIDs(allEvents(t, e.ctx, tx, pid, profile.EventQuery{Sort: profile.Asc})); !slices.Equal(got, wantKept) {
		t.Errorf("the transaction's own events after PruneEvents: %v, want %v", got, wantKept)
	}
	if e.caps.NoIsolation == "" {
		if got := allEvents(t, e.ctx, s, pid, profile.EventQuery{}); len(got) != len(stored) {
			t.Errorf("before Commit, the store shows %d events, want all %d", len(got), len(stored))
		}
	}
	commitTx(t, e.ctx, tx)
	after := viewProfiles(t, e.ctx, s, pid)[pid]
	if got := messageIDs(after.Events); !slices.Equal(got, wantKept) {
		t.Errorf("after Commit the events are %v, want %v", got, wantKept)
	}
	if d := diff(before.Traits, after.Traits); d != "" {
		t.Errorf("PruneEvents changed the traits (-before +after):\n%s", d)
	}
	if d := diff(before.Meta, after.Meta); d != "" {
		t.Errorf("PruneEvents changed the metadata (-before +after):\n%s", d)
	}
	for _, kept := range after.Events {
		i := slices.IndexFunc(stored, func(x profile.Event) bool { return x.MessageID == kept.MessageID })
		if d := diff(stored[i], kept); d != "" {
			t.Errorf("a kept event changed (-stored +now):\n%s", d)
		}
	}
	// The message ids stay recorded: a resend of a pruned message is a duplicate.
	if err := update(t, e, s, pid, track(8, ev("m0", "Viewed", 0))); !errors.Is(err, profile.ErrDuplicate) {
		t.Errorf("resending pruned message m0: %v, want ErrDuplicate", err)
	}
	inTx(t, e.ctx, s.Begin, func(tx profile.Tx) error {
		p := tx.(profile.EventPruner)
		for _, c := range []struct {
			what string
			pid  identity.ProfileID
			cut  profile.Cutoffs
		}{{"again", pid, cut}, {"with zero cutoffs", pid, profile.Cutoffs{Sources: map[string]time.Time{"web": {}}}}, {"of an unknown profile", newPID(), cut}} {
			if n, err := p.PruneEvents(e.ctx, []identity.ProfileID{c.pid}, c.cut); !slices.Equal(n, []int{0}) || err != nil {
				t.Errorf("PruneEvents %s = %v, %v; want [0], nil", c.what, n, err)
			}
		}
		if n, err := p.PruneEvents(e.ctx, nil, cut); len(n) != 0 || err != nil {
			t.Errorf("PruneEvents of no profiles = %v, %v; want nothing", n, err)
		}
		return nil
	})
	if got := messageIDs(allEvents(t, e.ctx, s, pid, profile.EventQuery{Sort: profile.Asc})); !slices.Equal(got, wantKept) {
		t.Errorf("after pruning with nothing to prune the events are %v, want %v", got, wantKept)
	}
	// Rollback discards.
	tx2, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	if n, err := tx2.(profile.EventPruner).PruneEvents(e.ctx, []identity.ProfileID{pid}, profile.Cutoffs{Before: at(99999)}); !slices.Equal(n, []int{2}) || err != nil {
		t.Errorf("PruneEvents of everything = %v, %v; want [2]", n, err)
	}
	must(t, tx2.Rollback(e.ctx), "Rollback")
	if got := messageIDs(allEvents(t, e.ctx, s, pid, profile.EventQuery{Sort: profile.Asc})); !slices.Equal(got, wantKept) {
		t.Errorf("after a rolled back prune the events are %v, want %v", got, wantKept)
	}
}
