package sqlstore_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/keyring"
	"github.com/gdprkit/privacy/profile"
)

// TestSealForgottenKeyringDestroysData: the deployment keeps its keyring
// apart from the data (WithKeyring: the configuration the documentation
// recommends, so that a backup of the data holds no key). A second host
// starts without WithKeyring: it takes the data database's own keyring,
// empty, passes the keeper check (same WithKey) and, at the next message of
// a person the first host collected, finds no key for them, takes their
// sealed rows for shredded ones, deletes them (purgeShredded) and makes a
// new key, in the data database. A person's readable data is destroyed by a
// trait update, and their key lands next to the data it protects.
//
// Invariant: a host whose keyring is not the one the data was sealed with is
// refused at New (as one with another keeper is: ErrKeyMismatch), and no
// collection ever deletes values a configured host can read.
func TestSealForgottenKeyringDestroysData(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s, p, keys, c1 := keptApart(t, d.dialect)
			ctx := t.Context()
			collectCanaries(t, c1, "ada")

			p2 := s.open(t)
			opts := []privacy.Option{privacy.WithBackends(p2.data), privacy.WithKey(testKey)} // WithKeyring forgotten
			if p2.jrnl != p2.data {
				opts = append(opts, privacy.WithJournal(p2.jrnl.Journal()), privacy.WithAuditLog(p2.jrnl.AuditLog()))
			}
			c2, err := privacy.New(opts...)
			if err != nil {
				if !errors.Is(err, privacy.ErrKeyMismatch) {
					t.Errorf("New without the deployment's keyring = %v; want ErrKeyMismatch", err)
				}
				return // refused: what the invariant asks
			}
			t.Cleanup(func() { c2.Close() })
			// Ada changes her plan; the message lands on the second host.
			err = c2.Collect(ctx, privacy.Identify{MessageID: "ada-plan", UserID: "ada", Traits: map[string]any{"plan": "pro"}, Timestamp: encTS.Add(time.Hour)})
			_ = err // the data must survive whatever the collection answered
			var notes int
			must(t, p.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM `+s.table("profile_messages")+` WHERE message_id = 'ada-t'`)).Scan(&notes))
			if notes != 1 {
				t.Errorf("ada's note (message ada-t) has %d rows in the data; the second host's trait update deleted it", notes)
			}
			if n := countKeys(t, p.data); n != 0 {
				t.Errorf("the data database's own keyring holds %d data keys; the deployment keeps its keys apart (%d there)", n, countKeys(t, keys))
			}
			checkCanariesRead(t, c1, "ada") // her color and her note, through the right host
		})
	}
}

// TestSealReturningVisitorMergeAfterRestore: the backup is restored with
// the live keyring kept apart, as the design intends; two people it holds
// were erased since (their keys destroyed), each known by one identifier:
// ada by her user id, a visitor by an anonymous id, their profiles holding
// sealed events only. The visitor comes back and signs in as ada: the
// profiles merge, and the merge fails on the shredded profile's sealed
// events (resealMoved: "its data key was destroyed") -- at every retry,
// since nothing deletes them: the person can never be collected again. The
// first review's fix (purgeShredded before a key is made) does not cover
// the rows a merge moves.
//
// Invariant: rows sealed under a destroyed key are as good as absent: a
// person who comes back is collected, whatever path their messages take.
func TestSealReturningVisitorMergeAfterRestore(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s, p, keys, c := keptApart(t, d.dialect)
			ctx := t.Context()
			anon := identity.ID{Type: identity.TypeAnonymousID, Value: "anon-7"}
			must(t, c.Collect(ctx, privacy.Track{MessageID: "ada-t", UserID: "ada", Event: "Note Taken",
				Properties: map[string]any{"note": canaryProp + "-ada"}, Timestamp: encTS}))
			must(t, c.Collect(ctx, privacy.Track{MessageID: "v-1", AnonymousID: "anon-7", Event: "Page Viewed",
				Properties: map[string]any{"path": "/p/1"}, Timestamp: encTS}))
			restore := backup(t, s, p)
			eraseFinished(t, c, "ada")
			r, err := c.Erase(ctx, anon)
			must(t, err)
			if r.Status != privacy.Finished {
				t.Fatalf("erasure of the visitor: %s", r.Status)
			}
			c.Close()

			restored, _ := restore()
			rc := openRestored(t, restored, keys)
			login := privacy.Identify{MessageID: "login", UserID: "ada", AnonymousID: "anon-7", Traits: map[string]any{"plan": "pro"},
				Timestamp: encTS.Add(24 * time.Hour)}
			for try := range 2 {
				if err := rc.Collect(ctx, login); err != nil {
					t.Errorf("try %d: the returning visitor's sign-in: %v", try, err)
				}
			}
			if p, err := rc.Profile(ctx, uid("ada")); err != nil || p.Traits["plan"].Value != "pro" {
				t.Errorf("Profile(ada) after she came back = %+v, %v; want her plan", p, err)
			}
			if _, err := rc.Events(ctx, uid("ada"), profile.EventQuery{}); err != nil {
				t.Errorf("Events(ada) after she came back: %v", err)
			}
		})
	}
}

// TestSealRotateKeyForgottenKeyringLeavesKeysUnderOldKey: the keyring is
// kept apart (WithKeyring); RotateKey is run with the options the hosts use
// but for WithKeyring. It re-wraps the data database's own keyring (empty),
// reports success, and leaves every data key wrapped under the old key: the
// promise that someone who learns an old key alone gains nothing is broken
// with no word. (The same binding that would refuse a host with another
// keyring would refuse this run.)
//
// Invariant: RotateKey either re-wraps every data key sealing the data it is
// given, or fails.
func TestSealRotateKeyForgottenKeyringLeavesKeysUnderOldKey(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			_, p, keys, c := keptApart(t, d.dialect)
			ctx := t.Context()
			ada := collectCanaries(t, c, "ada")
			c.Close()
			newKey := []byte("the key after the rotation, 32 b")
			err := privacy.RotateKey(ctx, newKey, p.keyed(privacy.WithKey(testKey))...) // WithKeyring forgotten
			if err != nil {
				return // refused: what the invariant asks
			}
			e, err := keys.Keyring().Get(ctx, ada.ID)
			must(t, err)
			old, err := keyring.NewLocalKeeper(testKey)
			must(t, err)
			if _, err := old.Decrypt(ctx, e.Wrapped); err == nil {
				t.Error("RotateKey succeeded, and the old key alone still unwraps ada's data key in the deployment's keyring")
			}
		})
	}
}

// TestSealKeyringMovedOutDestroysData: the other direction of the same
// defect, by following the README ("WithKeyring puts it in another database,
// so that a backup of the data holds no key"): a deployment started with the
// Store's own keyring moves to a keyring of its own database. Nothing carries
// the keys over, and nothing notices: New passes (the new keyring's keeper
// check is written fresh), and each person's next message deletes their
// readable sealed values as shredded.
func TestSealKeyringMovedOutDestroysData(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s := newSite(t, d.dialect)
			p := s.open(t)
			ctx := t.Context()
			c1 := p.controller(t, nil) // the Store's own keyring
			collectCanaries(t, c1, "ada")
			c1.Close()

			keys := separateKeyring(t, s, p)
			c2, err := privacy.New(append(p.keyed(privacy.WithKey(testKey)), privacy.WithKeyring(keys.Keyring()))...)
			if err != nil {
				return // refused: the keys were not carried over
			}
			t.Cleanup(func() { c2.Close() })
			_ = c2.Collect(ctx, privacy.Identify{MessageID: "ada-plan", UserID: "ada", Traits: map[string]any{"plan": "pro"}, Timestamp: encTS.Add(time.Hour)}) // the data must survive whatever it answered
			var notes int
			must(t, p.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM `+s.table("profile_messages")+` WHERE message_id = 'ada-t'`)).Scan(&notes))
			if notes != 1 {
				t.Errorf("ada's note (message ada-t) has %d rows after her trait update through the moved keyring; want it kept", notes)
			}
			back := p.controller(t, nil) // back to the own keyring, which still holds her first key
			checkCanariesRead(t, back, "ada")
		})
	}
}

// TestSealRightsOnRestoredShredded: over a restored backup that holds people
// erased since, with the live keyring: their erasure finishes again, they
// are not known to Access, and one who comes back in a batch is collected
// and read.
func TestSealRightsOnRestoredShredded(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s, p, keys, c := keptApart(t, d.dialect)
			ctx := t.Context()
			for _, u := range []string{"ada", "bob", "cy"} {
				collectCanaries(t, c, u)
			}
			restore := backup(t, s, p)
			for _, u := range []string{"ada", "bob", "cy"} {
				eraseFinished(t, c, u)
			}
			c.Close()
			restored, _ := restore()
			rc := openRestored(t, restored, keys)
			r, err := rc.Erase(ctx, uid("ada"))
			if err != nil || r.Status != privacy.Finished {
				t.Errorf("Erase of a shredded person in a restored backup = %v, %v; want FINISHED", r, err)
			}
			if _, err := rc.Access(ctx, uid("cy")); !errors.Is(err, privacy.ErrNotFound) {
				t.Errorf("Access(cy), erased, on the restored backup = %v; want ErrNotFound", err)
			}
			// Batch: cy comes back in a batch with a trait and an event.
			err = rc.CollectBatch(ctx, []privacy.Message{
				privacy.Identify{MessageID: "cy-back", UserID: "cy", Traits: map[string]any{"plan": "pro"}, Timestamp: encTS.Add(time.Hour)},
				privacy.Track{MessageID: "cy-back-t", UserID: "cy", Event: "E", Properties: map[string]any{"a": "b"}, Timestamp: encTS.Add(time.Hour)},
			})
			if err != nil {
				t.Errorf("CollectBatch of returning cy: %v", err)
			}
			if _, err := rc.Events(ctx, uid("cy"), profile.EventQuery{}); err != nil {
				t.Errorf("Events(cy) after batch: %v", err)
			}
		})
	}
}

// TestSealReturningVisitorBatchMergeAfterRestore: the same sign-in as
// TestSealReturningVisitorMergeAfterRestore, through CollectBatch: the
// message fails the same way, at every retry.
func TestSealReturningVisitorBatchMergeAfterRestore(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s, p, keys, c := keptApart(t, d.dialect)
			ctx := t.Context()
			anon := identity.ID{Type: identity.TypeAnonymousID, Value: "anon-7"}
			must(t, c.Collect(ctx, privacy.Track{MessageID: "ada-t", UserID: "ada", Event: "Note Taken",
				Properties: map[string]any{"note": canaryProp + "-ada"}, Timestamp: encTS}))
			must(t, c.Collect(ctx, privacy.Track{MessageID: "v-1", AnonymousID: "anon-7", Event: "Page Viewed",
				Properties: map[string]any{"path": "/p/1"}, Timestamp: encTS}))
			restore := backup(t, s, p)
			eraseFinished(t, c, "ada")
			r, err := c.Erase(ctx, anon)
			must(t, err)
			if r.Status != privacy.Finished {
				t.Fatal(r.Status)
			}
			c.Close()
			restored, _ := restore()
			rc := openRestored(t, restored, keys)
			err = rc.CollectBatch(ctx, []privacy.Message{privacy.Identify{MessageID: "login", UserID: "ada", AnonymousID: "anon-7",
				Traits: map[string]any{"plan": "pro"}, Timestamp: encTS.Add(24 * time.Hour)}})
			if err != nil {
				t.Errorf("CollectBatch sign-in: %v", err)
			}
		})
	}
}

// TestSealBatchSameNewPersonTwice: one new person twice in one batch, with
// the Store's own keyring and with one kept apart: one key, everything read
// back.
func TestSealBatchSameNewPersonTwice(t *testing.T) {
	for _, d := range testDialects {
		for _, apart := range []bool{false, true} {
			t.Run(fmt.Sprint(d.name, apart), func(t *testing.T) {
				s := newSite(t, d.dialect)
				p := s.open(t)
				var c *privacy.Controller
				if apart {
					c = p.controller(t, nil, privacy.WithKeyring(separateKeyring(t, s, p).Keyring()))
				} else {
					c = p.controller(t, nil)
				}
				ctx := t.Context()
				must(t, c.CollectBatch(ctx, []privacy.Message{
					privacy.Identify{MessageID: "a1", UserID: "zed", Traits: map[string]any{"x": "1"}, Timestamp: encTS},
					privacy.Track{MessageID: "a2", UserID: "zed", Event: "E", Properties: map[string]any{"p": "q"}, Timestamp: encTS},
					privacy.Identify{MessageID: "a3", UserID: "zed", AnonymousID: "an-z", Traits: map[string]any{"y": "2"}, Timestamp: encTS.Add(time.Second)},
					privacy.Track{MessageID: "a4", AnonymousID: "an-z", Event: "F", Properties: map[string]any{"r": "s"}, Timestamp: encTS},
				}))
				pr, err := c.Profile(ctx, uid("zed"))
				must(t, err)
				if pr.Traits["x"].Value != "1" || pr.Traits["y"].Value != "2" {
					t.Errorf("traits %+v", pr.Traits)
				}
				page, err := c.Events(ctx, uid("zed"), profile.EventQuery{})
				must(t, err)
				if len(page.Events) != 2 {
					t.Errorf("events %+v", page.Events)
				}
			})
		}
	}
}

// TestSealCheckKeeperRace: two hosts with different keepers start at once on
// an empty keyring: at most one is let in, the other refused with
// ErrKeyMismatch.
func TestSealCheckKeeperRace(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			for i := range 8 {
				s := newSite(t, d.dialect)
				ka, _ := keyring.NewLocalKeeper([]byte(fmt.Sprint("keeper A key long enough ", i)))
				kb, _ := keyring.NewLocalKeeper([]byte(fmt.Sprint("keeper B key long enough ", i)))
				pa, pb := s.open(t), s.open(t)
				var wg sync.WaitGroup
				var ea, eb error
				start := make(chan struct{})
				run := func(p *proc, k keyring.Keeper, out *error) {
					defer wg.Done()
					<-start
					opts := []privacy.Option{privacy.WithBackends(p.data), privacy.WithKey(testKey), privacy.WithKeeper(k)}
					if p.jrnl != p.data {
						opts = append(opts, privacy.WithJournal(p.jrnl.Journal()), privacy.WithAuditLog(p.jrnl.AuditLog()))
					}
					c, err := privacy.New(opts...)
					if err == nil {
						c.Close()
					}
					*out = err
				}
				wg.Add(2)
				go run(pa, ka, &ea)
				go run(pb, kb, &eb)
				close(start)
				wg.Wait()
				if ea == nil && eb == nil {
					t.Fatalf("round %d: both hosts, with different keepers, started", i)
				}
				for _, e := range []error{ea, eb} {
					if e != nil && !errors.Is(e, privacy.ErrKeyMismatch) {
						t.Errorf("round %d: refused with %v; want ErrKeyMismatch", i, e)
					}
				}
			}
		})
	}
}

// TestSealMergeIntoKeyless: a merge into a profile that has no key yet, with
// each keyring; then an erasure leaves no key and a backup from before the
// merge reads nothing.
func TestSealMergeIntoKeyless(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s, p, keys, c := keptApart(t, d.dialect)
			ctx := t.Context()
			anon := identity.ID{Type: identity.TypeAnonymousID, Value: "anon-k"}
			must(t, c.Collect(ctx, privacy.Identify{MessageID: "ada-i", UserID: "ada", Timestamp: encTS}))
			for i := range 3 {
				must(t, c.Collect(ctx, privacy.Track{MessageID: fmt.Sprint("v", i), AnonymousID: "anon-k", Event: "V",
					Properties: map[string]any{"path": fmt.Sprint("/secret/", i)}, Timestamp: encTS}))
			}
			restore := backup(t, s, p)
			must(t, c.Collect(ctx, privacy.Identify{MessageID: "login", UserID: "ada", AnonymousID: "anon-k", Timestamp: encTS.Add(time.Hour)}))
			page, err := c.Events(ctx, uid("ada"), profile.EventQuery{})
			must(t, err)
			if len(page.Events) != 3 {
				t.Errorf("events after merge: %+v", page.Events)
			}
			eraseFinished(t, c, "ada")
			if n := countKeys(t, keys); n != 0 {
				t.Errorf("keys after erasure: %d", n)
			}
			c.Close()
			restored, _ := restore()
			rc := openRestored(t, restored, keys)
			if page, err := rc.Events(ctx, anon, profile.EventQuery{}); err == nil && len(page.Events) > 0 {
				t.Errorf("restored backup reads erased events: %+v", page.Events)
			}
		})
	}
}

// TestSealAudiencesOverShredded: audiences over a restored backup holding a
// shredded person count only the others.
func TestSealAudiencesOverShredded(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s, p, keys, c := keptApart(t, d.dialect)
			ctx := t.Context()
			for _, u := range []string{"ada", "bob"} {
				must(t, c.Collect(ctx, privacy.Identify{MessageID: u + "-i", UserID: u, Traits: map[string]any{"plan": "pro"}, Timestamp: encTS}))
			}
			restore := backup(t, s, p)
			eraseFinished(t, c, "ada")
			c.Close()
			restored, _ := restore()
			rc := openRestored(t, restored, keys)
			must(t, rc.DefineAudience(ctx, audienceDef("pro2", `trait('plan') = 'pro'`)))
			if _, err := rc.Refresh(ctx); err != nil {
				t.Errorf("Refresh over a restored backup with a shredded person: %v", err)
			}
			m, err := rc.Members(ctx, "pro2")
			if err != nil || len(m) != 1 {
				t.Errorf("over a restored backup with one shredded person, the audience of bob's plan = %v, %v; want bob", m, err)
			}
		})
	}
}

func audienceDef(key, q string) audience.Definition { return audience.Definition{Key: key, Query: q} }
