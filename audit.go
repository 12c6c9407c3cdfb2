package privacy

// The audit log: every state change of a request, naming people by keyed hash
// only, in a hash chain that VerifyAudit walks.

import (
	"context"

	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/journal"
)

// audit appends a record of the request's progress to the audit log. A failure
// to audit is logged, not returned: the right itself has been applied.
func (c *Controller) audit(ctx context.Context, e *journal.Entry, action string) {
	r := audit.Record{At: c.now(), Action: action, RequestID: e.ID, RequestType: string(e.Type), Status: string(e.Status),
		Subjects: e.SubjectHashes, Detail: e.Reason}
	if err := c.chain.Append(context.WithoutCancel(ctx), r); err != nil {
		c.log.ErrorContext(ctx, "audit log append failed", "request", e.ID, "action", action, "err", err)
	}
}

// VerifyAudit walks the audit log's hash chain and returns how many records it
// verified, or an error matching audit.ErrTampered naming the first bad one.
func (c *Controller) VerifyAudit(ctx context.Context) (int, error) {
	return audit.Verify(ctx, c.auditLog, c.key)
}
