// Package auth owns client authentication: it verifies the JWT that every
// client request carries (API.md, "Authentication") and turns it into the
// acting user's id, and it issues tokens for development and tests
// (`edgenode token`).
//
// It does not read HTTP headers or query parameters, map errors to API codes
// or know about users beyond their id; the front end extracts the bearer
// token, calls [Verifier.Verify], and answers 401 unauthenticated for any
// error (every one wraps [ErrUnauthenticated]).
//
// # What is accepted
//
// Only three algorithms: HS256 with the shared secret, and EdDSA (Ed25519) or
// ES256 (ECDSA P-256) with the public keys of a PEM file. Each algorithm is
// checked only against its own kind of key, so an HS256 token can never be
// verified with a public key used as an HMAC secret (algorithm confusion),
// and "none" is rejected like every other algorithm not listed. A token
// whose header has "crit" is rejected, since no extension is understood.
//
// Claims: exp is required and enforced; nbf and iat, when present, must not
// lie in the future; iss and aud are compared when configured. All time
// checks allow [Options.Leeway] of clock skew ([DefaultLeeway] by default).
// sub must be the user id as a canonical decimal string: 1 to 2^53-1, digits
// only, no sign, no leading zeros, no spaces. Tokens longer than
// [MaxTokenBytes] are rejected before any parsing.
//
// # Cache
//
// Verify runs for every request and every WebSocket upgrade, so a Verifier
// remembers tokens it has verified: the exact token string maps to the user
// id and the instant the token stops being valid (exp plus leeway). A hit
// costs a hash and a map lookup instead of JSON decoding and a signature
// check. Only successfully verified tokens enter the cache, keyed by the
// whole string, so a hit is exactly as trustworthy as the check that filled
// it. The cache is bounded in entries and in bytes and evicts an arbitrary
// entry of a full shard; an evicted token is simply verified again. Failures
// are never cached.
package auth
