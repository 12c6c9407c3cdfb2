package txscope

import (
	"context"
	"errors"
	"sync"
)

// ErrRetry marks an error after which the whole operation may simply be run
// again: a serialization failure or a deadlock the database broke. Adapters wrap
// such errors with it (fmt.Errorf("...: %w: %w", txscope.ErrRetry, err)); the
// Controller retries a collected message, or a right not yet decided, a few
// times before it gives up.
var ErrRetry = errors.New("txscope: transaction conflict, retry")

// Aware is implemented by backends that join scopes. The Controller opens a
// Scope for each operation only when at least one of its backends is Aware.
type Aware interface {
	// JoinsTxScope is a marker; it is never called.
	JoinsTxScope()
}

// Locker is implemented by backends that several processes share, so that two
// Controllers in different processes never work on one person at once. Within a
// Scope the Controller calls LockSubjects after taking its in-process lock and
// before it reads the subject: keys name the identifiers and profile ids of the
// operation. The adapter takes them in the scope's shared transaction (a
// PostgreSQL transaction-level advisory lock, say), so they are held until that
// transaction ends, and reads made with the scope's context afterwards go
// through it. Locking the same key twice in one Scope is harmless; a deadlock
// between processes surfaces as an error and the Controller retries.
type Locker interface {
	LockSubjects(ctx context.Context, keys []string) error
}

// ProfileKey is the key LockSubjects locks a profile by: a backend's own
// maintenance (sqlstore's SealExisting) takes it to keep out of the way of
// the Controller's operations on the profile.
func ProfileKey(pid string) string { return "profile:" + pid }

// IDKey is the key LockSubjects locks an identifier by (its type, a colon,
// its value: identity.ID's String).
func IDKey(id string) string { return "id:" + id }

// Scope is one Controller operation: the transactions begun with a context
// holding it belong together. It is safe for concurrent use.
type Scope struct {
	mu      sync.Mutex
	values  map[any]any
	onClose []func()
	closed  bool
}

type scopeKey struct{}

// NewContext returns a context holding a new, empty Scope, and the Scope.
func NewContext(ctx context.Context) (context.Context, *Scope) {
	s := &Scope{}
	return context.WithValue(ctx, scopeKey{}, s), s
}

// FromContext returns the Scope ctx holds, or nil.
func FromContext(ctx context.Context) *Scope {
	s, _ := ctx.Value(scopeKey{}).(*Scope)
	return s
}

// Load returns the value kept under key, if any. Keys follow the rules of
// context keys: use an unexported type of the adapter's own.
func (s *Scope) Load(key any) (any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.values[key]
	return v, ok
}

// LoadOrStore returns the value kept under key; when there is none it keeps and
// returns the result of create. create runs at most once per key, under the
// Scope's lock, so two participants beginning at once share one value; when it
// fails nothing is kept and its error is returned.
func (s *Scope) LoadOrStore(key any, create func() (any, error)) (v any, loaded bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.values[key]; ok {
		return v, true, nil
	}
	if v, err = create(); err != nil {
		return nil, false, err
	}
	if s.values == nil {
		s.values = map[any]any{}
	}
	s.values[key] = v
	return v, false, nil
}

// Delete forgets the value kept under key, so that a participant begun later in
// the same Scope starts afresh (after the shared transaction ended, say).
func (s *Scope) Delete(key any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.values, key)
}

// OnClose registers f to run when the Scope closes: an adapter rolls back there a
// shared transaction that no participant ended (one opened by LockSubjects for an
// operation that then wrote nothing, say). After Close, f runs at once.
func (s *Scope) OnClose(f func()) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		f()
		return
	}
	s.onClose = append(s.onClose, f)
	s.mu.Unlock()
}

// Close ends the Scope: the functions given to OnClose run, last registered
// first. The Controller closes every Scope it opens once the operation is over;
// closing twice is harmless.
func (s *Scope) Close() {
	s.mu.Lock()
	fs := s.onClose
	s.onClose, s.closed = nil, true
	s.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}
