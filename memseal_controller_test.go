package privacy_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/export"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/internal/memscan"
	"github.com/gdprkit/privacy/profile"
)

// edgeValues are trait values and event properties at the edges of what the
// Controller accepts.
func edgeValues(depth int) map[string]any {
	deep := any("bottom")
	for range depth {
		deep = []any{deep}
	}
	return map[string]any{
		"negzero":   math.Copysign(0, -1),
		"big":       float64(1 << 53),
		"tiny":      5e-324,
		"huge":      1.7976931348623157e308,
		"e21":       1e21,
		"ctrl":      "a\x00b\x1f\u2028\u2029<>&\"\\",
		"empty_map": map[string]any{},
		"empty_arr": []any{},
		"nil_map":   map[string]any(nil),
		"nil_arr":   []any(nil),
		"nested":    map[string]any{"n": map[string]any(nil), "a": []any(nil), "e": map[string]any{}},
		"deep":      deep,
	}
}

func clearAndSealed(t *testing.T, opts ...privacy.Option) (clear, sealed *privacy.Controller) {
	t.Helper()
	var err error
	if clear, err = privacy.New(opts...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { clear.Close() })
	if sealed, err = privacy.New(append(slices.Clone(opts), privacy.WithProfiles(profile.NewSealedMemStore()))...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sealed.Close() })
	return clear, sealed
}

// TestSealedReadsEqualClearReads: the same messages through a
// Controller on the clear MemStore and on the sealed one read back the same.
func TestSealedReadsEqualClearReads(t *testing.T) {
	ctx := context.Background()
	ts := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	clear, sealed := clearAndSealed(t)
	id := identity.ID{Type: "user_id", Value: "u1"}
	for _, c := range []*privacy.Controller{clear, sealed} {
		if err := c.Collect(ctx, privacy.Identify{MessageID: "m1", UserID: "u1", Traits: edgeValues(profile.MaxDepth), Timestamp: ts}); err != nil {
			t.Fatal(err)
		}
		if err := c.Collect(ctx, privacy.Track{MessageID: "m2", UserID: "u1", Event: "E", Properties: edgeValues(profile.MaxDepth - 1), Timestamp: ts.Add(time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	pc, err := clear.Profile(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := sealed.Profile(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range pc.Traits {
		got := ps.Traits[k]
		if !reflect.DeepEqual(want.Value, got.Value) {
			t.Errorf("trait %q: clear store gives %#v, sealed store gives %#v", k, want.Value, got.Value)
		}
	}
	if v, ok := ps.Traits["negzero"].Value.(float64); !ok || !math.Signbit(v) {
		t.Errorf("trait negzero: sealed store gives %#v, want -0", ps.Traits["negzero"].Value)
	}
	ec, err := clear.Events(ctx, id, profile.EventQuery{})
	if err != nil {
		t.Fatal(err)
	}
	es, err := sealed.Events(ctx, id, profile.EventQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ec.Events) != 1 || len(es.Events) != 1 {
		t.Fatalf("events: clear %d, sealed %d; want 1", len(ec.Events), len(es.Events))
	}
	for k, want := range ec.Events[0].Properties {
		if got := es.Events[0].Properties[k]; !reflect.DeepEqual(want, got) {
			t.Errorf("property %q: clear store gives %#v, sealed store gives %#v", k, want, got)
		}
	}
}

// TestSealedAudienceExistsAgreesWithClear: trait('x') exists, evaluated
// from what the store reads back, must not depend on which MemStore is used.
func TestSealedAudienceExistsAgreesWithClear(t *testing.T) {
	ctx := context.Background()
	ts := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	clear, sealed := clearAndSealed(t)
	var members [2][]identity.ProfileID
	for i, c := range []*privacy.Controller{clear, sealed} {
		if err := c.Collect(ctx, privacy.Identify{MessageID: "m1", UserID: "u1", Traits: map[string]any{"address": map[string]any(nil)}, Timestamp: ts}); err != nil {
			t.Fatal(err)
		}
		// Defined after the collection: Refresh evaluates what the store reads back.
		if err := c.DefineAudience(ctx, audience.Definition{Key: "has-address", Query: "trait('address') exists"}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		m, err := c.Members(ctx, "has-address")
		if err != nil {
			t.Fatal(err)
		}
		members[i] = m
	}
	if len(members[0]) != len(members[1]) {
		t.Errorf("audience trait('address') exists: %d member(s) on the clear MemStore, %d on the sealed one", len(members[0]), len(members[1]))
	}
}

// TestSealedExportEqualsClearExport: an access export (JSON, NDJSON,
// CSV) through the sealed store is byte for byte the clear store's, request
// ids aside.
func TestSealedExportEqualsClearExport(t *testing.T) {
	ctx := context.Background()
	ts := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	now := func() time.Time { return ts.Add(time.Hour) }
	clear, sealed := clearAndSealed(t, privacy.WithClock(now))
	id := identity.ID{Type: "user_id", Value: "u1"}
	vals := edgeValues(profile.MaxDepth)
	for _, c := range []*privacy.Controller{clear, sealed} {
		if err := c.Collect(ctx, privacy.Identify{MessageID: "m1", UserID: "u1", AnonymousID: "a1", Traits: vals, Timestamp: ts}); err != nil {
			t.Fatal(err)
		}
		if err := c.Collect(ctx, privacy.Track{MessageID: "m2", AnonymousID: "a2", Event: "E", Properties: edgeValues(profile.MaxDepth - 1), Timestamp: ts.Add(time.Second)}); err != nil {
			t.Fatal(err)
		}
		// a2's profile is merged into u1's.
		if err := c.Collect(ctx, privacy.Identify{MessageID: "m3", UserID: "u1", AnonymousID: "a2", Timestamp: ts.Add(2 * time.Second)}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Rectify(ctx, id, map[string]any{"email": "rect@example.com", "ctrl": nil}); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []export.Format{export.JSON, export.NDJSON} {
		var out [2]bytes.Buffer
		var rids [2]string
		for i, c := range []*privacy.Controller{clear, sealed} {
			r, err := c.Export(ctx, id, &out[i], f)
			if err != nil {
				t.Fatal(err)
			}
			rids[i] = r.ID
		}
		a := strings.ReplaceAll(out[0].String(), rids[0], "RID")
		b := strings.ReplaceAll(out[1].String(), rids[1], "RID")
		// Ids made at random (profile, request) differ between the two.
		ids := regexp.MustCompile(`"(prof|req)_[0-9a-z]+"|"(profile_id|id)":"[^"]*"`)
		a, b = ids.ReplaceAllString(a, "ID"), ids.ReplaceAllString(b, "ID")
		if a != b {
			i := 0
			for i < len(a) && i < len(b) && a[i] == b[i] {
				i++
			}
			t.Errorf("%v export differs at byte %d:\nclear:  %.300s\nsealed: %.300s", f, i, a[max(0, i-100):], b[max(0, i-100):])
		}
	}
}

// Every right and collection path through a Controller on the sealed store,
// concurrently: the store never holds the canary in clear.
func TestSealedControllerHoldsNoCanary(t *testing.T) {
	ctx := context.Background()
	const canary = "canary-Zq81-lin@example.org"
	ts := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	store := profile.NewSealedMemStore()
	c, err := privacy.New(privacy.WithProfiles(store))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.DefineAudience(ctx, audience.Definition{Key: "canaried", Query: "trait('email') = '" + canary + "'"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				u := fmt.Sprintf("u%d", i%4)
				a := fmt.Sprintf("a%d-%d", g, i)
				_ = c.Collect(ctx, privacy.Track{AnonymousID: a, Event: "E", Properties: map[string]any{"email": canary, "n": map[string]any{canary: []any{canary}}}, Timestamp: ts.Add(time.Duration(i) * time.Second)})
				_ = c.Collect(ctx, privacy.Identify{UserID: u, AnonymousID: a, Traits: map[string]any{"email": canary, "addr": map[string]any{"line": canary}}, Timestamp: ts.Add(time.Duration(i) * time.Second)})
				_ = c.CollectBatch(ctx, []privacy.Message{
					privacy.Identify{UserID: u, Traits: map[string]any{"k": []any{canary}}, Timestamp: ts},
					privacy.Track{UserID: u, Event: "F", Properties: map[string]any{"p": canary}, Timestamp: ts},
				})
				switch i % 10 {
				case 3:
					_, _ = c.Rectify(ctx, identity.ID{Type: "user_id", Value: u}, map[string]any{"email": canary + ".rect"})
				case 5:
					_, _ = c.Access(ctx, identity.ID{Type: "user_id", Value: u})
				case 7:
					_, _ = c.Erase(ctx, identity.ID{Type: "anonymous_id", Value: a})
				case 9:
					_, _ = c.Refresh(ctx)
				}
			}
		}()
	}
	wg.Wait()
	if p, err := c.Profile(ctx, identity.ID{Type: "user_id", Value: "u0"}); err != nil || p.Traits["k"].Value == nil {
		t.Fatalf("Profile = %+v, %v", p, err)
	}
	if memscan.Holds(store, canary) {
		t.Error("the sealed store holds the canary in clear")
	}
}
