package mesh

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveOperator serves "ok" over the node's operator TLS on loopback and
// returns the URL.
func serveOperator(t *testing.T, m *Mesh) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          nil,
	}
	go srv.Serve(tls.NewListener(ln, m.OperatorServerTLS()))
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String()
}

func operatorGet(url string, conf *tls.Config) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: conf}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// The operator listener lets in only a client whose certificate the
// cluster's CA signed: minted from the cluster secret by the operator's
// command, or the operator's own PKI.
func TestOperatorListenerTLS(t *testing.T) {
	const secret = "operator-listener-secret-0123456789abcdef"
	m := newMesh(t, newRegistry(), "n1", secret, 1)
	defer m.Close()
	url := serveOperator(t, m)

	good, err := OperatorClientTLS(secret, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if body, err := operatorGet(url, good); err != nil || body != "ok" {
		t.Fatalf("with the cluster secret: %q, %v", body, err)
	}

	other, err := OperatorClientTLS("another-cluster-secret-0123456789abcdef", "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if body, err := operatorGet(url, other); err == nil {
		t.Fatalf("another cluster's secret got in: %q", body)
	}
	// No client certificate at all (and not checking the server's).
	if body, err := operatorGet(url, &tls.Config{InsecureSkipVerify: true}); err == nil {
		t.Fatalf("a client without a certificate got in: %q", body)
	}
	// Plain HTTP is no way in either.
	if body, err := operatorGet("http"+strings.TrimPrefix(url, "https"), nil); err == nil && body == "ok" {
		t.Fatalf("plain HTTP got an answer: %q", body)
	}
}

func TestOperatorListenerTLSWithOwnPKI(t *testing.T) {
	dir := t.TempDir()
	caFile := writeOperatorPKI(t, dir, "n1", "ops")
	m, err := New(Options{
		NodeID: "n1", ListenAddr: "127.0.0.1:0", Shards: 1, Logger: testLogger(),
		CAFile: caFile, CertFile: filepath.Join(dir, "n1.pem"), KeyFile: filepath.Join(dir, "n1-key.pem"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	url := serveOperator(t, m)

	ops, err := OperatorClientTLS("", caFile, filepath.Join(dir, "ops.pem"), filepath.Join(dir, "ops-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if body, err := operatorGet(url, ops); err != nil || body != "ok" {
		t.Fatalf("with a certificate of the cluster's CA: %q, %v", body, err)
	}
	// A certificate minted from some secret is not one of this CA's.
	minted, _ := OperatorClientTLS("some-cluster-secret-0123456789abcdef", "", "", "")
	if body, err := operatorGet(url, minted); err == nil {
		t.Fatalf("a certificate of another CA got in: %q", body)
	}
	if _, err := OperatorClientTLS("", caFile, "", ""); err == nil {
		t.Fatal("a CA file without certificate and key was accepted")
	}
}
