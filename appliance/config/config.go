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
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
)

// DefaultPath is where the image installs the site configuration.
var DefaultPath = "/etc/omerta/omerta.yaml"

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

// LynisEnabled reports whether first boot should run Lynis.
func (f Firstboot) LynisEnabled() bool { return f.Lynis == nil || *f.Lynis }

// Default returns the configuration used when no file says otherwise.
func Default() Config {
	return Config{
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
		fmt.Fprintf(&b, ": %q", e.Value)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	return b.String()
}

// ErrNotFound is returned (wrapped) by Load when the file does not exist.
var ErrNotFound = errors.New("configuration file not found")

// Load reads path over the defaults. A missing file is ErrNotFound; callers
// that accept "no file" check for it.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Default(), fmt.Errorf("%s: %w", path, ErrNotFound)
	}
	if err != nil {
		return Default(), fmt.Errorf("reading configuration: %w", err)
	}
	return Parse(data, path, Default())
}

// Parse decodes data over base, strictly, and validates the result. name
// labels messages. On error the returned Config is base, untouched.
func Parse(data []byte, name string, base Config) (Config, error) {
	cfg := base
	// Copy slices and pointers so that decoding never writes through to base.
	cfg.Network.Interfaces = append([]Interface(nil), base.Network.Interfaces...)
	cfg.SSH.AuthorizedKeys = append([]string(nil), base.SSH.AuthorizedKeys...)
	cfg.Time.Servers = append([]string(nil), base.Time.Servers...)
	if len(bytes.TrimSpace(data)) > 0 {
		dec := yaml.NewDecoder(bytes.NewReader(data), yaml.DisallowUnknownField())
		if err := dec.Decode(&cfg); err != nil {
			return base, decodeError(name, data, err)
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

// decodeError turns go-yaml's multi-line, source-quoting errors into one line
// that names the file, the position, the field and the reason.
func decodeError(name string, data []byte, err error) error {
	var ye yaml.Error
	if !errors.As(err, &ye) {
		// time.ParseDuration's errors carry no position; find the field.
		if strings.HasPrefix(err.Error(), "time: invalid duration") {
			return durationError(name, data)
		}
		return fmt.Errorf("%s: %s", name, strings.ReplaceAll(err.Error(), "\n", " "))
	}
	msg := ye.GetMessage()
	tk := ye.GetToken()
	var te *yaml.TypeError
	if errors.As(err, &te) && tk != nil && tk.Position != nil {
		msg = fmt.Sprintf("field %q: must be a %s, not a %s", keyOnLine(data, tk.Position.Line), kindName(te.DstType), kindName(te.SrcType))
	}
	if tk != nil && tk.Position != nil {
		return fmt.Errorf("%s:%d:%d: %s", name, tk.Position.Line, tk.Position.Column, msg)
	}
	return fmt.Errorf("%s: %s", name, msg)
}

func kindName(t reflect.Type) string {
	if t == nil {
		return "value"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Uint64, reflect.Uint32:
		return "number"
	case reflect.Bool:
		return "boolean (true or false)"
	case reflect.String:
		return "string"
	case reflect.Slice:
		return "list"
	case reflect.Map, reflect.Struct:
		return "mapping"
	}
	return t.String()
}

// keyOnLine returns the mapping key written on a 1-based line of data.
func keyOnLine(data []byte, line int) string {
	lines := strings.Split(string(data), "\n")
	if line < 1 || line > len(lines) {
		return "?"
	}
	key, _, _ := strings.Cut(strings.TrimLeft(lines[line-1], " -"), ":")
	return strings.TrimSpace(key)
}

// durationFields are the fields decoded with time.ParseDuration.
var durationFields = [][2]string{
	{"daemon", "shutdown_timeout"},
	{"firstboot", "token_ttl"},
	{"probe", "interval"},
}

func durationError(name string, data []byte) error {
	var raw map[string]map[string]any
	// Errors here mean the file has another shape; the generic message
	// below still names the file.
	yaml.Unmarshal(data, &raw)
	for _, f := range durationFields {
		v, ok := raw[f[0]][f[1]]
		if s, isString := v.(string); ok && isString {
			if _, err := time.ParseDuration(s); err != nil {
				return &FieldError{File: name, Field: f[0] + "." + f[1], Value: s, Reason: "is not a duration such as 30s, 10m or 2h"}
			}
		}
	}
	return fmt.Errorf("%s: a duration is not of the form 30s, 10m or 2h", name)
}

var (
	hostnameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	ifnameRE   = regexp.MustCompile(`^[A-Za-z0-9_.*?\[\]-]{1,15}$`)
	// An OpenSSH public key line: type, base64 blob, optional comment.
	sshKeyRE = regexp.MustCompile(`^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( .*)?$`)
	ntpRE    = regexp.MustCompile(`^[A-Za-z0-9.:-]{1,253}$`)
)

// Validate checks every field and returns the first problem as a *FieldError.
func (c *Config) Validate() error {
	bad := func(field, value, reason string) error {
		return &FieldError{Field: field, Value: value, Reason: reason}
	}
	if _, err := ParseProfile(string(c.Profile)); err != nil {
		return bad("profile", string(c.Profile), "must be one of user, pro, enterprise")
	}
	if c.Hostname != "" && !hostnameRE.MatchString(c.Hostname) {
		return bad("hostname", c.Hostname, "must be 1-63 lowercase letters, digits or '-', not starting or ending with '-'")
	}
	if c.Daemon.Socket == "" || !strings.HasPrefix(c.Daemon.Socket, "/") {
		return bad("daemon.socket", c.Daemon.Socket, "must be an absolute path")
	}
	if len(c.Daemon.Socket) > 107 {
		return bad("daemon.socket", c.Daemon.Socket, "is longer than the 107 bytes a unix socket path may have")
	}
	if c.Daemon.StateDir == "" || !strings.HasPrefix(c.Daemon.StateDir, "/") {
		return bad("daemon.state_dir", c.Daemon.StateDir, "must be an absolute path")
	}
	switch c.Daemon.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return bad("daemon.log_level", c.Daemon.LogLevel, "must be one of debug, info, warn, error")
	}
	if c.Daemon.ShutdownTimeout < time.Second || c.Daemon.ShutdownTimeout > 5*time.Minute {
		return bad("daemon.shutdown_timeout", c.Daemon.ShutdownTimeout.String(), "must be between 1s and 5m")
	}
	if c.Console.Port < 1 || c.Console.Port > 65535 {
		return bad("console.port", fmt.Sprint(c.Console.Port), "must be between 1 and 65535")
	}
	for i, in := range c.Network.Interfaces {
		f := fmt.Sprintf("network.interfaces[%d]", i)
		if !ifnameRE.MatchString(in.Name) {
			return bad(f+".name", in.Name, "must be an interface name or glob of at most 15 characters")
		}
		if in.DHCP && len(in.Addresses) > 0 {
			return bad(f+".addresses", strings.Join(in.Addresses, ","), "must be empty when dhcp is true")
		}
		if !in.DHCP && len(in.Addresses) == 0 {
			return bad(f+".addresses", "", "must list at least one address in CIDR form, or set dhcp: true")
		}
		for j, a := range in.Addresses {
			if _, err := netip.ParsePrefix(a); err != nil {
				return bad(fmt.Sprintf("%s.addresses[%d]", f, j), a, "is not an address in CIDR form such as 192.0.2.10/24")
			}
		}
		if in.Gateway != "" {
			if _, err := netip.ParseAddr(in.Gateway); err != nil {
				return bad(f+".gateway", in.Gateway, "is not an IP address")
			}
		}
		for j, d := range in.DNS {
			if _, err := netip.ParseAddr(d); err != nil {
				return bad(fmt.Sprintf("%s.dns[%d]", f, j), d, "is not an IP address")
			}
		}
	}
	if c.SSH.Enabled && len(c.SSH.AuthorizedKeys) == 0 {
		return bad("ssh.authorized_keys", "", "must list at least one public key when ssh.enabled is true (passwords are never accepted)")
	}
	for i, k := range c.SSH.AuthorizedKeys {
		if !sshKeyRE.MatchString(strings.TrimSpace(k)) {
			return bad(fmt.Sprintf("ssh.authorized_keys[%d]", i), abbreviate(k), "is not an OpenSSH public key line (ssh-ed25519, ecdsa-sha2-* or ssh-rsa)")
		}
	}
	for i, s := range c.Time.Servers {
		if !ntpRE.MatchString(s) {
			return bad(fmt.Sprintf("time.servers[%d]", i), s, "is not a host name or IP address")
		}
	}
	if c.Firstboot.TokenTTL < time.Minute || c.Firstboot.TokenTTL > 30*24*time.Hour {
		return bad("firstboot.token_ttl", c.Firstboot.TokenTTL.String(), "must be between 1m and 720h")
	}
	if c.Probe.Interval != 0 && c.Probe.Interval < time.Minute {
		return bad("probe.interval", c.Probe.Interval.String(), "must be 0 (off) or at least 1m")
	}
	return nil
}

func abbreviate(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}

// Marshal renders c as an omerta.yaml that Parse reads back to c, with
// header (comment lines, each starting with "#") on top. First boot uses it
// to install the configuration it resolved from all layers, so that every
// later reader of /etc/omerta/omerta.yaml sees what first boot applied.
func Marshal(c Config, header string) ([]byte, error) {
	body, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encoding configuration: %w", err)
	}
	return append([]byte(header), body...), nil
}
