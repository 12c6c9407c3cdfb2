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
