package sqlstore

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/outbox"
	"github.com/gdprkit/privacy/profile"
)

// insertLegacySend writes a message alone in its row as rows written before
// 2026-12-07 hold it: encoding/json's form of destination.Message.
func insertLegacySend(t *testing.T, s *Store, m destination.Message) {
	t.Helper()
	pid := m.ProfileID
	m.ProfileID = ""
	payload, err := encodeJSON(m)
	must(t, err)
	if !strings.HasPrefix(payload, `{"MessageID":`) {
		t.Fatalf("the legacy form starts %.20q", payload)
	}
	_, err = s.db.Exec(s.sql(`INSERT INTO {p}outbox (destination, profile_id, request_id, kind, payload, enqueued, not_before, items, present, held, item_key, state, attempts, last_error)
		VALUES ('d', $1, '', 'send', $2, $3{ts}, $3{ts}, 1, 0, 0, '', 'PENDING', 0, '')`), string(pid), payload, s.ts(rvT0))
	must(t, err)
}

// TestSingleRowsOfEitherFormAreReadAndExpired: a message alone in its row
// is written in the bundles' short form (encodeBundled) since 2026-12-07, a
// third fewer bytes; rows written before hold encoding/json's form of
// destination.Message. A claim reads both to the same message, and expiry
// judges both alike.
func TestSingleRowsOfEitherFormAreReadAndExpired(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		// The maps as a decoder gives them back: numbers in their exact form.
		props, err := decodeValue(`{"sku": "TENT-2P", "total": 249.5, "count": 12345678901234567890, "tags": ["a", "b"]}`)
		must(t, err)
		cx, err := decodeValue(`{"ip": "192.0.2.1", "page": {"path": "/checkout"}}`)
		must(t, err)
		msg := func(id, source string) destination.Message {
			return destination.Message{MessageID: id, Type: destination.TypeTrack, Event: "Order Completed", ProfileID: "use_P",
				IDs:        []identity.ID{{Type: identity.TypeUserID, Value: "u-1"}, {Type: identity.TypeEmail, Value: "a@example.com"}},
				Properties: props.(map[string]any), Context: cx.(map[string]any),
				Timestamp: rvT0, ReceivedAt: rvT0.Add(time.Second), Source: source}
		}
		insertLegacySend(t, s, msg("old-web", "web"))
		rvEnqueue(t, s, []outbox.Item{{Destination: "d", Profile: "use_P", Enqueued: rvT0, Message: ptr(msg("new-web", "web"))}})
		insertLegacySend(t, s, msg("old-app", "app"))
		rvEnqueue(t, s, []outbox.Item{{Destination: "d", Profile: "use_P", Enqueued: rvT0, Message: ptr(msg("new-app", "app"))}})
		var payload string
		must(t, s.db.QueryRow(s.sql(`SELECT payload FROM {p}outbox ORDER BY id LIMIT 1 OFFSET 1`)).Scan(&payload))
		if !strings.HasPrefix(payload, compactSend) {
			t.Fatalf("a new single row's payload starts %.20q; want the short form", payload)
		}

		got := rvClaim(t, s, "A", rvT0, 10)
		if len(got) != 4 {
			t.Fatalf("claimed %d items; want 4", len(got))
		}
		for _, pair := range [][2]int{{0, 1}, {2, 3}} {
			old, cur := *got[pair[0]].Message, *got[pair[1]].Message
			want := msg(old.MessageID, old.Source)
			if !reflect.DeepEqual(old, want) {
				t.Errorf("the legacy row's message\n%#v\nwant\n%#v", old, want)
			}
			cur.MessageID = old.MessageID
			if !reflect.DeepEqual(cur, old) {
				t.Errorf("the short form's message\n%#v\ndiffers from the legacy form's\n%#v", cur, old)
			}
		}
		ids := make([]uint64, len(got))
		for i, it := range got {
			ids[i] = it.ID
		}
		must(t, s.Outbox().Renew(ctx, "A", ids, time.Time{}))

		tx, err := s.Outbox().Begin(ctx)
		must(t, err)
		n, err := tx.(outbox.ExpiringTx).Expire(ctx, []identity.ProfileID{"use_P"}, profile.Cutoffs{Sources: map[string]time.Time{"web": rvT0.Add(time.Hour)}}, rvT0)
		must(t, err)
		must(t, tx.Commit(ctx))
		if n != 2 {
			t.Errorf("Expire dropped %d messages; want the two from source web, one of each form", n)
		}
		if got := messageIDs(rvClaim(t, s, "A", rvT0, 10)); !reflect.DeepEqual(got, []string{"old-app", "new-app"}) {
			t.Errorf("after expiry the outbox holds %v; want old-app, new-app", got)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// FuzzDecodeSend: a single row's message in the short form decodes by hand
// as encoding/json decodes it, or is left to encoding/json, which decodes
// or refuses it; the legacy form goes to encoding/json.
func FuzzDecodeSend(f *testing.F) {
	ts := time.Date(2026, 12, 7, 10, 0, 0, 123456789, time.UTC)
	for _, m := range []destination.Message{
		{MessageID: "m1", Type: destination.TypeTrack, Event: "Order Completed", IDs: []identity.ID{{Type: "user_id", Value: "u1"}},
			Properties: map[string]any{"sku": "TENT-2P", "price": 249.0, "nested": map[string]any{"a": []any{1.0, "x"}}}, Timestamp: ts},
		{MessageID: "q\"\\\n é", Type: destination.TypeIdentify, IDs: []identity.ID{}, Traits: map[string]any{"email": nil}, Context: map[string]any{"ip": "203.0.113.9"},
			ReceivedAt: ts, Source: "src", Timestamp: ts.In(time.FixedZone("X", 3600))},
	} {
		short, err := encodeBundled(&m, 0)
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(short))
		legacy, err := encodeJSON(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(legacy))
	}
	f.Add([]byte(`{"id":"x","ID":"y"}`))
	f.Add([]byte(`{"id":"x","tr":{"a":[[[]]]}} `))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeSend(string(data))
		var want destination.Message
		var werr error
		if strings.HasPrefix(string(data), compactSend) {
			var b bundledMessage
			var numbers bool
			if numbers, werr = profile.UnmarshalNumbers(data, &b); werr == nil && numbers {
				werr = profile.ExactMaps(&b.Traits, &b.Properties, &b.Context)
			}
			if werr == nil {
				want = *b.message("")
			}
		} else {
			var numbers bool
			if numbers, werr = profile.UnmarshalNumbers(data, &want); werr == nil && numbers {
				werr = profile.ExactMaps(&want.Traits, &want.Properties, &want.Context)
			}
		}
		if (err == nil) != (werr == nil) {
			t.Fatalf("decodeSend(%q): %v; encoding/json: %v", data, err, werr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeSend(%q) = %+v; encoding/json reads %+v", data, got, want)
		}
	})
}
