package api

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/omertaos/omertaos/appliance/agents"
	"github.com/omertaos/omertaos/appliance/agents/catalog"
	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/auth"
	"github.com/omertaos/omertaos/appliance/policy"
	"github.com/omertaos/omertaos/appliance/probe"
	"github.com/omertaos/omertaos/appliance/store"
)

// wiredEnv is the API with every domain handle: auth, probe, the report,
// the verified audit chain, and the agents routes on a fake runtime.
func wiredEnv(t *testing.T) *authEnv {
	t.Helper()
	files := reportRoot(t, testdataFile(t, "report.golden.json"), testdataFile(t, "signing.pub"))
	return newAuthEnv(t, func(_ *auth.Options, d *Deps) {
		d.Probe = &fakeProbe{
			cur: probe.Current{Probe: &probe.Stored{ID: 4, At: at, Result: &probe.Result{SchemaVersion: probe.SchemaVersion, Time: at}},
				BaselineID: 1, Verdict: sampleVerdict()},
			drift: []probe.StoredDrift{sampleDrift()},
		}
		d.Report = files
		d.AuditChain = &apitype.AuditStatus{State: apitype.ChainIntact, CheckedAt: at}
		d.Agents = wiredAgents(t, d.Store)
		d.GPU = wiredGPU(t)
		d.Policy = wiredPolicy(t, d.Store)
		d.Models = sampleModels()
	})
}

// wiredPolicy is the policy service on the env's store, knowing no
// deployed agents.
func wiredPolicy(t *testing.T, st *store.Store) PolicyService {
	t.Helper()
	pol, err := policy.New(t.Context(), policy.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// wiredAgents are the agents routes' handles as agents_test.go builds
// them: the real service on a fake runtime, with the tool entry shipped.
func wiredAgents(t *testing.T, st *store.Store) AgentsDeps {
	t.Helper()
	dir := t.TempDir()
	rt := agents.NewFakeRuntime(filepath.Join(dir, "logs"), nil)
	rt.AddImage(runtime.Image{Name: testImage, Digest: testDigest, Manifest: testDigest})
	svc, err := agents.New(st, rt, agents.WithStateDir(filepath.Join(dir, "agents")), agents.WithStopGrace(0),
		agents.WithInterval(20*time.Millisecond), agents.WithTelemetryInterval(20*time.Millisecond),
		agents.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	catDir := filepath.Join(dir, "catalog")
	os.Mkdir(catDir, 0o755)
	os.WriteFile(filepath.Join(catDir, "tool.yaml"), []byte(toolEntry), 0o644)
	reg := prometheus.NewRegistry()
	reg.MustRegister(svc.Collectors()...)
	return AgentsDeps{
		Catalog: catalog.NewService(st, catDir), Service: svc, Images: &fakeImages{FakeRuntime: rt}, Events: svc.Bus(), Logs: svc,
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), Heartbeat: 50 * time.Millisecond,
	}
}

// TestEveryRouteHasARule walks fiber's routes: each one the API registers
// is in the authorization table. Without this a new route would be
// unreachable (404 from the middleware), never open; the test makes its
// author say what it needs.
func TestEveryRouteHasARule(t *testing.T) {
	e := wiredEnv(t)
	for _, r := range e.srv.app.GetRoutes(true) {
		method := r.Method
		if method == fiber.MethodHead {
			method = fiber.MethodGet
		}
		if matchPattern(method, r.Path) == nil {
			t.Errorf("route %s %s has no rule in authz.go: add one (an auth.Action*, or pub for a public route)", r.Method, r.Path)
		}
	}
}

// TestEveryRuleIsRegistered: the table names no route that the wired API
// does not have.
func TestEveryRuleIsRegistered(t *testing.T) {
	e := wiredEnv(t)
	got := registeredKeys(e.srv.app)
	for i := range rules {
		if !slices.Contains(got, rules[i].key()) {
			t.Errorf("rule %s names a route the API does not register", rules[i].key())
		}
	}
}

// TestRuleTable: every rule names a known action, or is public; only
// routes with an action are root-only; no rule is listed twice.
func TestRuleTable(t *testing.T) {
	seen := map[string]bool{}
	for i := range rules {
		r := &rules[i]
		if seen[r.key()] {
			t.Errorf("%s is in the table twice", r.key())
		}
		seen[r.key()] = true
		switch {
		case r.public && (r.action != "" || r.rootOnly):
			t.Errorf("%s: a public route names no action", r.key())
		case !r.public && !slices.Contains(auth.Actions(), r.action):
			t.Errorf("%s: action %q is not one of auth.Actions()", r.key(), r.action)
		case !slices.Contains([]string{"GET", "POST", "PUT", "PATCH", "DELETE"}, r.method):
			t.Errorf("%s: method %q", r.key(), r.method)
		case !strings.HasPrefix(r.path, "/") || strings.HasSuffix(r.path, "/") || strings.Contains(r.path, "//"):
			t.Errorf("%s: path must be absolute, without a trailing or double slash", r.key())
		}
	}
}

// TestRulesDoNotOverlap: no concrete path matches two rules of one method,
// so that matchRule and fiber cannot pick different routes for it.
func TestRulesDoNotOverlap(t *testing.T) {
	for i := range rules {
		for j := i + 1; j < len(rules); j++ {
			a, b := &rules[i], &rules[j]
			if a.method != b.method || len(a.segs) != len(b.segs) {
				continue
			}
			overlap := true
			for k := range a.segs {
				sa, sb := a.segs[k], b.segs[k]
				pa, pb := strings.HasPrefix(sa, ":"), strings.HasPrefix(sb, ":")
				switch {
				case pa && pb:
				case pa || pb:
					// A parameter matches any segment but an empty one.
					overlap = overlap && sa != "" && sb != ""
				default:
					overlap = overlap && sa == sb
				}
			}
			if overlap {
				t.Errorf("%s and %s match the same paths", a.key(), b.key())
			}
		}
	}
}

// ruleServer serves every rule's route with a handler that names the
// rule, with the routing options of New, on a unix socket.
func ruleServer(t testing.TB) string {
	t.Helper()
	app := fiber.New(fiber.Config{StrictRouting: true, CaseSensitive: true, DisableStartupMessage: true})
	for i := range rules {
		key := rules[i].key()
		app.Add(rules[i].method, rules[i].path, func(c *fiber.Ctx) error {
			c.Set("X-Rule", key)
			return c.SendString(key)
		})
		if rules[i].method == fiber.MethodGet {
			app.Head(rules[i].path, func(c *fiber.Ctx) error { c.Set("X-Rule", key); return nil })
		}
	}
	dir, err := os.MkdirTemp("", "rules")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go app.Listener(ln)
	t.Cleanup(func() { app.Shutdown(); os.RemoveAll(dir) })
	return sock
}

// fiberRule is the rule whose route fiber ran for method path, "" for
// none.
func fiberRule(t testing.TB, sock, method, path string) string {
	t.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", method, path)
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %q: %v", method, path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode == 200 {
		return resp.Header.Get("X-Rule")
	}
	return ""
}

func matchedKey(method, path string) string {
	r := matchRule(method, path)
	if r == nil {
		return ""
	}
	return r.key() // for HEAD, the GET rule's

}

var matchMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}

// TestMatchRuleAgreesWithFiber: for every rule's path and for variants
// that other routers treat alike (case, slashes, dots, escapes, empty and
// extra segments), matchRule picks the rule whose route fiber runs.
func TestMatchRuleAgreesWithFiber(t *testing.T) {
	sock := ruleServer(t)
	values := []string{"x", "a.b", "a-b", "..", ".", "%2F", "%2e%2e", "a:b", "~u", "", "x/y", "X"}
	var paths []string
	for i := range rules {
		r := &rules[i]
		paths = append(paths, r.path, r.path+"/", strings.ToUpper(r.path), "/"+r.path, r.path+"/x", strings.Replace(r.path, "/", "//", 1))
		for _, v := range values {
			segs := slices.Clone(r.segs)
			for k, s := range segs {
				if strings.HasPrefix(s, ":") {
					segs[k] = v
				}
			}
			paths = append(paths, strings.Join(segs, "/"))
		}
	}
	slices.Sort(paths)
	for _, p := range slices.Compact(paths) {
		if p == "" || strings.HasPrefix(p, "//") {
			continue // not a request-target origin-form can carry
		}
		for _, m := range matchMethods {
			if got, want := matchedKey(m, p), fiberRule(t, sock, m, p); got != want {
				t.Errorf("%s %s: matchRule found %q, fiber ran %q", m, p, got, want)
			}
		}
	}
}

// FuzzMatchRule: for any path, matchRule and fiber agree.
func FuzzMatchRule(f *testing.F) {
	for i := range rules {
		f.Add(uint8(i), rules[i].path)
	}
	f.Add(uint8(0), "/api/v1/users/a%2Fb/role")
	f.Add(uint8(2), "/api/v1/tokens//")
	sock := ruleServer(f)
	f.Fuzz(func(t *testing.T, m uint8, path string) {
		if len(path) > 256 || !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "//") {
			return
		}
		for _, c := range []byte(path) {
			if c <= ' ' || c >= 0x7f || c == '?' || c == '#' {
				return // not in a request-target's path
			}
		}
		method := matchMethods[int(m)%len(matchMethods)]
		if got, want := matchedKey(method, path), fiberRule(t, sock, method, path); got != want {
			t.Errorf("%s %s: matchRule found %q, fiber ran %q", method, path, got, want)
		}
	})
}

var updateGolden = flag.Bool("update", false, "rewrite testdata/*.golden")

// TestRoleMatrixGolden keeps the whole policy, route by route, in
// testdata/authz.golden: a change to the table or to auth's permissions
// shows in review as a change of who may call what (go test -update
// rewrites it).
func TestRoleMatrixGolden(t *testing.T) {
	var b strings.Builder
	for i := range rules {
		r := &rules[i]
		who := "public"
		if !r.public {
			var roles []string
			for _, role := range auth.Roles() {
				if auth.Allowed(role, r.action) && !r.rootOnly {
					roles = append(roles, string(role))
				}
			}
			if r.rootOnly {
				roles = append(roles, "root only")
			}
			who = r.action + ": " + strings.Join(roles, " ")
		}
		fmt.Fprintf(&b, "%-7s %-34s %s\n", r.method, r.path, who)
	}
	golden := filepath.Join("testdata", "authz.golden")
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test -run TestRoleMatrixGolden -update writes it)", err)
	}
	if b.String() != string(want) {
		t.Errorf("the route permissions changed; if that is meant, go test -update:\ngot:\n%s\nwant:\n%s", b.String(), want)
	}
}
