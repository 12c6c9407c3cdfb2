// Command postgres keeps every backend of gdprkit/privacy in PostgreSQL, in a
// schema of its own: it migrates the tables, collects a few messages through
// a Controller, defines an audience, then rectifies, exports and erases one
// person, printing each receipt. At the end it drops the schema it created
// (-cleanup=false keeps it, to look at the tables).
//
//	GDPRKIT_POSTGRES_DSN='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' go run ./examples/postgres
//	go run ./examples/postgres -dsn 'postgres://...' -schema gdprkit_demo -cleanup=false
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/export"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/sqlstore"
)

// dsnEnv names the variable the DSN is read from when -dsn is not given.
const dsnEnv = "GDPRKIT_POSTGRES_DSN"

func main() {
	dsn := flag.String("dsn", "", "PostgreSQL DSN, such as postgres://user@host:5432/db?sslmode=disable (default $"+dsnEnv+")")
	schema := flag.String("schema", "", "schema for the tables (default: a new one, gdprkit_example_<random>)")
	cleanup := flag.Bool("cleanup", true, "drop the schema at the end, if this run created it")
	flag.Parse()
	if *dsn == "" {
		*dsn = os.Getenv(dsnEnv)
	}
	if *dsn == "" {
		fmt.Fprintf(os.Stderr, "postgres: no database given: set %s or pass -dsn, for example\n"+
			"  %s='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' go run ./examples/postgres\n", dsnEnv, dsnEnv)
		os.Exit(2)
	}
	if *schema == "" {
		var b [4]byte
		rand.Read(b[:])
		*schema = "gdprkit_example_" + hex.EncodeToString(b[:])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout, *dsn, *schema, *cleanup); err != nil {
		fmt.Fprintln(os.Stderr, "postgres:", err)
		os.Exit(1)
	}
}

// exampleKey keys the hashes that stand for people in the suppression list,
// receipts and the audit log. A deployment keeps 32 random bytes in its
// secret store and gives every instance the same key, across restarts:
// suppressions stop matching under another key.
var exampleKey = []byte("example key: use 32 random bytes")

func run(ctx context.Context, w io.Writer, dsn, schema string, cleanup bool) (err error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		return fmt.Errorf("connecting to PostgreSQL: %w", err)
	}

	// The Store: every backend in one database, the tables in their own
	// schema. New does not touch the database; Migrate creates the schema and
	// the tables (and is a no-op the second time).
	store, err := sqlstore.New(db, sqlstore.Postgres, sqlstore.WithSchema(schema))
	if err != nil {
		return err
	}
	var existed bool
	if err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&existed); err != nil {
		return err
	}
	if cleanup && !existed {
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if _, derr := db.ExecContext(dctx, "DROP SCHEMA "+schema+" CASCADE"); derr != nil {
				err = errors.Join(err, fmt.Errorf("dropping schema %s: %w", schema, derr))
				return
			}
			fmt.Fprintf(w, "\nschema %s dropped\n", schema)
		}()
	}
	if err := store.Migrate(ctx); err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	fmt.Fprintf(w, "tables migrated in schema %s\n", schema)

	// A Controller on every backend of the Store. A recorder stands in for a
	// downstream tool that hears of every update and every erasure (Art. 19).
	crm := destination.NewRecorder("crm")
	c, err := privacy.New(
		// Every backend, the outbox among them: what each destination is
		// owed is written in the same transaction as the change that causes
		// it, and survives a crash or a restart.
		privacy.WithBackends(store),
		// The same key at every start: New refuses durable backends without
		// it, and with another one.
		privacy.WithKey(exampleKey),
		privacy.WithDestinations(crm),
		// A name that stays the host's across its restarts: after a crash it
		// completes its own unfinished requests at once.
		privacy.WithInstance("example-host"),
	)
	if err != nil {
		return err
	}
	defer c.Close()
	// The work a host runs in the background: recovery (and taking over the
	// requests of hosts that stopped), audience refresh, overdue reports. To
	// shut down: stop the intake, cancel Run, Flush, then Close.
	runCtx, stopRun := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- c.Run(runCtx) }()
	defer func() { stopRun(); <-ran }()

	// Collection: Ada browses anonymously, signs up, buys; Bob signs up.
	ts := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	for _, m := range []privacy.Message{
		privacy.Track{MessageID: "m1", AnonymousID: "laptop-7f3a", Event: "Product Viewed",
			Properties: map[string]any{"sku": "TENT-2P"}, Timestamp: ts},
		privacy.Identify{MessageID: "m2", AnonymousID: "laptop-7f3a", UserID: "u-1001",
			Traits: map[string]any{"email": "ada@example.com", "plan": "pro", "city": "Lyon"}, Timestamp: ts.Add(5 * time.Minute)},
		privacy.Track{MessageID: "m3", UserID: "u-1001", Event: "Order Completed",
			Properties: map[string]any{"total": 249}, Timestamp: ts.Add(10 * time.Minute)},
		privacy.Identify{MessageID: "m4", UserID: "u-1002",
			Traits: map[string]any{"email": "bob@example.com", "plan": "pro"}, Timestamp: ts.Add(time.Hour)},
	} {
		if err := c.Collect(ctx, m); err != nil {
			return fmt.Errorf("collecting: %w", err)
		}
	}
	// At volume, messages go in batches: those about known people are stored
	// together, a few statements and one commit per 500.
	var batch []privacy.Message
	for i := range 200 {
		batch = append(batch, privacy.Track{MessageID: fmt.Sprintf("b%03d", i), UserID: []string{"u-1001", "u-1002"}[i%2],
			Event: "Page Viewed", Properties: map[string]any{"path": "/tents"}, Timestamp: ts.Add(2*time.Hour + time.Duration(i)*time.Second)})
	}
	if err := c.CollectBatch(ctx, batch); err != nil {
		return fmt.Errorf("collecting a batch: %w", err)
	}
	fmt.Fprintf(w, "batch: %d messages collected, %d in all\n", len(batch), c.Stats().Collected)

	ada := identity.ID{Type: identity.TypeEmail, Value: "ada@example.com"}
	p, err := c.Profile(ctx, ada)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "collected: Ada is %s, plan %v, %d identifiers, version %d\n",
		p.ID, p.Traits["plan"].Value, len(p.ExternalIDs), p.Metadata.Version)

	// An audience, computed for everyone now and kept current afterwards.
	// (A schema kept from an earlier run has it already: New loaded it.)
	if !slices.Contains(c.AudienceKeys(), "pro") {
		if err := c.DefineAudience(ctx, audience.Definition{Key: "pro", Query: `trait('plan') = 'pro'`}); err != nil {
			return err
		}
	}
	if err := printMembers(ctx, w, c, "pro"); err != nil {
		return err
	}

	// Rectification (Art. 16): the plan corrected, the city removed.
	r, err := c.Rectify(ctx, ada, map[string]any{"plan": "free", "city": nil})
	if err != nil {
		return fmt.Errorf("rectifying: %w", err)
	}
	// The receipt says RUNNING until the destination has the corrected
	// traits: delivered waits for that, then reads the receipt again.
	if r, err = delivered(ctx, c, r); err != nil {
		return err
	}
	printReceipt(w, r)
	if err := printMembers(ctx, w, c, "pro"); err != nil {
		return err
	}

	// Access and portability (Art. 15, 20): NDJSON, one object per line.
	var buf bytes.Buffer
	if r, err = c.Export(ctx, ada, &buf, export.NDJSON); err != nil {
		return fmt.Errorf("exporting: %w", err)
	}
	printReceipt(w, r)
	fmt.Fprintf(w, "export, %d bytes; the first lines:\n", buf.Len())
	sc := bufio.NewScanner(&buf)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 0; n < 4 && sc.Scan(); n++ {
		line := sc.Text()
		if len(line) > 150 {
			line = line[:150] + "..."
		}
		fmt.Fprintln(w, "  "+line)
	}

	// Erasure (Art. 17): every backend in one database transaction, then the
	// deletion forwarded to the destination.
	if r, err = c.Erase(ctx, ada); err != nil {
		return fmt.Errorf("erasing: %w", err)
	}
	if r, err = delivered(ctx, c, r); err != nil {
		return err
	}
	printReceipt(w, r)
	_, err = c.Profile(ctx, ada)
	fmt.Fprintf(w, "after the erasure, Ada is not found: %v; the crm got %d deletion(s)\n",
		errors.Is(err, privacy.ErrNotFound), len(crm.Deletions()))
	if err := printMembers(ctx, w, c, "pro"); err != nil {
		return err
	}

	n, err := c.VerifyAudit(ctx)
	if err != nil {
		return fmt.Errorf("verifying the audit log: %w", err)
	}
	fmt.Fprintf(w, "audit log: %d records, chain verified\n", n)
	if !cleanup || existed {
		fmt.Fprintf(w, "\nthe tables stay in schema %s\n", schema)
	}
	return nil
}

// delivered waits until the destinations have been told all that is pending
// (Flush), then reads receipt r again (Status): a request that destinations
// must hear of stays RUNNING until they have.
func delivered(ctx context.Context, c *privacy.Controller, r *privacy.Receipt) (*privacy.Receipt, error) {
	if err := c.Flush(ctx); err != nil {
		return nil, err
	}
	return c.Status(ctx, r.ID)
}

func printMembers(ctx context.Context, w io.Writer, c *privacy.Controller, key string) error {
	ids, err := c.Members(ctx, key)
	if err != nil {
		return err
	}
	var names []string
	for _, id := range ids {
		names = append(names, string(id))
	}
	slices.Sort(names)
	fmt.Fprintf(w, "audience %q: %d member(s) %v\n", key, len(ids), names)
	return nil
}

func printReceipt(w io.Writer, r *privacy.Receipt) {
	fmt.Fprintf(w, "receipt %s: %s %s, due %s", r.ID, r.Type, r.Status, r.Due.Format(time.DateOnly))
	if r.ProfileVersion > 0 {
		fmt.Fprintf(w, ", profile version %d", r.ProfileVersion)
	}
	fmt.Fprintln(w)
	for _, group := range []struct {
		name string
		os   []privacy.Outcome
	}{{"backends", r.Backends}, {"destinations", r.Destinations}} {
		if len(group.os) == 0 {
			continue
		}
		var parts []string
		for _, o := range group.os {
			parts = append(parts, o.Name+" "+string(o.Status))
		}
		fmt.Fprintf(w, "  %s: %s\n", group.name, strings.Join(parts, ", "))
	}
}
