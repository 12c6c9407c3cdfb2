package sqlstore_test

// Attacks of a review of the commit marks, kept: the mark was written by the
// profile store, in the profile store's transaction. When the profile store
// is not in the
// same database as the identity graph, the suppression list, the audiences
// and the outbox (WithProfiles over another Store: the Controller commits
// the participants one by one, profiles before audiences and outbox), the
// mark commits with the profile store's part only: a process that dies
// between the two commits leaves a mark while the decision's data (graph,
// suppression list, outbox) did not land, and Recover then redoes the
// recorded decision only: it misses a merge made since, and leaves the
// person's identifiers (collected before the erasure) linked to a live
// profile. The mark is now the outbox's, the last commit.

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/sqlstore"
)

// splitProc is a process whose profile store (and keyring) is a Store over
// another database (PostgreSQL: another schema; SQLite: another file) than
// the rest of the data.
type splitProc struct {
	*proc
	prof *sqlstore.Store
	pdb  *sql.DB
}

func (s *site) profileSchema() string { return s.Schema + "_p" }

func (s *site) openSplit(t testing.TB) *splitProc {
	t.Helper()
	p := s.open(t)
	sp := &splitProc{proc: p}
	var err error
	if s.Dialect == sqlstore.Postgres {
		sp.pdb = p.db
		sp.prof, err = sqlstore.New(p.db, sqlstore.Postgres, sqlstore.WithSchema(s.profileSchema()))
	} else {
		sp.pdb, err = sql.Open("sqlite", "file:"+filepath.Join(s.Dir, "profiles.db")+sqliteParams)
		if err == nil {
			t.Cleanup(func() { sp.pdb.Close() })
			sp.prof, err = sqlstore.New(sp.pdb, sqlstore.SQLite)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// newSplitSite is newSite with the profile store's database migrated too.
func newSplitSite(t *testing.T, d sqlstore.Dialect) *site {
	s := newSite(t, d)
	if d == sqlstore.Postgres {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s.admin.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+s.profileSchema()+" CASCADE")
		})
	}
	sp := s.openSplit(t)
	must(t, sp.prof.Migrate(t.Context()))
	sp.close()
	return s
}

// controller: every backend of the data Store but the profile store (and so
// the keyring, the profile store's own), which is the other Store's.
func (sp *splitProc) controller(t testing.TB, audiences audience.Store) *privacy.Controller {
	t.Helper()
	if audiences == nil {
		audiences = sp.data.Audiences()
	}
	c, err := privacy.New(
		privacy.WithIdentity(sp.data.Graph()),
		privacy.WithProfiles(sp.prof.Profiles()),
		privacy.WithAudiences(audiences),
		privacy.WithSuppressions(sp.data.Suppressions()),
		privacy.WithJournal(sp.jrnl.Journal()),
		privacy.WithAuditLog(sp.jrnl.AuditLog()),
		privacy.WithOutbox(sp.data.Outbox()),
		privacy.WithKey(testKey),
		privacy.WithInstance("split-host"),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// exitingAudiences dies (os.Exit) at its transactions' Commit: in commit
// order that is right after the profile store's.
type exitingAudiences struct{ audience.Store }

func (a exitingAudiences) Begin(ctx context.Context) (audience.Tx, error) {
	tx, err := a.Store.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return exitingAudienceTx{tx}, nil
}

type exitingAudienceTx struct{ audience.Tx }

func (exitingAudienceTx) Commit(context.Context) error {
	os.Exit(crashExitCode)
	return nil
}

// TestSplitChild erases (or suppresses with delete) the subject and
// dies between the profile store's commit and the data Store's.
func TestSplitChild(t *testing.T) {
	s := childSite(t, "GDPRKIT_SPLIT_CHILD", "started by TestMarkWithoutDataMissesMerge")
	sp := s.openSplit(t)
	c := sp.controller(t, exitingAudiences{sp.data.Audiences()})
	subject := uid(os.Getenv("GDPRKIT_SPLIT_SUBJECT"))
	typ := privacy.RequestType(os.Getenv("GDPRKIT_SPLIT_TYPE"))
	r, err := c.Apply(t.Context(), privacy.Request{Type: typ, Subjects: []identity.ID{subject}})
	t.Fatalf("Apply = %+v, %v; the process should have died between the commits", r, err)
}

// TestMarkWithoutDataMissesMerge: profile store in its own database;
// the process dies after the profile store's commit (the mark landed) and
// before the data Store's (graph, suppression list, outbox did not); a
// message then merges the person into an older profile; Recover must erase
// the person as they are now, merged profile included, as it did before the
// marks (it decided the request again, the journal not showing the commit).
func TestMarkWithoutDataMissesMerge(t *testing.T) {
	for _, d := range testDialects {
		for _, typ := range []privacy.RequestType{privacy.DeleteOnly, privacy.SuppressWithDelete} {
			t.Run(d.name+"/"+string(typ), func(t *testing.T) {
				t.Parallel()
				markWithoutData(t, d.dialect, typ)
			})
		}
	}
}

func markWithoutData(t *testing.T, d sqlstore.Dialect, typ privacy.RequestType) {
	s := newSplitSite(t, d)
	ctx := t.Context()
	const device, adaAnon = "old-device", "ada-anon"
	var adaPID identity.ProfileID
	{
		sp := s.openSplit(t)
		c := sp.controller(t, nil)
		must(t, c.Collect(ctx, privacy.Track{MessageID: "old", AnonymousID: device, Event: "Seen", Timestamp: time.Now()}))
		must(t, c.Collect(ctx, privacy.Identify{MessageID: "ada-1", UserID: "ada", AnonymousID: adaAnon,
			Traits: map[string]any{"name": "Ada Lovelace"}, Timestamp: time.Now()}))
		must(t, c.Collect(ctx, privacy.Identify{MessageID: "bob-1", UserID: "bob", Traits: map[string]any{"name": "Bob"}, Timestamp: time.Now()}))
		prof, err := c.Profile(ctx, uid("ada"))
		must(t, err)
		adaPID = prof.ID
		c.Close()
		sp.close()
	}
	runCrashingChild(t, s, "TestSplitChild", "GDPRKIT_SPLIT_CHILD", "between the profile store's commit and the data's",
		"GDPRKIT_SPLIT_SUBJECT=ada", "GDPRKIT_SPLIT_TYPE="+string(typ))

	sp := s.openSplit(t)
	un, err := sp.jrnl.Journal().Unfinished(ctx)
	must(t, err)
	if len(un) != 1 || !un[0].Decided || !un[0].Committed.IsZero() {
		t.Fatalf("journal = %+v; want one request, decided, its commit not recorded", un)
	}
	// The invariant itself: a mark exists iff the decision's data landed.
	marked, err := sp.data.Outbox().(outbox.RequestMarks).RequestMarked(ctx, un[0].ID)
	must(t, err)
	var links int
	must(t, s.dataDB(t).QueryRowContext(ctx, s.q("SELECT count(*) FROM "+s.table("identity_links")+" WHERE profile_id = $1"), string(adaPID)).Scan(&links))
	if marked && links > 0 {
		t.Errorf("request %s is marked, yet its data did not commit: the graph still links %d identifiers to the erased profile %s", un[0].ID, links, adaPID)
	}

	c := sp.controller(t, nil)
	// The world changes: ada is seen on the old device; her profile merges.
	must(t, c.Collect(ctx, privacy.Identify{MessageID: "merge", UserID: "ada", AnonymousID: device,
		Traits: map[string]any{"city": "Paris"}, Timestamp: time.Now()}))
	if n, err := c.Recover(ctx); n != 1 || err != nil {
		t.Fatalf("Recover = %d, %v; want 1, nil", n, err)
	}
	if r, err := c.Status(ctx, un[0].ID); err != nil || r.Status != privacy.Finished {
		t.Errorf("Status after Recover = %+v, %v; want FINISHED", r, err)
	}
	for _, id := range []identity.ID{uid("ada"), {Type: identity.TypeAnonymousID, Value: adaAnon}, {Type: identity.TypeAnonymousID, Value: device}} {
		if p, err := c.Profile(ctx, id); !errors.Is(err, privacy.ErrNotFound) {
			t.Errorf("after the %s completed, Profile(%v) = %v (traits %v), %v; want ErrNotFound (the person as they are now, merged profile included)", typ, id, p.ID, p.Traits, err)
		}
	}
	if p, err := c.Profile(ctx, uid("bob")); err != nil || p.Traits["name"].Value != "Bob" {
		t.Errorf("bob = %v, %v; want intact", p, err)
	}
}
