package browsertest

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// Chromium is Debian's chromium; playwright-core drives it and never
// downloads a browser of its own.
const Chromium = "/usr/bin/chromium"

// ChromiumArgs are the flags the console issue names: headless, no sandbox
// (root in a container), no GPU, nothing fetched in the background.
var ChromiumArgs = []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
	"--disable-component-update", "--no-first-run"}

// Scenario modes: the whole console against a stack this package's test
// starts, or the first minutes of an appliance (setup, sign-in, the
// dashboard) against a booted image, for the end-to-end test.
const (
	ModeStack     = ""
	ModeAppliance = "appliance"
)

// Scenario is what scenario.mjs is told, as JSON in $BT_SCENARIO.
type Scenario struct {
	Mode            string `json:"mode,omitempty"`
	URL             string `json:"url"`
	Token           string `json:"token"`
	Admin           string `json:"admin"`
	AdminPassword   string `json:"admin_password"`
	Auditor         string `json:"auditor,omitempty"`
	AuditorPassword string `json:"auditor_password,omitempty"`
	Shots           string `json:"shots"`
	UserData        string `json:"user_data"`
	// The pinned certificate as the browser must report it.
	Subject string `json:"subject"`
	ValidTo int64  `json:"valid_to"`
	// TimeoutMS bounds each action and page load (0: the script's 60 s);
	// an emulated appliance hashing a password needs longer.
	TimeoutMS int `json:"timeout_ms,omitempty"`
	// Chromium and its flags.
	Chromium string   `json:"chromium"`
	Args     []string `json:"args"`
}

// Install installs the pinned playwright-core with npm ci under
// <mod>/.cache/npm (never committed), in a directory named by the lock
// file's hash, so that a changed pin installs afresh. It returns the
// node_modules directory.
func Install(mod string) (string, error) {
	here := filepath.Join(mod, "ui", "browsertest")
	lock, err := os.ReadFile(filepath.Join(here, "package-lock.json"))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(lock)
	prefix := filepath.Join(mod, ".cache", "npm", "browsertest-"+hex.EncodeToString(sum[:6]))
	modules := filepath.Join(prefix, "node_modules")
	if _, err := os.Stat(filepath.Join(modules, "playwright-core", "package.json")); err == nil {
		return modules, nil
	}
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		return "", err
	}
	for _, f := range []string{"package.json", "package-lock.json"} {
		data, err := os.ReadFile(filepath.Join(here, f))
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(prefix, f), data, 0o644); err != nil {
			return "", err
		}
	}
	// --ignore-scripts: nothing from the registry runs at install time.
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--cache", filepath.Join(mod, ".cache", "npm", "cache"))
	cmd.Dir = prefix
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("installing playwright-core with npm ci (the registry is needed once): %w\n%s", err, out)
	}
	return modules, nil
}

// ErrNoPass is a scenario that exited 0 without its PASS line.
var ErrNoPass = errors.New("the scenario exited 0 without its PASS line")

// Run runs `node scenario.mjs` (from <mod>/ui/browsertest) with sc, each
// line of its output to logf. node and the browser it starts share a
// process group, killed when ctx ends and after the run.
func Run(ctx context.Context, node, modules, mod string, sc Scenario, logf func(string)) error {
	sc.Chromium, sc.Args = Chromium, ChromiumArgs
	js, err := json.Marshal(sc)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, node, "scenario.mjs")
	cmd.Dir = filepath.Join(mod, "ui", "browsertest")
	cmd.Env = append(os.Environ(), "BT_SCENARIO="+string(js), "BT_NODE_MODULES="+modules)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	logged := make(chan struct{})
	var last string
	go func() {
		defer close(logged)
		s := bufio.NewScanner(pr)
		s.Buffer(make([]byte, 64<<10), 1<<20)
		for s.Scan() {
			logf(s.Text())
			last = s.Text()
		}
	}()
	err = cmd.Run()
	pw.Close()
	<-logged
	// Whatever chromium left of the group goes too.
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("the scenario ran out of time: %w", ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("the scenario failed (%w); screenshots and failure.html in %s", err, sc.Shots)
	}
	if !strings.HasPrefix(last, "PASS") {
		return ErrNoPass
	}
	return nil
}
