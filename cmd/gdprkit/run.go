package main

import (
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

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
	_ "modernc.org/sqlite"             // the "sqlite" driver

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/sqlstore"
	"github.com/gdprkit/privacy/suppression"
)

// Exit statuses.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitNotFound    = 3
	exitKeyMismatch = 4
)

// usageError is a command line that cannot be run.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

const usage = `usage: gdprkit [-dsn DSN] [-schema NAME] [-key-file FILE] [-destinations NAMES|none] [-json] COMMAND [ARGS]

commands:
  migrate [-init-key]                     create or update the tables (-init-key: record the key on a new database)
  erase SUBJECT...                        DELETE_ONLY: delete the people everywhere, tell destinations
  suppress SUBJECT...                     SUPPRESS_ONLY: stop collecting about them
  unsuppress SUBJECT...                   UNSUPPRESS
  apply -type TYPE SUBJECT...             any request type (SUPPRESS_WITH_DELETE, DELETE_INTERNAL, ...)
  rectify SUBJECT KEY=JSON...             RECTIFY: set traits (KEY=null removes one)
  status ID                               a request's receipt
  list [-status S] [-type T] [-overdue] [-limit N]
                                          requests, newest first
  export [-format json|ndjson|csv] -o FILE SUBJECT
                                          everything held about a person (ACCESS)
  verify-audit                            walk the audit chain
  recover                                 complete the requests a crash left unfinished
  retention [-events D] [-source NAME=D]... [-inactive D] [-apply]
                                          the retention policy: events collected more than D
                                          ago (720h; per source) go, and profiles inactive that
                                          long are erased internally; a dry run, counting what
                                          would go, unless -apply (which needs -destinations)

A SUBJECT is an identifier written type:value (user_id:42, email:a@b.c).
Every right (erase, suppress, unsuppress, apply, rectify) and recover need
-destinations: the names of the hosts' destinations, to which the hosts
deliver what the right owes them (a deletion, a rectification, the news of
an audience the person left) from the shared outbox, or "none" when they
have none. A name no host delivers to keeps the request RUNNING.
`

// cli is a command line's global settings and outputs.
type cli struct {
	dsn, schema, keyFile string
	destinations         string // the hosts' destinations, "none", or "" (not said)
	json                 bool
	extra                []privacy.Option // the command's own Controller options
	out, errOut          io.Writer
}

func run(ctx context.Context, args []string, out, errOut io.Writer) int {
	cl := &cli{out: out, errOut: errOut}
	fs := flag.NewFlagSet("gdprkit", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.Usage = func() { fmt.Fprint(errOut, usage) }
	fs.StringVar(&cl.dsn, "dsn", os.Getenv("GDPRKIT_DSN"), "database: postgres://... or a SQLite file (default $GDPRKIT_DSN)")
	fs.StringVar(&cl.schema, "schema", "", "PostgreSQL schema of the tables (default: the search_path's first)")
	fs.StringVar(&cl.keyFile, "key-file", "", "file holding the key in hex (default: $GDPRKIT_KEY, the key in hex)")
	fs.StringVar(&cl.destinations, "destinations", os.Getenv("GDPRKIT_DESTINATIONS"), "the hosts' destination names, comma-separated, or none (default $GDPRKIT_DESTINATIONS)")
	fs.BoolVar(&cl.json, "json", false, "print results as JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprint(errOut, usage)
		return exitUsage
	}
	err := cl.command(ctx, fs.Arg(0), fs.Args()[1:])
	return cl.exit(err)
}

// exit reports err and returns the exit status it stands for.
func (cl *cli) exit(err error) int {
	var ue *usageError
	var ended *endedError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(cl.errOut, "gdprkit: %v\n\n%s", err, usage)
		return exitUsage
	case errors.As(err, &ended):
		return exitFailed // the receipt was printed
	case errors.Is(err, privacy.ErrNotFound):
		fmt.Fprintf(cl.errOut, "gdprkit: %v\n", err)
		return exitNotFound
	case errors.Is(err, privacy.ErrKeyMismatch):
		fmt.Fprintf(cl.errOut, "gdprkit: %v\n", err)
		return exitKeyMismatch
	}
	fmt.Fprintf(cl.errOut, "gdprkit: %v\n", err)
	return exitFailed
}

// endedError is a request that ended FAILED or INVALID.
type endedError struct{ status privacy.Status }

func (e *endedError) Error() string { return "the request ended " + string(e.status) }

func (cl *cli) command(ctx context.Context, name string, args []string) error {
	switch name {
	case "migrate":
		fs := cl.flags("migrate")
		initKey := fs.Bool("init-key", false, "record the key on a database that holds none yet")
		if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
			return usagef("migrate takes -init-key only")
		}
		store, db, err := cl.open(ctx)
		if err != nil {
			return err
		}
		defer db.Close()
		if err := store.Migrate(ctx); err != nil {
			return err
		}
		if *initKey {
			if err := cl.withControllerOn(ctx, store, true, func(*privacy.Controller) error { return nil }); err != nil {
				return err
			}
			return cl.print(map[string]string{"migrated": "ok", "key": "recorded"}, "tables migrated, key recorded")
		}
		return cl.print(map[string]string{"migrated": "ok"}, "tables migrated")
	case "erase", "suppress", "unsuppress":
		typ := map[string]privacy.RequestType{"erase": privacy.DeleteOnly, "suppress": privacy.SuppressOnly, "unsuppress": privacy.Unsuppress}[name]
		subjects, err := parseSubjects(args)
		if err != nil {
			return err
		}
		return cl.apply(ctx, privacy.Request{Type: typ, Subjects: subjects})
	case "apply":
		fs := cl.flags("apply")
		typ := fs.String("type", "", "request type, as Segment's regulation types (SUPPRESS_WITH_DELETE, ...)")
		if err := fs.Parse(args); err != nil {
			return usagef("apply: %v", err)
		}
		t := privacy.RequestType(strings.ToUpper(*typ))
		if !t.Valid() || t == privacy.Access {
			// Not echoed: the text is the operator's, and may be anything.
			return usagef("apply: -type must be one of SUPPRESS_ONLY, UNSUPPRESS, SUPPRESS_WITH_DELETE, SUPPRESS_WITH_DELETE_INTERNAL, DELETE_ONLY, DELETE_INTERNAL, DELETE_ARCHIVE_ONLY, RECTIFY (ACCESS: use export)")
		}
		subjects, err := parseSubjects(fs.Args())
		if err != nil {
			return err
		}
		return cl.apply(ctx, privacy.Request{Type: t, Subjects: subjects})
	case "rectify":
		if len(args) < 2 {
			return usagef("rectify needs a SUBJECT and at least one KEY=JSON")
		}
		subjects, err := parseSubjects(args[:1])
		if err != nil {
			return err
		}
		traits, err := parseTraits(args[1:])
		if err != nil {
			return err
		}
		return cl.apply(ctx, privacy.Request{Type: privacy.Rectify, Subjects: subjects, Traits: traits})
	case "status":
		if len(args) != 1 {
			return usagef("status needs one request ID")
		}
		return cl.withController(ctx, func(c *privacy.Controller) error {
			r, err := c.Status(ctx, args[0])
			if err != nil {
				return err
			}
			return cl.receipt(r)
		})
	case "list":
		return cl.list(ctx, args)
	case "export":
		return cl.export(ctx, args)
	case "verify-audit":
		if len(args) != 0 {
			return usagef("verify-audit takes no arguments")
		}
		return cl.withController(ctx, func(c *privacy.Controller) error {
			n, err := c.VerifyAudit(ctx)
			if errors.Is(err, audit.ErrTampered) {
				return fmt.Errorf("the audit chain is broken after %d records: %w", n, err)
			}
			if err != nil {
				return err
			}
			return cl.print(map[string]int{"verified": n}, fmt.Sprintf("audit chain verified: %d records", n))
		})
	case "retention":
		return cl.retention(ctx, args)
	case "recover":
		if len(args) != 0 {
			return usagef("recover takes no arguments")
		}
		if cl.destinations == "" {
			return usagef("recover completes requests that may tell destinations: give the hosts' -destinations (or none)")
		}
		return cl.withController(ctx, func(c *privacy.Controller) error {
			n, err := c.Recover(ctx)
			if err != nil {
				return err
			}
			return cl.print(map[string]int{"recovered": n}, fmt.Sprintf("requests recovered: %d", n))
		})
	}
	return usagef("unknown command %q", name)
}

func (cl *cli) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseSubjects reads type:value identifiers. The error names the argument
// by position, not its text: it may be an email.
func parseSubjects(args []string) ([]identity.ID, error) {
	if len(args) == 0 {
		return nil, usagef("no SUBJECT given: write identifiers as type:value")
	}
	var out []identity.ID
	for i, a := range args {
		id, err := identity.ParseID(a)
		if err != nil {
			return nil, usagef("subject %d is not an identifier written type:value", i+1)
		}
		out = append(out, id)
	}
	return out, nil
}

// parseTraits reads KEY=JSON pairs; a value that is not JSON is taken as a
// string.
func parseTraits(args []string) (map[string]any, error) {
	traits := map[string]any{}
	for i, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, usagef("trait %d is not KEY=JSON", i+1)
		}
		val, err := profile.DecodeValue([]byte(v)) // numbers kept exactly, as the library keeps them
		if err != nil {
			val = v
		}
		traits[k] = val
	}
	return traits, nil
}

// open opens the database and its Store.
func (cl *cli) open(ctx context.Context) (*sqlstore.Store, *sql.DB, error) {
	if cl.dsn == "" {
		return nil, nil, usagef("no database: set -dsn or $GDPRKIT_DSN")
	}
	driver, dialect, dsn := "sqlite", sqlstore.SQLite, cl.dsn
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		driver, dialect = "pgx", sqlstore.Postgres
	} else {
		dsn = sqliteDSN(dsn)
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("connecting to the database: %w", err)
	}
	var opts []sqlstore.Option
	if cl.schema != "" {
		opts = append(opts, sqlstore.WithSchema(cl.schema))
	}
	store, err := sqlstore.New(db, dialect, opts...)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return store, db, nil
}

// sqliteDSN is the SQLite DSN for a path or a file: DSN, with what the
// tool needs where the DSN does not say: wait for the hosts' writers
// (busy_timeout), WAL, and transactions that take the write lock at once.
func sqliteDSN(dsn string) string {
	if !strings.HasPrefix(dsn, "file:") {
		dsn = "file:" + dsn
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	for _, p := range []struct{ has, add string }{
		{"busy_timeout", "_pragma=busy_timeout(5000)"},
		{"journal_mode", "_pragma=journal_mode(WAL)"},
		{"_txlock", "_txlock=immediate"},
	} {
		if !strings.Contains(dsn, p.has) {
			dsn += sep + p.add
			sep = "&"
		}
	}
	return dsn
}

// key reads the key from -key-file or $GDPRKIT_KEY.
func (cl *cli) key() ([]byte, error) {
	text := os.Getenv("GDPRKIT_KEY")
	if cl.keyFile != "" {
		b, err := os.ReadFile(cl.keyFile)
		if err != nil {
			return nil, fmt.Errorf("reading the key file: %w", err)
		}
		text = string(b)
	}
	if text == "" {
		return nil, usagef("no key: set -key-file or $GDPRKIT_KEY (the hosts' key, in hex)")
	}
	key, err := hex.DecodeString(strings.TrimSpace(text))
	if err != nil || len(key) < 32 {
		return nil, usagef("the key is not 32 or more bytes written in hex")
	}
	return key, nil
}

// withController runs f with a Controller over the database, which must
// hold a key already (the hosts'): a mistyped key would otherwise be
// recorded as the database's, and the hosts refused.
func (cl *cli) withController(ctx context.Context, f func(*privacy.Controller) error) error {
	store, db, err := cl.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	return cl.withControllerOn(ctx, store, false, f)
}

// withControllerOn runs f with a Controller over store; record lets it
// record the key on a database that holds none (migrate -init-key).
func (cl *cli) withControllerOn(ctx context.Context, store *sqlstore.Store, record bool, f func(*privacy.Controller) error) error {
	key, err := cl.key()
	if err != nil {
		return err
	}
	if kc, ok := store.Suppressions().(suppression.KeyChecker); ok && !record {
		check, err := kc.KeyCheck(ctx)
		if err != nil {
			return err
		}
		if check.IsZero() {
			return fmt.Errorf("%w: the database holds no key yet: start a host with its key first, or record this one with migrate -init-key", privacy.ErrKeyMismatch)
		}
	}
	opts := []privacy.Option{privacy.WithBackends(store), privacy.WithKey(key), privacy.WithInstance(instanceName())}
	names, err := cl.remoteDestinations()
	if err != nil {
		return err
	}
	if len(names) > 0 {
		opts = append(opts, privacy.WithRemoteDestinations(names...))
	}
	c, err := privacy.New(append(opts, cl.extra...)...)
	if err != nil {
		return err
	}
	defer c.Close()
	return f(c)
}

// remoteDestinations are the names -destinations gives: none for "none".
func (cl *cli) remoteDestinations() ([]string, error) {
	if cl.destinations == "" || cl.destinations == "none" {
		return nil, nil
	}
	var out []string
	for _, n := range strings.Split(cl.destinations, ",") {
		switch n = strings.TrimSpace(n); {
		case n == "none":
			return nil, usagef("-destinations: none stands alone, for hosts without destinations")
		case n != "" && !slices.Contains(out, n):
			out = append(out, n)
		}
	}
	return out, nil
}

// instanceName names this run in the claims it takes: its own, so that
// two runs at once (or a run and a host) never take each other's work for
// their own restart's.
func instanceName() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("gdprkit-cli/%s/%d/%x", host, os.Getpid(), b)
}

// apply applies req and prints its receipt. A request that tells
// destinations needs the hosts' -destinations, so that what they are owed
// is owed.
func (cl *cli) apply(ctx context.Context, req privacy.Request) error {
	// Every right may owe the hosts' destinations something: a deletion,
	// a rectification, or the news of an audience the person left or
	// entered (a suppression, an unsuppression).
	if cl.destinations == "" {
		return usagef("%s may owe the hosts' destinations news of it: give their names with -destinations (or none)", req.Type)
	}
	if _, err := cl.remoteDestinations(); err != nil {
		return err
	}
	return cl.withController(ctx, func(c *privacy.Controller) error {
		r, err := c.Apply(ctx, req)
		if r != nil {
			if perr := cl.receipt(r); perr != nil {
				return perr
			}
			if r.Status == privacy.Running && !cl.json {
				fmt.Fprintln(cl.errOut, "gdprkit: the request waits for the hosts to deliver to their destinations; it ends when they answer (gdprkit status "+r.ID+"). A name in -destinations that no host delivers to keeps it RUNNING.")
			}
			if r.Status == privacy.Failed || r.Status == privacy.Invalid {
				if err != nil {
					fmt.Fprintf(cl.errOut, "gdprkit: %v\n", err)
				}
				return &endedError{r.Status}
			}
		}
		return err
	})
}

// sourcePeriods is -source NAME=DURATION, repeated.
type sourcePeriods map[string]time.Duration

func (s sourcePeriods) String() string { return fmt.Sprint(map[string]time.Duration(s)) }

func (s sourcePeriods) Set(v string) error {
	name, period, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return errors.New("want NAME=DURATION, such as web=720h")
	}
	d, err := time.ParseDuration(period)
	if err != nil {
		return fmt.Errorf("source %s: %w", name, err)
	}
	if _, dup := s[name]; dup {
		return fmt.Errorf("source %s given twice", name)
	}
	s[name] = d
	return nil
}

// retention runs the retention policy the flags give: a dry run unless
// -apply. Progress goes to the error output, a line per second.
func (cl *cli) retention(ctx context.Context, args []string) error {
	fs := cl.flags("retention")
	events := fs.Duration("events", 0, "how long events are kept (0: kept, but those of the sources given)")
	sources := sourcePeriods{}
	fs.Var(sources, "source", "NAME=DURATION: how long the source's events are kept (repeatable)")
	inactive := fs.Duration("inactive", 0, "how long a profile is kept without activity, then erased internally (0: kept)")
	apply := fs.Bool("apply", false, "delete (without it: count what would be deleted)")
	if err := fs.Parse(args); err != nil {
		return usagef("retention: %v", err)
	}
	if fs.NArg() != 0 {
		return usagef("retention takes flags only")
	}
	if *events == 0 && len(sources) == 0 && *inactive == 0 {
		return usagef("retention: give -events, -source or -inactive: a policy that keeps everything deletes nothing")
	}
	if *apply && cl.destinations == "" {
		return usagef("retention -apply recounts audiences, whose news the hosts' destinations are owed: give their -destinations (or none)")
	}
	policy := privacy.RetentionPolicy{Events: *events, Sources: sources, InactiveProfiles: *inactive}
	if err := policy.Validate(); err != nil {
		return usagef("retention: %v", err)
	}
	cl.extra = append(cl.extra, privacy.WithRetention(policy))
	return cl.withController(ctx, func(c *privacy.Controller) error {
		last := time.Now()
		rep, err := c.ApplyRetention(ctx, privacy.RetentionOptions{DryRun: !*apply, Progress: func(r privacy.RetentionReport) {
			if time.Since(last) >= time.Second {
				last = time.Now()
				fmt.Fprintf(cl.errOut, "gdprkit: %d profiles gone through, %d events %s\n", r.Profiles, r.Events, map[bool]string{true: "deleted", false: "to delete"}[*apply])
			}
		}})
		if err != nil {
			if rep != nil && rep.ID != "" {
				return fmt.Errorf("retention run %s stopped (recover finishes it): %w", rep.ID, err)
			}
			return err
		}
		verb := "would delete"
		if *apply {
			verb = "deleted"
		}
		text := fmt.Sprintf("retention %s %d events of %d profiles, %d queued or dead messages of them and %d inactive profiles (%d profiles gone through)",
			verb, rep.Events, rep.Pruned, rep.Messages, rep.Erased, rep.Profiles)
		if rep.ID != "" {
			text += "; run " + rep.ID
		}
		if rep.StoodDownFor != "" {
			text = "retention stood down for the run " + rep.StoodDownFor + ", unfinished, which goes on (recover finishes it if its host stopped); " + text
		}
		return cl.print(retentionJSON{ID: rep.ID, DryRun: rep.DryRun, Status: string(rep.Status), StoodDownFor: rep.StoodDownFor, Profiles: rep.Profiles, Pruned: rep.Pruned, Events: rep.Events,
			Messages: rep.Messages, Erased: rep.Erased, Before: rep.Cutoffs.Before, Sources: rep.Cutoffs.Sources, InactiveBefore: rep.InactiveBefore}, text)
	})
}

// retentionJSON is what retention -json prints.
type retentionJSON struct {
	ID     string `json:"id,omitempty"`
	DryRun bool   `json:"dry_run"`
	Status string `json:"status"`
	// StoodDownFor is the unfinished run this one stood down for.
	StoodDownFor string `json:"stood_down_for,omitempty"`
	Profiles     int    `json:"profiles"`
	Pruned       int    `json:"profiles_pruned"`
	Events       int    `json:"events"`
	// Messages are the outbox's queued or dead messages of those events.
	Messages int                  `json:"messages"`
	Erased   int                  `json:"inactive_profiles"`
	Before   time.Time            `json:"events_before,omitzero"`
	Sources  map[string]time.Time `json:"sources_before,omitempty"`
	// InactiveBefore: profiles last written before it are inactive.
	InactiveBefore time.Time `json:"inactive_before,omitzero"`
}
