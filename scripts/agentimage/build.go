package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/omertaos/omertaos/appliance/atomicfile"
	"github.com/omertaos/omertaos/appliance/safeio"
)

// maxBinary caps what is read back of a compiled agent.
const maxBinary = 64 << 20

// result is one agent's entry in index.json.
type result struct {
	name    string
	Ref     string `json:"ref"`
	Digest  string `json:"digest"`
	Size    int64  `json:"size"`
	Archive string `json:"archive"`
}

func moduleRoot(ctx context.Context, goBin string) (string, error) {
	out, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("asking %s for the module root: %w", goBin, err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module; run from the repository or pass -root")
	}
	return filepath.Dir(gomod), nil
}

func buildAll(ctx context.Context, o options) ([]result, error) {
	tmp, err := os.MkdirTemp("", "agentimage-")
	if err != nil {
		return nil, fmt.Errorf("creating a build directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	var results []result
	for _, a := range agents {
		bin, err := compile(ctx, o, a, tmp)
		if err != nil {
			return nil, err
		}
		r, err := packageAgent(o, a, bin)
		if err != nil {
			return nil, fmt.Errorf("packaging agent %s: %w", a.name, err)
		}
		results = append(results, r)
	}
	return results, nil
}

// compile builds a static linux binary of the agent. The environment pins
// what would otherwise make the binary depend on the host: no cgo, the
// baseline amd64 level, no GOFLAGS from the caller (a stray -race).
func compile(ctx context.Context, o options, a agent, tmp string) ([]byte, error) {
	out := filepath.Join(tmp, a.name)
	cmd := exec.CommandContext(ctx, o.goBin, "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -X main.version="+o.version, "-o", out, a.pkg)
	cmd.Dir = o.root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+o.arch, "GOAMD64=v1", "GOFLAGS=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("building agent %s: %w\n%s", a.name, err, stderr.Bytes())
	}
	bin, err := safeio.ReadFile(out, maxBinary)
	if err != nil {
		return nil, fmt.Errorf("reading the %s binary: %w", a.name, err)
	}
	return bin, nil
}

func packageAgent(o options, a agent, bin []byte) (result, error) {
	ref := o.registry + "/" + a.name + ":" + o.version
	img, err := buildImage(a, o, bin)
	if err != nil {
		return result{}, err
	}
	archive, digest, err := writeArchive(img, ref, o.arch, o.created)
	if err != nil {
		return result{}, err
	}
	name := a.name + ".oci.tar"
	if _, err := atomicfile.WriteFile(filepath.Join(o.out, name), archive, 0o644); err != nil {
		return result{}, fmt.Errorf("writing %s: %w", name, err)
	}
	if _, err := atomicfile.WriteFile(filepath.Join(o.out, a.name+".digest"), []byte(digest+"\n"), 0o644); err != nil {
		return result{}, fmt.Errorf("writing %s.digest: %w", a.name, err)
	}
	return result{name: a.name, Ref: ref, Digest: digest, Size: int64(len(archive)), Archive: name}, nil
}

func writeIndex(out string, results []result) error {
	index := map[string]result{}
	for _, r := range results {
		index[r.name] = r
	}
	data, err := json.MarshalIndent(index, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding index.json: %w", err)
	}
	if _, err := atomicfile.WriteFile(filepath.Join(out, "index.json"), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing index.json: %w", err)
	}
	return nil
}
