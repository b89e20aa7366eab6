package integration

// Fleet tests: gitblk serve --follow, driven as a host of a fleet is, with
// real git remotes (file://), real NBD clients, the metrics listener read
// with a Prometheus text parser, and a NOTIFY_SOCKET the test listens on.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/gitblk/gitblk/internal/testutil"
)

// fleetRemote is a bare repository the fleet follows, and a work tree that
// pushes to it.
type fleetRemote struct {
	bare, work string
}

func newFleetRemote(t *testing.T) *fleetRemote {
	t.Helper()
	testutil.NeedTool(t, "git", "git")
	dir := t.TempDir()
	r := &fleetRemote{bare: filepath.Join(dir, "remote.git"), work: filepath.Join(dir, "work")}
	testutil.Git(t, dir, "init", "-q", "--bare", "-b", "main", r.bare)
	testutil.Git(t, dir, "init", "-q", "-b", "main", r.work)
	testutil.Git(t, r.work, "config", "gc.auto", "0")
	testutil.Git(t, r.work, "remote", "add", "origin", r.bare)
	return r
}

func (r *fleetRemote) url() string { return "file://" + r.bare }

// commit commits files (path -> content) on main and pushes it; the
// message makes every commit distinct.
func (r *fleetRemote) commit(t *testing.T, msg string, files map[string]string) string {
	t.Helper()
	c := commitFiles(t, r.work, files, msg)
	testutil.Git(t, r.work, "push", "-q", "origin", "main")
	return c
}

// archive is git archive's tar of commit: the bytes a tar export equals,
// up to padding.
func (r *fleetRemote) archive(t *testing.T, commit string) []byte {
	t.Helper()
	return testutil.GitBytes(t, r.work, "archive", "--format=tar", commit)
}

// sameTarBytes reports whether a gitblk tar image equals git archive's
// bytes: the same up to the shorter one's end, zeros after (git archive
// pads to 10 KiB records, gitblk to 4 KiB; README "Formats").
func sameTarBytes(img, archive []byte) bool {
	n := min(len(img), len(archive))
	if !bytes.Equal(img[:n], archive[:n]) {
		return false
	}
	rest := img[n:]
	if len(archive) > n {
		rest = archive[n:]
	}
	return len(bytes.Trim(rest, "\x00")) == 0
}

// follower is one `gitblk serve --follow` process: a fleet host.
type follower struct {
	t       *testing.T
	cmd     *exec.Cmd
	log     *testutil.LogBuffer
	sock    string // NBD unix socket
	metrics string // metrics unix socket
	exited  chan error

	mu    sync.Mutex
	notes []string // datagrams received on its NOTIFY_SOCKET

	stopOnce sync.Once
}

// startFollower runs gitblk serve with args, a NOTIFY_SOCKET the test
// listens on, an NBD and a metrics unix socket, and returns once READY=1
// arrives. READY=1 must mean what it says: at that moment the NBD socket
// already answers and the metrics listener serves the export's commit.
func startFollower(t *testing.T, args ...string) *follower {
	t.Helper()
	sockDir := shortTempDir(t)
	sock, metrics := filepath.Join(sockDir, "nbd.sock"), filepath.Join(sockDir, "metrics.sock")
	full := append([]string{"serve", "--listen", "unix:" + sock, "--metrics-listen", "unix:" + metrics,
		"--cache-dir", filepath.Join(t.TempDir(), "cache")}, args...)
	return launch(t, sockDir, sock, metrics, full)
}

// shortTempDir is a temporary directory with a path short enough for unix
// sockets (108 bytes; t.TempDir() can be longer).
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gitblk-fleet-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// launch runs gitblk with full (its arguments), which must make it serve
// NBD on the unix socket sock and metrics on metrics, with NOTIFY_SOCKET
// in sockDir, and waits for READY=1 (see startFollower).
func launch(t *testing.T, sockDir, sock, metrics string, full []string) *follower {
	t.Helper()
	f := &follower{t: t, log: &testutil.LogBuffer{}, exited: make(chan error, 1), sock: sock, metrics: metrics}
	notifyPath := filepath.Join(sockDir, "notify.sock")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := nc.Read(buf)
			if err != nil {
				return
			}
			f.mu.Lock()
			f.notes = append(f.notes, string(buf[:n]))
			f.mu.Unlock()
		}
	}()
	f.cmd = exec.Command(gitblkBin, full...)
	f.cmd.Env = append(testutil.GitEnv(), "NOTIFY_SOCKET="+notifyPath, "HOME="+t.TempDir())
	f.cmd.Stdout, f.cmd.Stderr = f.log, f.log
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { f.exited <- f.cmd.Wait() }()
	t.Cleanup(f.stop)

	deadline := time.Now().Add(serveReadyTimeout)
	for !f.noted("READY=1") {
		select {
		case err := <-f.exited:
			f.exited <- err
			t.Fatalf("gitblk %s exited before READY=1: %v\n%s", strings.Join(full, " "), err, f.log)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no READY=1 within %v\n%s", serveReadyTimeout, f.log)
		}
	}
	if err := probeNBD(f.sock); err != nil {
		t.Fatalf("READY=1 sent before the NBD socket answers: %v", err)
	}
	st := f.status()
	if len(st.Exports) == 0 || st.Exports[0].Commit == "" {
		t.Fatalf("READY=1 sent before the exports resolve: %+v", st)
	}
	return f
}

// noted reports whether a notification contains line.
func (f *follower) noted(line string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.notes {
		for _, l := range strings.Split(n, "\n") {
			if l == line || strings.HasSuffix(line, "=") && strings.HasPrefix(l, line) {
				return true
			}
		}
	}
	return false
}

// count is the number of notifications with line in them.
func (f *follower) count(line string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, note := range f.notes {
		for _, l := range strings.Split(note, "\n") {
			if l == line {
				n++
			}
		}
	}
	return n
}

func (f *follower) notifications() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.notes, " | ")
}

// stop sends SIGTERM and checks a clean exit with STOPPING=1 sent.
func (f *follower) stop() {
	f.stopOnce.Do(func() {
		t := f.t
		if err := f.cmd.Process.Signal(syscall.SIGTERM); err != nil && err != os.ErrProcessDone {
			t.Errorf("SIGTERM: %v", err)
		}
		select {
		case err := <-f.exited:
			if err != nil {
				t.Errorf("gitblk serve exit after SIGTERM: %v\n%s", err, f.log)
			}
		case <-time.After(serveStopTimeout):
			f.cmd.Process.Kill()
			<-f.exited
			t.Errorf("gitblk serve did not exit within %v of SIGTERM\n%s", serveStopTimeout, f.log)
		}
		time.Sleep(20 * time.Millisecond) // the datagram reader
		if !f.noted("STOPPING=1") {
			t.Errorf("no STOPPING=1 at exit; notifications: %s", f.notifications())
		}
		if t.Failed() {
			t.Logf("gitblk serve log:\n%s", f.log)
		}
	})
}

func (f *follower) signal(sig syscall.Signal) {
	if err := f.cmd.Process.Signal(sig); err != nil {
		f.t.Fatalf("signal %v: %v", sig, err)
	}
}

func (f *follower) uri(export string) string { return nbdURI(f.sock, export) }

// get fetches path from the metrics listener.
func (f *follower) get(path string) []byte {
	f.t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", f.metrics)
		}}}
	resp, err := c.Get("http://gitblk" + path)
	if err != nil {
		f.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		f.t.Fatalf("GET %s: %s, %v", path, resp.Status, err)
	}
	return b
}

// scrape parses /metrics with Prometheus' own text parser.
func (f *follower) scrape() map[string]*dto.MetricFamily {
	f.t.Helper()
	page := f.get("/metrics")
	return testutil.ParseMetrics(f.t, page)
}

// fleetStatus is the part of /status the tests read.
type fleetStatus struct {
	Exports []struct {
		Name      string `json:"name"`
		Commit    string `json:"commit"`
		ReadBytes uint64 `json:"read_bytes"`
	} `json:"exports"`
	Follow []struct {
		Remote    string `json:"remote"`
		LastError string `json:"last_error"`
		OK        uint64 `json:"fetches_ok"`
		Failed    uint64 `json:"fetches_failed"`
	} `json:"follow"`
}

func (f *follower) status() fleetStatus {
	f.t.Helper()
	var st fleetStatus
	if b := f.get("/status"); json.Unmarshal(b, &st) != nil {
		f.t.Fatalf("/status: %s", b)
	}
	return st
}

// servedCommit asks with nbdinfo which commit a new connection to uri gets
// (the export description ends in it).
func servedCommit(t *testing.T, uri string) string {
	t.Helper()
	d := testutil.NBDDescription(t, uri)
	return d[strings.LastIndexByte(d, ' ')+1:]
}

// waitServed polls until new connections to uri get commit, and returns
// how long that took.
func waitServed(t *testing.T, uri, commit string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := servedCommit(t, uri)
		if got == commit {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("new connections still get %s %v later, want %s", got, limit, commit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// copyExport reads a whole export with nbdcopy.
func copyExport(t *testing.T, uri string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "copy.img")
	if b, err := exec.Command("nbdcopy", uri, out).CombinedOutput(); err != nil {
		t.Fatalf("nbdcopy %s: %v\n%s", uri, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// heldScript is an nbdsh script: it connects, reads the first sector, says
// "open", then for each line on stdin copies the whole export into the
// file that line names and says "done". A guest's connection opened
// before a deploy and read after it.
const heldScript = `
import sys
h.pread(512, 0)
print("open", flush=True)
size = h.get_size()
for line in sys.stdin:
    with open(line.strip(), "wb") as f:
        off = 0
        while off < size:
            n = min(1 << 20, size - off)
            f.write(h.pread(n, off))
            off += n
    print("done", flush=True)
`

// held is an nbdsh connection kept open.
type held struct {
	t     *testing.T
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines *bufio.Scanner
}

func holdConnection(t *testing.T, uri string) *held {
	t.Helper()
	h := &held{t: t, cmd: exec.Command("nbdsh", "-u", uri, "-c", heldScript)}
	h.in, _ = h.cmd.StdinPipe()
	out, _ := h.cmd.StdoutPipe()
	h.cmd.Stderr = os.Stderr
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.cmd.Process.Kill(); h.cmd.Wait() })
	h.lines = bufio.NewScanner(out)
	if !h.lines.Scan() || h.lines.Text() != "open" {
		t.Fatalf("nbdsh: %q, %v", h.lines.Text(), h.lines.Err())
	}
	return h
}

// start asks for the whole image into a file; wait waits for it.
func (h *held) start() string {
	p := filepath.Join(h.t.TempDir(), "held.img")
	fmt.Fprintln(h.in, p)
	return p
}

func (h *held) wait(p string) []byte {
	h.t.Helper()
	if !h.lines.Scan() || h.lines.Text() != "done" {
		h.t.Fatalf("nbdsh: %q, %v", h.lines.Text(), h.lines.Err())
	}
	b, err := os.ReadFile(p)
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}

func (h *held) close() {
	h.in.Close()
	if err := h.cmd.Wait(); err != nil {
		h.t.Errorf("nbdsh: %v", err)
	}
}

// randomText is n bytes of text that compresses poorly, so that blobs are
// big in packs too.
func randomText(seed int64, n int) string {
	rng := rand.New(rand.NewSource(seed))
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789 \n"
	b := make([]byte, n)
	for i := range b {
		b[i] = letters[rng.Intn(len(letters))]
	}
	return string(b)
}

func needNBDTools(t *testing.T) {
	t.Setenv("PATH", "/usr/bin:"+os.Getenv("PATH"))
	testutil.NeedTool(t, "nbdinfo", "libnbd-bin")
	testutil.NeedTool(t, "nbdcopy", "libnbd-bin")
	testutil.NeedTool(t, "nbdsh", "python3-libnbd")
}

// TestFollowDeploy is one host of a fleet through a deploy: a new commit
// pushed upstream reaches new connections within the fetch interval,
// while a connection opened before keeps reading the old commit byte for
// byte; systemd hears READY=1 and a status line; the metrics parse and
// count exactly the bytes nbdcopy read; gitblk status names the commit.
func TestFollowDeploy(t *testing.T) {
	needNBDTools(t)
	r := newFleetRemote(t)
	c1 := r.commit(t, "one", map[string]string{"index.html": "<p>one</p>\n", "assets/app.js": randomText(1, 3<<20)})
	old := r.archive(t, c1)
	const every = 2 * time.Second
	f := startFollower(t, "--follow", r.url(), "--follow-every", every.String(), "main")
	if !strings.Contains(f.notifications(), "STATUS=serving main at "+c1[:12]) {
		t.Errorf("status text does not name the commit served: %s", f.notifications())
	}
	if got := servedCommit(t, f.uri("")); got != c1 {
		t.Fatalf("serving %s, want %s", got, c1)
	}
	guest := holdConnection(t, f.uri(""))

	c2 := r.commit(t, "two", map[string]string{"index.html": "<p>two</p>\n", "assets/app.js": randomText(2, 3<<20)})
	took := waitServed(t, f.uri(""), c2, every+30*time.Second)
	t.Logf("a new connection got the pushed commit %v after the push (interval %v)", took.Round(time.Millisecond), every)
	if took > 2*every+5*time.Second {
		t.Errorf("the deploy took %v to reach new connections at interval %v", took, every)
	}
	img := copyExport(t, f.uri("tar"))
	if !sameTarBytes(img, r.archive(t, c2)) {
		t.Fatal("a new connection's image differs from git archive of the new commit")
	}
	p := guest.start()
	if !sameTarBytes(guest.wait(p), old) {
		t.Fatal("the connection opened before the deploy read other bytes than the old commit's")
	}
	guest.close()

	// The metrics: the page parses; the tar export's read bytes are
	// exactly what nbdcopy read (nbdinfo reads the other exports only).
	var fams map[string]*dto.MetricFamily
	deadline := time.Now().Add(10 * time.Second)
	for {
		fams = f.scrape()
		if v, _ := testutil.MetricValue(fams, "gitblk_nbd_connections_open"); v == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if v, ok := testutil.MetricValue(fams, "gitblk_nbd_read_bytes_total", "export", "tar"); !ok || int(v) != len(img) {
		t.Errorf("gitblk_nbd_read_bytes_total{export=tar} = %v (%v), nbdcopy read %d bytes", v, ok, len(img))
	}
	for _, e := range f.status().Exports {
		if e.Name == "tar" && int(e.ReadBytes) != len(img) {
			t.Errorf("/status: tar read_bytes %d, nbdcopy read %d", e.ReadBytes, len(img))
		}
	}
	for _, want := range []struct {
		name string
		kv   []string
		min  float64
	}{
		{"gitblk_export_info", []string{"export", "", "ref", "main", "commit", c2, "format", "tar"}, 1},
		{"gitblk_export_info", []string{"export", "fat", "commit", c2, "format", "fat"}, 1},
		{"gitblk_follow_fetches_total", []string{"remote", r.url(), "result", "ok"}, 2},
		{"gitblk_follow_updates_total", []string{"remote", r.url()}, 2},
		{"gitblk_follow_last_success_timestamp_seconds", []string{"remote", r.url()}, float64(time.Now().Add(-time.Hour).Unix())},
		{"gitblk_layouts_built_total", []string{"format", "tar", "result", "ok"}, 2},
		{"gitblk_layouts_built_total", []string{"format", "fat", "result", "ok"}, 2},
		{"gitblk_nbd_connections_total", []string{"export", ""}, 3},
		{"gitblk_nbd_requests_total", []string{"export", "tar", "cmd", "read"}, 1},
	} {
		if v, ok := testutil.MetricValue(fams, want.name, want.kv...); !ok || v < want.min {
			t.Errorf("%s%v = %v (present %v), want at least %v", want.name, want.kv, v, ok, want.min)
		}
	}
	if v, ok := testutil.MetricValue(fams, "gitblk_export_info", "export", "", "commit", c1); ok {
		t.Errorf("gitblk_export_info still carries the old commit (%v)", v)
	}
	if v, _ := testutil.MetricValue(fams, "gitblk_follow_pinned_commits", "remote", r.url()); v != 0 {
		t.Errorf("%v commits pinned with no connection open", v)
	}
	// The blob cache counts the file data behind those reads: at least the
	// 3 MiB file nbdcopy read, at most every byte NBD clients read and the
	// server prefetched.
	var nbdBytes float64
	for _, m := range fams["gitblk_nbd_read_bytes_total"].GetMetric() {
		nbdBytes += m.GetCounter().GetValue()
	}
	hitB, _ := testutil.MetricValue(fams, "gitblk_cache_hit_bytes_total")
	missB, _ := testutil.MetricValue(fams, "gitblk_cache_miss_bytes_total")
	misses, _ := testutil.MetricValue(fams, "gitblk_cache_misses_total")
	prefetched, _ := testutil.MetricValue(fams, "gitblk_prefetch_bytes_total")
	if misses == 0 || hitB+missB < 3<<20 || hitB+missB > nbdBytes+prefetched {
		t.Errorf("cache: %v misses, %v+%v bytes; NBD clients read %v bytes, %v prefetched", misses, hitB, missB, nbdBytes, prefetched)
	}
	t.Logf("blob cache: %v bytes from the cache, %v opened; NBD clients read %v bytes, %v prefetched", hitB, missB, nbdBytes, prefetched)
	if prefetched == 0 {
		t.Error("gitblk_prefetch_bytes_total is 0: the site's images, far below half the memory cache, were not prefetched")
	}
	if h := fams["gitblk_layout_build_duration_seconds"]; h == nil || h.GetType() != dto.MetricType_HISTOGRAM {
		t.Errorf("no layout build time histogram")
	}

	// gitblk status, for an operator's first look.
	out, err := exec.Command(gitblkBin, "status", "unix:"+f.metrics).CombinedOutput()
	if err != nil {
		t.Fatalf("gitblk status: %v\n%s", err, out)
	}
	for _, want := range []string{`"" (default)  main`, c2, r.url(), "ok"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("gitblk status lacks %q:\n%s", want, out)
		}
	}
	t.Logf("gitblk status:\n%s", out)

	// SIGHUP reloads: systemd hears RELOADING=1, then READY=1 again.
	f.signal(syscall.SIGHUP)
	deadline = time.Now().Add(30 * time.Second)
	for f.count("READY=1") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no READY=1 after SIGHUP: %s", f.notifications())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !f.noted("MONOTONIC_USEC=") || !strings.Contains(f.notifications(), "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("no RELOADING=1 with MONOTONIC_USEC before READY=1: %s", f.notifications())
	}
	f.stop()
}

// TestFollowForcePushGC: SIGUSR1 fetches at once (the interval is an
// hour); upstream is force-pushed to a commit that drops the old one and
// pruned, the mirror is gc'd with --prune=now while a connection pinned to
// the old commit reads its whole image, and every byte it reads is the
// old commit's. The pin goes when the connection closes.
func TestFollowForcePushGC(t *testing.T) {
	needNBDTools(t)
	r := newFleetRemote(t)
	files := map[string]string{"index.html": "<p>old</p>\n", "assets/big.js": randomText(3, 6<<20)}
	for i := 0; i < 40; i++ {
		files[fmt.Sprintf("pages/p%02d.html", i)] = randomText(int64(100+i), 2000)
	}
	c1 := r.commit(t, "old", files)
	old := r.archive(t, c1)
	mirror := filepath.Join(t.TempDir(), "mirror.git")
	f := startFollower(t, "--follow", r.url(), "--follow-dir", mirror, "--follow-every", "1h", "main")
	guest := holdConnection(t, f.uri(""))
	if refs := testutil.Git(t, mirror, "for-each-ref", "--format=%(refname)", "refs/gitblk/"); refs != "refs/gitblk/pin/"+c1 {
		t.Errorf("pins in the mirror with one connection on %s: %q", c1[:12], refs)
	}

	// Upstream drops the old commit: an orphan commit force-pushed, and
	// the remote pruned.
	testutil.Git(t, r.work, "checkout", "-q", "--orphan", "rewrite")
	testutil.Git(t, r.work, "rm", "-rfq", ".")
	testutil.WriteFile(t, r.work, "index.html", []byte("<p>new</p>\n"), 0o644)
	c2 := testutil.CommitAll(t, r.work, "rewrite")
	testutil.Git(t, r.work, "push", "-q", "--force", "origin", "rewrite:main")
	testutil.Git(t, r.bare, "gc", "-q", "--prune=now")
	if _, err := testutil.GitOutput(r.bare, nil, "cat-file", "-e", c1); err == nil {
		t.Fatal("the old commit is still upstream")
	}
	f.signal(syscall.SIGUSR1)
	took := waitServed(t, f.uri(""), c2, 30*time.Second)
	t.Logf("SIGUSR1: new connections got the force-pushed commit %v after the signal (interval 1h)", took.Round(time.Millisecond))
	if !strings.Contains(f.log.String(), "SIGUSR1: fetching now") {
		t.Errorf("no log of the SIGUSR1 fetch")
	}

	// gc on the mirror while the guest reads its whole image, then once more after.
	p1 := guest.start()
	testutil.Git(t, mirror, "reflog", "expire", "--expire=now", "--all")
	testutil.Git(t, mirror, "gc", "-q", "--prune=now")
	during := guest.wait(p1)
	if _, err := testutil.GitOutput(mirror, nil, "cat-file", "-e", c1); err != nil {
		t.Fatalf("gc on the mirror removed the pinned commit: %v", err)
	}
	p2 := guest.start()
	after := guest.wait(p2)
	if !sameTarBytes(during, old) {
		t.Error("the pinned connection read other bytes than the old commit's while the mirror was gc'd")
	}
	if !sameTarBytes(after, old) {
		t.Error("the pinned connection read other bytes than the old commit's after gc")
	}
	guest.close()
	if got := copyExport(t, f.uri("")); !sameTarBytes(got, r.archive(t, c2)) {
		t.Error("a new connection's image differs from the new commit's")
	}
	deadline := time.Now().Add(10 * time.Second)
	for testutil.Git(t, mirror, "for-each-ref", "refs/gitblk/") != "" {
		if time.Now().After(deadline) {
			t.Fatalf("the pin outlived its connection: %s", testutil.Git(t, mirror, "for-each-ref", "refs/gitblk/"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	fams := f.scrape()
	if v, _ := testutil.MetricValue(fams, "gitblk_follow_fetches_total", "remote", r.url(), "result", "ok"); v != 2 {
		t.Errorf("%v good fetches, want 2 (start, SIGUSR1)", v)
	}
	f.stop()
}

// TestFollowBadRemote: a remote that disappears, then one that serves
// damaged objects, leaves what is served untouched; the reason is in the
// log, in the metrics and in gitblk status. A remote that answers garbage
// at start, with nothing in the mirror, stops serve with the reason.
func TestFollowBadRemote(t *testing.T) {
	needNBDTools(t)
	r := newFleetRemote(t)
	c1 := r.commit(t, "one", map[string]string{"index.html": "<p>one</p>\n"})
	want := r.archive(t, c1)
	f := startFollower(t, "--follow", r.url(), "--follow-every", "1h", "main")
	failures := func(n float64) map[string]*dto.MetricFamily {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			fams := f.scrape()
			if v, _ := testutil.MetricValue(fams, "gitblk_follow_fetches_total", "remote", r.url(), "result", "error"); v == n {
				return fams
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %v failed fetches counted\n%s", n, f.log)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// The remote disappears.
	if err := os.Rename(r.bare, r.bare+".gone"); err != nil {
		t.Fatal(err)
	}
	f.signal(syscall.SIGUSR1)
	failures(1)
	if !strings.Contains(f.log.String(), "follow: fetch failed") || !strings.Contains(f.log.String(), "does not appear to be a git repository") {
		t.Errorf("the log lacks the reason:\n%s", f.log)
	}
	if got := servedCommit(t, f.uri("")); got != c1 {
		t.Errorf("serving %s after a failed fetch, want %s", got, c1)
	}
	if !sameTarBytes(copyExport(t, f.uri("")), want) {
		t.Error("the image changed after a failed fetch")
	}

	// The remote comes back with a new commit whose blob is damaged.
	if err := os.Rename(r.bare+".gone", r.bare); err != nil {
		t.Fatal(err)
	}
	c2 := r.commit(t, "two", map[string]string{"big.txt": randomText(9, 100000)})
	blob := testutil.Git(t, r.work, "rev-parse", c2+":big.txt")
	obj := filepath.Join(r.bare, "objects", blob[:2], blob[2:])
	if err := os.Chmod(obj, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(obj, []byte("garbage, not zlib"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.signal(syscall.SIGUSR1)
	fams := failures(2)
	if got := servedCommit(t, f.uri("")); got != c1 {
		t.Errorf("serving %s after a fetch of damaged objects, want %s", got, c1)
	}
	if !sameTarBytes(copyExport(t, f.uri("")), want) {
		t.Error("the image changed after a fetch of damaged objects")
	}
	if v, ok := testutil.MetricValue(fams, "gitblk_export_info", "export", "", "commit", c1); !ok || v != 1 {
		t.Errorf("gitblk_export_info no longer names %s", c1)
	}
	if v, _ := testutil.MetricValue(fams, "gitblk_follow_fetches_total", "remote", r.url(), "result", "ok"); v != 1 {
		t.Errorf("%v good fetches, want 1 (the first)", v)
	}
	st := f.status()
	if len(st.Follow) != 1 || st.Follow[0].LastError == "" || st.Follow[0].Failed != 2 {
		t.Errorf("/status follow: %+v", st.Follow)
	}
	out, _ := exec.Command(gitblkBin, "status", "unix:"+f.metrics).CombinedOutput()
	if !bytes.Contains(out, []byte("failed")) || !bytes.Contains(out, []byte("last fetch from "+r.url()+" failed: ")) {
		t.Errorf("gitblk status does not say the last fetch failed:\n%s", out)
	}
	t.Logf("gitblk status after a damaged fetch:\n%s", out)
	f.stop()

	// Garbage at start, nothing to serve: serve stops, saying why.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Read(make([]byte, 4096))
			c.Write([]byte("zzzz this is not pkt-line \x00\xff\xfe garbage\n"))
			c.Close()
		}
	}()
	sockDir, _ := os.MkdirTemp("", "gitblk-fleet-")
	defer os.RemoveAll(sockDir)
	cmd := exec.Command(gitblkBin, "serve", "--listen", "unix:"+filepath.Join(sockDir, "nbd.sock"),
		"--cache-dir", t.TempDir(), "--follow", "git://"+l.Addr().String()+"/site.git", "main")
	cmd.Env = append(testutil.GitEnv(), "HOME="+t.TempDir())
	out, err = cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("serve following a garbage server: %v, want exit status 1\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("first fetch into the empty mirror")) || !bytes.Contains(out, []byte("protocol")) {
		t.Errorf("serve does not say why it stopped:\n%s", out)
	}
}

// TestFleetConverges: four hosts follow one remote; a deploy pushed
// upstream reaches each host's new connections, and the test reports how
// long the slowest took.
func TestFleetConverges(t *testing.T) {
	needNBDTools(t)
	r := newFleetRemote(t)
	c1 := r.commit(t, "one", map[string]string{"index.html": "<p>one</p>\n"})
	const every = time.Second
	var hosts []*follower
	for i := 0; i < 4; i++ {
		hosts = append(hosts, startFollower(t, "--follow", r.url(), "--follow-every", every.String(), "main"))
	}
	for i, h := range hosts {
		if got := servedCommit(t, h.uri("")); got != c1 {
			t.Fatalf("host %d serves %s before the deploy, want %s", i, got, c1)
		}
	}
	files := map[string]string{}
	for i := 0; i < 50; i++ {
		files[fmt.Sprintf("site/page%02d.html", i)] = randomText(int64(i), 4000)
	}
	start := time.Now()
	c2 := r.commit(t, "deploy", files)
	pushed := time.Since(start)
	_, worst := testutil.Converge(t, start, len(hosts), 60*time.Second, 0,
		"host %d: new connections get the deploy %v after the commit started",
		func(i int) bool { return servedCommit(t, hosts[i].uri("")) == c2 })
	t.Logf("four hosts converged %v after the commit started (commit and push %v, interval %v)", worst.Round(time.Millisecond), pushed.Round(time.Millisecond), every)
	if worst > 2*every+pushed+10*time.Second {
		t.Errorf("convergence took %v at interval %v", worst, every)
	}
	for i, h := range hosts {
		if got := copyExport(t, h.uri("tar")); !sameTarBytes(got, r.archive(t, c2)) {
			t.Errorf("host %d serves other bytes than git archive of the deploy", i)
		}
		h.stop()
	}
}

// unitCommand is a unit's ExecStart= as systemd would run it: specifiers
// (%t, %C, %S, %i) and environment variables substituted ("$VAR" as a
// word splits into words, "${VAR}" stays one; systemd.service(5),
// "Command lines"), the binary replaced by the test build.
func unitCommand(t *testing.T, unit string, spec, env map[string]string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "contrib", "systemd", unit))
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "ExecStart="); ok {
			line = rest
		}
	}
	if line == "" {
		t.Fatalf("%s: no ExecStart=", unit)
	}
	var argv []string
	for _, w := range strings.Fields(line) {
		for k, v := range spec {
			w = strings.ReplaceAll(w, k, v)
		}
		if name, ok := strings.CutPrefix(w, "$"); ok && !strings.HasPrefix(name, "{") {
			argv = append(argv, strings.Fields(env[name])...)
			continue
		}
		if strings.HasPrefix(w, "${") && strings.HasSuffix(w, "}") {
			w = env[w[2:len(w)-1]]
		}
		argv = append(argv, w)
	}
	if argv[0] != "/usr/local/bin/gitblk" {
		t.Fatalf("%s: ExecStart runs %s", unit, argv[0])
	}
	return argv[1:]
}

// TestUnitCommandLines runs the ExecStart= of both systemd units, as
// systemd would expand it, with the test build: the flags they use are
// real, and the service reports READY=1 with its export resolved.
func TestUnitCommandLines(t *testing.T) {
	needNBDTools(t)
	r := newFleetRemote(t)
	c1 := r.commit(t, "one", map[string]string{"index.html": "<p>one</p>\n"})
	for _, unit := range []string{"gitblk@.service", "gitblk-follow@.service"} {
		t.Run(unit, func(t *testing.T) {
			dir := shortTempDir(t)
			spec := map[string]string{"%t": filepath.Join(dir, "run"), "%C": filepath.Join(dir, "cache"), "%S": filepath.Join(dir, "state"), "%i": "site"}
			// RuntimeDirectory=, CacheDirectory=, StateDirectory=.
			for _, d := range []string{"run", "cache", "state"} {
				if err := os.MkdirAll(filepath.Join(dir, d, "gitblk", "site"), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			metrics := filepath.Join(dir, "metrics.sock")
			env := map[string]string{"GITBLK_URL": r.url(), "GITBLK_REPO": r.work, "GITBLK_REF": "main",
				"GITBLK_OPTS": "--format tar --metrics-listen unix:" + metrics}
			argv := unitCommand(t, unit, spec, env)
			f := launch(t, dir, filepath.Join(dir, "run", "gitblk", "site", "nbd.sock"), metrics, argv)
			if got := servedCommit(t, f.uri("")); got != c1 {
				t.Errorf("serving %s, want %s", got, c1)
			}
			if unit == "gitblk-follow@.service" {
				if _, err := os.Stat(filepath.Join(dir, "state", "gitblk", "site", "mirror.git", "HEAD")); err != nil {
					t.Errorf("no mirror in the StateDirectory: %v", err)
				}
			}
			f.stop()
		})
	}
}
