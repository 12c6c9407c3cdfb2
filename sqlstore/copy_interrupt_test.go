package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/sqlstore"
)

// A COPY interrupted (context cancelled before or during it, the
// connection terminated during it or at the commit) leaves no outbox row,
// and the pool then enqueues and claims as before.
func TestOutboxCopyInterruptedLeavesNothing(t *testing.T) {
	for _, mode := range []string{"cancel-before", "cancel-mid", "terminate-mid", "terminate-commit", "cancel-nextval"} {
		t.Run(mode, func(t *testing.T) {
			s := newSite(t, sqlstore.Postgres)
			p := s.open(t)
			bg := t.Context()
			items := copyHostileItems(40, 1<<20) // ~8 MB of COPY
			ctx, cancel := context.WithCancel(bg)
			defer cancel()
			kill := func() {
				pids := p.cnt.txPIDs()
				for _, pid := range pids {
					if _, err := s.admin.ExecContext(bg, "SELECT pg_terminate_backend($1)", pid); err != nil {
						t.Errorf("terminate: %v", err)
					}
				}
			}
			hit := false
			hook := func(q string) {
				switch {
				case mode == "cancel-nextval" && strings.Contains(q, "nextval"):
					hit = true
					go func() { time.Sleep(time.Millisecond); cancel() }()
				case strings.HasPrefix(q, "COPY "):
					hit = true
					switch mode {
					case "cancel-before":
						cancel()
					case "cancel-mid":
						go func() { time.Sleep(3 * time.Millisecond); cancel() }()
					case "terminate-mid":
						go func() { time.Sleep(3 * time.Millisecond); kill() }()
					}
				case q == "COMMIT" && mode == "terminate-commit":
					hit = true
					kill()
				}
			}
			p.cnt.before.Store(&hook)
			tx, err := p.data.Outbox().Begin(bg)
			must(t, err)
			eerr := tx.Enqueue(ctx, items)
			var cerr error
			if eerr == nil {
				cerr = tx.Commit(bg)
			} else {
				tx.Rollback(bg)
			}
			p.cnt.before.Store(nil)
			if !hit {
				t.Fatalf("the enqueue never reached the statement %s interrupts", mode)
			}
			switch {
			case mode == "cancel-before" && !errors.Is(eerr, context.Canceled):
				t.Errorf("Enqueue with its context cancelled before the COPY returned %v; want context.Canceled", eerr)
			case mode == "terminate-commit" && (eerr != nil || cerr == nil):
				t.Errorf("a connection terminated at the commit: Enqueue returned %v, Commit %v; want the commit's error alone", eerr, cerr)
			case strings.HasPrefix(mode, "cancel") && eerr != nil && !errors.Is(eerr, context.Canceled):
				t.Errorf("Enqueue cut short by its context returned %v; want it to match context.Canceled", eerr)
			}
			var n int
			must(t, s.admin.QueryRowContext(bg, "SELECT COUNT(*) FROM "+s.table("outbox")).Scan(&n))
			if (eerr != nil || cerr != nil) && n != 0 {
				t.Errorf("%d outbox rows after a failed enqueue", n)
			}
			// The pool goes on.
			for round := range 3 {
				items := copyHostileItems(40, 1<<10)
				for i := range items {
					items[i].Request += fmt.Sprint("-r", round)
				}
				c2, cancel2 := context.WithTimeout(bg, 30*time.Second)
				tx, err := p.data.Outbox().Begin(c2)
				must(t, err)
				must(t, tx.Enqueue(c2, items))
				must(t, tx.Commit(c2))
				cancel2()
			}
			var dests []string
			for _, it := range items {
				dests = append(dests, it.Destination)
			}
			got := 0
			for range 10 {
				claimed, err := p.data.Outbox().Claim(bg, outbox.Claim{Owner: "o", Destinations: dests, Now: time.Date(20000, 1, 1, 0, 0, 0, 0, time.UTC),
					Until: time.Date(20001, 1, 1, 0, 0, 0, 0, time.UTC), Limit: 1000})
				must(t, err)
				if len(claimed) == 0 {
					break
				}
				got += len(claimed)
				var ans []outbox.Answer
				for _, it := range claimed {
					ans = append(ans, outbox.Answer{ID: it.ID, State: outbox.Delivered})
				}
				_, err = p.data.Outbox().Settle(bg, "o", ans)
				must(t, err)
			}
			want := 3 * 40
			if n != 0 {
				want += 40
			}
			if got != want {
				t.Errorf("claimed %d items; want %d", got, want)
			}
		})
	}
}
