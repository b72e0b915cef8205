package auth

import (
	"errors"
	"testing"
	"time"
)

func TestVerifyWithExpiry(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1800000000, 0)
	for _, leeway := range []time.Duration{-1, 10 * time.Second} {
		v, err := NewVerifier(Options{Secret: secret, Now: func() time.Time { return now }, Leeway: leeway})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := Issue(secret, 42, time.Minute, now)
		if err != nil {
			t.Fatal(err)
		}
		want := now.Add(time.Minute).Add(max(leeway, 0))
		// Twice: the second answer comes from the cache.
		for i := 0; i < 2; i++ {
			id, until, err := v.VerifyWithExpiry(tok)
			if err != nil || id != 42 || !until.Equal(want) {
				t.Fatalf("leeway %v, call %d: %d %v %v; want 42 %v", leeway, i, id, until, err, want)
			}
		}
		if _, _, err := v.VerifyWithExpiry("garbage"); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("garbage token: %v", err)
		}
		late, _ := Issue(secret, 42, time.Minute, now.Add(-2*time.Minute))
		if _, _, err := v.VerifyWithExpiry(late); !errors.Is(err, ErrExpired) {
			t.Fatalf("expired token: %v", err)
		}
	}
}
