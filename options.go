package privacy

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/keyring"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/suppression"
)

// Option configures a Controller.
type Option func(*config) error

type config struct {
	supp        suppression.List
	journal     journal.Journal
	auditLog    audit.Log
	key         []byte
	previous    [][]byte // keys before rotations, oldest first
	limits      Limits
	adoptKey    bool // WithKeyAdopted
	graph       identity.Graph
	profiles    profile.Store
	audiences   audience.Store
	dests       []destination.Destination
	delivery    Delivery
	outbox      outbox.Store
	rules       identity.Rules
	clock       func() time.Time
	log         *slog.Logger
	instance    string
	lease       time.Duration
	schedule    Schedule
	retention   RetentionPolicy // WithRetention
	remoteDests []string        // WithRemoteDestinations
	// Telemetry (telemetry.go).
	tracerProvider trace.TracerProvider
	meterProvider  metric.MeterProvider
	// Encryption at rest (encryption.go).
	keeper       keyring.Keeper
	keyStore     keyring.Store
	noEncryption bool
}

// notNil is the option that sets one setting, refusing a nil value (isNil,
// as the caller sees it: a nil interface, func or pointer).
func notNil(option, what string, isNil bool, set func(*config)) Option {
	return func(c *config) error {
		if isNil {
			return fmt.Errorf("%s: nil %s", option, what)
		}
		set(c)
		return nil
	}
}

// WithRemoteDestinations names destinations that other processes sharing
// this Controller's outbox deliver to (the hosts), and this one does not:
// what a right owes them (a forwarded deletion, a rectification) is
// written to the outbox for them, and the request waits for their answers
// as for its own destinations'. It is for a process that applies rights
// beside the hosts without delivering, such as an operator's tool
// (cmd/gdprkit): one that collects needs the destinations themselves (their
// consent categories route messages), so messages it collects are routed
// to its own destinations only. Names are trimmed; empty ones, repeats and
// names WithDestinations would refuse are refused. A name no host delivers
// to keeps the requests that owe it something RUNNING: nothing claims its
// items, so nothing gives up on them.
func WithRemoteDestinations(names ...string) Option {
	return func(c *config) error {
		for _, n := range names {
			n = strings.TrimSpace(n)
			if n == "" {
				return fmt.Errorf("WithRemoteDestinations: an empty name")
			}
			if len(n) > outbox.MaxNameLen || !storableText(n) {
				return fmt.Errorf("WithRemoteDestinations: a destination's name must be valid UTF-8 without NUL, of at most %d bytes", outbox.MaxNameLen)
			}
			if slices.Contains(c.remoteDests, n) {
				return fmt.Errorf("WithRemoteDestinations: %q given twice", n)
			}
			c.remoteDests = append(c.remoteDests, n)
		}
		return nil
	}
}

// WithIdentity sets the identity graph backend (default identity.NewMemGraph()).
func WithIdentity(g identity.Graph) Option {
	return notNil("WithIdentity", "graph", g == nil, func(c *config) { c.graph = g })
}

// WithProfiles sets the profile store backend (default profile.NewMemStore()).
// A profile store that seals what it stores (keyring.Sealer: sqlstore's) is
// handed the data keys by New; a decorator of one must forward SealWith and
// Keyring, or New refuses it beside a keyring rather than let it write in
// clear.
func WithProfiles(s profile.Store) Option {
	return notNil("WithProfiles", "store", s == nil, func(c *config) { c.profiles = s })
}

// WithAudiences sets the audience engine backend (default audience.NewMemStore()).
// Definitions it already holds are loaded by New.
func WithAudiences(s audience.Store) Option {
	return notNil("WithAudiences", "store", s == nil, func(c *config) { c.audiences = s })
}

// WithDestinations adds destinations that receive every collected message,
// trait change and audience change after it commits. Names must be unique.
func WithDestinations(ds ...destination.Destination) Option {
	return func(c *config) error {
		for _, d := range ds {
			if d == nil {
				return errors.New("WithDestinations: nil destination")
			}
			switch name := d.Name(); {
			case name == "":
				return errors.New("WithDestinations: a destination has an empty name")
			case len(name) > outbox.MaxNameLen || !storableText(name):
				// The outbox keeps it with every item owed: a name it
				// refuses would fail every change, or deliver nothing.
				return fmt.Errorf("WithDestinations: a destination's name must be valid UTF-8 without NUL, of at most %d bytes", outbox.MaxNameLen)
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

// WithOutbox sets the outbox backend, which holds what destinations are owed
// until they answer (default outbox.NewMemStore(), whose content goes with
// the process). With a durable outbox that shares the other backends'
// transactions, such as sqlstore's, whatever committed is delivered, across
// crashes and restarts, by whichever process sharing it gets there first.
func WithOutbox(o outbox.Store) Option {
	return notNil("WithOutbox", "outbox", o == nil, func(c *config) { c.outbox = o })
}

// WithSuppressions sets the suppression list backend (default
// suppression.NewMemList()).
func WithSuppressions(l suppression.List) Option {
	return notNil("WithSuppressions", "list", l == nil, func(c *config) { c.supp = l })
}

// WithJournal sets the request journal backend (default journal.NewMemJournal()).
func WithJournal(j journal.Journal) Option {
	return notNil("WithJournal", "journal", j == nil, func(c *config) { c.journal = j })
}

// WithAuditLog sets the audit log backend (default audit.NewMemLog()).
func WithAuditLog(l audit.Log) Option {
	return notNil("WithAuditLog", "log", l == nil, func(c *config) { c.auditLog = l })
}

// WithKey sets the secret key of the keyed hashes that stand for people in the
// suppression list, receipts and the audit log, and that chain the audit log (at
// least 16 bytes; 32 random bytes are right). Durable backends need it, and
// it must stay the same across restarts: New refuses durable backends
// without it, and a key that is not the one their data was keyed with
// (ErrKeyMismatch). Only the in-memory defaults, whose content goes with the
// process, may go without: New then makes a random key (Controllers sharing
// in-memory backends need one WithKey too: the second is refused without).
// RotateKey changes it.
func WithKey(key []byte) Option {
	return func(c *config) error {
		if len(key) < identity.MinKeyLength {
			return fmt.Errorf("WithKey: key is %d bytes, want at least %d", len(key), identity.MinKeyLength)
		}
		c.key = append([]byte(nil), key...)
		return nil
	}
}

// WithPreviousKeys gives, after a key rotation (RotateKey), the keys used
// before the one WithKey sets, oldest first. The hashes the backends keep are
// layered over the old keys' (identity.NewRotatedHasher), and the audit log's
// earlier records are chained under them, so they are needed as long as the
// data is; New refuses them without WithKey.
func WithPreviousKeys(keys ...[]byte) Option {
	return func(c *config) error {
		if len(keys) == 0 {
			return errors.New("WithPreviousKeys: no key")
		}
		c.previous = c.previous[:0]
		for i, k := range keys {
			if len(k) < identity.MinKeyLength {
				return fmt.Errorf("WithPreviousKeys: key %d of %d is %d bytes, want at least %d", i+1, len(keys), len(k), identity.MinKeyLength)
			}
			c.previous = append(c.previous, append([]byte(nil), k...))
		}
		return nil
	}
}

// WithBackends wires every backend store provides, in one option: each of
// these methods it has, with the option it stands for.
//
//	Graph() identity.Graph          WithIdentity
//	Profiles() profile.Store        WithProfiles
//	Audiences() audience.Store      WithAudiences
//	Suppressions() suppression.List WithSuppressions
//	Journal() journal.Journal       WithJournal
//	AuditLog() audit.Log            WithAuditLog
//	Outbox() outbox.Store           WithOutbox
//	Keyring() keyring.Store         WithKeyring
//
// sqlstore.Store has them all. Options after it replace what it set (a
// journal in another database, say). A store with none of them, or one that
// returns a nil backend, is refused.
func WithBackends(store any) Option {
	return func(c *config) error {
		if v := reflect.ValueOf(store); store == nil || v.Kind() == reflect.Pointer && v.IsNil() {
			return fmt.Errorf("WithBackends: nil store (%T)", store)
		}
		n := 0
		var err error
		wire := func(name string, isNil bool, set func()) {
			switch {
			case err != nil:
			case isNil:
				err = fmt.Errorf("WithBackends: %T.%s() returned nil", store, name)
			default:
				set()
				n++
			}
		}
		if p, ok := store.(interface{ Graph() identity.Graph }); ok {
			g := p.Graph()
			wire("Graph", g == nil, func() { c.graph = g })
		}
		if p, ok := store.(interface{ Profiles() profile.Store }); ok {
			s := p.Profiles()
			wire("Profiles", s == nil, func() { c.profiles = s })
		}
		if p, ok := store.(interface{ Audiences() audience.Store }); ok {
			s := p.Audiences()
			wire("Audiences", s == nil, func() { c.audiences = s })
		}
		if p, ok := store.(interface{ Suppressions() suppression.List }); ok {
			l := p.Suppressions()
			wire("Suppressions", l == nil, func() { c.supp = l })
		}
		if p, ok := store.(interface{ Journal() journal.Journal }); ok {
			j := p.Journal()
			wire("Journal", j == nil, func() { c.journal = j })
		}
		if p, ok := store.(interface{ AuditLog() audit.Log }); ok {
			l := p.AuditLog()
			wire("AuditLog", l == nil, func() { c.auditLog = l })
		}
		if p, ok := store.(interface{ Outbox() outbox.Store }); ok {
			o := p.Outbox()
			wire("Outbox", o == nil, func() { c.outbox = o })
		}
		if p, ok := store.(interface{ Keyring() keyring.Store }); ok {
			k := p.Keyring()
			wire("Keyring", k == nil, func() { c.keyStore = k })
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("WithBackends: %T provides no backend (no Graph, Profiles, Audiences, Suppressions, Journal, AuditLog, Outbox or Keyring method)", store)
		}
		return nil
	}
}

// WithKeyring sets the keyring backend, which keeps each profile's data key
// wrapped by the Keeper (default: the one WithBackends' store provides, else
// the profile store's own when it has a Keyring method, as sqlstore's has). It may be in another database than the data, so
// that a backup of the data holds no key; a profile store that seals its
// data on disk is refused with the in-memory keyring, whose keys would go
// with the process.
func WithKeyring(s keyring.Store) Option {
	return notNil("WithKeyring", "store", s == nil, func(c *config) { c.keyStore = s })
}

// WithKeeper sets the Keeper that wraps the data keys: a key management
// service's, through Go CDK's *secrets.Keeper, which has its method set
// (default: a keyring.LocalKeeper derived from WithKey, and from
// WithPreviousKeys' keys to unwrap what was wrapped before a rotation).
func WithKeeper(k keyring.Keeper) Option {
	return notNil("WithKeeper", "keeper", k == nil, func(c *config) { c.keeper = k })
}

// WithoutEncryption stores traits and event properties in clear even in a
// profile store that can seal them (sqlstore's). An erasure then cannot
// reach copies of the rows (backups, replicas): use it only where the data is
// not personal or is protected otherwise. New refuses it over data that was
// sealed (ErrKeyMismatch): it would not find the sealed identifiers, and
// would link them again, in clear, to a second profile.
func WithoutEncryption() Option {
	return func(c *config) error {
		c.noEncryption = true
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
	return notNil("WithClock", "clock", now == nil, func(c *config) { c.clock = now })
}

// maxInstanceLength bounds an instance name: the owner of the outbox items
// a process claims is the name and a run id of 31 bytes, within
// outbox.MaxNameLen.
const maxInstanceLength = outbox.MaxNameLen - 32

// WithInstance names this Controller in the claims it takes on the requests
// it works on (default: a random name, new at every New). Give each host a
// name that stays the same across its restarts and is never used by two
// running hosts at once (a pod or host name): Recover then completes, at
// once, what the host left unfinished when it stopped, while another host's
// live requests are left to it until its claim's lease lapses.
func WithInstance(name string) Option {
	return func(c *config) error {
		switch {
		case name == "":
			return errors.New("WithInstance: empty name")
		case len(name) > maxInstanceLength || !storableText(name):
			return fmt.Errorf("WithInstance: the name must be valid UTF-8 without NUL, of at most %d bytes", maxInstanceLength)
		}
		c.instance = name
		return nil
	}
}

// WithLease sets how long a claim on a request lasts unless its holder renews
// it (default DefaultLease): how long another host waits before it takes over
// the requests of a host that stopped. The holder renews every third of it.
func WithLease(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("WithLease: %v is not a duration", d)
		}
		c.lease = d
		return nil
	}
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return notNil("WithLogger", "logger", l == nil, func(c *config) { c.log = l })
}
