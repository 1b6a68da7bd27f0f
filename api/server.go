package api

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/economy"
	pb "github.com/coinledger/coinledger/proto/coinledger/v1"
)

// Fixed HTTP/2 flow-control windows, the stream's as large as the default
// request limit. A fixed window turns off gRPC's bandwidth-delay estimation,
// which answers received data with a window update and a PING: frames,
// syscalls and wake-ups on every burst, to size windows for bulk transfers
// on long links, while ledger calls are small. It saves about 2% of the Go
// process's CPU a gift (docs/benchmarks.md, fourth pass).
const (
	streamWindow = 1 << 20
	connWindow   = 1 << 22
)

// DialOptions are the client side of the same choice, for coinledger's own
// clients (bench, demo).
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithInitialWindowSize(streamWindow), grpc.WithInitialConnWindowSize(connWindow)}
}

// Config is how the server runs.
type Config struct {
	Tokens *Tokens      // required; SetTokens replaces them
	Logger *slog.Logger // nil: slog.Default()
	TLS    *tls.Config  // nil: plaintext (tests, or TLS terminated in front)
	// MaxRequestBytes bounds a request message; 0 means 1 MiB.
	MaxRequestBytes int
	// MaxHeaderBytes bounds a request's metadata (its HTTP/2 header list:
	// token, deadline and anything a client adds); 0 means 16 KiB. gRPC's
	// own default is 16 MiB.
	MaxHeaderBytes int
	// DefaultDeadline applies to a request that arrives without one, and
	// MaxDeadline caps any; 0 means 10 s and 60 s.
	DefaultDeadline, MaxDeadline time.Duration
	// MaxStreams bounds the requests one connection has in flight (HTTP/2's
	// SETTINGS_MAX_CONCURRENT_STREAMS; a client queues the rest); 0 means
	// 1,024. gRPC's own default is unbounded: one connection could hold a
	// goroutine and a request per stream until memory runs out.
	MaxStreams uint32
	// KeepaliveMinTime is the shortest interval between a client's keepalive
	// pings that the server accepts, also on a connection with no call in
	// flight; 0 means 10 s, the shortest gRPC clients send. gRPC's own
	// default is 5 minutes: a client that pings more often (service meshes
	// and load balancers commonly ping every 10-30 s) has its connection
	// closed with "too_many_pings", calls in flight and all.
	KeepaliveMinTime time.Duration
	// KeepaliveIdle is how long a connection may be silent before the server
	// pings it, and KeepaliveTimeout how long it then waits for the answer
	// before closing it; 0 means 1 minute and 20 s. gRPC's own default idle
	// time is 2 hours, for which a connection whose client vanished (a
	// crashed host, a dropped NAT mapping) holds its streams.
	KeepaliveIdle, KeepaliveTimeout time.Duration
	// MaxConnectionAge, when set, sends a connection GOAWAY once it is that
	// old (give or take a tenth), so that clients reconnect and spread over
	// servers added behind a load balancer; calls in flight have MaxDeadline
	// to finish. 0: connections live as long as their clients keep them.
	MaxConnectionAge time.Duration
	// DatabasePing, when set, is called every DatabasePingEvery (0 means
	// 5 s): while it fails (twice in a row, then on), health answers
	// NOT_SERVING, so that a load balancer sends callers to servers that
	// reach their database (on CockroachDB, each server's own node). nil:
	// health does not watch it.
	DatabasePing      func(context.Context) error
	DatabasePingEvery time.Duration
	// PoolStats, when set, reads the database connection pool's counts for
	// the metrics page: a pool that keeps callers waiting shows there.
	PoolStats func() PoolStats
}

// Server is the gRPC server over a ledger, its economy and catalog.
type Server struct {
	ledger  *ledger.Service
	eco     *economy.Economy
	catalog *economy.Catalog
	cfg     Config
	log     *slog.Logger
	tokens  atomic.Pointer[Tokens]
	grpc    *grpc.Server
	health  *health.Server
	Metrics *Metrics

	stopping chan struct{} // closed when Shutdown begins
	stopOnce sync.Once
}

// CommitStats are the ledger's commit-batch counts, as on the metrics page.
func (s *Server) CommitStats() ledger.CommitStats { return s.ledger.CommitStats() }

// streamWorkers are goroutines that handle one RPC after another, so that
// a request's handler starts on a stack already grown to what decoding and
// posting need, instead of a new goroutine growing (copying) its stack on
// every RPC. Each handler waits for its commit, so there must be about as
// many as requests in flight; beyond them gRPC starts a goroutine as usual.
const streamWorkers = 256

// New builds the server and registers every service, health and reflection.
func New(l *ledger.Service, eco *economy.Economy, cat *economy.Catalog, cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = 1 << 20
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = 16 << 10
	}
	if cfg.DefaultDeadline <= 0 {
		cfg.DefaultDeadline = 10 * time.Second
	}
	if cfg.MaxDeadline <= 0 {
		cfg.MaxDeadline = 60 * time.Second
	}
	if cfg.MaxStreams == 0 {
		cfg.MaxStreams = 1024
	}
	if cfg.KeepaliveMinTime <= 0 {
		cfg.KeepaliveMinTime = 10 * time.Second
	}
	if cfg.KeepaliveIdle <= 0 {
		cfg.KeepaliveIdle = time.Minute
	}
	if cfg.KeepaliveTimeout <= 0 {
		cfg.KeepaliveTimeout = 20 * time.Second
	}
	if cfg.DatabasePingEvery <= 0 {
		cfg.DatabasePingEvery = 5 * time.Second
	}
	s := &Server{ledger: l, eco: eco, catalog: cat, cfg: cfg, log: cfg.Logger, health: health.NewServer(), Metrics: newMetrics(l.CommitStats), stopping: make(chan struct{})}
	s.Metrics.pool = cfg.PoolStats
	s.tokens.Store(cfg.Tokens)
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.MaxRequestBytes),
		grpc.MaxHeaderListSize(uint32(cfg.MaxHeaderBytes)),
		grpc.MaxConcurrentStreams(cfg.MaxStreams),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: cfg.KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: cfg.KeepaliveIdle, Timeout: cfg.KeepaliveTimeout,
			MaxConnectionAge: cfg.MaxConnectionAge, MaxConnectionAgeGrace: cfg.MaxDeadline}),
		grpc.InitialWindowSize(streamWindow), grpc.InitialConnWindowSize(connWindow),
		grpc.ChainUnaryInterceptor(s.observe, s.recoverPanic, s.authorize, refuseNUL, s.bound),
		grpc.ChainStreamInterceptor(s.observeStream, s.recoverStream, s.authorizeStream),
		grpc.NumStreamWorkers(streamWorkers),
	}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	}
	s.grpc = grpc.NewServer(opts...)
	s.register(&pb.PurchaseService_ServiceDesc, purchases{s: s})
	s.register(&pb.GiftService_ServiceDesc, gifts{s: s})
	s.register(&pb.EarningsService_ServiceDesc, earnings{s: s})
	s.register(&pb.LedgerService_ServiceDesc, ledgerReads{s: s})
	s.register(&pb.CatalogService_ServiceDesc, catalog{s: s})
	s.register(&pb.TreasuryService_ServiceDesc, treasury{s: s})
	s.register(&pb.LiveShoppingService_ServiceDesc, liveShopping{s: s})
	s.register(&pb.AdminService_ServiceDesc, admin{s: s})
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	return s
}

// register registers a service whose requests that cannot be decoded (not
// protobuf, or a string that is not UTF-8) are InvalidArgument, logged and
// counted. gRPC decodes a request before any interceptor runs and answers a
// failure as Internal, which would tell a caller with bad input that the
// server broke.
func (s *Server) register(desc *grpc.ServiceDesc, impl any) {
	d := *desc
	d.Methods = slices.Clone(desc.Methods)
	for i, m := range d.Methods {
		method, handle := "/"+desc.ServiceName+"/"+m.MethodName, m.Handler
		d.Methods[i].Handler = func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			return handle(srv, ctx, func(req any) error {
				if err := dec(req); err != nil {
					err = status.Error(codes.InvalidArgument, "the request cannot be decoded: "+status.Convert(err).Message())
					s.record(ctx, method, time.Now(), &callerSlot{}, nil, err)
					return err
				}
				return nil
			}, interceptor)
		}
	}
	s.grpc.RegisterService(&d, impl)
}

// SetTokens replaces the callers' bearer tokens: every connection's next
// request is checked against them, so a revoked token stops working without
// a restart.
func (s *Server) SetTokens(t *Tokens) { s.tokens.Store(t) }

// Serve answers on lis until Shutdown.
func (s *Server) Serve(lis net.Listener) error {
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	if s.cfg.DatabasePing != nil {
		go s.watchDatabase()
	}
	return s.grpc.Serve(lis)
}

// watchDatabase pings the database until Shutdown, reporting NOT_SERVING
// once two pings in a row could not reach it (one can fail on a connection
// the database dropped when it restarted) and SERVING once one can again.
// (After Shutdown began, health ignores both.)
func (s *Server) watchDatabase() {
	tick := time.NewTicker(s.cfg.DatabasePingEvery)
	defer tick.Stop()
	failed := 0
	for {
		select {
		case <-s.stopping:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DatabasePingEvery)
		err := s.cfg.DatabasePing(ctx)
		cancel()
		select {
		case <-s.stopping:
			return // the pool may be closing under the ping
		default:
		}
		s.Metrics.DatabaseUp(err == nil)
		switch {
		case err != nil:
			if failed++; failed == databaseDownAfter {
				s.log.Error("database unreachable; health reports NOT_SERVING", "err", err)
				s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
			}
		case failed >= databaseDownAfter:
			s.log.Info("database reachable again; health reports SERVING")
			s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			failed = 0
		default:
			failed = 0
		}
	}
}

// databaseDownAfter is how many pings in a row must fail for health to
// report NOT_SERVING.
const databaseDownAfter = 2

// Shutdown reports NOT_SERVING so balancers stop sending, ends streams
// waiting for their caller (health watches, reflection), lets requests in
// flight finish until ctx ends, then cuts the rest. Every answered write was
// committed before its answer; a write cut off unanswered is safe to retry
// with its key.
func (s *Server) Shutdown(ctx context.Context) {
	s.health.Shutdown()
	s.stopOnce.Do(func() { close(s.stopping) })
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
	}
}

// observe logs each request and counts it, with the code it ended with.
func (s *Server) observe(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start, who := time.Now(), &callerSlot{}
	resp, err := handler(context.WithValue(ctx, callerSlotKey{}, who), req)
	s.record(ctx, info.FullMethod, start, who, req, err)
	return resp, err
}

// observeStream is observe for streaming calls (reflection, health's
// Watch), logged and counted when they end.
func (s *Server) observeStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start, who := time.Now(), &callerSlot{}
	ctx, cancel := context.WithCancel(context.WithValue(ss.Context(), callerSlotKey{}, who))
	defer cancel()
	in := streamIn{ServerStream: ss, ctx: ctx, stopping: s.stopping}
	if info.FullMethod == healthWatch {
		in.afterNotServing = cancel
	}
	err := handler(srv, in)
	s.record(ss.Context(), info.FullMethod, start, who, nil, err)
	return err
}

// healthWatch streams a service's health until the caller hangs up. The
// server reports NOT_SERVING only when it shuts down, and a watch that has
// said so ends: the drain would otherwise wait for it until its deadline.
const healthWatch = "/grpc.health.v1.Health/Watch"

// streamIn is a stream whose handlers see ctx, and whose reads end when
// the server shuts down.
type streamIn struct {
	grpc.ServerStream
	ctx             context.Context
	afterNotServing func() // a health watch's: ends it
	stopping        <-chan struct{}
}

// RecvMsg gives up waiting for the caller's next message once shutdown
// begins. A reflection stream that a client leaves open waits in RecvMsg,
// and would otherwise hold the drain to its deadline. The read it leaves
// behind ends with the stream: gRPC's RecvMsg returns once the stream is
// done, which it is as soon as the handler returns this error.
func (s streamIn) RecvMsg(m any) error {
	select {
	case <-s.stopping:
		return errShuttingDown
	default:
	}
	got := make(chan error, 1)
	go func() { got <- s.ServerStream.RecvMsg(m) }()
	select {
	case err := <-got:
		return err
	case <-s.stopping:
		return errShuttingDown
	}
}

var errShuttingDown = status.Error(codes.Unavailable, "the server is shutting down")

func (s streamIn) Context() context.Context { return s.ctx }

func (s streamIn) SendMsg(m any) error {
	err := s.ServerStream.SendMsg(m)
	if r, ok := m.(*healthpb.HealthCheckResponse); ok && r.Status == healthpb.HealthCheckResponse_NOT_SERVING && s.afterNotServing != nil {
		s.afterNotServing()
	}
	return err
}

// requestKey is what a write is idempotent on (its idempotency key, a
// refund's id, a purchase's store transaction id), for the request's log
// line: a caller asking what became of a request names it by that. Empty
// for reads.
func requestKey(req any) string {
	var key string
	switch r := req.(type) {
	case interface{ GetIdempotencyKey() string }:
		key = r.GetIdempotencyKey()
	case interface{ GetRefundId() string }:
		key = r.GetRefundId()
	case interface{ GetStoreTransactionId() string }:
		key = r.GetStoreTransactionId()
	}
	// A request refused for its key's length logs the start of it.
	if len(key) > maxLoggedKey {
		key = strings.ToValidUTF8(key[:maxLoggedKey], "") + "..."
	}
	return key
}

// maxLoggedKey is the longest key logged whole; valid ones are shorter.
const maxLoggedKey = 256

// record counts a finished call by method and code and logs it, with its
// caller when authentication named one and the key of a write (req's; nil
// for a stream). The line is built only when its level is logged: a server
// logging warnings only does none of that work for a call that succeeded.
func (s *Server) record(ctx context.Context, method string, start time.Time, who *callerSlot, req any, err error) {
	code := status.Code(err)
	elapsed := time.Since(start)
	s.Metrics.observe(method, code, elapsed)
	level := slog.LevelInfo
	switch {
	case code == codes.Internal || code == codes.Unknown:
		level = slog.LevelError
	case code == codes.OK && isHealth(method):
		level = slog.LevelDebug // a balancer's probes, every few seconds, are not news
	}
	if !s.log.Enabled(ctx, level) {
		return
	}
	attrs := []any{"method", method, "code", code.String(), "ms", float64(elapsed.Microseconds()) / 1000}
	if who.caller != nil {
		attrs = append(attrs, "caller", who.caller.Name)
	}
	if key := requestKey(req); key != "" {
		attrs = append(attrs, "key", key)
	}
	s.log.Log(ctx, level, "rpc", attrs...)
}

// recoverPanic turns a handler's panic into Internal, logging the stack.
func (s *Server) recoverPanic(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer s.recovered(ctx, info.FullMethod, &err)
	return handler(ctx, req)
}

func (s *Server) recoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer s.recovered(ss.Context(), info.FullMethod, &err)
	return handler(srv, ss)
}

// recovered, deferred, turns a panic into Internal, logging the stack.
func (s *Server) recovered(ctx context.Context, method string, err *error) {
	if p := recover(); p != nil {
		s.log.ErrorContext(ctx, "panic", "method", method, "panic", p, "stack", string(debug.Stack()))
		*err = status.Error(codes.Internal, "internal error")
	}
}

func (s *Server) authorize(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := s.tokens.Load().authenticate(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (s *Server) authorizeStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := s.tokens.Load().authenticate(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}

// bound applies the deadlines and maps the domain's errors to statuses.
func (s *Server) bound(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	limit := min(s.cfg.DefaultDeadline, s.cfg.MaxDeadline)
	if d, ok := ctx.Deadline(); ok {
		limit = min(time.Until(d), s.cfg.MaxDeadline)
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	resp, err := handler(ctx, req)
	if err != nil {
		return nil, toStatus(ctx, s.log, info.FullMethod, err)
	}
	return resp, nil
}
