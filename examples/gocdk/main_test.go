package main

import (
	"bytes"
	"context"
	"testing"
)

func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	want := "plan, read back through the keeper: pro\n" +
		"ada's data key is kept wrapped by the keeper: true\n" +
		"erasure FINISHED; ada's data key destroyed: true\n"
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}
