package sqlstore_test

// Attacks of a third review on sealing and purging, kept: an outbox kept
// apart from the data, a purge that failed and a person collected anew, a
// purge racing a profile id written again, and a rectification recovered
// from a sealed journal entry.

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/sqlstore"
)

// TestOutboxElsewhereKeepsLegacyPersonsMessages: the outbox is a Store
// of its own (another schema, as "another database"); ada was collected in
// clear (before sealing) and has no data key. An audience she enters owes
// "Audience Entered" for her: it is sealed in the outbox, and the claim's
// dropShredded looked for her profile rows in the OUTBOX's schema, found
// none, and settled it unsent as if she had been erased.
func TestOutboxElsewhereKeepsLegacyPersonsMessages(t *testing.T) {
	for _, elsewhere := range []bool{false, true} {
		t.Run(map[bool]string{false: "same-store", true: "other-schema"}[elsewhere], func(t *testing.T) { outboxLegacy(t, elsewhere) })
	}
}

func outboxLegacy(t *testing.T, elsewhere bool) {
	s := newSite(t, sqlstore.Postgres)
	ctx := t.Context()
	p0 := s.open(t)
	// crm holds ada from her first message on (a recipient: her audience
	// changes are owed to it).
	crm0 := newDownRecorder("crm")
	crm0.down.Store(false)
	c0 := p0.controller(t, nil, privacy.WithoutEncryption(), privacy.WithDestinations(crm0), quickRetries)
	must(t, c0.Collect(ctx, privacy.Identify{MessageID: "ada-i", UserID: "ada", Traits: map[string]any{"plan": "a"}, Timestamp: encTS}))
	flushWithin(t, c0, 30*time.Second)
	c0.Close()
	p0.close()

	p := s.open(t)
	ob := p.data
	if elsewhere {
		ob = separateKeyringNamed(t, s, p, "outbox") // a migrated Store in a schema of its own
	}
	crm := newDownRecorder("crm")
	crm.down.Store(false)
	c := p.controller(t, nil, privacy.WithOutbox(ob.Outbox()), privacy.WithDestinations(crm), quickRetries)
	must(t, c.DefineAudience(ctx, audience.Definition{Key: "planners", Query: `trait('plan') = 'a'`}))
	flushWithin(t, c, 30*time.Second)
	var events []string
	for _, m := range crm.Messages() {
		events = append(events, m.Event)
	}
	if !slices.Contains(events, "Audience Entered") {
		t.Errorf("the destination got %v (events %q); want ada's Audience Entered: she is a living person in clear, not an erased one", sentIDsOf(crm.Recorder), events)
	}
}

// TestRecoverAfterFailedPurgeKeepsNewCollection: the erasure committed
// (ada unreadable, her locks released) and its purge failed: RUNNING. Ada
// signs up again: a new profile, collected after the erasure committed.
// Recover, meant only to finish the purge, decided the erasure again on
// what her identifiers lead to now and erased the new profile too (and,
// once it no longer did, still named its identifiers among its subjects).
func TestRecoverAfterFailedPurgeKeepsNewCollection(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	ada, _ := seedCrash(t, s)
	ctx := t.Context()
	p := s.open(t)
	pp := &purgingProfiles{sealingStore: profilesOf(p.data)}
	c := p.controller(t, pp)
	fail := func(context.Context) error { return context.DeadlineExceeded }
	pp.onPurge.Store(&fail)
	r, err := c.Erase(ctx, userID(ada))
	if err != nil || r.Status != privacy.Running {
		t.Fatalf("Erase = %+v, %v; want RUNNING", r, err)
	}
	pp.onPurge.Store(nil)
	must(t, c.Collect(ctx, privacy.Identify{MessageID: "again-1", UserID: ada.uid, AnonymousID: "new-device-again",
		Traits: map[string]any{"plan": "new"}, Timestamp: time.Now()}))
	fresh, err := c.Profile(ctx, userID(ada))
	must(t, err)
	if fresh.ID == ada.pid {
		t.Fatalf("the new collection reused the erased profile id")
	}
	if n, err := c.Recover(ctx); n != 1 || err != nil {
		t.Fatalf("Recover = %d, %v", n, err)
	}
	// Nor does the erasure name what it did not erase: decideErasure, run
	// for the superseded check, added the new device's hash to the
	// receipt's (and the audit log's) subjects.
	after, err := c.Status(ctx, r.ID)
	must(t, err)
	for _, h := range after.Subjects {
		if !slices.Contains(r.Subjects, h) {
			t.Errorf("after Recover the erasure's receipt names %d subjects, %d at its commit: it gained %s, of the profile it kept", len(after.Subjects), len(r.Subjects), h)
		}
	}
	if got, err := c.Profile(ctx, userID(ada)); err != nil || got.ID != fresh.ID {
		t.Errorf("after Recover finished the purge, the profile collected after the erasure's commit = %v, %v; want %s kept", got, err, fresh.ID)
	}
}

// TestRectificationRunningSealedThenRecovered: a rectification waits
// for a destination that is down (RUNNING): its new value is nowhere in
// clear; a restarted host recovers it from the sealed journal entry and
// applies the very value, which reaches the destination.
func TestRectificationRunningSealedThenRecovered(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	s.Instance = "rect-host"
	ctx := t.Context()
	p := s.open(t)
	crm := newDownRecorder("crm")
	c := p.controller(t, nil, privacy.WithDestinations(crm), quickRetries)
	collectCanaries(t, c, "ada")
	newColor := "canary-rectified-77aa01"
	r, err := c.Rectify(ctx, uid("ada"), map[string]any{"favorite_color": newColor, "nick": "canary-nick-1234"})
	if err != nil || r.Status != privacy.Running {
		t.Fatalf("Rectify = %+v, %v; want RUNNING", r, err)
	}
	dump := dumpSite(t, s, p)
	for _, canary := range []string{newColor, "canary-nick-1234", canaryEmail} {
		if i := bytes.Index(dump, []byte(canary)); i >= 0 {
			t.Errorf("%q is in clear while the rectification runs: %q", canary, dump[max(0, i-200):i+50])
		}
	}
	c.Close()
	p.close()
	q := s.open(t)
	up := newDownRecorder("crm")
	up.down.Store(false)
	c2 := q.controller(t, nil, privacy.WithDestinations(up), quickRetries)
	if _, err := c2.Recover(ctx); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	flushWithin(t, c2, 30*time.Second)
	got, err := c2.Profile(ctx, uid("ada"))
	must(t, err)
	if got.Traits["favorite_color"].Value != newColor || got.Traits["nick"].Value != "canary-nick-1234" {
		t.Errorf("after recovery ada's traits %v; want the rectified values", got.Traits)
	}
	var seen bool
	for _, m := range up.Messages() {
		seen = seen || m.Traits["favorite_color"] == newColor
	}
	if !seen {
		t.Errorf("the destination got %v; want the rectified value", sentIDsOf(up.Recorder))
	}
	r2, err := c2.Status(ctx, r.ID)
	if err != nil || r2.Status != privacy.Finished {
		t.Errorf("Status = %+v, %v", r2, err)
	}
}

// TestPurgeLeavesAProfileWrittenAgainMeanwhile: Purge(nil) (Run's
// recovery round) reads the listing once, then purges profile by profile.
// While it is busy with ada's rows, bob's shredded profile id is written
// again (the store makes it a new key, purging its old rows and listing,
// as TestShreddedProfileWrittenAgain wants). Purge then reached bob and
// deleted his NEW trait and event, never checking he was still listed.
func TestPurgeLeavesAProfileWrittenAgainMeanwhile(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	ada, bob := seedCrash(t, s)
	ctx := t.Context()
	p := s.open(t)
	defer p.close()
	_ = p.controller(t, nil) // gives the Store its keys
	ps := p.data.Profiles()
	first, second := ada, bob
	if bob.pid < ada.pid {
		first, second = bob, ada
	}
	for _, x := range []*person{first, second} {
		ktx, err := p.data.Keyring().Begin(ctx)
		must(t, err)
		must(t, ktx.Delete(ctx, x.pid))
		must(t, ktx.Commit(ctx))
		tx, err := ps.Begin(ctx)
		must(t, err)
		must(t, tx.(profile.ShreddingTx).DeleteShredded(ctx, x.pid))
		must(t, tx.Commit(ctx))
	}
	// Hold one of first's rows: the purge stalls on its first batch.
	lock, err := s.admin.BeginTx(ctx, nil)
	must(t, err)
	defer lock.Rollback()
	_, err = lock.ExecContext(ctx, `SELECT 1 FROM `+s.table("profile_messages")+` WHERE profile_id = $1 LIMIT 1 FOR UPDATE`, string(first.pid))
	must(t, err)
	done := make(chan error, 1)
	go func() { _, err := ps.(profile.Purger).Purge(context.Background(), nil); done <- err }()
	time.Sleep(300 * time.Millisecond) // Purge has read the listing and waits on first's row
	now := time.Now().UTC().Truncate(time.Microsecond)
	meta := profile.Metadata{CreatedAt: now, UpdatedAt: now, Version: 1, FirstSeen: now, LastSeen: now}
	tx, err := ps.Begin(ctx)
	must(t, err)
	must(t, tx.Update(ctx, second.pid, profile.Update{MessageID: "fresh-1", Metadata: meta,
		Set:   map[string]profile.Trait{"plan": {Value: "new", UpdatedAt: now}},
		Event: &profile.Event{MessageID: "fresh-1", Name: "New", Timestamp: now, ReceivedAt: now}}))
	must(t, tx.Commit(ctx))
	must(t, lock.Rollback())
	if err := <-done; err != nil {
		t.Fatalf("Purge: %v", err)
	}
	got, err := ps.Get(ctx, second.pid)
	must(t, err)
	page, err := ps.Events(ctx, second.pid, profile.EventQuery{})
	must(t, err)
	if len(got.Traits) != 1 || len(page.Events) != 1 {
		t.Errorf("the profile written again while Purge ran: traits %v, events %d; want its new trait and event", got.Traits, len(page.Events))
	}
}
