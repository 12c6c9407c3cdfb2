// Command benchtable runs the benchmarks behind the figures the issues set,
// each beside its baseline in the same process, several rounds, and writes
// the table of same-run ratios into BENCHMARKS.md between its markers:
//
//	go run ./internal/benchtable              # every row, 5 rounds, rewrite the table
//	go run ./internal/benchtable -rounds 3 -only issue-13 -o -   # some rows, printed
//
// Rows that need PostgreSQL run when GDPRKIT_TEST_POSTGRES_DSN is set and
// are marked skipped otherwise. A row's figure is the median of its rounds
// and its spread the lowest and highest round, so that a re-run can be
// checked against it.
package main
