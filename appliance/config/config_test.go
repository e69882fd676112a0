package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestLoadGood(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*.yaml")
	if len(files) == 0 {
		t.Fatal("no fixtures")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := Load(f); err != nil {
				t.Fatalf("Load: %v", err)
			}
		})
	}
	cfg, err := Load("testdata/good/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Profile != ProfileEnterprise || cfg.Daemon.ShutdownTimeout != 20*time.Second ||
		len(cfg.Network.Interfaces) != 2 || !cfg.Network.Interfaces[1].DHCP || cfg.Firstboot.LynisEnabled() ||
		cfg.Probe.Interval != 30*time.Minute || cfg.Console.Port != 8443 ||
		len(cfg.Agents.Registries) != 2 || cfg.Agents.Registries[1] != "/var/lib/omerta/registries/acme" {
		t.Errorf("full.yaml decoded to %+v", cfg)
	}
	empty, err := Load("testdata/good/empty.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if d := Default(); empty.Profile != d.Profile || empty.Daemon != d.Daemon || !empty.Firstboot.LynisEnabled() {
		t.Errorf("empty file = %+v, want defaults", empty)
	}
}

// TestLoadBad checks each bad file's one-line message against a golden file:
// the message is what an administrator reads on the console, so it must name
// the file, the field, the value and the reason.
func TestLoadBad(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	var got strings.Builder
	for _, f := range files {
		_, err := Load(f)
		if err == nil {
			t.Errorf("%s: Load succeeded", f)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: message spans lines: %q", f, err)
		}
		if !strings.Contains(err.Error(), f) {
			t.Errorf("%s: message does not name the file: %q", f, err)
		}
		got.WriteString(err.Error() + "\n")
	}
	golden := "testdata/bad.golden"
	if *update {
		os.WriteFile(golden, []byte(got.String()), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		t.Errorf("messages differ from %s (run with -update to accept):\n%s", golden, got.String())
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none.yaml"))
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load = %v, want ErrNotFound", err)
	}
}

func TestFieldErrorNamesField(t *testing.T) {
	_, err := Load("testdata/bad/bad-cidr.yaml")
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "network.interfaces[0].addresses[0]" || fe.Value != "192.0.2.10" {
		t.Fatalf("err = %#v", err)
	}
}

func TestResolveLayers(t *testing.T) {
	dir := t.TempDir()
	etc := filepath.Join(dir, "etc.yaml")
	esp := filepath.Join(dir, "esp.yaml")
	os.WriteFile(etc, []byte("profile: pro\nhostname: from-etc\n"), 0o644)

	t.Run("override wins field by field", func(t *testing.T) {
		os.WriteFile(esp, []byte("hostname: from-esp\n"), 0o644)
		r := Resolve(etc, esp, filepath.Join(dir, "absent.yaml"))
		if r.Config.Profile != ProfilePro || r.Config.Hostname != "from-esp" || len(r.Problems()) != 0 {
			t.Fatalf("Resolve = %+v", r)
		}
		if !r.Sources[0].Present || !r.Sources[1].Present || r.Sources[2].Present || r.Sources[1].SHA256 == "" {
			t.Errorf("sources = %+v", r.Sources)
		}
	})
	t.Run("bad layer ignored whole", func(t *testing.T) {
		os.WriteFile(esp, []byte("hostname: from-esp\nprofile: platinum\n"), 0o644)
		r := Resolve(etc, esp)
		if r.Config.Profile != ProfilePro || r.Config.Hostname != "from-etc" {
			t.Fatalf("bad layer leaked into the result: %+v", r.Config)
		}
		p := r.Problems()
		if len(p) != 1 || !strings.Contains(p[0], esp+": profile: \"platinum\"") {
			t.Fatalf("problems = %q", p)
		}
	})
	t.Run("bad layer does not change base", func(t *testing.T) {
		os.WriteFile(esp, []byte("time:\n  servers: [a.example, 'bad server']\n"), 0o644)
		base := Default()
		base.Time.Servers = []string{"keep.example"}
		_, err := Parse([]byte("time:\n  servers: [a.example, 'bad server']\n"), "x", base)
		if err == nil || base.Time.Servers[0] != "keep.example" {
			t.Fatalf("Parse = %v, base now %v", err, base.Time.Servers)
		}
	})
}

func TestMarshalRoundTrip(t *testing.T) {
	for _, f := range []string{"testdata/good/full.yaml", "testdata/good/empty.yaml"} {
		want, err := Load(f)
		if err != nil {
			t.Fatal(err)
		}
		data, err := Marshal(want, "generated")
		if err != nil {
			t.Fatal(err)
		}
		got, err := Parse(data, "marshalled", Default())
		if err != nil {
			t.Fatalf("%s: marshalled form does not parse: %v\n%s", f, err, data)
		}
		if !Equal(got, want) {
			t.Errorf("%s: round trip changed the configuration:\n got %+v\nwant %+v", f, got, want)
		}
	}
}
