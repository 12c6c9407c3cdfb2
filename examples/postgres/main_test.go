package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// TestRun runs the example against the PostgreSQL database of
// GDPRKIT_TEST_POSTGRES_DSN, and checks that it cleans up after itself.
func TestRun(t *testing.T) {
	dsn := os.Getenv("GDPRKIT_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("set GDPRKIT_TEST_POSTGRES_DSN to the DSN of a PostgreSQL database the test may create schemas in")
	}
	var b [4]byte
	rand.Read(b[:])
	schema := "gdprkit_example_test_" + hex.EncodeToString(b[:])
	var out bytes.Buffer
	if err := run(context.Background(), &out, dsn, schema, true); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"batch: 200 messages collected, 204 in all", "RECTIFY FINISHED", "ACCESS FINISHED", "DELETE_ONLY FINISHED", `{"kind":"header"`,
		"Ada is not found: true", "chain verified", "schema " + schema + " dropped",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the output lacks %q:\n%s", want, out.String())
		}
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var left bool
	if err := db.QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&left); err != nil || left {
		t.Errorf("schema %s left behind (%v)", schema, err)
	}
}
