package deliver

import (
	"context"
	"log/slog"
	"slices"
	"testing"

	"github.com/gdprkit/privacy/outbox"
)

// settleLog is an outbox.Store that records what is settled.
type settleLog struct {
	outbox.Store
	answers []outbox.Answer
}

func (s *settleLog) Settle(_ context.Context, _ string, answers []outbox.Answer) (int, error) {
	s.answers = append(s.answers, answers...)
	return len(answers), nil
}

// TestDiscardPurgedKeepsTheRestInOrder: the items Purge emptied (neither a
// message nor a deletion) are settled as erased first, the others kept in
// their order; a claim with none is handed back as it is, and the claim
// itself is never changed.
func TestDiscardPurgedKeepsTheRestInOrder(t *testing.T) {
	store := &settleLog{}
	e := &Engine{store: store, ctx: context.Background(), log: slog.New(slog.DiscardHandler), held: map[uint64]bool{}, changed: make(chan struct{})}
	w := &worker{e: e, d: &scripted{name: "crm"}}
	items := []outbox.Item{msg("crm", "p1", "a"), {}, msg("crm", "p1", "b"), {}, msg("crm", "p2", "c")}
	for i := range items {
		items[i].ID = uint64(i + 1)
		e.held[items[i].ID] = true
	}
	claimed := slices.Clone(items)

	kept := w.discardPurged(items)
	var got []uint64
	for _, it := range kept {
		got = append(got, it.ID)
	}
	if want := []uint64{1, 3, 5}; !slices.Equal(got, want) {
		t.Fatalf("kept %v; want %v", got, want)
	}
	if len(store.answers) != 2 || store.answers[0].ID != 2 || store.answers[1].ID != 4 {
		t.Fatalf("settled %+v; want items 2 and 4", store.answers)
	}
	for _, a := range store.answers {
		if a.State != outbox.NotSupported || a.Err != outbox.ErasedFirst || e.held[a.ID] {
			t.Fatalf("purged item settled as %+v (held %v); want NotSupported, ErasedFirst, released", a, e.held[a.ID])
		}
	}
	for i := range items {
		if items[i].ID != claimed[i].ID {
			t.Fatalf("the claim changed: %v", items)
		}
	}

	store.answers = nil
	none := []outbox.Item{msg("crm", "p1", "a"), msg("crm", "p1", "b")}
	if kept := w.discardPurged(none); len(kept) != 2 || &kept[0] != &none[0] || store.answers != nil {
		t.Fatalf("a claim without purged items came back as %v, settling %v", kept, store.answers)
	}
}
