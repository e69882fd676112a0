package runtime

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"

	digest "github.com/opencontainers/go-digest"

	"github.com/omertaos/omertaos/appliance/gpu"
)

// Isolation is how strongly an agent is kept from the host.
type Isolation string

const (
	// Container runs the agent with runc: namespaces, cgroups, seccomp.
	Container Isolation = "container"
	// Sandbox runs the agent under gVisor: its system calls are served by
	// a user-space kernel, not the host's.
	Sandbox Isolation = "sandbox"
)

// Limits applied when a Spec leaves one at zero.
const (
	DefaultCPUMillis = 1000
	DefaultMemory    = 512 << 20
	DefaultPids      = 256
	DefaultTmp       = 64 << 20
	// NobodyID is the uid and gid an agent runs as when neither its
	// caller nor its image names a non-root user.
	NobodyID = 65534
)

// Spec is what the runtime needs to create one agent's container. It is
// runtime-level: the manifest's quantities are already numbers here.
type Spec struct {
	ID string
	// Image is the image's name in containerd; Digest, when set, must be
	// the digest of its index, manifest or config.
	Image  string
	Digest string
	// Command and Args follow Kubernetes: Command, when set, replaces the
	// image's ENTRYPOINT and drops its CMD; Args, when set, replaces the
	// image's CMD. Command [a] with Args [b] runs "a b"; Args alone runs
	// after the image's ENTRYPOINT.
	Command []string
	Args    []string
	// Env is added to the image's environment (KEY=VALUE).
	Env []string
	// Zero means the default limit; none can be turned off.
	CPUMillis   int64
	MemoryBytes int64
	Pids        int64
	Isolation   Isolation
	// TmpBytes is the size of the tmpfs on /tmp.
	TmpBytes int64
	// StateDir is the agent's own directory on the host; each volume is a
	// directory named after it inside StateDir.
	StateDir string
	Volumes  []Volume
	// User, when nil, is the image's user if that is not root, else
	// nobody (65534). Root (uid or gid 0) is refused.
	User *User
	// WritableRoot lets the agent write to its root filesystem (changes
	// go to the container's own snapshot). The default is read-only.
	WritableRoot bool
	// Labels are the caller's, stored on the container; keys under
	// omerta.dev/runtime. are the Runtime's own and refused here.
	Labels map[string]string
	// GPUs is the agent's admitted grant (gpu.Allocator.Admit), nil for
	// none: the container gets exactly its CDI devices, resolved against
	// the CDI spec appliance/gpu writes (WithCDIRoot), and nothing else.
	// A sandboxed agent cannot have GPUs (ErrUnsupported; SandboxGPUs
	// says why).
	GPUs *gpu.Grant
	// Network is NetworkNone ("" too) or NetworkGateway (network.go).
	Network string
}

// Volume is a data directory of the agent, StateDir/Name on the host,
// mounted at Path in the container.
type Volume struct {
	Name     string
	Path     string
	ReadOnly bool
}

// User is a numeric uid and gid.
type User struct{ UID, GID uint32 }

const labelPrefix = "omerta.dev/runtime."

// forbiddenTargets are container paths a volume may not cover: the
// kernel's interfaces and what the Runtime mounts itself.
var forbiddenTargets = []string{"/proc", "/sys", "/dev", "/tmp", "/run"}

// normalize fills defaults and refuses what is invalid, naming the field.
func (s *Spec) normalize() error {
	if err := s.checkIdentity(); err != nil {
		return err
	}
	if err := s.checkLimits(); err != nil {
		return err
	}
	if err := s.checkProcess(); err != nil {
		return err
	}
	if err := s.checkGPUs(); err != nil {
		return err
	}
	return s.checkVolumes()
}

func invalid(field, format string, a ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, a...))
}

func (s *Spec) checkIdentity() error {
	if err := validateID(s.ID); err != nil {
		return fmt.Errorf("id: %w", err)
	}
	if s.Image == "" {
		return invalid("image", "empty")
	}
	if s.Digest != "" {
		if _, err := digest.Parse(s.Digest); err != nil {
			return invalid("digest", "%q is not a digest: %v", s.Digest, err)
		}
	}
	switch s.Isolation {
	case "":
		s.Isolation = Container
	case Container, Sandbox:
	default:
		return invalid("isolation", "%q is neither %q nor %q", s.Isolation, Container, Sandbox)
	}
	for k := range s.Labels {
		if strings.HasPrefix(k, labelPrefix) {
			return invalid("labels", "%q is reserved for the runtime", k)
		}
	}
	return nil
}

func (s *Spec) checkLimits() error {
	for _, l := range []struct {
		field string
		v     *int64
		def   int64
	}{
		{"cpu", &s.CPUMillis, DefaultCPUMillis},
		{"memory", &s.MemoryBytes, DefaultMemory},
		{"pids", &s.Pids, DefaultPids},
		{"tmp", &s.TmpBytes, DefaultTmp},
	} {
		if *l.v < 0 {
			return invalid(l.field, "%d is negative", *l.v)
		}
		if *l.v == 0 {
			*l.v = l.def
		}
	}
	if s.MemoryBytes < 4<<20 {
		return invalid("memory", "%d bytes is below the 4 MiB a container needs", s.MemoryBytes)
	}
	return nil
}

func (s *Spec) checkProcess() error {
	for _, l := range []struct {
		field string
		args  []string
	}{{"command", s.Command}, {"args", s.Args}} {
		for i, a := range l.args {
			if strings.ContainsRune(a, 0) {
				return invalid(fmt.Sprintf("%s[%d]", l.field, i), "contains a NUL byte")
			}
		}
	}
	for i, e := range s.Env {
		k, _, ok := strings.Cut(e, "=")
		if !ok || k == "" || strings.ContainsRune(e, 0) {
			return invalid(fmt.Sprintf("env[%d]", i), "%q is not KEY=VALUE", e)
		}
	}
	if s.User != nil && (s.User.UID == 0 || s.User.GID == 0) {
		return invalid("user", "uid %d gid %d: root is refused", s.User.UID, s.User.GID)
	}
	return nil
}

func (s *Spec) checkVolumes() error {
	if len(s.Volumes) > 0 && (!filepath.IsAbs(s.StateDir) || filepath.Clean(s.StateDir) != s.StateDir) {
		return invalid("stateDir", "%q is not a clean absolute path", s.StateDir)
	}
	names, paths := map[string]bool{}, map[string]bool{}
	for i, v := range s.Volumes {
		field := fmt.Sprintf("volumes[%d]", i)
		if err := checkVolumeName(v.Name); err != nil {
			return invalid(field+".name", "%v", err)
		}
		if err := checkTarget(v.Path); err != nil {
			return invalid(field+".path", "%v", err)
		}
		if names[v.Name] || paths[v.Path] {
			return invalid(field, "name %q or path %q is used twice", v.Name, v.Path)
		}
		names[v.Name], paths[v.Path] = true, true
	}
	return nil
}

func checkVolumeName(n string) error {
	if n == "" || n == "." || n == ".." || len(n) > 63 {
		return fmt.Errorf("%q is not a volume name", n)
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("%q: only letters, digits, '-', '_' and '.' are allowed", n)
		}
	}
	return nil
}

func checkTarget(p string) error {
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" || strings.ContainsRune(p, 0) {
		return fmt.Errorf("%q is not a clean absolute path below /", p)
	}
	for _, f := range forbiddenTargets {
		if p == f || strings.HasPrefix(p, f+"/") {
			return fmt.Errorf("%q is inside %s, which the runtime owns", p, f)
		}
	}
	return nil
}
