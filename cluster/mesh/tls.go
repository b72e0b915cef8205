package mesh

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"os"
	"slices"
	"time"

	"crypto/hkdf"
)

const (
	// caInfo is the HKDF info string for the ed25519 seed of the cluster CA.
	caInfo = "edgenode mesh CA v1"
	// resetInfo is the HKDF info string (followed by the node id) for the
	// QUIC stateless reset key.
	resetInfo = "edgenode mesh stateless reset v1 "
	// caCommonName is the subject of the derived CA certificate.
	caCommonName = "edgenode mesh CA v1"
)

// Fixed validity of the derived CA so that every node derives a byte-identical
// certificate (ed25519 signatures are deterministic).
var (
	caNotBefore = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	caNotAfter  = time.Date(2124, 1, 1, 0, 0, 0, 0, time.UTC)
)

// pki is what a node needs for mutual TLS: the roots it trusts and its own
// certificate chain.
type pki struct {
	roots *x509.CertPool
	cert  tls.Certificate
	// resetKeyMaterial keys the QUIC stateless reset key (stable across restarts).
	resetKeyMaterial []byte
}

// deriveCA derives the cluster CA key and self-signed certificate from the
// cluster secret. Every node with the same secret derives the same CA.
func deriveCA(secret string) (ed25519.PrivateKey, *x509.Certificate, error) {
	if secret == "" {
		return nil, nil, errors.New("mesh: empty cluster secret")
	}
	seed, err := hkdf.Key(sha256.New, []byte(secret), nil, caInfo, ed25519.SeedSize)
	if err != nil {
		return nil, nil, fmt.Errorf("mesh: derive CA seed: %w", err)
	}
	key := ed25519.NewKeyFromSeed(seed)
	pub := key.Public().(ed25519.PublicKey)
	ski := sha256.Sum256(pub)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: caCommonName, Organization: []string{"edgenode"}},
		NotBefore:             caNotBefore,
		NotAfter:              caNotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          ski[:20],
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, nil, fmt.Errorf("mesh: create CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return key, ca, nil
}

// secretPKI builds the PKI for a node from the cluster secret: the derived CA
// as the only root and a fresh per-process leaf signed by it.
func secretPKI(secret, nodeID string) (*pki, error) {
	caKey, ca, err := deriveCA(secret)
	if err != nil {
		return nil, err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: nodeID, Organization: []string{"edgenode"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if isDNSSafe(nodeID) {
		tmpl.DNSNames = []string{nodeID}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
	if err != nil {
		return nil, fmt.Errorf("mesh: create leaf certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	rk, err := hkdf.Key(sha256.New, []byte(secret), nil, resetInfo+nodeID, 32)
	if err != nil {
		return nil, err
	}
	return &pki{
		roots:            roots,
		cert:             tls.Certificate{Certificate: [][]byte{der, ca.Raw}, PrivateKey: priv, Leaf: leaf},
		resetKeyMaterial: rk,
	}, nil
}

// newPKI is the PKI of the files when any is given (all three must be),
// else the one derived from secret. nodeID "" is an operator's command:
// its certificate need not name a node (its leaf from the secret is
// named "operator").
func newPKI(secret, caFile, certFile, keyFile, nodeID string) (*pki, error) {
	switch {
	case caFile != "" || certFile != "" || keyFile != "":
		if caFile == "" || certFile == "" || keyFile == "" {
			return nil, errors.New("mesh: CAFile, CertFile and KeyFile go together")
		}
		return filePKI(caFile, certFile, keyFile, nodeID)
	case secret == "":
		return nil, errors.New("mesh: need a cluster secret or CA/cert/key files")
	case nodeID == "":
		return secretPKI(secret, "operator")
	default:
		return secretPKI(secret, nodeID)
	}
}

// filePKI loads operator-supplied PEM files. The certificate must name the
// node id (CommonName or a DNS SAN), unless nodeID is "" (an operator's
// command, not a node).
func filePKI(caFile, certFile, keyFile, nodeID string) (*pki, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("mesh: read CA file: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("mesh: no certificate found in CA file %s", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("mesh: load certificate/key: %w", err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, err
		}
	}
	if nodeID != "" && !certNames(cert.Leaf, nodeID) {
		return nil, fmt.Errorf("mesh: certificate %s does not name node id %q (CommonName or DNS SAN)", certFile, nodeID)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	rk, err := hkdf.Key(sha256.New, keyPEM, nil, resetInfo+nodeID, 32)
	if err != nil {
		return nil, err
	}
	return &pki{roots: roots, cert: cert, resetKeyMaterial: rk}, nil
}

// isDNSSafe reports whether s can go into a DNS SAN (printable ASCII, no
// spaces); otherwise the node id is carried in the CommonName only.
func isDNSSafe(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// certNodeID is the node id a certificate stands for: its CommonName, or its
// first DNS SAN when the CommonName is empty.
func certNodeID(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	if len(c.DNSNames) > 0 {
		return c.DNSNames[0]
	}
	return ""
}

// certNames reports whether the certificate names id (CommonName or DNS SAN).
func certNames(c *x509.Certificate, id string) bool {
	return c.Subject.CommonName == id || slices.Contains(c.DNSNames, id)
}

// verifyChain verifies a peer's certificate chain against roots for usage.
func verifyChain(rawCerts [][]byte, roots *x509.CertPool, usage x509.ExtKeyUsage) (*x509.Certificate, error) {
	if len(rawCerts) == 0 {
		return nil, errors.New("mesh: peer sent no certificate")
	}
	certs := make([]*x509.Certificate, len(rawCerts))
	for i, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return nil, fmt.Errorf("mesh: bad peer certificate: %w", err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	}); err != nil {
		return nil, fmt.Errorf("mesh: peer certificate not signed by the cluster CA: %w", err)
	}
	return certs[0], nil
}

// serverTLS is the listener's config: TLS 1.3 only, ALPN, client certificate
// required and verified against the cluster CA.
func (p *pki) serverTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{ALPN},
		Certificates: []tls.Certificate{p.cert},
		// The chain is verified in VerifyPeerCertificate (with the same roots),
		// so that both directions share one code path.
		ClientAuth: tls.RequireAnyClientCert,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			leaf, err := verifyChain(raw, p.roots, x509.ExtKeyUsageClientAuth)
			if err != nil {
				return err
			}
			if certNodeID(leaf) == "" {
				return errors.New("mesh: peer certificate names no node id")
			}
			return nil
		},
	}
}

// clientTLS is the dialer's config for a connection to node want: the
// server certificate must chain to the cluster CA and name want. Hostname
// verification is replaced by this node-id check (node ids need not be DNS
// names), hence InsecureSkipVerify with VerifyPeerCertificate doing the work.
func (p *pki) clientTLS(want string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{ALPN},
		Certificates:       []tls.Certificate{p.cert},
		ServerName:         "edgenode-mesh",
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyPeerCertificate
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			leaf, err := verifyChain(raw, p.roots, x509.ExtKeyUsageServerAuth)
			if err != nil {
				return err
			}
			if !certNames(leaf, want) {
				return fmt.Errorf("mesh: dialed node %q but its certificate names %q", want, certNodeID(leaf))
			}
			return nil
		},
	}
}

// The operator listener (a node's --admin-addr off loopback) speaks HTTPS
// with the mesh's PKI: the node shows its mesh certificate, and the client
// must show one signed by the same CA. Whoever holds the cluster secret
// (or, with the operator's own PKI, a certificate of that CA) can mint
// one; nobody else gets past the handshake.
const operatorALPN = "http/1.1"

// OperatorServerTLS is the operator listener's TLS: TLS 1.3, this node's
// mesh certificate, and a client certificate required and verified
// against the mesh's roots, as between nodes.
func (m *Mesh) OperatorServerTLS() *tls.Config {
	c := m.pki.serverTLS()
	c.NextProtos = []string{operatorALPN}
	return c
}

// OperatorClientTLS is what an operator's command (edgenode members,
// shards) dials an operator listener with: a certificate signed by the
// CA derived from secret, or, when caFile, certFile and keyFile are given
// (the operator's own PKI, --cluster-ca and so on), those; and the
// listener's certificate verified against the same roots. Any node of the
// cluster will do, so no host name is checked: the CA is the identity.
func OperatorClientTLS(secret, caFile, certFile, keyFile string) (*tls.Config, error) {
	p, err := newPKI(secret, caFile, certFile, keyFile, "")
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{operatorALPN},
		Certificates:       []tls.Certificate{p.cert},
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyPeerCertificate
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			_, err := verifyChain(raw, p.roots, x509.ExtKeyUsageServerAuth)
			return err
		},
	}, nil
}
