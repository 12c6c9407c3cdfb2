package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/sqlstore"
)

// Example keeps every backend in one SQLite database (the journal and audit
// log in a second file, as the package documentation advises for SQLite),
// collects a message and erases the person.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "sqlstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	open := func(name string) *sqlstore.Store {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, name)+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
		if err != nil {
			log.Fatal(err)
		}
		s, err := sqlstore.New(db, sqlstore.SQLite)
		if err != nil {
			log.Fatal(err)
		}
		if err := s.Migrate(ctx); err != nil {
			log.Fatal(err)
		}
		return s
	}
	data, journal := open("data.db"), open("journal.db")

	c, err := privacy.New(
		privacy.WithBackends(data),
		// On SQLite, the journal and the audit log in a file of their own.
		privacy.WithJournal(journal.Journal()),
		privacy.WithAuditLog(journal.AuditLog()),
		// The same key at every start (New refuses durable backends without
		// it, and with another one): from a secret store, not the source.
		privacy.WithKey([]byte("an example key, 32 bytes long!!!")),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ada := identity.ID{Type: "email", Value: "ada@example.com"}
	err = c.Collect(ctx, privacy.Identify{UserID: "ada", Traits: map[string]any{"email": ada.Value, "plan": "pro"}, Timestamp: time.Now()})
	if err != nil {
		log.Fatal(err)
	}
	p, err := c.Profile(ctx, ada)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("plan:", p.Traits["plan"].Value)

	r, err := c.Erase(ctx, ada)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("erasure:", r.Status)
	_, err = c.Profile(ctx, ada)
	fmt.Println("after erasure, not found:", errors.Is(err, privacy.ErrNotFound))
	// Output:
	// plan: pro
	// erasure: FINISHED
	// after erasure, not found: true
}

// Example_encryptionAtRest keeps the keyring in a database of its own:
// every trait, event property and identifier reaches the data database
// sealed with the person's data key; an erasure destroys the key, so that
// a backup of the data taken before it no longer reads the person.
func Example_encryptionAtRest() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "sqlstore-encryption")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	open := func(name string) (*sqlstore.Store, *sql.DB) {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, name)+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
		if err != nil {
			log.Fatal(err)
		}
		s, err := sqlstore.New(db, sqlstore.SQLite)
		if err != nil {
			log.Fatal(err)
		}
		if err := s.Migrate(ctx); err != nil {
			log.Fatal(err)
		}
		return s, db
	}
	data, dataDB := open("data.db")
	journal, _ := open("journal.db")
	keys, _ := open("keys.db")
	key := []byte("an example key, 32 bytes long!!!")
	opts := func(data *sqlstore.Store) []privacy.Option {
		return []privacy.Option{privacy.WithBackends(data), privacy.WithJournal(journal.Journal()), privacy.WithAuditLog(journal.AuditLog()),
			privacy.WithKeyring(keys.Keyring()), privacy.WithKey(key)}
	}
	c, err := privacy.New(opts(data)...)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ada := identity.ID{Type: "email", Value: "ada@example.com"}
	err = c.Collect(ctx, privacy.Identify{UserID: "ada", Traits: map[string]any{"email": ada.Value, "plan": "pro"}, Timestamp: time.Now()})
	if err != nil {
		log.Fatal(err)
	}
	var value string
	var sealed []byte
	if err := dataDB.QueryRowContext(ctx, `SELECT value, sealed FROM gdprkit_profile_traits WHERE trait_key = 'plan'`).Scan(&value, &sealed); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("in the data database, plan is %s, sealed in %d bytes\n", value, len(sealed))

	backup := filepath.Join(dir, "backup.db")
	if _, err := dataDB.ExecContext(ctx, "VACUUM INTO '"+backup+"'"); err != nil {
		log.Fatal(err)
	}
	r, err := c.Erase(ctx, ada)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("erasure:", r.Status)

	restored, _ := open("backup.db")
	rc, err := privacy.New(opts(restored)...)
	if err != nil {
		log.Fatal(err)
	}
	defer rc.Close()
	_, err = rc.Profile(ctx, ada)
	fmt.Println("in the backup from before the erasure, not found:", errors.Is(err, privacy.ErrNotFound))
	// Output:
	// in the data database, plan is null, sealed in 34 bytes
	// erasure: FINISHED
	// in the backup from before the erasure, not found: true
}
