package firstboot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"path"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"github.com/coreos/go-systemd/v22/unit"

	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/rootfs"
	"github.com/omertaos/omertaos/appliance/safeyaml"
)

// siteData is what the site step journals: the configuration in force for
// every later step, and what the report says about where it came from.
type siteData struct {
	Config config.Config `json:"config"`
	// ProfileFrom is "site" or "flag" (--profile).
	ProfileFrom string          `json:"profile_from"`
	Sources     []config.Source `json:"sources"`
	// Problems are the errors of ignored layers, then what could not be
	// applied.
	Problems []string `json:"problems"`
}

func (r *runner) site() (siteData, error) {
	var sd siteData
	ok, err := r.j.decode(StepSite, &sd)
	if err != nil {
		return sd, err
	}
	if !ok {
		return sd, errors.New("the site step has not run")
	}
	return sd, nil
}

// siteLayers reads the layers of the site configuration under root: the
// image's /etc/omerta/omerta.yaml as it was before first boot replaced it
// (see baseLayer), then the ESP candidates. Paths and messages name the
// files as the appliance sees them (/efi/omerta.yaml), not as this process
// reached them. Every read is bounded and refuses FIFOs and devices (see
// config.ReadLayer): a bad file on the ESP never stops first boot.
func (r *runner) siteLayers() ([]config.Layer, error) {
	base, err := r.baseLayer()
	if err != nil {
		return nil, err
	}
	layers := []config.Layer{base}
	for _, p := range SiteConfigPaths[1:] {
		layers = append(layers, r.readLayer(p))
	}
	return layers, nil
}

// siteBaseLimit caps the snapshot of the image's file: JSON around at most
// config.MaxFileSize bytes of base64.
const siteBaseLimit = 4*config.MaxFileSize + 4096

// baseLayer returns the image's /etc/omerta/omerta.yaml as first boot first
// found it. The site step replaces that file with the resolved
// configuration; a resumed step must resolve from the same inputs, not from
// its own output, so the original is kept in the first-boot directory the
// first time round.
func (r *runner) baseLayer() (config.Layer, error) {
	if data, err := r.fs.ReadFile(SiteBasePath, siteBaseLimit); err == nil {
		var l config.Layer
		if err := json.Unmarshal(data, &l); err != nil {
			return l, fmt.Errorf("reading %s: %w", SiteBasePath, err)
		}
		return l, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return config.Layer{}, fmt.Errorf("reading %s: %w", SiteBasePath, err)
	}
	l := r.readLayer(config.DefaultPath)
	data, err := json.Marshal(l)
	if err != nil {
		return l, err
	}
	if _, err := r.fs.WriteFile(SiteBasePath, data, 0o600); err != nil {
		return l, err
	}
	return l, nil
}

// resolveInstallable resolves the layers (and --profile) and renders the
// result as /etc/omerta/omerta.yaml. A configuration that cannot be
// installed (config.Marshal refuses what would not read back, for example
// over config.MaxFileSize) is no reason to stop first boot: the highest
// layer that contributed is set aside, saying why, and the rest resolved
// again, down to the defaults.
func (r *runner) resolveInstallable(layers []config.Layer) (siteData, []byte, error) {
	layers = append([]config.Layer(nil), layers...)
	for {
		res := config.ResolveLayers(layers...)
		sd := siteData{Config: res.Config, ProfileFrom: "site", Sources: res.Sources}
		if r.opts.Profile != "" {
			sd.Config.Profile = r.opts.Profile
			sd.ProfileFrom = "flag"
		}
		err := pinnedByFirstBoot(sd.Config)
		var data []byte
		if err == nil {
			data, err = config.Marshal(sd.Config, siteHeader(sd)...)
		}
		if err == nil {
			return sd, data, nil
		}
		i := len(res.Sources) - 1
		for i >= 0 && (!res.Sources[i].Present || res.Sources[i].Error != "") {
			i--
		}
		if i < 0 {
			return sd, nil, fmt.Errorf("installing %s: %w", config.DefaultPath, err)
		}
		layers[i].ReadError = fmt.Sprintf("%s: set aside, because the configuration with it cannot be installed: %v", layers[i].Path, err)
	}
}

// pinnedByFirstBoot refuses a configuration that moves what first boot has
// already used by the time the site step runs: its journal, keys, token
// and the database its step table and audit records went to all live in
// StateDir, so a site file that moved daemon.state_dir would have omertad
// open a second, empty database and start a second audit chain.
func pinnedByFirstBoot(c config.Config) error {
	if c.Daemon.StateDir != StateDir {
		return fmt.Errorf("daemon.state_dir: %q: the appliance keeps its state in %s; a site file may not move it", c.Daemon.StateDir, StateDir)
	}
	return nil
}

func (r *runner) stepSite(ctx context.Context) (any, string, error) {
	layers, err := r.siteLayers()
	if err != nil {
		return nil, "", err
	}
	sd, installed, err := r.resolveInstallable(layers)
	if err != nil {
		return nil, "", err
	}
	for _, s := range sd.Sources {
		if s.Error == "" {
			continue
		}
		// The error already leads with the file name; say it once.
		msg := strings.TrimPrefix(s.Error, s.Path+": ")
		msg = strings.TrimPrefix(msg, s.Path)
		msg = strings.TrimPrefix(msg, ":")
		r.printf("site configuration %s: %s", s.Path, safeyaml.Escape(strings.TrimSpace(msg)))
		sd.Problems = append(sd.Problems, s.Error)
	}
	c, err := r.fs.WriteFile(config.DefaultPath, installed, 0o644)
	if err != nil {
		return nil, "", fmt.Errorf("installing %s: %w", config.DefaultPath, err)
	}
	var changed []string
	if c {
		changed = append(changed, config.DefaultPath)
	}
	applied, problems, err := r.applySite(ctx, sd.Config)
	if err != nil {
		return nil, "", err
	}
	changed = append(changed, applied...)
	for _, p := range problems {
		r.printf("site configuration could not be applied in full: %s", safeyaml.Escape(p))
	}
	sd.Problems = append(sd.Problems, problems...)
	r.auditExtra = map[string]any{"changed": changed, "profile": sd.Config.Profile, "profile_from": sd.ProfileFrom}
	return sd, "", nil
}

// applySite writes the files that carry cfg into the system (hostname,
// networkd units, SSH keys and links, timesyncd) and, when live, tells the
// services. It returns the files it changed and what it could not apply.
func (r *runner) applySite(ctx context.Context, cfg config.Config) (changed, problems []string, err error) {
	if cfg.Hostname != "" {
		c, err := r.applyHostname(cfg.Hostname)
		if err != nil {
			return nil, nil, err
		}
		if c {
			changed = append(changed, HostnamePath)
		}
	}
	netChanged, problems, err := r.applyNetwork(cfg.Network)
	if err != nil {
		return nil, nil, err
	}
	changed = append(changed, netChanged...)
	r.mid()
	sshChanged, sshProblems, err := r.applySSH(cfg.SSH)
	if err != nil {
		return nil, nil, err
	}
	changed = append(changed, sshChanged...)
	problems = append(problems, sshProblems...)
	timeChanged, timeProblems, err := r.applyTime(cfg.Time)
	if err != nil {
		return nil, nil, err
	}
	if timeChanged {
		changed = append(changed, TimesyncdDropIn)
	}
	problems = append(problems, timeProblems...)
	if r.opts.Live {
		problems = append(problems, r.reloadLive(ctx, netChanged, timeChanged, cfg.SSH.Enabled)...)
	}
	return changed, problems, nil
}

// siteHeader is the comment on top of the installed /etc/omerta/omerta.yaml.
// A layer's error quotes the file it came from (a key holding newlines, say),
// so it is quoted here, and config.Marshal escapes every line again: no text
// from a site file can leave the comment and become configuration.
func siteHeader(sd siteData) []string {
	h := []string{
		"Installed by omerta firstboot from the site configuration in force at",
		"first boot; the signed first-boot report lists each layer and its SHA-256.",
	}
	for _, s := range sd.Sources {
		switch {
		case s.Error != "":
			h = append(h, fmt.Sprintf("  %s: ignored: %s", s.Path, strconv.Quote(s.Error)))
		case s.Present:
			h = append(h, fmt.Sprintf("  %s: sha256 %s", s.Path, s.SHA256))
		}
	}
	if sd.ProfileFrom == "flag" {
		h = append(h, fmt.Sprintf("  profile %s: from the command line", sd.Config.Profile))
	}
	return h
}

// reloadLive tells the running services about the files just written. A
// failure here is a problem for the report, not a reason to stop first boot:
// the files are in place for the next boot.
func (r *runner) reloadLive(ctx context.Context, netChanged []string, timeChanged, ssh bool) []string {
	var problems []string
	if len(netChanged) > 0 {
		if err := r.opts.Exec(ctx, "networkctl", "reload"); err != nil {
			problems = append(problems, "network: reloading systemd-networkd: "+err.Error())
		}
	}
	if timeChanged {
		if err := r.opts.Exec(ctx, "systemctl", "try-restart", "--no-block", "systemd-timesyncd.service"); err != nil {
			problems = append(problems, "time.servers: restarting systemd-timesyncd: "+err.Error())
		}
	}
	if ssh && r.sshUnit() != "" {
		if err := r.opts.Exec(ctx, "systemctl", "start", "--no-block", "ssh.service"); err != nil {
			problems = append(problems, "ssh.enabled: starting ssh.service: "+err.Error())
		}
	}
	return problems
}

func (r *runner) applyHostname(name string) (bool, error) {
	c, err := r.fs.WriteFile(HostnamePath, []byte(name+"\n"), 0o644)
	if err != nil {
		return false, fmt.Errorf("hostname: %w", err)
	}
	if r.opts.Live {
		if err := r.opts.Sethostname(name); err != nil {
			return c, fmt.Errorf("hostname: %w", err)
		}
	}
	return c, nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// networkFileName is unique per entry (the index) and readable (the name).
func networkFileName(i int, name string) string {
	return fmt.Sprintf("50-omerta-%02d-%s.network", i, unsafeName.ReplaceAllString(name, "_"))
}

// unitValue refuses a value that could end a line, start a section or be
// read as something else in a unit file: whitespace, control characters,
// backslashes (escapes), quotes. The configuration was validated; this
// guards the generated file against a validator that let something through.
func unitValue(field, s string) error {
	if s == "" {
		return fmt.Errorf("%s: empty", field)
	}
	for _, c := range s {
		if c <= ' ' || c == 0x7f || c == '\\' || c == '"' || c == '\'' || !unicode.IsPrint(c) {
			return fmt.Errorf("%s: %s cannot be written into a unit file", field, strconv.Quote(s))
		}
	}
	return nil
}

// networkUnit renders one interface as a systemd.network(5) file. Addresses
// are written in the form netip prints them, not as the site spelled them.
func networkUnit(i int, in config.Interface) ([]byte, error) {
	f := fmt.Sprintf("network.interfaces[%d]", i)
	if err := unitValue(f+".name", in.Name); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by omerta first boot from %s of the site configuration.\n", f)
	fmt.Fprintf(&b, "[Match]\nName=%s\n\n[Network]\n", in.Name)
	if in.DHCP {
		b.WriteString("DHCP=yes\n")
	} else {
		b.WriteString("DHCP=no\n")
		// Router advertisements would add addresses the site did not ask for.
		b.WriteString("IPv6AcceptRA=no\n")
		for j, a := range in.Addresses {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				return nil, fmt.Errorf("%s.addresses[%d]: %w", f, j, err)
			}
			fmt.Fprintf(&b, "Address=%s\n", p)
		}
		if in.Gateway != "" {
			g, err := unitAddr(f+".gateway", in.Gateway)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(&b, "Gateway=%s\n", g)
		}
	}
	for j, d := range in.DNS {
		a, err := unitAddr(fmt.Sprintf("%s.dns[%d]", f, j), d)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "DNS=%s\n", a)
	}
	return b.Bytes(), nil
}

func unitAddr(field, s string) (string, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", fmt.Errorf("%s: %w", field, err)
	}
	out := a.String()
	return out, unitValue(field, out)
}

// applyNetwork writes one .network file per configured interface and removes
// ours that the configuration no longer lists. Files sort before the image's
// catch-all DHCP file, so networkd matches the site's first. An interface
// that cannot be rendered safely is left out and reported.
func (r *runner) applyNetwork(n config.Network) (changed, problems []string, err error) {
	want := map[string]bool{}
	for i, in := range n.Interfaces {
		body, err := networkUnit(i, in)
		if err != nil {
			problems = append(problems, fmt.Sprintf("network: %v; that interface is left out", err))
			continue
		}
		name := networkFileName(i, in.Name)
		want[name] = true
		c, err := r.fs.WriteFile(path.Join(NetworkDir, name), body, 0o644)
		if err != nil {
			return changed, problems, fmt.Errorf("network.interfaces[%d]: %w", i, err)
		}
		if c {
			changed = append(changed, path.Join(NetworkDir, name))
		}
	}
	old, err := r.fs.Glob(path.Join(NetworkDir, "50-omerta-*.network"))
	if err != nil {
		return changed, problems, fmt.Errorf("network: %w", err)
	}
	for _, p := range old {
		if want[path.Base(p)] {
			continue
		}
		c, err := r.fs.Remove(p)
		if err != nil {
			return changed, problems, fmt.Errorf("network: %w", err)
		}
		if c {
			changed = append(changed, p)
		}
	}
	return changed, problems, nil
}

func (r *runner) applyTime(t config.Time) (changed bool, problems []string, err error) {
	var servers []string
	for i, s := range t.Servers {
		if err := unitValue(fmt.Sprintf("time.servers[%d]", i), s); err != nil {
			problems = append(problems, fmt.Sprintf("%v; that server is left out", err))
			continue
		}
		servers = append(servers, s)
	}
	if len(servers) == 0 {
		c, err := r.fs.Remove(TimesyncdDropIn)
		if err != nil {
			return false, problems, fmt.Errorf("time.servers: %w", err)
		}
		return c, problems, nil
	}
	body := "# Written by omerta first boot from time.servers of the site configuration.\n[Time]\nNTP=" + strings.Join(servers, " ") + "\n"
	c, err := r.fs.WriteFile(TimesyncdDropIn, []byte(body), 0o644)
	if err != nil {
		return false, problems, fmt.Errorf("time.servers: %w", err)
	}
	return c, problems, nil
}

// sshUnit returns ssh.service's path as the appliance sees it, or "".
func (r *runner) sshUnit() string {
	for _, p := range []string{"/usr/lib/systemd/system/ssh.service", "/lib/systemd/system/ssh.service"} {
		if fi, err := r.fs.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// applySSH installs the admin's keys and enables ssh.service the way
// `systemctl enable` would (the [Install] section's links), or removes those
// links when the site leaves SSH off.
func (r *runner) applySSH(s config.SSH) (changed, problems []string, err error) {
	unit := r.sshUnit()
	links, err := r.sshLinks(unit)
	if err != nil {
		return nil, nil, err
	}
	if !s.Enabled {
		for _, l := range links {
			if target, err := r.fs.Readlink(l); err == nil && target == unit {
				c, err := r.fs.Remove(l)
				if err != nil {
					return changed, problems, fmt.Errorf("ssh: %w", err)
				}
				if c {
					changed = append(changed, l)
				}
			}
		}
		return changed, problems, nil
	}
	changed, problems, err = r.installKeys(s.AuthorizedKeys)
	if err != nil {
		return changed, problems, err
	}
	if unit == "" {
		problems = append(problems, "ssh.enabled: the image has no ssh.service (openssh-server is not installed); SSH stays off")
		return changed, problems, nil
	}
	for _, l := range links {
		c, err := r.fs.Symlink(unit, l)
		if err != nil {
			return changed, problems, fmt.Errorf("ssh.enabled: %w", err)
		}
		if c {
			changed = append(changed, l)
		}
	}
	return changed, problems, nil
}

// sshLinks are the links `systemctl enable ssh.service` would make, from
// the unit's [Install] section; none without a unit.
func (r *runner) sshLinks(unit string) ([]string, error) {
	if unit == "" {
		return nil, nil
	}
	wantedBy, aliases, err := r.installSection(unit)
	if err != nil {
		return nil, fmt.Errorf("ssh: %w", err)
	}
	var links []string
	for _, t := range wantedBy {
		links = append(links, path.Join("/etc/systemd/system", t+".wants", "ssh.service"))
	}
	for _, a := range aliases {
		links = append(links, path.Join("/etc/systemd/system", a))
	}
	return links, nil
}

// installKeys writes the admin's authorized_keys, one validated key per
// line, owned by the admin account when the image has it.
func (r *runner) installKeys(keys []string) (changed, problems []string, err error) {
	u, err := r.fs.LookupUser(AdminUser)
	found := err == nil
	if err != nil && !errors.Is(err, rootfs.ErrNotFound) {
		return nil, nil, fmt.Errorf("ssh.authorized_keys: %w", err)
	}
	home := path.Dir(path.Dir(AdminKeysPath))
	if found && u.Home != "" && u.Home != "/" && path.IsAbs(u.Home) {
		home = path.Clean(u.Home)
	}
	keysPath := path.Join(home, ".ssh", "authorized_keys")
	var body strings.Builder
	body.WriteString("# Written by omerta first boot from ssh.authorized_keys of the site configuration.\n")
	for i, k := range keys {
		k = strings.TrimSpace(k)
		// One key, one line: a key that could start another line would
		// let the site file write a second, unvalidated key.
		if strings.ContainsFunc(k, func(c rune) bool { return c != ' ' && !unicode.IsPrint(c) }) {
			problems = append(problems, fmt.Sprintf("ssh.authorized_keys[%d]: holds a control character; left out", i))
			continue
		}
		body.WriteString(k)
		body.WriteByte('\n')
	}
	for _, d := range []string{home, path.Join(home, ".ssh")} {
		if err := r.fs.MkdirAll(d, 0o700); err != nil {
			return changed, problems, fmt.Errorf("ssh.authorized_keys: %w", err)
		}
	}
	c, err := r.fs.WriteFile(keysPath, []byte(body.String()), 0o600)
	if err != nil {
		return changed, problems, fmt.Errorf("ssh.authorized_keys: %w", err)
	}
	if c {
		changed = append(changed, keysPath)
	}
	if !found {
		problems = append(problems, fmt.Sprintf("ssh.authorized_keys: user %s is not in /etc/passwd, so %s is owned by root and sshd will refuse it", AdminUser, keysPath))
		return changed, problems, nil
	}
	for _, p := range []string{home, path.Join(home, ".ssh"), keysPath} {
		if err := r.fs.Lchown(p, u.UID, u.GID); err != nil {
			problems = append(problems, fmt.Sprintf("ssh.authorized_keys: %v", err))
		}
	}
	return changed, problems, nil
}

// unitFileLimit caps a unit file read for its [Install] section; systemd's
// own units are a few KiB.
const unitFileLimit = 1 << 20

// unitNameRE is what WantedBy= and Alias= may name: a unit file name, never
// a path (the link is made in /etc/systemd/system under that name).
var unitNameRE = regexp.MustCompile(`^[A-Za-z0-9:_.@-]+\.[a-z]+$`)

// installSection reads WantedBy= and Alias= from a unit's [Install] section,
// with go-systemd's parser (continuation lines, comments and quoting as
// systemd reads them). An empty assignment resets the list, as in systemd.
func (r *runner) installSection(p string) (wantedBy, aliases []string, err error) {
	data, err := r.fs.ReadFile(p, unitFileLimit)
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", p, err)
	}
	opts, err := unit.DeserializeOptions(bytes.NewReader(data))
	if err != nil {
		return nil, nil, fmt.Errorf("parsing %s: %w", p, err)
	}
	for _, o := range opts {
		if o.Section != "Install" {
			continue
		}
		var list *[]string
		switch o.Name {
		case "WantedBy":
			list = &wantedBy
		case "Alias":
			list = &aliases
		default:
			continue
		}
		// go-systemd keeps a continuation's backslash and newline in the
		// value; systemd reads them as a space.
		value := strings.ReplaceAll(o.Value, "\\\n", " ")
		if strings.TrimSpace(value) == "" {
			*list = nil
			continue
		}
		for _, name := range strings.Fields(value) {
			if !unitNameRE.MatchString(name) {
				return nil, nil, fmt.Errorf("%s: [Install] %s=%s is not a unit name", p, o.Name, strconv.Quote(name))
			}
			*list = append(*list, name)
		}
	}
	return wantedBy, aliases, nil
}

// readLayer reads the site file at p (as the appliance names it) inside the
// root, so that a link planted in an image tree, even as the last component,
// resolves inside it.
func (r *runner) readLayer(p string) config.Layer {
	data, err := r.fs.ReadFile(p, config.MaxFileSize)
	return config.LayerFrom(p, data, err)
}
