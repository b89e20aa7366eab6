//go:build race

package fusefs

// mntRace says the race detector is on: large reads are shortened, as it
// makes them about ten times slower.
const mntRace = true
