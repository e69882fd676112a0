package hardening

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// inUserNS is set in the environment of the test binary that TestMain
// started inside a user namespace, so that it does not start another.
const inUserNS = "OMERTA_HARDENING_TEST_USERNS"

// usernsErr says why the tests run unprivileged: no user namespace could
// be made. fixtureRoot skips with it.
var usernsErr error

// TestMain runs the package's tests as root of a user namespace of their
// own when the test binary is not root. The fixture tests give files to
// root and restrict their modes, which an unprivileged user cannot do to a
// tree it owns but the namespace's root (mapped onto that user) can, so
// the goldens run for a developer as they do in CI. Only where user
// namespaces are disabled (user.max_user_namespaces=0, a seccomp or LSM
// policy) do the fixture tests skip, saying so.
func TestMain(m *testing.M) {
	if os.Geteuid() != 0 && os.Getenv(inUserNS) == "" {
		code, err := runInUserNS()
		if err == nil {
			os.Exit(code)
		}
		usernsErr = err
	}
	os.Exit(m.Run())
}

// runInUserNS runs this test binary again, with the same flags, as uid and
// gid 0 of a new user namespace that maps them onto the caller's ids, and
// returns its exit code. An error means the child could not be started.
func runInUserNS() (int, error) {
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), inUserNS+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		// An unprivileged gid_map needs setgroups denied.
		GidMappingsEnableSetgroups: false,
		// go test's -timeout kills this process; the child must not
		// outlive it.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("user namespaces are not available here: %w", err)
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), nil
	}
	if err != nil {
		return 1, nil
	}
	return 0, nil
}

// mappedGID returns gid when this process can give files to it, else 0:
// a user namespace made by an unprivileged user maps only its own group,
// so the fixture's shadow group (42) becomes root's there.
func mappedGID(gid int) int {
	if os.Getenv(inUserNS) != "" {
		return 0
	}
	return gid
}
