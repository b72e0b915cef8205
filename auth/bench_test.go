package auth

import (
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkVerify measures the per-request cost of authentication: cached is
// a client's repeated requests with one token (the common case), uncached the
// first request with each token, per algorithm. parallel spreads 10,000
// users' tokens over all cores, as a busy node sees them.
func BenchmarkVerify(b *testing.B) {
	k := newKeys(b)
	opts := Options{Secret: testSecret, PublicKeyFile: k.pubFile, Now: func() time.Time { return testNow }}
	tokens := map[string]string{
		"HS256": sign(b, jwt.SigningMethodHS256, claims(), testSecret),
		"EdDSA": sign(b, jwt.SigningMethodEdDSA, claims(), k.ed),
		"ES256": sign(b, jwt.SigningMethodES256, claims(), k.ec),
	}
	for _, alg := range []string{"HS256", "EdDSA", "ES256"} {
		for _, cached := range []bool{true, false} {
			name := "uncached/" + alg
			o := opts
			o.CacheSize = -1
			if cached {
				name = "cached/" + alg
				o.CacheSize = 0
			}
			b.Run(name, func(b *testing.B) {
				v := verifier(b, o)
				token := tokens[alg]
				b.ReportAllocs()
				for b.Loop() {
					if _, err := v.Verify(token); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
	b.Run("cached/HS256/wall-clock", func(b *testing.B) {
		o := opts
		o.Now = time.Now
		v := verifier(b, o)
		// Valid for the wall clock, whatever day the benchmark runs.
		token := sign(b, jwt.SigningMethodHS256, with(claims(), "iat", nil, "exp", time.Now().Add(time.Hour).Unix()), testSecret)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(token); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached/HS256/parallel-10k-users", func(b *testing.B) {
		v := verifier(b, opts)
		users := make([]string, 10000)
		for i := range users {
			users[i] = sign(b, jwt.SigningMethodHS256, with(claims(), "sub", strconv.Itoa(i+1)), testSecret)
			if _, err := v.Verify(users[i]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := v.Verify(users[i%len(users)]); err != nil {
					b.Error(err)
					return
				}
				i += 7919
			}
		})
	})
}
