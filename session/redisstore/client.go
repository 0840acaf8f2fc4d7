package redisstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/internal/problem"
)

// maxRetries is how often a failed command is retried (go-redis's default
// is 3). Retries ride over a Sentinel or Cluster failover; more of them only
// make an unreachable Redis slower to report.
const maxRetries = 2

// NewClient checks o (see Options.Validate) and builds the go-redis client
// for the topology it describes, reading the TLS files it names. It does
// not connect: the first command does (Store.Ping checks reachability).
// The caller closes the client.
func NewClient(o Options) (redis.UniversalClient, error) {
	uo, err := o.clientOptions()
	if err != nil {
		return nil, fmt.Errorf("redisstore: client: %w", err)
	}
	return redis.NewUniversalClient(uo), nil
}

// clientOptions checks o and turns it into go-redis options.
func (o Options) clientOptions() (*redis.UniversalOptions, error) {
	o = o.WithDefaults()
	if err := problem.List(o.Validate()).Err(); err != nil {
		return nil, err
	}
	uo := &redis.UniversalOptions{
		Addrs:                 o.Addresses,
		MasterName:            o.MasterName,
		IsClusterMode:         o.cluster(),
		Username:              o.Username,
		Password:              o.Password.Reveal(),
		SentinelPassword:      o.SentinelPassword.Reveal(),
		DB:                    o.DB,
		DialTimeout:           o.DialTimeout,
		ReadTimeout:           o.ReadTimeout,
		WriteTimeout:          o.WriteTimeout,
		ContextTimeoutEnabled: true,
		PoolSize:              o.PoolSize,
		MaxRetries:            maxRetries,
		// One dial per attempt: go-redis would otherwise dial five times
		// per command attempt, so an unreachable server would take
		// (MaxRetries+1) × 5 × DialTimeout to report. Command retries
		// already cover a refused connection.
		DialerRetries: 1,
		// Pipelines (each Get is one, see Store.Get) share the main pool
		// rather than go-redis's separate pipeline pool: one pool means one
		// set of connections whose health Ping reports, and after an outage
		// reads and writes come back together instead of one pool still
		// failing fast on its last dial error while the other works.
		PipelinePoolSize: -1,
	}
	if o.URL != "" {
		if err := o.fromURL(uo); err != nil {
			return nil, err
		}
	}
	if o.useTLS() {
		cfg, err := o.tlsConfig()
		if err != nil {
			return nil, err
		}
		uo.TLSConfig = cfg
	}
	return uo, nil
}

// fromURL copies address, credentials and database from a URL Validate
// accepted into uo.
func (o Options) fromURL(uo *redis.UniversalOptions) error {
	parsed, err := redis.ParseURL(o.URL)
	if err != nil {
		return err // Validate parsed it: unreachable
	}
	uo.Addrs = []string{parsed.Addr}
	if parsed.Username != "" || parsed.Password != "" {
		uo.Username, uo.Password = parsed.Username, parsed.Password
	}
	if parsed.DB != 0 {
		uo.DB = parsed.DB
	}
	return nil
}

// tlsConfig builds the client TLS configuration from the CA bundle, client
// certificate and server name.
func (o Options) tlsConfig() (*tls.Config, error) {
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

// RouteLogs sends go-redis's own log lines (failed dials, Sentinel master
// changes) to logger at warn level, instead of plain text on stderr in the
// middle of a JSON log. go-redis keeps one logger per process, so this is
// process-wide: cmd calls it once, before building a client.
func RouteLogs(logger *slog.Logger) {
	redis.SetLogger(redisLogger{logger})
}

// redisLogger adapts a *slog.Logger to go-redis's Logging interface.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	msg := strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: ")
	l.log.LogAttrs(ctx, slog.LevelWarn, msg, slog.String("component", "go-redis"))
}
