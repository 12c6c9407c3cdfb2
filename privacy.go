package privacy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// Controller is the library's entry point: it collects messages into profiles and
// applies the rights over every plugged-in backend. It is safe for concurrent use.
type Controller struct {
	graph    identity.Graph
	profiles profile.Store
	resolver *identity.Resolver
	clock    func() time.Time
	log      *slog.Logger
	locks    *subjectLocks

	// suppressed is the suppression gate of the collection path, consulted under
	// the subject lock before anything is written. It stays nil, and costs one
	// branch, until a suppression list is plugged in.
	suppressed func(ctx context.Context, matches []identity.Match) (bool, error)

	closed atomic.Bool
	stats  struct {
		collected, duplicates, suppressed, refused atomic.Uint64
	}
}

// Option configures a Controller.
type Option func(*config) error

type config struct {
	graph    identity.Graph
	profiles profile.Store
	rules    identity.Rules
	clock    func() time.Time
	log      *slog.Logger
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
	if cfg.log == nil {
		cfg.log = slog.New(slog.DiscardHandler)
	}
	return &Controller{
		graph:    cfg.graph,
		profiles: cfg.profiles,
		resolver: resolver,
		clock:    cfg.clock,
		log:      cfg.log,
		locks:    newSubjectLocks(),
	}, nil
}

// Close stops the Controller: later calls fail with ErrClosed. Backends are the
// caller's and stay open.
func (c *Controller) Close() error {
	c.closed.Store(true)
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
