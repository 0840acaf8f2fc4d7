package idp

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"golang.org/x/time/rate"
)

// newKeySet builds the JWKS cache: one fetch now (bounded by Timeout), a
// background refresh every JWKSRefreshInterval until life ends, and a fetch
// when a token names an unknown kid, at most one per JWKSRefreshCooldown
// (so forged kids cannot turn tokenrelay into a load generator against the
// provider, while a real key rotation is picked up within the cool-down).
func (p *Provider) newKeySet(life context.Context) (keyfunc.Keyfunc, error) {
	o := p.opts
	client := *o.HTTPClient
	base := client.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	// jwkset reads the body without a limit; cap it in the transport.
	client.Transport = limitTransport{base: base, max: o.MaxResponseBytes}

	url := p.jwksURL
	log := o.Logger
	httpStore, err := jwkset.NewStorageFromHTTP(url, jwkset.HTTPClientStorageOptions{
		Client:          &client,
		Ctx:             life,
		HTTPTimeout:     o.Timeout,
		RefreshInterval: o.JWKSRefreshInterval,
		RefreshErrorHandler: func(ctx context.Context, err error) {
			log.WarnContext(ctx, "idp: JWKS refresh failed", "url", url, "error", err)
		},
	})
	if err != nil {
		return nil, err
	}
	storage, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs: map[string]jwkset.Storage{url: httpStore},
		// The wait for the limiter and the fetch it allows share this
		// bound; with a cool-down longer than it, a token with an unknown
		// kid inside the cool-down is refused at once instead of waiting.
		RateLimitWaitMax:  o.Timeout,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(o.JWKSRefreshCooldown), 1),
	})
	if err != nil {
		return nil, err
	}
	return keyfunc.New(keyfunc.Options{Ctx: life, Storage: storage})
}

// limitTransport caps response bodies at max bytes: reading past the cap
// fails with errTooLarge.
type limitTransport struct {
	base http.RoundTripper
	max  int64
}

func (t limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{rc: resp.Body, left: t.max}
	return resp, nil
}

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return 0, fmt.Errorf("idp: %w", errTooLarge)
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
