package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/sqlstore"
)

// TestSealedIDsClearLinkBeforeUpgradeResolves: a person collected in clear (a Store
// given no keys: before the upgrade) comes back after it, sealed: every path
// resolves them to their old profile, their identifiers read back, and a new
// identifier joins them; no second profile.
func TestSealedIDsClearLinkBeforeUpgradeResolves(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s := newSite(t, d.dialect)
			ctx := t.Context()
			p0 := s.open(t)
			c0 := p0.controller(t, nil, privacy.WithoutEncryption())
			must(t, c0.Collect(ctx, privacy.Identify{MessageID: "old-1", UserID: "ada", AnonymousID: "anon-old",
				Traits: map[string]any{"email": "ada@example.com", "plan": "free"}, Timestamp: encTS}))
			old, err := c0.Profile(ctx, uid("ada"))
			must(t, err)
			c0.Close()
			p0.close()

			p := s.open(t)
			c := p.controller(t, nil)
			email := identity.ID{Type: identity.TypeEmail, Value: "ada@example.com"}
			anon := identity.ID{Type: identity.TypeAnonymousID, Value: "anon-old"}
			must(t, c.Collect(ctx, privacy.Identify{MessageID: "new-1", UserID: "ada", Traits: map[string]any{"plan": "pro"}, Timestamp: encTS.Add(time.Hour)}))
			must(t, c.Collect(ctx, privacy.Track{MessageID: "new-2", AnonymousID: "anon-old", Event: "E", Timestamp: encTS.Add(2 * time.Hour)}))
			must(t, c.CollectBatch(ctx, []privacy.Message{
				privacy.Identify{MessageID: "new-3", AnonymousID: "anon-new", Traits: map[string]any{"email": "ada@example.com"}, Timestamp: encTS.Add(3 * time.Hour)},
				privacy.Track{MessageID: "new-4", UserID: "ada", Event: "F", Timestamp: encTS.Add(3 * time.Hour)},
			}))
			for _, id := range []identity.ID{uid("ada"), email, anon, {Type: identity.TypeAnonymousID, Value: "anon-new"}} {
				pid, err := p.data.Graph().Lookup(ctx, id)
				if err != nil || pid != old.ID {
					t.Errorf("Lookup(%s) = %s, %v; want the old profile %s", id.Type, pid, err, old.ID)
				}
			}
			var n int
			must(t, p.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM `+s.table("identity_profiles"))).Scan(&n))
			if n != 1 {
				t.Errorf("%d profiles; want 1", n)
			}
			must(t, p.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM `+s.table("identity_links"))).Scan(&n))
			if n != 4 {
				t.Errorf("%d links; want 4 (ada, her email, two anonymous ids)", n)
			}
		})
	}
}

// TestSealedIDsUnsealedHostBesideSealedData: the data is sealed; a host is
// started WithoutEncryption on it (a tool, a rolling deployment, a
// mistake). It does not see the sealed identifiers (their rows hold an
// index), and links the same person's identifier again, in clear, to a new
// profile: one person, two profiles, and the sealed hosts resolve the
// identifier to either.
//
// Invariant: the same identifier always resolves to one profile; a host
// that cannot read the data's form is refused (as a host given another
// keyring is: ErrKeyMismatch).
func TestSealedIDsUnsealedHostBesideSealedData(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s := newSite(t, d.dialect)
			ctx := t.Context()
			p := s.open(t)
			c := p.controller(t, nil)
			ada := collectCanaries(t, c, "ada")

			p2 := s.open(t)
			opts := []privacy.Option{privacy.WithIdentity(p2.data.Graph()), privacy.WithProfiles(p2.data.Profiles()),
				privacy.WithAudiences(p2.data.Audiences()), privacy.WithSuppressions(p2.data.Suppressions()),
				privacy.WithJournal(p2.jrnl.Journal()), privacy.WithAuditLog(p2.jrnl.AuditLog()), privacy.WithOutbox(p2.data.Outbox()),
				privacy.WithKey(testKey), privacy.WithoutEncryption()}
			if _, err := privacy.New(opts...); !errors.Is(err, privacy.ErrKeyMismatch) {
				t.Fatalf("New WithoutEncryption over sealed data = %v; want ErrKeyMismatch", err)
			}
			// A profile store that cannot seal, beside the sealing graph.
			opts[1] = privacy.WithProfiles(profile.NewMemStore())
			if _, err := privacy.New(opts[:len(opts)-1]...); !errors.Is(err, privacy.ErrKeyMismatch) {
				t.Errorf("New with an in-memory profile store over sealed identifiers = %v; want ErrKeyMismatch", err)
			}
			var n int
			must(t, p.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM `+s.table("identity_profiles"))).Scan(&n))
			if n != 1 {
				t.Errorf("%d profiles for one person (ada's is %s)", n, ada.ID)
			}
		})
	}
}

// TestSealedIDsReturnAfterRestoreClearAnonSealedEmail: a visitor was first seen in
// clear (before the upgrade: their anonymous id's link is in clear); after
// it they gave their email (a sealed link, under their new data key). Ada,
// a user, is collected too. The visitor is erased (key destroyed); the
// backup from before the erasure is restored. The visitor comes back and
// signs in as ada: their old profile is found by its clear link, and its
// merge with ada's fails on the sealed email link no key opens
// (resealLinks -> openLinks), at every retry.
//
// Invariant: rows sealed under a destroyed key are as good as absent: a
// person who comes back is collected, whatever path their messages take.
func TestSealedIDsReturnAfterRestoreClearAnonSealedEmail(t *testing.T) {
	for _, d := range testDialects {
		for _, batch := range []bool{false, true} {
			t.Run(fmt.Sprint(d.name, "/batch=", batch), func(t *testing.T) {
				ctx := t.Context()
				rc, _ := restoredMixedVisitor(t, d.dialect, func(c *privacy.Controller) {
					must(t, c.Collect(ctx, privacy.Identify{MessageID: "ada-1", UserID: "ada", Traits: map[string]any{"plan": "free"}, Timestamp: encTS}))
				})
				var err error
				login := privacy.Identify{MessageID: "login", UserID: "ada", AnonymousID: "anon-9", Traits: map[string]any{"plan": "pro"},
					Timestamp: encTS.Add(24 * time.Hour)}
				for try := range 2 {
					if batch {
						err = rc.CollectBatch(ctx, []privacy.Message{login})
					} else {
						err = rc.Collect(ctx, login)
					}
					if err != nil {
						t.Errorf("try %d: the returning visitor's sign-in: %v", try, err)
					}
				}
				if pr, err := rc.Profile(ctx, uid("ada")); err != nil || pr.Traits["plan"].Value != "pro" {
					t.Errorf("Profile(ada) after she came back = %+v, %v; want her plan", pr, err)
				}
			})
		}
	}
}

// TestSealedIDsTwoProcessesSameNewIdentifiers: two processes on one PostgreSQL
// collect batches naming the same new identifiers at once: one profile per
// person.
func TestSealedIDsTwoProcessesSameNewIdentifiers(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	ctx := t.Context()
	c1 := s.open(t).controller(t, nil)
	c2 := s.open(t).controller(t, nil)
	const people = 40
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i, c := range []*privacy.Controller{c1, c2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var msgs []privacy.Message
			for j := range people {
				msgs = append(msgs, privacy.Identify{MessageID: fmt.Sprint("m", i, "-", j), UserID: fmt.Sprint("u", j),
					Traits: map[string]any{"email": fmt.Sprint("u", j, "@example.com"), "n": i}, Timestamp: encTS})
			}
			for try := 0; ; try++ {
				err := c.CollectBatch(ctx, msgs)
				if err == nil || try > 5 {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("CollectBatch: %v", err)
		}
	}
	p := s.open(t)
	var n int
	must(t, p.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM `+s.table("identity_profiles"))).Scan(&n))
	if n != people {
		t.Errorf("%d profiles for %d people", n, people)
	}
	must(t, p.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM `+s.table("identity_links"))).Scan(&n))
	if n != 2*people {
		t.Errorf("%d links for %d people with 2 identifiers", n, people)
	}
	for j := range people {
		pr, err := c1.Profile(ctx, identity.ID{Type: identity.TypeEmail, Value: fmt.Sprint("u", j, "@example.com")})
		if err != nil {
			t.Errorf("Profile by email u%d: %v", j, err)
			continue
		}
		if pr2, err := c2.Profile(ctx, uid(fmt.Sprint("u", j))); err != nil || pr2.ID != pr.ID {
			t.Errorf("u%d: by email %s, by user id %v %v", j, pr.ID, pr2, err)
		}
	}
}

// TestSealedIDsNoIdentifierInErrors: the errors of sealed links name no identifier
// value: a conflict, a link to a missing profile.
func TestSealedIDsNoIdentifierInErrors(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s := newSite(t, d.dialect)
			ctx := t.Context()
			p := s.open(t)
			c := p.controller(t, nil)
			must(t, c.Collect(ctx, privacy.Identify{MessageID: "a", UserID: "secret-user-a", Timestamp: encTS}))
			must(t, c.Collect(ctx, privacy.Identify{MessageID: "b", UserID: "secret-user-b", Timestamp: encTS}))
			g := p.data.Graph()
			pa, err := g.Lookup(ctx, uid("secret-user-a"))
			must(t, err)
			tx, err := g.Begin(ctx)
			must(t, err)
			defer tx.Rollback(ctx)
			for _, try := range []struct {
				pid identity.ProfileID
				id  string
			}{{pa, "secret-user-b"}, {"no-such-profile", "secret-user-c"}} {
				err := tx.Link(ctx, try.pid, identity.Link{ID: uid(try.id), LinkedAt: encTS})
				if err == nil {
					t.Errorf("Link %s: no error", try.id)
				} else if strings.Contains(err.Error(), "secret-user") {
					t.Errorf("the error names the identifier: %v", err)
				}
			}
			_, err = tx.Lookup(ctx, uid("secret-user-z"))
			if err != nil && strings.Contains(err.Error(), "secret-user") {
				t.Errorf("Lookup error names the identifier: %v", err)
			}
		})
	}
}

var _ = profile.EventQuery{}

// TestSealedIDsRestoredMixedProfileOtherPaths: the restored visitor of
// TestSealedIDsReturnAfterRestoreClearAnonSealedEmail (a clear anonymous link, a
// sealed email link, no key) comes back by the anonymous id alone, and is
// erased again (the restored backup holds their pre-upgrade event in clear).
func TestSealedIDsRestoredMixedProfileOtherPaths(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			ctx := t.Context()
			rc, anon := restoredMixedVisitor(t, d.dialect, nil)
			if err := rc.Collect(ctx, privacy.Track{MessageID: "v-2", AnonymousID: "anon-9", Event: "Back", Timestamp: encTS.Add(24 * time.Hour)}); err != nil {
				t.Errorf("the visitor back by their anonymous id: %v", err)
			}
			if r, err := rc.Erase(ctx, anon); err != nil || r.Status != privacy.Finished {
				t.Errorf("erasing the visitor again on the restored backup = %+v, %v; want FINISHED", r, err)
			}
		})
	}
}

// TestSealedIDsRightsOverSealedIdentifiers: a sealed person known by a user id, an
// email and an anonymous id merged in: Access lists the identifiers in
// clear; suppressing the email refuses a message naming it; the erasure
// names every identifier to a destination.
func TestSealedIDsRightsOverSealedIdentifiers(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s := newSite(t, d.dialect)
			ctx := t.Context()
			p := s.open(t)
			rec := destination.NewRecorder("rec")
			c := p.controller(t, nil, privacy.WithDestinations(rec), privacy.WithDelivery(privacy.Delivery{Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Poll: 5 * time.Millisecond}))
			must(t, c.Collect(ctx, privacy.Track{MessageID: "v1", AnonymousID: "anon-r", Event: "E", Timestamp: encTS}))
			must(t, c.Collect(ctx, privacy.Identify{MessageID: "i1", UserID: "rita", Traits: map[string]any{"email": "rita@example.com"}, Timestamp: encTS.Add(time.Minute)}))
			must(t, c.Collect(ctx, privacy.Identify{MessageID: "i2", UserID: "rita", AnonymousID: "anon-r", Timestamp: encTS.Add(2 * time.Minute)}))
			email := identity.ID{Type: identity.TypeEmail, Value: "rita@example.com"}
			anon := identity.ID{Type: identity.TypeAnonymousID, Value: "anon-r"}
			want := map[identity.ID]bool{uid("rita"): true, email: true, anon: true}
			pkg, err := c.Access(ctx, anon)
			must(t, err)
			got := map[identity.ID]bool{}
			for _, e := range pkg.Profile.ExternalIDs {
				got[e.ID] = true
			}
			for id := range want {
				if !got[id] {
					t.Errorf("Access lists %+v; want %s:%s in clear", pkg.Profile.ExternalIDs, id.Type, id.Value)
				}
			}
			_, err = c.Suppress(ctx, email)
			must(t, err)
			err = c.Collect(ctx, privacy.Identify{MessageID: "i3", AnonymousID: "anon-other", Traits: map[string]any{"email": "rita@example.com"}, Timestamp: encTS.Add(time.Hour)})
			if !errors.Is(err, privacy.ErrSuppressed) {
				t.Errorf("Collect naming the suppressed email = %v; want ErrSuppressed", err)
			}
			err = c.CollectBatch(ctx, []privacy.Message{privacy.Track{MessageID: "i4", UserID: "rita", Event: "X", Timestamp: encTS.Add(time.Hour)}})
			if !errors.Is(err, privacy.ErrSuppressed) {
				t.Errorf("CollectBatch of the suppressed person = %v; want ErrSuppressed", err)
			}
			r, err := c.Erase(ctx, uid("rita"))
			must(t, err)
			_ = r
			must(t, c.Flush(ctx))
			dels := rec.Deletions()
			if len(dels) != 1 {
				t.Fatalf("deletions %+v", dels)
			}
			got = map[identity.ID]bool{}
			for _, id := range dels[0].IDs {
				got[id] = true
			}
			for id := range want {
				if !got[id] {
					t.Errorf("the deletion names %+v; want %s:%s in clear", dels[0].IDs, id.Type, id.Value)
				}
			}
		})
	}
}

// TestSealedIDsIndexAcrossRotationAndKeyrings: the index of an identifier is the
// same after RotateKey (the sealed person still resolves), and differs
// between two sites' keyrings.
func TestSealedIDsIndexAcrossRotationAndKeyrings(t *testing.T) {
	s := newSite(t, sqlstore.SQLite)
	ctx := t.Context()
	p := s.open(t)
	c, err := privacy.New(p.keyed(privacy.WithKey(testKey))...)
	must(t, err)
	must(t, c.Collect(ctx, privacy.Identify{MessageID: "a", UserID: "ivy", Traits: map[string]any{"email": "ivy@example.com"}, Timestamp: encTS}))
	c.Close()
	index := func(db interface {
		QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
	}, s *site) string {
		var v string
		must(t, db.QueryRowContext(ctx, s.q(`SELECT id_value FROM `+s.table("identity_links")+` WHERE id_type = 'email'`)).Scan(&v))
		return v
	}
	before := index(p.db, s)
	newKey := []byte("the key after the rotation, 32 b")
	must(t, privacy.RotateKey(ctx, newKey, p.keyed(privacy.WithKey(testKey))...))
	c2, err := privacy.New(p.keyed(privacy.WithKey(newKey), privacy.WithPreviousKeys(testKey))...)
	must(t, err)
	must(t, c2.Collect(ctx, privacy.Identify{MessageID: "b", AnonymousID: "anon-ivy", Traits: map[string]any{"email": "ivy@example.com"}, Timestamp: encTS.Add(time.Hour)}))
	pr, err := c2.Profile(ctx, uid("ivy"))
	must(t, err)
	pr2, err := c2.Profile(ctx, identity.ID{Type: identity.TypeAnonymousID, Value: "anon-ivy"})
	must(t, err)
	if pr.ID != pr2.ID {
		t.Errorf("after RotateKey the email resolves to %s, ivy is %s", pr2.ID, pr.ID)
	}
	c2.Close()
	if after := index(p.db, s); after != before {
		t.Errorf("index changed across RotateKey: %s -> %s", before, after)
	}
	s2 := newSite(t, sqlstore.SQLite)
	p2 := s2.open(t)
	c3, err := privacy.New(p2.keyed(privacy.WithKey(testKey))...)
	must(t, err)
	must(t, c3.Collect(ctx, privacy.Identify{MessageID: "a", UserID: "ivy", Traits: map[string]any{"email": "ivy@example.com"}, Timestamp: encTS}))
	c3.Close()
	if other := index(p2.db, s2); other == before {
		t.Errorf("two keyrings under the same WithKey give the same index %s", other)
	}
}

// TestSealedIDsBatchMergeKeepsIdentifiers: merges through CollectBatch, the
// absorbed profile holding sealed links: every identifier reads back and
// resolves to the one profile; a large batch then names them all again.
func TestSealedIDsBatchMergeKeepsIdentifiers(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s := newSite(t, d.dialect)
			ctx := t.Context()
			p := s.open(t)
			c := p.controller(t, nil)
			const n = 300
			var first, second, third []privacy.Message
			for i := range n {
				first = append(first, privacy.Track{MessageID: fmt.Sprint("a", i), AnonymousID: fmt.Sprint("anon-", i), Event: "V", Timestamp: encTS})
				second = append(second, privacy.Identify{MessageID: fmt.Sprint("b", i), UserID: fmt.Sprint("user-", i),
					Traits: map[string]any{"email": fmt.Sprint("e", i, "@example.com")}, Timestamp: encTS.Add(time.Minute)})
				third = append(third, privacy.Identify{MessageID: fmt.Sprint("c", i), UserID: fmt.Sprint("user-", i), AnonymousID: fmt.Sprint("anon-", i),
					Timestamp: encTS.Add(time.Hour)})
			}
			must(t, c.CollectBatch(ctx, first))
			must(t, c.CollectBatch(ctx, second))
			must(t, c.CollectBatch(ctx, third))
			var again []privacy.Message
			for i := range n {
				again = append(again, privacy.Identify{MessageID: fmt.Sprint("d", i), UserID: fmt.Sprint("user-", i), AnonymousID: fmt.Sprint("anon-", i),
					Traits: map[string]any{"email": fmt.Sprint("e", i, "@example.com"), "k": i}, Timestamp: encTS.Add(2 * time.Hour)})
			}
			must(t, c.CollectBatch(ctx, again))
			var np int
			must(t, p.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM `+s.table("identity_profiles"))).Scan(&np))
			if np != n {
				t.Errorf("%d profiles for %d people", np, n)
			}
			g := p.data.Graph()
			for i := range n {
				ids := []identity.ID{uid(fmt.Sprint("user-", i)), {Type: identity.TypeAnonymousID, Value: fmt.Sprint("anon-", i)},
					{Type: identity.TypeEmail, Value: fmt.Sprint("e", i, "@example.com")}}
				pid, err := g.Lookup(ctx, ids[0])
				must(t, err)
				node, err := g.Node(ctx, pid)
				if err != nil {
					t.Fatalf("Node %d: %v", i, err)
				}
				have := map[identity.ID]bool{}
				for _, l := range node.Links {
					have[l.ID] = true
				}
				for _, id := range ids {
					if !have[id] {
						t.Fatalf("person %d: links %+v; want %s:%s", i, node.Links, id.Type, id.Value)
					}
					if p2, err := g.Lookup(ctx, id); err != nil || p2 != pid {
						t.Fatalf("person %d: Lookup(%s) = %s, %v; want %s", i, id.Type, p2, err, pid)
					}
				}
			}
		})
	}
}

// TestSealedIDsRestoredMixedProfileNewIdentifier: the restored visitor of
// TestSealedIDsReturnAfterRestoreClearAnonSealedEmail signs up as a new user (no
// merge: a new identifier beside their anonymous id); Access by the
// anonymous id answers.
func TestSealedIDsRestoredMixedProfileNewIdentifier(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			ctx := t.Context()
			rc, anon := restoredMixedVisitor(t, d.dialect, nil)
			if _, err := rc.Access(ctx, anon); err != nil && !errors.Is(err, privacy.ErrNotFound) {
				t.Errorf("Access by the anonymous id on the restored backup: %v", err)
			}
			if err := rc.Collect(ctx, privacy.Identify{MessageID: "v-2", UserID: "newbie", AnonymousID: "anon-9", Timestamp: encTS.Add(24 * time.Hour)}); err != nil {
				t.Errorf("the visitor signs up as a new user: %v", err)
			}
		})
	}
}

// TestSealedIDsRestoredMixedProfileRights: on the restored backup of
// TestSealedIDsReturnAfterRestoreClearAnonSealedEmail, the erased visitor's
// pre-upgrade rows are in clear again (accepted), and found by their
// anonymous id: erasing or suppressing them again must work.
func TestSealedIDsRestoredMixedProfileRights(t *testing.T) {
	for _, d := range testDialects {
		for _, typ := range []privacy.RequestType{privacy.DeleteOnly, privacy.SuppressOnly} {
			t.Run(fmt.Sprint(d.name, "/", typ), func(t *testing.T) {
				ctx := t.Context()
				rc, anon := restoredMixedVisitor(t, d.dialect, nil)
				r, err := rc.Apply(ctx, privacy.Request{Type: typ, Subjects: []identity.ID{anon}})
				if err != nil || r.Status != privacy.Finished {
					t.Errorf("%s of the visitor on the restored backup = %+v, %v; want FINISHED", typ, r, err)
				}
			})
		}
	}
}

// restoredMixedVisitor makes the visitor of
// TestSealedIDsReturnAfterRestoreClearAnonSealedEmail: an anonymous id linked
// in clear (before sealing), then an email sealed beside it, the keyring kept
// apart; before runs on the sealed Controller (nil: nothing); a backup is
// taken, the visitor erased, and the backup restored and opened with the
// live keyring. It returns that Controller and the anonymous id.
func restoredMixedVisitor(t *testing.T, d sqlstore.Dialect, before func(c *privacy.Controller)) (*privacy.Controller, identity.ID) {
	t.Helper()
	s := newSite(t, d)
	ctx := t.Context()
	p0 := s.open(t)
	c0 := p0.controller(t, nil, privacy.WithoutEncryption())
	must(t, c0.Collect(ctx, privacy.Track{MessageID: "v-0", AnonymousID: "anon-9", Event: "Page Viewed", Timestamp: encTS}))
	c0.Close()
	p0.close()

	p := s.open(t)
	keys := separateKeyring(t, s, p)
	c := p.controller(t, nil, privacy.WithKeyring(keys.Keyring()))
	must(t, c.Collect(ctx, privacy.Identify{MessageID: "v-1", AnonymousID: "anon-9",
		Traits: map[string]any{"email": "visitor@example.com"}, Timestamp: encTS.Add(time.Minute)}))
	if before != nil {
		before(c)
	}
	restore := backup(t, s, p)
	anon := identity.ID{Type: identity.TypeAnonymousID, Value: "anon-9"}
	r, err := c.Erase(ctx, anon)
	must(t, err)
	if r.Status != privacy.Finished {
		t.Fatalf("erasure: %s", r.Status)
	}
	c.Close()
	restored, _ := restore()
	return openRestored(t, restored, keys), anon
}
