package session

import "github.com/tokenrelay/tokenrelay/session/storage"

// The Backend contract is defined in session/storage, so that the stores
// and their conformance suite need not import the Manager (nor the Manager
// go-redis); these names let this package, and the Manager's callers,
// speak of it as their own.
type (
	// Backend is everything the Manager needs from a store; see
	// storage.Backend.
	Backend = storage.Backend
	// Entry is one stored session; see storage.Entry.
	Entry = storage.Entry
)

// Errors a Backend returns; see package storage.
var (
	ErrNotFound = storage.ErrNotFound
	ErrConflict = storage.ErrConflict
)
