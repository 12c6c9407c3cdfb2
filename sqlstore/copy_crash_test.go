package sqlstore_test

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/sqlstore"
)

const copyCrashPeople = 20

func copyCrashBatch(round int, base time.Time) ([]privacy.Message, []string) {
	var batch []privacy.Message
	var ids []string
	for u := range copyCrashPeople {
		uid := fmt.Sprint("z", u)
		for k := range 2 {
			id := fmt.Sprintf("%s-%02d-%d", uid, round, k)
			ids = append(ids, id)
			batch = append(batch, privacy.Track{MessageID: id, UserID: uid, Event: "E", Properties: map[string]any{"x": "\\\t" + id}, Timestamp: base.Add(time.Duration(round*2+k) * time.Millisecond)})
		}
	}
	return batch, ids
}

// The process dies between the ids' nextval and the COPY, or between the
// COPY and the commit: nothing of that batch is anywhere, and a new host
// collects and delivers everything after.
func TestOutboxCopyCrashLeavesNothingOfItsBatch(t *testing.T) {
	for _, where := range []string{"COPY", "COMMIT"} {
		t.Run(where, func(t *testing.T) {
			s := newSite(t, sqlstore.Postgres)
			ctx := t.Context()
			runCrashingChild(t, s, "TestOutboxCopyCrashChild", "GDPRKIT_COPY_CRASH_CHILD", "at "+where, "GDPRKIT_COPY_CRASH_AT="+where)
			var n int
			must(t, s.admin.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+s.table("outbox")).Scan(&n))
			var msgs int
			must(t, s.admin.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+s.table("profile_messages")+" WHERE message_id LIKE '%-01-%'").Scan(&msgs))
			if msgs != 0 {
				t.Errorf("%d messages of the crashed batch stored", msgs)
			}
			var crashed int
			must(t, s.admin.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+s.table("outbox")+" WHERE payload LIKE '%-01-%'").Scan(&crashed))
			if crashed != 0 {
				t.Errorf("%d outbox rows of the crashed batch", crashed)
			}
			crm := &logDest{name: "crm"}
			p := s.open(t)
			c := p.controller(t, nil, privacy.WithDestinations(crm), privacy.WithDelivery(privacy.Delivery{Poll: 10 * time.Millisecond, Lease: time.Second}))
			if _, err := c.Recover(ctx); err != nil {
				t.Fatal(err)
			}
			var want []string
			for r := 2; r < 4; r++ {
				b, ids := copyCrashBatch(r, time.Now())
				must(t, c.CollectBatch(ctx, b))
				want = append(want, ids...)
			}
			flushWithin(t, c, time.Minute)
			seen := map[string]int{}
			last := map[string]string{}
			for _, l := range crm.calls() {
				seen[l]++
				id, _ := strings.CutPrefix(l, "send ")
				uid, _, _ := strings.Cut(id, "-")
				if last[uid] > id {
					t.Errorf("%s after %s", id, last[uid])
				}
				last[uid] = id
				if strings.Contains(id, "-01-") {
					t.Errorf("%s of the crashed batch delivered", id)
				}
			}
			for _, id := range want {
				if seen["send "+id] == 0 {
					t.Errorf("%s not delivered", id)
				}
			}
			if n := s.outboxRows(t, outbox.Pending); n != 0 {
				t.Errorf("%d pending", n)
			}
		})
	}
}

func TestOutboxCopyCrashChild(t *testing.T) {
	s := childSite(t, "GDPRKIT_COPY_CRASH_CHILD", "started by TestOutboxCopyCrashLeavesNothingOfItsBatch")
	where := os.Getenv("GDPRKIT_COPY_CRASH_AT")
	ctx := t.Context()
	p := s.open(t)
	down := &logDest{name: "crm"}
	down.fail.Store(true)
	c := p.controller(t, nil, privacy.WithDestinations(down))
	b, _ := copyCrashBatch(0, time.Now())
	must(t, c.CollectBatch(ctx, b))
	var armed, copied atomic.Bool
	hook := func(q string) {
		if !armed.Load() {
			return
		}
		if strings.HasPrefix(q, "COPY ") {
			copied.Store(true)
			if where == "COPY" {
				os.Exit(crashExitCode)
			}
		}
		if where == "COMMIT" && q == "COMMIT" && copied.Load() {
			os.Exit(crashExitCode)
		}
	}
	p.cnt.before.Store(&hook)
	b, _ = copyCrashBatch(1, time.Now())
	armed.Store(true)
	err := c.CollectBatch(ctx, b)
	t.Fatalf("CollectBatch returned %v without a %s", err, where)
}
