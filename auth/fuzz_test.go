package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// fuzzSecret signs the valid tokens of testdata/fuzz/FuzzVerify, so that the
// fuzzer starts from inputs that reach claim validation and the cache.
var fuzzSecret = []byte("edgenode-fuzz-secret-0123456789ab")

// FuzzVerify feeds arbitrary strings to a Verifier that accepts all three
// algorithms. Verify must never panic, must wrap ErrUnauthenticated on
// failure, must return an id in range on success, and must answer the same
// from its cache as without it.
func FuzzVerify(f *testing.F) {
	k := newKeys(f)
	now := time.Unix(1_800_000_000, 0)
	valid := jwt.MapClaims{"sub": "42", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	f.Add(sign(f, jwt.SigningMethodHS256, valid, fuzzSecret))
	f.Add(sign(f, jwt.SigningMethodEdDSA, valid, k.ed))
	f.Add(sign(f, jwt.SigningMethodES256, valid, k.ec))
	f.Add(sign(f, jwt.SigningMethodNone, valid, jwt.UnsafeAllowNoneSignatureType))
	f.Add(sign(f, jwt.SigningMethodHS256, jwt.MapClaims{"sub": "0x2a", "exp": 1.5e18, "nbf": -1, "aud": []any{"a", 1}}, fuzzSecret))
	f.Add("")
	f.Add("..")
	f.Add("a.b.c.d")
	f.Add(strings.Repeat("A", MaxTokenBytes+1))

	opts := Options{
		Secret:        fuzzSecret,
		PublicKeyFile: k.pubFile,
		Audience:      "chat",
		Now:           func() time.Time { return now },
	}
	cached := verifier(f, opts)
	opts.CacheSize = -1
	uncached := verifier(f, opts)
	opts.Audience = ""
	lenient := verifier(f, opts)

	f.Fuzz(func(t *testing.T, token string) {
		for _, v := range []*Verifier{lenient, uncached} {
			id, err := v.Verify(token)
			if err != nil {
				if !errors.Is(err, ErrUnauthenticated) {
					t.Fatalf("error %v does not wrap ErrUnauthenticated", err)
				}
				continue
			}
			if id < 1 || id > MaxUserID {
				t.Fatalf("Verify = %d, out of range", id)
			}
		}
		id1, err1 := uncached.Verify(token)
		for range 2 {
			id2, err2 := cached.Verify(token)
			if id1 != id2 || (err1 == nil) != (err2 == nil) {
				t.Fatalf("uncached = %d, %v; cached = %d, %v", id1, err1, id2, err2)
			}
		}
	})
}
