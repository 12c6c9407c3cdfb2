package privacy_test

import (
	"context"
	"sync"
	"testing"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/journal"
)

// R13: Recover in a loop while erasures deliver: entries end FINISHED once and
// keep no clear data, deletions are not sent twice.
func TestRegressionRecoverLoopDuringErase(t *testing.T) {
	rec := destination.NewRecorder("crm")
	mj := journal.NewMemJournal()
	e := newEnv(t, privacy.WithJournal(mj), privacy.WithDestinations(rec), fastDelivery())
	ctx := context.Background()
	stop, wg := recoverLoop(e.c)
	const N = 300
	for i := 0; i < N; i++ {
		u := "u" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		e.collect(t, privacy.Identify{UserID: u, Timestamp: at(0)})
		if _, err := e.c.Erase(ctx, user(u)); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	flush(t, e.c)
	dels := len(rec.Deletions())
	_, calls := rec.Calls()
	un, _ := mj.Unfinished(ctx)
	t.Logf("deletions recorded %d, delete calls %d (want %d), unfinished %d", dels, calls, N, len(un))
	if calls != N || len(un) != 0 {
		t.Errorf("deletion calls %d for %d erasures; %d unfinished", calls, N, len(un))
	}
}

// hookJournal calls hook after a successful Put (hook may be nil).
type hookJournal struct {
	journal.Journal
	mu   sync.Mutex
	hook func(ctx context.Context, e *journal.Entry)
}

func (j *hookJournal) Put(ctx context.Context, e *journal.Entry) error {
	if err := j.Journal.Put(ctx, e); err != nil {
		return err
	}
	j.mu.Lock()
	h := j.hook
	j.mu.Unlock()
	if h != nil {
		h(ctx, e.Clone())
	}
	return nil
}

func (j *hookJournal) set(h func(context.Context, *journal.Entry)) {
	j.mu.Lock()
	j.hook = h
	j.mu.Unlock()
}

// R1: Recover racing an Apply between its intent record and its lock re-runs the
// same request: a rectification is applied twice.
func TestRegressionRecoverDuringApplyDoubleApplies(t *testing.T) {
	rec := destination.NewRecorder("crm")
	j := &hookJournal{Journal: journal.NewMemJournal()}
	e := newEnv(t, privacy.WithJournal(j), privacy.WithDestinations(rec), fastDelivery())
	ctx := context.Background()
	person(t, e, "ada")
	v0 := e.profile(t, user("ada")).Metadata.Version
	var once sync.Once
	j.set(func(ctx context.Context, en *journal.Entry) {
		if en.Type == privacy.Rectify && en.Status == journal.StatusRunning && !en.Decided {
			once.Do(func() {
				n, err := e.c.Recover(context.Background())
				t.Logf("Recover inside the window: %d, %v", n, err)
			})
		}
	})
	r, err := e.c.Rectify(ctx, user("ada"), map[string]any{"plan": "free"})
	j.set(nil)
	if err != nil {
		t.Fatal(err)
	}
	flush(t, e.c)
	v := e.profile(t, user("ada")).Metadata.Version
	n := 0
	for _, m := range rec.Messages() {
		if m.MessageID == r.ID {
			n++
		}
	}
	t.Logf("version before %d, after %d, receipt version %d, rectify sends %d", v0, v, r.ProfileVersion, n)
	if v != v0+1 {
		t.Errorf("one rectification moved the version from %d to %d", v0, v)
	}
}

// R1b: the same with a plain concurrent Recover loop.
func TestRegressionRecoverLoopDuringApply(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	person(t, e, "ada")
	v0 := e.profile(t, user("ada")).Metadata.Version
	stop, wg := recoverLoop(e.c)
	const N = 2000
	for i := 0; i < N; i++ {
		if _, err := e.c.Rectify(ctx, user("ada"), map[string]any{"n": i}); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	v := e.profile(t, user("ada")).Metadata.Version
	if v != v0+N {
		t.Errorf("%d rectifications moved the version by %d", N, v-v0)
	}
}

// recoverLoop runs Recover over and over until stop is closed, as a crash
// recovery job racing live requests would; wait on wg after closing stop.
func recoverLoop(c *privacy.Controller) (chan struct{}, *sync.WaitGroup) {
	stop := make(chan struct{})
	wg := &sync.WaitGroup{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			c.Recover(context.Background())
		}
	}()
	return stop, wg
}
