package firstboot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/rootfs"
	"github.com/omertaos/omertaos/appliance/safeio"
)

func unitRunner(t *testing.T, unit string) *runner {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "usr/lib/systemd/system/ssh.service")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	fs, err := rootfs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &runner{root: dir, fs: fs}
}

// TestInstallSection reads [Install] the way systemd does (go-systemd's
// parser): continuation lines, comments, several sections, and an empty
// assignment that resets the list.
func TestInstallSection(t *testing.T) {
	for _, tc := range []struct {
		name          string
		unit          string
		wanted, alias []string
	}{
		{"debian", mustRead(t, "testdata/ssh.service"), []string{"multi-user.target"}, []string{"sshd.service"}},
		{"continuation and comments", "[Unit]\nDescription=x\n[Install]\n# WantedBy=rescue.target\nWantedBy=multi-user.target \\\n  graphical.target\nAlias=sshd.service\n", []string{"multi-user.target", "graphical.target"}, []string{"sshd.service"}},
		{"reset", "[Install]\nWantedBy=rescue.target\nWantedBy=\nWantedBy=multi-user.target\n", []string{"multi-user.target"}, nil},
		{"other sections ignored", "[Service]\nWantedBy=evil.target\n[Install]\nAlias=sshd.service\n", nil, []string{"sshd.service"}},
		{"none", "[Service]\nExecStart=/bin/true\n", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, a, err := unitRunner(t, tc.unit).installSection("/usr/lib/systemd/system/ssh.service")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(w, tc.wanted) || !reflect.DeepEqual(a, tc.alias) {
				t.Errorf("WantedBy %q Alias %q, want %q %q", w, a, tc.wanted, tc.alias)
			}
		})
	}
	for name, unit := range map[string]string{
		"path in Alias":    "[Install]\nAlias=../../../etc/passwd\n",
		"path in WantedBy": "[Install]\nWantedBy=/etc/x.target\n",
		"line too long":    "[Install]\nWantedBy=" + strings.Repeat("a", 4096) + ".target\n",
	} {
		if _, _, err := unitRunner(t, unit).installSection("/usr/lib/systemd/system/ssh.service"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	r := unitRunner(t, "[Install]\n"+strings.Repeat("# padding\n", unitFileLimit/10+1))
	if _, _, err := r.installSection("/usr/lib/systemd/system/ssh.service"); !errors.Is(err, safeio.ErrTooLarge) {
		t.Errorf("oversized unit: %v", err)
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestNetworkUnitCanonical: what reaches a networkd unit is the address as
// netip prints it; a value that could break the unit's syntax is refused.
func TestNetworkUnitCanonical(t *testing.T) {
	body, err := networkUnit(0, config.Interface{Name: "enp1s0", Addresses: []string{"2001:DB8::10/64"}, Gateway: "2001:db8:0::1", DNS: []string{"fe80::53%enp1s0"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Address=2001:db8::10/64\n", "Gateway=2001:db8::1\n", "DNS=fe80::53%enp1s0\n"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("unit lacks %q:\n%s", want, body)
		}
	}
	for _, in := range []config.Interface{
		{Name: "en p1", Addresses: []string{"192.0.2.1/24"}},
		{Name: "eth0\nName=*", Addresses: []string{"192.0.2.1/24"}},
		{Name: "eth0", DHCP: true, DNS: []string{"fe80::1%eth0\n[Network]"}},
		{Name: "eth0", Addresses: []string{"192.0.2.1/24"}, Gateway: "fe80::1%a\\b"},
	} {
		if body, err := networkUnit(0, in); err == nil {
			t.Errorf("%+v rendered:\n%s", in, body)
		}
	}
}

// TestSiteSetAsideWhenTooLarge: layers that are each valid can together
// make a configuration too large to install (Load reads at most
// config.MaxFileSize). First boot then sets the ESP layer aside, says why,
// and installs what the layers below give, instead of failing every boot.
func TestSiteSetAsideWhenTooLarge(t *testing.T) {
	key := testSSHKey + " " + strings.Repeat("c", config.MaxKeyLine-len(testSSHKey)-1)
	var image strings.Builder
	image.WriteString("profile: pro\nssh:\n  authorized_keys:\n")
	for range 30 {
		image.WriteString("    - " + key + "\n")
	}
	var esp strings.Builder
	esp.WriteString("network:\n  interfaces:\n")
	for i := range config.MaxInterfaces {
		esp.WriteString("    - {name: en" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + ", addresses: [")
		for j := range config.MaxAddresses {
			if j > 0 {
				esp.WriteString(", ")
			}
			esp.WriteString("\"2001:db8::" + strconv.FormatInt(int64(j+1), 16) + "/64\"")
		}
		esp.WriteString("]}\n")
	}
	root := newTestRoot(t, map[string]string{"/etc/omerta/omerta.yaml": image.String(), "/efi/omerta.yaml": esp.String()})
	if _, err := Run(context.Background(), testOptions(root, nil)); err != nil {
		t.Fatal(err)
	}
	h := readReport(t, root).Header
	if src := h.Site.Sources[1]; src.Error == "" || !strings.Contains(src.Error, "set aside") || src.SHA256 == "" {
		t.Errorf("ESP source = %+v", src)
	}
	checkInstalledIsReported(t, root, map[string]string{config.DefaultPath: image.String()})
}
