package hardening

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/rootfs"
)

// Control is one hardening control: data that an auditor reads (ID, title,
// references, profiles, waiver) and the code that applies and checks it.
type Control struct {
	ID         string
	Title      string
	References []Reference
	Profiles   []config.Profile
	// Waiver, when set, says why the control is deliberately not enforced
	// on this appliance. It is still checked and reported (informational).
	Waiver string

	// applies reports whether the control has anything to act on under the
	// root; when it returns false the result is notapplicable with the
	// reason. nil means always applicable.
	applies func(e *env) (bool, string)
	// owned contributes lines to a file the hardening package owns whole
	// (see ownedFiles); Apply renders each such file from its contributors.
	owned func(e *env) (path string, lines []string)
	// apply changes shared files (metadata, keys in login.defs...) and
	// returns the paths it changed.
	apply func(e *env) ([]string, error)
	// live pushes the control into the running kernel.
	live func(e *env) error
	// check reads the real value back.
	check func(e *env) outcome
}

// In reports whether the control belongs to profile p.
func (c Control) In(p config.Profile) bool { return slices.Contains(c.Profiles, p) }

type outcome struct {
	expected, actual string
	result           Outcome
	evidence         []Evidence
}

func (c Control) applicable(e *env) bool {
	if c.applies == nil {
		return true
	}
	ok, _ := c.applies(e)
	return ok
}

func (c Control) run(e *env) Result {
	r := Result{
		ID:         c.ID,
		Title:      c.Title,
		References: c.References,
		Waiver:     c.Waiver,
		Time:       e.opts.Now().UTC(),
		Evidence:   []Evidence{},
	}
	if c.applies != nil {
		if ok, why := c.applies(e); !ok {
			r.Result = NotApplicable
			r.Actual = why
			return r
		}
	}
	o := c.check(e)
	r.Expected, r.Actual, r.Result = o.expected, o.actual, o.result
	if o.evidence != nil {
		r.Evidence = o.evidence
	}
	if c.Waiver != "" && r.Result != Error {
		r.Result = Informational
	}
	return r
}

// env is the state one Apply or Check run shares between controls: the
// options and a cache of what has been read, so that thirty sysctl controls
// read the sysctl files once.
type env struct {
	ctx  context.Context
	opts Options
	// fs is opts.Root: every path a control names is resolved inside it,
	// symlinks included, so an image's /var/run -> /run or a planted
	// ../../../etc/shadow never reaches the host running the command.
	fs    rootfs.Root
	cache map[string]readResult
	dirs  map[string]dirResult
	cmds  map[string]cmdResult
}

type dirResult struct {
	ents []fs.DirEntry
	err  error
}

// readLimit caps every file a control reads. The largest ones are
// /proc/self/mountinfo on a host with many containers and login.defs
// (12 KiB); a file larger than this is refused, not parsed.
const readLimit = 4 << 20

type readResult struct {
	data   []byte
	exists bool
	err    error
}

type cmdResult struct {
	out []byte
	err error
}

// newEnv needs normalised options (opts.fs set).
func newEnv(ctx context.Context, opts Options) *env {
	e := &env{ctx: ctx, opts: opts, fs: opts.fs}
	e.resetCache()
	return e
}

func (e *env) resetCache() {
	e.cache = map[string]readResult{}
	e.dirs = map[string]dirResult{}
	e.cmds = map[string]cmdResult{}
}

// readDir lists p (a missing directory is an error wrapping
// fs.ErrNotExist), once per check pass.
func (e *env) readDir(p string) ([]fs.DirEntry, error) {
	if r, ok := e.dirs[p]; ok {
		return r.ents, r.err
	}
	ents, err := e.fs.ReadDir(p)
	e.dirs[p] = dirResult{ents, err}
	return ents, err
}

func (e *env) profile() config.Profile { return e.opts.Profile }

func (e *env) exists(p string) bool { return e.fs.Exists(p) }

// read returns the content of p (a path on the target) and whether it
// exists; a missing file is not an error.
func (e *env) read(p string) ([]byte, bool, error) {
	if r, ok := e.cache[p]; ok {
		return r.data, r.exists, r.err
	}
	data, err := e.fs.ReadFile(p, readLimit)
	r := readResult{data: data, exists: err == nil}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		r.err = err
	}
	e.cache[p] = r
	return r.data, r.exists, r.err
}

// run runs a command once per check pass (live reads only).
func (e *env) run(name string, args ...string) ([]byte, error) {
	key := name + "\x00" + strings.Join(args, "\x00")
	if r, ok := e.cmds[key]; ok {
		return r.out, r.err
	}
	out, err := e.opts.Runner(e.ctx, name, args...)
	e.cmds[key] = cmdResult{out, err}
	return out, err
}

func sum(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

func fileEvidence(p string, data []byte, exists bool, excerpt string) Evidence {
	if !exists {
		return Evidence{Source: p, Excerpt: "(absent)"}
	}
	return Evidence{Source: p, SHA256: sum(data), Excerpt: excerpt}
}

func cmdEvidence(cmd string, out []byte, excerpt string) Evidence {
	return Evidence{Source: cmd, SHA256: sum(out), Excerpt: excerpt}
}

// writeFile writes data to p inside the root atomically (see
// rootfs.WriteFile) unless the file already has exactly this content and
// mode. It reports whether it wrote.
func (e *env) writeFile(p string, data []byte, mode os.FileMode) (bool, error) {
	changed, err := e.fs.WriteFile(p, data, mode)
	if changed {
		delete(e.cache, p)
		e.dirs = map[string]dirResult{}
	}
	return changed, err
}

// ownedFile is a file the hardening package writes whole: a header saying
// so, then the lines its controls contribute, in control order.
type ownedFile struct {
	header string
	mode   os.FileMode
}

const generatedBy = "Written by omerta harden; local changes are overwritten. Add your own settings in a separate file."

var ownedFiles = map[string]ownedFile{
	sysctlFile:   {header: "# " + generatedBy + "\n# Kernel and network hardening (KSPP, CIS Debian Linux 12 section 3.3).\n", mode: 0o644},
	modprobeFile: {header: "# " + generatedBy + "\n# Unused file systems, protocols and buses cannot be loaded.\n", mode: 0o644},
	limitsFile:   {header: "# " + generatedBy + "\n", mode: 0o644},
	coredumpFile: {header: "# " + generatedBy + "\n[Coredump]\n", mode: 0o644},
	systemFile:   {header: "# " + generatedBy + "\n[Manager]\n", mode: 0o644},
	journaldFile: {header: "# " + generatedBy + "\n[Journal]\n", mode: 0o644},
	profileFile:  {header: "# " + generatedBy + "\n", mode: 0o644},
	sshdFile:     {header: "# " + generatedBy + "\n# sshd keeps the first value it reads; this file sorts before the distribution's settings.\n", mode: 0o600},
	auditFile:    {header: "## " + generatedBy + "\n", mode: 0o640},
	nftFile:      {header: "#!/usr/sbin/nft -f\n# " + generatedBy + "\n", mode: 0o755},
	issueNetFile: {mode: 0o644},
	motdFile:     {mode: 0o644},
}

// writeOwned renders and writes every owned file that at least one
// applicable, non-waived control contributes to.
func writeOwned(e *env, ctrls []Control) ([]string, error) {
	contents := map[string][]string{}
	var order []string
	for _, c := range ctrls {
		if c.Waiver != "" || c.owned == nil || !c.applicable(e) {
			continue
		}
		p, lines := c.owned(e)
		if _, ok := ownedFiles[p]; !ok {
			return nil, fmt.Errorf("control %s writes %s, which is not an owned file", c.ID, p)
		}
		if _, seen := contents[p]; !seen {
			order = append(order, p)
		}
		contents[p] = append(contents[p], lines...)
	}
	var changed []string
	for _, p := range order {
		spec := ownedFiles[p]
		var b strings.Builder
		b.WriteString(spec.header)
		for _, l := range contents[p] {
			b.WriteString(l)
			b.WriteByte('\n')
		}
		wrote, err := e.writeFile(p, []byte(b.String()), spec.mode)
		if err != nil {
			return changed, err
		}
		if wrote {
			changed = append(changed, p)
		}
	}
	return changed, nil
}

// profiles helpers for the catalog.
var (
	all        = []config.Profile{config.ProfileUser, config.ProfilePro, config.ProfileEnterprise}
	proUp      = []config.Profile{config.ProfilePro, config.ProfileEnterprise}
	enterprise = []config.Profile{config.ProfileEnterprise}
)

func cis(id string) Reference  { return Reference{Scheme: "CIS-Debian12", ID: id} }
func kspp(id string) Reference { return Reference{Scheme: "KSPP", ID: id} }
func srg(id string) Reference  { return Reference{Scheme: "DISA-SRG", ID: id} }

func refs(r ...Reference) []Reference { return r }

// lineMatching returns the first line of data for which match is true.
func lineMatching(data []byte, match func(string) bool) string {
	for _, l := range strings.Split(string(data), "\n") {
		if match(strings.TrimSpace(l)) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}
