package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	testSecret = []byte("0123456789abcdef0123456789abcdef")
	testNow    = time.Date(2026, 11, 27, 10, 20, 8, 0, time.UTC)
)

// keys are the key pairs of one test, with their PEM files in a temp dir.
type keys struct {
	ed      ed25519.PrivateKey
	ec      *ecdsa.PrivateKey
	pubFile string // Ed25519 and P-256 public keys, both as "PUBLIC KEY"
	edPEM   []byte // PKCS #8 private keys
	ecPEM   []byte
	ecSEC1  []byte // "EC PRIVATE KEY"
	dir     string
}

func newKeys(t testing.TB) *keys {
	t.Helper()
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k := &keys{ed: ed, ec: ec, dir: t.TempDir()}
	k.edPEM = pkcs8PEM(t, ed)
	k.ecPEM = pkcs8PEM(t, ec)
	sec1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	k.ecSEC1 = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})
	k.pubFile = k.write(t, "pub.pem", append(pkixPEM(t, ed.Public()), pkixPEM(t, ec.Public())...))
	return k
}

func (k *keys) write(t testing.TB, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(k.dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func pkixPEM(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func pkcs8PEM(t testing.TB, priv any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func certPEM(t testing.TB, priv ed25519.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "login.example"},
		NotBefore:    testNow.Add(-time.Hour),
		NotAfter:     testNow.Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// claims returns the claims of a valid token for user 42 at testNow.
func claims() jwt.MapClaims {
	return jwt.MapClaims{
		"sub": "42",
		"iat": testNow.Unix(),
		"exp": testNow.Add(time.Hour).Unix(),
	}
}

func with(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
		} else {
			c[kv[i].(string)] = kv[i+1]
		}
	}
	return c
}

func sign(t testing.TB, m jwt.SigningMethod, c jwt.MapClaims, key any) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// raw builds a token from literal JSON with an arbitrary signature, for
// headers the jwt library would not produce.
func raw(header, payload string, sig []byte) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(sig)
}

func hs256Raw(t testing.TB, header string, c jwt.MapClaims) string {
	t.Helper()
	payload, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString(payload)
	sig, err := jwt.SigningMethodHS256.Sign(signing, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + enc.EncodeToString(sig)
}

func verifier(t testing.TB, opts Options) *Verifier {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return testNow }
	}
	v, err := NewVerifier(opts)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerifyAccepts(t *testing.T) {
	k := newKeys(t)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rotated := k.write(t, "rotated.pem", append(pkixPEM(t, other.Public()), pkixPEM(t, k.ec.Public())...))
	cert := k.write(t, "cert.pem", certPEM(t, k.ed))
	both := Options{Secret: testSecret, PublicKeyFile: k.pubFile}

	tests := []struct {
		name  string
		opts  Options
		token func() string
		want  int64
	}{
		{"HS256", Options{Secret: testSecret}, func() string { return sign(t, jwt.SigningMethodHS256, claims(), testSecret) }, 42},
		{"HS256 with keys too", both, func() string { return sign(t, jwt.SigningMethodHS256, claims(), testSecret) }, 42},
		{"EdDSA", both, func() string { return sign(t, jwt.SigningMethodEdDSA, claims(), k.ed) }, 42},
		{"ES256", Options{PublicKeyFile: k.pubFile}, func() string { return sign(t, jwt.SigningMethodES256, claims(), k.ec) }, 42},
		{"ES256 second key of file", Options{PublicKeyFile: rotated}, func() string { return sign(t, jwt.SigningMethodES256, claims(), k.ec) }, 42},
		{"EdDSA from certificate", Options{PublicKeyFile: cert}, func() string { return sign(t, jwt.SigningMethodEdDSA, claims(), k.ed) }, 42},
		{"largest id", Options{Secret: testSecret}, func() string {
			return sign(t, jwt.SigningMethodHS256, with(claims(), "sub", "9007199254740991"), testSecret)
		}, MaxUserID},
		{"smallest id", Options{Secret: testSecret}, func() string {
			return sign(t, jwt.SigningMethodHS256, with(claims(), "sub", "1"), testSecret)
		}, 1},
		{"expired within leeway", Options{Secret: testSecret}, func() string {
			return sign(t, jwt.SigningMethodHS256, with(claims(), "exp", testNow.Add(-10*time.Second).Unix()), testSecret)
		}, 42},
		{"nbf within leeway", Options{Secret: testSecret}, func() string {
			return sign(t, jwt.SigningMethodHS256, with(claims(), "nbf", testNow.Add(10*time.Second).Unix()), testSecret)
		}, 42},
		{"no iat", Options{Secret: testSecret}, func() string {
			return sign(t, jwt.SigningMethodHS256, with(claims(), "iat", nil), testSecret)
		}, 42},
		{"iss and aud", Options{Secret: testSecret, Issuer: "login", Audience: "chat"}, func() string {
			return sign(t, jwt.SigningMethodHS256, with(claims(), "iss", "login", "aud", []string{"other", "chat"}), testSecret)
		}, 42},
		{"aud as string", Options{Secret: testSecret, Audience: "chat"}, func() string {
			return sign(t, jwt.SigningMethodHS256, with(claims(), "aud", "chat"), testSecret)
		}, 42},
		{"numeric jti and unknown claims ignored", Options{Secret: testSecret}, func() string {
			return sign(t, jwt.SigningMethodHS256, with(claims(), "jti", 12, "scope", []string{"chat"}), testSecret)
		}, 42},
		{"unconfigured iss ignored", Options{Secret: testSecret}, func() string {
			return sign(t, jwt.SigningMethodHS256, with(claims(), "iss", "anyone", "aud", "anything"), testSecret)
		}, 42},
		{"issued by Issue", Options{Secret: testSecret}, func() string {
			s, err := Issue(testSecret, 7, time.Hour, testNow)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}, 7},
		{"issued by IssueWithKey Ed25519", both, func() string {
			s, err := IssueWithKey(k.edPEM, 8, time.Hour, testNow)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}, 8},
		{"issued by IssueWithKey P-256 PKCS8", both, func() string {
			s, err := IssueWithKey(k.ecPEM, 9, time.Hour, testNow)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}, 9},
		{"issued by IssueWithKey P-256 SEC1", both, func() string {
			s, err := IssueWithKey(k.ecSEC1, 10, time.Hour, testNow)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := verifier(t, tt.opts)
			token := tt.token()
			for i := range 2 { // second time from the cache
				got, err := v.Verify(token)
				if err != nil {
					t.Fatalf("Verify #%d: %v", i, err)
				}
				if got != tt.want {
					t.Fatalf("Verify #%d = %d, want %d", i, got, tt.want)
				}
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	k := newKeys(t)
	stranger := newKeys(t)
	pubPEM, err := os.ReadFile(k.pubFile)
	if err != nil {
		t.Fatal(err)
	}
	edDER, _ := x509.MarshalPKIXPublicKey(k.ed.Public())
	secretOnly := Options{Secret: testSecret}
	keysOnly := Options{PublicKeyFile: k.pubFile}
	both := Options{Secret: testSecret, PublicKeyFile: k.pubFile}
	hs := func(c jwt.MapClaims) func() string {
		return func() string { return sign(t, jwt.SigningMethodHS256, c, testSecret) }
	}
	sig := make([]byte, 32)

	tests := []struct {
		name  string
		opts  Options
		token func() string
		why   string // substring of the error
	}{
		{"empty", secretOnly, func() string { return "" }, "no token"},
		{"too long", secretOnly, func() string {
			return sign(t, jwt.SigningMethodHS256, with(claims(), "pad", strings.Repeat("x", MaxTokenBytes)), testSecret)
		}, "longer than 8192 bytes"},
		{"garbage", secretOnly, func() string { return "not a token" }, "malformed"},
		{"two segments", secretOnly, func() string { return "eyJhbGciOiJIUzI1NiJ9.e30" }, "malformed"},
		{"bad base64", secretOnly, func() string { return "!!!.!!!.!!!" }, "malformed"},
		{"header not JSON", secretOnly, func() string { return raw("{", "{}", sig) }, "malformed"},
		{"no alg", secretOnly, func() string { return raw(`{"typ":"JWT"}`, `{"sub":"42"}`, sig) }, "algorithm"},
		{"alg none", both, func() string {
			return sign(t, jwt.SigningMethodNone, claims(), jwt.UnsafeAllowNoneSignatureType)
		}, `algorithm "none" not accepted`},
		{"alg none, empty signature literal", both, func() string {
			c, _ := json.Marshal(claims())
			return raw(`{"alg":"none"}`, string(c), nil)
		}, `algorithm "none" not accepted`},
		{"HS384", both, func() string { return sign(t, jwt.SigningMethodHS384, claims(), testSecret) }, `algorithm "HS384" not accepted`},
		{"HS512", both, func() string { return sign(t, jwt.SigningMethodHS512, claims(), testSecret) }, `algorithm "HS512" not accepted`},
		{"RS256", both, func() string {
			c, _ := json.Marshal(claims())
			return raw(`{"alg":"RS256"}`, string(c), make([]byte, 256))
		}, `algorithm "RS256" not accepted`},
		{"ES384", both, func() string {
			c, _ := json.Marshal(claims())
			return raw(`{"alg":"ES384"}`, string(c), make([]byte, 96))
		}, `algorithm "ES384" not accepted`},
		{"unknown alg", both, func() string {
			c, _ := json.Marshal(claims())
			return raw(`{"alg":"XX999"}`, string(c), sig)
		}, "algorithm"},
		{"HS256 with wrong secret", secretOnly, func() string {
			return sign(t, jwt.SigningMethodHS256, claims(), []byte("another secret of thirty-two bytes"))
		}, "bad signature"},
		{"algorithm confusion: HS256 keyed with public key PEM", keysOnly, func() string {
			return sign(t, jwt.SigningMethodHS256, claims(), pubPEM)
		}, "HS256 not configured"},
		{"algorithm confusion: HS256 keyed with public key DER", keysOnly, func() string {
			return sign(t, jwt.SigningMethodHS256, claims(), edDER)
		}, "HS256 not configured"},
		{"algorithm confusion: HS256 keyed with raw Ed25519 key", keysOnly, func() string {
			return sign(t, jwt.SigningMethodHS256, claims(), []byte(k.ed.Public().(ed25519.PublicKey)))
		}, "HS256 not configured"},
		{"algorithm confusion with secret too", both, func() string {
			return sign(t, jwt.SigningMethodHS256, claims(), pubPEM)
		}, "bad signature"},
		{"EdDSA without keys", secretOnly, func() string { return sign(t, jwt.SigningMethodEdDSA, claims(), k.ed) }, "EdDSA not configured"},
		{"ES256 without keys", secretOnly, func() string { return sign(t, jwt.SigningMethodES256, claims(), k.ec) }, "ES256 not configured"},
		{"EdDSA by unknown key", both, func() string { return sign(t, jwt.SigningMethodEdDSA, claims(), stranger.ed) }, "bad signature"},
		{"ES256 by unknown key", both, func() string { return sign(t, jwt.SigningMethodES256, claims(), stranger.ec) }, "bad signature"},
		{"tampered payload", secretOnly, func() string {
			good := strings.Split(sign(t, jwt.SigningMethodHS256, claims(), testSecret), ".")
			c, _ := json.Marshal(with(claims(), "sub", "43"))
			return good[0] + "." + base64.RawURLEncoding.EncodeToString(c) + "." + good[2]
		}, "bad signature"},
		{"truncated signature", secretOnly, func() string {
			s := sign(t, jwt.SigningMethodHS256, claims(), testSecret)
			return s[:len(s)-4]
		}, "bad signature"},
		{"crit header", secretOnly, func() string {
			return hs256Raw(t, `{"alg":"HS256","crit":["exp"]}`, claims())
		}, "critical header"},
		{"missing exp", secretOnly, hs(with(claims(), "exp", nil)), "missing exp"},
		{"exp as string", secretOnly, hs(with(claims(), "exp", "tomorrow")), "malformed"},
		{"expired", secretOnly, hs(with(claims(), "exp", testNow.Add(-31*time.Second).Unix())), "token expired"},
		{"expired, no leeway", Options{Secret: testSecret, Leeway: -1}, hs(with(claims(), "exp", testNow.Unix())), "token expired"},
		{"nbf in the future", secretOnly, hs(with(claims(), "nbf", testNow.Add(time.Minute).Unix())), "not valid yet"},
		{"iat in the future", secretOnly, hs(with(claims(), "iat", testNow.Add(time.Minute).Unix())), "issued in the future"},
		{"no sub", secretOnly, hs(with(claims(), "sub", nil)), "bad sub"},
		{"sub empty", secretOnly, hs(with(claims(), "sub", "")), "bad sub"},
		{"sub zero", secretOnly, hs(with(claims(), "sub", "0")), "bad sub"},
		{"sub leading zero", secretOnly, hs(with(claims(), "sub", "042")), "bad sub"},
		{"sub plus", secretOnly, hs(with(claims(), "sub", "+42")), "bad sub"},
		{"sub minus", secretOnly, hs(with(claims(), "sub", "-42")), "bad sub"},
		{"sub leading space", secretOnly, hs(with(claims(), "sub", " 42")), "bad sub"},
		{"sub trailing space", secretOnly, hs(with(claims(), "sub", "42 ")), "bad sub"},
		{"sub 2^53", secretOnly, hs(with(claims(), "sub", "9007199254740992")), "bad sub"},
		{"sub overflowing int64", secretOnly, hs(with(claims(), "sub", "99999999999999999999")), "bad sub"},
		{"sub exponent", secretOnly, hs(with(claims(), "sub", "4e2")), "bad sub"},
		{"sub hex", secretOnly, hs(with(claims(), "sub", "0x2a")), "bad sub"},
		{"sub decimal point", secretOnly, hs(with(claims(), "sub", "42.0")), "bad sub"},
		{"sub name", secretOnly, hs(with(claims(), "sub", "alice")), "bad sub"},
		{"sub arabic-indic digits", secretOnly, hs(with(claims(), "sub", "٤٢")), "bad sub"},
		{"sub as JSON number", secretOnly, hs(with(claims(), "sub", 42)), "malformed"},
		{"wrong iss", Options{Secret: testSecret, Issuer: "login"}, hs(with(claims(), "iss", "evil")), "wrong iss"},
		{"iss case differs", Options{Secret: testSecret, Issuer: "login"}, hs(with(claims(), "iss", "Login")), "wrong iss"},
		{"missing iss", Options{Secret: testSecret, Issuer: "login"}, hs(claims()), "missing iss"},
		{"wrong aud", Options{Secret: testSecret, Audience: "chat"}, hs(with(claims(), "aud", []string{"mail"})), "wrong aud"},
		{"missing aud", Options{Secret: testSecret, Audience: "chat"}, hs(claims()), "missing aud"},
		{"empty aud list", Options{Secret: testSecret, Audience: "chat"}, hs(with(claims(), "aud", []string{})), "missing aud"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := verifier(t, tt.opts)
			token := tt.token()
			for i := range 2 { // failures must not be cached as anything else
				id, err := v.Verify(token)
				if err == nil {
					t.Fatalf("Verify #%d = %d, want error", i, id)
				}
				if !errors.Is(err, ErrUnauthenticated) {
					t.Fatalf("Verify #%d error %v does not wrap ErrUnauthenticated", i, err)
				}
				if !strings.Contains(err.Error(), tt.why) {
					t.Fatalf("Verify #%d error %q does not say %q", i, err, tt.why)
				}
			}
			if v.cache.len() != 0 {
				t.Fatalf("rejected token was cached")
			}
		})
	}
}

func TestVerifyExpiredIsErrExpired(t *testing.T) {
	v := verifier(t, Options{Secret: testSecret})
	token := sign(t, jwt.SigningMethodHS256, with(claims(), "exp", testNow.Add(-time.Hour).Unix()), testSecret)
	if _, err := v.Verify(token); !errors.Is(err, ErrExpired) {
		t.Fatalf("err = %v, want ErrExpired", err)
	}
}

func TestNewVerifierErrors(t *testing.T) {
	k := newKeys(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts Options
		why  string
	}{
		{"nothing", Options{}, "set a secret or a public key file"},
		{"empty secret", Options{Secret: []byte{}}, "set a secret or a public key file"},
		{"missing file", Options{PublicKeyFile: filepath.Join(k.dir, "nope.pem")}, "no such file"},
		{"not PEM", Options{PublicKeyFile: k.write(t, "junk.pem", []byte("hello"))}, "no PEM block"},
		{"empty file", Options{PublicKeyFile: k.write(t, "empty.pem", nil)}, "no PEM block"},
		{"RSA key", Options{PublicKeyFile: k.write(t, "rsa.pem", pkixPEM(t, rsaKey.Public()))}, "not supported"},
		{"P-384 key", Options{PublicKeyFile: k.write(t, "p384.pem", pkixPEM(t, p384.Public()))}, "P-384"},
		{"private key", Options{PublicKeyFile: k.write(t, "priv.pem", k.edPEM)}, `"PRIVATE KEY" is not a public key`},
		{"corrupt key", Options{PublicKeyFile: k.write(t, "bad.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("xx")}))}, "PEM block 1"},
		{"one bad among good", Options{PublicKeyFile: k.write(t, "mixed.pem", append(pkixPEM(t, k.ed.Public()), pkixPEM(t, rsaKey.Public())...))}, "PEM block 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifier(tt.opts)
			if err == nil {
				t.Fatalf("NewVerifier = %v, want error", v)
			}
			if !strings.Contains(err.Error(), tt.why) {
				t.Fatalf("error %q does not say %q", err, tt.why)
			}
		})
	}
}

func TestIssueErrors(t *testing.T) {
	k := newKeys(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		issue func() (string, error)
		why   string
	}{
		{"no secret", func() (string, error) { return Issue(nil, 1, time.Hour, testNow) }, "no secret"},
		{"user 0", func() (string, error) { return Issue(testSecret, 0, time.Hour, testNow) }, "user id 0"},
		{"user 2^53", func() (string, error) { return Issue(testSecret, MaxUserID+1, time.Hour, testNow) }, "user id"},
		{"zero ttl", func() (string, error) { return Issue(testSecret, 1, 0, testNow) }, "ttl"},
		{"not PEM", func() (string, error) { return IssueWithKey([]byte("x"), 1, time.Hour, testNow) }, "no PEM block"},
		{"public key", func() (string, error) { return IssueWithKey(pkixPEM(t, k.ed.Public()), 1, time.Hour, testNow) }, "not a private key"},
		{"RSA key", func() (string, error) { return IssueWithKey(pkcs8PEM(t, rsaKey), 1, time.Hour, testNow) }, "not supported"},
		{"P-384 key", func() (string, error) { return IssueWithKey(pkcs8PEM(t, p384), 1, time.Hour, testNow) }, "P-384"},
		{"key, bad user", func() (string, error) { return IssueWithKey(k.edPEM, -1, time.Hour, testNow) }, "user id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := tt.issue()
			if err == nil {
				t.Fatalf("got token %q, want error", s)
			}
			if !strings.Contains(err.Error(), tt.why) {
				t.Fatalf("error %q does not say %q", err, tt.why)
			}
		})
	}
}

func TestIssueClaims(t *testing.T) {
	s, err := Issue(testSecret, 42, 24*time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}
	var c jwt.RegisteredClaims
	if _, err := jwt.NewParser(jwt.WithoutClaimsValidation()).ParseWithClaims(s, &c, func(*jwt.Token) (any, error) { return testSecret, nil }); err != nil {
		t.Fatal(err)
	}
	if c.Subject != "42" || !c.IssuedAt.Equal(testNow) || !c.ExpiresAt.Equal(testNow.Add(24*time.Hour)) {
		t.Fatalf("claims = %+v", c)
	}
}

// TestCacheExpiry checks that a cached token stops working at exp plus
// leeway, exactly like an uncached one.
func TestCacheExpiry(t *testing.T) {
	now := testNow
	v := verifier(t, Options{Secret: testSecret, Leeway: 5 * time.Second, Now: func() time.Time { return now }})
	token := sign(t, jwt.SigningMethodHS256, with(claims(), "exp", testNow.Add(time.Minute).Unix()), testSecret)
	if _, err := v.Verify(token); err != nil {
		t.Fatal(err)
	}
	if v.cache.len() != 1 {
		t.Fatalf("cache holds %d tokens, want 1", v.cache.len())
	}
	now = testNow.Add(time.Minute + 4*time.Second)
	if _, err := v.Verify(token); err != nil {
		t.Fatalf("within leeway: %v", err)
	}
	now = testNow.Add(time.Minute + 5*time.Second)
	if _, err := v.Verify(token); !errors.Is(err, ErrExpired) {
		t.Fatalf("at exp+leeway: err = %v, want ErrExpired", err)
	}
	if v.cache.len() != 0 {
		t.Fatalf("expired token still cached")
	}
}

func TestCacheBounded(t *testing.T) {
	const size = cacheShards * 4
	v := verifier(t, Options{Secret: testSecret, CacheSize: size})
	tokens := make([]string, 3*size)
	for i := range tokens {
		tokens[i] = sign(t, jwt.SigningMethodHS256, with(claims(), "sub", "1", "jti", i), testSecret)
		if _, err := v.Verify(tokens[i]); err != nil {
			t.Fatal(err)
		}
		if n := v.cache.len(); n > size {
			t.Fatalf("cache holds %d tokens, bound %d", n, size)
		}
	}
	if n := v.cache.len(); n < size/2 {
		t.Fatalf("cache holds only %d tokens of %d", n, size)
	}
	// Evicted tokens still verify.
	for _, tok := range tokens {
		if id, err := v.Verify(tok); err != nil || id != 1 {
			t.Fatalf("Verify = %d, %v", id, err)
		}
	}
}

func TestCacheByteBudget(t *testing.T) {
	c := newCache(1<<20, cacheShards*(MaxTokenBytes+entryOverhead))
	until := testNow.Add(time.Hour)
	for i := range 10 * cacheShards {
		c.put(strings.Repeat("x", 4000)+string(rune('a'+i%26))+strings.Repeat("y", i), 1, until)
	}
	for i := range c.shards {
		s := &c.shards[i]
		if s.bytes > c.maxBytes {
			t.Fatalf("shard %d holds %d bytes, budget %d", i, s.bytes, c.maxBytes)
		}
		sum := 0
		for k := range s.m {
			sum += len(k) + entryOverhead
		}
		if sum != s.bytes {
			t.Fatalf("shard %d counts %d bytes, holds %d", i, s.bytes, sum)
		}
	}
}

func TestCacheDisabled(t *testing.T) {
	v := verifier(t, Options{Secret: testSecret, CacheSize: -1})
	token := sign(t, jwt.SigningMethodHS256, claims(), testSecret)
	for range 2 {
		if _, err := v.Verify(token); err != nil {
			t.Fatal(err)
		}
	}
	if v.cache != nil {
		t.Fatal("cache built although disabled")
	}
}

func TestVerifyConcurrent(t *testing.T) {
	v := verifier(t, Options{Secret: testSecret, CacheSize: cacheShards * 2})
	tokens := make([]string, 200)
	for i := range tokens {
		tokens[i] = sign(t, jwt.SigningMethodHS256, with(claims(), "sub", "5", "jti", i), testSecret)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				tok := tokens[(i*7+g)%len(tokens)]
				if id, err := v.Verify(tok); err != nil || id != 5 {
					t.Errorf("Verify = %d, %v", id, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
