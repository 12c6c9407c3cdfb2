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
	"github.com/gdprkit/privacy/keyring"
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

// openKeys settles the configuration's key and returns its hashers, one per
// key used, oldest first (rotatedHashers; the last is the current one): it
// refuses durable backends without WithKey (a random key per process lets
// suppressions lapse at the next restart) and a key that is not the one the
// backends were keyed with (ErrKeyMismatch).
func openKeys(ctx context.Context, cfg *config) ([]*identity.Hasher, error) {
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
	hashers, err := rotatedHashers(cfg.keys())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := checkKey(ctx, cfg, hashers[len(hashers)-1]); err != nil {
		return nil, err
	}
	return hashers, nil
}

// checkKey checks the key against the suppression list's recorded check
// value and the audit log's chain, and only then, when both agree and the
// list holds none, records it: a start that is refused writes nothing.
func checkKey(ctx context.Context, cfg *config, hasher *identity.Hasher) error {
	keys := cfg.keys()
	if err := audit.CheckKey(ctx, cfg.auditLog, keys); err != nil {
		return auditKeyError(err)
	}
	kc, ok := cfg.supp.(suppression.KeyChecker)
	if !ok {
		return nil
	}
	recorded, err := kc.KeyCheck(ctx)
	if err != nil {
		return backendError("suppression list: key check", err)
	}
	switch {
	case recorded == hasher.Check():
		return nil
	case !recorded.IsZero():
		return fmt.Errorf("%w: the suppression list was keyed with another key (or other keys before a rotation: WithPreviousKeys); every Controller sharing backends needs the same WithKey", ErrKeyMismatch)
	}
	// None recorded: a new list, or one written before lists recorded a
	// check value. Suppressions in it must not be taken over by a key
	// nothing confirms.
	if err := confirmUnrecorded(ctx, cfg, keys); err != nil {
		return err
	}
	recorded, err = kc.RecordKeyCheck(ctx, hasher.Check())
	if err != nil {
		return backendError("suppression list: key check", err)
	}
	if recorded != hasher.Check() {
		return fmt.Errorf("%w: another Controller recorded another key on the suppression list first", ErrKeyMismatch)
	}
	return nil
}

// confirmUnrecorded allows a key to be recorded on a suppression list that
// holds no check value: an empty list, a key the audit log's chain confirms,
// or WithKeyAdopted.
func confirmUnrecorded(ctx context.Context, cfg *config, keys [][]byte) error {
	if cfg.adoptKey {
		return nil
	}
	ids, profiles, err := cfg.supp.Len(ctx)
	if err != nil {
		return backendError("suppression list", err)
	}
	if ids+profiles == 0 {
		return nil
	}
	_, _, logged, err := audit.LastKey(ctx, cfg.auditLog, keys)
	if err != nil {
		return auditKeyError(err)
	}
	if logged {
		return nil // chained under these keys: CheckKey passed
	}
	return fmt.Errorf("%w: the suppression list holds suppressions but no key check value (it was written before lists recorded one), "+
		"and the audit log is empty, so nothing confirms the key: if it is the key the list was written with, start once with WithKeyAdopted", ErrKeyMismatch)
}

// auditKeyError classifies an error of the audit log's key check.
func auditKeyError(err error) error {
	if errors.Is(err, audit.ErrUnknownKey) {
		return fmt.Errorf("%w: audit log: %w", ErrKeyMismatch, err)
	}
	return backendError("audit log: key check", err)
}

// WithKeyAdopted lets New record the key's check value on a suppression list
// that holds suppressions but no check value (sqlstore before migration
// 0005) when the audit log cannot confirm the key (it is empty, or kept
// elsewhere). Give it once, with the key the list was written with: a wrong
// key would be recorded, and every suppression in the list would lapse.
func WithKeyAdopted() Option {
	return func(c *config) error {
		c.adoptKey = true
		return nil
	}
}

// RotateKey changes the secret key (WithKey) to newKey over the backends the
// options name: every option the Controllers are started with, with their
// current key and previous keys; a journal and audit log kept in another
// Store (WithJournal, WithAuditLog after WithBackends) included, or it
// rotates the wrong ones. It carries every hash the suppression list holds to the new
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
// unfinished (Recover first): it refuses unfinished requests, and a
// Controller still running with the old key stops (every call fails with
// ErrKeyMismatch) once it sees the new check value, within a third of its
// lease. It checks both backends before it writes anything: given keys that
// are not those they were keyed with, it fails with ErrKeyMismatch and
// changes nothing. It is safe to run again after a failure, with the same
// options and newKey: it finishes what the failed run left.
//
// Data keys (encryption at rest) wrapped by the default keeper, derived from
// the key, are re-wrapped under the new key last, without touching the data
// they seal (keyring.Rotate); until then WithPreviousKeys still unwraps
// them. A keeper of WithKeeper is left to its own rotation.
func RotateKey(ctx context.Context, newKey []byte, opts ...Option) error {
	cfg := defaultConfig()
	for _, opt := range opts {
		if err := opt(&cfg); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	if cfg.key == nil {
		return fmt.Errorf("%w: RotateKey needs the current key (WithKey)", ErrInvalid)
	}
	if len(newKey) < identity.MinKeyLength {
		return fmt.Errorf("%w: the new key is %d bytes, want at least %d", ErrInvalid, len(newKey), identity.MinKeyLength)
	}
	keys := cfg.keys()
	for _, k := range keys {
		if string(k) == string(newKey) {
			return fmt.Errorf("%w: the new key is one used before", ErrInvalid)
		}
	}
	after := append(append([][]byte(nil), keys...), newKey)
	old, err := identity.NewRotatedHasher(keys...)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	next, err := identity.NewRotatedHasher(after...)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	unfinished, err := cfg.journal.Unfinished(ctx)
	if err != nil {
		return backendError("journal", err)
	}
	if len(unfinished) > 0 {
		return fmt.Errorf("%w: %d requests are unfinished (the first: %s): finish them (Recover) before rotating the key", ErrConflict, len(unfinished), unfinished[0].ID)
	}

	// Where each backend stands, read before anything is written.
	i, last, logged, err := audit.LastKey(ctx, cfg.auditLog, after)
	if err != nil {
		return auditKeyError(err)
	}
	var appendRecord bool
	switch {
	case !logged: // an empty log: it starts with the rotation
		appendRecord = true
	case i == len(keys): // under the new key: rotated already
	case i == len(keys)-1 && audit.IsRotationTo(last, after): // the rotation is the last record
	case i == len(keys)-1 && last.Action == audit.ActionKeyRotated:
		return fmt.Errorf("%w: the audit log's last record is a rotation to another key, unfinished: finish it (RotateKey with the key it rotated to) first", ErrKeyMismatch)
	case i == len(keys)-1, i == len(keys)-2 && audit.IsRotationTo(last, keys):
		// Under the current key, or its own rotation record the last.
		appendRecord = true
	default:
		return fmt.Errorf("%w: the audit log's last record (%d) is chained under an older key than the current one: give the keys it was rotated to (WithKey, WithPreviousKeys)", ErrKeyMismatch, last.Seq)
	}
	kc, ok := cfg.supp.(suppression.KeyChecker)
	if !ok {
		return fmt.Errorf("%w: the suppression list (%T) does not record a key check value (suppression.KeyChecker)", ErrInvalid, cfg.supp)
	}
	recorded, err := kc.KeyCheck(ctx)
	if err != nil {
		return backendError("suppression list: key check", err)
	}
	var rekey bool
	switch recorded {
	case next.Check(): // carried over by a run that failed after it
	case old.Check():
		rekey = true
	case identity.Hash{}:
		if err := confirmUnrecorded(ctx, &cfg, keys); err != nil {
			return err
		}
		rekey = true
	default:
		return fmt.Errorf("%w: the suppression list was keyed with other keys than those given", ErrKeyMismatch)
	}

	if rekey {
		if err := rekeySuppressions(ctx, cfg.supp, next); err != nil {
			return err
		}
	}
	if appendRecord {
		r := audit.Record{At: cfg.clock().UTC().Truncate(time.Microsecond), Action: audit.ActionKeyRotated, Status: "FINISHED",
			Detail: audit.KeyRotatedDetail(next.Check())}
		if err := audit.NewChain(cfg.auditLog, cfg.key).Append(ctx, r); err != nil {
			return backendError("audit log", err)
		}
	}
	return rewrapDataKeys(ctx, &cfg, newKey)
}

// rewrapDataKeys re-wraps every data key of the keyring under the key
// derived from newKey, when they are wrapped by the default keeper (derived
// from the keys: WithKeeper's are its own to rotate). The data they seal is
// not touched; a key re-wrapped by a run before is skipped.
func rewrapDataKeys(ctx context.Context, cfg *config, newKey []byte) error {
	store := cfg.keyring()
	if _, seals := cfg.profiles.(keyring.Sealer); !seals || store == nil || cfg.keeper != nil {
		return nil
	}
	from, err := localKeeper(cfg.key, cfg.previous)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	to, err := keyring.NewLocalKeeper(newKey)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	// The keyring must be the data's, its keys wrapped by the old keys (or
	// by the new one, a run before): re-wrapping another (WithKeyring
	// forgotten) would leave the data's keys under the old key.
	either, err := keyring.NewRotatingKeeper(to, from)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	keys, err := keyring.NewKeys(store, either, 0)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := checkKeeper(ctx, keys); err != nil {
		return err
	}
	if err := sealWith(ctx, cfg.profiles.(keyring.Sealer), keys); err != nil {
		return err
	}
	if _, err := keyring.Rotate(ctx, store, from, to, 0); err != nil {
		return backendError("keyring: re-wrapping data keys", err)
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
		return fmt.Errorf("%w: the suppression list's transactions (%T) cannot carry hashes to a new key (suppression.Rekeyer)", ErrInvalid, tx)
	}
	if _, err := rk.Rekey(ctx, next.Rekey, next.Check()); err != nil {
		return backendError("suppression list: rekey", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return backendError("suppression list: rekey", err)
	}
	return nil
}

// rotatedHashers returns the hasher of every prefix of keys (every key used,
// oldest first): the i-th hashes as the Controller did under keys[:i+1],
// before the rotations after it. The last is the current one.
func rotatedHashers(keys [][]byte) ([]*identity.Hasher, error) {
	out := make([]*identity.Hasher, len(keys))
	for i := range keys {
		h, err := identity.NewRotatedHasher(keys[:i+1]...)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

// hashesOf returns the identifier's hash under every key the Controller has
// used, oldest first: the journal keeps the hashes each request was made
// with, and a lookup of a person's past requests must find those made before
// a rotation too.
func (c *Controller) hashesOf(id identity.ID) []identity.Hash {
	out := make([]identity.Hash, len(c.hashers))
	for i, h := range c.hashers {
		out[i] = h.ID(id)
	}
	return out
}

// lift carries hashes made under the keys of prefix from to the current
// keys, as a rotation carried the suppression list.
func (c *Controller) lift(hashes []identity.Hash, from int) []identity.Hash {
	if hashes == nil || from == len(c.hashers)-1 {
		return hashes
	}
	out := make([]identity.Hash, len(hashes))
	for j, h := range hashes {
		for _, next := range c.hashers[from+1:] {
			h = next.Rekey(h)
		}
		out[j] = h
	}
	return out
}

// liftEntry carries the hashes of a request made before a rotation (by a
// host that ran through it, or recorded just before it) to the current keys,
// before Recover completes it: made under the old keys, its suppression would
// match nothing. Which keys made them is told by its first subject, in clear
// while the request is unfinished. Hashes under keys the Controller does not
// have fail with ErrKeyMismatch.
func (c *Controller) liftEntry(e *journal.Entry) error {
	if len(e.Subjects) == 0 || len(e.SubjectHashes) == 0 {
		return nil
	}
	n, err := e.Subjects[0].Normalize()
	if err != nil {
		return nil // not a request the Controller hashed
	}
	from := -1
	for i, h := range c.hashesOf(n) {
		if h == e.SubjectHashes[0] {
			from = i
		}
	}
	switch from {
	case len(c.hashers) - 1:
		return nil
	case -1:
		return fmt.Errorf("%w: request %s was made under keys this Controller was not given", ErrKeyMismatch, e.ID)
	}
	e.SubjectHashes = c.lift(e.SubjectHashes, from)
	e.Decision.Suppress = c.lift(e.Decision.Suppress, from)
	e.Decision.Unsuppress = c.lift(e.Decision.Unsuppress, from)
	return nil
}

// checkKeyNow fails with ErrKeyMismatch, and stops the Controller's calls,
// when the suppression list holds another key's check value than this
// Controller's: its key was rotated since New.
func (c *Controller) checkKeyNow(ctx context.Context) error {
	kc, ok := c.suppressions.(suppression.KeyChecker)
	if !ok {
		return nil
	}
	recorded, err := kc.KeyCheck(ctx)
	if err != nil {
		return backendError("suppression list: key check", err)
	}
	if !recorded.IsZero() && recorded != c.hasher.Check() {
		c.keyLost.Store(true)
		return fmt.Errorf("%w: the suppression list was keyed with another key since this Controller started (a rotation): restart it with the new keys", ErrKeyMismatch)
	}
	return nil
}

// watchKey checks, on the claims' tick, that the suppression list still
// holds this Controller's key check value: once a rotation replaced it,
// every call fails with ErrKeyMismatch, since the hashes this Controller
// makes would no longer match the list.
func (c *Controller) watchKey(ctx context.Context) {
	if c.keyLost.Load() {
		return
	}
	// A failed read is tried again at the next tick.
	if err := c.checkKeyNow(ctx); errors.Is(err, ErrKeyMismatch) {
		c.log.ErrorContext(ctx, "the suppression list was keyed with another key (a rotation?): every call now fails; restart with the new keys")
	}
}
