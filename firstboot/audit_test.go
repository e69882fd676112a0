package firstboot

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/omertaos/omertaos/appliance/store"
	"github.com/omertaos/omertaos/firstboot/report"
)

// firstbooted is a test root after a complete first boot with the audit
// deferred.
func firstbooted(t *testing.T) (string, Options) {
	t.Helper()
	root := newTestRoot(t, map[string]string{"/etc/omerta/omerta.yaml": goodSite})
	opts := testOptions(root, nil)
	if _, err := Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	return root, opts
}

func devicePub(t *testing.T, root string) ed25519.PublicKey {
	t.Helper()
	data, err := os.ReadFile(under(root, SigningPubPath))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := report.ParsePublicKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func verifyReport(t *testing.T, root string) *report.Verification {
	t.Helper()
	data, err := os.ReadFile(under(root, ReportPath))
	if err != nil {
		t.Fatal(err)
	}
	v, err := report.Verify(data, devicePub(t, root))
	if err != nil || !v.Trusted {
		t.Fatalf("report does not verify against the device key: %v", err)
	}
	return v
}

func auditActions(t *testing.T, root string) []string {
	t.Helper()
	st, err := store.Open(context.Background(), under(root, StateDBPath))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	log, err := st.AuditLog(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.VerifyAudit(context.Background()); err != nil {
		t.Errorf("audit chain: %v", err)
	}
	var out []string
	for _, e := range log {
		if e.Target == AuditStep {
			out = append(out, e.Action)
		}
	}
	return out
}

func TestAuditSealsIntoReport(t *testing.T) {
	root, opts := firstbooted(t)
	first := verifyReport(t, root)
	if first.Audit.Status != report.AuditPending {
		t.Fatalf("after first boot the audit is %+v, want pending", first.Audit)
	}
	var out bytes.Buffer
	var notes []string
	opts.Out = &out
	opts.Notify = func(s string) error { notes = append(notes, s); return nil }
	res, err := RunAudit(context.Background(), AuditOptions{Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`omerta-lynis: audit started \(attempt 1 of 3\); the console is usable meanwhile`,
		`omerta-lynis: audit sealed: hardening index 56, 2 warning\(s\), 45 suggestion\(s\), took \d+s \(Lynis 3\.0\.8\)`,
	}
	lines := linesOf(&out)
	if len(lines) != len(want) {
		t.Fatalf("console:\n%s", out.String())
	}
	for i := range want {
		if !regexp.MustCompile("^" + want[i] + "$").MatchString(lines[i]) {
			t.Errorf("console line %d = %q, want /%s/", i+1, lines[i], want[i])
		}
	}
	if res.State.Status != report.AuditDone || res.State.Lynis.Index != 56 {
		t.Errorf("result = %+v", res.State)
	}
	if got := strings.Join(notes, "\n"); got != "STATUS=Lynis audit: attempt 1 of 3\nSTATUS=Lynis audit done" {
		t.Errorf("notifications %q", got)
	}

	// The report is first boot's, with the audit sealed after it.
	v := verifyReport(t, root)
	r := v.Report
	if v.Audit.Status != report.AuditDone || len(r.Addenda) != 1 || r.Addenda[0].Attempts != 1 || r.Addenda[0].BootID != testBootID {
		t.Errorf("audit %+v, addenda %+v", v.Audit, r.Addenda)
	}
	if l := r.Addenda[0].Lynis; l.Version != "3.0.8" || l.Suggestions != 45 || len(l.Warnings) != 2 {
		t.Errorf("lynis = %+v", l)
	}
	if r.Signature.HeaderSHA256 != first.Report.Signature.HeaderSHA256 || r.Signature.ChainHead != first.Report.Signature.ChainHead {
		t.Error("sealing the audit changed what first boot sealed")
	}
	checkHTML(t, root)
	rows := stepTable(t, root)
	if last := rows[len(rows)-1]; last.Name != AuditStep || last.Status != StatusDone || last.Attempts != 1 || last.Position != 10 ||
		!last.StartedAt.Equal(r.Addenda[0].StartedAt) || !last.FinishedAt.Equal(r.Addenda[0].FinishedAt) {
		t.Errorf("audit row = %+v", last)
	}
	if got := auditActions(t, root); !cmp.Equal(got, []string{"firstboot.step.done"}) {
		t.Errorf("audit log = %q", got)
	}
	marker, err := os.ReadFile(under(root, AuditDonePath))
	if err != nil || !regexp.MustCompile(`^lynis audit done \S+\nreport sha256 [0-9a-f]{64}\n$`).Match(marker) {
		t.Errorf("done marker %q, %v", marker, err)
	}

	// Once done, a run changes nothing.
	before := rawTree(t, root)
	out.Reset()
	res, err = RunAudit(context.Background(), AuditOptions{Options: opts})
	if err != nil || !res.AlreadyDone {
		t.Fatalf("second RunAudit = %+v, %v", res, err)
	}
	if out.String() != "omerta-lynis: audit already complete (/var/lib/omerta/firstboot/lynis-done exists); nothing changed\n" {
		t.Errorf("second run said %q", out.String())
	}
	if d := cmp.Diff(before, rawTree(t, root)); d != "" {
		t.Errorf("second run changed files:\n%s", d)
	}
}

// Lynis failing every time seals the failure after three attempts, one a
// boot; a retry then seals the result after it.
func TestAuditFailsThenRetry(t *testing.T) {
	root, opts := firstbooted(t)
	var out bytes.Buffer
	opts.Out = &out
	opts.Lynis = func(ctx context.Context, file string) error {
		return errors.New("exit status 1: \x1b[31mFatal\x1b[0m: can't find include directory")
	}
	for n := 1; n < MaxAuditAttempts; n++ {
		_, err := RunAudit(context.Background(), AuditOptions{Options: opts})
		var se *StepError
		if !errors.As(err, &se) || se.Step != AuditStep {
			t.Fatalf("attempt %d: %v, want a StepError", n, err)
		}
		if v := verifyReport(t, root); v.Audit.Status != report.AuditPending {
			t.Fatalf("after a failed attempt the audit is %+v", v.Audit)
		}
	}
	if !strings.Contains(out.String(), `omerta-lynis: audit failed (attempt 2 of 3): lynis: exit status 1: \x1b[31mFatal\x1b[0m: can't find include directory; it runs again on the next boot`+"\n") {
		t.Errorf("console:\n%s", out.String())
	}
	if rows := stepTable(t, root); rows[len(rows)-1].Status != StatusFailed || rows[len(rows)-1].Attempts != 2 {
		t.Errorf("audit row after two failures: %+v", rows[len(rows)-1])
	}
	out.Reset()
	res, err := RunAudit(context.Background(), AuditOptions{Options: opts})
	if err != nil || res.State.Status != report.AuditFailed || res.State.Attempts != MaxAuditAttempts {
		t.Fatalf("last attempt: %+v, %v", res, err)
	}
	if !strings.Contains(out.String(), "omerta-lynis: audit sealed as failed after 3 attempt(s): lynis: exit status 1: \\x1b[31mFatal") {
		t.Errorf("console:\n%s", out.String())
	}
	if v := verifyReport(t, root); v.Audit.Status != report.AuditFailed || !strings.Contains(v.Audit.Reason, "can't find include directory") {
		t.Errorf("sealed audit = %+v", v.Audit)
	}
	if res, _ := RunAudit(context.Background(), AuditOptions{Options: opts}); !res.AlreadyDone {
		t.Error("a sealed failure ran again")
	}

	opts.Lynis = fixtureLynis(nil)
	res, err = RunAudit(context.Background(), AuditOptions{Options: opts, Retry: true})
	if err != nil || res.State.Status != report.AuditDone || res.State.Addendum != 2 {
		t.Fatalf("retry: %+v, %v", res, err)
	}
	v := verifyReport(t, root)
	if len(v.Report.Addenda) != 2 || v.Report.Addenda[0].Status != report.AuditFailed || v.Report.Addenda[1].Attempts != 1 {
		t.Errorf("addenda = %+v", v.Report.Addenda)
	}
	want := []string{"firstboot.step.failed", "firstboot.step.failed", "firstboot.step.failed", "firstboot.step.done"}
	if got := auditActions(t, root); !cmp.Equal(got, want) {
		t.Errorf("audit log = %q, want %q", got, want)
	}
	if _, err := RunAudit(context.Background(), AuditOptions{Options: opts, Retry: true}); !errors.Is(err, ErrNothingToRetry) {
		t.Errorf("retrying a done audit: %v", err)
	}
}

// An attempt that a shutdown stops counts; the next boot runs another.
func TestAuditInterrupted(t *testing.T) {
	root, opts := firstbooted(t)
	ctx, cancel := context.WithCancel(context.Background())
	opts.Lynis = func(ctx context.Context, file string) error {
		cancel()
		<-ctx.Done()
		return ctx.Err()
	}
	var out bytes.Buffer
	opts.Out = &out
	if _, err := RunAudit(ctx, AuditOptions{Options: opts}); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted audit: %v", err)
	}
	if !strings.Contains(out.String(), "omerta-lynis: audit interrupted (attempt 1 of 3); it runs again on the next boot\n") {
		t.Errorf("console:\n%s", out.String())
	}
	out.Reset()
	opts.Lynis = fixtureLynis(nil)
	res, err := RunAudit(context.Background(), AuditOptions{Options: opts})
	if err != nil || res.State.Attempts != 2 {
		t.Fatalf("next boot: %+v, %v", res, err)
	}
	if !strings.HasPrefix(out.String(), "omerta-lynis: attempt 1 did not finish (power loss, reboot or shutdown)\nomerta-lynis: audit started (attempt 2 of 3)") {
		t.Errorf("console:\n%s", out.String())
	}
	_ = root
}

func TestAuditRefuses(t *testing.T) {
	t.Run("before first boot", func(t *testing.T) {
		root := newTestRoot(t, nil)
		if _, err := RunAudit(context.Background(), AuditOptions{Options: testOptions(root, nil)}); !errors.Is(err, ErrFirstbootPending) {
			t.Errorf("RunAudit = %v, want ErrFirstbootPending", err)
		}
	})
	t.Run("a report that does not verify", func(t *testing.T) {
		root, opts := firstbooted(t)
		data, _ := os.ReadFile(under(root, ReportPath))
		os.WriteFile(under(root, ReportPath), bytes.Replace(data, []byte(`"hostname": "gpu-node-1"`), []byte(`"hostname": "gpu-node-2"`), 1), 0o644)
		before := rawTree(t, root)
		calls := 0
		opts.Lynis = fixtureLynis(&calls)
		_, err := RunAudit(context.Background(), AuditOptions{Options: opts})
		if err == nil || !strings.Contains(err.Error(), "does not verify against the device key") || calls != 0 {
			t.Errorf("RunAudit = %v after %d audits", err, calls)
		}
		if d := cmp.Diff(before, rawTree(t, root)); d != "" {
			t.Errorf("a refused audit changed files:\n%s", d)
		}
	})
	t.Run("no Lynis to run", func(t *testing.T) {
		root, opts := firstbooted(t)
		opts.Lynis = nil
		if _, err := RunAudit(context.Background(), AuditOptions{Options: opts}); err == nil || !strings.Contains(err.Error(), "only --live runs it") {
			t.Errorf("RunAudit = %v", err)
		}
		if _, err := os.Stat(under(root, AuditJournalPath)); !errors.Is(err, os.ErrNotExist) {
			t.Error("an audit that could not run counted an attempt")
		}
	})
	t.Run("retry of a pending audit", func(t *testing.T) {
		_, opts := firstbooted(t)
		if _, err := RunAudit(context.Background(), AuditOptions{Options: opts, Retry: true}); !errors.Is(err, ErrNothingToRetry) {
			t.Errorf("RunAudit = %v", err)
		}
	})
	t.Run("live on a tree", func(t *testing.T) {
		_, opts := firstbooted(t)
		opts.Live = true
		if _, err := RunAudit(context.Background(), AuditOptions{Options: opts}); err == nil || !strings.Contains(err.Error(), `needs root "/"`) {
			t.Errorf("RunAudit = %v", err)
		}
	})
}

// FuzzAuditJournal: whatever lynis.json holds, reading it neither panics
// nor yields a journal with a negative count.
func FuzzAuditJournal(f *testing.F) {
	f.Add([]byte(`{"version":1,"attempts":2,"running":true,"started_at":"2026-11-26T03:00:00Z","addenda":0}`))
	f.Add([]byte(`{"version":1,"attempts":-1}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`[]`))
	root := newTestRoot(f, nil)
	a, err := newAuditor(AuditOptions{Options: testOptions(root, nil)})
	if err != nil {
		f.Fatal(err)
	}
	if err := os.MkdirAll(under(root, Dir), 0o755); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(under(root, AuditJournalPath), data, 0o600); err != nil {
			t.Fatal(err)
		}
		a.j = auditJournal{}
		if err := a.readJournal(); err == nil && (a.j.Attempts < 0 || a.j.Addenda < 0 || a.j.Version != auditJournalVersion) {
			t.Fatalf("journal %q read as %+v", data, a.j)
		}
	})
}
