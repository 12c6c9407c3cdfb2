// Package destination is how profile updates leave the library: the Destination
// interface that downstream tools implement, an in-memory Recorder for tests and
// examples, and a Webhook that POSTs signed JSON.
//
// Destinations are not transaction participants: they cannot roll back. The
// Controller writes what each is owed to its outbox in the transaction of the
// change that produced it, and delivers it from there at least once, in order
// per person, with jittered exponential backoff over a horizon. A destination
// must therefore treat a repeated Message.MessageID for the same person (or a
// repeated deletion of the same person for the same Deletion.RequestID) as the
// same message. Send may deliver some messages and refuse others for good with
// a RejectedError, so that one message it can never take does not hold back
// the rest of its batch.
//
// The Webhook POSTs JSON over https with an Idempotency-Key header that is the
// same on every retry, and a Stripe-style signature over a timestamp, that key
// and the body; receivers check it with VerifyWebhook.
//
// Messages follow Segment's spec: identify messages carry traits, track messages
// an event and properties; audience changes arrive as "Audience Entered" and
// "Audience Exited" track events with the audience key in the properties.
//
// # Errors
//
// The outbox keeps of a destination's error only its kind (a timeout, a
// rejection, its Go type), since its text may quote what it was sent; a
// destination returns a KeptError (Kept) for a text it vouches names nobody,
// as the Webhook does for the statuses it gets.
//
// Delete returns an error matching ErrNotSupported when a destination cannot
// delete a person; an error matching ErrRejected (a RejectedError from Send)
// says a call can never succeed, so the outbox keeps it as a dead letter at
// once instead of retrying it; NewWebhook returns ErrInvalid for a bad
// configuration; VerifyWebhook returns ErrSignature for a request it cannot
// trust.
package destination
