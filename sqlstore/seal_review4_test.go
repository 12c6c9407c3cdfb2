package sqlstore_test

// Attacks of a fourth review on Recover of a committed erasure: a process
// that dies in the purge.

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/sqlstore"
)

// TestCrashDuringPurgeKeepsNewCollection: as
// TestRecoverAfterFailedPurgeKeepsNewCollection, but the erasure's process
// dies in the purge (the long step after the commit) instead of failing it.
// The journal held the decision recorded before the commit, with no backend
// outcome, and Recover erased the profile ada got when she signed up again
// after the commit; the commit is now journaled before the purge.
func TestCrashDuringPurgeKeepsNewCollection(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	ada, _ := seedCrash(t, s)
	ctx := t.Context()
	runCrashingChild(t, s, "TestCrashDuringPurgeChild", "GDPRKIT_PURGE_DIE_CHILD", "in the purge", "GDPRKIT_PURGE_DIE_SUBJECT="+ada.uid)
	p := s.open(t)
	c := p.controller(t, nil)
	if _, err := c.Profile(ctx, userID(ada)); !errors.Is(err, privacy.ErrNotFound) {
		t.Fatalf("after the commit ada = %v; want not found (the erasure committed)", err)
	}
	must(t, c.Collect(ctx, privacy.Identify{MessageID: "again-1", UserID: ada.uid, Traits: map[string]any{"plan": "new"}, Timestamp: time.Now()}))
	fresh, err := c.Profile(ctx, userID(ada))
	must(t, err)
	if n, err := c.Recover(ctx); n != 1 || err != nil {
		t.Fatalf("Recover = %d, %v", n, err)
	}
	if got, err := c.Profile(ctx, userID(ada)); err != nil || got.ID != fresh.ID {
		t.Errorf("after Recover of the erasure that died in its purge, the profile collected after its commit = %v, %v; want %s kept", got, err, fresh.ID)
	}
}

func TestCrashDuringPurgeChild(t *testing.T) {
	cfg := os.Getenv("GDPRKIT_PURGE_DIE_CHILD")
	if cfg == "" {
		t.Skip("started by TestCrashDuringPurgeKeepsNewCollection")
	}
	var s site
	must(t, json.Unmarshal([]byte(cfg), &s))
	s.Instance = "crash-host"
	p := s.open(t)
	pp := &purgingProfiles{sealingStore: profilesOf(p.data)}
	c := p.controller(t, pp)
	die := func(context.Context) error { os.Exit(crashExitCode); return nil }
	pp.onPurge.Store(&die)
	r, err := c.Erase(t.Context(), uid(os.Getenv("GDPRKIT_PURGE_DIE_SUBJECT")))
	t.Fatalf("Erase = %+v, %v; the process should have died in the purge", r, err)
}
