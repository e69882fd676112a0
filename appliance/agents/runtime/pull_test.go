package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/omertaos/omertaos/appliance/agents/ctrtest"
	"github.com/omertaos/omertaos/appliance/safeio"
)

func TestPullRef(t *testing.T) {
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	const d2 = "sha256:1123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, c := range []struct {
		ref, digest, fetch, pin string
		bad                     bool
	}{
		{ref: "127.0.0.1:5000/a/b:1", fetch: "127.0.0.1:5000/a/b:1"},
		{ref: "127.0.0.1:5000/a/b:1", digest: d, fetch: "127.0.0.1:5000/a/b:1", pin: d},
		{ref: "127.0.0.1:5000/a/b", digest: d, fetch: "127.0.0.1:5000/a/b@" + d, pin: d},
		{ref: "127.0.0.1:5000/a/b@" + d, fetch: "127.0.0.1:5000/a/b@" + d, pin: d},
		{ref: "127.0.0.1:5000/a/b@" + d, digest: d2, bad: true},
		{ref: "127.0.0.1:5000/a/b", bad: true}, // neither tag nor digest
		{ref: "busybox:1", bad: true},          // not in full
		{ref: "docker.io/library/busybox:1", fetch: "docker.io/library/busybox:1"},
		{ref: "127.0.0.1:5000/A:1", bad: true}, // uppercase
		{ref: "127.0.0.1:5000/a:1", digest: "md5:00", bad: true},
		{ref: "127.0.0.1:5000/a:1 ", bad: true},
		{ref: "", bad: true},
	} {
		fetch, pin, err := pullRef(c.ref, c.digest)
		if c.bad {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("pullRef(%q, %q) = %q, %q, %v; want ErrInvalid", c.ref, c.digest, fetch, pin, err)
			}
			continue
		}
		if err != nil || fetch != c.fetch || pin != c.pin {
			t.Errorf("pullRef(%q, %q) = %q, %q, %v; want %q, %q", c.ref, c.digest, fetch, pin, err, c.fetch, c.pin)
		}
	}
}

// registry is Debian's docker-registry (the distribution project's
// registry) serving on a loopback port from a directory of the test's.
type registry struct {
	Host string // 127.0.0.1:PORT
}

// startRegistry runs docker-registry for the test, never the system's
// service. Skipped without root or the package, failed under CI=true.
func startRegistry(t *testing.T) *registry {
	t.Helper()
	bin := ctrtest.Require(t, "docker-registry")
	if os.Geteuid() != 0 {
		skip(t, "pulling needs a private containerd, which needs root")
	}
	dir := t.TempDir()
	host := "127.0.0.1:" + freePort(t)
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n",
		filepath.Join(dir, "data"), host)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfgPath)
	// No REGISTRY_* variable of ours may override the configuration.
	cmd.Env, cmd.Stdout, cmd.Stderr = []string{"PATH=/usr/bin:/bin"}, logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return &registry{Host: host}
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("docker-registry did not answer on %s: %v; its log:\n%s", host, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func skip(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true: %s; CI must run this test", why)
	}
	t.Skip(why)
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// push writes a busybox image (its command makes it distinct) to
// repo:tag and returns it as an Archive: its name, manifest and config.
func (reg *registry) push(t *testing.T, repoTag string, cmd ...string) ctrtest.Archive {
	t.Helper()
	a := ctrtest.BusyboxArchive(t, ctrtest.ImageOptions{Name: "omerta.test/push:1", Format: ctrtest.Docker, Cmd: cmd})
	img, err := tarball.ImageFromPath(a.Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	repo, tag, _ := strings.Cut(repoTag, ":")
	if err := reg.write(repo, tag, img); err != nil {
		t.Fatalf("pushing %s: %v", repoTag, err)
	}
	md, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	cd, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return ctrtest.Archive{Name: reg.Host + "/" + repoTag, Manifest: md.String(), Config: cd.String()}
}

// write pushes img with the registry API (go-containerregistry's
// remote.Write would need github.com/docker/cli for its keychain): each
// blob in one monolithic upload, then the manifest under the tag.
func (reg *registry) write(repo, tag string, img v1.Image) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		if err := reg.upload(repo, d.String(), b); err != nil {
			return err
		}
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	cd, err := img.ConfigName()
	if err != nil {
		return err
	}
	if err := reg.upload(repo, cd.String(), cfg); err != nil {
		return err
	}
	mf, err := img.RawManifest()
	if err != nil {
		return err
	}
	mt, err := img.MediaType()
	if err != nil {
		return err
	}
	return reg.do(http.MethodPut, "http://"+reg.Host+"/v2/"+repo+"/manifests/"+tag, string(mt), mf, http.StatusCreated)
}

func (reg *registry) upload(repo, digest string, b []byte) error {
	resp, err := http.Post("http://"+reg.Host+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("starting an upload: %s", resp.Status)
	}
	u, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if err != nil {
		return err
	}
	q := u.Query()
	q.Set("digest", digest)
	u.RawQuery = q.Encode()
	return reg.do(http.MethodPut, u.String(), "application/octet-stream", b, http.StatusCreated)
}

func (reg *registry) do(method, url, contentType string, body []byte, want int) error {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, msg)
	}
	return nil
}

// pullEnv is a Runtime in a namespace of its own with no image in it.
func pullEnv(t *testing.T, d *ctrtest.Daemon) *env {
	t.Helper()
	dir := t.TempDir()
	rt, err := New(d.Client(t), WithNamespace(d.Namespace(t)), WithLogDir(filepath.Join(dir, "logs")),
		WithRunDir(filepath.Join(dir, "run")), WithRuntimeRoot(d.RuntimeRoot))
	if err != nil {
		t.Fatal(err)
	}
	return &env{d: d, rt: rt, dir: dir}
}

func TestPull(t *testing.T) {
	reg := startRegistry(t)
	d := ctrtest.Start(t)
	a := reg.push(t, "agents/busybox:1", "/bin/sleep", "3601")
	b := reg.push(t, "agents/other:1", "/bin/sleep", "3602")
	ctx := context.Background()

	t.Run("by tag, then runs", func(t *testing.T) {
		e := pullEnv(t, d)
		img, err := e.rt.Pull(ctx, a.Name)
		if err != nil {
			t.Fatal(err)
		}
		if img.Name != a.Name || img.Digest != a.Manifest || img.Manifest != a.Manifest || img.Config != a.Config {
			t.Fatalf("pulled %+v, pushed %+v", img, a)
		}
		e.image = img
		e.run(t, Spec{ID: "pulled", Image: img.Name, Digest: img.Digest})
		e.waitState(t, "pulled", Running, 5*time.Second)
		if imgs, err := e.rt.Images(ctx); err != nil || len(imgs) != 1 || imgs[0] != img {
			t.Errorf("images after the pull: %+v, %v", imgs, err)
		}
	})
	t.Run("by tag and digest", func(t *testing.T) {
		e := pullEnv(t, d)
		for _, pin := range []string{a.Manifest, a.Config} {
			if img, err := e.rt.Pull(ctx, a.Name, PullDigest(pin)); err != nil || img.Manifest != a.Manifest {
				t.Fatalf("pull pinned to %s: %+v, %v", pin, img, err)
			}
		}
	})
	t.Run("by digest alone", func(t *testing.T) {
		e := pullEnv(t, d)
		repo := reg.Host + "/agents/busybox"
		img, err := e.rt.Pull(ctx, repo, PullDigest(a.Manifest))
		if err != nil || img.Name != repo || img.Digest != a.Manifest {
			t.Fatalf("pull %s@%s: %+v, %v", repo, a.Manifest, img, err)
		}
	})
	t.Run("wrong digest refused, nothing left", func(t *testing.T) {
		e := pullEnv(t, d)
		for _, pin := range []string{b.Manifest, "sha256:" + fmt.Sprintf("%064x", 7)} {
			_, err := e.rt.Pull(ctx, a.Name, PullDigest(pin))
			if !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("pull of %s pinned to %s: %v", a.Name, pin, err)
			}
			assertNotStored(t, e, a, nil)
		}
	})
	t.Run("a refused pull keeps the image of that name", func(t *testing.T) {
		e := pullEnv(t, d)
		if _, err := e.rt.Pull(ctx, a.Name); err != nil {
			t.Fatal(err)
		}
		if _, err := e.rt.Pull(ctx, a.Name, PullDigest(b.Manifest)); !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("pull pinned to the other image: %v", err)
		}
		imgs, err := e.rt.Images(ctx)
		if err != nil || len(imgs) != 1 || imgs[0].Manifest != a.Manifest {
			t.Fatalf("images after a refused pull: %+v, %v", imgs, err)
		}
	})
	t.Run("over the size cap, nothing left", func(t *testing.T) {
		e := pullEnv(t, d)
		_, err := e.rt.Pull(ctx, a.Name, PullMaxSize(4096))
		if !errors.Is(err, safeio.ErrTooLarge) {
			t.Fatalf("pull over the cap: %v", err)
		}
		assertNotStored(t, e, a, nil)
	})
	t.Run("unknown tag", func(t *testing.T) {
		e := pullEnv(t, d)
		for _, ref := range []string{reg.Host + "/agents/busybox:nope", reg.Host + "/agents/nope:1"} {
			if _, err := e.rt.Pull(ctx, ref); !errors.Is(err, ErrNotFound) {
				t.Errorf("pull %s: %v", ref, err)
			}
		}
	})
	t.Run("registry down", func(t *testing.T) {
		e := pullEnv(t, d)
		ref := "127.0.0.1:" + freePort(t) + "/agents/busybox:1"
		if _, err := e.rt.Pull(ctx, ref, PullTimeout(20*time.Second)); !errors.Is(err, ErrUnavailable) {
			t.Errorf("pull from a registry that is down: %v", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		e := pullEnv(t, d)
		if _, err := e.rt.Pull(ctx, a.Name, PullTimeout(time.Nanosecond)); !errors.Is(err, ErrTimeout) {
			t.Errorf("pull with a nanosecond to do it: %v", err)
		}
	})
}

// FuzzPullRef: pullRef never panics, and what it accepts is a full
// reference fetched as given (or with the pinned digest appended).
func FuzzPullRef(f *testing.F) {
	for _, s := range []string{"127.0.0.1:5000/a/b:1", "docker.io/library/busybox:1", "busybox", "a/b@sha256:" + strings.Repeat("0", 64), "A:1", "x/y:tag@md5:1"} {
		f.Add(s, "")
		f.Add(s, "sha256:"+strings.Repeat("a", 64))
	}
	f.Fuzz(func(t *testing.T, ref, want string) {
		fetch, pin, err := pullRef(ref, want)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("pullRef(%q, %q): %v is not ErrInvalid", ref, want, err)
			}
			return
		}
		if fetch != ref && fetch != ref+"@"+pin {
			t.Fatalf("pullRef(%q, %q) fetches %q", ref, want, fetch)
		}
		if want != "" && pin != want {
			t.Fatalf("pullRef(%q, %q) pins %q", ref, want, pin)
		}
	})
}
