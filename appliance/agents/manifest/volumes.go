package manifest

import (
	"path"
	"strings"
	"time"
)

// reservedMounts are where a volume may not go: the kernel's filesystems,
// which the runtime mounts itself, and the runtime's tmpfs.
var reservedMounts = []string{"/proc", "/sys", "/dev"}

func (ps *Problems) checkVolumes(vols []Volume) {
	if !ps.checkList("spec.volumes", len(vols), maxVolumes) {
		return
	}
	names, mounts := map[string]bool{}, map[string]bool{}
	for i, v := range vols {
		p := Index("spec.volumes", i)
		ps.checkVolumeName(p+".name", v.Name, names)
		ps.checkMountPath(p+".mountPath", v.MountPath, mounts)
	}
}

// checkVolumeName: the name is the directory's name under the agent's own
// state directory, so it must be one plain path element.
func (ps *Problems) checkVolumeName(p, name string, seen map[string]bool) {
	if strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		ps.add(p, CodeInvalid, "%s leaves the agent's data directory: a volume is one directory inside it, named by a DNS label; host paths are not available", quote(name))
		return
	}
	if !ps.checkLabel(p, name, true) {
		return
	}
	if seen[name] {
		ps.add(p, CodeDuplicate, "%s is listed twice", quote(name))
	}
	seen[name] = true
}

func (ps *Problems) checkMountPath(p, mp string, seen map[string]bool) {
	if !ps.checkText(p, mp, textRule{max: 256, required: true}) {
		return
	}
	switch {
	case !strings.HasPrefix(mp, "/"):
		ps.add(p, CodeInvalid, "%s is not an absolute path in the container", quote(mp))
		return
	case path.Clean(mp) != mp:
		ps.add(p, CodeInvalid, "%s is not a clean path (no \"..\", \".\", \"//\" or trailing \"/\")", quote(mp))
		return
	case mp == "/" || mp == "/tmp":
		ps.add(p, CodeInvalid, "%s cannot hold a volume: the runtime mounts the root and /tmp itself", quote(mp))
		return
	}
	for _, r := range reservedMounts {
		if mp == r || strings.HasPrefix(mp, r+"/") {
			ps.add(p, CodeInvalid, "%s is under %s, which the runtime mounts itself", quote(mp), r)
			return
		}
	}
	if seen[mp] {
		ps.add(p, CodeDuplicate, "%s is listed twice", quote(mp))
	}
	seen[mp] = true
}

func (ps *Problems) checkRestart(r *Restart) {
	switch r.Policy {
	case "":
		r.Policy = RestartOnFailure
	case RestartAlways, RestartOnFailure, RestartNever:
	default:
		ps.add("spec.restart.policy", CodeInvalid, "%s is not always, on-failure or never", quote(r.Policy))
		return
	}
	if r.Policy == RestartNever {
		if r.Backoff != nil {
			ps.add("spec.restart.backoff", CodeInvalid, "has no meaning with policy never")
		}
		if r.CrashLoop != nil {
			ps.add("spec.restart.crashLoop", CodeInvalid, "has no meaning with policy never")
		}
		return
	}
	if r.Backoff == nil {
		r.Backoff = &Backoff{}
	}
	b := r.Backoff
	if b.Initial == 0 {
		b.Initial = DefaultBackoffInitial
	}
	if b.Max == 0 {
		b.Max = max(DefaultBackoffMax, b.Initial)
	}
	ps.checkDuration("spec.restart.backoff.initial", b.Initial, 100*time.Millisecond, time.Hour)
	if b.Max < b.Initial {
		ps.add("spec.restart.backoff.max", CodeRange, "%s is shorter than spec.restart.backoff.initial (%s)", b.Max, b.Initial)
	} else {
		ps.checkDuration("spec.restart.backoff.max", b.Max, 100*time.Millisecond, 24*time.Hour)
	}
	if r.CrashLoop == nil {
		r.CrashLoop = &CrashLoop{}
	}
	c := r.CrashLoop
	if c.Failures == 0 {
		c.Failures = DefaultCrashFailures
	}
	if c.Window == 0 {
		c.Window = DefaultCrashWindow
	}
	if c.Failures < 1 || c.Failures > 100 {
		ps.add("spec.restart.crashLoop.failures", CodeRange, "%d is outside 1 to 100", c.Failures)
	}
	ps.checkDuration("spec.restart.crashLoop.window", c.Window, time.Minute, 24*time.Hour)
}
