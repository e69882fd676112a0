package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

var testCreated = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func testOptions() options {
	return options{version: "0.1.0", registry: "omertaos.local/agents", source: "https://example.org/src", arch: "amd64", created: testCreated}
}

type tarEntry struct {
	Name     string
	Typeflag byte
	Mode     int64
	UID, GID int
	ModTime  time.Time
	Data     string
}

func readTar(t *testing.T, r io.Reader) []tarEntry {
	t.Helper()
	var out []tarEntry
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.ModTime.UTC(), string(data)})
	}
}

func TestLayerTar(t *testing.T) {
	raw, err := layerTar([]byte("BINARY"), testCreated)
	if err != nil {
		t.Fatal(err)
	}
	want := []tarEntry{
		{"agent", tar.TypeReg, 0o755, 0, 0, testCreated, "BINARY"},
		{"etc/", tar.TypeDir, 0o755, 0, 0, testCreated, ""},
		{"etc/group", tar.TypeReg, 0o644, 0, 0, testCreated, "root:x:0:\nagent:x:10001:\n"},
		{"etc/passwd", tar.TypeReg, 0o644, 0, 0, testCreated, "root:x:0:0:root:/root:/sbin/nologin\nagent:x:10001:10001:agent:/tmp:/sbin/nologin\n"},
		{"tmp/", tar.TypeDir, 0o1777, 0, 0, testCreated, ""},
	}
	if diff := cmp.Diff(want, readTar(t, bytes.NewReader(raw))); diff != "" {
		t.Errorf("layer (-want +got)\n%s", diff)
	}
}

func TestImageConfig(t *testing.T) {
	img, err := buildImage(agents[1], testOptions(), []byte("BINARY"))
	if err != nil {
		t.Fatal(err)
	}
	// validate.Image is not run on this in-memory image: its Manifest()
	// carries an empty annotations map that the encoded manifest omits,
	// which validate reports as a mismatch. TestArchiveLayout validates
	// the image as written.
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "10001:10001" || c.WorkingDir != "/tmp" || !cmp.Equal(c.Entrypoint, []string{"/agent"}) || !cmp.Equal(c.Cmd, []string{"serve"}) {
		t.Errorf("config %+v", c)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok || len(c.ExposedPorts) != 1 {
		t.Errorf("exposed ports %v", c.ExposedPorts)
	}
	wantLabels := map[string]string{
		"org.opencontainers.image.title":       "OMERTAOS web agent",
		"org.opencontainers.image.description": agents[1].description,
		"org.opencontainers.image.version":     "0.1.0",
		"org.opencontainers.image.source":      "https://example.org/src",
		"org.opencontainers.image.created":     "2025-06-01T12:00:00Z",
	}
	if diff := cmp.Diff(wantLabels, c.Labels); diff != "" {
		t.Errorf("labels (-want +got)\n%s", diff)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" || !cf.Created.Time.Equal(testCreated) {
		t.Errorf("platform %s/%s created %v", cf.OS, cf.Architecture, cf.Created)
	}
	if len(cf.History) != 1 || !cf.History[0].Created.Time.Equal(testCreated) {
		t.Errorf("history %+v", cf.History)
	}
	mt, _ := img.MediaType()
	m, _ := img.Manifest()
	if mt != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON || len(m.Layers) != 1 || m.Layers[0].MediaType != types.OCILayer {
		t.Errorf("media types: manifest %s, config %s, layers %+v", mt, m.Config.MediaType, m.Layers)
	}
	tool, _ := buildImage(agents[0], testOptions(), []byte("BINARY"))
	if cf, _ := tool.ConfigFile(); len(cf.Config.ExposedPorts) != 0 {
		t.Errorf("the tool agent exposes %v", cf.Config.ExposedPorts)
	}
}

// untar unpacks an archive the test itself made; names are still checked
// so that a bug cannot write outside dir.
func untar(t *testing.T, data []byte, dir string) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if !filepath.IsLocal(h.Name) {
			t.Fatalf("archive entry %q leaves the directory", h.Name)
		}
		p := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			var b []byte
			if b, err = io.ReadAll(tr); err == nil {
				err = os.WriteFile(p, b, 0o644)
			}
		default:
			t.Fatalf("archive entry %q has type %c", h.Name, h.Typeflag)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// openArchive reads an archive back with go-containerregistry's layout
// reader, checking every digest and size on the way.
func openArchive(t *testing.T, archive []byte) (v1.Descriptor, v1.Image) {
	t.Helper()
	dir := t.TempDir()
	untar(t, archive, dir)
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("invalid layout: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("%d manifests in the layout, want 1", len(im.Manifests))
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return im.Manifests[0], img
}

func TestArchiveLayout(t *testing.T) {
	img, err := buildImage(agents[0], testOptions(), []byte("BINARY"))
	if err != nil {
		t.Fatal(err)
	}
	const ref = "omertaos.local/agents/tool:0.1.0"
	archive, digest, err := writeArchive(img, ref, "amd64", testCreated)
	if err != nil {
		t.Fatal(err)
	}
	entries := readTar(t, bytes.NewReader(archive))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
		if e.UID != 0 || e.GID != 0 || !e.ModTime.Equal(testCreated) {
			t.Errorf("%s: owner %d:%d, time %v", e.Name, e.UID, e.GID, e.ModTime)
		}
	}
	if names[0] != "blobs/" || names[len(names)-2] != "index.json" || names[len(names)-1] != "oci-layout" {
		t.Errorf("archive entries %q", names)
	}
	desc, got := openArchive(t, archive)
	if desc.Digest.String() != digest {
		t.Errorf("layout names %s, writeArchive returned %s", desc.Digest, digest)
	}
	if d, _ := got.Digest(); d.String() != digest {
		t.Errorf("image digest %s, want %s", d, digest)
	}
	for _, key := range []string{annotationRefName, annotationContainerName} {
		if desc.Annotations[key] != ref {
			t.Errorf("annotation %s = %q, want %q", key, desc.Annotations[key], ref)
		}
	}
	if desc.Platform == nil || desc.Platform.OS != "linux" || desc.Platform.Architecture != "amd64" {
		t.Errorf("platform %+v", desc.Platform)
	}
	if !strings.HasPrefix(digest, "sha256:") || len(digest) != len("sha256:")+64 {
		t.Errorf("digest %q", digest)
	}
}

// TestArchiveReproducible: the same inputs give the same bytes; the date
// and the binary each change the digest (so neither is ignored).
func TestArchiveReproducible(t *testing.T) {
	build := func(bin string, created time.Time) ([]byte, string) {
		t.Helper()
		o := testOptions()
		o.created = created
		img, err := buildImage(agents[0], o, []byte(bin))
		if err != nil {
			t.Fatal(err)
		}
		archive, digest, err := writeArchive(img, "r/x:1", "amd64", created)
		if err != nil {
			t.Fatal(err)
		}
		return archive, digest
	}
	a1, d1 := build("BINARY", testCreated)
	a2, d2 := build("BINARY", testCreated)
	if d1 != d2 || !bytes.Equal(a1, a2) {
		t.Errorf("two builds differ: %s and %s", d1, d2)
	}
	if _, d := build("BINARY", testCreated.Add(time.Second)); d == d1 {
		t.Error("the creation time does not reach the image")
	}
	if _, d := build("BINARY2", testCreated); d == d1 {
		t.Error("the binary does not reach the image")
	}
}

func TestSourceDate(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{"", time.Unix(0, 0).UTC(), false},
		{"1700000000", time.Unix(1700000000, 0).UTC(), false},
		{"-1", time.Time{}, true},
		{"1e9", time.Time{}, true},
		{"99999999999999", time.Time{}, true},
	}
	for _, tt := range tests {
		got, err := sourceDate(tt.in)
		if (err != nil) != tt.wantErr || !got.Equal(tt.want) {
			t.Errorf("sourceDate(%q) = %v, %v", tt.in, got, err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "SOURCE_DATE_EPOCH:") {
			t.Errorf("error %q does not name SOURCE_DATE_EPOCH", err)
		}
	}
}

func TestParseFlagsRefusals(t *testing.T) {
	tests := []struct {
		args []string
		flag string
	}{
		{[]string{"-version", "1.0 -X main.x=y"}, "-version"},
		{[]string{"-version", ""}, "-version"},
		{[]string{"-registry", "Omertaos.local/Agents"}, "-registry"},
		{[]string{"-registry", "a//b"}, "-registry"},
		{[]string{"-arch", "amd64 -o /etc/x"}, "-arch"},
		{[]string{"-out", ""}, "-out"},
		{[]string{"extra"}, "unexpected"},
	}
	for _, tt := range tests {
		_, err := parseFlags(tt.args, func(string) string { return "" }, io.Discard)
		if err == nil || !strings.HasPrefix(err.Error(), tt.flag) {
			t.Errorf("parseFlags(%q) = %v, want an error naming %s", tt.args, err, tt.flag)
		}
	}
	o, err := parseFlags(nil, func(k string) string { return map[string]string{"SOURCE_DATE_EPOCH": "86400"}[k] }, io.Discard)
	if err != nil || !o.created.Equal(time.Unix(86400, 0)) || o.out != "out/agents" || o.registry != "omertaos.local/agents" {
		t.Errorf("defaults: %+v, %v", o, err)
	}
}
