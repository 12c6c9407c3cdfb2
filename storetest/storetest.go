package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/suppression"
)

// ErrNotImplemented is what a Harness's Make method returns, wrapped with a
// reason, for a backend the adapter does not provide. The checks of that backend
// are then skipped with the reason, and the Controller checks use the in-memory
// default in its place.
var ErrNotImplemented = errors.New("storetest: not implemented")

// Harness makes fresh, empty backends for one subtest. RunConformanceTests
// makes a new Harness for every subtest and closes it when the subtest ends, so
// that no subtest sees what another one wrote.
//
// Within one Harness, each Make method is called at most once per subtest, and
// every backend it returns must start empty. Backends of one Harness may share
// one database: the Controller checks use them together, as an application
// would.
type Harness interface {
	// MakeGraph returns an empty identity graph, or an error matching
	// ErrNotImplemented.
	MakeGraph(ctx context.Context) (identity.Graph, error)
	// MakeProfiles returns an empty profile store, or an error matching
	// ErrNotImplemented.
	MakeProfiles(ctx context.Context) (profile.Store, error)
	// MakeAudiences returns an empty audience store, or an error matching
	// ErrNotImplemented.
	MakeAudiences(ctx context.Context) (audience.Store, error)
	// MakeSuppressions returns an empty suppression list, or an error matching
	// ErrNotImplemented.
	MakeSuppressions(ctx context.Context) (suppression.List, error)
	// MakeJournal returns an empty request journal, or an error matching
	// ErrNotImplemented.
	MakeJournal(ctx context.Context) (journal.Journal, error)
	// MakeAuditLog returns an empty audit log, or an error matching
	// ErrNotImplemented. The audit log is optional: many adapters leave it to
	// the in-memory default or to a log shipper.
	MakeAuditLog(ctx context.Context) (audit.Log, error)
	// Capabilities says what the adapter's backends cannot do, with reasons.
	Capabilities() Capabilities
	// Close releases what the Harness holds (connections, temporary
	// databases). It is called once, when the subtest ends.
	Close()
}

// HarnessMaker makes a Harness for one subtest. It may call t.Skip (say, when
// the database the adapter needs is not configured) or return an error, which
// fails the subtest.
type HarnessMaker func(ctx context.Context, t *testing.T) (Harness, error)

// Capabilities declares what an adapter lacks. The zero value claims
// everything the interfaces promise. Each field, when not empty, is the reason
// the adapter lacks the capability; the checks that need it are skipped with
// that reason. Declare only what the backend truly cannot do: every skipped
// check is a promise of the interfaces the adapter does not keep, and the
// Controller relies on those promises.
//
// A capability applies to every backend the Harness makes.
type Capabilities struct {
	// NoIsolation, when set, says why writes staged in a transaction may be seen
	// by other readers before Commit: an adapter over a store without
	// transactions that applies each write at once and undoes it on Rollback
	// (compensation). Rollback must still leave no trace. Skipped: the checks
	// that the backend itself and other transactions do not see uncommitted
	// writes.
	NoIsolation string
	// NoConcurrentTx, when set, says why the backend cannot serve a second
	// transaction, or a read on the backend itself, in the same goroutine while
	// one of its transactions is open: SQLite over a single connection, for
	// one, where the second would wait for the first forever. Skipped: the
	// checks that hold two transactions open at once, or read the backend
	// while a transaction is open.
	NoConcurrentTx string
}

// RunConformanceTests runs the conformance suite against the backends that
// newHarness makes: one subtest per behaviour, grouped by backend ("Graph",
// "Profiles", "Audiences", "Suppressions", "Journal", "AuditLog", "Outbox"
// and "Keyring": the last two for a Harness that is also an OutboxMaker, a
// KeyringMaker) and ending
// with "Controller", which runs the four rights end to end on a
// privacy.Controller built over the adapter's backends (the in-memory defaults
// standing in for those the adapter does not provide), crash recovery
// included.
//
// Run it with the race detector: several checks write from many goroutines.
func RunConformanceTests(t *testing.T, newHarness HarnessMaker) {
	t.Helper()
	if newHarness == nil {
		t.Fatal("storetest: RunConformanceTests: nil HarnessMaker")
	}
	runGroup(t, newHarness, "Graph", "identity graph", Harness.MakeGraph, graphChecks)
	runGroup(t, newHarness, "Profiles", "profile store", Harness.MakeProfiles, profileChecks)
	runGroup(t, newHarness, "Audiences", "audience store", Harness.MakeAudiences, audienceChecks)
	runGroup(t, newHarness, "Suppressions", "suppression list", Harness.MakeSuppressions, suppressionChecks)
	runGroup(t, newHarness, "Journal", "journal", Harness.MakeJournal, journalChecks)
	runGroup(t, newHarness, "AuditLog", "audit log", Harness.MakeAuditLog, auditChecks)
	runGroup(t, newHarness, "Outbox", "outbox", makeOutbox, outboxChecks)
	runGroup(t, newHarness, "Keyring", "keyring", makeKeyring, keyringChecks)
	t.Run("Controller", func(t *testing.T) { runController(t, newHarness) })
}

// check is one behaviour of a backend of type B.
type check[B any] struct {
	name string
	run  func(t *testing.T, e *env, b B)
}

// env is what a check gets beside its backend: the subtest's context, the
// Harness's declared capabilities, and the HarnessMaker, for the checks that
// compare their backend with a second one (see referenceProfiles and
// referenceAudiences).
type env struct {
	ctx  context.Context
	caps Capabilities
	nh   HarnessMaker
}

// needIsolation skips the check when the adapter declared NoIsolation.
func (e *env) needIsolation(t *testing.T) {
	t.Helper()
	if r := e.caps.NoIsolation; r != "" {
		t.Skip("the adapter declares no isolation of uncommitted writes: " + r)
	}
}

// needConcurrentTx skips the check when the adapter declared NoConcurrentTx.
func (e *env) needConcurrentTx(t *testing.T) {
	t.Helper()
	if r := e.caps.NoConcurrentTx; r != "" {
		t.Skip("the adapter declares it cannot hold two transactions open at once: " + r)
	}
}

// newHarness makes a Harness for t and closes it when t ends.
func newHarness(t *testing.T, nh HarnessMaker) Harness {
	t.Helper()
	h, err := nh(t.Context(), t)
	if err != nil {
		t.Fatalf("making the harness: %v", err)
	}
	if h == nil {
		t.Fatal("the HarnessMaker returned a nil Harness and no error")
	}
	t.Cleanup(h.Close)
	return h
}

// runGroup runs the checks of one backend, each in a subtest with a fresh
// Harness. When the adapter does not provide the backend, the group is skipped
// with the reason it gave.
func runGroup[B any](t *testing.T, nh HarnessMaker, group, what string, mk func(Harness, context.Context) (B, error), checks []check[B]) {
	t.Helper()
	t.Run(group, func(t *testing.T) {
		if reason := probe(t, nh, what, mk); reason != "" {
			t.Skip(reason)
		}
		for _, c := range checks {
			t.Run(c.name, func(t *testing.T) {
				h := newHarness(t, nh)
				e := &env{ctx: t.Context(), caps: h.Capabilities(), nh: nh}
				b, err := mk(h, e.ctx)
				if err != nil {
					t.Fatalf("making the %s: %v", what, err)
				}
				c.run(t, e, b)
			})
		}
	})
}

// probe makes the backend once and returns why its checks are skipped, or ""
// when the adapter provides it.
func probe[B any](t *testing.T, nh HarnessMaker, what string, mk func(Harness, context.Context) (B, error)) string {
	t.Helper()
	h, err := nh(t.Context(), t)
	if err != nil {
		t.Fatalf("making the harness: %v", err)
	}
	if h == nil {
		t.Fatal("the HarnessMaker returned a nil Harness and no error")
	}
	defer h.Close()
	b, err := mk(h, t.Context())
	switch {
	case errors.Is(err, ErrNotImplemented):
		return fmt.Sprintf("the adapter provides no %s: %v", what, err)
	case err != nil:
		t.Fatalf("making the %s: %v", what, err)
	case any(b) == nil:
		t.Fatalf("making the %s: nil backend and no error", what)
	}
	return ""
}
