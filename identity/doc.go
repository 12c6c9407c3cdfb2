// Package identity turns the identifiers a message carries into one profile per
// person, following Segment's identity resolution.
//
// An ID is a type and a value ("email:a@b.c"), normalised by NewID and ParseID. A
// ProfileID ("use_...") names a profile for good. The Graph interface stores which
// identifiers belong to which profile; MemGraph is its in-memory implementation.
// The Resolver holds the rules and is the portable layer every Graph shares:
// blocked values (exact or regular expression; dropped from a message's
// identifiers by default), per-type limits within a window, priority order,
// hard caps per profile, and the custom identifiers taken from traits or
// event properties (Rules.Custom). Resolve plans what a message does (no
// match creates a profile, one joins it, several merge into the oldest, keeping a
// merge history) and Plan.Apply writes it in a transaction.
//
// When linking would break a limit, the lowest-priority identifier of the message
// is dropped and matching retried. That is what keeps a device id shared by many
// people from merging them into one "blob" profile.
//
// # Errors
//
// ErrInvalid (malformed identifier or rules), ErrBlocked (a blocked value; it also
// matches ErrInvalid), ErrNotFound, ErrConflict and ErrTxDone, matchable with
// errors.Is.
package identity
