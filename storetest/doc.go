// Package storetest is the conformance suite for backend adapters: it proves
// that an adapter's identity graph, profile store, audience store, suppression
// list, journal and audit log behave as the interfaces' documentation says and
// as the in-memory defaults do, and that a privacy.Controller built on them
// applies the rights atomically, crashes included. It is shaped after Go CDK's
// drivertest: an adapter's own test makes a Harness, and RunConformanceTests
// runs one subtest per behaviour, each with a fresh Harness.
//
// # Using it
//
// Write a Harness that returns fresh, empty backends, and call
// RunConformanceTests from a test of the adapter's package:
//
//	type harness struct{ db *sql.DB }
//
//	func (h harness) MakeGraph(ctx context.Context) (identity.Graph, error)   { return mystore.NewGraph(h.db), nil }
//	func (h harness) MakeProfiles(ctx context.Context) (profile.Store, error) { return mystore.NewProfiles(h.db), nil }
//	// ... MakeAudiences, MakeSuppressions, MakeJournal likewise ...
//	func (h harness) MakeAuditLog(ctx context.Context) (audit.Log, error) {
//		return nil, fmt.Errorf("%w: audit records go to the log shipper", storetest.ErrNotImplemented)
//	}
//	func (h harness) Capabilities() storetest.Capabilities { return storetest.Capabilities{} }
//	func (h harness) Close()                               { h.db.Close() }
//
//	func TestConformance(t *testing.T) {
//		storetest.RunConformanceTests(t, func(ctx context.Context, t *testing.T) (storetest.Harness, error) {
//			dsn := os.Getenv("MYSTORE_TEST_DSN")
//			if dsn == "" {
//				t.Skip("set MYSTORE_TEST_DSN to run the conformance suite")
//			}
//			db, err := mystore.OpenEmpty(ctx, dsn) // a new schema or database file per call
//			return harness{db}, err
//		})
//	}
//
// Run it with the race detector (go test -race): several checks write from
// many goroutines at once. The examples/customstore program is a complete
// adapter of one backend, with its conformance test.
//
// # What the Harness promises
//
// RunConformanceTests calls the HarnessMaker once per subtest (and once per
// backend up front, to find out which ones the adapter provides), calls each
// Make method at most once per Harness, and closes the Harness when the subtest
// ends. Four checks, Profiles/UpdateBatchEqualsUpdates,
// Profiles/UpdateBatchMany, Audiences/PutBatchEqualsPuts and
// Audiences/PutBatchMany, make a second Harness, open alongside the first,
// and apply to its profile or audience store one Update or Put at a time what
// they give UpdateBatch or PutBatch at once: two Harnesses must not share
// their backends' data.
// Every backend a Make method returns starts empty; the backends of one
// Harness may share a database, and the Controller checks use them together.
// Subtests of one RunConformanceTests run one after another.
//
// A backend the adapter does not provide returns an error matching
// ErrNotImplemented, wrapped with a reason: that backend's subtests are
// skipped with the reason, and the Controller checks put the in-memory default
// in its place. The audit log is the one backend an adapter commonly leaves
// out.
//
// Capabilities declares what the backends cannot do, with a reason per
// capability; the checks that need it are skipped with that reason. Keep it
// empty unless the backend truly cannot: NoIsolation is for stores without
// transactions (writes applied at once and undone on Rollback), NoConcurrentTx
// for stores that cannot open a second transaction while one is open in the
// same goroutine (SQLite's single writer). Reading a backend while one of its
// transactions is open is always required: the Controller does it.
//
// # What is checked
//
// For each backend interface, in a group named after it ("Graph", "Profiles",
// "Audiences", "Suppressions", "Journal", "AuditLog"), one subtest per
// behaviour, for example "Graph/LinkIsIdempotent":
//
//   - reads and writes, and ErrNotFound for what is missing;
//   - paging: EventQuery's Limit, Sort, Cursor, Start, End, Include and Exclude
//     (a Next is a profile.EncodeCursor cursor at the page's last event, a
//     page with a Next is full, the last page has none, a cursor survives
//     writes between pages), profile IDs keyset paging, audience Members
//     paging, journal List with its filters and cursor, audit Records;
//   - copies at the boundary: changing what was passed in, or what came back,
//     never changes what is stored;
//   - transactions with database/sql manners: a transaction sees its own
//     writes; neither the backend nor another transaction sees them before
//     Commit, and afterwards both see all of them; Rollback discards; Rollback
//     after Commit is a harmless no-op that undoes nothing; every other method
//     of an ended transaction fails with the package's ErrTxDone; a Commit with
//     a cancelled context is all or nothing;
//   - idempotent redo of every write recovery replays: Graph Create, Link,
//     Merge and Delete; profile Update with a recorded message id
//     (ErrDuplicate, no change), Merge and Delete; audience Put, Delete and
//     Define; suppression Add, Remove, AddProfile and RemoveProfile; journal
//     Put;
//   - conflicts: Graph Link of an identifier another profile owns and Create
//     with another CreatedAt (identity.ErrConflict), audience Define of another
//     query under a defined key (audience.ErrConflict), audit appends out of
//     sequence;
//   - several goroutines writing disjoint data through separate transactions,
//     with readers alongside, all of it visible afterwards;
//   - the optional batch interfaces, where the backend or its transactions
//     implement them (otherwise the checks are skipped, the interface
//     named), proved equivalent to the single-item methods:
//     identity.BatchReader's LookupBatch, on the graph and in a transaction,
//     and suppression.BatchReader's ProfileSuppressedBatch, on the list and in
//     a transaction, answer as Lookup and ProfileSuppressed do one at a time
//     (linked or suppressed, unknown, repeated, in order), append to dst,
//     accept no input, see a transaction's own writes and not another's
//     uncommitted ones, and answer 1,200 at once; and
//     suppression.HashBatchReader's SuppressedBatch, on the list, answers as
//     Suppressed does (repeats, unknown hashes, a commit since) for 1,500
//     at once;
//   - profile.BatchTx: MetadataBatch answers as Metadata does (unknown
//     profiles absent, the transaction's own writes seen, 1,200 at once) and
//     PickTraitsBatch as PickTraits does, or Get where the transaction is no
//     profile.TraitPicker (unknown profiles absent, repeated ones answered
//     once, the values in the order of the names, a name repeated, nil for a
//     trait the profile lacks, no names, no profiles, the transaction's own
//     updates, merges and deletes seen, 1,200 at once), both with values
//     that are the caller's; UpdateBatch leaves the transaction and, after
//     Commit, the store as Update one at a time does on a second Harness's
//     store, with a duplicate flag where Update fails with ErrDuplicate (a
//     message id recorded before, in the transaction or earlier in the batch;
//     not one recorded for another profile), traits set and removed in order,
//     profiles created, more than 1,200 updates at once, nothing kept of what
//     was passed in, a batch with an invalid update refused whole with
//     ErrInvalid and changing nothing, Rollback discarding, and nothing
//     visible to others before Commit; every method fails with ErrTxDone
//     after the end, given no input too;
//   - audience.BatchTx: StateBatch answers as State does (profiles without a
//     state absent, repeated ones answered once, the transaction's own Put,
//     Delete and Modify seen, 1,200 at once) with states that are the
//     caller's, unchanged by the transaction's later writes; PutBatch leaves
//     the transaction and, after Commit, the store (every state, the members
//     of every audience, Due) as Put one at a time, in order, does on a
//     second Harness's store: of two states of one profile the later wins,
//     audiences out of order or repeated are taken as Put takes them, empty
//     states are states, more than 1,200 states at once, nothing kept of what
//     was passed in, a batch with a nil state refused whole with ErrInvalid
//     and staging nothing, Rollback discarding, and nothing visible to others
//     before Commit; both fail with ErrTxDone after the end, given no input
//     too.
//
// Then the group "Controller" builds privacy.Controllers over the adapter's
// backends and runs the rights end to end: collection of people on two
// devices (their profiles merge), audiences defined before and after, a
// second Controller loading the definitions and meeting the store's conflict,
// Suppress and Unsuppress, Rectify (the receipt's ProfileVersion in the
// metadata), Erase and SUPPRESS_WITH_DELETE (the person gone from every
// backend, the destination told, the journal scrubbed, a second Controller's
// Recover finding nothing to do). Then faults, for each participant
// (suppression, identity, profiles, audiences): its Commit fails once after the
// journal recorded the decision (the Controller's retry redoes the writes on
// backends where some already committed), fails until a new Controller's
// Recover completes the request, or the process dies in it (a panic the check
// recovers) and a new Controller's Recover completes the request. To inject
// them, the check puts that one backend behind a wrapper, which hides the
// optional interfaces it may implement (txscope.Aware and Locker,
// audience.Modifier, the batch interfaces) for that check.
//
// # Values
//
// Times the suite stores are UTC and whole microseconds, what SQL databases
// keep, and are compared with time.Time.Equal. Trait values and event
// properties are canonical JSON values (nil, bool, float64, string, []any,
// map[string]any; see profile.NormalizeValue) and must come back equal. An
// empty slice or map and nil are the same to the suite.
//
// A write the contract refuses (ErrConflict, ErrDuplicate, ErrInvalid,
// ErrNotFound) must change nothing; the suite then either commits the
// transaction or accepts that Commit fails, as a database that aborts a
// transaction at its first error (PostgreSQL) does, and never issues another
// write in that transaction. It does read the transaction after UpdateBatch
// refused a batch with ErrInvalid, and after PutBatch refused one with a nil
// state: the contracts check the whole batch before anything is written, so
// the transaction must be as it was.
package storetest
