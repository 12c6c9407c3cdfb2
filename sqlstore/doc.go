// Package sqlstore keeps every backend of the library in one SQL database,
// over database/sql with the driver the caller chooses: the identity graph, the
// profile store, the audience engine's store, the suppression list, the request
// journal, the audit log, the outbox of what destinations are owed, and the
// keyring of each person's wrapped data key (package keyring).
//
//	db, err := sql.Open("pgx", dsn) // or "sqlite", "postgres", ...
//	s, err := sqlstore.New(db, sqlstore.Postgres)
//	err = s.Migrate(ctx)
//	c, err := privacy.New(
//		privacy.WithBackends(s), // every backend below, in one option
//		privacy.WithKey(key),    // the same secret at every start
//	)
//
// The Store provides each backend on its own too (Graph, Profiles,
// Audiences, Suppressions, Journal, AuditLog, Outbox, Keyring), for a
// Controller that keeps some elsewhere. It records the check value of the Controller's key
// (never the key) at first use: a later start with another key fails with
// privacy.ErrKeyMismatch, and privacy.RotateKey changes the key.
//
// # Encryption at rest
//
// Given keys (keyring.Sealer: a Controller hands them to the profile store
// and the graph unless told privacy.WithoutEncryption), the Store seals every
// trait value, every event's properties and every identifier with the
// profile's data key (AES-256-GCM, the profile and the field as associated
// data) before writing them (migration 0009: the sealed columns), and opens
// them as it reads; a sealed identifier is looked up by its blind index
// (keyring.Keys.Index), which its link keeps in id_value. The Store records
// the keyring it seals with, and refuses another. Its
// own keyring is read and written in the data's transaction, so a new
// person's key commits with their first values; a keyring in another
// database makes keys in transactions of its own, committed first. A merge
// re-seals the events and identifiers it moves and destroys the merged-away
// key; a profile without a key (erased, its rows from a restored backup) is
// found by no identifier, reads as not found, and loses its sealed rows when
// a key is made for it, or its identifier linked, again. Rows written in
// clear (before the migration, or without keys) are read as they are, and
// SealExisting seals them.
//
// An erasure shreds, then purges (profile.ShreddingTx, profile.Purger,
// migration 0010): its commit destroys the person's key and deletes their
// profile, traits, links and any event kept in clear, and lists them in
// profile_purges; their sealed events, unreadable from that commit on, are
// deleted after it by Profiles().(profile.Purger).Purge, 10,000 rows a
// statement, so no transaction of the erasure grows with their events. A key
// made again for a listed profile purges it first.
//
// Every decided request is marked in its outbox transaction, the last of its
// commits (migration 0011, request_marks: the request id only;
// outbox.RequestMarkingTx), so that
// Recover can tell a decision that committed from one that did not when the
// process died, or the journal failed, between the commit and the journal's
// record of it.
//
// The outbox's payloads are sealed with the keyring's forwarding key
// (keyring.Keys.Forwarding): a deletion must stay readable once the
// person's key is gone, and a merge moves queued messages between profiles
// without opening them. A claimed message about a profile whose key is gone
// and whose data was sealed is handed out empty, and so settled unsent.
//
// # Dialects
//
// Postgres (PostgreSQL 12 or newer) is for many instances sharing one
// database; SQLite (3.35 or newer) is an embedded durable store for one
// process. The package imports no driver: pgx's stdlib ("pgx"), lib/pq,
// modernc.org/sqlite ("sqlite") and mattn/go-sqlite3 all work. Open SQLite
// with a busy timeout and in WAL mode (modernc.org/sqlite:
// "file:app.db?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)"), so
// that its single writer is waited for rather than failed, and readers never
// wait.
//
// Tables are named with a prefix (DefaultTablePrefix, or WithTablePrefix) and,
// on PostgreSQL, may live in a schema of their own (WithSchema).
//
// # Migrate
//
// New does not touch the database. Migrate creates the tables, or upgrades
// them: the migrations are numbered SQL files embedded in the package, one set
// per dialect, applied in one transaction and recorded in the schema_migrations
// table, so running Migrate again is a no-op. Processes that migrate at once
// take turns: PostgreSQL on a transaction-level advisory lock, SQLite on its
// write lock (BEGIN IMMEDIATE).
//
// # Transactions
//
// Each backend's Begin starts a database transaction (on SQLite with BEGIN
// IMMEDIATE, which takes the write lock up front: a deferred transaction that
// reads and then writes fails at once when another connection wrote in
// between). A transaction sees its own writes; others see them at Commit.
// After Commit or Rollback every method fails with the backend package's
// ErrTxDone, and Rollback is a no-op. Every write is an idempotent redo (INSERT
// ... ON CONFLICT, deletes that tolerate absence); an Update whose message id
// the profile recorded before reports profile.ErrDuplicate without disturbing
// the transaction. The transaction outlives the cancellation of the context
// given to Begin; each call checks its own context, and a Commit with a
// cancelled context rolls back, as database/sql does.
//
// # Shared transactions
//
// Every backend the Store returns is txscope.Aware. When the context given to
// Begin holds a txscope.Scope, all the backends of one Store begun with it
// share one database transaction, kept in the Scope: each Commit but the last
// only counts down, and the last commits the database transaction, so an
// operation on several backends commits in a single database commit. A
// Rollback of any of them before that rolls the database transaction back;
// the Commit of another then fails with an error matching ErrAborted. When the
// Scope closes, a shared transaction no backend ended is rolled back. Once the
// shared transaction has ended, a backend begun later in the Scope starts a
// new one.
//
// Reads on the backends themselves (Graph().Lookup, Profiles().Get,
// Suppressions().Suppressed, ...) with a context whose Scope holds this
// Store's open shared transaction go through it, so they see its writes and
// what its locks protect.
//
// Without a Scope, each Begin has a transaction of its own. On SQLite, which
// has one writer, a second transaction begun while the first is open in the
// same goroutine then waits for it until the busy timeout: begin the backends
// of one operation with one Scope.
//
// # Locking across processes
//
// The Store and its backends implement txscope.Locker: LockSubjects takes a
// lock per key inside the Scope's shared transaction (beginning it when need
// be), held until that transaction ends. On PostgreSQL it is a transaction-level
// advisory lock on a 64-bit hash of the key and the table prefix, taken in
// ascending order of the hashes, those of one call in one statement; a
// deadlock between processes that locked in separate calls is broken by
// PostgreSQL and reported as an error matching txscope.ErrRetry. On SQLite
// the shared transaction's write lock already serialises every writer.
// UnlockSubjects releases them before any backend joined the transaction: a
// caller that lets go of its in-process locks to start over must let go of
// these too, or two goroutines may each wait for the other's, in a cycle the
// database cannot see.
//
// # The journal and the audit log
//
// Journal.Put and AuditLog.Append commit on their own, so they are durable
// when they return. Two exceptions: on a Store bound to a caller's
// transaction (WithTx) they run in it; and on SQLite, when the context holds a
// Scope in which this Store's shared transaction is open, they run in that
// transaction (a write on another connection would wait for the caller's own
// open transaction until the busy timeout), and so commit with the Scope's
// backends, all or nothing. To keep the journal independent of the data it
// protects on SQLite, give it a Store over another database file.
//
// # The outbox
//
// Outbox keeps what destinations are owed, written in the shared transaction
// of the change that owes it, so a committed change's deliveries survive a
// crash and a restart. The messages one change (a collection batch) owes a
// destination about one person are one row, a bundle of up to 62 (migration
// 0007): a batch of 500 messages about 100 people writes 100 rows. Each
// message is still an item of its own, with its own ID (the row's id times
// 64 plus its slot), claimed, given back, answered and purged alone; a
// request's items and deletions have a row each. Deliverers in any number of
// processes claim items with a lease: on PostgreSQL the oldest pending row of
// each destination and person, FOR UPDATE SKIP LOCKED, in one statement, so
// that they share the work without waiting on one another; on SQLite under
// the write lock. A claim looks for those heads among the destination's
// oldest pending rows (a few times its limit), in one scan of them (a row
// there is its queue's head when it is the oldest of its queue there: the
// queue's earlier rows are older still), and past them only when it comes up
// short and more rows wait: its cost follows what it hands out, not the
// backlog, nor the rows settled since the last vacuum. A row stays leased
// while any of its items is handed out and unanswered. A deliverer that dies leaves its items to the others when its
// lease lapses. A renewal does not wait for rows another transaction holds
// locked (on PostgreSQL): it renews the others at once and those in the
// background, counting their lease from when it got them. A row an erasure empties
// while a deliverer holds it stays held for ten lease lengths past its lease
// then (migration 0008), whatever its lease says meanwhile: the erasure holds
// the row locked until it commits and the holder's renewal waits that long,
// so a slow commit cannot let another deliverer take the row before the
// holder's renewal lands and send the person's deletion while the holder's
// call about them still runs.
//
// Retention drops a page's queued and dead messages of expired events
// (outbox.ExpiringTx): on PostgreSQL it locks every row of the page's people,
// then reads them in a statement of its own (one that waited for a Replay
// would miss the row it moved), deletes the expired messages, and rewrites a
// bundle without its expired slots, sealed again. A leased row is left to its
// holder, for ten lease lengths past its lease as above.
//
// # A caller's transaction
//
// WithTx returns a view of the Store whose statements all run in the caller's
// transaction (*sql.Tx, or a *sql.Conn in a transaction), to apply the
// library's writes atomically with the caller's own. A backend's Begin then
// opens a SAVEPOINT, its Commit releases it and its Rollback rolls back to
// it; backends begun with one Scope share one savepoint. The caller commits.
//
// # Times
//
// Times are stored to the microsecond, the precision of PostgreSQL's
// timestamptz, in both dialects (SQLite as integer Unix microseconds), and
// read back in UTC: a time written with nanoseconds reads back truncated. The
// Controller truncates its times to the microsecond already. Audience counter
// times (Unix nanoseconds) and journal entries (JSON) keep nanoseconds. Times
// before year 1 or after year 293999 are refused.
//
// # Values
//
// Trait values and event properties are stored as JSON text (PostgreSQL's
// json, not jsonb, which drops \u0000 and reorders keys) and read back in
// profile.NormalizeValue's canonical form: numbers as float64.
//
// # Performance
//
// Every per-profile table is indexed by profile id, so erasing a person costs
// one statement per table (on PostgreSQL, one round trip per backend),
// independent of the number of other people. Events are rows of the message
// table, indexed by (profile, timestamp, message id): a page of events is an
// index range scan starting at the cursor, and storing a tracked message is
// one insert that also de-duplicates it.
//
// A batch of collected messages costs a handful of statements, whatever its
// size, through the optional batch interfaces the backends implement (the
// Controller's batched collection uses them when present):
//
//   - LockSubjects: the locks not yet held, in one statement (PostgreSQL).
//   - Graph().LookupBatch and a graph transaction's (identity.BatchReader):
//     every identifier in one statement, a row value IN a VALUES list that
//     each dialect answers from the primary key.
//   - Suppressions().ProfileSuppressedBatch and a suppression transaction's
//     (suppression.BatchReader): every profile in one statement.
//   - A profile transaction's MetadataBatch (profile.BatchTx): the metadata
//     of every profile in one statement.
//   - A profile transaction's UpdateBatch (profile.BatchTx): at most four
//     statements. One multi-row insert records the message ids (and events),
//     and its RETURNING tells those recorded before, the duplicates; a
//     message id repeated in the batch is a duplicate without asking. Then
//     one upsert writes the metadata of each profile the batch changed (its
//     last update's), one upsert the traits set and one delete the traits
//     removed, each trait as the updates leave it in order. Every update is
//     checked before the first statement: a bad one fails the batch with
//     profile.ErrInvalid naming it, and leaves the transaction usable (on
//     PostgreSQL, text with a NUL character or invalid UTF-8 included,
//     which Update learns from the database with the transaction aborted).
//   - A profile transaction's PickTraitsBatch (profile.BatchTx): the named
//     traits of every profile in one statement, each profile that exists
//     joined to its traits among the names by the primary key.
//   - An audience transaction's StateBatch (audience.BatchTx): the state of
//     every profile in one statement.
//   - An audience transaction's PutBatch (audience.BatchTx): three
//     statements, for each profile's last state of the batch. One upsert
//     writes the states; one delete drops the memberships of these profiles
//     (found by the profile index) that their new states lack (a row value
//     NOT IN the list of the new ones, which both dialects hash or index);
//     one insert adds the new memberships, leaving those already there. A
//     membership that stays is not written. Every state is checked before
//     the first statement: a nil one, or one Put would refuse, fails the
//     batch with audience.ErrInvalid naming it, and leaves the transaction
//     usable (on PostgreSQL, a profile id or audience key with a NUL
//     character or invalid UTF-8 included).
//
// Reads go through the Scope's shared transaction as the single reads do.
// The statements use the driver's ordinary parameters, no array types, with
// one exception: on pgx's database/sql driver, in a transaction of the
// Store's own, an outbox run of 16 rows or more is sent with COPY FROM STDIN
// (ids taken from the outbox's sequence first), which pgx streams from a
// buffer kept for the next run where a statement's parameters are copied
// into memory allocated anew; any other driver, and a caller's transaction
// (WithExecutor), keep the INSERT. Each
// carries at most 10,000 on PostgreSQL, where every statement is a round
// trip, and 1,000 on SQLite, in process, where smaller statements are faster
// (modernc.org/sqlite binds parameters in time quadratic in their number); a
// larger batch takes one more statement per chunk. PickTraitsBatch with more
// names than half of that takes one per chunk of the names and chunk of the
// profiles; PutBatch's delete carries whole profiles with their new
// memberships, and one with more than a statement carries has all its rows
// deleted and inserted again. A read's list is padded to a power of two by
// repeating an entry, and so is a list of locks, so that a driver that
// prepares and caches statements by their text (pgx keeps 512 per
// connection) prepares a few shapes, not one per batch size. Rows are
// written in key order, so that concurrent batches lock them in one order.
//
// # Errors
//
// Errors of a backend's contract match that backend package's sentinels
// (identity.ErrNotFound, profile.ErrDuplicate, audience.ErrConflict,
// journal.ErrInvalid, ...), with the driver's error wrapped where there is
// one. ErrAborted reports a shared transaction another backend rolled back,
// ErrNoScope a LockSubjects without a Scope. Serialization failures,
// deadlocks and a busy SQLite database match txscope.ErrRetry, and
// IsRetryable recognises them in any error.
package sqlstore
