package proxy

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// defaultCSRFHeader is the custom header unsafe requests carry by default.
const defaultCSRFHeader = "X-CSRF"

// csrfGuard is the cross-site request forgery defence for unsafe methods on
// session routes and the logout endpoint. It has two layers:
//
//  1. An origin check by Go's http.CrossOriginProtection: Sec-Fetch-Site
//     must say same-origin (or none), or, from browsers that do not send it,
//     Origin must match Host. The public URL's origin and the configured
//     trusted origins are always allowed.
//  2. When the route asks for it, a static custom header (X-CSRF by
//     default, any non-empty value). A cross-site page can send such a
//     header only through a CORS preflight, which the upstream does not
//     grant, and an HTML form cannot send it at all.
//
// A csrfGuard is safe for concurrent use.
type csrfGuard struct {
	origins *http.CrossOriginProtection
	header  string
}

// newCSRFGuard builds the guard. publicURL, when not nil, contributes its
// origin to the trusted ones; trustedOrigins are "scheme://host[:port]"
// values (a trailing slash is tolerated); header "" means X-CSRF.
func newCSRFGuard(publicURL *url.URL, trustedOrigins []string, header string) (*csrfGuard, error) {
	g := &csrfGuard{origins: http.NewCrossOriginProtection(), header: defaultCSRFHeader}
	if header != "" {
		g.header = http.CanonicalHeaderKey(header)
	}
	origins := make([]string, 0, len(trustedOrigins)+1)
	if publicURL != nil && publicURL.Scheme != "" && publicURL.Host != "" {
		origins = append(origins, publicURL.Scheme+"://"+publicURL.Host)
	}
	for _, o := range trustedOrigins {
		origins = append(origins, strings.TrimSuffix(o, "/"))
	}
	for _, o := range origins {
		if err := g.origins.AddTrustedOrigin(o); err != nil {
			return nil, fmt.Errorf("proxy: csrf: trusted origin: %w", err)
		}
	}
	return g, nil
}

// Check returns nil when r may proceed, and otherwise an error wrapping
// errCSRF. GET, HEAD and OPTIONS always pass. requireHeader adds the custom
// header requirement to the origin check.
func (g *csrfGuard) Check(r *http.Request, requireHeader bool) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	if err := g.origins.Check(r); err != nil {
		return fmt.Errorf("%w: %v", errCSRF, err)
	}
	if requireHeader && strings.TrimSpace(r.Header.Get(g.header)) == "" {
		return fmt.Errorf("%w: missing %s header", errCSRF, g.header)
	}
	return nil
}
