package privacy

// Requests: their types and statuses, receipts, listing, and deadlines
// (Art. 12(3)). How a request is applied is protocol.go.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
)

// RequestType is the kind of a privacy request. The values mirror Segment's
// regulation types, plus Rectify and Access. It is the journal's type, so the
// journal and the receipts speak one vocabulary.
type RequestType = journal.RequestType

// Request types.
const (
	// SuppressOnly blocks new data and keeps existing data (Art. 21).
	SuppressOnly = journal.SuppressOnly
	// Unsuppress ends a suppression; data sent afterwards is kept.
	Unsuppress = journal.Unsuppress
	// SuppressWithDelete suppresses, deletes everything and forwards the
	// deletion to destinations (Art. 17, 19, 21).
	SuppressWithDelete = journal.SuppressWithDelete
	// SuppressWithDeleteInternal suppresses and deletes internally only.
	SuppressWithDeleteInternal = journal.SuppressWithDeleteInternal
	// DeleteOnly deletes everything and forwards the deletion (Art. 17, 19).
	DeleteOnly = journal.DeleteOnly
	// DeleteInternal deletes internally only.
	DeleteInternal = journal.DeleteInternal
	// Rectify corrects traits here and downstream (Art. 16, 19).
	Rectify = journal.Rectify
	// Access exports everything held about the person (Art. 15, 20).
	Access = journal.Access
	// Retention is the type under which ApplyRetention journals each run of
	// the retention policy; no request is made with it.
	Retention = journal.Retention
)

// Status is the state of a request, overall or at one backend or destination.
// The values mirror Segment's. It is the journal's type.
type Status = journal.Status

// Statuses.
const (
	Initialized    = journal.StatusInitialized
	Running        = journal.StatusRunning
	Finished       = journal.StatusFinished
	PartialSuccess = journal.StatusPartialSuccess
	Failed         = journal.StatusFailed
	Invalid        = journal.StatusInvalid
	NotSupported   = journal.StatusNotSupported
)

// UnknownType is the type an INVALID receipt shows for a request whose type
// was none of the known ones: the text given is not kept, as it may be
// anything (an email typed in the wrong field, say).
const UnknownType RequestType = "UNKNOWN"

// MaxSubjects is the most subjects one request may name, as in Segment.
const MaxSubjects = 5000

// Request asks for a right to be applied to the people known by the subjects.
// Each subject may be any identifier; the request acts on the whole resolved
// profile and every identifier linked to it.
type Request struct {
	Type     RequestType
	Subjects []identity.ID
	// Traits are a rectification's new values: a nil value removes the trait.
	Traits map[string]any

	// inactiveBefore is the condition of a retention run's erasure
	// (journal.Entry.InactiveBefore).
	inactiveBefore time.Time
}

// Outcome is a request's result at one backend or destination: the journal's
// type, as kept there.
type Outcome = journal.Outcome

// Receipt is the proof of a request: what was asked, when it is due, and what
// every backend and destination did. People are referred to by keyed hash only.
type Receipt struct {
	ID       string
	Type     RequestType
	Status   Status
	Reason   string
	Received time.Time
	// Due is one calendar month after Received (Art. 12(3)), or later when
	// extended (then ExtensionReason says why).
	Due, Finished   time.Time
	ExtensionReason string
	// Subjects are the keyed hashes of the identifiers the request named.
	Subjects []identity.Hash
	// ProfileVersion is the profile's version after a rectification: the
	// Profile API's metadata shows it once the update is processed.
	ProfileVersion uint64
	Backends       []Outcome
	Destinations   []Outcome
}

func receiptOf(e *journal.Entry) *Receipt {
	return &Receipt{ID: e.ID, Type: e.Type, Status: e.Status, Reason: e.Reason,
		Received: e.Received, Due: e.Due, Finished: e.Finished, ExtensionReason: e.ExtensionReason,
		Subjects: slices.Clone(e.SubjectHashes), ProfileVersion: e.ProfileVersion,
		Backends: slices.Clone(e.Backends), Destinations: slices.Clone(e.Destinations)}
}

// validateRequest checks the request and fills the entry's subjects.
func (c *Controller) validateRequest(req *Request, e *journal.Entry) error {
	switch {
	case !req.Type.Valid():
		// Not quoted: the text is the caller's, and may be anything.
		return fieldErrorf("Type", "unknown request type: want one of Segment's regulation types or RECTIFY")
	case req.Type == Access:
		return fieldErrorf("Type", "an ACCESS request returns the person's data: make it with Access or Export")
	case len(req.Subjects) == 0:
		return fieldErrorf("Subjects", "no subjects")
	case len(req.Subjects) > MaxSubjects:
		return fieldErrorf("Subjects", "%d subjects, more than %d", len(req.Subjects), MaxSubjects)
	case req.Type == Rectify && len(req.Subjects) != 1:
		return fieldErrorf("Subjects", "a rectification names one person, not %d", len(req.Subjects))
	case req.Type != Rectify && req.Traits != nil:
		return fieldErrorf("Traits", "only a rectification carries traits")
	}
	for i, id := range req.Subjects {
		n, err := id.Normalize()
		if err != nil {
			return fieldError("Subjects["+strconv.Itoa(i)+"]", err)
		}
		e.Subjects = append(e.Subjects, n)
		e.SubjectHashes = append(e.SubjectHashes, c.hasher.ID(n))
	}
	if req.Type == Rectify {
		budget := c.limits.MessageBytes
		traits, err := checkTraits(req.Traits, &budget, &c.limits)
		if err != nil {
			return err
		}
		if len(traits) == 0 {
			return fieldErrorf("Traits", "a rectification needs at least one trait")
		}
		e.Traits = traits
	}
	return nil
}

// maxReasonLength bounds an extension's reason, in bytes: it is kept in the
// append-only audit log.
const maxReasonLength = 1024

// storableText reports whether every backend stores s as it is: valid UTF-8
// without NUL (PostgreSQL refuses both in text). An input that is not is
// answered alike on every backend, before any reaches it.
func storableText(s string) bool { return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 }

// Status returns the receipt of a request. An unknown id fails with ErrNotFound.
func (c *Controller) Status(ctx context.Context, id string) (*Receipt, error) {
	if !storableText(id) {
		return nil, fmt.Errorf("privacy: %w: no request has that id", ErrNotFound) // ids are ASCII
	}
	e, err := c.journal.Get(ctx, id)
	if errors.Is(err, journal.ErrNotFound) {
		return nil, fmt.Errorf("privacy: %w: no request has that id", ErrNotFound)
	}
	if err != nil {
		return nil, backendError("journal", err)
	}
	return receiptOf(e), nil
}

// RequestFilter selects requests for Requests.
type RequestFilter struct {
	Types    []RequestType
	Statuses []Status
	// Limit is the page size (default 50, at most 1000).
	Limit int
	// Cursor continues from the page that returned it as Next.
	Cursor string
}

// RequestPage is one page of receipts, newest first.
type RequestPage struct {
	Receipts []*Receipt
	Next     string
}

// Requests lists receipts, newest first, filtered by type and status.
func (c *Controller) Requests(ctx context.Context, f RequestFilter) (RequestPage, error) {
	page, err := c.journal.List(ctx, journal.Filter{Types: f.Types, Statuses: f.Statuses, Limit: f.Limit, Cursor: f.Cursor})
	if err != nil {
		return RequestPage{}, backendError("journal", err)
	}
	out := RequestPage{Next: page.Next}
	for _, e := range page.Entries {
		out.Receipts = append(out.Receipts, receiptOf(e))
	}
	return out, nil
}

// Extend moves a request's due date by up to two further months in all, with
// the reason recorded (Art. 12(3)). Extending past that is refused. The
// reason (at most 1,024 bytes) is kept in the append-only audit log, after
// the person is erased too: it must not name them.
func (c *Controller) Extend(ctx context.Context, id string, months int, reason string) (*Receipt, error) {
	switch {
	case months < 1 || months > 2:
		return nil, fieldErrorf("months", "%d: extend by one or two months", months)
	case reason == "":
		return nil, fieldErrorf("reason", "an extension needs a reason to tell the person")
	case len(reason) > maxReasonLength:
		return nil, fieldErrorf("reason", "%d bytes, more than %d", len(reason), maxReasonLength)
	case !storableText(reason):
		return nil, fieldErrorf("reason", "not valid UTF-8, or holds a NUL byte")
	case !storableText(id):
		return nil, fmt.Errorf("privacy: %w: no request has that id", ErrNotFound)
	}
	// Read, extend, and write by compare-and-swap: the request's holder may
	// write it meanwhile (an outcome, the end), and then the extension is
	// made again on what it wrote, never over it.
	audited := false
	for attempt := 1; ; attempt++ {
		e, err := c.journal.Get(ctx, id)
		if errors.Is(err, journal.ErrNotFound) {
			return nil, fmt.Errorf("privacy: %w: no request has that id", ErrNotFound)
		}
		if err != nil {
			return nil, backendError("journal", err)
		}
		newDue := e.Due.AddDate(0, months, 0)
		if firstDue := e.Received.AddDate(0, 1, 0); newDue.After(firstDue.AddDate(0, 2, 0)) {
			return nil, fieldErrorf("months", "the due date may move two months past the first at most")
		}
		e.Due, e.ExtensionReason = newDue, reason
		if !audited {
			// Into the audit log before the journal: an extension of a
			// request that has ended has no later change to carry a record
			// it would owe.
			rec := &journal.Entry{ID: e.ID, Type: e.Type, SubjectHashes: e.SubjectHashes,
				AuditOwed: []journal.AuditNote{{At: c.now(), Action: "extended", Status: e.Status, Detail: reason}}}
			if err := c.settle(ctx, rec); err != nil {
				return nil, err
			}
			audited = true
		}
		err = c.journal.Put(ctx, e)
		if errors.Is(err, journal.ErrConflict) && attempt < recordAttempts {
			continue
		}
		if err != nil {
			return nil, backendError("journal", err)
		}
		return receiptOf(e), nil
	}
}

// Overdue lists the unfinished requests whose due date has passed.
func (c *Controller) Overdue(ctx context.Context) ([]*Receipt, error) {
	es, err := c.journal.Unfinished(ctx)
	if err != nil {
		return nil, backendError("journal", err)
	}
	now := c.now()
	var out []*Receipt
	for _, e := range es {
		if e.Due.Before(now) {
			out = append(out, receiptOf(e))
		}
	}
	return out, nil
}

// newRequestID returns a request id that sorts in creation order.
func newRequestID(now time.Time) string { return identity.NewSortableID("req_", now) }

// redact replaces, in an error text bound for a receipt, every clear value the
// request carries (its subjects, the identifiers it forwards, a rectification's
// text values) by a keyed hash. Reasons and outcomes outlive the clear data,
// which Entry.Scrub removes, and a backend's or destination's error may quote
// what it was given ("no user a@b.c"); a receipt must not keep it.
func (c *Controller) redact(e *journal.Entry, text string, extra []identity.ID) string {
	ids := slices.Concat(extra, e.Subjects)
	for _, f := range e.Decision.Forward {
		ids = append(ids, f.IDs...)
	}
	return c.redactText(text, ids, e.Traits)
}

// redactText replaces, in text, each identifier's value with its type and
// keyed hash, and each text value among the traits (nested ones included)
// with the trait's name.
func (c *Controller) redactText(text string, ids []identity.ID, traits map[string]any) string {
	// Every value is replaced in one pass over the text, longest first where
	// values overlap: a label already put in (whose hash may happen to contain
	// a short value) is never replaced into again.
	var pairs [][2]string
	seen := map[string]bool{}
	replace := func(value, label string) {
		if len(value) >= minRedacted && !seen[value] && strings.Contains(text, value) {
			seen[value] = true
			pairs = append(pairs, [2]string{value, label})
		}
	}
	for _, id := range ids {
		n, err := id.Normalize()
		if err != nil {
			n = id // malformed: hash it as given
		}
		label := "[" + n.Type + " " + c.hasher.ID(n).String()[:12] + "]"
		// The "type:value" forms too, whatever the value's length: a value
		// too short to replace alone is still found next to its type.
		replace(id.String(), label)
		replace(n.String(), label)
		replace(id.Value, label)
		replace(n.Value, label)
	}
	for _, k := range slices.Sorted(maps.Keys(traits)) {
		eachString(traits[k], func(s string) { replace(s, "[trait "+k+"]") })
		eachNumber(traits[k], func(s string) {
			if len(s) >= minRedactedNumber {
				replace(s, "[trait "+k+"]")
			}
		})
	}
	if len(pairs) == 0 {
		return text
	}
	slices.SortStableFunc(pairs, func(a, b [2]string) int { return len(b[0]) - len(a[0]) })
	args := make([]string, 0, 2*len(pairs))
	for _, p := range pairs {
		args = append(args, p[0], p[1])
	}
	return strings.NewReplacer(args...).Replace(text)
}

// eachString calls f with every string in a JSON-like value.
func eachString(v any, f func(string)) {
	switch x := v.(type) {
	case string:
		f(x)
	case map[string]any:
		for _, e := range x {
			eachString(e, f)
		}
	case []any:
		for _, e := range x {
			eachString(e, f)
		}
	}
}

// eachNumber calls f with every number in a JSON-like value, written as
// JSON writes it and as fmt's %v does (a phone number or a customer number
// kept as a number).
func eachNumber(v any, f func(string)) {
	switch x := v.(type) {
	case float64: // as JSON writes it, and as %v does (1.5551234567e+10)
		f(strconv.FormatFloat(x, 'f', -1, 64))
		f(strconv.FormatFloat(x, 'g', -1, 64))
	case float32:
		f(strconv.FormatFloat(float64(x), 'f', -1, 32))
		f(strconv.FormatFloat(float64(x), 'g', -1, 32))
	case int:
		f(strconv.Itoa(x))
	case int64:
		f(strconv.FormatInt(x, 10))
	case int32:
		f(strconv.FormatInt(int64(x), 10))
	case uint64:
		f(strconv.FormatUint(x, 10))
	case uint32:
		f(strconv.FormatUint(uint64(x), 10))
	case json.Number:
		f(x.String())
	case map[string]any:
		for _, e := range x {
			eachNumber(e, f)
		}
	case []any:
		for _, e := range x {
			eachNumber(e, f)
		}
	}
}

// minRedacted is the shortest value redact replaces: shorter ones ("1", "us")
// would mangle unrelated words of the text and identify nobody.
const minRedacted = 3

// minRedactedNumber is the shortest number, in digits, redact replaces: a
// phone, a customer number or a postcode, not a count or a status code that
// the text may hold for its own reasons.
const minRedactedNumber = 5

// newerDecided returns the requests of the given kinds received after e and
// already decided, among those naming any of hashes (one person's
// identifiers): requests on one person take effect in the order they were
// received, so e must not undo what they did.
func (c *Controller) newerDecided(ctx context.Context, e *journal.Entry, hashes []identity.Hash, kinds ...RequestType) ([]*journal.Entry, error) {
	var out []*journal.Entry
	seen := map[string]bool{}
	for rest := hashes; len(rest) > 0; {
		n := min(len(rest), maxSubjectsPerList)
		f := journal.Filter{Subjects: rest[:n], Types: kinds, Limit: 1000}
		rest = rest[n:]
		for {
			page, err := c.journal.List(ctx, f)
			if err != nil {
				return nil, backendError("journal", err)
			}
			for _, x := range page.Entries { // newest first
				if !receivedAfter(x, e) {
					break
				}
				if x.Decided && !seen[x.ID] && !keptEveryone(x) {
					seen[x.ID] = true
					out = append(out, x)
				}
			}
			if page.Next == "" || len(page.Entries) == 0 || !receivedAfter(page.Entries[len(page.Entries)-1], e) {
				break
			}
			f.Cursor = page.Next
		}
	}
	return out, nil
}

// keptEveryone reports whether x is a retention run's erasure that found,
// under the person's locks, that they had come back, and erased nobody: it
// supersedes no request on them.
func keptEveryone(x *journal.Entry) bool {
	return !x.InactiveBefore.IsZero() && len(x.Decision.Delete) == 0
}

// maxSubjectsPerList is how many keyed hashes one journal.Filter names at
// most: adapters may bound it (sqlstore at 500).
const maxSubjectsPerList = 500

// receivedAfter reports whether x was received after e, ties broken by id
// (ids sort in creation order).
func receivedAfter(x, e *journal.Entry) bool {
	if !x.Received.Equal(e.Received) {
		return x.Received.After(e.Received)
	}
	return x.ID > e.ID
}
