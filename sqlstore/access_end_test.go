package sqlstore

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/export"
	"github.com/gdprkit/privacy/identity"
)

// An ACCESS request's end is recorded on every dialect: on SQLite the
// request's scope holds a lock-only transaction, rolled back when it
// closes, and an end recorded inside it was lost (the request stayed
// RUNNING, and a host's Recover later marked the delivered export FAILED).
func TestAccessEndIsRecorded(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		c := controllerOn(t, s, false)
		ada := identity.ID{Type: "user_id", Value: "ada"}
		if err := c.Collect(ctx, privacy.Identify{UserID: "ada", Traits: map[string]any{"plan": "pro"}, Timestamp: time.Now()}); err != nil {
			t.Fatal(err)
		}
		pkg, err := c.Access(ctx, ada)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		r, err := c.Export(ctx, ada, &buf, export.NDJSON)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Access(ctx, identity.ID{Type: "user_id", Value: "nobody"})
		if err == nil {
			t.Fatal("Access of nobody found someone")
		}
		for _, id := range []string{pkg.RequestID, r.ID} {
			st, err := c.Status(ctx, id)
			if err != nil || st.Status != privacy.Finished {
				t.Errorf("ACCESS %s after it returned: %+v, %v; want FINISHED in the journal", id, st, err)
			}
		}
		page, err := c.Requests(ctx, privacy.RequestFilter{Types: []privacy.RequestType{privacy.Access}})
		if err != nil {
			t.Fatal(err)
		}
		for _, rc := range page.Receipts {
			if rc.Status == privacy.Running {
				t.Errorf("ACCESS %s is still RUNNING in the journal", rc.ID)
			}
		}
	})
}

// An INVALID request of an unknown type is journaled as privacy.UnknownType
// on every dialect, the text given kept nowhere.
func TestUnknownTypeJournaled(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		c := controllerOn(t, s, false)
		r, err := c.Apply(ctx, privacy.Request{Type: "ada@example.com", Subjects: []identity.ID{{Type: "user_id", Value: "u1"}}})
		if err == nil || r == nil {
			t.Fatalf("Apply of an unknown type: %+v, %v", r, err)
		}
		st, err := c.Status(ctx, r.ID)
		if err != nil || st.Type != privacy.UnknownType || st.Status != privacy.Invalid {
			t.Fatalf("the journal holds %+v, %v", st, err)
		}
	})
}
