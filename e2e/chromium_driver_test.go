package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/storage"
	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"
)

// chromeExecPath finds a Chromium or Chrome binary. Without one it skips
// the test, or fails it under CI=true (scripts/ci-install.sh installs
// Debian's chromium).
func chromeExecPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const msg = "no chromium, chromium-browser or google-chrome in PATH (Debian: apt-get install chromium)"
	if inCI() {
		t.Fatalf("e2e: %s; CI=true requires the browser", msg)
	}
	t.Skipf("e2e: %s; skipping (CI=true makes this a failure)", msg)
	return ""
}

// chromeBrowser is one headless Chromium with a fresh profile, stopped when
// the test ends (before the stack it talks to).
type chromeBrowser struct {
	ctx context.Context // chromedp context of the one tab
	dir string          // the test's temp dir, for screenshots
}

// chromeStart launches Chromium with the flags TOOLING.md lists and a
// fresh user-data dir. Host names other than localhost resolve to nothing,
// so the browser reaches only the loopback stack (the OP's pages import a
// web font from the internet). When the test fails, a screenshot of the tab
// is written to the temp dir.
func chromeStart(t *testing.T) *chromeBrowser {
	t.Helper()
	execPath := chromeExecPath(t)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "chromium.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(execPath),
		chromedp.UserDataDir(filepath.Join(dir, "profile")),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"),
		chromedp.WindowSize(1000, 1000),
		chromedp.CombinedOutput(logFile),
	)
	// Not t.Context(): the browser must outlive the test body so the
	// failure screenshot below can still be taken.
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		logFile.Close()
		if t.Failed() {
			t.Logf("chromium output: %s", logPath)
		}
	})
	b := &chromeBrowser{ctx: ctx, dir: dir}
	// The first run starts the browser; it must not carry a timeout (the
	// timeout would stop the browser with it).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("chromium: start %s: %v", execPath, err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if loc, err := chromeRun(b.ctx, 5*time.Second, chromedp.Location()); err == nil {
			t.Logf("chromium: the tab was at %s", loc)
		}
		if png, err := chromeRun(b.ctx, 5*time.Second, chromedp.CaptureScreenshot()); err == nil {
			p := filepath.Join(dir, "failure.png")
			if os.WriteFile(p, png, 0o644) == nil {
				t.Logf("chromium: screenshot of the tab at failure: %s", p)
			}
		}
	})
	return b
}

// do runs the steps within timeout and fails the test, naming what, when
// they fail.
func (b *chromeBrowser) do(t *testing.T, what string, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if _, err := chromeRun(b.ctx, timeout, chromedp.Steps(steps...)); err != nil {
		t.Fatalf("chromium: %s: %v", what, err)
	}
}

// chromeRun runs an action returning T within timeout.
func chromeRun[T any](ctx context.Context, timeout time.Duration, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return chromedp.Run(ctx, a)
}

// chromeValue runs a and returns its value, failing the test on error.
func chromeValue[T any](t *testing.T, b *chromeBrowser, what string, timeout time.Duration, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromeRun(b.ctx, timeout, a)
	if err != nil {
		t.Fatalf("chromium: %s: %v", what, err)
	}
	return v
}

// cookies returns every cookie the browser holds, for every site.
func (b *chromeBrowser) cookies(t *testing.T) []*network.Cookie {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	res, err := chromedp.CallBrowser(ctx, storage.GetCookies, storage.GetCookiesParams{})
	if err != nil {
		t.Fatalf("chromium: Storage.getCookies: %v", err)
	}
	return res.Cookies
}

// screenshot writes a PNG of the viewport to the test's temp dir and, when
// TOKENRELAY_SCREENSHOT_DIR is set, to that directory too, and returns the
// paths written.
func (b *chromeBrowser) screenshot(t *testing.T, name string) []string {
	t.Helper()
	png := chromeValue(t, b, "screenshot", 10*time.Second, chromedp.FullScreenshot(100))
	dirs := []string{b.dir}
	if d := os.Getenv("TOKENRELAY_SCREENSHOT_DIR"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("TOKENRELAY_SCREENSHOT_DIR: %v", err)
		}
		dirs = append(dirs, d)
	}
	var paths []string
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		paths = append(paths, p)
	}
	return paths
}

// chromeTokenClaims checks raw's signature against the OP's JWKS, its
// issuer and its audience, and returns its claims. Unlike
// op.VerifyAccessToken it accepts an expired token: the page's older
// tokens (4s lifetime) have expired by the time the test looks at them.
func chromeTokenClaims(t *testing.T, o *op, raw string) *accessClaims {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	keys, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{o.Issuer + "/jwks"}, keyfunc.Override{Client: o.client})
	if err != nil {
		t.Fatalf("jwks: %v", err)
	}
	var c accessClaims
	if _, err := jwt.ParseWithClaims(raw, &c, keys.KeyfuncCtx(ctx),
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithoutClaimsValidation()); err != nil {
		t.Fatalf("an access token the upstream received does not verify against the OP's JWKS: %v", err)
	}
	if aud := []string(c.Audience); c.Issuer != o.Issuer || len(aud) != 1 || aud[0] != apiResource || c.ID == "" {
		t.Fatalf("access token iss=%q aud=%q jti=%q, want iss %q, aud [%q] and a jti", c.Issuer, aud, c.ID, o.Issuer, apiResource)
	}
	return &c
}
