package loadtest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
)

// The environment of the child roles (this test binary run again).
const (
	envRole     = "OMERTA_LOAD_ROLE"
	envConfig   = "OMERTA_LOAD_CONFIG"
	envRoot     = "OMERTA_LOAD_ROOT"
	envCert     = "OMERTA_LOAD_CERT"
	envKey      = "OMERTA_LOAD_KEY"
	envPageSize = "OMERTA_LOAD_PAGE_SIZE"
	envJSONSize = "OMERTA_LOAD_JSON_SIZE"
)

func TestMain(m *testing.M) {
	role := os.Getenv(envRole)
	if role == "" {
		os.Exit(m.Run())
	}
	var err error
	switch role {
	case "omertad":
		err = runOmertad()
	case "floor":
		err = runFloor()
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", role, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// The load: 200 agents, 50 clients, 60 s per target.
const (
	agentCount = 200
	clientsN   = 50
	usersN     = 5 // 10 sessions each: auth keeps at most 16 per user
)

// Targets of issue 10.
const (
	targetP95   = 15 * time.Millisecond
	targetRatio = 2.0
	targetRSS   = 50 << 20
)

// TestConsoleLoad is the benchmark: OMERTA_LOAD=1 runs it (as root: the
// console is dropped to nobody), OMERTA_LOAD_DURATION changes the 60 s
// per target. Results go to the test's log; a missed target fails it.
func TestConsoleLoad(t *testing.T) {
	if os.Getenv("OMERTA_LOAD") != "1" {
		t.Skip("a benchmark: OMERTA_LOAD=1 runs it (scripts/console-load.sh)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("OMERTA_LOAD=1 needs root: the console is started as nobody with setpriv")
	}
	dur := 60 * time.Second
	if v := os.Getenv("OMERTA_LOAD_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d > 10*time.Minute {
			t.Fatalf("OMERTA_LOAD_DURATION=%q: want a duration from 1s to 10m", v)
		}
		dur = d
	}
	e := newEnv(t)
	e.seed(t)
	sids := e.sessions(t)
	e.measure(t, sids, dur)
}

// env is the running system: omertad (fake runtime), the console, the
// floor.
type env struct {
	mod, dir, root, sock   string
	bin, consoleBin        string // omerta (first boot), omerta-console
	api                    *apiclient.Client
	token                  string
	fp                     [sha256.Size]byte
	console                string // https://addr
	consolePID, omertadPID int
	certFile, keyFile      string
}

func newEnv(t *testing.T) *env {
	e := &env{mod: moduleRoot(t)}
	dir, err := os.MkdirTemp("/tmp", "omerta-load-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	e.dir = dir
	e.bin = filepath.Join(dir, "omerta")
	e.consoleBin = filepath.Join(dir, "omerta-console")
	gocmd := "go"
	if _, err := exec.LookPath(gocmd); err != nil {
		gocmd = "/usr/local/go/bin/go"
	}
	// The console measured is the binary the appliance ships, built as
	// make builds it (-trimpath; the version stamps change no size).
	mustRun(t, e.mod, gocmd, "build", "-trimpath", "-o", e.bin, "./appliance/cmd/omerta")
	mustRun(t, e.mod, gocmd, "build", "-trimpath", "-o", e.consoleBin, "./appliance/cmd/omerta-console")
	logBinarySizes(t, e.bin, e.consoleBin)
	e.firstBoot(t)
	e.startOmertad(t)
	e.startConsole(t)
	return e
}

// logBinarySizes writes each binary's size to the log: the console's
// resident text is bounded by its own.
func logBinarySizes(t *testing.T, bins ...string) {
	for _, b := range bins {
		fi, err := os.Stat(b)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("binary %s: %.1f MiB", filepath.Base(b), float64(fi.Size())/(1<<20))
	}
}

var (
	tokenRE = regexp.MustCompile(`Setup token:\s+([a-z2-7]{32})\b`)
	fpRE    = regexp.MustCompile(`TLS fingerprint:\s+SHA256:([0-9A-F:]{95})`)
	addrRE  = regexp.MustCompile(`Console:\s+https://(\S+?)/`)
)

func (e *env) firstBoot(t *testing.T) {
	e.root = filepath.Join(e.dir, "root")
	os.Mkdir(e.root, 0o755)
	out := mustRun(t, e.dir, e.bin, "firstboot", "--root", e.root)
	m, f := tokenRE.FindStringSubmatch(out), fpRE.FindStringSubmatch(out)
	if m == nil || f == nil {
		t.Fatalf("first boot's banner:\n%s", out)
	}
	e.token = m[1]
	var fp []byte
	for _, h := range strings.Split(f[1], ":") {
		b, _ := strconv.ParseUint(h, 16, 8)
		fp = append(fp, byte(b))
	}
	copy(e.fp[:], fp)
	e.certFile = filepath.Join(e.root, "var/lib/omerta/keys/tls.crt")
	e.keyFile = filepath.Join(e.root, "var/lib/omerta/keys/tls.key")
}

func (e *env) startOmertad(t *testing.T) {
	os.Mkdir(filepath.Join(e.dir, "run"), 0o755)
	e.sock = filepath.Join(e.dir, "run", "omertad.sock")
	cfg := filepath.Join(e.dir, "omerta.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`profile: user
daemon:
  socket: %s
  socket_group: nogroup
  state_dir: %s
  log_level: warn
agents:
  catalog_dir: %s
  log_dir: %s
  run_dir: %s
`, e.sock, filepath.Join(e.root, "var/lib/omerta"), filepath.Join(e.mod, "image", "catalog"),
		filepath.Join(e.dir, "logs"), filepath.Join(e.dir, "agent-run"))), 0o600)
	self, _ := os.Executable()
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), envRole+"=omertad", envConfig+"="+cfg, envRoot+"="+e.root)
	e.omertadPID = startChild(t, "omertad", filepath.Join(e.dir, "omertad.log"), cmd)
	e.api = apiclient.New(e.sock, apiclient.WithTimeout(30*time.Second))
	waitFor(t, "omertad", 30*time.Second, func() error {
		_, err := e.api.Probe(context.Background())
		return err
	})
}

// startConsole runs omerta-console as nobody:nogroup, first boot's
// certificate handed over in a credentials directory as systemd does.
func (e *env) startConsole(t *testing.T) {
	creds := filepath.Join(e.dir, "credentials")
	os.Mkdir(creds, 0o500)
	u, _ := user.Lookup("nobody")
	uid, _ := strconv.Atoi(u.Uid)
	g, _ := user.LookupGroup("nogroup")
	gid, _ := strconv.Atoi(g.Gid)
	for name, src := range map[string]string{"tls.crt": e.certFile, "tls.key": e.keyFile} {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(creds, name)
		os.WriteFile(p, data, 0o400)
		os.Chown(p, uid, gid)
	}
	os.Chown(creds, uid, gid)
	cmd := exec.Command("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--no-new-privs",
		"--bounding-set=-all", "--", e.consoleBin, "--socket", e.sock, "--listen", "127.0.0.1:0", "--log-level", "warn")
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), "CREDENTIALS_DIRECTORY="+creds)
	// OMERTA_LOAD_CONSOLE_ENV: the console's alone (GOMEMLIMIT=..., GOGC=...,
	// GODEBUG=gctrace=1), for trying its runtime's settings.
	cmd.Env = append(cmd.Env, strings.Fields(os.Getenv("OMERTA_LOAD_CONSOLE_ENV"))...)
	log := filepath.Join(e.dir, "console.log")
	e.consolePID = startChild(t, "console", log, cmd)
	var addr string
	waitFor(t, "the console", 30*time.Second, func() error {
		b, _ := os.ReadFile(log)
		if m := addrRE.FindSubmatch(b); m != nil {
			addr = string(m[1])
			return nil
		}
		return fmt.Errorf("no banner yet: %s", b)
	})
	e.console = "https://" + addr
}

// seed deploys the agents through omertad's API, as root on its socket.
func (e *env) seed(t *testing.T) {
	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, agentCount)
	ids := make(chan int)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ids {
				_, err := e.api.DeployAgent(ctx, apitype.AgentDeploy{Entry: "sample-tool", ID: fmt.Sprintf("load-%03d", i)})
				errs <- err
			}
		}()
	}
	for i := range agentCount {
		ids <- i
	}
	close(ids)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("deploying: %v", err)
		}
	}
	list, err := e.api.Agents(ctx)
	if err != nil || len(list.Agents) != agentCount {
		t.Fatalf("agents after seeding: %d, %v", len(list.Agents), err)
	}
	t.Logf("%d agents deployed through omertad's API in %v", agentCount, time.Since(start).Round(time.Millisecond))
}

// sessions sets up the first admin with first boot's token, adds admins,
// and signs each in until there is one session per client; it returns
// the session ids.
func (e *env) sessions(t *testing.T) []string {
	ctx := context.Background()
	pw := "load-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-pass"
	if _, err := e.api.Setup(ctx, apitype.SetupRequest{Token: e.token, Username: "load0", Password: pw}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < usersN; i++ {
		if _, err := e.api.CreateUser(ctx, apitype.UserCreate{Username: fmt.Sprintf("load%d", i), Role: "admin", Password: pw}); err != nil {
			t.Fatal(err)
		}
	}
	var sids []string
	for i := range clientsN {
		s, err := e.api.Login(ctx, fmt.Sprintf("load%d", i%usersN), pw)
		if err != nil {
			t.Fatal(err)
		}
		sids = append(sids, s.SessionID)
	}
	return sids
}

func prefixed(prefix string, vs []string) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = prefix + v
	}
	return out
}

func (e *env) measure(t *testing.T, sids []string, dur time.Duration) {
	cookies := prefixed("Cookie: __Host-omerta_session=", sids)
	ctx := context.Background()
	tc := pinned(e.fp)
	// One answer of each, to size the floor's bodies.
	probe := func(path string) result {
		return hammer(ctx, target{name: path, url: e.console + path, headers: cookies[:1]}, 1, 500*time.Millisecond, tc, 0)
	}
	page, js := probe("/"), probe("/api/v1/agents")
	if page.bodyBytes == 0 || js.bodyBytes == 0 {
		t.Fatalf("the console's answers: / %d bytes (%s), /api/v1/agents %d bytes (%s)", page.bodyBytes, page.firstErr, js.bodyBytes, js.firstErr)
	}
	floor := e.startFloor(t, page.bodyBytes, js.bodyBytes)
	rss := newRSSWatch(e.consolePID)
	defer rss.stop()
	runs := []struct {
		tg   target
		want int
	}{
		{target{name: "console GET / (dashboard)", url: e.console + "/", headers: cookies}, 0},
		{target{name: "floor GET /page (same size)", url: floor + "/page"}, page.bodyBytes},
		{target{name: "console GET /api/v1/agents", url: e.console + "/api/v1/agents", headers: cookies}, 0},
		{target{name: "floor GET /json (same size)", url: floor + "/json"}, js.bodyBytes},
	}
	// Where the time goes: omertad's own answer to the call the console
	// forwards, on its socket with the same sessions (not a target of the
	// issue; shown beside the others).
	if os.Getenv("OMERTA_LOAD_SPLIT") == "1" {
		runs = append(runs, struct {
			tg   target
			want int
		}{target{name: "omertad GET /api/v1/agents", url: "http://omertad/api/v1/agents", unix: e.sock,
			headers: prefixed(apitype.HeaderSession+": ", sids)}, 0})
	}
	var res []result
	for _, r := range runs {
		hammer(ctx, r.tg, clientsN, 3*time.Second, tc, r.want) // warm-up: connections, caches
		cpu0 := [2]time.Duration{cpuTime(e.consolePID), cpuTime(e.omertadPID)}
		rr := hammer(ctx, r.tg, clientsN, dur, tc, r.want)
		rr.cpu = [2]time.Duration{cpuTime(e.consolePID) - cpu0[0], cpuTime(e.omertadPID) - cpu0[1]}
		res = append(res, rr)
		t.Logf("%s: done", r.tg.name)
	}
	report(t, res, rss.stop(), dur)
	if os.Getenv("OMERTA_LOAD_CALLS") == "1" {
		e.dashboardCalls(t, sids)
	}
}

// dashboardCalls measures, for finding where the dashboard's time goes,
// each call the console makes to omertad for it, on omertad's socket
// with the same sessions and as many clients (OMERTA_LOAD_CALLS=1).
func (e *env) dashboardCalls(t *testing.T, sids []string) {
	var b strings.Builder
	fmt.Fprintf(&b, "\nthe dashboard's calls on omertad's socket, %d clients, 2 s each\n", clientsN)
	fmt.Fprintf(&b, "%-36s %8s %8s %8s %7s\n", "call", "req/s", "p50 ms", "p95 ms", "errors")
	for _, path := range []string{"/api/v1/whoami", "/api/v1/dashboard", "/api/v1/report", "/api/v1/probe", "/api/v1/summary/agents",
		"/api/v1/probe/drift?limit=5", "/api/v1/audit/status", "/api/v1/audit?after=0&limit=1000"} {
		tg := target{name: path, url: "http://omertad" + path, unix: e.sock, headers: prefixed(apitype.HeaderSession+": ", sids)}
		r := hammer(context.Background(), tg, clientsN, 2*time.Second, nil, 0)
		fmt.Fprintf(&b, "%-36s %8.0f %8s %8s %7d\n", path, r.rps(), ms(r.pct(50)), ms(r.pct(95)), r.errors)
	}
	t.Log(b.String())
}
