package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The agent's account. It owns nothing in the image: the binary and /etc
// belong to root, and the root filesystem is mounted read-only anyway.
const (
	agentUID = 10001
	agentGID = 10001
)

var (
	passwd = fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nagent:x:%d:%d:agent:/tmp:/sbin/nologin\n", agentUID, agentGID)
	group  = fmt.Sprintf("root:x:0:\nagent:x:%d:\n", agentGID)
)

// layerEntry is one file or directory of the layer.
type layerEntry struct {
	mode int64
	dir  bool
	data []byte
}

// layerTar is the image's only layer: /agent, /etc/passwd and /etc/group,
// and /tmp (the working directory; the runtime mounts a tmpfs over it).
// Entries are sorted and every header field that could vary is fixed.
func layerTar(binary []byte, mtime time.Time) ([]byte, error) {
	entries := map[string]layerEntry{
		"agent":      {mode: 0o755, data: binary},
		"etc/":       {mode: 0o755, dir: true},
		"etc/group":  {mode: 0o644, data: []byte(group)},
		"etc/passwd": {mode: 0o644, data: []byte(passwd)},
		"tmp/":       {mode: 0o1777, dir: true},
	}
	names := make([]string, 0, len(entries))
	for name := range entries {
		names = append(names, name)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range names {
		e := entries[name]
		hdr := &tar.Header{
			Name:    name,
			Mode:    e.mode,
			ModTime: mtime,
			Format:  tar.FormatPAX,
		}
		if e.dir {
			hdr.Typeflag = tar.TypeDir
		} else {
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("writing the layer entry %s: %w", name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("writing the layer entry %s: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("closing the layer: %w", err)
	}
	return buf.Bytes(), nil
}

// buildImage assembles the OCI image: one gzip layer (Go's gzip writes no
// timestamp, so compression is deterministic too), and a config that runs
// /agent serve as the agent user in /tmp.
func buildImage(a agent, o options, binary []byte) (v1.Image, error) {
	raw, err := layerTar(binary, o.created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.BestCompression))
	if err != nil {
		return nil, fmt.Errorf("compressing the layer: %w", err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, configFile(a, o))
	if err != nil {
		return nil, fmt.Errorf("setting the image config: %w", err)
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: o.created},
			CreatedBy: "scripts/agentimage",
			Comment:   "the " + a.name + " agent binary and its user",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("adding the layer: %w", err)
	}
	return img, nil
}

func configFile(a agent, o options) *v1.ConfigFile {
	cfg := v1.Config{
		User:       fmt.Sprintf("%d:%d", agentUID, agentGID),
		Entrypoint: []string{"/agent"},
		Cmd:        []string{"serve"},
		WorkingDir: "/tmp",
		Env:        append([]string{"PATH=/"}, a.env...),
		Labels: map[string]string{
			"org.opencontainers.image.title":       a.title,
			"org.opencontainers.image.description": a.description,
			"org.opencontainers.image.version":     o.version,
			"org.opencontainers.image.source":      o.source,
			"org.opencontainers.image.created":     o.created.Format(time.RFC3339),
		},
		StopSignal: "SIGTERM",
	}
	if len(a.ports) > 0 {
		cfg.ExposedPorts = map[string]struct{}{}
		for _, p := range a.ports {
			cfg.ExposedPorts[p] = struct{}{}
		}
	}
	return &v1.ConfigFile{
		Architecture: o.arch,
		OS:           "linux",
		Created:      v1.Time{Time: o.created},
		Config:       cfg,
		RootFS:       v1.RootFS{Type: "layers"},
	}
}
