package sqlstore_test

import (
	"errors"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
)

// Unsuppress of a person suppressed and erased before a key rotation lifts
// every identifier suppressed together with them, as it does without one.
func TestKeyUnsuppressAfterRotation(t *testing.T) {
	for _, rotate := range []bool{false, true} {
		for _, d := range testDialects {
			t.Run(d.name+map[bool]string{false: "/no-rotation", true: "/rotated"}[rotate], func(t *testing.T) {
				ctx := t.Context()
				s := newSite(t, d.dialect)
				p := s.open(t)
				c, err := privacy.New(p.keyed(privacy.WithKey(oldKey))...)
				must(t, err)
				uid := identity.ID{Type: identity.TypeUserID, Value: "two-ids"}
				email := identity.ID{Type: identity.TypeEmail, Value: "two@example.com"}
				must(t, c.Collect(ctx, privacy.Identify{MessageID: "m1", UserID: uid.Value, Timestamp: time.Now(),
					Traits: map[string]any{"email": email.Value}}))
				if r, err := c.Apply(ctx, privacy.Request{Type: privacy.SuppressWithDelete, Subjects: []identity.ID{uid}}); err != nil || r.Status != privacy.Finished {
					t.Fatalf("SuppressWithDelete = %+v, %v", r, err)
				}
				must(t, c.Close())
				opts := p.keyed(privacy.WithKey(oldKey))
				if rotate {
					must(t, privacy.RotateKey(ctx, newKey, opts...))
					opts = p.keyed(privacy.WithKey(newKey), privacy.WithPreviousKeys(oldKey))
				}
				c, err = privacy.New(opts...)
				must(t, err)
				defer c.Close()
				if r, err := c.Unsuppress(ctx, email); err != nil || r.Status != privacy.Finished {
					t.Fatalf("Unsuppress = %+v, %v", r, err)
				}
				err = c.Collect(ctx, privacy.Identify{MessageID: "m2", UserID: uid.Value, Timestamp: time.Now()})
				if errors.Is(err, privacy.ErrSuppressed) {
					t.Errorf("after Unsuppress(email): Collect by the user id suppressed together = %v; want it collected", err)
				}
			})
		}
	}
}
