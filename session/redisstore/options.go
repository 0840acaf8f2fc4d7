package redisstore

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/internal/problem"
	"github.com/tokenrelay/tokenrelay/secret"
)

// Options say how to reach Redis and how the store lays out its keys (key
// `session.redis`). Exactly one topology applies:
//   - URL: one server, redis://[user:password@]host:port[/db], or
//     rediss:// for TLS.
//   - Addresses with MasterName: Sentinel; Addresses are the sentinels.
//   - Addresses with Cluster set, or two or more Addresses: Cluster; the
//     addresses are seed nodes.
//   - One address without MasterName or Cluster: one server.
//
// Validate checks every rule NewClient relies on, so check-config reports
// what would stop the client from being built.
type Options struct {
	// `redis://` or `rediss://` URL of a standalone Redis.
	URL string `yaml:"url"`
	// Cluster nodes, or the sentinels when `master_name` is set.
	Addresses []string `yaml:"addresses"`
	// Sentinel master name.
	MasterName string `yaml:"master_name"`
	// Use Redis Cluster with `addresses`.
	Cluster bool `yaml:"cluster"`

	// ACL user.
	//
	// Username and Password are the ACL user (Redis 6+) or, with an empty
	// Username, the requirepass password. They may also come from the
	// URL, but not from both.
	Username string `yaml:"username"`
	// ACL password (prefer `password_file`).
	Password secret.String `yaml:"password"`
	// File holding the Redis password.
	//
	// Package config reads it into Password; the store never opens it.
	PasswordFile string `yaml:"password_file"`
	// Password of the sentinels.
	SentinelPassword secret.String `yaml:"sentinel_password"`
	// File holding the sentinel password.
	//
	// Package config reads it into SentinelPassword.
	SentinelPassFile string `yaml:"sentinel_password_file"`
	// Database number (standalone and Sentinel).
	DB int `yaml:"db"`

	// Use TLS to Redis.
	//
	// A rediss:// URL turns TLS on by itself.
	TLS bool `yaml:"tls"`
	// PEM roots for Redis TLS.
	//
	// They are trusted instead of the system roots.
	CAFile string `yaml:"ca_file"`
	// Client certificate for Redis TLS.
	CertFile string `yaml:"cert_file"`
	// Client key for Redis TLS.
	KeyFile string `yaml:"key_file"`
	// TLS server name to verify.
	//
	// Empty means the host dialled.
	ServerName string `yaml:"server_name"`

	// Prefix of every key tokenrelay writes.
	//
	// It lets several deployments share one Redis. It sits outside the
	// {…} hash tag of the session's keys and must not contain '{' or '}',
	// which would move the tag and split a session from its lock in a
	// Cluster.
	KeyPrefix string `yaml:"key_prefix"`
	// Redis dial timeout.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// Redis read timeout.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// Redis write timeout.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// Bound on one store operation, go-redis's retries and the wait behind
	// a batched pipeline included: a stalled Redis costs a request at most
	// this long (then `503 store_unavailable`).
	OpTimeout time.Duration `yaml:"op_timeout"`
	// Connection pool size (0: go-redis default, 10 per CPU).
	//
	// It is the size per node.
	PoolSize int `yaml:"pool_size"`
	// Keep a replica-local copy of the sessions in use, kept current by
	// Redis (standalone and Sentinel).
	//
	// A request then reads its session from memory instead of making a
	// round trip. Redis tells every replica about each write of a session
	// (`CLIENT TRACKING` in broadcast mode, on one extra connection per
	// replica), so a logout, refresh or touch on any replica evicts the
	// copy everywhere within milliseconds, and copies are served only
	// while that connection answers its own pings within 80 ms. Needs
	// Redis 6 or later and, with ACLs, the `client` and `subscribe`
	// commands; without them the store reads Redis every time. Ignored
	// with a cluster.
	LocalCache *bool `yaml:"local_cache"`
}

// localCache reports whether the local cache is on: by default, except
// with a cluster.
func (o Options) localCache() bool {
	return (o.LocalCache == nil || *o.LocalCache) && !o.cluster()
}

// WithDefaults returns o with every default filled in; it is the only
// place that knows them. Zero timeouts and an empty key prefix take the
// defaults; the other zero values mean what they say.
func (o Options) WithDefaults() Options {
	if o.KeyPrefix == "" {
		o.KeyPrefix = "tokenrelay:"
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 2 * time.Second
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = time.Second
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = time.Second
	}
	if o.OpTimeout == 0 {
		o.OpTimeout = 2 * time.Second
	}
	if o.LocalCache == nil {
		o.LocalCache = new(true)
	}
	return o
}

// IsZero reports whether o names no server at all (no URL, address,
// master name or cluster), which is how a memory-store configuration
// leaves it.
func (o Options) IsZero() bool {
	return o.URL == "" && len(o.Addresses) == 0 && o.MasterName == "" && !o.Cluster
}

// cluster reports whether o describes a Redis Cluster.
func (o Options) cluster() bool {
	return o.Cluster || (o.MasterName == "" && len(o.Addresses) > 1)
}

// Validate reports every problem in o, after defaults, with paths relative
// to the options ("url", "addresses[1]"). It reads no file and dials
// nothing.
func (o Options) Validate() []problem.Problem {
	o = o.WithDefaults()
	var ps problem.List
	o.validateTopology(&ps)
	if o.DB < 0 {
		ps.Add("db", "must not be negative")
	} else if o.DB != 0 && o.cluster() {
		ps.Add("db", "must be 0 with a cluster")
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		ps.Add("cert_file", "cert_file and key_file go together")
	}
	for _, d := range []struct {
		key   string
		value time.Duration
	}{{"dial_timeout", o.DialTimeout}, {"read_timeout", o.ReadTimeout}, {"write_timeout", o.WriteTimeout}, {"op_timeout", o.OpTimeout}} {
		if d.value <= 0 {
			ps.Add(d.key, "must be a positive duration")
		}
	}
	if o.PoolSize < 0 {
		ps.Add("pool_size", "must not be negative")
	}
	o.validateTLS(&ps)
	return ps
}

// validateTopology checks that exactly one topology is described, and
// its addresses.
func (o Options) validateTopology(ps *problem.List) {
	switch {
	case o.URL != "" && len(o.Addresses) > 0:
		ps.Add("", "set url or addresses, not both")
	case o.URL == "" && len(o.Addresses) == 0:
		ps.Add("url", "required with store redis (or session.redis.addresses)")
	case o.URL != "":
		o.validateURL(ps)
		if o.Cluster {
			ps.Add("cluster", "needs session.redis.addresses (the cluster nodes), not url")
		}
	}
	if o.MasterName != "" && len(o.Addresses) == 0 {
		ps.Add("master_name", "requires session.redis.addresses (the sentinels)")
	}
	if o.MasterName != "" && o.Cluster {
		ps.Add("cluster", "cannot be combined with master_name")
	}
	if !o.SentinelPassword.IsZero() && o.MasterName == "" {
		ps.Add("sentinel_password", "only used with master_name")
	}
	for i, a := range o.Addresses {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || !validPort(port) {
			ps.Add(fmt.Sprintf("addresses[%d]", i), "must be host:port")
		}
	}
}

// validateURL checks the URL and what it may not repeat (credentials, a
// database other than db).
func (o Options) validateURL(ps *problem.List) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		ps.Add("url", "must be a redis:// or rediss:// URL")
		return
	}
	if u.RawQuery != "" {
		ps.Add("url", "must not have query parameters: set timeouts and the pool size in their own keys")
		return
	}
	parsed, err := redis.ParseURL(o.URL)
	if err != nil {
		ps.Add("url", "%v", redactURLError(err, u))
		return
	}
	if u.User != nil && (o.Username != "" || !o.Password.IsZero()) {
		ps.Add("url", "carries credentials, and so do username or password: use one")
	}
	if strings.Trim(u.Path, "/") != "" && o.DB > 0 && o.DB != parsed.DB {
		ps.Add("db", "is %d but url selects db %d", o.DB, parsed.DB)
	}
	if o.TLS && u.Scheme == "redis" {
		ps.Add("tls", "is set but url is redis://; use rediss://")
	}
}

// validateTLS reports TLS settings that would be ignored because TLS is
// off.
func (o Options) validateTLS(ps *problem.List) {
	if o.useTLS() {
		return
	}
	for _, f := range []struct{ key, value string }{
		{"ca_file", o.CAFile}, {"cert_file", o.CertFile}, {"key_file", o.KeyFile}, {"server_name", o.ServerName},
	} {
		if f.value != "" {
			ps.Add(f.key, "is set but TLS is off (set session.redis.tls, or use a rediss:// url)")
		}
	}
}

// useTLS reports whether the client speaks TLS: tls set, or a rediss://
// URL.
func (o Options) useTLS() bool {
	return o.TLS || strings.HasPrefix(o.URL, "rediss://")
}

// redactURLError keeps a password in the URL out of an error message.
func redactURLError(err error, u *url.URL) error {
	if pw, ok := u.User.Password(); ok && pw != "" && strings.Contains(err.Error(), pw) {
		return errors.New(strings.ReplaceAll(err.Error(), pw, "REDACTED"))
	}
	return err
}

func validPort(port string) bool {
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535 && strconv.Itoa(n) == port
}
