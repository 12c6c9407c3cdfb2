package privacy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/txscope"
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

// Erase deletes the person known by id everywhere and forwards the deletion to
// every destination (DELETE_ONLY).
func (c *Controller) Erase(ctx context.Context, id identity.ID) (*Receipt, error) {
	return c.Apply(ctx, Request{Type: DeleteOnly, Subjects: []identity.ID{id}})
}

// Suppress stops collection for the person known by id, on every identifier
// linked to them, and keeps them out of audiences (SUPPRESS_ONLY).
func (c *Controller) Suppress(ctx context.Context, id identity.ID) (*Receipt, error) {
	return c.Apply(ctx, Request{Type: SuppressOnly, Subjects: []identity.ID{id}})
}

// Unsuppress ends the suppression of the person known by id (UNSUPPRESS).
func (c *Controller) Unsuppress(ctx context.Context, id identity.ID) (*Receipt, error) {
	return c.Apply(ctx, Request{Type: Unsuppress, Subjects: []identity.ID{id}})
}

// Rectify sets traits (a nil value removes one) on the person known by id, with
// source "rectification", and sends the corrected traits to destinations. The
// receipt's ProfileVersion appears in the profile metadata once processed.
func (c *Controller) Rectify(ctx context.Context, id identity.ID, traits map[string]any) (*Receipt, error) {
	return c.Apply(ctx, Request{Type: Rectify, Subjects: []identity.ID{id}, Traits: traits})
}

// Apply applies a request atomically across every backend and returns its
// receipt. Bad input (an unknown type, no subjects, more than MaxSubjects, a
// malformed identifier, more than MaxTraits traits or a value that is not JSON)
// gets an INVALID receipt and an error matching ErrInvalid, and changes nothing.
//
// The protocol: the request is journaled first; its subjects are locked so
// collection cannot interleave; every backend stages its part in a transaction;
// the commit decision is journaled; every backend commits; then destinations are
// told through the outbox. A failure before the decision rolls everything back
// (FAILED); after it, the request always completes, if need be by Recover.
func (c *Controller) Apply(ctx context.Context, req Request) (*Receipt, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	now := c.now()
	e := &journal.Entry{ID: newRequestID(now), Type: req.Type, Status: Initialized, Received: now, Due: now.AddDate(0, 1, 0)}
	if err := c.validateRequest(&req, e); err != nil {
		e.Status, e.Reason, e.Finished = Invalid, c.redact(e, err.Error(), req.Subjects), now
		e.Subjects = nil
		if perr := c.journal.Put(ctx, e); perr != nil {
			return nil, backendError("journal", perr)
		}
		c.audit(ctx, e, "invalid")
		return receiptOf(e), err
	}
	e.Status = Running
	// In flight from before its intent is recorded, so a concurrent Recover
	// never runs it a second time.
	c.inflight.Store(e.ID, (*requestTracker)(nil))
	if err := c.journal.Put(ctx, e); err != nil { // step 1: intent before any backend
		c.inflight.Delete(e.ID)
		return nil, backendError("journal", err)
	}
	c.audit(ctx, e, "received")
	return c.execute(ctx, e)
}

// validateRequest checks the request and fills the entry's subjects.
func (c *Controller) validateRequest(req *Request, e *journal.Entry) error {
	switch {
	case !req.Type.Valid():
		return fieldErrorf("Type", "unknown request type %q", req.Type)
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
		traits, err := checkTraits(req.Traits)
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

// execute runs steps 2 to 5 of the protocol for a journaled, undecided request.
// A conflict a shared backend reports before the decision (txscope.ErrRetry)
// changed nothing, so the attempt is simply run again, a few times.
func (c *Controller) execute(ctx context.Context, e *journal.Entry) (*Receipt, error) {
	for attempt := 1; ; attempt++ {
		r, err, failed := c.executeOnce(ctx, e)
		if failed == nil {
			return r, err
		}
		if !errors.Is(failed, txscope.ErrRetry) || attempt == retryAttempts || ctx.Err() != nil {
			return c.fail(ctx, e, failed)
		}
		pause(ctx, attempt)
	}
}

// executeOnce is one attempt at execute. A failure before the decision is
// returned as failed, with nothing changed, for execute to retry or record.
func (c *Controller) executeOnce(ctx context.Context, e *journal.Entry) (r *Receipt, err, failed error) {
	ctx, closeScope := c.openScope(ctx)
	defer closeScope()
	var matchBuf []identity.Match
	matches, held, err := c.lockMatches(ctx, e.Subjects, matchBuf) // step 2
	if err != nil {
		return nil, nil, err
	}
	defer c.locks.unlock(&held)

	txs, err := c.begin(ctx) // step 3: prepare
	if err != nil {
		return nil, nil, err
	}
	defer txs.rollback(ctx)
	now := c.now()
	d, sends, err := c.decide(ctx, txs, e, matches, now)
	var changes map[identity.ProfileID][]audience.Change
	if err == nil {
		changes, err = c.stage(ctx, txs, &d, now)
	}
	if err != nil {
		return nil, nil, err
	}
	e.Decided, e.Decision = true, d // step 4: the decision, then the commits
	if err := c.journal.Put(ctx, e); err != nil {
		e.Decided, e.Decision = false, journal.Decision{}
		return nil, nil, backendError("journal", err)
	}
	c.audit(ctx, e, "decided")
	if err := c.commitDecision(ctx, txs, e, &e.Decision); err != nil {
		c.inflight.Delete(e.ID) // decided: Recover completes it
		return receiptOf(e), err, nil
	}
	// Queued before the subjects are unlocked, so nothing collected afterwards
	// can reach a destination ahead of the request's own messages.
	c.deliverAudienceChanges(ctx, e, changes, now)
	c.deliverDecision(ctx, e, sends) // step 5
	return receiptOf(e), nil, nil
}

// deliverAudienceChanges tells destinations who entered or left audiences
// because of the request (suppressed people leave them all).
func (c *Controller) deliverAudienceChanges(ctx context.Context, e *journal.Entry, changes map[identity.ProfileID][]audience.Change, now time.Time) {
	for pid, ch := range changes {
		version := e.ProfileVersion
		if m, err := c.profiles.Metadata(ctx, pid); err == nil {
			version = m.Version
		}
		c.deliverChanges(ctx, pid, version, ch, now)
	}
}

// fail records that a request failed before its decision: nothing changed.
func (c *Controller) fail(ctx context.Context, e *journal.Entry, err error) (*Receipt, error) {
	defer c.inflight.Delete(e.ID)
	e.Status, e.Reason, e.Finished = Failed, c.redact(e, err.Error(), nil), c.now()
	if errors.Is(err, ErrInvalid) {
		e.Status = Invalid
	}
	e.Scrub()
	if perr := c.journal.Put(context.WithoutCancel(ctx), e); perr != nil {
		err = errors.Join(err, backendError("journal", perr))
	}
	c.audit(ctx, e, "failed")
	return receiptOf(e), err
}

// commitDecision commits every participant of a decided request. The caller's
// context no longer counts: after the decision the request must complete. A
// failed Commit leaves its transaction finished, so a retry stages the decision
// again in new transactions (every write is an idempotent redo) and commits
// those, with backoff. What is still failing after the last attempt is left to
// Recover. It records the backends' outcomes.
func (c *Controller) commitDecision(ctx context.Context, txs *participants, e *journal.Entry, d *journal.Decision) error {
	ctx = context.WithoutCancel(ctx)
	var err error
	for attempt := 1; ; attempt++ {
		if err = c.commitAll(ctx, txs, e); err == nil {
			return nil
		}
		txs.rollback(ctx)
		if attempt == commitAttempts {
			break
		}
		time.Sleep(time.Duration(attempt) * 10 * time.Millisecond)
		// The failed attempt's shared transaction (and the cross-process locks
		// it held) is gone: a new scope, the locks again, then the redo.
		sctx, closeScope := c.openScope(ctx)
		defer closeScope()
		if err = c.lockRemote(sctx, nil, decisionProfiles(d)); err != nil {
			continue
		}
		if txs, err = c.begin(sctx); err != nil {
			continue
		}
		if _, err = c.stage(sctx, txs, d, c.now()); err != nil {
			continue
		}
	}
	if perr := c.journal.Put(ctx, e); perr != nil {
		err = errors.Join(err, backendError("journal", perr))
	}
	return fmt.Errorf("privacy: request %s is decided but not fully committed; Recover completes it: %w", e.ID, err)
}

// commitAll commits the participants in order, recording each outcome, and
// stops at the first failure.
func (c *Controller) commitAll(ctx context.Context, txs *participants, e *journal.Entry) error {
	e.Backends = e.Backends[:0]
	for _, p := range txs.all() {
		o := journal.Outcome{Name: p.name, Status: Finished, Finished: c.now()}
		err := p.commit(ctx)
		if err != nil {
			o.Status, o.Err, o.Finished = Running, c.redact(e, err.Error(), nil), time.Time{}
		}
		e.Backends = append(e.Backends, o)
		if err != nil {
			return fmt.Errorf("%s commit: %w", p.name, err)
		}
	}
	return nil
}

// commitAttempts bounds the tries per participant commit before the request is
// left to Recover.
const commitAttempts = 3

// deliverDecision queues the request's work for destinations, or finishes it
// when there is none.
func (c *Controller) deliverDecision(ctx context.Context, e *journal.Entry, sends []pendingSend) {
	forwards := e.Type.Forwards() && len(c.destinations) > 0 &&
		(len(e.Decision.Forward) > 0 || len(sends) > 0)
	if !forwards {
		c.finish(ctx, e)
		return
	}
	for _, name := range c.destinations {
		e.Destinations = append(e.Destinations, journal.Outcome{Name: name, Status: Running})
	}
	_ = c.journal.Put(context.WithoutCancel(ctx), e)
	// The tracker owns its own copy: outcomes arrive on delivery goroutines
	// while the caller reads e for the receipt.
	t := c.tracker(e.Clone())
	for _, name := range c.destinations {
		t.waiting[name] = len(e.Decision.Forward) + len(sends)
	}
	c.inflight.Store(e.ID, t)
	for _, f := range e.Decision.Forward {
		c.outbox.Purge(f.Profile) // nothing about the person may follow the deletion
		c.outbox.Delete(deletionOf(e.ID, f), t.done)
	}
	for _, s := range sends {
		c.outbox.SendTracked(s.msgs, t.done)
	}
}

// finish completes a request: the overall status follows Segment's rules, the
// clear personal data is scrubbed, the receipt is journaled.
func (c *Controller) finish(ctx context.Context, e *journal.Entry) {
	defer c.inflight.Delete(e.ID)
	e.Status = overall(e)
	e.Finished = c.now()
	e.Scrub()
	if err := c.journal.Put(context.WithoutCancel(ctx), e); err != nil {
		// The entry stays RUNNING; Recover will complete it again (idempotently).
		c.log.ErrorContext(ctx, "journal write of a finished request failed", "request", e.ID, "err", err)
	}
	c.audit(ctx, e, "finished")
}

// overall is Segment's rule: FINISHED when every destination finished (or cannot
// delete: NOT_SUPPORTED), FAILED when every destination failed, PARTIAL_SUCCESS
// in between.
func overall(e *journal.Entry) Status {
	failed := 0
	for _, o := range e.Destinations {
		if o.Status == Failed {
			failed++
		}
	}
	switch {
	case failed == 0:
		return Finished
	case failed == len(e.Destinations):
		return Failed
	}
	return PartialSuccess
}

// requestTracker collects the destinations' outcomes of one request and
// finishes it when the last one is in.
type requestTracker struct {
	c       *Controller
	mu      sync.Mutex
	e       *journal.Entry
	waiting map[string]int
}

func (c *Controller) tracker(e *journal.Entry) *requestTracker {
	return &requestTracker{c: c, e: e, waiting: map[string]int{}}
}

func (t *requestTracker) done(name string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.waiting[name]--
	for i := range t.e.Destinations {
		o := &t.e.Destinations[i]
		if o.Name != name || o.Status == Failed {
			continue // a failure stands
		}
		if o.Status == NotSupported && (err == nil || errors.Is(err, errNotSupported)) {
			continue // so does NOT_SUPPORTED, unless a later item failed outright
		}
		switch {
		case err == nil:
			if t.waiting[name] == 0 {
				o.Status = Finished
			}
		case errors.Is(err, errNotSupported):
			o.Status, o.Err = NotSupported, t.c.redact(t.e, err.Error(), nil)
		default:
			o.Status, o.Err = Failed, t.c.redact(t.e, err.Error(), nil)
		}
		if t.waiting[name] == 0 || o.Status != Running {
			o.Finished = t.c.now()
		}
	}
	for _, n := range t.waiting {
		if n > 0 {
			_ = t.c.journal.Put(context.Background(), t.e)
			return
		}
	}
	t.c.finish(context.Background(), t.e)
}

// Status returns the receipt of a request. An unknown id fails with ErrNotFound.
func (c *Controller) Status(ctx context.Context, id string) (*Receipt, error) {
	e, err := c.journal.Get(ctx, id)
	if errors.Is(err, journal.ErrNotFound) {
		return nil, fmt.Errorf("privacy: %w: request %q", ErrNotFound, id)
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
// the reason recorded (Art. 12(3)). Extending past that is refused.
func (c *Controller) Extend(ctx context.Context, id string, months int, reason string) (*Receipt, error) {
	if months < 1 || months > 2 {
		return nil, fieldErrorf("months", "%d: extend by one or two months", months)
	}
	e, err := c.journal.Get(ctx, id)
	if errors.Is(err, journal.ErrNotFound) {
		return nil, fmt.Errorf("privacy: %w: request %q", ErrNotFound, id)
	}
	if err != nil {
		return nil, backendError("journal", err)
	}
	newDue := e.Due.AddDate(0, months, 0)
	firstDue := e.Received.AddDate(0, 1, 0)
	switch {
	case months < 1:
		return nil, fieldErrorf("months", "%d: extend by one or two months", months)
	case reason == "":
		return nil, fieldErrorf("reason", "an extension needs a reason to tell the person")
	case newDue.After(firstDue.AddDate(0, 2, 0)):
		return nil, fieldErrorf("months", "the due date may move two months past the first at most")
	}
	e.Due, e.ExtensionReason = newDue, reason
	if v, ok := c.inflight.Load(id); ok && v.(*requestTracker) != nil {
		// The request is delivering: its tracker writes the entry from now on,
		// so it must carry the extension too.
		t := v.(*requestTracker)
		t.mu.Lock()
		t.e.Due, t.e.ExtensionReason = newDue, reason
		t.mu.Unlock()
	}
	if err := c.journal.Put(ctx, e); err != nil {
		return nil, backendError("journal", err)
	}
	c.audit(ctx, e, "extended")
	return receiptOf(e), nil
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

// Recover completes the requests the journal shows unfinished, as after a
// crash: a decided request is committed again (every write is an idempotent
// redo) and its destinations are told; an undecided one is presumed aborted and
// run again from the lock step. It returns how many requests it completed.
func (c *Controller) Recover(ctx context.Context) (int, error) {
	if err := c.checkOpen(); err != nil {
		return 0, err
	}
	es, err := c.journal.Unfinished(ctx)
	if err != nil {
		return 0, backendError("journal", err)
	}
	n := 0
	var errs []error
	for _, e := range es {
		if c.inFlight(e.ID) {
			continue // this Controller is still delivering it
		}
		if err := c.recoverOne(ctx, e); err != nil {
			errs = append(errs, fmt.Errorf("request %s: %w", e.ID, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

func (c *Controller) recoverOne(ctx context.Context, e *journal.Entry) error {
	if _, busy := c.inflight.LoadOrStore(e.ID, (*requestTracker)(nil)); busy {
		return nil // claimed meanwhile by this Controller
	}
	// The list Recover read may be stale: the request may have finished since.
	cur, err := c.journal.Get(ctx, e.ID)
	if err != nil || (cur.Status != Running && cur.Status != Initialized) {
		c.inflight.Delete(e.ID)
		return backendError("journal", err)
	}
	e = cur
	c.audit(ctx, e, "recovering")
	if e.Type == Access {
		// The export's reader went with the process: nothing to redo, and nothing
		// was changed. The person must ask again.
		if _, err := c.fail(ctx, e, errExportInterrupted); err != errExportInterrupted {
			return err // the journal write failed too
		}
		return nil
	}
	if !e.Decided {
		_, err := c.execute(ctx, e) // presumed aborted: run it again
		return err
	}
	// Lock the subjects and every profile the decision touches.
	ctx, closeScope := c.openScope(ctx)
	defer closeScope()
	_, held, err := c.lockMatchesAnd(ctx, slices.Clone(e.Subjects), nil, decisionProfiles(&e.Decision))
	if err != nil {
		c.inflight.Delete(e.ID)
		return err
	}
	// A rectification is redone only while the profile exists and has not
	// moved past the decided version (at that version, the same write again is
	// harmless). Otherwise a redo would bring an erased person back, or set a
	// newer version back.
	kept := e.Decision.Rectify[:0:0]
	for _, r := range e.Decision.Rectify {
		m, err := c.profiles.Metadata(ctx, r.Profile)
		if err == nil && m.Version <= r.Update.Metadata.Version {
			kept = append(kept, r)
		}
	}
	d := e.Decision
	d.Rectify = kept
	txs, err := c.begin(ctx)
	if err != nil {
		c.locks.unlock(&held)
		c.inflight.Delete(e.ID)
		return err
	}
	defer txs.rollback(ctx)
	now := c.now()
	changes, err := c.stage(ctx, txs, &d, now)
	if err == nil {
		err = c.commitDecision(ctx, txs, e, &d)
	}
	if err != nil {
		c.locks.unlock(&held)
		c.inflight.Delete(e.ID)
		return err
	}
	c.deliverAudienceChanges(ctx, e, changes, now)
	// Destinations are told again, all of them: at least once, and they
	// de-duplicate on the request id. A rectification already in effect sends
	// nothing.
	e.Destinations = nil
	var sends []pendingSend
	if len(kept) > 0 {
		sends = c.rectifySends(e)
	}
	c.deliverDecision(ctx, e, sends)
	c.locks.unlock(&held)
	return nil
}

// inFlight reports whether this Controller is still delivering the request.
func (c *Controller) inFlight(id string) bool {
	_, ok := c.inflight.Load(id)
	return ok
}

// newRequestID returns a request id that sorts in creation order.
func newRequestID(now time.Time) string { return identity.NewSortableID("req_", now) }

// redact replaces, in an error text bound for a receipt, every clear value the
// request carries (its subjects, the identifiers it forwards, a rectification's
// text values) by a keyed hash. Reasons and outcomes outlive the clear data,
// which Entry.Scrub removes, and a backend's or destination's error may quote
// what it was given ("no user a@b.c"); a receipt must not keep it.
func (c *Controller) redact(e *journal.Entry, text string, extra []identity.ID) string {
	replace := func(value, label string) {
		if len(value) >= minRedacted && strings.Contains(text, value) {
			text = strings.ReplaceAll(text, value, label)
		}
	}
	replaceID := func(id identity.ID) {
		n, err := id.Normalize()
		if err != nil {
			n = id // malformed: hash it as given
		}
		label := "[" + n.Type + " " + c.hasher.ID(n).String()[:12] + "]"
		replace(id.Value, label)
		replace(n.Value, label)
	}
	for _, id := range extra {
		replaceID(id)
	}
	for _, id := range e.Subjects {
		replaceID(id)
	}
	for _, f := range e.Decision.Forward {
		for _, id := range f.IDs {
			replaceID(id)
		}
	}
	for k, v := range e.Traits {
		if s, ok := v.(string); ok {
			replace(s, "[trait "+k+"]")
		}
	}
	return text
}

// minRedacted is the shortest value redact replaces: shorter ones ("1", "us")
// would mangle unrelated words of the text and identify nobody.
const minRedacted = 3

// errExportInterrupted is the reason of an ACCESS request a crash cut short.
var errExportInterrupted = errors.New("the export was interrupted (the process stopped); make the request again")

// decisionProfiles lists every profile a decision touches: what a redo locks.
func decisionProfiles(d *journal.Decision) []identity.ProfileID {
	var pids []identity.ProfileID
	pids = append(pids, d.Delete...)
	pids = append(pids, d.SuppressProfiles...)
	pids = append(pids, d.UnsuppressProfiles...)
	for _, r := range d.Rectify {
		pids = append(pids, r.Profile)
	}
	return pids
}
