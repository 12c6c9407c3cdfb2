package privacy

// The audit log: every state change of a request, naming people by keyed hash
// only, in a hash chain that VerifyAudit walks. A change's record is owed in
// the journal with the change itself (owe) and appended after it (settle). A
// request's end is journaled as owed first, then everything it owes is
// appended, then the end is recorded (end): a request the journal shows ended
// has all of its records, and VerifyAudit checks that it does. Recover drops
// what a dead holder appended before appending the rest (dropAppended).

import (
	"context"
	"errors"
	"fmt"

	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/journal"
)

// owe notes in e the audit record of the state change about to be journaled
// with it.
func (c *Controller) owe(e *journal.Entry, action string) {
	c.oweAs(e, action, e.Status, e.Reason)
}

// oweAs notes in e an audit record of the action with the status and detail
// given, numbered after the notes e owed before.
func (c *Controller) oweAs(e *journal.Entry, action string, status Status, detail string) {
	e.AuditNotes++
	e.AuditOwed = append(e.AuditOwed, journal.AuditNote{At: c.now(), Action: action, Status: status, Detail: detail, Note: e.AuditNotes})
}

// settle appends the records e owes to the audit log, oldest first, taking
// each off e once it is appended; it stops at the first failure.
func (c *Controller) settle(ctx context.Context, e *journal.Entry) error {
	for len(e.AuditOwed) > 0 {
		n := e.AuditOwed[0]
		r := audit.Record{At: n.At, Action: n.Action, RequestID: e.ID, RequestType: string(e.Type), Status: string(n.Status),
			Subjects: e.SubjectHashes, Detail: n.Detail, Note: n.Note}
		// A duplicate was appended already, by a holder that died or
		// stalled before journaling that it had: the log holds it once.
		if err := c.chain.Append(context.WithoutCancel(ctx), r); err != nil && !errors.Is(err, audit.ErrDuplicate) {
			return backendError("audit log", err)
		}
		e.AuditOwed = e.AuditOwed[1:]
	}
	return nil
}

// settleSoon is settle after a change that is not a request's end: a failure
// is logged, and the records stay owed, journaled again with the request's
// next change and appended before its end.
func (c *Controller) settleSoon(ctx context.Context, e *journal.Entry) {
	if err := c.settle(ctx, e); err != nil {
		c.log.ErrorContext(ctx, "audit log append failed; the records stay owed", "request", e.ID, "err", describe(err))
	}
}

// end records the end of a request this Controller holds, in three steps, so
// that the journal and the audit log never disagree. First the end's audit
// record is journaled as owed, by compare-and-swap, with the request still as
// it was (e): a former holder is refused here, before anything reaches the
// audit log. Then every record the request owes is appended. Then the end (f,
// the request's final state) is recorded. When a step fails the request is
// not ended; should the process die between the last two, Recover finds the
// end owed and records it (completeEnd).
func (c *Controller) end(ctx context.Context, cl *claim, e, f *journal.Entry, action string) error {
	return c.endWith(ctx, cl, e, f, action, f.Reason)
}

// endWith is end with the audit record's detail given: end's is the
// reason, which a FINISHED request has none of, while a retention run's
// end tells its counts.
func (c *Controller) endWith(ctx context.Context, cl *claim, e, f *journal.Entry, action, detail string) error {
	pre := e.Clone()
	c.oweAs(pre, action, f.Status, detail)
	if err := c.record(ctx, cl, pre); err != nil {
		return err
	}
	if err := c.settle(ctx, pre); err != nil {
		return err
	}
	f.AuditOwed, f.AuditNotes = nil, pre.AuditNotes
	f.Version, f.Due, f.ExtensionReason = pre.Version, pre.Due, pre.ExtensionReason
	if err := c.record(ctx, cl, f); err != nil {
		return err
	}
	c.tel.ended(ctx, f)
	return nil
}

// endOwed returns the note of the end a request owes, if its holder journaled
// the end and stopped before recording it.
func endOwed(e *journal.Entry) (int, bool) {
	for i, n := range e.AuditOwed {
		if endActions[n.Action] {
			return i, true
		}
	}
	return 0, false
}

// completeEnd records, as Recover finds it, the end a request's former holder
// journaled as owed at e.AuditOwed[at]: the records it owes up to that end
// first (the log refuses again those the holder appended), then the end, as
// the holder had decided it.
func (c *Controller) completeEnd(ctx context.Context, cl *claim, e *journal.Entry, at int) error {
	defer c.inflight.Delete(e.ID)
	note := e.AuditOwed[at]
	f := e.Clone()
	f.AuditOwed = f.AuditOwed[:at+1] // not the takeover's note: the request ended before it
	f.Status, f.Finished = note.Status, note.At
	if note.Action != "finished" {
		f.Reason = note.Detail
	}
	f.Scrub()
	if err := c.settle(ctx, f); err != nil {
		return err
	}
	if err := c.record(ctx, cl, f); err != nil {
		return err
	}
	c.tel.ended(ctx, f)
	return nil
}

// VerifyAudit walks the audit log's hash chain, and checks that every request
// the journal shows ended has the record of its end in the log. It returns
// how many records it verified, or an error matching audit.ErrTampered that
// names the first record at fault, or the first request whose end is not
// recorded.
func (c *Controller) VerifyAudit(ctx context.Context) (int, error) {
	n, err := audit.VerifyKeys(ctx, c.auditLog, c.keys)
	if err != nil {
		return n, err
	}
	ends := map[string]bool{}
	for after := uint64(0); ; {
		rs, err := c.auditLog.Records(ctx, after, 1000)
		if err != nil {
			return n, backendError("audit log", err)
		}
		for _, r := range rs {
			if endActions[r.Action] {
				ends[r.RequestID] = true
			}
			after = r.Seq
		}
		if len(rs) < 1000 {
			break
		}
	}
	for f := (journal.Filter{Limit: 1000}); ; {
		page, err := c.journal.List(ctx, f)
		if err != nil {
			return n, backendError("journal", err)
		}
		for _, e := range page.Entries {
			if e.Status.Ended() && !ends[e.ID] {
				return n, fmt.Errorf("%w: request %s ended %s, and the audit log has no record of its end", audit.ErrTampered, e.ID, e.Status)
			}
		}
		if page.Next == "" {
			return n, nil
		}
		f.Cursor = page.Next
	}
}

// endActions are the actions of the records of a request's end.
var endActions = map[string]bool{"finished": true, "failed": true, "invalid": true}
