package privacy

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/suppression"
)

// keys returns every key the configuration names, oldest first: the
// previous ones, then the current one.
func (cfg *config) keys() [][]byte {
	return append(append([][]byte(nil), cfg.previous...), cfg.key)
}

// durableBackends names the backends whose content depends on the key and
// may outlive the process: every suppression list, journal and audit log but
// this module's in-memory ones. A backend this module cannot tell is assumed
// to keep what it holds.
func (cfg *config) durableBackends() []string {
	var names []string
	if _, mem := cfg.supp.(*suppression.MemList); !mem {
		names = append(names, "suppression list")
	}
	if _, mem := cfg.journal.(*journal.MemJournal); !mem {
		names = append(names, "journal")
	}
	if _, mem := cfg.auditLog.(*audit.MemLog); !mem {
		names = append(names, "audit log")
	}
	return names
}

// openKeys settles the configuration's key and returns its hasher: it
// refuses durable backends without WithKey (a random key per process lets
// suppressions lapse at the next restart) and a key that is not the one the
// backends were keyed with (ErrKeyMismatch).
func openKeys(ctx context.Context, cfg *config) (*identity.Hasher, error) {
	if cfg.key == nil {
		if len(cfg.previous) > 0 {
			return nil, fmt.Errorf("%w: WithPreviousKeys without WithKey: the current key is the one WithKey sets", ErrInvalid)
		}
		if durable := cfg.durableBackends(); len(durable) > 0 {
			return nil, fmt.Errorf("%w: WithKey is required with durable backends (here the %v): "+
				"without it each process would hash people with a random key, so suppressions would stop matching "+
				"and the audit chain would break at the next restart", ErrInvalid, durable)
		}
		cfg.key = make([]byte, 32)
		_, _ = rand.Read(cfg.key) // crypto/rand.Read never fails
	}
	hasher, err := identity.NewRotatedHasher(cfg.keys()...)
	if err != nil {
		return nil, fmt.Errorf("privacy: %w: %w", ErrInvalid, err)
	}
	if err := checkKey(ctx, cfg, hasher); err != nil {
		return nil, err
	}
	return hasher, nil
}

// checkKey checks the key against the suppression list's recorded check
// value, recording it at first use, and against the audit log's chain.
func checkKey(ctx context.Context, cfg *config, hasher *identity.Hasher) error {
	if kc, ok := cfg.supp.(suppression.KeyChecker); ok {
		recorded, err := kc.KeyCheck(ctx, hasher.Check())
		if err != nil {
			return backendError("suppression list: key check", err)
		}
		if recorded != hasher.Check() {
			return fmt.Errorf("%w: the suppression list was keyed with another key (or other keys before a rotation: WithPreviousKeys)", ErrKeyMismatch)
		}
	}
	if err := audit.CheckKey(ctx, cfg.auditLog, cfg.keys()); err != nil {
		if errors.Is(err, audit.ErrUnknownKey) {
			return fmt.Errorf("%w: audit log: %w", ErrKeyMismatch, err)
		}
		return backendError("audit log: key check", err)
	}
	return nil
}

// RotateKey changes the secret key (WithKey) to newKey over the backends the
// options name: the Controller's own options, with its current key and
// previous keys. It carries every hash the suppression list holds to the new
// key and records the new key's check value, in one transaction, then
// appends to the audit log, under the old key, the record of the rotation,
// after which the chain continues under the new one. Afterwards start every
// Controller with WithKey(newKey) and WithPreviousKeys(the old keys, oldest
// first, then the key replaced): the hashes are layered over the old keys'
// (identity.NewRotatedHasher), so that someone who learns an old key alone
// cannot compute them. Receipts made before keep their subjects' hashes under
// the old keys.
//
// Run it with every Controller over these backends stopped, and no request
// unfinished (Recover first): a host still running with the old key would
// store hashes the list no longer matches, and a request recovered after it
// would suppress its subjects under the old key. It refuses unfinished
// requests. It is safe to run again after a failure, with the same options
// and newKey: it finishes what the failed run left.
func RotateKey(ctx context.Context, newKey []byte, opts ...Option) error {
	cfg := defaultConfig()
	for _, opt := range opts {
		if err := opt(&cfg); err != nil {
			return fmt.Errorf("privacy: %w: %w", ErrInvalid, err)
		}
	}
	if cfg.key == nil {
		return fmt.Errorf("privacy: %w: RotateKey needs the current key (WithKey)", ErrInvalid)
	}
	if len(newKey) < identity.MinKeyLength {
		return fmt.Errorf("privacy: %w: the new key is %d bytes, want at least %d", ErrInvalid, len(newKey), identity.MinKeyLength)
	}
	for _, k := range cfg.keys() {
		if string(k) == string(newKey) {
			return fmt.Errorf("privacy: %w: the new key is one used before", ErrInvalid)
		}
	}
	old, err := identity.NewRotatedHasher(cfg.keys()...)
	if err != nil {
		return fmt.Errorf("privacy: %w: %w", ErrInvalid, err)
	}
	next, err := identity.NewRotatedHasher(append(cfg.keys(), newKey)...)
	if err != nil {
		return fmt.Errorf("privacy: %w: %w", ErrInvalid, err)
	}
	unfinished, err := cfg.journal.Unfinished(ctx)
	if err != nil {
		return backendError("journal", err)
	}
	if len(unfinished) > 0 {
		return fmt.Errorf("privacy: %w: %d requests are unfinished (the first: %s): finish them (Recover) before rotating the key", ErrConflict, len(unfinished), unfinished[0].ID)
	}

	// The suppression list, unless a run before this one carried it over.
	rekeyer := false
	if kc, ok := cfg.supp.(suppression.KeyChecker); ok {
		recorded, err := kc.KeyCheck(ctx, old.Check())
		if err != nil {
			return backendError("suppression list: key check", err)
		}
		switch recorded {
		case next.Check(): // done by a run that failed after it
		case old.Check():
			rekeyer = true
		default:
			return fmt.Errorf("%w: the suppression list was keyed with other keys than those given", ErrKeyMismatch)
		}
	} else {
		return fmt.Errorf("privacy: %w: the suppression list (%T) does not record a key check value (suppression.KeyChecker)", ErrInvalid, cfg.supp)
	}
	if rekeyer {
		if err := rekeySuppressions(ctx, cfg.supp, next); err != nil {
			return err
		}
	}

	// The audit log: the rotation record, unless it is there already.
	switch err := audit.CheckKey(ctx, cfg.auditLog, append(cfg.keys(), newKey)); {
	case err == nil: // rotated by a run that failed after it
		return nil
	case !errors.Is(err, audit.ErrUnknownKey):
		return backendError("audit log: key check", err)
	}
	if err := audit.CheckKey(ctx, cfg.auditLog, cfg.keys()); err != nil {
		if errors.Is(err, audit.ErrUnknownKey) {
			return fmt.Errorf("%w: audit log: %w", ErrKeyMismatch, err)
		}
		return backendError("audit log: key check", err)
	}
	r := audit.Record{At: cfg.clock().UTC().Truncate(time.Microsecond), Action: audit.ActionKeyRotated, Status: "FINISHED",
		Detail: audit.KeyRotatedDetail(next.Check())}
	if err := audit.NewChain(cfg.auditLog, cfg.key).Append(ctx, r); err != nil {
		return backendError("audit log", err)
	}
	return nil
}

// rekeySuppressions carries the list's hashes over to next's key and
// records its check value, in one transaction.
func rekeySuppressions(ctx context.Context, l suppression.List, next *identity.Hasher) error {
	tx, err := l.Begin(ctx)
	if err != nil {
		return backendError("suppression list", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	rk, ok := tx.(suppression.Rekeyer)
	if !ok {
		return fmt.Errorf("privacy: %w: the suppression list's transactions (%T) cannot carry hashes to a new key (suppression.Rekeyer)", ErrInvalid, tx)
	}
	if _, err := rk.Rekey(ctx, next.Rekey, next.Check()); err != nil {
		return backendError("suppression list: rekey", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return backendError("suppression list: rekey", err)
	}
	return nil
}
