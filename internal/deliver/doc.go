// Package deliver delivers to destinations what an outbox.Store holds: one
// worker per destination claims items with a lease, calls the destination
// (a batch of messages, or one deletion), and settles each item's answer:
// delivered, not supported, tried again later with exponential backoff and
// jitter, or given up on (a dead letter) after the retry horizon or when the
// destination rejects it for good (a RejectedError fails only the messages
// it names). A profile's items go out in order: the store hands out a run of
// them at a time; the engine makes one call per claim and gives the rest of
// the claim back unsent at once, so an erasure that commits during a call
// purges what was not yet sent; a call that outlives its timeout keeps its
// items, their lease renewed (after Close too), until it returns. Any number of engines, in any number of processes, share one
// store.
//
// The Controller is its only user; the root package's delivery.go is its
// public face (Delivery, DeliveryStats, Flush, DeadLetters, Replay).
package deliver
