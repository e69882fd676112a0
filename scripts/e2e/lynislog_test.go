package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// testdata/lynis.log is Lynis 3.0.8's log of an audit (Debian 12's
// package, run with --quick on a development container), hostnames and
// addresses left as they were: nothing in it identifies a machine.
func TestLynisSlowest(t *testing.T) {
	data, err := os.ReadFile("testdata/lynis.log")
	if err != nil {
		t.Fatal(err)
	}
	tests, span := lynisSlowest(string(data), 5)
	if len(tests) != 5 {
		t.Fatalf("%d tests, want 5: %+v", len(tests), tests)
	}
	for i := 1; i < len(tests); i++ {
		if tests[i].Seconds > tests[i-1].Seconds {
			t.Errorf("not longest first: %+v", tests)
		}
	}
	if span <= 0 || span > time.Hour {
		t.Errorf("span %s", span)
	}
	var sum float64
	all, _ := lynisSlowest(string(data), 1000)
	for _, x := range all {
		sum += x.Seconds
	}
	if n := strings.Count(string(data), " Performing test ID "); len(all) == 0 || len(all) > n {
		t.Errorf("%d tests timed of %d started", len(all), n)
	}
	if sum > span.Seconds() {
		t.Errorf("tests sum to %.0f s, more than the log's span %s", sum, span)
	}
}

func TestLynisSlowestSynthetic(t *testing.T) {
	log := "2026-12-01 10:00:00 Starting Lynis\n" +
		"2026-12-01 10:00:01 Performing test ID AAA-0001 (one)\n" +
		"2026-12-01 10:00:03 Result: ok\n" +
		"2026-12-01 10:00:04 Performing test ID BBB-0002 (two)\n" +
		"not a stamped line\n" +
		"2026-12-01 10:00:14 Performing test ID AAA-0001 (one, again)\n" +
		"2026-12-01 10:00:15 \x1b[31mPerforming test ID\n" +
		"2026-12-01 10:00:20 End\n"
	got, span := lynisSlowest(log, 10)
	want := []lynisTest{{"BBB-0002", 10}, {"AAA-0001", 9}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if span != 20*time.Second {
		t.Errorf("span %s, want 20s", span)
	}
}

func FuzzLynisSlowest(f *testing.F) {
	f.Add("2026-12-01 10:00:01 Performing test ID AAA-0001 (one)\n2026-12-01 10:00:03 x\n")
	f.Add("2026-12-01 10:00:01 Performing test ID \n")
	f.Fuzz(func(t *testing.T, log string) {
		tests, _ := lynisSlowest(log, 3)
		if len(tests) > 3 {
			t.Fatalf("%d tests, bound 3", len(tests))
		}
	})
}
