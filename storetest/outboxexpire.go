package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
)

// The checks of outbox.ExpiringTx: retention drops the queued and dead
// messages of the events it deleted, and nothing else.

// eventItem returns a collected track message for the destination and
// profile, received at the second rec, from the source.
func eventItem(dest string, pid identity.ProfileID, id, source string, rec, sec int) outbox.Item {
	it := sendItem(dest, pid, id, sec)
	m := it.Message
	m.Type, m.Event, m.Traits = destination.TypeTrack, "Viewed", nil
	m.Properties = map[string]any{"note": "canary " + id}
	m.Source, m.ReceivedAt = source, at(rec)
	return it
}

// expire runs Expire at the second now in a transaction, committed or
// rolled back, and returns its count.
func expire(t *testing.T, e *env, s outbox.Store, commit bool, now int, pids []identity.ProfileID, c profile.Cutoffs) int {
	t.Helper()
	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	x, ok := tx.(outbox.ExpiringTx)
	if !ok {
		t.Fatal("the store's transaction is no longer an outbox.ExpiringTx")
	}
	n, err := x.Expire(e.ctx, pids, c, at(now))
	must(t, err, "Expire")
	if commit {
		commitTx(t, e.ctx, tx)
	}
	return n
}

// expiring skips the check unless the store's transactions expire.
func expiring(t *testing.T, e *env, s outbox.Store) {
	t.Helper()
	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	defer tx.Rollback(e.ctx)
	if _, ok := tx.(outbox.ExpiringTx); !ok {
		t.Skip("the store's transactions are no outbox.ExpiringTx")
	}
}

// outboxExpire: Expire removes the profiles' Pending and Dead messages
// of tracks, pages and screens received before the cutoff of their source
// (the global one for a source without its own), and keeps the rest:
// later events, identifies, groups and aliases (state the library keeps),
// messages without ReceivedAt (the library's own), a request's messages,
// deletions, other profiles' messages. A rollback keeps everything; an
// empty profile id is refused, changing nothing.
func outboxExpire(t *testing.T, e *env, s outbox.Store) {
	expiring(t, e, s)
	p := newPIDs(3)
	own := eventItem("crm", p[0], "own", "", 0, 5)
	own.Message.ReceivedAt = time.Time{}
	requested := eventItem("crm", p[0], "requested", "", 5, 6)
	requested.Request = "req-x"
	group := eventItem("crm", p[0], "group", "web", 10, 7)
	group.Message.Type, group.Message.Event, group.Message.GroupID = destination.TypeGroup, "", "acme"
	alias := eventItem("crm", p[0], "alias", "web", 10, 8)
	alias.Message.Type, alias.Message.Event, alias.Message.PreviousID = destination.TypeAlias, "", "old-id"
	page := eventItem("crm", p[0], "old-page", "web", 10, 9)
	page.Message.Type, page.Message.Event, page.Message.Name = destination.TypePage, "", "Pricing"
	in := enqueue(t, e.ctx, s,
		eventItem("crm", p[0], "old", "web", 10, 10),
		eventItem("crm", p[0], "new", "web", 100, 11),
		eventItem("crm", p[0], "old-ios", "ios", 10, 12), // ios keeps 5 s only
		eventItem("crm", p[0], "mid-ios", "ios", 30, 13),
		sendItem("crm", p[0], "identify", 14),
		own, requested, group, alias, page,
		deleteItem("ads", p[0], "req-d", 15),
		eventItem("crm", p[1], "other-old", "web", 10, 16), // not among pids
		eventItem("crm", p[2], "dead-old", "web", 10, 17),
	)
	// dead-old dies first.
	got, err := s.Claim(e.ctx, outbox.Claim{Owner: "w", Destinations: []string{"crm"}, Now: at(20), Until: at(80), Limit: 100})
	must(t, err, "Claim")
	var dead []outbox.Item
	var back []uint64
	for _, it := range got {
		if it.Profile == p[2] {
			dead = append(dead, it)
		} else {
			back = append(back, it.ID)
		}
	}
	if len(dead) != 1 {
		t.Fatalf("Claim got %v; want dead-old among them", itemNames(got))
	}
	must(t, s.Renew(e.ctx, "w", back, time.Time{}), "Renew (give back)")
	settle(t, e.ctx, s, "w", outbox.Dead, dead...)

	cut := profile.Cutoffs{Before: at(50), Sources: map[string]time.Time{"ios": at(20)}}
	pids := []identity.ProfileID{p[0], p[2]}
	if n := expire(t, e, s, false, 30, pids, cut); n != 4 {
		t.Errorf("Expire (rolled back) = %d; want 4 (old, old-ios, old-page, dead-old)", n)
	}
	if c := counts(t, e.ctx, s, "crm"); c.Pending != 11 || c.Dead != 1 {
		t.Fatalf("after a rolled-back Expire Stats = %+v; want 11 Pending, 1 Dead", c)
	}
	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	if _, err := tx.(outbox.ExpiringTx).Expire(e.ctx, []identity.ProfileID{p[0], ""}, cut, at(30)); !errors.Is(err, outbox.ErrInvalid) {
		t.Errorf("Expire of an empty profile id = %v; want ErrInvalid", err)
	}
	must(t, tx.Rollback(e.ctx), "Rollback")
	if n := expire(t, e, s, true, 30, pids, cut); n != 4 {
		t.Errorf("Expire = %d; want 4 (old, old-ios, old-page, dead-old)", n)
	}
	if c := counts(t, e.ctx, s, "crm"); c.Pending != 8 || c.Dead != 0 {
		t.Errorf("after Expire Stats = %+v; want 8 Pending, 0 Dead", c)
	}
	if d, _ := s.Dead(e.ctx, "", 0, 10); len(d) != 0 {
		t.Errorf("after Expire Dead = %v; want the expired dead letter gone", itemNames(d))
	}
	if n, err := s.Replay(e.ctx, []uint64{dead[0].ID}, at(60)); err != nil || n != 0 {
		t.Errorf("Replay of the expired dead letter = %d, %v; want 0", n, err)
	}
	want := map[identity.ProfileID][]string{
		p[0]: {"new", "mid-ios", "identify", "own", "requested", "group", "alias"},
		p[1]: {"other-old"},
	}
	left := map[identity.ProfileID][]string{}
	for sec := 70; ; sec++ {
		items := claim(t, e.ctx, s, "v", sec, "crm")
		if len(items) == 0 {
			break
		}
		for _, it := range items {
			if it.Message != nil && it.Message.Properties != nil && it.Message.Properties["note"] != "canary "+it.Message.MessageID {
				t.Errorf("message %s came back with properties %v", it.Message.MessageID, it.Message.Properties)
			}
			left[it.Profile] = append(left[it.Profile], itemNames([]outbox.Item{it})...)
		}
		settle(t, e.ctx, s, "v", outbox.Delivered, items...)
	}
	if d := diff(want, left); d != "" {
		t.Errorf("what Expire left (-want +got):\n%s", d)
	}
	if got := claim(t, e.ctx, s, "v", 200, "ads"); len(got) != 1 || got[0].ID != in[10].ID || got[0].Deletion == nil {
		t.Errorf("the deletion after Expire: Claim got %v; want it", itemNames(got))
	}
	if n := expire(t, e, s, true, 300, pids, profile.Cutoffs{}); n != 0 {
		t.Errorf("Expire with zero cutoffs = %d; want 0", n)
	}
}

// outboxExpireOfHeldAndBatched: a message a deliverer holds stays, payload
// and all, until it comes back, or long after its lease lapsed (its
// deliverer died); of a batch's messages (which a store may
// keep together), the expired ones go and the others are handed out
// unchanged and in order, the held ones too.
func outboxExpireOfHeldAndBatched(t *testing.T, e *env, s outbox.Store) {
	expiring(t, e, s)
	p := newPIDs(2)
	batch := make([]outbox.Item, 6)
	for i := range batch {
		rec := 10 // b1, b3, b5 old; b2, b4, b6 new
		if i%2 == 1 {
			rec = 100
		}
		batch[i] = eventItem("crm", p[0], "b"+string(rune('1'+i)), "web", rec, 1)
	}
	enqueue(t, e.ctx, s, batch...)
	enqueue(t, e.ctx, s, eventItem("crm", p[1], "held-old", "web", 10, 2))
	// b1 and b2 and held-old in a call.
	held, err := s.Claim(e.ctx, outbox.Claim{Owner: "w", Destinations: []string{"crm"}, Now: at(3), Until: at(63), Limit: 2})
	must(t, err, "Claim")
	// The batch's rest waits behind b1 and b2: the next claim is held-old.
	held = append(held, claim(t, e.ctx, s, "w", 3, "crm")...)
	if d := diff([]string{"b1", "b2", "held-old"}, itemNames(held)); d != "" {
		t.Fatalf("Claims with Limit 2, then 100 (-want +got):\n%s", d)
	}
	cut := profile.Cutoffs{Before: at(50)}
	if n := expire(t, e, s, true, 10, p, cut); n != 2 {
		t.Errorf("Expire = %d; want 2 (b3, b5: b1 and held-old are in a call)", n)
	}
	settle(t, e.ctx, s, "w", outbox.Pending, held...) // failed: tried again
	// Each comes back unchanged, in order, with the batch's kept messages.
	if got := drain(t, e, s, "v", 200, "crm"); !sameMembers(got, []string{"b1", "b2", "b4", "b6", "held-old"}) || !inOrder(got, "b1", "b2", "b4", "b6") {
		t.Errorf("after Expire and a failed call, handed out %v; want b1, b2, b4, b6 in order and held-old", got)
	}
	// Back in the queue, expired, they go at the next run.
	enqueue(t, e.ctx, s, eventItem("crm", p[1], "again", "web", 10, 300))
	tx, err := s.Claim(e.ctx, outbox.Claim{Owner: "w", Destinations: []string{"crm"}, Now: at(301), Until: at(361), Limit: 1})
	must(t, err, "Claim")
	must(t, s.Renew(e.ctx, "w", ids(tx), time.Time{}), "Renew (give back)")
	if n := expire(t, e, s, true, 302, p, cut); n != 1 {
		t.Errorf("Expire after the holder gave it back = %d; want 1", n)
	}
	// A holder that died: its lease lapsed, the message goes.
	enqueue(t, e.ctx, s, eventItem("crm", p[1], "orphan", "web", 10, 400))
	if got := claim(t, e.ctx, s, "dead-host", 401, "crm"); len(got) != 1 {
		t.Fatalf("Claim got %v; want orphan", itemNames(got))
	}
	if n := expire(t, e, s, true, 450, p, cut); n != 0 {
		t.Errorf("Expire while the lease runs = %d; want 0", n)
	}
	// Long after the lease lapsed (a store may hold a row some lease
	// lengths past it, as Purge's emptied rows: 20 here).
	if n := expire(t, e, s, true, 461+20*60, p, cut); n != 1 {
		t.Errorf("Expire long after the lease lapsed = %d; want 1", n)
	}
	if got := claim(t, e.ctx, s, "next-host", 461+20*60+1, "crm"); len(got) != 0 {
		t.Errorf("after Expire of a lapsed lease's message Claim got %v; want nothing", itemNames(got))
	}
	if c := counts(t, e.ctx, s, "crm"); c.Pending != 0 {
		t.Errorf("Stats = %+v; want nothing Pending", c)
	}
}

// sameMembers reports whether a and b hold the same names, in any order.
func sameMembers(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	n := map[string]int{}
	for _, x := range a {
		n[x]++
	}
	for _, x := range b {
		n[x]--
	}
	for _, k := range n {
		if k != 0 {
			return false
		}
	}
	return true
}

// inOrder reports whether names appear in got in that order.
func inOrder(got []string, names ...string) bool {
	i := 0
	for _, g := range got {
		if i < len(names) && g == names[i] {
			i++
		}
	}
	return i == len(names)
}
