package profile

import (
	"fmt"
	"sync"
	"testing"

	"github.com/gdprkit/privacy/identity"
)

// Concurrent transactions on a sealed store: creating the same profiles,
// merging them while others stage, reading their own staged writes, batches.
// No race, no panic, and every event's properties open afterwards.
func TestSealedConcurrentStress(t *testing.T) {
	ctx := t.Context()
	s := NewSealedMemStore()
	pids := []identity.ProfileID{pidN(1), pidN(2), pidN(3), pidN(4)}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				tx, err := s.Begin(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				pid := pids[(g+i)%len(pids)]
				id := fmt.Sprintf("g%d-%d", g, i)
				e := &Event{MessageID: id, Name: "e", Timestamp: at(i), Properties: map[string]any{"id": id, "n": map[string]any{"x": []any{1.0, "y"}}}}
				_ = tx.Update(ctx, pid, Update{Metadata: Metadata{Version: 1}, MessageID: id, Event: e, Set: map[string]Trait{"t": {Value: map[string]any{"id": id}}}})
				if i%5 == 0 {
					other := pids[(g+i+1)%len(pids)]
					_ = tx.Merge(ctx, pid, other)
				}
				if i%3 == 0 {
					_, _ = tx.Get(ctx, pid)
					_, _ = tx.Events(ctx, pid, EventQuery{Limit: 3})
					_, _ = tx.(BatchTx).PickTraitsBatch(ctx, pids, []string{"t"})
					_, _ = tx.(BatchTx).UpdateBatch(ctx, []BatchUpdate{{Profile: pids[i%len(pids)], Update: Update{Set: map[string]Trait{"b": {Value: []any{id}}}}}}, nil)
				}
				if i%7 == 0 {
					_ = tx.Rollback(ctx)
					continue
				}
				if i%11 == 0 {
					_ = tx.Delete(ctx, pids[(g+i+2)%len(pids)])
				}
				if err := tx.Commit(ctx); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for _, pid := range pids {
		p, err := s.Get(ctx, pid)
		if err != nil {
			continue
		}
		_ = p
		q := EventQuery{Limit: 2}
		for {
			page, err := s.Events(ctx, pid, q)
			if err != nil {
				t.Fatalf("Events(%s): %v", pid, err)
			}
			for _, e := range page.Events {
				if e.Properties["id"] != e.MessageID {
					t.Fatalf("event %s has properties %v", e.MessageID, e.Properties)
				}
			}
			if page.Next == "" {
				break
			}
			q.Cursor = page.Next
		}
	}
}
