package rootfs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/omertaos/omertaos/appliance/atomicfile"
	"github.com/omertaos/omertaos/appliance/safeio"
)

// escapeFixture is a root whose links all point out of it, and the
// sentinel directory they point at, which must never change.
type escapeFixture struct {
	root    Root
	dir     string // the root on the host
	outside string // the sentinel
}

func write(t *testing.T, p, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

func link(t *testing.T, target, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

func newEscapeFixture(t *testing.T) escapeFixture {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	write(t, filepath.Join(outside, "shadow"), "root:SECRET-HASH:20000::::::\n", 0o600)
	write(t, filepath.Join(outside, "passwd"), "evil:x:0:0::/:/bin/sh\n", 0o644)
	write(t, filepath.Join(outside, "run/cdi/nvidia.yaml"), "kind: host.example/gpu\n", 0o644)
	write(t, filepath.Join(outside, "dir/keep"), "keep\n", 0o644)

	// Absolute links name the sentinel by its host path; relative ones
	// climb out with more ".." than the root is deep.
	link(t, filepath.Join(outside, "run"), filepath.Join(dir, "var/run"))
	link(t, "../../outside/shadow", filepath.Join(dir, "etc/shadow"))
	link(t, filepath.Join(outside, "passwd"), filepath.Join(dir, "etc/passwd"))
	link(t, filepath.Join(outside, "dir"), filepath.Join(dir, "etc/sysctl.d"))
	link(t, "../../../../../../../../"+strings.TrimPrefix(outside, "/")+"/dir", filepath.Join(dir, "etc/modprobe.d"))
	link(t, "/dev/zero", filepath.Join(dir, "zero"))
	link(t, "loop", filepath.Join(dir, "loop"))
	link(t, "b", filepath.Join(dir, "a"))
	link(t, "a", filepath.Join(dir, "b"))
	r, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return escapeFixture{root: r, dir: dir, outside: outside}
}

// tree records every entry under dir: type, mode, owner, size, content
// and link target, and modification time.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%v uid=%d gid=%d mtime=%d", fi.Mode(), st.Uid, st.Gid, fi.ModTime().UnixNano())
		switch {
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			desc += " sha256=" + hex.EncodeToString(sum[:])
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			desc += " -> " + l
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSymlinksStayInsideRoot plants absolute and relative links out of the
// root, a self loop and a two-link loop, and runs every operation through
// them: each fails or lands inside the root, and the sentinel they point
// at is left exactly as it was, content, modes and owners included.
func TestSymlinksStayInsideRoot(t *testing.T) { checkStaysInside(t) }

// TestSymlinksStayInsideRootWithoutOpenat2 takes pathrs-lite's user-space
// walk, which kernels before 5.6 (or a seccomp filter) leave to it.
func TestSymlinksStayInsideRootWithoutOpenat2(t *testing.T) {
	saved := sysOpenat2
	defer func() { sysOpenat2 = saved }()
	calls := 0
	sysOpenat2 = func(int, string, *unix.OpenHow) (int, error) { calls++; return -1, unix.ENOSYS }
	checkStaysInside(t)
	if calls == 0 {
		t.Fatal("openat2 was never called; the fallback was not exercised")
	}
	TestLinksResolveInsideRoot(t)
}

func checkStaysInside(t *testing.T) {
	f := newEscapeFixture(t)
	before := tree(t, f.outside)
	r := f.root

	// What filepath.Join would have reached, to show the links are live.
	if data, err := os.ReadFile(filepath.Join(f.dir, "etc/shadow")); err != nil || !strings.Contains(string(data), "SECRET") {
		t.Fatalf("fixture: the relative link does not reach the sentinel (%v)", err)
	}

	reads := []string{"/etc/shadow", "/etc/passwd", "/var/run/cdi/nvidia.yaml", "/etc/sysctl.d/keep", "/etc/modprobe.d/keep", "/zero", "/loop", "/a"}
	for _, p := range reads {
		if data, err := r.ReadFile(p, 1<<20); err == nil {
			t.Errorf("ReadFile(%s) read %q from outside the root", p, data)
		}
	}
	for _, p := range []string{"/var/run/cdi", "/etc/sysctl.d"} {
		if ents, err := r.ReadDir(p); err == nil {
			t.Errorf("ReadDir(%s) listed %d entries outside the root", p, len(ents))
		}
	}
	if m, err := r.Glob("/var/run/cdi/*.yaml"); err != nil || len(m) != 0 {
		t.Errorf("Glob through /var/run = %v, %v; want nothing", m, err)
	}
	if u, err := r.LookupUser("evil"); !errors.Is(err, ErrNotFound) {
		t.Errorf("LookupUser read the sentinel's passwd: %+v, %v", u, err)
	}
	for _, p := range []string{"/etc/shadow", "/var/run/cdi/nvidia.yaml", "/etc/sysctl.d/keep"} {
		if err := r.Chmod(p, 0o777); err == nil {
			t.Errorf("Chmod(%s) succeeded on a file outside the root", p)
		}
		if err := r.Chown(p, 4242, 4242); err == nil {
			t.Errorf("Chown(%s) succeeded on a file outside the root", p)
		}
	}
	// Lchown acts on the link itself, which is inside the root.
	id := 4242
	if os.Geteuid() != 0 {
		id = os.Getuid() // an unprivileged chown can only keep the owner
	}
	if err := r.Lchown("/etc/shadow", id, id); err != nil {
		t.Errorf("Lchown of the link: %v", err)
	}
	for _, p := range []string{"/etc/sysctl.d/99-x.conf", "/etc/modprobe.d/x.conf", "/var/run/cdi/new.yaml", "/etc/shadow"} {
		if _, err := r.WriteFile(p, []byte("written\n"), 0o644); err != nil {
			t.Logf("WriteFile(%s): %v", p, err)
		}
	}
	if _, err := r.Symlink("/x", "/var/run/cdi/link"); err == nil {
		t.Log("Symlink through /var/run landed inside the root")
	}
	if err := r.MkdirAll("/var/run/cdi/sub", 0o755); err == nil {
		t.Log("MkdirAll through /var/run landed inside the root")
	}
	if _, err := r.Remove("/var/run/cdi/nvidia.yaml"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Logf("Remove: %v", err)
	}
	if err := r.Sweep("/etc/sysctl.d"); err != nil {
		t.Logf("Sweep: %v", err)
	}
	for _, p := range []string{"/var/run/cdi/nvidia.yaml", "/etc/shadow", "/loop", "/etc/sysctl.d/keep"} {
		j, err := r.Join(p)
		if err == nil && !strings.HasPrefix(j, f.dir+"/") {
			t.Errorf("Join(%s) = %s, outside %s", p, j, f.dir)
		}
		j, err = r.JoinNoFollow(p)
		if err == nil && !strings.HasPrefix(j, f.dir+"/") {
			t.Errorf("JoinNoFollow(%s) = %s, outside %s", p, j, f.dir)
		}
	}

	if diff := cmp.Diff(before, tree(t, f.outside)); diff != "" {
		t.Errorf("the sentinel outside the root changed (-before +after):\n%s", diff)
	}
	// The write through /etc/shadow replaced the link inside the root.
	if data, err := os.ReadFile(filepath.Join(f.dir, "etc/shadow")); err != nil || string(data) != "written\n" {
		t.Errorf("root/etc/shadow = %q, %v; want the link replaced by the new file", data, err)
	}
}

func TestLoopsFailFast(t *testing.T) {
	f := newEscapeFixture(t)
	for _, p := range []string{"/loop", "/a/x", "/b"} {
		done := make(chan error, 1)
		go func() { _, err := f.root.ReadFile(p, 1<<10); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, syscall.ELOOP) {
				t.Errorf("ReadFile(%s) = %v, want ELOOP", p, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("ReadFile(%s) hangs", p)
		}
		if _, err := f.root.Join(p); err == nil {
			t.Errorf("Join(%s) resolved a loop", p)
		}
	}
}

// TestLinksResolveInsideRoot: the same kinds of link, aimed inside, work as
// they do on the booted image: /var/run -> /run reaches the root's /run.
func TestLinksResolveInsideRoot(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "run/cdi/gpu.yaml"), "kind: nvidia.com/gpu\n", 0o644)
	write(t, filepath.Join(dir, "usr/lib/os-release"), "ID=debian\n", 0o644)
	link(t, "/run", filepath.Join(dir, "var/run"))
	link(t, "../usr/lib/os-release", filepath.Join(dir, "etc/os-release"))
	link(t, "/usr/lib/os-release", filepath.Join(dir, "etc/os-release-abs"))
	r, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/var/run/cdi/gpu.yaml", "var/run/cdi/../cdi/gpu.yaml"} {
		if data, err := r.ReadFile(p, 1<<10); err != nil || string(data) != "kind: nvidia.com/gpu\n" {
			t.Errorf("ReadFile(%s) = %q, %v", p, data, err)
		}
	}
	for _, p := range []string{"/etc/os-release", "/etc/os-release-abs"} {
		if data, err := r.ReadFile(p, 1<<10); err != nil || string(data) != "ID=debian\n" {
			t.Errorf("ReadFile(%s) = %q, %v", p, data, err)
		}
	}
	if m, err := r.Glob("/var/run/cdi/*.yaml"); err != nil || !cmp.Equal(m, []string{"/var/run/cdi/gpu.yaml"}) {
		t.Errorf("Glob = %v, %v", m, err)
	}
	if j, err := r.Join("/var/run/cdi/gpu.yaml"); err != nil || j != filepath.Join(dir, "run/cdi/gpu.yaml") {
		t.Errorf("Join = %s, %v", j, err)
	}
	// JoinNoFollow names a final link itself, its directories resolved.
	for p, want := range map[string]string{
		"/var/run":              filepath.Join(dir, "var/run"),
		"/var/run/cdi/gpu.yaml": filepath.Join(dir, "run/cdi/gpu.yaml"),
		"/etc/os-release":       filepath.Join(dir, "etc/os-release"),
		"/":                     dir,
	} {
		if j, err := r.JoinNoFollow(p); err != nil || j != want {
			t.Errorf("JoinNoFollow(%s) = %s, %v; want %s", p, j, err, want)
		}
	}
	if l, err := r.Readlink("/var/run"); err != nil || l != "/run" {
		t.Errorf("Readlink = %q, %v", l, err)
	}
	if fi, err := r.Lstat("/var/run"); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("Lstat(/var/run) = %v, %v; want the link", fi, err)
	}
	// Writes through an inside link land at its target inside the root.
	if _, err := r.WriteFile("/var/run/omerta/x", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "run/omerta/x")); err != nil || string(data) != "x" {
		t.Errorf("write through /var/run: %q, %v", data, err)
	}
	if err := r.Chmod("/etc/os-release", 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "usr/lib/os-release")); fi.Mode().Perm() != 0o600 {
		t.Errorf("chmod through an inside link: target mode %v", fi.Mode())
	}
}

func TestHostRootIsTheLiveSystem(t *testing.T) {
	h := Host()
	r, err := New("/")
	if err != nil || r != h {
		t.Fatalf("New(/) = %v, %v; want Host()", r, err)
	}
	// /proc/self is a link the kernel resolves per process.
	if data, err := h.ReadFile("/proc/self/mountinfo", 4<<20); err != nil || len(data) == 0 {
		t.Errorf("reading /proc/self/mountinfo: %d bytes, %v", len(data), err)
	}
	// An absolute link in a temp dir is followed as the kernel would.
	dir := t.TempDir()
	write(t, filepath.Join(dir, "target"), "hello", 0o644)
	link(t, filepath.Join(dir, "target"), filepath.Join(dir, "link"))
	if data, err := h.ReadFile(filepath.Join(dir, "link"), 10); err != nil || string(data) != "hello" {
		t.Errorf("Host().ReadFile through an absolute link = %q, %v", data, err)
	}
	if j, err := h.Join("etc/../etc/passwd"); err != nil || j != "/etc/passwd" {
		t.Errorf("Host().Join = %q, %v", j, err)
	}
}

func TestReadFileRefusals(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "big"), strings.Repeat("x", 9), 0o644)
	write(t, filepath.Join(dir, "exact"), strings.Repeat("x", 8), 0o644)
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	r, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		p    string
		want error
	}{
		{"/big", safeio.ErrTooLarge},
		{"/fifo", safeio.ErrNotRegular},
		{"/sub", safeio.ErrNotRegular},
		{"/missing", fs.ErrNotExist},
	} {
		done := make(chan error, 1)
		go func() { _, err := r.ReadFile(tc.p, 8); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, tc.want) {
				t.Errorf("ReadFile(%s) = %v, want %v", tc.p, err, tc.want)
			} else if !strings.Contains(err.Error(), tc.p) || strings.Contains(err.Error(), dir) {
				t.Errorf("ReadFile(%s): error %q should name the path inside the root only", tc.p, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("ReadFile(%s) blocked", tc.p)
		}
	}
	if data, err := r.ReadFile("/exact", 8); err != nil || len(data) != 8 {
		t.Errorf("exactly the limit: %d bytes, %v", len(data), err)
	}
	if err := r.WriteExisting("/fifo", []byte("x")); !errors.Is(err, safeio.ErrNotRegular) {
		t.Errorf("WriteExisting to a FIFO = %v", err)
	}
	if err := r.WriteExisting("/missing", []byte("x")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WriteExisting creates: %v", err)
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	r, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := r.WriteFile("/a/b/secret", []byte("one"), 0o600); err != nil || !c {
		t.Fatalf("first write = %v, %v", c, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "a/b/secret")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, %v", fi, err)
	}
	if c, err := r.WriteFile("/a/b/secret", []byte("one"), 0o600); err != nil || c {
		t.Fatalf("identical rewrite = %v, %v; want no change", c, err)
	}
	if c, err := r.WriteFile("/a/b/secret", []byte("one"), 0o640); err != nil || !c {
		t.Fatalf("mode change = %v, %v", c, err)
	}
	if c, err := r.WriteFile("/a/b/secret", []byte("two"), 0o640); err != nil || !c {
		t.Fatalf("content change = %v, %v", c, err)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "a/b"))
	if len(ents) != 1 {
		t.Fatalf("directory holds %v, want only the file", ents)
	}
	// A leftover temporary file is swept; the file itself stays.
	write(t, filepath.Join(dir, "a/b/.secret"+atomicfile.TempMarker+"123"), "torn", 0o600)
	if err := r.Sweep("/a/b"); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "a/b")); len(ents) != 1 || ents[0].Name() != "secret" {
		t.Fatalf("after sweep: %v", ents)
	}
	if err := r.Sweep("/absent"); err != nil {
		t.Fatalf("sweep of a missing dir: %v", err)
	}

	if c, err := r.Symlink("/usr/lib/x", "/etc/l"); err != nil || !c {
		t.Fatalf("Symlink = %v, %v", c, err)
	}
	if c, err := r.Symlink("/usr/lib/x", "/etc/l"); err != nil || c {
		t.Fatalf("same Symlink again = %v, %v; want no change", c, err)
	}
	if l, _ := os.Readlink(filepath.Join(dir, "etc/l")); l != "/usr/lib/x" {
		t.Fatalf("link = %q", l)
	}
	if c, err := r.Remove("/etc/l"); err != nil || !c {
		t.Fatalf("Remove = %v, %v", c, err)
	}
	if c, err := r.Remove("/etc/l"); err != nil || c {
		t.Fatalf("Remove of a missing file = %v, %v", c, err)
	}
	if err := r.MkdirAll("/x/y", 0o700); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "x/y")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("MkdirAll: %v, %v", fi, err)
	}
}

func TestChmodChown(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "etc/shadow"), "x", 0o644)
	link(t, "shadow", filepath.Join(dir, "etc/shadow-link"))
	r, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Chmod("/etc/shadow-link", 0o640|fs.ModeSticky); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(dir, "etc/shadow"))
	if fi.Mode().Perm() != 0o640 || fi.Mode()&fs.ModeSticky == 0 {
		t.Errorf("mode = %v", fi.Mode())
	}
	uid, gid := os.Getuid(), os.Getgid()
	if err := r.Chown("/etc/shadow-link", uid, gid); err != nil {
		t.Fatalf("Chown to our own ids: %v", err)
	}
	if err := r.Lchown("/etc/shadow-link", uid, gid); err != nil {
		t.Fatalf("Lchown to our own ids: %v", err)
	}
	if st, err := r.Statfs("/etc"); err != nil || st.Blocks == 0 {
		t.Errorf("Statfs = %+v, %v", st, err)
	}
}

func TestLookup(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\nomerta-admin:x:990:990::/var/lib/omerta-admin:/bin/bash\nbad:x:nope:1::/:/bin/sh\nshort:x:1\n", 0o644)
	write(t, filepath.Join(dir, "etc/group"), "root:x:0:\nshadow:x:42:\n", 0o644)
	r, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	u, err := r.LookupUser("omerta-admin")
	if err != nil || u != (User{Name: "omerta-admin", UID: 990, GID: 990, Home: "/var/lib/omerta-admin"}) {
		t.Errorf("LookupUser = %+v, %v", u, err)
	}
	if g, err := r.LookupGroup("shadow"); err != nil || g != 42 {
		t.Errorf("LookupGroup(shadow) = %d, %v", g, err)
	}
	for _, name := range []string{"nobody", "bad", "short", "x:y", ""} {
		if _, err := r.LookupUser(name); err == nil {
			t.Errorf("LookupUser(%q) succeeded", name)
		}
	}
	if _, err := r.LookupUser("nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing user: %v, want ErrNotFound", err)
	}
	if _, err := r.LookupUser("bad"); err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "uid") {
		t.Errorf("bad uid: %v, want an error naming the field", err)
	}
	empty, _ := New(t.TempDir())
	if _, err := empty.LookupGroup("shadow"); !errors.Is(err, ErrNotFound) {
		t.Errorf("no /etc/group: %v, want ErrNotFound", err)
	}
}

func TestNew(t *testing.T) {
	if _, err := New(filepath.Join(t.TempDir(), "absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("New(absent) = %v", err)
	}
	f := filepath.Join(t.TempDir(), "file")
	write(t, f, "", 0o644)
	if _, err := New(f); !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("New(file) = %v", err)
	}
	var zero Root
	if _, err := zero.ReadFile("/etc/passwd", 10); err == nil {
		t.Error("the zero Root read the host")
	}
}

// FuzzLookupUser feeds arbitrary account files to the parser: it never
// panics, and what it finds is the line it was asked for.
func FuzzLookupUser(f *testing.F) {
	f.Add("root:x:0:0:root:/root:/bin/bash\n", "root")
	f.Add("a:x:1:1::/h:/bin/sh\na:x:2:2::/:/\n", "a")
	f.Add("a:x:-1:4294967295:::\n", "a")
	f.Add(":::::::\n\n\x00", "")
	dir := f.TempDir()
	r, err := New(dir)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, passwd, name string) {
		if _, err := r.WriteFile("/etc/passwd", []byte(passwd), 0o644); err != nil {
			t.Fatal(err)
		}
		u, err := r.LookupUser(name)
		if err != nil {
			return
		}
		if u.Name != name || u.UID < 0 || u.GID < 0 || !strings.Contains(passwd, name+":") {
			t.Errorf("LookupUser(%q) = %+v from %q", name, u, passwd)
		}
	})
}
