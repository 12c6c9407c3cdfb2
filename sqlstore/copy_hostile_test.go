package sqlstore_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/sqlstore"
	"github.com/google/go-cmp/cmp"
)

// hostile texts for names (destination, profile, request): what COPY's text
// format could misread.
var copyHostileNames = []string{`a\b`, "t\tab", "n\nl", "c\rr", "crlf\r\n", `\N`, `\.`, "\\.\n", `\\N`, "\\", "x\\", "\u2028ls", "é🎉", `\x41`, `\101`, "end\\"}

func copyHostileTimes() []time.Time {
	return []time.Time{
		time.Date(1, 1, 1, 0, 0, 0, 999, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(12345, 6, 7, 8, 9, 10, 111111111, time.UTC),
		time.Date(2026, 3, 29, 2, 30, 0, 123456789, time.FixedZone("odd", -(3*3600+30*60))),
	}
}

// copyHostileItems: n items, every one a row of its own (a request each), with
// hostile names, payloads and times.
func copyHostileItems(n int, big int) []outbox.Item {
	var items []outbox.Item
	times := copyHostileTimes()
	for i := range n {
		name := copyHostileNames[i%len(copyHostileNames)]
		pid := identity.ProfileID("use_" + name + fmt.Sprint(i))
		at := times[i%len(times)]
		props := map[string]any{}
		for k, v := range copyHostileNames {
			props[fmt.Sprintf("p%d", k)] = v
		}
		if big > 0 && i%5 == 0 {
			props["big"] = strings.Repeat("\\\t\n\r\"é", big/8) + fmt.Sprint(i)
		}
		if i%3 == 0 {
			d := destination.Deletion{ProfileID: pid, RequestID: "rq" + name, IDs: []identity.ID{{Type: identity.TypeEmail, Value: name + "@x"}}}
			items = append(items, outbox.Item{Destination: "dst" + name, Profile: pid, Request: "rq" + name + fmt.Sprint(i), Deletion: &d, Enqueued: at})
			continue
		}
		m := destination.Message{MessageID: "m" + name + fmt.Sprint(i), Type: destination.TypeTrack, Event: "E" + name, ProfileID: pid,
			IDs: []identity.ID{{Type: identity.TypeUserID, Value: name}}, Properties: props, Timestamp: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)}
		items = append(items, outbox.Item{Destination: "dst" + name, Profile: pid, Request: "rq" + name + fmt.Sprint(i), Message: &m, Enqueued: at})
	}
	return items
}

func dumpOutbox(t *testing.T, s *site) [][]any {
	t.Helper()
	rows, err := s.admin.QueryContext(t.Context(), `SELECT destination, profile_id, request_id, kind, CASE WHEN payload LIKE 's1:%' THEN 'sealed' ELSE payload::jsonb::text END,
		enqueued::text, not_before::text, items, present, held, item_key, state, attempts, last_error, owner, lease_until, hold_until FROM `+s.table("outbox")+` ORDER BY id`)
	must(t, err)
	defer rows.Close()
	var out [][]any
	for rows.Next() {
		v := make([]any, 17)
		p := make([]any, 17)
		for i := range v {
			p[i] = &v[i]
		}
		must(t, rows.Scan(p...))
		out = append(out, v)
	}
	must(t, rows.Err())
	return out
}

func enqueueOn(t *testing.T, p *proc, items []outbox.Item) {
	t.Helper()
	ctx := t.Context()
	tx, err := p.data.Outbox().Begin(ctx)
	must(t, err)
	must(t, tx.Enqueue(ctx, items))
	must(t, tx.Commit(ctx))
}

func tracedCopy(trace []string) bool {
	for _, q := range trace {
		if strings.HasPrefix(q, "COPY ") {
			return true
		}
	}
	return false
}

// Rows written with COPY are, column by column, the rows INSERT writes,
// and claim back as enqueued: hostile names, payloads > 64 KB, odd times.
func TestOutboxCopyWritesWhatInsertWrites(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		t.Run(fmt.Sprint("sealed=", sealed), func(t *testing.T) {
			const n = 48
			mk := func() []outbox.Item { return copyHostileItems(n, 150<<10) }
			// COPY
			a := newSite(t, sqlstore.Postgres)
			pa := a.open(t)
			if sealed {
				pa.controller(t, nil)
			}
			pa.cnt.startTrace()
			ia := mk()
			enqueueOn(t, pa, ia)
			if !tracedCopy(pa.cnt.stopTrace()) {
				t.Fatal("no COPY")
			}
			// INSERT: chunks of 15 rows
			b := newSite(t, sqlstore.Postgres)
			pb := b.open(t)
			if sealed {
				pb.controller(t, nil)
			}
			ib := mk()
			pb.cnt.startTrace()
			for i := 0; i < len(ib); i += 15 {
				enqueueOn(t, pb, ib[i:min(i+15, len(ib))])
			}
			if tracedCopy(pb.cnt.stopTrace()) {
				t.Fatal("COPY in the INSERT run")
			}
			da, db := dumpOutbox(t, a), dumpOutbox(t, b)
			if diff := cmp.Diff(db, da); diff != "" {
				t.Errorf("COPY's rows differ from INSERT's (-insert +copy):\n%s", diff)
			}
			// Claimed back as enqueued.
			var dests []string
			for _, it := range ia {
				dests = append(dests, it.Destination)
			}
			got, err := pa.data.Outbox().Claim(t.Context(), outbox.Claim{Owner: "o", Destinations: dests, Now: time.Date(20000, 1, 1, 0, 0, 0, 0, time.UTC),
				Until: time.Date(20001, 1, 1, 0, 0, 0, 0, time.UTC), Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			byID := map[uint64]outbox.Item{}
			for _, it := range got {
				byID[it.ID] = it
			}
			for i, w := range ia {
				g, ok := byID[w.ID]
				if !ok {
					t.Errorf("item %d (%d) not claimed", i, w.ID)
					continue
				}
				if diff := cmp.Diff(w.Message, g.Message); diff != "" {
					t.Errorf("item %d message (-want +got):\n%.2000s", i, diff)
				}
				if diff := cmp.Diff(w.Deletion, g.Deletion); diff != "" {
					t.Errorf("item %d deletion (-want +got):\n%.2000s", i, diff)
				}
				if g.Destination != w.Destination || g.Profile != w.Profile || g.Request != w.Request || !g.Enqueued.Equal(w.Enqueued.Truncate(time.Microsecond)) {
					t.Errorf("item %d: %q %q %q %v; want %q %q %q %v", i, g.Destination, g.Profile, g.Request, g.Enqueued, w.Destination, w.Profile, w.Request, w.Enqueued)
				}
			}
		})
	}
}
