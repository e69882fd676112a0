//go:build !race

package config

// raceSlowdown: see race_on_test.go.
const raceSlowdown = 1
