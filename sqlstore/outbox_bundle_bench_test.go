package sqlstore

import (
	"testing"
	"time"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/identity"
)

// benchBundle is a bundle of five tracks as a batch owes a destination
// about one person.
func benchBundle(b *testing.B) []byte {
	ts := time.Date(2026, 12, 6, 10, 0, 0, 123456789, time.UTC)
	msgs := make([]string, 5)
	for i := range msgs {
		m := destination.Message{MessageID: "m-" + string(rune('a'+i)), Type: destination.TypeTrack, Event: "Product Viewed",
			IDs:        []identity.ID{{Type: "user_id", Value: "u-123"}},
			Properties: map[string]any{"sku": "TENT-2P", "price": 249.0}, Timestamp: ts, ReceivedAt: ts, Source: "web"}
		var err error
		if msgs[i], err = encodeBundled(&m, 0); err != nil {
			b.Fatal(err)
		}
	}
	return []byte(bundlePayload(msgs))
}

// BenchmarkDecodeBundle: a claim's decoding of a bundle, by hand.
func BenchmarkDecodeBundle(b *testing.B) {
	text := benchBundle(b)
	b.ReportAllocs()
	for range b.N {
		if _, err := decodeBundle(text); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeBundleReflecting: the same through encoding/json, its
// baseline.
func BenchmarkDecodeBundleReflecting(b *testing.B) {
	text := string(benchBundle(b))
	b.ReportAllocs()
	for range b.N {
		if _, err := decodeBundleReflecting(text); err != nil {
			b.Fatal(err)
		}
	}
}
