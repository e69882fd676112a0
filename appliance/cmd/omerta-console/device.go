package main

import (
	"crypto/sha256"
	"crypto/x509"
	"path"

	"github.com/omertaos/omertaos/appliance/apiclient"
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

// certFingerprint is the certificate's fingerprint as first boot prints
// it, in the API client's one format, so that the console's banner and
// first boot's agree (the tests compare them).
func certFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return apiclient.FormatFingerprint(sum[:])
}
