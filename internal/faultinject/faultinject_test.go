package faultinject

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/profile"
)

var errBoom = errors.New("boom")

// planAt fails, or crashes, at one point and records every point asked.
func planAt(at string, err error, asked *[]string) Plan {
	return func(p Point) error {
		*asked = append(*asked, p.String())
		if p.String() == at {
			return err
		}
		return nil
	}
}

func stagedUpdate(t *testing.T, s profile.Store) profile.Tx {
	t.Helper()
	tx, err := s.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	u := profile.Update{MessageID: "m1", Metadata: profile.Metadata{Version: 1, CreatedAt: time.Unix(1, 0).UTC()}}
	if err := tx.Update(context.Background(), "use_1", u); err != nil {
		t.Fatal(err)
	}
	return tx
}

func TestFailedCommitLeavesNothingCommitted(t *testing.T) {
	mem := profile.NewMemStore()
	var asked []string
	s := ProfileStore(mem, planAt("profiles.commit", errBoom, &asked))
	tx := stagedUpdate(t, s)
	if err := tx.Commit(context.Background()); !errors.Is(err, errBoom) {
		t.Fatalf("Commit = %v; want the plan's error", err)
	}
	if _, err := mem.Get(context.Background(), "use_1"); !errors.Is(err, profile.ErrNotFound) {
		t.Errorf("the failed commit's write is visible: Get = %v", err)
	}
	if want := []string{"profiles.begin", "profiles.stage", "profiles.commit"}; len(asked) != 3 || asked[0] != want[0] || asked[1] != want[1] || asked[2] != want[2] {
		t.Errorf("points asked = %v; want %v", asked, want)
	}
}

func TestCrashAtCommitPanicsAfterRollback(t *testing.T) {
	mem := profile.NewMemStore()
	var asked []string
	s := ProfileStore(mem, planAt("profiles.commit", ErrCrash, &asked))
	tx := stagedUpdate(t, s)
	if !Survive(func() { _ = tx.Commit(context.Background()) }) {
		t.Fatal("Survive did not report the crash")
	}
	if _, err := mem.Get(context.Background(), "use_1"); !errors.Is(err, profile.ErrNotFound) {
		t.Errorf("the crashed commit's write is visible: Get = %v", err)
	}
	if Survive(func() {}) {
		t.Error("Survive reported a crash for a function that returned")
	}
}

func TestStageAndBeginFail(t *testing.T) {
	var asked []string
	g := Graph(identity.NewMemGraph(), planAt("identity.begin", errBoom, &asked))
	if _, err := g.Begin(context.Background()); !errors.Is(err, errBoom) {
		t.Errorf("Begin = %v; want the plan's error", err)
	}
	s := ProfileStore(profile.NewMemStore(), planAt("profiles.stage", errBoom, &asked))
	tx, err := s.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if err := tx.Delete(context.Background(), "use_1"); !errors.Is(err, errBoom) {
		t.Errorf("Delete = %v; want the plan's error", err)
	}
}

func TestJournalCrashesAfterTheRecordIsDurable(t *testing.T) {
	mem := journal.NewMemJournal()
	j := Journal(mem, func(e *journal.Entry) error {
		if e.Decided {
			return ErrCrash
		}
		return nil
	})
	ctx := context.Background()
	e := &journal.Entry{ID: "req_1", Type: journal.DeleteOnly, Status: journal.StatusRunning}
	if err := j.Put(ctx, e); err != nil {
		t.Fatal(err)
	}
	e.Decided = true
	if !Survive(func() { _ = j.Put(ctx, e) }) {
		t.Fatal("no crash after the decision's record")
	}
	got, err := mem.Get(ctx, "req_1")
	if err != nil || !got.Decided {
		t.Errorf("the record before the crash is not durable: %+v, %v", got, err)
	}
}
