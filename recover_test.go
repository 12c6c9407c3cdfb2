package privacy_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/internal/faultinject"
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

// crashAfterDecision applies req in a world whose host dies right after the
// request's decision is journaled (its second record), and returns the
// request's id and the restarted host, which has not recovered it yet.
func crashAfterDecision(t *testing.T, w *world, c *privacy.Controller, req privacy.Request) (string, *privacy.Controller) {
	t.Helper()
	id, c2 := crashAfterRecord(t, w, c, req, 2)
	if e, err := w.journal.Get(context.Background(), id); err != nil || !e.Decided {
		t.Fatalf("after the crash the journal shows %+v, %v; want the request decided", e, err)
	}
	return id, c2
}

// crashAfterRecord has c's host die right after the request's journal record
// n (1: the intent, 2: the decision, 3: the commits' outcomes), and returns
// the request's id and a new Controller over the same backends.
func crashAfterRecord(t *testing.T, w *world, c *privacy.Controller, req privacy.Request, n int) (string, *privacy.Controller) {
	t.Helper()
	w.f.arm("", n)
	if !faultinject.Survive(func() { _, _ = c.Apply(context.Background(), req) }) {
		t.Fatalf("the host did not die after journal record %d", n)
	}
	w.f.disarm()
	un, err := w.journal.Unfinished(context.Background())
	if err != nil || len(un) != 1 {
		t.Fatalf("after the crash the journal shows %d unfinished (%v); want the request", len(un), err)
	}
	c.Close()
	return un[0].ID, w.controller(t)
}

// mergeIntoOlder has a message link ada's identifiers with a device an older
// profile holds: ada's profile is merged into that one, which now holds her
// data and answers for her identifiers.
func mergeIntoOlder(t *testing.T, c *privacy.Controller) {
	t.Helper()
	if err := c.Collect(context.Background(), privacy.Identify{MessageID: "merge", UserID: "ada", AnonymousID: "old-device",
		Traits: map[string]any{"city": "Paris"}, Timestamp: at(10)}); err != nil {
		t.Fatalf("the merging message: %v", err)
	}
}

// TestRecoverActsOnThePersonAsTheyAreNow: an erasure or an objection decided
// before a crash, whose person is merged into an older profile before
// Recover, reaches that profile: nothing of the person is left, and nothing
// more is collected about them. (Recover used to replay the profile ids the
// decision named, gone with the merge.)
func TestRecoverActsOnThePersonAsTheyAreNow(t *testing.T) {
	for _, typ := range []privacy.RequestType{privacy.DeleteOnly, privacy.SuppressWithDelete, privacy.SuppressOnly} {
		t.Run(string(typ), func(t *testing.T) {
			w := newWorld(t)
			c := w.controller(t)
			ctx := context.Background()
			e := &env{c: c, graph: w.graph, profiles: w.profiles}
			e.collect(t, privacy.Track{MessageID: "old", AnonymousID: "old-device", Event: "Seen", Timestamp: at(-10)})
			person(t, e, "ada")
			person(t, e, "bob")
			id, c2 := crashAfterDecision(t, w, c, privacy.Request{Type: typ, Subjects: []identity.ID{user("ada")}})
			mergeIntoOlder(t, c2)
			if n, err := c2.Recover(ctx); n != 1 || err != nil {
				t.Fatalf("Recover = %d, %v; want 1, nil", n, err)
			}
			flush(t, c2)
			if r, err := c2.Status(ctx, id); err != nil || r.Status != privacy.Finished {
				t.Fatalf("Status = %+v, %v; want FINISHED", r, err)
			}
			if typ.Deletes() {
				for _, who := range []identity.ID{user("ada"), anon("old-device"), anon("ada-phone")} {
					if p, err := c2.Profile(ctx, who); !errors.Is(err, privacy.ErrNotFound) {
						t.Errorf("Profile(%s) after the erasure = %+v, %v; want ErrNotFound", who, p, err)
					}
				}
				pids, err := w.profiles.IDs(ctx, "", 100)
				if err != nil || len(pids) != 1 {
					t.Errorf("profiles left: %v, %v; want bob's only", pids, err)
				}
			}
			if typ.Suppresses() {
				err := c2.Collect(ctx, privacy.Track{AnonymousID: "old-device", Event: "Seen", Timestamp: at(20)})
				if !errors.Is(err, privacy.ErrSuppressed) {
					t.Errorf("Collect on the merged profile's device after the objection = %v; want ErrSuppressed", err)
				}
			}
			if p, err := c2.Profile(ctx, user("bob")); err != nil || p.Traits["plan"].Value != "pro" {
				t.Errorf("bob after the request = %+v, %v; want untouched", p, err)
			}
		})
	}
}

// TestRecoverNeverUndoesANewerRequest: a lifted objection decided before a
// crash, recovered after a newer objection on the same person finished,
// leaves the person suppressed; a rectification decided before a crash,
// recovered after a newer message set one of its traits, leaves that trait
// as the message set it, and the version never goes back.
func TestRecoverNeverUndoesANewerRequest(t *testing.T) {
	t.Run("unsuppress before suppress", func(t *testing.T) {
		w := newWorld(t)
		c := w.controller(t)
		ctx := context.Background()
		person(t, &env{c: c, graph: w.graph, profiles: w.profiles}, "ada")
		if _, err := c.Suppress(ctx, user("ada")); err != nil {
			t.Fatal(err)
		}
		id, c2 := crashAfterDecision(t, w, c, privacy.Request{Type: privacy.Unsuppress, Subjects: []identity.ID{email("ada@example.com")}})
		if r, err := c2.Suppress(ctx, anon("ada-phone")); err != nil || r.Status != privacy.Finished {
			t.Fatalf("the newer Suppress = %+v, %v", r, err)
		}
		if n, err := c2.Recover(ctx); n != 1 || err != nil {
			t.Fatalf("Recover = %d, %v; want 1, nil", n, err)
		}
		flush(t, c2)
		r, err := c2.Status(ctx, id)
		if err != nil || r.Status != privacy.Finished || !strings.Contains(r.Reason, "superseded") {
			t.Errorf("the recovered UNSUPPRESS = %+v, %v; want FINISHED, superseded", r, err)
		}
		for _, who := range []string{"ada-phone", "ada-laptop"} {
			if err := c2.Collect(ctx, privacy.Track{AnonymousID: who, Event: "Seen", Timestamp: at(20)}); !errors.Is(err, privacy.ErrSuppressed) {
				t.Errorf("Collect from %s after the newer objection = %v; want ErrSuppressed", who, err)
			}
		}
	})
	t.Run("rectify before a newer message", func(t *testing.T) {
		w := newWorld(t)
		c := w.controller(t)
		ctx := context.Background()
		person(t, &env{c: c, graph: w.graph, profiles: w.profiles}, "ada")
		id, c2 := crashAfterDecision(t, w, c, privacy.Request{Type: privacy.Rectify, Subjects: []identity.ID{user("ada")},
			Traits: map[string]any{"plan": "free", "city": "Paris"}})
		if err := c2.Collect(ctx, privacy.Identify{MessageID: "newer", UserID: "ada", Traits: map[string]any{"plan": "gold"}, Timestamp: at(100)}); err != nil {
			t.Fatal(err)
		}
		before, err := c2.Metadata(ctx, user("ada"))
		if err != nil {
			t.Fatal(err)
		}
		if n, err := c2.Recover(ctx); n != 1 || err != nil {
			t.Fatalf("Recover = %d, %v; want 1, nil", n, err)
		}
		p, err := c2.Profile(ctx, user("ada"))
		if err != nil {
			t.Fatal(err)
		}
		if p.Traits["plan"].Value != "gold" || p.Traits["city"].Value != "Paris" {
			t.Errorf("after Recover: plan %v, city %v; want gold (the newer message's), Paris (the rectification's)", p.Traits["plan"].Value, p.Traits["city"].Value)
		}
		if p.Metadata.Version <= before.Version || p.Metadata.LastMessageID != "newer" {
			t.Errorf("metadata after Recover: version %d (was %d), last message %q; want a newer version, the newer message last", p.Metadata.Version, before.Version, p.Metadata.LastMessageID)
		}
		flush(t, c2)
		if r, err := c2.Status(ctx, id); err != nil || r.Status != privacy.Finished || r.ProfileVersion != p.Metadata.Version {
			t.Errorf("Status = %+v, %v; want FINISHED at the profile's version %d", r, err, p.Metadata.Version)
		}
	})
}
