package privacy_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/internal/faultinject"
	"github.com/gdprkit/privacy/journal"
)

// A rectification owed to crm and ads (both recipients), decided by a host
// configured with both, whose process dies; restarted without ads, Recover
// redid it routed to the recipients this host is configured with, so ads,
// journaled as owed, was never enqueued anything: back with ads, ads never
// got the correction (Art. 19). A redo now owes the person's recipients,
// configured here or not.
func TestRectificationRedoneWithoutADestinationStillOwesIt(t *testing.T) {
	ctx := context.Background()
	for k := 1; k <= 8; k++ {
		t.Run(fmt.Sprint("crash after journal record ", k), func(t *testing.T) {
			w := newWorld(t)
			ads := destination.NewRecorder("ads")
			// The destinations answer only once the crash point is past:
			// an answer is journaled by the deliverer's goroutine, where the
			// injected crash would not be the rectification's.
			gate := make(chan struct{})
			gated := func(d destination.Destination) destination.Destination { return gatedDestination{d, gate} }
			c := w.controllerWith(t, gated(w.rec), gated(ads))
			close(gate) // the person's first message goes through
			if err := c.Collect(ctx, privacy.Identify{UserID: "ada", Traits: map[string]any{"plan": "free"}, Timestamp: t0}); err != nil {
				t.Fatal(err)
			}
			flush(t, c)
			c.Close()
			gate = make(chan struct{})
			c = w.controllerWith(t, gated(w.rec), gated(ads))
			w.f.arm("", k)
			crashed := faultinject.Survive(func() { c.Rectify(ctx, user("ada"), map[string]any{"plan": "pro"}) })
			w.f.disarm()
			close(gate)
			c.Close()
			if !crashed {
				t.Skipf("the rectification has fewer than %d journal records", k)
			}
			page, err := w.journal.List(ctx, journal.Filter{Types: []journal.RequestType{privacy.Rectify}})
			if err != nil || len(page.Entries) != 1 {
				t.Fatalf("journal = %+v, %v", page, err)
			}
			e := page.Entries[0]
			if !e.Decided {
				t.Skip("crashed before the decision")
			}
			if !slices.ContainsFunc(e.Destinations, func(o journal.Outcome) bool { return o.Name == "ads" }) {
				t.Skipf("ads not journaled as owed at record %d", k)
			}
			// The first host may have delivered it before it stopped.
			sentBefore := slices.ContainsFunc(ads.Messages(), func(m destination.Message) bool { return m.MessageID == e.ID })
			bare := w.controllerWith(t, w.rec)
			if _, err := bare.Recover(ctx); err != nil {
				t.Fatalf("Recover: %v", err)
			}
			st, err := bare.DeliveryStats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := bare.Status(ctx, e.ID)
			if st["ads"].Pending < 1 && !sentBefore {
				t.Errorf("restarted without ads, which is owed the rectification: DeliveryStats[ads] = %+v, receipt %+v; want the rectification pending", st["ads"], got)
			}
			bare.Close()
			back := w.controllerWith(t, w.rec, ads)
			if _, err := back.Recover(ctx); err != nil {
				t.Fatalf("Recover: %v", err)
			}
			flush(t, back)
			n := 0
			for _, m := range ads.Messages() {
				if m.MessageID == e.ID {
					n++
				}
			}
			got, err = back.Status(ctx, e.ID)
			if n != 1 || err != nil || got.Status != privacy.Finished {
				t.Errorf("with ads back: ads got the rectification %d times, receipt %+v, %v; want once, FINISHED", n, got, err)
			}
		})
	}
}

// gatedDestination holds every call until gate is closed.
type gatedDestination struct {
	destination.Destination
	gate chan struct{}
}

func (g gatedDestination) Send(ctx context.Context, msgs []destination.Message) error {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Destination.Send(ctx, msgs)
}

func (g gatedDestination) Delete(ctx context.Context, d destination.Deletion) error {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Destination.Delete(ctx, d)
}
