package sqlstore_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/sqlstore"
	"github.com/google/go-cmp/cmp"
)

// copyTestValues are the texts COPY's text format must escape, or could
// read as something else: a backslash (JSON writes one for every escape), a
// tab, a newline and a carriage return as JSON escapes them and as they
// are, COPY's NULL marker, quotes and text beyond ASCII.
var copyTestValues = []string{`back\slash`, "tab\there", "new\nline", "carriage\rreturn", `\N`, `\\N`, `"quoted"`, "été 🎉", ""}

// copyTestItems are items for people people, in the order a person's rows
// must keep: a message each; for every fourth person, a message of a
// request (a row of its own, its request id with characters COPY escapes);
// for the one in the middle, a keyed deletion (inserted on its own, between
// two runs) and a message after it.
func copyTestItems(people int, at time.Time) []outbox.Item {
	var items []outbox.Item
	msg := func(pid identity.ProfileID, id, request string) outbox.Item {
		props := map[string]any{}
		for k, v := range copyTestValues {
			props[fmt.Sprintf("p%d", k)] = v + id
		}
		m := destination.Message{MessageID: id, Type: destination.TypeTrack, Event: "Copied " + copyTestValues[len(id)%len(copyTestValues)],
			ProfileID: pid, IDs: []identity.ID{{Type: identity.TypeUserID, Value: "u\t" + string(pid)}}, Properties: props, Timestamp: at}
		return outbox.Item{Destination: "sink", Profile: pid, Request: request, Message: &m, Enqueued: at}
	}
	for i := range people {
		pid := identity.ProfileID(fmt.Sprintf("use_copy%03d", i))
		items = append(items, msg(pid, fmt.Sprintf("m%d-a", i), ""))
		if i%4 == 0 {
			items = append(items, msg(pid, fmt.Sprintf("m%d-b", i), "req\t1\r\n\\N"))
		}
		if i == people/2 {
			d := destination.Deletion{ProfileID: pid, RequestID: "req-2", IDs: []identity.ID{{Type: identity.TypeEmail, Value: "a\\b@example.com"}}}
			items = append(items, outbox.Item{Destination: "sink", Profile: pid, Request: "req-2", Key: "req-2/" + string(pid) + "/delete", Deletion: &d, Enqueued: at})
			items = append(items, msg(pid, fmt.Sprintf("m%d-c", i), ""))
		}
	}
	return items
}

// An outbox run of many rows goes to PostgreSQL with COPY (sqlstore's
// copy.go), a short one with INSERT: both read back exactly what was
// enqueued, values COPY's text format escapes included, each person's rows
// in the order enqueued, times to the microsecond as INSERT stores them;
// in clear, and sealed once a Controller gave the Store its keys.
func TestOutboxRowsCopiedReadBackAsEnqueued(t *testing.T) {
	at := time.Date(2026, 12, 7, 23, 10, 28, 141130926, time.UTC)
	for _, c := range []struct {
		name             string
		people           int
		wantCopy, sealed bool
	}{{"copy", 40, true, false}, {"insert", 3, false, false}, {"copy-sealed", 40, true, true}, {"insert-sealed", 3, false, true}} {
		t.Run(c.name, func(t *testing.T) {
			s := newSite(t, sqlstore.Postgres)
			p := s.open(t)
			ctx := t.Context()
			if c.sealed {
				p.controller(t, nil) // gives the Store its keys
			}
			items := copyTestItems(c.people, at)
			want := make([]outbox.Item, len(items))
			for i, it := range items {
				want[i] = it
				want[i].Enqueued = at.Truncate(time.Microsecond)
			}

			p.cnt.startTrace()
			tx, err := p.data.Outbox().Begin(ctx)
			must(t, err)
			must(t, tx.Enqueue(ctx, items))
			must(t, tx.Commit(ctx))
			trace := p.cnt.stopTrace()
			if copied := tracedCopy(trace); copied != c.wantCopy {
				t.Fatalf("%d items enqueued with COPY: %v; want %v (statements: %q)", len(items), copied, c.wantCopy, trace)
			}
			var rows, sealed int
			must(t, s.admin.QueryRowContext(ctx, "SELECT COUNT(*), COUNT(*) FILTER (WHERE payload LIKE 's1:%') FROM "+s.table("outbox")).Scan(&rows, &sealed))
			if want := map[bool]int{false: 0, true: rows}[c.sealed]; rows == 0 || sealed != want {
				t.Fatalf("%d of the %d rows stored are sealed; want %d", sealed, rows, want)
			}
			for i := range items {
				if items[i].ID == 0 {
					t.Fatalf("items[%d] has no ID after Enqueue", i)
				}
				want[i].ID = items[i].ID
			}

			// Claimed until none is left, each claim settled, in the order
			// handed out.
			byID := map[uint64]outbox.Item{}
			var order []uint64
			for round := 0; round < 20; round++ {
				got, err := p.data.Outbox().Claim(ctx, outbox.Claim{Owner: "A", Destinations: []string{"sink"},
					Now: at.Add(time.Minute), Until: at.Add(time.Hour), Limit: 1000})
				must(t, err)
				if len(got) == 0 {
					break
				}
				var answers []outbox.Answer
				for _, it := range got {
					if _, twice := byID[it.ID]; twice {
						t.Fatalf("item %d handed out twice", it.ID)
					}
					byID[it.ID] = it
					order = append(order, it.ID)
					answers = append(answers, outbox.Answer{ID: it.ID, State: outbox.Delivered})
				}
				_, err = p.data.Outbox().Settle(ctx, "A", answers)
				must(t, err)
			}
			if len(byID) != len(want) {
				t.Fatalf("%d items handed out; want %d", len(byID), len(want))
			}
			pos := map[uint64]int{}
			for i, id := range order {
				pos[id] = i
			}
			for i, w := range want {
				got := byID[w.ID]
				if diff := cmp.Diff(w.Message, got.Message); diff != "" {
					t.Errorf("item %d's message read back otherwise (-enqueued +claimed):\n%s", i, diff)
				}
				if diff := cmp.Diff(w.Deletion, got.Deletion); diff != "" {
					t.Errorf("item %d's deletion read back otherwise (-enqueued +claimed):\n%s", i, diff)
				}
				if !got.Enqueued.Equal(w.Enqueued) || got.Profile != w.Profile || got.Request != w.Request {
					t.Errorf("item %d read back as enqueued %v, profile %q, request %q; want %v, %q, %q",
						i, got.Enqueued, got.Profile, got.Request, w.Enqueued, w.Profile, w.Request)
				}
				if i > 0 && want[i-1].Profile == w.Profile && pos[want[i-1].ID] > pos[w.ID] {
					t.Errorf("%s's item %d went out before the one enqueued before it", w.Profile, i)
				}
			}
		})
	}
}
