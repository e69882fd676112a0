package firstboot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/atomicfile"
	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/store"
	"github.com/omertaos/omertaos/firstboot/report"
)

// The fixed facts of the test machine.
const (
	testMachineID = "4f1b2c3d4e5f60718293a4b5c6d7e8f9"
	testBootID    = "0b8c5f3e-1d2a-4c6b-9e7f-112233445566"
	testSSHKey    = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHjfHVbY9xG1Kz3oQ0q6yPjx3Ldvq7r6yFo0p9m2h8Qk admin@example"
)

var testAddrs = []netip.Addr{
	netip.MustParseAddr("192.0.2.10"),
	netip.MustParseAddr("127.0.0.1"),
	netip.MustParseAddr("fe80::1"),
	netip.MustParseAddr("2001:db8::10"),
}

// newTestRoot lays out what the image provides before first boot: a
// machine-id, the admin account, openssh's unit (from Debian trixie's
// openssh-server 1:10.0p1-7+deb13u4), an installed Lynis, and the site
// configuration files given.
func newTestRoot(t testing.TB, site map[string]string) string {
	t.Helper()
	root := t.TempDir()
	unit, err := os.ReadFile("testdata/ssh.service")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"/etc/machine-id":                     testMachineID + "\n",
		"/etc/passwd":                         "root:x:0:0:root:/root:/bin/bash\nomerta-admin:x:990:990:OMERTAOS admin:/var/lib/omerta-admin:/bin/bash\n",
		"/usr/lib/systemd/system/ssh.service": string(unit),
		"/usr/sbin/lynis":                     "#!/bin/sh\nexit 1\n",
		"/etc/os-release":                     "PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nID=debian\nIMAGE_VERSION=0.1.0-test\n",
	}
	for p, c := range site {
		files[p] = c
	}
	for p, c := range files {
		full := under(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(under(root, "/usr/sbin/lynis"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "boot_id"), []byte(testBootID+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

const goodSite = `profile: pro
hostname: gpu-node-1
network:
  interfaces:
    - name: enp1s0
      addresses: [192.0.2.10/24, 2001:db8::10/64]
      gateway: 192.0.2.1
      dns: [192.0.2.53]
    - name: "en*"
      dhcp: true
ssh:
  enabled: true
  authorized_keys:
    - ` + testSSHKey + `
time:
  servers: [ntp1.example.net, 192.0.2.123]
`

// fakeProber stands in for appliance/probe in engine tests: the engine's
// job is to run it once, keep its verdict and put it in the report.
type fakeProber struct {
	mu    sync.Mutex
	calls int
	err   error
}

func (p *fakeProber) Probe(ctx context.Context, o ProbeOptions, st *store.Store) (report.Probe, error) {
	p.mu.Lock()
	p.calls++
	p.mu.Unlock()
	if p.err != nil {
		return report.Probe{}, p.err
	}
	return report.Probe{Status: "warn", Checks: []report.ProbeCheck{
		{ID: "cpu.threads", Status: "pass", Measured: "16", Required: ">= 4"},
		{ID: "gpu.count", Status: "warn", Reason: "no NVIDIA GPU found", Measured: "0", Required: ">= 1 for profile " + string(o.Profile)},
	}}, nil
}

// fileHardener stands in for hardening in engine tests: it owns two files,
// writes them only when they differ, and reads them back with evidence, so
// that idempotence and resume are visible in the tree.
type fileHardener struct {
	failApply error
	applies   int
}

var fakeControls = []struct{ id, path, want string }{
	{"kspp.kptr_restrict", "/etc/sysctl.d/90-omerta-test.conf", "kernel.kptr_restrict = 2\n"},
	{"cis.1.1.1.1", "/etc/modprobe.d/omerta-test.conf", "install cramfs /bin/false\n"},
}

func (h *fileHardener) Apply(ctx context.Context, o HardenOptions) ([]string, error) {
	h.applies++
	if h.failApply != nil {
		return nil, h.failApply
	}
	var changed []string
	for _, c := range fakeControls {
		ch, err := atomicfile.WriteFile(under(o.Root, c.path), []byte(c.want), 0o644)
		if err != nil {
			return changed, err
		}
		if ch {
			changed = append(changed, c.path)
		}
	}
	return changed, nil
}

func (h *fileHardener) Check(ctx context.Context, o HardenOptions) ([]report.Record, error) {
	var out []report.Record
	for _, c := range fakeControls {
		data, err := os.ReadFile(under(o.Root, c.path))
		res := report.OutcomePass
		if err != nil || string(data) != c.want {
			res = report.OutcomeFail
		}
		sum := sha256.Sum256(data)
		out = append(out, report.Record{
			ID: c.id, Title: "test control " + c.id,
			References: []report.Reference{{Scheme: "KSPP", ID: c.id}},
			Expected:   strings.TrimSpace(c.want), Actual: strings.TrimSpace(string(data)), Result: res,
			Evidence: []report.Evidence{{Source: c.path, SHA256: hex.EncodeToString(sum[:]), Excerpt: strings.TrimSpace(string(data))}},
			Time:     o.Now(),
		})
	}
	return out, nil
}

// fixtureLynis plays a finished Lynis audit by copying a report file that
// Lynis wrote on a real Debian machine.
func fixtureLynis(calls *int) func(ctx context.Context, reportFile string) error {
	return func(ctx context.Context, reportFile string) error {
		if calls != nil {
			*calls++
		}
		data, err := os.ReadFile("testdata/lynis-report-debian12.dat")
		if err != nil {
			return err
		}
		return os.WriteFile(reportFile, data, 0o640)
	}
}

// testOptions returns Options for a hermetic run on root.
func testOptions(root string, out io.Writer) Options {
	return Options{
		Root:        root,
		Prober:      &fakeProber{},
		Hardener:    &fileHardener{},
		Out:         out,
		Addrs:       func() ([]netip.Addr, error) { return testAddrs, nil },
		Lynis:       fixtureLynis(nil),
		Notify:      func(string) error { return nil },
		ClockSynced: func() bool { return false },
		BootIDPath:  filepath.Join(root, "boot_id"),
	}
}

// snapshot lists every file under root with its type, mode and a digest of
// its normalised content: what must match between an uninterrupted first
// boot and one that was cut off and resumed. Keys, tokens, times and
// signatures differ by nature; they are compared by shape, not bytes.
func snapshot(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, root), "/")
		if rel == "/boot_id" {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		entry := fi.Mode().String()
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			entry += " -> " + target
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			entry += " " + normaliseFile(t, rel, data)
		}
		switch rel {
		case StateDBPath + "-wal", StateDBPath + "-shm":
			return nil // present or not depending on checkpoints
		}
		out[rel] = entry
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var (
	tokenLineRE = regexp.MustCompile(`[a-z2-7]{32}   \(single use, valid until [^)]*\)`)
	fprRE       = regexp.MustCompile(`SHA256:[0-9A-Fa-f:]{64,95}`)
)

func normaliseFile(t testing.TB, rel string, data []byte) string {
	switch {
	case strings.HasPrefix(rel, KeysDir+"/"):
		return "key"
	case rel == StateDBPath:
		// Compared through its step table by the tests (stepTable).
		return "sqlite"
	case rel == StateDBPath+".audit-head":
		// The audit chain's head: a resumed run appended other entries.
		return "audit head"
	case rel == TokenPath:
		var tok setupToken
		if err := json.Unmarshal(data, &tok); err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		return fmt.Sprintf("token len=%d used=%v ttl=%s", len(tok.Token), !tok.UsedAt.IsZero(), tok.ExpiresAt.Sub(tok.CreatedAt).Round(time.Minute))
	case rel == IssuePath:
		s := tokenLineRE.ReplaceAllString(string(data), "<token>")
		return digest([]byte(fprRE.ReplaceAllString(s, "<fingerprint>")))
	case rel == JournalPath, rel == ReportPath, rel == AuditJournalPath:
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		b, _ := json.Marshal(maskJSON(v, ""))
		return string(b)
	case rel == ReportHTMLPath:
		// checkHTML proves it is report.json rendered, and report.json
		// is compared here.
		return "html"
	case rel == DonePath, rel == AuditDonePath:
		return "done " + regexp.MustCompile(`\d{4}-\d\d-\d\dT[^\n]*|[0-9a-f]{64}`).ReplaceAllString(string(data), "x")
	}
	return digest(data)
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// maskJSON blanks what differs between two runs by nature: times, attempt
// counts, key material, signatures and hashes over them.
func maskJSON(v any, key string) any {
	switch x := v.(type) {
	case map[string]any:
		m := map[string]any{}
		for k, e := range x {
			switch k {
			case "started_at", "finished_at", "time", "expires_at", "attempts",
				"tls_fingerprint", "signing_key_fingerprint", "public_key", "key_fingerprint",
				"value", "hash", "prev_hash", "chain_head", "header_sha256", "addenda_head", "duration_ms",
				// What a real probe measures (free disk space) moves
				// between runs like a clock does.
				"measured":
				m[k] = "*"
			case "reason":
				// A probe check's reason quotes what was measured.
				if key == "checks" {
					m[k] = "*"
				} else {
					m[k] = e
				}
			default:
				m[k] = maskJSON(e, k)
			}
		}
		// The report step's data is the digest of the report itself.
		if x["name"] == StepReport {
			m["data"] = "*"
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = maskJSON(e, key)
		}
		return out
	}
	return v
}

func readReport(t testing.TB, root string) *report.Report {
	t.Helper()
	data, err := os.ReadFile(under(root, ReportPath))
	if err != nil {
		t.Fatal(err)
	}
	r, err := report.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func stepTable(t testing.TB, root string) []StepRow {
	t.Helper()
	st, err := store.Open(context.Background(), under(root, StateDBPath))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rows, err := Steps(context.Background(), st.Read())
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func linesOf(b *bytes.Buffer) []string {
	return strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
}

// checkHTML asserts that report.html is exactly report.json rendered.
func checkHTML(t testing.TB, root string) {
	t.Helper()
	r := readReport(t, root)
	var want bytes.Buffer
	if err := report.RenderHTML(&want, r); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(under(root, ReportHTMLPath))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Errorf("report.html is not report.json rendered")
	}
}

func stepStatuses(rows []StepRow) string {
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "%d %s %s; ", r.Position, r.Name, r.Status)
	}
	return b.String()
}

var _ = config.Default

func netipMust(s string) netip.Addr { return netip.MustParseAddr(s) }
