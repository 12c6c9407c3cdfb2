// Package keyring holds the keys that encrypt a person's data at rest: a data
// key per profile (AES-256-GCM), wrapped by a key encryption key that a
// Keeper holds, so that destroying one person's data key makes every copy of
// their encrypted rows unreadable (backups, replicas, dead tuples, the WAL):
// crypto-shredding.
//
// # Keeper
//
// A Keeper encrypts and decrypts byte slices with a context: the method set
// of Go CDK's secrets.Keeper, so that AWS KMS, GCP KMS, Azure Key Vault or
// HashiCorp Vault plug in through Go CDK without this module depending on it.
// LocalKeeper is the default: its key is derived from a secret (the
// Controller's WithKey). RotatingKeeper encrypts with one keeper and
// decrypts with it or those before it, across a rotation.
//
// # Store
//
// A Store is the keyring backend: each profile's wrapped data key, written in
// transactions like every backend's (Begin, then Add, Rewrap or Delete, then
// Commit). MemStore is the in-memory Store; package sqlstore has the
// PostgreSQL and SQLite one, which may sit in another database than the data;
// package storetest checks any Store.
//
// # Keys
//
// Keys is what encrypts and decrypts: it gets a profile's data key from the
// Store (making it at first use), unwraps it through the Keeper and keeps it
// in a bounded cache, so that a busy person is not unwrapped on every
// message. The cache saves the Keeper's calls, never the Store's read: a key
// is used only while the Store holds it. Forget empties the cache of a
// person being erased. CheckKeeper refuses a Keeper other than the one the
// Store's keys are wrapped by, against a check entry (KeeperCheckProfile).
//
// Keys also hold, from the keeper check, the keyring's index key (Index:
// identifiers looked up by keyed hash) and a forwarding key derived from it
// (Forwarding: what must stay readable once a person's key is destroyed,
// such as the deletions an erasure forwards, or belongs to nobody's key,
// such as an outbox's queue or a journal entry's personal data).
//
// A backend that seals what it stores implements Sealer; the Controller
// hands it its Keys (sqlstore's profile store, graph and outbox do). A DataKey
// seals a value with associated data naming its profile and field, so a
// ciphertext moved to another row or field fails to open. Rotate re-wraps
// every data key under a new Keeper without touching the data.
//
// # Errors
//
// ErrNotFound (no data key: never made, or shredded), ErrInvalid, ErrTxDone,
// ErrUndecryptable and ErrWrongKeeper, matchable with errors.Is.
package keyring
