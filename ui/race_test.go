//go:build race

package ui

// raceEnabled: the race detector multiplies memory use; bounds on RSS do
// not hold under it.
const raceEnabled = true
