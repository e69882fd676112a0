package main

import (
	"strings"
)

// mainRegistry: the image's own registry (/usr/share/omerta: the shipped
// catalog and image archives, locked and signed at build time, see
// scripts/image.sh) verifies on the booted image against its trust
// directory, with the auditor's command.
func (r *run) mainRegistry(sc string, s *sshClient) {
	out, code, err := s.run("sudo -n omerta registry verify /usr/share/omerta")
	r.check(sc, "the image's own registry verifies against /etc/omerta/trust", err == nil && code == 0 && strings.Contains(out, "VERIFIED"),
		"exit %d%s: %s", code, errSuffix(err), lastLine(out))
}
