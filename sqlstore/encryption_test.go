package sqlstore_test

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/keyring"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/sqlstore"
	"github.com/gdprkit/privacy/txscope"
)

// Canary values: unique strings a dump or a file is searched for.
const (
	canaryTrait = "canary-trait-8c41f0"
	canaryProp  = "canary-property-5e9a27"
	canaryEmail = "canary-mail-3d72b1"
)

var encTS = time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)

// collectCanaries collects a person whose trait and event property are
// canaries, and returns their profile.
func collectCanaries(t *testing.T, c *privacy.Controller, user string) *profile.Profile {
	t.Helper()
	ctx := t.Context()
	must(t, c.Collect(ctx, privacy.Identify{MessageID: user + "-i", UserID: user,
		Traits: map[string]any{"favorite_color": canaryTrait + "-" + user, "email": emailOf(user)}, Timestamp: encTS}))
	must(t, c.Collect(ctx, privacy.Track{MessageID: user + "-t", UserID: user, Event: "Note Taken",
		Properties: map[string]any{"note": canaryProp + "-" + user}, Timestamp: encTS}))
	p, err := c.Profile(ctx, uid(user))
	must(t, err)
	return p
}

func uid(v string) identity.ID { return identity.ID{Type: identity.TypeUserID, Value: v} }

// emailOf is the user's canary email address, an identifier.
func emailOf(user string) string { return canaryEmail + "-" + user + "@example.com" }

// checkCanariesRead: the person's trait and event read back in clear through
// the Controller.
func checkCanariesRead(t *testing.T, c *privacy.Controller, user string) {
	t.Helper()
	ctx := t.Context()
	p, err := c.Profile(ctx, uid(user))
	if err != nil {
		t.Fatalf("Profile(%s): %v", user, err)
	}
	if got := p.Traits["favorite_color"].Value; got != canaryTrait+"-"+user {
		t.Errorf("%s's trait reads %v; want it in clear", user, got)
	}
	page, err := c.Events(ctx, uid(user), profile.EventQuery{})
	if err != nil {
		t.Fatalf("Events(%s): %v", user, err)
	}
	if len(page.Events) != 1 || page.Events[0].Properties["note"] != canaryProp+"-"+user {
		t.Errorf("%s's events read %+v; want the note in clear", user, page.Events)
	}
}

// TestSealedValuesNeverReachTheDatabase: a person's trait values and event
// properties are nowhere in the database in clear: not in a pg_dump of the
// schema, not in SQLite's files; the Controller reads them back in clear.
func TestSealedValuesNeverReachTheDatabase(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s := newSite(t, d.dialect)
			p := s.open(t)
			c := p.controller(t, nil)
			pr := collectCanaries(t, c, "ada")
			checkCanariesRead(t, c, "ada")
			dump := dumpSite(t, s, p)
			if !bytes.Contains(dump, []byte(pr.ID)) {
				t.Fatalf("the dump (%d bytes) does not hold the profile id %s: it is not of the data", len(dump), pr.ID)
			}
			for _, canary := range []string{canaryTrait, canaryProp, canaryEmail} {
				if bytes.Contains(dump, []byte(canary)) {
					t.Errorf("%q is in the database in clear", canary)
				}
			}
			// Identifiers are looked up by their blind index, and read back.
			byEmail, err := c.Profile(t.Context(), identity.ID{Type: identity.TypeEmail, Value: emailOf("ada")})
			if err != nil || byEmail.ID != pr.ID {
				t.Fatalf("Profile by ada's email = %v, %v; want her profile", byEmail, err)
			}
			node, err := p.data.Graph().Node(t.Context(), pr.ID)
			must(t, err)
			got := map[identity.ID]bool{}
			for _, l := range node.Links {
				got[l.ID] = true
			}
			if !got[uid("ada")] || !got[identity.ID{Type: identity.TypeEmail, Value: emailOf("ada")}] {
				t.Errorf("ada's identifiers read back as %+v; want her user id and email in clear", node.Links)
			}
		})
	}
}

// dumpSite returns what the site's databases hold, as bytes: a pg_dump of
// its schema (the journal's too), or SQLite's files, data and journal, after
// a checkpoint.
func dumpSite(t *testing.T, s *site, p *proc) []byte {
	t.Helper()
	if s.Dialect == sqlstore.Postgres {
		out, err := exec.Command("pg_dump", "--schema="+s.Schema, "--dbname="+s.DSN).Output()
		if err != nil {
			t.Fatalf("pg_dump: %v", err)
		}
		return out
	}
	for _, db := range []*sql.DB{p.db, p.jdb} {
		if _, err := db.ExecContext(t.Context(), "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
			t.Fatal(err)
		}
	}
	var all []byte
	for _, f := range []string{"data.db", "data.db-wal", "journal.db", "journal.db-wal"} {
		b, err := os.ReadFile(filepath.Join(s.Dir, f))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

// TestSealedValueMovedToAnotherRowFails: a sealed trait copied onto another
// profile's row, or onto another trait of its own profile, does not decrypt:
// the read fails, saying so, rather than showing another person's value.
func TestSealedValueMovedToAnotherRowFails(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s := newSite(t, d.dialect)
			p := s.open(t)
			c := p.controller(t, nil)
			ctx := t.Context()
			ada, bob := collectCanaries(t, c, "ada"), collectCanaries(t, c, "bob")
			traits := s.table("profile_traits")
			// Ada's sealed color onto Bob's row.
			_, err := p.db.ExecContext(ctx, s.q(`UPDATE `+traits+` SET sealed = (SELECT sealed FROM `+traits+`
				WHERE profile_id = $1 AND trait_key = 'favorite_color') WHERE profile_id = $2 AND trait_key = 'favorite_color'`), string(ada.ID), string(bob.ID))
			must(t, err)
			if _, err := c.Profile(ctx, uid("bob")); !errors.Is(err, keyring.ErrUndecryptable) || !strings.Contains(err.Error(), keyring.ErrUndecryptable.Error()) {
				t.Errorf("Profile(bob) with ada's sealed trait = %v; want an error matching keyring.ErrUndecryptable", err)
			}
			// Ada's color onto another trait of hers.
			_, err = p.db.ExecContext(ctx, s.q(`INSERT INTO `+traits+` (profile_id, trait_key, value, sealed, source, updated_at)
				SELECT profile_id, 'nickname', value, sealed, source, updated_at FROM `+traits+` WHERE profile_id = $1 AND trait_key = 'favorite_color'`), string(ada.ID))
			must(t, err)
			if _, err := c.Profile(ctx, uid("ada")); !errors.Is(err, keyring.ErrUndecryptable) {
				t.Errorf("Profile(ada) with her color under another name = %v; want an error matching keyring.ErrUndecryptable", err)
			}
			// An event's sealed properties onto another event.
			msgs := s.table("profile_messages")
			_, err = p.db.ExecContext(ctx, s.q(`UPDATE `+msgs+` SET sealed = (SELECT sealed FROM `+msgs+` WHERE message_id = 'ada-t')
				WHERE message_id = 'bob-t'`))
			must(t, err)
			if _, err := c.Events(ctx, uid("bob"), profile.EventQuery{}); !errors.Is(err, keyring.ErrUndecryptable) {
				t.Errorf("Events(bob) with ada's sealed properties = %v; want an error matching keyring.ErrUndecryptable", err)
			}
		})
	}
}

// TestErasureShredsARestoredBackup: the data database is backed up with the
// keyring kept elsewhere; a person is erased; the backup, restored and
// opened with the live keyring, no longer reads the erased person (the reads
// fail as not found, saying the key was destroyed), while everyone else's
// data reads back intact.
func TestErasureShredsARestoredBackup(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s, p, keys, c := keptApart(t, d.dialect)
			ctx := t.Context()
			adaID := collectCanaries(t, c, "ada").ID
			collectCanaries(t, c, "bob")

			restore := backup(t, s, p)
			eraseFinished(t, c, "ada")
			if n := countKeys(t, keys); n != 1 {
				t.Errorf("the keyring holds %d keys after ada's erasure; want bob's alone", n)
			}
			c.Close()

			restored, rdb := restore()
			rc := openRestored(t, restored, keys)
			checkCanariesRead(t, rc, "bob")
			// Her identifiers lead nowhere: their links are her profile's,
			// which has no key.
			if _, err := rc.Profile(ctx, uid("ada")); !errors.Is(err, privacy.ErrNotFound) || !strings.Contains(err.Error(), "not found") {
				t.Errorf("Profile(ada) from the restored backup = %v; want not found, saying so", err)
			}
			if _, err := rc.Events(ctx, uid("ada"), profile.EventQuery{}); !errors.Is(err, privacy.ErrNotFound) {
				t.Errorf("Events(ada) from the restored backup = %v; want not found", err)
			}
			// Read by her profile id, her rows say why they cannot be read.
			if _, err := restored.Profiles().Get(ctx, adaID); !errors.Is(err, keyring.ErrNotFound) || !strings.Contains(err.Error(), "data key was destroyed") {
				t.Errorf("the restored store's Get of ada's profile = %v; want not found, for want of her data key", err)
			}
			// The restored rows are sealed still: nothing of ada in clear.
			if dump := dumpRestored(t, s, rdb); bytes.Contains(dump, []byte(canaryTrait+"-ada")) {
				t.Error("ada's trait is in the restored backup in clear")
			}
		})
	}
}

// keptApart returns a site whose keyring is kept in another database than
// the data (separateKeyring), a process on it, its keyring's Store, and a
// Controller over both.
func keptApart(t *testing.T, d sqlstore.Dialect) (*site, *proc, *sqlstore.Store, *privacy.Controller) {
	t.Helper()
	s := newSite(t, d)
	p := s.open(t)
	keys := separateKeyring(t, s, p)
	return s, p, keys, p.controller(t, nil, privacy.WithKeyring(keys.Keyring()))
}

// eraseFinished erases the user and requires the request FINISHED.
func eraseFinished(t *testing.T, c *privacy.Controller, user string) {
	t.Helper()
	r, err := c.Erase(t.Context(), uid(user))
	must(t, err)
	if r.Status != privacy.Finished {
		t.Fatalf("erasure of %s: %s", user, r.Status)
	}
}

// openRestored opens a Controller over a restored backup, with the live
// keyring kept apart.
func openRestored(t *testing.T, restored, keys *sqlstore.Store) *privacy.Controller {
	t.Helper()
	rc, err := privacy.New(privacy.WithBackends(restored), privacy.WithKeyring(keys.Keyring()), privacy.WithKey(testKey))
	must(t, err)
	t.Cleanup(func() { rc.Close() })
	return rc
}

// separateKeyring returns a Store, migrated, whose keyring is in another
// database than the site's data (SQLite: a file of its own; PostgreSQL: a
// schema of its own, which a dump of the data's schema leaves out).
func separateKeyring(t *testing.T, s *site, p *proc) *sqlstore.Store {
	t.Helper()
	return separateKeyringNamed(t, s, p, "keys")
}

// separateKeyringNamed is separateKeyring, the keyring's database named
// after name.
func separateKeyringNamed(t *testing.T, s *site, p *proc, name string) *sqlstore.Store {
	t.Helper()
	var ks *sqlstore.Store
	var err error
	if s.Dialect == sqlstore.Postgres {
		schema := s.Schema + "_" + name
		t.Cleanup(func() { _, _ = s.admin.Exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE") })
		ks, err = sqlstore.New(p.db, sqlstore.Postgres, sqlstore.WithSchema(schema))
	} else {
		db, oerr := sql.Open("sqlite", "file:"+filepath.Join(s.Dir, name+".db")+sqliteParams)
		must(t, oerr)
		t.Cleanup(func() { db.Close() })
		ks, err = sqlstore.New(db, sqlstore.SQLite)
	}
	must(t, err)
	must(t, ks.Migrate(t.Context()))
	return ks
}

// countKeys counts the data keys of ks's keyring (not its keeper check).
func countKeys(t *testing.T, ks *sqlstore.Store) int {
	t.Helper()
	es, err := ks.Keyring().List(t.Context(), "", 1000)
	must(t, err)
	n := 0
	for _, e := range es {
		if e.Profile != keyring.KeeperCheckProfile {
			n++
		}
	}
	return n
}

// backup copies the site's data database as it is now, and returns what
// restores the copy as a Store of its own (SQLite: VACUUM INTO a file;
// PostgreSQL: pg_dump of the schema, restored into a new database).
func backup(t *testing.T, s *site, p *proc) func() (*sqlstore.Store, *sql.DB) {
	t.Helper()
	ctx := t.Context()
	if s.Dialect == sqlstore.SQLite {
		path := filepath.Join(s.Dir, "backup.db")
		_, err := p.db.ExecContext(ctx, "VACUUM INTO '"+path+"'")
		must(t, err)
		return func() (*sqlstore.Store, *sql.DB) {
			db, err := sql.Open("sqlite", "file:"+path+sqliteParams)
			must(t, err)
			t.Cleanup(func() { db.Close() })
			st, err := sqlstore.New(db, sqlstore.SQLite)
			must(t, err)
			return st, db
		}
	}
	dump, err := exec.Command("pg_dump", "--schema="+s.Schema, "--no-owner", "--dbname="+s.DSN).Output()
	must(t, err)
	return func() (*sqlstore.Store, *sql.DB) {
		name := "restored_" + strings.TrimPrefix(s.Schema, "gdprkit_ctrl_")
		_, err := s.admin.ExecContext(ctx, "CREATE DATABASE "+name)
		must(t, err)
		dsn := strings.Replace(s.DSN, "/test?", "/"+name+"?", 1)
		if dsn == s.DSN {
			t.Fatalf("cannot name the restored database in the DSN %q (want a database named test)", s.DSN)
		}
		cmd := exec.Command("psql", "--quiet", "--set=ON_ERROR_STOP=1", "--dbname="+dsn)
		cmd.Stdin = bytes.NewReader(dump)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("restoring the dump: %v\n%s", err, out)
		}
		db, err := sql.Open("pgx", dsn)
		must(t, err)
		t.Cleanup(func() {
			db.Close()
			_, _ = s.admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
		})
		st, err := sqlstore.New(db, sqlstore.Postgres, sqlstore.WithSchema(s.Schema))
		must(t, err)
		return st, db
	}
}

// dumpRestored returns the content of a restored backup's tables, as text.
func dumpRestored(t *testing.T, s *site, db *sql.DB) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, table := range []string{"profile_traits", "profile_messages"} {
		name := sqlstore.DefaultTablePrefix + table
		if s.Schema != "" {
			name = s.Schema + "." + name
		}
		rows, err := db.QueryContext(t.Context(), "SELECT * FROM "+name)
		must(t, err)
		cols, _ := rows.Columns()
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			must(t, rows.Scan(ptrs...))
			fmt.Fprintln(&b, vals...)
			for _, v := range vals {
				if bs, ok := v.([]byte); ok {
					b.Write(bs)
				}
			}
		}
		must(t, rows.Close())
	}
	if b.Len() == 0 {
		t.Fatal("the restored backup holds no rows")
	}
	return b.Bytes()
}

// TestMergeResealsMovedEvents: an anonymous visitor's events, sealed under
// their profile's key, move to the user's profile they merge into: re-sealed
// under its key (they read back), and the visitor's key goes.
func TestMergeResealsMovedEvents(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s := newSite(t, d.dialect)
			p := s.open(t)
			c := p.controller(t, nil)
			ctx := t.Context()
			ada := collectCanaries(t, c, "ada")
			anon := identity.ID{Type: identity.TypeAnonymousID, Value: "anon-1"}
			for i := range 3 {
				must(t, c.Collect(ctx, privacy.Track{MessageID: fmt.Sprint("v-", i), AnonymousID: "anon-1", Event: "Page Viewed",
					Properties: map[string]any{"path": fmt.Sprint("/p/", i)}, Timestamp: encTS.Add(time.Duration(i) * time.Minute)}))
			}
			visitor, err := c.Profile(ctx, anon)
			must(t, err)
			keysBefore := countKeys(t, p.data)
			// The visitor logs in as ada: their profiles merge.
			must(t, c.Collect(ctx, privacy.Identify{MessageID: "login", UserID: "ada", AnonymousID: "anon-1", Timestamp: encTS.Add(time.Hour)}))
			merged, err := c.Profile(ctx, anon)
			must(t, err)
			page, err := c.Events(ctx, uid("ada"), profile.EventQuery{Limit: 100})
			must(t, err)
			seen := map[any]bool{}
			for _, e := range page.Events {
				seen[e.Properties["path"]], seen[e.Properties["note"]] = true, true
			}
			if len(page.Events) != 4 || !seen["/p/0"] || !seen["/p/1"] || !seen["/p/2"] || !seen[canaryProp+"-ada"] {
				t.Errorf("after the merge the profile's events are %+v; want ada's note and the visitor's 3 views, readable", page.Events)
			}
			gone := visitor.ID
			if merged.ID == visitor.ID {
				gone = ada.ID
			}
			if _, err := p.data.Keyring().Get(ctx, gone); !errors.Is(err, keyring.ErrNotFound) {
				t.Errorf("the merged-away profile %s keeps its data key (%v)", gone, err)
			}
			if n := countKeys(t, p.data); n != keysBefore-1 {
				t.Errorf("%d data keys after the merge, %d before; want one fewer", n, keysBefore)
			}
		})
	}
}

// TestRotateKeyRewrapsDataKeys: RotateKey re-wraps every data key under the
// new key (the old key alone no longer unwraps any), without touching the
// sealed rows, which the Controllers started after it read back; one left
// unrotated (a run that failed before its end) is still read through
// WithPreviousKeys, and a second run re-wraps it.
func TestRotateKeyRewrapsDataKeys(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s := newSite(t, d.dialect)
			ctx := t.Context()
			p := s.open(t)
			c, err := privacy.New(p.keyed(privacy.WithKey(testKey))...)
			must(t, err)
			ada := collectCanaries(t, c, "ada")
			collectCanaries(t, c, "bob")
			c.Close()
			sealedBefore := dumpSite(t, s, p)

			newKey := []byte("the key after the rotation, 32 b")
			must(t, privacy.RotateKey(ctx, newKey, p.keyed(privacy.WithKey(testKey))...))
			oldKeeper, err := keyring.NewLocalKeeper(testKey)
			must(t, err)
			newKeeper, err := keyring.NewLocalKeeper(newKey)
			must(t, err)
			entries, err := p.data.Keyring().List(ctx, "", 100)
			must(t, err)
			if len(entries) != 3 {
				t.Fatalf("the keyring holds %d entries; want ada's and bob's keys, and the keeper check", len(entries))
			}
			for _, e := range entries {
				if _, err := oldKeeper.Decrypt(ctx, e.Wrapped); err == nil {
					t.Errorf("%s's data key still unwraps under the old key", e.Profile)
				}
				if _, err := newKeeper.Decrypt(ctx, e.Wrapped); err != nil {
					t.Errorf("%s's data key does not unwrap under the new key: %v", e.Profile, err)
				}
			}
			if !bytes.Contains(sealedBefore, []byte(ada.ID)) {
				t.Fatal("the dump before the rotation is not of the data")
			}
			rotated := p.keyed(privacy.WithKey(newKey), privacy.WithPreviousKeys(testKey))
			after, err := privacy.New(rotated...)
			must(t, err)
			checkCanariesRead(t, after, "ada")
			checkCanariesRead(t, after, "bob")
			after.Close()

			// Ada's key put back as the old key wrapped it: read through the
			// previous key, then re-wrapped by a second run.
			adaKey, err := p.data.Keyring().Get(ctx, ada.ID)
			must(t, err)
			oldWrap, err := oldKeeper.Encrypt(ctx, mustUnwrap(t, newKeeper, adaKey.Wrapped))
			must(t, err)
			tx, err := p.data.Keyring().Begin(ctx)
			must(t, err)
			must(t, tx.Rewrap(ctx, ada.ID, oldWrap))
			must(t, tx.Commit(ctx))
			again, err := privacy.New(rotated...)
			must(t, err)
			checkCanariesRead(t, again, "ada")
			again.Close()
			must(t, privacy.RotateKey(ctx, newKey, p.keyed(privacy.WithKey(testKey))...))
			adaKey, err = p.data.Keyring().Get(ctx, ada.ID)
			must(t, err)
			if _, err := newKeeper.Decrypt(ctx, adaKey.Wrapped); err != nil {
				t.Errorf("a second RotateKey left ada's data key wrapped under the old key: %v", err)
			}
		})
	}
}

func mustUnwrap(t *testing.T, k keyring.Keeper, wrapped []byte) []byte {
	t.Helper()
	raw, err := k.Decrypt(t.Context(), wrapped)
	must(t, err)
	return raw
}

// TestSealExistingSealsRowsInClear: a person collected in clear (before the
// upgrade: WithoutEncryption on a store that never sealed) is sealed by
// SealExisting once a Controller seals: no canary is left in the database,
// and they read back, by every identifier.
func TestSealExistingSealsRowsInClear(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			s := newSite(t, d.dialect)
			ctx := t.Context()
			p0 := s.open(t)
			if _, err := p0.data.SealExisting(ctx, 10); !errors.Is(err, keyring.ErrInvalid) {
				t.Errorf("SealExisting without keys = %v; want keyring.ErrInvalid", err)
			}
			collectCanaries(t, p0.controller(t, nil, privacy.WithoutEncryption()), "ada")
			p := s.open(t)
			c := p.controller(t, nil)
			collectCanaries(t, c, "bob")
			if dump := dumpSite(t, s, p); !bytes.Contains(dump, []byte(canaryEmail+"-ada")) {
				t.Fatal("ada's email is not in clear before SealExisting: the test does not test it")
			}
			total := 0
			for {
				n, err := p.data.SealExisting(ctx, 1)
				must(t, err)
				if n == 0 {
					break
				}
				total += n
			}
			// Ada's identify (user id, email, color, email as a trait) and track.
			if total < 5 {
				t.Errorf("SealExisting sealed %d rows; want ada's links, traits and event", total)
			}
			if d.dialect == sqlstore.SQLite {
				// The rows' old pages stay in the file until a VACUUM, as
				// SealExisting's documentation says.
				_, err := p.db.ExecContext(ctx, "VACUUM")
				must(t, err)
			}
			dump := dumpSite(t, s, p)
			for _, canary := range []string{canaryTrait, canaryProp, canaryEmail} {
				if bytes.Contains(dump, []byte(canary)) {
					t.Errorf("%q is in the database in clear after SealExisting", canary)
				}
			}
			checkCanariesRead(t, c, "ada")
			checkCanariesRead(t, c, "bob")
			if pr, err := c.Profile(ctx, identity.ID{Type: identity.TypeEmail, Value: emailOf("ada")}); err != nil || pr.Traits["email"].Value != emailOf("ada") {
				t.Errorf("Profile by ada's email after SealExisting = %v, %v", pr, err)
			}
		})
	}
}

// TestSealExistingWaitsForTheProfileLock: SealExisting takes a profile's
// lock, the one a Controller's operation on the person holds (a merge
// re-seals in Go what it moves, and must not see rows change form in
// between): while another transaction holds it, the profile is not sealed.
func TestSealExistingWaitsForTheProfileLock(t *testing.T) {
	s := newSite(t, sqlstore.Postgres)
	ctx := t.Context()
	p0 := s.open(t)
	ada := collectCanaries(t, p0.controller(t, nil, privacy.WithoutEncryption()), "ada")
	p := s.open(t)
	p.controller(t, nil) // gives the Store its keys

	holder := s.open(t)
	hctx, scope := txscope.NewContext(ctx)
	must(t, holder.data.LockSubjects(hctx, []string{txscope.ProfileKey(string(ada.ID))}))
	done := make(chan error, 1)
	go func() {
		_, err := p.data.SealExisting(ctx, 10)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("SealExisting = %v while another transaction held the profile's lock; want it to wait", err)
	case <-time.After(300 * time.Millisecond):
	}
	scope.Close() // rolls the holder's transaction back, and its lock goes
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("SealExisting still waits after the lock was released")
	}
	var clear int
	must(t, p.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+s.table("profile_traits")+` WHERE sealed IS NULL`).Scan(&clear))
	if clear != 0 {
		t.Errorf("%d traits still in clear after SealExisting", clear)
	}
}
