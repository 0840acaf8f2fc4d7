// Package session keeps tokenrelay's server-side sessions: the ticket
// cookie, sealed session records, the Backend contract with its memory
// (MemoryStore) and Redis (RedisStore) implementations, one-time login
// states, the back-channel logout indexes, and the refresh engine.
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
// # Lifetimes
//
// A session ends after IdleTimeout without use (the store entry's TTL, slid
// forward at most about once a minute so a steady-state request costs one
// store round trip) or MaxLifetime after login, whichever comes first.
//
// # Concurrency contract of the refresh engine
//
// Manager is safe for concurrent use, and any number of Managers (replicas)
// may share one Backend. For each session:
//
//   - at most one refresh is in flight across all replicas: requests in one
//     process share one flight (singleflight keyed by session), and flights
//     of different replicas serialise on the session's store lock, taken
//     with a random owner for LockTTL (> RefreshTimeout) and released by
//     compare-and-delete;
//   - no refresh token is sent twice: the lock holder reloads the record
//     after locking and uses any newer tokens another replica saved; saves
//     are compare-and-set on the record version; a rotated refresh token
//     whose successor the store failed to take is remembered and never sent
//     again by this process;
//   - a request that gives up (its context ends) leaves; the flight runs on
//     its own context bounded by RefreshTimeout and LockTTL, and finishes
//     for the others;
//   - a flight that does not get the lock watches the record's version with
//     jittered exponential backoff (2 ms to 100 ms) and never spins; a holder
//     that died loses the lock after LockTTL and the next try takes it;
//   - a transient failure never ends a session: a still-valid token is
//     served, otherwise *UnavailableError carries a Retry-After and the
//     session backs off (FailureBackoff, or the provider's Retry-After).
//     Only invalid_grant for the refresh token still stored ends it.
package session
