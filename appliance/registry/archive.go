package registry

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// An image entry's OCI digest is what an import of its archive records:
// the one manifest its OCI layout's index.json names. BuildLock reads it
// from the archive, so that a registry built from a directory of archives
// pins each image without a hand-written digest (ImageSigner vouches for
// an image by that digest alone).

// Bounds of an archive's scan for its index.json.
const (
	maxOCIIndex    = 1 << 20
	maxTarEntries  = 100000
	ociIndexName   = "index.json"
	ociLayoutName  = "oci-layout"
	maxIndexMember = 16
)

// ociIndex is the part of an OCI image index read here.
type ociIndex struct {
	SchemaVersion int `json:"schemaVersion"`
	Manifests     []struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
	} `json:"manifests"`
}

// parseOCIIndex is the digest of the one manifest data (an OCI layout's
// index.json) names; an error says what is wrong with it.
func parseOCIIndex(data []byte) (string, error) {
	var ix ociIndex
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&ix); err != nil {
		return "", fmt.Errorf("index.json is not an OCI image index: %w", err)
	}
	if dec.More() {
		return "", errors.New("index.json has data after its JSON value")
	}
	if ix.SchemaVersion != 2 {
		return "", fmt.Errorf("index.json: schemaVersion is %d, not 2", ix.SchemaVersion)
	}
	if len(ix.Manifests) != 1 {
		return "", fmt.Errorf("index.json names %d manifests; an image archive of a registry holds one", min(len(ix.Manifests), maxIndexMember))
	}
	d := ix.Manifests[0].Digest
	if reason := ociDigestProblem(d); reason != "" {
		return "", fmt.Errorf("index.json: manifests[0].digest: %s", reason)
	}
	return d, nil
}

// archiveDigest reads the OCI digest of the image archive rel: "" with no
// error when rel is not an OCI layout in a tar (no index.json and no
// oci-layout at its top), an error when it is one whose index cannot be
// used.
func archiveDigest(ctx context.Context, d *dirFS, rel string, lim Limits) (string, error) {
	f, _, err := d.open(rel, lim.BlobBytes)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	layout := false
	for n := 0; n < maxTarEntries; n++ {
		if n%1024 == 0 && ctx.Err() != nil {
			return "", ctx.Err()
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) && layout {
			return "", &fileError{Code: CodeRefusedFile, Detail: "an OCI layout without index.json"}
		}
		if errors.Is(err, io.EOF) || (err != nil && n == 0) {
			return "", nil // not an OCI layout, or not a tar at all
		}
		if err != nil {
			return "", &fileError{Code: CodeRefusedFile, Detail: "reading the archive: " + errText(err), Err: err}
		}
		switch path.Clean(h.Name) {
		case ociLayoutName:
			layout = true
		case ociIndexName:
			if h.Typeflag != tar.TypeReg {
				return "", &fileError{Code: CodeRefusedFile, Detail: "the archive's index.json is not a regular file"}
			}
			data, err := io.ReadAll(io.LimitReader(tr, maxOCIIndex+1))
			if err == nil && len(data) > maxOCIIndex {
				err = fmt.Errorf("index.json is over %d bytes", maxOCIIndex)
			}
			if err == nil {
				var dg string
				if dg, err = parseOCIIndex(data); err == nil {
					return dg, nil
				}
			}
			// The reasons quote what they repeat of the index already.
			return "", &fileError{Code: CodeRefusedFile, Detail: "the archive's " + strings.ReplaceAll(err.Error(), "\n", " "), Err: err}
		}
	}
	if layout {
		return "", &fileError{Code: CodeRefusedFile, Detail: fmt.Sprintf("an OCI layout without index.json in its first %d entries", maxTarEntries)}
	}
	return "", nil
}
