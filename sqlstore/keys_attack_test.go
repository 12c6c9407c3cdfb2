package sqlstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/sqlstore"
)

// The attacks a review of the key checks found to work, each now a test.

var (
	wrongKey = []byte("a wrong key, typed by mistake 32")
	thirdKey = []byte("a third key, for a second rotate")
)

// forgetKeyCheck removes the recorded key check value, as a suppression
// list written before migration 0005 has none.
func forgetKeyCheck(t *testing.T, s *site, p *proc) {
	t.Helper()
	table := sqlstore.DefaultTablePrefix + "key_check"
	if s.Schema != "" {
		table = s.Schema + "." + table
	}
	if _, err := p.db.ExecContext(t.Context(), "DELETE FROM "+table); err != nil {
		t.Fatal(err)
	}
}

// collectSuppressed collects a message about neverSeen and reports the
// error (ErrSuppressed when the suppression held).
func collectSuppressed(c *privacy.Controller, ctx context.Context) error {
	return c.Collect(ctx, privacy.Identify{MessageID: "probe", UserID: "someone-new", Timestamp: time.Now(),
		Traits: map[string]any{"email": neverSeen.Value}})
}

// TestKeyUnrecordedListNeedsConfirmation: a list holding suppressions but
// no check value takes a key only when the audit log's chain confirms it
// (or WithKeyAdopted says so), and a refused start records nothing: a wrong
// key neither starts (collecting suppressed people) nor locks the right key
// out.
func TestKeyUnrecordedListNeedsConfirmation(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			s := newSite(t, d.dialect)
			seedSuppressed(t, s, oldKey)
			p := s.open(t)
			forgetKeyCheck(t, s, p)
			ctx := t.Context()

			// The shared audit log tells the wrong key.
			if _, err := privacy.New(p.keyed(privacy.WithKey(wrongKey))...); !errors.Is(err, privacy.ErrKeyMismatch) {
				t.Errorf("New with a wrong key = %v; want ErrKeyMismatch", err)
			}
			if err := privacy.RotateKey(ctx, newKey, p.keyed(privacy.WithKey(wrongKey))...); !errors.Is(err, privacy.ErrKeyMismatch) {
				t.Errorf("RotateKey from a wrong key = %v; want ErrKeyMismatch", err)
			}
			// An empty audit log (in memory, or kept elsewhere) confirms
			// nothing: refused, unless adopted.
			elsewhere := func(extra ...privacy.Option) []privacy.Option {
				return append([]privacy.Option{privacy.WithBackends(p.data), privacy.WithJournal(journal.NewMemJournal()),
					privacy.WithAuditLog(audit.NewMemLog())}, extra...)
			}
			if _, err := privacy.New(elsewhere(privacy.WithKey(wrongKey))...); !errors.Is(err, privacy.ErrKeyMismatch) {
				t.Errorf("New with a wrong key, nothing to confirm it = %v; want ErrKeyMismatch", err)
			}
			// None of that recorded anything: the right key starts, and the
			// suppressions hold.
			c, err := privacy.New(p.keyed(privacy.WithKey(oldKey))...)
			must(t, err)
			checkStillSuppressed(t, c)
			must(t, c.Close())

			forgetKeyCheck(t, s, p)
			c, err = privacy.New(elsewhere(privacy.WithKey(oldKey), privacy.WithKeyAdopted())...)
			must(t, err)
			if err := collectSuppressed(c, ctx); !errors.Is(err, privacy.ErrSuppressed) {
				t.Errorf("adopted key: Collect = %v; want ErrSuppressed", err)
			}
			must(t, c.Close())
			if _, err := privacy.New(p.keyed(privacy.WithKey(wrongKey), privacy.WithKeyAdopted())...); !errors.Is(err, privacy.ErrKeyMismatch) {
				t.Errorf("a wrong key adopted once the right one is recorded = %v; want ErrKeyMismatch", err)
			}
		})
	}
}

// failingRotationLog fails the append of the rotation record, as a crash
// there would leave it.
type failingRotationLog struct{ audit.Log }

func (l failingRotationLog) Append(ctx context.Context, r audit.Record) error {
	if r.Action == audit.ActionKeyRotated {
		return errors.New("the audit log is unreachable")
	}
	return l.Log.Append(ctx, r)
}

// TestKeyRotationHalfDoneThenAnother: after a rotation whose audit record
// failed, a second rotation that believes the first finished, or one to
// another key from the old one, is refused before it writes anything; the
// first, run again, finishes, and a second rotation after it works.
func TestKeyRotationHalfDoneThenAnother(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s := newSite(t, d.dialect)
			seedSuppressed(t, s, oldKey)
			p := s.open(t)
			if err := privacy.RotateKey(ctx, newKey, p.keyed(privacy.WithKey(oldKey), privacy.WithAuditLog(failingRotationLog{p.jrnl.AuditLog()}))...); err == nil {
				t.Fatal("RotateKey with its audit record failing = nil; want the failure")
			}
			rotated := []privacy.Option{privacy.WithKey(newKey), privacy.WithPreviousKeys(oldKey)}
			if err := privacy.RotateKey(ctx, thirdKey, p.keyed(rotated...)...); !errors.Is(err, privacy.ErrKeyMismatch) {
				t.Errorf("a second rotation over a half-done first = %v; want ErrKeyMismatch", err)
			}
			if err := privacy.RotateKey(ctx, thirdKey, p.keyed(privacy.WithKey(oldKey))...); !errors.Is(err, privacy.ErrKeyMismatch) {
				t.Errorf("a rotation to another key over a half-done one = %v; want ErrKeyMismatch", err)
			}
			must(t, privacy.RotateKey(ctx, newKey, p.keyed(privacy.WithKey(oldKey))...))
			c, err := privacy.New(p.keyed(rotated...)...)
			must(t, err)
			checkStillSuppressed(t, c)
			must(t, c.Close())

			// A second rotation, run twice, with a restart between.
			must(t, privacy.RotateKey(ctx, thirdKey, p.keyed(rotated...)...))
			p.close()
			p = s.open(t)
			must(t, privacy.RotateKey(ctx, thirdKey, p.keyed(rotated...)...))
			for _, bad := range [][]privacy.Option{
				{privacy.WithKey(thirdKey), privacy.WithPreviousKeys(newKey)},
				{privacy.WithKey(thirdKey), privacy.WithPreviousKeys(newKey, oldKey)},
				{privacy.WithKey(thirdKey), privacy.WithPreviousKeys(oldKey)},
				rotated,
			} {
				if c, err := privacy.New(p.keyed(bad...)...); !errors.Is(err, privacy.ErrKeyMismatch) {
					t.Errorf("New with keys that are not the rotations' = %v; want ErrKeyMismatch", err)
					if c != nil {
						c.Close()
					}
				}
			}
			c, err = privacy.New(p.keyed(privacy.WithKey(thirdKey), privacy.WithPreviousKeys(oldKey, newKey))...)
			must(t, err)
			checkStillSuppressed(t, c)
			if _, err := c.Suppress(ctx, erasedOne); err != nil {
				t.Fatal(err)
			}
			if n, err := c.VerifyAudit(ctx); err != nil || n == 0 {
				t.Errorf("VerifyAudit after two rotations = %d, %v", n, err)
			}
		})
	}
}

// TestKeyRotationAuditLogEmptyOrInMemory: a rotation over an empty audit log
// starts it with the rotation record, and a log in memory, begun under the
// new key after a restart, verifies.
func TestKeyRotationAuditLogEmptyOrInMemory(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s := newSite(t, d.dialect)
			p := s.open(t)
			c, err := privacy.New(p.keyed(privacy.WithKey(oldKey))...)
			must(t, err)
			must(t, c.Close())
			must(t, privacy.RotateKey(ctx, newKey, p.keyed(privacy.WithKey(oldKey))...))
			c, err = privacy.New(p.keyed(privacy.WithKey(newKey), privacy.WithPreviousKeys(oldKey))...)
			must(t, err)
			if _, err := c.Suppress(ctx, neverSeen); err != nil {
				t.Fatal(err)
			}
			if n, err := c.VerifyAudit(ctx); err != nil || n < 2 {
				t.Errorf("VerifyAudit after a rotation over an empty log = %d, %v; want the rotation and the suppression", n, err)
			}
			must(t, c.Close())

			// The journal and audit log in memory: what a restart of this
			// process finds empty.
			inMemory := func(extra ...privacy.Option) []privacy.Option {
				return append([]privacy.Option{privacy.WithBackends(p.data), privacy.WithJournal(journal.NewMemJournal()),
					privacy.WithAuditLog(audit.NewMemLog())}, extra...)
			}
			must(t, privacy.RotateKey(ctx, thirdKey, inMemory(privacy.WithKey(newKey), privacy.WithPreviousKeys(oldKey))...))
			c, err = privacy.New(inMemory(privacy.WithKey(thirdKey), privacy.WithPreviousKeys(oldKey, newKey))...)
			must(t, err)
			defer c.Close()
			if _, err := c.Suppress(ctx, erasedOne); err != nil {
				t.Fatal(err)
			}
			if n, err := c.VerifyAudit(ctx); err != nil || n == 0 {
				t.Errorf("VerifyAudit of an in-memory log begun under the newest key = %d, %v; want the suppression's records verified", n, err)
			}
		})
	}
}

// TestKeyRotationStopsAHostStillRunning: a Controller that kept running with
// the old key through a rotation stops, every call failing with
// ErrKeyMismatch, once its claims' tick sees the new check value; it never
// collects a suppressed person after that.
func TestKeyRotationStopsAHostStillRunning(t *testing.T) {
	ctx := t.Context()
	s := newSite(t, testDialects[0].dialect)
	seedSuppressed(t, s, oldKey)
	p := s.open(t)
	const lease = 300 * time.Millisecond
	c, err := privacy.New(p.keyed(privacy.WithKey(oldKey), privacy.WithLease(lease))...)
	must(t, err)
	defer c.Close()
	must(t, privacy.RotateKey(ctx, newKey, p.keyed(privacy.WithKey(oldKey))...))
	deadline := time.Now().Add(20 * lease)
	for {
		err := collectSuppressed(c, ctx)
		if errors.Is(err, privacy.ErrKeyMismatch) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a host running with the old key through a rotation: Collect = %v %v after it; want ErrKeyMismatch within a third of the lease", err, 20*lease)
		}
		time.Sleep(lease / 10)
	}
	for _, call := range []func() error{
		func() error { return collectSuppressed(c, ctx) },
		func() error { _, err := c.Suppress(ctx, erasedOne); return err },
		func() error { _, err := c.Access(ctx, erasedOne); return err },
	} {
		if err := call(); !errors.Is(err, privacy.ErrKeyMismatch) {
			t.Errorf("after the key was rotated: a call = %v; want ErrKeyMismatch", err)
		}
	}
}

func TestWithBackendsTypedNil(t *testing.T) {
	_, err := privacy.New(privacy.WithBackends((*sqlstore.Store)(nil)))
	if !errors.Is(err, privacy.ErrInvalid) {
		t.Errorf("WithBackends((*sqlstore.Store)(nil)) = %v; want ErrInvalid", err)
	}
}

// TestKeyRotationRefusesAHostStillWriting: a host left running with the old
// key through a rotation, before its tick sees the new check value, asks to
// suppress someone: the suppression list refuses the write in its own
// transaction (the key check value is read there, under a lock a rotation
// waits for), the request does not finish, and its audit records are not
// chained after the rotation under the old key. Hosts started with the new
// keys verify the whole chain, and Recover settles the refused request.
// (The request said FINISHED, the suppression was hashed under the old key
// and never matched again, and the audit chain broke for good.)
func TestKeyRotationRefusesAHostStillWriting(t *testing.T) {
	for _, d := range testDialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s := newSite(t, d.dialect)
			seedSuppressed(t, s, oldKey)
			pa := s.open(t)
			a, err := privacy.New(pa.keyed(privacy.WithKey(oldKey), privacy.WithLease(time.Hour))...) // no tick in time
			must(t, err)
			pr := s.open(t)
			must(t, privacy.RotateKey(ctx, newKey, pr.keyed(privacy.WithKey(oldKey))...))
			late := identity.ID{Type: identity.TypeEmail, Value: "objected-during-rotation@example.com"}
			r, err := a.Suppress(ctx, late)
			if !errors.Is(err, privacy.ErrKeyMismatch) || r != nil && r.Status == privacy.Finished {
				t.Errorf("the old-key host's Suppress after the rotation = %+v, %v; want ErrKeyMismatch, not FINISHED", r, err)
			}
			if err := collectSuppressed(a, ctx); !errors.Is(err, privacy.ErrKeyMismatch) {
				t.Errorf("the old-key host after its refused write: Collect = %v; want ErrKeyMismatch", err)
			}
			must(t, a.Close())

			pc := s.open(t)
			c, err := privacy.New(pc.keyed(privacy.WithKey(newKey), privacy.WithPreviousKeys(oldKey))...)
			must(t, err)
			defer c.Close()
			if _, err := c.Recover(ctx); err != nil {
				t.Errorf("Recover = %v", err)
			}
			if n, err := c.VerifyAudit(ctx); err != nil || n == 0 {
				t.Errorf("VerifyAudit after a host ran through the rotation = %d, %v", n, err)
			}
			checkStillSuppressed(t, c)
			// Asked again, on a host with the new keys, it holds.
			if r, err := c.Suppress(ctx, late); err != nil || r.Status != privacy.Finished {
				t.Fatalf("Suppress with the new keys = %+v, %v", r, err)
			}
			err = c.Collect(ctx, privacy.Identify{MessageID: "x1", UserID: "someone-else", Timestamp: time.Now(),
				Traits: map[string]any{"email": late.Value}})
			if !errors.Is(err, privacy.ErrSuppressed) {
				t.Errorf("Collect of the person suppressed with the new keys = %v; want ErrSuppressed", err)
			}
		})
	}
}
