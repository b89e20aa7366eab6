package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gitblk/gitblk/config"
	"github.com/gitblk/gitblk/follow"
	"github.com/gitblk/gitblk/gitfs"
	"github.com/gitblk/gitblk/metrics"
)

// followSet keeps the mirrors of the remotes a config follows, one per
// URL whatever the number of exports that serve it, fetching each on its
// interval until the server stops or a reload drops it. Safe for
// concurrent use.
type followSet struct {
	ctx      context.Context // the server's: ends every mirror's loop
	log      *slog.Logger
	reg      *metrics.Registry
	cacheDir string // the command line's or config's cache directory ("" for the default)

	createMu sync.Mutex // one mirror made (and first fetched) at a time

	mu       sync.Mutex
	mirrors  map[string]*followed // by URL
	onChange func(*follow.Mirror) // told of a fetch that moved refs
	wg       sync.WaitGroup
}

// followed is a mirror and its fetch loop.
type followed struct {
	m      *follow.Mirror
	cfg    config.Follow
	cancel context.CancelFunc
}

func newFollowSet(ctx context.Context, log *slog.Logger, reg *metrics.Registry, cacheDir string) *followSet {
	return &followSet{ctx: ctx, log: log, reg: reg, cacheDir: cacheDir, mirrors: map[string]*followed{}}
}

// mirrorDir is where the mirror of f lives: f.Dir, else a directory named
// after the URL under the cache directory ("mirrors/NAME-HASH.git").
func mirrorDir(f *config.Follow, cacheDir string) (string, error) {
	if f.Dir != "" {
		return filepath.Abs(f.Dir)
	}
	if cacheDir == "" {
		cacheDir = gitfs.DefaultCacheDir()
	}
	if cacheDir == "" {
		return "", errors.New("no cache directory to keep the mirror in: give --follow-dir (follow-dir) or --cache-dir")
	}
	sum := sha256.Sum256([]byte(f.URL))
	name := strings.TrimSuffix(strings.TrimRight(f.URL, "/"), ".git")
	if i := strings.LastIndexAny(name, "/:"); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, name)
	if len(name) > 64 {
		name = name[:64]
	}
	return filepath.Abs(filepath.Join(cacheDir, "mirrors", strings.TrimLeft(name+"-", ".")+hex.EncodeToString(sum[:6])+".git"))
}

// mirror returns the mirror of f in dir, making it on first use: the
// mirror is created or reopened, fetched once now (so that the exports
// resolve before the server says it is ready), and then fetched on its
// interval. A first fetch that fails is an error only when the mirror has
// nothing to serve; otherwise what it holds is served and the failure
// logged.
func (fs *followSet) mirror(f *config.Follow, dir string) (*follow.Mirror, error) {
	fs.createMu.Lock()
	defer fs.createMu.Unlock()
	fs.mu.Lock()
	fd := fs.mirrors[f.URL]
	fs.mu.Unlock()
	if fd != nil {
		if fd.cfg != *f {
			fs.log.Warn("reload: follow settings of a remote already followed change at the next restart", "remote", f.URL)
		}
		return fd.m, nil
	}
	url := f.URL
	m, err := follow.New(follow.Config{
		URL: url, Dir: dir, Every: f.Every,
		SSHKey: f.SSHKey, KnownHosts: f.KnownHosts, Credentials: f.Credentials,
		OnFetch: func(r follow.Result) { fs.fetched(url, r) },
	}, fs.log)
	if err != nil {
		return nil, err
	}
	fs.reg.SetFollowPins(url, func() int { return len(m.Status().Pinned) })
	r := m.Fetch(fs.ctx)
	if r.Err != nil {
		if len(r.Refs) == 0 {
			return nil, fmt.Errorf("first fetch into the empty mirror %s failed: %w", m.GitDir(), r.Err)
		}
		fs.log.Warn("follow: serving what the mirror holds until a fetch succeeds", "remote", url, "dir", m.GitDir())
	}
	ctx, cancel := context.WithCancel(fs.ctx)
	fs.mu.Lock()
	fs.mirrors[url] = &followed{m: m, cfg: *f, cancel: cancel}
	fs.mu.Unlock()
	fs.wg.Add(1)
	go func() {
		defer fs.wg.Done()
		m.Run(ctx)
	}()
	fs.log.Info("following", "remote", url, "dir", m.GitDir(), "every", m.Every())
	return m, nil
}

// fetched records a fetch's result and, when refs moved, tells the server.
func (fs *followSet) fetched(url string, r follow.Result) {
	fs.reg.Fetched(url, r.Start, r.Duration, r.Changed, r.Err)
	if r.Err != nil || !r.Changed {
		return
	}
	fs.mu.Lock()
	fd, f := fs.mirrors[url], fs.onChange
	fs.mu.Unlock()
	if fd != nil && f != nil {
		go f(fd.m) // OnFetch runs on the fetching goroutine: keep it short
	}
}

// setOnChange sets what a fetch that moved refs calls.
func (fs *followSet) setOnChange(f func(*follow.Mirror)) {
	fs.mu.Lock()
	fs.onChange = f
	fs.mu.Unlock()
}

// trigger fetches every mirror now (SIGUSR1); false when none is followed.
func (fs *followSet) trigger() bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, fd := range fs.mirrors {
		fd.m.Trigger()
	}
	return len(fs.mirrors) > 0
}

// len returns how many remotes are followed.
func (fs *followSet) len() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return len(fs.mirrors)
}

// prune stops following the remotes set does not name. Connections still
// reading a dropped mirror's commits keep their pins until they close.
func (fs *followSet) prune(set *exportSet) {
	named := map[string]bool{}
	for _, le := range set.exports {
		if le.x.Follow != nil {
			named[le.x.Follow.URL] = true
		}
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for url, fd := range fs.mirrors {
		if !named[url] {
			fd.cancel()
			delete(fs.mirrors, url)
			fs.log.Info("no longer following", "remote", url)
		}
	}
}

// close stops every fetch loop and waits for them.
func (fs *followSet) close() {
	fs.mu.Lock()
	for _, fd := range fs.mirrors {
		fd.cancel()
	}
	fs.mu.Unlock()
	fs.wg.Wait()
}

// followFlags are serve's flags for following a remote with the
// one-repository form: gitblk serve --follow URL REF.
type followFlags struct {
	url, dir                        string
	every                           time.Duration
	sshKey, knownHosts, credentials string
}

func (f *followFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.url, "follow", "", "follow this git remote (any URL git fetch takes): keep a mirror of it, fetch on an interval and on SIGUSR1, serve REF as the mirror has it; REPO is then not given")
	fs.StringVar(&f.dir, "follow-dir", "", "with --follow: the mirror, a bare repository gitblk owns (default: under --cache-dir, mirrors/NAME-HASH.git)")
	fs.DurationVar(&f.every, "follow-every", follow.DefaultEvery, "with --follow: fetch interval")
	fs.StringVar(&f.sshKey, "follow-ssh-key", "", "with --follow: private key file for an ssh remote")
	fs.StringVar(&f.knownHosts, "follow-known-hosts", "", "with --follow: known_hosts file that must list the ssh remote's host key")
	fs.StringVar(&f.credentials, "follow-credentials", "", "with --follow: file of git credential lines (username=..., password=...) for an https remote")
}

// check refuses --follow-* without --follow.
func (f *followFlags) check(fs *flag.FlagSet) error {
	if f.url != "" {
		return nil
	}
	var bad []string
	fs.Visit(func(fl *flag.Flag) {
		if strings.HasPrefix(fl.Name, "follow-") {
			bad = append(bad, "--"+fl.Name)
		}
	})
	if len(bad) > 0 {
		return usagef("%s: only with --follow", strings.Join(bad, ", "))
	}
	return nil
}

// follow is the config.Follow the flags say, with the mirror in dir.
func (f *followFlags) follow(dir string) *config.Follow {
	return &config.Follow{URL: f.url, Dir: dir, Every: f.every, SSHKey: f.sshKey, KnownHosts: f.knownHosts, Credentials: f.credentials}
}
