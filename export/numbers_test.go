package export

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/gdprkit/privacy/profile"
)

// TestNumbersRoundTripExactly: any JSON number of a trait, an event's
// properties or context is written and read back exactly, in every format
// (read as encoding/json does, 2^53+1 came back as 2^53).
func TestNumbersRoundTripExactly(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	big, huge := json.Number("9007199254740993"), json.Number("-123456789012345678901234567890e-3")
	p := &Package{Schema: SchemaVersion, GeneratedAt: ts, RequestID: "r1",
		Profile: profile.Profile{ID: "use_x", Traits: map[string]profile.Trait{
			"n": {Value: big, Source: "web", UpdatedAt: ts},
			"l": {Value: []any{1.5, huge, map[string]any{"k": big}}, Source: "web", UpdatedAt: ts},
		}},
		Events: []profile.Event{{MessageID: "m", Type: "track", Name: "E", Properties: map[string]any{"b": big, "f": 0.1},
			Context: map[string]any{"h": huge}, Timestamp: ts, ReceivedAt: ts}},
	}
	for _, f := range []Format{JSON, NDJSON, CSV} {
		var buf bytes.Buffer
		if err := Write(&buf, f, p); err != nil {
			t.Fatalf("Write(%v): %v", f, err)
		}
		if !bytes.Contains(buf.Bytes(), []byte("9007199254740993")) && f != CSV {
			t.Errorf("%v: the text lacks 9007199254740993", f)
		}
		got, err := Read(bytes.NewReader(buf.Bytes()), f)
		if err != nil {
			t.Fatalf("Read(%v): %v", f, err)
		}
		if v := got.Profile.Traits["n"].Value; v != big {
			t.Errorf("%v: trait n = %#v; want %s", f, v, big)
		}
		if l := got.Profile.Traits["l"].Value.([]any); l[0] != 1.5 || l[1] != huge || l[2].(map[string]any)["k"] != big {
			t.Errorf("%v: trait l = %#v", f, l)
		}
		ev := got.Events[0]
		if ev.Properties["b"] != big || ev.Properties["f"] != 0.1 || ev.Context["h"] != huge {
			t.Errorf("%v: event %#v, context %#v; want its numbers exact", f, ev.Properties, ev.Context)
		}
	}
}
