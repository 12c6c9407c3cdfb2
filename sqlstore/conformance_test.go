package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/keyring"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/storetest"
	"github.com/gdprkit/privacy/suppression"
)

// harness gives the conformance suite the backends of one fresh Store.
type harness struct {
	s *Store
	// journal, when set, holds the journal and the audit log.
	journal *Store
	caps    storetest.Capabilities
	close   func()
}

func (h *harness) journalStore() *Store {
	if h.journal != nil {
		return h.journal
	}
	return h.s
}

func (h *harness) MakeGraph(context.Context) (identity.Graph, error)     { return h.s.Graph(), nil }
func (h *harness) MakeProfiles(context.Context) (profile.Store, error)   { return h.s.Profiles(), nil }
func (h *harness) MakeAudiences(context.Context) (audience.Store, error) { return h.s.Audiences(), nil }
func (h *harness) MakeSuppressions(context.Context) (suppression.List, error) {
	return h.s.Suppressions(), nil
}
func (h *harness) MakeJournal(context.Context) (journal.Journal, error) {
	return h.journalStore().Journal(), nil
}
func (h *harness) MakeAuditLog(context.Context) (audit.Log, error) {
	return h.journalStore().AuditLog(), nil
}
func (h *harness) MakeOutbox(context.Context) (outbox.Store, error) { return h.s.Outbox(), nil }
func (h *harness) MakeKeyring(context.Context) (keyring.Store, error) {
	return h.s.Keyring(), nil
}
func (h *harness) Capabilities() storetest.Capabilities { return h.caps }
func (h *harness) Close()                               { h.close() }

// sqliteCaps: SQLite has one writer, and a backend transaction holds it from
// Begin (BEGIN IMMEDIATE), so a second one begun in the same goroutine waits.
var sqliteCaps = storetest.Capabilities{
	NoConcurrentTx: "SQLite has a single writer, taken at Begin: a second transaction begun while one is open waits for it",
}

func TestConformance(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		// Every check gets copies of one migrated database: migrating for
		// each would cost most of the suite's time.
		template := filepath.Join(t.TempDir(), "template.db")
		tdb := sqliteDB(t, template)
		newStore(t, tdb, SQLite)
		must(t, tdb.Close()) // checkpoints the WAL into the file
		storetest.RunConformanceTests(t, func(ctx context.Context, t *testing.T) (storetest.Harness, error) {
			dir := t.TempDir()
			open := func(name string) (*sql.DB, *Store, error) {
				path := filepath.Join(dir, name)
				if err := copyFile(path, template); err != nil {
					return nil, nil, err
				}
				db, err := sql.Open("sqlite", "file:"+path+sqliteDSN)
				if err != nil {
					return nil, nil, err
				}
				s, err := New(db, SQLite)
				if err != nil {
					db.Close()
					return nil, nil, err
				}
				return db, s, nil
			}
			db, s, err := open("data.db")
			if err != nil {
				return nil, err
			}
			// The journal and the audit log in a database file of their own,
			// as the package documentation advises for SQLite: a journal
			// write is then durable before the backends commit, which crash
			// recovery relies on.
			jdb, js, err := open("journal.db")
			if err != nil {
				db.Close()
				return nil, err
			}
			return &harness{s: s, journal: js, caps: sqliteCaps, close: func() { db.Close(); jdb.Close() }}, nil
		})
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		pool := &schemaPool{db: postgresDB(t)}
		pool.base = newSchema(t, pool.db)
		t.Cleanup(pool.drop)
		storetest.RunConformanceTests(t, func(ctx context.Context, t *testing.T) (storetest.Harness, error) {
			s, err := pool.get(ctx)
			if err != nil {
				return nil, err
			}
			return &harness{s: s, close: func() { pool.put(s) }}, nil
		})
	})
}

// schemaPool hands out migrated PostgreSQL schemas, emptied between uses:
// creating and migrating one for each of the suite's checks would cost most of
// its time.
type schemaPool struct {
	db   *sql.DB
	base string
	mu   sync.Mutex
	n    int
	all  []string
	free []*Store
}

func (p *schemaPool) get(ctx context.Context) (*Store, error) {
	p.mu.Lock()
	if len(p.free) > 0 {
		s := p.free[len(p.free)-1]
		p.free = p.free[:len(p.free)-1]
		p.mu.Unlock()
		return s, nil
	}
	p.n++
	schema := fmt.Sprintf("%s_%d", p.base, p.n)
	p.all = append(p.all, schema)
	p.mu.Unlock()
	s, err := New(p.db, Postgres, WithSchema(schema))
	if err != nil {
		return nil, err
	}
	return s, s.Migrate(ctx)
}

// put empties the schema's tables and returns it to the pool.
func (p *schemaPool) put(s *Store) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var stmts []string
	for _, table := range []string{"identity_profiles", "identity_links", "identity_merges", "profiles", "profile_traits", "profile_messages",
		"audience_definitions", "audience_states", "audience_members", "suppressed_identifiers", "suppressed_profiles",
		"journal", "journal_subjects", "audit_log", "outbox", "key_check", "keyring", "sealing"} {
		stmts = append(stmts, "DELETE FROM {p}"+table)
	}
	if err := s.execAll(ctx, s.db, stmts); err != nil {
		return // left out of the pool; dropped at the end
	}
	// A new Store over the emptied schema, as a new process would open: a
	// Store remembers what it has seen (a suppression list not empty).
	fresh, err := New(p.db, Postgres, WithSchema(s.schema))
	if err != nil {
		return
	}
	p.mu.Lock()
	p.free = append(p.free, fresh)
	p.mu.Unlock()
}

func (p *schemaPool) drop() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, schema := range p.all {
		p.db.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
	}
}

func copyFile(dst, src string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o600)
}
