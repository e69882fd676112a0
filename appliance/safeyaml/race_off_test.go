//go:build !race

package safeyaml

// raceSlowdown: see race_on_test.go.
const raceSlowdown = 1
