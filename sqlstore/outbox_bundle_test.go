package sqlstore

import (
	"database/sql"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/outbox"
)

// bundledByReflection is what encodeBundled must match: encoding/json's
// encoding of the bundledMessage.
func bundledByReflection(m *destination.Message) (string, error) {
	b := bundledMessage{MessageID: m.MessageID, Type: m.Type, Event: m.Event, Traits: m.Traits, Properties: m.Properties, Timestamp: m.Timestamp,
		Name: m.Name, Category: m.Category, GroupID: m.GroupID, PreviousID: m.PreviousID, Context: m.Context,
		ReceivedAt: m.ReceivedAt, Source: m.Source}
	if m.IDs != nil {
		b.IDs = make([]bundledID, len(m.IDs))
		for i, id := range m.IDs {
			b.IDs[i] = bundledID(id)
		}
	}
	return encodeJSON(b)
}

// checkBundled fails unless encodeBundled's text is valid JSON that decodes
// as encoding/json's own encoding of the message does, back to the message.
func checkBundled(t *testing.T, m *destination.Message) {
	t.Helper()
	got, err := encodeBundled(m, 0)
	want, werr := bundledByReflection(m)
	a, ok := sameAsEncodingJSON(t, "encodeBundled", got, err, want, werr, outbox.ErrInvalid, unmarshalled[bundledMessage])
	if !ok {
		return
	}
	// The claim's decoder reads it by hand, as encoding/json does.
	bundle := bundlePayload([]string{got, got})
	hand, err := decodeBundle([]byte(bundle))
	if err != nil {
		t.Fatalf("decodeBundle(%s) left encodeBundled's own text to encoding/json: %v", bundle, err)
	}
	if ref, err := decodeBundleReflecting(bundle); err != nil || !reflect.DeepEqual(hand, ref) {
		t.Fatalf("decodeBundle(%s) = %+v; encoding/json's %+v, %v", bundle, hand, ref, err)
	}
	// Back to a message (strings as encoding/json reads them: invalid
	// UTF-8 replaced).
	back := a.message(m.ProfileID)
	if back.MessageID != a.MessageID || back.Event != a.Event || !back.Timestamp.Equal(m.Timestamp) || len(back.IDs) != len(m.IDs) ||
		back.Name != m.Name || back.Category != m.Category || back.GroupID != m.GroupID || back.PreviousID != m.PreviousID ||
		back.Source != a.Source || !back.ReceivedAt.Equal(m.ReceivedAt) ||
		!reflect.DeepEqual(back.Context, nilIfEmpty(m.Context)) {
		t.Fatalf("message back %+v; want %+v", back, m)
	}
}

func TestEncodeBundled(t *testing.T) {
	ts := time.Date(2026, 12, 6, 10, 0, 0, 123456789, time.UTC)
	for _, m := range []destination.Message{
		{MessageID: "m1", Type: destination.TypeTrack, Event: "Order Completed", IDs: []identity.ID{{Type: "user_id", Value: "u1"}},
			Properties: map[string]any{"sku": "TENT-2P", "price": 249.0, "nested": map[string]any{"a": []any{1.0, "x"}}}, Timestamp: ts},
		{MessageID: "m2", Type: destination.TypeIdentify, Traits: map[string]any{"email": nil, "plan": "pro"}, Timestamp: ts.In(time.FixedZone("X", 3600))},
		{MessageID: "quote\" back\\slash \n\r\t\x01\x1f <html>&", Type: "track", Event: "\u2028\u2029 é 日本", IDs: []identity.ID{}, Traits: map[string]any{}, Timestamp: ts},
		{MessageID: "bad \xff\xfe utf8", Type: "track", Event: "x", Timestamp: time.Time{}},
		{MessageID: "far", Type: "track", Timestamp: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{MessageID: "before", Type: "track", Timestamp: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
		{MessageID: "p1", Type: destination.TypePage, Name: "Pricing \"x\"", Category: "Docs", Properties: map[string]any{"name": "Pricing"},
			Context: map[string]any{"ip": "203.0.113.9", "page": map[string]any{"url": "https://x.example/?a=1&b=<2>"}}, Timestamp: ts},
		{MessageID: "g1", Type: destination.TypeGroup, GroupID: "acme\n", Traits: map[string]any{"plan": "enterprise"}, Context: map[string]any{}, Timestamp: ts},
		{MessageID: "a1", Type: destination.TypeAlias, PreviousID: "anon-1", Timestamp: ts},
		{MessageID: "s1", Type: destination.TypeScreen, Name: "Home", Source: "ios \"app\"", ReceivedAt: ts.Add(time.Second), Timestamp: ts},
		{MessageID: "late", Type: "track", ReceivedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Timestamp: ts},
	} {
		checkBundled(t, &m)
	}
}

func FuzzEncodeBundled(f *testing.F) {
	f.Add("m1", "Order Completed", "user_id", "u1", "sku", "TENT-2P", int64(0))
	f.Add("q\"\\\n\x00", "\u2028", "email", "a@b.c", "k\xff", "\xed\xa0\x80", int64(1<<62))
	f.Fuzz(func(t *testing.T, id, event, idType, idValue, key, value string, nanos int64) {
		m := &destination.Message{MessageID: id, Type: "track", Event: event, IDs: []identity.ID{{Type: idType, Value: idValue}},
			Properties: map[string]any{key: value}, Timestamp: time.Unix(0, nanos).UTC(), Source: value, ReceivedAt: time.Unix(0, nanos/2)}
		checkBundled(t, m)
	})
}

// nilIfEmpty is m, or nil when m is empty: a bundle leaves an empty
// context out.
func nilIfEmpty(m map[string]any) map[string]any {
	if len(m) == 0 {
		return nil
	}
	return m
}

// FuzzDecodeBundle: what decodeBundle reads by hand, encoding/json reads
// too, as the same messages; what it leaves, it leaves with errNotByHand.
func FuzzDecodeBundle(f *testing.F) {
	ts := time.Date(2026, 12, 6, 10, 0, 0, 123456789, time.UTC)
	for _, m := range []destination.Message{
		{MessageID: "m1", Type: destination.TypeTrack, Event: "Order Completed", IDs: []identity.ID{{Type: "user_id", Value: "u1"}},
			Properties: map[string]any{"sku": "TENT-2P", "price": 249.0, "big": json.Number("9007199254740993"), "nested": map[string]any{"a": []any{1.0, "x"}}}, Timestamp: ts},
		{MessageID: "q\"\\\n é", Type: destination.TypeIdentify, IDs: []identity.ID{}, Traits: map[string]any{"email": nil}, Context: map[string]any{"ip": "203.0.113.9"},
			ReceivedAt: ts, Source: "src", Timestamp: ts.In(time.FixedZone("X", 3600))},
	} {
		one, err := encodeBundled(&m, 3)
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(bundlePayload([]string{one, one})))
	}
	f.Add([]byte(`[{"id":"x","ID":"y"}]`))
	f.Add([]byte(`[{"ts":"2026-12-06T10:00:00\u005a"}]`)) // time.Time's UnmarshalJSON does not unescape
	f.Add([]byte(`[null,{"ids":[null,{"t":"a","v":null}],"a":2,"tr":null}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		hand, err := decodeBundle(data)
		if err != nil {
			if !errors.Is(err, errNotByHand) {
				t.Fatalf("decodeBundle error %v; want errNotByHand", err)
			}
			return
		}
		ref, err := decodeBundleReflecting(string(data))
		if err != nil {
			t.Fatalf("decodeBundle read %q as %+v; encoding/json refuses it: %v", data, hand, err)
		}
		if !reflect.DeepEqual(hand, ref) {
			t.Fatalf("decodeBundle read %q as %+v; encoding/json as %+v", data, hand, ref)
		}
	})
}

// TestDecodeBundleNestingCountsFromTheBundle: encoding/json bounds nesting
// at 10,000 levels counted from the top of the document, so a bundle whose
// trait map holds 9,998 nested arrays (10,001 levels in all: the bundle's
// array, the message's object, the map, 9,998 more) is refused by it.
// decodeBundle must leave it to encoding/json, not read it.
func TestDecodeBundleNestingCountsFromTheBundle(t *testing.T) {
	for _, depth := range []int{9997, 9998} {
		text := `[{"tr":{"x":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}}]`
		_, werr := decodeBundleReflecting(text)
		msgs, err := decodeBundle([]byte(text))
		if (werr == nil) != (err == nil) {
			t.Errorf("%d arrays in a map: decodeBundle read %d messages, %v; encoding/json: %v", depth, len(msgs), err, werr)
		}
	}
}

// TestClaimOfAnUndecodableBundleQuotesNoValue: a stored bundle neither
// decoder reads is refused with an error that names what was wrong, not
// the values it holds (a person's).
func TestClaimOfAnUndecodableBundleQuotesNoValue(t *testing.T) {
	const canary = "someone@example.com"
	for _, text := range []string{
		`[{"id":"m1","ts":"` + canary + `"}]`,
		`[{"id":"` + canary + `","a":1234.5678}]`,
		`[{"id":"` + canary + `","p":"` + canary + `"}]`,
		`[{"id":"` + canary + `"` + canary + `}]`,
	} {
		_, err := appendBundle(nil, nil, outbox.Item{Destination: "d"}, 7, sql.NullString{String: text, Valid: true}, firstSlots(1))
		if err == nil {
			t.Fatalf("appendBundle(%s) read it", text)
		}
		if strings.Contains(err.Error(), canary) || strings.Contains(err.Error(), "1234") || !strings.Contains(err.Error(), "row 7") {
			t.Errorf("appendBundle(%s) error %q: want the row named and no value quoted", text, err)
		}
	}
}
