// Package e2e holds tokenrelay's end-to-end tests: the real tokenrelay binary
// (built with the race detector), a real OpenID Provider (node oidc-provider,
// examples/demo/op), the demo stack's sample API, and a cookie-keeping HTTP
// client that logs in through the provider's own HTML pages as a browser
// would.
//
// Run them with `make e2e` or `go test -race ./e2e/`. They need Node.js and
// `npm ci` in examples/demo/op: without them the tests skip, except under
// CI=true, where they fail. `go test -short` skips them.
package e2e
