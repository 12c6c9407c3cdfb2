package outbox_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gdprkit/privacy/destination"
	"github.com/gdprkit/privacy/outbox"
)

func TestItemValidate(t *testing.T) {
	ok := outbox.Item{Destination: "crm", Profile: "use_1", Message: &destination.Message{ProfileID: "use_1"}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate of a good item = %v", err)
	}
	for name, it := range map[string]outbox.Item{
		"no destination":    {Profile: "use_1", Message: &destination.Message{ProfileID: "use_1"}},
		"long destination":  {Destination: strings.Repeat("d", outbox.MaxNameLen+1), Profile: "use_1", Message: &destination.Message{ProfileID: "use_1"}},
		"no profile":        {Destination: "crm", Message: &destination.Message{}},
		"no payload":        {Destination: "crm", Profile: "use_1"},
		"two payloads":      {Destination: "crm", Profile: "use_1", Message: &destination.Message{ProfileID: "use_1"}, Deletion: &destination.Deletion{ProfileID: "use_1"}},
		"another profile":   {Destination: "crm", Profile: "use_1", Deletion: &destination.Deletion{ProfileID: "use_2"}},
		"invalid UTF-8 key": {Destination: "crm", Profile: "use_1", Key: "\xff", Message: &destination.Message{ProfileID: "use_1"}},
	} {
		if err := it.Validate(); !errors.Is(err, outbox.ErrInvalid) {
			t.Errorf("%s: Validate = %v; want ErrInvalid", name, err)
		}
	}
}

func TestCutErrorMakesTextAnyStoreTakes(t *testing.T) {
	for in, want := range map[string]string{
		"503 a\x00b":       "503 ab",
		"down \xff\xfe":    "down \uFFFD",
		"plain":            "plain",
		"caf\xc3\xa9 \x00": "café ",
	} {
		if got := outbox.CutError(in); got != want || !utf8.ValidString(got) {
			t.Errorf("CutError(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestCutError(t *testing.T) {
	long := strings.Repeat("é", outbox.MaxErrorLen) // two bytes each
	got := outbox.CutError(long)
	if len(got) > outbox.MaxErrorLen || !utf8.ValidString(got) || len(got) < outbox.MaxErrorLen-1 {
		t.Errorf("CutError of %d bytes = %d bytes, valid UTF-8 %v", len(long), len(got), utf8.ValidString(got))
	}
	if got := outbox.CutError("short"); got != "short" {
		t.Errorf("CutError(short) = %q", got)
	}
}

func TestStates(t *testing.T) {
	for s, answered := range map[outbox.State]bool{outbox.Pending: false, outbox.Delivered: true, outbox.NotSupported: true, outbox.Dead: true, "OTHER": false} {
		if s.Answered() != answered {
			t.Errorf("%s.Answered() = %v", s, !answered)
		}
	}
	if outbox.State("OTHER").Valid() {
		t.Error(`State("OTHER").Valid()`)
	}
}
