package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const sampleOutput = `goos: linux
goarch: amd64
pkg: github.com/gdprkit/privacy
BenchmarkCollectTrackKnown-2      	  300000	      3645 ns/op	    1541 B/op	       6 allocs/op
BenchmarkCollectTrackBaseline-2   	  300000	       992.9 ns/op	     710 B/op	       4 allocs/op
BenchmarkCollectBatchDelivered-2   	      20	 200772328 ns/op	     33088 bare-msgs/s	         0.6676 x-bare	77705308 B/op	  483634 allocs/op
PASS
`

func TestParseAndRead(t *testing.T) {
	lines, err := parse(strings.NewReader(sampleOutput))
	if err != nil || len(lines) != 3 {
		t.Fatalf("parse: %d lines, %v; want 3", len(lines), err)
	}
	pair := row{num: "BenchmarkCollectTrackKnown", den: "BenchmarkCollectTrackBaseline", allocsOf: "BenchmarkCollectTrackKnown"}
	v, allocs, err := pair.read(lines)
	if err != nil || v < 3.67 || v > 3.68 || allocs != 6 {
		t.Errorf("a pair's ratio %v, allocs %v, %v; want 3645/992.9 and 6", v, allocs, err)
	}
	own := row{metric: "x-bare", of: "BenchmarkCollectBatchDelivered"}
	if v, _, err := own.read(lines); err != nil || v != 0.6676 {
		t.Errorf("a metric %v, %v; want 0.6676", v, err)
	}
	for _, bad := range []row{
		{metric: "x-missing", of: "BenchmarkCollectBatchDelivered"},
		{metric: "x-bare", of: "BenchmarkNotRun"},
		{num: "BenchmarkCollectTrackKnown", den: "BenchmarkNotRun"},
	} {
		if _, _, err := bad.read(lines); err == nil {
			t.Errorf("read(%+v) found a value", bad)
		}
	}
	if _, err := parse(strings.NewReader("BenchmarkX-2 10 abc ns/op\n")); err == nil {
		t.Error("parse took a value that is not a number")
	}
}

func TestRenderAndRewrite(t *testing.T) {
	results := []result{
		{row: row{id: "issue-1/a", figure: "A / B", num: "A", den: "B", target: "≤ 2.0x", met: func(v float64) bool { return v <= 2 }, allocsOf: "A"},
			values: []float64{2.5, 1.5, 1.9}, allocs: []float64{6, 6, 7}},
		{row: row{id: "issue-2/b", figure: "rate", metric: "msgs/s", target: "≥ 20,000/s", met: func(v float64) bool { return v >= 20000 }},
			values: []float64{19000, 21000, 25000, 18000}},
		{row: row{id: "issue-2/c", figure: "rate beside a ratio", metric: "msgs/s", beside: "x-bare", target: "t"},
			values: []float64{100, 300, 200}, besides: []float64{0.5, 0.7, 0.9}},
		{row: row{id: "issue-3/pg", figure: "needs PostgreSQL", target: "t"}, skipped: "no DSN"},
		{row: row{id: "issue-4/slow", figure: "heap", pkg: ".", bench: "^BenchmarkM$", benchtime: "1x", metric: "x-maps", target: "≤ 1.3x", maxRounds: 2},
			values: []float64{1.1, 1.2}},
	}
	table := render(results, 3, time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC))
	for _, want := range []string{
		"| `issue-1/a` | A / B | **1.900x** | 1.500x – 2.500x | 6 | ≤ 2.0x | yes |",
		"| `issue-2/b` | rate | **20000** | 18000 – 25000 |  | ≥ 20,000/s | yes |",
		"| `issue-3/pg` | needs PostgreSQL | skipped: no DSN |",
		"| `issue-2/c` | rate beside a ratio | **200** (`x-bare` 0.700) | 100 – 300 |",
		"on 2026-12-07, 3 round(s) a row",
		"| `issue-4/slow` | heap | **1.150x** | 1.100x – 1.200x |",
		"- `issue-4/slow`: `. -test.run '^$' -test.bench '^BenchmarkM$' -test.benchmem -test.benchtime 1x` (2 rounds)\n",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	path := filepath.Join(t.TempDir(), "B.md")
	before, after := "# Title\n\n"+startMarker+"\n", endMarker+"\n\n## Older figures\n"
	if err := os.WriteFile(path, []byte(before+"old table\n"+after), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rewrite(path, table); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if string(got) != before+table+after {
		t.Errorf("rewritten file:\n%s", got)
	}
	if err := os.WriteFile(path, []byte("no markers\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rewrite(path, table); err == nil || !strings.Contains(err.Error(), "markers") {
		t.Errorf("rewrite without markers: %v", err)
	}
}

// FuzzParse: any text parses without a panic, into lines of benchmarks.
func FuzzParse(f *testing.F) {
	f.Add(sampleOutput)
	f.Add("BenchmarkA-2 1 NaN ns/op 2\n")
	f.Fuzz(func(t *testing.T, text string) {
		lines, err := parse(strings.NewReader(text))
		if err != nil {
			return
		}
		for _, l := range lines {
			if !strings.HasPrefix(l.name, "Benchmark") {
				t.Fatalf("a line named %q", l.name)
			}
		}
	})
}

// TestRoundsOf: a row with maxRounds runs no more than it, and as many as
// asked when fewer are.
func TestRoundsOf(t *testing.T) {
	for _, c := range []struct{ max, asked, want int }{{0, 5, 5}, {3, 5, 3}, {3, 2, 2}, {3, 3, 3}} {
		if got := (row{maxRounds: c.max}).roundsOf(c.asked); got != c.want {
			t.Errorf("roundsOf(%d) with maxRounds %d = %d, want %d", c.asked, c.max, got, c.want)
		}
	}
}

// TestRunRefusesBadFlags: flags that would write part of the table, or
// select nothing, are refused before anything runs.
func TestRunRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		rounds    int
		only, out string
		want      string
	}{
		{0, "", "-", "-rounds 0"},
		{1, "issue-2", "BENCHMARKS.md", "pass -o -"},
		{1, "no-such-row", "-", "no row's id"},
	} {
		if err := run(tc.rounds, tc.only, tc.out); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%d, %q, %q) = %v; want an error saying %q", tc.rounds, tc.only, tc.out, err, tc.want)
		}
	}
}
