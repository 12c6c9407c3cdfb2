package privacy

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/internal/outbox"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/suppression"
	"github.com/gdprkit/privacy/txscope"
)

// Controller is the library's entry point: it collects messages into profiles and
// applies the rights over every plugged-in backend. It is safe for concurrent use.
type Controller struct {
	graph     identity.Graph
	profiles  profile.Store
	audiences audience.Store
	resolver  *identity.Resolver
	// set is the compiled audience definitions; DefineAudience swaps in a new one
	// (under defineMu), the collection path reads it without a lock.
	set      atomic.Pointer[audience.Set]
	defineMu sync.Mutex
	outbox   *outbox.Outbox
	// destinations are the destinations' names, in the order configured.
	destinations []string

	suppressions suppression.List
	journal      journal.Journal
	chain        *audit.Chain
	auditLog     audit.Log
	key          []byte
	hasher       *identity.Hasher
	// inflight holds the requests whose destinations this Controller is still
	// waiting for, by id, so Recover leaves them alone.
	inflight sync.Map
	// stale holds profiles whose memberships could not be stored; Refresh
	// recomputes them from their events.
	stale sync.Map
	clock func() time.Time
	log   *slog.Logger
	locks *subjectLocks
	// scoped: some backend joins txscope scopes, so each operation opens one;
	// locker, when set, locks subjects across processes within a scope.
	scoped bool
	locker txscope.Locker

	closed atomic.Bool
	stats  struct {
		collected, duplicates, suppressed, refused atomic.Uint64
	}
}

// Option configures a Controller.
type Option func(*config) error

type config struct {
	supp      suppression.List
	journal   journal.Journal
	auditLog  audit.Log
	key       []byte
	graph     identity.Graph
	profiles  profile.Store
	audiences audience.Store
	dests     []destination.Destination
	delivery  Delivery
	rules     identity.Rules
	clock     func() time.Time
	log       *slog.Logger
}

// WithIdentity sets the identity graph backend (default identity.NewMemGraph()).
func WithIdentity(g identity.Graph) Option {
	return func(c *config) error {
		if g == nil {
			return errors.New("WithIdentity: nil graph")
		}
		c.graph = g
		return nil
	}
}

// WithProfiles sets the profile store backend (default profile.NewMemStore()).
func WithProfiles(s profile.Store) Option {
	return func(c *config) error {
		if s == nil {
			return errors.New("WithProfiles: nil store")
		}
		c.profiles = s
		return nil
	}
}

// WithAudiences sets the audience engine backend (default audience.NewMemStore()).
// Definitions it already holds are loaded by New.
func WithAudiences(s audience.Store) Option {
	return func(c *config) error {
		if s == nil {
			return errors.New("WithAudiences: nil store")
		}
		c.audiences = s
		return nil
	}
}

// WithDestinations adds destinations that receive every collected message,
// trait change and audience change after it commits. Names must be unique.
func WithDestinations(ds ...destination.Destination) Option {
	return func(c *config) error {
		for _, d := range ds {
			if d == nil {
				return errors.New("WithDestinations: nil destination")
			}
			if d.Name() == "" {
				return errors.New("WithDestinations: a destination has an empty name")
			}
			for _, have := range c.dests {
				if have.Name() == d.Name() {
					return fmt.Errorf("WithDestinations: two destinations are named %q", d.Name())
				}
			}
			c.dests = append(c.dests, d)
		}
		return nil
	}
}

// WithDelivery sets how destinations are delivered to (retries, backoff,
// timeouts, batch size); zero fields keep their defaults.
func WithDelivery(d Delivery) Option {
	return func(c *config) error {
		c.delivery = d
		return nil
	}
}

// WithSuppressions sets the suppression list backend (default
// suppression.NewMemList()).
func WithSuppressions(l suppression.List) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("WithSuppressions: nil list")
		}
		c.supp = l
		return nil
	}
}

// WithJournal sets the request journal backend (default journal.NewMemJournal()).
func WithJournal(j journal.Journal) Option {
	return func(c *config) error {
		if j == nil {
			return errors.New("WithJournal: nil journal")
		}
		c.journal = j
		return nil
	}
}

// WithAuditLog sets the audit log backend (default audit.NewMemLog()).
func WithAuditLog(l audit.Log) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("WithAuditLog: nil log")
		}
		c.auditLog = l
		return nil
	}
}

// WithKey sets the secret key of the keyed hashes that stand for people in the
// suppression list, receipts and the audit log, and that chain the audit log (at
// least 16 bytes; 32 random bytes are right). With durable backends it must stay
// the same across restarts, or suppressions stop matching; without it a random
// key is made, which suits the in-memory defaults only.
func WithKey(key []byte) Option {
	return func(c *config) error {
		if len(key) < identity.MinKeyLength {
			return fmt.Errorf("WithKey: key is %d bytes, want at least %d", len(key), identity.MinKeyLength)
		}
		c.key = append([]byte(nil), key...)
		return nil
	}
}

// WithIdentityRules sets the identity resolution rules (default
// identity.DefaultRules()). They are validated by New.
func WithIdentityRules(r identity.Rules) Option {
	return func(c *config) error {
		c.rules = r
		return nil
	}
}

// WithClock sets the clock the Controller stamps times with (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return errors.New("WithClock: nil clock")
		}
		c.clock = now
		return nil
	}
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("WithLogger: nil logger")
		}
		c.log = l
		return nil
	}
}

// New returns a Controller. Without options every backend is in memory, so it
// works with zero setup. A bad option fails with an error matching ErrInvalid.
func New(opts ...Option) (*Controller, error) {
	cfg := config{rules: identity.DefaultRules(), clock: time.Now}
	for _, opt := range opts {
		if err := opt(&cfg); err != nil {
			return nil, fmt.Errorf("privacy: %w: %w", ErrInvalid, err)
		}
	}
	resolver, err := identity.NewResolver(cfg.rules)
	if err != nil {
		return nil, fmt.Errorf("privacy: WithIdentityRules: %w: %w", ErrInvalid, err)
	}
	if cfg.graph == nil {
		cfg.graph = identity.NewMemGraph()
	}
	if cfg.profiles == nil {
		cfg.profiles = profile.NewMemStore()
	}
	if cfg.audiences == nil {
		cfg.audiences = audience.NewMemStore()
	}
	if cfg.log == nil {
		cfg.log = slog.New(slog.DiscardHandler)
	}
	delivery, err := cfg.delivery.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("privacy: %w: %w", ErrInvalid, err)
	}
	defs, err := cfg.audiences.Definitions(context.Background())
	if err != nil {
		return nil, fmt.Errorf("privacy: loading audience definitions: %w", err)
	}
	set, err := audience.NewSet(defs...)
	if err != nil {
		return nil, fmt.Errorf("privacy: loading audience definitions: %w", err)
	}
	if cfg.supp == nil {
		cfg.supp = suppression.NewMemList()
	}
	if cfg.journal == nil {
		cfg.journal = journal.NewMemJournal()
	}
	if cfg.auditLog == nil {
		cfg.auditLog = audit.NewMemLog()
	}
	if cfg.key == nil {
		cfg.key = make([]byte, 32)
		_, _ = rand.Read(cfg.key) // crypto/rand.Read never fails
	}
	hasher, err := identity.NewHasher(cfg.key)
	if err != nil {
		return nil, fmt.Errorf("privacy: %w: %w", ErrInvalid, err)
	}
	c := &Controller{
		suppressions: cfg.supp,
		journal:      cfg.journal,
		chain:        audit.NewChain(cfg.auditLog, cfg.key),
		auditLog:     cfg.auditLog,
		key:          cfg.key,
		hasher:       hasher,
		graph:        cfg.graph,
		profiles:     cfg.profiles,
		audiences:    cfg.audiences,
		resolver:     resolver,
		clock:        cfg.clock,
		log:          cfg.log,
		locks:        newSubjectLocks(),
		outbox:       outbox.New(cfg.dests, outbox.Config(delivery), cfg.log),
	}
	for _, b := range []any{cfg.graph, cfg.profiles, cfg.audiences, cfg.supp} {
		if _, ok := b.(txscope.Aware); ok {
			c.scoped = true
		}
		if l, ok := b.(txscope.Locker); ok && c.locker == nil {
			c.locker = l
		}
	}
	if c.locker != nil {
		c.scoped = true // the locks live in the scope's transaction
	}
	c.destinations = c.outbox.Destinations()
	c.set.Store(set)
	return c, nil
}

// openScope marks ctx as one operation whose participants may share a backend
// transaction (package txscope), and returns the function that ends it. It costs
// nothing unless a backend cares.
func (c *Controller) openScope(ctx context.Context) (context.Context, func()) {
	if !c.scoped {
		return ctx, func() {}
	}
	ctx, s := txscope.NewContext(ctx)
	return ctx, s.Close
}

// lockRemote takes, through the backend that implements txscope.Locker, the
// cross-process locks of the identifiers and profiles an operation works on,
// after the in-process ones. Without such a backend it does nothing.
func (c *Controller) lockRemote(ctx context.Context, matches []identity.Match, pids []identity.ProfileID) error {
	if !c.remoteLocked(ctx) {
		return nil // reads outside an operation lock in this process only
	}
	keys := make([]string, 0, 2*len(matches)+len(pids))
	for _, m := range matches {
		keys = append(keys, "id:"+m.ID.String())
		if m.Profile != "" {
			keys = append(keys, "profile:"+string(m.Profile))
		}
	}
	for _, pid := range pids {
		keys = append(keys, "profile:"+string(pid))
	}
	if err := c.locker.LockSubjects(ctx, keys); err != nil {
		return backendError("locking subjects", err)
	}
	return nil
}

// retryAttempts bounds how often an operation is run again after a conflict
// the backend marked with txscope.ErrRetry.
const retryAttempts = 10

// errRestart asks for an operation to start over in a new scope: the people it
// locked moved (a merge, a new profile) while it waited for them.
var errRestart = fmt.Errorf("privacy: the subjects changed while being locked: %w", txscope.ErrRetry)

// remoteLocked reports whether the operation of ctx holds cross-process locks.
func (c *Controller) remoteLocked(ctx context.Context) bool {
	return c.locker != nil && txscope.FromContext(ctx) != nil
}

// pause waits a little, more with each attempt and at random, before an
// operation that met a conflict starts over, so that two rivals do not meet
// again in lockstep.
func pause(ctx context.Context, attempt int) {
	d := time.Duration(mrand.Int64N(int64(attempt)*int64(time.Millisecond) + 1))
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

// Close stops the Controller: later calls fail with ErrClosed and delivery to
// destinations stops (call Flush first to wait for it). Backends are the caller's
// and stay open. Closing twice is harmless.
func (c *Controller) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.outbox.Close()
	return nil
}

// Stats counts what the collection path did with the messages it was given, so
// that "missing events" can be explained.
type Stats struct {
	// Collected messages were stored.
	Collected uint64
	// Duplicates repeated a message id already stored for the person.
	Duplicates uint64
	// Suppressed messages were dropped because the person objected.
	Suppressed uint64
	// Refused messages were invalid.
	Refused uint64
}

// Stats returns the collection counters since New.
func (c *Controller) Stats() Stats {
	return Stats{
		Collected:  c.stats.collected.Load(),
		Duplicates: c.stats.duplicates.Load(),
		Suppressed: c.stats.suppressed.Load(),
		Refused:    c.stats.refused.Load(),
	}
}

// now returns the clock's time as stored: UTC, to the microsecond (what SQL
// backends keep), without a monotonic reading.
func (c *Controller) now() time.Time { return c.clock().UTC().Truncate(time.Microsecond) }

func (c *Controller) checkOpen() error {
	if c.closed.Load() {
		return ErrClosed
	}
	return nil
}
