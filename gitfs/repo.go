package gitfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitblk/gitblk/gitfs/odb"
	"github.com/gitblk/gitblk/imager"
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

// maxRefsListed is how many existing refs an unknown-revision error names.
const maxRefsListed = 8

// Options configure a Repo's object caches (see odb.Options).
type Options = odb.Options

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
}

var _ imager.BlobReader = (*Repo)(nil)

// Open opens the repository at path: a bare repository, a .git directory,
// or a work tree (its .git directory or .git file is followed).
func Open(path string, opts Options) (*Repo, error) {
	gitDir, err := findGitDir(path)
	if err != nil {
		return nil, err
	}
	st, err := odb.Open(gitDir, commonDir(gitDir), opts)
	if errors.Is(err, odb.ErrNotRepository) {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotRepository, path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("gitfs: open %s: %w", path, err)
	}
	return &Repo{path: path, gitDir: gitDir, store: st}, nil
}

// Close releases files and removes the private spill directory. Reads
// in progress finish first; later calls fail with ErrClosed.
func (r *Repo) Close() error { return r.store.Close() }

// ReadBlob reads len(p) bytes of blob id at offset off, as
// io.ReaderAt.ReadAt (see odb.Store.ReadBlob).
func (r *Repo) ReadBlob(id imager.BlobID, p []byte, off int64) (int, error) {
	return r.store.ReadBlob(plumbing.Hash(id), p, off)
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

// Resolve resolves rev (a branch, tag, HEAD, a full or short commit id,
// refs/..., with ~N and ^N suffixes) to a commit. Refs are re-read on
// every call, so a moved ref is seen without reopening.
func (r *Repo) Resolve(rev string) (*Commit, error) {
	var c *Commit
	err := r.store.WithGit(func(gr *gogit.Repository) error {
		h, err := gr.ResolveRevision(plumbing.Revision(rev))
		if err != nil {
			nested, ok := resolveNestedTag(gr, rev)
			if !ok {
				return err
			}
			h = &nested
		}
		co, err := gr.CommitObject(*h)
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
func resolveNestedTag(gr *gogit.Repository, rev string) (h plumbing.Hash, ok bool) {
	found := false
	// git's order for a short name (git help revisions).
	for _, name := range []string{rev, "refs/" + rev, "refs/tags/" + rev, "refs/heads/" + rev, "refs/remotes/" + rev} {
		if ref, err := gr.Reference(plumbing.ReferenceName(name), true); err == nil {
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
		tag, err := gr.TagObject(h)
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
	_ = r.store.WithGit(func(gr *gogit.Repository) error {
		names = names[:0]
		if h, err := gr.Storer.Reference(plumbing.HEAD); err == nil {
			if h.Type() == plumbing.SymbolicReference {
				names = append(names, "HEAD -> "+h.Target().Short())
			} else {
				names = append(names, "HEAD")
			}
		}
		it, err := gr.Storer.IterReferences()
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

// atPath adds to an object error where in the tree the object is.
func atPath(path string, err error) error {
	return fmt.Errorf("gitfs: at %q: %w", path, err)
}
