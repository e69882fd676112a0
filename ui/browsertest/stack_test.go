package browsertest

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/ctrtest"
	"github.com/omertaos/omertaos/appliance/apiclient"
)

// The unprivileged identity the console runs as: nobody, in the group that
// owns omertad's socket (daemon.socket_group), as on the appliance the
// console's own user is in omertad's socket group.
const (
	consoleUser  = "nobody"
	consoleGroup = "nogroup"
)

// Paths first boot writes under its root (firstboot's layout).
const (
	fbState = "var/lib/omerta"
	fbCert  = fbState + "/keys/tls.crt"
	fbKey   = fbState + "/keys/tls.key"
	fbToken = fbState + "/setup-token"
)

// stack is the system under test: first boot's scratch root, a private
// containerd, omertad on first boot's state, and the console.
type stack struct {
	mod        string // the module's root
	dir        string // everything the test writes, removed at the end
	bin        string // omerta
	consoleBin string // omerta-console
	root       string // first boot's root
	sock       string
	api        *apiclient.Client // as root over the socket
	fb         banner            // what first boot printed
	cons       banner            // what the console printed
	url        string
	leaf       *x509.Certificate // the certificate the console serves
	omtd       *proc
	conso      *proc
}

// banner is what first boot and the console print for a person.
type banner struct {
	addr        string
	fingerprint []byte // SHA-256 of the certificate
	token       string
}

var (
	consoleRE     = regexp.MustCompile(`Console:\s+https://(\S+?)/`)
	fingerprintRE = regexp.MustCompile(`TLS fingerprint:\s+SHA256:([0-9A-Fa-f:]{95})`)
	tokenRE       = regexp.MustCompile(`Setup token:\s+([a-z2-7]{32})\b`)
)

func parseBanner(out string) (banner, error) {
	var b banner
	m := fingerprintRE.FindStringSubmatch(out)
	if m == nil {
		return b, errors.New("no TLS fingerprint line")
	}
	fp, err := hex.DecodeString(strings.ReplaceAll(m[1], ":", ""))
	if err != nil || len(fp) != sha256.Size {
		return b, fmt.Errorf("TLS fingerprint %q is not a SHA-256 in hex pairs", m[1])
	}
	b.fingerprint = fp
	if m := consoleRE.FindStringSubmatch(out); m != nil {
		b.addr = m[1]
	}
	if m := tokenRE.FindStringSubmatch(out); m != nil {
		b.token = m[1]
	}
	return b, nil
}

// newStack brings everything up; t.Cleanup takes it down in reverse
// order: the console, the agents, omertad, containerd, the directory.
func newStack(t *testing.T) *stack {
	s := &stack{mod: moduleRoot(t)}
	s.makeDir(t)
	ctrd := ctrtest.Start(t)
	ns := ctrd.Namespace(t)
	s.buildOmerta(t)
	s.firstBoot(t)
	s.startOmertad(t, ctrd, ns)
	s.startConsole(t)
	s.pin(t)
	return s
}

func (s *stack) makeDir(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "omerta-bt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing %s: %v", dir, err)
		}
	})
	// The console's user walks to the binary and the socket through it.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s.dir = dir
}

// buildOmerta puts the two binaries in the test's directory: omerta
// (omertad, first boot) and omerta-console. Each is a copy of the one
// make built, $OMERTA_BIN and $OMERTA_CONSOLE_BIN (by default omerta-console
// beside $OMERTA_BIN), else a fresh build.
func (s *stack) buildOmerta(t *testing.T) {
	s.bin = filepath.Join(s.dir, "omerta")
	s.consoleBin = filepath.Join(s.dir, "omerta-console")
	omertaSrc := os.Getenv("OMERTA_BIN")
	consoleSrc := os.Getenv("OMERTA_CONSOLE_BIN")
	if consoleSrc == "" && omertaSrc != "" {
		consoleSrc = filepath.Join(filepath.Dir(omertaSrc), "omerta-console")
	}
	s.placeBinary(t, omertaSrc, s.bin, "./appliance/cmd/omerta")
	s.placeBinary(t, consoleSrc, s.consoleBin, "./appliance/cmd/omerta-console")
}

// placeBinary copies src to dst, or builds pkg there when src is "".
func (s *stack) placeBinary(t *testing.T, src, dst, pkg string) {
	t.Helper()
	if src != "" {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatalf("%s (make build puts it there): %v", pkg, err)
		}
		if err := os.WriteFile(dst, data, 0o755); err != nil {
			t.Fatal(err)
		}
		return
	}
	gocmd, err := goTool()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run(s.mod, gocmd, "build", "-trimpath", "-o", dst, pkg); err != nil {
		t.Fatal(err)
	}
}

// agentArchives is the directory of the sample agents' OCI archives: make
// agents' out/agents, else a build of them into the test's directory.
func (s *stack) agentArchives(t *testing.T) string {
	out := filepath.Join(s.mod, "out", "agents")
	if _, err := os.Stat(filepath.Join(out, "index.json")); err == nil {
		return out
	}
	gocmd, err := goTool()
	if err != nil {
		t.Fatal(err)
	}
	out = filepath.Join(s.dir, "agents")
	if _, err := run(s.mod, gocmd, "run", "./scripts/agentimage", "-out", out, "-go", gocmd); err != nil {
		t.Fatal(err)
	}
	return out
}

// firstBoot runs omerta firstboot into a scratch root and keeps what it
// printed: the TLS fingerprint and the setup token.
func (s *stack) firstBoot(t *testing.T) {
	s.root = filepath.Join(s.dir, "root")
	if err := os.Mkdir(s.root, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := run(s.dir, s.bin, "firstboot", "--root", s.root)
	if err != nil {
		t.Fatal(err)
	}
	if s.fb, err = parseBanner(out); err != nil || s.fb.token == "" {
		t.Fatalf("first boot's banner (%v, token %q):\n%s", err, s.fb.token, out)
	}
}

// omertadConfig is omertad on first boot's state directory, its socket
// owned by the console's group, its agents on the private containerd.
func (s *stack) omertadConfig(t *testing.T, ctrd *ctrtest.Daemon, ns string) string {
	run := filepath.Join(s.dir, "run")
	if err := os.Mkdir(run, 0o755); err != nil {
		t.Fatal(err)
	}
	s.sock = filepath.Join(run, "omertad.sock")
	cfg := fmt.Sprintf(`profile: user
daemon:
  socket: %s
  socket_group: %s
  state_dir: %s
  shutdown_timeout: 10s
agents:
  containerd: %s
  namespace: %s
  catalog_dir: %s
  bundled_dir: %s
  log_dir: %s
  run_dir: %s
  runtime_root: %s
  telemetry_interval: 1s
`, s.sock, consoleGroup, filepath.Join(s.root, fbState), ctrd.Address, ns,
		filepath.Join(s.mod, "image", "catalog"), s.agentArchives(t),
		filepath.Join(s.dir, "agent-logs"), filepath.Join(s.dir, "agent-run"), ctrd.RuntimeRoot)
	path := filepath.Join(s.dir, "omerta.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// omertadScript runs omertad in a mount namespace of its own in which
// first boot's /var/lib/omerta is the machine's: omertad redeems the setup
// token and reads the report where the appliance keeps them, under "/",
// and nothing of this machine's /var/lib is seen or touched. A tmpfs is
// mounted over /var/lib first because /var/lib/omerta is not there to
// bind onto. Paths that containerd's shims open (logs, FIFOs, the agents'
// state) are named by their real paths, the same in both namespaces.
const omertadScript = `set -eu
mount -t tmpfs -o mode=0755,size=1m omerta-browsertest /var/lib
mkdir /var/lib/omerta
mount --bind "$1/var/lib/omerta" /var/lib/omerta
if [ -d /etc/issue.d ]; then mount --bind "$1/etc/issue.d" /etc/issue.d; fi
exec "$2" daemon --config "$3"`

func (s *stack) startOmertad(t *testing.T, ctrd *ctrtest.Daemon, ns string) {
	cfg := s.omertadConfig(t, ctrd, ns)
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--",
		"/bin/sh", "-c", omertadScript, "omertad", s.root, s.bin, cfg)
	p, err := startProc("omertad", filepath.Join(s.dir, "omertad.log"), cmd)
	if err != nil {
		t.Fatal(err)
	}
	s.omtd = p
	t.Cleanup(func() {
		if err := p.stop(15 * time.Second); err != nil {
			t.Errorf("omertad: %v\n%s", err, p.log())
		}
		if t.Failed() {
			t.Logf("omertad's log:\n%s", p.log())
		}
	})
	s.api = apiclient.New(s.sock, apiclient.WithTimeout(10*time.Second))
	t.Cleanup(s.api.Close)
	s.waitOmertad(t)
	t.Cleanup(func() { s.deleteAgents(t) })
}

// waitOmertad waits until omertad answers, has probed the machine and has
// imported the sample tool's image (its catalog entry is deployable).
func (s *stack) waitOmertad(t *testing.T) {
	// Generous: omertad imports the bundled images first, slow on a
	// loaded 2-core CI machine.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ready := map[string]func() error{
		"health": func() error { _, err := s.api.Health(ctx); return err },
		"probe":  func() error { _, err := s.api.Probe(ctx); return err },
		"sample-tool deployable": func() error {
			e, err := s.api.CatalogEntry(ctx, "sample-tool")
			if err == nil && !e.Deployable {
				err = fmt.Errorf("not deployable: %s", e.NotDeployable)
			}
			return err
		},
	}
	for _, what := range []string{"health", "probe", "sample-tool deployable"} {
		for {
			err := ready[what]()
			if err == nil {
				break
			}
			if s.omtd.exited() || ctx.Err() != nil {
				t.Fatalf("omertad: waiting for %s: %v; its log:\n%s", what, err, s.omtd.log())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// deleteAgents removes every agent with its data, as root through the
// socket, and waits until omertad has finished each deletion.
func (s *stack) deleteAgents(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	list, err := s.api.Agents(ctx)
	if err != nil {
		t.Errorf("listing agents to delete: %v", err)
		return
	}
	for _, a := range list.Agents {
		if err := s.api.DeleteAgent(ctx, a.ID, true); err != nil {
			t.Errorf("deleting agent %s: %v", a.ID, err)
			continue
		}
		for {
			_, err := s.api.Agent(ctx, a.ID)
			var ae *apiclient.Error
			if errors.As(err, &ae) && ae.Status == 404 {
				break
			}
			if ctx.Err() != nil {
				t.Errorf("agent %s was not deleted in time (last answer %v)", a.ID, err)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// startConsole runs omerta-console as nobody:nogroup with no capabilities
// and no way to gain any, the device certificate handed over as systemd
// would (LoadCredential: files the service's user alone can read).
func (s *stack) startConsole(t *testing.T) {
	creds := s.credentials(t)
	cmd := exec.Command("setpriv", "--reuid="+consoleUser, "--regid="+consoleGroup, "--clear-groups", "--no-new-privs",
		"--bounding-set=-all", "--inh-caps=-all", "--", s.consoleBin, "--socket", s.sock, "--listen", "127.0.0.1:0")
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), "CREDENTIALS_DIRECTORY="+creds)
	p, err := startProc("console", filepath.Join(s.dir, "console.log"), cmd)
	if err != nil {
		t.Fatal(err)
	}
	s.conso = p
	t.Cleanup(func() {
		if err := p.stop(10 * time.Second); err != nil {
			t.Errorf("console: %v\n%s", err, p.log())
		}
		if t.Failed() {
			t.Logf("the console's log:\n%s", p.log())
		}
	})
	out, err := p.waitLog(time.Minute, func(s string) bool { return fingerprintRE.MatchString(s) })
	if err != nil {
		t.Fatal(err)
	}
	if s.cons, err = parseBanner(out); err != nil || s.cons.addr == "" {
		t.Fatalf("the console's banner (%v):\n%s", err, out)
	}
	s.url = "https://" + s.cons.addr
	checkUnprivileged(t, p.pid())
}

// credentials copies first boot's certificate and key into a directory
// only the console's user can read, as systemd's LoadCredential= does.
func (s *stack) credentials(t *testing.T) string {
	u, err := user.Lookup(consoleUser)
	if err != nil {
		t.Fatalf("the console's user: %v", err)
	}
	g, err := user.LookupGroup(consoleGroup)
	if err != nil {
		t.Fatalf("the console's group: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(g.Gid)
	dir := filepath.Join(s.dir, "credentials")
	if err := os.Mkdir(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]string{"tls.crt": fbCert, "tls.key": fbKey} {
		data, err := os.ReadFile(filepath.Join(s.root, src))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o400); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkUnprivileged reads the console's credentials from /proc: every uid
// and gid nobody's, no supplementary group but its own, no capability in
// any set (the bounding set too, as CapabilityBoundingSet= in the unit),
// no_new_privs set.
func checkUnprivileged(t *testing.T, pid int) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	u, _ := user.Lookup(consoleUser)
	g, _ := user.LookupGroup(consoleGroup)
	want := map[string]string{
		"Uid":    strings.Repeat(u.Uid+"\t", 3) + u.Uid,
		"Gid":    strings.Repeat(g.Gid+"\t", 3) + g.Gid,
		"Groups": "",
		"CapInh": "0000000000000000", "CapPrm": "0000000000000000", "CapEff": "0000000000000000",
		"CapBnd": "0000000000000000", "CapAmb": "0000000000000000", "NoNewPrivs": "1",
	}
	seen := 0
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		w, listed := want[k]
		if !ok || !listed {
			continue
		}
		seen++
		if v = strings.TrimSpace(v); v != w && !(k == "Groups" && v == g.Gid) {
			t.Errorf("the console's %s is %q, want %q", k, v, w)
		}
	}
	if seen != len(want) {
		t.Errorf("/proc/%d/status has %d of the %d lines checked:\n%s", pid, seen, len(want), data)
	}
}

// pin checks that the certificate the console serves is first boot's: its
// SHA-256 is the fingerprint first boot printed and the one the console
// printed, and it is the file first boot wrote. Only then may the browser
// be told to accept it.
func (s *stack) pin(t *testing.T) {
	conn, err := tls.Dial("tcp", s.cons.addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS to the console: %v", err)
	}
	st := conn.ConnectionState()
	conn.Close()
	s.leaf = st.PeerCertificates[0]
	served := sha256.Sum256(s.leaf.Raw)
	if string(served[:]) != string(s.fb.fingerprint) {
		t.Fatalf("the console serves a certificate with SHA-256 %x; first boot printed %x", served, s.fb.fingerprint)
	}
	if string(served[:]) != string(s.cons.fingerprint) {
		t.Fatalf("the console serves a certificate with SHA-256 %x; it printed %x", served, s.cons.fingerprint)
	}
	pemData, err := os.ReadFile(filepath.Join(s.root, fbCert))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemData)
	if blk == nil || string(blk.Bytes) != string(s.leaf.Raw) {
		t.Fatal("the served certificate is not first boot's " + fbCert)
	}
}

// tokenState is first boot's token file as omertad left it.
func (s *stack) tokenState(t *testing.T) (token string, used time.Time) {
	data, err := os.ReadFile(filepath.Join(s.root, fbToken))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Token  string    `json:"token"`
		UsedAt time.Time `json:"used_at"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("%s: %v", fbToken, err)
	}
	return f.Token, f.UsedAt
}
