package sqlstore

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// sameAsEncodingJSON fails unless a hand encoder agrees with encoding/json
// on a value: both refuse it (the hand encoder with an error wrapping
// errKind, when not nil), or both write valid JSON that decode reads to the
// same value. name is the hand encoder's, got and err what it returned,
// want and werr encoding/json's. It returns what decode read from got, and
// whether there was text to read.
func sameAsEncodingJSON[T any](t *testing.T, name, got string, err error, want string, werr, errKind error, decode func([]byte) (T, error)) (T, bool) {
	t.Helper()
	var none T
	if (err != nil) != (werr != nil) {
		t.Fatalf("%s error %v; encoding/json's %v", name, err, werr)
	}
	if err != nil {
		if errKind != nil && !errors.Is(err, errKind) {
			t.Fatalf("%s error %v; want %v", name, err, errKind)
		}
		return none, false
	}
	if !json.Valid([]byte(got)) {
		t.Fatalf("%s wrote invalid JSON %q", name, got)
	}
	a, err := decode([]byte(got))
	if err != nil {
		t.Fatalf("%s's %s does not decode: %v", name, got, err)
	}
	b, err := decode([]byte(want))
	if err != nil {
		t.Fatalf("encoding/json's %s does not decode: %v", want, err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("%s decodes to %+v; encoding/json's to %+v\n got  %s\n want %s", name, a, b, got, want)
	}
	return a, true
}

// unmarshalled decodes text into a new T with encoding/json.
func unmarshalled[T any](text []byte) (T, error) {
	var v T
	err := json.Unmarshal(text, &v)
	return v, err
}
