package sqlstore

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
	"github.com/gdprkit/privacy/profile"
)

// TestNumbersKeptExactly: any JSON number goes through the database
// exactly, every way a value does: a trait, an event's properties and
// context (sealed and in clear), the outbox to a destination, a
// rectification's journaled traits. (encoding/json's plain decoding
// rounded 2^53+1 to 2^53 on the way back.)
func TestNumbersKeptExactly(t *testing.T) {
	forEachDialectClearOrSealed(t, func(t *testing.T, s *Store, sealed bool) {
		ctx := context.Background()
		crm := destination.NewRecorder("crm")
		c := controllerOn(t, s, sealed, privacy.WithDestinations(crm),
			privacy.WithDelivery(privacy.Delivery{Backoff: time.Millisecond, MaxBackoff: time.Millisecond, Timeout: time.Second}))
		const big = json.Number("9007199254740993")
		huge := json.Number("123456789012345678901234567890")
		ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		u := identity.ID{Type: identity.TypeUserID, Value: "u1"}
		for _, m := range []privacy.Message{
			privacy.Identify{MessageID: "i", UserID: "u1", Traits: map[string]any{"n": int64(1<<53 + 1), "d": json.Number("0.10000000000000000555")}, Timestamp: ts},
			privacy.Track{MessageID: "t", UserID: "u1", Event: "E", Properties: map[string]any{"h": huge, "l": []any{big}}, Context: map[string]any{"c": big}, Timestamp: ts},
		} {
			if err := c.Collect(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		p, err := c.Profile(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if p.Traits["n"].Value != big || p.Traits["d"].Value != json.Number("0.10000000000000000555") {
			t.Errorf("traits = %#v, %#v; want them exact", p.Traits["n"].Value, p.Traits["d"].Value)
		}
		page, err := c.Events(ctx, u, profile.EventQuery{})
		if err != nil || len(page.Events) != 1 {
			t.Fatalf("Events = %+v, %v", page, err)
		}
		ev := page.Events[0]
		if ev.Properties["h"] != huge || ev.Properties["l"].([]any)[0] != big || ev.Context["c"] != big {
			t.Errorf("event = %#v, context %#v; want its numbers exact", ev.Properties, ev.Context)
		}
		if _, err := c.Rectify(ctx, u, map[string]any{"n": json.Number("9007199254740995")}); err != nil {
			t.Fatal(err)
		}
		if p, err = c.Profile(ctx, u); err != nil || p.Traits["n"].Value != json.Number("9007199254740995") {
			t.Errorf("rectified n = %#v, %v; want it exact", p.Traits["n"].Value, err)
		}
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := c.Flush(fctx); err != nil {
			t.Fatal(err)
		}
		var sent int
		for _, m := range crm.Messages() {
			switch {
			case m.Type == "track":
				sent++
				if m.Properties["h"] != huge || m.Context["c"] != big {
					t.Errorf("the destination got %#v, context %#v; want them exact", m.Properties, m.Context)
				}
			case m.Type == "identify" && m.Traits["n"] != nil:
				sent++
				if m.Traits["n"] != big && m.Traits["n"] != json.Number("9007199254740995") {
					t.Errorf("the destination got n = %#v; want it exact", m.Traits["n"])
				}
			}
		}
		if sent < 2 {
			t.Errorf("the destination got %d of the messages with numbers; want the track and the identify", sent)
		}
	})
}

// forEachDialectClearOrSealed runs f on a fresh Store of each dialect, with
// the Controller's sealing off and on.
func forEachDialectClearOrSealed(t *testing.T, f func(t *testing.T, s *Store, sealed bool)) {
	t.Helper()
	for _, sealed := range []bool{false, true} {
		t.Run(map[bool]string{false: "clear", true: "sealed"}[sealed], func(t *testing.T) {
			forEachDialect(t, func(t *testing.T, s *Store) { f(t, s, sealed) })
		})
	}
}

// controllerOn is a Controller on every backend of s, sealing or not, with
// the options given, closed when the test ends.
func controllerOn(t *testing.T, s *Store, sealed bool, opts ...privacy.Option) *privacy.Controller {
	t.Helper()
	opts = append([]privacy.Option{privacy.WithBackends(s), privacy.WithKey([]byte("numbers-test-key-0123456789abcdef"))}, opts...)
	if !sealed {
		opts = append(opts, privacy.WithoutEncryption())
	}
	c, err := privacy.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
