// Package metrics counts what gitblk serves and publishes it on an HTTP
// listener: /metrics in the Prometheus text format, /status as JSON for
// `gitblk status`.
//
// Names follow Prometheus conventions (https://prometheus.io/docs/practices/naming/):
// the gitblk_ prefix, base units (seconds, bytes), counters ending in
// _total. Commit ids live in one gitblk_export_info series per export, not
// in the labels of busy series. The text is written by
// github.com/VictoriaMetrics/metrics, a small library without the weight
// of the Prometheus client.
//
// A Registry receives events from the NBD server (the methods of its
// Observer: see NBD), from the image cache and layout builder, and from
// the mirror that follows a remote (Fetched). All its methods are safe
// for concurrent use and cheap enough to call on every request.
package metrics

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vm "github.com/VictoriaMetrics/metrics"
)

// requestBuckets are the upper bounds, in seconds, of the request latency
// histogram: from a cached read (tens of microseconds) to a cold read of
// a large blob.
var requestBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// layoutBuckets are the upper bounds, in seconds, of the layout build
// histogram: a small site to a tree of a hundred thousand files.
var layoutBuckets = []float64{0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// Export is what an export serves, for gitblk_export_info and /status.
type Export struct {
	Name   string `json:"name"`   // export name; "" is the default export
	Ref    string `json:"ref"`    // the ref it follows, as given
	Commit string `json:"commit"` // the commit new connections get
	Format string `json:"format"` // tar or fat
}

// Registry holds gitblk's metrics. The zero value is not usable: call New.
type Registry struct {
	set   *vm.Set
	start time.Time

	accepted  *vm.Counter
	connsOpen *vm.Gauge

	cacheHits, cacheMisses        *vm.Counter
	cacheHitBytes, cacheMissBytes *vm.Counter
	cacheBytesMu                  sync.Mutex
	cacheBytes                    func() int64
	cacheStats                    func() CacheStats

	mu      sync.Mutex
	exports map[string]*exportState
	follows map[string]*FollowStatus

	series sync.Map // requestKey -> *requestSeries
}

// requestKey and requestSeries: the series one export's requests of one
// command update, looked up once rather than named on every request.
type requestKey struct{ export, cmd string }

type requestSeries struct {
	requests, errors, readBytes *vm.Counter
	duration                    *vm.PrometheusHistogram
	state                       *exportState
}

type exportState struct {
	info     Export
	infoName string // the gitblk_export_info series, "" if none
	open     int64
	total    uint64
	read     atomic.Uint64 // counted without r.mu: Request is on every read
}

// New returns an empty registry.
func New() *Registry {
	// Write # HELP-less # TYPE lines, so parsers know counters from gauges.
	vm.ExposeMetadata(true)
	s := vm.NewSet()
	r := &Registry{set: s, start: time.Now(), exports: map[string]*exportState{}, follows: map[string]*FollowStatus{}}
	r.accepted = s.NewCounter("gitblk_nbd_connections_accepted_total")
	r.connsOpen = s.NewGauge("gitblk_nbd_connections_open", nil)
	r.cacheHits = s.NewCounter("gitblk_cache_hits_total")
	r.cacheMisses = s.NewCounter("gitblk_cache_misses_total")
	r.cacheHitBytes = s.NewCounter("gitblk_cache_hit_bytes_total")
	r.cacheMissBytes = s.NewCounter("gitblk_cache_miss_bytes_total")
	s.NewGauge("gitblk_cache_bytes", func() float64 {
		r.cacheBytesMu.Lock()
		f := r.cacheBytes
		r.cacheBytesMu.Unlock()
		if f == nil {
			return 0
		}
		return float64(f())
	})
	s.NewGauge("gitblk_start_time_seconds", func() float64 { return float64(r.start.UnixNano()) / 1e9 })
	return r
}

// labels formats a label set, {k1="v1",k2="v2"}, escaping values as the
// text format requires (backslash, double quote, newline).
func labels(kv ...string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(kv[i])
		b.WriteString(`="`)
		for _, c := range kv[i+1] {
			switch c {
			case '\\':
				b.WriteString(`\\`)
			case '"':
				b.WriteString(`\"`)
			case '\n':
				b.WriteString(`\n`)
			default:
				b.WriteRune(c)
			}
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

func (r *Registry) counter(name string, kv ...string) *vm.Counter {
	return r.set.GetOrCreateCounter(name + labels(kv...))
}

// exportLocked returns the state of export name, creating it.
func (r *Registry) exportLocked(name string) *exportState {
	e := r.exports[name]
	if e == nil {
		e = &exportState{info: Export{Name: name}}
		r.exports[name] = e
	}
	return e
}

// ConnOpened counts a connection accepted, before any export is chosen.
func (r *Registry) ConnOpened() {
	r.accepted.Inc()
	r.connsOpen.Inc()
}

// ExportChosen counts a connection that chose export (NBD_OPT_GO or
// EXPORT_NAME succeeded).
func (r *Registry) ExportChosen(export string) {
	r.counter("gitblk_nbd_connections_total", "export", export).Inc()
	r.set.GetOrCreateGauge("gitblk_nbd_export_connections_open"+labels("export", export), nil).Inc()
	r.mu.Lock()
	e := r.exportLocked(export)
	e.open++
	e.total++
	r.mu.Unlock()
}

// ConnClosed counts a connection closed; export is the one it chose, or
// "" with chosen false if none was. The export's count goes down before
// the total, as it went up after it: a scrape never sees an export with
// more connections open than the server.
func (r *Registry) ConnClosed(export string, chosen bool) {
	if chosen {
		r.set.GetOrCreateGauge("gitblk_nbd_export_connections_open"+labels("export", export), nil).Dec()
		r.mu.Lock()
		r.exportLocked(export).open--
		r.mu.Unlock()
	}
	r.connsOpen.Dec()
}

// Request counts one request on export: cmd is the command ("read",
// "block_status", ...), bytes the data a read returned, d how long it took, err
// its failure if any.
func (r *Registry) Request(export, cmd string, bytes int64, d time.Duration, err error) {
	rs := r.requestSeries(export, cmd)
	rs.requests.Inc()
	if bytes > 0 {
		rs.readBytes.Add(int(bytes))
	}
	if err != nil {
		rs.errors.Inc()
	}
	rs.duration.Update(d.Seconds())
	if cmd == "read" && bytes > 0 && err == nil {
		rs.state.read.Add(uint64(bytes))
	}
}

// requestSeries returns the series of export's cmd requests.
func (r *Registry) requestSeries(export, cmd string) *requestSeries {
	key := requestKey{export, cmd}
	if v, ok := r.series.Load(key); ok {
		return v.(*requestSeries)
	}
	r.mu.Lock()
	st := r.exportLocked(export)
	r.mu.Unlock()
	rs := &requestSeries{
		requests:  r.counter("gitblk_nbd_requests_total", "export", export, "cmd", cmd),
		errors:    r.counter("gitblk_nbd_request_errors_total", "export", export, "cmd", cmd),
		readBytes: r.counter("gitblk_nbd_read_bytes_total", "export", export),
		duration:  r.set.GetOrCreatePrometheusHistogramExt("gitblk_nbd_request_duration_seconds"+labels("cmd", cmd), requestBuckets),
		state:     st,
	}
	v, _ := r.series.LoadOrStore(key, rs)
	return v.(*requestSeries)
}

// CacheHit counts a read of n bytes served from the blob cache.
func (r *Registry) CacheHit(n int64) {
	r.cacheHits.Inc()
	r.cacheHitBytes.Add(int(n))
}

// CacheMiss counts a read of n bytes the blob cache did not hold.
func (r *Registry) CacheMiss(n int64) {
	r.cacheMisses.Inc()
	r.cacheMissBytes.Add(int(n))
}

// SetCacheSize makes gitblk_cache_bytes report f(), the bytes the cache
// holds, at each scrape.
func (r *Registry) SetCacheSize(f func() int64) {
	r.cacheBytesMu.Lock()
	r.cacheBytes = f
	r.cacheBytesMu.Unlock()
}

// CacheStats are the blob cache's counters since the start, as the cache
// keeps them.
type CacheStats struct {
	Hits, Misses        int64 // reads the cache served, reads it did not
	HitBytes, MissBytes int64 // the bytes those reads returned
	Bytes               int64 // inflated data held now
}

// SetCacheStats makes the cache series report f() at each scrape: for a
// cache that counts by itself. The counters then follow f, and CacheHit,
// CacheMiss and SetCacheSize should not be used.
func (r *Registry) SetCacheStats(f func() CacheStats) {
	r.cacheBytesMu.Lock()
	r.cacheStats = f
	r.cacheBytes = func() int64 { return f().Bytes }
	r.cacheBytesMu.Unlock()
}

// syncCache copies the cache's own counters into the series.
func (r *Registry) syncCache() {
	r.cacheBytesMu.Lock()
	f := r.cacheStats
	r.cacheBytesMu.Unlock()
	if f == nil {
		return
	}
	st := f()
	r.cacheHits.Set(uint64(max(st.Hits, 0)))
	r.cacheMisses.Set(uint64(max(st.Misses, 0)))
	r.cacheHitBytes.Set(uint64(max(st.HitBytes, 0)))
	r.cacheMissBytes.Set(uint64(max(st.MissBytes, 0)))
}

// LayoutBuilt counts an image layout computed in format, taking d; err
// says it failed.
func (r *Registry) LayoutBuilt(format string, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	r.counter("gitblk_layouts_built_total", "format", format, "result", result).Inc()
	r.set.GetOrCreatePrometheusHistogramExt("gitblk_layout_build_duration_seconds"+labels("format", format), layoutBuckets).Update(d.Seconds())
}

// Prefetched counts n bytes of an image read into the blob cache before
// any client asked (see gitfs.Repo.Prefetch): the cache's hit and miss
// bytes include them.
func (r *Registry) Prefetched(n int64) {
	r.counter("gitblk_prefetch_bytes_total").Add(int(n))
}

// SetExport says what export e.Name serves now. The export's
// gitblk_export_info series is replaced when anything in it changes.
func (r *Registry) SetExport(e Export) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.exportLocked(e.Name)
	if st.infoName != "" && st.info == e {
		return
	}
	if st.infoName != "" {
		r.set.UnregisterMetric(st.infoName)
	}
	st.info = e
	st.infoName = "gitblk_export_info" + labels("export", e.Name, "ref", e.Ref, "commit", e.Commit, "format", e.Format)
	r.set.GetOrCreateGauge(st.infoName, nil).Set(1)
}

// RemoveExport drops export name's info series (its counters stay: they
// are totals).
func (r *Registry) RemoveExport(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.exports[name]
	if st == nil || st.infoName == "" {
		return
	}
	r.set.UnregisterMetric(st.infoName)
	st.infoName = ""
	if st.open == 0 && st.total == 0 {
		delete(r.exports, name)
		// Series looked up for it hold its state: look them up again.
		r.series.Range(func(k, _ any) bool {
			if k.(requestKey).export == name {
				r.series.Delete(k)
			}
			return true
		})
	}
}

// FollowStatus is the state of a mirror that follows remote, in /status.
type FollowStatus struct {
	Remote       string    `json:"remote"`
	LastFetch    time.Time `json:"last_fetch"`
	LastDuration float64   `json:"last_fetch_duration_seconds"`
	LastError    string    `json:"last_error,omitempty"`
	LastSuccess  time.Time `json:"last_success"`
	OK           uint64    `json:"fetches_ok"`
	Failed       uint64    `json:"fetches_failed"`
	Updates      uint64    `json:"updates"`
}

// Fetched counts a fetch from remote that started at start and took d;
// changed says it moved refs, err that it failed (the mirror then serves
// what it did before).
func (r *Registry) Fetched(remote string, start time.Time, d time.Duration, changed bool, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	r.counter("gitblk_follow_fetches_total", "remote", remote, "result", result).Inc()
	// Create the other result's series at zero, so rate() and alerts on
	// errors work before the first one.
	other := map[string]string{"ok": "error", "error": "ok"}[result]
	r.counter("gitblk_follow_fetches_total", "remote", remote, "result", other)
	upd := r.counter("gitblk_follow_updates_total", "remote", remote)
	if changed && err == nil {
		upd.Inc()
	}
	ts := float64(start.UnixNano()) / 1e9
	r.set.GetOrCreateGauge("gitblk_follow_last_fetch_timestamp_seconds"+labels("remote", remote), nil).Set(ts)
	r.set.GetOrCreateGauge("gitblk_follow_last_fetch_duration_seconds"+labels("remote", remote), nil).Set(d.Seconds())
	good := r.set.GetOrCreateGauge("gitblk_follow_last_success_timestamp_seconds"+labels("remote", remote), nil)
	if err == nil {
		good.Set(ts)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.follows[remote]
	if f == nil {
		f = &FollowStatus{Remote: remote}
		r.follows[remote] = f
	}
	f.LastFetch, f.LastDuration, f.LastError = start, d.Seconds(), ""
	if err != nil {
		f.Failed++
		f.LastError = err.Error()
	} else {
		f.OK++
		f.LastSuccess = start
		if changed {
			f.Updates++
		}
	}
}

// SetFollowPins makes gitblk_follow_pinned_commits{remote} report f(), the
// commits connections hold in remote's mirror, at each scrape (more than
// one: guests still on an older deploy).
func (r *Registry) SetFollowPins(remote string, f func() int) {
	name := "gitblk_follow_pinned_commits" + labels("remote", remote)
	r.set.UnregisterMetric(name)
	r.set.NewGauge(name, func() float64 { return float64(f()) })
}

// ExportStatus is one export in /status.
type ExportStatus struct {
	Export
	Open      int64  `json:"connections_open"`
	Total     uint64 `json:"connections_total"`
	ReadBytes uint64 `json:"read_bytes"`
}

// Status is the /status document.
type Status struct {
	Started         time.Time      `json:"started"`
	ConnectionsOpen int64          `json:"connections_open"`
	Exports         []ExportStatus `json:"exports"`
	Follow          []FollowStatus `json:"follow"`
}

// Status returns the state now: exports sorted by name, mirrors by remote.
func (r *Registry) Status() Status {
	s := Status{Started: r.start, ConnectionsOpen: int64(r.connsOpen.Get()), Exports: []ExportStatus{}, Follow: []FollowStatus{}}
	r.mu.Lock()
	for _, e := range r.exports {
		s.Exports = append(s.Exports, ExportStatus{Export: e.info, Open: e.open, Total: e.total, ReadBytes: e.read.Load()})
	}
	for _, f := range r.follows {
		s.Follow = append(s.Follow, *f)
	}
	r.mu.Unlock()
	sort.Slice(s.Exports, func(i, j int) bool { return s.Exports[i].Name < s.Exports[j].Name })
	sort.Slice(s.Follow, func(i, j int) bool { return s.Follow[i].Remote < s.Follow[j].Remote })
	return s
}

// StatusLine is a one-line summary for systemd's STATUS=: what the
// default export serves, connections open, and the last fetch.
func (r *Registry) StatusLine() string {
	return statusLine(r.Status(), time.Now())
}

// maxStatusExports bounds the exports named in a status line.
const maxStatusExports = 3

func statusLine(st Status, now time.Time) string {
	var parts []string
	short := func(c string) string {
		if len(c) > 12 {
			return c[:12]
		}
		return c
	}
	for _, e := range st.Exports {
		if e.Name != "" || e.Commit == "" {
			continue
		}
		parts = append(parts, fmt.Sprintf("serving %s at %s", e.Ref, short(e.Commit)))
	}
	if len(parts) == 0 {
		// No default export (a config file's names): the first few named.
		for _, e := range st.Exports {
			if e.Commit == "" || strings.Contains(e.Name, "/") {
				continue // a ref pattern's name: one of many
			}
			if len(parts) == maxStatusExports {
				parts = append(parts, "...")
				break
			}
			parts = append(parts, fmt.Sprintf("%s: %s at %s", e.Name, e.Ref, short(e.Commit)))
		}
	}
	parts = append(parts, fmt.Sprintf("%d connections", st.ConnectionsOpen))
	for _, f := range st.Follow {
		switch {
		case f.LastFetch.IsZero():
		case f.LastError != "":
			good := "never"
			if !f.LastSuccess.IsZero() {
				good = now.Sub(f.LastSuccess).Round(time.Second).String() + " ago"
			}
			parts = append(parts, "last fetch failed (last good "+good+")")
		default:
			parts = append(parts, "fetched "+now.Sub(f.LastFetch).Round(time.Second).String()+" ago")
		}
	}
	return strings.Join(parts, ", ")
}

// WritePrometheus writes every metric, gitblk's and the process's
// (process_*, go_*), in the Prometheus text format.
func (r *Registry) WritePrometheus(w io.Writer) {
	r.syncCache()
	r.set.WritePrometheus(w)
	vm.WriteProcessMetrics(w)
}

// Handler serves GET /metrics (Prometheus text format) and GET /status
// (JSON, for `gitblk status`).
func (r *Registry) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		r.WritePrometheus(w)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(r.Status())
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, "gitblk: /metrics (Prometheus), /status (JSON)\n")
	})
	return mux
}

// DefaultPort is the metrics port when an address names none.
const DefaultPort = "9410"

// Listen opens the metrics listener. addr is HOST:PORT, :PORT or PORT
// (loopback, 127.0.0.1, unless a host is named: "0.0.0.0:9410" or
// "[::]:9410" for every interface), or unix:PATH for a unix socket.
func Listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if path == "" {
			return nil, errors.New("metrics: listen: empty unix socket path")
		}
		if !strings.HasPrefix(path, "@") {
			// A socket file left by a dead process blocks bind.
			if st, err := os.Lstat(path); err == nil && st.Mode()&os.ModeSocket != 0 {
				if c, err := net.Dial("unix", path); err == nil {
					c.Close()
					return nil, fmt.Errorf("metrics: listen: %s is in use", path)
				}
				os.Remove(path)
			}
		}
		l, err := net.Listen("unix", path)
		if err != nil {
			return nil, fmt.Errorf("metrics: listen: %w", err)
		}
		return l, nil
	}
	hostport, err := loopbackDefault(addr)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", hostport)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen: %w", err)
	}
	return l, nil
}

// loopbackDefault fills in 127.0.0.1 where addr names no host.
func loopbackDefault(addr string) (string, error) {
	if addr == "" {
		return net.JoinHostPort("127.0.0.1", DefaultPort), nil
	}
	if _, err := strconv.ParseUint(addr, 10, 16); err == nil {
		return net.JoinHostPort("127.0.0.1", addr), nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("metrics: listen %q: want HOST:PORT, :PORT or unix:PATH", addr)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// Serve serves the registry's Handler on l until l is closed; use
// Server for a graceful shutdown.
func (r *Registry) Serve(l net.Listener) error {
	return r.Server().Serve(l)
}

// Server is an http.Server for Handler with timeouts that keep a slow or
// idle client from holding a connection.
func (r *Registry) Server() *http.Server {
	return &http.Server{
		Handler:           r.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
}

// NBD adapts a Registry to the nbd package's Observer, whose methods take
// the connection's peer (P is nbd.Peer). Metrics keep export names only,
// never peers (their addresses would make a series per client).
//
// nbd's ConnClosed names the export "" both when none was chosen and for
// the default export, whose name is "": NBD tells them apart by
// remembering which peers chose an export. A peer value is distinct per
// connection (its TCP address or SO_PEERCRED is a pointer of its own);
// peers that compare equal are counted together, which keeps the totals
// right once they have all closed.
//
//	srv.Observer = metrics.NewNBD[nbd.Peer](reg)
type NBD[P comparable] struct {
	r      *Registry
	mu     sync.Mutex
	chosen map[chosenKey[P]]int
}

type chosenKey[P comparable] struct {
	peer   P
	export string
}

// NewNBD returns an nbd.Observer (with P = nbd.Peer) that counts into r.
func NewNBD[P comparable](r *Registry) *NBD[P] {
	return &NBD[P]{r: r, chosen: map[chosenKey[P]]int{}}
}

// ConnOpened implements nbd.Observer.
func (o *NBD[P]) ConnOpened(P) { o.r.ConnOpened() }

// ExportChosen implements nbd.Observer.
func (o *NBD[P]) ExportChosen(peer P, export string) {
	o.mu.Lock()
	o.chosen[chosenKey[P]{peer, export}]++
	o.mu.Unlock()
	o.r.ExportChosen(export)
}

// ConnClosed implements nbd.Observer; export is "" if none was chosen.
func (o *NBD[P]) ConnClosed(peer P, export string) {
	k := chosenKey[P]{peer, export}
	o.mu.Lock()
	chosen := o.chosen[k] > 0
	if chosen {
		if o.chosen[k]--; o.chosen[k] == 0 {
			delete(o.chosen, k)
		}
	}
	o.mu.Unlock()
	o.r.ConnClosed(export, chosen)
}

// Request implements nbd.Observer.
func (o *NBD[P]) Request(export, cmd string, bytes int64, d time.Duration, err error) {
	o.r.Request(export, cmd, bytes, d, err)
}
