package follow

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitblk/gitblk/gitfs"
	"github.com/gitblk/gitblk/imager"
	"github.com/gitblk/gitblk/internal/testutil"
	"github.com/gitblk/gitblk/metrics"
	"github.com/gitblk/gitblk/nbd"
)

// holdScript is an nbdsh script: it connects, reads the first sector,
// says "open", waits for a line on stdin, then copies the whole export to
// the file named in $OUT. A connection opened before a deploy, read after.
const holdScript = `
import os, sys
h.pread(512, 0)
print("open", flush=True)
sys.stdin.readline()
size = h.get_size()
with open(os.environ["OUT"], "wb") as f:
    off = 0
    while off < size:
        n = min(1 << 20, size - off)
        f.write(h.pread(n, off))
        off += n
print("done", flush=True)
`

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian packages libnbd-bin, python3-libnbd)", tool)
		}
	}
}

// stack is one gitblk instance as serve wires it: a mirror following url,
// a gitfs.Repo on it, an NBD server whose default export is the tar image
// of main (pinned in the mirror while a connection holds it), and metrics.
type stack struct {
	reg  *metrics.Registry
	m    *Mirror
	logs *testutil.LogBuffer
	uri  string
}

func newStack(t *testing.T, url string, every time.Duration) *stack {
	t.Helper()
	reg := metrics.New()
	m, logs := newMirror(t, Config{URL: url, Every: every, OnFetch: func(res Result) {
		reg.Fetched(url, res.Start, res.Duration, res.Changed, res.Err)
	}})
	reg.SetFollowPins(url, func() int { return len(m.Status().Pinned) })
	// The first fetch before serve is ready, then the loop.
	if res := m.Fetch(context.Background()); res.Err != nil {
		t.Fatal(res.Err)
	}
	runMirror(t, m)

	repo, err := gitfs.Open(m.GitDir(), gitfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repo.Close() })
	images := gitfs.NewImages(repo, 0, "")
	srv := &nbd.Server{
		Resolve: func(_ context.Context, name string, _ nbd.Peer) (*nbd.Export, error) {
			if name != "" {
				return nil, nbd.ErrUnknownExport
			}
			c, err := repo.Resolve("main")
			if err != nil {
				return nil, err
			}
			unpin, err := m.Pin(c.ID)
			if err != nil {
				return nil, err
			}
			l, _, err := images.Image(c, imager.Options{Format: imager.FormatTar})
			if err != nil {
				unpin()
				return nil, err
			}
			reg.SetExport(metrics.Export{Name: name, Ref: "main", Commit: c.ID, Format: "tar"})
			return &nbd.Export{Name: name, Description: "commit " + c.ID, Image: l, Release: unpin}, nil
		},
		List:     func(context.Context, nbd.Peer) []string { return []string{""} },
		Observer: metrics.NewNBD[nbd.Peer](reg),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); l.Close(); <-done })
	return &stack{reg: reg, m: m, logs: logs, uri: "nbd://" + l.Addr().String() + "/"}
}

// served asks the server with nbdinfo which commit a new connection gets.
func served(t *testing.T, uri string) string {
	t.Helper()
	return strings.TrimPrefix(testutil.NBDDescription(t, uri), "commit ")
}

// TestFourInstancesConverge runs four instances following one remote on
// git daemon, pushes a deploy, and reports when each instance's new
// connections got it.
func TestFourInstancesConverge(t *testing.T) {
	t.Setenv("PATH", "/usr/bin:"+os.Getenv("PATH"))
	needTools(t, "nbdinfo")
	r := newRemote(t)
	c1 := r.commit(t, "one", map[string]string{"index.html": "one\n"})
	addr := gitDaemon(t, filepath.Dir(r.bare))
	const every = time.Second
	var stacks []*stack
	for i := 0; i < 4; i++ {
		stacks = append(stacks, newStack(t, "git://"+addr+"/remote.git", every))
		time.Sleep(every / 4) // hosts start at different moments
	}
	for _, st := range stacks {
		if got := served(t, st.uri); got != c1 {
			t.Fatalf("serving %q before the deploy, want %s", got, c1)
		}
	}
	files := map[string]string{}
	for i := 0; i < 50; i++ {
		files[fmt.Sprintf("site/page%02d.html", i)] = strings.Repeat(fmt.Sprintf("page %d\n", i), 200)
	}
	start := time.Now()
	c2 := r.commit(t, "deploy", files)
	pushed := time.Since(start)
	_, worst := testutil.Converge(t, start, len(stacks), 15*time.Second, 0,
		"instance %d: new connections get the deploy %v after the commit started",
		func(i int) bool { return served(t, stacks[i].uri) == c2 })
	t.Logf("four instances converged %v after the commit started (commit and push %v, interval %v)", worst.Round(time.Millisecond), pushed.Round(time.Millisecond), every)
	if worst > every+pushed+3*time.Second {
		t.Errorf("convergence took %v at interval %v", worst, every)
	}
}

// TestServeFollowsEndToEnd wires a mirror, gitfs, the NBD server and the
// metrics as serve is to, and drives it with real NBD clients: a deploy
// (a force-push that drops the old commit) fetched on SIGUSR1 reaches new
// connections, while a connection opened before reads the old commit's
// whole image byte for byte after gc on the mirror.
func TestServeFollowsEndToEnd(t *testing.T) {
	t.Setenv("PATH", "/usr/bin:"+os.Getenv("PATH"))
	needTools(t, "nbdsh", "nbdinfo", "nbdcopy")
	r := newRemote(t)
	oldFiles := map[string]string{"index.html": "<p>old</p>\n", "assets/big.bin": strings.Repeat("old block of bytes\n", 200000)}
	c1 := r.commit(t, "old", oldFiles)

	st := newStack(t, r.url(), time.Hour)
	reg, m, logs, uri := st.reg, st.m, st.logs, st.uri
	// serve: SIGUSR1 fetches now.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	go func() {
		for range usr1 {
			m.Trigger()
		}
	}()
	oldArchive := gitArchive(t, m.GitDir(), c1)

	// A guest boots on the old commit and keeps its connection.
	out := filepath.Join(t.TempDir(), "held.img")
	hold := exec.Command("nbdsh", "-u", uri, "-c", holdScript)
	hold.Env = append(os.Environ(), "OUT="+out)
	holdIn, _ := hold.StdinPipe()
	holdOut, _ := hold.StdoutPipe()
	hold.Stderr = os.Stderr
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	defer hold.Process.Kill()
	lines := bufio.NewScanner(holdOut)
	if !lines.Scan() || lines.Text() != "open" {
		t.Fatalf("nbdsh: %q, %v", lines.Text(), lines.Err())
	}

	// Deploy: upstream is rewritten and pruned; SIGUSR1 fetches at once.
	run(t, r.work, "checkout", "--quiet", "--orphan", "rewrite")
	run(t, r.work, "rm", "-rf", "--quiet", ".")
	if err := os.WriteFile(filepath.Join(r.work, "index.html"), []byte("<p>new</p>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, r.work, "add", "-A")
	run(t, r.work, "commit", "--quiet", "-m", "rewrite")
	run(t, r.work, "push", "--quiet", "--force", "origin", "rewrite:main")
	run(t, r.bare, "gc", "--quiet", "--prune=now")
	c2 := run(t, r.work, "rev-parse", "HEAD")
	start := time.Now()
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	for served(t, uri) != c2 {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("new connections still get %s 10s after SIGUSR1", served(t, uri))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("new connections get the new commit %v after SIGUSR1", time.Since(start).Round(time.Millisecond))
	newCopy := filepath.Join(t.TempDir(), "new.img")
	if b, err := exec.Command("nbdcopy", uri, newCopy).CombinedOutput(); err != nil {
		t.Fatalf("nbdcopy: %v\n%s", err, b)
	}
	if got, _ := os.ReadFile(newCopy); !sameTar(got, gitArchive(t, m.GitDir(), c2)) {
		t.Fatal("a new connection's image differs from the new commit's git archive")
	}

	// gc on the mirror, then the old connection reads its whole image.
	run(t, m.GitDir(), "reflog", "expire", "--expire=now", "--all")
	run(t, m.GitDir(), "gc", "--quiet", "--prune=now")
	fmt.Fprintln(holdIn)
	if !lines.Scan() || lines.Text() != "done" {
		t.Fatalf("nbdsh: %q, %v", lines.Text(), lines.Err())
	}
	holdIn.Close()
	if err := hold.Wait(); err != nil {
		t.Fatalf("nbdsh: %v", err)
	}
	if got, _ := os.ReadFile(out); !sameTar(got, oldArchive) {
		t.Fatal("the connection opened before the deploy read other bytes than the old commit's")
	}

	// Metrics: one good fetch before and one on SIGUSR1, both changing
	// refs; the old pin goes once its connection has closed.
	var page bytes.Buffer
	deadline := time.Now().Add(5 * time.Second)
	for {
		page.Reset()
		reg.WritePrometheus(&page)
		// The export is released (the pin goes) before nbd reports the
		// connection closed: wait for both.
		if strings.Contains(page.String(), `gitblk_follow_pinned_commits{remote="`+r.url()+`"} 0`) &&
			strings.Contains(page.String(), "gitblk_nbd_connections_open 0\n") || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{
		`gitblk_follow_fetches_total{remote="` + r.url() + `",result="ok"} 2`,
		`gitblk_follow_fetches_total{remote="` + r.url() + `",result="error"} 0`,
		`gitblk_follow_updates_total{remote="` + r.url() + `"} 2`,
		`gitblk_export_info{export="",ref="main",commit="` + c2 + `",format="tar"} 1`,
		`gitblk_follow_pinned_commits{remote="` + r.url() + `"} 0`,
		`gitblk_nbd_connections_open 0`,
	} {
		if !strings.Contains(page.String(), want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s\nlog:\n%s", page.String(), logs)
	}
}
