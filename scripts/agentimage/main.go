// Command agentimage builds the sample agents (image/agents/tool,
// image/agents/web and the local model backend image/agents/echo-model)
// into OCI image archives without a Docker engine or a
// registry:
//
//	go run ./scripts/agentimage -out out/agents
//
// For each agent it writes NAME.oci.tar (an OCI image layout in a tar, as
// `ctr images import` and containerd's client take it, the image named by
// its org.opencontainers.image.ref.name annotation) and NAME.digest (the
// manifest digest), and index.json maps each name to its ref, digest and
// archive size. Builds are reproducible: every timestamp is
// SOURCE_DATE_EPOCH (or 1970-01-01), every list sorted, so the same source
// and Go toolchain give the same digests.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// agent describes one sample agent's image.
type agent struct {
	name        string // the archive's base name and the ref's last path element
	pkg         string // the Go package, relative to the module root
	title       string
	description string
	ports       []string // exposed ports, "8080/tcp"
	env         []string
}

var agents = []agent{
	{
		name:        "tool",
		pkg:         "./image/agents/tool",
		title:       "OMERTAOS tool agent",
		description: "Structured tasks, JSON in and JSON out: text extraction, extractive summaries, JSON transforms.",
	},
	{
		name:        "web",
		pkg:         "./image/agents/web",
		title:       "OMERTAOS web agent",
		description: "A status page and text extraction served over HTTP on its port.",
		ports:       []string{"8080/tcp"},
		env:         []string{"PORT=8080"},
	},
	{
		name:        "echo-model",
		pkg:         "./image/agents/echo-model",
		title:       "OMERTAOS local echo model",
		description: "An OpenAI-compatible model backend whose model, local-echo, answers with the prompt: the model gateway's local backend.",
		ports:       []string{"8080/tcp"},
		env:         []string{"PORT=8080", "MODELS=local-echo"},
	},
}

// options are the flags, checked.
type options struct {
	root     string // module root; "" asks the go command
	out      string
	version  string
	registry string
	source   string
	goBin    string
	arch     string
	created  time.Time
}

var (
	tagRe  = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	repoRe = regexp.MustCompile(`^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\.[a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$`)
	archRe = regexp.MustCompile(`^[a-z0-9]+$`)
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentimage: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	if o.root == "" {
		if o.root, err = moduleRoot(ctx, o.goBin); err != nil {
			return err
		}
	}
	results, err := buildAll(ctx, o)
	if err != nil {
		return err
	}
	if err := writeIndex(o.out, results); err != nil {
		return err
	}
	for _, r := range results {
		fmt.Fprintf(stdout, "%s\t%s\t%s\t%d bytes\n", r.name, r.Ref, r.Digest, r.Size)
	}
	return nil
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("agentimage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.out, "out", "out/agents", "directory for the archives, digests and index.json")
	fs.StringVar(&o.version, "version", "0.1.0", "image tag and org.opencontainers.image.version")
	fs.StringVar(&o.registry, "registry", "omertaos.local/agents", "repository prefix of the image refs")
	fs.StringVar(&o.source, "source", "https://github.com/omertaos/omertaos", "org.opencontainers.image.source")
	fs.StringVar(&o.goBin, "go", "go", "the go command")
	fs.StringVar(&o.arch, "arch", runtime.GOARCH, "GOARCH of the agents (default: this host's)")
	fs.StringVar(&o.root, "root", "", "module root (default: asked of the go command)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() != 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch {
	case !tagRe.MatchString(o.version):
		return o, fmt.Errorf("-version: %q is not an image tag", o.version)
	case !repoRe.MatchString(o.registry):
		return o, fmt.Errorf("-registry: %q is not a lower-case repository prefix", o.registry)
	case !archRe.MatchString(o.arch):
		return o, fmt.Errorf("-arch: %q is not a GOARCH", o.arch)
	case o.out == "":
		return o, errors.New("-out: must not be empty")
	}
	created, err := sourceDate(getenv("SOURCE_DATE_EPOCH"))
	if err != nil {
		return o, err
	}
	o.created = created
	return o, nil
}

// sourceDate follows reproducible-builds.org: SOURCE_DATE_EPOCH is a count
// of seconds; unset, the epoch itself stands in, never the clock.
func sourceDate(v string) (time.Time, error) {
	if v == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > 253402300799 { // 9999-12-31T23:59:59Z
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH: %q is not a number of seconds since 1970", v)
	}
	return time.Unix(n, 0).UTC(), nil
}
