// Package config loads and validates the site configuration, omerta.yaml.
//
// One file shape serves two places: /etc/omerta/omerta.yaml, written into the
// image, and an omerta.yaml that an administrator drops on the boot (ESP)
// partition before the first boot. The daemon refuses to start on a bad file
// (Load); first boot never blocks on one, it records the problem and keeps the
// safe default (Resolve).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/goccy/go-yaml"

	"github.com/omertaos/omertaos/appliance/safeio"
	"github.com/omertaos/omertaos/appliance/safeyaml"
	"github.com/omertaos/omertaos/appliance/version"
)

// DefaultPath is where the image installs the site configuration.
var DefaultPath = "/etc/omerta/omerta.yaml"

// Version is the configuration format this binary reads and writes. A file
// may say `version: 1` or nothing; a later number is refused, because its
// fields may mean what this binary cannot know.
const Version = 1

// StateFile is the name of omertad's database inside daemon.state_dir.
const StateFile = "state.db"

// MaxFileSize caps a configuration file: a full one is about 2 KiB, and
// every read of a file an administrator (or an attacker) dropped on the ESP
// must be bounded.
const MaxFileSize = 64 << 10

// The most entries each list may hold. They are far above any real site and
// far below what would make first boot's generated files unwieldy.
const (
	MaxInterfaces     = 32
	MaxAddresses      = 16 // per interface
	MaxDNS            = 8  // per interface
	MaxAuthorizedKeys = 64
	MaxTimeServers    = 16
	// MaxKeyLine is one authorized_keys line: an 8192-bit RSA key with a
	// comment fits.
	MaxKeyLine = 2048
)

// limits bound the YAML of a configuration file before it is decoded.
func limits() safeyaml.Limits {
	l := safeyaml.DefaultLimits()
	l.MaxBytes = MaxFileSize
	l.MaxDepth = 8 // the deepest field is network.interfaces[i].dns[j]
	l.MaxNodes = 4096
	return l
}

// Profile names a hardening level, a set of compatibility thresholds and
// policy defaults.
type Profile string

// The profiles, from the most permissive to the strictest.
const (
	ProfileUser       Profile = "user"
	ProfilePro        Profile = "pro"
	ProfileEnterprise Profile = "enterprise"
)

// Profiles lists every profile in order of strictness.
var Profiles = []Profile{ProfileUser, ProfilePro, ProfileEnterprise}

// ParseProfile returns the profile named s, or an error naming the choices.
func ParseProfile(s string) (Profile, error) {
	for _, p := range Profiles {
		if string(p) == s {
			return p, nil
		}
	}
	return "", fmt.Errorf("profile %q is not one of user, pro, enterprise", s)
}

// Config is the whole site configuration. Every field has a default, so an
// empty file is a valid file.
type Config struct {
	// Version of the file format; absent means 1. See Version.
	Version int `yaml:"version" json:"version"`
	// Profile selects hardening, compatibility thresholds and policy defaults.
	Profile Profile `yaml:"profile" json:"profile"`
	// Hostname, when set, replaces the generated "omerta-XXXXXX" name.
	Hostname  string    `yaml:"hostname" json:"hostname,omitempty"`
	Daemon    Daemon    `yaml:"daemon" json:"daemon"`
	Console   Console   `yaml:"console" json:"console"`
	Network   Network   `yaml:"network" json:"network"`
	SSH       SSH       `yaml:"ssh" json:"ssh"`
	Time      Time      `yaml:"time" json:"time"`
	Firstboot Firstboot `yaml:"firstboot" json:"firstboot"`
	Probe     Probe     `yaml:"probe" json:"probe"`
	Agents    Agents    `yaml:"agents" json:"agents"`
	Gateway   Gateway   `yaml:"gateway" json:"gateway"`
}

// Daemon configures omertad.
type Daemon struct {
	// Socket is the unix socket of the internal API.
	Socket string `yaml:"socket" json:"socket"`
	// SocketGroup, when set, owns the socket so that its members (the console
	// user) may connect; mode is always 0660.
	SocketGroup string `yaml:"socket_group" json:"socket_group,omitempty"`
	// StateDir holds state.db.
	StateDir string `yaml:"state_dir" json:"state_dir"`
	// LogLevel is one of debug, info, warn, error.
	LogLevel string `yaml:"log_level" json:"log_level"`
	// ShutdownTimeout bounds a graceful stop after SIGTERM.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout" json:"shutdown_timeout"`
}

// Console configures the web console.
type Console struct {
	// Port is the HTTPS port that the console socket listens on.
	Port int `yaml:"port" json:"port"`
}

// Network holds static addressing; with no interfaces listed, every wired
// link uses DHCP.
type Network struct {
	Interfaces []Interface `yaml:"interfaces" json:"interfaces,omitempty"`
}

// Interface is one statically configured link.
type Interface struct {
	// Name is the kernel name ("enp1s0") or a shell glob ("en*").
	Name string `yaml:"name" json:"name"`
	// DHCP turns DHCP on for this link instead of static addresses.
	DHCP bool `yaml:"dhcp" json:"dhcp,omitempty"`
	// Addresses in CIDR form, IPv4 or IPv6.
	Addresses []string `yaml:"addresses" json:"addresses,omitempty"`
	Gateway   string   `yaml:"gateway" json:"gateway,omitempty"`
	DNS       []string `yaml:"dns" json:"dns,omitempty"`
}

// SSH is off unless enabled, and key-only when on.
type SSH struct {
	Enabled        bool     `yaml:"enabled" json:"enabled"`
	AuthorizedKeys []string `yaml:"authorized_keys" json:"authorized_keys,omitempty"`
}

// Time lists NTP servers; empty means systemd-timesyncd's defaults.
type Time struct {
	Servers []string `yaml:"servers" json:"servers,omitempty"`
}

// Firstboot tunes the first boot.
type Firstboot struct {
	// TokenTTL is how long the one-time setup token stays valid if unused.
	TokenTTL time.Duration `yaml:"token_ttl" json:"token_ttl"`
	// Lynis runs a Lynis audit during first boot when Lynis is installed.
	// A pointer, because an absent key means "yes".
	Lynis *bool `yaml:"lynis" json:"lynis"`
}

// Probe tunes the periodic hardware probe in omertad.
type Probe struct {
	// Interval between drift probes; 0 disables the timer.
	Interval time.Duration `yaml:"interval" json:"interval"`
}

// StateDBPath is omertad's database: state.db in daemon.state_dir. Every
// reader of the database derives its path here.
func (c Config) StateDBPath() string { return filepath.Join(c.Daemon.StateDir, StateFile) }

// LynisEnabled reports whether first boot should run Lynis.
func (f Firstboot) LynisEnabled() bool { return f.Lynis == nil || *f.Lynis }

// Default returns the configuration used when no file says otherwise.
func Default() Config {
	return Config{
		Version: Version,
		Profile: ProfileUser,
		Daemon: Daemon{
			Socket:          "/run/omerta/omertad.sock",
			StateDir:        "/var/lib/omerta",
			LogLevel:        "info",
			ShutdownTimeout: 10 * time.Second,
		},
		Console:   Console{Port: 443},
		Firstboot: Firstboot{TokenTTL: 24 * time.Hour},
		Probe:     Probe{Interval: time.Hour},
		Agents:    DefaultAgents(),
		Gateway:   DefaultGateway(),
	}
}

// FieldError says which field of which file is wrong and why.
type FieldError struct {
	File   string // file name, for the message
	Field  string // dotted path, e.g. "network.interfaces[0].addresses[1]"
	Value  string // the offending value as written, empty when absent
	Reason string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	b.WriteString(e.Field)
	if e.Value != "" {
		// Quoted, so that no control character in the value reaches a
		// console or a generated file; shortened, so that a 60 KiB value
		// does not make a 60 KiB message.
		fmt.Fprintf(&b, ": %q", shorten(e.Value, 100))
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	return b.String()
}

// ErrNotFound is returned (wrapped) by Load when the file does not exist.
var ErrNotFound = errors.New("configuration file not found")

// Load reads path over the defaults. A missing file is ErrNotFound; callers
// that accept "no file" check for it. A FIFO, a device or a directory is
// refused at once (safeio.ErrNotRegular), and so is a file over MaxFileSize.
func Load(path string) (Config, error) {
	data, err := safeio.ReadFile(path, MaxFileSize)
	if errors.Is(err, os.ErrNotExist) {
		return Default(), fmt.Errorf("%s: %w", path, ErrNotFound)
	}
	if err != nil {
		return Default(), fmt.Errorf("configuration: %w", err)
	}
	return Parse(data, path, Default())
}

// Parse decodes data over base, strictly, and validates the result. name
// labels messages. On error the returned Config is base, untouched.
//
// The YAML is bounded before it is decoded (see limits): one document, no
// anchors or aliases, a few levels deep. A version this binary does not read
// is refused before any field is looked at.
func Parse(data []byte, name string, base Config) (Config, error) {
	if err := checkVersion(data); err != nil {
		err.File = name
		return base, err
	}
	cfg := base
	// Copy slices and pointers so that decoding never writes through to base.
	cfg.Network.Interfaces = append([]Interface(nil), base.Network.Interfaces...)
	for i := range cfg.Network.Interfaces {
		in := &cfg.Network.Interfaces[i]
		in.Addresses = append([]string(nil), in.Addresses...)
		in.DNS = append([]string(nil), in.DNS...)
	}
	cfg.SSH.AuthorizedKeys = append([]string(nil), base.SSH.AuthorizedKeys...)
	cfg.Time.Servers = append([]string(nil), base.Time.Servers...)
	cfg.Agents.Registries = append([]string(nil), base.Agents.Registries...)
	cfg.Gateway.Upstreams = append([]string(nil), base.Gateway.Upstreams...)
	cfg.Gateway.Backends = append([]GatewayBackend(nil), base.Gateway.Backends...)
	for i := range cfg.Gateway.Backends {
		cfg.Gateway.Backends[i].Models = append([]string(nil), cfg.Gateway.Backends[i].Models...)
	}
	if base.Firstboot.Lynis != nil {
		v := *base.Firstboot.Lynis
		cfg.Firstboot.Lynis = &v
	}
	if len(bytes.TrimSpace(data)) > 0 {
		if err := safeyaml.Unmarshal(data, &cfg, limits()); err != nil {
			return base, decodeError(name, err)
		}
	}
	if err := cfg.Validate(); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			fe.File = name
		}
		return base, err
	}
	return cfg, nil
}

// checkVersion reads only the top-level version, so that a file written for
// a later OMERTAOS is refused as such, not for the first new field in it.
// Anything else wrong with the file is left to the strict decode.
func checkVersion(data []byte) *FieldError {
	var top map[string]any
	if safeyaml.Unmarshal(data, &top, limits()) != nil {
		return nil
	}
	v, ok := top["version"]
	if !ok {
		return nil
	}
	var n int64
	switch x := v.(type) {
	case uint64:
		if x > 1<<31 {
			return versionError(fmt.Sprint(x))
		}
		n = int64(x)
	case int64:
		n = x
	default:
		return nil // not a number: the strict decode says so
	}
	if n == Version {
		return nil
	}
	return versionError(fmt.Sprint(n))
}

func versionError(v string) *FieldError {
	if strings.HasPrefix(v, "-") || v == "0" {
		return &FieldError{Field: "version", Value: v, Reason: fmt.Sprintf("must be %d (or left out)", Version)}
	}
	return &FieldError{Field: "version", Value: v, Reason: fmt.Sprintf(
		"is not understood by this OMERTAOS (%s, which reads version %d); upgrade OMERTAOS to a release that reads configuration version %s",
		version.Get().Version, Version, v)}
}

// decodeError puts the file's name in front of safeyaml's one-line message:
// "FILE:LINE:COL: ..." when the position is known, "FILE: ..." otherwise.
func decodeError(name string, err error) error {
	var ye *safeyaml.Error
	if errors.As(err, &ye) && ye.HasPosition() {
		return fmt.Errorf("%s:%w", name, err)
	}
	return fmt.Errorf("%s: %w", name, err)
}

var (
	hostnameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	ifnameRE   = regexp.MustCompile(`^[A-Za-z0-9_.*?\[\]-]{1,15}$`)
	// An OpenSSH public key line: type, base64 blob, optional comment.
	sshKeyRE = regexp.MustCompile(`^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( .*)?$`)
	ntpRE    = regexp.MustCompile(`^[A-Za-z0-9.:-]{1,253}$`)
	// A group name as Debian's adduser accepts it by default.
	groupRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,31}$`)
)

// Validate checks every field and returns the first problem as a *FieldError.
func (c *Config) Validate() error {
	for _, check := range []func() error{c.validateTop, c.Daemon.validate, c.Network.validate, c.SSH.validate, c.Time.validate, c.validateTimers, c.Agents.validate, c.Gateway.validate} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func bad(field, value, reason string) error {
	return &FieldError{Field: field, Value: value, Reason: reason}
}

// tooMany refuses a list longer than max; every list written into a
// generated file is bounded.
func tooMany(field string, n, max int) error {
	if n <= max {
		return nil
	}
	return bad(field, "", fmt.Sprintf("lists %d entries; at most %d are accepted", n, max))
}

// printable reports whether s holds no control character (C0, DEL, C1), no
// line or paragraph separator, no bidirectional override: nothing that
// could end a line or rewrite a terminal where s is written.
func printable(s string) bool {
	for _, r := range s {
		if r != ' ' && !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func (c *Config) validateTop() error {
	switch {
	case c.Version > Version:
		return versionError(fmt.Sprint(c.Version))
	case c.Version != Version:
		return bad("version", fmt.Sprint(c.Version), fmt.Sprintf("must be %d (or left out)", Version))
	}
	if _, err := ParseProfile(string(c.Profile)); err != nil {
		return bad("profile", string(c.Profile), "must be one of user, pro, enterprise")
	}
	if c.Hostname != "" && !hostnameRE.MatchString(c.Hostname) {
		return bad("hostname", c.Hostname, "must be 1-63 lowercase letters, digits or '-', not starting or ending with '-'")
	}
	if c.Console.Port < 1 || c.Console.Port > 65535 {
		return bad("console.port", fmt.Sprint(c.Console.Port), "must be between 1 and 65535")
	}
	return nil
}

func (d *Daemon) validate() error {
	if d.Socket == "" || !strings.HasPrefix(d.Socket, "/") {
		return bad("daemon.socket", d.Socket, "must be an absolute path")
	}
	if !printable(d.Socket) {
		return bad("daemon.socket", d.Socket, "must not contain control characters")
	}
	if len(d.Socket) > 107 {
		return bad("daemon.socket", d.Socket, "is longer than the 107 bytes a unix socket path may have")
	}
	if d.SocketGroup != "" && !groupRE.MatchString(d.SocketGroup) {
		return bad("daemon.socket_group", d.SocketGroup, "must be a group name: up to 32 letters, digits, '_', '.' or '-', not starting with a digit, '.' or '-'")
	}
	if d.StateDir == "" || !strings.HasPrefix(d.StateDir, "/") {
		return bad("daemon.state_dir", d.StateDir, "must be an absolute path")
	}
	if !printable(d.StateDir) || len(d.StateDir) > 4096 {
		return bad("daemon.state_dir", d.StateDir, "must be a path of at most 4096 bytes without control characters")
	}
	switch d.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return bad("daemon.log_level", d.LogLevel, "must be one of debug, info, warn, error")
	}
	if d.ShutdownTimeout < time.Second || d.ShutdownTimeout > 5*time.Minute {
		return bad("daemon.shutdown_timeout", d.ShutdownTimeout.String(), "must be between 1s and 5m")
	}
	return nil
}

func (n *Network) validate() error {
	if err := tooMany("network.interfaces", len(n.Interfaces), MaxInterfaces); err != nil {
		return err
	}
	for i, in := range n.Interfaces {
		if err := in.validate(fmt.Sprintf("network.interfaces[%d]", i)); err != nil {
			return err
		}
	}
	return nil
}

func (in *Interface) validate(f string) error {
	if !ifnameRE.MatchString(in.Name) {
		return bad(f+".name", in.Name, "must be an interface name or glob of at most 15 characters")
	}
	if in.DHCP && len(in.Addresses) > 0 {
		return bad(f+".addresses", strings.Join(in.Addresses, ","), "must be empty when dhcp is true")
	}
	if !in.DHCP && len(in.Addresses) == 0 {
		return bad(f+".addresses", "", "must list at least one address in CIDR form, or set dhcp: true")
	}
	if err := tooMany(f+".addresses", len(in.Addresses), MaxAddresses); err != nil {
		return err
	}
	if err := tooMany(f+".dns", len(in.DNS), MaxDNS); err != nil {
		return err
	}
	for j, a := range in.Addresses {
		if _, err := netip.ParsePrefix(a); err != nil {
			return bad(fmt.Sprintf("%s.addresses[%d]", f, j), a, "is not an address in CIDR form such as 192.0.2.10/24")
		}
	}
	if in.Gateway != "" && !plainAddr(in.Gateway) {
		return bad(f+".gateway", in.Gateway, "is not an IP address")
	}
	for j, d := range in.DNS {
		if !plainAddr(d) {
			return bad(fmt.Sprintf("%s.dns[%d]", f, j), d, "is not an IP address")
		}
	}
	return nil
}

// plainAddr accepts an IP address, with an IPv6 zone only when the zone is
// an interface name: netip takes any text after "%", newlines included,
// and the address is written into a networkd unit.
func plainAddr(s string) bool {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return false
	}
	return a.Zone() == "" || ifnameRE.MatchString(a.Zone()) && !strings.ContainsAny(a.Zone(), "*?[]")
}

func (s *SSH) validate() error {
	if s.Enabled && len(s.AuthorizedKeys) == 0 {
		return bad("ssh.authorized_keys", "", "must list at least one public key when ssh.enabled is true (passwords are never accepted)")
	}
	if err := tooMany("ssh.authorized_keys", len(s.AuthorizedKeys), MaxAuthorizedKeys); err != nil {
		return err
	}
	for i, k := range s.AuthorizedKeys {
		if !sshKeyRE.MatchString(strings.TrimSpace(k)) || !printable(k) || len(k) > MaxKeyLine {
			return bad(fmt.Sprintf("ssh.authorized_keys[%d]", i), abbreviate(k), "is not an OpenSSH public key line (ssh-ed25519, ecdsa-sha2-* or ssh-rsa) on one line without control characters")
		}
	}
	return nil
}

func (t *Time) validate() error {
	if err := tooMany("time.servers", len(t.Servers), MaxTimeServers); err != nil {
		return err
	}
	for i, s := range t.Servers {
		if !ntpRE.MatchString(s) {
			return bad(fmt.Sprintf("time.servers[%d]", i), s, "is not a host name or IP address")
		}
	}
	return nil
}

func (c *Config) validateTimers() error {
	if c.Firstboot.TokenTTL < time.Minute || c.Firstboot.TokenTTL > 30*24*time.Hour {
		return bad("firstboot.token_ttl", c.Firstboot.TokenTTL.String(), "must be between 1m and 720h")
	}
	if c.Probe.Interval != 0 && c.Probe.Interval < time.Minute {
		return bad("probe.interval", c.Probe.Interval.String(), "must be 0 (off) or at least 1m")
	}
	return nil
}

func abbreviate(s string) string { return shorten(s, 40) }

// shorten cuts s to at most n bytes, on a character boundary, marking the
// cut with "...".
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - 3
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// Marshal renders c as an omerta.yaml that Parse reads back to c, with the
// header lines on top as comments. First boot uses it to install the
// configuration it resolved from all layers, so that every later reader of
// /etc/omerta/omerta.yaml sees what first boot applied.
//
// Header lines may carry text from the files read (an error message quoting
// a key): each becomes one "# " line with every control character escaped,
// so that none can end the comment and start YAML of its own. The output is
// parsed back and compared with c before it is returned.
func Marshal(c Config, header ...string) ([]byte, error) {
	var b bytes.Buffer
	for _, h := range header {
		b.WriteString("# ")
		b.WriteString(shorten(safeyaml.Escape(h), maxHeaderLine))
		b.WriteByte('\n')
	}
	body, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encoding configuration: %w", err)
	}
	b.Write(body)
	if b.Len() > MaxFileSize {
		return nil, fmt.Errorf("encoding configuration: %d bytes, more than the %d that Load reads: %w", b.Len(), MaxFileSize, safeio.ErrTooLarge)
	}
	back, err := Parse(b.Bytes(), "generated configuration", Default())
	if err != nil {
		return nil, fmt.Errorf("encoding configuration: the result does not read back: %w", err)
	}
	if !reflect.DeepEqual(back.normalised(), c.normalised()) {
		return nil, errors.New("encoding configuration: the result reads back as a different configuration")
	}
	return b.Bytes(), nil
}

// maxHeaderLine bounds each comment line Marshal writes.
const maxHeaderLine = 300

// normalised treats nil and empty lists alike: both mean "none".
func (c Config) normalised() Config {
	if len(c.Network.Interfaces) == 0 {
		c.Network.Interfaces = nil
	}
	c.Network.Interfaces = append([]Interface(nil), c.Network.Interfaces...)
	for i := range c.Network.Interfaces {
		in := &c.Network.Interfaces[i]
		if len(in.Addresses) == 0 {
			in.Addresses = nil
		}
		if len(in.DNS) == 0 {
			in.DNS = nil
		}
	}
	if len(c.SSH.AuthorizedKeys) == 0 {
		c.SSH.AuthorizedKeys = nil
	}
	if len(c.Time.Servers) == 0 {
		c.Time.Servers = nil
	}
	c.Agents = c.Agents.normalised()
	c.Gateway = c.Gateway.normalised()
	return c
}

// Equal reports whether a and b configure the same thing (nil and empty
// lists alike), for callers that compare an installed file with a report.
func Equal(a, b Config) bool { return reflect.DeepEqual(a.normalised(), b.normalised()) }
