package profile

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestNormalizeValueCanonical(t *testing.T) {
	tests := []struct {
		name string
		v    any
	}{
		{"nil", nil},
		{"true", true},
		{"false", false},
		{"zero", 0.0},
		{"negative zero", math.Copysign(0, -1)},
		{"float", 3.25},
		{"max float", math.MaxFloat64},
		{"string", "héllo ✓"},
		{"empty string", ""},
		{"empty slice", []any{}},
		{"slice", []any{1.0, "a", nil, true}},
		{"empty map", map[string]any{}},
		{"map", map[string]any{"a": 1.0, "b": []any{"x", map[string]any{"c": nil}}}},
		{"nested to MaxDepth", nest(MaxDepth, "leaf")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeValue("v", tt.v)
			if err != nil {
				t.Fatalf("NormalizeValue: %v", err)
			}
			if diff := diffValue(tt.v, got); diff != "" {
				t.Errorf("NormalizeValue changed the value (-want +got):\n%s", diff)
			}
			// A canonical container is returned as it is, not copied.
			switch x := tt.v.(type) {
			case map[string]any, []any:
				if p, q := reflect.ValueOf(x).Pointer(), reflect.ValueOf(got).Pointer(); p != q {
					t.Errorf("NormalizeValue copied a canonical %T: %#x, want %#x", x, q, p)
				}
			}
		})
	}
}

func TestNormalizeValueNegativeZeroKeepsSign(t *testing.T) {
	got, err := NormalizeValue("v", math.Copysign(0, -1))
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := got.(float64); !ok || !math.Signbit(f) {
		t.Errorf("NormalizeValue(-0) = %#v, want negative zero", got)
	}
}

type tagged struct {
	Name    string   `json:"name"`
	Age     int      `json:"age,omitempty"`
	Skip    string   `json:"-"`
	Tags    []string `json:"tags"`
	private int
	Plain   bool
}

type withMarshaler struct{ v string }

func (w *withMarshaler) MarshalJSON() ([]byte, error) { return json.Marshal("custom:" + w.v) }

type namedFloat float64

func TestNormalizeValueConverts(t *testing.T) {
	ts := time.Date(2024, 3, 4, 5, 6, 7, 890, time.FixedZone("X", 3600))
	n := 42
	s := "str"
	var nilPtr *int
	tests := []struct {
		name string
		v    any
		want any
	}{
		{"int", 7, 7.0},
		{"negative int", -7, -7.0},
		{"int8", int8(-8), -8.0},
		{"int16", int16(16), 16.0},
		{"int32", int32(-32), -32.0},
		{"int64", int64(64), 64.0},
		{"int64 2^53", int64(1 << 53), float64(1 << 53)},
		{"int64 -2^53", int64(-1 << 53), float64(-1 << 53)},
		{"uint", uint(1), 1.0},
		{"uint8", uint8(255), 255.0},
		{"uint16", uint16(16), 16.0},
		{"uint32", uint32(32), 32.0},
		{"uint64", uint64(1 << 53), float64(1 << 53)},
		{"float32", float32(1.5), 1.5},
		{"json.Number int", json.Number("12"), 12.0},
		{"json.Number float", json.Number("-1.25e3"), -1250.0},
		// Any JSON number, exactly: a float64 when it holds it, else the text.
		{"int64 1<<60, whose float64 writes another number", int64(1 << 60), json.Number("1152921504606846976")},
		{"int64 1e18, a float64 whose text is the same", int64(1e18), float64(1e18)},
		{"int64 2^53+1", int64(1<<53 + 1), json.Number("9007199254740993")},
		{"int64 -2^53-1", int64(-1<<53 - 1), json.Number("-9007199254740993")},
		{"int64 max", int64(math.MaxInt64), json.Number("9223372036854775807")},
		{"int64 min", int64(math.MinInt64), json.Number("-9223372036854775808")},
		{"uint64 max", uint64(math.MaxUint64), json.Number("18446744073709551615")},
		{"uint 2^53+1", uint(1<<53 + 1), json.Number("9007199254740993")},
		{"json.Number big int", json.Number("123456789012345678901234567890"), json.Number("123456789012345678901234567890")},
		{"json.Number beyond float64", json.Number("1e400"), json.Number("1e400")},
		{"json.Number below float64", json.Number("-1e-400"), json.Number("-1e-400")},
		{"json.Number more digits than float64", json.Number("0.10000000000000000555"), json.Number("0.10000000000000000555")},
		{"json.Number 2^53+1 as a decimal", json.Number("9007199254740993.0"), json.Number("9007199254740993.0")},
		{"json.Number exact with exponent", json.Number("12.5e-1"), 1.25},
		{"json.Number zero with exponent", json.Number("-0.0e999999999999"), 0.0},
		{"json.Number huge exponent, small text", json.Number("1e99999999999999999999"), json.Number("1e99999999999999999999")},
		{"big int in nested map", map[string]any{"a": map[string]any{"b": []any{int64(1<<53 + 1)}}}, map[string]any{"a": map[string]any{"b": []any{json.Number("9007199254740993")}}}},
		{"named float", namedFloat(2.5), 2.5},
		{"time", ts, ts.Format(time.RFC3339Nano)},
		{"time literal", time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), "2024-01-02T03:04:05Z"},
		{"[]string", []string{"a", "b"}, []any{"a", "b"}},
		{"[]int", []int{1, 2, 3}, []any{1.0, 2.0, 3.0}},
		{"[2]int", [2]int{4, 5}, []any{4.0, 5.0}},
		{"nil []string", []string(nil), nil},
		{"map[string]string", map[string]string{"a": "b"}, map[string]any{"a": "b"}},
		{"map[string]int", map[string]int{"a": 1}, map[string]any{"a": 1.0}},
		{"nil map[string]string", map[string]string(nil), nil},
		{"map[int]string", map[int]string{1: "one"}, map[string]any{"1": "one"}},
		{"struct with tags", tagged{Name: "n", Skip: "s", Tags: []string{"t"}, private: 1, Plain: true},
			map[string]any{"name": "n", "tags": []any{"t"}, "Plain": true}},
		{"pointer to struct", &tagged{Name: "p", Age: 3},
			map[string]any{"name": "p", "age": 3.0, "tags": nil, "Plain": false}},
		{"pointer to int", &n, 42.0},
		{"pointer to string", &s, "str"},
		{"nil pointer", nilPtr, nil},
		{"marshaler", &withMarshaler{"x"}, "custom:x"},
		{"[]byte", []byte("hi"), "aGk="},
		{"nil []byte", []byte(nil), nil},
		{"json.RawMessage", json.RawMessage(`{"a":[1,"b"]}`), map[string]any{"a": []any{1.0, "b"}}},
		{"map with typed values", map[string]any{"n": 1, "t": []string{"x"}, "m": map[string]any{"u": uint8(2)}},
			map[string]any{"n": 1.0, "t": []any{"x"}, "m": map[string]any{"u": 2.0}}},
		{"slice with typed values", []any{int64(3), float32(0.5), nil, ts},
			[]any{3.0, 0.5, nil, ts.Format(time.RFC3339Nano)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeValue("v", tt.v)
			if err != nil {
				t.Fatalf("NormalizeValue: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("NormalizeValue (-want +got):\n%s", diff)
			}
			// The result is canonical: normalizing it again returns it unchanged.
			again, err := NormalizeValue("v", got)
			if err != nil {
				t.Fatalf("NormalizeValue of the result: %v", err)
			}
			if diff := cmp.Diff(got, again); diff != "" {
				t.Errorf("result is not canonical (-first +second):\n%s", diff)
			}
		})
	}
}

// TestNormalizeValueLikeJSON checks the conversions against what an encoding/json
// round trip makes of the same value.
func TestNormalizeValueLikeJSON(t *testing.T) {
	for _, v := range []any{
		[]string{"a", "", "ü"},
		[]int{-1, 0, 1 << 40},
		map[string]string{"k": "v", "": "empty"},
		map[string][]int{"a": {1}, "b": nil},
		tagged{Name: "n", Age: 9, Tags: []string{}},
		&tagged{},
		[]byte{0, 1, 2, 255},
		[]*int{nil},
		struct {
			When time.Time `json:"when"`
			Raw  []byte    `json:"raw"`
		}{time.Date(2020, 2, 29, 23, 59, 59, 123456789, time.UTC), []byte("x")},
	} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var want any
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		got, err := NormalizeValue("v", v)
		if err != nil {
			t.Errorf("NormalizeValue(%#v): %v", v, err)
			continue
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("NormalizeValue(%#v) differs from encoding/json (-json +got):\n%s", v, diff)
		}
	}
}

func TestNormalizeValueRejects(t *testing.T) {
	selfPtr := new(any)
	*selfPtr = selfPtr
	tests := []struct {
		name string
		v    any
		path string // want ValueError.Path
	}{
		{"NaN", math.NaN(), "p"},
		{"+Inf", math.Inf(1), "p"},
		{"-Inf", math.Inf(-1), "p"},
		{"float32 NaN", float32(math.NaN()), "p"},
		{"float32 +Inf", float32(math.Inf(1)), "p"},
		{"named float NaN", namedFloat(math.NaN()), "p"},
		{"json.Number garbage", json.Number("abc"), "p"},
		{"json.Number with a plus", json.Number("+1"), "p"},
		{"json.Number leading zero", json.Number("01"), "p"},
		{"json.Number bare dot", json.Number("1."), "p"},
		{"non-UTF-8 string", "a\xffb", "p"},
		{"non-UTF-8 string in canonical map", map[string]any{"k": "\xc3"}, `p["k"]`},
		{"non-UTF-8 map key", map[string]any{"k\xff": 1.0}, `p["k\xff"]`},
		{"non-UTF-8 typed map key", map[string]int{"\xfe": 1}, `p["\xfe"]`},
		{"NaN in slice", []any{1.0, math.NaN()}, "p[1]"},
		{"Inf in typed slice", []float64{0, 1, math.Inf(1)}, "p[2]"},
		{"too deep", nest(MaxDepth+1, "leaf"), "p" + strings.Repeat("[0]", MaxDepth+1)},
		{"too deep empty container", nest(MaxDepth+1, []any{}), "p" + strings.Repeat("[0]", MaxDepth+1)},
		{"too deep maps", nestMap(MaxDepth+1, 1.0), "p" + strings.Repeat(`["k"]`, MaxDepth+1)},
		{"self-referential map", selfMap(), "p" + strings.Repeat(`["self"]`, MaxDepth+1)},
		{"self-referential pointer", selfPtr, "p"},
		{"channel", make(chan int), "p"},
		{"channel in map", map[string]any{"c": make(chan int)}, `p["c"]`},
		{"func", func() {}, "p"},
		{"func in slice", []any{nil, func() {}}, "p[1]"},
		{"complex64", complex64(1 + 2i), "p"},
		{"complex128", 1 + 2i, "p"},
		{"struct with channel", struct{ C chan int }{make(chan int)}, "p"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeValue("p", tt.v)
			if err == nil {
				t.Fatalf("NormalizeValue = %#v, want an error", got)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not match ErrInvalid", err)
			}
			var ve *ValueError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T %v is not a *ValueError", err, err)
			}
			if ve.Path != tt.path {
				t.Errorf("Path = %s, want %s", ve.Path, tt.path)
			}
			if ve.Reason == "" || !strings.Contains(err.Error(), ShownPath(ve.Path)) {
				t.Errorf("Error() = %q: want the path as shown, %s, and a reason", err.Error(), ShownPath(ve.Path))
			}
			if got != nil {
				t.Errorf("value = %#v, want nil with an error", got)
			}
		})
	}
}

func TestValueErrorIs(t *testing.T) {
	err := error(&ValueError{Path: "x", Reason: "r"})
	if !errors.Is(err, ErrInvalid) {
		t.Error("ValueError does not match ErrInvalid")
	}
	for _, other := range []error{ErrNotFound, ErrDuplicate, ErrTxDone} {
		if errors.Is(err, other) {
			t.Errorf("ValueError matches %v", other)
		}
	}
}

func TestNormalizeValuePathQuoting(t *testing.T) {
	// Keys are quoted in paths, so a key with brackets or quotes cannot make the
	// path ambiguous.
	_, err := NormalizeValue("t", map[string]any{`a"]["b`: math.Inf(1)})
	var ve *ValueError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v, want a *ValueError", err)
	}
	if want := "t[" + strconv.Quote(`a"]["b`) + "]"; ve.Path != want {
		t.Errorf("Path = %s, want %s", ve.Path, want)
	}
}

func TestCloneValue(t *testing.T) {
	// Built twice, so that want shares nothing with orig or its clone.
	value := func() map[string]any {
		return map[string]any{
			"s": "x",
			"n": 1.0,
			"m": map[string]any{"inner": []any{1.0, map[string]any{"deep": "v"}}},
			"l": []any{"a", []any{"b"}},
			"z": nil,
		}
	}
	orig, want := value(), value()
	c := CloneValue(orig).(map[string]any)
	if diff := cmp.Diff(orig, c); diff != "" {
		t.Fatalf("clone differs (-orig +clone):\n%s", diff)
	}
	// Mutate the clone everywhere.
	c["s"] = "changed"
	delete(c, "n")
	c["new"] = true
	m := c["m"].(map[string]any)
	m["added"] = 1.0
	inner := m["inner"].([]any)
	inner[0] = "changed"
	inner[1].(map[string]any)["deep"] = "changed"
	l := c["l"].([]any)
	l[0] = "changed"
	l[1].([]any)[0] = "changed"
	if diff := cmp.Diff(want, orig); diff != "" {
		t.Errorf("mutating the clone changed the original (-want +got):\n%s", diff)
	}
}

func TestCloneValueScalarsAndNil(t *testing.T) {
	for _, v := range []any{nil, true, 1.5, "s", map[string]any(nil), []any(nil)} {
		if diff := cmp.Diff(v, CloneValue(v)); diff != "" {
			t.Errorf("CloneValue(%#v) (-want +got):\n%s", v, diff)
		}
	}
	if got := CloneValue(map[string]any(nil)); got.(map[string]any) != nil {
		t.Errorf("CloneValue(nil map) = %#v, want a nil map", got)
	}
	if got := CloneValue([]any(nil)); got.([]any) != nil {
		t.Errorf("CloneValue(nil slice) = %#v, want a nil slice", got)
	}
	// An empty slice stays empty and not nil (JSON [] rather than null).
	if got := CloneValue([]any{}); got.([]any) == nil {
		t.Error("CloneValue([]any{}) is nil")
	}
}

func TestCloneTraitsAndMergeTraits(t *testing.T) {
	t1 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	t2 := t1.Add(time.Hour)
	dst := map[string]Trait{
		"old":  {Value: "dst", Source: "a", UpdatedAt: t2},
		"tie":  {Value: "dst", Source: "a", UpdatedAt: t1},
		"new":  {Value: "dst", Source: "a", UpdatedAt: t1},
		"only": {Value: "dst", Source: "a", UpdatedAt: t1},
	}
	src := map[string]Trait{
		"old":   {Value: "src", Source: "b", UpdatedAt: t1},
		"tie":   {Value: "src", Source: "b", UpdatedAt: t1},
		"new":   {Value: map[string]any{"k": "src"}, Source: "b", UpdatedAt: t2},
		"added": {Value: []any{"src"}, Source: "b", UpdatedAt: t1},
	}
	got := MergeTraits(CloneTraits(dst), src)
	want := map[string]Trait{
		"old":   dst["old"],
		"tie":   dst["tie"],
		"new":   src["new"],
		"only":  dst["only"],
		"added": src["added"],
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("MergeTraits (-want +got):\n%s", diff)
	}
	// dst shares no memory with src.
	got["new"].Value.(map[string]any)["k"] = "changed"
	got["added"].Value.([]any)[0] = "changed"
	if src["new"].Value.(map[string]any)["k"] != "src" || src["added"].Value.([]any)[0] != "src" {
		t.Error("MergeTraits result shares memory with src")
	}
	if m := MergeTraits(nil, src); len(m) != len(src) {
		t.Errorf("MergeTraits(nil, src) has %d traits, want %d", len(m), len(src))
	}
	if CloneTraits(nil) != nil {
		t.Error("CloneTraits(nil) is not nil")
	}
}

// diffValue is cmp.Diff for JSON values. It compares with reflect.DeepEqual first,
// because cmp's slice diffing takes time exponential in the nesting depth, and
// runs cmp.Diff only to describe a difference.
func diffValue(want, got any) string {
	if reflect.DeepEqual(want, got) {
		return ""
	}
	if d := cmp.Diff(want, got); d != "" {
		return d
	}
	return fmt.Sprintf("want %#v, got %#v", want, got)
}

// nest wraps leaf in n single-element slices.
func nest(n int, leaf any) any {
	v := leaf
	for range n {
		v = []any{v}
	}
	return v
}

// nestMap wraps leaf in n single-key maps.
func nestMap(n int, leaf any) any {
	v := leaf
	for range n {
		v = map[string]any{"k": v}
	}
	return v
}

func selfMap() map[string]any {
	m := map[string]any{}
	m["self"] = m
	return m
}

// Named types get the same checks as their underlying kinds, and structs are not
// a way around them.
func TestNormalizeValueNamedTypes(t *testing.T) {
	type count int64
	type label string
	type withBig struct {
		N int64 `json:"n"`
	}
	for _, tt := range []struct {
		name string
		in   any
		want any
		bad  string
	}{
		{name: "named int", in: count(7), want: 7.0},
		{name: "named int beyond 2^53", in: count(1<<53 + 1), want: json.Number("9007199254740993")},
		{name: "named string", in: label("ok"), want: "ok"},
		{name: "named string not UTF-8", in: label("\xff"), bad: "UTF-8"},
		{name: "struct with a big integer", in: withBig{N: 1<<53 + 1}, want: map[string]any{"n": json.Number("9007199254740993")}},
		{name: "struct with a small integer", in: withBig{N: 3}, want: map[string]any{"n": 3.0}},
	} {
		got, err := NormalizeValue("v", tt.in)
		if tt.bad != "" {
			var ve *ValueError
			if !errors.As(err, &ve) || !strings.Contains(ve.Reason, tt.bad) {
				t.Errorf("%s: err = %v, want a ValueError mentioning %q", tt.name, err, tt.bad)
			}
			continue
		}
		if err != nil || !cmp.Equal(got, tt.want) {
			t.Errorf("%s: got %#v, %v; want %#v", tt.name, got, err, tt.want)
		}
	}
}

// sharedMaps returns a value of levels maps, each holding the next twice:
// small in memory, 2^levels leaves once encoded.
func sharedMaps(levels int) map[string]any {
	m := map[string]any{"leaf": "x"}
	for range levels {
		m = map[string]any{"a": m, "b": m}
	}
	return m
}

// TestNormalizeValueSharedMapsIsBounded: maps shared by many parts of a value
// count once for each, so the walk stops at the budget instead of visiting
// every path (it took a second for 25 levels, and stored 335 MB for 21).
func TestNormalizeValueSharedMapsIsBounded(t *testing.T) {
	for _, v := range []any{
		sharedMaps(30), // canonical: the fast path
		map[string]any{"t": time.Unix(0, 0), "shared": sharedMaps(30)}, // not: the converting path
	} {
		_, err := NormalizeValue("traits", v)
		var ve *ValueError
		if !errors.As(err, &ve) || !strings.Contains(ve.Reason, "larger than") {
			t.Fatalf("NormalizeValue of 2^30 shared leaves = %v; want a ValueError saying it is too large", err)
		}
	}
	budget := 1000
	_, err := NormalizeValueWithin("Properties", sharedMaps(20), &budget)
	var ve *ValueError
	if !errors.As(err, &ve) || !strings.HasPrefix(ve.Path, "Properties") || !strings.Contains(ve.Reason, "1000 bytes") {
		t.Errorf("NormalizeValueWithin(budget 1000) = %v; want a ValueError naming Properties and the 1000 bytes", err)
	}
}

// TestNormalizeValueWithinCountsSize: the size counted is the bytes of the
// strings and keys plus ValueOverhead per value, and what a scalar's JSON
// takes beyond it (a number's digits, true, false, null), on both paths.
func TestNormalizeValueWithinCountsSize(t *testing.T) {
	for name, tc := range map[string]struct {
		v    any
		size int
	}{
		"string":         {"abc", ValueOverhead + 3},
		"map":            {map[string]any{"ab": "cd", "n": 1.0}, ValueOverhead + 2 + ValueOverhead + 2 + 1 + ValueOverhead},
		"array":          {[]any{true, nil}, 3*ValueOverhead + 2 + 2},
		"numbers":        {[]any{1.5, -12345.0, 1e300}, 4*ValueOverhead + 2 + 5 + 5},
		"typed numbers":  {[]int64{-12345, 7}, 3*ValueOverhead + 5},
		"false":          {false, ValueOverhead + 3},
		"converted map":  {map[string]int{"ab": 1}, 2*ValueOverhead + 2},
		"pointer":        {ptr("abc"), ValueOverhead + 3},
		"through JSON":   {struct{ A string }{"xy"}, 2*ValueOverhead + 1 + 2},
		"typed string":   {myString("abc"), ValueOverhead + 3},
		"canonical nest": {map[string]any{"a": []any{"b"}}, 3*ValueOverhead + 1 + 1},
	} {
		for _, budget := range []int{tc.size, tc.size - 1} {
			left := budget
			_, err := NormalizeValueWithin("v", tc.v, &left)
			if fits := budget >= tc.size; fits != (err == nil) {
				t.Errorf("%s: size %d, budget %d: err = %v", name, tc.size, budget, err)
			}
			if err == nil && left != budget-tc.size {
				t.Errorf("%s: budget %d left %d; want %d spent", name, budget, left, tc.size)
			}
		}
	}
}

type myString string

func ptr[T any](v T) *T { return &v }

func TestShownPathKeepsNamesNotKeys(t *testing.T) {
	long := strings.Repeat("k", 100)
	for in, want := range map[string]string{
		"Timestamp":                    "Timestamp",
		"ExternalIDs[3]":               "ExternalIDs[3]",
		`Traits["email"]`:              `Traits["email"]`,
		`Traits["address"]["zip"]`:     `Traits["address"][…]`,
		`Properties["a"][2]["b"]["c"]`: `Properties["a"][2][…][…]`,
		`Traits["` + long + `"]`:       `Traits["` + long[:64] + `…"]`,
		`Traits["a\"]b"]["x"]`:         `Traits["a\"]b"][…]`,
		`odd[unclosed`:                 `odd[unclosed`,
		`Traits["ok"]tail`:             `Traits["ok"]tail`,
	} {
		if got := ShownPath(in); got != want {
			t.Errorf("ShownPath(%s) = %s; want %s", in, got, want)
		}
	}
}

// node is a struct whose fields may share pointers.
type node struct {
	A, B *node
	S    string
}

// TestNormalizeValueSharedStructsIsBounded: a value of structs sharing
// pointers, which encoding/json expands at every place (2^30 leaves from 31
// structs), is counted before it is encoded, and refused at the budget.
// (encoding it first took 16 s for 23 structs, 4 times longer per 2 more.)
func TestNormalizeValueSharedStructsIsBounded(t *testing.T) {
	wide := &node{S: "x"}
	for range 30 {
		wide = &node{A: wide, B: wide}
	}
	budget := 32 << 10
	_, err := NormalizeValueWithin("v", wide, &budget)
	if !errors.Is(err, ErrTooLarge) && !strings.Contains(fmt.Sprint(err), "levels deep") {
		t.Errorf("2^30 shared leaves = %v; want it refused as too large or too deep", err)
	}
	// Within the bounds, shared structs normalise as encoding/json sees them.
	small := &node{S: "x"}
	small = &node{A: small, B: small}
	budget = 32 << 10
	got, err := NormalizeValueWithin("v", small, &budget)
	if err != nil {
		t.Fatal(err)
	}
	leaf := map[string]any{"A": nil, "B": nil, "S": "x"}
	if d := cmp.Diff(map[string]any{"A": leaf, "B": leaf, "S": ""}, got); d != "" {
		t.Errorf("two shared structs (-want +got):\n%s", d)
	}
	// A cycle of pointers spends the budget instead of looping.
	var l any
	l = &l
	budget = 1 << 10
	if _, err := NormalizeValueWithin("v", l, &budget); err == nil {
		t.Error("a cycle of pointers normalised")
	}
}

// TestNormalizeValueCountsBeforeAllocating: a slice of 2^25 zero-size
// elements, free for its caller, is refused before a slice of its length
// is made.
func TestNormalizeValueCountsBeforeAllocating(t *testing.T) {
	v := make([]struct{}, 1<<25)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	budget := 32 << 10
	_, err := NormalizeValueWithin("v", v, &budget)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("2^25 empty structs = %v; want ErrTooLarge", err)
	}
	if mb := (after.TotalAlloc - before.TotalAlloc) >> 20; mb > 1 {
		t.Errorf("refusing them allocated %d MB", mb)
	}
	budget = 32 << 10
	if _, err := NormalizeValueWithin("v", map[string]any{"k": make([]any, 1<<20)}, &budget); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a million nils = %v; want ErrTooLarge", err)
	}
}
