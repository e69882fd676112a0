package netpolicy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Sentinel errors. Every error a Manager returns that has one of these
// meanings wraps it, so that the API layer maps them to HTTP codes with
// errors.Is: ErrNotFound 404, ErrInvalid 400 (with the field problems of an
// *InvalidError), ErrExhausted 409, ErrUnavailable 503.
var (
	// ErrNotFound: the agent has no place on the agents' network.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: an argument (a policy, an agent id, a namespace path, the
	// configuration) is refused; the *InvalidError says which field and why.
	ErrInvalid = errors.New("invalid")
	// ErrExhausted: no address is left in the agents' subnet, or a bound on
	// the number of agents is reached.
	ErrExhausted = errors.New("no free address on the agents' network")
	// ErrUnavailable: the agents' network is not running (Start has not
	// succeeded, or Close was called).
	ErrUnavailable = errors.New("the agents' network is not running")
)

// Problem is one refused field.
type Problem struct {
	Field  string // "egress.names[2]", "config.subnet"
	Reason string // says what is wrong and, where useful, what would be right
}

func (p Problem) String() string { return p.Field + ": " + p.Reason }

// InvalidError lists every problem of a refused input, each naming its
// field. errors.Is(err, ErrInvalid) holds for it.
type InvalidError struct {
	Problems []Problem
}

func (e *InvalidError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return "invalid: " + strings.Join(lines, "; ")
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// problems collects Problems; err returns nil when there are none.
type problems []Problem

func (ps *problems) add(field, format string, a ...any) {
	*ps = append(*ps, Problem{Field: field, Reason: fmt.Sprintf(format, a...)})
}

func (ps problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	return &InvalidError{Problems: ps}
}

// invalid is an *InvalidError with one problem.
func invalid(field, format string, a ...any) error {
	var ps problems
	ps.add(field, format, a...)
	return ps.err()
}

// maxQuoted bounds how much of a foreign value an error message repeats.
const maxQuoted = 80

// quote writes a foreign string into a message: quoted and escaped, so that
// no control character or bidi override reaches a log or a terminal, and
// cut short when long.
func quote(s string) string {
	if len(s) > maxQuoted {
		return strconv.QuoteToASCII(s[:maxQuoted]) + "..."
	}
	return strconv.QuoteToASCII(s)
}

// field is "base[i]".
func field(base string, i int) string { return base + "[" + strconv.Itoa(i) + "]" }
