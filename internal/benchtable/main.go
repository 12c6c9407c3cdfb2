package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// row is one figure: what to run and how to read its ratio.
type row struct {
	id     string // issue-N/short-name: -only matches its prefix
	figure string // what the figure says, for the table
	pkg    string // the package, relative to the module root
	// bench is the benchmarks' pattern for -test.bench; benchtime their
	// -test.benchtime (equal iteration counts for a pair, so that both
	// hold as much data when measured).
	bench, benchtime string
	// Either a pair (num over den, both ns/op: lower is better) or a
	// metric the benchmark reports itself (a same-run ratio or a rate).
	num, den string
	metric   string // in the output of bench `of`
	of       string
	// beside, when set, is a second metric of `of` printed next to the
	// figure (a rate's same-run baseline ratio), its median over the rounds.
	beside   string
	target   string // as the issue states it
	met      func(v float64) bool
	allocsOf string // when set, the allocations per op of this benchmark are reported too
	postgres bool   // needs GDPRKIT_TEST_POSTGRES_DSN
	// maxRounds, when set, bounds the row's rounds: a row that takes
	// minutes a round and whose figure holds still (a heap size).
	maxRounds int
}

// roundsOf is how many rounds row r runs when rounds are asked for.
func (r row) roundsOf(rounds int) int {
	if r.maxRounds > 0 {
		return min(rounds, r.maxRounds)
	}
	return rounds
}

var rows = []row{
	{id: "issue-19/collect", figure: "`Collect` of a known person's track / plain maps (10k people, in memory)",
		pkg: ".", bench: "^BenchmarkCollectTrack(Known|Baseline)$", benchtime: "300000x",
		num: "BenchmarkCollectTrackKnown", den: "BenchmarkCollectTrackBaseline", allocsOf: "BenchmarkCollectTrackKnown",
		target: "≤ 2.0x, ≤ 6 allocs", met: func(v float64) bool { return v <= 2.0 }},
	{id: "issue-19/flat", figure: "`Collect` of a known person's track among 1M people / among 10k",
		pkg: ".", bench: "^BenchmarkCollectTrackKnown(1M)?$", benchtime: "300000x",
		num: "BenchmarkCollectTrackKnown1M", den: "BenchmarkCollectTrackKnown",
		target: "< 1.2x", met: func(v float64) bool { return v < 1.2 }},
	{id: "issue-19/identify", figure: "`Collect` of identifies loading 1M new people / plain maps (time per message)",
		pkg: ".", bench: "^BenchmarkCollectIdentifyNew(Baseline)?$", benchtime: "1000000x",
		num: "BenchmarkCollectIdentifyNew", den: "BenchmarkCollectIdentifyNewBaseline",
		target: "≤ 2.0x (≥ 0.5x the throughput)", met: func(v float64) bool { return v <= 2.0 }},
	{id: "issue-19/memory", figure: "Heap per profile at 1M profiles (an identify and a track each, in memory) / plain maps and slices (`x-maps`)",
		pkg: ".", bench: "^BenchmarkMemoryPerProfile$", benchtime: "1x",
		metric: "x-maps", of: "BenchmarkMemoryPerProfile",
		target: "≤ 1.3x", met: func(v float64) bool { return v <= 1.3 }, maxRounds: 3},
	{id: "issue-16/context", figure: "`Collect` of a track with a 1 KB context / without",
		pkg: ".", bench: "^BenchmarkCollectTrackKnown(Context)?$", benchtime: "300000x",
		num: "BenchmarkCollectTrackKnownContext", den: "BenchmarkCollectTrackKnown",
		target: "≤ 1.3x", met: func(v float64) bool { return v <= 1.3 }},
	{id: "issue-15/sealed", figure: "`Collect` of a track, sealed in memory / in clear",
		pkg: ".", bench: "^BenchmarkCollectTrackKnown(Sealed)?$", benchtime: "300000x",
		num: "BenchmarkCollectTrackKnownSealed", den: "BenchmarkCollectTrackKnown",
		target: "≤ 1.5x", met: func(v float64) bool { return v <= 1.5 }},
	{id: "issue-5/export", figure: "`export`'s NDJSON writer / `encoding/json`'s `Encoder`, an event a line",
		pkg: "./export", bench: "^BenchmarkNDJSONEvents(Baseline)?$", benchtime: "20x",
		num: "BenchmarkNDJSONEvents", den: "BenchmarkNDJSONEventsBaseline",
		target: "(none set)", met: nil},
	{id: "issue-2/lookup", figure: "Identity lookup among 1M identifiers / a plain map",
		pkg: "./identity", bench: "^BenchmarkLookup(BaselineMap)?1M$", benchtime: "1000000x",
		num: "BenchmarkLookup1M", den: "BenchmarkLookupBaselineMap1M",
		target: "(none set)", met: nil},
	{id: "issue-13/owed", figure: "`CollectBatch` into PostgreSQL with the outbox and one destination / without (`x-bare`)",
		pkg: "./sqlstore", bench: "^BenchmarkCollectBatchDelivered$", benchtime: "20x",
		metric: "x-bare", of: "BenchmarkCollectBatchDelivered",
		target: "≥ 0.7x", met: func(v float64) bool { return v >= 0.7 }, postgres: true},
	{id: "issue-13/delivery", figure: "Delivery from the PostgreSQL outbox, messages/s (beside it: its bare `SKIP LOCKED` loop, `x-bare`)",
		pkg: "./sqlstore", bench: "^BenchmarkOutboxDelivery$", benchtime: "8x",
		metric: "msgs/s", of: "BenchmarkOutboxDelivery", beside: "x-bare",
		target: "≥ 20,000/s", met: func(v float64) bool { return v >= 20000 }, postgres: true},
	{id: "issue-19/batch-postgres", figure: "`CollectBatch` into PostgreSQL / one multi-row INSERT of the same rows (`x-multirow`)",
		pkg: "./sqlstore", bench: "^BenchmarkCollectBatch$/^postgres/audiences=false$", benchtime: "20x",
		metric: "x-multirow", of: "BenchmarkCollectBatch/postgres/audiences=false",
		target: "≥ 0.8x", met: func(v float64) bool { return v >= 0.8 }, postgres: true},
	{id: "issue-19/batch-sqlite", figure: "`CollectBatch` into SQLite / one multi-row INSERT of the same rows (`x-multirow`)",
		pkg: "./sqlstore", bench: "^BenchmarkCollectBatch$/^sqlite/audiences=false$", benchtime: "20x",
		metric: "x-multirow", of: "BenchmarkCollectBatch/sqlite/audiences=false",
		target: "≥ 0.9x", met: func(v float64) bool { return v >= 0.9 }},
	{id: "issue-19/http", figure: "`segmentapi` ingestion over HTTP into PostgreSQL, messages/s: 100,000 tracks about 1,000 people, batches of 100 on 8 connections (the run also reports CPU per message, `proc-us/msg` and `pg-us/msg`)",
		pkg: "./segmentapi", bench: "^BenchmarkIngest$/^postgres$/^http-8conns$", benchtime: "1000x",
		metric: "msgs/s", of: "BenchmarkIngest/postgres/http-8conns",
		target: "≥ 30,000/s", met: func(v float64) bool { return v >= 30000 }, postgres: true},
	{id: "issue-15/batch-sealed", figure: "`CollectBatch` into PostgreSQL, sealed / in clear (`x-clear`)",
		pkg: "./sqlstore", bench: "^BenchmarkCollectBatchSealed$", benchtime: "10x",
		metric: "x-clear", of: "BenchmarkCollectBatchSealed",
		target: "(see issue 15)", met: nil, postgres: true},
}

// overlay is the test dependencies' overlay the module's tests build with.
const overlay = "-overlay=testdata/testdeps/overlay.json"

// Markers around the table in BENCHMARKS.md.
const (
	startMarker = "<!-- benchtable:start -->"
	endMarker   = "<!-- benchtable:end -->"
)

func main() {
	rounds := flag.Int("rounds", 5, "rounds of each row")
	only := flag.String("only", "", "run only the rows whose id starts with this")
	out := flag.String("o", "BENCHMARKS.md", "the file whose table to rewrite, or - for standard output")
	flag.Parse()
	if err := run(*rounds, *only, *out); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}

func run(rounds int, only, out string) error {
	if rounds < 1 {
		return fmt.Errorf("-rounds %d: want at least 1", rounds)
	}
	if only != "" && out != "-" {
		return fmt.Errorf("-only %q writes part of the table: pass -o - (the table in %s holds every row)", only, out)
	}
	var chosen []row
	for _, r := range rows {
		if strings.HasPrefix(r.id, only) {
			chosen = append(chosen, r)
		}
	}
	if len(chosen) == 0 {
		return fmt.Errorf("-only %q: no row's id starts with it", only)
	}
	dir, err := os.MkdirTemp("", "benchtable")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	pg := os.Getenv("GDPRKIT_TEST_POSTGRES_DSN") != ""
	binaries := map[string]string{}
	var results []result
	for _, r := range chosen {
		if r.postgres && !pg {
			results = append(results, result{row: r, skipped: "GDPRKIT_TEST_POSTGRES_DSN is not set"})
			continue
		}
		bin, ok := binaries[r.pkg]
		if !ok {
			bin = filepath.Join(dir, strconv.Itoa(len(binaries))+".test")
			fmt.Fprintf(os.Stderr, "building %s\n", r.pkg)
			if err := command("go", "test", overlay, "-c", "-o", bin, r.pkg).Run(); err != nil {
				return fmt.Errorf("building the tests of %s: %w", r.pkg, err)
			}
			binaries[r.pkg] = bin
		}
		res := result{row: r}
		for i := range r.roundsOf(rounds) {
			fmt.Fprintf(os.Stderr, "%s: round %d of %d\n", r.id, i+1, r.roundsOf(rounds))
			cmd := exec.Command(bin, "-test.run", "^$", "-test.bench", r.bench, "-test.benchmem", "-test.benchtime", r.benchtime, "-test.count", "1")
			cmd.Dir = r.pkg // the package's own directory, as go test runs it
			cmd.Stderr = os.Stderr
			text, err := cmd.Output()
			if err != nil {
				return fmt.Errorf("%s: %w\n%s", r.id, err, text)
			}
			lines, err := parse(bytes.NewReader(text))
			if err != nil {
				return fmt.Errorf("%s: %w", r.id, err)
			}
			v, allocs, err := r.read(lines)
			if err != nil {
				return fmt.Errorf("%s: %w", r.id, err)
			}
			if r.beside != "" {
				b, err := metricOf(lines, r.of, r.beside)
				if err != nil {
					return fmt.Errorf("%s: %w", r.id, err)
				}
				res.besides = append(res.besides, b)
			}
			res.values = append(res.values, v)
			res.allocs = append(res.allocs, allocs)
		}
		results = append(results, res)
	}
	table := render(results, rounds, time.Now())
	if out == "-" {
		_, err := io.WriteString(os.Stdout, table)
		return err
	}
	return rewrite(out, table)
}

// command is a go command run from the module root, its output to stderr.
func command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd
}

// benchLine is one benchmark's result line: its name without the -N of
// GOMAXPROCS, and its values by unit.
type benchLine struct {
	name   string
	values map[string]float64
}

var procsSuffix = regexp.MustCompile(`-\d+$`)

// parse reads the result lines of a benchmark run.
func parse(r io.Reader) ([]benchLine, error) {
	var out []benchLine
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		l := benchLine{name: procsSuffix.ReplaceAllString(f[0], ""), values: map[string]float64{}}
		// f[1] is the iteration count; then value and unit pairs.
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("benchmark line %q: value %q: %w", sc.Text(), f[i], err)
			}
			l.values[f[i+1]] = v
		}
		out = append(out, l)
	}
	return out, sc.Err()
}

// read returns the row's value in one round's lines, and the allocations
// per op of allocsOf (-1: none asked for).
func (r row) read(lines []benchLine) (v, allocs float64, err error) {
	get := func(name, unit string) (float64, error) { return metricOf(lines, name, unit) }
	allocs = -1
	if r.allocsOf != "" {
		if allocs, err = get(r.allocsOf, "allocs/op"); err != nil {
			return 0, 0, err
		}
	}
	if r.metric != "" {
		v, err = get(r.of, r.metric)
		return v, allocs, err
	}
	num, err := get(r.num, "ns/op")
	if err != nil {
		return 0, 0, err
	}
	den, err := get(r.den, "ns/op")
	if err != nil {
		return 0, 0, err
	}
	if den == 0 {
		return 0, 0, errors.New(r.den + " took no time")
	}
	return num / den, allocs, nil
}

// metricOf is the value in unit that benchmark name reported.
func metricOf(lines []benchLine, name, unit string) (float64, error) {
	for _, l := range lines {
		if l.name == name {
			if x, ok := l.values[unit]; ok {
				return x, nil
			}
			return 0, fmt.Errorf("%s reported no %s", name, unit)
		}
	}
	return 0, fmt.Errorf("%s did not run", name)
}

// result is a row's rounds.
type result struct {
	row
	values, allocs, besides []float64
	skipped                 string
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// format writes a ratio with three decimals and an x (two would show a
// median just under a bound as the bound), a rate as an integer.
func format(r row, v float64) string {
	if r.metric != "" && !strings.HasPrefix(r.metric, "x-") {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 3, 64) + "x"
}

// render writes the table and, under it, how each row was run.
func render(results []result, rounds int, at time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Written by `go run ./internal/benchtable` on %s, %d round(s) a row (fewer where its run says so). In a round, a\n", at.UTC().Format("2006-01-02"), rounds)
	b.WriteString("figure's benchmarks run in one process: a pair one after the other, with as many\n")
	b.WriteString("iterations each, or one benchmark that measures its own baseline. Median of the\n")
	b.WriteString("rounds, and their lowest and highest; \"met\" compares the median with the target.\n\n")
	b.WriteString("| row | figure | median | spread | allocs/op | target | met |\n|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		if r.skipped != "" {
			fmt.Fprintf(&b, "| `%s` | %s | skipped: %s | | | %s | |\n", r.id, r.figure, r.skipped, r.target)
			continue
		}
		lo, hi := slices.Min(r.values), slices.Max(r.values)
		allocs := ""
		if r.allocsOf != "" {
			allocs = strconv.FormatFloat(median(r.allocs), 'f', 0, 64)
		}
		met := ""
		if r.met != nil {
			met = "no"
			if r.met(median(r.values)) {
				met = "yes"
			}
		}
		beside := ""
		if r.beside != "" && len(r.besides) > 0 {
			beside = fmt.Sprintf(" (`%s` %s)", r.beside, strconv.FormatFloat(median(r.besides), 'f', 3, 64))
		}
		fmt.Fprintf(&b, "| `%s` | %s | **%s**%s | %s – %s | %s | %s | %s |\n", r.id, r.figure, format(r.row, median(r.values)), beside,
			format(r.row, lo), format(r.row, hi), allocs, r.target, met)
	}
	b.WriteString("\nEach row's run (from the module root, with `" + overlay + "`; `go test -c` of the package,\nthen, in its directory):\n\n")
	for _, r := range results {
		fewer := ""
		if n := r.roundsOf(rounds); n != rounds {
			fewer = fmt.Sprintf(" (%d rounds)", n)
		}
		fmt.Fprintf(&b, "- `%s`: `%s -test.run '^$' -test.bench '%s' -test.benchmem -test.benchtime %s`%s\n", r.id, r.pkg, r.bench, r.benchtime, fewer)
	}
	return b.String()
}

// rewrite puts table between the markers of the file at path.
func rewrite(path, table string) error {
	text, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	start := bytes.Index(text, []byte(startMarker))
	end := bytes.Index(text, []byte(endMarker))
	if start < 0 || end < start {
		return fmt.Errorf("%s: no %s ... %s markers to write the table between", path, startMarker, endMarker)
	}
	var b bytes.Buffer
	b.Write(text[:start+len(startMarker)])
	b.WriteString("\n")
	b.WriteString(table)
	b.Write(text[end:])
	return os.WriteFile(path, b.Bytes(), 0o644)
}
