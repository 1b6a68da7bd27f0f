// Package pgembed runs a private PostgreSQL server from the system's binaries
// for the coinledger binary and its tests.
//
// PostgreSQL refuses to run as root. When the process is root, initdb and
// postgres run as the "postgres" user (or "nobody") and the data and socket
// directories are handed to that user.
package pgembed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Config says where and how to run the server.
type Config struct {
	// DataDir holds the cluster; created with initdb when empty.
	DataDir string
	// Throwaway trades durability for speed (fsync off): for tests only.
	Throwaway bool
	Logger    *slog.Logger
}

// Server is a running private PostgreSQL.
type Server struct {
	cfg     Config
	bin     string
	sockDir string
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the postgres process has exited
	waitErr error         // how it exited; read after exited is closed
	cred    *syscall.Credential
	lock    *os.File // holds the data directory for this process (lockDataDir)
}

const (
	superuser = "coinledger"
	port      = 5432 // only names the socket file in a private directory

	socketDirPrefix = "coinledger-pg-"
)

// ErrDataDirInUse is returned when another process's private server runs on
// the data directory.
var ErrDataDirInUse = errors.New("data directory in use")

// ErrNoBinaries is returned when no PostgreSQL server binaries can be found.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries (initdb, postgres) found on PATH or under /usr/lib/postgresql/*/bin; " +
	"install them (Debian/Ubuntu: apt-get install -y postgresql) or pass --database-url")

// debianBinDirs is where Debian's and Ubuntu's packages put the server binaries.
var debianBinDirs = "/usr/lib/postgresql/*/bin"

// FindBinaries returns the directory holding initdb and postgres.
func FindBinaries() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			dir := filepath.Dir(real)
			if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
				return dir, nil
			}
		}
	}
	dirs, _ := filepath.Glob(debianBinDirs)
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", ErrNoBinaries
}

func versionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

// DefaultDataDir is where the binary keeps its private cluster. Root's home
// is closed to the unprivileged user the server runs as, so root's cluster
// lives under /var/lib.
func DefaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/coinledger/postgres"
	}
	if dir, err := os.UserCacheDir(); err == nil {
		return filepath.Join(dir, "coinledger", "postgres")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("coinledger-%d", os.Getuid()), "postgres")
}

// Start initialises the cluster if needed and starts the server; it returns
// once the server accepts connections.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	bin, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, bin: bin, exited: make(chan struct{})}
	if os.Geteuid() == 0 {
		var as string
		if s.cred, as, err = unprivileged(user.Lookup); err != nil {
			return nil, err
		}
		if as == "nobody" && !cfg.Throwaway {
			cfg.Logger.Warn("running PostgreSQL as nobody, for want of a postgres user: other processes running as nobody can read the ledger's data; create a postgres user",
				"data_dir", cfg.DataDir)
		}
	}
	if s.lock, err = lockDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	started := false
	defer func() {
		if !started {
			s.lock.Close()
		}
	}()
	if err := s.prepareDataDir(ctx); err != nil {
		return nil, err
	}
	if s.sockDir, err = os.MkdirTemp("", socketDirPrefix); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if err := s.chown(s.sockDir); err != nil {
		os.RemoveAll(s.sockDir)
		return nil, err
	}
	if err := s.start(ctx); err != nil {
		os.RemoveAll(s.sockDir)
		return nil, err
	}
	started = true
	return s, nil
}

// lockDataDir takes an exclusive lock on DIR.lock beside the data directory
// for as long as the returned file is open. The kernel drops it when the
// process dies, however it dies, so a server found running on a data
// directory that can be locked was left by a killed process and may be
// stopped; one that cannot belongs to a live process and is left alone.
// The file holds the owner's pid, for the error message.
func lockDataDir(dir string) (*os.File, error) {
	dir = filepath.Clean(dir)
	// Parents we create must let the server's user through.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	path := dir + ".lock"
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock the data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		owner, _ := io.ReadAll(f)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is used by another coinledger process (pid %s, from %s); stop it first, or give this command another --data-dir or a --database-url",
				ErrDataDirInUse, dir, strings.TrimSpace(string(owner)), path)
		}
		return nil, fmt.Errorf("lock the data directory: %w", err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// unprivileged picks the user a root process runs PostgreSQL as: postgres,
// else nobody.
func unprivileged(lookup func(string) (*user.User, error)) (*syscall.Credential, string, error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, name, nil
	}
	return nil, "", errors.New("running as root, and PostgreSQL refuses to: no 'postgres' or 'nobody' user to run it as")
}

func (s *Server) chown(path string) error {
	if s.cred == nil {
		return nil
	}
	if err := os.Chown(path, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
		return fmt.Errorf("hand %s to the postgres user: %w", path, err)
	}
	return nil
}

func (s *Server) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	closeInheritedOnExec()
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd
}

// closeInheritedOnExec marks the descriptors this process inherited beyond
// stdin, stdout and stderr close-on-exec (those Go opens are already), so
// that PostgreSQL, which outlives this process when it is killed, does not
// hold them open. A parent that reads a pipe to this process until EOF
// would otherwise wait for the server as well: the fuzzing engine's
// coordinator stopping a worker hung on the worker's orphaned server.
func closeInheritedOnExec() {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, f := range fds {
		if fd, err := strconv.Atoi(f.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

// Initialized reports whether dir holds a cluster that initdb set up.
func Initialized(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "PG_VERSION"))
	return err == nil
}

func (s *Server) prepareDataDir(ctx context.Context) error {
	dir := s.cfg.DataDir
	if Initialized(dir) {
		return nil
	}
	// The parents exist (lockDataDir); the data directory is private to the
	// server's user.
	if err := os.Mkdir(dir, 0o700); err != nil && !os.IsExist(err) {
		return fmt.Errorf("data directory: %w", err)
	}
	if s.cred != nil {
		// The unprivileged user must be able to reach the directory.
		for p := filepath.Dir(dir); p != "/" && p != "."; p = filepath.Dir(p) {
			if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o001 == 0 {
				return fmt.Errorf("data directory %s: %s is not searchable by the postgres user; choose another --data-dir", dir, p)
			}
		}
	}
	if err := s.chown(dir); err != nil {
		return err
	}
	args := []string{"-D", dir, "-U", superuser, "--auth=trust", "--encoding=UTF8", "--no-locale"}
	if s.cfg.Throwaway {
		args = append(args, "--no-sync")
	}
	s.cfg.Logger.Info("initialising embedded PostgreSQL", "data_dir", dir)
	if out, err := s.command(ctx, "initdb", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	return nil
}

// mallocTunables keeps a backend's freed memory for its next transaction.
// With glibc's default (trim above 128 kB), a backend hands the few megabytes
// a large batch's statements used back to the kernel at every commit and
// takes page faults to get them back: with this, PostgreSQL's CPU a gift
// fell by a tenth against the Go process's (docs/benchmarks.md, "Eighth pass"). A backend keeps at most this
// much free memory, so the cost is bounded by the number of connections.
const mallocTunables = "glibc.malloc.trim_threshold=16777216"

// withMallocTunables adds mallocTunables to env unless it already sets glibc's
// tunables, which are then the operator's choice.
func withMallocTunables(env []string) []string {
	for _, kv := range env {
		if strings.HasPrefix(kv, "GLIBC_TUNABLES=") && kv != "GLIBC_TUNABLES=" {
			return env
		}
	}
	return append(env, "GLIBC_TUNABLES="+mallocTunables)
}

func (s *Server) start(ctx context.Context) error {
	dir := s.cfg.DataDir
	// A server left running by a killed process holds the data directory
	// (its owner is dead: this process holds the lock).
	if pid, sock, err := Postmaster(dir); err == nil {
		_ = s.command(ctx, "pg_ctl", "stop", "-D", dir, "-m", "fast", "-w", "-t", "30").Run()
		removeStaleSocketDir(dir, pid, sock)
	}
	opts := []string{
		"-D", dir,
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=",
		"-c", "unix_socket_directories=" + s.sockDir,
		"-c", "max_connections=200",
		"-c", "shared_buffers=256MB",
		"-c", "log_min_messages=warning",
		// Fewer checkpoints, so fewer full-page images in the WAL under a
		// steady write load; durability is unchanged.
		"-c", "max_wal_size=4GB",
		"-c", "checkpoint_timeout=15min",
		// Short keyed statements only: JIT compiling one costs more than it saves.
		"-c", "jit=off",
	}
	if s.cfg.Throwaway {
		opts = append(opts, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	logPath := s.LogPath()
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("server log: %w", err)
	}
	// Not tied to ctx: the server must outlive the start-up context.
	cmd := s.command(context.Background(), "postgres", opts...)
	cmd.Env = withMallocTunables(cmd.Env)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true}
	if s.cfg.Throwaway {
		// A throwaway cluster goes with the process that started it, however
		// that ends: a fuzzing worker its coordinator kills, a test binary
		// killed at its timeout. (Immediate shutdown: nothing in it is kept.)
		// The signal comes when the thread that started it exits; Go ends a
		// thread before the process only for a goroutine that locked it and
		// returned, which nothing in coinledger or its modules does.
		cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start postgres: %w", err)
	}
	s.cmd = cmd
	go func() {
		s.waitErr = cmd.Wait()
		logFile.Close()
		close(s.exited)
	}()

	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := pgx.Connect(ctx, s.URL("postgres"))
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("postgres exited during start-up (%v); log %s:\n%s", s.waitErr, logPath, tail(logPath))
		case <-ctx.Done():
			s.Stop()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("postgres did not accept connections within 60s; log %s:\n%s", logPath, tail(logPath))
		}
	}
}

// Postmaster reads the pid and the socket directory of the server that runs,
// or ran, on dataDir from its postmaster.pid (lines 1 and 5).
func Postmaster(dataDir string) (pid int, socketDir string, err error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, "", err
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 5 {
		return 0, "", fmt.Errorf("postmaster.pid in %s: %q", dataDir, b)
	}
	if pid, err = strconv.Atoi(lines[0]); err != nil || pid <= 0 {
		return 0, "", fmt.Errorf("postmaster.pid in %s: pid %q", dataDir, lines[0])
	}
	return pid, lines[4], nil
}

// removeStaleSocketDir removes sock, the socket directory that the server
// (pid) of a killed process used, once that server is gone: stopped (its pid
// file removed) or killed. Only a directory Start made is removed.
func removeStaleSocketDir(dataDir string, pid int, sock string) {
	if filepath.Dir(sock) != filepath.Clean(os.TempDir()) || !strings.HasPrefix(filepath.Base(sock), socketDirPrefix) {
		return
	}
	_, err := os.Stat(filepath.Join(dataDir, "postmaster.pid"))
	stopped := errors.Is(err, fs.ErrNotExist)
	killed := errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	if stopped || killed {
		os.RemoveAll(sock)
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}

// Exited is closed once the server's process has exited, stopped or not:
// a command that outlives its start-up watches it, since every call would
// fail from then on.
func (s *Server) Exited() <-chan struct{} { return s.exited }

// PID is the postmaster's process id; the backends are its children.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// LogPath is the server's own log, which says why it ended.
func (s *Server) LogPath() string { return filepath.Join(s.cfg.DataDir, "coinledger-server.log") }

// URL is a connection string for database db as the cluster's superuser.
func (s *Server) URL(db string) string {
	q := url.Values{"host": {s.sockDir}, "port": {strconv.Itoa(port)}}
	return (&url.URL{Scheme: "postgres", User: url.User(superuser), Path: "/" + db, RawQuery: q.Encode()}).String()
}

// CreateDatabase creates db unless it exists.
func (s *Server) CreateDatabase(ctx context.Context, db string) error {
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", db).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // created concurrently
		return nil
	}
	return err
}

// Stop shuts the server down (fast shutdown: sessions are ended, committed
// work is already durable), removes the socket directory and releases the
// data directory.
func (s *Server) Stop() error {
	defer s.lock.Close()
	defer os.RemoveAll(s.sockDir)
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.exited:
		return nil
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		return errors.New("postgres did not stop within 30s; killed")
	}
}

// RemoveAbandoned removes the throwaway clusters (made by MkdirTemp, with
// their data in DIR/data) under the temporary directories matching glob
// that the process owning them left behind: one that died without stopping
// its server, as a test binary that panicked does, leaves the server
// running and the directory in place. A cluster whose lock is held belongs
// to a live process and is left alone, as is a directory made in the last
// minute (its owner may not have locked it yet).
func RemoveAbandoned(glob string) {
	dirs, _ := filepath.Glob(glob)
	for _, dir := range dirs {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() || time.Since(st.ModTime()) < time.Minute {
			continue
		}
		data := filepath.Join(dir, "data")
		lock, err := lockDataDir(data)
		if err != nil {
			continue
		}
		if pid, sock, err := Postmaster(data); err == nil && syscall.Kill(pid, syscall.SIGQUIT) == nil {
			// Immediate shutdown: nothing in a throwaway cluster is kept.
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
					break
				}
			}
			removeStaleSocketDir(data, pid, sock)
		}
		lock.Close()
		os.RemoveAll(dir)
	}
}

// MkdirTemp makes a temporary directory that the server's user can enter, for
// throwaway clusters; the caller removes it.
func MkdirTemp(prefix string) (string, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	if os.Geteuid() == 0 {
		// The server runs as an unprivileged user and must reach its data directory.
		if err := os.Chmod(dir, 0o755); err != nil {
			os.RemoveAll(dir)
			return "", err
		}
	}
	return dir, nil
}
