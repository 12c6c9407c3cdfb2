package export

import (
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// SchemaVersion names the layout of every format this package writes. Any change
// to a format changes it, and Read refuses an export of another version.
const SchemaVersion = "gdprkit.export/v1"

// Errors of this package, matchable with errors.Is.
var (
	// ErrInvalid: an unknown format, a malformed or tampered export given to Read,
	// or a call to a Writer out of order or with a value it cannot write.
	ErrInvalid = errors.New("export: invalid")
	// ErrTooLarge: the input to Read is larger than its limit. Errors matching it
	// match ErrInvalid too.
	ErrTooLarge = errors.New("export: input too large")
)

// Package is everything held about one person, as Art. 15 (access) and Art. 20
// (portability) GDPR ask for: the Go value of one export in any Format.
//
// Read returns nil, not empty, slices and maps for empty collections; event
// properties are one exception, where nil (no properties) and an empty map
// differ, and the Preferences of a consent change the other, where nil (the
// message gave none) and an empty map (it gave an empty set, which denies every
// category) differ. So Read(Write(p)) equals p for a p whose times are UTC, whose
// values are in profile.NormalizeValue's canonical form (with no nil map or slice
// inside them: JSON writes those as null), whose Schema is SchemaVersion and
// whose empty collections are nil, Profile.Metadata.Recipients,
// Profile.Metadata.Consent.History and Profile.Metadata.Accounts among them.
type Package struct {
	// Schema is SchemaVersion.
	Schema string
	// GeneratedAt is when the export was made.
	GeneratedAt time.Time
	// RequestID is the id of the access request that produced the export.
	RequestID string
	// Profile holds the person's traits (value, source, update time), every
	// identifier linked to them (with when it was first seen and the message that
	// brought it) and the profile's metadata, with the person's consent as it
	// stands (Metadata.Consent's Categories and UpdatedAt).
	Profile profile.Profile
	// Events are every event collected about the person, oldest first.
	Events []profile.Event
	// Audiences are the keys of the audiences the person is in now, in
	// ascending order without duplicates.
	Audiences []string
	// Suppression says whether the person objected to processing.
	Suppression Suppression
	// Requests are the person's past privacy requests with their receipts. Their
	// IDs are unique.
	Requests []Request
	// Recipients are every destination that received the person's data: the
	// recipients Art. 19 GDPR asks to name. They are here, not in
	// Profile.Metadata.Recipients, which stays nil.
	Recipients []Recipient
	// ConsentHistory is the person's consent changes, oldest first: the
	// proof of consent Art. 7(1) GDPR asks a controller to be able to show.
	// They are here, not in Profile.Metadata.Consent.History, which stays
	// nil.
	ConsentHistory []profile.ConsentChange
	// Accounts are the accounts the person is linked to, Segment's groups
	// (linked by group calls), in the order first linked; their group ids
	// are unique. They are here, not in Profile.Metadata.Accounts, which
	// stays nil.
	Accounts []profile.AccountLink
}

// Suppression is the state of the person's objection (Art. 21 GDPR).
type Suppression struct {
	// Suppressed is true while collection about the person is blocked.
	Suppressed bool
}

// Request is one past privacy request about the person and its receipt.
type Request struct {
	ID     string
	Type   string // such as "DELETE_ONLY" or "ACCESS"
	Status string // such as "FINISHED" or "PARTIAL_SUCCESS"
	// Reason says why the request ended as it did, when it did not succeed.
	Reason   string
	Received time.Time
	// Due is when the request must be answered (Art. 12(3) GDPR).
	Due time.Time
	// Finished is zero while the request is under way.
	Finished time.Time
	// ExtensionReason says why Due was extended, when it was.
	ExtensionReason string
	// ProfileVersion is the profile's metadata version after the request.
	ProfileVersion uint64
	// Outcomes are one per backend and per destination.
	Outcomes []Outcome
}

// The kinds of an Outcome.
const (
	OutcomeBackend     = "backend"
	OutcomeDestination = "destination"
)

// Outcome is what one backend or destination did with a request.
type Outcome struct {
	// Kind is OutcomeBackend or OutcomeDestination.
	Kind   string
	Name   string
	Status string
	// Err is the error the backend or destination reported, if any.
	Err      string
	Finished time.Time
}

// Recipient is one destination that received the person's data (Art. 19 GDPR),
// with when it first and last did: the profile keeps them in its metadata.
type Recipient = profile.Recipient

// Header is the first thing a Writer writes: what the export is and about whom.
type Header struct {
	// Schema is SchemaVersion; empty means SchemaVersion.
	Schema      string
	GeneratedAt time.Time
	RequestID   string
	ProfileID   identity.ProfileID
	// Metadata is the profile's metadata without its Recipients, its
	// Consent.History and its Accounts, which are sections of their own
	// (WriteRecipient, WriteConsentChange, WriteAccount): WriteHeader
	// refuses any here rather than drop them. Its Consent's Categories and
	// UpdatedAt are written here.
	Metadata    profile.Metadata
	Suppression Suppression
}

// Format is one of the forms an export takes: JSON, NDJSON or CSV. The zero
// Format is not valid, so a forgotten format fails instead of defaulting.
type Format uint8

// The formats.
const (
	// JSON is one JSON document: an object holding the whole Package. Its JSON
	// Schema is JSONSchema.
	JSON Format = iota + 1
	// NDJSON is newline-delimited JSON: one record per line, each with a "kind",
	// closed by an "end" record that counts the others.
	NDJSON
	// CSV is a zip archive of one CSV file per table and a manifest.json with
	// each file's SHA-256 and row count.
	CSV
)

var formatNames = [...]string{JSON: "json", NDJSON: "ndjson", CSV: "csv"}

// String returns "json", "ndjson" or "csv", as ParseFormat reads them.
func (f Format) String() string {
	if f.valid() {
		return formatNames[f]
	}
	return fmt.Sprintf("Format(%d)", uint8(f))
}

// ContentType returns the media type of the format, for an HTTP response.
func (f Format) ContentType() string {
	switch f {
	case JSON:
		return "application/json"
	case NDJSON:
		return "application/x-ndjson"
	case CSV:
		return "application/zip"
	}
	return "application/octet-stream"
}

func (f Format) valid() bool { return f >= JSON && f <= CSV }

// ParseFormat returns the Format named "json", "ndjson" or "csv", in any case.
// Any other name fails with an error matching ErrInvalid.
func ParseFormat(s string) (Format, error) {
	name := strings.ToLower(strings.TrimSpace(s))
	for f, n := range formatNames {
		if n != "" && n == name {
			return Format(f), nil
		}
	}
	return 0, fmt.Errorf("%w: unknown format %q: want json, ndjson or csv", ErrInvalid, s)
}

func checkFormat(f Format) error {
	if !f.valid() {
		return fmt.Errorf("%w: unknown format %v: want JSON, NDJSON or CSV", ErrInvalid, f)
	}
	return nil
}

//go:embed schema.json
var jsonSchema []byte

// JSONSchema returns the JSON Schema (draft 2020-12) of the JSON format. The
// caller may keep and change the slice: it is a copy.
func JSONSchema() []byte { return append([]byte(nil), jsonSchema...) }
