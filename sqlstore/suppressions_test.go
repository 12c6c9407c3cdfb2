package sqlstore_test

import (
	"errors"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/suppression"
)

// TestEmptyListAcrossProcesses: a process whose suppression list was empty
// when it last looked must not let in a person another process suppressed
// since. The collection path skips its checks while the list says it is
// empty (suppression.EmptyChecker), so the answer must come from the
// database, not from what this process saw.
func TestEmptyListAcrossProcesses(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s := newSite(t, d.dialect)
			pa, pb := s.open(t), s.open(t)
			a, b := pa.controller(t, nil), pb.controller(t, nil)
			ts := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			ec := pa.data.Suppressions().(suppression.EmptyChecker)

			must(t, a.Collect(ctx, privacy.Track{UserID: "ada", Event: "Viewed", Timestamp: ts}))
			if empty, err := ec.IsEmpty(ctx); err != nil || !empty {
				t.Fatalf("IsEmpty before any suppression = %v, %v; want true", empty, err)
			}
			// Another process suppresses ada, and someone A has never seen.
			for _, id := range []identity.ID{{Type: "user_id", Value: "ada"}, {Type: "email", Value: "unseen@example.com"}} {
				if r, err := b.Suppress(ctx, id); err != nil || r.Status != privacy.Finished {
					t.Fatalf("Suppress(%s) in process B = %+v, %v", id, r, err)
				}
			}
			if empty, err := ec.IsEmpty(ctx); err != nil || empty {
				t.Errorf("IsEmpty in process A after B suppressed = %v, %v; want false", empty, err)
			}
			for _, m := range []privacy.Message{
				privacy.Track{UserID: "ada", Event: "Viewed", Timestamp: ts.Add(time.Minute)},
				privacy.Identify{UserID: "newcomer", Traits: map[string]any{"email": "unseen@example.com"}, Timestamp: ts},
			} {
				if err := a.Collect(ctx, m); !errors.Is(err, privacy.ErrSuppressed) {
					t.Errorf("Collect in process A of %+v after B suppressed = %v; want ErrSuppressed", m, err)
				}
			}
		})
	}
}
