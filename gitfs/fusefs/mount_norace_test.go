//go:build !race

package fusefs

// mntRace says the race detector is on (see mount_race_test.go).
const mntRace = false
