package sqlstore_test

// Attacks of a review of the commit marks: objection, its lifting and rectification at
// the crash point the marks are for (the child dies after the commit, before
// the journal records it), with a newer request or a merge between the
// crash and the recovery.

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
)

func TestDieAfterCommitChild(t *testing.T) {
	s := childSite(t, "GDPRKIT_COMMIT_DIE_CHILD", "started by TestMarkRights")
	p := s.open(t)
	c := p.controller(t, nil, privacy.WithJournal(exitAtCommitRecord{p.jrnl.Journal()}))
	req := privacy.Request{Type: privacy.RequestType(os.Getenv("GDPRKIT_COMMIT_DIE_TYPE")),
		Subjects: []identity.ID{uid(os.Getenv("GDPRKIT_COMMIT_DIE_SUBJECT"))}}
	if req.Type == privacy.Rectify {
		req.Traits = map[string]any{"plan": "rectified"}
	}
	r, err := c.Apply(t.Context(), req)
	t.Fatalf("Apply = %+v, %v; the process should have died after the commit", r, err)
}

func dieAfterCommitWith(t *testing.T, s *site, typ privacy.RequestType, subject string) string {
	t.Helper()
	runCrashingChild(t, s, "TestDieAfterCommitChild", "GDPRKIT_COMMIT_DIE_CHILD", "after the commit",
		"GDPRKIT_COMMIT_DIE_TYPE="+string(typ), "GDPRKIT_COMMIT_DIE_SUBJECT="+subject)
	p := s.open(t)
	defer p.close()
	un, err := p.jrnl.Journal().Unfinished(t.Context())
	must(t, err)
	if len(un) != 1 || !un[0].Decided || !un[0].Committed.IsZero() || un[0].Type != typ {
		t.Fatalf("journal = %+v; want one %s, decided, its commit not recorded", un, typ)
	}
	return un[0].ID
}

func TestMarkRights(t *testing.T) {
	// SUPPRESS_ONLY committed, journal never heard; a newer UNSUPPRESS
	// finishes; Recover must not suppress again.
	t.Run("suppress_then_newer_unsuppress", func(t *testing.T) {
		forEachSeededSite(t, func(t *testing.T, s *site, ada, bob *person) {
			ctx := t.Context()
			id := dieAfterCommitWith(t, s, privacy.SuppressOnly, ada.uid)
			c := s.open(t).controller(t, nil)
			if r, err := c.Unsuppress(ctx, userID(ada)); err != nil || r.Status != privacy.Finished {
				t.Fatalf("Unsuppress = %+v, %v", r, err)
			}
			if _, err := c.Recover(ctx); err != nil {
				t.Fatalf("Recover: %v", err)
			}
			if r, err := c.Status(ctx, id); err != nil || !r.Status.Ended() {
				t.Errorf("Status = %+v, %v; want ended", r, err)
			}
			if err := c.Collect(ctx, privacy.Identify{MessageID: "after", UserID: ada.uid, Traits: map[string]any{"x": 1}, Timestamp: time.Now()}); err != nil {
				t.Errorf("Collect after the newer UNSUPPRESS = %v; want accepted", err)
			}
		})
	})
	// UNSUPPRESS committed, journal never heard; a newer SUPPRESS finishes;
	// Recover must not lift it.
	t.Run("unsuppress_then_newer_suppress", func(t *testing.T) {
		forEachSeededSite(t, func(t *testing.T, s *site, ada, bob *person) {
			ctx := t.Context()
			{
				p := s.open(t)
				c := p.controller(t, nil)
				if r, err := c.Suppress(ctx, userID(ada)); err != nil || r.Status != privacy.Finished {
					t.Fatalf("Suppress = %+v, %v", r, err)
				}
				c.Close()
				p.close()
			}
			dieAfterCommitWith(t, s, privacy.Unsuppress, ada.uid)
			c := s.open(t).controller(t, nil)
			if r, err := c.Suppress(ctx, userID(ada)); err != nil || r.Status != privacy.Finished {
				t.Fatalf("newer Suppress = %+v, %v", r, err)
			}
			if _, err := c.Recover(ctx); err != nil {
				t.Fatalf("Recover: %v", err)
			}
			if err := c.Collect(ctx, privacy.Identify{MessageID: "after", UserID: ada.uid, Traits: map[string]any{"x": 1}, Timestamp: time.Now()}); !errors.Is(err, privacy.ErrSuppressed) {
				t.Errorf("Collect after the newer SUPPRESS = %v; want ErrSuppressed", err)
			}
		})
	})
	// SUPPRESS_WITH_DELETE committed, journal never heard; a newer
	// UNSUPPRESS finishes; ada signs up again: Recover keeps her new profile
	// and does not suppress her again.
	t.Run("suppress_with_delete_then_unsuppress_and_new_profile", func(t *testing.T) {
		forEachSeededSite(t, func(t *testing.T, s *site, ada, bob *person) {
			ctx := t.Context()
			dieAfterCommitWith(t, s, privacy.SuppressWithDelete, ada.uid)
			c := s.open(t).controller(t, nil)
			if r, err := c.Unsuppress(ctx, userID(ada)); err != nil || r.Status != privacy.Finished {
				t.Fatalf("Unsuppress = %+v, %v", r, err)
			}
			must(t, c.Collect(ctx, privacy.Identify{MessageID: "again", UserID: ada.uid, Traits: map[string]any{"plan": "new"}, Timestamp: time.Now()}))
			fresh, err := c.Profile(ctx, userID(ada))
			must(t, err)
			if _, err := c.Recover(ctx); err != nil {
				t.Fatalf("Recover: %v", err)
			}
			if got, err := c.Profile(ctx, userID(ada)); err != nil || got.ID != fresh.ID {
				t.Errorf("after Recover ada = %v, %v; want %s kept", got, err, fresh.ID)
			}
			if err := c.Collect(ctx, privacy.Identify{MessageID: "again-2", UserID: ada.uid, Traits: map[string]any{"x": 1}, Timestamp: time.Now()}); err != nil {
				t.Errorf("Collect after Recover = %v; want accepted (the UNSUPPRESS is newer)", err)
			}
			checkIntact(t, s, c, bob)
		})
	})
	// RECTIFY committed, journal never heard; ada's profile merges into an
	// older one, then a newer identify sets the plan: Recover keeps it.
	t.Run("rectify_then_merge_then_newer", func(t *testing.T) {
		forEachSite(t, func(t *testing.T, s *site) {
			ctx := t.Context()
			const device = "old-device-r"
			{
				p := s.open(t)
				c := p.controller(t, nil)
				must(t, c.Collect(ctx, privacy.Track{MessageID: "old", AnonymousID: device, Event: "Seen", Timestamp: time.Now()}))
				c.Close()
				p.close()
			}
			ada, _ := seedCrash(t, s)
			dieAfterCommitWith(t, s, privacy.Rectify, ada.uid)
			c := s.open(t).controller(t, nil)
			must(t, c.Collect(ctx, privacy.Identify{MessageID: "merge", UserID: ada.uid, AnonymousID: device, Timestamp: time.Now()}))
			merged, err := c.Profile(ctx, userID(ada))
			must(t, err)
			if merged.ID == ada.pid || merged.Traits["plan"].Value != "rectified" {
				t.Fatalf("after the merge ada = %s %v; want merged away, plan rectified", merged.ID, merged.Traits)
			}
			must(t, c.Collect(ctx, privacy.Identify{MessageID: "newer", UserID: ada.uid, Traits: map[string]any{"plan": "newer"}, Timestamp: time.Now()}))
			if _, err := c.Recover(ctx); err != nil {
				t.Fatalf("Recover: %v", err)
			}
			if got, err := c.Profile(ctx, userID(ada)); err != nil || got.Traits["plan"].Value != "newer" {
				t.Errorf("after Recover plan = %v, %v; want newer", got.Traits["plan"], err)
			}
		})
	})
}

// TestDecoratedDieChild erases through a pass-through decorator of the
// profile store (as faultProfiles, or a host's tracing wrapper: its Tx embeds
// profile.Tx) and dies after the commit, before the journal records it.
func TestDecoratedDieChild(t *testing.T) {
	s := childSite(t, "GDPRKIT_REVIEW_DECORATED_CHILD", "started by TestDecoratedStoreLosesMarks")
	p := s.open(t)
	c := p.controller(t, &faultProfiles{sealingStore: profilesOf(p.data)}, privacy.WithJournal(exitAtCommitRecord{p.jrnl.Journal()}))
	r, err := c.Erase(t.Context(), uid(os.Getenv("GDPRKIT_REVIEW_DECORATED_SUBJECT")))
	t.Fatalf("Erase = %+v, %v; the process should have died after the commit", r, err)
}

// TestDecoratedStoreLosesMarks: a decision committed through a
// decorated profile store leaves no mark (its Tx does not have MarkRequest),
// silently: New accepts it (as it would not a decorator that drops SealWith),
// and Recover again erases the person collected anew after the commit.
func TestDecoratedStoreLosesMarks(t *testing.T) {
	forEachSeededSite(t, func(t *testing.T, s *site, ada, bob *person) {
		ctx := t.Context()
		runCrashingChild(t, s, "TestDecoratedDieChild", "GDPRKIT_REVIEW_DECORATED_CHILD", "after the commit",
			"GDPRKIT_REVIEW_DECORATED_SUBJECT="+ada.uid)
		p := s.open(t)
		c := p.controller(t, &faultProfiles{sealingStore: profilesOf(p.data)})
		un, err := p.jrnl.Journal().Unfinished(ctx)
		if err != nil || len(un) != 1 || !un[0].Decided || !un[0].Committed.IsZero() {
			t.Fatalf("journal = %+v, %v; want the erasure decided, its commit not recorded", un, err)
		}
		recoverKeepsNewCollection(t, c, ada) // no mark was written through the decorator
	})
}
