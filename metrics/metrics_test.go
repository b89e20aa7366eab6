package metrics

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/gitblk/gitblk/follow"
	"github.com/gitblk/gitblk/internal/testutil"
	"github.com/gitblk/gitblk/nbd"
)

// scrape fetches /metrics from h and parses it with Prometheus' own text
// parser.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q", ct)
	}
	return testutil.ParseMetrics(t, rec.Body.Bytes())
}

func expect(t *testing.T, fams map[string]*dto.MetricFamily, want float64, name string, labels ...string) {
	t.Helper()
	v, ok := testutil.MetricValue(fams, name, labels...)
	if !ok {
		t.Errorf("%s%v: no such series", name, labels)
		return
	}
	if v != want {
		t.Errorf("%s%v = %v, want %v", name, labels, v, want)
	}
}

func expectType(t *testing.T, fams map[string]*dto.MetricFamily, name string, typ dto.MetricType) {
	t.Helper()
	if f := fams[name]; f == nil || f.GetType() != typ {
		t.Errorf("%s: type %v, want %v", name, f.GetType(), typ)
	}
}

func TestCountersMatchEvents(t *testing.T) {
	r := New()
	obs := NewNBD[string](r)
	// Two connections to the default export "", one to "fat", one that
	// never chooses an export.
	for _, p := range []string{"a", "b", "c", "d"} {
		obs.ConnOpened(p)
	}
	obs.ExportChosen("a", "")
	obs.ExportChosen("b", "")
	obs.ExportChosen("c", "fat")
	for i := 0; i < 10; i++ {
		obs.Request("", "read", 4096, time.Millisecond, nil)
	}
	obs.Request("fat", "read", 512, 3*time.Second, nil)
	obs.Request("fat", "read", 0, time.Millisecond, errors.New("EIO"))
	obs.Request("", "block_status", 0, 50*time.Microsecond, nil)
	obs.ConnClosed("d", "") // never chose: the default export's count stays
	obs.ConnClosed("a", "")
	r.CacheHit(100)
	r.CacheHit(200)
	r.CacheMiss(4096)
	r.SetCacheSize(func() int64 { return 12345 })
	r.LayoutBuilt("tar", 20*time.Millisecond, nil)
	r.LayoutBuilt("fat", time.Second, nil)
	r.LayoutBuilt("fat", time.Millisecond, errors.New("bad tree"))
	start := time.Unix(1_800_000_000, 0)
	r.Fetched("https://git.example.com/site.git", start, 2*time.Second, true, nil)
	r.Fetched("https://git.example.com/site.git", start.Add(time.Minute), time.Second, false, errors.New("fatal: unable to access"))
	r.SetExport(Export{Name: "", Ref: "main", Commit: strings.Repeat("a", 40), Format: "tar"})
	r.SetExport(Export{Name: "fat", Ref: "main", Commit: strings.Repeat("a", 40), Format: "fat"})
	r.SetExport(Export{Name: "", Ref: "main", Commit: strings.Repeat("b", 40), Format: "tar"}) // a deploy
	r.SetExport(Export{Name: `odd "name"` + "\n", Ref: "main", Commit: strings.Repeat("c", 40), Format: "tar"})

	fams := scrape(t, r.Handler())
	expect(t, fams, 4, "gitblk_nbd_connections_accepted_total")
	expect(t, fams, 2, "gitblk_nbd_connections_open")
	expect(t, fams, 2, "gitblk_nbd_connections_total", "export", "")
	expect(t, fams, 1, "gitblk_nbd_connections_total", "export", "fat")
	expect(t, fams, 1, "gitblk_nbd_export_connections_open", "export", "")
	expect(t, fams, 1, "gitblk_nbd_export_connections_open", "export", "fat")
	expect(t, fams, 10, "gitblk_nbd_requests_total", "export", "", "cmd", "read")
	expect(t, fams, 2, "gitblk_nbd_requests_total", "export", "fat", "cmd", "read")
	expect(t, fams, 1, "gitblk_nbd_requests_total", "export", "", "cmd", "block_status")
	expect(t, fams, 40960, "gitblk_nbd_read_bytes_total", "export", "")
	expect(t, fams, 512, "gitblk_nbd_read_bytes_total", "export", "fat")
	expect(t, fams, 1, "gitblk_nbd_request_errors_total", "export", "fat", "cmd", "read")
	expect(t, fams, 12, "gitblk_nbd_request_duration_seconds", "cmd", "read")
	expect(t, fams, 2, "gitblk_cache_hits_total")
	expect(t, fams, 1, "gitblk_cache_misses_total")
	expect(t, fams, 300, "gitblk_cache_hit_bytes_total")
	expect(t, fams, 4096, "gitblk_cache_miss_bytes_total")
	expect(t, fams, 12345, "gitblk_cache_bytes")
	expect(t, fams, 1, "gitblk_layouts_built_total", "format", "fat", "result", "ok")
	expect(t, fams, 1, "gitblk_layouts_built_total", "format", "fat", "result", "error")
	expect(t, fams, 2, "gitblk_layout_build_duration_seconds", "format", "fat")
	remote := "https://git.example.com/site.git"
	expect(t, fams, 1, "gitblk_follow_fetches_total", "remote", remote, "result", "ok")
	expect(t, fams, 1, "gitblk_follow_fetches_total", "remote", remote, "result", "error")
	expect(t, fams, 1, "gitblk_follow_updates_total", "remote", remote)
	expect(t, fams, 1_800_000_000, "gitblk_follow_last_success_timestamp_seconds", "remote", remote)
	expect(t, fams, 1_800_000_060, "gitblk_follow_last_fetch_timestamp_seconds", "remote", remote)
	expect(t, fams, 1, "gitblk_export_info", "export", "", "commit", strings.Repeat("b", 40), "format", "tar", "ref", "main")
	expect(t, fams, 1, "gitblk_export_info", "export", `odd "name"`+"\n")
	if _, ok := testutil.MetricValue(fams, "gitblk_export_info", "commit", strings.Repeat("a", 40), "export", ""); ok {
		t.Error("the default export's old commit still has an info series")
	}
	if n := len(fams["gitblk_export_info"].Metric); n != 3 {
		t.Errorf("%d gitblk_export_info series, want 3", n)
	}
	expectType(t, fams, "gitblk_nbd_requests_total", dto.MetricType_COUNTER)
	expectType(t, fams, "gitblk_nbd_connections_open", dto.MetricType_GAUGE)
	expectType(t, fams, "gitblk_nbd_request_duration_seconds", dto.MetricType_HISTOGRAM)
	if _, ok := fams["process_start_time_seconds"]; !ok {
		t.Error("no process metrics")
	}
	// Histogram buckets are cumulative, with the 3 s read in the 5 s bucket.
	for _, m := range fams["gitblk_nbd_request_duration_seconds"].Metric {
		if m.Label[0].GetValue() != "read" {
			continue
		}
		for _, b := range m.Histogram.Bucket {
			want := uint64(11)
			if b.GetUpperBound() >= 5 {
				want = 12
			}
			if b.GetUpperBound() < 0.001 {
				want = 0
			}
			if b.GetCumulativeCount() != want {
				t.Errorf("read bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
			}
		}
	}

	// /status says the same.
	st := getStatus(t, r.Handler())
	if st.ConnectionsOpen != 2 || len(st.Exports) != 3 || len(st.Follow) != 1 {
		t.Fatalf("status: %+v", st)
	}
	def := st.Exports[0]
	if def.Name != "" || def.Commit != strings.Repeat("b", 40) || def.Open != 1 || def.Total != 2 || def.ReadBytes != 40960 {
		t.Errorf("default export status: %+v", def)
	}
	if f := st.Follow[0]; f.OK != 1 || f.Failed != 1 || f.Updates != 1 || f.LastError == "" || !f.LastSuccess.Equal(start) {
		t.Errorf("follow status: %+v", f)
	}

	if got, want := statusLine(st, start.Add(time.Minute+5*time.Second)), "serving main at bbbbbbbbbbbb, 2 connections, last fetch failed (last good 1m5s ago)"; got != want {
		t.Errorf("status line %q, want %q", got, want)
	}
	if got := New().StatusLine(); got != "0 connections" {
		t.Errorf("empty status line %q", got)
	}

	r.RemoveExport("fat")
	fams = scrape(t, r.Handler())
	if _, ok := testutil.MetricValue(fams, "gitblk_export_info", "export", "fat"); ok {
		t.Error("removed export still has an info series")
	}
}

func getStatus(t *testing.T, h http.Handler) Status {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/status", nil))
	var st Status
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &st) != nil {
		t.Fatalf("/status: %d %s", rec.Code, rec.Body)
	}
	return st
}

func TestListenLoopbackByDefault(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "127.0.0.1:9410"},
		{"9500", "127.0.0.1:9500"},
		{":9500", "127.0.0.1:9500"},
		{"0.0.0.0:9500", "0.0.0.0:9500"},
		{"[::1]:9500", "[::1]:9500"},
	} {
		got, err := loopbackDefault(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("loopbackDefault(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := loopbackDefault("no port"); err == nil {
		t.Error("an address without a port was accepted")
	}
	l, err := Listen(":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if ip := l.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		t.Errorf(":0 listens on %v", ip)
	}
	sock := filepath.Join(t.TempDir(), "metrics.sock")
	ul, err := Listen("unix:" + sock)
	if err != nil {
		t.Fatal(err)
	}
	r := New()
	srv := r.Server()
	go srv.Serve(ul)
	defer srv.Close()
	c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Get("http://gitblk/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/status over a unix socket: %d", resp.StatusCode)
	}
	if _, err := Listen("unix:" + sock); err == nil {
		t.Error("a second listener on a live socket")
	}
}

// memImage is an image in memory, for the NBD server.
type memImage []byte

func (m memImage) Size() int64 { return int64(len(m)) }
func (m memImage) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(m).ReadAt(p, off)
}

func lookTools(t *testing.T, tools ...string) {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian package libnbd-bin)", tool)
		}
	}
}

// TestNBDServerCounters serves an image over NBD with a Registry as the
// server's Observer and checks the counters against what real clients
// did: nbdcopy reads the image whole, nbdinfo --list chooses no export.
func TestNBDServerCounters(t *testing.T) {
	lookTools(t, "nbdcopy", "nbdinfo")
	t.Setenv("PATH", "/usr/bin:"+os.Getenv("PATH"))
	img := make(memImage, 3<<20+4096) // random: no zero runs for nbdcopy to skip
	rand.Read(img)
	r := New()
	srv := &nbd.Server{
		Resolve: func(_ context.Context, name string, _ nbd.Peer) (*nbd.Export, error) {
			if name != "" && name != "fat" {
				return nil, nbd.ErrUnknownExport
			}
			return &nbd.Export{Name: name, Image: img}, nil
		},
		List:     func(context.Context, nbd.Peer) []string { return []string{"", "fat"} },
		Observer: NewNBD[nbd.Peer](r),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	var _ nbd.Observer = NewNBD[nbd.Peer](r)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	defer func() { cancel(); l.Close(); <-done }()
	uri := "nbd://" + l.Addr().String() + "/"

	out := filepath.Join(t.TempDir(), "copy.img")
	if b, err := exec.Command("nbdcopy", uri, out).CombinedOutput(); err != nil {
		t.Fatalf("nbdcopy: %v\n%s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, img) {
		t.Fatalf("nbdcopy copy differs (%v)", err)
	}
	if b, err := exec.Command("nbdinfo", "--list", "nbd://"+l.Addr().String()).CombinedOutput(); err != nil {
		t.Fatalf("nbdinfo --list: %v\n%s", err, b)
	}
	if b, err := exec.Command("nbdcopy", uri+"fat", "null:").CombinedOutput(); err != nil {
		t.Fatalf("nbdcopy fat: %v\n%s", err, b)
	}

	// Connections are counted closed once the server has seen them go.
	var fams map[string]*dto.MetricFamily
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		fams = scrape(t, r.Handler())
		if v, _ := testutil.MetricValue(fams, "gitblk_nbd_connections_open"); v == 0 || time.Now().After(deadline) {
			break
		}
	}
	expect(t, fams, float64(len(img)), "gitblk_nbd_read_bytes_total", "export", "")
	expect(t, fams, float64(len(img)), "gitblk_nbd_read_bytes_total", "export", "fat")
	expect(t, fams, 0, "gitblk_nbd_connections_open")
	expect(t, fams, 0, "gitblk_nbd_export_connections_open", "export", "")
	expect(t, fams, 0, "gitblk_nbd_export_connections_open", "export", "fat")
	// nbdcopy may open several connections (multi-conn); nbdinfo --list
	// one, which chooses nothing.
	accepted, _ := testutil.MetricValue(fams, "gitblk_nbd_connections_accepted_total")
	def, _ := testutil.MetricValue(fams, "gitblk_nbd_connections_total", "export", "")
	fat, _ := testutil.MetricValue(fams, "gitblk_nbd_connections_total", "export", "fat")
	if def < 1 || fat < 1 || accepted != def+fat+1 {
		t.Errorf("accepted %v, default export %v, fat %v: want accepted = both + 1 (nbdinfo --list)", accepted, def, fat)
	}
	reads, _ := testutil.MetricValue(fams, "gitblk_nbd_requests_total", "export", "", "cmd", "read")
	hist, _ := testutil.MetricValue(fams, "gitblk_nbd_request_duration_seconds", "cmd", "read")
	fatReads, _ := testutil.MetricValue(fams, "gitblk_nbd_requests_total", "export", "fat", "cmd", "read")
	if reads < 1 || hist != reads+fatReads {
		t.Errorf("%v+%v reads, %v in the latency histogram", reads, fatReads, hist)
	}
	t.Logf("nbdcopy: %v bytes in %v reads; %v connections accepted", len(img), reads, accepted)
	if st := getStatus(t, r.Handler()); st.ConnectionsOpen != 0 || len(st.Exports) != 2 || st.Exports[0].ReadBytes != uint64(len(img)) {
		t.Errorf("status: %+v", st)
	}
}

// TestFollowFetchesCounted follows a real remote and feeds every fetch
// into the registry, as serve does: a good fetch, a deploy, and a remote
// that disappears.
func TestFollowFetchesCounted(t *testing.T) {
	dir := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, b)
		}
		return strings.TrimSpace(string(b))
	}
	git("init", "--quiet", "--initial-branch=main", "work")
	git("init", "--quiet", "--bare", "remote.git")
	commit := func(msg string) string {
		git("-C", "work", "commit", "--quiet", "--allow-empty", "-m", msg)
		git("-C", "work", "push", "--quiet", filepath.Join(dir, "remote.git"), "main")
		return git("-C", "work", "rev-parse", "HEAD")
	}
	commit("one")
	r := New()
	url := "file://" + filepath.Join(dir, "remote.git")
	m, err := follow.New(follow.Config{URL: url, Dir: filepath.Join(dir, "mirror.git"),
		OnFetch: func(res follow.Result) {
			r.Fetched(url, res.Start, res.Duration, res.Changed, res.Err)
			if res.Err == nil {
				r.SetExport(Export{Name: "", Ref: "main", Commit: res.Refs["refs/heads/main"], Format: "tar"})
			}
		}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m.Fetch(ctx)
	c2 := commit("two")
	m.Fetch(ctx)
	m.Fetch(ctx) // nothing new
	if err := os.Rename(filepath.Join(dir, "remote.git"), filepath.Join(dir, "gone.git")); err != nil {
		t.Fatal(err)
	}
	bad := m.Fetch(ctx)
	release, err := m.Pin(c2)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	r.SetFollowPins(url, func() int { return len(m.Status().Pinned) })
	fams := scrape(t, r.Handler())
	expect(t, fams, 1, "gitblk_follow_pinned_commits", "remote", url)
	expect(t, fams, 3, "gitblk_follow_fetches_total", "remote", url, "result", "ok")
	expect(t, fams, 1, "gitblk_follow_fetches_total", "remote", url, "result", "error")
	expect(t, fams, 2, "gitblk_follow_updates_total", "remote", url)
	expect(t, fams, 1, "gitblk_export_info", "export", "", "commit", c2)
	good, _ := testutil.MetricValue(fams, "gitblk_follow_last_success_timestamp_seconds", "remote", url)
	last, _ := testutil.MetricValue(fams, "gitblk_follow_last_fetch_timestamp_seconds", "remote", url)
	if !(good > 0 && last > good) {
		t.Errorf("last success %v, last fetch %v", good, last)
	}
	st := getStatus(t, r.Handler())
	if len(st.Follow) != 1 || st.Follow[0].LastError != bad.Err.Error() || !strings.Contains(st.Follow[0].LastError, "does not appear to be a git repository") {
		t.Errorf("status: %+v", st.Follow)
	}
}
