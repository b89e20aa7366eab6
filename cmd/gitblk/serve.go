package main

import (
	"context"
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
	"sync"
	"syscall"
	"time"

	"github.com/gitblk/gitblk/config"
	"github.com/gitblk/gitblk/follow"
	"github.com/gitblk/gitblk/imager"
	"github.com/gitblk/gitblk/internal/gcfloor"
	"github.com/gitblk/gitblk/metrics"
	"github.com/gitblk/gitblk/nbd"
	"github.com/gitblk/gitblk/notify"
)

const serveExamples = `  gitblk serve /srv/site.git main                       # nbd://127.0.0.1:10809/
  gitblk serve --format fat --listen unix:/run/gitblk/site.sock /srv/site.git main
  gitblk serve --refs 'refs/tags/*' . main               # also nbd://.../refs/tags/v1:fat
  gitblk serve --config /etc/gitblk/gitblk.toml          # several exports, access rules, TLS, secrets
  gitblk serve --tls-certificates /etc/gitblk/tls --secret --decrypt /etc/gitblk/host.key \
      --allow cert-cn=vm-1 --listen 0.0.0.0:10809 /srv/keys.git main
  gitblk serve --follow https://git.example.com/site.git --follow-every 1m \
      --metrics-listen 127.0.0.1:9410 main                # a fleet host; kill -USR1 fetches now
`

// defaultListen is loopback only: nothing is exposed unless asked.
const defaultListen = "127.0.0.1:10809"

// maxWarnedKeys bounds the trees whose warnings serve remembers logging.
const maxWarnedKeys = 1024

// shutdownGrace bounds how long in-flight requests may take at exit.
const shutdownGrace = 30 * time.Second

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

var _ flag.Value = (*stringList)(nil)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	preloadInflater()
	fs := newFlags("serve", "serve [flags] REPO REF\n       gitblk serve --follow URL [flags] REF\n       gitblk serve --config FILE", serveExamples, stderr)
	var cf commonFlags
	var listens, refs stringList
	var af accessFlags
	cf.register(fs)
	fs.Var(&listens, "listen", "address to serve on: HOST:PORT or unix:PATH; repeatable (default "+defaultListen+")")
	fs.Var(&refs, "refs", "also serve refs matching this pattern, e.g. 'refs/tags/*', as exports REF and REF:FORMAT; repeatable")
	af.register(fs)
	var ff followFlags
	ff.register(fs)
	metricsListen := fs.String("metrics-listen", "", "serve /metrics (Prometheus text) and /status (for gitblk status) on HOST:PORT, :PORT (loopback) or unix:PATH; default off")
	handshakeTimeout := fs.Duration("handshake-timeout", 0, "how long a handshake waits on a silent client before dropping it (default 10s; the server's own work, such as laying out a big tree, does not count)")
	logJSON := fs.Bool("log-json", false, "log JSON lines instead of text")
	pos, err := parsePositionals(fs, args)
	if err != nil {
		return err
	}
	var load func() (*config.Config, error)
	if af.config != "" {
		if err := checkConfigFlags(fs); err != nil {
			return err
		}
		if err := wantArgs(fs, pos, 0); err != nil {
			return err
		}
		load = func() (*config.Config, error) { return config.Load(af.config) }
	} else {
		if err := ff.check(fs); err != nil {
			return err
		}
		if ff.url != "" && len(pos) == 2 {
			return usagef("serve: with --follow, give REF only: the repository served is the mirror (--follow-dir)")
		}
		want := 2
		if ff.url != "" {
			want = 1
		}
		if err := wantArgs(fs, pos, want); err != nil {
			return err
		}
		if _, err := cf.options(""); err != nil {
			return err
		}
		load = func() (*config.Config, error) {
			if ff.url == "" {
				c, err := shorthandConfig(&cf, listens, refs, &af, pos[0], pos[1])
				if err == nil && (*metricsListen != "" || *handshakeTimeout != 0) {
					c.MetricsListen, c.HandshakeTimeout = *metricsListen, *handshakeTimeout
					err = flagError(c.Validate())
				}
				return c, err
			}
			dir, err := mirrorDir(ff.follow(ff.dir), cf.cacheDir)
			if err != nil {
				return nil, usagef("--follow: %v", err)
			}
			c, err := shorthandConfig(&cf, listens, refs, &af, dir, pos[0])
			if err != nil {
				return nil, err
			}
			for i := range c.Exports {
				c.Exports[i].Follow = ff.follow(dir)
			}
			c.MetricsListen, c.HandshakeTimeout = *metricsListen, *handshakeTimeout
			return c, flagError(c.Validate())
		}
	}
	cfg, err := load()
	if err != nil {
		return configError(err)
	}
	var log *slog.Logger
	if *logJSON {
		log = slog.New(slog.NewJSONHandler(stderr, nil))
	} else {
		log = slog.New(slog.NewTextHandler(stderr, nil))
	}
	return serveConfig(ctx, cfg, load, log)
}

// configError makes a config file's errors usage errors (exit status 2):
// nothing is served.
func configError(err error) error {
	var ce *config.Error
	switch {
	case !errors.As(err, &ce):
		return err
	case ce.File != "":
		return usagef("%v", err)
	}
	// The command line's own config: an unreadable certificate or identity
	// is a usage error too; a bad REPO or REF is an error, as before.
	switch {
	case ce.Key == "tls.certificates":
		return usagef("--tls-certificates: %s", ce.Msg)
	case strings.HasSuffix(ce.Key, ".decrypt"):
		return usagef("--decrypt: %s", ce.Msg)
	}
	return errors.New(ce.Msg)
}

// statusEvery is how often systemd's STATUS= line is refreshed.
const statusEvery = 10 * time.Second

// serveConfig serves cfg until ctx ends; SIGHUP reloads it with load,
// SIGUSR1 fetches every followed remote now. Under systemd (Type=notify)
// it sends READY=1 once the listeners accept and every export's ref
// resolves with its image laid out, STATUS= lines after, and STOPPING=1
// at exit.
func serveConfig(ctx context.Context, cfg *config.Config, load func() (*config.Config, error), log *slog.Logger) error {
	start := time.Now()
	// Listen first, before anything else is set up: a client connecting
	// while the repositories open (or are first fetched) waits in the
	// listen backlog for its handshake, instead of finding no socket.
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for _, a := range cfg.Listen {
		l, err := listen(a.Address)
		if err != nil {
			return err
		}
		lns = append(lns, l)
	}
	reg := metrics.New()
	repos := newRepoSet(cfg.CacheSize, cfg.CacheDir)
	defer repos.close()
	repos.onBuild = func(o imager.Options, d time.Duration, err error) { reg.LayoutBuilt(string(o.Format), d, err) }
	reg.SetCacheStats(repos.cacheStats)
	// Mirrors fetch until serving ends: their loops stop before the
	// repositories close.
	fctx, stopFollowing := context.WithCancel(ctx)
	fol := newFollowSet(fctx, log, reg, cfg.CacheDir)
	defer fol.close()
	defer stopFollowing()
	repos.follow = fol
	set, err := prepare(cfg, repos)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped during a first fetch: a clean stop, not a failure
		}
		return configError(err)
	}
	s := newServer(log, set, repos, load)
	s.reg, s.follow = reg, fol
	fol.setOnChange(func(m *follow.Mirror) {
		s.warm(m)
		notify.Status(reg.StatusLine())
	})

	var metricsSrv *http.Server
	var metricsDone chan struct{}
	if cfg.MetricsListen != "" {
		ml, err := metrics.Listen(cfg.MetricsListen)
		if err != nil {
			return err
		}
		metricsSrv, metricsDone = reg.Server(), make(chan struct{})
		go func() {
			defer close(metricsDone)
			if err := metricsSrv.Serve(ml); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics listener", "err", err)
			}
		}()
		if u, ok := strings.CutPrefix(cfg.MetricsListen, "unix:"); ok && !strings.HasPrefix(u, "@") {
			defer os.Remove(u)
		}
		log.Info("metrics", "listen", ml.Addr().String())
	}
	srv := &nbd.Server{Resolve: s.resolve, List: s.list, Logger: log, Observer: hideSecrets(metrics.NewNBD[nbd.Peer](reg), s),
		HandshakeTimeout: cfg.HandshakeTimeout}
	if set.tls != nil {
		srv.TLSConfig = s.tlsConfig()
	}
	var names []string
	for _, x := range cfg.Exports {
		names = append(names, x.Name)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	log.Info("serving", "config", cfg.File, "exports", strings.Join(names, ","), "listen", listenNames(cfg), inflaterAttr())

	var wg sync.WaitGroup
	errc := make(chan error, len(lns))
	for i, l := range lns {
		mode := nbdTLSMode(cfg.Mode(cfg.Listen[i]))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.ServeMode(ctx, l, mode); err != nil {
				errc <- fmt.Errorf("serve %s: %w", l.Addr(), err)
			}
		}()
	}
	// Listeners accept: lay out every export's image now, before saying
	// ready, so that a service is ready before its first guest (a client
	// connecting meanwhile waits for the same layout, not a second one).
	restoreFloor := gcfloor.Raise(layoutHeapFloor)
	errs := s.warm(nil)
	restoreFloor()
	if len(errs) > 0 {
		log.Warn("some exports could not be laid out; they are retried per connection", "err", errors.Join(errs...))
	}
	log.Info("ready", "startup", time.Since(start).Round(time.Millisecond), "following", fol.len())
	if _, err := notify.Ready(reg.StatusLine()); err != nil {
		log.Warn("sd_notify", "err", err)
	}
	status := time.NewTicker(statusEvery)
	defer status.Stop()

	var serveErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case serveErr = <-errc:
			break loop
		case <-hup:
			notify.Reloading()
			if s.reload() == nil {
				s.warm(nil)
			}
			notify.Ready(reg.StatusLine())
		case <-usr1:
			if fol.trigger() {
				log.Info("SIGUSR1: fetching now", "remotes", fol.len())
			} else {
				log.Info("SIGUSR1: no remote is followed; nothing to fetch")
			}
		case <-status.C:
			notify.Status(reg.StatusLine())
		}
	}
	log.Info("shutting down")
	notify.Stopping()
	stopFollowing()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	for _, l := range lns {
		l.Close()
	}
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	wg.Wait()
	if metricsSrv != nil {
		metricsSrv.Shutdown(sctx)
		<-metricsDone
	}
	return serveErr
}

// listenNames lists the listeners with their TLS modes, for the log.
func listenNames(cfg *config.Config) string {
	var out []string
	for _, l := range cfg.Listen {
		out = append(out, l.Address+" tls="+string(cfg.Mode(l)))
	}
	return strings.Join(out, ",")
}

// listen opens a TCP or unix listener. A unix socket gets mode 0660, a
// stale socket file left by a dead server (connection refused) is
// replaced, and the file is removed when the listener closes. "unix:@NAME"
// is a Linux abstract socket (no file, no mode).
func listen(addr string) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, usagef("--listen %q: want HOST:PORT or unix:PATH", addr)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("serve: %w", err)
		}
		return l, nil
	}
	if path == "" || path == "@" {
		return nil, usagef("--listen %q: want unix:PATH", addr)
	}
	abstract := strings.HasPrefix(path, "@")
	if st, err := os.Lstat(path); err == nil && !abstract {
		if st.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("serve: %s exists and is not a socket", path)
		}
		c, err := net.Dial("unix", path)
		switch {
		case err == nil:
			c.Close()
			return nil, fmt.Errorf("serve: %s: another server is listening there", path)
		case errors.Is(err, syscall.ECONNREFUSED):
			os.Remove(path) // stale: nobody listens
		default:
			return nil, fmt.Errorf("serve: %s exists and cannot be checked: %w", path, err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	if !abstract {
		if err := os.Chmod(path, 0o660); err != nil {
			l.Close()
			return nil, fmt.Errorf("serve: %w", err)
		}
	}
	return l, nil
}

// Layouts know their zero runs: NBD block status reports them as holes.
var _ nbd.ExtentImage = (*imager.Layout)(nil)
