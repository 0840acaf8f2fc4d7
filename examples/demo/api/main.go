// Command api is the demo stack's sample API. It stands where a team's own
// backend would: it trusts nothing but a Bearer access token, which it
// verifies against the OpenID Provider's signing keys (JWKS) before answering.
// It also serves the demo single-page app at "/".
//
// tokenrelay sits in front of it: the browser only ever holds tokenrelay's
// session cookie, and tokenrelay adds "Authorization: Bearer <JWT>" to every
// call it forwards to /api/.
//
//	GET /api/whoami  200 {"sub","exp","iat","jti","scope","tokens_seen"} for a
//	                 valid token, 401 {"error":"invalid_token",...} otherwise
//	GET /demo/metrics  tokenrelay's refresh counters as a small JSON, read
//	                 from its admin listener (-metrics-url), for the page
//	GET /healthz     200 once the provider's discovery document was read
//	GET /            the demo page
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "api:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:3000", "address to listen on")
	issuer := fs.String("issuer", "http://127.0.0.1:9000", "OpenID Provider issuer whose JWKS signs the access tokens")
	audience := fs.String("audience", "urn:tokenrelay:demo-api", "required aud of access tokens (empty: do not check)")
	metricsURL := fs.String("metrics-url", "", "tokenrelay's admin /metrics, read for the page's refresh counters (empty: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	client := &http.Client{Timeout: 10 * time.Second}
	verifier, err := newVerifier(ctx, client, logger, *issuer, *audience)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           newHandler(verifier, logger, &refreshMetrics{url: *metricsURL, client: client}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("api ready", "url", "http://"+ln.Addr().String(), "issuer", *issuer)

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
