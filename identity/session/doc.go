// Package session keeps a user's login in an encrypted cookie.
//
// A session is sealed with XChaCha20-Poly1305 under the first key of a key
// file; every key of the file opens it, so keys rotate by adding a new
// first line and dropping the last one once the absolute lifetime has
// passed. The cookie name and the key id are bound as associated data, so
// a value cannot move between cookies. The cookie is __Host- prefixed,
// Secure, HttpOnly and SameSite=Lax.
//
// Each session has an absolute lifetime and an idle timeout, and is checked
// against the server-side revocations (by session id, and by user for
// sessions authenticated before a cut-off) on every decode. A tampered,
// expired or revoked cookie is an error the caller answers with a new
// login, never a failure of the request.
package session
