package profile_test

import (
	"context"
	"fmt"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// A sealed in-memory store reads back what it was given, though it holds the
// values sealed; deleting the profile drops its key with it.
func ExampleNewSealedMemStore() {
	ctx := context.Background()
	s := profile.NewSealedMemStore()
	pid := identity.NewProfileID(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))

	tx, _ := s.Begin(ctx)
	_ = tx.Update(ctx, pid, profile.Update{
		Metadata: profile.Metadata{Version: 1},
		Set:      map[string]profile.Trait{"plan": {Value: "pro", Source: profile.SourceIdentify}},
	})
	_ = tx.Commit(ctx)

	p, err := s.Get(ctx, pid)
	fmt.Println(p.Traits["plan"].Value, err)

	tx, _ = s.Begin(ctx)
	_ = tx.Delete(ctx, pid)
	_ = tx.Commit(ctx)
	_, err = s.Get(ctx, pid)
	fmt.Println(err != nil)
	// Output:
	// pro <nil>
	// true
}
