package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/omertaos/omertaos/appliance/safeio"
)

// Annotations on the image's entry in the layout's index.json. containerd
// names an imported image after the first; the second is the one its own
// exporter writes, which containerd prefers when present.
const (
	annotationRefName       = "org.opencontainers.image.ref.name"
	annotationContainerName = "io.containerd.image.name"
)

// maxLayoutFile caps what is read back of the layout go-containerregistry
// wrote; a blob is at most an agent binary, compressed.
const maxLayoutFile = maxBinary

// writeArchive writes img as an OCI image layout into a temp dir and
// returns that layout as a tar, with the manifest digest.
func writeArchive(img v1.Image, ref, arch string, mtime time.Time) ([]byte, string, error) {
	digest, err := img.Digest()
	if err != nil {
		return nil, "", fmt.Errorf("computing the manifest digest: %w", err)
	}
	dir, err := os.MkdirTemp("", "agentimage-layout-")
	if err != nil {
		return nil, "", fmt.Errorf("creating the layout directory: %w", err)
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return nil, "", fmt.Errorf("starting the OCI layout: %w", err)
	}
	err = p.AppendImage(img,
		layout.WithAnnotations(map[string]string{annotationRefName: ref, annotationContainerName: ref}),
		layout.WithPlatform(v1.Platform{OS: "linux", Architecture: arch}))
	if err != nil {
		return nil, "", fmt.Errorf("writing the OCI layout: %w", err)
	}
	archive, err := tarDir(dir, mtime)
	if err != nil {
		return nil, "", err
	}
	return archive, digest.String(), nil
}

// tarDir archives dir with its entries in lexical order (WalkDir's order),
// owned by root, with fixed modes and times: the archive's bytes depend on
// the layout's content only.
func tarDir(dir string, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		hdr := &tar.Header{Name: filepath.ToSlash(rel), ModTime: mtime, Format: tar.FormatPAX}
		var data []byte
		switch {
		case d.IsDir():
			hdr.Typeflag, hdr.Mode, hdr.Name = tar.TypeDir, 0o755, hdr.Name+"/"
		case d.Type().IsRegular():
			if data, err = safeio.ReadFile(path, maxLayoutFile); err != nil {
				return err
			}
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, int64(len(data))
		default:
			return fmt.Errorf("%s: the layout holds a %v, not a file or directory", rel, d.Type())
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("archiving the OCI layout: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("archiving the OCI layout: %w", err)
	}
	return buf.Bytes(), nil
}
