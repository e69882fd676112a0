package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/store"
)

// TestMain lets tests run this test binary as the omerta command itself, so
// that signals reach a real process with main's signal handling.
func TestMain(m *testing.M) {
	if args := os.Getenv("OMERTA_TEST_MAIN_ARGS"); args != "" {
		os.Args = append([]string{"omerta"}, strings.Split(args, "\x1f")...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func omertaCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "OMERTA_TEST_MAIN_ARGS="+strings.Join(args, "\x1f"))
	return cmd
}

func daemonConfig(t *testing.T) (cfgPath, sock, stateDir string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "omerta-main")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock = filepath.Join(dir, "omertad.sock")
	stateDir = filepath.Join(dir, "state")
	cfgPath = filepath.Join(dir, "omerta.yaml")
	// The agents' directories under dir too, and a containerd socket that
	// does not exist: with the defaults a test would write to the host's
	// /var/log/omerta and /run/omerta.
	cfg := "daemon:\n  socket: " + sock + "\n  state_dir: " + stateDir + "\n  shutdown_timeout: 5s\n" +
		"agents:\n  containerd: " + filepath.Join(dir, "no-containerd.sock") +
		"\n  catalog_dir: " + filepath.Join(dir, "catalog") + "\n  bundled_dir: " + filepath.Join(dir, "bundled") +
		"\n  log_dir: " + filepath.Join(dir, "logs") + "\n  run_dir: " + filepath.Join(dir, "run") + "\n"
	os.WriteFile(cfgPath, []byte(cfg), 0o644)
	return cfgPath, sock, stateDir
}

func waitHealthy(t *testing.T, sock string) {
	t.Helper()
	c := apiclient.New(sock, apiclient.WithTimeout(time.Second))
	defer c.Close()
	deadline := time.Now().Add(15 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if _, err = c.Health(context.Background()); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("daemon on %s never became healthy: %v", sock, err)
}

func TestDaemonStopsOnSIGTERM(t *testing.T) {
	cfg, sock, stateDir := daemonConfig(t)
	cmd := omertaCmd("daemon", "--config", cfg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, sock)
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("daemon did not stop within 10s of SIGTERM")
	}
	t.Logf("stopped %v after SIGTERM", time.Since(start))
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket still there after stop: %v", err)
	}
	st, err := store.Open(context.Background(), filepath.Join(stateDir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, err := st.AuditLog(context.Background(), 0, 10)
	if err != nil || len(recs) != 2 || recs[0].Action != "daemon.start" || recs[1].Action != "daemon.stop" {
		t.Fatalf("audit log = %+v, %v; want daemon.start, daemon.stop", recs, err)
	}
}

// TestDaemonRestartsAfterSIGKILL kills the daemon mid-flight and starts it
// again on the same state: the database opens cleanly, the stale socket is
// replaced, and the audit chain holds.
func TestDaemonRestartsAfterSIGKILL(t *testing.T) {
	cfg, sock, stateDir := daemonConfig(t)
	for round := 0; round < 3; round++ {
		cmd := omertaCmd("daemon", "--config", cfg)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitHealthy(t, sock)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
	st, err := store.Open(context.Background(), filepath.Join(stateDir, "state.db"))
	if err != nil {
		t.Fatalf("state after SIGKILL: %v", err)
	}
	defer st.Close()
	if n, err := st.VerifyAudit(context.Background()); err != nil || n != 3 {
		t.Fatalf("audit after 3 killed runs = %d records, %v; want 3 starts", n, err)
	}
}

func TestDaemonBadConfigExits(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ name, body, want string }{
		{"unknown field", "profile: user\nprofiel: pro\n", `unknown field "profiel"`},
		{"bad value", "profile: gold\n", `profile: "gold": must be one of user, pro, enterprise`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".yaml")
			os.WriteFile(p, []byte(tt.body), 0o644)
			out, err := omertaCmd("daemon", "--config", p).CombinedOutput()
			if err == nil {
				t.Fatal("daemon started with a bad configuration")
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tt.want) || !strings.Contains(lines[0], p) {
				t.Fatalf("output = %q, want one line naming %s and %q", out, p, tt.want)
			}
		})
	}
	out, err := omertaCmd("daemon", "--config", filepath.Join(dir, "absent.yaml")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "configuration file not found") {
		t.Fatalf("missing --config file: %v %q", err, out)
	}
}

// runCmd runs `omerta args...` in process and returns what it printed.
func runCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// TestDaemonFirstbootRoot: omertad beside a first boot made into a scratch
// root (the demo's and the browser test's set-up) redeems that root's setup
// token once and serves that root's report, verified against its key.
func TestDaemonFirstbootRoot(t *testing.T) {
	root := t.TempDir()
	if out, err := runCmd(t, "firstboot", "--root", root, "--profile", "user"); err != nil {
		t.Fatalf("firstboot: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(filepath.Join(root, "var/lib/omerta/setup-token"))
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(raw, &tok); err != nil || tok.Token == "" {
		t.Fatalf("setup token file: %v %q", err, raw)
	}
	cfg, sock, _ := daemonConfig(t)
	cmd := omertaCmd("daemon", "--config", cfg, "--firstboot-root", root)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	waitHealthy(t, sock)
	c := apiclient.New(sock)
	defer c.Close()
	ctx := context.Background()

	rep, err := c.Report(ctx)
	if err != nil || rep.Verification.Status != apitype.ReportVerified || !rep.Verification.Trusted {
		t.Fatalf("Report = %+v, %v\n%s", rep.Verification, err, stderr.String())
	}
	req := apitype.SetupRequest{Token: tok.Token, Username: "admin", Password: "umber-kestrel-41-quarry"}
	if _, err := c.Setup(ctx, req); err != nil {
		t.Fatalf("Setup with the scratch root's token: %v\n%s", err, stderr.String())
	}
	if st, err := c.SetupState(ctx); err != nil || !st.Done {
		t.Fatalf("SetupState = %+v, %v", st, err)
	}
	if _, err := c.Setup(ctx, req); err == nil {
		t.Fatal("a second setup was accepted")
	}
}
