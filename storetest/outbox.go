package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/outbox"
)

// OutboxMaker is what a Harness also implements when its adapter provides an
// outbox: the "Outbox" checks run on the store it makes, and the Controller
// checks deliver through it. (A separate interface, so that Harnesses
// written before the outbox existed still compile: their outbox checks are
// skipped.)
type OutboxMaker interface {
	// MakeOutbox returns an empty outbox, or an error matching
	// ErrNotImplemented.
	MakeOutbox(ctx context.Context) (outbox.Store, error)
}

// makeOutbox is the Harness's MakeOutbox, or ErrNotImplemented.
func makeOutbox(h Harness, ctx context.Context) (outbox.Store, error) {
	m, ok := h.(OutboxMaker)
	if !ok {
		return nil, fmt.Errorf("%w: the Harness has no MakeOutbox method (storetest.OutboxMaker)", ErrNotImplemented)
	}
	return m.MakeOutbox(ctx)
}

var outboxChecks = []check[outbox.Store]{
	{"EnqueueAndClaim", outboxEnqueueAndClaim},
	{"EnqueueIsAllOrNothing", outboxEnqueueIsAllOrNothing},
	{"RollbackDiscards", outboxRollbackDiscards},
	{"RequestMarksCommitWithTheTransaction", outboxRequestMarks},
	{"KeyedOnce", outboxKeyedOnce},
	{"OrderPerProfile", outboxOrderPerProfile},
	{"DeletionWaitsForEarlierItems", outboxDeletionWaitsForEarlierItems},
	{"LeaseLapses", outboxLeaseLapses},
	{"Renew", outboxRenew},
	{"Answers", outboxAnswers},
	{"DeadAndReplay", outboxDeadAndReplay},
	{"Purge", outboxPurge},
	{"PurgeOfHeldMessages", outboxPurgeOfHeldMessages},
	{"ReplayBehindAHeldItem", outboxReplayBehindAHeldItem},
	{"Merge", outboxMerge},
	{"ConcurrentDeliverers", outboxConcurrentDeliverers},
	{"BatchLimit", outboxBatchLimit},
	{"BatchGiveBack", outboxBatchGiveBack},
	{"BatchAnswers", outboxBatchAnswers},
	{"BatchPurge", outboxBatchPurge},
	{"Expire", outboxExpire},
	{"ExpireOfHeldAndBatched", outboxExpireOfHeldAndBatched},
}

// sendItem returns a message item for the destination and profile.
func sendItem(dest string, pid identity.ProfileID, id string, sec int) outbox.Item {
	return outbox.Item{Destination: dest, Profile: pid, Enqueued: at(sec), Message: &destination.Message{
		MessageID: id, Type: destination.TypeIdentify, ProfileID: pid, IDs: []identity.ID{uid("u" + id), email(id + "@example.com")},
		Traits: map[string]any{"plan": "pro", "address": map[string]any{"city": "Paris", "lines": []any{"1 rue", 2.0}}}, Timestamp: at(sec)}}
}

// deleteItem returns a deletion item for the destination and profile, which
// the request awaits.
func deleteItem(dest string, pid identity.ProfileID, request string, sec int) outbox.Item {
	return outbox.Item{Destination: dest, Profile: pid, Request: request, Key: request + "/" + string(pid), Enqueued: at(sec),
		Deletion: &destination.Deletion{RequestID: request, ProfileID: pid, IDs: []identity.ID{uid("gone"), anon("gone-phone")}}}
}

// enqueue enqueues the items in one committed transaction and returns them
// with their IDs.
func enqueue(t *testing.T, ctx context.Context, s outbox.Store, items ...outbox.Item) []outbox.Item {
	t.Helper()
	tx, err := s.Begin(ctx)
	must(t, err, "Begin")
	defer tx.Rollback(ctx)
	must(t, tx.Enqueue(ctx, items), "Enqueue")
	commitTx(t, ctx, tx)
	return items
}

// claim claims for owner at sec, with a lease of a minute.
func claim(t *testing.T, ctx context.Context, s outbox.Store, owner string, sec int, dests ...string) []outbox.Item {
	t.Helper()
	got, err := s.Claim(ctx, outbox.Claim{Owner: owner, Destinations: dests, Now: at(sec), Until: at(sec + 60), Limit: 100})
	must(t, err, "Claim")
	return got
}

// ids returns the IDs of the items.
func ids(items []outbox.Item) []uint64 {
	out := make([]uint64, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return out
}

// settle settles the items owner holds with the state, failing on an error
// or a lost item.
func settle(t *testing.T, ctx context.Context, s outbox.Store, owner string, state outbox.State, items ...outbox.Item) {
	t.Helper()
	answers := make([]outbox.Answer, len(items))
	for i, it := range items {
		answers[i] = outbox.Answer{ID: it.ID, State: state}
	}
	lost, err := s.Settle(ctx, owner, answers)
	must(t, err, "Settle")
	if lost != 0 {
		t.Fatalf("Settle lost %d of %d items %s holds", lost, len(items), owner)
	}
}

// pending returns the Stats of the destination.
func counts(t *testing.T, ctx context.Context, s outbox.Store, dest string) outbox.Counts {
	t.Helper()
	st, err := s.Stats(ctx)
	must(t, err, "Stats")
	return st[dest]
}

// outboxEnqueueAndClaim: enqueued items get increasing IDs and are handed
// out as enqueued (payload and all), leased: a second Claim gets none of
// them; Claim names the destinations it delivers.
func outboxEnqueueAndClaim(t *testing.T, e *env, s outbox.Store) {
	p := newPIDs(2)
	in := enqueue(t, e.ctx, s, sendItem("crm", p[0], "m1", 1), sendItem("crm", p[1], "m2", 2), deleteItem("ads", p[0], "req-1", 3))
	if in[0].ID == 0 || in[1].ID <= in[0].ID || in[2].ID <= in[1].ID {
		t.Fatalf("IDs %v: want increasing, not 0", ids(in))
	}
	got := claim(t, e.ctx, s, "w1", 10, "crm")
	want := []outbox.Item{in[0], in[1]}
	for i := range want {
		want[i].State, want[i].NotBefore = outbox.Pending, want[i].Enqueued
	}
	if d := diff(want, got); d != "" {
		t.Errorf("Claim of crm (-enqueued +claimed):\n%s", d)
	}
	if again := claim(t, e.ctx, s, "w2", 11, "crm", "ads"); len(again) != 1 || again[0].ID != in[2].ID {
		t.Errorf("a second Claim got %v; want only the ads deletion %d: the others are leased", ids(again), in[2].ID)
	}
	if c := counts(t, e.ctx, s, "crm"); c.Pending != 2 || c.Dead != 0 {
		t.Errorf("Stats of crm = %+v; want 2 Pending", c)
	}
	// What the caller holds is its own.
	got[0].Message.Traits["plan"] = "changed"
	in[1].Message.IDs[0].Value = "changed"
	settle(t, e.ctx, s, "w1", outbox.Pending, got...) // back, due at their NotBefore 0
	again := claim(t, e.ctx, s, "w1", 12, "crm")
	if len(again) != 2 || again[0].Message.Traits["plan"] != "pro" || again[1].Message.IDs[0].Value != "um2" {
		t.Errorf("after the caller changed its copies, the store hands out %+v", again)
	}
}

// outboxEnqueueIsAllOrNothing: an invalid item fails Enqueue with ErrInvalid
// and nothing of the call is enqueued.
func outboxEnqueueIsAllOrNothing(t *testing.T, e *env, s outbox.Store) {
	p := newPID()
	bad := []outbox.Item{
		{Destination: "", Profile: p, Message: &destination.Message{ProfileID: p}},
		{Destination: "crm", Profile: "", Message: &destination.Message{}},
		{Destination: "crm", Profile: p},
		{Destination: "crm", Profile: p, Message: &destination.Message{ProfileID: p}, Deletion: &destination.Deletion{ProfileID: p}},
		{Destination: "crm", Profile: p, Message: &destination.Message{ProfileID: "other"}},
		{Destination: string([]byte{0xff}), Profile: p, Message: &destination.Message{ProfileID: p}},
	}
	for i, b := range bad {
		tx, err := s.Begin(e.ctx)
		must(t, err, "Begin")
		err = tx.Enqueue(e.ctx, []outbox.Item{sendItem("crm", p, fmt.Sprint("ok", i), 1), b})
		if !errors.Is(err, outbox.ErrInvalid) {
			t.Errorf("Enqueue of bad item %d = %v; want ErrInvalid", i, err)
		}
		commitTx(t, e.ctx, tx)
	}
	if got := claim(t, e.ctx, s, "w", 10, "crm", ""); len(got) != 0 {
		t.Errorf("after refused Enqueues, Claim got %v; want nothing", ids(got))
	}
}

// outboxRollbackDiscards: what a rolled-back transaction enqueued, purged or
// merged never happened; a finished transaction refuses further calls.
func outboxRollbackDiscards(t *testing.T, e *env, s outbox.Store) {
	p := newPIDs(2)
	kept := enqueue(t, e.ctx, s, sendItem("crm", p[0], "kept", 1))
	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	must(t, tx.Enqueue(e.ctx, []outbox.Item{sendItem("crm", p[1], "dropped", 2)}), "Enqueue")
	_, err = tx.Purge(e.ctx, p[0])
	must(t, err, "Purge")
	must(t, tx.Merge(e.ctx, p[1], p[0]), "Merge")
	must(t, tx.Rollback(e.ctx), "Rollback")
	if err := tx.Enqueue(e.ctx, []outbox.Item{sendItem("crm", p[1], "late", 3)}); !errors.Is(err, outbox.ErrTxDone) {
		t.Errorf("Enqueue after Rollback = %v; want ErrTxDone", err)
	}
	if err := tx.Commit(e.ctx); !errors.Is(err, outbox.ErrTxDone) {
		t.Errorf("Commit after Rollback = %v; want ErrTxDone", err)
	}
	got := claim(t, e.ctx, s, "w", 10, "crm")
	if len(got) != 1 || got[0].ID != kept[0].ID || got[0].Profile != p[0] {
		t.Errorf("after a rolled-back transaction Claim got %+v; want only the kept item, on its profile", got)
	}
	tx2, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	commitTx(t, e.ctx, tx2)
	if err := tx2.Rollback(e.ctx); err != nil {
		t.Errorf("Rollback after Commit = %v; want nil", err)
	}
}

// outboxRequestMarks checks outbox.RequestMarkingTx and
// outbox.RequestMarks, on a store that has them: a mark is seen once its
// transaction commits, never when it rolls back, and marking twice is
// harmless. Recover trusts a mark to mean the decision's commits landed.
func outboxRequestMarks(t *testing.T, e *env, s outbox.Store) {
	marks, ok := s.(outbox.RequestMarks)
	if !ok {
		t.Skip("the store is no outbox.RequestMarks")
	}
	marked := func(id string) bool {
		t.Helper()
		ok, err := marks.RequestMarked(e.ctx, id)
		must(t, err, "RequestMarked")
		return ok
	}
	p := newPIDs(1)
	mark := func(commit bool, id string) {
		t.Helper()
		tx, err := s.Begin(e.ctx)
		must(t, err, "Begin")
		m, ok := tx.(outbox.RequestMarkingTx)
		if !ok {
			t.Fatal("the store is an outbox.RequestMarks whose transactions are no outbox.RequestMarkingTx")
		}
		must(t, tx.Enqueue(e.ctx, []outbox.Item{sendItem("crm", p[0], id, 1)}), "Enqueue") // what the decision owes
		must(t, m.MarkRequest(e.ctx, id), "MarkRequest")
		must(t, m.MarkRequest(e.ctx, id), "MarkRequest again")
		if commit {
			commitTx(t, e.ctx, tx)
		} else {
			must(t, tx.Rollback(e.ctx), "Rollback")
		}
	}
	rolledBack, committed := "req_"+string(newPIDs(1)[0]), "req_"+string(newPIDs(1)[0])
	mark(false, rolledBack)
	if marked(rolledBack) {
		t.Error("a mark whose transaction rolled back is seen")
	}
	mark(true, committed)
	if !marked(committed) {
		t.Error("a mark whose transaction committed is not seen")
	}
	if marked(rolledBack) || marked("req_never") {
		t.Error("requests never marked are seen marked")
	}
}

// outboxKeyedOnce: an item whose destination and key the store holds is not
// enqueued again, in the same transaction or a later one; the same key for
// another destination is another item.
func outboxKeyedOnce(t *testing.T, e *env, s outbox.Store) {
	p := newPID()
	first := enqueue(t, e.ctx, s, deleteItem("crm", p, "req-1", 1), deleteItem("crm", p, "req-1", 1), deleteItem("ads", p, "req-1", 1))
	if first[0].ID == 0 || first[1].ID != 0 || first[2].ID == 0 {
		t.Errorf("IDs %v; want the repeated key skipped (ID 0)", ids(first))
	}
	again := enqueue(t, e.ctx, s, deleteItem("crm", p, "req-1", 5))
	if again[0].ID != 0 {
		t.Errorf("a key enqueued again later got ID %d; want 0 (skipped)", again[0].ID)
	}
	if got := claim(t, e.ctx, s, "w", 10, "crm", "ads"); len(got) != 2 {
		t.Errorf("Claim got %v; want the two items, one per destination", ids(got))
	}
}

// outboxOrderPerProfile: a destination gets a profile's items one at a time,
// in order, each once the one before answered; an item waiting for its retry
// holds the later ones back; other profiles and destinations are not held.
func outboxOrderPerProfile(t *testing.T, e *env, s outbox.Store) {
	p := newPIDs(4)
	in := enqueue(t, e.ctx, s, sendItem("crm", p[0], "a1", 1), sendItem("crm", p[0], "a2", 2), sendItem("crm", p[0], "a3", 3),
		sendItem("crm", p[1], "b1", 4), sendItem("ads", p[0], "x1", 5), sendItem("crm", p[0], "a4", 6))
	got := claim(t, e.ctx, s, "w", 10, "crm")
	if d := diff([]uint64{in[0].ID, in[1].ID, in[2].ID, in[3].ID, in[5].ID}, ids(got)); d != "" {
		t.Fatalf("Claim of crm (-want +got):\n%s", d)
	}
	if more := claim(t, e.ctx, s, "v", 11, "crm"); len(more) != 0 {
		t.Fatalf("with everything held, another deliverer's Claim got %v", ids(more))
	}
	// a1 and b1 delivered; a2 fails, its retry due at 100; a3 and a4, sent
	// after it, are given back unsent, as a deliverer does.
	settle(t, e.ctx, s, "w", outbox.Delivered, got[0], got[3])
	lost, err := s.Settle(e.ctx, "w", []outbox.Answer{{ID: in[1].ID, State: outbox.Pending, NotBefore: at(100), Err: "503"}})
	must(t, err, "Settle")
	if lost != 0 {
		t.Fatalf("Settle lost %d", lost)
	}
	must(t, s.Renew(e.ctx, "w", []uint64{in[2].ID, in[5].ID}, time.Time{}), "Renew")
	if got := claim(t, e.ctx, s, "v", 50, "crm"); len(got) != 0 {
		t.Errorf("before a2's retry is due Claim got %v; want nothing (a3 and a4 wait behind a2)", ids(got))
	}
	// At the retry, the run from a2 to a4, in order, and the ads message.
	retry := claim(t, e.ctx, s, "w", 100, "crm", "ads")
	if d := diff([]uint64{in[1].ID, in[2].ID, in[4].ID, in[5].ID}, ids(retry)); d != "" {
		t.Fatalf("at a2's retry (-want +got):\n%s", d)
	}
	if retry[0].Attempts != 1 || retry[0].LastError != "503" {
		t.Errorf("a2 at its retry = %+v; want 1 attempt, its error", retry[0])
	}
	must(t, s.Renew(e.ctx, "w", []uint64{in[2].ID, in[5].ID}, time.Time{}), "Renew")
	if got := claim(t, e.ctx, s, "v", 101, "crm"); len(got) != 0 {
		t.Errorf("with a2 still held, Claim got %v; want nothing: a3 and a4 wait behind it", ids(got))
	}
	settle(t, e.ctx, s, "w", outbox.Delivered, retry[0])
	if got := claim(t, e.ctx, s, "v", 102, "crm"); len(got) != 2 || got[0].ID != in[2].ID || got[1].ID != in[5].ID {
		t.Errorf("after a2 answered Claim got %v; want a3 and a4", ids(got))
	}

	// A limit cuts runs short, never out of order: what a Claim of 2 gets
	// of each profile is the start of its queue.
	queues := map[identity.ProfileID][]uint64{}
	for _, it := range enqueue(t, e.ctx, s, sendItem("mail", p[2], "c1", 200), sendItem("mail", p[3], "d1", 201),
		sendItem("mail", p[2], "c2", 202), sendItem("mail", p[2], "c3", 203)) {
		queues[it.Profile] = append(queues[it.Profile], it.ID)
	}
	limited, err := s.Claim(e.ctx, outbox.Claim{Owner: "w", Destinations: []string{"mail"}, Now: at(210), Until: at(270), Limit: 2})
	must(t, err, "Claim")
	if len(limited) != 2 {
		t.Errorf("Claim with Limit 2 got %v; want 2 items", ids(limited))
	}
	next := map[identity.ProfileID]int{}
	for _, it := range limited {
		if q := queues[it.Profile]; next[it.Profile] >= len(q) || q[next[it.Profile]] != it.ID {
			t.Errorf("Claim with Limit 2 got %v: not the start of each profile's queue %v", ids(limited), queues)
		}
		next[it.Profile]++
	}
}

// outboxDeletionWaitsForEarlierItems: a deletion is not handed out while an
// earlier message about the person is held by a deliverer (a call still
// running, past its timeout even) or waits for its retry; it ends a run of
// messages, and goes out alone, the messages after it only once it answered.
func outboxDeletionWaitsForEarlierItems(t *testing.T, e *env, s outbox.Store) {
	p := newPID()
	send := enqueue(t, e.ctx, s, sendItem("crm", p, "m1", 1))
	held := claim(t, e.ctx, s, "slow", 2, "crm")
	if len(held) != 1 {
		t.Fatalf("Claim got %v; want the message", ids(held))
	}
	del := enqueue(t, e.ctx, s, deleteItem("crm", p, "req-1", 3))
	// Within and past the slow deliverer's timeout, its lease renewed.
	for _, sec := range []int{4, 30} {
		must(t, s.Renew(e.ctx, "slow", ids(held), at(sec+60)), "Renew")
		if got := claim(t, e.ctx, s, "fast", sec, "crm"); len(got) != 0 {
			t.Fatalf("at %ds, with the message still held, Claim got %v; want nothing: the deletion waits", sec, ids(got))
		}
	}
	after := enqueue(t, e.ctx, s, sendItem("crm", p, "m2", 32))
	settle(t, e.ctx, s, "slow", outbox.Delivered, held[0])
	got := claim(t, e.ctx, s, "fast", 33, "crm")
	if len(got) != 1 || got[0].ID != del[0].ID || got[0].Deletion == nil || got[0].ID <= send[0].ID {
		t.Fatalf("after the message answered Claim got %+v; want the deletion alone", got)
	}
	settle(t, e.ctx, s, "fast", outbox.Delivered, got[0])
	if got := claim(t, e.ctx, s, "fast", 34, "crm"); len(got) != 1 || got[0].ID != after[0].ID {
		t.Errorf("after the deletion answered Claim got %v; want the message enqueued after it", ids(got))
	}
}

// outboxLeaseLapses: an item whose lease lapsed is claimed again by another
// deliverer, and the first one's Settle and Renew then change nothing.
func outboxLeaseLapses(t *testing.T, e *env, s outbox.Store) {
	p := newPID()
	in := enqueue(t, e.ctx, s, sendItem("crm", p, "m1", 1))
	first := claim(t, e.ctx, s, "dead", 2, "crm") // leased until 62
	if len(first) != 1 {
		t.Fatalf("Claim got %v", ids(first))
	}
	if got := claim(t, e.ctx, s, "alive", 62, "crm"); len(got) != 0 {
		t.Fatalf("at the lease's last instant Claim got %v; want nothing", ids(got))
	}
	second := claim(t, e.ctx, s, "alive", 63, "crm")
	if len(second) != 1 || second[0].ID != in[0].ID {
		t.Fatalf("after the lease lapsed Claim got %v; want the item again", ids(second))
	}
	must(t, s.Renew(e.ctx, "dead", ids(first), at(1000)), "Renew")
	lost, err := s.Settle(e.ctx, "dead", []outbox.Answer{{ID: in[0].ID, State: outbox.Delivered}})
	must(t, err, "Settle")
	if lost != 1 {
		t.Errorf("Settle by the former holder lost %d items; want 1", lost)
	}
	if c := counts(t, e.ctx, s, "crm"); c.Pending != 1 {
		t.Errorf("after the former holder's Settle, Stats = %+v; want the item still Pending", c)
	}
	// Its Renew changed nothing either: the new lease ends at 123.
	if got := claim(t, e.ctx, s, "third", 124, "crm"); len(got) != 1 {
		t.Errorf("after the new lease lapsed Claim got %v; want the item (the former holder's Renew must not have extended it)", ids(got))
	}
}

// outboxRenew: a renewed lease holds past its first end.
func outboxRenew(t *testing.T, e *env, s outbox.Store) {
	p := newPID()
	enqueue(t, e.ctx, s, sendItem("crm", p, "m1", 1))
	held := claim(t, e.ctx, s, "w", 2, "crm")
	must(t, s.Renew(e.ctx, "w", ids(held), at(200)), "Renew")
	if got := claim(t, e.ctx, s, "other", 100, "crm"); len(got) != 0 {
		t.Errorf("within the renewed lease Claim got %v; want nothing", ids(got))
	}
	if got := claim(t, e.ctx, s, "other", 201, "crm"); len(got) != 1 {
		t.Errorf("after the renewed lease Claim got %v; want the item", ids(got))
	}
}

// outboxAnswers: a delivered item without a request goes; a request's items
// keep their answers, without the person's data, until Forget, which leaves
// the Pending ones.
func outboxAnswers(t *testing.T, e *env, s outbox.Store) {
	p := newPIDs(3)
	plain := sendItem("crm", p[0], "plain", 1)
	tracked := sendItem("crm", p[1], "tracked", 1)
	tracked.Request, tracked.Key = "req-1", "req-1/send"
	in := enqueue(t, e.ctx, s, plain, tracked, deleteItem("ads", p[1], "req-1", 1), deleteItem("crm", p[2], "req-1", 1),
		deleteItem("mail", p[1], "req-1", 1))
	got := claim(t, e.ctx, s, "w", 2, "crm", "ads", "mail")
	if len(got) != 5 {
		t.Fatalf("Claim got %v; want 5", ids(got))
	}
	must(t, s.Renew(e.ctx, "w", []uint64{in[3].ID}, time.Time{}), "Renew")
	lost, err := s.Settle(e.ctx, "w", []outbox.Answer{{ID: in[0].ID, State: outbox.Delivered}, {ID: in[1].ID, State: outbox.Delivered},
		{ID: in[2].ID, State: outbox.NotSupported, Err: "ads cannot delete"}, {ID: in[4].ID, State: outbox.Dead, Err: "mail is gone"}})
	must(t, err, "Settle")
	if lost != 0 {
		t.Fatalf("Settle lost %d", lost)
	}
	out, err := s.Outcomes(e.ctx, "req-1")
	must(t, err, "Outcomes")
	if len(out) != 4 {
		t.Fatalf("Outcomes = %+v; want the request's 4 items", out)
	}
	want := map[uint64]outbox.State{in[1].ID: outbox.Delivered, in[2].ID: outbox.NotSupported, in[3].ID: outbox.Pending, in[4].ID: outbox.Dead}
	for _, o := range out {
		if o.State != want[o.ID] || o.Request != "req-1" || o.Message != nil || o.Deletion != nil {
			t.Errorf("outcome %+v; want state %s, no payload", o, want[o.ID])
		}
		if o.ID == in[2].ID && o.LastError != "ads cannot delete" {
			t.Errorf("NOT_SUPPORTED outcome's error = %q", o.LastError)
		}
	}
	if c := counts(t, e.ctx, s, "crm"); c.Pending != 1 {
		t.Errorf("Stats of crm = %+v; want 1 Pending (the answered items are not counted)", c)
	}
	must(t, s.Forget(e.ctx, "req-1"), "Forget")
	out, err = s.Outcomes(e.ctx, "req-1")
	must(t, err, "Outcomes")
	if len(out) != 1 || out[0].ID != in[3].ID {
		t.Errorf("Outcomes after Forget = %+v; want only the Pending deletion", out)
	}
	// The deletion given up on outlives its request, as a dead letter that
	// Replay sends again; delivered then, it goes.
	dead, err := s.Dead(e.ctx, "mail", 0, 10)
	must(t, err, "Dead")
	if len(dead) != 1 || dead[0].ID != in[4].ID || dead[0].Deletion == nil || dead[0].Request != "" {
		t.Fatalf("after Forget, Dead(mail) = %+v; want the deletion, its payload, no request", dead)
	}
	if n, err := s.Replay(e.ctx, []uint64{in[4].ID}, at(3)); err != nil || n != 1 {
		t.Fatalf("Replay of the dead deletion = %d, %v; want 1", n, err)
	}
	again := claim(t, e.ctx, s, "w", 4, "mail")
	if len(again) != 1 || again[0].Deletion == nil {
		t.Fatalf("after Replay Claim got %+v; want the deletion", again)
	}
	settle(t, e.ctx, s, "w", outbox.Delivered, again[0])
	if c := counts(t, e.ctx, s, "mail"); c.Pending != 0 || c.Dead != 0 {
		t.Errorf("after the replayed deletion was delivered, Stats = %+v; want nothing left", c)
	}
	if out, _ := s.Outcomes(e.ctx, "req-none"); len(out) != 0 {
		t.Errorf("Outcomes of an unknown request = %+v", out)
	}
}

// outboxDeadAndReplay: a Dead item is counted and listed, holds nothing
// back, and Replay makes it Pending again, its attempts and horizon afresh.
func outboxDeadAndReplay(t *testing.T, e *env, s outbox.Store) {
	p := newPID()
	in := enqueue(t, e.ctx, s, sendItem("crm", p, "poison", 1), sendItem("crm", p, "next", 2))
	held, err := s.Claim(e.ctx, outbox.Claim{Owner: "w", Destinations: []string{"crm"}, Now: at(3), Until: at(63), Limit: 1})
	must(t, err, "Claim")
	// An error text no store could keep as it is (a NUL, invalid UTF-8), as
	// a destination may answer: CutError makes it one.
	lost, err := s.Settle(e.ctx, "w", []outbox.Answer{{ID: held[0].ID, State: outbox.Dead, Err: "cannot encode\x00\xff"}})
	must(t, err, "Settle")
	if lost != 0 {
		t.Fatal("lost")
	}
	if got := claim(t, e.ctx, s, "w", 4, "crm"); len(got) != 1 || got[0].ID != in[1].ID {
		t.Errorf("after the first item died Claim got %v; want the next one", ids(got))
	}
	if c := counts(t, e.ctx, s, "crm"); c.Dead != 1 || c.Pending != 1 {
		t.Errorf("Stats = %+v; want 1 Dead, 1 Pending", c)
	}
	dead, err := s.Dead(e.ctx, "crm", 0, 10)
	must(t, err, "Dead")
	if len(dead) != 1 || dead[0].ID != in[0].ID || dead[0].LastError != outbox.CutError("cannot encode\x00\xff") || dead[0].Message == nil || dead[0].Message.MessageID != "poison" {
		t.Fatalf("Dead = %+v; want the poison message, payload and error", dead)
	}
	if d, _ := s.Dead(e.ctx, "crm", in[0].ID, 10); len(d) != 0 {
		t.Errorf("Dead after its ID = %v", ids(d))
	}
	if d, _ := s.Dead(e.ctx, "", 0, 10); len(d) != 1 {
		t.Errorf("Dead of every destination = %v", ids(d))
	}
	if _, err := s.Dead(e.ctx, "crm", 0, 0); !errors.Is(err, outbox.ErrInvalid) {
		t.Errorf("Dead with limit 0 = %v; want ErrInvalid", err)
	}
	n, err := s.Replay(e.ctx, []uint64{in[0].ID, in[1].ID, 999999}, at(50))
	must(t, err, "Replay")
	if n != 1 {
		t.Errorf("Replay = %d; want 1 (only the Dead one)", n)
	}
	if c := counts(t, e.ctx, s, "crm"); c.Dead != 0 || c.Pending != 2 {
		t.Errorf("Stats after Replay = %+v; want 2 Pending", c)
	}
	settle(t, e.ctx, s, "w", outbox.Delivered, outbox.Item{ID: in[1].ID})
	got := claim(t, e.ctx, s, "w", 50, "crm")
	if len(got) != 1 || got[0].Message == nil || got[0].Message.MessageID != "poison" || got[0].ID <= in[1].ID ||
		got[0].Attempts != 0 || !got[0].Enqueued.Equal(at(50)) {
		t.Errorf("after Replay Claim got %+v; want the item, under a new ID after the others, 0 attempts, enqueued at the replay", got)
	}
}

// outboxPurge: Purge drops the person's queued and dead messages, but not
// their deletions or the messages a deliverer holds; a request's queued
// message is answered NotSupported (ErasedFirst), without its payload, and a
// request's dead message loses its payload (never replayed); it leaves other
// people alone.
func outboxPurge(t *testing.T, e *env, s outbox.Store) {
	p := newPIDs(2)
	trackedSend := sendItem("crm", p[0], "tracked", 2)
	trackedSend.Request = "req-r"
	trackedDead := sendItem("ads", p[0], "tracked-dead", 2)
	trackedDead.Request = "req-r"
	in := enqueue(t, e.ctx, s,
		sendItem("crm", p[0], "held", 1),      // 0: claimed below
		sendItem("crm", p[0], "queued", 1),    // 1
		sendItem("mail", p[0], "to-die", 1),   // 2: dies below
		trackedSend,                           // 3
		trackedDead,                           // 4: dies below
		deleteItem("crm", p[0], "req-old", 1), // 5
		sendItem("crm", p[1], "other", 1),     // 6
	)
	held := claim(t, e.ctx, s, "w", 2, "crm", "mail", "ads")
	// Only the heads stay held: the rest of crm's run is given back.
	must(t, s.Renew(e.ctx, "w", []uint64{in[1].ID, in[3].ID}, time.Time{}), "Renew")
	for _, it := range held {
		if it.ID == in[2].ID || it.ID == in[4].ID {
			if _, err := s.Settle(e.ctx, "w", []outbox.Answer{{ID: it.ID, State: outbox.Dead, Err: "x"}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	n, err := tx.Purge(e.ctx, p[0])
	must(t, err, "Purge")
	commitTx(t, e.ctx, tx)
	if n != 3 {
		t.Errorf("Purge = %d; want 3 (the queued message, the dead one, the request's queued one)", n)
	}
	out, err := s.Outcomes(e.ctx, "req-r")
	must(t, err, "Outcomes")
	for _, o := range out {
		if o.ID == in[3].ID && (o.State != outbox.NotSupported || o.LastError != outbox.ErasedFirst) {
			t.Errorf("the request's queued message after Purge = %+v; want NOT_SUPPORTED, %q", o, outbox.ErasedFirst)
		}
	}
	if d, _ := s.Dead(e.ctx, "mail", 0, 10); len(d) != 0 {
		t.Errorf("the person's dead message survived Purge: %v", ids(d))
	}
	if r, err := s.Replay(e.ctx, []uint64{in[4].ID}, at(3)); err != nil || r != 0 {
		t.Errorf("Replay of the request's dead message after Purge = %d, %v; want 0: it is never sent after the deletion", r, err)
	}
	settle(t, e.ctx, s, "w", outbox.Delivered, outbox.Item{ID: in[0].ID}, outbox.Item{ID: in[6].ID})
	var left []uint64
	for sec := 10; ; sec++ {
		got := claim(t, e.ctx, s, "w", sec, "crm")
		if len(got) == 0 {
			break
		}
		left = append(left, ids(got)...)
		settle(t, e.ctx, s, "w", outbox.Delivered, got...)
	}
	if d := diff([]uint64{in[5].ID}, left); d != "" {
		t.Errorf("crm's items after Purge (-want +got):\n%s", d)
	}
}

// outboxPurgeOfHeldMessages: a message a deliverer holds when the person is
// erased stays, so the deletion behind it waits for its call, but never goes
// out again: a failed call's retry, or another deliverer's claim after the
// lease lapsed, gets no payload, and Settle removes it whatever it answers.
func outboxPurgeOfHeldMessages(t *testing.T, e *env, s outbox.Store) {
	p := newPIDs(2)
	in := enqueue(t, e.ctx, s, sendItem("crm", p[0], "fails", 1), sendItem("crm", p[1], "stalls", 1))
	held := claim(t, e.ctx, s, "w", 2, "crm") // leased until 62
	if len(held) != 2 {
		t.Fatalf("Claim got %v", ids(held))
	}
	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	for _, pid := range p {
		_, err := tx.Purge(e.ctx, pid)
		must(t, err, "Purge")
	}
	must(t, tx.Enqueue(e.ctx, []outbox.Item{deleteItem("crm", p[0], "req-0", 3), deleteItem("crm", p[1], "req-1", 3)}), "Enqueue")
	commitTx(t, e.ctx, tx)
	if got := claim(t, e.ctx, s, "other", 4, "crm"); len(got) != 0 {
		t.Fatalf("with the purged messages still held, Claim got %v; want nothing: the deletions wait", ids(got))
	}
	// The first call fails: a retry would deliver it after the erasure.
	lost, err := s.Settle(e.ctx, "w", []outbox.Answer{{ID: in[0].ID, State: outbox.Pending, Err: "timeout", NotBefore: at(5)}})
	must(t, err, "Settle")
	if lost != 0 {
		t.Fatalf("Settle lost %d", lost)
	}
	// The second's deliverer stalls past its lease; another claims after it
	// (a store may keep an emptied message held a while past its lease, as
	// sqlstore does for ten leases: the claims go on long after).
	var sent []string
	for _, sec := range []int{63, 64, 65, 66, 67, 68, 69, 100000, 100001, 100002, 100003, 100004} {
		got := claim(t, e.ctx, s, "other", sec, "crm")
		for _, it := range got {
			switch {
			case it.Message != nil:
				sent = append(sent, it.Message.MessageID)
			case it.Deletion != nil:
				sent = append(sent, "delete "+it.Deletion.RequestID)
			}
			// What a deliverer does with a purged item: settle it uncalled;
			// here a failure, which must remove it all the same.
			state := outbox.Delivered
			if it.Message == nil && it.Deletion == nil {
				state = outbox.Pending
			}
			lost, err := s.Settle(e.ctx, "other", []outbox.Answer{{ID: it.ID, State: state, Err: "x", NotBefore: at(sec + 1)}})
			must(t, err, "Settle")
			if lost != 0 {
				t.Fatalf("Settle lost %d", lost)
			}
		}
	}
	slices.Sort(sent)
	if d := diff([]string{"delete req-0", "delete req-1"}, sent); d != "" {
		t.Errorf("what went out after the erasure (-want +got):\n%s", d)
	}
	if c := counts(t, e.ctx, s, "crm"); c.Pending != 0 || c.Dead != 0 {
		t.Errorf("after everything answered, Stats = %+v; want nothing left", c)
	}

	// A request's held messages: the one whose call delivered it says so;
	// the one whose call failed is answered NOT_SUPPORTED, ErasedFirst.
	q := newPIDs(2)
	ok, failed := sendItem("crm", q[0], "ok", 100), sendItem("crm", q[1], "failed", 100)
	ok.Request, ok.Key, failed.Request, failed.Key = "req-rect", "req-rect/ok", "req-rect", "req-rect/failed"
	rin := enqueue(t, e.ctx, s, ok, failed)
	if held := claim(t, e.ctx, s, "w", 101, "crm"); len(held) != 2 {
		t.Fatalf("Claim got %v", ids(held))
	}
	tx, err = s.Begin(e.ctx)
	must(t, err, "Begin")
	for _, pid := range q {
		_, err := tx.Purge(e.ctx, pid)
		must(t, err, "Purge")
	}
	commitTx(t, e.ctx, tx)
	lost, err = s.Settle(e.ctx, "w", []outbox.Answer{{ID: rin[0].ID, State: outbox.Delivered},
		{ID: rin[1].ID, State: outbox.Pending, Err: "503", NotBefore: at(102)}})
	must(t, err, "Settle")
	if lost != 0 {
		t.Fatalf("Settle lost %d", lost)
	}
	out, err := s.Outcomes(e.ctx, "req-rect")
	must(t, err, "Outcomes")
	want := map[uint64]outbox.State{rin[0].ID: outbox.Delivered, rin[1].ID: outbox.NotSupported}
	for _, o := range out {
		if o.State != want[o.ID] || o.State == outbox.NotSupported && o.LastError != outbox.ErasedFirst {
			t.Errorf("outcome %+v after the purge; want %s", o, want[o.ID])
		}
	}
	if len(out) != 2 {
		t.Errorf("Outcomes = %+v; want both messages answered", out)
	}
}

// outboxReplayBehindAHeldItem: a dead letter replayed while a later item of
// its destination and profile is held goes behind it (Replay gives it a new
// ID): two deliverers never hold items of one destination and profile at
// once.
func outboxReplayBehindAHeldItem(t *testing.T, e *env, s outbox.Store) {
	p := newPID()
	in := enqueue(t, e.ctx, s, sendItem("crm", p, "old", 1))
	first := claim(t, e.ctx, s, "a", 2, "crm")
	lost, err := s.Settle(e.ctx, "a", []outbox.Answer{{ID: first[0].ID, State: outbox.Dead, Err: "x"}})
	must(t, err, "Settle")
	if lost != 0 {
		t.Fatalf("Settle lost %d", lost)
	}
	later := enqueue(t, e.ctx, s, sendItem("crm", p, "new", 3))
	if got := claim(t, e.ctx, s, "a", 4, "crm"); len(got) != 1 || got[0].ID != later[0].ID {
		t.Fatalf("Claim got %v; want the new message", ids(got))
	}
	if n, err := s.Replay(e.ctx, []uint64{in[0].ID}, at(5)); err != nil || n != 1 {
		t.Fatalf("Replay = %d, %v", n, err)
	}
	if got := claim(t, e.ctx, s, "b", 6, "crm"); len(got) != 0 {
		t.Fatalf("with the new message held by a, b's Claim got %v; want nothing", ids(got))
	}
	settle(t, e.ctx, s, "a", outbox.Delivered, later[0])
	if got := claim(t, e.ctx, s, "b", 7, "crm"); len(got) != 1 || got[0].Message == nil || got[0].Message.MessageID != "old" {
		t.Errorf("after the new message answered, Claim got %+v; want the replayed one", got)
	}
}

// outboxMerge: a merged profile's items move to the profile it merged into,
// whatever their state, each keeping its place: the person's deletion waits
// for the merged profile's earlier message.
func outboxMerge(t *testing.T, e *env, s outbox.Store) {
	p := newPIDs(2)
	in := enqueue(t, e.ctx, s, sendItem("crm", p[1], "from-1", 1), sendItem("crm", p[0], "into-1", 2))
	held := claim(t, e.ctx, s, "w", 3, "crm")
	if len(held) != 2 {
		t.Fatalf("Claim got %v", ids(held))
	}
	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	must(t, tx.Merge(e.ctx, p[0], p[1]), "Merge")
	must(t, tx.Enqueue(e.ctx, []outbox.Item{deleteItem("crm", p[0], "req-1", 4)}), "Enqueue")
	commitTx(t, e.ctx, tx)
	settle(t, e.ctx, s, "w", outbox.Delivered, held[1]) // into's own message answers; from's is still held
	if got := claim(t, e.ctx, s, "w", 5, "crm"); len(got) != 0 {
		t.Errorf("with the merged profile's message still held, Claim got %v; want nothing: the deletion waits", ids(got))
	}
	settle(t, e.ctx, s, "w", outbox.Pending, held[0])
	got := claim(t, e.ctx, s, "w", 6, "crm")
	if len(got) != 1 || got[0].ID != in[0].ID || got[0].Profile != p[0] || got[0].Message.ProfileID != p[0] {
		t.Errorf("after the merge Claim got %+v; want the merged message, now of the profile it merged into", got)
	}
	if err := func() error {
		tx, err := s.Begin(e.ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(e.ctx)
		return tx.Merge(e.ctx, "", p[0])
	}(); !errors.Is(err, outbox.ErrInvalid) {
		t.Errorf("Merge of an empty profile id = %v; want ErrInvalid", err)
	}
}

// outboxConcurrentDeliverers: deliverers claiming at once, as several
// processes do, never hold items of one destination and profile at the same
// time (one holds a run of them, in order), and between them answer every
// item exactly once, each profile's in the order enqueued.
func outboxConcurrentDeliverers(t *testing.T, e *env, s outbox.Store) {
	p := newPIDs(8)
	var items []outbox.Item
	for i := range 160 {
		items = append(items, sendItem("crm", p[i%len(p)], fmt.Sprint("m", i), 1))
	}
	enqueue(t, e.ctx, s, items...)
	var mu sync.Mutex
	busy := map[identity.ProfileID]bool{}
	last := map[identity.ProfileID]uint64{}
	answered := map[uint64]int{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := fmt.Sprint("w", w)
			for idle := 0; idle < 20; {
				got, err := s.Claim(e.ctx, outbox.Claim{Owner: owner, Destinations: []string{"crm"}, Now: at(10), Until: at(3600), Limit: 3})
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					idle++
					time.Sleep(time.Millisecond)
					continue
				}
				idle = 0
				mu.Lock()
				mine := map[identity.ProfileID]bool{}
				for _, it := range got {
					if busy[it.Profile] && !mine[it.Profile] {
						t.Errorf("two deliverers hold items of profile %s at once", it.Profile)
					}
					busy[it.Profile], mine[it.Profile] = true, true
				}
				mu.Unlock()
				answers := make([]outbox.Answer, len(got))
				mu.Lock()
				for i, it := range got {
					answers[i] = outbox.Answer{ID: it.ID, State: outbox.Delivered}
					busy[it.Profile] = false
					answered[it.ID]++
					if it.ID < last[it.Profile] {
						t.Errorf("item %d of profile %s handed out after item %d", it.ID, it.Profile, last[it.Profile])
					}
					last[it.Profile] = it.ID
				}
				mu.Unlock()
				if lost, err := s.Settle(e.ctx, owner, answers); err != nil || lost != 0 {
					t.Errorf("Settle = %d lost, %v", lost, err)
				}
			}
		}()
	}
	wg.Wait()
	if len(answered) != len(items) {
		t.Errorf("%d of %d items answered", len(answered), len(items))
	}
	for id, n := range answered {
		if n != 1 {
			t.Errorf("item %d answered %d times", id, n)
		}
	}
}
