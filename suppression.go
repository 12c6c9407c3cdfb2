package privacy

import (
	"context"

	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
)

// listGate is the collection path's suppression check over the suppression list.
// A linked identifier is checked through its profile (no hashing: the list keeps
// an identifier only when its profile is suppressed too); only identifiers not
// linked yet are hashed.
type listGate struct{ c *Controller }

func (g listGate) suppressedID(ctx context.Context, id identity.ID) (bool, error) {
	return g.c.suppressions.Suppressed(ctx, g.c.hasher.ID(id))
}

func (g listGate) suppressedProfile(ctx context.Context, pid identity.ProfileID) (bool, error) {
	return g.c.suppressions.ProfileSuppressed(ctx, pid)
}

// excluded reports whether the profile must be kept out of every audience: the
// person objected.
func (c *Controller) excluded(ctx context.Context, pid identity.ProfileID) bool {
	yes, err := c.suppressions.ProfileSuppressed(ctx, pid)
	return yes || err != nil // when unsure, keep them out
}

// audit appends a record of the request's progress to the audit log. A failure
// to audit is logged, not returned: the right itself has been applied.
func (c *Controller) audit(ctx context.Context, e *journal.Entry, action string) {
	r := audit.Record{At: c.now(), Action: action, RequestID: e.ID, RequestType: e.Type, Status: e.Status,
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
