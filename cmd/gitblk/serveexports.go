package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gitblk/gitblk/config"
	"github.com/gitblk/gitblk/follow"
	"github.com/gitblk/gitblk/gitfs"
	"github.com/gitblk/gitblk/imager"
	"github.com/gitblk/gitblk/metrics"
	"github.com/gitblk/gitblk/nbd"
	"github.com/gitblk/gitblk/policy"
	"github.com/gitblk/gitblk/secrets"
)

// server resolves export names for NBD connections against the current
// exportSet, applying each export's access rules to the peer.
type server struct {
	log    *slog.Logger
	cur    atomic.Pointer[exportSet]
	repos  *repoSet
	load   func() (*config.Config, error) // reads the config again (SIGHUP)
	pool   *secrets.Pool
	budget *secrets.Budget
	reg    *metrics.Registry // nil: no metrics
	follow *followSet        // nil: nothing followed

	reloadMu sync.Mutex // one reload at a time

	mu     sync.Mutex
	warned map[string]bool // tree+format whose warnings were logged
	noLock bool            // logged that plaintext memory could not be locked
}

func newServer(log *slog.Logger, set *exportSet, repos *repoSet, load func() (*config.Config, error)) *server {
	s := &server{log: log, repos: repos, load: load, pool: secrets.NewPool(),
		budget: secrets.NewBudget(set.cfg.MaxSecretMemory), warned: map[string]bool{}}
	s.cur.Store(set)
	return s
}

// warnOnce logs an image's warnings the first time its tree and options
// are seen.
func (s *server) warnOnce(c *gitfs.Commit, opts imager.Options, ws []imager.Warning) {
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
}

// warnUnlocked logs, once, that plaintext memory could not be locked.
func (s *server) warnUnlocked() {
	s.mu.Lock()
	first := !s.noLock
	s.noLock = true
	s.mu.Unlock()
	if first {
		s.log.Warn("decrypted files are held in memory that could not be locked (RLIMIT_MEMLOCK too small): it may be swapped out; raise LimitMEMLOCK")
	}
}

// peerOf turns what nbd established into what policy decides on. A
// certificate counts only when crypto/tls verified it against the CA.
func peerOf(p nbd.Peer) policy.Peer {
	q := policy.Peer{Network: p.Network}
	if a, ok := p.Addr.(*net.TCPAddr); ok {
		if ap := a.AddrPort(); ap.Addr().IsValid() {
			q.Addr = ap.Addr().Unmap()
		}
	} else if p.Network == "tcp" && p.Addr != nil {
		if ap, err := netip.ParseAddrPort(p.Addr.String()); err == nil {
			q.Addr = ap.Addr().Unmap()
		}
	}
	if p.Cred != nil {
		q.Cred = &policy.Cred{PID: p.Cred.PID, UID: p.Cred.UID, GID: p.Cred.GID}
	}
	if p.TLS != nil {
		q.TLS = true
		if len(p.TLS.VerifiedChains) > 0 && len(p.TLS.VerifiedChains[0]) > 0 {
			q.Cert = p.TLS.VerifiedChains[0][0]
		}
	}
	return q
}

// resolve pins an export name, for peer, to the commit its ref names now.
// A secret export answers every failure (refused, missing, undecryptable)
// as a name that does not exist, so its name cannot be probed; the reason
// goes to the log.
func (s *server) resolve(ctx context.Context, name string, np nbd.Peer) (*nbd.Export, error) {
	le, rev, format, err := s.lookup(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", nbd.ErrUnknownExport, err)
	}
	x, err := s.decide(le, name, rev, format, peerOf(np))
	if err != nil {
		s.repos.unhold(le.r)
		return nil, err
	}
	release := x.Release
	x.Release = func() {
		release()
		s.repos.unhold(le.r)
	}
	return x, nil
}

// lookup finds name in the current set and holds its repository open.
func (s *server) lookup(name string) (*liveExport, string, imager.Format, error) {
	for {
		le, rev, format, err := s.cur.Load().lookup(name)
		if err != nil || s.repos.hold(le.r) {
			return le, rev, format, err
		}
		// A reload closed the repository in between: the set is new.
	}
}

// decide applies the export's rules to peer and pins the image.
func (s *server) decide(le *liveExport, name, rev string, format imager.Format, peer policy.Peer) (*nbd.Export, error) {
	if d := le.x.Access.Decide(peer); !d.Allowed {
		s.log.Warn("refused", "export", name, "peer", peer.String(), "secret", le.x.Secret, "reason", d.Reason)
		switch {
		case le.x.Secret:
			return nil, fmt.Errorf("%w: %q refused", nbd.ErrUnknownExport, name)
		case d.NeedTLS:
			return nil, fmt.Errorf("%w: %s", nbd.ErrTLSRequired, d.Reason)
		}
		return nil, fmt.Errorf("%w: %s", nbd.ErrPolicy, d.Reason)
	}
	x, err := s.pinExport(le, name, rev, format)
	if err != nil && le.x.Secret {
		s.log.Error("secret export unavailable", "export", name, "peer", peer.String(), "err", err)
		return nil, fmt.Errorf("%w: %q unavailable", nbd.ErrUnknownExport, name)
	}
	return x, err
}

// pinExport resolves rev and pins the image for a connection.
func (s *server) pinExport(le *liveExport, name, rev string, format imager.Format) (_ *nbd.Export, err error) {
	c, err := le.r.repo.Resolve(rev)
	if err != nil {
		if rev != le.x.Ref {
			return nil, fmt.Errorf("%w: %v", nbd.ErrUnknownExport, err)
		}
		return nil, err
	}
	unpin, err := s.pinCommit(le, name, c)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			unpin()
		}
	}()
	opts := le.x.Image.Options(format)
	var l *imager.Layout
	var release func()
	if le.id != nil {
		var ws []imager.Warning
		l, ws, release, err = s.pool.Acquire(secretKey(le, c, opts), func() (*imager.Layout, []imager.Warning, *secrets.Decrypted, error) {
			l, ws, dec, err := secretImage(le, c, opts, s.budget)
			if err == nil {
				if !dec.Locked() {
					s.warnUnlocked()
				}
				s.log.Info("decrypted", "export", name, "commit", c.ID, "files", dec.Files(), "bytes", dec.Bytes(),
					"secret_memory_used", s.budget.Used())
			}
			return l, ws, dec, err
		})
		if err != nil {
			s.log.Error("image", "export", name, "rev", rev, "commit", c.ID, "format", string(opts.Format), "err", err)
			return nil, err
		}
		s.warnOnce(c, opts, ws)
	} else {
		var ws []imager.Warning
		l, ws, err = le.r.images.Image(c, opts)
		if err != nil {
			s.log.Error("image", "export", name, "rev", rev, "commit", c.ID, "format", string(opts.Format), "err", err)
			return nil, err
		}
		s.warnOnce(c, opts, ws)
		// Public images are bounded by gitfs.MaxImages over all
		// repositories (repoSet shares one gitfs.Pins); decrypted ones by
		// the secret memory budget.
		if release, err = le.r.images.Pin(l); err != nil {
			return nil, err
		}
	}
	if !le.x.Secret { // a secret name must not show where NBD hides it
		s.served(name, rev, c, opts.Format)
	}
	imageRelease := release
	release = func() {
		imageRelease()
		unpin()
	}
	return &nbd.Export{
		Name:        name,
		Description: fmt.Sprintf("gitblk %s %s commit %s", opts.Format, rev, c.ID),
		Image:       l,
		Release:     release,
		LogAttrs:    []any{"ref", rev, "commit", c.ID, "format", string(opts.Format)},
	}, nil
}

// pinCommit holds commit c in le's mirror, when le follows a remote, so
// that neither a force-push upstream nor gc on the mirror can take the
// objects a connection reads; the returned func releases it.
func (s *server) pinCommit(le *liveExport, name string, c *gitfs.Commit) (release func(), err error) {
	if le.m == nil {
		return func() {}, nil
	}
	release, err = le.m.Pin(c.ID)
	if err != nil {
		s.log.Error("pin", "export", name, "commit", c.ID, "err", err)
		return nil, err
	}
	return release, nil
}

// served records that export name serves commit c of rev in format now
// (gitblk_export_info and /status).
func (s *server) served(name, rev string, c *gitfs.Commit, format imager.Format) {
	if s.reg != nil {
		s.reg.SetExport(metrics.Export{Name: name, Ref: rev, Commit: c.ID, Format: string(format)})
	}
}

// warm resolves every export that names a ref and lays out its image
// (public exports: a decrypting one is only resolved, as its plaintext is
// made per connection), so that the first client does not wait for it,
// and records what each serves. With m, only the exports on that mirror
// are: after a fetch moved its refs. It returns the failures.
func (s *server) warm(m *follow.Mirror) []error {
	// Every export's ref is resolved first; then the images are laid out,
	// each commit's formats one after another over one listing (the tar
	// and fat exports of a tree list it once), different commits at once.
	type job struct {
		le   *liveExport
		c    *gitfs.Commit
		opts imager.Options
		l    *imager.Layout
		ws   []imager.Warning
		err  error
	}
	var errs []error
	var jobs []*job
	// A ref is resolved once per repository: the tar and fat exports of
	// one ref (and the default export) share its commit.
	type refOf struct {
		r   *gitfs.Repo
		ref string
	}
	resolved := map[refOf]*gitfs.Commit{}
	for _, le := range s.cur.Load().sorted() {
		if le.x.Ref == "" || m != nil && le.m != m {
			continue
		}
		k := refOf{le.r.repo, le.x.Ref}
		c, err := resolved[k], error(nil)
		if c == nil {
			c, err = le.r.repo.Resolve(le.x.Ref)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("export %q: %w", le.x.Name, err))
			s.log.Error("resolve", "export", le.x.Name, "ref", le.x.Ref, "err", err)
			continue
		}
		resolved[k] = c
		jobs = append(jobs, &job{le: le, c: c, opts: le.x.Image.Options("")})
	}
	// One goroutine per commit of a repository, laying its formats out in
	// the exports' order (the default export first) over one listing.
	type group struct {
		im   *gitfs.Images
		c    *gitfs.Commit
		jobs []*job
	}
	var groups []*group
	for _, j := range jobs {
		if j.le.id != nil {
			continue
		}
		var g *group
		for _, h := range groups {
			if h.im == j.le.r.images && h.c.Tree == j.c.Tree {
				g = h
				break
			}
		}
		if g == nil {
			g = &group{im: j.le.r.images, c: j.c}
			groups = append(groups, g)
		}
		g.jobs = append(g.jobs, j)
	}
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			opts := make([]imager.Options, len(g.jobs))
			for i, j := range g.jobs {
				opts[i] = j.opts
			}
			for i, b := range g.im.All(g.c, opts...) {
				g.jobs[i].l, g.jobs[i].ws, g.jobs[i].err = b.Layout, b.Warnings, b.Err
			}
		}()
	}
	wg.Wait()
	// One image per tree is prefetched: the tree's other formats share its
	// blobs. Secret exports never are: their plaintext stays out of the
	// cache until a guest allowed to read it asks.
	for _, g := range groups {
		if i := slices.IndexFunc(g.jobs, func(j *job) bool { return j.err == nil && !j.le.x.Secret }); i >= 0 {
			le, l := g.jobs[i].le, g.jobs[i].l
			runInBackground(func() { s.prefetch(le, l) })
		}
	}
	for _, j := range jobs {
		le, c, opts := j.le, j.c, j.opts
		if le.id == nil {
			if j.err != nil {
				errs = append(errs, fmt.Errorf("export %q: %w", le.x.Name, j.err))
				s.log.Error("image", "export", le.x.Name, "ref", le.x.Ref, "commit", c.ID, "format", string(opts.Format), "err", j.err)
				continue
			}
			s.warnOnce(c, opts, j.ws)
			if m != nil {
				s.log.Info("new commit laid out", "export", le.x.Name, "ref", le.x.Ref, "commit", c.ID, "format", string(opts.Format), "size", j.l.Size())
			}
		}
		if !le.x.Secret {
			s.served(le.x.Name, le.x.Ref, c, opts.Format)
		}
	}
	return errs
}

// prefetch reads l, the image of export le, into its repository's memory
// cache when it is small enough (see gitfs.Repo.Prefetch), so that the
// first guest of a small site is served from memory. It is for a
// goroutine of its own.
func (s *server) prefetch(le *liveExport, l *imager.Layout) {
	t0 := time.Now()
	done, err := le.r.repo.Prefetch(l)
	if err != nil {
		if !errors.Is(err, gitfs.ErrClosed) { // a reload or a stop closed the repository meanwhile
			s.log.Warn("prefetch", "export", le.x.Name, "err", err)
		}
		return
	}
	if done {
		if s.reg != nil {
			s.reg.Prefetched(l.Size())
		}
		s.log.Info("prefetched", "export", le.x.Name, "bytes", l.Size(), "took", time.Since(t0).Round(time.Microsecond))
	}
}

// list names the exports peer may learn of for NBD_OPT_LIST: secret
// exports are never listed.
func (s *server) list(_ context.Context, np nbd.Peer) []string {
	peer := peerOf(np)
	return s.cur.Load().names(func(le *liveExport) bool { return le.x.Access.Listed(peer) },
		func(err error) { s.log.Warn("list refs", "err", err) })
}

// tlsConfig is what nbd uses for STARTTLS: the current set's certificates,
// read at each handshake, so a reload takes effect for new connections.
func (s *server) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			if t := s.cur.Load().tls; t != nil {
				return t, nil
			}
			return nil, errors.New("serve: no TLS certificates configured")
		},
	}
}

// reload reads the config and the certificates again. New connections
// see the new set; open ones keep what they pinned. A config that does
// not validate is logged and the old one kept.
func (s *server) reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.cur.Load()
	cfg, err := s.load()
	if err == nil && (cfg.TLS.Certificates == "") != (old.cfg.TLS.Certificates == "") {
		err = cfg.Errorf("tls.certificates", "%v", errNoCertificates)
	}
	var set *exportSet
	if err == nil {
		set, err = prepare(cfg, s.repos)
	}
	if err != nil {
		s.repos.prune(old) // what a failed prepare opened
		if s.follow != nil {
			s.follow.prune(old)
		}
		s.log.Error("reload failed; still serving the previous config", "err", err)
		return err
	}
	if !reflect.DeepEqual(cfg.Listen, old.cfg.Listen) || cfg.TLS.Mode != old.cfg.TLS.Mode {
		s.log.Warn("reload: listeners and TLS modes are not changed by a reload; restart the server to apply them")
	}
	if cfg.MetricsListen != old.cfg.MetricsListen {
		s.log.Warn("reload: metrics-listen is not changed by a reload; restart the server to apply it")
	}
	if cfg.CacheSize != old.cfg.CacheSize || cfg.CacheDir != old.cfg.CacheDir {
		s.log.Warn("reload: cache-size and cache-dir apply to repositories opened from now on")
	}
	s.budget.SetMax(cfg.MaxSecretMemory)
	s.cur.Store(set)
	s.repos.prune(set)
	if s.follow != nil {
		s.follow.prune(set)
	}
	s.log.Info("reloaded", "config", cfg.File, "exports", len(cfg.Exports), "repositories", s.repos.len())
	return nil
}
