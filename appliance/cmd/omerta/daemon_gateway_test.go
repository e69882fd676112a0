package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/omertaos/omertaos/appliance/agents"
	"github.com/omertaos/omertaos/appliance/agents/ctrtest"
	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/daemon"
	"github.com/omertaos/omertaos/appliance/policy"
	"github.com/omertaos/omertaos/appliance/registry"
	"github.com/omertaos/omertaos/appliance/store"
)

// echoImage is the name of the test's echo-model image.
const echoImage = "omertaos.local/agents/echo-model:0.1.0"

// clientEntry is the gateway-mode client: busybox (its wget and nc are the
// HTTP clients), sleeping until the test execs into it.
const clientEntry = `apiVersion: omertaos.dev/v1
kind: Agent
metadata: {id: client, name: Gateway client, category: Tools}
spec:
  image: {ref: %s}
  command: ["/bin/sleep", "3600"]
  resources: {cpu: 250m, memory: 64Mi, pids: 32}
  network: {mode: gateway}
  isolation: container
`

// TestDaemonGateway is the agents' network and the model gateway wired as
// omertad wires them (wireAgents), against a private containerd and runc,
// with the network in a namespace the test makes (the host's links and
// rules are not touched): the shipped echo-model catalog entry deploys as
// the backend, a busybox agent in gateway mode calls it through the
// gateway and gets the echo, a model its policy denies is refused by the
// gateway, its direct connections (to omertad's other ports, to the
// backend agent, to the outside) are rejected by the kernel, a tenant
// policy granting a destination opens it for the running agent and taking
// it back closes it, and the requests are in gateway_usage and /metrics.
func TestDaemonGateway(t *testing.T) {
	requireNetAdmin(t)
	d := ctrtest.Start(t)
	hostNS := testNetns(t)
	old := agentsNetNS
	agentsNetNS = hostNS
	t.Cleanup(func() { agentsNetNS = old })
	dir := t.TempDir()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(dir, "state.db"), store.WithSchemas(daemonSchemas...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := gatewayTestConfig(d, d.Namespace(t), dir)
	// local-echo's manifest is in a signed registry; unlisted-echo, routed
	// too, is in none, so the gateway never enables it.
	cfg.Agents.Registries = []string{modelRegistry(t, map[string]string{"local-echo": modelManifest("local-echo", "0")})}
	cfg.Agents.TrustDir = registryTrust(t)
	cfg.Gateway.Backends[0].Models = append(cfg.Gateway.Backends[0].Models, "unlisted-echo")
	var logs syncBuf
	deps := daemon.Deps{Store: st, Config: cfg, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Now: time.Now}
	ag, err := wireAgents(deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("omertad's log:\n%s", logs.String())
		}
	})
	stop := runServices(t, ag.services[1:]) // the bundled import has no archives here
	busybox := ctrtest.BusyboxArchive(t, ctrtest.ImageOptions{Name: "omerta.test/busybox:1"})
	for _, a := range []string{busybox.Path, echoArchive(t)} {
		if _, err := ag.api.Images.ImportArchive(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	putPolicy(t, ag.policy, "agent/client", "{models: {allowed: [local-echo, unlisted-echo]}}")
	svc := ag.api.Service.(*agents.Service)
	deploy(t, svc, catalogEchoModel(t))
	client := parseEntry(t, strings.Replace(clientEntry, "%s", busybox.Name, 1))
	deploy(t, svc, client)

	rt, err := runtime.New(d.Client(t), runtime.WithNamespace(cfg.Agents.Namespace),
		runtime.WithLogDir(filepath.Join(dir, "exec-logs")), runtime.WithRunDir(filepath.Join(dir, "exec-run")))
	if err != nil {
		t.Fatal(err)
	}
	sh := func(script string) (string, int) {
		res, err := rt.Exec(ctx, agents.ContainerOf("client", 1), runtime.ExecSpec{Args: []string{"/bin/sh", "-c", script}, Timeout: 30 * time.Second})
		if err != nil {
			t.Fatalf("exec %q: %v", script, err)
		}
		return string(res.Stdout) + string(res.Stderr), int(res.ExitCode)
	}

	t.Run("chat completion through the gateway", func(t *testing.T) {
		out, code := sh(postChat("local-echo", "hello through the gateway"))
		if code != 0 || !strings.Contains(out, "HTTP/1.0 200") && !strings.Contains(out, "HTTP/1.1 200") ||
			!strings.Contains(out, "hello through the gateway") || !strings.Contains(out, `"usage"`) {
			t.Fatalf("exit %d, answer:\n%s", code, out)
		}
		t.Logf("the client's answer through the gateway:\n%s", out)
	})
	t.Run("denied model", func(t *testing.T) {
		out, _ := sh(postChat("other-echo", "not for you"))
		if !strings.Contains(out, " 403 ") || !strings.Contains(out, `"model_not_allowed"`) || strings.Contains(out, "not for you") {
			t.Fatalf("answer:\n%s", out)
		}
	})
	t.Run("a model no registry lists is not enabled", func(t *testing.T) {
		out, _ := sh(postChat("unlisted-echo", "not verified"))
		if !strings.Contains(out, " 403 ") || !strings.Contains(out, `"model_not_enabled"`) || !strings.Contains(out, "no configured registry lists it") ||
			strings.Contains(out, "not verified") {
			t.Fatalf("answer:\n%s", out)
		}
		list := ag.models.Models()
		if len(list.Models) != 3 || !list.Models[0].Enabled || !list.Models[0].Signed || list.Models[2].Enabled || list.Models[2].Code != string(registry.CodeNotFound) {
			t.Fatalf("models %+v", list)
		}
	})
	t.Run("direct connections dropped", func(t *testing.T) {
		ln := listenIn(t, hostNS, "10.88.0.1:9099")
		accepted := make(chan struct{}, 1)
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Close()
				accepted <- struct{}{}
			}
		}()
		backend := storedAddr(t, st, agents.ContainerOf("local-echo-model", 1))
		for _, target := range []string{"10.88.0.1 9099", backend + " 8080", "192.0.2.1 80"} {
			out, code := sh("echo x | /bin/busybox nc -w 3 " + target + "; echo exit=$?")
			if !strings.Contains(out, "exit=1") || code != 0 {
				t.Errorf("nc %s: %q: the connection was not refused", target, out)
			}
		}
		select {
		case <-accepted:
			t.Fatal("omertad's non-gateway port accepted the agent's connection")
		case <-time.After(200 * time.Millisecond):
		}
	})
	t.Run("policy change reaches the running agent", func(t *testing.T) {
		wanServer(t, hostNS, "198.51.100.10:80")
		try := func() string {
			out, _ := sh("/bin/busybox nc -w 2 198.51.100.10 80 </dev/null; echo exit=$?")
			return out
		}
		if out := try(); !strings.Contains(out, "exit=1") {
			t.Fatalf("before any egress policy the agent reached the wan: %q", out)
		}
		// Egress is granted by a tenant's (or category's) policy; an
		// agent's may only narrow it.
		putPolicy(t, ag.policy, "tenant/default", `{network: {egress: ["198.51.100.10/32"]}}`)
		eventually(t, "the new egress in force", func() bool { return strings.Contains(try(), "wan says hello") })
		putPolicy(t, ag.policy, "tenant/default", "{network: {egress: []}}")
		eventually(t, "the egress taken back", func() bool { return strings.Contains(try(), "exit=1") })
	})
	t.Run("usage recorded", func(t *testing.T) {
		eventually(t, "the usage rows", func() bool {
			var ok, refused int
			err := st.Read().QueryRowContext(ctx,
				`SELECT COUNT(*) FILTER (WHERE status = 200), COUNT(*) FILTER (WHERE status = 403) FROM gateway_usage WHERE agent_id = 'client'`).Scan(&ok, &refused)
			return err == nil && ok == 1 && refused == 2
		})
		rec := httptest.NewRecorder()
		ag.api.Metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if m := rec.Body.String(); !strings.Contains(m, `omerta_gateway_requests_total{agent="client",code="ok",model="local-echo"} 1`) ||
			!strings.Contains(m, `omerta_gateway_requests_total{agent="client",code="model_not_allowed",model="other-echo"} 1`) {
			t.Errorf("/metrics lacks the gateway's requests:\n%s", grepLines(m, "omerta_gateway_requests_total"))
		}
	})
	top := t // the restarted services outlive the subtest
	t.Run("omertad restarts", func(t *testing.T) {
		// The kernel state stays; a new omertad rebuilds its tables from
		// SQLite and attaches the running containers again (a no-op for
		// their links), so addresses, identity and the backend's route hold.
		before := storedAddr(t, st, agents.ContainerOf("client", 1))
		stop()
		ag2, err := wireAgents(deps)
		if err != nil {
			t.Fatal(err)
		}
		runServices(top, ag2.services[1:])
		svc = ag2.api.Service.(*agents.Service)
		eventually(t, "a chat completion after the restart", func() bool {
			out, _ := sh(postChat("local-echo", "after the restart"))
			return strings.Contains(out, " 200 OK") && strings.Contains(out, "after the restart")
		})
		if after := storedAddr(t, st, agents.ContainerOf("client", 1)); after != before {
			t.Errorf("the client moved from %s to %s across the restart", before, after)
		}
	})
	for _, id := range []string{"client", "local-echo-model"} {
		if err := svc.Delete(ctx, id, true, "test"); err != nil {
			t.Fatal(err)
		}
	}
	var left int
	if err := st.Read().QueryRowContext(ctx, "SELECT COUNT(*) FROM netpolicy_agents").Scan(&left); err != nil || left != 0 {
		t.Errorf("%d containers still hold an address after their agents were deleted (%v)", left, err)
	}
}

// TestDaemonGatewayDown: where the agents' network cannot be made (here a
// namespace that cannot be entered, as every netlink and nftables call
// fails without CAP_NET_ADMIN), omertad wires and runs, logs the reason
// once, refuses gateway-mode deploys with it, and deploys other agents.
func TestDaemonGatewayDown(t *testing.T) {
	d := ctrtest.Start(t)
	old := agentsNetNS
	agentsNetNS = netns.NsHandle(-2) // setns(2) answers EBADF
	t.Cleanup(func() { agentsNetNS = old })
	dir := t.TempDir()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(dir, "state.db"), store.WithSchemas(daemonSchemas...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := gatewayTestConfig(d, d.Namespace(t), dir)
	// local-echo's manifest is in a signed registry; unlisted-echo, routed
	// too, is in none, so the gateway never enables it.
	cfg.Agents.Registries = []string{modelRegistry(t, map[string]string{"local-echo": modelManifest("local-echo", "0")})}
	cfg.Agents.TrustDir = registryTrust(t)
	cfg.Gateway.Backends[0].Models = append(cfg.Gateway.Backends[0].Models, "unlisted-echo")
	var logs syncBuf
	ag, err := wireAgents(daemon.Deps{Store: st, Config: cfg, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	runServices(t, ag.services[1:])
	busybox := ctrtest.BusyboxArchive(t, ctrtest.ImageOptions{Name: "omerta.test/busybox:1"})
	if _, err := ag.api.Images.ImportArchive(ctx, busybox.Path); err != nil {
		t.Fatal(err)
	}
	const refused = "agents in network mode gateway are refused"
	eventually(t, "the log line", func() bool { return strings.Contains(logs.String(), refused) })
	svc := ag.api.Service.(*agents.Service)
	_, err = svc.Deploy(ctx, agents.DeployRequest{Manifest: parseEntry(t, strings.Replace(clientEntry, "%s", busybox.Name, 1)), Actor: "test"})
	var ie *agents.InvalidError
	if !errors.As(err, &ie) || ie.Problems[0].Path != "spec.network.mode" || ie.Problems[0].Code != manifest.CodeUnavailable ||
		!strings.Contains(err.Error(), "bad file descriptor") {
		t.Fatalf("gateway-mode deploy: %v, want spec.network.mode unavailable with the reason", err)
	}
	plain := strings.Replace(strings.Replace(clientEntry, "%s", busybox.Name, 1), "network: {mode: gateway}", "network: {mode: none}", 1)
	deploy(t, svc, parseEntry(t, plain))
	if n := strings.Count(logs.String(), refused); n != 1 {
		t.Errorf("the reason was logged %d times, want once:\n%s", n, logs.String())
	}
}

func gatewayTestConfig(d *ctrtest.Daemon, ns, dir string) config.Config {
	cfg := config.Default()
	cfg.Daemon.StateDir = filepath.Join(dir, "state")
	cfg.Agents.Namespace = ns
	cfg.Agents.Containerd = filepath.Join(dir, "no-containerd.sock")
	if d != nil {
		cfg.Agents.Containerd, cfg.Agents.RuntimeRoot = d.Address, d.RuntimeRoot
	}
	cfg.Agents.CatalogDir, cfg.Agents.BundledDir = filepath.Join(dir, "catalog"), filepath.Join(dir, "bundled")
	cfg.Agents.LogDir, cfg.Agents.RunDir = filepath.Join(dir, "logs"), filepath.Join(dir, "run")
	cfg.Gateway = config.Gateway{Enabled: true, Bridge: "omerta0", Subnet: "10.88.0.0/24", Port: 8080,
		Upstreams: []string{"127.0.0.1:53"},
		Backends: []config.GatewayBackend{{Name: "echo", Agent: "local-echo-model", Port: 8080, Kind: "local",
			Models: []string{"local-echo", "other-echo"}}}}
	return cfg
}

// postChat is a shell line posting a chat completion to the gateway with
// busybox nc, printing the status line, the headers and the body. nc's
// input stays open until the answer is in: an agent that hangs up is one
// the gateway stops serving (and records as gone).
func postChat(model, text string) string {
	body := `{"model":"` + model + `","messages":[{"role":"user","content":"` + text + `"}]}`
	req := "POST /v1/chat/completions HTTP/1.0\r\nHost: 10.88.0.1\r\nContent-Type: application/json\r\nAuthorization: Bearer agent-has-no-key\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	return "(printf '%s' '" + req + "'; sleep 2) | /bin/busybox nc -w 10 10.88.0.1 8080"
}

func deploy(t *testing.T, svc *agents.Service, m *manifest.Manifest) {
	t.Helper()
	a, err := svc.Deploy(context.Background(), agents.DeployRequest{Manifest: m, Actor: "test"})
	if err != nil {
		t.Fatalf("deploying %s: %v", m.Metadata.ID, err)
	}
	t.Cleanup(func() { svc.Delete(context.Background(), a.ID, true, "test") })
	eventually(t, a.ID+" running", func() bool {
		got, err := svc.Get(context.Background(), a.ID)
		return err == nil && got.Status.State == agents.StateRunning
	})
}

func parseEntry(t *testing.T, text string) *manifest.Manifest {
	t.Helper()
	m, err := manifest.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// catalogEchoModel is the shipped catalog entry, serving one more model
// (for the denied-model case).
func catalogEchoModel(t *testing.T) *manifest.Manifest {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "image/catalog/local-echo-model.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := parseEntry(t, string(data))
	if m.Spec.Image.Ref != echoImage || m.Spec.Network.Mode != manifest.NetworkGateway {
		t.Fatalf("the catalog entry runs %s in mode %s", m.Spec.Image.Ref, m.Spec.Network.Mode)
	}
	for i := range m.Spec.Env {
		if m.Spec.Env[i].Name == "MODELS" {
			m.Spec.Env[i].Value = "local-echo,other-echo"
		}
	}
	return m
}

func putPolicy(t *testing.T, pol *policy.Service, subject, spec string) {
	t.Helper()
	kind, name, _ := strings.Cut(subject, "/")
	doc, err := policy.Parse([]byte("apiVersion: omertaos.dev/v1\nkind: Policy\nsubject: {kind: " + kind + ", name: " + name + "}\nspec: " + spec + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	cur, err := pol.Get(context.Background(), policy.Subject{Kind: policy.SubjectKind(kind), Name: name})
	version := int64(0)
	if err == nil {
		version = cur.Version
	}
	if _, err := pol.Put(context.Background(), "test", doc, version); err != nil {
		t.Fatal(err)
	}
}

// runServices runs svcs until the returned stop (or the test's end).
func runServices(t *testing.T, svcs []daemon.Service) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, len(svcs))
	for _, s := range svcs {
		go func() {
			if err := s.Run(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("service %s: %v", s.Name(), err)
			}
			done <- struct{}{}
		}()
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			for range svcs {
				<-done
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// echoArchive builds image/agents/echo-model into an image holding only
// /agent, as scripts/agentimage ships it (that build is tested there).
func echoArchive(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "agent")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./image/agents/echo-model")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building echo-model: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"dev/", "etc/", "proc/", "sys/", "tmp/", "run/"} {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755})
	}
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "agent", Mode: 0o755, Size: int64(len(data))})
	tw.Write(data)
	tw.Close()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON), layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", goruntime.GOARCH
	cf.Config = v1.Config{Entrypoint: []string{"/agent"}, Cmd: []string{"serve"}, User: "65534:65534"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err == nil {
		err = lp.AppendImage(img, layout.WithAnnotations(map[string]string{
			"io.containerd.image.name": echoImage, "org.opencontainers.image.ref.name": echoImage}))
	}
	archive := filepath.Join(dir, "echo.oci.tar")
	if err == nil {
		err = ctrtest.TarDir(filepath.Join(dir, "layout"), archive)
	}
	if err != nil {
		t.Fatal(err)
	}
	return archive
}

// requireNetAdmin skips without root and CAP_NET_ADMIN (CI runs as root:
// the test runs there).
func requireNetAdmin(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) for network namespaces, bridges and nftables")
	}
}

// testNetns makes an empty network namespace standing for the host's,
// with its lo up.
func testNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	var ns netns.NsHandle
	err := inNetns(netns.None(), func() error {
		goruntime.LockOSThread() // left locked if the thread cannot return: it dies with the goroutine
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		if ns, err = netns.New(); err != nil {
			return err
		}
		if err := netns.Set(orig); err != nil {
			return err
		}
		goruntime.UnlockOSThread()
		return nil
	})
	if err != nil {
		t.Fatalf("making a network namespace: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func listenIn(t *testing.T, ns netns.NsHandle, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := inNetns(ns, func() (err error) { ln, err = net.Listen("tcp4", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// storedAddr is the address the network gave a container.
func storedAddr(t *testing.T, st *store.Store, ctr string) string {
	t.Helper()
	var a string
	if err := st.Read().QueryRowContext(context.Background(), "SELECT address FROM netpolicy_agents WHERE agent_id = ?", ctr).Scan(&a); err != nil {
		t.Fatalf("the address of %s: %v", ctr, err)
	}
	return a
}

// syncBuf is a log sink safe for the services' goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// wanServer links hostNS to a "wan" namespace (198.51.100.0/24, the host
// at .1, forwarding on), with a server at addr that says hello.
func wanServer(t *testing.T, hostNS netns.NsHandle, addr string) {
	t.Helper()
	wan := testNetns(t)
	h, err := netlink.NewHandleAt(hostNS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	w, err := netlink.NewHandleAt(wan)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "wan-h"}, PeerName: "wan-w", PeerNamespace: netlink.NsFd(int(wan))}))
	up := func(h *netlink.Handle, name, cidr string) {
		l, err := h.LinkByName(name)
		must(err)
		a, err := netlink.ParseAddr(cidr)
		must(err)
		must(h.AddrAdd(l, a))
		must(h.LinkSetUp(l))
	}
	up(h, "wan-h", "198.51.100.1/24")
	up(w, "wan-w", strings.Split(addr, ":")[0]+"/24")
	must(inNetns(hostNS, func() error { return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644) }))
	ln := listenIn(t, wan, addr)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("wan says hello\n"))
			c.Close()
		}
	}()
}
