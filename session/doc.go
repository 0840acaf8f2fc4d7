// Package session keeps tokenrelay's server-side sessions: the ticket
// cookie, sealed session records, the memory Backend (MemoryStore; the
// contract is session/storage's, the Redis Backend session/redisstore's),
// sealed login states, the back-channel logout indexes, and the refresh
// engine.
//
// The Manager (manager.go) is the session lifecycle: Create, Replace (a
// login: the browser's old sessions end, the new one gets a fresh ticket),
// Load, End, EndBySID and EndBySubject, Ready, Drain. It composes the
// refresh engine (refresh.go: the numbered algorithm, one method per step;
// flight.go: one refresh of one session), and both read and write records
// through records.go.
//
// # Tickets and records
//
// The browser holds a Ticket: a random 128-bit session id and a random
// 128-bit per-session key, base64url in an HttpOnly cookie (CookieOptions).
// The store sees only SHA-256 of the id, inside keys built by keys.go. The
// record (tokens, expiries, identity, selected claims) is encoded compactly
// (base64url token segments stored as bytes; DEFLATE only for records over
// 1792 bytes, so the request path never inflates a typical session: about
// 1.7 KB sealed with a JWT access token, an ID token and a refresh token),
// and sealed with AES-256-GCM under a key
// derived by HKDF-SHA256 from the per-session key (input keying material) and
// the server secret (salt), with the store key as additional data. A store
// dump alone, or the server secret alone, opens nothing; a record copied to
// another key does not open. Previous server secrets open old records after a
// rotation. Whatever does not open is ErrNoSession, never a panic.
//
// # Route tokens
//
// A session has one refresh token and, beside the login's own access
// token, one access token per route target (an RFC 8707 resource and
// scopes; targets.go), refreshed by the engine like the login's token in a
// flight of its own; the flights of one session share its lock, so each
// spends the refresh token the one before it saved. With DPoP the record
// holds the session's key and every token is bound to it. Token exchange
// routes get the login's token exchanged for their target, cached per
// session and target in the process (exchange.go). tokenrelay's own
// client-credentials tokens belong to no session: they are kept in memory
// and in the store, sealed under the server secret, and renewed once
// across replicas under a lock of their own (clienttokens.go).
//
// # Login states
//
// A login in progress is kept by the browser, not the store: SealLogin
// seals its state, nonce, PKCE verifier, return_to and creation time with
// AES-256-GCM under a key derived by HKDF from the server secret alone (its
// own info label, so never a record key) for the login-binding cookie, and
// OpenLogin opens it at the callback, refusing one older than LoginStateTTL
// by the time sealed inside. Only a login the provider accepted writes to
// the store: ClaimLogin's one-time claim, which lives as long as the state
// could, so no replica accepts that state again.
//
// # Lifetimes
//
// A session ends after IdleTimeout without use (the store entry's TTL, slid
// forward at most about once a minute so a steady-state request costs one
// store round trip) or MaxLifetime after login, whichever comes first.
//
// # Concurrency contract of the refresh engine
//
// Manager and its engine are safe for concurrent use, and any number of
// Managers (replicas) may share one Backend. For each session:
//
//   - at most one refresh is in flight across all replicas: requests in one
//     process share one flight (singleflight keyed by session), and flights
//     of different replicas serialise on the session's store lock, taken
//     with a random owner for LockTTL (> RefreshTimeout) and released by
//     compare-and-delete;
//   - a refresh token that may have been spent is never sent again: the
//     lock holder reloads the record after locking and uses any newer
//     tokens another replica saved; it records an Attempt (a digest of the
//     refresh token and when it was sent) in the record before the token
//     leaves, and clears it only with the call's known outcome; a record
//     whose Attempt matches its refresh token (the answer was lost: a
//     timeout, a dead replica) is not refreshed again, unless ReuseGrace
//     covers it; saves are compare-and-set on the record version; a rotated
//     refresh token whose successor the store failed to take is remembered
//     and saved by this process's next flight;
//   - no request waits longer than RefreshTimeout (lock wait included), and
//     a request whose token is still valid does not wait at all: it gets
//     that token while the refresh runs in the background; the flight runs
//     on its own context, its token endpoint call bounded by LockTTL less a
//     save margin, and finishes for the others;
//   - a flight that does not get the lock watches the record's version with
//     jittered exponential backoff (2 ms to 100 ms), never spins, and stops
//     at RefreshTimeout, or at once for an attempt that outran its budget;
//   - a transient failure never ends a session: a still-valid token is
//     served, otherwise *UnavailableError carries a Retry-After, and the
//     backoff (FailureBackoff, or the provider's Retry-After) is written into
//     the record, so every replica keeps it. A provider that refuses the
//     client is this replica's fault: ErrClientRejected, a process-local
//     backoff, and Ready fails until the provider accepts the client again.
//     Only invalid_grant for the refresh token still stored ends a session,
//     or an unknown outcome once the access token has expired.
package session
