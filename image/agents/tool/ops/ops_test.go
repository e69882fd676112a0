package ops

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDates(t *testing.T) {
	tests := []struct {
		text string
		want []string // ISO forms
	}{
		{"on 2024-02-29 and 2023-02-29", []string{"2024-02-29"}},
		{"March 5th, 2025", []string{"2025-03-05"}},
		{"Sept. 30 2024", []string{"2024-09-30"}},
		{"sep 1, 1999", []string{"1999-09-01"}},
		{"1st  February, 2026", []string{"2026-02-01"}},
		{"31 April 2024", nil},
		{"Mayday 5 2024", nil},
		{"X1 May 2024", nil},
		{"123 May 2024", nil},
		{"May 123 2024", nil},
		{"May 5      2024", nil}, // more white space than a date has
		{"12024-01-01", nil},
		{"May 5, 2024-01-01", []string{"2024-05-05"}}, // overlapping forms: the leftmost wins
	}
	for _, tt := range tests {
		var taken spans
		var got []string
		for _, d := range scanDates(tt.text, &taken) {
			got = append(got, d.ISO)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%q: (-want +got)\n%s", tt.text, diff)
		}
	}
}

func TestNumbers(t *testing.T) {
	tests := []struct {
		text string
		want []string
	}{
		{"1,234,567.89 and 1,2345", []string{"1,234,567.89", "1,234"}},
		{"-4 +5 10-5", []string{"-4", "+5", "10", "5"}}, // distinct texts: "+5" is not "5"
		{"v2 x86 _7 3rd 5kg", []string{"3", "5"}},
		{"1.5.6", []string{"1.5", "6"}},
		{"99999999999999999999999999999999999999", []string{"99999999999999999999999999999999999999"}},
	}
	for _, tt := range tests {
		var got []string
		for _, n := range scanNumbers(tt.text, &spans{}) {
			got = append(got, n.Text)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%q: (-want +got)\n%s", tt.text, diff)
		}
	}
}

func TestSpansOverlap(t *testing.T) {
	var s spans
	s.add(spans{{10, 20}, {0, 5}})
	s.add(spans{{30, 31}})
	for _, tt := range []struct {
		start, end int
		want       bool
	}{
		{0, 1, true}, {5, 10, false}, {19, 25, true}, {20, 30, false}, {30, 31, true}, {31, 40, false}, {4, 11, true},
	} {
		if got := s.overlaps(tt.start, tt.end); got != tt.want {
			t.Errorf("overlaps(%d, %d) = %v, want %v", tt.start, tt.end, got, tt.want)
		}
	}
}

func TestSplitSentences(t *testing.T) {
	tests := []struct {
		text string
		want []string
	}{
		{"One. Two! Three?", []string{"One.", "Two!", "Three?"}},
		{"Dr. Who met Mr. Smith. Then left.", []string{"Dr. Who met Mr. Smith.", "Then left."}},
		{"Pi is 3.14 today. e.g. this", []string{"Pi is 3.14 today.", "e.g. this"}},
		{"He said \"stop.\" Then   ran", []string{"He said \"stop.\"", "Then ran"}},
		{"no end\n\nnew  paragraph\nsame one", []string{"no end", "new paragraph same one"}},
		{"  \n\n  ", nil},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, splitSentences(tt.text)); diff != "" {
			t.Errorf("%q: (-want +got)\n%s", tt.text, diff)
		}
	}
}

// TestSummarizeDeterministic: equal scores keep text order, and a request
// for more sentences than the text has returns them all.
func TestSummarizeDeterministic(t *testing.T) {
	res := Summarize("Alpha beta. Gamma delta. Epsilon zeta.", 2)
	if got := res.Summary; got != "Alpha beta. Gamma delta." {
		t.Errorf("summary %q", got)
	}
	if got := Summarize("One two. Three four.", 10); len(got.Sentences) != 2 || got.Total != 2 {
		t.Errorf("got %+v", got)
	}
}

func TestParsePointer(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"", nil, false},
		{"/", []string{""}, false},
		{"/a~1b/m~0n/0", []string{"a/b", "m~n", "0"}, false},
		{"/~01", []string{"~1"}, false},
		{"a", nil, true},
		{"/a~2", nil, true},
		{"/a~", nil, true},
		{"/" + strings.Repeat("x", maxPointer), nil, true},
	}
	for _, tt := range tests {
		got, err := parsePointer(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("parsePointer(%q) error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if diff := cmp.Diff(tt.want, got); !tt.wantErr && diff != "" {
			t.Errorf("parsePointer(%q): (-want +got)\n%s", tt.in, diff)
		}
	}
}

func TestArrayIndex(t *testing.T) {
	for _, tt := range []struct {
		s  string
		n  int
		ok bool
	}{
		{"0", 1, true}, {"1", 1, false}, {"01", 5, false}, {"-1", 5, false}, {"", 5, false},
		{"99999999999999999999999", 5, false}, {"2", 3, true},
	} {
		if _, ok := arrayIndex(tt.s, tt.n); ok != tt.ok {
			t.Errorf("arrayIndex(%q, %d) ok = %v, want %v", tt.s, tt.n, ok, tt.ok)
		}
	}
}

// TestInspectReadsStatus checks the fields parsed from /proc/self/status and
// the write probes against a read-only directory. Root ignores directory
// permissions, so that half only runs unprivileged.
func TestInspectReadsStatus(t *testing.T) {
	dir := t.TempDir()
	proc := filepath.Join(dir, "proc")
	if err := os.MkdirAll(filepath.Join(proc, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	status := "Name:\tx\nUid:\t0\t10001\t0\t0\nGid:\t5\nCapEff:\t00000000a80425fb\nNoNewPrivs:\t0\n"
	if err := os.WriteFile(filepath.Join(proc, "self", "status"), []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	v, err := runInspect(Env{Root: ro, Proc: proc, Tmp: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := v.(*InspectResult)
	want := &InspectResult{Op: "inspect", UID: 10001, GID: -1, CapEff: "00000000a80425fb", NoNewPrivs: 0, Seccomp: -1, TmpWritable: true}
	if os.Geteuid() != 0 {
		want.RootError = "permission denied"
	} else {
		want.RootWritable = true
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

func TestInspectWithoutProc(t *testing.T) {
	_, err := runInspect(Env{Root: t.TempDir(), Proc: "/nonexistent", Tmp: t.TempDir()}, nil)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeInternal {
		t.Errorf("got %v, want an internal error", err)
	}
}

// TestRunRefusesOversizedInput: Run checks the cap itself, for callers
// other than the agent's main (the web agent).
func TestRunRefusesOversizedInput(t *testing.T) {
	_, err := Run(DefaultEnv, make([]byte, MaxInput+1))
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeInputTooLarge {
		t.Errorf("got %v", err)
	}
}
