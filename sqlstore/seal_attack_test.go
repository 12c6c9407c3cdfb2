package sqlstore_test

// Adversarial review of encryption at rest (issue 15, first part): each test
// breaks an invariant on the code it was written against.

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/keyring"
	"github.com/gdprkit/privacy/profile"
)

// TestAttackMergedAwayKeyOutlivesErasure: with the keyring kept apart from
// the data (WithKeyring: the configuration that makes an erasure reach the
// data's backups), an anonymous visitor's events are sealed under the
// visitor's key; the visitor logs in (the profiles merge) and is then erased.
// The merge keeps the merged-away profile's key in the separate keyring, and
// the erasure destroys only the surviving profile's: a backup from before
// the merge, restored with the live keyring, still reads the erased person's
// events.
func TestAttackMergedAwayKeyOutlivesErasure(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s, p, keys, c := keptApart(t, d.dialect)
			ctx := t.Context()
			collectCanaries(t, c, "ada")
			anon := identity.ID{Type: identity.TypeAnonymousID, Value: "anon-1"}
			must(t, c.Collect(ctx, privacy.Track{MessageID: "v-1", AnonymousID: "anon-1", Event: "Page Viewed",
				Properties: map[string]any{"path": "/secret-visit-canary"}, Timestamp: encTS}))
			visitor, err := c.Profile(ctx, anon)
			must(t, err)

			restore := backup(t, s, p) // a nightly backup, before the login

			must(t, c.Collect(ctx, privacy.Identify{MessageID: "login", UserID: "ada", AnonymousID: "anon-1", Timestamp: encTS.Add(time.Hour)}))
			eraseFinished(t, c, "ada")
			if n := countKeys(t, keys); n != 0 {
				es, _ := keys.Keyring().List(ctx, "", 10)
				var left []identity.ProfileID
				for _, e := range es {
					left = append(left, e.Profile)
				}
				t.Errorf("after the only person's erasure the keyring holds %d keys %v (visitor profile was %s); want none", n, left, visitor.ID)
			}
			c.Close()

			restored, _ := restore()
			rc := openRestored(t, restored, keys)
			if page, err := rc.Events(ctx, anon, profile.EventQuery{}); err == nil {
				t.Errorf("the erased person's pre-login events read back from the restored backup: %+v", page.Events)
			}
		})
	}
}

// plainProfiles wraps a profile store as a host's decorator would (metrics,
// tracing): it forwards profile.Store and nothing else.
type plainProfiles struct{ profile.Store }

// TestAttackWrappedProfileStoreWritesInClear: a Controller over sqlstore
// whose profile store is wrapped (a decorator that forwards profile.Store
// only) used to seal nothing, and New said nothing: every trait value and
// event property went to the database in clear. New refuses it beside a
// keyring; with the wrapper forwarding SealWith and Keyring, it seals.
func TestAttackWrappedProfileStoreWritesInClear(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s := newSite(t, d.dialect)
			p := s.open(t)
			_, err := privacy.New(privacy.WithBackends(p.data), privacy.WithProfiles(plainProfiles{p.data.Profiles()}),
				privacy.WithJournal(p.jrnl.Journal()), privacy.WithAuditLog(p.jrnl.AuditLog()), privacy.WithKey(testKey))
			if !errors.Is(err, privacy.ErrInvalid) || !strings.Contains(err.Error(), "SealWith") {
				t.Fatalf("New with a decorator that cannot seal = %v; want ErrInvalid naming SealWith", err)
			}
			c := p.controller(t, &hookProfiles{sealingStore: profilesOf(p.data)}, privacy.WithKeyring(p.data.Keyring()))
			collectCanaries(t, c, "ada")
			for _, canary := range []string{canaryTrait, canaryProp} {
				if h := s.holders(t, canary); len(h) > 0 {
					t.Errorf("%q is in the database in clear: %v", canary, h)
				}
			}
		})
	}
}

// TestAttackRectificationValuesInJournal: a rectification's new values go to
// the journal (and decision) in clear.
func TestAttackRectificationValuesInJournal(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s := newSite(t, d.dialect)
			p := s.open(t)
			c := p.controller(t, nil)
			collectCanaries(t, c, "ada")
			const fixed = "rectified-canary-77aa"
			r, err := c.Rectify(t.Context(), uid("ada"), map[string]any{"favorite_color": fixed})
			must(t, err)
			if r.Status != privacy.Finished {
				t.Fatalf("rectification: %s", r.Status)
			}
			if h := s.holders(t, fixed); len(h) > 0 {
				t.Errorf("%q (a rectified value) is in the database in clear after the request finished: %v", fixed, h)
			}
		})
	}
}

// TestAttackRotateKeyLeavesDataKeysUnderOldKey: RotateKey promises that
// someone who learns an old key alone gains nothing; the data keys stay
// wrapped under the old WithKey's keeper, which that old key alone derives.
func TestAttackRotateKeyLeavesDataKeysUnderOldKey(t *testing.T) {
	s := newSite(t, testDialects[0].dialect)
	p := s.open(t)
	c := p.controller(t, nil)
	ada := collectCanaries(t, c, "ada")
	c.Close()
	newKey := []byte("a brand new key for the rotation!")
	must(t, privacy.RotateKey(t.Context(), newKey,
		privacy.WithBackends(p.data), privacy.WithJournal(p.jrnl.Journal()), privacy.WithAuditLog(p.jrnl.AuditLog()), privacy.WithKey(testKey)))
	c2 := p.controller(t, nil, privacy.WithKey(newKey), privacy.WithPreviousKeys(testKey))
	checkCanariesRead(t, c2, "ada")
	e, err := p.data.Keyring().Get(t.Context(), ada.ID)
	must(t, err)
	old, err := keyring.NewLocalKeeper(testKey)
	must(t, err)
	if _, err := old.Decrypt(t.Context(), e.Wrapped); err == nil {
		t.Error("after RotateKey the old key alone still unwraps ada's data key")
	}
}

// TestAttackBadInputLeavesAKey: with the keyring kept apart (WithKeyring), a
// message the database refuses (a NUL in a trait name, which PostgreSQL's
// text refuses) for a new person fails, and changes nothing, except that the
// separate keyring keeps a data key for a profile that was never stored.
func TestAttackBadInputLeavesAKey(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s := newSite(t, d.dialect)
			p := s.open(t)
			keys := separateKeyring(t, s, p)
			c := p.controller(t, nil, privacy.WithKeyring(keys.Keyring()))
			err := c.Collect(t.Context(), privacy.Identify{MessageID: "bad", UserID: "new-person",
				Traits: map[string]any{"bad\x00name": "x", "ok": "\xff\xfe"}, Timestamp: encTS})
			if !errors.Is(err, privacy.ErrInvalid) {
				t.Fatalf("Collect of a trait name with a NUL = %v; want ErrInvalid", err)
			}
			if n := countKeys(t, keys); n != 0 {
				t.Errorf("a refused message left %d data keys in the keyring; want none", n)
			}
		})
	}
}

// TestAttackForgottenKeeperMakesUnreadableKeys: the deployment wraps data
// keys with a key management service (WithKeeper); a second host starts
// without WithKeeper. New used to accept it and wrap every new person's key
// with the keeper derived from WithKey, which no host configured right could
// unwrap: it is refused by the keyring's keeper check.
func TestAttackForgottenKeeperMakesUnreadableKeys(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s := newSite(t, d.dialect)
			kms, err := keyring.NewLocalKeeper([]byte("the key management service's own key"))
			must(t, err)
			p1 := s.open(t)
			c1 := p1.controller(t, nil, privacy.WithKeeper(kms))
			collectCanaries(t, c1, "ada")

			p2 := s.open(t)
			opts := []privacy.Option{privacy.WithBackends(p2.data), privacy.WithKey(testKey)}
			if p2.jrnl != p2.data {
				opts = append(opts, privacy.WithJournal(p2.jrnl.Journal()), privacy.WithAuditLog(p2.jrnl.AuditLog()))
			}
			c2, err := privacy.New(opts...) // WithKeeper forgotten
			if err == nil {
				c2.Close()
				t.Fatal("New without the deployment's keeper = nil; want it refused before it wraps a key the others cannot unwrap")
			}
			if !errors.Is(err, privacy.ErrKeyMismatch) || !errors.Is(err, keyring.ErrWrongKeeper) {
				t.Errorf("New without the deployment's keeper = %v; want ErrKeyMismatch and keyring.ErrWrongKeeper", err)
			}
			// The right keeper is taken, by a second host too.
			c3 := p2.controller(t, nil, privacy.WithKeeper(kms))
			collectCanaries(t, c3, "bob")
			checkCanariesRead(t, c1, "bob")
		})
	}
}

// TestAttackReturningPersonAfterRestoreUnreadable: the backup is restored as
// the design intends (the keyring kept apart, live); the erased person comes
// back and is collected again. The collection is accepted (a shredded profile
// reads as not found, so it is "started afresh" under a new data key), but
// the shredded rows stay beside the new ones: every read of the person, and
// their access request, fails for good.
func TestAttackReturningPersonAfterRestoreUnreadable(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s, p, keys, c := keptApart(t, d.dialect)
			ctx := t.Context()
			collectCanaries(t, c, "ada")
			restore := backup(t, s, p)
			eraseFinished(t, c, "ada")
			c.Close()

			restored, _ := restore()
			rc := openRestored(t, restored, keys)
			// Ada comes back.
			must(t, rc.Collect(ctx, privacy.Identify{MessageID: "back-i", UserID: "ada", Traits: map[string]any{"plan": "pro"}, Timestamp: encTS.Add(24 * time.Hour)}))
			must(t, rc.Collect(ctx, privacy.Track{MessageID: "back-t", UserID: "ada", Event: "Signed In", Properties: map[string]any{"via": "sso"}, Timestamp: encTS.Add(24 * time.Hour)}))
			if p, err := rc.Profile(ctx, uid("ada")); err != nil {
				t.Errorf("Profile(ada) after she came back: %v", err)
			} else if p.Traits["plan"].Value != "pro" {
				t.Errorf("Profile(ada) after she came back: %+v", p.Traits)
			}
			if _, err := rc.Events(ctx, uid("ada"), profile.EventQuery{}); err != nil {
				t.Errorf("Events(ada) after she came back: %v", err)
			}
			if _, err := rc.Access(ctx, uid("ada")); err != nil {
				t.Errorf("Access(ada) after she came back: %v", err)
			}
		})
	}
}

// TestAttackTwoProcessesNewPersonKey: two processes collect the first
// messages of one new person at once (by two identifiers, then linked); every
// value reads back.
func TestAttackTwoProcessesNewPersonKey(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s := newSite(t, d.dialect)
			ctx := t.Context()
			c1 := s.open(t).controller(t, nil)
			c2 := s.open(t).controller(t, nil)
			for i := range 20 {
				user := fmt.Sprint("u", i)
				errs := make(chan error, 2)
				go func() {
					errs <- c1.Collect(ctx, privacy.Track{MessageID: user + "-a", UserID: user, Event: "A", Properties: map[string]any{"n": "a"}, Timestamp: encTS})
				}()
				go func() {
					errs <- c2.CollectBatch(ctx, []privacy.Message{privacy.Identify{MessageID: user + "-b", UserID: user, Traits: map[string]any{"t": "b"}, Timestamp: encTS}})
				}()
				for range 2 {
					if err := <-errs; err != nil {
						t.Fatalf("%s: %v", user, err)
					}
				}
				for _, c := range []*privacy.Controller{c1, c2} {
					p, err := c.Profile(ctx, uid(user))
					if err != nil || p.Traits["t"].Value != "b" {
						t.Fatalf("%s: Profile = %v, %v", user, p, err)
					}
					page, err := c.Events(ctx, uid(user), profile.EventQuery{})
					if err != nil || len(page.Events) != 1 {
						t.Fatalf("%s: Events = %v, %v", user, page, err)
					}
				}
			}
		})
	}
}

// TestAttackRotateWhileRunning: keyring.Rotate re-wraps the keys while a
// Controller with the rotating keeper runs and has them cached; reads and
// new writes go on.
func TestAttackRotateWhileRunning(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s := newSite(t, d.dialect)
			ctx := t.Context()
			a, _ := keyring.NewLocalKeeper([]byte("kms key A, long enough to be a key"))
			b, _ := keyring.NewLocalKeeper([]byte("kms key B, long enough to be a key"))
			p := s.open(t)
			c1 := p.controller(t, nil, privacy.WithKeeper(a))
			collectCanaries(t, c1, "ada")
			c1.Close()
			rk, err := keyring.NewRotatingKeeper(b, a)
			must(t, err)
			c := s.open(t).controller(t, nil, privacy.WithKeeper(rk))
			checkCanariesRead(t, c, "ada") // cached under A's wrapping
			n, err := keyring.Rotate(ctx, p.data.Keyring(), a, b, 1)
			must(t, err)
			if n != 2 {
				t.Errorf("Rotate re-wrapped %d entries; want ada's key and the keeper check", n)
			}
			checkCanariesRead(t, c, "ada")
			must(t, c.Collect(ctx, privacy.Identify{MessageID: "x", UserID: "ada", Traits: map[string]any{"k": "v"}, Timestamp: encTS}))
			onlyB := s.open(t).controller(t, nil, privacy.WithKeeper(b))
			checkCanariesRead(t, onlyB, "ada")
		})
	}
}

// TestWrongKeyringRefused: the data was sealed with the keys of one
// keyring; a host given another (empty) keyring by mistake, with the right
// keeper, is refused (every person would look erased to it, and their
// sealed rows be purged at their next write); nothing of the data changes,
// and the right keyring still reads it.
func TestWrongKeyringRefused(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s, p, keys, c := keptApart(t, d.dialect)
			collectCanaries(t, c, "ada")
			c.Close()
			empty := separateKeyringNamed(t, s, p, "other")
			_, err := privacy.New(privacy.WithBackends(p.data), privacy.WithKeyring(empty.Keyring()),
				privacy.WithJournal(p.jrnl.Journal()), privacy.WithAuditLog(p.jrnl.AuditLog()), privacy.WithKey(testKey))
			if !errors.Is(err, privacy.ErrKeyMismatch) || !errors.Is(err, keyring.ErrWrongKeyring) {
				t.Fatalf("New with another keyring = %v; want ErrKeyMismatch and keyring.ErrWrongKeyring", err)
			}
			right := p.controller(t, nil, privacy.WithKeyring(keys.Keyring()))
			checkCanariesRead(t, right, "ada")
		})
	}
}
