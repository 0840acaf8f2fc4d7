package main

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

const (
	testIssuer   = "http://127.0.0.1:9000"
	testAudience = "urn:tokenrelay:demo-api"
)

var testNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testKeys(t *testing.T) (*rsa.PrivateKey, keyfunc.Keyfunc) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	set := fmt.Sprintf(`{"keys":[{"kty":"RSA","kid":"k1","use":"sig","alg":"RS256","n":%q,"e":%q}]}`,
		base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
		base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()))
	kf, err := keyfunc.NewJWKSetJSON(json.RawMessage(set))
	if err != nil {
		t.Fatal(err)
	}
	return key, kf
}

func TestWhoami(t *testing.T) {
	key, kf := testKeys(t)
	h := newHandler(newVerifierWithKeys(kf, testIssuer, testAudience, func() time.Time { return testNow }), nil, nil)

	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{
			"iss": testIssuer, "aud": testAudience, "sub": "alice", "jti": "j1", "scope": "api:read",
			"iat": testNow.Add(-time.Minute).Unix(), "exp": testNow.Add(time.Minute).Unix(),
		}
		if mod != nil {
			mod(c)
		}
		return c
	}
	sign := func(method jwt.SigningMethod, typ string, c jwt.MapClaims, k any) string {
		tok := jwt.NewWithClaims(method, c)
		tok.Header["kid"] = "k1"
		if typ != "" {
			tok.Header["typ"] = typ
		}
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	valid := sign(jwt.SigningMethodRS256, "at+jwt", claims(nil), key)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)

	tests := []struct {
		name       string
		authz      string
		wantStatus int
		wantError  string
	}{
		{"valid", "Bearer " + valid, http.StatusOK, ""},
		{"lower-case scheme", "bearer " + valid, http.StatusOK, ""},
		{"media type typ", "Bearer " + sign(jwt.SigningMethodRS256, "application/at+jwt", claims(nil), key), http.StatusOK, ""},
		{"no header", "", http.StatusUnauthorized, "unauthorized"},
		{"basic scheme", "Basic " + valid, http.StatusUnauthorized, "unauthorized"},
		{"expired", "Bearer " + sign(jwt.SigningMethodRS256, "at+jwt", claims(func(c jwt.MapClaims) { c["exp"] = testNow.Unix() }), key), http.StatusUnauthorized, "invalid_token"},
		{"no exp", "Bearer " + sign(jwt.SigningMethodRS256, "at+jwt", claims(func(c jwt.MapClaims) { delete(c, "exp") }), key), http.StatusUnauthorized, "invalid_token"},
		{"wrong issuer", "Bearer " + sign(jwt.SigningMethodRS256, "at+jwt", claims(func(c jwt.MapClaims) { c["iss"] = "http://evil" }), key), http.StatusUnauthorized, "invalid_token"},
		{"wrong audience", "Bearer " + sign(jwt.SigningMethodRS256, "at+jwt", claims(func(c jwt.MapClaims) { c["aud"] = "other" }), key), http.StatusUnauthorized, "invalid_token"},
		{"no jti", "Bearer " + sign(jwt.SigningMethodRS256, "at+jwt", claims(func(c jwt.MapClaims) { delete(c, "jti") }), key), http.StatusUnauthorized, "invalid_token"},
		{"ID token typ", "Bearer " + sign(jwt.SigningMethodRS256, "JWT", claims(nil), key), http.StatusUnauthorized, "invalid_token"},
		{"other key", "Bearer " + sign(jwt.SigningMethodRS256, "at+jwt", claims(nil), other), http.StatusUnauthorized, "invalid_token"},
		{"alg none", "Bearer " + sign(jwt.SigningMethodNone, "at+jwt", claims(nil), jwt.UnsafeAllowNoneSignatureType), http.StatusUnauthorized, "invalid_token"},
		{"HMAC", "Bearer " + sign(jwt.SigningMethodHS256, "at+jwt", claims(nil), []byte("secret")), http.StatusUnauthorized, "invalid_token"},
		{"tampered", "Bearer " + valid[:len(valid)-4] + "AAAA", http.StatusUnauthorized, "invalid_token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/api/whoami", nil)
			if tt.authz != "" {
				req.Header.Set("Authorization", tt.authz)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if got, want := rec.Header().Get("Content-Type"), "application/json"; got != want {
				t.Errorf("Content-Type = %q, want %q", got, want)
			}
			if tt.wantStatus == http.StatusOK {
				var got whoami
				if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
					t.Fatal(err)
				}
				want := whoami{Sub: "alice", Exp: testNow.Add(time.Minute).Unix(), Iat: testNow.Add(-time.Minute).Unix(), JTI: "j1", Scope: "api:read", TokensSeen: 1}
				if got != want {
					t.Errorf("body = %+v, want %+v", got, want)
				}
				if strings.Contains(rec.Body.String(), valid[:20]) {
					t.Errorf("the answer contains the token")
				}
				return
			}
			var body map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body["error"] != tt.wantError {
				t.Errorf("body = %s, want error %q", rec.Body, tt.wantError)
			}
			if got := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer ") {
				t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", got)
			}
		})
	}
}

func TestTokensSeenCountsDistinctTokens(t *testing.T) {
	var s seenSet
	ids := []string{"a", "b", "a", "c", "b"}
	want := []int{1, 2, 2, 3, 3}
	for i, id := range ids {
		if got := s.add(id); got != want[i] {
			t.Errorf("add(%q) #%d = %d, want %d", id, i, got, want[i])
		}
	}
}

func TestPage(t *testing.T) {
	_, kf := testKeys(t)
	h := newHandler(newVerifierWithKeys(kf, testIssuer, testAudience, nil), nil, nil)
	tests := []struct {
		path       string
		wantStatus int
		wantType   string
	}{
		{"/", http.StatusOK, "text/html; charset=utf-8"},
		{"/healthz", http.StatusOK, "text/plain; charset=utf-8"},
		{"/api/other", http.StatusNotFound, "application/json"},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tt.path, nil))
		if rec.Code != tt.wantStatus || rec.Header().Get("Content-Type") != tt.wantType {
			t.Errorf("GET %s = %d %q, want %d %q", tt.path, rec.Code, rec.Header().Get("Content-Type"), tt.wantStatus, tt.wantType)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	for _, want := range []string{`href="/.auth/login?return_to=/"`, `"/.auth/logout"`, `"X-CSRF": "1"`, `"/.auth/session"`, `"/api/whoami"`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("the page lacks %s", want)
		}
	}
}

// TestDemoMetrics pins GET /demo/metrics: the refresh counters read from
// tokenrelay's /metrics, summed by result and reason; 404 without a
// metrics URL; 502 when tokenrelay does not answer.
func TestDemoMetrics(t *testing.T) {
	tokenrelay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`# TYPE tokenrelay_refresh_total counter
tokenrelay_refresh_total{result="success"} 7
tokenrelay_refresh_total{result="lost_race"} 2
# TYPE tokenrelay_refresh_shared_total counter
tokenrelay_refresh_shared_total 5
# TYPE tokenrelay_refresh_duration_seconds histogram
tokenrelay_refresh_duration_seconds_bucket{le="+Inf"} 7
tokenrelay_refresh_duration_seconds_sum 0.35
tokenrelay_refresh_duration_seconds_count 7
# TYPE tokenrelay_sessions_created_total counter
tokenrelay_sessions_created_total{via="login"} 3
tokenrelay_sessions_created_total{via="capture"} 1
# TYPE tokenrelay_sessions_ended_total counter
tokenrelay_sessions_ended_total{reason="logout"} 1
`))
	}))
	defer tokenrelay.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	for _, tt := range []struct {
		url    string
		status int
		body   string
	}{
		{tokenrelay.URL, 200, `{"refreshes":{"lost_race":2,"success":7},"shared":5,"token_calls":7,"token_seconds":0.35,"sessions_created":4,"sessions_ended":{"logout":1}}`},
		{"", 404, `{"error":"not_configured","message":"the API was started without -metrics-url"}`},
		{down.URL, 502, `{"error":"metrics_unavailable","message":"tokenrelay's metrics could not be read"}`},
	} {
		h := newHandler(nil, nil, &refreshMetrics{url: tt.url, client: http.DefaultClient})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/demo/metrics", nil))
		if w.Code != tt.status || strings.TrimSpace(w.Body.String()) != tt.body {
			t.Errorf("metrics URL %q: %d %s, want %d %s", tt.url, w.Code, w.Body, tt.status, tt.body)
		}
	}
}
