package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromePolicyPage is what a denied page shows, read in the tab.
type chromePolicyPage struct {
	Title   string `json:"title"`
	Text    string `json:"text"`
	Scripts int    `json:"scripts"`
	Href    string `json:"href"`
	Link    string `json:"link"`
}

const chromePolicyPageJS = `({
  title: document.title,
  text: document.body.innerText,
  scripts: document.scripts.length,
  href: location.href,
  link: (document.querySelector("a.button") || {}).href || "",
})`

// chromeFetch is fetch()'s answer, read in the tab.
type chromeFetch struct {
	Status int    `json:"status"`
	Type   string `json:"type"`
	Body   string `json:"body"`
}

// TestChromiumPolicyPages drives headless Chromium to a route the user may
// not use: the navigation logs in at the OP first (no session), then shows
// the HTML refusal page, with the request id and a "Log in again" link and
// no script; the same URL fetched by the page's JavaScript gets the JSON
// error. The upstream sees neither.
func TestChromiumPolicyPages(t *testing.T) {
	t.Parallel()
	chromeExecPath(t) // skip (or fail in CI) before starting the stack
	rec := newRecorder(t)
	s := startStack(t, stackOptions{PublicHost: "localhost", Configure: withPolicyRoutes(rec.URL)})
	b := chromeStart(t)
	denied := s.RelayURL + "/p/emails/x"

	b.do(t, "open a route ben may not use, logging in on the way", 30*time.Second,
		chromedp.Navigate(denied),
		chromedp.WaitVisible(chromedp.CSS(`input[name="login"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="login"]`), "ben"),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), "any password"),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitReady(chromedp.CSS(`input[name="prompt"][value="consent"]`)),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a.button`)),
	)
	page := chromeValue(t, b, "read the page", 10*time.Second, chromedp.Evaluate[chromePolicyPage](chromePolicyPageJS))
	if page.Href != denied || page.Title != "Access denied" || !strings.Contains(page.Text, "this account may not open this page") {
		t.Errorf("the tab shows %q at %s:\n%s\nwant the Access denied page at %s", page.Title, page.Href, page.Text, denied)
	}
	if !strings.Contains(page.Text, "Request id: ") || page.Scripts != 0 {
		t.Errorf("the page shows no request id, or has %d scripts:\n%s", page.Scripts, page.Text)
	}
	if want := s.RelayURL + "/.auth/login?prompt=login&return_to=%2Fp%2Femails%2Fx"; page.Link != want {
		t.Errorf("Log in again leads to %q, want %q", page.Link, want)
	}
	paths := b.screenshot(t, "tokenrelay-forbidden.png")
	t.Logf("screenshot of the refusal page: %s", strings.Join(paths, ", "))

	// The same URL from the app's JavaScript (on its own page: the
	// refusal page's policy allows no script and no fetch).
	b.do(t, "open the app", 20*time.Second, chromedp.Navigate(s.RelayURL+"/"), chromedp.WaitVisible(chromedp.ID("logout")))
	got := chromeValue(t, b, "fetch the denied route", 10*time.Second, chromedp.Evaluate[chromeFetch](
		`fetch("/p/emails/x", {headers: {"X-CSRF": "1"}}).then(async r => ({status: r.status, type: r.headers.get("content-type"), body: await r.text()}))`,
		chromedp.EvalAwaitPromise))
	var body struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(got.Body), &body); err != nil || got.Status != 403 || got.Type != "application/json; charset=utf-8" || body.Error != "forbidden" {
		t.Errorf("fetch = %d %s %q, want 403 application/json forbidden", got.Status, got.Type, got.Body)
	}
	if n := rec.count("GET", "/p/emails/x", ""); n != 0 {
		t.Errorf("the upstream received %d refused requests", n)
	}
}
