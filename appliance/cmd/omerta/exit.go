package main

import (
	"errors"
	"fmt"
)

// exitCode is returned by a command that has already printed what it had to
// say and wants the process to exit with that status and no further message
// (for example `omerta probe` exits 1 on warn and 2 on fail).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func asExit(err error, target *exitCode) bool { return errors.As(err, target) }
