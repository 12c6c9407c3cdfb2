// Package benchdata holds the messages' parts the benchmarks of several
// packages share, so that their figures measure the same input.
package benchdata
