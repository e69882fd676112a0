package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The image's Lynis plugin that stamps the log without date(1); its
// stamps are what lynisSlowest reads.
const (
	clockPlugin = "../../image/mkosi.extra/etc/lynis/plugins/plugin_clock_phase1"
	lynisCustom = "../../image/mkosi.extra/etc/lynis/custom.prf"
)

// dash runs script with the plugin sourced, as Lynis (/bin/sh) would.
func dash(t *testing.T, env []string, script string, args ...string) string {
	t.Helper()
	sh, err := exec.LookPath("dash")
	if err != nil {
		t.Skip("dash is not installed: Lynis runs the plugin under /bin/sh, which is dash on the image")
	}
	plugin, err := filepath.Abs(clockPlugin)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sh, append([]string{"-c", ". " + plugin + "\n" + script, "sh"}, args...)...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "LOGFILE=", "LOGTEXT=0"}, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dash: %v\n%s", err, out)
	}
	return string(out)
}

// The calendar in the shell's arithmetic, against Go's, at the days that
// catch such code out: leap days, the century that is not a leap year.
func TestLynisClockCalendar(t *testing.T) {
	epochs := []int64{0, 59, 86399, 86400, 951782400, 951868799, 951868800, 1709251199, 1735689599,
		1735689600, 1798761599, 4107542399, 4107542400, 253402300799}
	args := make([]string, len(epochs))
	for i, e := range epochs {
		args[i] = strconv.FormatInt(e, 10)
	}
	// The uptime read at the start is the one OmertaClock reads next
	// (to the second), so the stamp is the epoch's own.
	out := dash(t, nil, `for T in "$@"; do
	read u r </proc/uptime; OMERTA_CLOCK_U0=${u%.*}; OMERTA_CLOCK_T0=$T; OMERTA_CLOCK_OFF=0
	OmertaClock; echo "$CDATE"
done`, args...)
	got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(got) != len(epochs) {
		t.Fatalf("%d stamps for %d epochs:\n%s", len(got), len(epochs), out)
	}
	for i, e := range epochs {
		want, next := time.Unix(e, 0).UTC().Format(time.DateTime), time.Unix(e+1, 0).UTC().Format(time.DateTime)
		if got[i] != want && got[i] != next { // the uptime may tick in between
			t.Errorf("epoch %d: stamp %q, want %q", e, got[i], want)
		}
	}
}

// In any zone the stamp is date(1)'s local time to within a second, and
// the log's lines keep the form lynisSlowest reads.
func TestLynisClockLog(t *testing.T) {
	log := filepath.Join(t.TempDir(), "lynis.log")
	for _, tz := range []string{"UTC", "Asia/Kolkata", "America/St_Johns", "Pacific/Chatham"} {
		out := dash(t, []string{"TZ=" + tz}, `OmertaClock; echo "$CDATE"; date "+%Y-%m-%d %H:%M:%S"`)
		f := strings.Split(strings.TrimSpace(out), "\n")
		if len(f) != 2 {
			t.Fatalf("%s: %q", tz, out)
		}
		a, errA := time.Parse(time.DateTime, f[0])
		b, errB := time.Parse(time.DateTime, f[1])
		if errA != nil || errB != nil || b.Sub(a) < 0 || b.Sub(a) > time.Second {
			t.Errorf("%s: plugin %q, date(1) %q", tz, f[0], f[1])
		}
	}
	dash(t, []string{"LOGFILE=" + log, "LOGTEXT=1"}, `LogText "Performing test ID KRNL-6000 (Check sysctl key pairs in scan profile)"; LogTextBreak`)
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	// The plugin's own line, the test's, the break.
	if len(lines) != 3 || !strings.HasSuffix(lines[0], " Result: "+clockPluginLine) || !strings.HasSuffix(lines[1], " Performing test ID KRNL-6000 (Check sysctl key pairs in scan profile)") ||
		!strings.HasSuffix(lines[2], " ====") {
		t.Fatalf("log:\n%s", data)
	}
	for _, l := range lines {
		if _, err := time.Parse(time.DateTime, l[:min(len(l), 19)]); err != nil {
			t.Errorf("line %q: %v", l, err)
		}
	}
	if tests, _ := lynisSlowest(string(data), 5); len(tests) != 1 || tests[0].ID != "KRNL-6000" {
		t.Errorf("lynisSlowest = %+v", tests)
	}
}

// Lynis runs a plugin only when a profile names it, and phase 1's plugins
// in the order of their names: this one must come before Debian's, whose
// scan of every binary logs a line each.
func TestLynisClockEnabled(t *testing.T) {
	plugin, err := os.ReadFile(clockPlugin)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(plugin), "\n# PLUGIN_NAME=clock\n") {
		t.Errorf("%s names no plugin clock", clockPlugin)
	}
	prf, err := os.ReadFile(lynisCustom)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(prf), "\nplugin=clock\n") {
		t.Errorf("%s does not enable plugin clock", lynisCustom)
	}
	if name := filepath.Base(clockPlugin); name >= "plugin_debian_phase1" {
		t.Errorf("%s runs after plugin_debian_phase1", name)
	}
}

// GetTimestamp, which Register times each test with, reads as date
// "+%s%N" does (to the plugin's 10 ms and a little scheduling), moves
// with the clock, and falls back to date(1)'s seconds.
func TestLynisClockTimestamp(t *testing.T) {
	out := dash(t, nil, `GetTimestamp; date +%s%N; sleep 0.3; GetTimestamp; OMERTA_CLOCK_C0=""; GetTimestamp; date +%s`)
	f := strings.Fields(out)
	if len(f) != 5 {
		t.Fatalf("output %q", out)
	}
	n := make([]int64, len(f))
	for i, s := range f {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("field %d %q: %v", i, s, err)
		}
		n[i] = v
	}
	// Lynis' Register reads a value above 10^18 as nanoseconds.
	if n[0] <= 1e18 || n[1]-n[0] < -20e6 || n[1]-n[0] > 500e6 {
		t.Errorf("GetTimestamp %d, date(1) %d", n[0], n[1])
	}
	if d := n[2] - n[0]; d < 250e6 || d > 2e9 {
		t.Errorf("0.3 s apart, GetTimestamp moved %d ns", d)
	}
	if n[3] != n[4] && n[3]+1 != n[4] {
		t.Errorf("without its reading, GetTimestamp %d, date +%%s %d", n[3], n[4])
	}
}

// The plugin's expr gives expr(1)'s output and exit status for the sums
// it works out, and hands every other expression to expr(1).
func TestLynisExpr(t *testing.T) {
	if _, err := exec.LookPath("expr"); err != nil {
		t.Skip("expr is not installed")
	}
	cases := [][]string{
		{"0", "+", "1"}, {"2572", "+", "1"}, {"-5", "+", "3"}, {"-3", "+", "3"}, {"0", "+", "0"}, {"-0", "+", "1"},
		{"999999999999999999", "+", "999999999999999999"}, {"-999999999999999999", "+", "1"},
		// expr(1)'s own: too long for the shell, octal to the shell, not a
		// number, not a sum, not three words.
		{"9223372036854775807", "+", "1"}, {"007", "+", "1"}, {"010", "+", "1"}, {"08", "+", "1"}, {"a", "+", "1"}, {"", "+", "1"},
		{"+1", "+", "2"}, {"5", "-", "3"}, {"1", "+", "2", "+", "3"}, {"length", "abc"}, {"1", "+"},
	}
	for _, c := range cases {
		ref := exec.Command("expr", c...)
		ref.Env = []string{"PATH=/usr/bin:/bin"} // dash's, so that messages match
		want, wantErr := ref.CombinedOutput()
		wantRC := 0
		if ee, ok := wantErr.(*exec.ExitError); ok {
			wantRC = ee.ExitCode()
		}
		got := dash(t, nil, `expr "$@"; echo "rc=$?"`, c...)
		if w := string(want) + "rc=" + strconv.Itoa(wantRC) + "\n"; got != w {
			t.Errorf("expr %q: plugin %q, expr(1) %q", c, got, w)
		}
	}
	// Debian's DEB-0001 loop, as it is written.
	if got := dash(t, nil, "N=0; for I in a b c; do N=`expr ${N} + 1`; done; echo $N"); got != "3\n" {
		t.Errorf("DEB-0001's count: %q", got)
	}
}

// The plugin's tr upper-cases as tr(1) does in Lynis' C locale, line by
// line and with or without a last newline, and hands long lines and every
// other translation to tr(1).
func TestLynisTr(t *testing.T) {
	if _, err := exec.LookPath("tr"); err != nil {
		t.Skip("tr is not installed")
	}
	long := strings.Repeat("abc-", 100)
	cases := []struct {
		in   string
		args []string
	}{
		{"krnl-6000\n", nil}, {"KRNL-6000\n", nil}, {"", nil}, {"\n", nil}, {"no newline", nil},
		{"two\nlines\n", nil}, {"  spaces  kept \t\n", nil}, {`back\slash \n \\`, nil},
		{"caf\u00e9 \u00fcber \u0131\n", nil}, {"[:lower:] * ? $HOME `x`\n", nil},
		{long + "\n" + "short\n", nil}, {"short\n" + long, nil},
		{"a b c\n", []string{"-d", " "}}, {"abc\n", []string{"a-z", "A-Z"}}, {"abc\n", []string{"[:upper:]", "[:lower:]"}},
	}
	for _, c := range cases {
		args := c.args
		if args == nil {
			args = []string{"[:lower:]", "[:upper:]"}
		}
		ref := exec.Command("tr", args...)
		ref.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
		ref.Stdin = strings.NewReader(c.in)
		want, err := ref.Output()
		if err != nil {
			t.Fatalf("tr %q: %v", args, err)
		}
		got := dash(t, []string{"IN=" + c.in}, `printf '%s' "$IN" | tr "$@"`, args...)
		if got != string(want) {
			t.Errorf("tr %q of %q: plugin %q, tr(1) %q", args, c.in, got, want)
		}
	}
}
