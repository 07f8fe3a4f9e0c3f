//go:build !race

package deny

const raceEnabled = false
