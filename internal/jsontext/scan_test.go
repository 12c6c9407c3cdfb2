package jsontext

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// scanValue reads data as one whole value.
func scanValue(data []byte) (any, error) {
	s := NewScanner(data)
	v, err := s.Value()
	if err == nil {
		err = s.End()
	}
	return v, err
}

func TestScannerReadsWhatEncodingJSONReads(t *testing.T) {
	for _, text := range []string{
		`null`, ` true `, `false`, `0`, `-0`, `1.5e3`, `-12.25E-2`, `9007199254740993`, `""`, `"plain"`,
		`"esc \" \\ \/ \b \f \n \r \t \u00e9 \ud834\udd1e"`, `"lone \ud800 and \udc00 halves"`, `"\ud800\u0041"`,
		"\"bad utf-8 \xff\xfe é\"", `[]`, `{}`, `[1,[2,[3]],{"a":{"b":null}}]`, `{"k":1,"k":2}`,
		` { "a" : [ 1 , "x" ] , "b" : { } } `,
	} {
		want, werr := func() (any, error) { var v any; err := json.Unmarshal([]byte(text), &v); return v, err }()
		got, err := scanValue([]byte(text))
		if werr != nil || err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("Scanner reads %s as %#v, %v; encoding/json as %#v, %v", text, got, err, want, werr)
		}
	}
	for _, bad := range []string{
		``, ` `, `nul`, `tru`, `01`, `1.`, `.5`, `-`, `1e`, `1e+`, `+1`, `"open`, `"ctl` + "\x01" + `"`, `"\x"`, `"\u12"`,
		`[1,]`, `[,1]`, `{"a":1,}`, `{"a" 1}`, `{a:1}`, `{"a":1`, `[1 2]`, `1 2`, `1e400`, `[` + strings.Repeat(`[`, 10000) + strings.Repeat(`]`, 10001),
	} {
		if v, err := scanValue([]byte(bad)); !errors.Is(err, ErrSyntax) {
			t.Errorf("Scanner read %q as %#v, %v; want ErrSyntax", bad, v, err)
		}
	}
	// Errors name where, not what: the text may be personal data.
	if _, err := scanValue([]byte(`{"email":"someone@example.com",}`)); err == nil || strings.Contains(err.Error(), "someone") {
		t.Errorf("error %v: want one without the text", err)
	}
}

// FuzzScannerValue: the Scanner accepts what encoding/json accepts, and
// reads the same value from it.
func FuzzScannerValue(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5e300,"x\u0000y",{"b":null}]}`, `"\ud834\udd1e \ud800"`, `-0`, `[true,false,null]`, "\"\xff\"", `{"k":1,"k":"2"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var want any
		werr := json.Unmarshal(data, &want)
		got, err := scanValue(data)
		if (werr == nil) != (err == nil) {
			t.Fatalf("Scanner: %#v, %v; encoding/json: %#v, %v", got, err, want, werr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("Scanner reads %#v; encoding/json %#v", got, want)
		}
		if err != nil && !errors.Is(err, ErrSyntax) {
			t.Fatalf("error %v is not ErrSyntax", err)
		}
	})
}
