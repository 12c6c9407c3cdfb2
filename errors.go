package privacy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"syscall"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/export"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/internal/deliver"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/keyring"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/suppression"
	"github.com/gdprkit/privacy/txscope"
)

// Errors of the Controller, matchable with errors.Is. Errors from the backends are
// wrapped so that both the root sentinel and the package's own match: a profile that
// is not found matches ErrNotFound and profile.ErrNotFound.
var (
	// ErrInvalid: bad input. The error says which field and why; nothing changed.
	ErrInvalid = errors.New("privacy: invalid input")
	// ErrNotFound: no person is known by the identifier.
	ErrNotFound = errors.New("privacy: not found")
	// ErrSuppressed: the message was dropped because the person objected
	// (Art. 21). Nothing was stored.
	ErrSuppressed = errors.New("privacy: subject is suppressed")
	// ErrConflict: a backend refused a write that contradicts its state.
	ErrConflict = errors.New("privacy: conflict")
	// ErrClosed: the Controller was closed.
	ErrClosed = errors.New("privacy: controller closed")
	// ErrKeyMismatch: the key given to New (WithKey, with WithPreviousKeys
	// after a rotation) is not the one the backends' hashes were made with
	// (the suppression list's recorded check value, the audit log's chain).
	// Started anyway, suppressions would stop matching and the audit chain
	// would break, so New refuses; and a Controller left running through a
	// rotation (RotateKey) answers every call with it once it sees the new
	// key: restart it with the new keys.
	ErrKeyMismatch = errors.New("privacy: the key is not the one the backends were keyed with")
)

// FieldError says which field of the input was wrong and why. It matches
// ErrInvalid, and the cause (such as identity.ErrBlocked) when there is one.
// Its Reason never quotes a value; its Error text, which receipts, the
// journal and the audit log keep, names a trait or property by its top-level
// name only (profile.ShownPath).
type FieldError struct {
	// Field names the field as the Go struct spells it: "UserID",
	// "ExternalIDs[1]", `Traits["email"]`, `Properties["cart"]["sku"]`,
	// "Timestamp".
	Field  string
	Reason string
	Err    error
}

// Error names the field, as profile.ShownPath shows it, and the reason.
func (e *FieldError) Error() string {
	return "privacy: invalid " + profile.ShownPath(e.Field) + ": " + e.Reason
}

// Unwrap returns ErrInvalid and the cause.
func (e *FieldError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrInvalid}
	}
	return []error{ErrInvalid, e.Err}
}

func fieldError(field string, err error) *FieldError {
	var ve *profile.ValueError
	if errors.As(err, &ve) {
		return &FieldError{Field: ve.Path, Reason: ve.Reason, Err: err}
	}
	reason := err.Error()
	for _, sentinel := range []error{identity.ErrBlocked, identity.ErrInvalid} {
		reason = strings.TrimPrefix(reason, sentinel.Error()+": ") // the field error says "invalid" already
	}
	return &FieldError{Field: field, Reason: reason, Err: err}
}

func fieldErrorf(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// sentinels maps every package's sentinel errors to the root sentinel they
// also match. Every error from a backend passes through backendError, which
// consults this table: a new sentinel is added here, never at a call site.
// Sentinels that no root one stands for (a transaction already done, a
// duplicate message, a retryable conflict) are absent: they keep their own.
var sentinels = []struct{ backend, root error }{
	{identity.ErrNotFound, ErrNotFound},
	{profile.ErrNotFound, ErrNotFound},
	{audience.ErrNotFound, ErrNotFound},
	{journal.ErrNotFound, ErrNotFound},
	{identity.ErrConflict, ErrConflict},
	{audience.ErrConflict, ErrConflict},
	{audit.ErrConflict, ErrConflict},
	{identity.ErrInvalid, ErrInvalid},
	{profile.ErrInvalid, ErrInvalid},
	{audience.ErrInvalid, ErrInvalid},
	{suppression.ErrInvalid, ErrInvalid},
	{journal.ErrInvalid, ErrInvalid},
	{export.ErrInvalid, ErrInvalid},
	{destination.ErrInvalid, ErrInvalid},
	{deliver.ErrClosed, ErrClosed},
	{outbox.ErrNotFound, ErrNotFound},
	{outbox.ErrInvalid, ErrInvalid},
	{suppression.ErrKeyChanged, ErrKeyMismatch},
	{audit.ErrUnknownKey, ErrKeyMismatch},
	{keyring.ErrNotFound, ErrNotFound},
	{keyring.ErrInvalid, ErrInvalid},
	{keyring.ErrWrongKeeper, ErrKeyMismatch},
	{keyring.ErrWrongKeyring, ErrKeyMismatch},
}

// backendError wraps an error from a backend, naming the operation, so that
// every root sentinel the table gives for it matches too (an error joining
// several backends' failures may stand for more than one). Its text is the
// operation and the error's kind (describe), never the backend's own text:
// a driver's or a store's message may quote the values it was given, and
// this text reaches receipts, the journal, the audit log and log lines.
// errors.Is and errors.As still see the backend's error.
func backendError(op string, err error) error {
	if err == nil {
		return nil
	}
	var roots []error
	for _, s := range sentinels {
		if errors.Is(err, s.backend) && !slices.Contains(roots, s.root) {
			roots = append(roots, s.root)
		}
	}
	// "journal: journal: invalid" says it once.
	return &safeError{text: "privacy: " + op + ": " + strings.TrimPrefix(describe(err), op+": "), errs: append(roots, err)}
}

// safeError is an error whose text is fit to keep: it names what failed and
// how, never a value. It unwraps to the errors it stands for.
type safeError struct {
	text string
	errs []error
}

func (e *safeError) Error() string   { return e.text }
func (e *safeError) Unwrap() []error { return e.errs }

// keptSentinels are the errors whose text describe keeps: fixed texts, which
// say what went wrong without a value.
var keptSentinels = []error{
	ErrInvalid, ErrNotFound, ErrSuppressed, ErrConflict, ErrClosed, ErrKeyMismatch,
	identity.ErrInvalid, identity.ErrNotFound, identity.ErrConflict, identity.ErrTxDone, identity.ErrBlocked,
	profile.ErrInvalid, profile.ErrNotFound, profile.ErrDuplicate, profile.ErrTxDone, profile.ErrTooLarge,
	audience.ErrInvalid, audience.ErrNotFound, audience.ErrConflict, audience.ErrTxDone,
	suppression.ErrInvalid, suppression.ErrTxDone, suppression.ErrKeyChanged,
	journal.ErrInvalid, journal.ErrNotFound, journal.ErrConflict,
	audit.ErrConflict, audit.ErrDuplicate, audit.ErrTampered, audit.ErrUnknownKey,
	outbox.ErrInvalid, outbox.ErrNotFound, outbox.ErrTxDone,
	export.ErrInvalid, export.ErrTooLarge,
	keyring.ErrNotFound, keyring.ErrInvalid, keyring.ErrTxDone, keyring.ErrUndecryptable, keyring.ErrWrongKeeper, keyring.ErrWrongKeyring,
	destination.ErrInvalid, destination.ErrNotSupported, destination.ErrRejected,
	txscope.ErrRetry, deliver.ErrClosed,
	context.Canceled, context.DeadlineExceeded, io.ErrUnexpectedEOF, io.ErrShortWrite, io.ErrClosedPipe,
	errExportInterrupted,
}

// describe returns what kind of error err is, in words fit to keep (a
// receipt, the journal, the audit log, a log line): the text of an error
// this package made safe (a FieldError, a safeError), else the fixed texts
// of the sentinels it matches, a database's SQLSTATE, whether it is a
// network error, and otherwise its type. Never the error's own text, which
// may quote values.
func describe(err error) string {
	var fe *FieldError
	var se *safeError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &se):
		return se.text
	case errors.As(err, &fe):
		return fe.Error()
	}
	var kinds []string
	for _, s := range keptSentinels {
		if errors.Is(err, s) {
			kinds = append(kinds, s.Error())
		}
	}
	var ve *profile.ValueError
	if errors.As(err, &ve) {
		kinds = append(kinds, ve.Error()) // names a path and a reason, no value
	}
	var state interface{ SQLState() string }
	if errors.As(err, &state) {
		kinds = append(kinds, "database error SQLSTATE "+state.SQLState())
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		kinds = append(kinds, errno.Error()) // the system's fixed text: "no space left on device"
	}
	var ne net.Error
	if errors.As(err, &ne) {
		kinds = append(kinds, "network error")
		if ne.Timeout() {
			kinds = append(kinds, "timeout")
		}
	}
	if len(kinds) == 0 {
		return fmt.Sprintf("failed (%T)", innermost(err))
	}
	return strings.Join(kinds, ": ")
}

// innermost returns the error at the end of err's first chain.
func innermost(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}
