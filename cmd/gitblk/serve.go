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
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gitblk/gitblk/gitfs"
	"github.com/gitblk/gitblk/imager"
	"github.com/gitblk/gitblk/nbd"
)

const serveExamples = `  gitblk serve /srv/site.git main                       # nbd://127.0.0.1:10809/
  gitblk serve --format fat --listen unix:/run/gitblk/site.sock /srv/site.git main
  gitblk serve --refs 'refs/tags/*' . main               # also nbd://.../refs/tags/v1:fat
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
	fs := newFlags("serve", "serve [flags] REPO REF", serveExamples, stderr)
	var cf commonFlags
	var listens, refs stringList
	cf.register(fs)
	fs.Var(&listens, "listen", "address to serve on: HOST:PORT or unix:PATH; repeatable (default "+defaultListen+")")
	fs.Var(&refs, "refs", "also serve refs matching this pattern, e.g. 'refs/tags/*', as exports REF and REF:FORMAT; repeatable")
	logJSON := fs.Bool("log-json", false, "log JSON lines instead of text")
	pos, err := parseArgs(fs, args, 2)
	if err != nil {
		return err
	}
	if _, err := cf.options(""); err != nil {
		return err
	}
	if err := checkPatterns(refs); err != nil {
		return err
	}
	if len(listens) == 0 {
		listens = stringList{defaultListen}
	}
	var log *slog.Logger
	if *logJSON {
		log = slog.New(slog.NewJSONHandler(stderr, nil))
	} else {
		log = slog.New(slog.NewTextHandler(stderr, nil))
	}

	// Fail fast on a bad REF, and lay out the default image while
	// listeners come up, so the first client does not wait for it.
	cf.setup(log)
	o, err := cf.openRev(pos[0], pos[1])
	if err != nil {
		return err
	}
	repo, c := o.repo, o.commit
	defer repo.Close()
	s := &server{repo: repo, images: gitfs.NewImages(repo, 0, o.cacheDir), img: cf.imageFlags, log: log,
		names: exportNamer{defaultRev: pos[1], patterns: refs}, warned: map[string]bool{}}
	go s.image(c, "")

	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for _, a := range listens {
		l, err := listen(a)
		if err != nil {
			return err
		}
		lns = append(lns, l)
	}
	srv := &nbd.Server{Resolve: s.resolve, List: s.list, Logger: log}
	log.Info("serving", "repo", pos[0], "ref", pos[1], "commit", c.ID, "format", cf.format, "listen", listens.String())

	var wg sync.WaitGroup
	errc := make(chan error, len(lns))
	for _, l := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ctx, l); err != nil {
				errc <- fmt.Errorf("serve %s: %w", l.Addr(), err)
			}
		}()
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
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

// server maps export names to pinned images of the repository.
type server struct {
	repo   *gitfs.Repo
	images *gitfs.Images
	img    imageFlags
	names  exportNamer
	log    *slog.Logger

	mu     sync.Mutex
	warned map[string]bool // tree+format whose warnings were logged
}

// image returns the layout of commit c in format ("" = default), logging
// its warnings once per tree and options.
func (s *server) image(c *gitfs.Commit, format string) (*imager.Layout, imager.Options, error) {
	opts, err := s.img.options(format)
	if err != nil {
		return nil, opts, err
	}
	l, ws, err := s.images.Image(c, opts)
	if err != nil {
		s.log.Error("image", "rev", c.Rev, "commit", c.ID, "format", string(opts.Format), "err", err)
		return nil, opts, err
	}
	key := fmt.Sprintf("%s %+v", c.Tree, opts)
	s.mu.Lock()
	first := !s.warned[key]
	if len(s.warned) >= maxWarnedKeys {
		clear(s.warned) // a long-running server sees many trees: forget, at worst warn again
	}
	s.warned[key] = true
	s.mu.Unlock()
	if first {
		logWarnings(s.log, c, opts.Format, ws)
	}
	return l, opts, nil
}

// resolve pins an export name to the commit its ref names now.
func (s *server) resolve(ctx context.Context, name string) (*nbd.Export, error) {
	x, err := s.names.parse(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", nbd.ErrUnknownExport, err)
	}
	c, err := s.repo.Resolve(x.rev)
	if err != nil {
		if x.rev != s.names.defaultRev {
			return nil, fmt.Errorf("%w: %v", nbd.ErrUnknownExport, err)
		}
		return nil, err
	}
	l, opts, err := s.image(c, x.format)
	if err != nil {
		return nil, err
	}
	release, err := s.images.Pin(l)
	if err != nil {
		return nil, err
	}
	return &nbd.Export{
		Name:        name,
		Description: fmt.Sprintf("gitblk %s %s commit %s", opts.Format, x.rev, c.ID),
		Image:       l,
		Release:     release,
		LogAttrs:    []any{"ref", x.rev, "commit", c.ID, "format", string(opts.Format)},
	}, nil
}

// list names the exports for NBD_OPT_LIST.
func (s *server) list() []string {
	var refs []string
	if len(s.names.patterns) > 0 {
		var err error
		if refs, err = s.repo.Refs(); err != nil {
			s.log.Warn("list refs", "err", err)
		}
	}
	return s.names.list(refs)
}
