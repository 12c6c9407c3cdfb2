package sqlstore_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
)

var (
	oldKey = []byte("the key before the rotation, 32b")
	newKey = []byte("the key after the rotation, 32 b")
)

// keyed returns the options of a Controller on every backend of the
// process, wired by WithBackends (the journal and audit log from their own
// Store), then the extra ones (the keys).
func (p *proc) keyed(extra ...privacy.Option) []privacy.Option {
	return append([]privacy.Option{privacy.WithBackends(p.data),
		privacy.WithJournal(p.jrnl.Journal()), privacy.WithAuditLog(p.jrnl.AuditLog())}, extra...)
}

// keyPeople are the people a key must keep suppressed: one suppressed before
// ever seen, one erased with suppression.
var (
	neverSeen = identity.ID{Type: identity.TypeEmail, Value: "never-seen@example.com"}
	erasedOne = identity.ID{Type: identity.TypeUserID, Value: "erased-and-suppressed"}
)

// seedSuppressed suppresses neverSeen and erases erasedOne with
// suppression, under key, in a process that then stops.
func seedSuppressed(t *testing.T, s *site, key []byte) {
	t.Helper()
	ctx := t.Context()
	p := s.open(t)
	c, err := privacy.New(p.keyed(privacy.WithKey(key))...)
	must(t, err)
	if _, err := c.Suppress(ctx, neverSeen); err != nil {
		t.Fatal(err)
	}
	must(t, c.Collect(ctx, privacy.Identify{MessageID: "m1", UserID: erasedOne.Value, Traits: map[string]any{"plan": "pro"}, Timestamp: time.Now()}))
	if r, err := c.Apply(ctx, privacy.Request{Type: privacy.SuppressWithDelete, Subjects: []identity.ID{erasedOne}}); err != nil || r.Status != privacy.Finished {
		t.Fatalf("SuppressWithDelete = %+v, %v; want FINISHED", r, err)
	}
	must(t, c.Close())
	p.close()
}

// checkStillSuppressed: a Controller with these options refuses both people's
// messages, and its audit chain verifies.
func checkStillSuppressed(t *testing.T, c *privacy.Controller) {
	t.Helper()
	ctx := t.Context()
	for i, id := range []identity.ID{neverSeen, erasedOne} {
		m := privacy.Identify{MessageID: "after-" + id.Value, Timestamp: time.Now(), Traits: map[string]any{"plan": "free"}}
		if id.Type == identity.TypeEmail {
			m.UserID, m.Traits["email"] = "someone-new", id.Value
		} else {
			m.UserID = id.Value
		}
		if err := c.Collect(ctx, m); !errors.Is(err, privacy.ErrSuppressed) {
			t.Errorf("person %d: Collect = %v; want ErrSuppressed: the suppression lapsed", i, err)
		}
	}
	if n, err := c.VerifyAudit(ctx); err != nil || n == 0 {
		t.Errorf("VerifyAudit = %d, %v; want the chain verified", n, err)
	}
}

// TestKeyAcrossRestarts: durable backends refuse a Controller without a key
// or with another one, so a restart cannot silently let suppressions lapse;
// a rotation carries them over to the new key, and is run again harmlessly.
func TestKeyAcrossRestarts(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			s := newSite(t, d.dialect)
			ctx := t.Context()
			seedSuppressed(t, s, oldKey)

			p := s.open(t) // a restart: new pools, new Stores
			_, err := privacy.New(p.keyed()...)
			if !errors.Is(err, privacy.ErrInvalid) || !strings.Contains(err.Error(), "WithKey is required with durable backends") {
				t.Errorf("New without a key = %v; want ErrInvalid saying WithKey is required", err)
			}
			if _, err := privacy.New(p.keyed(privacy.WithKey(newKey))...); !errors.Is(err, privacy.ErrKeyMismatch) {
				t.Errorf("New with another key = %v; want ErrKeyMismatch", err)
			}
			if _, err := privacy.New(p.keyed(privacy.WithPreviousKeys(oldKey))...); !errors.Is(err, privacy.ErrInvalid) {
				t.Errorf("New with previous keys but no key = %v; want ErrInvalid", err)
			}
			c, err := privacy.New(p.keyed(privacy.WithKey(oldKey))...)
			must(t, err)
			checkStillSuppressed(t, c)
			must(t, c.Close())

			if err := privacy.RotateKey(ctx, newKey, p.keyed(privacy.WithKey(newKey))...); !errors.Is(err, privacy.ErrInvalid) {
				t.Errorf("RotateKey to the key in use = %v; want ErrInvalid", err)
			}
			if err := privacy.RotateKey(ctx, []byte("short"), p.keyed(privacy.WithKey(oldKey))...); !errors.Is(err, privacy.ErrInvalid) {
				t.Errorf("RotateKey to a short key = %v; want ErrInvalid", err)
			}
			must(t, privacy.RotateKey(ctx, newKey, p.keyed(privacy.WithKey(oldKey))...))
			p.close()

			p = s.open(t)
			for name, opts := range map[string][]privacy.Option{
				"the old key":                {privacy.WithKey(oldKey)},
				"the new key alone":          {privacy.WithKey(newKey)},
				"the keys in the wrong role": {privacy.WithKey(oldKey), privacy.WithPreviousKeys(newKey)},
			} {
				if _, err := privacy.New(p.keyed(opts...)...); !errors.Is(err, privacy.ErrKeyMismatch) {
					t.Errorf("New after the rotation with %s = %v; want ErrKeyMismatch", name, err)
				}
			}
			rotated := p.keyed(privacy.WithKey(newKey), privacy.WithPreviousKeys(oldKey))
			c, err = privacy.New(rotated...)
			must(t, err)
			checkStillSuppressed(t, c)
			must(t, c.Close())

			// Run again with the same options: nothing left to do, nothing
			// done twice.
			must(t, privacy.RotateKey(ctx, newKey, p.keyed(privacy.WithKey(oldKey))...))
			c, err = privacy.New(rotated...)
			must(t, err)
			checkStillSuppressed(t, c)
			recs, err := p.jrnl.AuditLog().Records(ctx, 0, 1000)
			must(t, err)
			rotations := 0
			for _, r := range recs {
				if r.Action == audit.ActionKeyRotated {
					rotations++
				}
			}
			if rotations != 1 {
				t.Errorf("the audit log holds %d rotation records; want 1", rotations)
			}
		})
	}
}

// TestKeyRotationRefusesUnfinishedRequests: a request recovered after a
// rotation would suppress its subjects under the old key, so RotateKey
// refuses while one is unfinished, and changes nothing.
func TestKeyRotationRefusesUnfinishedRequests(t *testing.T) {
	s := newSite(t, testDialects[0].dialect)
	ctx := t.Context()
	seedSuppressed(t, s, oldKey)
	p := s.open(t)
	// An erasure whose destination never answers stays RUNNING.
	gate := unavailableDest{}
	c, err := privacy.New(p.keyed(privacy.WithKey(oldKey), privacy.WithDestinations(gate))...)
	must(t, err)
	must(t, c.Collect(ctx, privacy.Identify{MessageID: "m2", UserID: "bob", Timestamp: time.Now()}))
	r, err := c.Erase(ctx, identity.ID{Type: identity.TypeUserID, Value: "bob"})
	if err != nil || r.Status == privacy.Finished {
		t.Fatalf("Erase = %+v, %v; want it waiting for its destination", r, err)
	}
	must(t, c.Close())
	if err := privacy.RotateKey(ctx, newKey, p.keyed(privacy.WithKey(oldKey))...); !errors.Is(err, privacy.ErrConflict) || !strings.Contains(err.Error(), r.ID) {
		t.Fatalf("RotateKey with request %s unfinished = %v; want ErrConflict naming it", r.ID, err)
	}
	c, err = privacy.New(p.keyed(privacy.WithKey(oldKey))...)
	must(t, err)
	checkStillSuppressed(t, c)
}

// TestKeyRotationCrash: the process rotating the key dies (os.Exit) after
// the suppression list was carried to the new key, before the audit log
// recorded the rotation. Neither key starts a Controller then (each would
// break one backend); RotateKey run again finishes the rotation.
func TestKeyRotationCrash(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			s := newSite(t, d.dialect)
			ctx := t.Context()
			seedSuppressed(t, s, oldKey)

			runCrashingChild(t, s, "TestKeyRotationCrashChild", "GDPRKIT_ROTATION_CHILD", "at the audit record")

			p := s.open(t)
			rotated := p.keyed(privacy.WithKey(newKey), privacy.WithPreviousKeys(oldKey))
			_, err := privacy.New(rotated...)
			if !errors.Is(err, privacy.ErrKeyMismatch) || !strings.Contains(err.Error(), "did not finish") {
				t.Errorf("New with the new keys after the crash = %v; want ErrKeyMismatch saying the rotation did not finish", err)
			}
			if _, err := privacy.New(p.keyed(privacy.WithKey(oldKey))...); !errors.Is(err, privacy.ErrKeyMismatch) {
				t.Errorf("New with the old key after the crash = %v; want ErrKeyMismatch", err)
			}
			must(t, privacy.RotateKey(ctx, newKey, p.keyed(privacy.WithKey(oldKey))...))
			c, err := privacy.New(rotated...)
			must(t, err)
			checkStillSuppressed(t, c)
		})
	}
}

// unavailableDest fails every call, as a destination that is down.
type unavailableDest struct{}

func (unavailableDest) Name() string { return "down" }
func (unavailableDest) Send(context.Context, []destination.Message) error {
	return errors.New("unavailable")
}
func (unavailableDest) Delete(context.Context, destination.Deletion) error {
	return errors.New("unavailable")
}

// dyingAuditLog exits the process when the rotation record is appended.
type dyingAuditLog struct{ audit.Log }

func (l dyingAuditLog) Append(ctx context.Context, r audit.Record) error {
	if r.Action == audit.ActionKeyRotated {
		os.Exit(crashExitCode)
	}
	return l.Log.Append(ctx, r)
}

// TestKeyRotationCrashChild is the process TestKeyRotationCrash starts.
func TestKeyRotationCrashChild(t *testing.T) {
	s := childSite(t, "GDPRKIT_ROTATION_CHILD", "the process TestKeyRotationCrash starts, and crashes")
	p := s.open(t)
	err := privacy.RotateKey(t.Context(), newKey, p.keyed(privacy.WithKey(oldKey), privacy.WithAuditLog(dyingAuditLog{p.jrnl.AuditLog()}))...)
	t.Fatalf("RotateKey = %v; the process should have died at the audit record", err)
}
