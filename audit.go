package privacy

// The audit log: every state change of a request, naming people by keyed hash
// only, in a hash chain that VerifyAudit walks. A change's record is owed in
// the journal with the change itself (owe), appended after it (settle), and
// every record a request owes is appended before its end is recorded
// (ending): a request the journal shows ended has all of its records, and
// VerifyAudit checks that it does.

import (
	"context"
	"fmt"

	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/journal"
)

// owe notes in e the audit record of the state change about to be journaled
// with it.
func (c *Controller) owe(e *journal.Entry, action string) {
	e.AuditOwed = append(e.AuditOwed, journal.AuditNote{At: c.now(), Action: action, Status: e.Status, Detail: e.Reason})
}

// settle appends the records e owes to the audit log, oldest first, taking
// each off e once it is appended; it stops at the first failure.
func (c *Controller) settle(ctx context.Context, e *journal.Entry) error {
	for len(e.AuditOwed) > 0 {
		n := e.AuditOwed[0]
		r := audit.Record{At: n.At, Action: n.Action, RequestID: e.ID, RequestType: string(e.Type), Status: string(n.Status),
			Subjects: e.SubjectHashes, Detail: n.Detail}
		if err := c.chain.Append(context.WithoutCancel(ctx), r); err != nil {
			return fmt.Errorf("privacy: audit log: %w", err)
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
		c.log.ErrorContext(ctx, "audit log append failed; the records stay owed", "request", e.ID, "err", err)
	}
}

// ending appends every record e owes, the one of its end (action, e's final
// state already set) last, before that end may be recorded. When the audit log
// cannot take them all, the end is not to be recorded: e keeps what it still
// owes, the end's record taken off.
func (c *Controller) ending(ctx context.Context, e *journal.Entry, action string) error {
	c.owe(e, action)
	if err := c.settle(ctx, e); err != nil {
		if n := len(e.AuditOwed); n > 0 {
			e.AuditOwed = e.AuditOwed[:n-1]
		}
		return err
	}
	return nil
}

// VerifyAudit walks the audit log's hash chain, and checks that every request
// the journal shows ended has the record of its end in the log. It returns
// how many records it verified, or an error matching audit.ErrTampered that
// names the first record at fault, or the first request whose end is not
// recorded.
func (c *Controller) VerifyAudit(ctx context.Context) (int, error) {
	n, err := audit.Verify(ctx, c.auditLog, c.key)
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
