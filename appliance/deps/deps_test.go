package deps

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/omertaos/omertaos"

type layer int

const (
	base layer = iota
	core
	domain
	service
	front
)

func (l layer) String() string {
	return [...]string{"base", "core", "domain", "service", "front"}[l]
}

// layers assigns every package of the module (by path below the module, a
// trailing "/..." covering a whole subtree). A new package must be added here:
// the test fails until someone decides where it belongs.
var layers = map[string]layer{
	"appliance/version":       base,
	"appliance/atomicfile":    base,
	"appliance/safeio":        base,
	"appliance/safeyaml":      base,
	"appliance/terminal":      base,
	"appliance/rootfs":        base,
	"appliance/hangup":        base,
	"appliance/config":        core,
	"appliance/store":         core,
	"appliance/probe":         domain,
	"appliance/agents/...":    domain,
	"appliance/policy/...":    domain,
	"appliance/registry/...":  domain,
	"appliance/gateway/...":   domain,
	"appliance/gpu/...":       domain,
	"appliance/netpolicy/...": domain,
	"appliance/auth/...":      domain,
	"hardening/...":           domain,
	"firstboot/...":           domain,
	"appliance/apitype":       service,
	"appliance/apiclient":     service,
	"appliance/api/...":       service,
	"appliance/daemon":        service,
	"appliance/deps":          front,
	"appliance/cmd/...":       front,
	"ui/...":                  front,
	"scripts/...":             front,
	"image/...":               front, // the sample agents\' own mains
}

// forbidden lists imports (matched as path prefixes, transitively) that a
// subtree must never reach, with the reason a failure prints.
var forbidden = []struct {
	from, to, why string
}{
	{"appliance/apiclient", "github.com/gofiber/", "the API client is shared with the console and the CLI; it speaks net/http"},
	{"appliance/apitype", "github.com/gofiber/", "request and response types are plain data"},
	{"ui/", module + "/appliance/store", "the console reaches state only through omertad's API"},
	{"ui/", "github.com/mattn/go-sqlite3", "the console must not open the database"},
	{"ui/", "github.com/NVIDIA/go-nvml", "the console must not touch GPUs"},
	{"ui/", "github.com/containerd/containerd", "the containerd socket is root-equivalent; the network-facing console must not hold a client"},
	{"firstboot/report", module + "/hardening", "an auditor's verifier must not link the code whose results it checks"},
	// The console's own binary: what it links is all a compromised
	// console could run, so the network-facing process holds none of it.
	{consoleBinary, "github.com/containerd/", "the containerd socket is root-equivalent; the network-facing console binary must not link a client"},
	{consoleBinary, "github.com/mattn/go-sqlite3", "the console binary must not open the database"},
	{consoleBinary, "github.com/NVIDIA/go-nvml", "the console binary must not touch GPUs"},
	{consoleBinary, module + "/appliance/store", "the console binary reaches state only through omertad's API"},
	{consoleBinary, module + "/appliance/agents/runtime", "the console binary must not drive containers"},
}

// consoleBinary is the main package of omerta-console, the one process
// that faces the network.
const consoleBinary = "appliance/cmd/omerta-console"

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func TestLayering(t *testing.T) {
	pkgs := listPackages(t)
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages; is the module root right?", len(pkgs))
	}
	for _, problem := range check(pkgs) {
		t.Error(problem)
	}
}

// check returns one line per violation, sorted.
func check(pkgs []pkg) []string {
	var problems []string
	for _, p := range pkgs {
		rel, ok := relative(p.ImportPath)
		if !ok {
			continue
		}
		l, ok := layerOf(rel)
		if !ok {
			problems = append(problems, fmt.Sprintf("%s has no layer: add it to the layers table in appliance/deps", rel))
			continue
		}
		problems = append(problems, checkImports(rel, l, p.Imports)...)
		problems = append(problems, checkDeps(rel, l, p.Deps)...)
	}
	sort.Strings(problems)
	return problems
}

func checkImports(rel string, l layer, imports []string) []string {
	var problems []string
	for _, imp := range imports {
		irel, ok := relative(imp)
		if !ok {
			continue
		}
		il, ok := layerOf(irel)
		if !ok {
			continue // reported for irel itself
		}
		// Base helpers may build on each other (rootfs reads through
		// safeio), domains may use each other (first boot runs the probe
		// and hardening); core looks strictly down, so config and store
		// stay independent.
		if il > l || (il == l && l == core) {
			problems = append(problems, fmt.Sprintf("%s (%s) imports %s (%s): a layer imports only from below", rel, l, irel, il))
		}
	}
	return problems
}

func checkDeps(rel string, l layer, deps []string) []string {
	var problems []string
	// One line per package and rule: the first offending dependency is
	// enough to find the import that brought the rest.
	if l <= domain {
		if d, ok := firstWithPrefix(deps, "github.com/gofiber/"); ok {
			problems = append(problems, fmt.Sprintf("%s (%s) depends on %s: domain packages do not use Fiber; routes live in appliance/api", rel, l, d))
		}
	}
	for _, f := range forbidden {
		if !inTree(rel, f.from) {
			continue
		}
		if d, ok := firstWithPrefix(deps, f.to); ok {
			problems = append(problems, fmt.Sprintf("%s depends on %s: %s", rel, d, f.why))
		}
	}
	return problems
}

func firstWithPrefix(deps []string, prefix string) (string, bool) {
	for _, d := range deps {
		if strings.HasPrefix(d, prefix) {
			return d, true
		}
	}
	return "", false
}

// inTree reports whether rel is tree or below it ("ui/" and "ui" both name
// the ui tree).
func inTree(rel, tree string) bool {
	tree = strings.TrimSuffix(tree, "/")
	return rel == tree || strings.HasPrefix(rel, tree+"/")
}

func relative(importPath string) (string, bool) {
	if importPath == module {
		return "", true
	}
	rel, ok := strings.CutPrefix(importPath, module+"/")
	return rel, ok
}

func layerOf(rel string) (layer, bool) {
	if l, ok := layers[rel]; ok {
		return l, true
	}
	for pattern, l := range layers {
		if tree, ok := strings.CutSuffix(pattern, "/..."); ok && inTree(rel, tree) {
			return l, true
		}
	}
	return 0, false
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,Deps", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// TestCheckCatches proves the checker is not vacuous: each rule fires on a
// package graph built to break it.
func TestCheckCatches(t *testing.T) {
	m := func(rel string) string { return module + "/" + rel }
	tests := []struct {
		name string
		pkg  pkg
		want string
	}{
		{"domain imports Fiber", pkg{ImportPath: m("appliance/probe"), Deps: []string{"github.com/gofiber/fiber/v2"}}, "domain packages do not use Fiber"},
		{"ui links the store", pkg{ImportPath: m("ui/console"), Deps: []string{m("appliance/store")}}, "through omertad's API"},
		{"ui links containerd", pkg{ImportPath: m("ui"), Deps: []string{"github.com/containerd/containerd/v2/client"}}, "root-equivalent"},
		{"ui links sqlite", pkg{ImportPath: m("ui"), Deps: []string{"github.com/mattn/go-sqlite3"}}, "must not open the database"},
		{"ui links nvml", pkg{ImportPath: m("ui"), Deps: []string{"github.com/NVIDIA/go-nvml/pkg/nvml"}}, "must not touch GPUs"},
		{"console binary links containerd", pkg{ImportPath: m(consoleBinary), Deps: []string{"github.com/containerd/ttrpc"}}, "must not link a client"},
		{"console binary links sqlite", pkg{ImportPath: m(consoleBinary), Deps: []string{"github.com/mattn/go-sqlite3"}}, "must not open the database"},
		{"console binary links nvml", pkg{ImportPath: m(consoleBinary), Deps: []string{"github.com/NVIDIA/go-nvml/pkg/nvml"}}, "must not touch GPUs"},
		{"console binary links the store", pkg{ImportPath: m(consoleBinary), Deps: []string{m("appliance/store")}}, "through omertad's API"},
		{"console binary links the runtime", pkg{ImportPath: m(consoleBinary), Deps: []string{m("appliance/agents/runtime")}}, "must not drive containers"},
		{"report links hardening", pkg{ImportPath: m("firstboot/report"), Deps: []string{m("hardening")}}, "must not link the code"},
		{"core imports a domain", pkg{ImportPath: m("appliance/store"), Imports: []string{m("appliance/probe")}}, "imports only from below"},
		{"base imports core", pkg{ImportPath: m("appliance/safeio"), Imports: []string{m("appliance/config")}}, "imports only from below"},
		{"domain imports service", pkg{ImportPath: m("appliance/probe"), Imports: []string{m("appliance/api")}}, "imports only from below"},
		{"core imports core", pkg{ImportPath: m("appliance/store"), Imports: []string{m("appliance/config")}}, "imports only from below"},
		{"unknown package", pkg{ImportPath: m("appliance/utils")}, "has no layer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := check([]pkg{tt.pkg})
			if len(got) == 0 || !strings.Contains(strings.Join(got, "\n"), tt.want) {
				t.Fatalf("check = %q, want a problem containing %q", got, tt.want)
			}
		})
	}
	ok := pkg{ImportPath: m("firstboot"), Imports: []string{m("hardening"), m("appliance/probe"), m("appliance/store")}}
	if got := check([]pkg{ok}); len(got) != 0 {
		t.Fatalf("a domain using domains and core: check = %q, want none", got)
	}
}

// TestConsoleBinaryDeps: the omerta-console binary exists (so the rules
// above are not silently about nothing), links the console and the API
// client, breaks none of the rules, and of this module links only base
// packages, the configuration, the API's types and client and the ui tree:
// no domain, no store, no daemon, whatever a new import brings along.
func TestConsoleBinaryDeps(t *testing.T) {
	var p *pkg
	pkgs := listPackages(t)
	for i := range pkgs {
		if pkgs[i].ImportPath == module+"/"+consoleBinary {
			p = &pkgs[i]
		}
	}
	if p == nil {
		t.Fatalf("go list has no %s: the console's binary moved; update consoleBinary", consoleBinary)
	}
	for _, want := range []string{module + "/ui", module + "/appliance/apiclient"} {
		if !slices.Contains(p.Deps, want) {
			t.Errorf("%s does not link %s: is it still the console?", consoleBinary, want)
		}
	}
	for _, problem := range check([]pkg{*p}) {
		t.Error(problem)
	}
	for _, problem := range consoleOutsideAllowed(p.Deps) {
		t.Error(problem)
	}
}

// consoleAllowed are the module's packages above base the console's
// binary may link.
var consoleAllowed = []string{"appliance/config", "appliance/apitype", "appliance/apiclient", "ui"}

func consoleOutsideAllowed(deps []string) []string {
	var problems []string
	for _, d := range deps {
		rel, ok := relative(d)
		if !ok {
			continue
		}
		if l, ok := layerOf(rel); ok && l == base {
			continue
		}
		allowed := false
		for _, a := range consoleAllowed {
			allowed = allowed || rel == a || (a == "ui" && inTree(rel, "ui"))
		}
		if !allowed {
			problems = append(problems, fmt.Sprintf("%s links %s: the console's binary links only base packages, %s and the ui tree",
				consoleBinary, rel, strings.Join(consoleAllowed[:3], ", ")))
		}
	}
	return problems
}

// TestConsoleOutsideAllowedCatches proves the allow-list is not vacuous.
func TestConsoleOutsideAllowedCatches(t *testing.T) {
	m := func(rel string) string { return module + "/" + rel }
	ok := []string{m("ui"), m("ui/assets"), m("appliance/apiclient"), m("appliance/safeio"), m("appliance/config"), "net/http"}
	if got := consoleOutsideAllowed(ok); len(got) != 0 {
		t.Errorf("allowed deps refused: %q", got)
	}
	for _, bad := range []string{m("appliance/agents"), m("appliance/daemon"), m("firstboot"), m("appliance/api"), m("appliance/store"), m("hardening")} {
		if got := consoleOutsideAllowed([]string{bad}); len(got) != 1 {
			t.Errorf("%s: %q, want one problem", bad, got)
		}
	}
}
