package manifest

import (
	"fmt"
	"regexp"
	"unicode/utf8"

	"github.com/omertaos/omertaos/appliance/terminal"
)

// Bounds on counts and lengths (in characters).
const (
	maxID          = 63
	maxName        = 128
	maxShort       = 64
	maxIcon        = 256
	maxDescription = 4096
	maxTags        = 32
	maxCaps        = 32
	maxCapability  = 256
	maxCommand     = 32
	maxArgs        = 128
	maxArg         = 4096
	maxEnv         = 128
	maxEnvName     = 256
	maxEnvValue    = 4096
	maxPorts       = 16
	maxVolumes     = 16
	maxImageRef    = 512
)

var (
	dnsLabelRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	versionRe  = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z.+_-]*$`)
	envNameRe  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	digestRe   = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

// textRule says what a string field accepts besides printable text.
type textRule struct {
	max      int
	required bool
	lines    bool // newlines and tabs allowed (descriptions, argv)
}

// checkText refuses invalid UTF-8 and anything a terminal would act on
// (controls, bidi overrides), so that a catalog entry cannot rewrite what an
// operator sees; free text may keep newlines and tabs.
func (ps *Problems) checkText(path, s string, r textRule) bool {
	if s == "" {
		if r.required {
			ps.add(path, CodeRequired, "required")
			return false
		}
		return true
	}
	if !utf8.ValidString(s) {
		ps.add(path, CodeInvalid, "%s is not valid UTF-8", quote(s))
		return false
	}
	// Characters, as JSON Schema's maxLength counts them; at most four
	// bytes each.
	if n := utf8.RuneCountInString(s); n > r.max {
		ps.add(path, CodeRange, "%d characters; at most %d", n, r.max)
		return false
	}
	rest := s
	for {
		i, c := terminal.FirstUnsafe(rest)
		if i < 0 {
			return true
		}
		if r.lines && (c == '\n' || c == '\t') {
			rest = rest[i+1:]
			continue
		}
		ps.add(path, CodeInvalid, "%s holds the control or formatting character %s", quote(s), fmt.Sprintf("%U", c))
		return false
	}
}

// checkLabel checks a DNS label (RFC 1123): lowercase letters, digits and
// '-', at most 63 bytes, starting and ending with a letter or digit.
func (ps *Problems) checkLabel(path, s string, required bool) bool {
	switch {
	case s == "":
		if required {
			ps.add(path, CodeRequired, "required")
			return false
		}
		return true
	case len(s) > maxID:
		ps.add(path, CodeRange, "%s is longer than %d characters", quote(s), maxID)
		return false
	case !dnsLabelRe.MatchString(s):
		ps.add(path, CodeInvalid, "%s is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)", quote(s))
		return false
	}
	return true
}

func (ps *Problems) checkList(path string, n, max int) bool {
	if n > max {
		ps.add(path, CodeTooMany, "%d items; at most %d", n, max)
		return false
	}
	return true
}
