package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session/redisstore"
)

// onlineTimeout bounds check-config --online as a whole.
const onlineTimeout = 30 * time.Second

// bogusRefreshToken is what check-config --online sends to the token
// endpoint: no provider issued it, so a working endpoint that accepts the
// client's credentials answers invalid_grant.
const bogusRefreshToken = "tokenrelay-check-config-not-a-refresh-token"

// Outcomes of one online check.
const (
	checkOK      = "ok"
	checkWarn    = "warn"
	checkFail    = "FAIL"
	checkSkipped = "skipped"
)

// onlineCheck is one line of the summary.
type onlineCheck struct {
	name, outcome, detail string
}

// onlineReport collects the lines of check-config --online.
type onlineReport struct {
	checks []onlineCheck
}

func (r *onlineReport) add(name, outcome, format string, args ...any) {
	r.checks = append(r.checks, onlineCheck{name, outcome, fmt.Sprintf(format, args...)})
}

// failed counts the failed checks.
func (r *onlineReport) failed() int {
	n := 0
	for _, c := range r.checks {
		if c.outcome == checkFail {
			n++
		}
	}
	return n
}

// print writes the one-screen summary.
func (r *onlineReport) print(w io.Writer) {
	for _, c := range r.checks {
		fmt.Fprintf(w, "%-13s %-7s %s\n", c.name, c.outcome, c.detail)
	}
	if n := r.failed(); n > 0 {
		fmt.Fprintf(w, "result: %d check%s failed\n", n, plural(n))
		return
	}
	fmt.Fprintln(w, "result: OK")
}

// checkOnline runs the online checks of a valid configuration and prints
// the summary; it returns exitOK when none failed, exitRuntime otherwise.
func (c *cli) checkOnline(ctx context.Context, cfg *config.Config, warnings config.Warnings) int {
	ctx, cancel := context.WithTimeout(ctx, onlineTimeout)
	defer cancel()
	r := &onlineReport{}
	r.add("config", checkOK, "valid, %d warning%s", len(warnings), plural(len(warnings)))
	o := cfg.Provider
	r.add("provider", checkOK, "%s %s, client %s, %s", o.Type, cmpOr(o.Issuer, o.TokenEndpoint), o.ClientID, o.AuthMethod)
	p := c.checkProvider(ctx, cfg, r)
	if p != nil {
		checkTokenEndpoint(ctx, p, r)
		checkLogout(cfg, p, r)
		defer p.Close()
	}
	checkRedirect(ctx, cfg, p, r)
	checkStore(ctx, cfg, r)
	summarizeRest(cfg, r)
	r.print(c.stdout)
	for _, w := range warnings {
		fmt.Fprintf(c.stdout, "warning: %s\n", w)
	}
	if r.failed() > 0 {
		return exitRuntime
	}
	return exitOK
}

// checkProvider checks the provider as serve would load it: its
// discovery document and the configuration's conflicts with it (as
// check-config --discover reports them), then the provider itself and
// its keys. It returns nil when the provider cannot be loaded.
func (c *cli) checkProvider(ctx context.Context, cfg *config.Config, r *onlineReport) *idp.Provider {
	client, err := providerHTTPClient(cfg.Provider)
	if err != nil {
		r.add("load", checkFail, "%v", err)
		r.add("token", checkSkipped, "the provider did not load")
		return nil
	}
	if !checkDiscovered(ctx, cfg, client, r) {
		r.add("token", checkSkipped, "no discovery document")
		return nil
	}
	opts, err := providerOptions(cfg, client, slog.New(slog.DiscardHandler))
	if err != nil {
		r.add("load", checkFail, "%v", err)
		r.add("token", checkSkipped, "the provider did not load")
		return nil
	}
	p, err := idp.New(ctx, opts)
	if err != nil {
		step := "load"
		if strings.Contains(err.Error(), "jwks") {
			step = "jwks"
		}
		r.add(step, checkFail, "%v", err)
		r.add("token", checkSkipped, "the provider did not load")
		return nil
	}
	checkKeys(ctx, p, r)
	return p
}

// checkDiscovered reads an OIDC provider's discovery document and reports
// each conflict and warning of the configuration with it, one a line. It
// returns false when the document cannot be read.
func checkDiscovered(ctx context.Context, cfg *config.Config, client *http.Client, r *onlineReport) bool {
	if cfg.Provider.Type != idp.TypeOIDC {
		r.add("discovery", checkSkipped, "type %s: endpoints from the configuration", cfg.Provider.Type)
		return true
	}
	found, err := discoverAndCheck(ctx, cfg, client)
	if err != nil {
		r.add("discovery", checkFail, "%v", err)
		return false
	}
	r.add("discovery", checkOK, "%s/.well-known/openid-configuration", strings.TrimSuffix(cfg.Provider.Issuer, "/"))
	conflicts, warnings := found.Errors(), found.Warnings()
	if len(conflicts)+len(warnings) == 0 {
		r.add("conflicts", checkOK, "none with the discovery document")
	}
	for _, p := range conflicts {
		r.add("conflicts", checkFail, "%s", p)
	}
	for _, p := range warnings {
		r.add("conflicts", checkWarn, "%s", p)
	}
	return true
}

// checkKeys reports the provider's signing keys.
func checkKeys(ctx context.Context, p *idp.Provider, r *onlineReport) {
	ep := p.Endpoints()
	if ep.JWKS == "" {
		r.add("jwks", checkSkipped, "no jwks_uri")
		return
	}
	n, err := p.KeyCount(ctx)
	switch {
	case err != nil:
		r.add("jwks", checkFail, "%s: %v", ep.JWKS, err)
	case n == 0:
		r.add("jwks", checkFail, "%s holds no keys", ep.JWKS)
	default:
		r.add("jwks", checkOK, "%d key%s at %s", n, plural(n), ep.JWKS)
	}
}

// checkTokenEndpoint refreshes a made-up refresh token: invalid_grant
// proves that the endpoint answers and accepts the client's credentials;
// invalid_client (or any other refusal of the client) means they are
// wrong.
func checkTokenEndpoint(ctx context.Context, p *idp.Provider, r *onlineReport) {
	tokenURL := p.Endpoints().Token
	_, err := p.Refresh(ctx, secret.String(bogusRefreshToken))
	var te *idp.TokenError
	switch {
	case err == nil:
		r.add("token", checkFail, "%s accepted a made-up refresh token", tokenURL)
	case errors.Is(err, idp.ErrInvalidGrant):
		r.add("token", checkOK, "%s refused a made-up refresh token (invalid_grant): it answers and accepts the client's credentials", tokenURL)
	case errors.As(err, &te) && te.ClientRejected():
		r.add("token", checkFail, "%s refused the client (%s, status %d): check client_id, the client secret and auth_method", tokenURL, cmpOr(te.Code, "no error code"), te.Status)
	default:
		r.add("token", checkFail, "%s: %v", tokenURL, err)
	}
}

// checkLogout reports how logout will go: revocation and RP-initiated
// logout, and whether post_logout_redirect_uri is under public_url.
func checkLogout(cfg *config.Config, p *idp.Provider, r *onlineReport) {
	ep := p.Endpoints()
	switch {
	case ep.Revocation != "":
		r.add("revocation", checkOK, "%s", ep.Revocation)
	case cfg.Logout.Revoke != nil && *cfg.Logout.Revoke:
		r.add("revocation", checkWarn, "the provider has no revocation endpoint: refresh tokens outlive logout")
	default:
		r.add("revocation", checkSkipped, "logout.revoke is off")
	}
	post := cfg.Logout.PostLogoutRedirectURI
	detail := "post_logout_redirect_uri " + post
	outcome := checkOK
	if cfg.PublicURL != "" && !strings.HasPrefix(post, cfg.PublicURL+"/") && post != cfg.PublicURL {
		outcome, detail = checkWarn, detail+" is not under public_url: the provider must list it"
	}
	if ep.EndSession == "" {
		r.add("logout", outcome, "no end_session_endpoint: logout ends at tokenrelay; %s", detail)
		return
	}
	r.add("logout", outcome, "via %s; %s", ep.EndSession, detail)
}

// checkRedirect checks the redirect URI: its host resolves here, and the
// provider takes an authorization request naming it (checkAuthorization).
// No standard call asks a provider which redirect URIs it has registered,
// but most refuse a request with one they do not know with a 400 page
// rather than a redirect to their login page.
func checkRedirect(ctx context.Context, cfg *config.Config, p *idp.Provider, r *onlineReport) {
	if cfg.PublicURL == "" {
		r.add("redirect_uri", checkSkipped, "no public_url (custom provider without logins)")
		return
	}
	redirect := cfg.RedirectURL()
	u, err := url.Parse(redirect)
	if err != nil {
		r.add("redirect_uri", checkFail, "%s: %v", redirect, err)
		return
	}
	if _, err := net.DefaultResolver.LookupHost(ctx, u.Hostname()); err != nil {
		r.add("redirect_uri", checkWarn, "%s: %s does not resolve here (%v)", redirect, u.Hostname(), err)
	}
	if p == nil || p.Endpoints().Authorization == "" {
		r.add("redirect_uri", checkOK, "%s (must be registered at the provider; not asked: no authorization endpoint loaded)", redirect)
		return
	}
	outcome, detail := checkAuthorization(ctx, cfg, p, redirect)
	r.add("redirect_uri", outcome, "%s: %s", redirect, detail)
}

// checkAuthorization sends the authorization request a login would send
// (pushed first when the provider takes pushed requests), without
// following the answer, and reads it: a redirect back to the redirect URI
// carries the provider's error; another redirect, or a page, means it took
// the request; a 4xx means it refused the request, most likely for its
// redirect URI.
func checkAuthorization(ctx context.Context, cfg *config.Config, p *idp.Provider, redirect string) (outcome, detail string) {
	authURL, err := p.AuthorizationURL(ctx, "tokenrelay-check-config", "tokenrelay-check-config", idp.NewVerifier(), idp.LoginRequest{})
	if err != nil {
		return checkFail, fmt.Sprintf("the provider refused the pushed authorization request: %v", err)
	}
	client, err := providerHTTPClient(cfg.Provider)
	if err != nil {
		return checkFail, err.Error()
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return checkFail, err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return checkFail, fmt.Sprintf("authorization endpoint: %v", err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400 && strings.HasPrefix(loc, redirect):
		back, _ := url.Parse(loc)
		q := back.Query()
		if e := q.Get("error"); e != "" {
			return checkFail, fmt.Sprintf("the provider sent the login back with error=%s (%s)", e, q.Get("error_description"))
		}
		return checkOK, "the provider took the authorization request and came straight back"
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return checkOK, fmt.Sprintf("the provider took the authorization request (status %d, on to its login page)", resp.StatusCode)
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return checkOK, fmt.Sprintf("the provider answered the authorization request with a page (status %d); it must be registered there", resp.StatusCode)
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return checkFail, fmt.Sprintf("the provider refused the authorization request (status %d): is it registered for client %s?", resp.StatusCode, cfg.Provider.ClientID)
	}
	return checkWarn, fmt.Sprintf("the authorization endpoint answered status %d", resp.StatusCode)
}

// checkStore pings Redis when the store is redis.
func checkStore(ctx context.Context, cfg *config.Config, r *onlineReport) {
	if cfg.Session.Store != "redis" {
		r.add("store", checkOK, "memory (one replica; sessions end with the process)")
		return
	}
	client, err := redisstore.NewClient(cfg.Session.Redis)
	if err != nil {
		r.add("store", checkFail, "redis: %v", err)
		return
	}
	defer client.Close()
	if err := client.Ping(ctx).Err(); err != nil {
		r.add("store", checkFail, "redis: ping: %v", err)
		return
	}
	r.add("store", checkOK, "redis answers")
}

// summarizeRest adds the lines that need no network: routes, admin API,
// tracing.
func summarizeRest(cfg *config.Config, r *onlineReport) {
	var routes []string
	for i, rt := range cfg.Routes {
		if i == 4 {
			routes = append(routes, fmt.Sprintf("and %d more", len(cfg.Routes)-i))
			break
		}
		routes = append(routes, fmt.Sprintf("%s → %s (%s)", rt.Path, rt.Upstream, rt.Auth))
	}
	r.add("routes", checkOK, "%s", strings.Join(routes, ", "))
	admin := "off"
	switch {
	case cfg.Admin.Escrowed():
		admin = "on, at " + cfg.AdminListen + "/admin/; session keys escrowed (a store dump plus session.secret opens sessions)"
	case cfg.Admin.Enabled():
		admin = "on, at " + cfg.AdminListen + "/admin/; no escrow (ended sessions' refresh tokens are not revoked)"
	}
	r.add("admin_api", checkOK, "%s", admin)
	tracing := "off"
	if cfg.Tracing.Enabled {
		tracing = "OTLP " + cmpOr(cfg.Tracing.Protocol, "(OTEL_EXPORTER_OTLP_PROTOCOL)") + " to " + cmpOr(cfg.Tracing.Endpoint, "(OTEL_EXPORTER_OTLP_ENDPOINT)")
	}
	r.add("tracing", checkOK, "%s", tracing)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
