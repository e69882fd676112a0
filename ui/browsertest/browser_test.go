package browsertest

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// chromiumPath is Debian's chromium; playwright-core drives it and never
// downloads a browser of its own.
const chromiumPath = "/usr/bin/chromium"

// budget bounds the whole test, from the build to the last cleanup.
const budget = 8 * time.Minute

// TestBrowser runs scenario.mjs in chromium against the whole appliance
// stack. Without root, chromium, node or npm it is skipped, except under CI
// (CI set), where it fails: CI runs as root with everything installed.
func TestBrowser(t *testing.T) {
	node := requireBrowser(t)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	mod := moduleRoot(t)
	modules := installPlaywright(t, mod)
	shots := filepath.Join(mod, "out", "browser")
	if err := os.RemoveAll(shots); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	s := newStack(t)
	t.Logf("stack up in %v: console %s, first boot's certificate pinned (SHA-256 %x)", time.Since(start).Round(time.Millisecond), s.url, s.fb.fingerprint)
	if tok, _ := s.tokenState(t); tok == "" {
		t.Fatal("the setup token is gone before setup")
	}
	sc := scenario{
		URL: s.url, Token: s.fb.token,
		Admin: "ada", AdminPassword: password(t),
		Auditor: "audrey", AuditorPassword: password(t),
		Shots: shots, UserData: filepath.Join(s.dir, "chromium-profile"),
		Subject: s.leaf.Subject.CommonName, ValidTo: s.leaf.NotAfter.Unix(),
	}
	runScenario(ctx, t, node, modules, sc)
	s.checkAfter(t, sc)
	t.Logf("scenario passed; %v in all before cleanup; screenshots in %s", time.Since(start).Round(time.Millisecond), shots)
}

// requireBrowser returns node, skipping (failing under CI) when the test
// cannot run here.
func requireBrowser(t *testing.T) string {
	if os.Geteuid() != 0 {
		skipOrFail(t, "the browser test needs root: a private containerd, a mount namespace for omertad, setpriv to drop the console to nobody")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		skipOrFail(t, chromiumPath+" is missing: apt-get install chromium")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		skipOrFail(t, "node is missing: apt-get install nodejs npm")
	}
	if _, err := exec.LookPath("npm"); err != nil {
		skipOrFail(t, "npm is missing: apt-get install npm")
	}
	for _, tool := range []string{"unshare", "setpriv", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, tool+" is missing (util-linux, mount)")
		}
	}
	return node
}

// installPlaywright installs the pinned playwright-core with npm ci under
// .cache/npm (never committed), in a directory named by the lock file's
// hash, so that a changed pin installs afresh. It returns the
// node_modules directory.
func installPlaywright(t *testing.T, mod string) string {
	here := filepath.Join(mod, "ui", "browsertest")
	lock, err := os.ReadFile(filepath.Join(here, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(lock)
	prefix := filepath.Join(mod, ".cache", "npm", "browsertest-"+hex.EncodeToString(sum[:6]))
	modules := filepath.Join(prefix, "node_modules")
	if _, err := os.Stat(filepath.Join(modules, "playwright-core", "package.json")); err == nil {
		return modules
	}
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"package.json", "package-lock.json"} {
		data, err := os.ReadFile(filepath.Join(here, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(prefix, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// --ignore-scripts: nothing from the registry runs at install time.
	if _, err := run(prefix, "npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts",
		"--cache", filepath.Join(mod, ".cache", "npm", "cache")); err != nil {
		t.Fatalf("installing playwright-core (the registry is needed once): %v", err)
	}
	return modules
}

// password is a fresh 26-character password, far from any common one.
func password(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "bt-" + hex.EncodeToString(b)
}

// scenario is what scenario.mjs is told, as JSON in $BT_SCENARIO.
type scenario struct {
	URL             string `json:"url"`
	Token           string `json:"token"`
	Admin           string `json:"admin"`
	AdminPassword   string `json:"admin_password"`
	Auditor         string `json:"auditor"`
	AuditorPassword string `json:"auditor_password"`
	Shots           string `json:"shots"`
	UserData        string `json:"user_data"`
	// The pinned certificate as the browser must report it.
	Subject string `json:"subject"`
	ValidTo int64  `json:"valid_to"`
	// Chromium and its flags.
	Chromium string   `json:"chromium"`
	Args     []string `json:"args"`
}

// chromiumArgs are the flags the issue names: headless, no sandbox (root
// in a container), no GPU, nothing fetched in the background.
var chromiumArgs = []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
	"--disable-component-update", "--no-first-run"}

// runScenario runs node scenario.mjs, its output into the test's log line
// by line, and fails the test when it fails. node and the browser it
// starts share a process group, killed when the budget is spent.
func runScenario(ctx context.Context, t *testing.T, node, modules string, sc scenario) {
	sc.Chromium, sc.Args = chromiumPath, chromiumArgs
	js, err := json.Marshal(sc)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, node, "scenario.mjs")
	cmd.Dir = filepath.Join(moduleRoot(t), "ui", "browsertest")
	cmd.Env = append(os.Environ(), "BT_SCENARIO="+string(js), "BT_NODE_MODULES="+modules)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	logged := make(chan struct{})
	var tail []string
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			t.Log("scenario: " + sc.Text())
			tail = append(tail, sc.Text())
		}
	}()
	err = cmd.Run()
	pw.Close()
	<-logged
	// Whatever chromium left of the group goes too.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if ctx.Err() != nil {
		t.Fatalf("the scenario ran out of the test's %v budget", budget)
	}
	if err != nil {
		t.Fatalf("the scenario failed (%v); screenshots and failure.html in %s", err, sc.Shots)
	}
	if len(tail) == 0 || !strings.HasPrefix(tail[len(tail)-1], "PASS") {
		t.Fatalf("the scenario exited 0 without its PASS line")
	}
}

// checkAfter checks at the source, through omertad's socket as root, what
// the browser did: the token was redeemed on first boot's root, the admin
// and the auditor exist with their roles, the agent was disabled and the
// auditor's attempt to enable it was refused and recorded, and the audit
// chain is intact.
func (s *stack) checkAfter(t *testing.T, sc scenario) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if tok, used := s.tokenState(t); tok != "" || used.IsZero() {
		t.Errorf("first boot's token file after setup: token %q, used at %v; want it redeemed", tok, used)
	}
	users, err := s.api.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]string{}
	for _, u := range users {
		roles[u.Username] = u.Role
	}
	if roles[sc.Admin] != "admin" || roles[sc.Auditor] != "auditor" || len(roles) != 2 {
		t.Errorf("users after the scenario: %v; want %s admin and %s auditor", roles, sc.Admin, sc.Auditor)
	}
	a, err := s.api.Agent(ctx, "sample-tool")
	if err != nil {
		t.Fatal(err)
	}
	if a.Desired != "disabled" || a.Status.State != "stopped" {
		t.Errorf("sample-tool after the scenario: desired %s, state %s; want disabled and stopped", a.Desired, a.Status.State)
	}
	st, err := s.api.AuditStatus(ctx)
	if err != nil || st.State != "intact" {
		t.Errorf("audit chain: %+v, %v; want intact", st, err)
	}
	recs, err := s.api.Audit(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	s.checkAudit(t, recs, sc)
}

// checkAudit wants each of the browser's actions in the audit log, by the
// person who did it.
func (s *stack) checkAudit(t *testing.T, recs []apitype.AuditRecord, sc scenario) {
	want := []struct{ who, action, target string }{
		{sc.Admin, "auth.setup", ""},
		{sc.Admin, "auth.login", ""},
		{sc.Admin, "agents.deploy", "sample-tool"},
		{sc.Admin, "agents.task.run", "sample-tool"},
		{sc.Admin, "agents.disable", "sample-tool"},
		{sc.Admin, "auth.user.create", sc.Auditor},
		{sc.Admin, "auth.logout", ""},
		{sc.Auditor, "auth.login", ""},
		{sc.Auditor, "api.refused", ""},
		{sc.Auditor, "auth.logout", ""},
	}
	for _, w := range want {
		found := false
		for _, r := range recs {
			if r.Action == w.action && strings.Contains(r.Actor, w.who) && (w.target == "" || r.Target == w.target) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no audit record of %s by %s (target %q)", w.action, w.who, w.target)
		}
	}
	if t.Failed() {
		for _, r := range recs {
			t.Logf("audit %d %s %s %s %s", r.Seq, r.Actor, r.Action, r.Target, fmt.Sprint(string(r.Detail)))
		}
	}
}
