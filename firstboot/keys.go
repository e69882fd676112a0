package firstboot

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/omertaos/omertaos/appliance/rootfs"
	"github.com/omertaos/omertaos/firstboot/report"
)

const (
	// certBackdate covers a clock that is behind at first boot (no RTC
	// battery, no NTP yet): a browser on a correct clock must not see a
	// certificate from the future.
	certBackdate = time.Hour
	// certValidity is long because nobody renews a self-signed appliance
	// certificate; trust comes from the fingerprint on the console.
	certValidity = 10 * 365 * 24 * time.Hour
)

// keysData is what the keys step journals (public facts only).
type keysData struct {
	SigningKeyFingerprint string   `json:"signing_key_fingerprint"`
	TLSFingerprint        string   `json:"tls_fingerprint"`
	DNSNames              []string `json:"dns_names"`
	IPAddresses           []string `json:"ip_addresses"`
}

func (r *runner) stepKeys(ctx context.Context) (any, string, error) {
	id, err := r.identity()
	if err != nil {
		return nil, "", err
	}
	signer, err := ensureSigningKey(r.fs, SigningKeyPath, SigningPubPath)
	if err != nil {
		return nil, "", err
	}
	r.mid()
	addrs, err := r.opts.Addrs()
	if err != nil {
		return nil, "", fmt.Errorf("tls certificate: %w", err)
	}
	addrs = usableAddrs(addrs)
	dns := []string{id.Hostname, id.Hostname + ".local"}
	cert, err := ensureTLS(r.fs, TLSKeyPath, TLSCertPath, dns, addrs, r.opts.Now())
	if err != nil {
		return nil, "", err
	}
	kd := keysData{
		SigningKeyFingerprint: report.KeyFingerprint(signer.Public().(ed25519.PublicKey)),
		TLSFingerprint:        CertFingerprint(cert),
		DNSNames:              dns,
		IPAddresses:           []string{},
	}
	for _, a := range addrs {
		kd.IPAddresses = append(kd.IPAddresses, a.String())
	}
	return kd, "", nil
}

// ensureSigningKey loads the Ed25519 device key at keyPath inside root,
// creating it on the first run. An existing key that does not parse is an
// error, not a reason to mint another: it is the device's identity.
func ensureSigningKey(root rootfs.Root, keyPath, pubPath string) (ed25519.PrivateKey, error) {
	key, err := readPrivateKey(root, keyPath)
	var priv ed25519.PrivateKey
	switch {
	case err == nil:
		k, ok := key.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("signing key %s holds a %T, not an Ed25519 key; move it aside to create a new one", keyPath, key)
		}
		priv = k
	case errors.Is(err, fs.ErrNotExist):
		_, k, gerr := ed25519.GenerateKey(rand.Reader)
		if gerr != nil {
			return nil, fmt.Errorf("generating signing key: %w", gerr)
		}
		if err := writePrivateKey(root, keyPath, k); err != nil {
			return nil, err
		}
		priv = k
	default:
		return nil, fmt.Errorf("signing key: %w; move it aside to create a new one", err)
	}
	// The public half is rewritten from the private one, so a power cut
	// between the two files heals itself.
	if _, err := root.WriteFile(pubPath, report.EncodePublicKey(priv.Public().(ed25519.PublicKey)), 0o644); err != nil {
		return nil, fmt.Errorf("writing signing public key: %w", err)
	}
	return priv, nil
}

// LoadSigningKey reads the device's Ed25519 signing key from root.
func LoadSigningKey(root string) (ed25519.PrivateKey, error) {
	r, err := rootfs.New(rootOr(root))
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	key, err := readPrivateKey(r, SigningKeyPath)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	k, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s holds a %T, not an Ed25519 key", SigningKeyPath, key)
	}
	return k, nil
}

// keyLimit is far above a PEM key or certificate (under 2 KiB).
const keyLimit = 64 << 10

func readPrivateKey(root rootfs.Root, p string) (crypto.PrivateKey, error) {
	data, err := root.ReadFile(p, keyLimit)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: not a PEM \"PRIVATE KEY\" block", p)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return k, nil
}

func writePrivateKey(root rootfs.Root, p string, k crypto.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", p, err)
	}
	_, err = root.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	return err
}

// ensureTLS loads or creates the ECDSA P-256 key and a self-signed
// certificate for it. The certificate is kept when it belongs to the key,
// names exactly dns and addrs, and is valid now; otherwise it is reissued
// with the same key, so the fingerprint changes but a pinned key does not.
func ensureTLS(root rootfs.Root, keyPath, certPath string, dns []string, addrs []netip.Addr, now time.Time) (*x509.Certificate, error) {
	key, err := ensureTLSKey(root, keyPath)
	if err != nil {
		return nil, err
	}
	var ips []net.IP
	for _, a := range addrs {
		ips = append(ips, net.IP(a.AsSlice()))
	}
	if cert, err := readCert(root, certPath); err == nil && certFits(cert, key, dns, ips, now) {
		return cert, nil
	}
	return issueCert(root, certPath, key, dns, ips, now)
}

// ensureTLSKey loads the ECDSA P-256 key at keyPath, creating it on the
// first run.
func ensureTLSKey(root rootfs.Root, keyPath string) (*ecdsa.PrivateKey, error) {
	var key *ecdsa.PrivateKey
	k, err := readPrivateKey(root, keyPath)
	switch {
	case err == nil:
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok || ek.Curve != elliptic.P256() {
			return nil, fmt.Errorf("TLS key %s is not an ECDSA P-256 key; move it aside to create a new one", keyPath)
		}
		key = ek
	case errors.Is(err, fs.ErrNotExist):
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, fmt.Errorf("generating TLS key: %w", err)
		}
		if err := writePrivateKey(root, keyPath, key); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("TLS key: %w; move it aside to create a new one", err)
	}
	return key, nil
}

// issueCert writes a new self-signed certificate for key at certPath.
func issueCert(root rootfs.Root, certPath string, key *ecdsa.PrivateKey, dns []string, ips []net.IP, now time.Time) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: dns[0], Organization: []string{"OMERTAOS appliance"}},
		NotBefore:             now.Add(-certBackdate).UTC().Truncate(time.Second),
		NotAfter:              now.Add(certValidity).UTC().Truncate(time.Second),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              dns,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("creating TLS certificate: %w", err)
	}
	if _, err := root.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, fmt.Errorf("writing TLS certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

func readCert(root rootfs.Root, p string) (*x509.Certificate, error) {
	data, err := root.ReadFile(p, keyLimit)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: not a PEM certificate", p)
	}
	return x509.ParseCertificate(block.Bytes)
}

func certFits(c *x509.Certificate, key *ecdsa.PrivateKey, dns []string, ips []net.IP, now time.Time) bool {
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return false
	}
	if now.Before(c.NotBefore) || now.After(c.NotAfter) {
		return false
	}
	if !slices.Equal(c.DNSNames, dns) || len(c.IPAddresses) != len(ips) {
		return false
	}
	for i := range ips {
		if !c.IPAddresses[i].Equal(ips[i]) {
			return false
		}
	}
	return true
}

// CertFingerprint is the SHA-256 of the certificate's DER as browsers show
// it: "SHA256:" and uppercase hex pairs joined by colons.
func CertFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b bytes.Buffer
	b.WriteString("SHA256:")
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}
