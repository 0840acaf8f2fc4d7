package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// chromePageState is what the demo page's JavaScript can read: everything a
// script injected into the page could steal.
type chromePageState struct {
	Cookie      string `json:"cookie"`
	LocalLen    int    `json:"localLen"`
	SessionLen  int    `json:"sessionLen"`
	LocalDump   string `json:"localDump"`
	SessionDump string `json:"sessionDump"`
	HTML        string `json:"html"`
	SessionText string `json:"sessionText"`
	ErrorText   string `json:"errorText"`
	Href        string `json:"href"`
	// Calls are the whoami table's rows, newest first: time, status,
	// jti, expires in, tokens seen.
	Calls [][]string `json:"calls"`
}

const chromePageStateJS = `({
  cookie: document.cookie,
  localLen: localStorage.length,
  sessionLen: sessionStorage.length,
  localDump: JSON.stringify(Object.entries(localStorage)),
  sessionDump: JSON.stringify(Object.entries(sessionStorage)),
  html: document.documentElement.outerHTML,
  sessionText: document.getElementById("session").textContent,
  errorText: document.getElementById("error").textContent,
  href: location.href,
  calls: [...document.querySelectorAll("#calls tr")].map(tr => [...tr.children].map(td => td.textContent)),
})`

// chromeTwoTokensJS is true once the whoami table shows two different token
// ids (jti): the page saw tokenrelay replace the access token.
const chromeTwoTokensJS = `new Set([...document.querySelectorAll("#calls tr")]
  .map(tr => tr.children[2].textContent.split(" ")[0])
  .filter(j => j && j !== "-")).size >= 2`

func chromePage(t *testing.T, b *chromeBrowser) chromePageState {
	t.Helper()
	return chromeValue(t, b, "read the page", 10*time.Second, chromedp.Evaluate[chromePageState](chromePageStateJS))
}

// chromeSessionAnswer parses the page's "<status> <json>" display of
// GET /.auth/session.
func chromeSessionAnswer(t *testing.T, text string) (status string, info struct {
	Authenticated bool           `json:"authenticated"`
	Subject       string         `json:"subject"`
	Claims        map[string]any `json:"claims"`
}) {
	t.Helper()
	status, body, _ := strings.Cut(text, " ")
	if err := json.Unmarshal([]byte(body), &info); err != nil {
		t.Fatalf("the page shows %q for /.auth/session, want \"<status> <JSON>\": %v", text, err)
	}
	return status, info
}

// refreshMetric reads tokenrelay_refresh_total{result="success"} from the
// admin listener.
func refreshMetric(t *testing.T, s *stack) float64 {
	t.Helper()
	return metricsGet(t, s).series("tokenrelay_refresh_total")["result=success"]
}

// TestChromiumDemoFlow drives headless Chromium through the demo: the SPA at
// "/" served through tokenrelay, the real OP's login and consent pages, the
// whoami loop across an access-token refresh, and logout through the OP's
// end-session page. It proves, in a real browser's cookie jar and JS
// sandbox, that the browser holds one HttpOnly, Secure, SameSite=Lax
// __Host- cookie and no token anywhere a script can read.
func TestChromiumDemoFlow(t *testing.T) {
	t.Parallel()
	chromeExecPath(t) // skip (or fail in CI) before starting the stack
	// Tokens live 4s and are refreshed 1s ahead; the page calls whoami
	// every 3s, so its second or third call carries a refreshed token.
	s := startStack(t, stackOptions{AccessTTL: 4 * time.Second, RefreshAhead: time.Second, PublicHost: "localhost"})
	b := chromeStart(t)
	home := s.RelayURL + "/"

	// Logged out: the page offers the login link.
	b.do(t, "open the demo page", 20*time.Second,
		chromedp.Navigate(home),
		chromedp.WaitVisible(chromedp.ID("login")),
		chromedp.Poll[chromedp.Void](`document.getElementById("session").textContent.startsWith("200 ")`,
			chromedp.WithPollingTimeout(10*time.Second)),
	)
	if status, info := chromeSessionAnswer(t, chromePage(t, b).SessionText); status != "200" || info.Authenticated {
		t.Fatalf("before login the page shows /.auth/session = %s authenticated=%v, want 200 false", status, info.Authenticated)
	}

	// Log in through the OP's own pages: any login and password, then
	// consent (the OP grants offline_access only with consent).
	b.do(t, "log in at the OP", 30*time.Second,
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.CSS(`input[name="login"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="login"]`), "alice"),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), "any password"),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitReady(chromedp.CSS(`input[name="prompt"][value="consent"]`)),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		// Back on the demo page, logged in.
		chromedp.WaitVisible(chromedp.ID("logout")),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll("#calls tr").length >= 1`,
			chromedp.WithPollingTimeout(10*time.Second)),
	)
	afterLogin := chromePage(t, b)
	if afterLogin.Href != home {
		t.Errorf("after login the tab is at %s, want %s", afterLogin.Href, home)
	}
	status, info := chromeSessionAnswer(t, afterLogin.SessionText)
	if status != "200" || !info.Authenticated || info.Subject != "alice" || info.Claims["email"] != "alice@example.test" {
		t.Errorf("after login the page shows /.auth/session = %q, want 200 authenticated as alice (alice@example.test)", afterLogin.SessionText)
	}

	// The browser's cookie jar: on tokenrelay's site exactly the session
	// cookie (the login-binding cookie is gone), with the design's
	// attributes. The OP's own cookies live on its host, 127.0.0.1.
	var relayCookies []*network.Cookie
	for _, c := range b.cookies(t) {
		if c.Domain == "localhost" || strings.HasSuffix(c.Domain, ".localhost") {
			relayCookies = append(relayCookies, c)
		}
	}
	if len(relayCookies) != 1 {
		var names []string
		for _, c := range relayCookies {
			names = append(names, c.Name+" (domain "+c.Domain+", path "+c.Path+")")
		}
		t.Fatalf("the browser holds %d cookies for localhost: %q, want exactly __Host-tokenrelay", len(relayCookies), names)
	}
	ck := relayCookies[0]
	ticket := ck.Value
	type cookieAttrs struct {
		Name, Domain, Path     string
		HTTPOnly, Secure, Sess bool
		SameSite               network.CookieSameSite
		ValueLen               int
	}
	got := cookieAttrs{ck.Name, ck.Domain, ck.Path, ck.HTTPOnly, ck.Secure, ck.Session, ck.SameSite, len(ck.Value)}
	want := cookieAttrs{"__Host-tokenrelay", "localhost", "/", true, true, false, network.CookieSameSiteLax, 43}
	if got != want {
		t.Errorf("session cookie = %+v, want %+v", got, want)
	}
	// Max-Age is the session's absolute lifetime (2h in the harness).
	if exp := time.Unix(int64(ck.Expires), 0); exp.Before(time.Now().Add(sessionMaxAge-5*time.Minute)) || exp.After(time.Now().Add(sessionMaxAge+time.Minute)) {
		t.Errorf("session cookie expires at %s, want about %s from now", exp, sessionMaxAge)
	}

	// A refresh seen by the page: the whoami loop shows a second token id.
	b.do(t, "wait for the page to show a refreshed token", 20*time.Second,
		chromedp.Poll[chromedp.Void](chromeTwoTokensJS, chromedp.WithPollingTimeout(15*time.Second)),
	)
	page := chromePage(t, b)
	var pageJTIs []string
	for i, row := range page.Calls {
		if len(row) != 5 || row[1] != "200" {
			t.Errorf("whoami row %d on the page = %q, want status 200", i, row)
			continue
		}
		if jti, _, _ := strings.Cut(row[2], " "); !slices.Contains(pageJTIs, jti) {
			pageJTIs = append(pageJTIs, jti)
		}
	}
	if len(pageJTIs) < 2 {
		t.Errorf("the whoami table shows token ids %q, want at least two", pageJTIs)
	}
	if page.ErrorText != "" {
		t.Errorf("the page shows an error: %q", page.ErrorText)
	}
	// The live refresh counters follow tokenrelay's metrics: the refresh
	// the page just saw is counted within the page's next poll, and the
	// count goes up, without a reload, as the page's calls go on getting
	// refreshed tokens.
	b.do(t, "wait for the page's refresh counters", 10*time.Second,
		chromedp.Poll[chromedp.Void](`Number(document.getElementById("m-success").textContent) >= 1 && document.getElementById("m-sessions").textContent.startsWith("1 / ")`,
			chromedp.WithPollingTimeout(8*time.Second)),
	)
	shown := chromeValue(t, b, "read the page's refresh counter", 5*time.Second,
		chromedp.Evaluate[float64](`Number(document.getElementById("m-success").textContent)`))
	if got := refreshMetric(t, s); got < shown {
		t.Errorf("tokenrelay counted %v successful refreshes, fewer than the page shows (%v)", got, shown)
	}
	b.do(t, "wait for the page's refresh counter to go up", 20*time.Second,
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`Number(document.getElementById("m-success").textContent) > %v`, shown),
			chromedp.WithPollingTimeout(15*time.Second)),
	)
	paths := b.screenshot(t, "tokenrelay-demo.png")
	t.Logf("screenshot of the logged-in demo page: %s", strings.Join(paths, ", "))

	// Every token id the page showed belongs to a token tokenrelay sent
	// the API; the API never saw the browser's cookie.
	upstreamJTIs := map[string]string{} // jti → token
	verified := map[string]bool{}       // tokens already checked
	for _, r := range s.Tap.Requests() {
		if strings.Contains(r.Cookie, "__Host-tokenrelay") {
			t.Errorf("the upstream received the session cookie on %s", r.Path)
		}
		if r.Path != "/api/whoami" {
			continue
		}
		tok := bearerToken(t, r.Authorization)
		if !verified[tok] {
			verified[tok] = true
			c := chromeTokenClaims(t, s.OP, tok)
			if c.Subject != "alice" {
				t.Errorf("the upstream received a token for sub %q, want alice", c.Subject)
			}
			upstreamJTIs[c.ID] = tok
		}
	}
	for _, jti := range pageJTIs {
		if _, ok := upstreamJTIs[jti]; !ok {
			t.Errorf("the page shows token id %q, which no request to the API carried (API saw %d tokens)", jti, len(upstreamJTIs))
		}
	}
	if st := s.OP.Stats(t); st.CodeSuccess != 1 || st.RefreshSuccess < 1 {
		t.Errorf("OP counted %d code exchanges and %d refreshes, want 1 and at least 1", st.CodeSuccess, st.RefreshSuccess)
	}

	// Nothing a script can read holds a token or the ticket.
	snapshots := []chromePageState{afterLogin, page}
	readable := func(st chromePageState) map[string]string {
		return map[string]string{
			"document.cookie": st.Cookie,
			"localStorage":    st.LocalDump,
			"sessionStorage":  st.SessionDump,
			"the page HTML":   st.HTML,
		}
	}
	for i, st := range snapshots {
		if st.Cookie != "" || st.LocalLen != 0 || st.SessionLen != 0 {
			t.Errorf("snapshot %d: document.cookie = %q, localStorage has %d items, sessionStorage %d, want \"\", 0, 0",
				i, st.Cookie, st.LocalLen, st.SessionLen)
		}
		for where, text := range readable(st) {
			if strings.Contains(text, ticket) {
				t.Errorf("snapshot %d: %s contains the session ticket", i, where)
			}
			if jwtRE.MatchString(text) {
				t.Errorf("snapshot %d: %s contains a JWT", i, where)
			}
			for jti, tok := range upstreamJTIs {
				if strings.Contains(text, tok) {
					t.Errorf("snapshot %d: %s contains the access token with jti %s", i, where, jti)
				}
			}
		}
	}

	// Logout: the page's button POSTs /.auth/logout and follows the answer
	// to the OP's end-session page; confirming there lands back on "/".
	b.do(t, "log out", 20*time.Second,
		chromedp.Click(chromedp.ID("logout")),
		chromedp.WaitVisible(chromedp.CSS(`button[name="logout"][value="yes"]`)),
	)
	endSession := chromeValue(t, b, "read the end-session URL", 5*time.Second, chromedp.Location())
	lu, err := url.Parse(endSession)
	if err != nil || lu.Scheme+"://"+lu.Host+lu.Path != s.OP.Issuer+"/session/end" {
		t.Fatalf("logout went to %q, want the OP's end_session_endpoint %s/session/end", endSession, s.OP.Issuer)
	}
	// The end-session URL names the client, not the user's ID token: no
	// token ever reaches the browser, not even at logout.
	if got := lu.Query().Get("client_id"); got != opClientID || lu.Query().Has("id_token_hint") || jwtRE.MatchString(endSession) {
		t.Errorf("end-session URL %q: want client_id %s and no ID token", endSession, opClientID)
	}

	b.do(t, "confirm logout at the OP", 20*time.Second,
		chromedp.Click(chromedp.CSS(`button[name="logout"][value="yes"]`)),
		chromedp.WaitVisible(chromedp.ID("login")),
		chromedp.Poll[chromedp.Void](`document.getElementById("session").textContent.startsWith("200 ")`,
			chromedp.WithPollingTimeout(10*time.Second)),
	)
	// The OP hands back the state tokenrelay put in the end-session URL.
	after := chromePage(t, b)
	if want := home + "?state=" + url.QueryEscape(lu.Query().Get("state")); lu.Query().Get("state") == "" || after.Href != want {
		t.Errorf("after logout the tab is at %s, want %s (end-session state %q)", after.Href, want, lu.Query().Get("state"))
	}
	if status, info := chromeSessionAnswer(t, after.SessionText); status != "200" || info.Authenticated || info.Subject != "" {
		t.Errorf("after logout the page shows /.auth/session = %q, want 200 authenticated false", after.SessionText)
	}
	for _, c := range b.cookies(t) {
		if c.Domain == "localhost" {
			t.Errorf("after logout the browser still holds cookie %s for localhost", c.Name)
		}
	}
	if st := s.OP.Stats(t); st.Revocations != 1 || st.EndSession != 1 {
		t.Errorf("OP counted %d revocations and %d ended sessions, want 1 and 1", st.Revocations, st.EndSession)
	}
}
