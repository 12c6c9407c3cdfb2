// Package faultinject wraps backends so that a test can fail them, or stand
// for the process dying, at a named step: the Begin, the staged writes and the
// Commit of each participant of a right, and each durable journal record. The
// root package's fault matrix and storetest's Controller checks share it.
//
// A Plan decides at each point. At a Commit it strikes after rolling the
// transaction back, as a failed commit or a dead process leaves it. A Plan
// that returns an error matching ErrCrash makes the wrapper panic with Crashed
// (after that rollback): the caller's Survive recovers it, and the test then
// goes on as a new process would, with new Controllers over the same
// backends. Crashes in the same process cannot show what a dead process
// leaves behind in a database's connections; tests that need that run a child
// process.
//
// The wrappers hide the wrapped backends' optional interfaces (batch reads,
// txscope), so a Controller over them takes the plain path.
package faultinject

import (
	"context"
	"errors"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/suppression"
)

// Step is where in a participant's transaction a Point is.
type Step string

// Steps.
const (
	// Begin is the backend's Begin.
	Begin Step = "begin"
	// Stage is each write a right stages: Delete on the graph; Update and
	// Delete on the profiles; Put and Delete on the audiences; Add, Remove,
	// AddProfile and RemoveProfile on the suppression list; Enqueue, Purge
	// and Merge on the outbox.
	Stage Step = "stage"
	// Commit is the transaction's Commit.
	Commit Step = "commit"
)

// Backend names, as a Point gives them.
const (
	Identity     = "identity"
	Profiles     = "profiles"
	Audiences    = "audiences"
	Suppressions = "suppression"
	Outbox       = "outbox"
)

// Point is a step of one backend.
type Point struct {
	Backend string
	Step    Step
}

// String names the point as "profiles.commit".
func (p Point) String() string { return p.Backend + "." + string(p.Step) }

// Plan decides what happens at a point: nil goes on, an error fails the step
// (or, matching ErrCrash, ends the process there).
type Plan func(Point) error

// ErrCrash, returned by a Plan, stands for the process dying at the point.
var ErrCrash = errors.New("faultinject: the process dies here")

// Crashed is the panic that stands for the process dying.
type Crashed struct{ At string }

// Survive runs f and reports whether it crashed (panicked with Crashed); any
// other panic goes on.
func Survive(f func()) (crashed bool) {
	defer func() {
		if p := recover(); p != nil {
			if _, ok := p.(Crashed); !ok {
				panic(p)
			}
			crashed = true
		}
	}()
	f()
	return false
}

// strike asks the plan at p and crashes when it says so.
func strike(plan Plan, p Point) error {
	err := plan(p)
	if errors.Is(err, ErrCrash) {
		panic(Crashed{At: p.String()})
	}
	return err
}

// begin strikes at a backend's Begin, then begins a transaction and wraps it.
func begin[T any](plan Plan, backend string, begin func() (T, error), wrap func(T) T) (T, error) {
	var zero T
	if err := strike(plan, Point{backend, Begin}); err != nil {
		return zero, err
	}
	tx, err := begin()
	if err != nil {
		return zero, err
	}
	return wrap(tx), nil
}

// stage strikes at a staged write, then makes it.
func stage(plan Plan, backend string, write func() error) error {
	if err := strike(plan, Point{backend, Stage}); err != nil {
		return err
	}
	return write()
}

// commit strikes at a Commit: the transaction is rolled back first, so that
// nothing of it is committed, then the plan's error is returned (or the
// process dies).
func commit(ctx context.Context, plan Plan, backend string, tx interface {
	Commit(context.Context) error
	Rollback(context.Context) error
}) error {
	p := Point{backend, Commit}
	if err := plan(p); err != nil {
		_ = tx.Rollback(ctx)
		if errors.Is(err, ErrCrash) {
			panic(Crashed{At: p.String()})
		}
		return err
	}
	return tx.Commit(ctx)
}

// Graph wraps an identity graph.
func Graph(g identity.Graph, plan Plan) identity.Graph { return graph{g, plan} }

type graph struct {
	identity.Graph
	plan Plan
}

type graphTx struct {
	identity.Tx
	plan Plan
}

func (g graph) Begin(ctx context.Context) (identity.Tx, error) {
	return begin(g.plan, Identity, func() (identity.Tx, error) { return g.Graph.Begin(ctx) },
		func(tx identity.Tx) identity.Tx { return graphTx{tx, g.plan} })
}

func (tx graphTx) Delete(ctx context.Context, pid identity.ProfileID) error {
	return stage(tx.plan, Identity, func() error { return tx.Tx.Delete(ctx, pid) })
}

func (tx graphTx) Commit(ctx context.Context) error { return commit(ctx, tx.plan, Identity, tx.Tx) }

// ProfileStore wraps a profile store.
func ProfileStore(s profile.Store, plan Plan) profile.Store { return profiles{s, plan} }

type profiles struct {
	profile.Store
	plan Plan
}

type profilesTx struct {
	profile.Tx
	plan Plan
}

func (s profiles) Begin(ctx context.Context) (profile.Tx, error) {
	return begin(s.plan, Profiles, func() (profile.Tx, error) { return s.Store.Begin(ctx) },
		func(tx profile.Tx) profile.Tx { return profilesTx{tx, s.plan} })
}

func (tx profilesTx) Update(ctx context.Context, pid identity.ProfileID, u profile.Update) error {
	return stage(tx.plan, Profiles, func() error { return tx.Tx.Update(ctx, pid, u) })
}

func (tx profilesTx) Delete(ctx context.Context, pid identity.ProfileID) error {
	return stage(tx.plan, Profiles, func() error { return tx.Tx.Delete(ctx, pid) })
}

func (tx profilesTx) Commit(ctx context.Context) error { return commit(ctx, tx.plan, Profiles, tx.Tx) }

// AudienceStore wraps an audience store.
func AudienceStore(s audience.Store, plan Plan) audience.Store { return audiences{s, plan} }

type audiences struct {
	audience.Store
	plan Plan
}

type audiencesTx struct {
	audience.Tx
	plan Plan
}

func (s audiences) Begin(ctx context.Context) (audience.Tx, error) {
	return begin(s.plan, Audiences, func() (audience.Tx, error) { return s.Store.Begin(ctx) },
		func(tx audience.Tx) audience.Tx { return audiencesTx{tx, s.plan} })
}

func (tx audiencesTx) Put(ctx context.Context, pid identity.ProfileID, st *audience.State) error {
	return stage(tx.plan, Audiences, func() error { return tx.Tx.Put(ctx, pid, st) })
}

func (tx audiencesTx) Delete(ctx context.Context, pid identity.ProfileID) error {
	return stage(tx.plan, Audiences, func() error { return tx.Tx.Delete(ctx, pid) })
}

func (tx audiencesTx) Commit(ctx context.Context) error {
	return commit(ctx, tx.plan, Audiences, tx.Tx)
}

// SuppressionList wraps a suppression list.
func SuppressionList(l suppression.List, plan Plan) suppression.List { return suppressions{l, plan} }

type suppressions struct {
	suppression.List
	plan Plan
}

type suppressionsTx struct {
	suppression.Tx
	plan Plan
}

func (l suppressions) Begin(ctx context.Context) (suppression.Tx, error) {
	return begin(l.plan, Suppressions, func() (suppression.Tx, error) { return l.List.Begin(ctx) },
		func(tx suppression.Tx) suppression.Tx { return suppressionsTx{tx, l.plan} })
}

func (tx suppressionsTx) Add(ctx context.Context, hs ...identity.Hash) error {
	return stage(tx.plan, Suppressions, func() error { return tx.Tx.Add(ctx, hs...) })
}

func (tx suppressionsTx) Remove(ctx context.Context, hs ...identity.Hash) error {
	return stage(tx.plan, Suppressions, func() error { return tx.Tx.Remove(ctx, hs...) })
}

func (tx suppressionsTx) AddProfile(ctx context.Context, pid identity.ProfileID) error {
	return stage(tx.plan, Suppressions, func() error { return tx.Tx.AddProfile(ctx, pid) })
}

func (tx suppressionsTx) RemoveProfile(ctx context.Context, pid identity.ProfileID) error {
	return stage(tx.plan, Suppressions, func() error { return tx.Tx.RemoveProfile(ctx, pid) })
}

func (tx suppressionsTx) Commit(ctx context.Context) error {
	return commit(ctx, tx.plan, Suppressions, tx.Tx)
}

// OutboxStore wraps an outbox.
func OutboxStore(s outbox.Store, plan Plan) outbox.Store { return outboxes{s, plan} }

type outboxes struct {
	outbox.Store
	plan Plan
}

type outboxTx struct {
	outbox.Tx
	plan Plan
}

func (s outboxes) Begin(ctx context.Context) (outbox.Tx, error) {
	return begin(s.plan, Outbox, func() (outbox.Tx, error) { return s.Store.Begin(ctx) },
		func(tx outbox.Tx) outbox.Tx { return outboxTx{tx, s.plan} })
}

func (tx outboxTx) Enqueue(ctx context.Context, items []outbox.Item) error {
	return stage(tx.plan, Outbox, func() error { return tx.Tx.Enqueue(ctx, items) })
}

func (tx outboxTx) Purge(ctx context.Context, pid identity.ProfileID) (int, error) {
	var n int
	err := stage(tx.plan, Outbox, func() (err error) { n, err = tx.Tx.Purge(ctx, pid); return err })
	return n, err
}

func (tx outboxTx) Merge(ctx context.Context, into, from identity.ProfileID) error {
	return stage(tx.plan, Outbox, func() error { return tx.Tx.Merge(ctx, into, from) })
}

func (tx outboxTx) Commit(ctx context.Context) error { return commit(ctx, tx.plan, Outbox, tx.Tx) }

// Journal wraps a journal: recorded learns of each entry once its Put is
// durable, and may return ErrCrash to end the process right after it (any
// other error is ignored: the record stands).
func Journal(j journal.Journal, recorded func(*journal.Entry) error) journal.Journal {
	return recordingJournal{j, recorded}
}

type recordingJournal struct {
	journal.Journal
	recorded func(*journal.Entry) error
}

func (j recordingJournal) Put(ctx context.Context, e *journal.Entry) error {
	if err := j.Journal.Put(ctx, e); err != nil {
		return err
	}
	if errors.Is(j.recorded(e), ErrCrash) {
		panic(Crashed{At: "journal record"})
	}
	return nil
}
