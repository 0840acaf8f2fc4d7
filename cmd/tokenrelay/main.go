// Command tokenrelay is the token handler reverse proxy: it keeps OAuth2/OIDC
// tokens server-side behind an HttpOnly session cookie and forwards requests
// upstream with Authorization: Bearer.
//
//	tokenrelay serve --config /etc/tokenrelay/config.yaml
//	tokenrelay check-config --config FILE
//	tokenrelay gen-secret
//	tokenrelay version
//	tokenrelay healthcheck --url http://127.0.0.1:9090/healthz
package main

import (
	"context"
	"os"
)

// version is stamped at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Environ()))
}
