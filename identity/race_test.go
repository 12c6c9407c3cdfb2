//go:build race

package identity

// raceEnabled: sync.Pool drops items on purpose under the race detector, so
// allocation counts are only asserted without it.
const raceEnabled = true
