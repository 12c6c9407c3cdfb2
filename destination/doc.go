// Package destination is how profile updates leave the library: the Destination
// interface that downstream tools implement, an in-memory Recorder for tests and
// examples, and a Webhook that POSTs signed JSON.
//
// Destinations are not transaction participants: they cannot roll back. The
// Controller hands them work only after the change that produced it committed,
// through an outbox that delivers at least once, in order, with exponential
// backoff and a bounded number of attempts. A destination must therefore treat a
// repeated Message.MessageID (or Deletion.RequestID) as the same message; the
// webhook also sends an Idempotency-Key header that is the same on every retry.
//
// Messages follow Segment's spec: identify messages carry traits, track messages
// an event and properties; audience changes arrive as "Audience Entered" and
// "Audience Exited" track events with the audience key in the properties.
//
// # Errors
//
// Delete returns an error matching ErrNotSupported when a destination cannot
// delete a person; NewWebhook returns ErrInvalid for a bad configuration.
package destination
