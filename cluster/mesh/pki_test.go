package mesh

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeOperatorPKI writes an operator CA and a certificate per node id
// (ECDSA, node id as a DNS SAN only) and returns the CA file.
func writeOperatorPKI(t *testing.T, dir string, ids ...string) string {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "operator CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	caFile := filepath.Join(dir, "ca.pem")
	writePEM(t, caFile, "CERTIFICATE", caDER)
	for i, id := range ids {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 2)),
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			DNSNames:     []string{id},
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
		writePEM(t, filepath.Join(dir, id+".pem"), "CERTIFICATE", der)
		writePEM(t, filepath.Join(dir, id+"-key.pem"), "PRIVATE KEY", keyDER)
	}
	return caFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestOperatorPKI(t *testing.T) {
	dir := t.TempDir()
	caFile := writeOperatorPKI(t, dir, "x", "y")
	reg := newRegistry()
	open := func(id string) *Mesh {
		m, err := New(Options{
			NodeID: id, ListenAddr: "127.0.0.1:0", Shards: 1, Logger: testLogger(),
			CAFile: caFile, CertFile: filepath.Join(dir, id+".pem"), KeyFile: filepath.Join(dir, id+"-key.pem"),
		})
		if err != nil {
			t.Fatal(err)
		}
		reg.join(id, m)
		return m
	}
	x, y := open("x"), open("y")
	defer x.Close()
	defer y.Close()
	y.Handle(KindCall, func(s net.Conn, from string, _ int) {
		if from != "x" {
			t.Errorf("from %q", from)
		}
		echo(s)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := x.Open(ctx, "y", KindCall, 0)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, []byte("operator pki"))

	// A node whose certificate does not name it is refused at New.
	if _, err := New(Options{
		NodeID: "z", ListenAddr: "127.0.0.1:0",
		CAFile: caFile, CertFile: filepath.Join(dir, "x.pem"), KeyFile: filepath.Join(dir, "x-key.pem"),
	}); err == nil {
		t.Fatal("New accepted a certificate naming another node")
	}
	// A secret-derived node cannot talk to an operator-PKI node.
	s := newMesh(t, reg, "s", testSecret, 1)
	defer s.Close()
	if c, err := s.Open(ctx, "y", KindCall, 0); err == nil {
		c.Close()
		t.Fatal("secret node reached operator-PKI node")
	}
}
