package sqlstore_test

// Attacks of a fourth review on Recover of a committed erasure: a process
// that dies in the purge.

import (
	"context"
	"os"
	"testing"

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
	runCrashingChild(t, s, "TestCrashDuringPurgeChild", "GDPRKIT_PURGE_DIE_CHILD", "in the purge", "GDPRKIT_PURGE_DIE_SUBJECT="+ada.uid)
	recoverKeepsNewCollection(t, s.open(t).controller(t, nil), ada)
}

func TestCrashDuringPurgeChild(t *testing.T) {
	s := childSite(t, "GDPRKIT_PURGE_DIE_CHILD", "started by TestCrashDuringPurgeKeepsNewCollection")
	s.Instance = "crash-host"
	p := s.open(t)
	pp := &purgingProfiles{sealingStore: profilesOf(p.data)}
	c := p.controller(t, pp)
	die := func(context.Context) error { os.Exit(crashExitCode); return nil }
	pp.onPurge.Store(&die)
	r, err := c.Erase(t.Context(), uid(os.Getenv("GDPRKIT_PURGE_DIE_SUBJECT")))
	t.Fatalf("Erase = %+v, %v; the process should have died in the purge", r, err)
}
