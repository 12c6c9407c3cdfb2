package sqlstore_test

// The outbox's payloads sealed: what waits for a destination is nowhere in
// the database in clear, reaches the destination in clear, survives a merge,
// and, in a backup restored after the person's erasure, never goes out.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/sqlstore"
)

// downRecorder is a destination.Recorder whose calls fail while down is set.
type downRecorder struct {
	*destination.Recorder
	down atomic.Bool
}

func newDownRecorder(name string) *downRecorder {
	d := &downRecorder{Recorder: destination.NewRecorder(name)}
	d.down.Store(true)
	return d
}

func (d *downRecorder) Send(ctx context.Context, msgs []destination.Message) error {
	if d.down.Load() {
		return errors.New(d.Name() + " is down")
	}
	return d.Recorder.Send(ctx, msgs)
}

func (d *downRecorder) Delete(ctx context.Context, del destination.Deletion) error {
	if d.down.Load() {
		return errors.New(d.Name() + " is down")
	}
	return d.Recorder.Delete(ctx, del)
}

// quickRetries retries a failed call within milliseconds, on leases of a
// second (a backup restored holds its deliverer's leases until they lapse).
var quickRetries = privacy.WithDelivery(privacy.Delivery{Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Poll: 5 * time.Millisecond, Lease: time.Second})

// sentIDsOf returns the message ids the recorder got.
func sentIDsOf(r *destination.Recorder) []string {
	var out []string
	for _, m := range r.Messages() {
		out = append(out, m.MessageID)
	}
	return out
}

// TestOutboxSealsWhatItQueues: with the destination down, ada's messages and
// bob's erasure's deletion wait in the outbox; no canary (trait, property,
// email) is in the database in clear. Once the destination is back, it gets
// them in clear.
func TestOutboxSealsWhatItQueues(t *testing.T) {
	forEachSite(t, func(t *testing.T, s *site) {
		p := s.open(t)
		crm := newDownRecorder("crm")
		c := p.controller(t, nil, privacy.WithDestinations(crm), quickRetries)
		collectCanaries(t, c, "ada")
		collectCanaries(t, c, "bob")
		r, err := c.Erase(t.Context(), uid("bob"))
		if err != nil || r.Status != privacy.Running {
			t.Fatalf("Erase(bob) with the destination down = %+v, %v; want RUNNING", r, err)
		}
		var waiting int
		must(t, s.dataDB(t).QueryRowContext(t.Context(), "SELECT COUNT(*) FROM "+s.table("outbox")+" WHERE payload IS NOT NULL").Scan(&waiting))
		if waiting < 2 {
			t.Fatalf("%d outbox rows hold a payload; want ada's messages and bob's deletion waiting", waiting)
		}
		dump := dumpSite(t, s, p)
		for _, canary := range []string{canaryTrait, canaryProp, canaryEmail} {
			if i := bytes.Index(dump, []byte(canary)); i >= 0 {
				t.Errorf("%q is in the database in clear: %q", canary, dump[max(0, i-300):i+50])
			}
		}

		crm.down.Store(false)
		flushWithin(t, c, time.Minute)
		var trait, prop bool
		for _, m := range crm.Messages() {
			trait = trait || m.Traits["favorite_color"] == canaryTrait+"-ada"
			prop = prop || m.Properties["note"] == canaryProp+"-ada"
			if slices.Contains(m.IDs, uid("bob")) {
				t.Errorf("bob's message %s went out after his erasure", m.MessageID)
			}
		}
		if !trait || !prop {
			t.Errorf("the destination got %v; want ada's trait and property in clear", sentIDsOf(crm.Recorder))
		}
		dels := crm.Deletions()
		if len(dels) != 1 || !slices.Contains(dels[0].IDs, identity.ID{Type: identity.TypeEmail, Value: emailOf("bob")}) {
			t.Errorf("the destination got the deletions %+v; want bob's, naming his email", dels)
		}
	})
}

// TestOutboxOfARestoredBackupSendsNothingOfTheErased: a backup taken while
// ada's and bob's messages waited for the destination, restored after ada's
// erasure and opened with the live keyring (kept apart), delivers bob's
// messages and none of ada's: her data key is gone.
func TestOutboxOfARestoredBackupSendsNothingOfTheErased(t *testing.T) {
	forEachSite(t, func(t *testing.T, s *site) {
		p := s.open(t)
		keys := separateKeyring(t, s, p)
		crm := newDownRecorder("crm")
		c := p.controller(t, nil, privacy.WithKeyring(keys.Keyring()), privacy.WithDestinations(crm), quickRetries)
		collectCanaries(t, c, "ada")
		collectCanaries(t, c, "bob")
		restore := backup(t, s, p)
		if r, err := c.Erase(t.Context(), uid("ada")); err != nil || r.Status != privacy.Running {
			t.Fatalf("Erase(ada) with the destination down = %+v, %v; want RUNNING", r, err)
		}
		c.Close()

		restored, _ := restore()
		up := destination.NewRecorder("crm")
		rc, err := privacy.New(privacy.WithBackends(restored), privacy.WithKeyring(keys.Keyring()), privacy.WithKey(testKey),
			privacy.WithDestinations(up), quickRetries)
		must(t, err)
		defer rc.Close()
		flushWithin(t, rc, time.Minute)
		got := sentIDsOf(up)
		for _, id := range []string{"ada-i", "ada-t"} {
			if slices.Contains(got, id) {
				t.Errorf("the restored backup sent ada's message %s after her erasure", id)
			}
		}
		for _, id := range []string{"bob-i", "bob-t"} {
			if !slices.Contains(got, id) {
				t.Errorf("the restored backup sent %v; want bob's %s", got, id)
			}
		}
	})
}

// TestOutboxSurvivesAMerge: a device's message waits for the destination;
// an identify then merges the device's profile into ada's older one, which
// destroys the device profile's data key. The message still goes out, whole.
func TestOutboxSurvivesAMerge(t *testing.T) {
	forEachSite(t, func(t *testing.T, s *site) {
		p := s.open(t)
		crm := newDownRecorder("crm")
		c := p.controller(t, nil, privacy.WithDestinations(crm), quickRetries)
		ctx := t.Context()
		collectCanaries(t, c, "ada")
		must(t, c.Collect(ctx, privacy.Track{MessageID: "dev-t", AnonymousID: "dev-1", Event: "Seen",
			Properties: map[string]any{"note": canaryProp + "-dev"}, Timestamp: encTS}))
		device, err := c.Profile(ctx, identity.ID{Type: identity.TypeAnonymousID, Value: "dev-1"})
		must(t, err)
		must(t, c.Collect(ctx, privacy.Identify{MessageID: "link", UserID: "ada", AnonymousID: "dev-1", Timestamp: encTS}))
		merged, err := c.Profile(ctx, identity.ID{Type: identity.TypeAnonymousID, Value: "dev-1"})
		must(t, err)
		if merged.ID == device.ID {
			t.Fatalf("the device's profile %s was not merged into ada's", device.ID)
		}
		crm.down.Store(false)
		flushWithin(t, c, time.Minute)
		var whole bool
		for _, m := range crm.Messages() {
			whole = whole || (m.MessageID == "dev-t" && m.Properties["note"] == canaryProp+"-dev")
		}
		if !whole {
			t.Errorf("the destination got %v; want the device's message, its property in clear", sentIDsOf(crm.Recorder))
		}
	})
}

// TestOutboxInAnotherStoreIsSealed: an outbox that is a Store of its own
// (WithOutbox after WithBackends, or another database) seals too: the
// Controller hands it the keys. (It kept every payload in clear.)
func TestOutboxInAnotherStoreIsSealed(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	p := s.open(t)
	other, err := sqlstore.New(p.db, sqlstore.Postgres, sqlstore.WithSchema(s.Schema))
	must(t, err)
	crm := newDownRecorder("crm")
	c := p.controller(t, nil, privacy.WithOutbox(other.Outbox()), privacy.WithDestinations(crm), quickRetries)
	collectCanaries(t, c, "ada")
	if n := s.outboxRows(t, "PENDING"); n == 0 {
		t.Fatal("nothing waits in the outbox")
	}
	dump := dumpSite(t, s, p)
	for _, canary := range []string{canaryTrait, canaryProp, canaryEmail} {
		if bytes.Contains(dump, []byte(canary)) {
			t.Errorf("%q is in the database in clear while it waits in the outbox", canary)
		}
	}
}

// TestRestoredBackupSendsNothingOfAnErasedLegacyPerson: ada was collected
// in clear (before sealing), then an event of hers sealed waits for the
// destination; a backup restored after her erasure must not send it,
// though her older rows are in clear. (Only her traits and links were
// looked at for sealed rows, not her events.)
func TestRestoredBackupSendsNothingOfAnErasedLegacyPerson(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	ctx := t.Context()
	p0 := s.open(t)
	c0 := p0.controller(t, nil, privacy.WithoutEncryption())
	collectCanaries(t, c0, "ada")
	c0.Close()

	p := s.open(t)
	keys := separateKeyring(t, s, p)
	crm := newDownRecorder("crm")
	c := p.controller(t, nil, privacy.WithKeyring(keys.Keyring()), privacy.WithDestinations(crm), quickRetries)
	must(t, c.Collect(ctx, privacy.Track{MessageID: "ada-t2", UserID: "ada", Event: "Secret Noted",
		Properties: map[string]any{"note": canaryProp + "-sealed"}, Timestamp: encTS.Add(time.Minute)}))
	var sealedEvents int
	must(t, s.dataDB(t).QueryRowContext(ctx, "SELECT COUNT(*) FROM "+s.table("profile_messages")+" WHERE sealed IS NOT NULL").Scan(&sealedEvents))
	if sealedEvents == 0 {
		t.Fatal("the new event was not sealed: the scenario needs a person in clear with a sealed event")
	}
	restore := backup(t, s, p)
	if r, err := c.Erase(ctx, uid("ada")); err != nil || r.Status != privacy.Running {
		t.Fatalf("Erase(ada) with the destination down = %+v, %v; want RUNNING", r, err)
	}
	c.Close()

	restored, _ := restore()
	up := destination.NewRecorder("crm")
	rc, err := privacy.New(privacy.WithBackends(restored), privacy.WithKeyring(keys.Keyring()), privacy.WithKey(testKey),
		privacy.WithDestinations(up), quickRetries)
	must(t, err)
	defer rc.Close()
	flushWithin(t, rc, time.Minute)
	if got := sentIDsOf(up); slices.Contains(got, "ada-t2") {
		t.Errorf("the restored backup sent ada's sealed event ada-t2 after her erasure; sent %v", got)
	}
}

// rejectingRecorder is a destination.Recorder that rejects for good the
// message with one id, while reject is set, and delivers the others.
type rejectingRecorder struct {
	*destination.Recorder
	id     string
	reject atomic.Bool
}

func (d *rejectingRecorder) Send(ctx context.Context, msgs []destination.Message) error {
	var keep []destination.Message
	rej := &destination.RejectedError{Rejected: map[int]error{}}
	for i, m := range msgs {
		if m.MessageID == d.id && d.reject.Load() {
			rej.Rejected[i] = destination.Kept(destination.ErrRejected, "refused")
			continue
		}
		keep = append(keep, m)
	}
	if err := d.Recorder.Send(ctx, keep); err != nil {
		return err
	}
	if len(rej.Rejected) > 0 {
		return rej
	}
	return nil
}

// TestSealedBundleSplitsAndReplays: one message of a sealed bundle dies,
// the others are delivered: the dead letter is split off sealed (its
// property nowhere in clear), and replayed, reaches the destination whole.
func TestSealedBundleSplitsAndReplays(t *testing.T) {
	forEachSite(t, func(t *testing.T, s *site) {
		p := s.open(t)
		crm := &rejectingRecorder{Recorder: destination.NewRecorder("crm"), id: "b-2"}
		crm.reject.Store(true)
		c := p.controller(t, nil, privacy.WithDestinations(crm), quickRetries)
		ctx := t.Context()
		must(t, c.Collect(ctx, privacy.Identify{MessageID: "b-seed", UserID: "bob", Timestamp: encTS})) // known: a batch bundles
		var msgs []privacy.Message
		for i := range 4 {
			msgs = append(msgs, privacy.Track{MessageID: fmt.Sprint("b-", i), UserID: "bob", Event: "Noted",
				Properties: map[string]any{"note": fmt.Sprint(canaryProp, "-b", i)}, Timestamp: encTS})
		}
		must(t, c.CollectBatch(ctx, msgs))
		flushWithin(t, c, time.Minute)
		dead, err := c.DeadLetters(ctx, "crm", 0, 10)
		must(t, err)
		if len(dead) != 1 || dead[0].MessageID != "b-2" || dead[0].ID%64 == 0 {
			t.Fatalf("dead letters %+v; want b-2 alone, a slot of a bundle (ID not a multiple of 64)", dead)
		}
		if got := sentIDsOf(crm.Recorder); len(got) != 4 || slices.Contains(got, "b-2") {
			t.Fatalf("delivered %v; want the seed and the three others", got)
		}
		if dump := dumpSite(t, s, p); bytes.Contains(dump, []byte(canaryProp)) {
			t.Error("a note is in the database in clear")
		}
		crm.reject.Store(false)
		if n, err := c.Replay(ctx, dead[0].ID); n != 1 || err != nil {
			t.Fatalf("Replay = %d, %v; want 1", n, err)
		}
		flushWithin(t, c, time.Minute)
		var whole bool
		for _, m := range crm.Messages() {
			whole = whole || (m.MessageID == "b-2" && m.Properties["note"] == canaryProp+"-b2")
		}
		if !whole {
			t.Errorf("delivered %v; want b-2 replayed, its note in clear", sentIDsOf(crm.Recorder))
		}
	})
}
