package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/safeio"
	"github.com/omertaos/omertaos/appliance/safeyaml"
)

// TestProbeIntervalZero: the README says 0 turns the drift probe off;
// go-yaml alone refused it as "must be a number, not a number".
func TestProbeIntervalZero(t *testing.T) {
	for _, src := range []string{"probe:\n  interval: 0\n", "probe:\n  interval: 0s\n", "probe:\n  interval: \"0\"\n"} {
		cfg, err := Parse([]byte(src), "x.yaml", Default())
		if err != nil {
			t.Errorf("%q: %v", src, err)
			continue
		}
		if cfg.Probe.Interval != 0 {
			t.Errorf("%q: interval %v, want 0", src, cfg.Probe.Interval)
		}
	}
	_, err := Parse([]byte("probe:\n  interval: 3600\n"), "x.yaml", Default())
	if !errors.Is(err, safeyaml.ErrDuration) || !strings.Contains(err.Error(), `x.yaml:2:13: field "probe.interval": 3600:`) {
		t.Errorf("a plain number: %v", err)
	}
	// A bad ESP file is ignored whole; a good one with 0 is not.
	r := ResolveLayers(Layer{Path: "/efi/omerta.yaml", Present: true, Data: []byte("profile: pro\nprobe:\n  interval: 0\n")})
	if len(r.Problems()) != 0 || r.Config.Profile != ProfilePro || r.Config.Probe.Interval != 0 {
		t.Errorf("Resolve = %+v, problems %q", r.Config, r.Problems())
	}
}

func TestVersion(t *testing.T) {
	for _, src := range []string{"", "profile: pro\n", "version: 1\nprofile: pro\n"} {
		cfg, err := Parse([]byte(src), "x.yaml", Default())
		if err != nil || cfg.Version != Version {
			t.Errorf("%q: version %d, %v", src, cfg.Version, err)
		}
	}
	// A later version is refused as such, before its new fields.
	_, err := Parse([]byte("version: 3\nagents: {}\n"), "x.yaml", Default())
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "version" || fe.Value != "3" || !strings.Contains(fe.Reason, "reads version 1") || !strings.Contains(fe.Reason, "upgrade OMERTAOS") {
		t.Errorf("version 3: %v", err)
	}
	for _, src := range []string{"version: 0\n", "version: -1\n", "version: 99999999999\n"} {
		if _, err := Parse([]byte(src), "x.yaml", Default()); !errors.As(err, &fe) || fe.Field != "version" {
			t.Errorf("%q: %v", src, err)
		}
	}
	if _, err := Parse([]byte("version: one\n"), "x.yaml", Default()); !errors.Is(err, safeyaml.ErrType) {
		t.Errorf("version: one: %v", err)
	}
	data, err := Marshal(Default())
	if err != nil || !strings.Contains(string(data), "version: 1\n") {
		t.Errorf("Marshal wrote %q, %v", data, err)
	}
}

// TestListBounds: every list that first boot writes into a generated file
// is bounded, and the refusal names the list.
func TestListBounds(t *testing.T) {
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGhx0hJ3L8H5xqF2y4Jx2wq6iJv5Yq2S0o2b3cC1dE4f k"
	list := func(n int, item func(int) string) string {
		var s []string
		for i := range n {
			s = append(s, fmt.Sprintf("%q", item(i)))
		}
		return "[" + strings.Join(s, ", ") + "]"
	}
	iface := func(addrs, dns int) string {
		return fmt.Sprintf("{name: en%d, addresses: %s, dns: %s}", addrs, list(addrs, func(i int) string { return fmt.Sprintf("192.0.2.%d/24", i+1) }),
			list(dns, func(i int) string { return fmt.Sprintf("192.0.2.%d", i+1) }))
	}
	for _, tc := range []struct {
		field string
		src   string
	}{
		{"network.interfaces", "network:\n  interfaces: [" + strings.TrimSuffix(strings.Repeat(iface(1, 0)+", ", MaxInterfaces+1), ", ") + "]\n"},
		{"network.interfaces[0].addresses", "network:\n  interfaces: [" + iface(MaxAddresses+1, 1) + "]\n"},
		{"network.interfaces[0].dns", "network:\n  interfaces: [" + iface(1, MaxDNS+1) + "]\n"},
		{"ssh.authorized_keys", "ssh:\n  authorized_keys: " + list(MaxAuthorizedKeys+1, func(int) string { return key }) + "\n"},
		{"time.servers", "time:\n  servers: " + list(MaxTimeServers+1, func(i int) string { return fmt.Sprintf("ntp%d.example", i) }) + "\n"},
	} {
		_, err := Parse([]byte(tc.src), "x.yaml", Default())
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Reason, "at most") {
			t.Errorf("%s: %v", tc.field, err)
		}
	}
	// At the bound, accepted.
	ok := "network:\n  interfaces: [" + iface(MaxAddresses, MaxDNS) + "]\ntime:\n  servers: " +
		list(MaxTimeServers, func(i int) string { return fmt.Sprintf("ntp%d.example", i) }) + "\n"
	if _, err := Parse([]byte(ok), "x.yaml", Default()); err != nil {
		t.Errorf("lists at their bounds: %v", err)
	}
}

// TestNoControlCharacters: a value written into a generated file (units,
// authorized_keys, omerta.yaml) cannot carry a line break or an escape.
func TestNoControlCharacters(t *testing.T) {
	for field, src := range map[string]string{
		"daemon.socket":                 "daemon:\n  socket: \"/run/x\\nprofile: user\"\n",
		"daemon.state_dir":              "daemon:\n  state_dir: \"/var/lib/\\u202eomerta\"\n",
		"daemon.socket_group":           "daemon:\n  socket_group: \"omerta\\rx\"\n",
		"ssh.authorized_keys[0]":        "ssh:\n  authorized_keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGhx0hJ3L8H5xqF2y4Jx2wq6iJv5Yq2S0o2b3cC1dE4f a\\u0085b\"]\n",
		"network.interfaces[0].gateway": "network:\n  interfaces: [{name: eth0, addresses: [192.0.2.1/24], gateway: \"fe80::1%eth0\\n[Network]\"}]\n",
		"network.interfaces[0].dns[0]":  "network:\n  interfaces: [{name: eth0, addresses: [192.0.2.1/24], dns: [\"fe80::1%e*\"]}]\n",
	} {
		_, err := Parse([]byte(src), "x.yaml", Default())
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("%s: %v", field, err)
			continue
		}
		if strings.ContainsAny(err.Error(), "\n\r\u0085\u202e") {
			t.Errorf("%s: message carries the character raw: %q", field, err)
		}
	}
	cfg, err := Parse([]byte("network:\n  interfaces: [{name: eth0, addresses: [192.0.2.1/24], dns: [\"fe80::53%eth0\"]}]\n"), "x.yaml", Default())
	if err != nil || cfg.Network.Interfaces[0].DNS[0] != "fe80::53%eth0" {
		t.Errorf("a zone naming an interface: %v", err)
	}
}

// TestLoadRefusesSpecialFiles: a FIFO would block the reader forever and
// /dev/zero would fill memory; both are refused at once, naming the file.
func TestLoadRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero.yaml")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("# "+strings.Repeat("x", MaxFileSize)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, kind string
		want       error
	}{
		{fifo, "a FIFO", safeio.ErrNotRegular},
		{zero, "a character device", safeio.ErrNotRegular},
		{dir, "a directory", safeio.ErrNotRegular},
		{big, "", safeio.ErrTooLarge},
	} {
		start := time.Now()
		_, err := Load(tc.path)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("Load(%s) = %v, want %v naming the file", tc.path, err, tc.want)
		}
		l := ReadLayer(tc.path, "/efi/omerta.yaml")
		if !l.Present || l.Data != nil || !strings.HasPrefix(l.ReadError, "/efi/omerta.yaml: ") || !strings.Contains(l.ReadError, tc.kind) {
			t.Errorf("ReadLayer(%s) = %+v", tc.path, l)
		}
		if took := time.Since(start); took > time.Second*raceSlowdown {
			t.Errorf("%s took %v", tc.path, took)
		}
	}
}

// TestMarshalQuotesHeader: text from a bad file (an error quoting a key
// with newlines) ends up in the installed file's comment header. It must
// stay a comment, and the file must read back to what was marshalled.
func TestMarshalQuotesHeader(t *testing.T) {
	base := Default()
	base.Profile = ProfileEnterprise
	base.Daemon.SocketGroup = "omerta-console"
	for _, h := range []string{
		"x)\nprofile: user\n---\n#",
		"x)\rprofile: user",
		"x)\u2028profile: user",
		"x)\u0085profile: user",
		"a \x1b[2K b " + strings.Repeat("long ", 1000),
	} {
		data, err := Marshal(base, "Installed by omerta firstboot", "  /efi/omerta.yaml: ignored ("+h+")")
		if err != nil {
			t.Fatalf("%q: %v", h, err)
		}
		lines := strings.Split(string(data), "\n")
		if !strings.HasPrefix(lines[0], "# ") || !strings.HasPrefix(lines[1], "# ") || strings.HasPrefix(lines[2], "#") {
			t.Errorf("%q: header is not two comment lines:\n%s", h, data)
		}
		if len(lines[1]) > maxHeaderLine+2 {
			t.Errorf("%q: header line of %d bytes", h, len(lines[1]))
		}
		got, err := Parse(data, "installed", Default())
		if err != nil || !Equal(got, base) {
			t.Errorf("%q: reads back as %+v, %v", h, got, err)
		}
	}
}

// TestMarshalTooLarge: a configuration whose rendering Load could not read
// back is refused, so first boot can fall back instead of installing it.
func TestMarshalTooLarge(t *testing.T) {
	c := Default()
	c.SSH.Enabled = true
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGhx0hJ3L8H5xqF2y4Jx2wq6iJv5Yq2S0o2b3cC1dE4f " + strings.Repeat("c", MaxKeyLine-90)
	for range MaxAuthorizedKeys {
		c.SSH.AuthorizedKeys = append(c.SSH.AuthorizedKeys, key)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := Marshal(c); !errors.Is(err, safeio.ErrTooLarge) {
		t.Fatalf("Marshal = %v, want ErrTooLarge", err)
	}
}

func TestStateDBPath(t *testing.T) {
	c := Default()
	if got := c.StateDBPath(); got != "/var/lib/omerta/state.db" {
		t.Errorf("default StateDBPath = %s", got)
	}
	c.Daemon.StateDir = "/srv/omerta/"
	if got := c.StateDBPath(); got != "/srv/omerta/"+StateFile {
		t.Errorf("StateDBPath = %s", got)
	}
}
