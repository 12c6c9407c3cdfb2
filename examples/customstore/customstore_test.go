package main

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/audit"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/journal"
	"github.com/gdprkit/privacy/profile"
	"github.com/gdprkit/privacy/storetest"
	"github.com/gdprkit/privacy/suppression"
)

// harness gives the conformance suite a fresh Store for every check. The
// adapter provides profiles only: every other Make method says so, and the
// suite skips those backends' checks with the reason (and runs its Controller
// checks with the in-memory defaults in their place).
type harness struct{}

// notProvided is the error of the backends this adapter does not implement.
func notProvided(what string) error {
	return fmt.Errorf("%w: the customstore example implements only the profile store, not the %s", storetest.ErrNotImplemented, what)
}

func (harness) MakeProfiles(context.Context) (profile.Store, error) { return NewStore(), nil }
func (harness) MakeGraph(context.Context) (identity.Graph, error) {
	return nil, notProvided("identity graph")
}
func (harness) MakeAudiences(context.Context) (audience.Store, error) {
	return nil, notProvided("audience store")
}
func (harness) MakeSuppressions(context.Context) (suppression.List, error) {
	return nil, notProvided("suppression list")
}
func (harness) MakeJournal(context.Context) (journal.Journal, error) {
	return nil, notProvided("journal")
}
func (harness) MakeAuditLog(context.Context) (audit.Log, error) { return nil, notProvided("audit log") }

// Capabilities declares nothing missing: the Store isolates transactions and
// serves any number of them at once.
func (harness) Capabilities() storetest.Capabilities { return storetest.Capabilities{} }

// Close has nothing to release: the Store is garbage once the check ends.
func (harness) Close() {}

func TestConformance(t *testing.T) {
	storetest.RunConformanceTests(t, func(context.Context, *testing.T) (storetest.Harness, error) {
		return harness{}, nil
	})
}

// The program's run, collecting one person and erasing them.
func Example() {
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Println(err)
	}
	// Output:
	// custom store after collection: 1 profile(s), 2 event(s)
	// profile: plan pro, 3 identifiers, version 3
	// event: Product Viewed
	// event: Order Completed
	// erasure: FINISHED
	//   backend suppression FINISHED
	//   backend identity FINISHED
	//   backend profiles FINISHED
	//   backend audiences FINISHED
	//   backend outbox FINISHED
	//   destination crm FINISHED
	// custom store after erasure: 0 profile(s), 0 event(s)
	// profile found: false
	// identifiers forwarded to crm: 3
}
