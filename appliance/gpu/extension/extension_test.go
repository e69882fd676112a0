package extension

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/rootfs"
	"github.com/omertaos/omertaos/appliance/safeio"
)

const testKernel = "6.12.57+deb13-amd64"

var testImage = []byte("erofs image bytes")

// fakeRunner records the programs Merge runs and fails the ones in fail.
type fakeRunner struct {
	calls []string
	fail  map[string]bool
}

func (f *fakeRunner) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	f.calls = append(f.calls, strings.Join(append([]string{name}, args...), " "))
	if f.fail[name] {
		return []byte("Failed to merge\n"), errors.New("exit status 1")
	}
	return nil, nil
}

const (
	refresh = "systemd-sysext refresh"
	trigger = "udevadm trigger --action=add --subsystem-match=pci --attr-match=vendor=0x10de"
	users   = "systemd-sysusers"
	nvpd    = "systemctl start --no-block nvidia-persistenced.service"
)

// testManifest describes testImage.
func testManifest() Manifest {
	sum := sha256.Sum256(testImage)
	return Manifest{Name: Name, File: Name + ".raw", Size: int64(len(testImage)), SHA256: hex.EncodeToString(sum[:]),
		DriverVersion: "550.163.01", Kernel: testKernel, Modules: "open"}
}

// testRoot is a root with the extension, its manifest (m, or the bytes
// edit writes instead), the running kernel, an Intel VGA function, an
// NVSwitch (NVIDIA, not a GPU) and gpus NVIDIA GPUs in sysfs.
func testRoot(t *testing.T, gpus int, edit func(dir string, m *Manifest)) rootfs.Root {
	t.Helper()
	dir := t.TempDir()
	write(t, dir, Dir+"/"+Name+".raw", testImage)
	write(t, dir, "/proc/sys/kernel/osrelease", []byte(testKernel+"\n"))
	pci(t, dir, "0000:00:02.0", "0x8086", "0x030000")
	pci(t, dir, "0000:05:00.0", "0x10de", "0x068000")
	for i := range gpus {
		pci(t, dir, fmt.Sprintf("0000:%02x:00.0", 0x1b+i), "0x10de", "0x030200")
	}
	m := testManifest()
	if edit != nil {
		edit(dir, &m)
	}
	if _, err := os.Lstat(filepath.Join(dir, Dir, Name+".json")); errors.Is(err, fs.ErrNotExist) {
		data, _ := json.Marshal(m)
		write(t, dir, Dir+"/"+Name+".json", data)
	}
	r, err := rootfs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func pci(t *testing.T, dir, addr, vendor, class string) {
	write(t, dir, "/sys/bus/pci/devices/"+addr+"/vendor", []byte(vendor+"\n"))
	write(t, dir, "/sys/bus/pci/devices/"+addr+"/class", []byte(class+"\n"))
}

func write(t *testing.T, dir, p string, data []byte) {
	t.Helper()
	p = filepath.Join(dir, p)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

var epoch = func() time.Time { return time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC) }

func TestMerge(t *testing.T) {
	for _, tc := range []struct {
		name    string
		gpus    int
		force   bool
		outcome string
		calls   []string
		line    string
	}{
		{"no GPU: left out", 0, false, NotMerged, nil,
			"NVIDIA extension omerta-nvidia (driver 550.163.01, open modules) not merged: no NVIDIA GPU on the PCI bus"},
		{"one GPU: merged, modules loaded", 1, false, Merged, []string{refresh, trigger, users, nvpd},
			"NVIDIA extension omerta-nvidia (driver 550.163.01, open modules) merged: 1 NVIDIA GPU on the PCI bus"},
		{"eight GPUs", 8, false, Merged, []string{refresh, trigger, users, nvpd},
			"NVIDIA extension omerta-nvidia (driver 550.163.01, open modules) merged: 8 NVIDIA GPUs on the PCI bus"},
		{"forced without a GPU: merged, nothing to trigger", 0, true, Merged, []string{refresh},
			"NVIDIA extension omerta-nvidia (driver 550.163.01, open modules) merged: forced, with no NVIDIA GPU on the PCI bus"},
		{"forced with a GPU", 1, true, Merged, []string{refresh, trigger, users, nvpd},
			"NVIDIA extension omerta-nvidia (driver 550.163.01, open modules) merged: 1 NVIDIA GPU on the PCI bus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := testRoot(t, tc.gpus, nil)
			run := &fakeRunner{}
			s, err := Merge(context.Background(), Options{Root: root, Runner: run, Force: tc.force, Now: epoch})
			if err != nil {
				t.Fatal(err)
			}
			if s.Outcome != tc.outcome || strings.Join(run.calls, "|") != strings.Join(tc.calls, "|") || s.Line() != tc.line {
				t.Fatalf("outcome %q, calls %q, line %q; want %q, %q, %q", s.Outcome, run.calls, s.Line(), tc.outcome, tc.calls, tc.line)
			}
			if len(s.GPUs) != tc.gpus || (tc.gpus > 0 && s.GPUs[0] != "0000:1b:00.0") {
				t.Fatalf("gpus %q", s.GPUs)
			}
			target, lerr := os.Readlink(filepath.Join(root.Dir(), LinkDir, Name+".raw"))
			if linked := lerr == nil; linked != (tc.outcome == Merged) || (linked && target != Dir+"/"+Name+".raw") {
				t.Fatalf("link %q (%v) after outcome %q", target, lerr, s.Outcome)
			}
			checkState(t, root, s)
		})
	}
}

// checkState reads the state file back: what Merge returned, 0644 in a
// 0755 /run/omerta.
func checkState(t *testing.T, root rootfs.Root, want State) {
	t.Helper()
	got, err := ReadState(root)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(want)
	if string(a) != string(b) || !got.At.Equal(epoch()) {
		t.Fatalf("state file %s, Merge returned %s", a, b)
	}
	for p, mode := range map[string]fs.FileMode{StatePath: 0o644, stateDir: fs.ModeDir | 0o755} {
		if fi, err := os.Stat(filepath.Join(root.Dir(), p)); err != nil || fi.Mode() != mode {
			t.Fatalf("%s: %v, %v; want mode %v", p, fi.Mode(), err, mode)
		}
	}
}

func manifestBytes(t *testing.T, body string) func(string, *Manifest) {
	return func(dir string, _ *Manifest) { write(t, dir, Dir+"/"+Name+".json", []byte(body)) }
}

func manifestEdit(f func(m *Manifest)) func(string, *Manifest) {
	return func(_ string, m *Manifest) { f(m) }
}

func TestMergeRefusesManifests(t *testing.T) {
	good, _ := json.Marshal(testManifest())
	for _, tc := range []struct {
		name string
		edit func(dir string, m *Manifest)
		is   error
		want string
	}{
		{"missing (a link to nothing)", func(dir string, _ *Manifest) { os.Symlink("/nowhere", filepath.Join(dir, Dir, Name+".json")) }, fs.ErrNotExist, "reading the manifest"},
		{"a FIFO", func(dir string, _ *Manifest) {
			if err := syscall.Mkfifo(filepath.Join(dir, Dir, Name+".json"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, safeio.ErrNotRegular, "FIFO"},
		{"a directory", func(dir string, _ *Manifest) { os.Mkdir(filepath.Join(dir, Dir, Name+".json"), 0o755) }, safeio.ErrNotRegular, "directory"},
		{"oversized", manifestBytes(t, strings.Repeat(" ", maxManifest+1)), safeio.ErrTooLarge, "larger than the limit"},
		{"unknown field", manifestBytes(t, `{"name":"omerta-nvidia","extra":1}`), ErrInvalid, `unknown field "extra"`},
		{"trailing data", manifestBytes(t, string(good)+`{}`), ErrInvalid, "data after the JSON object"},
		{"duplicate member", manifestBytes(t, `{"name":"omerta-nvidia",`+string(good[1:])), ErrInvalid, `member "name" given twice`},
		{"not an object", manifestBytes(t, `["omerta-nvidia"]`), ErrInvalid, "not a JSON object"},
		{"size a string", manifestBytes(t, strings.Replace(string(good), `"size":17`, `"size":"17"`, 1)), ErrInvalid, "size"},
		{"name", manifestEdit(func(m *Manifest) { m.Name, m.File = "Omerta", "Omerta.raw" }), ErrInvalid, `manifest: name: "Omerta" is not a lowercase name`},
		{"another extension", manifestEdit(func(m *Manifest) { m.Name, m.File = "other", "other.raw" }), ErrInvalid, `manifest: name: "other", not "omerta-nvidia"`},
		{"file", manifestEdit(func(m *Manifest) { m.File = "../../../etc/shadow" }), ErrInvalid, `manifest: file: "../../../etc/shadow" is not the name with .raw`},
		{"size zero", manifestEdit(func(m *Manifest) { m.Size = 0 }), ErrInvalid, "manifest: size: 0 is not between 1 and 4294967296 bytes"},
		{"size over 4 GiB", manifestEdit(func(m *Manifest) { m.Size = 4<<30 + 1 }), ErrInvalid, "manifest: size: 4294967297"},
		{"sha256 uppercase", manifestEdit(func(m *Manifest) { m.SHA256 = strings.ToUpper(m.SHA256) }), ErrInvalid, "manifest: sha256: "},
		{"driver_version", manifestEdit(func(m *Manifest) { m.DriverVersion = "550" }), ErrInvalid, `manifest: driver_version: "550" is not a driver version`},
		{"kernel", manifestEdit(func(m *Manifest) { m.Kernel = "../6.12" }), ErrInvalid, `manifest: kernel: "../6.12" is not a kernel release`},
		{"modules", manifestEdit(func(m *Manifest) { m.Modules = "closed\x1b[2J" }), ErrInvalid, `manifest: modules: "closed\x1b[2J" is neither open nor proprietary`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A bad manifest is refused with or without a GPU.
			for _, gpus := range []int{0, 1} {
				refused(t, testRoot(t, gpus, tc.edit), nil, Refused, tc.is, tc.want)
			}
		})
	}
}

func TestMergeRefusesImages(t *testing.T) {
	image := func(f func(p string)) func(string, *Manifest) {
		return func(dir string, _ *Manifest) { f(filepath.Join(dir, Dir, Name+".raw")) }
	}
	for _, tc := range []struct {
		name string
		edit func(dir string, m *Manifest)
		fail map[string]bool
		out  string
		is   error
		want string
	}{
		{"image changed", image(func(p string) { os.WriteFile(p, []byte("erofs image byteZ"), 0o644) }), nil, Refused, ErrImage, "has SHA-256 "},
		{"image truncated", image(func(p string) { os.WriteFile(p, []byte("erofs"), 0o644) }), nil, Refused, ErrImage, "is 5 bytes, the manifest says 17"},
		{"image a directory", image(func(p string) { os.Remove(p); os.Mkdir(p, 0o755) }), nil, Refused, safeio.ErrNotRegular, "directory"},
		{"image a FIFO", image(func(p string) { os.Remove(p); syscall.Mkfifo(p, 0o644) }), nil, Refused, safeio.ErrNotRegular, "FIFO"},
		{"image missing", image(func(p string) { os.Remove(p) }), nil, Refused, fs.ErrNotExist, "the image"},
		// Resolved inside the root, the link names nothing: never the
		// host's file.
		{"image a link out of the root", image(func(p string) { os.Remove(p); os.Symlink("../../../../../../../../etc/hostname", p) }), nil, Refused, fs.ErrNotExist, "the image"},
		{"another kernel", manifestEdit(func(m *Manifest) { m.Kernel = "6.12.38+deb13-amd64" }), nil, Refused, ErrKernel,
			`kernel mismatch: the extension's modules are built for "6.12.38+deb13-amd64", running "6.12.57+deb13-amd64"`},
		{"refresh fails: no link left", nil, map[string]bool{"systemd-sysext": true}, Failed, ErrCommand, `systemd-sysext refresh: exit status 1: "Failed to merge"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refused(t, testRoot(t, 1, tc.edit), tc.fail, tc.out, tc.is, tc.want)
		})
	}
}

// refused runs Merge on root, which must end in outcome with an error
// that is is and contains want, no link and a state file saying so.
func refused(t *testing.T, root rootfs.Root, fail map[string]bool, outcome string, is error, want string) {
	t.Helper()
	s, err := Merge(context.Background(), Options{Root: root, Runner: &fakeRunner{fail: fail}, Now: epoch})
	if !errors.Is(err, is) || !strings.Contains(err.Error(), want) || s.Outcome != outcome || s.Reason != err.Error() {
		t.Fatalf("outcome %q, err %v; want %q, an error that is %v containing %q", s.Outcome, err, outcome, is, want)
	}
	if _, lerr := os.Lstat(filepath.Join(root.Dir(), LinkDir, Name+".raw")); lerr == nil {
		t.Fatal("a refused merge left its link")
	}
	checkState(t, root, s)
}

// A step after the refresh that fails leaves the extension merged, its
// link in place.
func TestMergeAfterRefreshFails(t *testing.T) {
	for prog, want := range map[string]string{"udevadm": "merged, but udevadm trigger", "systemd-sysusers": "merged, but systemd-sysusers", "systemctl": "merged, but systemctl start"} {
		t.Run(prog, func(t *testing.T) {
			root := testRoot(t, 1, nil)
			run := &fakeRunner{fail: map[string]bool{prog: true}}
			s, err := Merge(context.Background(), Options{Root: root, Runner: run, Now: epoch})
			if !errors.Is(err, ErrCommand) || s.Outcome != Failed || !strings.Contains(s.Reason, want) {
				t.Fatalf("outcome %q, err %v", s.Outcome, err)
			}
			if _, err := os.Readlink(filepath.Join(root.Dir(), LinkDir, Name+".raw")); err != nil {
				t.Fatal(err)
			}
			checkState(t, root, s)
		})
	}
}

// Merging again (a second run, or --force after boot) replaces the link.
func TestMergeTwice(t *testing.T) {
	root := testRoot(t, 1, nil)
	for range 2 {
		if _, err := Merge(context.Background(), Options{Root: root, Runner: &fakeRunner{}, Now: epoch}); err != nil {
			t.Fatal(err)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(root.Dir(), LinkDir))
	if len(ents) != 1 {
		t.Fatalf("%s holds %d entries", LinkDir, len(ents))
	}
}

func TestReadState(t *testing.T) {
	root := testRoot(t, 0, nil)
	if _, err := ReadState(root); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("no state file: %v", err)
	}
	write(t, root.Dir(), StatePath, []byte(strings.Repeat(" ", maxState+1)))
	if _, err := ReadState(root); !errors.Is(err, safeio.ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
}

func TestParseStateRefuses(t *testing.T) {
	const ok = `"reason":"r","at":"2026-12-02T07:00:00Z"`
	for _, tc := range []struct{ body, field string }{
		{`{"outcome":"maybe",` + ok + `}`, "outcome"},
		{`{"outcome":"merged","reason":"","at":"2026-12-02T07:00:00Z"}`, "reason"},
		{`{"outcome":"merged","reason":"r"}`, "at"},
		{`{"outcome":"merged","reason":"r","at":"2026-12-02T08:00:00+01:00"}`, "at"},
		{`{"outcome":"merged",` + ok + `,"gpus":["../../etc"]}`, "gpus[0]"},
		{`{"outcome":"merged",` + ok + `,"kernel":"6.12\u001b[31m"}`, "kernel"},
		{`{"outcome":"merged",` + ok + `,"sha256":"abc"}`, "sha256"},
		{`{"outcome":"merged",` + ok + `,"modules":"closed"}`, "modules"},
		{`{"outcome":"merged",` + ok + `,"driver_version":"x"}`, "driver_version"},
		{`{"outcome":"merged",` + ok + `,"name":"A"}`, "name"},
		{`{"outcome":"merged",` + ok + `,"x":1}`, ""},
		{`{"outcome":"merged",` + ok + `,"outcome":"failed"}`, ""},
		{`{"outcome":"merged",` + ok + `} []`, ""},
	} {
		_, err := ParseState([]byte(tc.body))
		var fe *FieldError
		if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) || fe.Field != tc.field {
			t.Errorf("%s: err %v, want a FieldError for %q", tc.body, err, tc.field)
		}
	}
}
