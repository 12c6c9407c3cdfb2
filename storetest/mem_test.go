package storetest_test

import (
	"context"
	"testing"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/keyring"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/storetest"
	"github.com/gdprkit/privacy/suppression"
)

// memHarness provides the in-memory defaults: the reference every adapter is
// measured against.
type memHarness struct{}

func (memHarness) MakeGraph(context.Context) (identity.Graph, error) {
	return identity.NewMemGraph(), nil
}
func (memHarness) MakeProfiles(context.Context) (profile.Store, error) {
	return profile.NewMemStore(), nil
}
func (memHarness) MakeAudiences(context.Context) (audience.Store, error) {
	return audience.NewMemStore(), nil
}
func (memHarness) MakeSuppressions(context.Context) (suppression.List, error) {
	return suppression.NewMemList(), nil
}
func (memHarness) MakeJournal(context.Context) (journal.Journal, error) {
	return journal.NewMemJournal(), nil
}
func (memHarness) MakeAuditLog(context.Context) (audit.Log, error)  { return audit.NewMemLog(), nil }
func (memHarness) MakeOutbox(context.Context) (outbox.Store, error) { return outbox.NewMemStore(), nil }
func (memHarness) MakeKeyring(context.Context) (keyring.Store, error) {
	return keyring.NewMemStore(), nil
}
func (memHarness) Capabilities() storetest.Capabilities { return storetest.Capabilities{} }
func (memHarness) Close()                               {}

func TestMemoryDefaults(t *testing.T) {
	storetest.RunConformanceTests(t, func(context.Context, *testing.T) (storetest.Harness, error) {
		return memHarness{}, nil
	})
}

// sealedMemHarness is memHarness with the profile store that seals in memory.
type sealedMemHarness struct{ memHarness }

func (sealedMemHarness) MakeProfiles(context.Context) (profile.Store, error) {
	return profile.NewSealedMemStore(), nil
}

func TestSealedMemStore(t *testing.T) {
	storetest.RunConformanceTests(t, func(context.Context, *testing.T) (storetest.Harness, error) {
		return sealedMemHarness{}, nil
	})
}
