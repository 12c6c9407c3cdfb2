package export_test

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/gdprkit/privacy/export"
	"github.com/google/go-cmp/cmp"
)

// fuzzRead checks that Read never panics, fails only with ErrInvalid (the
// input is in memory, so there is no other error), and that whatever it
// accepts writes and reads back to the same value in every format.
func fuzzRead(t *testing.T, f export.Format, data []byte) {
	p, err := export.ReadLimit(bytes.NewReader(data), f, 1<<20)
	if err != nil {
		if !errors.Is(err, export.ErrInvalid) {
			t.Fatalf("Read(%v) failed with %v, which does not match ErrInvalid", f, err)
		}
		return
	}
	for _, g := range formats {
		var b bytes.Buffer
		if err := export.Write(&b, g, p); err != nil {
			t.Fatalf("Read(%v) accepted a package that Write(%v) refuses: %v", f, g, err)
		}
		again, err := export.Read(&b, g)
		if err != nil {
			t.Fatalf("Read(%v) accepted a package that reads back from %v with %v", f, g, err)
		}
		// reflect.DeepEqual first: both sides come from Read, so equal times
		// are equal structs, and cmp takes exponential time on deeply nested
		// slices; cmp only to say what differs.
		if !reflect.DeepEqual(p, again) {
			t.Fatalf("Read(%v) then %v differs (-first +again):\n%s", f, g, cmp.Diff(p, again))
		}
	}
}

// seed adds what the Writer writes for a few packages; testdata/fuzz holds
// more, broken ones among them.
func seed(f *testing.F, format export.Format) {
	for _, p := range []*export.Package{richPackage(), emptyPackage()} {
		var b bytes.Buffer
		if err := export.Write(&b, format, p); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
}

func FuzzReadJSON(f *testing.F) {
	seed(f, export.JSON)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzRead(t, export.JSON, data) })
}

func FuzzReadNDJSON(f *testing.F) {
	seed(f, export.NDJSON)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzRead(t, export.NDJSON, data) })
}

func FuzzReadCSV(f *testing.F) {
	seed(f, export.CSV)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzRead(t, export.CSV, data) })
}
