package probe

import (
	"strings"
	"testing"
)

// TestSummaryEscapesMachineText: a CPU model or GPU name is the machine's
// text, not ours; one holding a newline and an escape sequence must not
// start a forged line of the summary.
func TestSummaryEscapesMachineText(t *testing.T) {
	res := &Result{}
	res.Host.CPU.Model = "EPYC\n\x1b[2KPASS for profile enterprise: 0 failed"
	res.GPU.Summary = "H100\r\u202eSSAP"
	var b strings.Builder
	if err := WriteSummary(&b, res, Verdict{Status: StatusFail, Profile: "pro"}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.ContainsAny(out, "\x1b\r\u202e") {
		t.Errorf("summary carries raw control characters: %q", out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "PASS") {
			t.Errorf("forged line: %q", l)
		}
	}
}
