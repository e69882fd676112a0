package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// The real build (go build of both agents) runs once per test binary and is
// shared by the tests that need archives.
var (
	builtOnce sync.Once
	builtDir  string
	builtErr  error
	builtLog  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
	os.Exit(code)
}

// builtArchives returns a directory holding the output of
// `agentimage -out DIR` for this checkout.
func builtArchives(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: this test compiles both agents")
	}
	builtOnce.Do(func() {
		if builtDir, builtErr = os.MkdirTemp("", "agentimage-test-"); builtErr != nil {
			return
		}
		builtLog, builtErr = runBuild(filepath.Join(builtDir, "a"))
	})
	if builtErr != nil {
		t.Fatalf("building the agents: %v\n%s", builtErr, builtLog)
	}
	return filepath.Join(builtDir, "a")
}

func runBuild(out string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	env := func(k string) string { return map[string]string{"SOURCE_DATE_EPOCH": "1700000000"}[k] }
	err := run(ctx, []string{"-out", out}, env, &stdout, &stderr)
	return stdout.String() + stderr.String(), err
}

func readIndex(t *testing.T, dir string) map[string]result {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var index map[string]result
	if err := json.Unmarshal(data, &index); err != nil {
		t.Fatal(err)
	}
	return index
}

// TestBuildReproducible builds the agents a second time, into another
// directory: every output file must be byte for byte the same.
func TestBuildReproducible(t *testing.T) {
	first := builtArchives(t)
	second := filepath.Join(t.TempDir(), "b")
	if log, err := runBuild(second); err != nil {
		t.Fatalf("second build: %v\n%s", err, log)
	}
	names := []string{"index.json"}
	for _, a := range agents {
		names = append(names, a.name+".oci.tar", a.name+".digest")
	}
	for _, name := range names {
		a, err := os.ReadFile(filepath.Join(first, name))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(second, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds of the same source", name)
		}
	}
	for name, r := range readIndex(t, first) {
		t.Logf("%s: %s %s, archive %d bytes", name, r.Ref, r.Digest, r.Size)
	}
}

// TestBuiltImages opens each archive as containerd would see it and checks
// the index entry, the digest file and the binary: a static ELF for the
// host's architecture, run as the agent user.
func TestBuiltImages(t *testing.T) {
	dir := builtArchives(t)
	index := readIndex(t, dir)
	if len(index) != len(agents) {
		t.Fatalf("index.json has %d entries, want %d", len(index), len(agents))
	}
	for _, a := range agents {
		t.Run(a.name, func(t *testing.T) {
			r := index[a.name]
			if r.Ref != "omertaos.local/agents/"+a.name+":0.1.0" || r.Archive != a.name+".oci.tar" {
				t.Errorf("index entry %+v", r)
			}
			archive, err := os.ReadFile(filepath.Join(dir, r.Archive))
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(archive)) != r.Size {
				t.Errorf("archive is %d bytes, index says %d", len(archive), r.Size)
			}
			digestFile, _ := os.ReadFile(filepath.Join(dir, a.name+".digest"))
			if string(digestFile) != r.Digest+"\n" {
				t.Errorf("%s.digest holds %q, index says %s", a.name, digestFile, r.Digest)
			}
			desc, img := openArchive(t, archive)
			if desc.Digest.String() != r.Digest || desc.Annotations[annotationRefName] != r.Ref {
				t.Errorf("layout entry %s %v, index says %s %s", desc.Digest, desc.Annotations, r.Digest, r.Ref)
			}
			layers, err := img.Layers()
			if err != nil || len(layers) != 1 {
				t.Fatalf("layers: %d, %v", len(layers), err)
			}
			rc, err := layers[0].Uncompressed()
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			checkStaticBinary(t, agentBinary(t, rc))
		})
	}
}

func agentBinary(t *testing.T, layer io.Reader) []byte {
	t.Helper()
	tr := tar.NewReader(layer)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatal("the layer has no /agent")
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "agent" {
			if h.Mode != 0o755 || h.Uid != 0 {
				t.Errorf("/agent mode %o owner %d", h.Mode, h.Uid)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

func checkStaticBinary(t *testing.T, bin []byte) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("/agent is not an ELF file: %v", err)
	}
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[runtime.GOARCH]
	if want != 0 && f.Machine != want {
		t.Errorf("/agent is built for %v, this host is %s", f.Machine, runtime.GOARCH)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("/agent asks for a dynamic loader (PT_INTERP): not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("/agent links %v", libs)
	}
	if f.Section(".symtab") != nil {
		t.Error("/agent keeps its symbol table (-s not applied)")
	}
	if !strings.Contains(string(bin), "0.1.0") {
		t.Error("the version is not stamped into /agent")
	}
}
