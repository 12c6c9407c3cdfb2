package sqlstore

import (
	"errors"
	"fmt"
	"strings"

	"github.com/gdprkit/privacy/txscope"
)

// Errors of this package, matchable with errors.Is. Errors of a backend's
// contract match that backend package's sentinels instead (profile.ErrNotFound,
// identity.ErrConflict, ...).
var (
	// ErrAborted: the transaction shared by the backends of one txscope.Scope
	// was rolled back by another of them, or its commit failed, so this
	// backend's writes are gone too.
	ErrAborted = errors.New("sqlstore: the shared transaction was rolled back")
	// ErrNoScope: LockSubjects was called with a context holding no
	// txscope.Scope, so there is no transaction to hold the locks in.
	ErrNoScope = errors.New("sqlstore: LockSubjects needs a txscope.Scope in the context")
)

// IsRetryable reports whether err (or an error it wraps) is a transient
// conflict that running the whole transaction again may clear: a PostgreSQL
// serialization failure (SQLSTATE 40001) or deadlock (40P01), or SQLite's
// SQLITE_BUSY or SQLITE_LOCKED. It recognises the drivers' errors without
// importing them: an error with a SQLState() string method (pgx's
// *pgconn.PgError, for one), an error with a Code() int method (the SQLite
// result code, as modernc.org/sqlite's *sqlite.Error has), or SQLite's
// message text.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	var pg interface{ SQLState() string }
	if errors.As(err, &pg) {
		switch pg.SQLState() {
		case "40001", "40P01":
			return true
		}
		return false
	}
	var lite interface{ Code() int }
	if errors.As(err, &lite) {
		switch lite.Code() & 0xff { // the primary code; extended codes add bits above
		case 5, 6: // SQLITE_BUSY, SQLITE_LOCKED
			return true
		}
	}
	msg := err.Error()
	return strings.Contains(msg, "SQLITE_BUSY") || strings.Contains(msg, "SQLITE_LOCKED") ||
		strings.Contains(msg, "database is locked") || strings.Contains(msg, "database table is locked")
}

// sqlState returns the SQLSTATE of a PostgreSQL error, or "".
func sqlState(err error) string {
	var pg interface{ SQLState() string }
	if errors.As(err, &pg) {
		return pg.SQLState()
	}
	return ""
}

// isUniqueViolation reports whether err is a unique or primary key violation.
func isUniqueViolation(err error) bool {
	if sqlState(err) == "23505" {
		return true
	}
	var lite interface{ Code() int }
	if errors.As(err, &lite) {
		c := lite.Code()
		return c == 1555 || c == 2067 // SQLITE_CONSTRAINT_PRIMARYKEY, _UNIQUE
	}
	return strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// retryable marks err with txscope.ErrRetry when running the operation again
// may clear it, so that the Controller retries the operation.
func retryable(err error) error {
	if err == nil || errors.Is(err, txscope.ErrRetry) || !IsRetryable(err) {
		return err
	}
	return fmt.Errorf("%w: %w", txscope.ErrRetry, err)
}

// badText reports whether PostgreSQL refused a string it cannot store: text
// holds no NUL character, and only valid UTF-8.
func badText(err error) bool {
	switch sqlState(err) {
	case "22021", "22P05": // character_not_in_repertoire, untranslatable_character
		return true
	}
	return false
}
