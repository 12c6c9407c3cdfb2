package destination

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// Errors of this package, matchable with errors.Is.
var (
	// ErrNotSupported: the destination cannot delete a person. A deletion request
	// reports NOT_SUPPORTED for it instead of failing.
	ErrNotSupported = errors.New("destination: deletion not supported")
	// ErrInvalid: a destination was configured wrongly.
	ErrInvalid = errors.New("destination: invalid")
	// ErrRejected: the destination refuses the call for good (a request it
	// cannot accept, whatever the retries): the outbox gives up on its items
	// at once instead of retrying them.
	ErrRejected = errors.New("destination: rejected for good")
)

// RejectedError is what Send returns when some of the messages can never be
// delivered (the destination cannot encode them, or refuses them for good)
// and it delivered the others: the outbox gives up on the rejected ones at
// once and counts the others delivered, so that one poison message does not
// hold back, or fail, the rest of its batch.
type RejectedError struct {
	// Rejected maps the index in the batch of each message refused to why.
	// Only a KeptError's text is kept in the outbox (see KeptError).
	Rejected map[int]error
	// Unsent lists the indexes of messages not delivered for a reason that
	// may pass (Err: the destination went down halfway, say): the outbox
	// tries them again. The messages neither rejected nor unsent were
	// delivered.
	Unsent []int
	Err    error
}

// Error implements error.
func (e *RejectedError) Error() string {
	idx := make([]int, 0, len(e.Rejected))
	for i := range e.Rejected {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	var b strings.Builder
	fmt.Fprintf(&b, "destination: %d message(s) rejected for good:", len(idx))
	for _, i := range idx {
		fmt.Fprintf(&b, " [%d] %v;", i, e.Rejected[i])
	}
	if len(e.Unsent) > 0 {
		fmt.Fprintf(&b, " %d not sent: %v", len(e.Unsent), e.Err)
	}
	return strings.TrimSuffix(b.String(), ";")
}

// Is makes a RejectedError that rejects a message match ErrRejected.
func (e *RejectedError) Is(target error) bool { return target == ErrRejected && len(e.Rejected) > 0 }

// Unwrap returns Err.
func (e *RejectedError) Unwrap() error { return e.Err }

// KeptError is an error whose text a destination vouches names nobody (a
// status, a code of its API, the destination's own words): the outbox keeps
// that text, in dead letters and receipts. Of any other error a destination
// returns only the kind is kept (a timeout, a rejection, its Go type), since
// its text may quote what the destination was sent, such as a person's
// email address.
type KeptError struct {
	// Text is what is kept; it must not quote what the destination was sent.
	Text string
	// Err, when set, is what the error matches (ErrRejected, say).
	Err error
}

// Kept returns a KeptError with the text, matching err when it is not nil.
func Kept(err error, format string, args ...any) *KeptError {
	return &KeptError{Text: fmt.Sprintf(format, args...), Err: err}
}

// Error implements error.
func (e *KeptError) Error() string { return e.Text }

// Unwrap returns Err.
func (e *KeptError) Unwrap() error { return e.Err }

// Destination is a downstream tool that receives profile updates: an analytics
// tool, a CRM, an ad platform. Destinations are not transaction participants:
// they are told after a change commits, at least once, so they must treat a
// repeated MessageID (or Deletion.RequestID) as the same message.
type Destination interface {
	// Name identifies the destination in receipts and logs; unique per Controller.
	Name() string
	// Send delivers messages, in order. A *RejectedError says which of them
	// can never be delivered and that the others were; any other error means
	// none of them may be assumed delivered: the batch is retried whole.
	Send(ctx context.Context, msgs []Message) error
	// Delete deletes the person known by the identifiers, or returns an error
	// matching ErrNotSupported when the destination cannot.
	Delete(ctx context.Context, d Deletion) error
}

// Consent is implemented by destinations that fall under consent categories
// (Segment's Consent Management: "Advertising", "Analytics", ...): a
// message that carries the person's consent preferences
// (context.consent.categoryPreferences) goes to such a destination only if
// every one of its categories is true there; a message without them goes
// as any other. Deletions go whatever the consent.
type Consent interface {
	ConsentCategories() []string
}

// Message types, as Segment's spec names them.
const (
	TypeIdentify = "identify"
	TypeTrack    = "track"
	TypePage     = "page"
	TypeScreen   = "screen"
	TypeGroup    = "group"
	TypeAlias    = "alias"
)

// Names of the audience events, as Segment sends them.
const (
	AudienceEntered = "Audience Entered"
	AudienceExited  = "Audience Exited"
)

// Message is one update for a destination, in Segment's spec: an identify with
// traits or a track with an event and properties.
type Message struct {
	// MessageID is unique per message; destinations de-duplicate on it.
	MessageID string
	Type      string // TypeIdentify, TypeTrack, TypePage, ...
	Event     string // track only
	// Name is a page's or a screen's name; Category a page's category.
	Name, Category string
	// GroupID is a group message's group; its Traits are the group's.
	GroupID string
	// PreviousID is an alias message's earlier id (UserID is among IDs).
	PreviousID string
	// ProfileID is the person's canonical profile id.
	ProfileID identity.ProfileID
	// IDs are the identifiers the message is about.
	IDs        []identity.ID
	Traits     map[string]any
	Properties map[string]any
	// Context is the message's context (ip, userAgent, device, ...), as
	// sent: personal data, which the outbox seals as it does the rest.
	Context   map[string]any
	Timestamp time.Time
	// Source names the source that sent a collected message, and
	// ReceivedAt is when the library collected it; both are empty on the
	// library's own messages (audience changes, corrections). Retention
	// counts from ReceivedAt: a queued or dead message of an event it
	// deleted is dropped with the event (outbox.Expired). The webhook does
	// not send them.
	Source     string    `json:",omitempty"`
	ReceivedAt time.Time `json:",omitzero"`
}

// Clone returns a deep copy of m.
func (m Message) Clone() Message {
	m.IDs = slices.Clone(m.IDs)
	m.Traits = cloneValues(m.Traits)
	m.Properties = cloneValues(m.Properties)
	m.Context = cloneValues(m.Context)
	return m
}

func cloneValues(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = profile.CloneValue(v)
	}
	return c
}

// Deletion asks a destination to delete a person.
type Deletion struct {
	// RequestID is the privacy request's id; destinations de-duplicate on it.
	RequestID string
	ProfileID identity.ProfileID
	// IDs are every identifier the person was known by.
	IDs []identity.ID
}

// Clone returns a copy of d that shares no identifiers with it.
func (d Deletion) Clone() Deletion {
	d.IDs = slices.Clone(d.IDs)
	return d
}

// Recorder is an in-memory Destination for tests and examples: it records what it
// receives and can be told to fail.
type Recorder struct {
	name string

	mu           sync.Mutex
	msgs         []Message
	dels         []Deletion
	failSends    int   // fail this many Send calls, then succeed
	failDeletes  int   // fail this many Delete calls, then succeed
	err          error // the error failures return
	noDelete     bool
	sendCalls    int
	deleteCalls  int
	seenMessages map[string]bool
	seenDeletes  map[string]bool
}

var _ Destination = (*Recorder)(nil)

// NewRecorder returns a Recorder with the given name.
func NewRecorder(name string) *Recorder {
	return &Recorder{name: name, err: Kept(nil, "recorder %s: injected failure", name),
		seenMessages: map[string]bool{}, seenDeletes: map[string]bool{}}
}

// Name implements Destination.
func (r *Recorder) Name() string { return r.name }

// FailSends makes the next n Send calls fail (n < 0: every call).
func (r *Recorder) FailSends(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failSends = n
}

// FailDeletes makes the next n Delete calls fail (n < 0: every call).
func (r *Recorder) FailDeletes(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failDeletes = n
}

// RefuseDeletes makes Delete report ErrNotSupported.
func (r *Recorder) RefuseDeletes() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.noDelete = true
}

// Send implements Destination. A repeated MessageID is recorded once, as a real
// destination that de-duplicates would.
func (r *Recorder) Send(ctx context.Context, msgs []Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sendCalls++
	if r.failSends != 0 {
		r.failSends--
		return r.err
	}
	for _, m := range msgs {
		if r.seenMessages[m.MessageID] {
			continue
		}
		r.seenMessages[m.MessageID] = true
		r.msgs = append(r.msgs, m.Clone())
	}
	return nil
}

// Delete implements Destination. A repeated RequestID is recorded once.
func (r *Recorder) Delete(ctx context.Context, d Deletion) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deleteCalls++
	if r.noDelete {
		return ErrNotSupported
	}
	if r.failDeletes != 0 {
		r.failDeletes--
		return r.err
	}
	if !r.seenDeletes[d.RequestID] {
		r.seenDeletes[d.RequestID] = true
		r.dels = append(r.dels, d.Clone())
	}
	return nil
}

// Messages returns copies of the messages received, in order, each once.
func (r *Recorder) Messages() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return cloneAll(r.msgs, Message.Clone)
}

// Deletions returns copies of the deletions received, in order, each once.
func (r *Recorder) Deletions() []Deletion {
	r.mu.Lock()
	defer r.mu.Unlock()
	return cloneAll(r.dels, Deletion.Clone)
}

// cloneAll returns deep copies of the elements of s in a new slice, empty but
// not nil when s is, so that what the Recorder returns shares nothing with
// what it keeps.
func cloneAll[T any](s []T, clone func(T) T) []T {
	out := make([]T, len(s))
	for i, v := range s {
		out[i] = clone(v)
	}
	return out
}

// Calls returns how many times Send and Delete were called, failures included.
func (r *Recorder) Calls() (sends, deletes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sendCalls, r.deleteCalls
}

// Reset forgets everything received.
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs, r.dels = nil, nil
	clear(r.seenMessages)
	clear(r.seenDeletes)
	r.sendCalls, r.deleteCalls = 0, 0
}
