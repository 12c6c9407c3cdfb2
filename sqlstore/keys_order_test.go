package sqlstore_test

import (
	"errors"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
)

// TestKeyRotationKeepsRequestOrder: an UNSUPPRESS recorded (intent only, host dies) by an old-key host in
// the rotation's window; then a SUPPRESS of the same person, received
// later, decided under the old key in the same window. Recovered after the
// rotation, the older UNSUPPRESS must be superseded by the newer SUPPRESS
// (as it is without a rotation). The control runs the same without rotating.
func TestKeyRotationKeepsRequestOrder(t *testing.T) {
	for _, rotate := range []bool{false, true} {
		for _, d := range testDialects {
			t.Run(d.name+map[bool]string{false: "/no-rotation", true: "/rotated"}[rotate], func(t *testing.T) {
				ctx := t.Context()
				s, p := keyedSite(t, d.dialect)
				u := identity.ID{Type: identity.TypeEmail, Value: "objects-last@example.com"}

				pa := s.open(t)
				a, err := privacy.New(pa.keyed(privacy.WithKey(oldKey), privacy.WithLease(time.Hour),
					privacy.WithJournal(&dyingJournal{Journal: pa.jrnl.Journal()}))...)
				must(t, err)
				pb := s.open(t)
				b, err := privacy.New(pb.keyed(privacy.WithKey(oldKey))...)
				must(t, err)
				window := func() {
					_, _ = a.Unsuppress(ctx, u) // intent recorded, then the host dies
					time.Sleep(2 * time.Millisecond)
					if r, err := b.Suppress(ctx, u); err != nil || r.Status != privacy.Finished {
						t.Errorf("the newer Suppress = %+v, %v", r, err)
					}
					b.Close()
				}
				opts := rotateWithWindow(t, p, rotate, window)
				c, err := privacy.New(append(opts, privacy.WithClock(func() time.Time { return time.Now().Add(2 * time.Hour) }))...)
				must(t, err)
				defer c.Close()
				if n, err := c.Recover(ctx); n != 1 || err != nil {
					t.Errorf("Recover = %d, %v; want the dead host's UNSUPPRESS", n, err)
				}
				err = c.Collect(ctx, privacy.Identify{MessageID: "x1", UserID: "someone", Timestamp: time.Now(),
					Traits: map[string]any{"email": u.Value}})
				if !errors.Is(err, privacy.ErrSuppressed) {
					t.Errorf("a SUPPRESS received after the recovered UNSUPPRESS was undone: Collect = %v; want ErrSuppressed", err)
				}
			})
		}
	}
}

// TestKeyRotationKeepsRectificationOrder: a RECTIFY recorded (intent only, host dies) by an old-key host in the
// rotation's window; then a newer RECTIFY of the same trait (or an erasure)
// decided under the old key in the window. Recovered after the rotation, the
// older rectification must leave the newer value (must not write onto the
// person seen again after the erasure).
func TestKeyRotationKeepsRectificationOrder(t *testing.T) {
	for _, newer := range []string{"rectify", "erase"} {
		for _, rotate := range []bool{false, true} {
			for _, d := range testDialects {
				t.Run(newer+"/"+d.name+map[bool]string{false: "/no-rotation", true: "/rotated"}[rotate], func(t *testing.T) {
					ctx := t.Context()
					s := newSite(t, d.dialect)
					p := s.open(t)
					uid := identity.ID{Type: identity.TypeUserID, Value: "rectified-twice"}
					c, err := privacy.New(p.keyed(privacy.WithKey(oldKey))...)
					must(t, err)
					must(t, c.Collect(ctx, privacy.Identify{MessageID: "m1", UserID: uid.Value, Timestamp: time.Now().Add(-time.Minute),
						Traits: map[string]any{"name": "original"}}))
					must(t, c.Close())

					pa := s.open(t)
					a, err := privacy.New(pa.keyed(privacy.WithKey(oldKey), privacy.WithLease(time.Hour),
						privacy.WithJournal(&dyingJournal{Journal: pa.jrnl.Journal()}))...)
					must(t, err)
					pb := s.open(t)
					b, err := privacy.New(pb.keyed(privacy.WithKey(oldKey))...)
					must(t, err)
					window := func() {
						_, _ = a.Rectify(ctx, uid, map[string]any{"name": "older"})
						time.Sleep(2 * time.Millisecond)
						var r *privacy.Receipt
						var err error
						if newer == "rectify" {
							r, err = b.Rectify(ctx, uid, map[string]any{"name": "newer"})
						} else {
							r, err = b.Apply(ctx, privacy.Request{Type: privacy.DeleteInternal, Subjects: []identity.ID{uid}})
						}
						if err != nil || r.Status != privacy.Finished {
							t.Errorf("the newer request = %+v, %v", r, err)
						}
						b.Close()
					}
					opts := rotateWithWindow(t, p, rotate, window)
					c, err = privacy.New(append(opts, privacy.WithClock(func() time.Time { return time.Now().Add(2 * time.Hour) }))...)
					must(t, err)
					defer c.Close()
					want := "newer"
					if newer == "erase" {
						want = "after-erasure"
						// The same user id seen again after the erasure: new data.
						must(t, c.Collect(ctx, privacy.Identify{MessageID: "m2", UserID: uid.Value, Timestamp: time.Now(),
							Traits: map[string]any{"name": "after-erasure"}}))
					}
					if n, err := c.Recover(ctx); n != 1 || err != nil {
						t.Errorf("Recover = %d, %v", n, err)
					}
					pkg, err := c.Access(ctx, uid)
					must(t, err)
					if got := pkg.Profile.Traits["name"].Value; got != want {
						t.Errorf("name = %v after recovering the older rectification; want %q", got, want)
					}
				})
			}
		}
	}
}

// TestKeyTwoRotationsAccessAndUnsuppress: two rotations. Access lists
// requests made under each of the three keys; an objection lifted under key 3
// lifts what was suppressed together under key 1.
func TestKeyTwoRotationsAccessAndUnsuppress(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			ctx := t.Context()
			s := newSite(t, d.dialect)
			p := s.open(t)
			k1 := p.keyed(privacy.WithKey(oldKey))
			k2 := p.keyed(privacy.WithKey(newKey), privacy.WithPreviousKeys(oldKey))
			k3 := p.keyed(privacy.WithKey(thirdKey), privacy.WithPreviousKeys(oldKey, newKey))
			uid := identity.ID{Type: identity.TypeUserID, Value: "kept"}
			gone := identity.ID{Type: identity.TypeUserID, Value: "gone"}
			goneMail := identity.ID{Type: identity.TypeEmail, Value: "gone@example.com"}

			c, err := privacy.New(k1...)
			must(t, err)
			must(t, c.Collect(ctx, privacy.Identify{MessageID: "m1", UserID: uid.Value, Timestamp: time.Now(), Traits: map[string]any{"name": "a"}}))
			must(t, c.Collect(ctx, privacy.Identify{MessageID: "m2", UserID: gone.Value, Timestamp: time.Now(), Traits: map[string]any{"email": goneMail.Value}}))
			r1, err := c.Rectify(ctx, uid, map[string]any{"name": "b"})
			must(t, err)
			_, err = c.Apply(ctx, privacy.Request{Type: privacy.SuppressWithDelete, Subjects: []identity.ID{gone}})
			must(t, err)
			must(t, c.Close())
			must(t, privacy.RotateKey(ctx, newKey, k1...))

			c, err = privacy.New(k2...)
			must(t, err)
			r2, err := c.Suppress(ctx, uid)
			must(t, err)
			r3, err := c.Unsuppress(ctx, uid)
			must(t, err)
			must(t, c.Close())
			must(t, privacy.RotateKey(ctx, thirdKey, k2...))

			c, err = privacy.New(k3...)
			must(t, err)
			defer c.Close()
			r4, err := c.Rectify(ctx, uid, map[string]any{"name": "c"})
			must(t, err)
			pkg, err := c.Access(ctx, uid)
			must(t, err)
			got := map[string]bool{}
			for _, r := range pkg.Requests {
				got[r.ID] = true
			}
			for _, r := range []*privacy.Receipt{r1, r2, r3, r4} {
				if !got[r.ID] {
					t.Errorf("Access does not list %s (%s)", r.ID, r.Type)
				}
			}
			if r, err := c.Unsuppress(ctx, goneMail); err != nil || r.Status != privacy.Finished {
				t.Fatalf("Unsuppress = %+v, %v", r, err)
			}
			if err := c.Collect(ctx, privacy.Identify{MessageID: "m3", UserID: gone.Value, Timestamp: time.Now()}); err != nil {
				t.Errorf("after Unsuppress(email) under key 3: Collect by the user id suppressed together under key 1 = %v", err)
			}
			if n, err := c.VerifyAudit(ctx); err != nil {
				t.Errorf("VerifyAudit = %d, %v", n, err)
			}
		})
	}
}

// TestKeyRotationStaleHostAccess: a host left running through a rotation
// (before its tick) is asked for an Access: it fails with ErrKeyMismatch,
// rather than return an export missing the person's requests made under the
// new key.
func TestKeyRotationStaleHostAccess(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			ctx := t.Context()
			s := newSite(t, d.dialect)
			p := s.open(t)
			uid := identity.ID{Type: identity.TypeUserID, Value: "asks-twice"}
			pa := s.open(t)
			a, err := privacy.New(pa.keyed(privacy.WithKey(oldKey), privacy.WithLease(time.Hour))...)
			must(t, err)
			defer a.Close()
			must(t, a.Collect(ctx, privacy.Identify{MessageID: "m1", UserID: uid.Value, Timestamp: time.Now(), Traits: map[string]any{"name": "a"}}))
			must(t, privacy.RotateKey(ctx, newKey, p.keyed(privacy.WithKey(oldKey))...))
			b, err := privacy.New(p.keyed(privacy.WithKey(newKey), privacy.WithPreviousKeys(oldKey))...)
			must(t, err)
			defer b.Close()
			r, err := b.Rectify(ctx, uid, map[string]any{"name": "b"})
			must(t, err)
			pkg, err := a.Access(ctx, uid)
			if err == nil {
				listed := false
				for _, q := range pkg.Requests {
					listed = listed || q.ID == r.ID
				}
				t.Errorf("the stale host's Access succeeded (err nil; want ErrKeyMismatch); it lists the rectification made under the new key: %v", listed)
			}
		})
	}
}

// TestKeyUnsuppressAcrossKeys: suppressed under key 1 (with a second identifier, erased), suppressed
// again under key 2, then unsuppressed under key 2: both identifiers
// collected again; and an Unsuppress older than a key-2 Suppress leaves it.
func TestKeyUnsuppressAcrossKeys(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			ctx := t.Context()
			s := newSite(t, d.dialect)
			p := s.open(t)
			uid := identity.ID{Type: identity.TypeUserID, Value: "twice"}
			mail := identity.ID{Type: identity.TypeEmail, Value: "twice@example.com"}
			c, err := privacy.New(p.keyed(privacy.WithKey(oldKey))...)
			must(t, err)
			must(t, c.Collect(ctx, privacy.Identify{MessageID: "m1", UserID: uid.Value, Timestamp: time.Now(), Traits: map[string]any{"email": mail.Value}}))
			_, err = c.Apply(ctx, privacy.Request{Type: privacy.SuppressWithDelete, Subjects: []identity.ID{uid}})
			must(t, err)
			must(t, c.Close())
			must(t, privacy.RotateKey(ctx, newKey, p.keyed(privacy.WithKey(oldKey))...))
			c, err = privacy.New(p.keyed(privacy.WithKey(newKey), privacy.WithPreviousKeys(oldKey))...)
			must(t, err)
			defer c.Close()
			_, err = c.Suppress(ctx, mail)
			must(t, err)
			r, err := c.Unsuppress(ctx, mail)
			if err != nil || r.Status != privacy.Finished {
				t.Fatalf("Unsuppress = %+v %v", r, err)
			}
			for i, id := range []identity.ID{uid, mail} {
				m := privacy.Identify{MessageID: "n" + string(rune('a'+i)), Timestamp: time.Now()}
				if id == uid {
					m.UserID = uid.Value
				} else {
					m.AnonymousID = "anon"
					m.Traits = map[string]any{"email": mail.Value}
				}
				if err := c.Collect(ctx, m); err != nil {
					t.Errorf("Collect %s after Unsuppress = %v", id.Type, err)
				}
			}
			// suppress again under key 2; nothing older undoes it
			_, err = c.Suppress(ctx, uid)
			must(t, err)
			if err := c.Collect(ctx, privacy.Identify{MessageID: "z", UserID: uid.Value, Timestamp: time.Now()}); !errors.Is(err, privacy.ErrSuppressed) {
				t.Errorf("after a new suppression: %v", err)
			}
		})
	}
}
