//go:build race

package config

// raceSlowdown scales the time budgets of the bomb tests: the race detector
// makes go-yaml's lexer about ten times slower, and what the budgets catch
// (work growing with the square of the input) is slower by far more.
const raceSlowdown = 10
