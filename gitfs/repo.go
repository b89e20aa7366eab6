package gitfs

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitblk/gitblk/gitfs/odb"
	"github.com/gitblk/gitblk/imager"
	"github.com/gitblk/gitblk/internal/iovec"
)

// Sentinel errors. The object errors are the object store's: errors.Is
// matches them whichever package made the error.
var (
	ErrNotRepository   = errors.New("gitfs: not a git repository")
	ErrUnknownRevision = errors.New("gitfs: unknown revision")
	ErrMissingObject   = odb.ErrMissingObject
	ErrCorruptObject   = odb.ErrCorruptObject
	ErrClosed          = odb.ErrClosed
)

// Cache sizes (see odb.Options).
const (
	DefaultCacheSize     = odb.DefaultCacheSize
	DefaultDiskCacheSize = odb.DefaultDiskCacheSize
)

// Options configure a Repo.
type Options struct {
	// CacheSize, CacheDir and DiskCacheSize bound the object store's
	// caches (see odb.Options).
	CacheSize     int64
	CacheDir      string
	DiskCacheSize int64
	// Logger receives what goes wrong without being an error (a tree
	// listing cache file rebuilt); nil discards it.
	Logger *slog.Logger
}

// Commit is a revision resolved to a commit. Ids are hex.
type Commit struct {
	ID   string
	Tree string
	Time time.Time // committer time, as git archive uses
	Rev  string    // the revision as asked
}

// Repo is an open repository. It is safe for concurrent use.
type Repo struct {
	path   string // as given to Open
	gitDir string
	store  *odb.Store
	log    *slog.Logger

	badListings sync.Map       // listing cache files that could not be rewritten: warned about once
	saves       sync.WaitGroup // listings being written to the cache (Images)
}

var _ imager.BlobReader = (*Repo)(nil)

// Open opens the repository at path: a bare repository, a .git directory,
// or a work tree (its .git directory or .git file is followed).
func Open(path string, opts Options) (*Repo, error) {
	gitDir, err := findGitDir(path)
	if err != nil {
		return nil, err
	}
	st, err := odb.Open(gitDir, commonDir(gitDir), odb.Options{
		CacheSize: opts.CacheSize, CacheDir: opts.CacheDir, DiskCacheSize: opts.DiskCacheSize,
	})
	if errors.Is(err, odb.ErrNotRepository) {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotRepository, path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("gitfs: open %s: %w", path, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Repo{path: path, gitDir: gitDir, store: st, log: log}, nil
}

// Close releases files and removes the private spill directory. Reads
// in progress and listings being saved finish first; later calls fail
// with ErrClosed.
func (r *Repo) Close() error {
	r.saves.Wait()
	return r.store.Close()
}

// ReadBlob reads len(p) bytes of blob id at offset off, as
// io.ReaderAt.ReadAt (see odb.Store.ReadBlob).
func (r *Repo) ReadBlob(id imager.BlobID, p []byte, off int64) (int, error) {
	return r.store.ReadBlob(plumbing.Hash(id), p, off)
}

// CacheStats returns the blob cache's counters (see odb.Stats).
func (r *Repo) CacheStats() odb.Stats { return r.store.Stats() }

// findGitDir returns the git directory for path.
func findGitDir(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrNotRepository, path, err)
	}
	if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
		if err == nil {
			err = errors.New("not a directory")
		}
		return "", fmt.Errorf("%w: %s: %v", ErrNotRepository, path, err)
	}
	if isGitDir(abs) {
		return abs, nil
	}
	// A work tree: its .git, searched upwards from path as git does.
	for d := abs; ; {
		if g, ok := dotGit(d); ok {
			return g, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	return "", fmt.Errorf("%w: %s", ErrNotRepository, path)
}

// dotGit returns the git directory of work tree dir: its .git directory,
// or the one a .git file ("gitdir: <path>") names.
func dotGit(dir string) (string, bool) {
	dot := filepath.Join(dir, ".git")
	fi, err := os.Stat(dot)
	if err != nil {
		return "", false
	}
	if fi.IsDir() {
		return dot, isGitDir(dot)
	}
	b, err := os.ReadFile(dot)
	if err != nil {
		return "", false
	}
	rest, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "gitdir:")
	if !ok {
		return "", false
	}
	d := strings.TrimSpace(rest)
	if !filepath.IsAbs(d) {
		d = filepath.Join(dir, d)
	}
	return d, isGitDir(d)
}

// isGitDir reports whether dir looks like a git directory: HEAD and an
// objects directory (possibly through commondir).
func isGitDir(dir string) bool {
	if fi, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil || fi.IsDir() {
		return false
	}
	common := commonDir(dir)
	if fi, err := os.Stat(filepath.Join(common, "objects")); err != nil || !fi.IsDir() {
		return false
	}
	return true
}

// commonDir follows a linked work tree's commondir file, or returns dir.
func commonDir(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "commondir"))
	if err != nil {
		return dir
	}
	c := strings.TrimSpace(string(b))
	if !filepath.IsAbs(c) {
		c = filepath.Join(dir, c)
	}
	return c
}

// atPath adds to an object error where in the tree the object is.
func atPath(path string, err error) error {
	return fmt.Errorf("gitfs: at %q: %w", path, err)
}

var _ imager.BlobBatchReader = (*Repo)(nil)

// readsPool holds the object store's side of ReadBlobs' batches.
var readsPool = sync.Pool{New: func() any { return new([]odb.BlobRead) }}

// ReadBlobs serves many blob reads at once (see odb.Store.ReadBlobs).
func (r *Repo) ReadBlobs(reads []imager.BlobRead) {
	bp := readsPool.Get().(*[]odb.BlobRead)
	rs := slices.Grow((*bp)[:0], len(reads))[:len(reads)]
	for k := range reads {
		rs[k] = odb.BlobRead{ID: plumbing.Hash(reads[k].ID), P: reads[k].P, Off: reads[k].Off, Hint: reads[k].Hint}
	}
	r.store.ReadBlobs(rs)
	for k := range reads {
		reads[k].N, reads[k].Err = rs[k].N, rs[k].Err
	}
	clear(rs)
	*bp = rs[:0]
	readsPool.Put(bp)
}

var _ imager.BlobWarmer = (*Repo)(nil)

// WarmBlob has big blob id inflated into the caches in the background
// (see odb.Store.WarmBlob).
func (r *Repo) WarmBlob(id imager.BlobID, size int64) {
	r.store.WarmBlob(plumbing.Hash(id), size)
}

var _ imager.BlobLender = (*Repo)(nil)

// LendBlob describes n bytes of blob id at off as a piece to send rather
// than copy, when the caches hold them (see odb.Store.LendBlob).
func (r *Repo) LendBlob(id imager.BlobID, off int64, n int) (iovec.Piece, bool) {
	return r.store.LendBlob(plumbing.Hash(id), off, n)
}
