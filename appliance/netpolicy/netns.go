package netpolicy

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inNetns runs fn on a thread that is in ns, then moves the thread back.
// Sockets fn opens stay in ns for their whole life, whatever thread later
// uses them. With a closed ns (netns.None()) fn runs where it is.
func inNetns(ns netns.NsHandle, fn func() error) error {
	if !ns.IsOpen() {
		return fn()
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("reading this thread's network namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering a network namespace: %w", err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// The thread stays locked: the runtime ends it with this goroutine
		// instead of handing a thread in the wrong namespace to another.
		return errors.Join(ferr, fmt.Errorf("returning to the original network namespace: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// openAgentNetns opens the network namespace at path for an agent: it must
// be a namespace file (nsfs), of a network namespace, and neither the one
// the agents' network lives in nor this process's own, which an agent's
// link must never be put into.
func openAgentNetns(path string, host netns.NsHandle) (netns.NsHandle, error) {
	if !filepath.IsAbs(path) {
		return netns.None(), invalid("netns", "%s is not an absolute path", quote(path))
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return netns.None(), fmt.Errorf("opening network namespace %s: %w", quote(path), err)
	}
	if reason := checkNetnsFd(ns, host); reason != "" {
		ns.Close()
		return netns.None(), invalid("netns", "%s %s", quote(path), reason)
	}
	return ns, nil
}

func checkNetnsFd(ns, host netns.NsHandle) string {
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(ns), &fs); err != nil || fs.Type != unix.NSFS_MAGIC {
		return "is not a namespace file"
	}
	if t, err := unix.IoctlRetInt(int(ns), unix.NS_GET_NSTYPE); err != nil || t != unix.CLONE_NEWNET {
		return "is not a network namespace"
	}
	if host.IsOpen() && ns.Equal(host) {
		return "is the namespace of the agents' network itself"
	}
	if self, err := netns.GetFromPath("/proc/self/ns/net"); err == nil {
		defer self.Close()
		if ns.Equal(self) {
			return "is omertad's own network namespace"
		}
	}
	return ""
}
