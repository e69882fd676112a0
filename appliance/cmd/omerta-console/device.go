package main

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"path"
	"strings"

	"github.com/omertaos/omertaos/appliance/config"
)

// First boot's device certificate and key (firstboot.TLSCertPath and
// TLSKeyPath), restated rather than imported: firstboot links the probe,
// the store and NVML, none of which may be in this binary. The tests hold
// them equal to firstboot's.
var (
	keysDir     = path.Join(config.Default().Daemon.StateDir, "keys")
	tlsCertPath = path.Join(keysDir, "tls.crt")
	tlsKeyPath  = path.Join(keysDir, "tls.key")
)

// certFingerprint is firstboot.CertFingerprint's format, "SHA256:" and the
// certificate's digest as colon-separated upper-case hex pairs, so that the
// console's banner and first boot's print the same string for the same
// certificate (the tests compare them).
func certFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	b.WriteString("SHA256:")
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}
