package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gdprkit/privacy/txscope"
)

// txn is one database transaction: the adapter's own, or a savepoint in the
// caller's.
type txn interface {
	Executor
	commit(ctx context.Context) error
	rollback(ctx context.Context) error
}

// beginTxn starts a database transaction for a backend or a shared one.
func (s *Store) beginTxn(ctx context.Context) (txn, error) {
	if s.ex != nil {
		return beginSavepoint(ctx, s.ex)
	}
	// The connection is taken with ctx, so a full pool does not block forever;
	// the transaction outlives ctx's cancellation (database/sql would roll it
	// back behind the backend's back): each call checks its own context.
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	if s.d == SQLite {
		return beginImmediate(ctx, conn)
	}
	tx, err := conn.BeginTx(context.WithoutCancel(ctx), nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &sqlTxn{Tx: tx, conn: conn}, nil
}

// sqlTxn is a PostgreSQL transaction on a connection of its own.
type sqlTxn struct {
	*sql.Tx
	conn *sql.Conn
	// copyAsked and copyOK: whether the connection was asked if it can
	// COPY (canCopy), and its answer.
	copyAsked, copyOK bool
}

func (t *sqlTxn) commit(ctx context.Context) error {
	defer t.conn.Close()
	return t.Tx.Commit()
}

func (t *sqlTxn) rollback(ctx context.Context) error {
	defer t.conn.Close()
	return t.Tx.Rollback()
}

// connTxn is a SQLite transaction begun with BEGIN IMMEDIATE on a connection
// of its own. database/sql's BeginTx would begin a deferred transaction, whose
// first write fails at once with SQLITE_BUSY when another connection wrote
// since its first read; an immediate one takes the write lock up front, and
// waits for it under the busy timeout.
type connTxn struct {
	*sql.Conn
}

// sqliteBeginAttempts bounds the retries of BEGIN IMMEDIATE on SQLITE_BUSY
// beyond the driver's own busy timeout.
const sqliteBeginAttempts = 50

func beginImmediate(ctx context.Context, conn *sql.Conn) (txn, error) {
	var err error
	for attempt := 0; attempt < sqliteBeginAttempts; attempt++ {
		if _, err = conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err == nil {
			return &connTxn{conn}, nil
		}
		if !IsRetryable(err) || ctx.Err() != nil {
			break
		}
		if serr := sleep(ctx, backoff(attempt)); serr != nil {
			err = serr
			break
		}
	}
	// A BEGIN cut short by its context may have begun the transaction all
	// the same (modernc.org/sqlite answers the context's error): handed back
	// to the pool, the connection would hold the write lock while it sits
	// idle, and every other writer would wait out its busy timeout. It is
	// discarded, which rolls back whatever it holds.
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	conn.Close()
	return nil, err
}

func (t *connTxn) commit(ctx context.Context) error {
	_, err := t.ExecContext(context.WithoutCancel(ctx), "COMMIT")
	if err != nil {
		t.rollback(ctx) // a failed COMMIT can leave the transaction open
		return err
	}
	return t.Close()
}

func (t *connTxn) rollback(ctx context.Context) error {
	_, err := t.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
	if err != nil && !errors.Is(err, sql.ErrConnDone) {
		// The connection may still be inside the transaction: discard it
		// rather than hand it back to the pool.
		_ = t.Raw(func(any) error { return driver.ErrBadConn })
	}
	t.Close()
	return err
}

// savepointTxn is a savepoint in the caller's transaction.
type savepointTxn struct {
	Executor
	name string
}

var savepointSeq atomic.Uint64

func beginSavepoint(ctx context.Context, ex Executor) (txn, error) {
	name := fmt.Sprintf("gdprkit_sp_%d", savepointSeq.Add(1))
	if _, err := ex.ExecContext(ctx, "SAVEPOINT "+name); err != nil {
		return nil, err
	}
	return &savepointTxn{ex, name}, nil
}

func (t *savepointTxn) commit(ctx context.Context) error {
	_, err := t.ExecContext(context.WithoutCancel(ctx), "RELEASE SAVEPOINT "+t.name)
	return err
}

func (t *savepointTxn) rollback(ctx context.Context) error {
	ctx = context.WithoutCancel(ctx)
	if _, err := t.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+t.name); err != nil {
		return err
	}
	_, err := t.ExecContext(ctx, "RELEASE SAVEPOINT "+t.name)
	return err
}

// sharedTx is a database transaction and the backend transactions that use
// it: one of its own for a backend begun without a Scope, or the one that
// every backend of a Store begun with one Scope joins.
type sharedTx struct {
	s     *Store
	scope *txscope.Scope // nil when not shared

	mu      sync.Mutex // held while a statement runs, so one runs at a time
	t       txn
	joined  int  // backend transactions that joined and have not ended
	ended   bool // committed or rolled back
	aborted bool // rolled back, or the commit failed
	cause   error
	locked  map[int64]bool // subject locks taken (PostgreSQL)
}

// errEnded: a statement on a shared transaction that ended. Backends turn it
// into their package's ErrTxDone, or ErrAborted.
var errEnded = errors.New("sqlstore: the shared transaction has ended")

// run runs f on the transaction.
func (st *sharedTx) run(f func(Executor) error) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ended {
		return st.endedErr()
	}
	err := f(st.t)
	if err != nil && st.s.d == SQLite && sqliteMayHaveRolledBack(err) {
		// SQLite may have rolled the whole transaction back on its own,
		// leaving the connection in autocommit mode: the writes before
		// are gone, and each later one would commit at once. The
		// transaction ends here, as on PostgreSQL, where a failed
		// statement fails every later one; the rollback's failure
		// discards the connection.
		st.end(true, fmt.Errorf("a statement failed in a way that may have rolled it back: %w", err))
		st.t.rollback(context.Background())
	}
	return err
}

// sqliteMayHaveRolledBack reports whether a failed statement may have
// rolled its SQLite transaction back: one interrupted (its context ended:
// the driver interrupts it), or one of the errors after which SQLite says
// it may (SQLITE_FULL, SQLITE_IOERR, SQLITE_BUSY, SQLITE_NOMEM). A
// constraint's failure undoes only its statement.
func sqliteMayHaveRolledBack(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || IsRetryable(err) {
		return true
	}
	var lite interface{ Code() int }
	if errors.As(err, &lite) {
		switch lite.Code() & 0xff {
		case 7, 9, 10, 13: // SQLITE_NOMEM, SQLITE_INTERRUPT, SQLITE_IOERR, SQLITE_FULL
			return true
		}
	}
	return false
}

func (st *sharedTx) endedErr() error {
	if st.aborted {
		if st.cause != nil {
			return fmt.Errorf("%w: %v", ErrAborted, st.cause)
		}
		return ErrAborted
	}
	return errEnded
}

// join adds a backend transaction; false when the transaction has ended.
func (st *sharedTx) join() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ended {
		return false
	}
	st.joined++
	return true
}

// end marks the transaction ended and forgets it in its Scope, so that a
// backend begun later in the Scope starts a new one. Called with mu held.
func (st *sharedTx) end(aborted bool, cause error) {
	st.ended, st.aborted, st.cause = true, aborted, cause
	if st.scope != nil {
		st.scope.Delete(st.s.key)
	}
}

// commitOne ends one backend transaction: the last one commits.
func (st *sharedTx) commitOne(ctx context.Context) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ended {
		return st.endedErr()
	}
	if err := ctx.Err(); err != nil {
		// As database/sql does: a cancelled commit rolls back, here for every
		// backend of the transaction, since their writes are one.
		st.end(true, fmt.Errorf("a commit's context was cancelled: %w", err))
		st.t.rollback(ctx)
		return err
	}
	st.joined--
	if st.joined > 0 {
		return nil
	}
	err := st.t.commit(ctx)
	if err != nil {
		st.end(true, fmt.Errorf("the commit failed: %w", err))
		return err
	}
	st.end(false, nil)
	return nil
}

// rollbackOne ends one backend transaction by rolling back all of them.
func (st *sharedTx) rollbackOne(ctx context.Context) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ended {
		return
	}
	st.end(true, errors.New("a backend rolled it back"))
	st.t.rollback(ctx)
}

// abandon rolls back a shared transaction that no backend ended, when its
// Scope closes.
func (st *sharedTx) abandon() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ended {
		return
	}
	st.end(true, errors.New("its scope closed before every backend ended"))
	st.t.rollback(context.Background())
}

// shared returns the Store's shared transaction in scope, beginning it when
// there is none.
func (s *Store) shared(ctx context.Context, scope *txscope.Scope) (*sharedTx, error) {
	v, loaded, err := scope.LoadOrStore(s.key, func() (any, error) {
		t, err := s.beginTxn(ctx)
		if err != nil {
			return nil, err
		}
		return &sharedTx{s: s, scope: scope, t: t}, nil
	})
	if err != nil {
		return nil, err
	}
	st := v.(*sharedTx)
	if !loaded {
		scope.OnClose(st.abandon) // outside LoadOrStore, which holds the Scope's lock
	}
	return st, nil
}

// begin starts a backend transaction: in the Scope's shared transaction when
// ctx holds a Scope, in one of its own otherwise.
func (s *Store) begin(ctx context.Context) (*sharedTx, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	scope := txscope.FromContext(ctx)
	if scope == nil {
		t, err := s.beginTxn(ctx)
		if err != nil {
			return nil, retryable(fmt.Errorf("sqlstore: begin: %w", err))
		}
		return &sharedTx{s: s, t: t, joined: 1}, nil
	}
	// A transaction found in the Scope may end before this one joins it; it
	// is then forgotten and the next try begins a new one. Twice in a row
	// means the Scope was closed.
	for range 2 {
		st, err := s.shared(ctx, scope)
		if err != nil {
			return nil, retryable(fmt.Errorf("sqlstore: begin: %w", err))
		}
		if st.join() {
			return st, nil
		}
	}
	return nil, errors.New("sqlstore: begin: the context's txscope.Scope is closed")
}

// read runs f for a read outside any backend transaction: in the Scope's
// shared transaction when ctx holds one of this Store's (so that reads after
// LockSubjects see the locked state), on the pool (or the caller's
// transaction) otherwise.
func (s *Store) read(ctx context.Context, f func(Executor) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if scope := txscope.FromContext(ctx); scope != nil {
		if v, ok := scope.Load(s.key); ok {
			err := v.(*sharedTx).run(f)
			if !errors.Is(err, errEnded) && !errors.Is(err, ErrAborted) {
				return retryable(err)
			}
			// It ended meanwhile: read committed state instead.
		}
	}
	return retryable(f(s.direct()))
}

// readKey runs read, a read of a backend's rows for one key, in the backend
// transaction p, or through the Store's read when p is nil, and returns its
// answer: the reading methods of the backends and of their transactions share
// it.
func readKey[K, T any](ctx context.Context, s *Store, p *part, key K, read func(context.Context, *Store, Executor, K) (T, error)) (T, error) {
	var out T
	f := func(ex Executor) (err error) {
		out, err = read(ctx, s, ex, key)
		return err
	}
	var err error
	if p == nil {
		err = s.read(ctx, f)
	} else {
		err = p.run(ctx, f)
	}
	return out, err
}

// readRows runs query (a template, through s.sql) with args through the
// Store's read, and reads its rows with scan, which closes them: the reading
// methods that return the rows of one query (audit records, profile ids)
// share it.
func readRows[T any](ctx context.Context, s *Store, query string, args []any, scan func(*sql.Rows) (T, error)) (T, error) {
	var out T
	err := s.read(ctx, func(ex Executor) error {
		rows, err := ex.QueryContext(ctx, s.sql(query), args...)
		if err != nil {
			return err
		}
		out, err = scan(rows)
		return err
	})
	return out, err
}

// LockSubjects implements txscope.Locker: within the Scope that ctx holds, it
// takes a lock on each key in the Store's shared transaction (beginning it
// when no backend has yet), held until that transaction ends, so that
// Controllers in several processes never work on one subject at once. Reads
// made with ctx afterwards go through the transaction.
//
// PostgreSQL: a transaction-level advisory lock per key
// (pg_advisory_xact_lock), taken in ascending order of the keys' 64-bit
// hashes, so two transactions locking overlapping keys cannot deadlock on
// them; the hash covers the table prefix, so Stores with other prefixes or
// schemas do not contend. Locking a key again in one Scope is a no-op. The
// locks not yet held are taken in one statement (per chunk of 500 keys).
//
// SQLite: the shared transaction began with BEGIN IMMEDIATE, which holds the
// database's single write lock until it ends; that serialises every writer, so
// no per-key lock is needed.
//
// Without a Scope in ctx it fails with ErrNoScope.
func (s *Store) LockSubjects(ctx context.Context, keys []string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	scope := txscope.FromContext(ctx)
	if scope == nil {
		return ErrNoScope
	}
	var st *sharedTx
	for range 2 {
		var err error
		if st, err = s.shared(ctx, scope); err != nil {
			return retryable(fmt.Errorf("sqlstore: locking subjects: %w", err))
		}
		st.mu.Lock()
		if !st.ended {
			break // still holding st.mu
		}
		st.mu.Unlock()
		st = nil
	}
	if st == nil {
		return errors.New("sqlstore: locking subjects: the context's txscope.Scope is closed")
	}
	defer st.mu.Unlock()
	if s.d != Postgres {
		return nil
	}
	hashes := make([]int64, 0, len(keys))
	for _, k := range keys {
		if h := s.lockKey(k); !st.locked[h] {
			hashes = append(hashes, h)
		}
	}
	slices.Sort(hashes)
	hashes = slices.Compact(hashes)
	for rest := hashes; len(rest) > 0; {
		n := min(len(rest), chunk)
		if err := s.advisoryLocks(ctx, st.t, rest[:n]); err != nil {
			// PostgreSQL aborted the transaction: end it, so that a retry in
			// the same Scope (after a deadlock, say) begins a new one.
			st.end(true, fmt.Errorf("locking subjects failed: %w", err))
			st.t.rollback(ctx)
			return retryable(fmt.Errorf("sqlstore: locking subjects: %w", err))
		}
		if st.locked == nil {
			st.locked = map[int64]bool{}
		}
		for _, h := range rest[:n] {
			st.locked[h] = true
		}
		rest = rest[n:]
	}
	return nil
}

// advisoryLocks takes the transaction-level advisory locks of hashes, sorted
// ascending, in one statement. PostgreSQL (9.6 and newer) evaluates a
// volatile function of the select list after ORDER BY, so the locks are taken
// in ascending order. The list is padded to a few lengths by repeating the
// last hash (locking a key twice in a transaction is harmless), so that a
// driver caching statements by their text prepares a few shapes.
func (s *Store) advisoryLocks(ctx context.Context, ex Executor, hashes []int64) error {
	if len(hashes) == 1 {
		_, err := ex.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", hashes[0])
		return err
	}
	size := listSize(len(hashes), chunk)
	q := s.newListStmt(`SELECT pg_advisory_xact_lock(v.k) FROM (VALUES `, size)
	q.tuples(size, 1, "{bigint}")
	q.sql(`) AS v(k) ORDER BY v.k`)
	for i := range size {
		q.args = append(q.args, hashes[min(i, len(hashes)-1)])
	}
	_, err := ex.ExecContext(ctx, q.String(), q.args...)
	return err
}

// UnlockSubjects releases the locks LockSubjects took in the Scope that ctx
// holds, by rolling back the Store's shared transaction there, which must have
// no backend transaction in it yet (it fails otherwise, and changes nothing).
// A caller that lets go of its own locks to start over calls it first: locks
// kept in the database while the caller waits for its in-process ones could
// otherwise deadlock with another goroutine holding those and waiting for
// these, a cycle the database cannot see. Without a shared transaction in the
// Scope, it does nothing.
func (s *Store) UnlockSubjects(ctx context.Context) error {
	scope := txscope.FromContext(ctx)
	if scope == nil {
		return nil
	}
	v, ok := scope.Load(s.key)
	if !ok {
		return nil
	}
	st := v.(*sharedTx)
	st.mu.Lock()
	defer st.mu.Unlock()
	switch {
	case st.ended:
		return nil
	case st.joined > 0:
		return fmt.Errorf("sqlstore: unlocking subjects: %d backend transactions use the shared transaction", st.joined)
	}
	st.end(true, errors.New("its subjects were unlocked"))
	return st.t.rollback(ctx)
}

// lockKey hashes a subject key, within the Store's tables, to an advisory
// lock key: the first 8 bytes of SHA-256.
func (s *Store) lockKey(key string) int64 {
	h := sha256.New()
	h.Write([]byte("gdprkit subject\x00"))
	h.Write([]byte(s.qual))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return int64(binary.BigEndian.Uint64(h.Sum(nil)))
}

// part is the transaction state every backend transaction has.
type part struct {
	st   *sharedTx
	done bool
	// errDone and errInvalid are the backend package's ErrTxDone and
	// ErrInvalid.
	errDone, errInvalid error
}

// beginTx is the Begin of every backend: it begins a part of s's shared
// transaction (begin) whose errors are the backend package's errDone and
// errInvalid, and returns the backend's transaction newTx makes of it (nil,
// not a typed nil, on an error).
func beginTx[Tx any](ctx context.Context, s *Store, errDone, errInvalid error, newTx func(part) Tx) (Tx, error) {
	st, err := s.begin(ctx)
	if err != nil {
		var none Tx
		return none, err
	}
	return newTx(part{st: st, errDone: errDone, errInvalid: errInvalid}), nil
}

// check reports whether the transaction is usable: not ended, and ctx not
// done. Methods that validate their input check first, as the in-memory
// backends do, so a finished transaction always answers ErrTxDone.
func (p *part) check(ctx context.Context) error {
	if p.done {
		return p.errDone
	}
	return ctx.Err()
}

// run runs f in the transaction, after checking it is usable.
func (p *part) run(ctx context.Context, f func(Executor) error) error {
	if err := p.check(ctx); err != nil {
		return err
	}
	err := p.st.run(f)
	if errors.Is(err, errEnded) {
		return p.errDone
	}
	if badText(err) && p.errInvalid != nil {
		return fmt.Errorf("%w: %w", p.errInvalid, err)
	}
	return retryable(err)
}

// Commit and Rollback are the Commit and Rollback of every backend
// transaction, which embeds part.
func (p *part) Commit(ctx context.Context) error {
	if p.done {
		return p.errDone
	}
	p.done = true
	err := p.st.commitOne(ctx)
	if errors.Is(err, errEnded) {
		return p.errDone
	}
	return retryable(err)
}

func (p *part) Rollback(ctx context.Context) error {
	if p.done {
		return nil
	}
	p.done = true
	p.st.rollbackOne(ctx)
	return nil
}

// backoff is the wait before retry attempt+1: 1ms doubling, at most 100ms.
func backoff(attempt int) time.Duration {
	return min(time.Millisecond<<min(attempt, 7), 100*time.Millisecond)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
