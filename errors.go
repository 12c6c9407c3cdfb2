package privacy

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/export"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/internal/deliver"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/suppression"
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
	// would break, so New refuses.
	ErrKeyMismatch = errors.New("privacy: the key is not the one the backends were keyed with")
)

// FieldError says which field of the input was wrong and why. It matches
// ErrInvalid, and the cause (such as identity.ErrBlocked) when there is one.
type FieldError struct {
	// Field names the field as the Go struct spells it: "UserID",
	// "ExternalIDs[1]", `Traits["email"]`, "Timestamp".
	Field  string
	Reason string
	Err    error
}

// Error names the field and the reason.
func (e *FieldError) Error() string { return "privacy: invalid " + e.Field + ": " + e.Reason }

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
}

// backendError wraps an error from a backend, naming the operation, so that
// every root sentinel the table gives for it matches too (an error joining
// several backends' failures may stand for more than one).
func backendError(op string, err error) error {
	if err == nil {
		return nil
	}
	format, args := "privacy: %s: ", []any{op}
	for _, s := range sentinels {
		if errors.Is(err, s.backend) && !slices.Contains(args[1:], any(s.root)) {
			format += "%w: "
			args = append(args, s.root)
		}
	}
	return fmt.Errorf(format+"%w", append(args, err)...)
}
