package gpu

import (
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/terminal"
)

// FuzzParseCgroupFile: /proc/PID/cgroup of any process on the GPUs is
// read on every telemetry pass. Whatever it holds, the parser does not
// panic, and what it accepts is absolute, clean and bounded.
func FuzzParseCgroupFile(f *testing.F) {
	for _, s := range []string{
		"0::/omerta/a-g1\n",
		"12:memory:/omerta/a-g1\n3:cpu,cpuacct:/omerta/a-g1\n0::/\n",
		"0::/omerta/a-g1 (deleted)\n",
		"0::/a:b:c\n", "", "\n", "0::\n", "::/\n", "-1::/\n", "0::/../x\n", "0::/a\x00b\n",
		strings.Repeat("1:x:/y\n", 70),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := ParseCgroupFile(b)
		if err != nil {
			return
		}
		if len(entries) > maxCgroupLines {
			t.Fatalf("%d entries", len(entries))
		}
		for _, e := range entries {
			if !strings.HasPrefix(e.Path, "/") || len(e.Path) > maxCgroupPath || hasDotSegment(e.Path) || !safe(e.Path) || e.Hierarchy < 0 {
				t.Fatalf("accepted %+v from %q", e, b)
			}
			if _, ok := matchCgroup([]CgroupEntry{e}, map[string]string{"/omerta/a": "a"}); ok && !within(e.Path, "/omerta/a") {
				t.Fatalf("%q matched /omerta/a", e.Path)
			}
		}
	})
}

func safe(s string) bool {
	i, _ := terminal.FirstUnsafe(s)
	return i < 0
}

// FuzzParseKernelModuleVersion: /proc/driver/nvidia/version is read by
// the probe and the CDI refresh. An accepted version is one DriverBranch
// accepts; a rejection's message holds no raw control byte.
func FuzzParseKernelModuleVersion(f *testing.F) {
	for _, s := range []string{
		"NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\nGCC version:  gcc version 12.2.0\n",
		"NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.163.01  Release Build\n",
		"NVRM version: NVIDIA UNIX Open Kernel Module for\n",
		"NVRM version: Kernel Module\n", "NVRM version:", "", "NVRM version: x Kernel Module 9999999999.1\n",
		"NVRM version: NVIDIA UNIX x86_64 Kernel Module  \x1b]0;pwned\x07  \n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, flavour, err := ParseKernelModuleVersion(b)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\x1b\x07\r") {
				t.Fatalf("unescaped error %q", err)
			}
			return
		}
		if _, err := DriverBranch(v); err != nil || (flavour != OpenModules && flavour != ProprietaryModules) {
			t.Fatalf("accepted %q (%q) from %q: %v", v, flavour, b, err)
		}
	})
}
