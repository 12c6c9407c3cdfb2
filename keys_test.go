package privacy_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/suppression"
)

// memBackends provides some backends, as a store does for WithBackends.
type memBackends struct {
	profiles *profile.MemStore
	supp     suppression.List
	journal  *journal.MemJournal
	audit    *audit.MemLog
	outbox   *outbox.MemStore
}

func (b *memBackends) Profiles() profile.Store        { return b.profiles }
func (b *memBackends) Suppressions() suppression.List { return b.supp }
func (b *memBackends) Journal() journal.Journal       { return b.journal }
func (b *memBackends) AuditLog() audit.Log            { return b.audit }
func (b *memBackends) Outbox() outbox.Store           { return b.outbox }

func newMemBackends() *memBackends {
	return &memBackends{profiles: profile.NewMemStore(), supp: suppression.NewMemList(), journal: journal.NewMemJournal(),
		audit: audit.NewMemLog(), outbox: outbox.NewMemStore()}
}

// nilProfiles returns a nil profile store.
type nilProfiles struct{}

func (nilProfiles) Profiles() profile.Store { return nil }

func TestWithBackendsWiresWhatTheStoreProvides(t *testing.T) {
	ctx := context.Background()
	b := newMemBackends()
	c, err := privacy.New(privacy.WithBackends(b))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Collect(ctx, privacy.Identify{MessageID: "m1", UserID: "ada", Traits: map[string]any{"plan": "pro"}, Timestamp: t0}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Suppress(ctx, user("bob")); err != nil {
		t.Fatal(err)
	}
	if n := b.profiles.Len(); n != 1 {
		t.Errorf("the store's profiles hold %d; want ada's profile", n)
	}
	if ids, _, err := b.supp.Len(ctx); err != nil || ids != 1 {
		t.Errorf("the store's suppression list holds %d identifiers, %v; want bob's", ids, err)
	}
	if _, ok, err := b.audit.Last(ctx); err != nil || !ok {
		t.Errorf("the store's audit log is empty (%v); want the suppression recorded", err)
	}

	// An option after it replaces what it set.
	other := suppression.NewMemList()
	c2, err := privacy.New(privacy.WithBackends(newMemBackends()), privacy.WithSuppressions(other))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.Suppress(ctx, user("bob")); err != nil {
		t.Fatal(err)
	}
	if ids, _, _ := other.Len(ctx); ids != 1 {
		t.Errorf("the list given after WithBackends holds %d identifiers; want bob's", ids)
	}

	for name, store := range map[string]any{"nil": nil, "a store with no backend": struct{}{}, "a nil backend": nilProfiles{}} {
		_, err := privacy.New(privacy.WithBackends(store))
		if !errors.Is(err, privacy.ErrInvalid) || !strings.Contains(err.Error(), "WithBackends") {
			t.Errorf("WithBackends(%s) = %v; want ErrInvalid naming WithBackends", name, err)
		}
	}
}

// opaqueList is a suppression list New cannot tell is in memory.
type opaqueList struct{ suppression.List }

func TestNewRefusesDurableBackendsWithoutAKey(t *testing.T) {
	for name, opt := range map[string]privacy.Option{
		"suppression list": privacy.WithSuppressions(opaqueList{suppression.NewMemList()}),
		"journal":          privacy.WithJournal(struct{ journal.Journal }{journal.NewMemJournal()}),
		"audit log":        privacy.WithAuditLog(struct{ audit.Log }{audit.NewMemLog()}),
	} {
		_, err := privacy.New(opt)
		if !errors.Is(err, privacy.ErrInvalid) || !strings.Contains(err.Error(), "WithKey is required") || !strings.Contains(err.Error(), name) {
			t.Errorf("a durable %s without WithKey: New = %v; want ErrInvalid saying WithKey is required for the %s", name, err, name)
		}
		c, err := privacy.New(opt, privacy.WithKey(worldKey))
		if err != nil {
			t.Errorf("a durable %s with WithKey: New = %v", name, err)
			continue
		}
		c.Close()
	}
	// The in-memory defaults go with the process: no key needed.
	c, err := privacy.New()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := privacy.New(privacy.WithPreviousKeys(worldKey)); !errors.Is(err, privacy.ErrInvalid) {
		t.Errorf("WithPreviousKeys without WithKey: New = %v; want ErrInvalid", err)
	}
	if _, err := privacy.New(privacy.WithKey(worldKey), privacy.WithPreviousKeys([]byte("short"))); !errors.Is(err, privacy.ErrInvalid) {
		t.Errorf("a short previous key: New = %v; want ErrInvalid", err)
	}
}

// TestKeyMismatchOnSharedBackends: two Controllers sharing backends with
// different keys would each miss the other's suppressions; the second is
// refused, on the suppression list's check value and on the audit chain.
func TestKeyMismatchOnSharedBackends(t *testing.T) {
	ctx := context.Background()
	list, log := suppression.NewMemList(), audit.NewMemLog()
	a, err := privacy.New(privacy.WithSuppressions(list), privacy.WithAuditLog(log), privacy.WithKey(worldKey))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Suppress(ctx, user("ada")); err != nil {
		t.Fatal(err)
	}
	other := []byte("another key, as long as the first")
	if _, err := privacy.New(privacy.WithSuppressions(list), privacy.WithKey(other)); !errors.Is(err, privacy.ErrKeyMismatch) {
		t.Errorf("the same list, another key: New = %v; want ErrKeyMismatch", err)
	}
	if _, err := privacy.New(privacy.WithAuditLog(log), privacy.WithKey(other)); !errors.Is(err, privacy.ErrKeyMismatch) {
		t.Errorf("the same audit log, another key: New = %v; want ErrKeyMismatch", err)
	}
}

// TestRotateKeyInMemory: a rotation over in-memory backends carries the
// suppressions over; the audit chain verifies across it.
func TestRotateKeyInMemory(t *testing.T) {
	ctx := context.Background()
	b := newMemBackends()
	a, err := privacy.New(privacy.WithBackends(b), privacy.WithKey(worldKey))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Suppress(ctx, user("ada")); err != nil {
		t.Fatal(err)
	}
	a.Close()
	next := []byte("the next key, thirty-two bytes!!")
	if err := privacy.RotateKey(ctx, next, privacy.WithBackends(b)); !errors.Is(err, privacy.ErrInvalid) {
		t.Errorf("RotateKey without the current key = %v; want ErrInvalid", err)
	}
	if err := privacy.RotateKey(ctx, next, privacy.WithBackends(b), privacy.WithKey(worldKey)); err != nil {
		t.Fatal(err)
	}
	c, err := privacy.New(privacy.WithBackends(b), privacy.WithKey(next), privacy.WithPreviousKeys(worldKey))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Collect(ctx, privacy.Identify{MessageID: "m9", UserID: "ada", Timestamp: t0.Add(time.Hour)})
	if !errors.Is(err, privacy.ErrSuppressed) {
		t.Errorf("Collect of the suppressed person after the rotation = %v; want ErrSuppressed", err)
	}
	if n, err := c.VerifyAudit(ctx); err != nil || n < 2 {
		t.Errorf("VerifyAudit after the rotation = %d, %v; want the chain verified across it", n, err)
	}
}
