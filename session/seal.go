package session

import (
	"bytes"
	"compress/flate"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Sealed format, for session records and login states alike:
//
//	version (1 byte) || nonce (12 bytes) || AES-256-GCM(payload)
//
// with the version byte and, for a record, its store key as additional
// data, so a sealed record opens only under the key it was written to (a
// login state, which lives in a cookie, has the fixed label loginAD
// instead). payload is one byte saying how the encoded record follows — raw (0) or DEFLATE (1), whichever
// is shorter — and the encoded bytes.
//
// A session record's AES key is HKDF-SHA256 with the ticket's per-session key
// as input keying material and the server secret as salt: the store (which
// sees neither) and the server secret alone (which lacks the per-session key)
// both fail to open it. A login state's key comes from the server secret
// alone (HKDF info loginInfo, so it is never a record key): the browser
// holds the sealed state in its login-binding cookie until the provider
// sends it back, and only tokenrelay can open or forge one.
//
// Compressing before encrypting leaks the plaintext length. The only
// attacker-influenced bytes in a record are identity claims, and the sealed
// length is visible only to whoever reads the store, so the 2 KiB-per-session
// budget wins.
const (
	sealVersion  = 1
	sessionInfo  = "tokenrelay session v1"
	loginInfo    = "tokenrelay login binding cookie v1"
	adminInfo    = "tokenrelay admin entry v1"
	loginAD      = "login-binding"
	clientInfo   = "tokenrelay client token v1"
	payloadRaw   = 0
	payloadFlate = 1
	nonceSize    = 12
	maxPlaintext = 64 << 10 // bound on an inflated payload
	// compressAbove: records up to this size are stored raw; larger ones
	// are deflated when that makes them shorter. A typical OIDC session
	// (two JWTs, a refresh token, a few claims: 1.6 KB encoded) shrinks
	// by about a quarter, which keeps a session with its back-channel
	// indexes within the 2 KiB of Redis a session may use. Inflating costs
	// CPU, but only when a replica opens a record it has not opened before
	// (after a login or a refresh): the request path reuses what it opened
	// (see openedRecords).
	compressAbove = 256
)

// MinSecretBytes is the shortest server secret (and previous secret) a
// Manager accepts.
const MinSecretBytes = 32

// errOpen is the one error for every sealed value that does not open:
// wrong key, wrong secret, moved, tampered, truncated, unknown version.
var errOpen = errors.New("session: sealed value does not open")

// sealer seals and opens records. It is safe for concurrent use: all fields
// are set at construction and only read afterwards.
type sealer struct {
	// secrets are the server secrets, current first, then previous ones
	// (rotation): sealing uses the first, opening tries each in order.
	secrets [][]byte
	// loginAEADs are the login-state ciphers, one per secret, same order.
	loginAEADs []cipher.AEAD
	// clientAEADs seal tokenrelay's own (client credentials) tokens, one
	// per secret, same order.
	clientAEADs []cipher.AEAD
	// adminAEADs seal admin entries (admin.go), one per secret, same
	// order.
	adminAEADs []cipher.AEAD

	// Pools of DEFLATE writers and readers: each holds tens to hundreds of
	// KiB of window and tables, too much to allocate for every request.
	writers sync.Pool // of *flate.Writer
	readers sync.Pool // of io.ReadCloser that is also a flate.Resetter
}

func newSealer(current []byte, previous [][]byte) (*sealer, error) {
	s := &sealer{}
	for i, sec := range append([][]byte{current}, previous...) {
		if len(sec) < MinSecretBytes {
			return nil, fmt.Errorf("session: server secret %d is %d bytes, need at least %d", i, len(sec), MinSecretBytes)
		}
		login, err := secretAEAD(sec, loginInfo)
		if err != nil {
			return nil, err
		}
		client, err := secretAEAD(sec, clientInfo)
		if err != nil {
			return nil, err
		}
		admin, err := secretAEAD(sec, adminInfo)
		if err != nil {
			return nil, err
		}
		s.secrets = append(s.secrets, bytes.Clone(sec))
		s.loginAEADs = append(s.loginAEADs, login)
		s.clientAEADs = append(s.clientAEADs, client)
		s.adminAEADs = append(s.adminAEADs, admin)
	}
	return s, nil
}

// secretAEAD is a cipher whose key HKDF derives from the server secret
// alone, under info.
func secretAEAD(sec []byte, info string) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, sec, nil, info, 32)
	if err != nil {
		return nil, fmt.Errorf("session: derive %s key: %w", info, err)
	}
	return newAEAD(key)
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("session: aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("session: gcm: %w", err)
	}
	return aead, nil
}

func (s *sealer) sessionAEAD(t Ticket, secret []byte) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, t.Key[:], secret, sessionInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("session: derive record key: %w", err)
	}
	return newAEAD(key)
}

// sealRecord encodes, compresses and encrypts rec for the store key.
func (s *sealer) sealRecord(t Ticket, storeKey string, rec *Record) ([]byte, error) {
	plain, err := encodeRecord(rec)
	if err != nil {
		return nil, err
	}
	aead, err := s.sessionAEAD(t, s.secrets[0])
	if err != nil {
		return nil, err
	}
	return s.seal(aead, storeKey, plain)
}

// openRecord reverses sealRecord, trying the current secret, then the
// previous ones. Every failure is errOpen.
func (s *sealer) openRecord(t Ticket, storeKey string, data []byte) (*Record, error) {
	return s.openRecordClaims(t, storeKey, data, true)
}

// openRecordClaims is openRecord, decoding the identity claims only when
// withClaims is set (see decodeRecordClaims).
func (s *sealer) openRecordClaims(t Ticket, storeKey string, data []byte, withClaims bool) (*Record, error) {
	for _, sec := range s.secrets {
		aead, err := s.sessionAEAD(t, sec)
		if err != nil {
			return nil, err
		}
		plain, err := s.open(aead, storeKey, data)
		if err != nil {
			continue
		}
		rec, err := decodeRecordClaims(plain, withClaims)
		if err != nil {
			// Authentic but undecodable: a bug or a future layout, not a
			// forgery. It still opens nothing.
			return nil, errOpen
		}
		return rec, nil
	}
	return nil, errOpen
}

// sealLogin seals a login state for its binding cookie.
func (s *sealer) sealLogin(st *LoginState) ([]byte, error) {
	return s.seal(s.loginAEADs[0], loginAD, encodeState(st))
}

// openLogin reverses sealLogin, trying the current secret, then the
// previous ones. Every failure is errOpen.
func (s *sealer) openLogin(data []byte) (*LoginState, error) {
	for _, aead := range s.loginAEADs {
		plain, err := s.open(aead, loginAD, data)
		if err != nil {
			continue
		}
		st, err := decodeState(plain)
		if err != nil {
			return nil, errOpen
		}
		return st, nil
	}
	return nil, errOpen
}

// sealClient seals tokenrelay's own token for its store key.
func (s *sealer) sealClient(storeKey string, encoded []byte) ([]byte, error) {
	return s.seal(s.clientAEADs[0], storeKey, encoded)
}

// openClient reverses sealClient, trying the current secret, then the
// previous ones. Every failure is errOpen.
func (s *sealer) openClient(storeKey string, data []byte) ([]byte, error) {
	for _, aead := range s.clientAEADs {
		if plain, err := s.open(aead, storeKey, data); err == nil {
			return plain, nil
		}
	}
	return nil, errOpen
}

// additionalData binds a sealed value to where it lives: a record's store
// key, or loginAD for a login state.
func additionalData(storeKey string) []byte {
	return append([]byte{sealVersion}, storeKey...)
}

func (s *sealer) seal(aead cipher.AEAD, storeKey string, encoded []byte) ([]byte, error) {
	payload := s.compress(encoded)
	out := make([]byte, 1+nonceSize, 1+nonceSize+len(payload)+aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1 : 1+nonceSize]); err != nil {
		return nil, fmt.Errorf("session: nonce: %w", err)
	}
	return aead.Seal(out, out[1:1+nonceSize], payload, additionalData(storeKey)), nil
}

func (s *sealer) open(aead cipher.AEAD, storeKey string, data []byte) ([]byte, error) {
	if len(data) < 1+nonceSize+aead.Overhead() || data[0] != sealVersion {
		return nil, errOpen
	}
	payload, err := aead.Open(nil, data[1:1+nonceSize], data[1+nonceSize:], additionalData(storeKey))
	if err != nil {
		return nil, errOpen
	}
	return s.decompress(payload)
}

// compress returns the payload: the encoded bytes raw or deflated,
// whichever is shorter, behind a one-byte tag.
func (s *sealer) compress(encoded []byte) []byte {
	if len(encoded) <= compressAbove {
		return append([]byte{payloadRaw}, encoded...)
	}
	buf := bytes.NewBuffer(make([]byte, 0, 1+len(encoded)))
	buf.WriteByte(payloadFlate)
	w, _ := s.writers.Get().(*flate.Writer)
	if w == nil {
		// NewWriter fails only for an invalid level.
		w, _ = flate.NewWriter(buf, flate.BestCompression)
	} else {
		w.Reset(buf)
	}
	_, err := w.Write(encoded)
	if err == nil {
		err = w.Close()
	}
	s.writers.Put(w)
	if err == nil && buf.Len() < 1+len(encoded) {
		return buf.Bytes()
	}
	return append([]byte{payloadRaw}, encoded...)
}

func (s *sealer) decompress(payload []byte) ([]byte, error) {
	if len(payload) == 0 {
		return nil, errOpen
	}
	switch payload[0] {
	case payloadRaw:
		return payload[1:], nil
	case payloadFlate:
		src := bytes.NewReader(payload[1:])
		r, _ := s.readers.Get().(io.ReadCloser)
		if r == nil {
			r = flate.NewReader(src)
		} else if err := r.(flate.Resetter).Reset(src, nil); err != nil {
			return nil, errOpen
		}
		out, err := io.ReadAll(io.LimitReader(r, maxPlaintext+1))
		s.readers.Put(r)
		if err != nil || len(out) > maxPlaintext {
			return nil, errOpen
		}
		return out, nil
	}
	return nil, errOpen
}
