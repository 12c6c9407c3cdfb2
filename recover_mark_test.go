package privacy_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
)

// outageAfterCommit is a journal that is down from the moment the first
// request's commit is to be recorded until it is told to come back.
type outageAfterCommit struct {
	journal.Journal
	down, tripped atomic.Bool
}

func (j *outageAfterCommit) Put(ctx context.Context, e *journal.Entry) error {
	if e.Decided && !e.Committed.IsZero() && !j.tripped.Swap(true) {
		j.down.Store(true)
	}
	if j.down.Load() {
		return errors.New("journal unavailable")
	}
	return j.Journal.Put(ctx, e)
}

// TestRecoverAfterJournalOutagePastTheCommitKeepsNewCollection: the
// erasure's data committed and the journal failed to record it; the person
// signs up again; Recover must finish the erasure as decided, not erase the
// new profile, for each profile store that marks requests.
func TestRecoverAfterJournalOutagePastTheCommitKeepsNewCollection(t *testing.T) {
	for name, store := range map[string]func() profile.Store{
		"clear":  func() profile.Store { return profile.NewMemStore() },
		"sealed": func() profile.Store { return profile.NewSealedMemStore() },
	} {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			j := &outageAfterCommit{Journal: journal.NewMemJournal()}
			c, err := privacy.New(privacy.WithJournal(j), privacy.WithProfiles(store()), privacy.WithKey([]byte("0123456789abcdef0123456789abcdef")))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ada := identity.ID{Type: identity.TypeUserID, Value: "ada"}
			ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			if err := c.Collect(ctx, privacy.Identify{MessageID: "m1", UserID: "ada", Traits: map[string]any{"plan": "old"}, Timestamp: ts}); err != nil {
				t.Fatal(err)
			}
			r, err := c.Erase(ctx, ada)
			if err != nil || r.Status != privacy.Running {
				t.Fatalf("Erase with the journal down past its commit = %+v, %v; want RUNNING (left to Recover)", r, err)
			}
			if _, err := c.Profile(ctx, ada); !errors.Is(err, privacy.ErrNotFound) {
				t.Fatalf("after the erasure's commit ada = %v; want not found", err)
			}
			j.down.Store(false)
			if err := c.Collect(ctx, privacy.Identify{MessageID: "m2", UserID: "ada", Traits: map[string]any{"plan": "new"}, Timestamp: ts.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			fresh, err := c.Profile(ctx, ada)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Recover(ctx); err != nil {
				t.Fatalf("Recover: %v", err)
			}
			got, err := c.Profile(ctx, ada)
			if err != nil || got.ID != fresh.ID {
				t.Errorf("after Recover, the profile collected after the erasure's commit = %v, %v; want %s kept", got, err, fresh.ID)
			}
			if s, err := c.Status(ctx, r.ID); err != nil || s.Status != privacy.Finished {
				t.Errorf("Status = %+v, %v; want FINISHED", s, err)
			}
		})
	}
}

// forgetfulOutbox is a decorator of a marking outbox that forwards
// RequestMarked (embedded) but whose transactions drop MarkRequest.
type forgetfulOutbox struct{ *outbox.MemStore }

func (o forgetfulOutbox) Begin(ctx context.Context) (outbox.Tx, error) {
	tx, err := o.MemStore.Begin(ctx)
	return struct{ outbox.Tx }{tx}, err
}

// TestNewRefusesAnOutboxThatReadsMarksItDoesNotWrite: Recover would find no
// mark, and decide a committed request again.
func TestNewRefusesAnOutboxThatReadsMarksItDoesNotWrite(t *testing.T) {
	_, err := privacy.New(privacy.WithOutbox(forgetfulOutbox{outbox.NewMemStore()}))
	if !errors.Is(err, privacy.ErrInvalid) || !strings.Contains(err.Error(), "MarkRequest") {
		t.Errorf("New with an outbox whose transactions do not mark = %v; want ErrInvalid naming MarkRequest", err)
	}
	if _, err := privacy.New(privacy.WithOutbox(outbox.NewMemStore())); err != nil {
		t.Errorf("New with the in-memory outbox: %v", err)
	}
}
