package privacy_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/gdprkit/privacy"
)

// TestBatchesRaceMergesLosingNothing collects batches of tracks about known
// devices while other goroutines identify the devices' people, merging each
// device's profile into its person's: a batch that looked a device up before
// the merge and locked it after must not store on the profile merged away.
// Every track ends on its person, and no stored profile is missing from the
// graph.
func TestBatchesRaceMergesLosingNothing(t *testing.T) {
	rounds := 20
	if testing.Short() {
		rounds = 5
	}
	const people, devices, batchers, batches, batchSize = 30, 2, 4, 15, 20
	for round := range rounds {
		e := newEnv(t)
		ctx := context.Background()
		dev := func(p, d int) string { return fmt.Sprintf("dev-%d-%d", p, d) }
		for p := range people {
			for d := range devices {
				if err := e.c.Collect(ctx, privacy.Track{MessageID: "seed-" + dev(p, d), AnonymousID: dev(p, d), Event: "Seen", Timestamp: at(0)}); err != nil {
					t.Fatal(err)
				}
			}
		}
		var wg sync.WaitGroup
		errs := make(chan error, 1000)
		for w := range batchers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for b := range batches {
					msgs := make([]privacy.Message, batchSize)
					for i := range msgs {
						k := w*batches*batchSize + b*batchSize + i
						msgs[i] = privacy.Track{MessageID: fmt.Sprintf("t-%d", k), AnonymousID: dev(k%people, (k/people)%devices), Event: "E", Timestamp: at(1 + k%50)}
					}
					if err := e.c.CollectBatch(ctx, msgs); err != nil {
						errs <- err
					}
				}
			}()
		}
		for p := range people {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for d := range devices {
					if err := e.c.Collect(ctx, privacy.Identify{MessageID: "id-" + dev(p, d), AnonymousID: dev(p, d), UserID: fmt.Sprint("u", p), Timestamp: at(2)}); err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v", round, err)
		}
		want := map[int]int{}
		for k := range batchers * batches * batchSize {
			want[k%people]++
		}
		for p := range people {
			got := 0
			for _, ev := range e.events(t, user(fmt.Sprint("u", p))) {
				if ev.Name == "E" {
					got++
				}
			}
			if got != want[p] {
				t.Fatalf("round %d: person %d has %d tracks, want %d", round, p, got, want[p])
			}
		}
		checkNoOrphans(t, e, round)
		if n, _ := e.graph.Len(); n != people {
			t.Fatalf("round %d: %d profiles, want one a person", round, n)
		}
	}
}
