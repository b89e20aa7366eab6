package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gitblk/gitblk/config"
	"github.com/gitblk/gitblk/follow"
	"github.com/gitblk/gitblk/gitfs"
	"github.com/gitblk/gitblk/imager"
	"github.com/gitblk/gitblk/metrics"
	"github.com/gitblk/gitblk/secrets"
)

// exportSet is one generation of the configuration, ready to serve: new
// connections resolve names against the current set; a connection keeps
// the images it pinned under an older one.
type exportSet struct {
	cfg      *config.Config
	exports  map[string]*liveExport // by name
	patterns []*liveExport          // exports that also serve refs (NAME/REF)
	tls      *tls.Config            // nil without certificates
}

// liveExport is an export with what it needs opened.
type liveExport struct {
	x  *config.Export
	r  *openRepo
	id *secrets.Identity // nil unless x.Decrypt
	m  *follow.Mirror    // the mirror r is, when x follows a remote (serve only)
}

// openRepo is a repository opened once and shared by every export and
// generation of the config that names it.
type openRepo struct {
	path     string // absolute
	repo     *gitfs.Repo
	images   *gitfs.Images
	cacheDir string

	holds   int  // connections using it (repoSet.mu)
	dropped bool // the current config no longer names it: close with the last hold
	closed  bool
}

// repoSet opens repositories on first use. A repository that a reload
// drops is closed once no connection holds it. Safe for concurrent use.
type repoSet struct {
	cacheSize int64
	cacheDir  string
	pins      *gitfs.Pins // shared by every repository's Images: gitfs.MaxImages is process-wide

	// follow keeps the mirrors of followed remotes (serve); nil opens a
	// mirror's directory as it is, without fetching (build, mount).
	follow *followSet
	// onBuild, when set, is every repository's Images.OnBuild.
	onBuild func(imager.Options, time.Duration, error)

	mu     sync.Mutex
	repos  map[string]*openRepo
	closed metrics.CacheStats // counters of repositories closed, so totals never go back
}

func newRepoSet(cacheSize int64, cacheDir string) *repoSet {
	return &repoSet{cacheSize: cacheSize, cacheDir: cacheDir, pins: gitfs.NewPins(), repos: map[string]*openRepo{}}
}

// open returns the repository at path, opening it if needed.
func (rs *repoSet) open(path string) (*openRepo, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if r, ok := rs.repos[abs]; ok {
		return r, nil
	}
	opts := gitfs.Options{CacheSize: rs.cacheSize, CacheDir: rs.cacheDir}
	if opts.CacheDir == "" {
		if d := gitfs.DefaultCacheDir(); d != "" && os.MkdirAll(d, 0o700) == nil {
			opts.CacheDir = d
		}
	}
	repo, err := gitfs.Open(path, opts)
	if err != nil {
		return nil, err
	}
	r := &openRepo{path: abs, repo: repo, images: gitfs.NewImages(repo, 0, opts.CacheDir), cacheDir: opts.CacheDir}
	r.images.OnBuild = rs.onBuild
	rs.repos[abs] = r
	r.images.SetPins(rs.pins)
	setMemoryLimit(int64(len(rs.repos)) * max(rs.cacheSize, gitfs.DefaultCacheSize))
	return r, nil
}

// hold counts a connection's use of r; false if r was closed meanwhile
// (a reload dropped it: look the name up again).
func (rs *repoSet) hold(r *openRepo) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if r.closed {
		return false
	}
	r.holds++
	return true
}

// unhold ends a hold, closing r with the last one if it was dropped.
func (rs *repoSet) unhold(r *openRepo) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r.holds--
	if r.holds == 0 && r.dropped {
		rs.closeLocked(r)
	}
}

// prune marks the repositories set does not name as dropped, closing
// those no connection holds.
func (rs *repoSet) prune(set *exportSet) {
	named := map[*openRepo]bool{}
	for _, le := range set.exports {
		named[le.r] = true
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for _, r := range rs.repos {
		r.dropped = !named[r]
		if r.dropped && r.holds == 0 {
			rs.closeLocked(r)
		}
	}
}

func (rs *repoSet) closeLocked(r *openRepo) {
	if !r.closed {
		st := r.repo.CacheStats()
		rs.closed.Hits += st.Hits
		rs.closed.Misses += st.Misses
		rs.closed.HitBytes += st.HitBytes
		rs.closed.MissBytes += st.MissBytes
		r.closed = true
		r.repo.Close()
		delete(rs.repos, r.path)
	}
}

// cacheStats sums the blob caches' counters, for metrics.
func (rs *repoSet) cacheStats() metrics.CacheStats {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	sum := rs.closed
	for _, r := range rs.repos {
		st := r.repo.CacheStats()
		sum.Hits += st.Hits
		sum.Misses += st.Misses
		sum.HitBytes += st.HitBytes
		sum.MissBytes += st.MissBytes
		sum.Bytes += st.MemBytes
	}
	return sum
}

// len returns how many repositories are open.
func (rs *repoSet) len() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return len(rs.repos)
}

func (rs *repoSet) close() {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for _, r := range rs.repos {
		rs.closeLocked(r)
	}
}

// prepare opens everything cfg names: repositories, identities,
// certificates; it resolves every export's ref so a typo fails now.
// Errors name the config line (a *config.Error) when cfg came from a file.
func prepare(cfg *config.Config, rs *repoSet) (*exportSet, error) {
	set := &exportSet{cfg: cfg, exports: map[string]*liveExport{}}
	if cfg.TLS.Certificates != "" {
		t, err := loadTLS(cfg.TLS.Certificates)
		if err != nil {
			return nil, cfg.Errorf("tls.certificates", "%s: %v", cfg.TLS.Certificates, err)
		}
		set.tls = t
	}
	type refOf struct {
		r   *openRepo
		ref string
	}
	checked := map[refOf]bool{}
	for i := range cfg.Exports {
		x := &cfg.Exports[i]
		path, m, err := rs.followed(cfg, x)
		if err != nil {
			return nil, x.Errorf("follow", "%v", err)
		}
		r, err := rs.open(path)
		if err != nil {
			return nil, x.Errorf("repository", "%v", err)
		}
		le := &liveExport{x: x, r: r, m: m}
		if x.Decrypt != "" {
			if le.id, err = secrets.LoadIdentity(x.Decrypt); err != nil {
				return nil, x.Errorf("decrypt", "%v", err)
			}
		}
		if x.Ref != "" && !checked[refOf{r, x.Ref}] {
			if _, err := r.repo.Resolve(x.Ref); err != nil {
				return nil, x.Errorf("ref", "%v", err)
			}
			checked[refOf{r, x.Ref}] = true // the tar and fat exports of one ref check it once
		}
		set.exports[x.Name] = le
		if len(x.Refs) > 0 {
			set.patterns = append(set.patterns, le)
		}
	}
	return set, nil
}

// followed returns the repository x serves: x.Repository, or, when x
// follows a remote, its mirror, made and fetched first when rs.follow is
// set (serve) and taken as it is otherwise.
func (rs *repoSet) followed(cfg *config.Config, x *config.Export) (string, *follow.Mirror, error) {
	if x.Follow == nil {
		return x.Repository, nil, nil
	}
	cacheDir := cfg.CacheDir
	if cacheDir == "" {
		cacheDir = rs.cacheDir
	}
	dir, err := mirrorDir(x.Follow, cacheDir)
	if err != nil {
		return "", nil, err
	}
	if rs.follow == nil {
		if _, err := os.Stat(dir); err != nil {
			return "", nil, fmt.Errorf("no mirror of %s yet (gitblk serve makes it): %w", x.Follow.URL, err)
		}
		return dir, nil, nil
	}
	m, err := rs.follow.mirror(x.Follow, dir)
	if err != nil {
		return "", nil, err
	}
	return m.GitDir(), m, nil
}

var errNoExport = errors.New("no such export")

// lookup maps an export name to the export, the revision it serves and
// the format a suffix asks for ("" for the export's own):
//
//	NAME               the export's ref
//	NAME/REF           a ref its patterns match ("REF" when NAME is "")
//	NAME/REF:FORMAT    the same in FORMAT, when the export allows suffixes
func (set *exportSet) lookup(name string) (le *liveExport, rev string, format imager.Format, err error) {
	if le, ok := set.exports[name]; ok && le.x.Ref != "" {
		return le, le.x.Ref, "", nil
	}
	for _, le := range set.patterns {
		rest := name
		if le.x.Name != "" {
			var ok bool
			if rest, ok = strings.CutPrefix(name, le.x.Name+"/"); !ok {
				continue
			}
		}
		ref, f := rest, ""
		if i := strings.LastIndexByte(rest, ':'); i >= 0 && le.x.FormatSuffix {
			ref, f = rest[:i], rest[i+1:]
			if _, err := imager.ParseFormat(f); err != nil {
				continue
			}
		}
		if (&exportNamer{patterns: le.x.Refs}).allowed(ref) {
			return le, ref, imager.Format(f), nil
		}
	}
	return nil, "", "", fmt.Errorf("%w %q", errNoExport, name)
}

// refName is the export name a ref is served under by le.
func (le *liveExport) refName(ref string) string {
	if le.x.Name == "" {
		return ref
	}
	return le.x.Name + "/" + ref
}

// names lists the export names for which listed returns true, sorted,
// then the names of the refs each pattern export serves now.
func (set *exportSet) names(listed func(*liveExport) bool, warn func(error)) []string {
	var out []string
	for _, le := range set.sorted() {
		if le.x.Ref != "" && listed(le) {
			out = append(out, le.x.Name)
		}
	}
	for _, le := range set.patterns {
		if !listed(le) {
			continue
		}
		refs, err := le.r.repo.Refs()
		if err != nil {
			warn(err)
			continue
		}
		namer := exportNamer{patterns: le.x.Refs}
		for _, ref := range refs {
			if namer.allowed(ref) {
				out = append(out, le.refName(ref))
			}
		}
	}
	return out
}

func (set *exportSet) sorted() []*liveExport {
	out := make([]*liveExport, 0, len(set.exports))
	for _, le := range set.exports {
		out = append(out, le)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].x.Name < out[j].x.Name })
	return out
}

// secretImage builds the image of commit c for a decrypting export: the
// tree with every NAME.age decrypted, in memory only.
func secretImage(le *liveExport, c *gitfs.Commit, opts imager.Options, budget *secrets.Budget) (*imager.Layout, []imager.Warning, *secrets.Decrypted, error) {
	tree, err := le.r.repo.CachedTree(c, true, le.r.cacheDir)
	if err != nil {
		return nil, nil, nil, err
	}
	dec, err := secrets.Decrypt(tree, le.r.repo, le.id, secrets.Options{MaxFile: le.x.MaxSecretFile, Budget: budget})
	if err != nil {
		return nil, nil, nil, err
	}
	l, ws, err := imager.Build(dec.Tree, dec, opts)
	if err != nil {
		dec.Release()
		return nil, nil, nil, fmt.Errorf("%s image of %s: %w", opts.Format, c.ID, err)
	}
	return l, ws, dec, nil
}

// secretKey names a decrypted image in the pool: a pure function of
// (repository, tree, options, identity).
func secretKey(le *liveExport, c *gitfs.Commit, opts imager.Options) string {
	return fmt.Sprintf("%s\x00%s\x00%+v\x00%s\x00%d", le.r.path, c.Tree, opts, le.id.Fingerprint, le.x.MaxSecretFile)
}
