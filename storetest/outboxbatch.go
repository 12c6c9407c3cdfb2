package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/outbox"
)

// The checks of a batch's messages: what one collection batch owes a
// destination about one person, enqueued at one time in one call. A store
// may keep them together (sqlstore keeps them in one row); each is still an
// item of its own, claimed, given back, answered and purged alone.

// batchOf returns n messages for the destination and profile, all enqueued at
// sec, their message ids prefix1 to prefixN.
func batchOf(dest string, pid identity.ProfileID, prefix string, n, sec int) []outbox.Item {
	out := make([]outbox.Item, n)
	for i := range out {
		out[i] = sendItem(dest, pid, fmt.Sprint(prefix, i+1), sec)
	}
	return out
}

// itemNames returns the message ids of the items (the deletion's request
// id, after "delete ", for a deletion; "purged" for neither).
func itemNames(items []outbox.Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		switch {
		case it.Message != nil:
			out[i] = it.Message.MessageID
		case it.Deletion != nil:
			out[i] = "delete " + it.Deletion.RequestID
		default:
			out[i] = "purged"
		}
	}
	return out
}

// drain claims, as owner from sec on, and answers Delivered, until nothing
// is left; it returns the message ids handed out, in order.
func drain(t *testing.T, e *env, s outbox.Store, owner string, sec int, dests ...string) []string {
	t.Helper()
	var got []string
	for ; ; sec++ {
		items := claim(t, e.ctx, s, owner, sec, dests...)
		if len(items) == 0 {
			return got
		}
		got = append(got, itemNames(items)...)
		settle(t, e.ctx, s, owner, outbox.Delivered, items...)
	}
}

// outboxBatchLimit: a claim's limit counts items, and cuts a batch's
// messages short in order; what it cut is not held: the person's next claim
// starts right after what was handed out, once that answered.
func outboxBatchLimit(t *testing.T, e *env, s outbox.Store) {
	p := newPIDs(2)
	in := enqueue(t, e.ctx, s, append(batchOf("crm", p[0], "a", 5, 1), batchOf("crm", p[1], "b", 3, 1)...)...)
	got, err := s.Claim(e.ctx, outbox.Claim{Owner: "w", Destinations: []string{"crm"}, Now: at(2), Until: at(62), Limit: 2})
	must(t, err, "Claim")
	if d := diff([]string{"a1", "a2"}, itemNames(got)); d != "" {
		t.Fatalf("Claim with Limit 2 (-want +got):\n%s", d)
	}
	// b's batch is not held: another deliverer takes it; a's rest waits
	// behind a1 and a2.
	other := claim(t, e.ctx, s, "v", 3, "crm")
	if d := diff([]string{"b1", "b2", "b3"}, itemNames(other)); d != "" {
		t.Errorf("another deliverer's Claim (-want +got):\n%s", d)
	}
	if c := counts(t, e.ctx, s, "crm"); c.Pending != 8 {
		t.Errorf("Stats = %+v; want 8 Pending", c)
	}
	settle(t, e.ctx, s, "w", outbox.Delivered, got...)
	settle(t, e.ctx, s, "v", outbox.Delivered, other...)
	rest := claim(t, e.ctx, s, "v", 4, "crm")
	if d := diff([]string{"a3", "a4", "a5"}, itemNames(rest)); d != "" {
		t.Errorf("after a1 and a2 answered, Claim (-want +got):\n%s", d)
	}
	for i, it := range rest {
		if it.ID != in[2+i].ID {
			t.Errorf("a%d handed out as item %d; enqueued as %d", 3+i, it.ID, in[2+i].ID)
		}
	}
	settle(t, e.ctx, s, "v", outbox.Delivered, rest...)
	if c := counts(t, e.ctx, s, "crm"); c.Pending != 0 {
		t.Errorf("after every item answered, Stats = %+v", c)
	}
}

// outboxBatchGiveBack: a deliverer that gives back the rest of a batch while
// its call for the start runs keeps the start held: nobody else gets any of
// the person's messages until the call answered, then the rest goes, in
// order, once.
func outboxBatchGiveBack(t *testing.T, e *env, s outbox.Store) {
	p := newPID()
	enqueue(t, e.ctx, s, batchOf("crm", p, "m", 5, 1)...)
	held := claim(t, e.ctx, s, "w", 2, "crm")
	if len(held) != 5 {
		t.Fatalf("Claim got %v", itemNames(held))
	}
	must(t, s.Renew(e.ctx, "w", ids(held[2:]), time.Time{}), "Renew")
	if got := claim(t, e.ctx, s, "v", 3, "crm"); len(got) != 0 {
		t.Fatalf("with m1 and m2 in a call, another deliverer's Claim got %v; want nothing", itemNames(got))
	}
	// The call's lease is renewed past its first end.
	must(t, s.Renew(e.ctx, "w", ids(held[:2]), at(200)), "Renew")
	if got := claim(t, e.ctx, s, "v", 100, "crm"); len(got) != 0 {
		t.Fatalf("within the renewed lease, Claim got %v; want nothing", itemNames(got))
	}
	settle(t, e.ctx, s, "w", outbox.Delivered, held[:2]...)
	if d := diff([]string{"m3", "m4", "m5"}, drain(t, e, s, "v", 101, "crm")); d != "" {
		t.Errorf("after the call answered (-want +got):\n%s", d)
	}
	// Given back twice, or settled after it was given back: nothing more.
	enqueue(t, e.ctx, s, batchOf("crm", p, "n", 2, 300)...)
	again := claim(t, e.ctx, s, "w", 301, "crm")
	must(t, s.Renew(e.ctx, "w", ids(again[1:]), time.Time{}), "Renew")
	must(t, s.Renew(e.ctx, "w", ids(again[1:]), time.Time{}), "Renew")
	if lost, err := s.Settle(e.ctx, "w", []outbox.Answer{{ID: again[1].ID, State: outbox.Delivered}}); err != nil || lost != 1 {
		t.Errorf("Settle of an item given back = %d lost, %v; want it lost (1)", lost, err)
	}
	settle(t, e.ctx, s, "w", outbox.Delivered, again[0])
	if d := diff([]string{"n2"}, drain(t, e, s, "v", 302, "crm")); d != "" {
		t.Errorf("after n1 answered (-want +got):\n%s", d)
	}
}

// outboxBatchAnswers: the items of one call answer apart, as a destination
// that rejects some messages answers: the delivered go, the rejected die
// alone and are listed (under an ID Dead gives), the unsent wait for their
// retry, in order, and a replay puts a dead one at the end of the queue.
func outboxBatchAnswers(t *testing.T, e *env, s outbox.Store) {
	p := newPID()
	enqueue(t, e.ctx, s, batchOf("crm", p, "m", 5, 1)...)
	held := claim(t, e.ctx, s, "w", 2, "crm")
	if len(held) != 5 {
		t.Fatalf("Claim got %v", itemNames(held))
	}
	lost, err := s.Settle(e.ctx, "w", []outbox.Answer{
		{ID: held[0].ID, State: outbox.Delivered},
		{ID: held[1].ID, State: outbox.Dead, Err: "m2 rejected"},
		{ID: held[2].ID, State: outbox.Pending, Err: "503", NotBefore: at(50)},
		{ID: held[3].ID, State: outbox.Pending, Err: "503", NotBefore: at(50)},
		{ID: held[4].ID, State: outbox.Pending, Err: "503", NotBefore: at(50)},
		{ID: held[0].ID, State: outbox.Delivered}, // twice: lost
	})
	must(t, err, "Settle")
	if lost != 1 {
		t.Errorf("Settle lost %d; want 1 (the repeated answer)", lost)
	}
	if c := counts(t, e.ctx, s, "crm"); c.Pending != 3 || c.Dead != 1 {
		t.Errorf("Stats = %+v; want 3 Pending, 1 Dead", c)
	}
	dead, err := s.Dead(e.ctx, "crm", 0, 10)
	must(t, err, "Dead")
	if d := diff([]string{"m2"}, itemNames(dead)); d != "" || dead[0].LastError != "m2 rejected" || dead[0].Attempts != 1 {
		t.Fatalf("Dead = %+v; want m2, its error, 1 attempt", dead)
	}
	if got := claim(t, e.ctx, s, "w", 49, "crm"); len(got) != 0 {
		t.Errorf("before the retry Claim got %v; want nothing", itemNames(got))
	}
	if n, err := s.Replay(e.ctx, ids(dead), at(49)); err != nil || n != 1 {
		t.Fatalf("Replay = %d, %v; want 1", n, err)
	}
	retry := claim(t, e.ctx, s, "w", 50, "crm")
	if d := diff([]string{"m3", "m4", "m5", "m2"}, itemNames(retry)); d != "" {
		t.Fatalf("at the retry, Claim (-want +got):\n%s", d)
	}
	if retry[0].Attempts != 1 || retry[0].LastError != "503" || retry[3].Attempts != 0 || !retry[3].Enqueued.Equal(at(49)) {
		t.Errorf("at the retry got %+v; want the unsent with 1 attempt and their error, the replayed one afresh", retry)
	}
	// Every item of a call given up on: each is listed, with its message.
	lost, err = s.Settle(e.ctx, "w", []outbox.Answer{{ID: retry[0].ID, State: outbox.Dead, Err: "gone"},
		{ID: retry[1].ID, State: outbox.Dead, Err: "gone"}, {ID: retry[2].ID, State: outbox.Dead, Err: "gone"},
		{ID: retry[3].ID, State: outbox.Delivered}})
	must(t, err, "Settle")
	if lost != 0 {
		t.Errorf("Settle lost %d", lost)
	}
	dead, err = s.Dead(e.ctx, "crm", 0, 10)
	must(t, err, "Dead")
	if d := diff([]string{"m3", "m4", "m5"}, itemNames(dead)); d != "" {
		t.Errorf("Dead after the call was given up on (-want +got):\n%s", d)
	}
	// Paged one at a time, by ID.
	var paged []string
	for after := uint64(0); ; {
		page, err := s.Dead(e.ctx, "crm", after, 1)
		must(t, err, "Dead")
		if len(page) == 0 {
			break
		}
		paged, after = append(paged, itemNames(page)...), page[0].ID
	}
	if d := diff([]string{"m3", "m4", "m5"}, paged); d != "" {
		t.Errorf("Dead paged one at a time (-want +got):\n%s", d)
	}
	if c := counts(t, e.ctx, s, "crm"); c.Pending != 0 || c.Dead != 3 {
		t.Errorf("Stats = %+v; want 3 Dead", c)
	}
}

// outboxBatchPurge: a person erased while part of their batch is in a call:
// the rest is purged at once (counted), the part in the call never goes out
// again, the deletion waits for the call, and nothing else of the person
// goes out.
func outboxBatchPurge(t *testing.T, e *env, s outbox.Store) {
	p := newPIDs(2)
	enqueue(t, e.ctx, s, append(batchOf("crm", p[0], "m", 4, 1), batchOf("crm", p[1], "other", 2, 1)...)...)
	held, err := s.Claim(e.ctx, outbox.Claim{Owner: "w", Destinations: []string{"crm"}, Now: at(2), Until: at(62), Limit: 6})
	must(t, err, "Claim")
	if len(held) != 6 {
		t.Fatalf("Claim got %v", itemNames(held))
	}
	var mine, others []outbox.Item
	for _, it := range held {
		if it.Profile == p[0] {
			mine = append(mine, it)
		} else {
			others = append(others, it)
		}
	}
	must(t, s.Renew(e.ctx, "w", ids(mine[2:]), time.Time{}), "Renew") // m3, m4 back; m1, m2 in a call
	tx, err := s.Begin(e.ctx)
	must(t, err, "Begin")
	n, err := tx.Purge(e.ctx, p[0])
	must(t, err, "Purge")
	must(t, tx.Enqueue(e.ctx, []outbox.Item{deleteItem("crm", p[0], "req-1", 3)}), "Enqueue")
	commitTx(t, e.ctx, tx)
	if n != 2 {
		t.Errorf("Purge = %d; want 2 (m3 and m4; m1 and m2 are in a call)", n)
	}
	if got := claim(t, e.ctx, s, "v", 4, "crm"); len(got) != 0 {
		t.Fatalf("with m1 and m2 in a call, Claim got %v; want nothing: the deletion waits", itemNames(got))
	}
	// The call fails; its retry must not send them after the erasure.
	lost, err := s.Settle(e.ctx, "w", []outbox.Answer{{ID: mine[0].ID, State: outbox.Pending, Err: "503", NotBefore: at(5)},
		{ID: mine[1].ID, State: outbox.Pending, Err: "503", NotBefore: at(5)}})
	must(t, err, "Settle")
	if lost != 0 {
		t.Errorf("Settle lost %d", lost)
	}
	settle(t, e.ctx, s, "w", outbox.Delivered, others...)
	var sent []string
	for sec := 5; sec < 10; sec++ {
		got := claim(t, e.ctx, s, "v", sec, "crm")
		sent = append(sent, itemNames(got)...)
		for _, it := range got {
			state := outbox.Delivered
			if it.Message == nil && it.Deletion == nil {
				state = outbox.NotSupported
			}
			lost, err := s.Settle(e.ctx, "v", []outbox.Answer{{ID: it.ID, State: state}})
			must(t, err, "Settle")
			if lost != 0 {
				t.Errorf("Settle lost %d", lost)
			}
		}
	}
	for _, m := range sent {
		if m != "delete req-1" && m != "purged" {
			t.Errorf("after the erasure %q went out; want only the deletion", m)
		}
	}
	if c := counts(t, e.ctx, s, "crm"); c.Pending != 0 || c.Dead != 0 {
		t.Errorf("after everything answered, Stats = %+v; want nothing left", c)
	}
}
