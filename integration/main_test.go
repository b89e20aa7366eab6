// Package integration drives the built gitblk binary with real clients (git,
// libnbd tools, QEMU) to check what unit tests cannot: that the bytes a
// client reads over the wire are right.
package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gitblk/gitblk/internal/testutil"
)

// gitblkBin is the path of the gitblk binary built once by TestMain.
var gitblkBin string

// nbdMagic is the first 8 bytes a newstyle NBD server sends on connect.
const nbdMagic = "NBDMAGIC"

// Bounds for waiting on the server. They are generous because the machine is
// shared; they only stop a hung test, they are not assertions on speed.
const (
	serveReadyTimeout = 60 * time.Second
	serveStopTimeout  = 30 * time.Second
	servePollInterval = 50 * time.Millisecond
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

// runMain builds the binary into a temporary directory, runs the tests and
// removes the directory; it is split from TestMain so deferred calls run.
func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "gitblk-integration-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: cannot make temp dir: %v\n", err)
		return 2
	}
	defer os.RemoveAll(dir)
	gitblkBin = filepath.Join(dir, "gitblk")
	cmd := exec.Command("go", "build", "-o", gitblkBin, "../cmd/gitblk")
	out, err := cmd.CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: FAIL: cannot build gitblk (go build -o %s ../cmd/gitblk): %v\n%s\n",
			gitblkBin, err, out)
		return 2
	}
	return m.Run()
}

// newRepo makes a git repository in t.TempDir() on branch main with one
// commit holding files (slash-separated path -> content) and returns its path.
func newRepo(t testing.TB, files map[string]string) string {
	t.Helper()
	testutil.NeedTool(t, "git", "git")
	dir := t.TempDir()
	testutil.Git(t, dir, "init", "-q", "-b", "main")
	commitFiles(t, dir, files, "initial")
	return dir
}

// commitFiles writes files (slash-separated path -> content) into the work
// tree of repo, commits every change with message msg and returns the new
// commit id.
func commitFiles(t testing.TB, repo string, files map[string]string, msg string) string {
	t.Helper()
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := filepath.Join(repo, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatalf("newRepo: %v", err)
		}
		if err := os.WriteFile(p, []byte(files[name]), 0o644); err != nil {
			t.Fatalf("newRepo: %v", err)
		}
	}
	testutil.Git(t, repo, "add", "-A")
	testutil.Git(t, repo, "commit", "-q", "--allow-empty", "-m", msg)
	return testutil.Git(t, repo, "rev-parse", "HEAD")
}

// startServe runs `gitblk serve --listen unix:SOCK ARGS...` and waits until
// the socket answers with the NBD greeting. stop sends SIGTERM and checks the
// server exits with status 0; it runs at cleanup too and is safe to call twice.
// The server's log is written to the test log when the test fails.
func startServe(t testing.TB, args ...string) (sockPath string, stop func()) {
	t.Helper()
	sockPath, stop, log, exited := launchServe(t, args...)
	deadline := time.Now().Add(serveReadyTimeout)
	for {
		if err := probeNBD(sockPath); err == nil {
			return sockPath, stop
		} else if time.Now().After(deadline) {
			stop()
			t.Fatalf("gitblk serve %s: socket %s not answering NBD after %v: %v\nserver log:\n%s",
				strings.Join(args, " "), sockPath, serveReadyTimeout, err, log.String())
		}
		select {
		case err := <-exited:
			exited <- err // let stop see it
			t.Fatalf("gitblk serve %s exited before serving: %v\nserver log:\n%s", strings.Join(args, " "), err, log.String())
		case <-time.After(servePollInterval):
		}
	}
}

// launchServe starts `gitblk serve --listen unix:SOCK ARGS...` and returns
// at once, with startServe's stop, the server's log, and the channel its
// exit status arrives on (put it back after reading it, for stop).
func launchServe(t testing.TB, args ...string) (sockPath string, stop func(), log *testutil.LogBuffer, exited chan error) {
	t.Helper()
	// A unix socket path is limited to 108 bytes: t.TempDir() can be longer.
	sockDir, err := os.MkdirTemp("", "gitblk-sock-")
	if err != nil {
		t.Fatalf("startServe: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sockPath = filepath.Join(sockDir, "nbd.sock")

	cmdArgs := append([]string{"serve", "--listen", "unix:" + sockPath}, args...)
	cmd := exec.Command(gitblkBin, cmdArgs...)
	stderr := &testutil.LogBuffer{}
	cmd.Stderr = stderr
	cmd.Stdout = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("startServe: start %s: %v", gitblkBin, err)
	}
	exited = make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	var once sync.Once
	stop = func() {
		once.Do(func() {
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
				t.Errorf("gitblk serve: SIGTERM: %v", err)
			}
			select {
			case err := <-exited:
				if err != nil {
					t.Errorf("gitblk serve %s: exit after SIGTERM: %v (want status 0)\nserver log:\n%s",
						strings.Join(args, " "), err, stderr.String())
				}
			case <-time.After(serveStopTimeout):
				_ = cmd.Process.Kill()
				<-exited
				t.Errorf("gitblk serve did not exit within %v of SIGTERM\nserver log:\n%s",
					serveStopTimeout, stderr.String())
			}
			if t.Failed() {
				t.Logf("gitblk serve log:\n%s", stderr.String())
			}
		})
	}
	t.Cleanup(stop)
	return sockPath, stop, stderr, exited
}

// probeNBD dials a unix socket and reads the NBD greeting magic.
func probeNBD(sockPath string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sockPath)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	magic := make([]byte, len(nbdMagic))
	if _, err := io.ReadFull(conn, magic); err != nil {
		return fmt.Errorf("read greeting: %w", err)
	}
	if string(magic) != nbdMagic {
		return fmt.Errorf("greeting %q, want %q", magic, nbdMagic)
	}
	return nil
}

// nbdURI is the libnbd/qemu URI of export name on a unix socket.
func nbdURI(sockPath, export string) string {
	return "nbd+unix:///" + export + "?socket=" + sockPath
}

// buildImage runs `gitblk build` for repo at ref and returns the image bytes.
func buildImage(t testing.TB, format, repo, ref string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "image-"+format)
	cmd := exec.Command(gitblkBin, "build", "--format", format, "-o", out, repo, ref)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gitblk build --format %s %s %s: %v\n%s", format, repo, ref, err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("read built image: %v", err)
	}
	return data
}
