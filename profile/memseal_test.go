package profile

import (
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/internal/memscan"
	"github.com/gdprkit/privacy/keyring"
	"github.com/google/go-cmp/cmp"
)

// canary is a value that must never be found in a sealed store's memory.
const canary = "canary-7Qx2-ada@example.com"

// canaryUpdate writes the canary as a trait, nested in another, and as an
// event property.
func canaryUpdate(id string) Update {
	e := &Event{MessageID: id, Name: "Signed Up", Timestamp: at(0), ReceivedAt: at(1),
		Properties: map[string]any{"email": canary, "nested": []any{map[string]any{"deep": canary}, 2.5, true, nil}},
		Type:       "page", Source: "web",
		Context: map[string]any{"ip": "203.0.113.7", "traits": map[string]any{"email": canary}}}
	return Update{
		Metadata:  Metadata{Version: 1, LastMessageID: id},
		Set:       map[string]Trait{"email": {Value: canary, Source: SourceIdentify, UpdatedAt: at(0)}, "address": {Value: map[string]any{"line": canary}, Source: "crm"}},
		MessageID: id,
		Event:     e,
	}
}

// holds reports whether the store's memory holds s anywhere.
func holds(s *MemStore, str string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return memscan.Holds(s.profiles, str)
}

func TestSealedMemStoreHoldsNoValueInClear(t *testing.T) {
	ctx := t.Context()
	clearStore, sealed := NewMemStore(), NewSealedMemStore()
	for _, s := range []*MemStore{clearStore, sealed} {
		mustUpdate(t, s, pidA, canaryUpdate("m1"))
	}
	// The search can fail: the store that keeps values in clear holds the canary.
	if !holds(clearStore, canary) {
		t.Fatal("the memory search does not find the canary in the store that keeps it in clear")
	}
	if holds(sealed, canary) {
		t.Error("the sealed store holds the canary in clear")
	}
	// Reads open transparently, and give what the clear store gives.
	for _, s := range []*MemStore{clearStore, sealed} {
		p, err := s.Get(ctx, pidA)
		if err != nil {
			t.Fatal(err)
		}
		want := canaryUpdate("m1")
		if diff := cmp.Diff(want.Set, p.Traits); diff != "" {
			t.Errorf("sealed=%v: traits (-want +got):\n%s", s.sealed, diff)
		}
		page, err := s.Events(ctx, pidA, EventQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]Event{*want.Event}, page.Events); diff != "" {
			t.Errorf("sealed=%v: events (-want +got):\n%s", s.sealed, diff)
		}
		tx := openTx(t, s)
		got, err := tx.(TraitPicker).PickTraits(ctx, pidA, []string{"email", "none"}, nil)
		if err != nil || !reflect.DeepEqual(got, []any{canary, nil}) {
			t.Errorf("sealed=%v: PickTraits = %v, %v; want [%s <nil>]", s.sealed, got, err, canary)
		}
		batch, err := tx.(BatchTx).PickTraitsBatch(ctx, []identity.ProfileID{pidA}, []string{"email"})
		if err != nil || !reflect.DeepEqual(batch[pidA], []any{canary}) {
			t.Errorf("sealed=%v: PickTraitsBatch = %v, %v; want [%s]", s.sealed, batch, err, canary)
		}
		_ = tx.Rollback(ctx)
	}
	// Reading gave out copies: the store still holds no clear value.
	if holds(sealed, canary) {
		t.Error("after reads, the sealed store holds the canary in clear")
	}
}

func TestSealedMemStoreBindsValuesToTheirProfileAndField(t *testing.T) {
	ctx := t.Context()
	s := NewSealedMemStore()
	mustUpdate(t, s, pidA, canaryUpdate("m1"))
	mustUpdate(t, s, pidB, Update{Metadata: Metadata{Version: 1}, Set: map[string]Trait{"plan": {Value: "pro"}}})
	s.mu.Lock()
	a, b := s.profiles[pidA], s.profiles[pidB]
	moved := a.traits["email"]
	s.mu.Unlock()

	for _, tc := range []struct {
		name   string
		tamper func()
		read   func() error
	}{
		{"a trait moved to another profile", func() { b.traits["email"] = moved },
			func() error { _, err := s.Get(ctx, pidB); return err }},
		{"a trait moved to another field", func() { delete(b.traits, "email"); a.traits["name"] = moved },
			func() error { _, err := s.Get(ctx, pidA); return err }},
		{"properties moved to another event", func() {
			delete(a.traits, "name")
			a.insert(Event{MessageID: "m2", Name: "Copied", Timestamp: at(5)}, nil)
			a.props["m2"] = a.props["m1"]
		}, func() error { _, err := s.Events(ctx, pidA, EventQuery{}); return err }},
	} {
		s.mu.Lock()
		tc.tamper()
		s.mu.Unlock()
		err := tc.read()
		if !errors.Is(err, keyring.ErrUndecryptable) {
			t.Errorf("%s: read error = %v, want keyring.ErrUndecryptable", tc.name, err)
		}
		if err != nil && strings.Contains(err.Error(), canary) {
			t.Errorf("%s: the error carries the value: %v", tc.name, err)
		}
	}
}

func TestSealedMemStoreMergeResealsUnderTheKeptKey(t *testing.T) {
	ctx := t.Context()
	s := NewSealedMemStore()
	mustUpdate(t, s, pidA, track(1, event("m1", "a", 1)))
	mustUpdate(t, s, pidB, canaryUpdate("m2"))
	inTx(t, s, func(tx Tx) error { return tx.Merge(ctx, pidA, pidB) })

	s.mu.RLock()
	into := s.profiles[pidA]
	_, fromLeft := s.profiles[pidB]
	sealedM2 := into.props["m2"]
	s.mu.RUnlock()
	if fromLeft {
		t.Fatal("the merged profile is still stored")
	}
	// The moved event's properties open under the kept profile's key.
	if _, err := into.key.Open(sealedEventField("m2"), sealedM2); err != nil {
		t.Fatalf("the moved event's properties do not open under the kept profile's key: %v", err)
	}
	page, err := s.Events(ctx, pidA, EventQuery{Sort: Asc})
	if err != nil {
		t.Fatal(err)
	}
	want := []Event{*canaryUpdate("m2").Event, *event("m1", "a", 1)} // by timestamp
	if diff := cmp.Diff(want, page.Events); diff != "" {
		t.Errorf("merged events (-want +got):\n%s", diff)
	}
	if holds(s, canary) {
		t.Error("after the merge, the store holds the canary in clear")
	}
}

func TestSealedMemStoreTwoTransactionsCreatingOneProfile(t *testing.T) {
	ctx := t.Context()
	s := NewSealedMemStore()
	// Both stage before either commits: each makes a key of its own, and the
	// second to commit lands on the first's profile and key.
	tx1, tx2 := openTx(t, s), openTx(t, s)
	if err := tx1.Update(ctx, pidA, Update{Metadata: Metadata{Version: 1}, Set: map[string]Trait{"one": {Value: "1"}}}); err != nil {
		t.Fatal(err)
	}
	if err := tx2.Update(ctx, pidA, track(2, event("m1", "e", 1))); err != nil {
		t.Fatal(err)
	}
	for _, tx := range []Tx{tx1, tx2} {
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.Get(ctx, pidA)
	if err != nil || p.Traits["one"].Value != "1" {
		t.Fatalf("Get = %+v, %v; want trait one=1", p, err)
	}
	page, err := s.Events(ctx, pidA, EventQuery{})
	if err != nil || len(page.Events) != 1 || page.Events[0].Properties["id"] != "m1" {
		t.Fatalf("Events = %+v, %v; want m1 with its properties", page, err)
	}
}

func TestSealedMemStoreRefusesWhatIsNotJSONAndChangesNothing(t *testing.T) {
	ctx := t.Context()
	s := NewSealedMemStore()
	mustUpdate(t, s, pidA, track(1, event("m1", "a", 1)))
	bad := map[string]any{"email": canary, "score": math.NaN()}

	tx := openTx(t, s)
	err := tx.Update(ctx, pidA, Update{Metadata: Metadata{Version: 2}, Set: map[string]Trait{"x": {Value: bad}}})
	if !errors.Is(err, ErrInvalid) || strings.Contains(err.Error(), canary) {
		t.Errorf("Update of a value that is not JSON: %v; want ErrInvalid, without the value", err)
	}
	updates := []BatchUpdate{
		{Profile: pidA, Update: track(2, event("m2", "b", 2))},
		{Profile: pidB, Update: Update{MessageID: "m3", Event: &Event{MessageID: "m3", Name: "c", Properties: bad}}},
	}
	dup, err := tx.(BatchTx).UpdateBatch(ctx, updates, []bool{true})
	if !errors.Is(err, ErrInvalid) || strings.Contains(err.Error(), canary) {
		t.Errorf("UpdateBatch with a value that is not JSON: %v; want ErrInvalid, without the value", err)
	}
	if !slices.Equal(dup, []bool{true}) {
		t.Errorf("UpdateBatch answered %v for a batch it refused; want the slice as given", dup)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if meta, err := s.Metadata(ctx, pidA); err != nil || meta.Version != 1 {
		t.Errorf("after refused writes, metadata = %+v, %v; want version 1", meta, err)
	}
	if _, err := s.Get(ctx, pidB); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused batch created a profile: %v", err)
	}
}
