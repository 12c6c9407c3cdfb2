package sqlstore

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
)

// TestNumbersThroughRetriesDeadLettersAndReplay: numbers a float64
// cannot hold go through a bundle whose attempts are rewritten after each
// failure (withAttempts), into dead letters, and back by Replay, exactly.
func TestNumbersThroughRetriesDeadLettersAndReplay(t *testing.T) {
	forEachDialectClearOrSealed(t, func(t *testing.T, s *Store, sealed bool) {
		ctx := context.Background()
		crm := destination.NewRecorder("crm")
		crm.FailSends(1000)
		c := controllerOn(t, s, sealed, privacy.WithDestinations(crm), privacy.WithDelivery(privacy.Delivery{Backoff: time.Millisecond, MaxBackoff: time.Millisecond,
			Timeout: time.Second, MaxAttempts: 3}))
		var err error
		ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		nums := []json.Number{"9007199254740993", "0.10000000000000000555", "1e400", "-123456789012345678901234567890"}
		var msgs []privacy.Message
		for i, n := range nums {
			msgs = append(msgs, privacy.Track{MessageID: "t" + string(rune('a'+i)), UserID: "u1", Event: "E", Timestamp: ts,
				Properties: map[string]any{"n": n, "l": []any{n, map[string]any{"k": n}}}, Context: map[string]any{"c": n}})
		}
		if err := c.Collect(ctx, privacy.Identify{MessageID: "i", UserID: "u1", Timestamp: ts}); err != nil {
			t.Fatal(err)
		}
		if err := c.CollectBatch(ctx, msgs); err != nil {
			t.Fatal(err)
		}
		var dead []privacy.DeadLetter
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			fctx, cancel := context.WithTimeout(ctx, time.Second)
			c.Flush(fctx)
			cancel()
			if dead, err = c.DeadLetters(ctx, "crm", 0, 100); err != nil {
				t.Fatal(err)
			}
			if len(dead) >= len(nums)+1 {
				break
			}
		}
		if len(dead) < len(nums)+1 {
			t.Fatalf("%d dead letters; want %d", len(dead), len(nums)+1)
		}
		crm.FailSends(0)
		var ids []uint64
		for _, d := range dead {
			ids = append(ids, d.ID)
		}
		if _, err := c.Replay(ctx, ids...); err != nil {
			t.Fatal(err)
		}
		fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := c.Flush(fctx); err != nil {
			t.Fatal(err)
		}
		got := 0
		for _, m := range crm.Messages() {
			if m.Type != "track" {
				continue
			}
			got++
			n := nums[m.MessageID[1]-'a']
			l, _ := m.Properties["l"].([]any)
			if m.Properties["n"] != n || len(l) != 2 || l[0] != n || l[1].(map[string]any)["k"] != n || m.Context["c"] != n {
				t.Errorf("message %s sent %#v, context %#v; want %s exactly", m.MessageID, m.Properties, m.Context, n)
			}
		}
		if got != len(nums) {
			t.Errorf("%d tracks delivered; want %d", got, len(nums))
		}
	})
}

// TestNumbersInAudiencesThroughPickTraitsAndBatch: an audience
// reads a json.Number trait through PickTraits (a counted event) and
// through the batch path, in clear and sealed.
func TestNumbersInAudiencesThroughPickTraitsAndBatch(t *testing.T) {
	forEachDialectClearOrSealed(t, func(t *testing.T, s *Store, sealed bool) {
		ctx := context.Background()
		c := controllerOn(t, s, sealed)
		if err := c.DefineAudience(ctx, audience.Definition{Key: "big", Query: `trait('n') > 100000000000000000000000 and event('E').count() >= 2`}); err != nil {
			t.Fatal(err)
		}
		ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		if err := c.Collect(ctx, privacy.Identify{MessageID: "i", UserID: "u1", Timestamp: ts, Traits: map[string]any{"n": json.Number("1e400")}}); err != nil {
			t.Fatal(err)
		}
		if err := c.Collect(ctx, privacy.Track{MessageID: "t1", UserID: "u1", Event: "E", Timestamp: ts}); err != nil {
			t.Fatal(err)
		}
		if err := c.CollectBatch(ctx, []privacy.Message{privacy.Track{MessageID: "t2", UserID: "u1", Event: "E", Timestamp: ts}}); err != nil {
			t.Fatal(err)
		}
		got, err := c.Audiences(ctx, identity.ID{Type: identity.TypeUserID, Value: "u1"})
		if err != nil || len(got) != 1 {
			t.Errorf("Audiences = %v, %v; want [big]", got, err)
		}
	})
}
