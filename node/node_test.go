package node_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgenode/edgenode/auth"
	"github.com/edgenode/edgenode/config"
	"github.com/edgenode/edgenode/node"
)

func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edgenode test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile, pool
}

// --tls-cert/--tls-key serve HTTPS and WSS on the client address.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	cfg, err := config.Load([]string{"--data-dir", filepath.Join(dir, "data"), "--http-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0", "--cluster-addr", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Start(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(n.URL(), "https://") {
		t.Fatalf("URL %s", n.URL())
	}
	tlsConf := &tls.Config{RootCAs: pool}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf}}
	resp, err := client.Get("https://" + n.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz over TLS: %d", resp.StatusCode)
	}
	// The development secret was generated in the data dir; tokens signed
	// with it work over WSS.
	secret, err := os.ReadFile(filepath.Join(dir, "data", node.JWTSecretFile))
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := auth.Issue([]byte(strings.TrimSpace(string(secret))), 7, time.Hour, time.Now())
	d := websocket.Dialer{TLSClientConfig: tlsConf}
	conn, _, err := d.Dial("wss://"+n.Addr().String()+"/v1/socket/updates", http.Header{"Authorization": {"Bearer " + tok}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, b, err := conn.ReadMessage(); err != nil || !strings.Contains(string(b), `"ready"`) {
		t.Fatalf("ready over WSS: %s %v", b, err)
	}
	// Plain HTTP on the TLS port is refused.
	if resp, err := http.Get("http://" + n.Addr().String() + "/healthz"); err == nil && resp.StatusCode == 200 {
		t.Fatal("plain HTTP served on the TLS port")
	}
}

func TestIdentityKeptAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	load := func() config.Config {
		cfg, err := config.Load([]string{"--data-dir", dir, "--http-addr", "127.0.0.1:0"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := node.PrepareDataDir(&cfg, nil); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	a, b := load(), load()
	if a.NodeID == "" || a.NodeID != b.NodeID || a.ClusterSecret != b.ClusterSecret || a.JWTSecret != b.JWTSecret || len(a.ClusterSecret) < 32 {
		t.Fatalf("identity changed: %q/%q", a.NodeID, b.NodeID)
	}
}
