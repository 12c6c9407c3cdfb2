package journal

import (
	"encoding/json"
	"testing"

	"github.com/gdprkit/privacy/profile"
)

// TestEntryNumbersRoundTrip: a rectification's traits and the
// requested traits come back exact from the stored entry, in clear and
// sealed (what a redo after a crash reads).
func TestEntryNumbersRoundTrip(t *testing.T) {
	big := json.Number("9007199254740993")
	mk := func() *Entry {
		return &Entry{ID: "r", Type: Rectify, Traits: map[string]any{"n": big, "f": 0.5},
			Decision: Decision{Rectify: []Rectification{{Profile: "use_x", Update: profile.Update{
				Set: map[string]profile.Trait{"n": {Value: []any{big, map[string]any{"k": big}}}}}}}}}
	}
	check := func(what string, e *Entry) {
		t.Helper()
		v := e.Decision.Rectify[0].Update.Set["n"].Value.([]any)
		if e.Traits["n"] != big || e.Traits["f"] != 0.5 || v[0] != big || v[1].(map[string]any)["k"] != big {
			t.Errorf("%s: %#v / %#v", what, e.Traits, v)
		}
	}
	b, _ := json.Marshal(mk())
	var e Entry
	if err := UnmarshalEntry(b, &e); err != nil {
		t.Fatal(err)
	}
	check("clear", &e)
	s := mk()
	if err := s.SealPersonal(func(b []byte) []byte { return append([]byte(nil), b...) }); err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(s)
	var o Entry
	if err := UnmarshalEntry(b, &o); err != nil {
		t.Fatal(err)
	}
	if err := o.OpenPersonal(func(b []byte) ([]byte, error) { return append([]byte(nil), b...), nil }); err != nil {
		t.Fatal(err)
	}
	check("sealed", &o)
}
