package sqlstore

import (
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

// checkSend fails unless encodeSend refuses what encoding/json refuses, and
// otherwise writes valid JSON that decodes to what encoding/json's own
// encoding of the message decodes to: a release that encodes with
// encoding/json reads it alike.
func checkSend(t *testing.T, m destination.Message) {
	t.Helper()
	m.ProfileID = ""
	got, err := encodeSend(&m)
	want, werr := encodeJSON(m)
	a, ok := sameAsEncodingJSON(t, "encodeSend", got, err, want, werr, outbox.ErrInvalid, decodeSendReflecting)
	if !ok {
		return
	}
	// The claim's decoder reads both by hand, as encoding/json does.
	for _, text := range []string{got, want} {
		hand, err := decodeSendByHand([]byte(text))
		if err != nil {
			t.Fatalf("decodeSendByHand(%s) left it to encoding/json: %v", text, err)
		}
		if m := *hand.message(""); !reflect.DeepEqual(m, a) {
			t.Fatalf("decodeSendByHand(%s) = %+v; encoding/json's %+v", text, m, a)
		}
	}
}

// FuzzDecodeSend: what decodeSendByHand reads, encoding/json reads too, as
// the same message; what it leaves, it leaves with errNotByHand.
func FuzzDecodeSend(f *testing.F) {
	for _, m := range []destination.Message{benchSend(), {MessageID: "q\"\\\n é", Type: destination.TypeIdentify, IDs: []identity.ID{},
		Traits: map[string]any{"email": nil}, Context: map[string]any{"ip": "203.0.113.9"}, Timestamp: time.Date(2026, 12, 7, 0, 0, 0, 1, time.FixedZone("X", 3600))}} {
		text, err := encodeSend(&m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(text))
		if text, err = encodeJSON(m); err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(text))
	}
	f.Add([]byte(`{"MessageID":"x","messageid":"y"}`))
	f.Add([]byte(`{"Timestamp":"2026-12-06T10:00:00\u005a"}`)) // time.Time's UnmarshalJSON does not unescape
	f.Add([]byte(`{"IDs":[null,{"Type":"a","Value":null}],"ProfileID":"p","Traits":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		hand, err := decodeSendByHand(data)
		if err != nil {
			if !errors.Is(err, errNotByHand) {
				t.Fatalf("decodeSendByHand error %v; want errNotByHand", err)
			}
			return
		}
		ref, err := decodeSendReflecting(data)
		if err != nil {
			t.Fatalf("decodeSendByHand read %q as %+v; encoding/json refuses it: %v", data, hand, err)
		}
		ref.ProfileID = ""
		if got := *hand.message(""); !reflect.DeepEqual(got, ref) {
			t.Fatalf("decodeSendByHand read %q as %+v; encoding/json as %+v", data, got, ref)
		}
	})
}

// TestEncodeSend: a message alone in its row, written by hand, reads back
// as encoding/json's encoding of it does, nil and empty maps and lists
// apart; what encoding/json refuses (a year past 9999, a zone a day off
// UTC) is refused.
func TestEncodeSend(t *testing.T) {
	ts := time.Date(2026, 12, 7, 10, 0, 0, 123456789, time.UTC)
	big, err := decodeValue(`{"n": 12345678901234567890, "f": 1e400, "x": [1, 2.5, "three", null, true, {"y": {}}]}`)
	must(t, err)
	for _, m := range []destination.Message{
		{MessageID: "m1", Type: destination.TypeTrack, Event: "Order Completed", IDs: []identity.ID{{Type: "user_id", Value: "u1"}},
			Properties: map[string]any{"sku": "TENT-2P", "price": 249.0, "nested": map[string]any{"a": []any{1.0, "x"}}}, Timestamp: ts},
		{MessageID: "m2", Type: destination.TypeIdentify, Traits: map[string]any{"email": nil, "plan": "pro"}, Timestamp: ts.In(time.FixedZone("X", 3600))},
		{MessageID: "quote\" back\\slash \n\r\t\x01\x1f <html>&", Type: "track", Event: "\u2028\u2029 é 日本", IDs: []identity.ID{}, Traits: map[string]any{},
			Properties: map[string]any{}, Context: map[string]any{}, Timestamp: ts},
		{MessageID: "bad \xff\xfe utf8", Type: "track", Event: "x", Properties: map[string]any{"k\xff": "v\xfe"}, Timestamp: time.Time{}},
		{MessageID: "big", Type: "track", Properties: big.(map[string]any), Context: map[string]any{"ip": "203.0.113.9", "page": map[string]any{"url": "https://x.example/?a=1&b=<2>"}}, Timestamp: ts},
		{MessageID: "odd types", Type: "track", Properties: map[string]any{"i": 7, "u": uint64(1 << 63), "s": []string{"a"}, "m": map[string]string{"a": "b"}, "raw": json.RawMessage(`{"z":1}`), "f32": float32(0.1)}, Timestamp: ts},
		{MessageID: "far", Type: "track", Timestamp: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{MessageID: "before", Type: "track", Timestamp: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
		{MessageID: "zone", Type: "track", Timestamp: ts.In(time.FixedZone("", 25*3600))},
		{MessageID: "number text", Type: "track", Properties: map[string]any{"n": json.Number("1 ")}, Context: map[string]any{"a": []any{map[string]any{"n": json.Number("42\n")}}}, Timestamp: ts},
		{MessageID: "zone-received", Type: "track", Timestamp: ts, ReceivedAt: ts.In(time.FixedZone("", -24*3600))},
		{MessageID: "p1", Type: destination.TypePage, Name: "Pricing \"x\"", Category: "Docs", GroupID: "g\n", PreviousID: "anon", Source: "ios \"app\"", ReceivedAt: ts.Add(time.Second), Timestamp: ts.In(time.FixedZone("", -(7*3600 + 30*60 + 15)))},
	} {
		checkSend(t, m)
	}
}

// TestEncodeErrorsQuoteNoPersonalData: a message the outbox cannot encode
// is refused with an error that names no value: encoding/json's quote the
// number text or JSON they refuse. (Found by an adversarial review.)
func TestEncodeErrorsQuoteNoPersonalData(t *testing.T) {
	ts := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	for name, v := range map[string]any{"number": json.Number("canary-4711"), "raw": json.RawMessage(`{"canary-4711"`), "spaced": json.Number("4711 ")} {
		m := destination.Message{MessageID: "m", Type: "track", Properties: map[string]any{"email": "ada@example.com", "x": v}, Timestamp: ts}
		for form, encode := range map[string]func() error{
			"single": func() error { _, err := encodeSend(&m); return err },
			"bundle": func() error { _, err := encodeBundled(&m, 0); return err },
		} {
			err := encode()
			if !errors.Is(err, outbox.ErrInvalid) {
				t.Errorf("%s, %s: %v; want ErrInvalid", name, form, err)
				continue
			}
			if strings.Contains(err.Error(), "canary") || strings.Contains(err.Error(), "4711") {
				t.Errorf("%s, %s: the error quotes the value: %v", name, form, err)
			}
		}
	}
}

// FuzzEncodeSend: as TestEncodeSend, over any strings and times.
func FuzzEncodeSend(f *testing.F) {
	f.Add("m1", "Order Completed", "user_id", "u1", "sku", "TENT-2P", int64(0), 0)
	f.Add("q\"\\\n\x00", "\u2028", "email", "a@b.c", "k\xff", "\xed\xa0\x80", int64(1<<62), 25*3600)
	f.Fuzz(func(t *testing.T, id, event, idType, idValue, key, value string, nanos int64, offset int) {
		zone := time.FixedZone("", offset%(30*3600))
		checkSend(t, destination.Message{MessageID: id, Type: "track", Event: event, IDs: []identity.ID{{Type: idType, Value: idValue}},
			Properties: map[string]any{key: value}, Context: map[string]any{value: map[string]any{key: nil}},
			Timestamp: time.Unix(0, nanos).In(zone), Source: value, ReceivedAt: time.Unix(0, nanos/2)})
	})
}

// benchSend is a track as a batch owes a destination about one person.
func benchSend() destination.Message {
	ts := time.Date(2026, 12, 7, 10, 0, 0, 123456789, time.UTC)
	return destination.Message{MessageID: "m-a", Type: destination.TypeTrack, Event: "Product Viewed",
		IDs:        []identity.ID{{Type: "user_id", Value: "u-123"}, {Type: "email", Value: "ada@example.com"}},
		Properties: map[string]any{"sku": "TENT-2P", "price": 249.0, "currency": "EUR"}, Timestamp: ts, ReceivedAt: ts, Source: "web"}
}

// BenchmarkEncodeSend: a single row's message, encoded by hand.
func BenchmarkEncodeSend(b *testing.B) {
	m := benchSend()
	b.ReportAllocs()
	for range b.N {
		if _, err := encodeSend(&m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeSendReflecting: the same through encoding/json, its
// baseline (what encodePayload did before).
func BenchmarkEncodeSendReflecting(b *testing.B) {
	m := benchSend()
	b.ReportAllocs()
	for range b.N {
		if _, err := encodeJSON(m); err != nil {
			b.Fatal(err)
		}
	}
}

// benchSendText is benchSend as its row keeps it.
func benchSendText(b *testing.B) string {
	m := benchSend()
	text, err := encodeSend(&m)
	if err != nil {
		b.Fatal(err)
	}
	return text
}

// BenchmarkDecodeSend: a claim's decoding of a single row's message, by
// hand.
func BenchmarkDecodeSend(b *testing.B) {
	text := benchSendText(b)
	b.ReportAllocs()
	for range b.N {
		if _, err := decodeSend([]byte(text)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeSendReflecting: the same through encoding/json, its
// baseline (what decodePayload did before).
func BenchmarkDecodeSendReflecting(b *testing.B) {
	text := benchSendText(b)
	b.ReportAllocs()
	for range b.N {
		if _, err := decodeSendReflecting([]byte(text)); err != nil {
			b.Fatal(err)
		}
	}
}
