// Package outbox is the backend that holds what destinations are owed: every
// message, audience change and deletion bound for a destination, written in
// the same transaction as the change that causes it, and kept until the
// destination has answered. It is a transactional outbox: whatever committed
// is delivered, whichever process delivers it and whenever.
//
// A Store is a transaction participant like the profile store (Begin, then
// Enqueue, Merge and Purge in a Tx, then Commit), and a work queue that any
// number of deliverers, in any number of processes, share: Claim leases due
// items to one owner until a time, Renew extends the lease while a call runs,
// Settle records each item's answer. An item whose lease lapses (its
// deliverer died) is claimed again.
//
// # Order
//
// A destination gets each profile's items in the order they were enqueued:
// Claim hands out, of each destination and profile, a run that starts at its
// oldest outstanding item, messages in order up to a deletion (which goes
// alone, once everything before it answered) or an item not due or held. A
// deliverer sends a run in order and gives back, unsent, what follows a part
// that failed. So a deletion is never overtaken by an earlier message about
// the person, not even one whose call outlived its timeout, since its item
// stays claimed until the call returns. Purge drops a
// profile's queued messages (an erasure's transaction does it before it
// enqueues the deletion), and Merge moves a profile's items to the profile it
// was merged into, in the merge's transaction, so the order follows the
// person. (An item merged in ahead of one a deliverer holds may go out beside
// it, in another call: until the merge they were about two profiles. A
// deletion still waits for both.)
//
// # States
//
// An item is Pending until it answers: Delivered, NotSupported (a destination
// that cannot delete), or Dead (given up on after the retry horizon; listed by
// Dead, counted by Stats, made Pending again by Replay). An item without a
// Request is removed once delivered; a request's items stay, their payload
// (the person's identifiers and traits) removed, until the request has
// recorded their outcomes (Outcomes) and forgets them (Forget).
//
// # Retention
//
// A store whose transactions are ExpiringTx drops, with Expire, the queued
// and dead messages of events that retention deleted from the profile
// store (Expired judges a message as profile.Cutoffs judge its event), so
// that neither a retry nor Replay sends an event the library no longer
// holds.
//
// MemStore is the in-memory Store; package sqlstore has the PostgreSQL and
// SQLite one, and package storetest checks any Store against this
// documentation.
//
// # Errors
//
// ErrInvalid (an item or argument that cannot be stored), ErrNotFound, and
// ErrTxDone, matchable with errors.Is.
package outbox
