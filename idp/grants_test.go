package idp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokenrelay/tokenrelay/secret"
)

// pemKey is the PEM (PKCS #8) of one of the test keys.
func pemKey(t *testing.T, kid string) secret.String {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(testKeys()[kid])
	if err != nil {
		t.Fatal(err)
	}
	return secret.String(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// TestThumbprintRFC7638 pins the JWK thumbprint against RFC 7638 §3.1's
// example.
func TestThumbprintRFC7638(t *testing.T) {
	n, err := base64.RawURLEncoding.DecodeString("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
	if err != nil {
		t.Fatal(err)
	}
	got, err := thumbprint(&rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537})
	if err != nil {
		t.Fatal(err)
	}
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; got != want {
		t.Errorf("thumbprint = %q, want %q", got, want)
	}
}

// assertionClaims verifies a client assertion with the public key of kid
// and returns its header and claims.
func assertionClaims(t *testing.T, kid, raw string) (map[string]any, jwt.MapClaims) {
	t.Helper()
	claims := jwt.MapClaims{}
	tok, err := jwt.NewParser(jwt.WithValidMethods([]string{"RS256", "PS256", "ES256", "EdDSA"}), jwt.WithTimeFunc(fixedNow)).
		ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return testKeys()[kid].Public(), nil })
	if err != nil {
		t.Fatalf("client assertion does not verify with the client's public key: %v", err)
	}
	return tok.Header, claims
}

// TestPrivateKeyJWT: every token request carries a client assertion
// signed with the configured key (kid its RFC 7638 thumbprint), issued by
// and about the client, for the issuer, valid one minute, with a jti of
// its own; no secret travels.
func TestPrivateKeyJWT(t *testing.T) {
	for _, tt := range []struct {
		kid, alg string
		algs     []string // token_endpoint_auth_signing_alg_values_supported
	}{
		{kid: "rsa1", alg: "RS256"},
		{kid: "rsa1", alg: "PS256", algs: []string{"PS256", "ES256"}},
		{kid: "ec1", alg: "ES256", algs: []string{"RS256", "ES256"}},
		{kid: "ed1", alg: "EdDSA"},
	} {
		t.Run(tt.kid+"/"+tt.alg, func(t *testing.T) {
			op := newTestOP(t)
			var mu sync.Mutex
			var got []recorded
			op.set(func(op *testOP) {
				op.token = recordingHandler(&mu, &got, http.StatusOK, map[string]string{"Content-Type": "application/json"}, `{"access_token":"at","token_type":"Bearer","expires_in":60}`)
				if tt.algs != nil {
					op.doc = map[string]any{"token_endpoint_auth_signing_alg_values_supported": tt.algs}
				}
			})
			p := op.provider(func(o *Options) {
				o.ClientSecret, o.AuthMethod, o.PrivateKey = "", AuthMethodPrivateKeyJWT, pemKey(t, tt.kid)
			})
			for range 2 {
				if _, err := p.Refresh(context.Background(), "rt-1"); err != nil {
					t.Fatal(err)
				}
			}
			if len(got) != 2 {
				t.Fatalf("token requests = %d, want 2", len(got))
			}
			wantKID, _ := thumbprint(testKeys()[tt.kid].Public())
			jtis := map[string]bool{}
			for i, r := range got {
				form, _ := url.ParseQuery(r.body)
				if form.Get("client_secret") != "" || r.header.Get("Authorization") != "" {
					t.Errorf("request %d carries a secret: %v %v", i, form, r.header)
				}
				if form.Get("client_id") != "client-1" || form.Get("client_assertion_type") != clientAssertionType {
					t.Errorf("request %d: client_id %q, client_assertion_type %q", i, form.Get("client_id"), form.Get("client_assertion_type"))
				}
				header, claims := assertionClaims(t, tt.kid, form.Get("client_assertion"))
				if header["alg"] != tt.alg || header["kid"] != wantKID {
					t.Errorf("request %d: header alg %v kid %v, want %s %s", i, header["alg"], header["kid"], tt.alg, wantKID)
				}
				aud, _ := claims.GetAudience()
				if claims["iss"] != "client-1" || claims["sub"] != "client-1" || !reflect.DeepEqual([]string(aud), []string{op.url}) {
					t.Errorf("request %d: iss %v sub %v aud %v, want client-1, client-1, [%s]", i, claims["iss"], claims["sub"], aud, op.url)
				}
				iat, _ := claims.GetIssuedAt()
				exp, _ := claims.GetExpirationTime()
				if !iat.Equal(testNow) || exp.Sub(iat.Time) != time.Minute {
					t.Errorf("request %d: iat %v exp %v, want now and a minute later", i, iat, exp)
				}
				jti, _ := claims["jti"].(string)
				if len(jti) < 20 || jtis[jti] {
					t.Errorf("request %d: jti %q is short or used before", i, jti)
				}
				jtis[jti] = true
			}
		})
	}
}

// TestPrivateKeyJWTProviderAlgs: a key whose algorithms the provider does
// not accept is a conflict New reports, not an assertion the provider
// would refuse.
func TestPrivateKeyJWTProviderAlgs(t *testing.T) {
	op := newTestOP(t)
	op.set(func(op *testOP) {
		op.doc = map[string]any{"token_endpoint_auth_signing_alg_values_supported": []string{"ES256"}}
	})
	o := op.options()
	o.ClientSecret, o.AuthMethod, o.PrivateKey = "", AuthMethodPrivateKeyJWT, pemKey(t, "rsa1")
	_, err := New(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "private_key_file: the key signs RS256, PS256") {
		t.Fatalf("New = %v, want the algorithm conflict", err)
	}
}

// proof is a DPoP proof as a server reads it.
type proof struct {
	header map[string]any
	claims jwt.MapClaims
}

// verifyProof checks a DPoP proof as RFC 9449 §4.3 says a server does:
// typ, alg, a public jwk that verifies the signature; and returns it with
// the thumbprint of its jwk.
func verifyProof(t *testing.T, raw string) (proof, string) {
	t.Helper()
	var jkt string
	claims := jwt.MapClaims{}
	tok, err := jwt.NewParser(jwt.WithValidMethods([]string{"ES256"})).ParseWithClaims(raw, claims, func(tok *jwt.Token) (any, error) {
		m, _ := tok.Header["jwk"].(map[string]any)
		if m["kty"] != "EC" || m["crv"] != "P-256" || m["d"] != nil {
			return nil, errors.New("jwk is not a public P-256 key")
		}
		x, _ := base64.RawURLEncoding.DecodeString(m["x"].(string))
		y, _ := base64.RawURLEncoding.DecodeString(m["y"].(string))
		pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
		var err error
		jkt, err = thumbprint(pub)
		return pub, err
	})
	if err != nil {
		t.Fatalf("DPoP proof does not verify: %v", err)
	}
	if tok.Header["typ"] != "dpop+jwt" {
		t.Errorf("proof typ = %v, want dpop+jwt", tok.Header["typ"])
	}
	return proof{header: tok.Header, claims: claims}, jkt
}

// TestDPoPProof: a proof names the method and the URI without query or
// fragment, is issued now with a jti of its own, carries the hash of the
// access token it goes with, and verifies with the key whose thumbprint
// the key reports. A key survives its 32-byte form.
func TestDPoPProof(t *testing.T) {
	key, err := NewDPoPKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(key.Bytes()) != DPoPKeySize {
		t.Fatalf("Bytes() = %d bytes, want %d", len(key.Bytes()), DPoPKeySize)
	}
	again, err := ParseDPoPKey(key.Bytes())
	if err != nil || again.Thumbprint() != key.Thumbprint() {
		t.Fatalf("ParseDPoPKey(Bytes()) = %v, %v; want the same key", again, err)
	}
	const at = "access-token-1"
	raws := map[string]bool{}
	jtis := map[any]bool{}
	for _, k := range []*DPoPKey{key, again} {
		raw, err := k.Proof(http.MethodPatch, "https://api.example/v1/items?x=1#frag", at, "n-1", testNow)
		if err != nil {
			t.Fatal(err)
		}
		p, jkt := verifyProof(t, raw)
		sum := sha256.Sum256([]byte(at))
		want := map[string]any{"htm": "PATCH", "htu": "https://api.example/v1/items", "ath": base64.RawURLEncoding.EncodeToString(sum[:]), "nonce": "n-1"}
		for name, v := range want {
			if p.claims[name] != v {
				t.Errorf("claim %s = %v, want %v", name, p.claims[name], v)
			}
		}
		if iat, _ := p.claims.GetIssuedAt(); !iat.Equal(testNow) {
			t.Errorf("iat = %v, want %v", iat, testNow)
		}
		if jkt != key.Thumbprint() {
			t.Errorf("jwk thumbprint = %s, want %s", jkt, key.Thumbprint())
		}
		jtis[p.claims["jti"]] = true
		raws[raw] = true
	}
	if len(jtis) != 2 || len(raws) != 2 {
		t.Errorf("two proofs had %d jtis, want 2", len(jtis))
	}
	raw, _ := key.Proof(http.MethodPost, "https://op.example/token", "", "", testNow)
	if p, _ := verifyProof(t, raw); p.claims["ath"] != nil || p.claims["nonce"] != nil {
		t.Errorf("a token request's proof has ath %v nonce %v, want neither", p.claims["ath"], p.claims["nonce"])
	}
}

// dpopEndpoint is a token endpoint that wants DPoP proofs with its nonce:
// a proof without the current nonce gets 400 use_dpop_nonce and the
// nonce. Each answer carries the next nonce, as servers rotate them.
type dpopEndpoint struct {
	t     *testing.T
	mu    sync.Mutex
	nonce int
	// stuck: answer use_dpop_nonce forever, with the same nonce.
	stuck   bool
	calls   []url.Values
	proofs  []proof
	jkts    []string
	bearer  bool // answer token_type Bearer
	answers int
}

func (e *dpopEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = append(e.calls, r.PostForm)
	p, jkt := verifyProof(e.t, r.Header.Get("DPoP"))
	e.proofs, e.jkts = append(e.proofs, p), append(e.jkts, jkt)
	current := "nonce-" + string(rune('a'+e.nonce))
	w.Header().Set("Content-Type", "application/json")
	if e.stuck || p.claims["nonce"] != current {
		w.Header().Set("DPoP-Nonce", current)
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"use_dpop_nonce","error_description":"nonce required"}`))
		return
	}
	e.nonce++
	w.Header().Set("DPoP-Nonce", "nonce-"+string(rune('a'+e.nonce)))
	typ := "DPoP"
	if e.bearer {
		typ = "Bearer"
	}
	e.answers++
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at-" + jkt, "token_type": typ, "expires_in": 60, "refresh_token": "rt-next"})
}

// TestDPoPTokenRequests: with DPoP every token request carries a proof of
// the session's key for the token endpoint; the provider's nonce is asked
// for once and then carried by every later proof; the code exchange makes
// the key and hands it out with the tokens; and private_key_jwt makes a new
// assertion for the retry.
func TestDPoPTokenRequests(t *testing.T) {
	op := newTestOP(t)
	e := &dpopEndpoint{t: t}
	op.set(func(op *testOP) {
		op.token = e.ServeHTTP
		op.doc = map[string]any{"dpop_signing_alg_values_supported": []string{"ES256"}}
	})
	p := op.provider(func(o *Options) {
		o.DPoP = true
		o.ClientSecret, o.AuthMethod, o.PrivateKey = "", AuthMethodPrivateKeyJWT, pemKey(t, "ec1")
	})
	tok, err := p.Exchange(context.Background(), "code-1", "verifier-1")
	if err != nil {
		t.Fatal(err)
	}
	if tok.DPoPKey == nil || tok.AccessToken.Reveal() != "at-"+tok.DPoPKey.Thumbprint() {
		t.Fatalf("Exchange: key %v, access token %q: want the token bound to the key handed out", tok.DPoPKey, tok.AccessToken.Reveal())
	}
	// The nonce learnt by the exchange serves the refresh at once.
	if _, err := p.RefreshTarget(context.Background(), RefreshRequest{RefreshToken: "rt-1", DPoP: tok.DPoPKey}); err != nil {
		t.Fatal(err)
	}
	if got := len(e.calls); got != 3 {
		t.Fatalf("token requests = %d, want 3 (exchange without a nonce, again with it, refresh)", got)
	}
	assertions := map[string]bool{}
	for i, p := range e.proofs {
		if p.claims["htm"] != "POST" || p.claims["htu"] != op.url+"/token" || e.jkts[i] != tok.DPoPKey.Thumbprint() {
			t.Errorf("proof %d: htm %v htu %v jkt %s; want POST, %s/token, the session key's", i, p.claims["htm"], p.claims["htu"], e.jkts[i], op.url)
		}
		assertions[e.calls[i].Get("client_assertion")] = true
	}
	if wantNonces := []any{nil, "nonce-a", "nonce-b"}; !reflect.DeepEqual([]any{e.proofs[0].claims["nonce"], e.proofs[1].claims["nonce"], e.proofs[2].claims["nonce"]}, wantNonces) {
		t.Errorf("proof nonces = %v %v %v, want %v", e.proofs[0].claims["nonce"], e.proofs[1].claims["nonce"], e.proofs[2].claims["nonce"], wantNonces)
	}
	if len(assertions) != 3 {
		t.Errorf("3 requests carried %d distinct client assertions, want 3 (a jti is single-use)", len(assertions))
	}

	// A provider that keeps answering use_dpop_nonce gets one retry, not a
	// loop.
	e.mu.Lock()
	e.stuck, e.calls = true, nil
	e.mu.Unlock()
	_, err = p.RefreshTarget(context.Background(), RefreshRequest{RefreshToken: "rt-2", DPoP: tok.DPoPKey})
	var te *TokenError
	if !errors.As(err, &te) || te.Code != "use_dpop_nonce" || len(e.calls) != 1 {
		t.Errorf("stuck provider: err %v after %d calls, want use_dpop_nonce after 1 (its nonce did not change)", err, len(e.calls))
	}
}

// TestDPoPUnboundToken: a grant whose answer is not bound to the proof's
// key fails, rather than hand out a Bearer token for a DPoP route; a
// refresh keeps its answer (its refresh token may be the only live one).
func TestDPoPUnboundToken(t *testing.T) {
	op := newTestOP(t)
	e := &dpopEndpoint{t: t, bearer: true}
	op.set(func(op *testOP) {
		op.token = e.ServeHTTP
		op.doc = map[string]any{"dpop_signing_alg_values_supported": []string{"ES256"}}
	})
	p := op.provider(func(o *Options) { o.DPoP = true })
	_, err := p.Exchange(context.Background(), "code-1", "verifier-1")
	if !errors.Is(err, ErrClientRejected) || !errors.Is(err, errNotBound) {
		t.Errorf("Exchange with a Bearer answer = %v, want a refusal of the client saying the token is not bound", err)
	}
	key, _ := NewDPoPKey()
	if _, err := p.ClientCredentials(context.Background(), Target{}, key); !errors.Is(err, errNotBound) {
		t.Errorf("ClientCredentials with a Bearer answer = %v, want errNotBound", err)
	}
	tok, err := p.RefreshTarget(context.Background(), RefreshRequest{RefreshToken: "rt", DPoP: key})
	if err != nil || tok.RefreshToken.Reveal() != "rt-next" {
		t.Errorf("RefreshTarget with a Bearer answer = %v, %v; want its tokens", tok, err)
	}
}

// TestGrantForms pins the form of each per-route grant.
func TestGrantForms(t *testing.T) {
	target := NewTarget("https://orders.example", []string{"orders:write", "orders:read", "orders:read"})
	if target.Scope != "orders:read orders:write" || target.Key() != "https://orders.example orders:read orders:write" {
		t.Fatalf("NewTarget = %+v key %q, want sorted scopes without duplicates", target, target.Key())
	}
	tests := []struct {
		name string
		do   func(p *Provider) error
		want url.Values
	}{
		{"refresh for a resource", func(p *Provider) error {
			_, err := p.RefreshTarget(context.Background(), RefreshRequest{RefreshToken: "rt-1", Target: target})
			return err
		}, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"rt-1"}, "resource": {"https://orders.example"}, "scope": {"orders:read orders:write"}}},
		{"client credentials", func(p *Provider) error {
			_, err := p.ClientCredentials(context.Background(), target, nil)
			return err
		}, url.Values{"grant_type": {"client_credentials"}, "resource": {"https://orders.example"}, "scope": {"orders:read orders:write"}}},
		{"token exchange", func(p *Provider) error {
			_, err := p.ExchangeToken(context.Background(), ExchangeRequest{SubjectToken: "user-at", Target: NewTarget("https://orders.example", nil)})
			return err
		}, url.Values{
			"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {"user-at"},
			"subject_token_type":   {"urn:ietf:params:oauth:token-type:access_token"},
			"requested_token_type": {"urn:ietf:params:oauth:token-type:access_token"}, "resource": {"https://orders.example"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op := newTestOP(t)
			var mu sync.Mutex
			var got []recorded
			op.set(func(op *testOP) {
				op.token = recordingHandler(&mu, &got, http.StatusOK, map[string]string{"Content-Type": "application/json"}, `{"access_token":"at","token_type":"Bearer","expires_in":60}`)
			})
			p := op.provider(func(o *Options) { o.AuthMethod = AuthMethodPost })
			if err := tt.do(p); err != nil {
				t.Fatal(err)
			}
			form, _ := url.ParseQuery(got[0].body)
			tt.want["client_id"], tt.want["client_secret"] = []string{"client-1"}, []string{"s3cret"}
			if !reflect.DeepEqual(form, tt.want) {
				t.Errorf("form = %v, want %v", form, tt.want)
			}
		})
	}
	op := newTestOP(t)
	public := op.provider(func(o *Options) { o.AuthMethod, o.ClientSecret = AuthMethodNone, "" })
	if _, err := public.ClientCredentials(context.Background(), target, nil); err == nil {
		t.Error("ClientCredentials of a public client succeeded, want an error")
	}
}

// TestPushedAuthorization: a provider that requires pushed authorization
// requests gets the parameters in an authenticated POST, and the browser
// only the request_uri; one that does not require them gets a plain
// redirect.
func TestPushedAuthorization(t *testing.T) {
	op := newTestOP(t)
	var mu sync.Mutex
	var pushed []recorded
	op.set(func(op *testOP) {
		op.par = recordingHandler(&mu, &pushed, http.StatusCreated, map[string]string{"Content-Type": "application/json"}, `{"request_uri":"urn:ietf:params:oauth:request_uri:abc","expires_in":60}`)
		op.doc = map[string]any{"pushed_authorization_request_endpoint": op.url + "/par", "require_pushed_authorization_requests": true}
	})
	p := op.provider(func(o *Options) { o.Resources = []string{"https://a.example", "https://b.example"} })
	got, err := p.AuthorizationURL(context.Background(), "st-1", "n-1", "v-1", LoginRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if want := op.url + "/authorize?client_id=client-1&request_uri=urn%3Aietf%3Aparams%3Aoauth%3Arequest_uri%3Aabc"; got != want {
		t.Errorf("AuthorizationURL = %s, want %s", got, want)
	}
	if len(pushed) != 1 {
		t.Fatalf("pushed requests = %d, want 1", len(pushed))
	}
	form, _ := url.ParseQuery(pushed[0].body)
	if form.Get("state") != "st-1" || form.Get("nonce") != "n-1" || form.Get("code_challenge") != challengeS256("v-1") ||
		!reflect.DeepEqual(form["resource"], []string{"https://a.example", "https://b.example"}) || pushed[0].header.Get("Authorization") == "" {
		t.Errorf("pushed request = %v (Authorization %q), want the authorization parameters, both resources and client authentication", form, pushed[0].header.Get("Authorization"))
	}

	op.set(func(op *testOP) { op.doc = map[string]any{"pushed_authorization_request_endpoint": op.url + "/par"} })
	plain := op.provider(nil)
	got, err = plain.AuthorizationURL(context.Background(), "st-2", "n-2", "v-2", LoginRequest{})
	if err != nil || !strings.Contains(got, "state=st-2") || len(pushed) != 1 {
		t.Errorf("PAR offered but not required: %s, %v, %d pushes; want a plain redirect and no push", got, err, len(pushed))
	}
}

// TestCheckMetadata pins the conflicts between the options and the
// provider's discovery document.
func TestCheckMetadata(t *testing.T) {
	base := Options{Type: TypeOIDC, Issuer: "https://op.example", ClientID: "c", ClientSecret: "s"}
	tests := []struct {
		name   string
		opts   func(o *Options)
		meta   Metadata
		want   []string
		method string // the method used, when it is decided
	}{
		{name: "basic listed", meta: Metadata{TokenEndpointAuthMethods: []string{"client_secret_basic"}}, method: AuthMethodBasic},
		{name: "default follows the provider", meta: Metadata{TokenEndpointAuthMethods: []string{"client_secret_post"}}, method: AuthMethodPost},
		{name: "configured method not listed", opts: func(o *Options) { o.AuthMethod = AuthMethodBasic },
			meta: Metadata{TokenEndpointAuthMethods: []string{"client_secret_post", "private_key_jwt"}},
			want: []string{"auth_method: client_secret_basic is not among the client authentication methods the provider lists (token_endpoint_auth_methods_supported: client_secret_post, private_key_jwt)"}},
		{name: "a public client need not be listed", opts: func(o *Options) { o.AuthMethod, o.ClientSecret = AuthMethodNone, "" },
			meta: Metadata{TokenEndpointAuthMethods: []string{"client_secret_basic", "private_key_jwt"}}},
		{name: "dpop without ES256", opts: func(o *Options) { o.DPoP = true },
			want: []string{"dpop: the provider does not support DPoP with ES256 (dpop_signing_alg_values_supported: none)"}},
		{name: "dpop with ES256", opts: func(o *Options) { o.DPoP = true }, meta: Metadata{DPoPSigningAlgs: []string{"ES256", "EdDSA"}}},
		{name: "par always without endpoint", opts: func(o *Options) { o.PAR = PARAlways },
			want: []string{"par: always, but the provider has no pushed_authorization_request_endpoint"}},
		{name: "par never but required", opts: func(o *Options) { o.PAR = PARNever }, meta: Metadata{RequirePAR: true, PAREndpoint: "https://op.example/par"},
			want: []string{"par: never, but the provider requires pushed authorization requests (require_pushed_authorization_requests)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			if tt.opts != nil {
				tt.opts(&o)
			}
			o = o.WithDefaults()
			var got []string
			for _, p := range o.CheckMetadata(&tt.meta) {
				got = append(got, p.String())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("CheckMetadata = %q, want %q", got, tt.want)
			}
			if tt.method != "" && o.authMethodFor(&tt.meta) != tt.method {
				t.Errorf("method = %s, want %s", o.authMethodFor(&tt.meta), tt.method)
			}
		})
	}
}

// TestTLSClientAuth: with tls_client_auth the request names the client and
// carries no secret (the certificate on the connection authenticates it),
// and goes to the provider's mutual-TLS alias of the token endpoint.
func TestTLSClientAuth(t *testing.T) {
	op := newTestOP(t)
	var mu sync.Mutex
	var got []recorded
	op.set(func(op *testOP) {
		op.token = recordingHandler(&mu, &got, http.StatusOK, map[string]string{"Content-Type": "application/json"}, `{"access_token":"at","token_type":"Bearer","expires_in":60}`)
		op.doc = map[string]any{"token_endpoint": "https://elsewhere.invalid/token", "mtls_endpoint_aliases": map[string]string{"token_endpoint": op.url + "/token"}}
	})
	p := op.provider(func(o *Options) {
		o.ClientSecret, o.AuthMethod, o.TLSClientCertFile, o.TLSClientKeyFile = "", AuthMethodTLS, "cert.pem", "key.pem"
	})
	if _, err := p.Refresh(context.Background(), "rt-1"); err != nil {
		t.Fatal(err)
	}
	form, _ := url.ParseQuery(got[0].body)
	want := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"rt-1"}, "client_id": {"client-1"}}
	if !reflect.DeepEqual(form, want) || got[0].header.Get("Authorization") != "" {
		t.Errorf("form %v, Authorization %q; want %v and none", form, got[0].header.Get("Authorization"), want)
	}
}
