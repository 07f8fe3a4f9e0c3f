//go:build race

package gateway

// raceEnabled: the race detector allocates on its own, so allocation
// counts are not pinned under it.
const raceEnabled = true
