package gitfs

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitblk/gitblk/imager"
)

// Git tree entry modes (octal, as written in tree objects).
const (
	modeTypeMask  = 0o170000
	modeDir       = 0o040000
	modeRegular   = 0o100000
	modeSymlink   = 0o120000
	modeGitlink   = 0o160000
	modeUserExec  = 0o100
	hashLen       = 20
	maxTreeBytes  = 32 << 20 // a tree object larger than this is refused as corrupt (real ones: a few MB)
	maxLinkTarget = 64 << 10 // a symlink target larger than this is refused
	attrFileName  = ".gitattributes"
	maxAttrBytes  = 1 << 20 // a .gitattributes larger than this is refused
)

// treeEntry is one parsed entry of a tree object.
type treeEntry struct {
	mode uint32
	name string
	id   plumbing.Hash
}

// Tree lists the tree of commit c in git's order: depth first, each
// directory before its contents, siblings as git sorts them. Sizes come
// from object headers (no blob is inflated for them); symlink targets are
// read. A missing or corrupt object is an error naming it and its path.
// With exportIgnore, paths with the export-ignore attribute are left out
// as `git archive` does: attributes come from the .gitattributes files of
// the tree itself and from $GIT_DIR/info/attributes, and an ignored
// directory is left out whole.
func (r *Repo) Tree(c *Commit, exportIgnore bool) (*imager.Tree, error) {
	if c == nil {
		return nil, errors.New("gitfs: Tree: nil commit")
	}
	root, err := parseHash(c.Tree)
	if err != nil {
		return nil, fmt.Errorf("gitfs: commit %s: tree id %q: %w", c.ID, c.Tree, err)
	}
	w := &treeWalker{r: r}
	if exportIgnore {
		w.attrs = &attrStack{}
		b, err := readInfoAttributes(r.gitDir)
		if err != nil {
			return nil, err
		}
		w.attrs.info = parseAttrFile("", b, true)
	}
	if _, err := w.walk("", root); err != nil {
		return nil, err
	}
	if err := r.fillSizes(w.entries); err != nil {
		return nil, err
	}
	return &imager.Tree{CommitID: c.ID, Time: c.Time, Entries: w.entries}, nil
}

// treeWalker walks trees depth first, collecting entries.
type treeWalker struct {
	r       *Repo
	attrs   *attrStack // nil: no export-ignore
	entries []imager.Entry
	onPath  map[plumbing.Hash]bool // trees being walked: a repeat is a loop
}

// maxTreePath bounds a path's length: a tree that contains itself (ids
// are not checked against contents, so a crafted object can) or absurd
// nesting is a corrupt repository, not an endless walk.
const maxTreePath = 4096

// walk appends the entries below directory dir (tree id). It reports
// whether the subtree holds a non-directory entry, ignored or not: git
// archive writes a directory only when it meets one (a directory entry is
// queued and written before its first file, symlink or submodule, even one
// then export-ignored), so directories with nothing else below them are
// left out, as here.
func (w *treeWalker) walk(dir string, id plumbing.Hash) (bool, error) {
	if w.onPath == nil {
		w.onPath = map[plumbing.Hash]bool{}
	}
	if w.onPath[id] || len(dir) > maxTreePath {
		return false, fmt.Errorf("%w: tree %s at %q contains itself or nests beyond %d bytes of path",
			ErrCorruptObject, id, truncatePath(dir), maxTreePath)
	}
	w.onPath[id] = true
	defer delete(w.onPath, id)
	ents, err := w.r.readTree(dir, id)
	if err != nil {
		return false, err
	}
	if w.attrs != nil {
		pushed := false
		for _, e := range ents {
			if e.name == attrFileName && e.mode&modeTypeMask == modeRegular {
				b, err := w.r.readSmall(e.id, joinPath(dir, e.name), maxAttrBytes)
				if err != nil {
					return false, err
				}
				w.attrs.push(parseAttrFile(dir, b, dir == ""))
				pushed = true
				break
			}
		}
		if pushed {
			defer w.attrs.pop()
		}
	}
	nonDir := false
	for _, e := range ents {
		p := joinPath(dir, e.name)
		typ := e.mode & modeTypeMask
		if typ != modeDir {
			nonDir = true
		}
		if w.attrs != nil && w.attrs.exportIgnored(p, typ == modeDir || typ == modeGitlink) {
			continue
		}
		var blob imager.BlobID
		copy(blob[:], e.id[:])
		switch typ {
		case modeDir:
			at := len(w.entries)
			w.entries = append(w.entries, imager.Entry{Path: p, Kind: imager.KindDir, Blob: blob})
			some, err := w.walk(p, e.id)
			if err != nil {
				return false, err
			}
			if some {
				nonDir = true
			} else {
				w.entries = w.entries[:at] // nothing but directories below
			}
		case modeRegular:
			k := imager.KindFile
			if e.mode&modeUserExec != 0 {
				k = imager.KindExecutable
			}
			w.entries = append(w.entries, imager.Entry{Path: p, Kind: k, Blob: blob, Size: -1})
		case modeSymlink:
			w.entries = append(w.entries, imager.Entry{Path: p, Kind: imager.KindSymlink, Blob: blob, Size: -1})
		case modeGitlink:
			w.entries = append(w.entries, imager.Entry{Path: p, Kind: imager.KindSubmodule, Blob: blob})
		default:
			return false, fmt.Errorf("%w: tree %s at %q: entry %q has mode %o", ErrCorruptObject, id, displayDir(dir), e.name, e.mode)
		}
	}
	return nonDir, nil
}

func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// readTree reads and parses tree object id (at path dir).
func (r *Repo) readTree(dir string, id plumbing.Hash) ([]treeEntry, error) {
	data, err := r.store.ReadObject(id, plumbing.TreeObject, maxTreeBytes)
	if err != nil {
		return nil, atPath(displayDir(dir), err)
	}
	ents, err := parseTree(data)
	if err != nil {
		return nil, fmt.Errorf("%w: tree %s at %q: %v", ErrCorruptObject, id, displayDir(dir), err)
	}
	return ents, nil
}

func displayDir(dir string) string {
	if dir == "" {
		return "/"
	}
	return dir
}

// parseTree parses a tree object: entries of "<octal mode> <name>\0<20-byte id>".
func parseTree(b []byte) ([]treeEntry, error) {
	var ents []treeEntry
	for len(b) > 0 {
		sp := bytes.IndexByte(b, ' ')
		if sp <= 0 {
			return nil, errors.New("malformed entry mode")
		}
		mode, err := strconv.ParseUint(string(b[:sp]), 8, 32)
		if err != nil {
			return nil, fmt.Errorf("malformed entry mode %q", b[:sp])
		}
		b = b[sp+1:]
		nul := bytes.IndexByte(b, 0)
		if nul <= 0 {
			return nil, errors.New("malformed entry name")
		}
		name := string(b[:nul])
		b = b[nul+1:]
		if len(b) < hashLen {
			return nil, fmt.Errorf("entry %q: truncated object id", name)
		}
		if name == "." || name == ".." || bytes.IndexByte([]byte(name), '/') >= 0 {
			return nil, fmt.Errorf("entry name %q is not allowed", name)
		}
		var id plumbing.Hash
		copy(id[:], b[:hashLen])
		b = b[hashLen:]
		ents = append(ents, treeEntry{mode: canonMode(uint32(mode)), name: name, id: id})
	}
	return ents, nil
}

// canonMode normalizes a mode as git does when it reads a tree (old
// repositories hold 100664 and the like).
func canonMode(m uint32) uint32 {
	switch m & modeTypeMask {
	case modeRegular:
		if m&modeUserExec != 0 {
			return modeRegular | 0o755
		}
		return modeRegular | 0o644
	case modeSymlink:
		return modeSymlink
	case modeDir:
		return modeDir
	case modeGitlink:
		return modeGitlink
	}
	return m
}

// readSmall reads a whole blob of at most max bytes.
func (r *Repo) readSmall(id plumbing.Hash, path string, max int64) ([]byte, error) {
	data, err := r.store.ReadObject(id, plumbing.BlobObject, max)
	if err != nil {
		return nil, atPath(path, err)
	}
	return data, nil
}

// fillSizes sets the Size of every file and symlink entry (Size -1) from
// object headers, read in pack order, and reads symlink targets.
func (r *Repo) fillSizes(ents []imager.Entry) error {
	var todo []int32
	for i := range ents {
		if ents[i].Size < 0 {
			todo = append(todo, int32(i))
		}
	}
	ids := make([]plumbing.Hash, len(todo))
	for k, i := range todo {
		ids[k] = plumbing.Hash(ents[i].Blob)
	}
	sizes := make([]int64, len(todo))
	if bad, err := r.store.BlobSizes(ids, sizes); err != nil {
		return atPath(ents[todo[bad]].Path, err)
	}
	for k, i := range todo {
		e := &ents[i]
		e.Size = sizes[k]
		if e.Kind == imager.KindSymlink {
			if err := r.readLink(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// readLink sets the Target of symlink entry e, whose Size is known.
func (r *Repo) readLink(e *imager.Entry) error {
	h := plumbing.Hash(e.Blob)
	if e.Size > maxLinkTarget {
		return fmt.Errorf("%w: symlink %q: target of %d bytes is over the %d-byte limit", ErrCorruptObject, e.Path, e.Size, maxLinkTarget)
	}
	t, err := r.readSmall(h, e.Path, e.Size)
	if err != nil {
		return err
	}
	if int64(len(t)) != e.Size {
		return fmt.Errorf("%w: symlink %q: blob %s: size %d, header said %d", ErrCorruptObject, e.Path, h, len(t), e.Size)
	}
	e.Target = string(t)
	return nil
}

// parseHash parses a full hex object id.
func parseHash(s string) (plumbing.Hash, error) {
	var h plumbing.Hash
	if len(s) != 2*hashLen {
		return h, fmt.Errorf("want %d hex digits", 2*hashLen)
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, err
	}
	return h, nil
}

// truncatePath shortens a path for an error message.
func truncatePath(p string) string {
	if len(p) > 200 {
		return p[:200] + "..."
	}
	return p
}
