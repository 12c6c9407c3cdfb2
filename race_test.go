//go:build race

package privacy

// raceEnabled: sync.Pool drops items on purpose under the race detector, so
// allocation counts are only asserted without it.
const raceEnabled = true
