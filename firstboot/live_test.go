package firstboot

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/omertaos/omertaos/firstboot/report"
)

// TestLivePath drives the live-only calls (sethostname, networkd reload,
// timesyncd restart, starting sshd, running Lynis) on a temp root with the
// commands recorded instead of run: live mode proper needs root "/".
func TestLivePath(t *testing.T) {
	root := newTestRoot(t, map[string]string{"/etc/omerta/omerta.yaml": goodSite})
	opts := testOptions(root, nil)
	var cmds []string
	var host string
	opts.Exec = func(ctx context.Context, name string, args ...string) error {
		cmds = append(cmds, name+" "+strings.Join(args, " "))
		if name == LynisPath {
			data, err := os.ReadFile("testdata/lynis-report-debian12.dat")
			if err != nil {
				return err
			}
			return os.WriteFile(args[len(args)-1], data, 0o600)
		}
		return nil
	}
	opts.Sethostname = func(h string) error { host = h; return nil }
	r, err := newRunner(opts)
	if err != nil {
		t.Fatal(err)
	}
	r.opts.Live = true
	r.opts.Lynis = lynisCommand(r.opts.Exec)
	if _, err := r.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The audit, as omerta-lynis.service runs it after first boot.
	a, err := newAuditor(AuditOptions{Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	a.opts.Live = true
	a.opts.Lynis = lynisCommand(a.opts.Exec)
	if _, err := a.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if host != "gpu-node-1" {
		t.Errorf("sethostname(%q)", host)
	}
	want := []string{
		"networkctl reload",
		"systemctl try-restart --no-block systemd-timesyncd.service",
		"systemctl start --no-block ssh.service",
		"/usr/sbin/lynis audit system --quick --no-colors --report-file ",
	}
	if len(cmds) != len(want) {
		t.Fatalf("commands = %q", cmds)
	}
	for i := range want {
		if !strings.HasPrefix(cmds[i], want[i]) {
			t.Errorf("command %d = %q, want %q...", i, cmds[i], want[i])
		}
	}
	if st := readReport(t, root).AuditState(); st.Status != report.AuditDone || st.Lynis.Index != 56 {
		t.Errorf("audit = %+v", st)
	}
}
