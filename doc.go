// Package privacy gives a Go service the four GDPR end-user rights over its
// customer profiles, the way Segment's Personas offers them: erasure, objection
// (suppression), rectification, and access with portability.
//
// A host service feeds the Controller the Segment-style messages it collects
// (Identify, Track, Page, Screen, Group and Alias, with Segment's common
// fields: context, integrations and its timestamps). The Controller resolves their identifiers into one profile
// per person (package identity), keeps traits, events and metadata (package
// profile), and serves them back through reads modelled on Segment's Profile API.
//
//	c, err := privacy.New() // every backend in memory
//	err = c.Collect(ctx, privacy.Identify{UserID: "u1", Traits: map[string]any{"email": "a@b.c"}, Timestamp: now})
//	p, err := c.Profile(ctx, identity.ID{Type: "email", Value: "a@b.c"})
//
// A message's consent preferences (context.consent.categoryPreferences) are
// kept on the profile with the history of their changes, the proof of
// consent (profile.Consent), and route the message to destinations that
// declare consent categories; a group call puts the group's traits on an
// account profile (Account) and links the person to it. Any JSON number is
// kept exactly.
//
// CollectBatch takes many messages at once and stores those about known people
// together, in a few backend calls and one commit: the way to feed a SQL
// backend at volume.
//
// Audiences (package audience) are kept current as messages arrive, and every
// change reaches the destinations (package destination) through a durable
// outbox (package outbox), written in the change's own transaction and
// delivered at least once, in order per destination and person, retried over
// a horizon (24 hours by default) and then kept as dead letters
// (DeadLetters, Replay).
//
// The four rights act on the whole person, found by any identifier: Erase,
// Suppress and Unsuppress, Rectify, and Apply for any Request type (Segment's,
// plus RECTIFY). Each is applied atomically across every backend by one protocol:
// the request is journaled (package journal), the subjects are locked, every
// backend stages its part in a transaction, the decision is journaled, every
// backend commits, and destinations are told through the outbox. Recover
// completes what a crash left unfinished. Each request returns a Receipt with its
// due date (Art. 12(3)) and the outcome at every backend and destination; the
// audit log (package audit) records every step, naming people only by keyed hash.
//
// Every backend (identity graph, profile store, audience engine, suppression
// list, journal, audit log, outbox) is an interface with an in-memory default;
// options such as WithIdentity, WithProfiles and WithOutbox plug in others.
//
// Package segmentapi serves Segment's HTTP APIs (Tracking, Profile, and the
// deletion and suppression endpoints) over a Controller, so that Segment's own
// libraries and API callers work against the host unchanged; examples/segment
// runs them over SQLite.
//
// # Where things are
//
// The package's files are its architecture; each right and each step of the
// protocol has its own:
//
//   - privacy.go: the Controller, New, Close, Stats; options.go: the options
//     (WithBackends among them); keys.go: the key (refused when missing or
//     another than the backends were keyed with), RotateKey, and the hashes
//     of requests made before a rotation; limits.go: the bounds on what is
//     collected (WithLimits).
//   - messages.go: the message types, their validation, Segment's
//     timestamps and the identifiers a message holds; collect.go:
//     Collect; collect_batch.go: CollectBatch; collect_update.go: the profile
//     update both build; consent.go: consent on the profile; accounts.go:
//     account profiles (group calls); audience_news.go: the audience news
//     each destination is owed with a collected message.
//   - profiles.go: the Profile API reads; audiences.go: audiences;
//     delivery.go: what destinations are owed (enqueued with the change,
//     routed by a message's Integrations and consent), Flush,
//     DeliveryStats, DeadLetters, Replay; the deliverer itself is
//     internal/deliver.
//   - request.go: request types and statuses, receipts, listing, deadlines.
//   - protocol.go: how every right is applied (Apply: journal, lock, begin,
//     decide, stage, commit, deliver, finish or fail); claims.go: which
//     instance works on a request, and every journal write of it; recover.go:
//     Recover; run.go: Run, the background work of a host.
//   - erasure.go (Erase; DELETE_ONLY, DELETE_INTERNAL), suppression.go
//     (Suppress, Unsuppress; the SUPPRESS_ types; the collection path's
//     suppression check), rectification.go (Rectify; RECTIFY), access.go
//     (Access, Export; ACCESS): each right's public methods and its own
//     decide and stage steps.
//   - telemetry.go: spans, metrics and a log line per right, through
//     OpenTelemetry's API (WithTracerProvider, WithMeterProvider), naming
//     no person.
//   - audit.go: the audit log; locks.go: per-subject locks, in this process
//     and across processes; errors.go: the sentinels, and the one table that
//     maps every backend's to them; optional.go: the optional backend
//     interfaces and their fallbacks.
//
// # How a right completes
//
// A right, once decided, completes and is never undone, whichever instance
// finishes it. The instance that receives a request claims it in the journal
// for a lease it renews while it works (WithInstance, WithLease); Recover takes
// over only an unheld request, one whose holder's lease lapsed, or one of the
// same instance restarted. Every journal write of a request is a
// compare-and-swap, so a former holder's writes are refused and Extend never
// undoes an ended request. A request failing before its decision is reported
// FAILED only once that is recorded, and nothing of it is ever applied; a
// decided one is applied whatever its destinations answer (its overall status
// follows Segment). Recover acts on the person
// as they are now (a merge since the decision is followed), never lets an
// older objection or its lifting undo a newer one, and redoes a rectification
// trait by trait against the request's time, never over a newer erasure of an
// identifier it names (an erasure is found by every identifier it erased).
// Every writer (collection, the rights, Refresh, DefineAudience) takes the
// same locks, in this process and across processes. A request the journal
// shows ended has all of its audit records: its end is journaled as owed
// before any reaches the log. Each record is there once: they are numbered,
// and the log holds a request's number once. Run does the background work:
// recovery and takeover, audience refresh, overdue reports.
//
// # Concurrency
//
// A Controller is safe for concurrent use. Everything that touches one person
// (collection, reads, rights) runs under a per-subject lock, so a message racing a
// right never interleaves with it and readers never see a half-applied change.
//
// # Errors
//
// Errors match these sentinels with errors.Is: ErrInvalid (bad input; the
// *FieldError says which field and why, and nothing changed; a bad request also
// gets an INVALID receipt), ErrNotFound (no person is known by the identifier,
// or no request by the id), ErrSuppressed (the person objected, the message was
// dropped), ErrConflict, ErrClosed and ErrKeyMismatch (the key is not the one
// the backends were keyed with). Errors from backends also match the backend
// package's own sentinels, such as profile.ErrNotFound; their text names the
// operation and the error's kind, never the backend's own words, which may
// quote a person's data.
package privacy
