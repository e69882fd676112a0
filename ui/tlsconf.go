package ui

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/omertaos/omertaos/appliance/atomicfile"
	"github.com/omertaos/omertaos/appliance/safeio"
)

// maxPEM bounds a certificate or key file: a chain of a few certificates
// fits many times over.
const maxPEM = 64 << 10

// TLSConfig loads the certificate and key (PEM) and returns the console's
// server configuration: TLS 1.2 and 1.3 only, AEAD suites with forward
// secrecy for 1.2, HTTP/1.1 (the server speaks nothing else).
func TLSConfig(certFile, keyFile string) (*tls.Config, *x509.Certificate, error) {
	certPEM, err := safeio.ReadFile(certFile, maxPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("TLS certificate: %w", err)
	}
	keyPEM, err := safeio.ReadFile(keyFile, maxPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("TLS key: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("TLS certificate %s and key %s: %w", certFile, keyFile, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, fmt.Errorf("TLS certificate %s: %w", certFile, err)
	}
	pair.Leaf = leaf
	return serverTLS(pair), leaf, nil
}

func serverTLS(pair tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256},
		NextProtos:       []string{"http/1.1"},
	}
}

// Files of a development certificate in its directory.
const (
	DevCertFile = "console.crt"
	DevKeyFile  = "console.key"
)

// devCertValidity is short: a development certificate is for one demo.
const devCertValidity = 30 * 24 * time.Hour

// EnsureDevCert makes (or keeps, while it is valid for a day more) a
// self-signed ECDSA P-256 certificate for 127.0.0.1, ::1 and localhost in
// dir, the key 0600. It returns the certificate and the two paths.
func EnsureDevCert(dir string, now time.Time) (cert *x509.Certificate, certPath, keyPath string, err error) {
	certPath, keyPath = filepath.Join(dir, DevCertFile), filepath.Join(dir, DevKeyFile)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", "", fmt.Errorf("development certificate directory: %w", err)
	}
	// A pair that is missing, unusable or about to expire is replaced.
	if _, leaf, err := TLSConfig(certPath, keyPath); err == nil && now.Add(24*time.Hour).Before(leaf.NotAfter) && !now.Before(leaf.NotBefore) {
		return leaf, certPath, keyPath, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", "", fmt.Errorf("generating the development key: %w", err)
	}
	der, err := devCertDER(key, now)
	if err != nil {
		return nil, "", "", err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, "", "", fmt.Errorf("encoding the development key: %w", err)
	}
	if _, err := atomicfile.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, "", "", fmt.Errorf("writing the development key: %w", err)
	}
	if _, err := atomicfile.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, "", "", fmt.Errorf("writing the development certificate: %w", err)
	}
	cert, err = x509.ParseCertificate(der)
	if err != nil {
		return nil, "", "", fmt.Errorf("development certificate: %w", err)
	}
	return cert, certPath, keyPath, nil
}

func devCertDER(key *ecdsa.PrivateKey, now time.Time) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating a certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"OMERTAOS development console"}},
		NotBefore:             now.Add(-time.Hour).UTC().Truncate(time.Second),
		NotAfter:              now.Add(devCertValidity).UTC().Truncate(time.Second),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("creating the development certificate: %w", err)
	}
	return der, nil
}
