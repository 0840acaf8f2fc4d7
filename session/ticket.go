package session

// Ticket is what the session cookie carries: a random 128-bit session id and
// a random 128-bit per-session key. The store sees only a hash of ID, and a
// record can be opened only with Key and the server secret together.
type Ticket struct {
	ID  [16]byte
	Key [16]byte
}
