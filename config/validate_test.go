package config

import (
	"reflect"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/proxy"
	"github.com/tokenrelay/tokenrelay/secret"
)

// validConfig returns baseYAML loaded, with defaults set.
func validConfig(t *testing.T) *Config {
	t.Helper()
	cfg, _ := mustParse(t, baseYAML)
	return cfg
}

// customProvider turns cfg into a valid custom (Xano-style) provider.
func customProvider(c *Config) {
	c.Provider = idp.Options{
		Type:          "custom",
		TokenEndpoint: "https://x.example/auth/token",
		Custom: idp.CustomOptions{
			RefreshRequest: idp.RequestTemplate{Body: map[string]string{"refreshToken": "{{refresh_token}}"}},
			Mapping:        idp.ResponseMapping{AccessToken: "accessToken"},
			Capture:        []idp.CaptureRoute{{Path: "/api/auth/login"}},
		},
	}
	c.Provider = c.Provider.WithDefaults()
}

func TestValidateProblems(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   []string
	}{
		{"valid", func(c *Config) {}, nil},
		{"issuer http to a public host", func(c *Config) { c.Provider.Issuer = "http://id.example.com" },
			[]string{"provider.issuer: must be an https URL (http allowed only for loopback)"}},
		{"issuer http to loopback is fine", func(c *Config) { c.Provider.Issuer = "http://127.0.0.2:9000" }, nil},
		{"issuer http to ::1 is fine", func(c *Config) { c.Provider.Issuer = "http://[::1]:9000" }, nil},
		{"issuer not a URL", func(c *Config) { c.Provider.Issuer = "id.example.com" },
			[]string{"provider.issuer: must be an https URL (http allowed only for loopback)"}},
		{"oidc needs issuer and client id", func(c *Config) { c.Provider.Issuer, c.Provider.ClientID = "", "" },
			[]string{"provider.issuer: required with provider.type oidc", "provider.client_id: required with provider.type oidc"}},
		{"oidc needs openid scope", func(c *Config) { c.Provider.Scopes = []string{"offline_access"} },
			[]string{"provider.scopes: must include openid with provider.type oidc"}},
		{"unknown provider type", func(c *Config) { c.Provider.Type = "saml" },
			[]string{`provider.type: must be one of oidc, oauth2, custom (got "saml")`}},
		{"oauth2 needs endpoints", func(c *Config) { c.Provider.Type = "oauth2" },
			[]string{"provider.authorization_endpoint: required with provider.type oauth2", "provider.token_endpoint: required with provider.type oauth2"}},
		{"endpoints must be secure URLs", func(c *Config) {
			c.Provider.TokenEndpoint = "http://idp.example/token"
			c.Provider.JWKSURI = "ftp://idp.example/jwks"
		}, []string{
			"provider.token_endpoint: must be an https URL (http allowed only for loopback)",
			"provider.jwks_uri: must be an https URL (http allowed only for loopback)",
		}},
		{"custom provider valid", customProvider, nil},
		{"custom needs token endpoint, refresh token placeholder, access token field", func(c *Config) {
			customProvider(c)
			c.Provider.TokenEndpoint = ""
			c.Provider.Custom.RefreshRequest.Body = map[string]string{"refreshToken": "{{refreshToken}}"}
			c.Provider.Custom.Mapping.AccessToken = ""
		}, []string{
			"provider.token_endpoint: required with provider.type custom (the refresh endpoint)",
			`provider.custom.refresh_request.body: must contain "{{refresh_token}}" in a value`,
			"provider.custom.token_response.access_token: required with provider.type custom (the JSON field holding the access token)",
		}},
		{"custom request details", func(c *Config) {
			customProvider(c)
			c.Provider.Custom.RefreshRequest.Format = "xml"
			c.Provider.Custom.RefreshRequest.Method = "PO ST"
			c.Provider.Custom.RefreshRequest.Headers = map[string]string{"Bad Header": "x"}
			c.Provider.Custom.DeadStatuses = []int{400, 99}
			c.Provider.Custom.DeadErrorValues = []string{"expired"}
		}, []string{
			"provider.custom.refresh_request.method: must be an HTTP method",
			`provider.custom.refresh_request.format: must be one of json, form (got "xml")`,
			"provider.custom.refresh_request.headers.Bad Header: is not a valid header name",
			"provider.custom.dead_statuses[1]: must be an HTTP status code",
			"provider.custom.dead_error_field: required with dead_error_values",
		}},
		{"capture routes need paths served by a route", func(c *Config) {
			customProvider(c)
			c.Provider.Custom.Capture = []idp.CaptureRoute{{Method: "POST"}, {Method: "POST", Path: "auth/login"}, {Method: "POST", Path: "/other"}}
			c.Routes = c.Routes[:1] // only /api/
		}, []string{
			"provider.custom.capture[0].path: required",
			`provider.custom.capture[1].path: must be a path starting with "/"`,
			"provider.custom.capture[2].path: no route serves this path",
		}},
		{"custom provider needs no public_url or client_id", func(c *Config) {
			customProvider(c)
			c.PublicURL = ""
			c.Logout.PostLogoutRedirectURI = ""
		}, nil},
		{"auth_method none forbids a secret", func(c *Config) { c.Provider.ClientSecret = "s" },
			[]string{"provider.client_secret: must not be set with provider.auth_method none"}},
		{"auth_method basic needs a secret", func(c *Config) { c.Provider.AuthMethod = "client_secret_basic" },
			[]string{"provider.client_secret: required with provider.auth_method client_secret_basic (or client_secret_file)"}},
		{"auth_method post needs a secret", func(c *Config) { c.Provider.AuthMethod = "client_secret_post" },
			[]string{"provider.client_secret: required with provider.auth_method client_secret_post (or client_secret_file)"}},
		{"auth_method unknown", func(c *Config) { c.Provider.AuthMethod = "client_secret_jwt" },
			[]string{`provider.auth_method: must be one of client_secret_basic, client_secret_post, private_key_jwt, tls_client_auth, none (got "client_secret_jwt")`}},
		{"redis needs a secret", func(c *Config) {
			c.Session.Store, c.Session.Secret = "redis", ""
			c.Session.Redis.URL = "redis://127.0.0.1:6379/0"
		}, []string{"session.secret: required with store redis"}},
		{"short secrets", func(c *Config) {
			c.Session.Secret = "too-short"
			c.Session.PreviousSecrets = []secret.String{"0123456789abcdef0123456789abcdef", "short"}
		}, []string{"session.secret: must be at least 32 bytes", "session.previous_secrets[1]: must be at least 32 bytes"}},
		{"unknown store", func(c *Config) { c.Session.Store = "etcd" },
			[]string{`session.store: must be one of memory, redis (got "etcd")`}},
		{"redis url xor addresses", func(c *Config) {
			c.Session.Store = "redis"
			c.Session.Redis.URL = "redis://127.0.0.1:6379"
			c.Session.Redis.Addresses = []string{"127.0.0.1:7000"}
		}, []string{"session.redis: set url or addresses, not both"}},
		{"redis without url or addresses", func(c *Config) { c.Session.Store = "redis" },
			[]string{"session.redis.url: required with store redis (or session.redis.addresses)"}},
		{"redis details", func(c *Config) {
			r := &c.Session.Redis
			c.Session.Store = "redis"
			r.URL = "http://127.0.0.1:6379"
			r.MasterName = "mymaster"
			r.Cluster = true
			r.SentinelPassword = "x"
			r.DB = -1
			r.CertFile = "/c.pem"
			r.PoolSize = -1
			r.ReadTimeout = -time.Second
		}, []string{
			"session.redis.url: must be a redis:// or rediss:// URL",
			"session.redis.cluster: needs session.redis.addresses (the cluster nodes), not url",
			"session.redis.master_name: requires session.redis.addresses (the sentinels)",
			"session.redis.cluster: cannot be combined with master_name",
			"session.redis.db: must not be negative",
			"session.redis.cert_file: cert_file and key_file go together",
			"session.redis.read_timeout: must be a positive duration",
			"session.redis.pool_size: must not be negative",
			"session.redis.cert_file: is set but TLS is off (set session.redis.tls, or use a rediss:// url)",
		}},
		// The rules the Redis client relies on are checked here too, so a
		// configuration check-config accepts is one the client accepts.
		{"redis rules of the client", func(c *Config) {
			r := &c.Session.Redis
			c.Session.Store = "redis"
			r.URL = "redis://user:pw@127.0.0.1:6379/2?dial_timeout=1s"
			r.TLS = true
		}, []string{"session.redis.url: must not have query parameters: set timeouts and the pool size in their own keys"}},
		{"redis url repeats credentials and db", func(c *Config) {
			r := &c.Session.Redis
			c.Session.Store = "redis"
			r.URL = "redis://user:pw@127.0.0.1:6379/2"
			r.Password = "other"
			r.DB = 3
			r.TLS = true
		}, []string{
			"session.redis.url: carries credentials, and so do username or password: use one",
			"session.redis.db: is 3 but url selects db 2",
			"session.redis.tls: is set but url is redis://; use rediss://",
		}},
		{"redis sentinel valid", func(c *Config) {
			c.Session.Store = "redis"
			c.Session.Redis.Addresses = []string{"127.0.0.1:26379", "[::1]:26380"}
			c.Session.Redis.MasterName = "mymaster"
		}, nil},
		{"redis cluster addresses", func(c *Config) {
			c.Session.Store = "redis"
			c.Session.Redis.Addresses = []string{"127.0.0.1", ":7000"}
			c.Session.Redis.Cluster = true
			c.Session.Redis.DB = 2
		}, []string{
			"session.redis.addresses[0]: must be host:port",
			"session.redis.addresses[1]: must be host:port",
			"session.redis.db: must be 0 with a cluster",
		}},
		{"durations must be positive", func(c *Config) {
			c.ShutdownGrace = -1
			c.ShutdownDelay = -1
			c.Session.IdleTimeout = -time.Hour
			c.Provider.Timeout = -1
			c.Refresh.FailureBackoff = -1
			c.Upstream.DialTimeout = -1
		}, []string{
			"shutdown_grace: must be a positive duration",
			"shutdown_delay: must not be negative",
			"provider.timeout: must be a positive duration",
			"session.idle_timeout: must be a positive duration",
			"refresh.failure_backoff: must be a positive duration",
			"upstream.dial_timeout: must be a positive duration",
		}},
		{"refresh.timeout below lock ttl", func(c *Config) { c.Refresh.Timeout = 30 * time.Second },
			[]string{"refresh.timeout: must be below refresh.lock_ttl (30s): a refresh may go on in the background, under the lock, after requests stop waiting"}},
		{"dead_statuses only for custom", func(c *Config) { c.Provider.Custom.DeadStatuses = []int{401} },
			[]string{"provider.custom.dead_statuses: only for provider.type custom: with oidc only invalid_grant means the refresh token is dead, and other refusals (invalid_client, a 401) keep the session"}},
		{"refresh durations", func(c *Config) {
			c.Refresh.MinInterval = -time.Second
			c.Refresh.ReuseGrace = -time.Second
			c.Session.Redis.OpTimeout = -time.Second
		}, []string{
			"refresh.min_interval: must be a positive duration",
			"refresh.reuse_grace: must not be negative",
		}},
		{"refresh.ahead below access token lifetime", func(c *Config) { c.Refresh.Ahead = 5 * time.Minute },
			[]string{"refresh.ahead: must be below provider.access_token_lifetime (5m0s)"}},
		{"listen addresses", func(c *Config) {
			c.Listen = "8080"
			c.AdminListen = ":http"
		}, []string{
			`listen: must be host:port or :port (got "8080")`,
			`admin_listen: must be host:port or :port (got ":http")`,
		}},
		{"admin listen equals listen", func(c *Config) { c.AdminListen = c.Listen },
			[]string{"admin_listen: must differ from listen"}},
		{"admin escrow without the admin API", func(c *Config) { c.Admin.Escrow = true },
			[]string{"admin.escrow: needs the admin API: set token_file (or token)"}},
		{"admin escrow with the admin API", func(c *Config) {
			c.Admin.Token, c.Admin.Escrow = "0123456789abcdef0123456789abcdef", true
		}, nil},
		{"forward-auth on the public listener's port", func(c *Config) { c.ForwardAuth.Listen = "127.0.0.1:8080" },
			[]string{"forward_auth.listen: must differ from listen (the verify endpoint's answers carry access tokens: browsers must not reach it)"}},
		{"forward-auth on the admin listener", func(c *Config) { c.ForwardAuth.Listen = c.AdminListen },
			[]string{"forward_auth.listen: must differ from admin_listen (the verify endpoint's answers carry access tokens: browsers must not reach it)"}},
		{"forward-auth address", func(c *Config) { c.ForwardAuth.Listen = "8081" },
			[]string{`forward_auth.listen: must be host:port or :port (got "8081")`}},
		{"route without upstream under forward-auth", func(c *Config) {
			c.ForwardAuth.Listen = ":8081"
			c.Routes[0].Upstream = ""
		}, nil},
		{"capture route without upstream", func(c *Config) {
			customProvider(c)
			c.ForwardAuth.Listen = ":8081"
			c.Routes[0].Upstream = ""
		}, []string{"provider.custom.capture[0].path: routes[0] serves it without an upstream: token capture needs tokenrelay to proxy the login"}},
		{"route without upstream", func(c *Config) { c.Routes[0].Upstream = "" },
			[]string{"routes[0].upstream: required (a route without one is for forward-auth, which forward_auth.listen turns on)"}},
		{"public_url http on a public host", func(c *Config) { c.PublicURL = "http://app.example.com" },
			[]string{"public_url: must be an https URL (http allowed only for loopback)"}},
		{"public_url http on localhost", func(c *Config) { c.PublicURL = "http://localhost:8080" }, nil},
		{"public_url with query", func(c *Config) { c.PublicURL = "https://app.example.com?x=1" },
			[]string{"public_url: must not have a query or fragment"}},
		{"public_url with fragment", func(c *Config) { c.PublicURL = "https://app.example.com#top" },
			[]string{"public_url: must not have a query or fragment"}},
		{"public_url required for oidc", func(c *Config) { c.PublicURL = "" },
			[]string{`public_url: required: the redirect URI is public_url + "/.auth/callback"`}},
		{"auth prefix", func(c *Config) { c.AuthPrefix = "/auth/" },
			[]string{`auth_prefix: must be a path such as "/.auth" (leading slash, no trailing slash)`}},
		{"log settings", func(c *Config) { c.Log.Level, c.Log.Format = "trace", "xml" }, []string{
			`log.level: must be one of debug, info, warn, error (got "trace")`,
			`log.format: must be one of json, text (got "xml")`,
		}},
		{"routes problems", func(c *Config) {
			c.Routes = []proxy.Route{
				{Name: "api", Path: "api/", Upstream: "http://127.0.0.1:3000", Auth: "required", OnUnauthenticated: "auto"},
				{Name: "api", Path: "/x/", Upstream: "127.0.0.1:3000", Auth: "maybe", OnUnauthenticated: "login"},
				{Name: "Bad-Name", Path: "/x/", Upstream: "ws://127.0.0.1", Auth: "none", OnUnauthenticated: "auto"},
				{Name: "auth", Path: "/.auth/", Upstream: "https://127.0.0.1", Auth: "none", OnUnauthenticated: "auto"},
				{Name: "unmatched", Path: "/u/", Upstream: "https://127.0.0.1", Auth: "none", OnUnauthenticated: "auto"},
			}
		}, []string{
			`routes[0].path: must be a path starting with "/"`,
			`routes[1].name: "api" duplicates routes[0].name (set a name explicitly)`,
			"routes[1].upstream: must be an http or https URL",
			`routes[1].auth: must be one of required, optional, none (got "maybe")`,
			`routes[1].on_unauthenticated: must be one of auto, redirect, status (got "login")`,
			"routes[2].path: duplicates routes[1].path",
			"routes[2].name: must match [a-z0-9_]+",
			"routes[2].upstream: must be an http or https URL",
			`routes[3].path: must not be under auth_prefix "/.auth"`,
			`routes[3].name: "auth" is reserved for tokenrelay's own metrics (choose another name)`,
			`routes[4].name: "unmatched" is reserved for tokenrelay's own metrics (choose another name)`,
		}},
		{"no routes", func(c *Config) { c.Routes = nil }, []string{"routes: at least one route is required"}},
		{"tls files needs cert and key", func(c *Config) { c.TLS.Mode = "files" },
			[]string{"tls.cert_file: required with tls.mode files", "tls.key_file: required with tls.mode files"}},
		{"tls acme needs domains and storage", func(c *Config) { c.TLS.Mode = "acme" },
			[]string{"tls.acme.domains: required with tls.mode acme", "tls.acme.storage: required with tls.mode acme (a persistent folder for certificates and keys)"}},
		{"tls acme details", func(c *Config) {
			c.TLS.Mode = "acme"
			c.TLS.ACME = ACMEConfig{
				Domains: []string{"app.example.com", "127.0.0.1", "*.example.com", "https://x.example", "a..b"},
				Email:   "nobody", CA: "http://ca.example/dir", Storage: "/var/lib/tokenrelay",
				Challenges: []string{"tls-alpn-01", "dns-01", "tls-alpn-01"},
			}
			c.TLS.HTTPListen = "80"
		}, []string{
			"tls.acme.domains[2]: wildcard names need the DNS-01 challenge, which tokenrelay does not use",
			"tls.acme.domains[3]: must be a host name or IP address, without scheme or port",
			"tls.acme.domains[4]: must be a host name or IP address, without scheme or port",
			"tls.acme.ca: must be an https URL (http allowed only for loopback)",
			`tls.acme.challenges[1]: must be http-01 or tls-alpn-01, each at most once (got "dns-01")`,
			`tls.acme.challenges[2]: must be http-01 or tls-alpn-01, each at most once (got "tls-alpn-01")`,
			"tls.acme.email: must be an email address",
			`tls.http_listen: must be host:port or :port (got "80")`,
		}},
		{"tls mode unknown", func(c *Config) { c.TLS.Mode = "auto" },
			[]string{`tls.mode: must be one of none, files, acme (got "auto")`}},
		{"cookie", func(c *Config) {
			c.Cookie.Secure = ptr(false)
			c.Cookie.SameSite = "none"
		}, []string{
			"cookie.name: a __Host- or __Secure- cookie requires cookie.secure",
			`cookie.same_site: must be one of lax, strict (got "none")`,
		}},
		{"cookie name token", func(c *Config) { c.Cookie.Name = "my cookie" },
			[]string{"cookie.name: must be a valid cookie name"}},
		{"csrf", func(c *Config) {
			c.CSRF.Header = "X CSRF"
			c.CSRF.TrustedOrigins = []string{"https://ok.example", "https://ok.example:8443/", "https://bad.example/path", "bad.example"}
		}, []string{
			"csrf.header: must be a valid header name",
			"csrf.trusted_origins[2]: must be an origin (scheme://host[:port])",
			"csrf.trusted_origins[3]: must be an origin (scheme://host[:port])",
		}},
		{"logout redirect", func(c *Config) { c.Logout.PostLogoutRedirectURI = "/after" },
			[]string{"logout.post_logout_redirect_uri: must be an absolute http or https URL"}},
		{"numbers", func(c *Config) {
			c.Provider.MaxResponseBytes = -1
			c.Refresh.MaxRetryBody = -1
			c.Upstream.MaxIdleConnsPerHost = -1
			c.Upstream.MaxRequestBody = -1
			c.Upstream.BodyReadTimeout = -time.Second
		}, []string{
			"provider.max_response_bytes: must be positive",
			"refresh.max_retry_body: must not be negative",
			"upstream.max_idle_conns_per_host: must not be negative",
			"upstream.max_request_body: must not be negative",
			"upstream.body_read_timeout: must not be negative",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig(t)
			tt.mutate(cfg)
			_, err := cfg.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if got := problemLines(t, err); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("problems:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestValidateReportsEverything checks that one run lists every problem,
// in key order, and that the error text is one "path: message" per line.
func TestValidateReportsEverything(t *testing.T) {
	yaml := `
listen: "nope"
public_url: http://app.example.com
provider: {issuer: "http://id.example.com", client_id: spa, auth_method: client_secret_post}
session: {store: redis, redis: {url: "redis://127.0.0.1:6379"}}
refresh: {ahead: 10m}
routes:
  - {path: /api/, upstream: "127.0.0.1:3000"}
  - {path: /api/, upstream: "http://127.0.0.1:3001", name: api2, auth: sometimes}
`
	_, _, err := loader{readFile: memFiles(nil)}.load([]byte(yaml), nil)
	want := `listen: must be host:port or :port (got "nope")
public_url: must be an https URL (http allowed only for loopback)
provider.issuer: must be an https URL (http allowed only for loopback)
provider.client_secret: required with provider.auth_method client_secret_post (or client_secret_file)
session.secret: required with store redis
refresh.ahead: must be below provider.access_token_lifetime (5m0s)
routes[0].upstream: must be an http or https URL
routes[1].path: duplicates routes[0].path
routes[1].auth: must be one of required, optional, none (got "sometimes")`
	if err == nil || err.Error() != want {
		t.Errorf("error:\n%v\nwant:\n%s", err, want)
	}
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   []string
	}{
		{"none", func(c *Config) {}, nil},
		{"memory store without a secret", func(c *Config) { c.Session.Secret = "" },
			[]string{"session.secret: not set: a random secret is generated at start, and sessions end with the process"}},
		{"insecure cookie", func(c *Config) { c.Cookie.Secure, c.Cookie.Name = ptr(false), "tokenrelay" },
			[]string{"cookie.secure: false: the session cookie also travels over plain HTTP; use only for local development"}},
		{"no offline_access", func(c *Config) { c.Provider.Scopes = []string{"openid"} },
			[]string{"provider.scopes: offline_access is missing: most providers then issue no refresh token, and sessions end when the access token expires"}},
		{"access_type=offline instead of offline_access (Google)", func(c *Config) {
			c.Provider.Scopes = []string{"openid"}
			c.Provider.AuthParams = map[string]string{"access_type": "offline"}
		}, nil},
		{"redis settings with memory store", func(c *Config) { c.Session.Redis.URL = "redis://127.0.0.1:6379" },
			[]string{"session.redis: ignored with store memory"}},
		{"idle longer than lifetime", func(c *Config) { c.Session.IdleTimeout = 800 * time.Hour },
			[]string{"session.idle_timeout: is longer than session.max_lifetime, so it never applies"}},
		{"on_unauthenticated with auth none", func(c *Config) { c.Routes[1].OnUnauthenticated = "redirect" },
			[]string{"routes[1].on_unauthenticated: has no effect with auth none"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig(t)
			tt.mutate(cfg)
			warnings, err := cfg.Validate()
			if err != nil {
				t.Fatalf("Validate() error = %v", err)
			}
			var got []string
			for _, w := range warnings {
				got = append(got, w.String())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("warnings:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}
