package privacy

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/suppression"
)

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
