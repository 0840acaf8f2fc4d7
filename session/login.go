package session

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
)

// A login in progress costs the server nothing: its state (state, nonce,
// PKCE verifier, return_to, creation time) is sealed with a key derived from
// the server secret and handed to the browser in the login-binding cookie.
// Nothing is stored until the provider sends the browser back with a code
// that the provider accepts; then ClaimLogin writes one small claim, so the
// state cannot be used a second time on any replica. Before the code goes
// to the provider, LoginUnused reads (never writes) that claim, so a
// replayed callback is refused without the provider seeing its code twice
// (RFC 6749 §4.1.2 lets it revoke the tokens of a reused code).

// maxSealedLogin bounds the cookie value OpenLogin decodes: a sealed state
// with the longest return_to the proxy accepts (2 KiB) stays well below it.
const maxSealedLogin = 4096

// SealLogin returns st sealed for its login-binding cookie (base64url, no
// padding). CreatedAt is set to now when zero: the state expires
// LoginStateTTL after it, whatever the cookie's own Max-Age says.
func (m *Manager) SealLogin(st LoginState) (string, error) {
	if st.State == "" {
		return "", errors.New("session: seal login: empty state")
	}
	if st.CreatedAt.IsZero() {
		st.CreatedAt = m.now()
	}
	data, err := m.seal.sealLogin(&st)
	if err != nil {
		return "", fmt.Errorf("session: seal login: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(data), nil
}

// OpenLogin opens a value made by SealLogin, with the current server secret
// or a previous one, and returns the login state when it is younger than
// LoginStateTTL. A value that is malformed, tampered, sealed under another
// secret or expired is ErrUnknownState. The caller checks that the state is
// the one the callback names.
func (m *Manager) OpenLogin(value string) (*LoginState, error) {
	if value == "" || len(value) > maxSealedLogin {
		return nil, ErrUnknownState
	}
	data, err := base64.RawURLEncoding.Strict().DecodeString(value)
	if err != nil {
		return nil, ErrUnknownState
	}
	st, err := m.seal.openLogin(data)
	if err != nil || st.State == "" {
		return nil, ErrUnknownState
	}
	if !m.now().Before(st.CreatedAt.Add(m.stateTTL)) {
		return nil, ErrUnknownState
	}
	return st, nil
}

// LoginUnused returns nil when no replica has claimed st yet:
// ErrUnknownState when one has, ErrStoreUnavailable when the store cannot
// say. It writes nothing, so a flood of callbacks stores nothing.
func (m *Manager) LoginUnused(ctx context.Context, st *LoginState) error {
	used, err := m.store.Claimed(ctx, usedStateKey(st.State))
	if err != nil {
		return m.storeErr(ctx, opClaim, err)
	}
	if used {
		return fmt.Errorf("session: login state already used: %w", ErrUnknownState)
	}
	return nil
}

// ClaimLogin records that st was used, for the rest of its lifetime, in the
// store every replica shares. It is called once the provider has accepted
// the login's code, so only logins that really came back write anything.
// Errors: ErrUnknownState when st was already claimed or has expired
// meanwhile, ErrStoreUnavailable when the store cannot say.
func (m *Manager) ClaimLogin(ctx context.Context, st *LoginState) error {
	left := st.CreatedAt.Add(m.stateTTL).Sub(m.now())
	if st.State == "" || left <= 0 {
		return ErrUnknownState
	}
	first, err := m.store.Claim(ctx, usedStateKey(st.State), left)
	if err != nil {
		return m.storeErr(ctx, opClaim, err)
	}
	if !first {
		return fmt.Errorf("session: claim login: already used: %w", ErrUnknownState)
	}
	return nil
}
