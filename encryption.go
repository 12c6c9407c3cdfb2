package privacy

// Encryption at rest with a data key per person (package keyring): a profile
// store that can seal what it writes (keyring.Sealer: sqlstore's) is handed
// the Controller's Keys at New, and an erasure destroys the person's data key
// in its own decision, which shreds every copy of their sealed rows
// (backups, replicas, dead tuples, the WAL). The in-memory profile store
// keeps values in clear by default: nothing it holds outlives the process, so
// there is no copy for a key to shred; profile.NewSealedMemStore seals in
// memory with keys of its own, and needs nothing from the Controller.

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/keyring"
	"github.com/gdprkit/privacy/profile"
)

// openKeyring returns the Keys the profile store seals with, or nil when it
// does not seal (it cannot, or WithoutEncryption). keyGiven tells whether
// the key is the caller's (WithKey) rather than a random one of this
// process: data keys wrapped under a random key would be lost at restart.
func openKeyring(ctx context.Context, cfg *config, keyGiven bool) (*keyring.Keys, error) {
	sealer, ok := cfg.profiles.(keyring.Sealer)
	if cfg.noEncryption || !ok {
		if !cfg.noEncryption {
			// A profile store that cannot seal, given a keyring, is most
			// likely a decorator of one that can, which would write in clear.
			if _, mem := cfg.profiles.(*profile.MemStore); !mem && cfg.keyStore != nil {
				return nil, fmt.Errorf("%w: there is a keyring, but the profile store (%T) cannot seal what it stores (it has no SealWith): "+
					"a decorator of a sealing store must forward SealWith and Keyring; or say WithoutEncryption", ErrInvalid, cfg.profiles)
			}
		}
		return nil, refuseSealedData(ctx, cfg)
	}
	keeper := cfg.keeper
	if keeper == nil {
		if !keyGiven {
			return nil, fmt.Errorf("%w: the profile store seals what it stores with data keys, and they are wrapped "+
				"under a key derived from WithKey: without WithKey (or WithKeeper) they would be lost at the next restart", ErrInvalid)
		}
		var err error
		if keeper, err = localKeeper(cfg.key, cfg.previous); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	store := cfg.keyring()
	if store == nil {
		return nil, fmt.Errorf("%w: the profile store seals what it stores, and there is no keyring to keep its data keys: "+
			"use WithBackends with a store that has one (sqlstore.Store), or WithKeyring", ErrInvalid)
	}
	if _, mem := store.(*keyring.MemStore); mem {
		return nil, fmt.Errorf("%w: the profile store seals what it stores, and the keyring is in memory: "+
			"its data keys, and so the data, would be lost with the process; use WithKeyring with a durable keyring", ErrInvalid)
	}
	keys, err := keyring.NewKeys(store, keeper, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := checkKeeper(ctx, keys); err != nil {
		return nil, err
	}
	sealers := []keyring.Sealer{sealer}
	if g, ok := cfg.graph.(keyring.Sealer); ok {
		sealers = append(sealers, g) // the identifiers
	}
	if o, ok := cfg.outbox.(keyring.Sealer); ok {
		sealers = append(sealers, o) // what waits for destinations, when the outbox is a Store of its own
	}
	for _, sealer := range sealers {
		if err := sealWith(ctx, sealer, keys); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// refuseSealedData refuses, to a Controller that does not seal, backends
// whose data was sealed: it would not see their sealed identifiers, and
// would link them again in clear, to a second profile.
func refuseSealedData(ctx context.Context, cfg *config) error {
	for _, b := range []any{cfg.graph, cfg.profiles, cfg.outbox} {
		s, ok := b.(keyring.Sealer)
		if !ok {
			continue
		}
		sealed, err := s.Sealed(ctx)
		if err != nil {
			return backendError("sealing", err)
		}
		if sealed {
			return fmt.Errorf("%w: the %T's data is sealed (encryption at rest), and this Controller would not seal: "+
				"start it with the keys (no WithoutEncryption, and a profile store that seals)", ErrKeyMismatch, b)
		}
	}
	return nil
}

// checkKeeper checks the keys' keeper against their keyring's check.
func checkKeeper(ctx context.Context, keys *keyring.Keys) error {
	if err := keys.CheckKeeper(ctx); err != nil {
		if errors.Is(err, keyring.ErrWrongKeeper) {
			return fmt.Errorf("%w: %w: start every host with the same WithKeeper (or the same WithKey)", ErrKeyMismatch, err)
		}
		return backendError("keyring: keeper check", err)
	}
	return nil
}

// sealWith hands keys to the backend.
func sealWith(ctx context.Context, sealer keyring.Sealer, keys *keyring.Keys) error {
	if err := sealer.SealWith(ctx, keys); err != nil {
		if errors.Is(err, keyring.ErrWrongKeyring) {
			return fmt.Errorf("%w: %w: give the keyring the data was sealed with (WithKeyring)", ErrKeyMismatch, err)
		}
		return backendError("sealing", err)
	}
	return nil
}

// keyring returns the keyring backend: WithKeyring's (or WithBackends'),
// else the profile store's own (sqlstore's is in the same database), else
// nil.
func (cfg *config) keyring() keyring.Store {
	if cfg.keyStore != nil {
		return cfg.keyStore
	}
	if own, ok := cfg.profiles.(interface{ Keyring() keyring.Store }); ok {
		return own.Keyring()
	}
	return nil
}

// localKeeper is the default Keeper: derived from the current key, and from
// the previous ones (newest first) for what was wrapped before a rotation.
func localKeeper(current []byte, previous [][]byte) (keyring.Keeper, error) {
	cur, err := keyring.NewLocalKeeper(current)
	if err != nil {
		return nil, err
	}
	var prev []keyring.Keeper
	for _, k := range slices.Backward(previous) {
		p, err := keyring.NewLocalKeeper(k)
		if err != nil {
			return nil, err
		}
		prev = append(prev, p)
	}
	return keyring.NewRotatingKeeper(cur, prev...)
}

// sealingJournal seals, with the keyring's forwarding key, what each journal
// entry keeps of a person (its subjects, the identifiers its erasure
// forwards, the values its rectification writes) before the entry is
// stored, bound to the request, and opens it as entries are read: a journal
// in the data's database holds no identifier in clear while a request runs.
type sealingJournal struct {
	journal.Journal
	keys *keyring.Keys
}

// journalField is the associated data's field of a request's sealed data.
func journalField(id string) string { return "journal:" + id }

func (j sealingJournal) Put(ctx context.Context, e *journal.Entry) error {
	fk := j.keys.Forwarding()
	c := e.Clone()
	if err := c.SealPersonal(func(b []byte) []byte { return fk.Seal(journalField(c.ID), b) }); err != nil {
		return err
	}
	err := j.Journal.Put(ctx, c)
	e.Version = c.Version
	return err
}

// open opens the sealed part of an entry read.
func (j sealingJournal) open(e *journal.Entry) error {
	fk := j.keys.Forwarding()
	return e.OpenPersonal(func(b []byte) ([]byte, error) { return fk.Open(journalField(e.ID), b) })
}

func (j sealingJournal) Get(ctx context.Context, id string) (*journal.Entry, error) {
	e, err := j.Journal.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return e, j.open(e)
}

func (j sealingJournal) List(ctx context.Context, f journal.Filter) (journal.Page, error) {
	p, err := j.Journal.List(ctx, f)
	if err != nil {
		return p, err
	}
	for _, e := range p.Entries {
		if err := j.open(e); err != nil {
			return journal.Page{}, err
		}
	}
	return p, nil
}

func (j sealingJournal) Unfinished(ctx context.Context) ([]*journal.Entry, error) {
	es, err := j.Journal.Unfinished(ctx)
	if err != nil {
		return nil, err
	}
	for _, e := range es {
		if err := j.open(e); err != nil {
			return nil, err
		}
	}
	return es, nil
}
