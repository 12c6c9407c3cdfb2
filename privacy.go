package privacy

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/internal/deliver"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/keyring"
	"github.com/gdprkit/privacy/outbox"
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
	// outbox holds what destinations are owed; deliver delivers it.
	outbox  outbox.Store
	deliver *deliver.Engine
	// destinations are the destinations' names, in the order configured.
	destinations []string // every destination owed: local ones, then WithRemoteDestinations
	local        []string // the destinations this Controller delivers to
	// consent holds the categories of each destination that declares some
	// (destination.Consent).
	consent map[string][]string
	// awaiting holds the requests this Controller holds that wait for their
	// destinations' answers (*awaited), by id.
	awaiting sync.Map

	suppressions suppression.List
	journal      journal.Journal
	chain        *audit.Chain
	auditLog     audit.Log
	keys         [][]byte // every key, oldest first (WithPreviousKeys, WithKey)
	hasher       *identity.Hasher
	// hashers hash under every prefix of keys, oldest first (rotatedHashers);
	// the last is hasher.
	hashers []*identity.Hasher
	// dataKeys are the profiles' data keys the profile store seals with
	// (encryption.go), nil when it does not: an erasure destroys them.
	dataKeys *keyring.Keys
	// purger purges, after an erasure's commit, the sealed rows the profile
	// store left (erasure.go): set when it seals and purges, else nil.
	purger profile.Purger
	limits Limits // on collected messages (WithLimits)
	// inflight holds the claims (*claim) of the requests this Controller
	// works on, by id, so Recover leaves them alone.
	inflight sync.Map
	// instance names this Controller in the claims it takes (WithInstance);
	// lease is how long a claim lasts unless renewed (WithLease).
	instance   string
	lease      time.Duration
	stopClaims chan struct{} // closed by Close
	// closing ends with Close (cancelClosing): the background work's context.
	closing       context.Context
	cancelClosing context.CancelFunc
	claimsDone    sync.WaitGroup
	schedule      Schedule
	retention     RetentionPolicy // WithRetention
	// stale holds profiles whose memberships could not be stored; Refresh
	// recomputes them from their events.
	stale sync.Map
	clock func() time.Time
	log   *slog.Logger
	tel   *telemetry
	locks *subjectLocks
	// scoped: some backend joins txscope scopes, so each operation opens one;
	// locker, when set, locks subjects across processes within a scope.
	scoped bool
	locker txscope.Locker

	closed atomic.Bool
	// keyLost: the suppression list holds another key's check value (a
	// rotation since New); every call fails.
	keyLost atomic.Bool
	stats   struct {
		collected, duplicates, suppressed, refused atomic.Uint64
	}
}

// defaultConfig returns the in-memory defaults, which options replace.
func defaultConfig() config {
	limits, _ := Limits{}.withDefaults() // the defaults are in range
	return config{rules: identity.DefaultRules(), clock: time.Now, log: slog.New(slog.DiscardHandler),
		instance: identity.NewSortableID("ins_", time.Now()), lease: DefaultLease, limits: limits,
		graph: identity.NewMemGraph(), profiles: profile.NewMemStore(), audiences: audience.NewMemStore(),
		supp: suppression.NewMemList(), journal: journal.NewMemJournal(), auditLog: audit.NewMemLog(), outbox: outbox.NewMemStore()}
}

// New returns a Controller. Without options every backend is in memory, so it
// works with zero setup. A bad option fails with an error matching ErrInvalid.
// Durable backends need WithKey, the key they were keyed with: New refuses
// them without it, and with another key (ErrKeyMismatch).
func New(opts ...Option) (*Controller, error) {
	cfg := defaultConfig()
	for _, opt := range opts {
		if err := opt(&cfg); err != nil {
			return nil, fmt.Errorf("privacy: %w: %w", ErrInvalid, err)
		}
	}
	resolver, err := identity.NewResolver(cfg.rules)
	if err != nil {
		return nil, fmt.Errorf("privacy: WithIdentityRules: %w: %w", ErrInvalid, err)
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
	keyGiven := cfg.key != nil
	hashers, err := openKeys(context.Background(), &cfg)
	if err != nil {
		return nil, err
	}
	dataKeys, err := openKeyring(context.Background(), &cfg, keyGiven)
	if err != nil {
		return nil, fmt.Errorf("privacy: %w", err)
	}
	if err := checkMarks(context.Background(), cfg.outbox); err != nil {
		return nil, fmt.Errorf("privacy: %w", err)
	}
	hasher := hashers[len(hashers)-1]
	if dataKeys != nil {
		cfg.journal = sealingJournal{cfg.journal, dataKeys}
	}
	c := &Controller{
		suppressions: cfg.supp,
		journal:      cfg.journal,
		chain:        audit.NewKeyedChain(cfg.auditLog, cfg.key, hasher.Check()),
		auditLog:     cfg.auditLog,
		keys:         cfg.keys(),
		limits:       cfg.limits,
		hasher:       hasher,
		hashers:      hashers,
		graph:        cfg.graph,
		profiles:     cfg.profiles,
		audiences:    cfg.audiences,
		resolver:     resolver,
		clock:        cfg.clock,
		log:          cfg.log,
		locks:        newSubjectLocks(),
		outbox:       cfg.outbox,
		instance:     cfg.instance,
		lease:        cfg.lease,
		schedule:     cfg.schedule.withDefaults(cfg.lease),
		retention:    cfg.retention,
		stopClaims:   make(chan struct{}),
		dataKeys:     dataKeys,
		purger:       purgerOf(cfg.profiles, dataKeys),
	}
	backends := []any{cfg.graph, cfg.profiles, cfg.audiences, cfg.supp, cfg.outbox}
	if dataKeys != nil {
		backends = append(backends, dataKeys.Store())
	}
	c.scoped, c.locker = scopeOf(backends...)
	// Each process claims as itself: a restart does not inherit the leases
	// of the run before, whose calls died with it.
	owner := cfg.instance + "/" + identity.NewSortableID("run_", time.Now())
	// Delivery keeps wall-clock time, whatever WithClock says: its leases,
	// retries and horizon are measured, not recorded.
	delivery.Scrub, delivery.Describe = c.scrubDelivery, describe
	c.deliver = deliver.New(cfg.outbox, cfg.dests, delivery, owner, time.Now, cfg.log, func(requests []string) {
		for _, id := range requests {
			c.checkRequest(context.Background(), id)
		}
	})
	c.local = c.deliver.Destinations()
	c.destinations = slices.Clone(c.local)
	for _, name := range cfg.remoteDests {
		if slices.Contains(c.destinations, name) {
			c.deliver.Close()
			return nil, fmt.Errorf("privacy: WithRemoteDestinations: %q is a destination of this Controller too", name)
		}
		c.destinations = append(c.destinations, name)
	}
	if c.tel, err = newTelemetry(c, cfg.tracerProvider, cfg.meterProvider); err != nil {
		c.deliver.Close()
		return nil, fmt.Errorf("privacy: telemetry: %w", err)
	}
	c.consent = consentCategories(cfg.dests)
	c.closing, c.cancelClosing = context.WithCancel(context.Background())
	c.claimsDone.Add(2)
	go c.keepClaims()
	go c.awaitAnswers(delivery.Poll)
	c.set.Store(set)
	return c, nil
}

// Close stops the Controller: later calls fail with ErrClosed and delivery to
// destinations stops (call Flush first to wait for it). Backends are the caller's
// and stay open. Closing twice is harmless.
func (c *Controller) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	close(c.stopClaims)
	c.cancelClosing()
	c.claimsDone.Wait()
	c.deliver.Close()
	c.tel.close()
	return nil
}

// awaitAnswers checks, every poll, the requests awaiting their destinations'
// answers, which deliverers in other processes may have given, until Close.
func (c *Controller) awaitAnswers(poll time.Duration) {
	defer c.claimsDone.Done()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		select {
		case <-c.closing.Done():
			return
		case <-tick.C:
			c.checkAwaiting(c.closing)
		}
	}
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
	if c.keyLost.Load() {
		return fmt.Errorf("%w: the suppression list was keyed with another key since this Controller started (a rotation): restart it with the new keys", ErrKeyMismatch)
	}
	return nil
}
