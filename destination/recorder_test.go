package destination

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gdprkit/privacy/identity"
)

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// msg returns a track message with the given id and fresh, nested, mutable
// values, so that tests can check the Recorder does not share them.
func msg(id string) Message {
	return Message{
		MessageID: id,
		Type:      TypeTrack,
		Event:     AudienceEntered,
		ProfileID: identity.ProfileID("use_" + id),
		IDs:       []identity.ID{{Type: identity.TypeEmail, Value: id + "@example.com"}},
		Traits: map[string]any{
			"name":    "Ada " + id,
			"address": map[string]any{"city": "London"},
			"tags":    []any{"a", "b"},
		},
		Properties: map[string]any{"audience": "vip", "score": 1.5},
		Timestamp:  t0,
	}
}

func del(id string) Deletion {
	return Deletion{
		RequestID: id,
		ProfileID: identity.ProfileID("use_" + id),
		IDs:       []identity.ID{{Type: identity.TypeUserID, Value: id}, {Type: identity.TypeEmail, Value: id + "@example.com"}},
	}
}

// batchOf returns the messages msg makes for ids, in order: one Send's batch.
func batchOf(ids ...string) []Message {
	var ms []Message
	for _, id := range ids {
		ms = append(ms, msg(id))
	}
	return ms
}

// messageID and requestID are the ids the Recorder de-duplicates on.
func messageID(m Message) string  { return m.MessageID }
func requestID(d Deletion) string { return d.RequestID }

// idsOf returns the id of every item, in order, for comparing what was
// recorded with the ids sent.
func idsOf[T any](items []T, id func(T) string) []string {
	ids := make([]string, len(items))
	for i, v := range items {
		ids[i] = id(v)
	}
	return ids
}

func messageIDs(ms []Message) []string  { return idsOf(ms, messageID) }
func requestIDs(ds []Deletion) []string { return idsOf(ds, requestID) }

// checkRecorded checks that got holds the items of the ids want, in order, each
// equal to the one item makes of its id: the Recorder keeps every message or
// deletion it receives once, unchanged. what names the items in errors.
func checkRecorded[T any](t *testing.T, what string, got []T, want []string, id func(T) string, item func(string) T) {
	t.Helper()
	if diff := cmp.Diff(want, idsOf(got, id)); diff != "" {
		t.Errorf("recorded %s ids (-want +got):\n%s", what, diff)
	}
	for _, v := range got {
		if diff := cmp.Diff(item(id(v)), v); diff != "" {
			t.Errorf("%s %s recorded wrongly (-want +got):\n%s", what, id(v), diff)
		}
	}
}

func TestRecorderName(t *testing.T) {
	r := NewRecorder("crm")
	if got := r.Name(); got != "crm" {
		t.Errorf("Name() = %q, want %q", got, "crm")
	}
}

func TestRecorderMessagesInOrderOncePerID(t *testing.T) {
	tests := []struct {
		name    string
		batches [][]string // message ids of each Send call
		want    []string
	}{
		{"nothing sent", nil, []string{}},
		{"one batch", [][]string{{"m1", "m2", "m3"}}, []string{"m1", "m2", "m3"}},
		{"batches keep call order", [][]string{{"m2"}, {"m1"}, {"m3"}}, []string{"m2", "m1", "m3"}},
		{"retried batch recorded once", [][]string{{"m1", "m2"}, {"m1", "m2"}}, []string{"m1", "m2"}},
		{"repeat inside a batch", [][]string{{"m1", "m1", "m2"}}, []string{"m1", "m2"}},
		{"overlapping batches", [][]string{{"m1", "m2"}, {"m2", "m3"}, {"m1"}}, []string{"m1", "m2", "m3"}},
		{"empty batch", [][]string{{}, {"m1"}}, []string{"m1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRecorder("r")
			for _, batch := range tt.batches {
				if err := r.Send(context.Background(), batchOf(batch...)); err != nil {
					t.Fatalf("Send(%v): %v", batch, err)
				}
			}
			checkRecorded(t, "message", r.Messages(), tt.want, messageID, msg)
		})
	}
}

func TestRecorderKeepsFirstVersionOfRepeatedMessage(t *testing.T) {
	r := NewRecorder("r")
	first := msg("m1")
	second := msg("m1")
	second.Event = AudienceExited
	if err := r.Send(context.Background(), []Message{first}); err != nil {
		t.Fatal(err)
	}
	if err := r.Send(context.Background(), []Message{second}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Message{first}, r.Messages()); diff != "" {
		t.Errorf("Messages() (-want +got):\n%s", diff)
	}
}

func TestRecorderDeletionsInOrderOncePerID(t *testing.T) {
	tests := []struct {
		name  string
		calls []string // request id of each Delete call
		want  []string
	}{
		{"nothing deleted", nil, []string{}},
		{"in call order", []string{"r2", "r1", "r3"}, []string{"r2", "r1", "r3"}},
		{"retry recorded once", []string{"r1", "r1", "r2", "r1"}, []string{"r1", "r2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRecorder("r")
			for _, id := range tt.calls {
				if err := r.Delete(context.Background(), del(id)); err != nil {
					t.Fatalf("Delete(%s): %v", id, err)
				}
			}
			checkRecorded(t, "deletion", r.Deletions(), tt.want, requestID, del)
		})
	}
}

func TestRecorderMessagesAreCopies(t *testing.T) {
	r := NewRecorder("r")
	sent := msg("m1")
	if err := r.Send(context.Background(), []Message{sent}); err != nil {
		t.Fatal(err)
	}
	want := []Message{msg("m1")}

	// Mutating the caller's message after Send must not reach the record.
	sent.IDs[0].Value = "changed@example.com"
	sent.Traits["name"] = "changed"
	sent.Traits["address"].(map[string]any)["city"] = "changed"
	sent.Traits["tags"].([]any)[0] = "changed"
	sent.Properties["audience"] = "changed"
	delete(sent.Properties, "score")
	if diff := cmp.Diff(want, r.Messages()); diff != "" {
		t.Fatalf("after mutating the sent message, Messages() (-want +got):\n%s", diff)
	}

	// Mutating a returned message must not reach later results.
	got := r.Messages()
	got[0].IDs[0].Value = "changed@example.com"
	got[0].IDs = append(got[0].IDs, identity.ID{Type: "x", Value: "y"})
	got[0].Traits["name"] = "changed"
	got[0].Traits["new"] = true
	got[0].Traits["address"].(map[string]any)["city"] = "changed"
	got[0].Traits["tags"].([]any)[1] = "changed"
	got[0].Properties["audience"] = "changed"
	got[0].Event = "changed"
	got[0] = Message{}
	if diff := cmp.Diff(want, r.Messages()); diff != "" {
		t.Errorf("after mutating a returned message, Messages() (-want +got):\n%s", diff)
	}
}

func TestRecorderDeletionsAreCopies(t *testing.T) {
	r := NewRecorder("r")
	sent := del("r1")
	if err := r.Delete(context.Background(), sent); err != nil {
		t.Fatal(err)
	}
	want := []Deletion{del("r1")}

	sent.IDs[0].Value = "changed"
	if diff := cmp.Diff(want, r.Deletions()); diff != "" {
		t.Fatalf("after mutating the deletion passed in, Deletions() (-want +got):\n%s", diff)
	}

	got := r.Deletions()
	got[0].IDs[1].Value = "changed"
	got[0].RequestID = "changed"
	if diff := cmp.Diff(want, r.Deletions()); diff != "" {
		t.Errorf("after mutating a returned deletion, Deletions() (-want +got):\n%s", diff)
	}
}

func TestRecorderFailures(t *testing.T) {
	const calls = 6
	tests := []struct {
		name string
		n    int
		want []bool // whether call i fails
	}{
		{"zero", 0, []bool{false, false, false, false, false, false}},
		{"one", 1, []bool{true, false, false, false, false, false}},
		{"three", 3, []bool{true, true, true, false, false, false}},
		{"negative fails forever", -1, []bool{true, true, true, true, true, true}},
		{"other negative fails forever", -5, []bool{true, true, true, true, true, true}},
	}
	// Sends and deletes fail alike, each on its own Recorder.
	halves := []struct {
		name                   string // of the subtests
		method                 string
		fail                   func(r *Recorder, n int)
		call                   func(r *Recorder, i int) (id string, err error) // the i-th call, with a new id
		recorded               func(r *Recorder) []string
		what                   string // what recorded returns the ids of
		wantSends, wantDeletes int
	}{
		{
			name: "sends", method: "Send", fail: (*Recorder).FailSends,
			call: func(r *Recorder, i int) (string, error) {
				id := fmt.Sprint("m", i)
				return id, r.Send(context.Background(), []Message{msg(id)})
			},
			recorded:  func(r *Recorder) []string { return messageIDs(r.Messages()) },
			what:      "messages",
			wantSends: calls,
		},
		{
			name: "deletes", method: "Delete", fail: (*Recorder).FailDeletes,
			call: func(r *Recorder, i int) (string, error) {
				id := fmt.Sprint("r", i)
				return id, r.Delete(context.Background(), del(id))
			},
			recorded:    func(r *Recorder) []string { return requestIDs(r.Deletions()) },
			what:        "deletions",
			wantDeletes: calls,
		},
	}
	for _, tt := range tests {
		for _, h := range halves {
			t.Run(h.name+"/"+tt.name, func(t *testing.T) {
				r := NewRecorder("r")
				h.fail(r, tt.n)
				var got []bool
				var recorded []string
				for i := range calls {
					id, err := h.call(r, i)
					got = append(got, err != nil)
					if err == nil {
						recorded = append(recorded, id)
					} else if errors.Is(err, ErrNotSupported) {
						t.Errorf("%s %d: injected failure %v matches ErrNotSupported", h.method, i, err)
					}
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("which %s calls failed (-want +got):\n%s", h.method, diff)
				}
				// A failed call records nothing.
				if len(recorded) == 0 {
					recorded = []string{}
				}
				if diff := cmp.Diff(recorded, h.recorded(r)); diff != "" {
					t.Errorf("recorded %s (-want +got):\n%s", h.what, diff)
				}
				if sends, deletes := r.Calls(); sends != h.wantSends || deletes != h.wantDeletes {
					t.Errorf("Calls() = %d, %d, want %d, %d", sends, deletes, h.wantSends, h.wantDeletes)
				}
			})
		}
	}
}

func TestRecorderRetryAfterFailureRecordsOnce(t *testing.T) {
	r := NewRecorder("r")
	r.FailSends(2)
	batch := []Message{msg("m1"), msg("m2")}
	var errs int
	for range 4 {
		if err := r.Send(context.Background(), batch); err != nil {
			errs++
		}
	}
	if errs != 2 {
		t.Errorf("%d of 4 Send calls failed, want 2", errs)
	}
	if diff := cmp.Diff([]string{"m1", "m2"}, messageIDs(r.Messages())); diff != "" {
		t.Errorf("recorded message ids (-want +got):\n%s", diff)
	}
}

func TestRecorderFailSendsDoesNotAffectDeletes(t *testing.T) {
	r := NewRecorder("r")
	r.FailSends(-1)
	if err := r.Delete(context.Background(), del("r1")); err != nil {
		t.Errorf("Delete with failing sends: %v", err)
	}
	r.FailDeletes(-1)
	r.FailSends(0)
	if err := r.Send(context.Background(), []Message{msg("m1")}); err != nil {
		t.Errorf("Send with failing deletes: %v", err)
	}
}

func TestRecorderRefuseDeletes(t *testing.T) {
	r := NewRecorder("r")
	r.RefuseDeletes()
	for i := range 3 {
		err := r.Delete(context.Background(), del("r1"))
		if !errors.Is(err, ErrNotSupported) {
			t.Errorf("Delete %d = %v, want an error matching ErrNotSupported", i, err)
		}
	}
	if got := r.Deletions(); len(got) != 0 {
		t.Errorf("Deletions() = %v, want none", got)
	}
	if _, deletes := r.Calls(); deletes != 3 {
		t.Errorf("Calls() deletes = %d, want 3", deletes)
	}
	// Sends are unaffected.
	if err := r.Send(context.Background(), []Message{msg("m1")}); err != nil {
		t.Errorf("Send after RefuseDeletes: %v", err)
	}
}

func TestRecorderCalls(t *testing.T) {
	r := NewRecorder("r")
	ctx := context.Background()
	check := func(step string, wantSends, wantDeletes int) {
		t.Helper()
		if sends, deletes := r.Calls(); sends != wantSends || deletes != wantDeletes {
			t.Errorf("%s: Calls() = %d, %d, want %d, %d", step, sends, deletes, wantSends, wantDeletes)
		}
	}
	check("new", 0, 0)
	_ = r.Send(ctx, []Message{msg("m1"), msg("m2")})
	check("one send of two messages", 1, 0)
	_ = r.Send(ctx, []Message{msg("m1")})
	check("repeated message", 2, 0)
	_ = r.Send(ctx, nil)
	check("empty send", 3, 0)
	r.FailSends(1)
	if err := r.Send(ctx, []Message{msg("m3")}); err == nil {
		t.Fatal("injected Send failure did not fail")
	}
	check("failed send", 4, 0)
	_ = r.Delete(ctx, del("r1"))
	_ = r.Delete(ctx, del("r1"))
	check("two deletes", 4, 2)
	r.FailDeletes(1)
	if err := r.Delete(ctx, del("r2")); err == nil {
		t.Fatal("injected Delete failure did not fail")
	}
	check("failed delete", 4, 3)
}

func TestRecorderReset(t *testing.T) {
	r := NewRecorder("r")
	ctx := context.Background()
	_ = r.Send(ctx, []Message{msg("m1"), msg("m2")})
	_ = r.Delete(ctx, del("r1"))
	r.Reset()

	if got := r.Messages(); len(got) != 0 {
		t.Errorf("Messages() after Reset = %v, want none", got)
	}
	if got := r.Deletions(); len(got) != 0 {
		t.Errorf("Deletions() after Reset = %v, want none", got)
	}
	if sends, deletes := r.Calls(); sends != 0 || deletes != 0 {
		t.Errorf("Calls() after Reset = %d, %d, want 0, 0", sends, deletes)
	}

	// Reset forgets the ids seen too: the same messages are recorded again.
	if err := r.Send(ctx, []Message{msg("m2"), msg("m1")}); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(ctx, del("r1")); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"m2", "m1"}, messageIDs(r.Messages())); diff != "" {
		t.Errorf("message ids after Reset and resend (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"r1"}, requestIDs(r.Deletions())); diff != "" {
		t.Errorf("request ids after Reset and redelete (-want +got):\n%s", diff)
	}
}

func TestRecorderConcurrentSend(t *testing.T) {
	const (
		goroutines = 32
		perG       = 20
	)
	r := NewRecorder("r")
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, goroutines*perG)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range perG {
				// Every goroutine also sends message "shared", which must be
				// recorded once in all.
				batch := []Message{msg(fmt.Sprintf("g%d-%d", g, i)), msg("shared")}
				if err := r.Send(context.Background(), batch); err != nil {
					errs <- err
				}
				_ = r.Messages() // read while others write
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Send: %v", err)
	}

	var want []string
	for g := range goroutines {
		for i := range perG {
			want = append(want, fmt.Sprintf("g%d-%d", g, i))
		}
	}
	want = append(want, "shared")
	got := messageIDs(r.Messages())
	// Each goroutine's own messages keep its order.
	last := map[string]int{}
	for _, id := range got {
		var g, i int
		if _, err := fmt.Sscanf(id, "g%d-%d", &g, &i); err != nil {
			continue
		}
		key := fmt.Sprint(g)
		if prev, ok := last[key]; ok && i <= prev {
			t.Errorf("goroutine %d: message %d recorded after message %d", g, i, prev)
		}
		last[key] = i
	}
	sort.Strings(want)
	sort.Strings(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("recorded message ids (-want +got):\n%s", diff)
	}
	if sends, _ := r.Calls(); sends != goroutines*perG {
		t.Errorf("Calls() sends = %d, want %d", sends, goroutines*perG)
	}
}
