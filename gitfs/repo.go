package gitfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/osfs"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/filesystem/dotgit"

	"github.com/gitblk/gitblk/imager"
)

// Sentinel errors.
var (
	ErrNotRepository   = errors.New("gitfs: not a git repository")
	ErrUnknownRevision = errors.New("gitfs: unknown revision")
	ErrMissingObject   = errors.New("gitfs: missing object")
	ErrCorruptObject   = errors.New("gitfs: corrupt object")
	ErrClosed          = errors.New("gitfs: repository closed")
)

// Sizes and limits.
const (
	// DefaultCacheSize is the in-memory cache of inflated blob data used
	// when Options.CacheSize is 0. Reading every file of the Go tree once,
	// peak RSS was 130-141 MB with 32 MiB and 106-108 MB with 16 MiB (the
	// garbage collector lets the heap grow to twice what is live).
	DefaultCacheSize = 16 << 20
	// DefaultDiskCacheSize bounds the on-disk spill of big blobs when
	// Options.DiskCacheSize is 0.
	DefaultDiskCacheSize = 8 << 30
	// largeObjectThreshold is the size above which go-git streams an
	// object instead of reading it into memory (filesystem.Options).
	largeObjectThreshold = 1 << 20
	// gitCacheSize is go-git's own object cache (delta bases, small
	// objects), one shared by every storage in the pool: a base inflated
	// by one reader serves them all.
	gitCacheSize = 8 << 20
	// maxPool caps the number of independent go-git storages.
	maxPool = 8
	// maxRefsListed is how many existing refs an unknown-revision error names.
	maxRefsListed = 8
)

// Options configure a Repo.
type Options struct {
	// CacheSize is the number of bytes of inflated blob data held in
	// memory; 0 means DefaultCacheSize.
	CacheSize int64
	// CacheDir is where big blobs are spilled, inflated, for random
	// access; "" means a private temporary directory removed by Close.
	CacheDir string
	// DiskCacheSize bounds the bytes spilled to CacheDir; 0 means
	// DefaultDiskCacheSize; negative disables spilling (big blobs are
	// then only streamed).
	DiskCacheSize int64
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

	pool   chan *slot
	slots  []*slot
	closed chan struct{}
	once   sync.Once

	blobs    *blobCache
	sizes    sizer
	gitCache cache.Object // go-git's object cache, shared by the slots (it locks itself)
}

var _ imager.BlobReader = (*Repo)(nil)

// slot is one independent go-git storage. go-git's object storage is not
// safe for concurrent use (go-git#773), so each slot is used by one
// goroutine at a time: whoever took it from Repo.pool.
type slot struct {
	r  *Repo
	st *filesystem.Storage
	gr *gogit.Repository

	packStamp time.Time // modification time of objects/pack at load
	checked   time.Time // when packStamp was last compared
}

// packCheckInterval is how often a slot compares objects/pack with what it
// loaded: a repack or fetch changes it, and a slot holding deleted packs
// open would keep their disk space.
const packCheckInterval = time.Second

// Open opens the repository at path: a bare repository, a .git directory,
// or a work tree (its .git directory or .git file is followed).
func Open(path string, opts Options) (*Repo, error) {
	gitDir, err := findGitDir(path)
	if err != nil {
		return nil, err
	}
	r := &Repo{path: path, gitDir: gitDir, closed: make(chan struct{}), gitCache: cache.NewObjectLRU(gitCacheSize)}
	r.sizes.r = r
	n := runtime.GOMAXPROCS(0) * 2
	if n > maxPool {
		n = maxPool
	}
	if n < 2 {
		n = 2
	}
	r.pool = make(chan *slot, n)
	for i := 0; i < n; i++ {
		s := &slot{r: r}
		if err := s.load(); err != nil {
			r.closeSlots()
			return nil, fmt.Errorf("gitfs: open %s: %w", path, err)
		}
		r.slots = append(r.slots, s)
		r.pool <- s
	}
	r.blobs, err = newBlobCache(r, opts)
	if err != nil {
		r.closeSlots()
		return nil, fmt.Errorf("gitfs: open %s: %w", path, err)
	}
	return r, nil
}

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

// load (re)creates the slot's storage: a fresh view of refs, packs and
// loose objects. The old storage is closed.
func (s *slot) load() error {
	var fs billy.Filesystem = osfs.New(s.r.gitDir)
	if c := commonDir(s.r.gitDir); c != s.r.gitDir {
		fs = dotgit.NewRepositoryFilesystem(fs, osfs.New(c))
	}
	st := filesystem.NewStorageWithOptions(fs, s.r.gitCache, filesystem.Options{
		KeepDescriptors:      true,
		LargeObjectThreshold: largeObjectThreshold,
		// objects/info/alternates holds absolute paths: resolve them from
		// the file system root, not inside the repository.
		AlternatesFS: osfs.New(string(filepath.Separator)),
	})
	gr, err := gogit.Open(st, nil)
	if err != nil {
		_ = st.Close()
		if errors.Is(err, gogit.ErrRepositoryNotExists) {
			return fmt.Errorf("%w: %s", ErrNotRepository, s.r.gitDir)
		}
		return err
	}
	if s.st != nil {
		_ = s.st.Close()
	}
	s.st, s.gr = st, gr
	s.packStamp, s.checked = s.r.packDirStamp(), time.Now()
	return nil
}

// packDirStamp is the modification time of the objects/pack directory.
func (r *Repo) packDirStamp() time.Time {
	fi, err := os.Stat(filepath.Join(commonDir(r.gitDir), "objects", "pack"))
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// refresh reloads the slot when objects/pack changed since it was loaded
// (checked at most every packCheckInterval).
func (s *slot) refresh() {
	now := time.Now()
	if now.Sub(s.checked) < packCheckInterval {
		return
	}
	s.checked = now
	if !s.r.packDirStamp().Equal(s.packStamp) {
		_ = s.load() // on failure the old view stays; errors surface on use
	}
}

// acquire takes a slot from the pool.
func (r *Repo) acquire() (*slot, error) {
	select {
	case <-r.closed:
		return nil, ErrClosed
	default:
	}
	select {
	case s := <-r.pool:
		s.refresh()
		return s, nil
	case <-r.closed:
		return nil, ErrClosed
	}
}

func (r *Repo) release(s *slot) { r.pool <- s }

// withStore runs fn with a storage. When fn fails, the storage is reloaded
// (new packs and loose objects, refs re-read) and fn runs once more:
// `git gc` and `git repack` move objects between loose files and packs
// while we serve, and a fetch adds packs our index does not know yet.
func (r *Repo) withStore(fn func(s *slot) error) error {
	s, err := r.acquire()
	if err != nil {
		return err
	}
	defer r.release(s)
	err = fn(s)
	if err == nil || errors.Is(err, ErrClosed) {
		return err
	}
	if lerr := s.load(); lerr != nil {
		return fmt.Errorf("%w (reloading the object database: %v)", err, lerr)
	}
	return fn(s)
}

// Close releases files and removes the private spill directory. Reads
// in progress finish first; later calls fail with ErrClosed.
func (r *Repo) Close() error {
	var err error
	r.once.Do(func() {
		close(r.closed)
		// Wait for every slot to come back, then close them.
		for range r.slots {
			<-r.pool
		}
		r.closeSlots()
		r.sizes.close()
		err = r.blobs.close()
	})
	return err
}

func (r *Repo) closeSlots() {
	for _, s := range r.slots {
		if s.st != nil {
			_ = s.st.Close()
		}
	}
}

// Resolve resolves rev (a branch, tag, HEAD, a full or short commit id,
// refs/..., with ~N and ^N suffixes) to a commit. Refs are re-read on
// every call, so a moved ref is seen without reopening.
func (r *Repo) Resolve(rev string) (*Commit, error) {
	var c *Commit
	err := r.withStore(func(s *slot) error {
		h, err := s.gr.ResolveRevision(plumbing.Revision(rev))
		if err != nil {
			nested, ok := resolveNestedTag(s, rev)
			if !ok {
				return err
			}
			h = &nested
		}
		co, err := object.GetCommit(s.st, *h)
		if err != nil {
			return err
		}
		c = &Commit{ID: co.Hash.String(), Tree: co.TreeHash.String(), Time: co.Committer.When, Rev: rev}
		return nil
	})
	if errors.Is(err, ErrClosed) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%w %q in %s (%v); refs: %s", ErrUnknownRevision, rev, r.path, err, r.someRefs())
	}
	return c, nil
}

// maxTagDepth bounds the tags peeled to reach a commit.
const maxTagDepth = 16

// resolveNestedTag resolves rev when it names, as a ref or a full object
// id, a tag of a tag (git tag -a t2 t1), which go-git's ResolveRevision
// refuses ("unsupported object type") and git peels. ok is false when rev
// is not such a tag.
func resolveNestedTag(s *slot, rev string) (h plumbing.Hash, ok bool) {
	found := false
	// git's order for a short name (git help revisions).
	for _, name := range []string{rev, "refs/" + rev, "refs/tags/" + rev, "refs/heads/" + rev, "refs/remotes/" + rev} {
		if ref, err := s.gr.Reference(plumbing.ReferenceName(name), true); err == nil {
			h, found = ref.Hash(), true
			break
		}
	}
	if !found && len(rev) == 40 && plumbing.IsHash(rev) {
		h, found = plumbing.NewHash(rev), true
	}
	if !found {
		return h, false
	}
	for depth := 0; depth < maxTagDepth; depth++ {
		tag, err := object.GetTag(s.st, h)
		if err != nil {
			return h, depth > 1 // peeled a tag of a tag
		}
		h = tag.Target
	}
	return h, false
}

// someRefs names a few existing refs, for error messages.
func (r *Repo) someRefs() string {
	var names []string
	_ = r.withStore(func(s *slot) error {
		names = names[:0]
		if h, err := s.st.Reference(plumbing.HEAD); err == nil {
			if h.Type() == plumbing.SymbolicReference {
				names = append(names, "HEAD -> "+h.Target().Short())
			} else {
				names = append(names, "HEAD")
			}
		}
		it, err := s.st.IterReferences()
		if err != nil {
			return nil
		}
		defer it.Close()
		var refs []string
		_ = it.ForEach(func(ref *plumbing.Reference) error {
			if ref.Name() != plumbing.HEAD {
				refs = append(refs, ref.Name().String())
			}
			return nil
		})
		sort.Strings(refs)
		names = append(names, refs...)
		return nil
	})
	if len(names) == 0 {
		return "none"
	}
	more := ""
	if len(names) > maxRefsListed {
		more = fmt.Sprintf(" and %d more", len(names)-maxRefsListed)
		names = names[:maxRefsListed]
	}
	return strings.Join(names, ", ") + more
}

// isNotFound reports whether err says an object is absent.
func isNotFound(err error) bool {
	return errors.Is(err, plumbing.ErrObjectNotFound) || errors.Is(err, os.ErrNotExist)
}

// objectErr wraps err about object id (at path, when known) with the
// right sentinel.
func objectErr(what, path string, id plumbing.Hash, err error) error {
	where := ""
	if path != "" {
		where = fmt.Sprintf(" at %q", path)
	}
	if isNotFound(err) {
		return fmt.Errorf("%w: %s %s%s", ErrMissingObject, what, id, where)
	}
	if errors.Is(err, ErrClosed) {
		return err
	}
	if errors.Is(err, errChainNoDisk) {
		return fmt.Errorf("gitfs: %s %s%s: %w", what, id, where, err)
	}
	return fmt.Errorf("%w: %s %s%s: %w", ErrCorruptObject, what, id, where, err)
}
