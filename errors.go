package privacy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
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

// backendError wraps an error from a backend so the root sentinels match too.
func backendError(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, identity.ErrNotFound), errors.Is(err, profile.ErrNotFound):
		return fmt.Errorf("privacy: %s: %w: %w", op, ErrNotFound, err)
	case errors.Is(err, identity.ErrConflict):
		return fmt.Errorf("privacy: %s: %w: %w", op, ErrConflict, err)
	case errors.Is(err, identity.ErrInvalid), errors.Is(err, profile.ErrInvalid):
		return fmt.Errorf("privacy: %s: %w: %w", op, ErrInvalid, err)
	}
	return fmt.Errorf("privacy: %s: %w", op, err)
}
