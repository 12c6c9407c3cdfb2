// Command segment serves Segment's three HTTP APIs over gdprkit/privacy, with
// every backend in one SQLite file (the embedded durable default):
//
//	go run ./examples/segment
//
// It listens on 127.0.0.1:8080 and mounts
//
//	/v1/identify, /v1/track, ... /v1/batch   the Tracking API (segmentapi.NewTracking)
//	/v1/spaces/...                           the Profile API (segmentapi.NewProfiles)
//	/regulations, /suppressions              deletion and suppression (segmentapi.NewRegulations)
//
// so that Segment's libraries, Profile API callers and regulation callers can
// be pointed at it unchanged. The write key, its source and the access token
// come from -write-key, -source and -token (or $SEGMENT_WRITE_KEY and
// $SEGMENT_ACCESS_TOKEN); when not given, random ones are made and printed
// once. The secret key of the keyed hashes is read from -key-file, made
// (32 random bytes, mode 0600) on the first start: it must be the same at
// every start, or suppressions would stop matching, so keep that file with
// the database.
//
// Try it, in another terminal (with the printed write key and token):
//
//	curl -u "$WRITE_KEY:" -d '{"userId":"ada","event":"Signed Up"}' http://127.0.0.1:8080/v1/track
//	curl -u "$TOKEN:" http://127.0.0.1:8080/v1/spaces/local/collections/users/profiles/user_id:ada/events
//	curl -H "Authorization: Bearer $TOKEN" -d '{"regulationType":"SUPPRESS_WITH_DELETE","subjectType":"USER_ID","subjectIds":["ada"]}' http://127.0.0.1:8080/regulations
//
// On SIGINT or SIGTERM it shuts down in the order the library asks: stop
// taking requests (http.Server.Shutdown), stop the background work (Run),
// deliver what destinations are owed (Flush, bounded), close the
// Controller, close the database.
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
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/segmentapi"
	"github.com/gdprkit/privacy/sqlstore"
)

// config is what a start is given.
type config struct {
	addr, db, keyFile       string
	writeKey, source, token string
	shutdown                time.Duration
}

func main() {
	var cfg config
	flag.StringVar(&cfg.addr, "addr", "127.0.0.1:8080", "address to listen on")
	flag.StringVar(&cfg.db, "db", "segment.db", "SQLite database file (made on the first start)")
	flag.StringVar(&cfg.keyFile, "key-file", "", "file holding the secret key of the keyed hashes (default: the database's name + .key; made on the first start)")
	flag.StringVar(&cfg.writeKey, "write-key", os.Getenv("SEGMENT_WRITE_KEY"), "the Tracking API's write key (default $SEGMENT_WRITE_KEY, else a random one)")
	flag.StringVar(&cfg.source, "source", "src_local", "the source id the write key's messages are stored under")
	flag.StringVar(&cfg.token, "token", os.Getenv("SEGMENT_ACCESS_TOKEN"), "the Profile and Regulations APIs' access token (default $SEGMENT_ACCESS_TOKEN, else a random one)")
	flag.DurationVar(&cfg.shutdown, "shutdown-timeout", 10*time.Second, "how long shutting down may wait for requests and deliveries")
	flag.Parse()
	if cfg.keyFile == "" {
		cfg.keyFile = cfg.db + ".key"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "segment:", err)
		os.Exit(1)
	}
	if err := serve(ctx, ln, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "segment:", err)
		os.Exit(1)
	}
}

// serve runs the server on ln until ctx ends, then shuts down in order.
func serve(ctx context.Context, ln net.Listener, cfg config, out io.Writer) (err error) {
	log := slog.New(slog.NewTextHandler(out, nil))
	key, err := loadKey(cfg.keyFile)
	if err != nil {
		return err
	}
	if cfg.writeKey == "" {
		cfg.writeKey = "wk_" + randomHex(16)
		fmt.Fprintf(out, "write key (made for this start): %s\n", cfg.writeKey)
	}
	if cfg.token == "" {
		cfg.token = "tok_" + randomHex(16)
		fmt.Fprintf(out, "access token (made for this start): %s\n", cfg.token)
	}

	// The database: WAL so that reads do not wait for the writer, a busy
	// timeout so that writers wait for each other.
	db, err := sql.Open("sqlite", "file:"+cfg.db+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	store, err := sqlstore.New(db, sqlstore.SQLite)
	if err != nil {
		return err
	}
	if err := store.Migrate(ctx); err != nil {
		return fmt.Errorf("migrating %s: %w", cfg.db, err)
	}
	c, err := privacy.New(privacy.WithBackends(store), privacy.WithKey(key), privacy.WithLogger(log), privacy.WithInstance("example-segment"))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, c.Close()) }()

	// The background work: recovery after a crash, audience refresh,
	// overdue reports.
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	ran := make(chan error, 1)
	go func() { ran <- c.Run(runCtx) }()

	mux := http.NewServeMux()
	mux.Handle("/v1/", segmentapi.NewTracking(c, segmentapi.WithWriteKey(cfg.writeKey, cfg.source), segmentapi.WithLogger(log)))
	mux.Handle("/v1/spaces/", segmentapi.NewProfiles(c, segmentapi.WithAccessToken(cfg.token), segmentapi.WithLogger(log)))
	regulations := segmentapi.NewRegulations(c, segmentapi.WithAccessToken(cfg.token), segmentapi.WithLogger(log))
	mux.Handle("/regulations", regulations)
	mux.Handle("/regulations/", regulations)
	mux.Handle("/suppressions", regulations)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(out, "serving Segment's APIs on http://%s (database %s)\n", ln.Addr(), cfg.db)

	select {
	case <-ctx.Done():
	case err = <-served: // the listener failed: shut down all the same
	}

	// Shutting down, in order: no new requests, and those running finish;
	// then the background work stops; then what destinations are owed is
	// delivered, within the deadline; then Close (deferred above).
	fmt.Fprintln(out, "shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.shutdown)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		err = errors.Join(err, fmt.Errorf("stopping the server: %w", serr))
	}
	stopRun()
	if rerr := <-ran; rerr != nil && !errors.Is(rerr, privacy.ErrClosed) {
		err = errors.Join(err, rerr)
	}
	if ferr := c.Flush(sctx); ferr != nil {
		// Not lost: the outbox keeps it for the next start.
		fmt.Fprintf(out, "deliveries left for the next start: %v\n", ferr)
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// loadKey reads the key file, making it on the first start.
func loadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return makeKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the key file: %w", err)
	}
	key, err := hex.DecodeString(string(trimNewline(b)))
	if err != nil || len(key) < 32 {
		return nil, fmt.Errorf("the key file %s does not hold 32 or more hex-encoded bytes", path)
	}
	return key, nil
}

// makeKey writes a new key to path durably before anything is keyed with
// it: a temporary file, synced, linked as path (refused if another first
// start got there first), and the directory synced. A key lost to a crash
// after the database recorded its check value would leave every
// suppression unmatchable.
func makeKey(path string) ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".key-*")
	if err != nil {
		return nil, fmt.Errorf("making the key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, err
	}
	if _, err := tmp.WriteString(hex.EncodeToString(key) + "\n"); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	// Link, not rename: two first starts at once do not each keep a key.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return loadKey(path)
		}
		return nil, fmt.Errorf("making the key file: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return nil, fmt.Errorf("syncing the key file's directory: %w", err)
	}
	return key, nil
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
