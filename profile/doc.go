// Package profile stores what is known about each person: traits with provenance
// (value, source, update time; the value updated last wins), events, and metadata
// whose Version goes up with every change. The metadata holds the recipients the
// person's data went to and their consent preferences with the history of their
// changes (Consent, with Apply and Merge, the rules Segment stores consent by);
// stores keep both beside the other metadata, in clear, as the Controller writes
// them.
//
// The Store interface is the backend contract: transactions with database/sql
// manners (Begin, Commit, Rollback; Rollback after Commit is harmless), idempotent
// writes that recovery can replay, and copies at the boundary, so no caller ever
// holds the store's own memory. MemStore is the in-memory implementation;
// NewSealedMemStore makes one that keeps trait values, event properties and
// contexts sealed under a data key per profile, dropped with the profile. An
// event keeps the type, context and source of the message that made it.
//
// A store that keeps values sealed under a person's data key (package keyring)
// may implement ShreddingTx and Purger: an erasure then deletes the profile
// in its commit, which destroys the key, and leaves the sealed rows, unreadable,
// to a purge after it, so that the time until a person is unreadable does not
// grow with their events.
//
// The portable pieces every backend shares live here too: NormalizeValue (what a
// trait value or event property may be: a JSON value), EventQuery with its
// cursor encoding, and SelectTraits and SelectExternalIDs for the Profile API
// reads.
//
// # Errors
//
// ErrNotFound, ErrInvalid (a *ValueError names the offending path), ErrDuplicate
// (a message id recorded before) and ErrTxDone, matchable with errors.Is.
package profile
