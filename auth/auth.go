package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/edgenode/edgenode/jsonstrict"
)

const (
	// MaxTokenBytes bounds a token; longer ones are rejected unparsed, so a
	// hostile header cannot make the node decode megabytes of base64 and JSON.
	MaxTokenBytes = 8 << 10
	// MaxUserID is the largest user id: the largest integer a JavaScript
	// client holds exactly (API.md, "Identifiers and time").
	MaxUserID = 1<<53 - 1
	// DefaultLeeway is the clock skew allowed on exp, nbf and iat when
	// Options.Leeway is zero. Phones and login services drift by seconds;
	// half a minute absorbs that without keeping expired tokens alive long.
	DefaultLeeway = 30 * time.Second
	// DefaultCacheSize is the number of verified tokens a Verifier remembers
	// when Options.CacheSize is zero.
	DefaultCacheSize = 64 << 10
)

// ErrUnauthenticated is wrapped by every error Verify returns; callers map it
// to 401 unauthenticated. The wrapping error's message says why.
var ErrUnauthenticated = errors.New("auth: unauthenticated")

// ErrExpired is returned by Verify for a token past its exp (plus leeway). It
// wraps ErrUnauthenticated; a front end may use it to tell clients to fetch a
// fresh token rather than to log in again.
var ErrExpired = fmt.Errorf("%w: token expired", ErrUnauthenticated)

// Algorithms accepted by a Verifier.
const (
	AlgHS256 = "HS256"
	AlgEdDSA = "EdDSA"
	AlgES256 = "ES256"
)

// Options configure a Verifier. At least one of Secret and PublicKeyFile must
// be set; with both, HS256 tokens are checked against the secret and EdDSA or
// ES256 tokens against the keys.
type Options struct {
	// Secret is the HS256 shared secret. Empty means HS256 tokens are
	// rejected.
	Secret []byte
	// PublicKeyFile names a PEM file holding one or more Ed25519 or ECDSA
	// P-256 public keys ("PUBLIC KEY", PKIX) or certificates
	// ("CERTIFICATE") whose key is one of those. Several keys allow rotation:
	// a token verifies if any key of its algorithm accepts it. Empty means
	// EdDSA and ES256 tokens are rejected.
	PublicKeyFile string
	// Issuer, when not empty, must equal the token's iss.
	Issuer string
	// Audience, when not empty, must be one of the token's aud values.
	Audience string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Leeway is the clock skew allowed on exp, nbf and iat. Zero means
	// DefaultLeeway; a negative value means none.
	Leeway time.Duration
	// CacheSize bounds the verified-token cache in entries (its byte budget
	// is CacheSize*512, so long tokens cannot make it large). Zero means
	// DefaultCacheSize; a negative value disables the cache.
	CacheSize int
}

// Verifier checks client tokens. It is safe for concurrent use.
type Verifier struct {
	secret   []byte
	edKeys   []jwt.VerificationKey
	ecKeys   []jwt.VerificationKey
	now      func() time.Time
	leeway   time.Duration
	parser   *jwt.Parser
	keyfunc  jwt.Keyfunc
	cache    *cache
	issuer   string
	audience string
}

// NewVerifier builds a Verifier, reading the public key file if one is named.
func NewVerifier(opts Options) (*Verifier, error) {
	v := &Verifier{
		secret:   append([]byte(nil), opts.Secret...),
		now:      opts.Now,
		leeway:   opts.Leeway,
		issuer:   opts.Issuer,
		audience: opts.Audience,
	}
	if v.now == nil {
		v.now = time.Now
	}
	switch {
	case v.leeway == 0:
		v.leeway = DefaultLeeway
	case v.leeway < 0:
		v.leeway = 0
	}
	if opts.PublicKeyFile != "" {
		data, err := os.ReadFile(opts.PublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("auth: read public key: %w", err)
		}
		if err := v.addPublicKeys(data); err != nil {
			return nil, fmt.Errorf("auth: public key file %s: %w", opts.PublicKeyFile, err)
		}
	}
	if len(v.secret) == 0 && len(v.edKeys) == 0 && len(v.ecKeys) == 0 {
		return nil, errors.New("auth: no way to verify tokens: set a secret or a public key file")
	}

	popts := []jwt.ParserOption{
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(v.leeway),
		jwt.WithTimeFunc(v.now),
		// No WithValidMethods: the keyfunc is the one gate for algorithms,
		// and it says which algorithm was refused.
	}
	if v.issuer != "" {
		popts = append(popts, jwt.WithIssuer(v.issuer))
	}
	if v.audience != "" {
		popts = append(popts, jwt.WithAudience(v.audience))
	}
	v.parser = jwt.NewParser(popts...)
	v.keyfunc = v.key

	size := opts.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}
	if size > 0 {
		v.cache = newCache(size, size*512)
	}
	return v, nil
}

// addPublicKeys collects every usable key of a PEM file. Blocks of other
// types (a private key pasted by mistake, parameters) are an error rather
// than skipped, so a wrong file is noticed at start and not at the first
// rejected login.
func (v *Verifier) addPublicKeys(data []byte) error {
	n := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		n++
		var pub any
		switch block.Type {
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return fmt.Errorf("PEM block %d: %w", n, err)
			}
			pub = k
		case "CERTIFICATE":
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return fmt.Errorf("PEM block %d: %w", n, err)
			}
			pub = cert.PublicKey
		default:
			return fmt.Errorf("PEM block %d: type %q is not a public key or certificate", n, block.Type)
		}
		switch k := pub.(type) {
		case ed25519.PublicKey:
			v.edKeys = append(v.edKeys, k)
		case *ecdsa.PublicKey:
			if k.Curve != elliptic.P256() {
				return fmt.Errorf("PEM block %d: ECDSA curve %s is not supported (ES256 needs P-256)", n, k.Curve.Params().Name)
			}
			v.ecKeys = append(v.ecKeys, k)
		default:
			return fmt.Errorf("PEM block %d: key type %T is not supported (use Ed25519 or ECDSA P-256)", n, pub)
		}
	}
	if n == 0 {
		return errors.New("no PEM block found")
	}
	return nil
}

// reasonError carries why the keyfunc refused a token through the jwt
// library's error wrapping.
type reasonError string

func (e reasonError) Error() string { return string(e) }

// key hands the jwt parser the keys of the token's algorithm only: the
// secret for HS256, never a public key, which is what defeats algorithm
// confusion.
func (v *Verifier) key(t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, reasonError("unsupported critical header")
	}
	alg := t.Method.Alg()
	switch alg {
	case AlgHS256:
		if len(v.secret) > 0 {
			return v.secret, nil
		}
	case AlgEdDSA:
		if len(v.edKeys) > 0 {
			return jwt.VerificationKeySet{Keys: v.edKeys}, nil
		}
	case AlgES256:
		if len(v.ecKeys) > 0 {
			return jwt.VerificationKeySet{Keys: v.ecKeys}, nil
		}
	default:
		return nil, reasonError(fmt.Sprintf("algorithm %q not accepted", alg))
	}
	return nil, reasonError(fmt.Sprintf("algorithm %s not configured on this node", alg))
}

// Verify checks a token and returns its user id. Every error wraps
// ErrUnauthenticated (ErrExpired for an expired token) and says why.
func (v *Verifier) Verify(token string) (userID int64, err error) {
	if len(token) > MaxTokenBytes {
		return 0, unauthenticated(fmt.Sprintf("token is longer than %d bytes", MaxTokenBytes))
	}
	if token == "" {
		return 0, unauthenticated("no token")
	}
	if v.cache != nil {
		if id, ok := v.cache.get(token, v.now()); ok {
			return id, nil
		}
	}
	if err := checkSegments(token); err != nil {
		return 0, err
	}
	var claims tokenClaims
	if _, err := v.parser.ParseWithClaims(token, &claims, v.keyfunc); err != nil {
		return 0, v.translate(err, &claims)
	}
	id, err := parseUserID(claims.Subject)
	if err != nil {
		return 0, unauthenticated("bad sub: " + err.Error())
	}
	if v.cache != nil {
		// The parser guarantees exp is present after WithExpirationRequired.
		v.cache.put(token, id, claims.ExpiresAt.Add(v.leeway))
	}
	return id, nil
}

// VerifyWithExpiry is Verify that also returns until when the token is
// accepted: its exp plus the allowed clock skew. A connection authenticated
// once with the token (a WebSocket) should end then.
func (v *Verifier) VerifyWithExpiry(token string) (userID int64, until time.Time, err error) {
	id, err := v.Verify(token)
	if err != nil {
		return 0, time.Time{}, err
	}
	// Verified (or cached as verified): its claims can be read as they are.
	var claims tokenClaims
	if _, _, err := v.parser.ParseUnverified(token, &claims); err != nil || claims.ExpiresAt == nil {
		return 0, time.Time{}, unauthenticated("missing exp")
	}
	return id, claims.ExpiresAt.Add(v.leeway), nil
}

// checkSegments refuses what the JWT library would read leniently: a
// header or claim given twice (the library keeps the last, another reader
// may keep the first), keys that differ only by case, and registered claims
// of the wrong JSON type (the library reads "exp": "1700000000", a string,
// as a number). Segments that do not decode are left to the library's
// error.
func checkSegments(token string) error {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil
	}
	for i, what := range []string{"header", "claims"} {
		seg, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return nil
		}
		if err := jsonstrict.Check(seg); err != nil {
			return unauthenticated("malformed token: " + what + ": " + err.Error())
		}
		if i == 0 {
			continue
		}
		var claims map[string]json.RawMessage
		if json.Unmarshal(seg, &claims) != nil {
			return nil
		}
		for name, want := range map[string]string{"exp": "number", "nbf": "number", "iat": "number", "sub": "string", "iss": "string", "aud": "string or list of strings"} {
			raw, ok := claims[name]
			if !ok || len(raw) == 0 {
				continue
			}
			c := raw[0]
			var good bool
			switch want {
			case "number":
				good = c == '-' || c >= '0' && c <= '9'
			case "string":
				good = c == '"'
			default:
				good = c == '"' || c == '['
			}
			if !good && name == "sub" {
				return unauthenticated("malformed token: sub must be a decimal user id string")
			}
			if !good {
				return unauthenticated(fmt.Sprintf("malformed token: %s must be a %s", name, want))
			}
		}
	}
	return nil
}

func unauthenticated(reason string) error {
	return fmt.Errorf("%w: %s", ErrUnauthenticated, reason)
}

// tokenClaims are the claims Verify reads. Unlike jwt.RegisteredClaims it
// leaves out jti, which edgenode ignores, so a login service that sends a
// numeric jti is not refused for it.
type tokenClaims struct {
	Subject   string           `json:"sub"`
	Issuer    string           `json:"iss"`
	Audience  jwt.ClaimStrings `json:"aud"`
	ExpiresAt *jwt.NumericDate `json:"exp"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
}

func (c *tokenClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt, nil }
func (c *tokenClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore, nil }
func (c *tokenClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt, nil }
func (c *tokenClaims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *tokenClaims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *tokenClaims) GetAudience() (jwt.ClaimStrings, error)       { return c.Audience, nil }

// translate turns a jwt library error into one that wraps ErrUnauthenticated
// and says why in a few words a client developer understands. claims are
// what the parser decoded; they are only consulted for claim errors, which
// the library reports after the signature checked out.
func (v *Verifier) translate(err error, claims *tokenClaims) error {
	var reason reasonError
	switch {
	case errors.As(err, &reason):
		return unauthenticated(string(reason))
	case errors.Is(err, jwt.ErrTokenExpired):
		return ErrExpired
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// The library says only that some claim is missing.
		switch {
		case claims.ExpiresAt == nil:
			return unauthenticated("missing exp")
		case v.issuer != "" && claims.Issuer == "":
			return unauthenticated("missing iss")
		case v.audience != "" && len(claims.Audience) == 0:
			return unauthenticated("missing aud")
		}
		return unauthenticated("missing required claim")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return unauthenticated("token not valid yet (nbf)")
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return unauthenticated("token issued in the future (iat)")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return unauthenticated("wrong iss")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return unauthenticated("wrong aud")
	case errors.Is(err, jwt.ErrTokenMalformed):
		return unauthenticated(malformedReason(err))
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return unauthenticated("bad signature")
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// An alg the library does not know at all, or none given.
		return unauthenticated("algorithm missing or not accepted")
	default:
		return unauthenticated(trimJWTPrefix(err))
	}
}

// malformedReason says what is malformed in a few words, without the
// library's or encoding/json's wording (Go type names, struct fields).
func malformedReason(err error) string {
	var te *json.UnmarshalTypeError
	msg := err.Error()
	switch {
	case errors.As(err, &te) && te.Field == "sub":
		return "malformed token: sub must be a decimal user id string"
	case errors.As(err, &te) && te.Field == "iss":
		return "malformed token: iss must be a string"
	case strings.Contains(msg, "could not JSON decode claim"):
		return "malformed token: the claims are not a JSON object of the expected types (exp, nbf, iat: numbers; sub, iss: strings; aud: a string or list of strings)"
	case strings.Contains(msg, "could not JSON decode header"):
		return "malformed token: the header is not a JSON object"
	case strings.Contains(msg, "base64 decode"):
		return "malformed token: not base64url-encoded"
	case strings.Contains(msg, "invalid number of segments"):
		return "malformed token: a JWT has three dot-separated parts"
	}
	return "malformed token"
}

// trimJWTPrefix drops the library's generic lead ("token is malformed: ")
// so the reason is not said twice.
func trimJWTPrefix(err error) string {
	s := err.Error()
	const p = "token is malformed: "
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}

// parseUserID parses a user id in canonical decimal form, as sub carries it:
// 1 to MaxUserID, ASCII digits only, no sign, no leading zeros, no spaces.
func parseUserID(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("empty")
	}
	if len(s) > 16 { // MaxUserID has 16 digits
		return 0, fmt.Errorf("%.20q is not an integer between 1 and %d", s, int64(MaxUserID))
	}
	if s[0] == '0' {
		return 0, fmt.Errorf("%q is not an integer between 1 and %d", s, int64(MaxUserID))
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not an integer between 1 and %d", s, int64(MaxUserID))
		}
		n = n*10 + int64(c-'0')
	}
	if n > MaxUserID {
		return 0, fmt.Errorf("%q is not an integer between 1 and %d", s, int64(MaxUserID))
	}
	return n, nil
}

// Issue signs an HS256 token for userID valid from now for ttl, with sub,
// iat and exp. It is for development and tests (`edgenode token`); production
// tokens come from the operator's login service.
func Issue(secret []byte, userID int64, ttl time.Duration, now time.Time) (string, error) {
	return IssueFor(secret, userID, ttl, now, "", "")
}

// IssueFor is Issue with an iss and an aud claim ("" = none), for a node
// started with --jwt-issuer or --jwt-audience.
func IssueFor(secret []byte, userID int64, ttl time.Duration, now time.Time, issuer, audience string) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("auth: issue: no secret")
	}
	claims, err := issueClaims(userID, ttl, now)
	if err != nil {
		return "", err
	}
	claims.Issuer = issuer
	if audience != "" {
		claims.Audience = jwt.ClaimStrings{audience}
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("auth: issue: %w", err)
	}
	return s, nil
}

// IssueWithKey signs a token like Issue with a private key: EdDSA for an
// Ed25519 key, ES256 for an ECDSA P-256 key. privateKeyPEM holds a PKCS #8
// "PRIVATE KEY" block or a SEC 1 "EC PRIVATE KEY" block.
func IssueWithKey(privateKeyPEM []byte, userID int64, ttl time.Duration, now time.Time) (string, error) {
	key, method, err := parsePrivateKey(privateKeyPEM)
	if err != nil {
		return "", fmt.Errorf("auth: issue: %w", err)
	}
	claims, err := issueClaims(userID, ttl, now)
	if err != nil {
		return "", err
	}
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		return "", fmt.Errorf("auth: issue: %w", err)
	}
	return s, nil
}

func issueClaims(userID int64, ttl time.Duration, now time.Time) (jwt.RegisteredClaims, error) {
	if userID < 1 || userID > MaxUserID {
		return jwt.RegisteredClaims{}, fmt.Errorf("auth: issue: user id %d is not between 1 and %d", userID, int64(MaxUserID))
	}
	if ttl <= 0 {
		return jwt.RegisteredClaims{}, fmt.Errorf("auth: issue: ttl %v is not positive", ttl)
	}
	return jwt.RegisteredClaims{
		Subject:   strconv.FormatInt(userID, 10),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}, nil
}

func parsePrivateKey(data []byte) (any, jwt.SigningMethod, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, nil, errors.New("no PEM block found")
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, nil, err
		}
		key = k
	case "EC PRIVATE KEY":
		k, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, nil, err
		}
		key = k
	default:
		return nil, nil, fmt.Errorf("PEM type %q is not a private key", block.Type)
	}
	switch k := key.(type) {
	case ed25519.PrivateKey:
		return k, jwt.SigningMethodEdDSA, nil
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, nil, fmt.Errorf("ECDSA curve %s is not supported (ES256 needs P-256)", k.Curve.Params().Name)
		}
		return k, jwt.SigningMethodES256, nil
	default:
		return nil, nil, fmt.Errorf("key type %T is not supported (use Ed25519 or ECDSA P-256)", key)
	}
}
