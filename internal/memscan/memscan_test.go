package memscan

import "testing"

type inner struct {
	b []byte
	m map[string]any
}

type outer struct {
	p    *inner
	self *outer
	arr  [2]any
}

func TestHolds(t *testing.T) {
	o := &outer{p: &inner{b: []byte("xx-secret-xx"), m: map[string]any{"k": []any{"deep-canary"}}}}
	o.self = o // a cycle ends
	o.arr[1] = map[string]string{"key-canary": "v"}
	for _, s := range []string{"secret", "deep-canary", "key-canary"} {
		if !Holds(o, s) {
			t.Errorf("Holds(%q) = false; it is reachable", s)
		}
	}
	if Holds(o, "absent") {
		t.Error(`Holds("absent") = true`)
	}
}
