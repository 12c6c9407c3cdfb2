package sqlstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/sqlstore"
	"github.com/gdprkit/privacy/suppression"
)

// commitFailingList: its transactions roll back at Commit and report a
// failure, as a host that dies between its decision and its commits.
type commitFailingList struct{ suppression.List }

func (l commitFailingList) Begin(ctx context.Context) (suppression.Tx, error) {
	tx, err := l.List.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return commitFailingTx{tx}, nil
}

type commitFailingTx struct{ suppression.Tx }

func (tx commitFailingTx) RequireKey(ctx context.Context, check identity.Hash) error {
	return tx.Tx.(suppression.KeyGuard).RequireKey(ctx, check)
}

func (tx commitFailingTx) Commit(ctx context.Context) error {
	_ = tx.Tx.Rollback(ctx)
	return errors.New("the host died before its commit")
}

// hookedJournal runs hook once after its first Unfinished read: a stale
// host acts between RotateKey's check for unfinished requests and its rekey.
type hookedJournal struct {
	journal.Journal
	hook func()
}

func (j *hookedJournal) Unfinished(ctx context.Context) ([]*journal.Entry, error) {
	es, err := j.Journal.Unfinished(ctx)
	if j.hook != nil {
		h := j.hook
		j.hook = nil
		h()
	}
	return es, err
}

// rotateWithWindow rotates p's backends from oldKey to newKey, running
// window between RotateKey's check for unfinished requests and its rekey (a
// host acting then), or, when rotate is false, runs window alone (the
// control), and returns the options of a Controller started after.
func rotateWithWindow(t *testing.T, p *proc, rotate bool, window func()) []privacy.Option {
	t.Helper()
	if !rotate {
		window()
		return p.keyed(privacy.WithKey(oldKey))
	}
	j := &hookedJournal{Journal: p.jrnl.Journal(), hook: window}
	must(t, privacy.RotateKey(t.Context(), newKey, append(p.keyed(privacy.WithKey(oldKey)), privacy.WithJournal(j))...))
	return p.keyed(privacy.WithKey(newKey), privacy.WithPreviousKeys(oldKey))
}

// keyedSite returns a migrated site of the dialect whose backends are keyed
// with oldKey (a Controller started and stopped on it), and a process on it.
func keyedSite(t *testing.T, d sqlstore.Dialect) (*site, *proc) {
	t.Helper()
	s := newSite(t, d)
	p := s.open(t)
	c, err := privacy.New(p.keyed(privacy.WithKey(oldKey))...)
	must(t, err)
	must(t, c.Close())
	return s, p
}

// A host still on the old key decides a suppression just after RotateKey's
// check for unfinished requests and dies before committing it; a host with
// the new keys recovers it. The person must be suppressed afterwards.
func TestKeyStaleDecisionRecoveredAfterRotation(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			ctx := t.Context()
			s, p := keyedSite(t, d.dialect)
			late := identity.ID{Type: identity.TypeEmail, Value: "objected-in-the-window@example.com"}

			pa := s.open(t)
			a, err := privacy.New(pa.keyed(privacy.WithKey(oldKey), privacy.WithLease(time.Second),
				privacy.WithSuppressions(commitFailingList{pa.data.Suppressions()}))...)
			must(t, err)
			rotateWithWindow(t, p, true, func() {
				_, _ = a.Suppress(ctx, late) // it dies before its commit: either outcome
				a.Close()
			})

			time.Sleep(1500 * time.Millisecond) // the stale host's lease ends
			pb := s.open(t)
			b, err := privacy.New(pb.keyed(privacy.WithKey(newKey), privacy.WithPreviousKeys(oldKey))...)
			must(t, err)
			defer b.Close()
			if n, err := b.Recover(ctx); n != 1 || err != nil {
				t.Errorf("Recover = %d, %v; want the stale host's request", n, err)
			}
			err = b.Collect(ctx, privacy.Identify{MessageID: "x1", UserID: "someone", Timestamp: time.Now(),
				Traits: map[string]any{"email": late.Value}})
			if !errors.Is(err, privacy.ErrSuppressed) {
				t.Errorf("the person whose suppression was recovered after the rotation: Collect = %v; want ErrSuppressed", err)
			}
		})
	}
}

// dyingJournal stores the first Put, then fails every other: the host dies
// right after recording a request's intent.
type dyingJournal struct {
	journal.Journal
	puts int
}

func (j *dyingJournal) Put(ctx context.Context, e *journal.Entry) error {
	if j.puts++; j.puts > 1 {
		return errors.New("the host died")
	}
	return j.Journal.Put(ctx, e)
}

// A host still on the old key, after the rotation and before its tick sees
// it, records a suppression's intent and dies; a host with the new keys
// recovers the request. The person must be suppressed afterwards.
func TestKeyStaleIntentRecoveredAfterRotation(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			ctx := t.Context()
			s := newSite(t, d.dialect)
			p := s.open(t)
			pa := s.open(t)
			a, err := privacy.New(pa.keyed(privacy.WithKey(oldKey), privacy.WithLease(time.Hour),
				privacy.WithJournal(&dyingJournal{Journal: pa.jrnl.Journal()}))...)
			must(t, err)
			must(t, privacy.RotateKey(ctx, newKey, p.keyed(privacy.WithKey(oldKey))...))
			late := identity.ID{Type: identity.TypeEmail, Value: "objected-after-rotation@example.com"}
			r, err := a.Suppress(ctx, late)
			if err == nil && r.Status == privacy.Finished {
				t.Fatalf("the stale host's Suppress after the rotation = %+v; want it not finished", r)
			}

			pb := s.open(t)
			b, err := privacy.New(pb.keyed(privacy.WithKey(newKey), privacy.WithPreviousKeys(oldKey), privacy.WithClock(func() time.Time { return time.Now().Add(2 * time.Hour) }))...)
			must(t, err)
			defer b.Close()
			if n, err := b.Recover(ctx); n != 1 || err != nil {
				t.Errorf("Recover = %d, %v; want the stale host's request", n, err)
			}
			if un, err := p.jrnl.Journal().Unfinished(ctx); err != nil || len(un) != 0 {
				t.Errorf("after Recover %d requests are unfinished (%v)", len(un), err)
			}
			err = b.Collect(ctx, privacy.Identify{MessageID: "x1", UserID: "someone", Timestamp: time.Now(),
				Traits: map[string]any{"email": late.Value}})
			if !errors.Is(err, privacy.ErrSuppressed) {
				t.Errorf("the person whose suppression was recovered after the rotation: Collect = %v; want ErrSuppressed", err)
			}
		})
	}
}
