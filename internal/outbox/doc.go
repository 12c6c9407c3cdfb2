// Package outbox delivers to destinations what the Controller committed: one
// queue and one worker per destination, at least once, in order per
// destination, with batching, exponential backoff and bounded attempts. A
// slow, failing, hanging or panicking destination delays only itself.
//
// The Controller is its only user: it hands the outbox a change's messages and
// deletions after the change commits, and learns each tracked item's outcome
// through a callback (the request's receipt records it). The root package's
// delivery.go is the outbox's public face (Delivery, DeliveryStats, Flush).
package outbox
