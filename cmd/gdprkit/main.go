// Command gdprkit is the operator's tool for gdprkit/privacy over a sqlstore
// database (PostgreSQL or SQLite): migrate the tables, apply a request,
// read a request's status, list requests, export a person, verify the audit
// chain, and recover what a crash left unfinished.
//
//	gdprkit -dsn postgres://app@db/app -key-file /run/secrets/gdprkit.key migrate
//	gdprkit -dsn file:/var/lib/app/app.db erase user_id:42
//	gdprkit -json status req_06h4...
//	gdprkit list -status RUNNING -overdue
//	gdprkit export -format ndjson -o ada.ndjson email:ada@example.com
//
// The DSN (-dsn, or $GDPRKIT_DSN) picks the driver: postgres:// or
// postgresql:// is PostgreSQL (pgx), anything else a SQLite file. The key
// (-key-file, or $GDPRKIT_KEY), 32 or more bytes written in hex, must be
// the one the hosts run with: a wrong one is refused (exit status 4).
// -json prints results as JSON, one object per line, for scripts. Exit
// statuses: 0 done; 1 failed (a backend, or a request that ended FAILED or
// INVALID); 2 bad usage; 3 not found; 4 key mismatch.
//
// Built on the standard flag package: a few subcommands with a few flags
// each need no more, and a tool meant for incident response should carry no
// dependency it does not need.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
