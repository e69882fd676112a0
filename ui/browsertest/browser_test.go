package browsertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/apitype"
)

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
	modules, err := Install(mod)
	if err != nil {
		t.Fatal(err)
	}
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
	sc := Scenario{
		URL: s.url, Token: s.fb.token,
		Admin: "ada", AdminPassword: password(t),
		Auditor: "audrey", AuditorPassword: password(t),
		Shots: shots, UserData: filepath.Join(s.dir, "chromium-profile"),
		Subject: s.leaf.Subject.CommonName, ValidTo: s.leaf.NotAfter.Unix(),
	}
	if err := Run(ctx, node, modules, mod, sc, func(l string) { t.Log("scenario: " + l) }); err != nil {
		t.Fatal(err)
	}
	s.checkAfter(t, sc)
	t.Logf("scenario passed; %v in all before cleanup; screenshots in %s", time.Since(start).Round(time.Millisecond), shots)
}

// requireBrowser returns node, skipping (failing under CI) when the test
// cannot run here.
func requireBrowser(t *testing.T) string {
	if os.Geteuid() != 0 {
		skipOrFail(t, "the browser test needs root: a private containerd, a mount namespace for omertad, setpriv to drop the console to nobody")
	}
	if _, err := os.Stat(Chromium); err != nil {
		skipOrFail(t, Chromium+" is missing: apt-get install chromium")
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

// password is a fresh 26-character password, far from any common one.
func password(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "bt-" + hex.EncodeToString(b)
}

// checkAfter checks at the source, through omertad's socket as root, what
// the browser did: the token was redeemed on first boot's root, the admin
// and the auditor exist with their roles, the agent was disabled and the
// auditor's attempt to enable it was refused and recorded, and the audit
// chain is intact.
func (s *stack) checkAfter(t *testing.T, sc Scenario) {
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
func (s *stack) checkAudit(t *testing.T, recs []apitype.AuditRecord, sc Scenario) {
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
