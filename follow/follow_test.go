package follow

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gitblk/gitblk/internal/testutil"
)

// gitEnv keeps the tests away from the user's and the system's git
// configuration, and makes commits reproducible.
func gitEnv(t *testing.T) []string {
	home := t.TempDir()
	return append(os.Environ(), "HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t",
		"GIT_COMMITTER_EMAIL=t@example.com", "GIT_AUTHOR_DATE=2026-01-01T00:00:00Z",
		"GIT_COMMITTER_DATE=2026-01-01T00:00:00Z")
}

func run(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = gitEnv(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// remote is a bare repository with a work tree that pushes to it.
type remote struct {
	bare, work string
}

func newRemote(t *testing.T) *remote {
	t.Helper()
	d := t.TempDir()
	r := &remote{bare: filepath.Join(d, "remote.git"), work: filepath.Join(d, "work")}
	run(t, d, "init", "--bare", "--quiet", "--initial-branch=main", r.bare)
	run(t, d, "init", "--quiet", "--initial-branch=main", r.work)
	run(t, r.work, "remote", "add", "origin", r.bare)
	return r
}

// commit writes files (path -> content), commits and pushes main; it
// returns the commit id.
func (r *remote) commit(t *testing.T, msg string, files map[string]string) string {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(r.work, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(t, r.work, "add", "-A")
	run(t, r.work, "commit", "--quiet", "--allow-empty", "-m", msg)
	run(t, r.work, "push", "--quiet", "--force", "origin", "main")
	return run(t, r.work, "rev-parse", "HEAD")
}

func (r *remote) url() string { return "file://" + r.bare }

func newMirror(t *testing.T, cfg Config) (*Mirror, *testutil.LogBuffer) {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "mirror.git")
	}
	lb := &testutil.LogBuffer{}
	log := slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, err := New(cfg, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m, lb
}

func mirrorRef(t *testing.T, m *Mirror, ref string) string {
	t.Helper()
	cmd := exec.Command("git", "--git-dir="+m.GitDir(), "rev-parse", "--verify", "--quiet", ref)
	cmd.Env = gitEnv(t)
	out, _ := cmd.Output()
	return strings.TrimSpace(string(out))
}

// runMirror runs m.Run until the test ends.
func runMirror(t *testing.T, m *Mirror) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
}

// waitRef waits until the mirror's ref names want, and returns how long
// that took.
func waitRef(t *testing.T, m *Mirror, ref, want string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		if mirrorRef(t, m, ref) == want {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: %s is %q after %v, want %s", m.GitDir(), ref, mirrorRef(t, m, ref), limit, want)
	return 0
}

func TestFollowsWithinInterval(t *testing.T) {
	r := newRemote(t)
	c1 := r.commit(t, "one", map[string]string{"a.txt": "one\n"})
	const every = 400 * time.Millisecond
	var mu sync.Mutex
	var fetches []Result
	m, _ := newMirror(t, Config{URL: r.url(), Every: every, OnFetch: func(res Result) {
		mu.Lock()
		fetches = append(fetches, res)
		mu.Unlock()
	}})
	if m.Every() != every {
		t.Fatalf("Every() = %v", m.Every())
	}
	runMirror(t, m)
	waitRef(t, m, "refs/heads/main", c1, 10*time.Second)

	c2 := r.commit(t, "two", map[string]string{"a.txt": "two\n", "dir/b.txt": "b\n"})
	took := waitRef(t, m, "refs/heads/main", c2, 10*time.Second)
	t.Logf("new commit seen %v after the push (interval %v)", took, every)
	// One interval, plus the fetch itself on a shared machine.
	if took > every+2*time.Second {
		t.Errorf("new commit seen after %v, interval %v", took, every)
	}

	// Fetches come about once an interval, not more often.
	mu.Lock()
	n0, t0 := len(fetches), time.Now()
	mu.Unlock()
	time.Sleep(5 * every)
	mu.Lock()
	n := len(fetches) - n0
	var changed int
	for _, f := range fetches {
		if f.Err != nil {
			t.Errorf("fetch failed: %v", f.Err)
		}
		if f.Changed {
			changed++
		}
	}
	mu.Unlock()
	t.Logf("%d fetches in %v at interval %v", n, time.Since(t0).Round(time.Millisecond), every)
	if n < 2 || n > 6 {
		t.Errorf("%d fetches in %v, want about 5", n, time.Since(t0))
	}
	if changed != 2 {
		t.Errorf("%d fetches changed refs, want 2 (first fetch, second commit)", changed)
	}
	st := m.Status()
	if st.Failed != 0 || st.OK < 3 || st.Updates != 2 || st.LastGood.IsZero() || st.Last.Refs["refs/heads/main"] != c2 {
		t.Errorf("status = %+v", st)
	}
}

func TestRunAfterFirstFetch(t *testing.T) {
	r := newRemote(t)
	r.commit(t, "one", map[string]string{"a.txt": "one\n"})
	fetched := make(chan Result, 16)
	const every = 600 * time.Millisecond
	m, _ := newMirror(t, Config{URL: r.url(), Every: every, OnFetch: func(res Result) { fetched <- res }})
	// serve fetches once before it is ready, then runs the loop: no
	// second fetch until an interval has passed.
	if res := m.Fetch(context.Background()); res.Err != nil {
		t.Fatal(res.Err)
	}
	<-fetched
	start := time.Now()
	runMirror(t, m)
	select {
	case <-fetched:
		if d := time.Since(start); d < every/2 {
			t.Errorf("Run fetched again %v after the first fetch, interval %v", d, every)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run never fetched")
	}
}

func TestTriggerFetchesAtOnce(t *testing.T) {
	r := newRemote(t)
	c1 := r.commit(t, "one", map[string]string{"a.txt": "one\n"})
	fetched := make(chan Result, 16)
	m, _ := newMirror(t, Config{URL: r.url(), Every: time.Hour, OnFetch: func(res Result) { fetched <- res }})
	runMirror(t, m)
	if res := <-fetched; res.Err != nil || !res.Changed || res.Refs["refs/heads/main"] != c1 {
		t.Fatalf("first fetch: %+v", res)
	}
	c2 := r.commit(t, "two", map[string]string{"a.txt": "two\n"})
	r.commit(t, "tag", nil)
	run(t, r.work, "tag", "v1", c2)
	run(t, r.work, "push", "--quiet", "origin", "v1")
	start := time.Now()
	m.Trigger()
	m.Trigger() // folds into the same or one more fetch; never blocks
	select {
	case res := <-fetched:
		t.Logf("triggered fetch done in %v", time.Since(start))
		if res.Err != nil || !res.Changed || res.Refs["refs/tags/v1"] != c2 {
			t.Fatalf("triggered fetch: %+v", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Trigger did not fetch")
	}
	if got := mirrorRef(t, m, "refs/tags/v1"); got != c2 {
		t.Errorf("v1 = %q, want %s", got, c2)
	}

	// A branch deleted upstream is pruned.
	run(t, r.work, "push", "--quiet", "origin", "main:side")
	if res := m.Fetch(context.Background()); res.Err != nil || res.Refs["refs/heads/side"] == "" {
		t.Fatalf("fetch side: %+v", res)
	}
	run(t, r.work, "push", "--quiet", "origin", ":side")
	if res := m.Fetch(context.Background()); res.Err != nil || !res.Changed || res.Refs["refs/heads/side"] != "" {
		t.Fatalf("fetch after deleting side: %+v", res)
	}
}

// garbageServer accepts TCP connections and answers anything with junk.
func garbageServer(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 4096)
				c.Read(buf)
				c.Write([]byte("zzzz this is not pkt-line \x00\xff\xfe garbage\n"))
			}()
		}
	}()
	return l.Addr().String()
}

func TestFailedFetchChangesNothing(t *testing.T) {
	r := newRemote(t)
	c1 := r.commit(t, "one", map[string]string{"a.txt": "one\n"})
	dir := filepath.Join(t.TempDir(), "mirror.git")
	m, logs := newMirror(t, Config{URL: r.url(), Dir: dir})
	if res := m.Fetch(context.Background()); res.Err != nil {
		t.Fatal(res.Err)
	}
	refsBefore := run(t, dir, "for-each-ref")

	// The remote moves on, then disappears.
	r.commit(t, "two", map[string]string{"a.txt": "two\n"})
	if err := os.Rename(r.bare, r.bare+".gone"); err != nil {
		t.Fatal(err)
	}
	res := m.Fetch(context.Background())
	if res.Err == nil {
		t.Fatal("fetch from a missing remote succeeded")
	}
	t.Logf("missing remote: %v", res.Err)
	if !strings.Contains(res.Err.Error(), "does not appear to be a git repository") {
		t.Errorf("reason %q does not say what git said", res.Err)
	}
	if res.Changed || res.Refs["refs/heads/main"] != c1 {
		t.Errorf("failed fetch: %+v", res)
	}
	if got := run(t, dir, "for-each-ref"); got != refsBefore {
		t.Errorf("refs changed by a failed fetch:\n%s\nwant\n%s", got, refsBefore)
	}
	if !strings.Contains(logs.String(), "follow: fetch failed") || !strings.Contains(logs.String(), "does not appear to be a git repository") {
		t.Errorf("log lacks the reason:\n%s", logs)
	}

	// A server that answers garbage.
	addr := garbageServer(t)
	m2, logs2 := newMirror(t, Config{URL: "git://" + addr + "/repo.git", Dir: dir, Timeout: 20 * time.Second})
	res = m2.Fetch(context.Background())
	if res.Err == nil {
		t.Fatal("fetch from a garbage server succeeded")
	}
	t.Logf("garbage server: %v", res.Err)
	if got := run(t, dir, "for-each-ref"); got != refsBefore {
		t.Errorf("refs changed by a garbage fetch:\n%s\nwant\n%s", got, refsBefore)
	}
	if !strings.Contains(logs2.String(), "fetch failed") || !strings.Contains(logs2.String(), "protocol") {
		t.Errorf("log lacks the reason:\n%s", logs2)
	}
	st := m2.Status()
	if st.Failed != 1 || st.OK != 0 || st.Last.Err == nil || !st.LastGood.IsZero() {
		t.Errorf("status after a garbage fetch: %+v", st)
	}
	if st := m.Status(); st.Failed != 1 || st.OK != 1 {
		t.Errorf("status after a failed fetch: %+v", st)
	}

	// A remote whose objects are damaged: refs advance only with
	// complete objects, so a fetch that cannot get them changes nothing.
	if err := os.Rename(r.bare+".gone", r.bare); err != nil {
		t.Fatal(err)
	}
	c3 := r.commit(t, "three", map[string]string{"big.txt": strings.Repeat("unique content three\n", 1000)})
	blob := run(t, r.work, "rev-parse", c3+":big.txt")
	obj := filepath.Join(r.bare, "objects", blob[:2], blob[2:])
	if err := os.Chmod(obj, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(obj, []byte("garbage, not zlib"), 0o644); err != nil {
		t.Fatal(err)
	}
	m3, _ := newMirror(t, Config{URL: r.url(), Dir: dir})
	res = m3.Fetch(context.Background())
	if res.Err == nil {
		t.Fatal("fetch of a damaged object succeeded")
	}
	t.Logf("damaged remote: %v", res.Err)
	if got := run(t, dir, "for-each-ref"); got != refsBefore {
		t.Errorf("refs changed by a fetch of damaged objects:\n%s\nwant\n%s", got, refsBefore)
	}
}

func TestPinSurvivesForcePushAndGC(t *testing.T) {
	r := newRemote(t)
	old := map[string]string{
		"a.txt":       "old a, only in the old commit\n",
		"dir/b.txt":   strings.Repeat("old b\n", 5000),
		"dir/c/d.bin": "old d \x00\x01\x02\n",
	}
	c1 := r.commit(t, "old", old)
	m, _ := newMirror(t, Config{URL: r.url()})
	if res := m.Fetch(context.Background()); res.Err != nil {
		t.Fatal(res.Err)
	}
	release, err := m.Pin(c1)
	if err != nil {
		t.Fatal(err)
	}
	release2, err := m.Pin(c1) // a second connection on the same commit
	if err != nil {
		t.Fatal(err)
	}
	if got := mirrorRef(t, m, PinPrefix+c1); got != c1 {
		t.Fatalf("pin ref = %q", got)
	}

	// Upstream drops the old commit: a new root commit, force-pushed,
	// and the old objects pruned there too.
	run(t, r.work, "checkout", "--quiet", "--orphan", "new")
	run(t, r.work, "rm", "-rf", "--quiet", ".")
	if err := os.WriteFile(filepath.Join(r.work, "new.txt"), []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, r.work, "add", "-A")
	run(t, r.work, "commit", "--quiet", "-m", "new root")
	run(t, r.work, "push", "--quiet", "--force", "origin", "new:main")
	run(t, r.bare, "gc", "--quiet", "--prune=now")
	c2 := run(t, r.work, "rev-parse", "HEAD")
	if res := m.Fetch(context.Background()); res.Err != nil || res.Refs["refs/heads/main"] != c2 {
		t.Fatalf("fetch after force-push: %+v", res)
	}
	if err := m.Maintain(context.Background()); err != nil {
		t.Fatal(err)
	}
	gcNow := func() {
		run(t, m.GitDir(), "reflog", "expire", "--expire=now", "--all")
		run(t, m.GitDir(), "gc", "--quiet", "--prune=now")
	}
	gcNow()

	// Every blob of the old commit still reads, byte for byte.
	for p, want := range old {
		cmd := exec.Command("git", "--git-dir="+m.GitDir(), "cat-file", "blob", c1+":"+p)
		cmd.Env = gitEnv(t)
		got, err := cmd.Output()
		if err != nil {
			t.Fatalf("cat-file %s after gc: %v", p, err)
		}
		if string(got) != want {
			t.Errorf("%s: %d bytes differ from the old commit's %d", p, len(got), len(want))
		}
	}
	if st := m.Status(); len(st.Pinned) != 1 || st.Pinned[0] != c1 {
		t.Errorf("pinned = %v", st.Pinned)
	}

	// One holder left: still pinned. The last release drops the ref, and
	// then gc does remove the old objects (the check above could fail).
	release()
	release() // twice is harmless
	if got := mirrorRef(t, m, PinPrefix+c1); got != c1 {
		t.Fatalf("pin dropped while a holder remains")
	}
	release2()
	if got := mirrorRef(t, m, PinPrefix+c1); got != "" {
		t.Fatalf("pin ref %q remains after the last release", got)
	}
	gcNow()
	cmd := exec.Command("git", "--git-dir="+m.GitDir(), "cat-file", "-e", c1+":a.txt")
	cmd.Env = gitEnv(t)
	if cmd.Run() == nil {
		t.Errorf("old blob still present after unpin and gc: the pin test proves nothing")
	}
	if st := m.Status(); len(st.Pinned) != 0 {
		t.Errorf("pinned = %v", st.Pinned)
	}
}

func TestCancelledFetchIsNotAFailure(t *testing.T) {
	r := newRemote(t)
	r.commit(t, "one", nil)
	called := false
	m, logs := newMirror(t, Config{URL: r.url(), OnFetch: func(Result) { called = true }})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if res := m.Fetch(ctx); res.Err == nil {
		t.Fatal("a fetch with a cancelled context succeeded")
	}
	if st := m.Status(); st.Failed != 0 || st.OK != 0 || called {
		t.Errorf("a cancelled fetch was counted: %+v, OnFetch called %v", st, called)
	}
	if !strings.Contains(logs.String(), "fetch interrupted") || strings.Contains(logs.String(), "fetch failed") {
		t.Errorf("log:\n%s", logs)
	}
}

func TestPinErrorsAndStalePins(t *testing.T) {
	r := newRemote(t)
	c1 := r.commit(t, "one", map[string]string{"a.txt": "one\n"})
	dir := filepath.Join(t.TempDir(), "mirror.git")
	m, _ := newMirror(t, Config{URL: r.url(), Dir: dir})
	if _, err := m.Pin("main"); err == nil {
		t.Error("Pin of a ref name succeeded")
	}
	if _, err := m.Pin(strings.Repeat("0", 39) + "1"); err == nil {
		t.Error("Pin of a missing commit succeeded")
	}
	if res := m.Fetch(context.Background()); res.Err != nil {
		t.Fatal(res.Err)
	}
	if _, err := m.Pin(c1); err != nil {
		t.Fatal(err)
	}
	// A new process on the same mirror: nobody holds the old pin.
	m2, _ := newMirror(t, Config{URL: r.url(), Dir: dir})
	if got := mirrorRef(t, m2, PinPrefix+c1); got != "" {
		t.Errorf("stale pin %q survived New", got)
	}
	if _, err := New(Config{URL: "https://u:secret@example.com/r.git", Dir: dir}, nil); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("URL with a password: err = %v", err)
	}
	if _, err := New(Config{URL: r.url()}, nil); err == nil {
		t.Error("New without a directory succeeded")
	}
	notBare := t.TempDir()
	run(t, notBare, "init", "--quiet")
	if _, err := New(Config{URL: r.url(), Dir: notBare}, nil); err == nil {
		t.Error("New on a non-bare repository succeeded")
	}
}

// gitDaemon serves the repositories under root with git daemon on a
// loopback port and returns its address.
func gitDaemon(t *testing.T, root string) string {
	t.Helper()
	for try := 0; try < 5; try++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().(*net.TCPAddr)
		l.Close()
		cmd := exec.Command("git", "daemon", "--reuseaddr", "--export-all", "--base-path="+root,
			"--listen=127.0.0.1", fmt.Sprintf("--port=%d", addr.Port), root)
		cmd.Env = gitEnv(t)
		var stderr testutil.LogBuffer
		cmd.Stderr = &stderr
		// git runs git-daemon as a child, which runs upload-pack: stop
		// them all.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.WaitDelay = 2 * time.Second
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		stop := func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() }
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if c, err := net.Dial("tcp", addr.String()); err == nil {
				c.Close()
				t.Cleanup(stop)
				return addr.String()
			}
			time.Sleep(20 * time.Millisecond)
		}
		stop()
		t.Logf("git daemon on %v did not come up: %s", addr, stderr.String())
	}
	t.Fatal("git daemon did not start")
	return ""
}

func TestFourMirrorsConverge(t *testing.T) {
	r := newRemote(t)
	c1 := r.commit(t, "one", map[string]string{"a.txt": "one\n"})
	addr := gitDaemon(t, filepath.Dir(r.bare))
	url := "git://" + addr + "/remote.git"
	const every = time.Second
	var ms []*Mirror
	for i := 0; i < 4; i++ {
		m, _ := newMirror(t, Config{URL: url, Every: every})
		runMirror(t, m)
		ms = append(ms, m)
		// Hosts start at different moments.
		time.Sleep(every / 4)
	}
	for _, m := range ms {
		waitRef(t, m, "refs/heads/main", c1, 10*time.Second)
	}
	files := map[string]string{}
	for i := 0; i < 50; i++ {
		files[fmt.Sprintf("site/page%02d.html", i)] = strings.Repeat(fmt.Sprintf("page %d\n", i), 200)
	}
	start := time.Now()
	c2 := r.commit(t, "deploy", files)
	pushed := time.Since(start)
	// Poll every mirror in turn and note when each first has it.
	_, worst := testutil.Converge(t, start, len(ms), 15*time.Second, 5*time.Millisecond,
		"mirror %d has the new commit %v after the commit started",
		func(i int) bool { return mirrorRef(t, ms[i], "refs/heads/main") == c2 })
	t.Logf("four mirrors converged %v after the commit started (push took %v, interval %v)", worst.Round(time.Millisecond), pushed.Round(time.Millisecond), every)
	if worst > every+pushed+3*time.Second {
		t.Errorf("convergence took %v at interval %v", worst, every)
	}
}

// basicAuth serves h to requests with user and password only.
func basicAuth(user, pass string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func TestHTTPCredentialsFromFile(t *testing.T) {
	r := newRemote(t)
	c1 := r.commit(t, "one", map[string]string{"a.txt": "one\n"})
	execPath := run(t, "", "--exec-path")
	backend := &cgi.Handler{
		Path: filepath.Join(execPath, "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(r.bare), "GIT_HTTP_EXPORT_ALL=1"},
	}
	const password = "s3cr3t-Pa55"
	srv := httptest.NewServer(basicAuth("deploy", password, backend))
	defer srv.Close()
	url := srv.URL + "/remote.git"

	credDir := t.TempDir()
	good := filepath.Join(credDir, "good")
	bad := filepath.Join(credDir, "bad")
	if err := os.WriteFile(good, []byte("username=deploy\npassword="+password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("username=deploy\npassword=wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Without credentials, and with wrong ones, git fails without asking.
	dir := filepath.Join(t.TempDir(), "mirror.git")
	for _, cred := range []string{"", bad} {
		m, logs := newMirror(t, Config{URL: url, Dir: dir, Credentials: cred, Timeout: 30 * time.Second})
		res := m.Fetch(context.Background())
		if res.Err == nil {
			t.Fatalf("fetch with credentials %q succeeded", cred)
		}
		t.Logf("credentials %q: %v", filepath.Base(cred), res.Err)
		if strings.Contains(logs.String(), password) {
			t.Errorf("log shows the password:\n%s", logs)
		}
	}
	if b, err := os.ReadFile(bad); err != nil || !strings.Contains(string(b), "password=wrong") {
		t.Errorf("a rejected credential rewrote the file: %q, %v", b, err)
	}

	m, logs := newMirror(t, Config{URL: url, Dir: dir, Credentials: good})
	res := m.Fetch(context.Background())
	if res.Err != nil || res.Refs["refs/heads/main"] != c1 {
		t.Fatalf("fetch with good credentials: %+v", res)
	}
	if strings.Contains(logs.String(), password) {
		t.Errorf("log shows the password:\n%s", logs)
	}
	cfg, err := os.ReadFile(filepath.Join(dir, "config"))
	if err != nil || strings.Contains(string(cfg), password) {
		t.Errorf("mirror config shows the password: %v", err)
	}
	// The helper's command line names neither the file nor the password.
	for _, a := range m.authArgs() {
		if strings.Contains(a, password) || strings.Contains(a, good) {
			t.Errorf("git argument %q carries a secret or its file", a)
		}
	}
}

func TestSSHCommand(t *testing.T) {
	m := &Mirror{cfg: Config{SSHKey: "/etc/gitblk/it's a key", KnownHosts: "/etc/gitblk/known_hosts"}}
	got := m.sshCommand()
	want := `ssh -o BatchMode=yes -i '/etc/gitblk/it'\''s a key' -o IdentitiesOnly=yes -o UserKnownHostsFile='/etc/gitblk/known_hosts' -o StrictHostKeyChecking=yes`
	if got != want {
		t.Errorf("sshCommand:\n got %s\nwant %s", got, want)
	}
	// sh reads the quoting back as the paths given.
	out, err := exec.Command("sh", "-c", "printf '%s\\n' "+strings.TrimPrefix(got, "ssh ")).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "\n/etc/gitblk/it's a key\n") {
		t.Errorf("sh split the command as:\n%s", out)
	}
	var env string
	for _, kv := range m.env() {
		if strings.HasPrefix(kv, "GIT_SSH_COMMAND=") {
			env = kv
		}
	}
	if env != "GIT_SSH_COMMAND="+want {
		t.Errorf("env has %q", env)
	}
	if (&Mirror{}).sshCommand() != "" {
		t.Error("ssh command without key or known_hosts")
	}
}
