package profile

import "testing"

// The clear MemStore encodes an event's context with the sealed store's
// pooled encoders (contextJSON) and puts the encoder back holding the
// context's text: the pool, which the sealed store shares and whose
// invariant is "keeps nothing of a value", then holds a person's ip and
// email after the person is deleted.
func TestContextLeavesNothingInTheSealPool(t *testing.T) {
	const canary = "canary-ctx-pool-203.0.113.250"
	for range 20 {
		s := NewMemStore()
		u := Update{MessageID: "m1", Metadata: Metadata{Version: 1},
			Event: &Event{MessageID: "m1", Name: "E", Timestamp: at(0), ReceivedAt: at(1), Context: map[string]any{"ip": canary}}}
		mustUpdate(t, s, pidA, u)
		inTx(t, s, func(tx Tx) error { return tx.Delete(t.Context(), pidA) })
		if pooledEncoderHolds(canary) {
			t.Fatal("after the person's deletion, the encoder pool holds their context in clear")
		}
	}
}
