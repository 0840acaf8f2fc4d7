package session

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/secret"
)

// Defaults for RedisClientOptions, the same as config's.
const (
	DefaultRedisDialTimeout  = 2 * time.Second
	DefaultRedisReadTimeout  = time.Second
	DefaultRedisWriteTimeout = time.Second
)

// redisMaxRetries is how often a failed command is retried (go-redis's
// default is 3). Retries ride over a Sentinel or Cluster failover; more of
// them only make an unreachable Redis slower to report.
const redisMaxRetries = 2

// RedisClientOptions say how to reach Redis. They mirror config.RedisConfig
// (with secrets already read from their files) so that cmd/ can copy one
// into the other; package session does not import config.
//
// Exactly one topology applies:
//   - URL: one server, redis://[user:password@]host:port[/db] or rediss://
//     for TLS.
//   - Addresses with MasterName: Sentinel; Addresses are the sentinels.
//   - Addresses with Cluster set, or two or more Addresses: Cluster; the
//     addresses are seed nodes.
//   - One address without MasterName or Cluster: one server.
type RedisClientOptions struct {
	URL        string
	Addresses  []string
	MasterName string
	Cluster    bool

	// Username and Password are the ACL user (Redis 6+) or, with an empty
	// Username, the requirepass password. They may also come from the URL,
	// but not from both.
	Username string
	Password secret.String
	// SentinelPassword authenticates to the sentinels (Sentinel only).
	SentinelPassword secret.String
	// DB selects a database (not in a Cluster, which has only 0).
	DB int

	// TLS turns on TLS for Addresses (a rediss:// URL turns it on by
	// itself). CAFile is a PEM bundle to trust instead of the system roots;
	// CertFile and KeyFile are a client certificate; ServerName overrides
	// the name checked in the server's certificate (default: the host
	// dialled).
	TLS        bool
	CAFile     string
	CertFile   string
	KeyFile    string
	ServerName string

	// Timeouts; zero means the defaults above. Commands also stop at their
	// context's deadline.
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// PoolSize is the connection pool size per node; 0 means go-redis's
	// default (10 per CPU).
	PoolSize int
}

// NewRedisClient checks opts and builds the go-redis client for the
// topology they describe. It does not connect: the first command does (use
// RedisStore.Ping to check reachability). The caller closes the client.
func NewRedisClient(opts RedisClientOptions) (redis.UniversalClient, error) {
	uo, err := opts.universal()
	if err != nil {
		return nil, fmt.Errorf("session: redis client: %w", err)
	}
	return redis.NewUniversalClient(uo), nil
}

// universal validates opts and turns them into go-redis options.
func (o RedisClientOptions) universal() (*redis.UniversalOptions, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	switch {
	case o.URL == "" && len(o.Addresses) == 0:
		bad("url or addresses is required")
	case o.URL != "" && len(o.Addresses) > 0:
		bad("url and addresses are exclusive: use url for one server, addresses for Sentinel or Cluster")
	}
	if o.MasterName != "" && o.Cluster {
		bad("master_name (Sentinel) and cluster are exclusive")
	}
	if o.URL != "" && o.MasterName != "" {
		bad("master_name needs the sentinel addresses in addresses, not url")
	}
	if o.URL != "" && o.Cluster {
		bad("cluster needs the seed nodes in addresses, not url")
	}
	if o.MasterName == "" && !o.SentinelPassword.IsZero() {
		bad("sentinel_password is set but master_name is not (not a Sentinel setup)")
	}
	for _, a := range o.Addresses {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			bad("address %q is not host:port", a)
		}
	}
	cluster := o.Cluster || (o.MasterName == "" && len(o.Addresses) > 1)
	if o.DB < 0 {
		bad("db must not be negative")
	}
	if cluster && o.DB != 0 {
		bad("db %d: a Cluster has only database 0", o.DB)
	}
	if o.DialTimeout < 0 || o.ReadTimeout < 0 || o.WriteTimeout < 0 {
		bad("timeouts must not be negative")
	}
	if o.PoolSize < 0 {
		bad("pool_size must not be negative")
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		bad("cert_file and key_file go together")
	}

	uo := &redis.UniversalOptions{
		Addrs:                 o.Addresses,
		MasterName:            o.MasterName,
		IsClusterMode:         cluster,
		Username:              o.Username,
		Password:              o.Password.Reveal(),
		SentinelPassword:      o.SentinelPassword.Reveal(),
		DB:                    o.DB,
		DialTimeout:           redisTimeout(o.DialTimeout, DefaultRedisDialTimeout),
		ReadTimeout:           redisTimeout(o.ReadTimeout, DefaultRedisReadTimeout),
		WriteTimeout:          redisTimeout(o.WriteTimeout, DefaultRedisWriteTimeout),
		ContextTimeoutEnabled: true,
		PoolSize:              o.PoolSize,
		MaxRetries:            redisMaxRetries,
		// One dial per attempt: go-redis would otherwise dial five times
		// per command attempt, so an unreachable server would take
		// (MaxRetries+1) × 5 × DialTimeout to report. Command retries
		// already cover a refused connection.
		DialerRetries: 1,
		// Pipelines (each Get is one, see RedisStore.Get) share the main
		// pool rather than go-redis's separate pipeline pool: one pool means
		// one set of connections whose health Ping reports, and after an
		// outage reads and writes come back together instead of one pool
		// still failing fast on its last dial error while the other works.
		PipelinePoolSize: -1,
	}

	useTLS := o.TLS
	if o.URL != "" {
		scheme, err := o.fromURL(uo)
		if err != nil {
			errs = append(errs, err)
		}
		switch {
		case scheme == "rediss":
			useTLS = true
		case o.TLS:
			bad("tls is set but url is %s://; use rediss://", scheme)
		}
	}
	if !useTLS {
		for _, f := range []struct{ name, value string }{
			{"ca_file", o.CAFile}, {"cert_file", o.CertFile}, {"key_file", o.KeyFile}, {"server_name", o.ServerName},
		} {
			if f.value != "" {
				bad("%s is set but TLS is off (set tls, or use a rediss:// url)", f.name)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if useTLS {
		cfg, err := o.tlsConfig()
		if err != nil {
			return nil, err
		}
		uo.TLSConfig = cfg
	}
	return uo, nil
}

// fromURL copies address, credentials and database from o.URL into uo and
// returns the scheme.
func (o RedisClientOptions) fromURL(uo *redis.UniversalOptions) (string, error) {
	u, err := url.Parse(o.URL)
	if err != nil {
		// url.Parse quotes the URL, which may hold a password.
		return "", errors.New("url does not parse")
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return u.Scheme, fmt.Errorf("url scheme %q: want redis:// or rediss://", u.Scheme)
	}
	if u.RawQuery != "" {
		return u.Scheme, errors.New("url has query parameters: set timeouts and the pool size in their own options")
	}
	if u.Host == "" {
		return u.Scheme, errors.New("url has no host")
	}
	parsed, err := redis.ParseURL(o.URL)
	if err != nil {
		return u.Scheme, fmt.Errorf("url: %w", redactURLError(err, u))
	}
	uo.Addrs = []string{parsed.Addr}
	if u.User != nil {
		if o.Username != "" || !o.Password.IsZero() {
			return u.Scheme, errors.New("credentials are in both url and username/password; use one")
		}
		uo.Username, uo.Password = parsed.Username, parsed.Password
	}
	if strings.Trim(u.Path, "/") != "" {
		if o.DB != 0 && o.DB != parsed.DB {
			return u.Scheme, fmt.Errorf("url selects db %d but db is %d", parsed.DB, o.DB)
		}
		uo.DB = parsed.DB
	}
	return u.Scheme, nil
}

// redactURLError keeps a password in the URL out of an error message.
func redactURLError(err error, u *url.URL) error {
	if pw, ok := u.User.Password(); ok && pw != "" && strings.Contains(err.Error(), pw) {
		return errors.New(strings.ReplaceAll(err.Error(), pw, "REDACTED"))
	}
	return err
}

// tlsConfig builds the client TLS configuration from the CA bundle, client
// certificate and server name.
func (o RedisClientOptions) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.ServerName}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file/key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func redisTimeout(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
