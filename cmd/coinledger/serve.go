package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coinledger/coinledger/api"
	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/economy"
)

// serveOptions are serve's own flags, registered beside the common ones.
type serveOptions struct {
	listen, tokensFile, certFile, keyFile, clientCA, metricsAddr string
	drain, releaseEvery, maxDeadline, maxConnectionAge           time.Duration
}

func (o *serveOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.listen, "listen", envOr("COINLEDGER_LISTEN", "127.0.0.1:7070"), "gRPC listen address (env COINLEDGER_LISTEN)")
	fs.StringVar(&o.tokensFile, "tokens-file", os.Getenv("COINLEDGER_TOKENS_FILE"), "callers' bearer tokens, one \"name scopes token\" per line, read again on SIGHUP (env COINLEDGER_TOKENS_FILE, or the lines, ';'-separated, in COINLEDGER_TOKENS)")
	fs.StringVar(&o.certFile, "tls-cert", os.Getenv("COINLEDGER_TLS_CERT"), "TLS certificate (PEM); with --tls-key the listener speaks TLS; both read again on SIGHUP, with --client-ca")
	fs.StringVar(&o.keyFile, "tls-key", os.Getenv("COINLEDGER_TLS_KEY"), "TLS private key (PEM)")
	fs.StringVar(&o.clientCA, "client-ca", os.Getenv("COINLEDGER_CLIENT_CA"), "CA bundle (PEM): clients must present a certificate it signed (mutual TLS)")
	fs.StringVar(&o.metricsAddr, "metrics-listen", envOr("COINLEDGER_METRICS_LISTEN", "127.0.0.1:9464"), "Prometheus /metrics address; empty disables")
	fs.DurationVar(&o.drain, "drain", 10*time.Second, "how long shutdown waits for requests in flight")
	fs.DurationVar(&o.maxConnectionAge, "max-connection-age", 0,
		"close a connection (GOAWAY: its client reconnects) once it is this old, so that clients spread over servers added behind a load balancer; 0 never")
	fs.DurationVar(&o.maxDeadline, "max-deadline", time.Minute,
		"the longest any request may run, whatever deadline its caller set (one that sets none gets 10s); Verify reads the whole ledger")
	fs.DurationVar(&o.releaseEvery, "release-every", time.Hour,
		"how often to release creators' pending diamonds whose release day is over; 0 never (another process runs the job)")
}

// cmdServe runs the gRPC server until interrupted, then drains it.
func cmdServe(ctx context.Context, c *common, o *serveOptions, stdout io.Writer) (int, error) {
	if o.drain < 0 {
		return exitError, errors.New("--drain must not be negative (0 cuts requests in flight at once)")
	}
	if o.releaseEvery < 0 {
		return exitError, errors.New("--release-every must not be negative (0 never runs the release job)")
	}
	if o.maxConnectionAge < 0 {
		return exitError, errors.New("--max-connection-age must not be negative (0 keeps connections as long as their clients do)")
	}
	if o.maxDeadline <= 0 || o.maxDeadline > economy.MaxRequestDeadline {
		return exitError, fmt.Errorf("--max-deadline must be positive and at most %s (the release job closes a day a day after it ends)", economy.MaxRequestDeadline)
	}
	creds := &serveCredentials{tokensFile: o.tokensFile, certFile: o.certFile, keyFile: o.keyFile, clientCA: o.clientCA}
	loaded, err := creds.load()
	if err != nil {
		return exitError, err
	}
	loaded.warn(c.log)
	// Registered before anything is served, so that a SIGHUP never finds
	// the default action (exit) in place.
	hangUp := make(chan os.Signal, 1)
	signal.Notify(hangUp, syscall.SIGHUP)
	defer signal.Stop(hangUp)
	// The ports first: one taken or mistyped is refused before a database
	// is started and migrated. Until Serve, a caller's connection waits.
	lis, err := net.Listen("tcp", o.listen)
	if err != nil {
		return exitError, fmt.Errorf("--listen: %w", err)
	}
	defer lis.Close()
	var mlis net.Listener
	if o.metricsAddr != "" {
		if mlis, err = net.Listen("tcp", o.metricsAddr); err != nil {
			return exitError, fmt.Errorf("--metrics-listen: %w", err)
		}
		defer mlis.Close()
	}
	srv, eco, closeAll, err := c.apiServer(ctx, api.Config{Tokens: loaded.tokens, Logger: c.log, TLS: creds.listenerTLS(loaded), MaxDeadline: o.maxDeadline,
		MaxConnectionAge: o.maxConnectionAge})
	if err != nil {
		return exitError, err
	}
	defer closeAll()
	srv.Metrics.CredentialsLoaded(loaded.at, loaded.certExpiry, false)
	if o.releaseEvery > 0 {
		// Stopped before the deferred closeAll closes the ledger under it.
		defer c.releaseWorker(eco, o.releaseEvery, srv.Metrics)()
	}
	var metrics *http.Server
	if mlis != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", srv.Metrics)
		metrics = &http.Server{Addr: o.metricsAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go metrics.Serve(mlis)
	}
	fmt.Fprintf(stdout, "coinledger: serving gRPC on %s (tls=%v), metrics on %q\n", lis.Addr(), loaded.tls != nil, o.metricsAddr)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	var dbGone <-chan struct{} // nil, never ready, with --database-url
	if c.embedded != nil {
		dbGone = c.embedded.Exited()
	}
	var failure error
wait:
	for {
		select {
		case err := <-served:
			return exitError, err
		case <-hangUp:
			creds.reload(srv, c.log)
		case <-ctx.Done():
			break wait
		case <-dbGone:
			// Every call would fail from now on: stop, so that whatever
			// supervises this process starts it again (and PostgreSQL recovers).
			failure = fmt.Errorf("the private PostgreSQL in %s stopped unexpectedly; its log: %s", c.dataDir, c.embedded.LogPath())
			c.log.Error("embedded PostgreSQL exited; shutting down", "data_dir", c.dataDir, "log", c.embedded.LogPath())
			break wait
		}
	}
	// Health NOT_SERVING, drain, stop; then the deferred close stops the
	// commit lanes and the pool.
	c.log.Info("shutting down", "drain", o.drain.String())
	sctx, cancel := context.WithTimeout(context.Background(), o.drain)
	defer cancel()
	srv.Shutdown(sctx)
	if metrics != nil {
		metrics.Shutdown(sctx)
	}
	if err := <-served; err != nil && !errors.Is(err, net.ErrClosed) {
		c.log.Warn("serve ended", "err", err)
	}
	if failure != nil {
		return exitError, failure
	}
	fmt.Fprintln(stdout, "coinledger: stopped")
	return exitOK, nil
}

// releaseWorker runs the earnings release job every interval until the
// returned stop is called; stop waits for a run in progress to end.
func (c *common) releaseWorker(eco *economy.Economy, every time.Duration, metrics *api.Metrics) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		eco.RunReleases(ctx, every, func(rep economy.ReleaseReport, err error) {
			metrics.ObserveRelease(rep, err, time.Now())
			switch {
			case err != nil:
				c.log.Warn("earnings release failed; it runs again", "in", every.String(), "err", err)
			case rep.Released > 0:
				c.log.Info("earnings released", "accounts", rep.Released, "diamonds", rep.Diamonds.String(), "scanned", rep.Scanned)
			default:
				c.log.Debug("earnings release found nothing due", "scanned", rep.Scanned)
			}
		})
	}()
	return func() { cancel(); <-done }
}

// apiServer opens the ledger, bootstraps the economy and builds the gRPC
// server on it, its health following the database; closeAll stops the
// lanes, the pool and any private database.
func (c *common) apiServer(ctx context.Context, cfg api.Config) (*api.Server, *economy.Economy, func(), error) {
	svc, db, closeAll, err := c.open(ctx, true)
	if err != nil {
		return nil, nil, nil, err
	}
	cat := economy.NewCatalog(db, nil).WithLead(economy.DefaultLead)
	eco := economy.New(svc, cat, nil)
	if err := eco.Bootstrap(ctx); err != nil {
		closeAll()
		if errors.Is(err, ledger.ErrAccountExists) && c.databaseURL == "" {
			err = fmt.Errorf("%w\n(the private PostgreSQL in %s was set up by an earlier coinledger: give another --data-dir, or remove that directory to start afresh)", err, c.dataDir)
		}
		return nil, nil, nil, err
	}
	cfg.DatabasePing = db.Ping
	cfg.PoolStats = func() api.PoolStats { return api.PoolStats(db.PoolStats()) }
	return api.New(svc, eco, cat, cfg), eco, closeAll, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// serveCredentials are serve's bearer tokens and TLS files, read at start and
// again on SIGHUP, so that a token is revoked, or a certificate or client CA
// rotated, without a restart that would cut every caller's connection.
type serveCredentials struct {
	tokensFile, certFile, keyFile, clientCA string
	tls                                     atomic.Pointer[tls.Config] // new handshakes'
}

// loadedCredentials are the credentials as read at one moment.
type loadedCredentials struct {
	tokens         *api.Tokens
	tokensFileMode os.FileMode // the tokens file's permissions; 0 without one
	tls            *tls.Config // nil: plaintext
	certExpiry     time.Time   // zero without TLS
	at             time.Time
}

// warn logs what in the credentials an operator should fix: a tokens file
// other users may read (as ssh warns of a private key's), a certificate
// that expires within certExpiryWarning (or has).
func (l loadedCredentials) warn(log *slog.Logger) {
	if l.tokensFileMode&0o077 != 0 {
		log.Warn("other users may read the tokens file; chmod 600 it", "mode", fmt.Sprintf("%04o", l.tokensFileMode))
	}
	if left := l.certExpiry.Sub(l.at); !l.certExpiry.IsZero() && left < certExpiryWarning {
		log.Warn("the TLS certificate expires soon; replace it and send SIGHUP", "expires", l.certExpiry.UTC().Format(time.RFC3339), "in", left.Round(time.Minute).String())
	}
}

// certExpiryWarning is how long before its certificate expires serve warns,
// at start and at each reload.
const certExpiryWarning = 14 * 24 * time.Hour

func (c *serveCredentials) load() (loadedCredentials, error) {
	l := loadedCredentials{at: time.Now()}
	var err error
	if l.tokens, l.tokensFileMode, err = loadTokens(c.tokensFile); err != nil {
		return l, err
	}
	if l.tls, err = serverTLS(c.certFile, c.keyFile, c.clientCA); err != nil || l.tls == nil {
		return l, err
	}
	l.certExpiry = l.tls.Certificates[0].Leaf.NotAfter
	return l, nil
}

// listenerTLS is the listener's TLS configuration (nil: plaintext): each
// handshake takes the one most recently loaded.
func (c *serveCredentials) listenerTLS(l loadedCredentials) *tls.Config {
	if l.tls == nil {
		return nil
	}
	c.tls.Store(l.tls)
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return c.tls.Load(), nil },
	}
}

// reload reads the credentials again and puts them in use together; when
// any cannot be read, those in use stay. Connections already open keep
// their TLS session; every request is checked against the new tokens.
func (c *serveCredentials) reload(srv *api.Server, log *slog.Logger) {
	l, err := c.load()
	if err != nil {
		srv.Metrics.CredentialsReloadFailed()
		log.Error("credentials not reloaded; those in use stay", "err", err)
		return
	}
	l.warn(log)
	srv.SetTokens(l.tokens)
	attrs := []any{"callers", l.tokens.Callers()}
	if l.tls != nil {
		c.tls.Store(l.tls)
		attrs = append(attrs, "tls_certificate_expires", l.certExpiry.UTC().Format(time.RFC3339))
	}
	srv.Metrics.CredentialsLoaded(l.at, l.certExpiry, true)
	log.Info("credentials reloaded", attrs...)
}

// loadTokens reads the tokens file and its permissions, or
// COINLEDGER_TOKENS when no file is named. Errors never quote a token.
func loadTokens(file string) (*api.Tokens, os.FileMode, error) {
	if file == "" {
		lines := os.Getenv("COINLEDGER_TOKENS")
		if lines == "" {
			return nil, 0, errors.New("--tokens-file (or COINLEDGER_TOKENS) is required: every RPC but health needs a bearer token")
		}
		tokens, err := api.ParseTokens(strings.NewReader(strings.ReplaceAll(lines, ";", "\n")))
		return tokens, 0, err
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	tokens, err := api.ParseTokens(f)
	return tokens, st.Mode().Perm(), err
}

func serverTLS(cert, key, clientCA string) (*tls.Config, error) {
	if cert == "" && key == "" {
		if clientCA != "" {
			return nil, errors.New("--client-ca needs --tls-cert and --tls-key")
		}
		return nil, nil
	}
	if cert == "" || key == "" {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if clientCA != "" {
		pool, err := certPool("--client-ca", clientCA)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// certPool reads a PEM bundle of CA certificates named by flag.
func certPool(flag, file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificate found", flag)
	}
	return pool, nil
}
