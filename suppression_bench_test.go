package privacy

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"testing"
	"time"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/suppression"
)

// suppressedList returns a MemList holding n suppressed identifiers.
func suppressedList(b *testing.B, n int) *suppression.MemList {
	l := suppression.NewMemList()
	ctx := context.Background()
	const chunk = 100_000
	for start := 0; start < n; start += chunk {
		tx, err := l.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		hs := make([]identity.Hash, 0, chunk)
		for i := start; i < min(start+chunk, n); i++ {
			var x [8]byte
			binary.BigEndian.PutUint64(x[:], uint64(i))
			sum := sha256.Sum256(x[:])
			hs = append(hs, identity.Hash(sum[:len(identity.Hash{})]))
		}
		if err := tx.Add(ctx, hs...); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
	return l
}

// BenchmarkSuppressionCheck10M is the collection path's suppression check with
// 10M suppressed identifiers: for a known person (their profile is checked, no
// hashing) and for an identifier not linked yet (it is hashed and looked up).
func BenchmarkSuppressionCheck10M(b *testing.B) {
	list := populations.getList("10M", func() *suppression.MemList { return suppressedList(b, 10_000_000) })
	ctx := context.Background()
	c, err := New(WithSuppressions(list))
	if err != nil {
		b.Fatal(err)
	}
	known := []identity.Match{
		{ID: identity.ID{Type: identity.TypeUserID, Value: "u42"}, Profile: identity.NewProfileID(time.Now())},
		{ID: identity.ID{Type: identity.TypeAnonymousID, Value: "a1b2c3d4-e5f6-4711-9999-abcdefabcdef"}, Profile: identity.NewProfileID(time.Now())},
	}
	b.Run("known-person", func(b *testing.B) {
		m := known[:1]
		b.ReportAllocs()
		for b.Loop() {
			if err := c.admit(ctx, m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unlinked-identifier", func(b *testing.B) {
		m := []identity.Match{{ID: known[1].ID}}
		b.ReportAllocs()
		for b.Loop() {
			if err := c.admit(ctx, m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
