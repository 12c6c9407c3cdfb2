// Package audience computes audiences: named sets of profiles defined by a
// condition over their traits, their events and other audiences, kept current in
// real time as messages are collected.
//
// A Definition has a key and a query in a language modelled on Segment's:
//
//	trait('plan') = 'pro' and not audience('churned')
//	event('Order Completed').where(property('total') >= 100).within(30 days).count() >= 2
//
// Parse turns a query into a Condition tree (errors carry the line and column);
// the builder functions (Trait, Event, Property, InAudience, And, Or, Not) build
// the same trees in Go. A Set compiles definitions in dependency order; a
// reference to an audience not yet defined is refused, so cycles cannot form.
//
// Evaluation is the portable layer: per profile, a State holds the audiences it
// is in and a Counter per distinct event condition. Observe counts a collected
// event into the counters, Evaluate recomputes the memberships from counters and
// traits, and NextChange says when time alone can change them, so a periodic
// refresh revisits only those profiles. The Store interface keeps definitions and
// states, indexed by membership and by NextChange; MemStore is its in-memory
// implementation.
//
// # Errors
//
// ErrInvalid (a malformed query or definition; a *SyntaxError gives the
// position), ErrConflict (a duplicate key), ErrNotFound and ErrTxDone, matchable
// with errors.Is.
package audience
