package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gitblk/gitblk/config"
	"github.com/gitblk/gitblk/imager"
	"github.com/gitblk/gitblk/nbd"
)

const serveExamples = `  gitblk serve /srv/site.git main                       # nbd://127.0.0.1:10809/
  gitblk serve --format fat --listen unix:/run/gitblk/site.sock /srv/site.git main
  gitblk serve --refs 'refs/tags/*' . main               # also nbd://.../refs/tags/v1:fat
  gitblk serve --config /etc/gitblk/gitblk.toml          # several exports, access rules, TLS, secrets
  gitblk serve --tls-certificates /etc/gitblk/tls --secret --decrypt /etc/gitblk/host.key \
      --allow cert-cn=vm-1 --listen 0.0.0.0:10809 /srv/keys.git main
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
	fs := newFlags("serve", "serve [flags] REPO REF\n       gitblk serve --config FILE", serveExamples, stderr)
	var cf commonFlags
	var listens, refs stringList
	var af accessFlags
	cf.register(fs)
	fs.Var(&listens, "listen", "address to serve on: HOST:PORT or unix:PATH; repeatable (default "+defaultListen+")")
	fs.Var(&refs, "refs", "also serve refs matching this pattern, e.g. 'refs/tags/*', as exports REF and REF:FORMAT; repeatable")
	af.register(fs)
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
		if err := wantArgs(fs, pos, 2); err != nil {
			return err
		}
		if _, err := cf.options(""); err != nil {
			return err
		}
		load = func() (*config.Config, error) { return shorthandConfig(&cf, listens, refs, &af, pos[0], pos[1]) }
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

// serveConfig serves cfg until ctx ends; SIGHUP reloads it with load.
func serveConfig(ctx context.Context, cfg *config.Config, load func() (*config.Config, error), log *slog.Logger) error {
	repos := newRepoSet(cfg.CacheSize, cfg.CacheDir)
	defer repos.close()
	set, err := prepare(cfg, repos)
	if err != nil {
		return configError(err)
	}
	s := newServer(log, set, repos, load)
	// Lay out the public images while listeners come up, so the first
	// client does not wait for them.
	for _, le := range set.sorted() {
		if le.x.Ref != "" && le.id == nil {
			go func() {
				if c, err := le.r.repo.Resolve(le.x.Ref); err == nil {
					if _, ws, err := le.r.images.Image(c, le.x.Image.Options("")); err == nil {
						s.warnOnce(c, le.x.Image.Options(""), ws)
					}
				}
			}()
		}
	}

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
	srv := &nbd.Server{Resolve: s.resolve, List: s.list, Logger: log}
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
	var serveErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case serveErr = <-errc:
			break loop
		case <-hup:
			s.reload()
		}
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	for _, l := range lns {
		l.Close()
	}
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	wg.Wait()
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
