package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// TestChromiumSilentLogin drives the demo page's "Log in silently"
// (a top-level redirect to /.auth/login?prompt=none) in Chromium against
// the real OP: without a session at the OP the page comes back with
// tokenrelay_error=login_required and stays logged out; after an
// interactive login, with tokenrelay's session cookie deleted but the OP's
// own session kept, the silent login logs the user in again without any
// page of the OP's, through the browser's real SameSite cookie rules.
func TestChromiumSilentLogin(t *testing.T) {
	t.Parallel()
	chromeExecPath(t)
	s := startStack(t, stackOptions{AccessTTL: 60 * time.Second, PublicHost: "localhost"})
	b := chromeStart(t)
	home := s.RelayURL + "/"

	// The page's "Log in silently" link, followed as a click would (a
	// navigation; a poll across a click's navigation loses its context).
	b.do(t, "open the demo page", 20*time.Second, chromedp.Navigate(home), chromedp.WaitVisible(chromedp.ID("silent")))
	silent := chromeValue(t, b, "read the silent login link", 5*time.Second, chromedp.Evaluate[string](`document.getElementById("silent").href`))
	if want := home + ".auth/login?prompt=none&return_to=/"; silent != want {
		t.Fatalf("the page's silent login link is %s, want %s", silent, want)
	}
	b.do(t, "silent login without a session at the OP", 20*time.Second,
		chromedp.Navigate(silent),
		chromedp.Poll[chromedp.Void](`location.search.includes("tokenrelay_error=login_required") && document.getElementById("error").textContent.includes("login_required")`,
			chromedp.WithPollingTimeout(10*time.Second)),
		chromedp.Poll[chromedp.Void](`document.getElementById("session").textContent.startsWith("200 ")`,
			chromedp.WithPollingTimeout(10*time.Second)),
	)
	page := chromePage(t, b)
	if status, info := chromeSessionAnswer(t, page.SessionText); status != "200" || info.Authenticated {
		t.Errorf("after login_required the page shows /.auth/session = %q, want 200 not authenticated", page.SessionText)
	}
	if want := home + "?tokenrelay_error=login_required"; page.Href != want {
		t.Errorf("the tab is at %s, want %s", page.Href, want)
	}

	// An interactive login: the OP now has a session.
	b.do(t, "log in at the OP", 30*time.Second,
		chromedp.Navigate(home),
		chromedp.WaitVisible(chromedp.ID("login")),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.CSS(`input[name="login"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="login"]`), "alice"),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), "any password"),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitReady(chromedp.CSS(`input[name="prompt"][value="consent"]`)),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("logout")),
	)
	codesBefore := len(secTokens(t, s.OP, "alice").Codes)

	// tokenrelay's session cookie goes (as when the session expired); the
	// OP's stays.
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	_, err := chromedp.Call(ctx, network.DeleteCookies, network.DeleteCookiesParams{Name: "__Host-tokenrelay", URL: home})
	cancel()
	if err != nil {
		t.Fatalf("chromium: delete the session cookie: %v", err)
	}
	b.do(t, "silent login with a session at the OP", 20*time.Second,
		chromedp.Navigate(silent),
		chromedp.WaitVisible(chromedp.ID("logout")),
		chromedp.Poll[chromedp.Void](`document.getElementById("session").textContent.includes('"authenticated": true')`,
			chromedp.WithPollingTimeout(10*time.Second)),
	)
	page = chromePage(t, b)
	if status, info := chromeSessionAnswer(t, page.SessionText); status != "200" || info.Subject != "alice" {
		t.Errorf("after the silent login the page shows /.auth/session = %q, want alice", page.SessionText)
	}
	if page.Href != home || strings.Contains(page.ErrorText, "silent login") {
		t.Errorf("the tab is at %s with error %q, want %s and no error", page.Href, page.ErrorText, home)
	}
	if got := len(secTokens(t, s.OP, "alice").Codes) - codesBefore; got != 1 {
		t.Errorf("the OP issued %d codes for the silent login, want 1", got)
	}
}
