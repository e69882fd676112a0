package firstboot

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/omertaos/omertaos/appliance/atomicfile"
	"github.com/omertaos/omertaos/appliance/config"
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

// resolveSite layers the site configuration under root: the image's
// /etc/omerta/omerta.yaml as it was before first boot replaced it (see
// baseLayer), then the ESP candidates. Paths and messages name the files as
// the appliance sees them (/efi/omerta.yaml), not as this process reached
// them.
func (r *runner) resolveSite() (config.Resolved, error) {
	base, err := r.baseLayer()
	if err != nil {
		return config.Resolved{}, err
	}
	layers := []config.Layer{base}
	for _, p := range SiteConfigPaths[1:] {
		layers = append(layers, config.ReadLayer(r.path(p), p))
	}
	return config.ResolveLayers(layers...), nil
}

// baseLayer returns the image's /etc/omerta/omerta.yaml as first boot first
// found it. The site step replaces that file with the resolved
// configuration; a resumed step must resolve from the same inputs, not from
// its own output, so the original is kept in the first-boot directory the
// first time round.
func (r *runner) baseLayer() (config.Layer, error) {
	snap := r.path(SiteBasePath)
	if data, err := os.ReadFile(snap); err == nil {
		var l config.Layer
		if err := json.Unmarshal(data, &l); err != nil {
			return l, fmt.Errorf("reading %s: %w", SiteBasePath, err)
		}
		return l, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return config.Layer{}, fmt.Errorf("reading %s: %w", SiteBasePath, err)
	}
	l := config.ReadLayer(r.path(config.DefaultPath), config.DefaultPath)
	data, err := json.Marshal(l)
	if err != nil {
		return l, err
	}
	if _, err := atomicfile.WriteFile(snap, data, 0o600); err != nil {
		return l, err
	}
	return l, nil
}

func (r *runner) stepSite(ctx context.Context) (any, string, error) {
	res, err := r.resolveSite()
	if err != nil {
		return nil, "", err
	}
	sd := siteData{Config: res.Config, ProfileFrom: "site", Sources: res.Sources}
	if r.opts.Profile != "" {
		sd.Config.Profile = r.opts.Profile
		sd.ProfileFrom = "flag"
	}
	for _, s := range res.Sources {
		if s.Error == "" {
			continue
		}
		// The error already leads with the file name; say it once.
		msg := strings.TrimPrefix(s.Error, s.Path+": ")
		msg = strings.TrimPrefix(msg, s.Path)
		msg = strings.TrimPrefix(msg, ":")
		r.printf("site configuration %s: %s", s.Path, strings.TrimSpace(msg))
		sd.Problems = append(sd.Problems, s.Error)
	}

	var changed []string
	note := func(c bool, p string) {
		if c {
			changed = append(changed, p)
		}
	}
	cfg := sd.Config
	c, err := r.installSiteConfig(sd)
	if err != nil {
		return nil, "", err
	}
	note(c, config.DefaultPath)
	if cfg.Hostname != "" {
		c, err := r.applyHostname(cfg.Hostname)
		if err != nil {
			return nil, "", err
		}
		note(c, HostnamePath)
	}
	netChanged, err := r.applyNetwork(cfg.Network)
	if err != nil {
		return nil, "", err
	}
	changed = append(changed, netChanged...)
	r.mid()
	sshChanged, problems, err := r.applySSH(cfg.SSH)
	if err != nil {
		return nil, "", err
	}
	changed = append(changed, sshChanged...)
	c, err = r.applyTime(cfg.Time)
	if err != nil {
		return nil, "", err
	}
	note(c, TimesyncdDropIn)

	if r.opts.Live {
		problems = append(problems, r.reloadLive(ctx, netChanged, c, cfg.SSH.Enabled)...)
	}
	for _, p := range problems {
		r.printf("site configuration could not be applied in full: %s", p)
	}
	sd.Problems = append(sd.Problems, problems...)
	r.auditExtra = map[string]any{"changed": changed, "profile": cfg.Profile, "profile_from": sd.ProfileFrom}
	return sd, "", nil
}

// installSiteConfig writes the configuration first boot resolved (all
// layers, and --profile) to /etc/omerta/omerta.yaml. omertad and
// `omerta harden --check` read only that file; without this they would judge
// the machine by the image's defaults instead of the ESP's settings. The ESP
// copy is read on the first boot only, so after it /etc is the one place an
// administrator edits.
func (r *runner) installSiteConfig(sd siteData) (bool, error) {
	var header strings.Builder
	header.WriteString("# Installed by omerta firstboot from the site configuration in force at\n")
	header.WriteString("# first boot; the signed first-boot report lists each layer and its SHA-256.\n")
	for _, s := range sd.Sources {
		switch {
		case s.Error != "":
			fmt.Fprintf(&header, "#   %s: ignored (%s)\n", s.Path, s.Error)
		case s.Present:
			fmt.Fprintf(&header, "#   %s: sha256 %s\n", s.Path, s.SHA256)
		}
	}
	if sd.ProfileFrom == "flag" {
		fmt.Fprintf(&header, "#   profile %s: from the command line\n", sd.Config.Profile)
	}
	data, err := config.Marshal(sd.Config, header.String())
	if err != nil {
		return false, err
	}
	return atomicfile.WriteFile(r.path(config.DefaultPath), data, 0o644)
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
	c, err := atomicfile.WriteFile(r.path(HostnamePath), []byte(name+"\n"), 0o644)
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

// networkUnit renders one interface as a systemd.network(5) file.
func networkUnit(i int, in config.Interface) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by omerta first boot from network.interfaces[%d] of the site configuration.\n", i)
	fmt.Fprintf(&b, "[Match]\nName=%s\n\n[Network]\n", in.Name)
	if in.DHCP {
		b.WriteString("DHCP=yes\n")
	} else {
		b.WriteString("DHCP=no\n")
		// Router advertisements would add addresses the site did not ask for.
		b.WriteString("IPv6AcceptRA=no\n")
		for _, a := range in.Addresses {
			fmt.Fprintf(&b, "Address=%s\n", a)
		}
		if in.Gateway != "" {
			fmt.Fprintf(&b, "Gateway=%s\n", in.Gateway)
		}
	}
	for _, d := range in.DNS {
		fmt.Fprintf(&b, "DNS=%s\n", d)
	}
	return b.Bytes()
}

// applyNetwork writes one .network file per configured interface and removes
// ours that the configuration no longer lists. Files sort before the image's
// catch-all DHCP file, so networkd matches the site's first.
func (r *runner) applyNetwork(n config.Network) ([]string, error) {
	dir := r.path(NetworkDir)
	want := map[string]bool{}
	var changed []string
	for i, in := range n.Interfaces {
		name := networkFileName(i, in.Name)
		want[name] = true
		c, err := atomicfile.WriteFile(filepath.Join(dir, name), networkUnit(i, in), 0o644)
		if err != nil {
			return changed, fmt.Errorf("network.interfaces[%d]: %w", i, err)
		}
		if c {
			changed = append(changed, path.Join(NetworkDir, name))
		}
	}
	old, _ := filepath.Glob(filepath.Join(dir, "50-omerta-*.network"))
	for _, p := range old {
		if want[filepath.Base(p)] {
			continue
		}
		c, err := removeFile(p)
		if err != nil {
			return changed, fmt.Errorf("network: %w", err)
		}
		if c {
			changed = append(changed, path.Join(NetworkDir, filepath.Base(p)))
		}
	}
	return changed, nil
}

func (r *runner) applyTime(t config.Time) (bool, error) {
	p := r.path(TimesyncdDropIn)
	if len(t.Servers) == 0 {
		c, err := removeFile(p)
		if err != nil {
			return false, fmt.Errorf("time.servers: %w", err)
		}
		return c, nil
	}
	body := "# Written by omerta first boot from time.servers of the site configuration.\n[Time]\nNTP=" + strings.Join(t.Servers, " ") + "\n"
	c, err := atomicfile.WriteFile(p, []byte(body), 0o644)
	if err != nil {
		return false, fmt.Errorf("time.servers: %w", err)
	}
	return c, nil
}

// sshUnit returns ssh.service's path as the appliance sees it, or "".
func (r *runner) sshUnit() string {
	for _, p := range []string{"/usr/lib/systemd/system/ssh.service", "/lib/systemd/system/ssh.service"} {
		if fi, err := os.Stat(r.path(p)); err == nil && fi.Mode().IsRegular() {
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
	var wantedBy, aliases []string
	if unit != "" {
		wantedBy, aliases, err = installSection(r.path(unit))
		if err != nil {
			return nil, nil, fmt.Errorf("ssh: %w", err)
		}
	}
	links := []string{}
	for _, t := range wantedBy {
		links = append(links, path.Join("/etc/systemd/system", t+".wants", "ssh.service"))
	}
	for _, a := range aliases {
		links = append(links, path.Join("/etc/systemd/system", a))
	}

	if !s.Enabled {
		for _, l := range links {
			if target, err := os.Readlink(r.path(l)); err == nil && target == unit {
				c, err := removeFile(r.path(l))
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

	u, found, err := lookupUser(r.path("/etc/passwd"), AdminUser)
	if err != nil {
		return nil, nil, fmt.Errorf("ssh.authorized_keys: %w", err)
	}
	home := path.Dir(path.Dir(AdminKeysPath))
	if found && u.home != "" && u.home != "/" {
		home = u.home
	}
	keysPath := path.Join(home, ".ssh", "authorized_keys")
	var body strings.Builder
	body.WriteString("# Written by omerta first boot from ssh.authorized_keys of the site configuration.\n")
	for _, k := range s.AuthorizedKeys {
		body.WriteString(strings.TrimSpace(k))
		body.WriteByte('\n')
	}
	for _, d := range []string{home, path.Join(home, ".ssh")} {
		if err := mkdirAll(r.path(d), 0o700); err != nil {
			return changed, problems, fmt.Errorf("ssh.authorized_keys: %w", err)
		}
	}
	c, err := atomicfile.WriteFile(r.path(keysPath), []byte(body.String()), 0o600)
	if err != nil {
		return changed, problems, fmt.Errorf("ssh.authorized_keys: %w", err)
	}
	if c {
		changed = append(changed, keysPath)
	}
	if found {
		for _, p := range []string{home, path.Join(home, ".ssh"), keysPath} {
			if err := chownIfNeeded(r.path(p), u.uid, u.gid); err != nil {
				problems = append(problems, fmt.Sprintf("ssh.authorized_keys: %v", err))
			}
		}
	} else {
		problems = append(problems, fmt.Sprintf("ssh.authorized_keys: user %s is not in /etc/passwd, so %s is owned by root and sshd will refuse it", AdminUser, keysPath))
	}

	if unit == "" {
		problems = append(problems, "ssh.enabled: the image has no ssh.service (openssh-server is not installed); SSH stays off")
		return changed, problems, nil
	}
	for _, l := range links {
		c, err := symlinkAtomic(unit, r.path(l))
		if err != nil {
			return changed, problems, fmt.Errorf("ssh.enabled: %w", err)
		}
		if c {
			changed = append(changed, l)
		}
	}
	return changed, problems, nil
}

// installSection reads WantedBy= and Alias= from a unit's [Install] section.
func installSection(p string) (wantedBy, aliases []string, err error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", p, err)
	}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		if section != "[Install]" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "WantedBy":
			wantedBy = append(wantedBy, strings.Fields(v)...)
		case "Alias":
			aliases = append(aliases, strings.Fields(v)...)
		}
	}
	return wantedBy, aliases, sc.Err()
}

type passwdEntry struct {
	uid, gid int
	home     string
}

// lookupUser reads an account from a passwd file under the root (not
// through NSS, which would answer for the host, not for the root).
func lookupUser(passwd, name string) (passwdEntry, bool, error) {
	data, err := os.ReadFile(passwd)
	if errors.Is(err, fs.ErrNotExist) {
		return passwdEntry{}, false, nil
	}
	if err != nil {
		return passwdEntry{}, false, fmt.Errorf("reading %s: %w", passwd, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 7 || f[0] != name {
			continue
		}
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			return passwdEntry{}, false, fmt.Errorf("%s: bad uid/gid for %s", passwd, name)
		}
		return passwdEntry{uid: uid, gid: gid, home: f[5]}, true, nil
	}
	return passwdEntry{}, false, nil
}
