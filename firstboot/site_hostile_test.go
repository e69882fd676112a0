package firstboot

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/omertaos/omertaos/appliance/config"
)

const injectImage = "profile: enterprise\ndaemon:\n  socket_group: omerta-console\n"

// TestSiteInjectionStaysComment: a bad ESP file's message used to be copied
// raw into the comment header of the installed /etc/omerta/omerta.yaml.
// A key holding "\n---\n" then ended the comment, put "profile: user" in
// force and pushed the real configuration into a second document that the
// loader never read: omertad ran a profile the signed report contradicted.
// Now the installed file reads back as exactly what the report says was
// applied, whatever the ESP file holds.
func TestSiteInjectionStaysComment(t *testing.T) {
	for name, esp := range map[string]string{
		"newlines in a key":      "\"x)\\nprofile: user\\n---\\n#\": 1\n",
		"carriage returns":       "\"x)\\rprofile: user\\r---\\r#\": 1\n",
		"line separators":        "\"x)\\u2028profile: user\\u2028---\\u2028#\": 1\n",
		"next line (NEL)":        "\"x)\\u0085profile: user\\u0085---\\u0085#\": 1\n",
		"nested key":             "daemon:\n  \"x)\\nsocket_group: root\\n#\": 1\n",
		"in a bad value":         "console:\n  port: \"x)\\nprofile: user\\n---\\n#\"\n",
		"terminal escapes":       "\"\\e[2K\\rprofile: user\": 1\n",
		"a second document":      "hostname: from-esp\n---\nprofile: user\n",
		"document end then more": "hostname: from-esp\n...\nprofile: user\n",
	} {
		t.Run(name, func(t *testing.T) {
			root := newTestRoot(t, map[string]string{"/etc/omerta/omerta.yaml": injectImage, "/efi/omerta.yaml": esp})
			var out bytes.Buffer
			if _, err := Run(context.Background(), testOptions(root, &out)); err != nil {
				t.Fatal(err)
			}
			checkInstalledIsReported(t, root, map[string]string{config.DefaultPath: injectImage, "/efi/omerta.yaml": esp})
			h := readReport(t, root).Header
			if src := h.Site.Sources[1]; src.Path != "/efi/omerta.yaml" || src.Error == "" {
				t.Errorf("the ESP file was not refused: %+v", src)
			}
			if h.Profile != config.ProfileEnterprise {
				t.Errorf("report profile %s, want the image's enterprise", h.Profile)
			}
			for _, l := range linesOf(&out) {
				if strings.ContainsAny(l, "\r\x1b\u2028\u0085") {
					t.Errorf("console line carries a control character: %q", l)
				}
			}
		})
	}
}

// checkInstalledIsReported parses the installed /etc/omerta/omerta.yaml
// back and compares it with the configuration the report says was applied:
// the layers it lists as read without error (each checked against its
// SHA-256 in the report), resolved again, under the report's profile.
func checkInstalledIsReported(t *testing.T, root string, inputs map[string]string) {
	t.Helper()
	h := readReport(t, root).Header
	var layers []config.Layer
	for _, src := range h.Site.Sources {
		if !src.Present || src.Error != "" {
			continue
		}
		data, ok := inputs[src.Path]
		if !ok {
			t.Fatalf("report names %s as applied, which the test did not write", src.Path)
		}
		if sum := sha256.Sum256([]byte(data)); hex.EncodeToString(sum[:]) != src.SHA256 {
			t.Fatalf("report's SHA-256 of %s is not the file's", src.Path)
		}
		layers = append(layers, config.Layer{Path: src.Path, Present: true, Data: []byte(data)})
	}
	want := config.ResolveLayers(layers...).Config
	want.Profile = h.Profile
	path := under(root, config.DefaultPath)
	got, err := config.Load(path)
	if err != nil {
		t.Fatalf("installed configuration does not load: %v", err)
	}
	if !config.Equal(got, want) {
		data, _ := os.ReadFile(path)
		t.Fatalf("installed configuration is not what the report says was applied:\n got %+v\nwant %+v\n%s", got, want, data)
	}
	// The header is comments only, and the file one document.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	header := true
	for sc.Scan() {
		l := sc.Text()
		if header && !strings.HasPrefix(l, "# ") {
			header = false
		}
		if !header && (strings.HasPrefix(l, "---") || strings.HasPrefix(l, "...")) {
			t.Errorf("installed file holds a document marker: %q", l)
		}
	}
}

// billionLaughs is the classic YAML alias bomb: nine levels of nine
// aliases, a few hundred bytes that expand to 9^9 strings.
func billionLaughs() string {
	var b strings.Builder
	b.WriteString("a: &a [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n")
	prev := "a"
	for _, n := range "bcdefghi" {
		b.WriteString(string(n) + ": &" + string(n) + " [")
		for i := range 9 {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*" + prev)
		}
		b.WriteString("]\n")
		prev = string(n)
	}
	return b.String()
}

// TestSiteHostileFiles: an ESP file that exhausted memory (aliases, deep
// nesting), blocked forever (a FIFO) or never ended (/dev/zero) made first
// boot die at the site step, and every later boot resumed there and died
// again. Now the step finishes with the image's configuration, says why it
// ignored the file, in bounded time and memory, and a resumed step too.
func TestSiteHostileFiles(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, p string)
	}{
		{"billion laughs", func(t *testing.T, p string) { writeSiteFile(t, p, billionLaughs()) }},
		{"200 KB of [", func(t *testing.T, p string) { writeSiteFile(t, p, strings.Repeat("[", 200<<10)) }},
		{"60 KB of [ under the cap", func(t *testing.T, p string) { writeSiteFile(t, p, strings.Repeat("[", 60<<10)) }},
		{"60 KB of keys under the cap", func(t *testing.T, p string) { writeSiteFile(t, p, manySiteKeys(60<<10)) }},
		{"FIFO", func(t *testing.T, p string) {
			if err := unix.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"symlink to /dev/zero", func(t *testing.T, p string) {
			// The link resolves inside the root, so the root gets
			// its own /dev/zero.
			dev := filepath.Join(filepath.Dir(filepath.Dir(p)), "dev")
			if err := os.MkdirAll(dev, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := unix.Mknod(filepath.Join(dev, "zero"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5))); err != nil {
				t.Skipf("cannot create a character device here (mknod: %v)", err)
			}
			if err := os.Symlink("/dev/zero", p); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := newTestRoot(t, map[string]string{"/etc/omerta/omerta.yaml": injectImage})
			esp := under(root, "/efi/omerta.yaml")
			if err := os.MkdirAll(filepath.Dir(esp), 0o755); err != nil {
				t.Fatal(err)
			}
			tc.plant(t, esp)

			// The first attempt is cut off after the site step did its
			// work and before the journal says so: the next one resumes
			// at the site step, with the same file.
			opts := testOptions(root, nil)
			opts.Hook = func(step, point string) {
				if step == StepSite && point == "after" {
					opts.Hook = nil
					panic(errStop)
				}
			}
			runSiteBounded(t, func() {
				defer func() {
					if r := recover(); r != nil && r != errStop {
						panic(r)
					}
				}()
				if _, err := Run(context.Background(), opts); err != nil {
					t.Errorf("first attempt: %v", err)
				}
			})
			opts.Hook = nil
			runSiteBounded(t, func() {
				if _, err := Run(context.Background(), opts); err != nil {
					t.Error(err)
				}
			})
			h := readReport(t, root).Header
			if len(h.Site.Problems) == 0 || !strings.Contains(h.Site.Problems[0], "/efi/omerta.yaml") {
				t.Errorf("report problems %q do not name the ESP file", h.Site.Problems)
			}
			if h.Profile != config.ProfileEnterprise {
				t.Errorf("profile %s, want the image's", h.Profile)
			}
			checkInstalledIsReported(t, root, map[string]string{config.DefaultPath: injectImage})
		})
	}
}

func manySiteKeys(size int) string {
	var b strings.Builder
	for i := 0; b.Len() < size-16; i++ {
		b.WriteString("k")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString(hex.EncodeToString([]byte{byte(i >> 8), byte(i)}))
		b.WriteString(": 1\n")
	}
	return b.String()
}

func writeSiteFile(t *testing.T, p, data string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// runSiteBounded runs f, failing if it takes longer than a first boot with a
// hostile file has any reason to, or allocates more than it should.
func runSiteBounded(t *testing.T, f func()) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("first boot has not finished after 60s")
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 512<<20 {
		t.Errorf("first boot allocated %d MB", alloc>>20)
	}
}

// TestSiteFileLinkStaysInsideRoot: the ESP file as an absolute link, last
// component and all, must resolve inside the image root. Reading it through
// a host path used to follow the link onto the host, so a file outside the
// root could choose the profile.
func TestSiteFileLinkStaysInsideRoot(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "host-omerta.yaml")
	if err := os.WriteFile(outside, []byte("profile: user\nhostname: from-the-host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := newTestRoot(t, map[string]string{"/etc/omerta/omerta.yaml": injectImage})
	if err := os.MkdirAll(filepath.Join(root, "efi"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "efi", "omerta.yaml")); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := Run(context.Background(), testOptions(root, &out)); err != nil {
		t.Fatal(err)
	}
	h := readReport(t, root).Header
	if h.Profile != config.ProfileEnterprise {
		t.Errorf("report profile %s: the host's file, reached through the link, chose it", h.Profile)
	}
	if h.Hostname == "from-the-host" {
		t.Error("the host name came from a file outside the root")
	}
}

// TestSiteCannotMoveStateDir: first boot has written its journal, keys,
// step table and audit records under /var/lib/omerta before the site step
// runs; an ESP file that moved daemon.state_dir used to be installed as
// is, so omertad opened an empty database with a new audit chain.
func TestSiteCannotMoveStateDir(t *testing.T) {
	esp := "daemon:\n  state_dir: /srv/elsewhere\nhostname: from-esp\n"
	root := newTestRoot(t, map[string]string{"/etc/omerta/omerta.yaml": injectImage, "/efi/omerta.yaml": esp})
	var out bytes.Buffer
	if _, err := Run(context.Background(), testOptions(root, &out)); err != nil {
		t.Fatal(err)
	}
	installed, err := config.Load(filepath.Join(root, "etc/omerta/omerta.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if installed.Daemon.StateDir != StateDir {
		t.Errorf("installed state_dir %q, want %q", installed.Daemon.StateDir, StateDir)
	}
	h := readReport(t, root).Header
	if src := h.Site.Sources[1]; !strings.Contains(src.Error, "daemon.state_dir") {
		t.Errorf("the ESP layer was not set aside naming daemon.state_dir: %+v", src)
	}
	if h.Profile != config.ProfileEnterprise {
		t.Errorf("report profile %s, want the image's enterprise", h.Profile)
	}
}
