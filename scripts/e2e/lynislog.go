package main

import (
	"bufio"
	"sort"
	"strings"
	"time"
)

// lynisTest is one Lynis test and the time until the next one started:
// where the audit's half hour under emulation goes.
type lynisTest struct {
	ID      string  `json:"id"`
	Seconds float64 `json:"seconds"`
}

// clockPluginLine is what the image's Lynis plugin plugin_clock_phase1
// logs when it starts.
const clockPluginLine = "log lines are stamped from /proc/uptime from here on (plugin clock)"

// lynisLogLimit bounds what is read of /var/log/lynis.log (a full audit
// writes about 1 MiB); maxLynisTimed bounds the list in the results.
const (
	lynisLogLimit = 8 << 20
	maxLynisTimed = 15
)

// lynisSlowest reads Lynis' log ("2006-01-02 15:04:05 Performing test ID
// X (title)" lines, each line stamped) and returns the n tests that took
// longest, longest first, with the log's whole span. A test's time runs
// to the next line that starts a test, or to the last stamped line.
func lynisSlowest(log string, n int) (tests []lynisTest, span time.Duration) {
	var (
		first, last, startedAt time.Time
		current                string
		took                   = map[string]time.Duration{}
	)
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if len(line) < 20 {
			continue
		}
		at, err := time.Parse(time.DateTime, line[:19])
		if err != nil {
			continue
		}
		if first.IsZero() {
			first = at
		}
		last = at
		rest, ok := strings.CutPrefix(line[19:], " Performing test ID ")
		id, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
		if !ok || id == "" {
			continue
		}
		if current != "" {
			took[current] += max(at.Sub(startedAt), 0) // a clock stepped back
		}
		current, startedAt = id, at
	}
	if current != "" {
		took[current] += max(last.Sub(startedAt), 0)
	}
	for id, d := range took {
		tests = append(tests, lynisTest{ID: id, Seconds: d.Seconds()})
	}
	sort.Slice(tests, func(i, j int) bool {
		if tests[i].Seconds != tests[j].Seconds {
			return tests[i].Seconds > tests[j].Seconds
		}
		return tests[i].ID < tests[j].ID
	})
	if len(tests) > n {
		tests = tests[:n]
	}
	return tests, last.Sub(first)
}
