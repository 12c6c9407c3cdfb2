package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/export"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/sqlstore"
)

// binary is the gdprkit command, built once for the tests that run it as
// a subprocess.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gdprkit-cli")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "gdprkit")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		panic("building gdprkit: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// database is one database the command runs against: its DSN and schema
// flags, and a Store over it for the test's own setup and checks.
type database struct {
	flags []string
	store *sqlstore.Store
}

func sqliteDatabase(t *testing.T) database {
	path := filepath.Join(t.TempDir(), "cli.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := sqlstore.New(db, sqlstore.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	return database{flags: []string{"-dsn", path, "-destinations", "none"}, store: s}
}

func postgresDatabase(t *testing.T) database {
	dsn := os.Getenv("GDPRKIT_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("PostgreSQL tests skipped: set GDPRKIT_TEST_POSTGRES_DSN to the DSN of a database they may create schemas in, such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var r [6]byte
	rand.Read(r[:])
	schema := "gdprkit_cli_" + hex.EncodeToString(r[:])
	t.Cleanup(func() { db.Exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE") })
	s, err := sqlstore.New(db, sqlstore.Postgres, sqlstore.WithSchema(schema))
	if err != nil {
		t.Fatal(err)
	}
	return database{flags: []string{"-dsn", dsn, "-schema", schema, "-destinations", "none"}, store: s}
}

// gdprkit runs the command with the database's flags and the key, and
// returns its exit status and outputs.
func (d database) gdprkit(t *testing.T, key string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, append(slices.Clip(d.flags), args...)...) // d.flags may share its array with another database's
	cmd.Env = append(os.Environ(), "GDPRKIT_KEY="+key)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errOut.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String(), errOut.String()
	}
	t.Fatal(err)
	return 0, "", ""
}

func TestCLI(t *testing.T) {
	for name, open := range map[string]func(*testing.T) database{"sqlite": sqliteDatabase, "postgres": postgresDatabase} {
		t.Run(name, func(t *testing.T) { testCLI(t, open(t)) })
	}
}

func testCLI(t *testing.T, d database) {
	ctx := context.Background()
	keyBytes := make([]byte, 32)
	rand.Read(keyBytes)
	key := hex.EncodeToString(keyBytes)

	want := func(code int, wantCode int, stdout, stderr string, what string) {
		t.Helper()
		if code != wantCode {
			t.Fatalf("%s: exit status %d, want %d\nstdout: %s\nstderr: %s", what, code, wantCode, stdout, stderr)
		}
	}
	code, out, errOut := d.gdprkit(t, key, "migrate")
	want(code, 0, out, errOut, "migrate")
	code, out, errOut = d.gdprkit(t, key, "migrate") // a second run is a no-op
	want(code, 0, out, errOut, "migrate again")

	// The hosts' data: ada and bob, collected by a Controller with the key.
	c, err := privacy.New(privacy.WithBackends(d.store), privacy.WithKey(keyBytes))
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Now().Add(-time.Hour)
	for _, m := range []privacy.Message{
		privacy.Identify{UserID: "ada", Traits: map[string]any{"email": "ada@example.com"}, Timestamp: ts},
		privacy.Identify{UserID: "bob", Traits: map[string]any{"plan": "pro"}, Timestamp: ts},
		privacy.Track{UserID: "bob", Event: "Signed Up", Timestamp: ts},
	} {
		if err := c.Collect(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()

	// erase, in JSON: a receipt.
	code, out, errOut = d.gdprkit(t, key, "-json", "erase", "email:ada@example.com")
	want(code, 0, out, errOut, "erase")
	var r wireReceipt
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Type != "DELETE_ONLY" || r.Status != "FINISHED" || !strings.HasPrefix(r.ID, "req_") {
		t.Fatalf("erase printed %q (%v)", out, err)
	}
	// "ada@", not "ada": the receipt's keyed hashes, in hex, may hold the letters.
	if strings.Contains(out+errOut, "ada@") || strings.Contains(out+errOut, "example.com") {
		t.Errorf("the receipt names the person: %s %s", out, errOut)
	}
	code, out, errOut = d.gdprkit(t, key, "status", r.ID)
	want(code, 0, out, errOut, "status")
	if !strings.Contains(out, "DELETE_ONLY") || !strings.Contains(out, "FINISHED") {
		t.Errorf("status printed %q", out)
	}
	code, _, _ = d.gdprkit(t, key, "status", "req_nope")
	want(code, exitNotFound, "", "", "status of an unknown request")

	code, out, errOut = d.gdprkit(t, key, "-json", "list", "-type", "delete_only")
	want(code, 0, out, errOut, "list")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || !strings.Contains(lines[0], r.ID) {
		t.Errorf("list printed %q, want the erasure alone", out)
	}
	code, out, errOut = d.gdprkit(t, key, "list", "-overdue")
	want(code, 0, out, errOut, "list -overdue")
	if strings.Contains(out, "req_") {
		t.Errorf("nothing is overdue, list -overdue printed %q", out)
	}

	// rectify, then export bob, and read the export back.
	code, out, errOut = d.gdprkit(t, key, "-json", "rectify", "user_id:bob", `plan="team"`, "age=41")
	want(code, 0, out, errOut, "rectify")
	file := filepath.Join(t.TempDir(), "bob.ndjson")
	code, out, errOut = d.gdprkit(t, key, "export", "-format", "ndjson", "-o", file, "user_id:bob")
	want(code, 0, out, errOut, "export")
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := export.Read(f, export.NDJSON)
	f.Close()
	if err != nil || pkg.Profile.Traits["plan"].Value != "team" || pkg.Profile.Traits["age"].Value != float64(41) || len(pkg.Events) != 1 {
		t.Fatalf("the export reads back as %+v, %v", pkg, err)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the export's mode: %v, %v; want 0600", st, err)
	}
	code, _, errOut = d.gdprkit(t, key, "export", "-o", filepath.Join(t.TempDir(), "ada.json"), "email:ada@example.com")
	want(code, exitNotFound, "", errOut, "export of an erased person")
	if strings.Contains(errOut, "ada") {
		t.Errorf("the error names the person: %s", errOut)
	}
	code, _, _ = d.gdprkit(t, key, "export", "-o", file, "user_id:bob")
	want(code, exitFailed, "", "", "export onto an existing file")

	// An unknown type: refused before anything is journaled, not echoed.
	code, out, errOut = d.gdprkit(t, key, "apply", "-type", "jane@example.com", "user_id:bob")
	want(code, exitUsage, out, errOut, "apply of an unknown type")
	if strings.Contains(strings.ToLower(out+errOut), "jane") {
		t.Errorf("apply of an unknown type echoed it: %q %q", out, errOut)
	}
	// An invalid request all the same (a rectification of two people):
	// INVALID, exit 1, the receipt printed.
	code, out, _ = d.gdprkit(t, key, "apply", "-type", "RECTIFY", "user_id:bob", "user_id:eve")
	want(code, exitFailed, out, "", "apply of an invalid request")
	if !strings.Contains(out, "INVALID") {
		t.Errorf("an invalid request printed %q", out)
	}
	code, out, errOut = d.gdprkit(t, key, "apply", "-type", "suppress_with_delete", "user_id:bob")
	want(code, 0, out, errOut, "apply")

	code, out, errOut = d.gdprkit(t, key, "-json", "verify-audit")
	want(code, 0, out, errOut, "verify-audit")
	var verified struct{ Verified int }
	if err := json.Unmarshal([]byte(out), &verified); err != nil || verified.Verified < 10 {
		t.Errorf("verify-audit printed %q", out)
	}
	code, out, errOut = d.gdprkit(t, key, "recover")
	want(code, 0, out, errOut, "recover")

	// Bad usage, a bad subject (never echoed), another key.
	for _, args := range [][]string{{}, {"bogus"}, {"erase"}, {"erase", "jane@example.com"}, {"status"}, {"list", "-limit", "0"}, {"export", "user_id:bob"}} {
		code, _, errOut := d.gdprkit(t, key, args...)
		want(code, exitUsage, "", errOut, strings.Join(args, " "))
		if strings.Contains(errOut, "jane") {
			t.Errorf("%v: the error echoes the subject: %s", args, errOut)
		}
	}
	other := make([]byte, 32)
	rand.Read(other)
	code, _, errOut = d.gdprkit(t, hex.EncodeToString(other), "status", r.ID)
	want(code, exitKeyMismatch, "", errOut, "another key")
	code, _, _ = d.gdprkit(t, "", "status", r.ID)
	want(code, exitUsage, "", "", "no key")
}

// TestCLIErasureStopsCollection is the point of the tool: a person erased
// and suppressed from the command line is kept out of the hosts'
// collection.
func TestCLIErasureStopsCollection(t *testing.T) {
	d := sqliteDatabase(t)
	keyBytes := make([]byte, 32)
	rand.Read(keyBytes)
	key := hex.EncodeToString(keyBytes)
	if code, out, errOut := d.gdprkit(t, key, "migrate", "-init-key"); code != 0 {
		t.Fatalf("migrate: %d %s %s", code, out, errOut)
	}
	if code, out, errOut := d.gdprkit(t, key, "apply", "-type", "SUPPRESS_WITH_DELETE", "user_id:ada"); code != 0 {
		t.Fatalf("apply: %d %s %s", code, out, errOut)
	}
	c, err := privacy.New(privacy.WithBackends(d.store), privacy.WithKey(keyBytes))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Collect(context.Background(), privacy.Track{UserID: "ada", Event: "Came Back", Timestamp: time.Now()})
	if !errors.Is(err, privacy.ErrSuppressed) {
		t.Fatalf("ada's message after her suppression from the command line: %v", err)
	}
	if _, err := c.Profile(context.Background(), identity.ID{Type: "user_id", Value: "ada"}); !errors.Is(err, privacy.ErrNotFound) {
		t.Fatalf("ada's profile: %v", err)
	}
}
