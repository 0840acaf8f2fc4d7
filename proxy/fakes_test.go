package proxy

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session"
)

// The package's one set of test doubles for the session manager and the
// identity provider. Tests that need the real manager use session.Manager
// over a MemoryStore (manager_test.go); the real provider runs in e2e/.

// Token values that must never appear in an answer or a log line.
const (
	authTestAccessToken  = "at-SECRET-access-0001"
	authTestRefreshToken = "rt-SECRET-refresh-0001"
	authTestIDToken      = "idt-SECRET-idtoken-0001"
	authTestCode         = "code-SECRET-0001"
)

// authTestNow is the fakes' clock.
var authTestNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// accessCall is one call of AccessToken.
type accessCall struct {
	Ticket   session.Ticket
	Rejected secret.String
}

// fakeSessions is a Sessions that keeps everything in maps and records the
// calls made to it. A session's access token rotates to the next of its
// queued tokens when AccessToken is told the current one was rejected, as
// the real manager refreshes. Safe for concurrent use.
type fakeSessions struct {
	mu       sync.Mutex
	sessions map[session.Ticket]session.Session
	next     map[session.Ticket][]secret.String
	// expired tickets answer Load with session.ErrSessionExpired.
	expired map[session.Ticket]bool
	// states are the login states sealed, by state; sealed maps each
	// sealed value handed out to its state; claimed holds the states
	// ClaimLogin let through.
	states  map[string]session.LoginState
	sealed  map[string]string
	claimed map[string]bool

	// err, when set for a method name, is what that method returns; "Create"
	// fails the new session of Replace.
	err map[string]error
	// accessErrs are returned by AccessToken calls, in order, before the
	// tokens are looked at (nil entries pass).
	accessErrs []error
	// endedN is what EndBySID and EndBySubject report.
	endedN int

	accessCalls []accessCall
	created     []session.Record
	via         []string
	ended       []session.Ticket
	reasons     []string
	bySID       []string
	bySubject   []string
}

func newFakeSessions() *fakeSessions {
	return &fakeSessions{
		sessions: map[session.Ticket]session.Session{},
		next:     map[session.Ticket][]secret.String{},
		expired:  map[session.Ticket]bool{},
		states:   map[string]session.LoginState{},
		sealed:   map[string]string{},
		claimed:  map[string]bool{},
		err:      map[string]error{},
		endedN:   2,
	}
}

// add puts a live session holding rec in the fake and returns its ticket.
func (f *fakeSessions) add(t *testing.T, rec session.Record) session.Ticket {
	t.Helper()
	tk, err := session.NewTicket()
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sessions[tk] = session.Session{Record: rec, Expires: authTestNow.Add(24 * time.Hour)}
	return tk
}

// addToken starts a session holding token, rotating to next on rejection.
func (f *fakeSessions) addToken(t *testing.T, token secret.String, next ...secret.String) session.Ticket {
	t.Helper()
	tk := f.add(t, session.Record{AccessToken: token})
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next[tk] = next
	return tk
}

// token returns the access token the session of tk holds now.
func (f *fakeSessions) token(tk session.Ticket) secret.String {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sessions[tk].AccessToken
}

// calls returns the AccessToken calls so far.
func (f *fakeSessions) calls() []accessCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]accessCall(nil), f.accessCalls...)
}

// Open is for routes with a policy or identity, which read the user's
// claims; their tests use the real manager (policy_test.go).
func (f *fakeSessions) Open(context.Context, session.Ticket) (*session.Opened, error) {
	return nil, errors.New("fakeSessions: Open: routes that read claims are tested with the real session manager")
}

func (f *fakeSessions) AccessToken(ctx context.Context, req session.TokenRequest) (session.AccessToken, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.accessCalls = append(f.accessCalls, accessCall{req.Ticket, req.Rejected})
	if len(f.accessErrs) > 0 {
		err := f.accessErrs[0]
		f.accessErrs = f.accessErrs[1:]
		if err != nil {
			return session.AccessToken{}, err
		}
	}
	s, ok := f.sessions[req.Ticket]
	if !ok {
		return session.AccessToken{}, session.ErrNoSession
	}
	tok, refreshed := s.AccessToken, false
	if !req.Rejected.IsZero() && req.Rejected == tok && len(f.next[req.Ticket]) > 0 {
		tok, f.next[req.Ticket] = f.next[req.Ticket][0], f.next[req.Ticket][1:]
		s.AccessToken = tok
		f.sessions[req.Ticket] = s
		refreshed = true
	}
	return session.AccessToken{Value: tok, Expiry: time.Now().Add(time.Hour), Refreshed: refreshed}, nil
}

// ClientToken hands out "client:<target key>"; the route tests that need
// real client tokens use the session manager (manager_test.go).
func (f *fakeSessions) ClientToken(ctx context.Context, target idp.Target, rejected secret.String) (session.AccessToken, error) {
	return session.AccessToken{Value: secret.String("client:" + target.Key()), Expiry: time.Now().Add(time.Hour)}, nil
}

// Replace ends the sessions of old, as the real manager does (a failure
// to end one does not stop it), and creates the new one.
func (f *fakeSessions) Replace(ctx context.Context, old []session.Ticket, rec session.Record, via session.Via) (session.Ticket, error) {
	for _, t := range old {
		_, _ = f.End(ctx, t, session.ReasonReplaced)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.err["Create"]; err != nil {
		return session.Ticket{}, err
	}
	tk, err := session.NewTicket()
	if err != nil {
		return session.Ticket{}, err
	}
	f.created = append(f.created, rec)
	f.via = append(f.via, string(via))
	f.sessions[tk] = session.Session{Record: rec, Expires: authTestNow.Add(24 * time.Hour)}
	return tk, nil
}

func (f *fakeSessions) Load(ctx context.Context, t session.Ticket) (*session.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.err["Load"]; err != nil {
		return nil, err
	}
	if f.expired[t] {
		return nil, session.ErrSessionExpired
	}
	s, ok := f.sessions[t]
	if !ok {
		return nil, session.ErrNoSession
	}
	return &s, nil
}

func (f *fakeSessions) End(ctx context.Context, t session.Ticket, reason session.EndReason) (*session.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.err["End"]; err != nil {
		return nil, err
	}
	f.ended = append(f.ended, t)
	f.reasons = append(f.reasons, string(reason))
	s, ok := f.sessions[t]
	if !ok {
		return nil, session.ErrNoSession
	}
	delete(f.sessions, t)
	return &s.Record, nil
}

func (f *fakeSessions) EndBySID(ctx context.Context, sid string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.err["EndBySID"]; err != nil {
		return 0, err
	}
	f.bySID = append(f.bySID, sid)
	return f.endedN, nil
}

func (f *fakeSessions) EndBySubject(ctx context.Context, sub string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.err["EndBySubject"]; err != nil {
		return 0, err
	}
	f.bySubject = append(f.bySubject, sub)
	return f.endedN, nil
}

// SealLogin hands out an opaque value that only this fake opens, as the
// real manager's sealing does.
func (f *fakeSessions) SealLogin(st session.LoginState) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.err["SealLogin"]; err != nil {
		return "", err
	}
	if st.CreatedAt.IsZero() {
		st.CreatedAt = authTestNow
	}
	value := "sealed-" + st.State
	f.states[st.State] = st
	f.sealed[value] = st.State
	return value, nil
}

func (f *fakeSessions) OpenLogin(value string) (*session.LoginState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.err["OpenLogin"]; err != nil {
		return nil, err
	}
	state, ok := f.sealed[value]
	if !ok {
		return nil, session.ErrUnknownState
	}
	st := f.states[state]
	return &st, nil
}

func (f *fakeSessions) LoginUnused(ctx context.Context, st *session.LoginState) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.err["LoginUnused"]; err != nil {
		return err
	}
	if f.claimed[st.State] {
		return session.ErrUnknownState
	}
	return nil
}

func (f *fakeSessions) ClaimLogin(ctx context.Context, st *session.LoginState) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.err["ClaimLogin"]; err != nil {
		return err
	}
	if f.claimed[st.State] {
		return session.ErrUnknownState
	}
	f.claimed[st.State] = true
	return nil
}

// fakeProvider is a Provider with scriptable answers that records calls.
// Safe for concurrent use.
type fakeProvider struct {
	mu sync.Mutex

	exchangeErr  error
	identifyErr  error
	authorizeErr error // AuthorizationURL (a failed pushed request)
	// dpopKey is handed out with the exchanged tokens, as a provider
	// with DPoP does.
	dpopKey     *idp.DPoPKey
	revokeErr   error
	endSession  bool // has an end_session_endpoint
	logoutToken *idp.LogoutToken
	logoutErr   error
	// capture answers Capture; nil finds no tokens.
	capture func(body []byte) (*idp.Captured, error)

	exchanges   []string // "code verifier"
	identifies  []string // nonces
	revoked     []string
	endSessions []string // "id token|post-logout|state"
	verified    []string
}

func (p *fakeProvider) AuthorizationURL(ctx context.Context, state, nonce, verifier string, req idp.LoginRequest) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.authorizeErr != nil {
		return "", p.authorizeErr
	}
	v := url.Values{"state": {state}, "nonce": {nonce}, "code_challenge": {"S256(" + verifier + ")"}}
	req.Set(v)
	return "https://idp.example.com/authorize?" + v.Encode(), nil
}

func (p *fakeProvider) Exchange(ctx context.Context, code, verifier string) (*idp.Token, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.exchanges = append(p.exchanges, code+" "+verifier)
	if p.exchangeErr != nil {
		return nil, p.exchangeErr
	}
	return &idp.Token{
		AccessToken:   authTestAccessToken,
		RefreshToken:  authTestRefreshToken,
		IDToken:       authTestIDToken,
		TokenType:     "Bearer",
		Expiry:        authTestNow.Add(5 * time.Minute),
		RefreshExpiry: authTestNow.Add(30 * 24 * time.Hour),
		DPoPKey:       p.dpopKey,
	}, nil
}

func (p *fakeProvider) Identify(ctx context.Context, tok *idp.Token, nonce string) (*idp.Identity, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.identifies = append(p.identifies, nonce)
	if p.identifyErr != nil {
		return nil, p.identifyErr
	}
	return &idp.Identity{
		Issuer:  "https://idp.example.com",
		Subject: "user-1",
		SID:     "sid-1",
		Claims:  map[string]any{"email": "ada@example.com", "name": "Ada"},
		Expiry:  authTestNow.Add(time.Hour),
	}, nil
}

func (p *fakeProvider) Revoke(ctx context.Context, refreshToken secret.String) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.revoked = append(p.revoked, refreshToken.Reveal())
	return p.revokeErr
}

// EndSessionURL builds the URL as idp.Provider does: client_id, never the
// ID token.
func (p *fakeProvider) EndSessionURL(idToken secret.String, postLogoutRedirectURI, state string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endSessions = append(p.endSessions, idToken.Reveal()+"|"+postLogoutRedirectURI+"|"+state)
	if !p.endSession {
		return ""
	}
	v := url.Values{"client_id": {"client-1"}, "post_logout_redirect_uri": {postLogoutRedirectURI}, "state": {state}}
	return "https://idp.example.com/logout?" + v.Encode()
}

func (p *fakeProvider) VerifyLogoutToken(ctx context.Context, raw string) (*idp.LogoutToken, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.verified = append(p.verified, raw)
	if p.logoutErr != nil {
		return nil, p.logoutErr
	}
	return p.logoutToken, nil
}

func (p *fakeProvider) Capture(body []byte) (*idp.Captured, error) {
	p.mu.Lock()
	capture := p.capture
	p.mu.Unlock()
	if capture == nil {
		return nil, nil
	}
	return capture(body)
}
