package pgembed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestNoBinariesSaysHowToInstall(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	old := debianBinDirs
	debianBinDirs = filepath.Join(t.TempDir(), "*", "bin")
	t.Cleanup(func() { debianBinDirs = old })
	_, err := Start(context.Background(), Config{DataDir: t.TempDir()})
	if !errors.Is(err, ErrNoBinaries) || !strings.Contains(err.Error(), "apt-get install -y postgresql") {
		t.Fatalf("got %v", err)
	}
}

func TestUnprivilegedUser(t *testing.T) {
	users := map[string]*user.User{"postgres": {Uid: "101", Gid: "102"}, "nobody": {Uid: "65534", Gid: "65534"}}
	for _, tt := range []struct {
		have    []string
		want    string
		wantUID uint32
	}{
		{[]string{"postgres", "nobody"}, "postgres", 101},
		{[]string{"nobody"}, "nobody", 65534},
		{nil, "", 0},
	} {
		lookup := func(name string) (*user.User, error) {
			if slices.Contains(tt.have, name) {
				return users[name], nil
			}
			return nil, user.UnknownUserError(name)
		}
		cred, as, err := unprivileged(lookup)
		if tt.want == "" {
			if err == nil {
				t.Errorf("with %v: %v, want an error", tt.have, as)
			}
			continue
		}
		if err != nil || as != tt.want || cred.Uid != tt.wantUID {
			t.Errorf("with %v: %s %+v %v, want %s", tt.have, as, cred, err, tt.want)
		}
	}
}

// Start, stop, start again on the same data: the data survives, and a server
// left running by a killed process is taken over.
func TestRestartKeepsData(t *testing.T) {
	if _, err := FindBinaries(); err != nil {
		t.Skip(err)
	}
	dir, err := MkdirTemp("pgembed-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx := context.Background()
	// Missing parents, as with the default /var/lib/coinledger/postgres: they
	// must be created traversable for the unprivileged server user.
	cfg := Config{DataDir: filepath.Join(dir, "var", "lib", "data"), Throwaway: true}
	s1, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.CreateDatabase(ctx, "keep"); err != nil {
		t.Fatal(err)
	}
	// While s1's process lives, nobody else may start on its data.
	if _, err := Start(ctx, cfg); !errors.Is(err, ErrDataDirInUse) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second start on a data directory in use: %v", err)
	}
	if err := s1.CreateDatabase(ctx, "still-up"); err != nil {
		t.Fatalf("the first server after a refused second start: %v", err)
	}
	// Simulate a crash of the owning process: the server keeps running and
	// holds the data directory, the kernel drops the process's lock; the
	// next Start must take the server over.
	s1.cmd = nil
	s1.lock.Close()
	t.Cleanup(func() { os.RemoveAll(s1.sockDir) })
	s2, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start over a running server: %v", err)
	}
	if err := s2.CreateDatabase(ctx, "keep"); err != nil { // exists: a no-op
		t.Fatal(err)
	}
	if _, err := os.Stat(s1.sockDir); !os.IsNotExist(err) {
		t.Errorf("the taken-over server's socket directory is left behind: %v", err)
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", s2.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(environ), "GLIBC_TUNABLES="+mallocTunables) {
		t.Errorf("postgres runs without glibc.malloc tunables: %q", environ)
	}
	if err := s2.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("postmaster.pid left behind: %v", err)
	}
	if _, err := os.Stat(s2.sockDir); !os.IsNotExist(err) {
		t.Fatalf("socket directory left behind: %v", err)
	}
}

func TestWithMallocTunables(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"unset", []string{"LC_ALL=C"}, "GLIBC_TUNABLES=" + mallocTunables},
		{"empty", []string{"GLIBC_TUNABLES=", "LC_ALL=C"}, "GLIBC_TUNABLES=" + mallocTunables},
		{"operator's own", []string{"GLIBC_TUNABLES=glibc.malloc.arena_max=1", "LC_ALL=C"}, "GLIBC_TUNABLES=glibc.malloc.arena_max=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := withMallocTunables(tc.env)
			var last string // the process sees the last setting of a name
			for _, kv := range got {
				if strings.HasPrefix(kv, "GLIBC_TUNABLES=") {
					last = kv
				}
			}
			if last != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// A throwaway cluster whose owner died without stopping it (its lock
// released, its server still running) is stopped and removed; one whose
// owner lives is left alone.
func TestRemoveAbandoned(t *testing.T) {
	if _, err := FindBinaries(); err != nil {
		t.Skip(err)
	}
	ctx := context.Background()
	start := func() (*Server, string) {
		t.Helper()
		dir, err := MkdirTemp("pgembed-abandoned-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		s, err := Start(ctx, Config{DataDir: filepath.Join(dir, "data"), Throwaway: true})
		if err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-2 * time.Minute)
		if err := os.Chtimes(dir, old, old); err != nil {
			t.Fatal(err)
		}
		return s, dir
	}
	abandoned, abandonedDir := start()
	abandoned.lock.Close() // as the kernel does when its owner dies
	live, liveDir := start()
	t.Cleanup(func() { live.Stop() })

	RemoveAbandoned(filepath.Join(os.TempDir(), "pgembed-abandoned-*"))
	select {
	case <-abandoned.Exited():
	case <-time.After(5 * time.Second): // stopped at once; its removed files alone bring it down only later
		t.Fatal("the abandoned server still runs")
	}
	if _, err := os.Stat(abandonedDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the abandoned cluster's directory: %v, want it removed", err)
	}
	select {
	case <-live.Exited():
		t.Error("the live owner's server was stopped")
	default:
	}
	if _, err := os.Stat(filepath.Join(liveDir, "data")); err != nil {
		t.Errorf("the live owner's data: %v", err)
	}
}

// The server holds no descriptor its starter inherited: a parent reading a
// pipe to the starter until EOF gets it once the starter lets go, not when
// the server exits. Regression: a fuzzing worker's server, orphaned when the
// coordinator stopped the worker, held the coordinator's pipes open, and
// the coordinator waited for it for ever.
func TestServerHoldsNoInheritedDescriptor(t *testing.T) {
	if _, err := FindBinaries(); err != nil {
		t.Skip(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// As a descriptor inherited from a parent: not close-on-exec.
	if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, w.Fd(), syscall.F_SETFD, 0); errno != 0 {
		t.Fatal(errno)
	}
	dir, err := MkdirTemp("pgembed-inherit-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s, err := Start(context.Background(), Config{DataDir: filepath.Join(dir, "data"), Throwaway: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	w.Close()
	if err := r.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read %d bytes, %v: the server holds the pipe's write end", n, err)
	}
}

// ownerHelperEnv makes the test binary the owner of a throwaway cluster in
// the directory it names, which prints the server's pid and waits to be
// killed.
const ownerHelperEnv = "PGEMBED_OWNER_HELPER_DIR"

// A throwaway server stops when the process that started it is killed,
// rather than running on until the next test run's RemoveAbandoned finds it.
func TestThrowawayServerStopsWithItsOwner(t *testing.T) {
	if dir := os.Getenv(ownerHelperEnv); dir != "" {
		s, err := Start(context.Background(), Config{DataDir: filepath.Join(dir, "data"), Throwaway: true})
		if err != nil {
			fmt.Println("start:", err)
			os.Exit(1)
		}
		fmt.Printf("pid %d\n", s.PID())
		select {}
	}
	if _, err := FindBinaries(); err != nil {
		t.Skip(err)
	}
	dir, err := MkdirTemp("pgembed-owner-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	owner := exec.Command(os.Args[0], "-test.run=^TestThrowawayServerStopsWithItsOwner$")
	owner.Env = append(os.Environ(), ownerHelperEnv+"="+dir)
	out, err := owner.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := owner.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	var pid int
	if _, serr := fmt.Sscanf(line, "pid %d", &pid); serr != nil {
		owner.Process.Kill()
		owner.Wait()
		t.Fatalf("the owner printed %q (%v)", line, err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	owner.Process.Kill()
	owner.Wait()
	for deadline := time.Now().Add(10 * time.Second); syscall.Kill(pid, 0) == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the server (pid %d) still runs 10 s after its owner was killed", pid)
		}
	}
}
