package gitfs

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"

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
	name []byte // in the tree object's bytes
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
	var attrs *attrStack
	if exportIgnore {
		attrs = &attrStack{}
		b, err := readInfoAttributes(r.gitDir)
		if err != nil {
			return nil, err
		}
		attrs.info = parseAttrFile("", b, true)
	}
	ents, hints, plain, err := r.listTree(root, attrs)
	if err != nil {
		return nil, err
	}
	return &imager.Tree{CommitID: c.ID, Time: c.Time, Entries: ents, Plain: plain, Hints: hints}, nil
}

// A tree is listed in segments, in parallel: each directory down to
// splitDepth is a segment of its own, listed by one of listWorkers
// goroutines; deeper directories are listed inline by the segment above
// them. The segments are then joined in git's order, and the blobs of the
// whole listing sized in one batch. Every segment is listed even after
// one fails, so the error reported is the first in git's order, whichever
// goroutine met it first.
const (
	splitDepth  = 2
	listWorkers = 2
)

// segment is the listing of the directory dir (tree id), depth levels
// below the root, without the directory's own entry.
type segment struct {
	dir       string
	id        plumbing.Hash
	depth     int
	attrs     *attrStack      // nil: no export-ignore; the segment's own copy
	ancestors []plumbing.Hash // trees on the path above dir

	entries []imager.Entry // in order, but for the subdirectories in kids
	kids    []segKid
	some    bool // a non-directory entry below, kids aside
	// notPlain: a tree object of the segment lists siblings out of git's
	// order or twice, or a symlink was listed (see imager.Tree.Plain).
	notPlain bool
	err      error
}

// segKid is a subdirectory listed as a segment of its own: its entry dir
// and its listing go before entries[at].
type segKid struct {
	at  int
	dir imager.Entry
	seg *segment
}

// lister runs segments on a few goroutines.
type lister struct {
	r       *Repo
	mu      sync.Mutex
	cond    sync.Cond
	queue   []*segment
	pending int // segments queued or being listed
}

// listTree lists the tree root, depth first, in git's order, and reports
// whether the listing is plain (see imager.Tree.Plain): entries come out
// depth first by construction, so it is plain when every tree object's
// names were in strict git order and none was a symlink. It returns the
// entries' hints too (see fillSizes).
func (r *Repo) listTree(root plumbing.Hash, attrs *attrStack) ([]imager.Entry, []uint64, bool, error) {
	l := &lister{r: r}
	l.cond.L = &l.mu
	top := &segment{id: root, attrs: attrs}
	l.push(top)
	var wg sync.WaitGroup
	for i := 0; i < min(listWorkers, runtime.GOMAXPROCS(0)); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One walker per goroutine: its scratch buffers serve every segment.
			w := &treeWalker{r: r, onPath: map[plumbing.Hash]bool{}, lister: l}
			for seg := l.pop(); seg != nil; seg = l.pop() {
				w.attrs, w.seg = seg.attrs, seg
				clear(w.onPath)
				for _, a := range seg.ancestors {
					w.onPath[a] = true
				}
				seg.some, seg.err = w.walk(seg.dir, seg.id, seg.depth)
				l.finish()
			}
		}()
	}
	wg.Wait()
	n, plain := 0, true
	var count func(s *segment)
	count = func(s *segment) {
		n += len(s.entries) + len(s.kids)
		plain = plain && !s.notPlain
		for _, k := range s.kids {
			count(k.seg)
		}
	}
	count(top)
	out := make([]imager.Entry, 0, n)
	if _, err := top.join(&out); err != nil {
		return nil, nil, false, err
	}
	// Sized all at once: a whole tree's blobs are a good part of its
	// packs, looked up in id order (see odb.Store.BlobSizes).
	hints, err := r.fillSizes(out)
	if err != nil {
		return nil, nil, false, err
	}
	return out, hints, plain, nil
}

func (l *lister) push(s *segment) {
	l.mu.Lock()
	l.queue = append(l.queue, s)
	l.pending++
	l.mu.Unlock()
	l.cond.Signal()
}

// pop returns the next segment to list, or nil when all are listed.
func (l *lister) pop() *segment {
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.queue) == 0 && l.pending > 0 {
		l.cond.Wait()
	}
	if len(l.queue) == 0 {
		return nil
	}
	s := l.queue[0]
	l.queue[0] = nil
	l.queue = l.queue[1:]
	return s
}

func (l *lister) finish() {
	l.mu.Lock()
	l.pending--
	done := l.pending == 0
	l.mu.Unlock()
	if done {
		l.cond.Broadcast()
	}
}

// join appends the listing of s to out and reports whether it holds a
// non-directory entry: a subdirectory with none is left out, as walk
// leaves it out.
func (s *segment) join(out *[]imager.Entry) (bool, error) {
	if s.err != nil {
		return false, s.err
	}
	some := s.some
	pos := 0
	for _, k := range s.kids {
		*out = append(*out, s.entries[pos:k.at]...)
		pos = k.at
		mark := len(*out)
		*out = append(*out, k.dir)
		ks, err := k.seg.join(out)
		if err != nil {
			return false, err
		}
		if ks {
			some = true
		} else {
			*out = (*out)[:mark]
		}
	}
	*out = append(*out, s.entries[pos:]...)
	s.entries = nil // copied: the collector may have it
	return some, nil
}

// treeWalker walks the trees of one segment depth first, collecting its
// entries.
type treeWalker struct {
	r      *Repo
	attrs  *attrStack // nil: no export-ignore
	seg    *segment
	onPath map[plumbing.Hash]bool // trees being walked: a repeat is a loop
	lister *lister
	buf    []byte        // scratch for the paths of a directory
	nest   int           // trees being walked
	spare  [][]treeEntry // for the parsed entries of each of them, reused
	// spareData holds the bytes of each tree being walked, reused for the
	// next tree at its level: the names of spare's entries point into
	// them until the paths are cut from w.buf. A big tree's trees are
	// megabytes of fresh memory otherwise.
	spareData [][]byte
}

// maxTreePath bounds a path's length: a tree that contains itself (ids
// are not checked against contents, so a crafted object can) or absurd
// nesting is a corrupt repository, not an endless walk.
const maxTreePath = 4096

// walk appends the entries below directory dir (tree id, depth levels
// down) to the segment. It reports whether the subtree holds a
// non-directory entry, ignored or not: git archive writes a directory
// only when it meets one (a directory entry is queued and written before
// its first file, symlink or submodule, even one then export-ignored), so
// directories with nothing else below them are left out, as here.
func (w *treeWalker) walk(dir string, id plumbing.Hash, depth int) (bool, error) {
	if w.onPath[id] || len(dir) > maxTreePath {
		return false, fmt.Errorf("%w: tree %s at %q contains itself or nests beyond %d bytes of path",
			ErrCorruptObject, id, truncatePath(dir), maxTreePath)
	}
	w.onPath[id] = true
	defer delete(w.onPath, id)
	// Parsed entries go to a slice kept per level of the walk, reused.
	lvl := w.nest
	w.nest++
	defer func() { w.nest-- }()
	if lvl == len(w.spare) {
		w.spare = append(w.spare, nil)
		w.spareData = append(w.spareData, nil)
	}
	ents, data, err := w.r.readTree(dir, id, w.spare[lvl][:0], w.spareData[lvl])
	if err != nil {
		return false, err
	}
	defer func() { w.spare[lvl], w.spareData[lvl] = ents[:0], data[:0] }()
	if w.attrs != nil {
		pushed := false
		for _, e := range ents {
			if string(e.name) == attrFileName && e.mode&modeTypeMask == modeRegular {
				b, err := w.r.readSmall(e.id, joinPath(dir, string(e.name)), maxAttrBytes)
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
	seg := w.seg
	seg.entries = slices.Grow(seg.entries, len(ents))
	// The entries' paths, cut from one string: one allocation per
	// directory, not one per entry.
	prefix := 0
	if dir != "" {
		prefix = len(dir) + 1
	}
	w.buf = w.buf[:0]
	for _, e := range ents {
		if dir != "" {
			w.buf = append(append(w.buf, dir...), '/')
		}
		w.buf = append(w.buf, e.name...)
	}
	paths, at := string(w.buf), 0
	nonDir := false
	prevName, prevDir := "", false
	for k, e := range ents {
		p := paths[at : at+prefix+len(e.name)]
		at += prefix + len(e.name)
		typ := e.mode & modeTypeMask
		if typ != modeDir {
			nonDir = true
		}
		// Checked on the tree object's names, ignored ones included.
		name := p[prefix:]
		if k > 0 && (name == prevName || !imager.GitNameLess(prevName, prevDir, name, typ == modeDir)) {
			seg.notPlain = true
		}
		prevName, prevDir = name, typ == modeDir
		if w.attrs != nil && w.attrs.exportIgnored(p, typ == modeDir || typ == modeGitlink) {
			continue
		}
		var blob imager.BlobID
		copy(blob[:], e.id[:])
		switch typ {
		case modeDir:
			dirEnt := imager.Entry{Path: p, Kind: imager.KindDir, Blob: blob}
			if depth+1 <= splitDepth {
				w.spawn(dirEnt, e.id, depth+1)
				continue
			}
			at := len(seg.entries)
			seg.entries = append(seg.entries, dirEnt)
			some, err := w.walk(p, e.id, depth+1)
			if err != nil {
				return false, err
			}
			if some {
				nonDir = true
			} else {
				seg.entries = seg.entries[:at] // nothing but directories below
			}
		case modeRegular:
			k := imager.KindFile
			if e.mode&modeUserExec != 0 {
				k = imager.KindExecutable
			}
			seg.entries = append(seg.entries, imager.Entry{Path: p, Kind: k, Blob: blob, Size: -1})
		case modeSymlink:
			seg.notPlain = true
			seg.entries = append(seg.entries, imager.Entry{Path: p, Kind: imager.KindSymlink, Blob: blob, Size: -1})
		case modeGitlink:
			seg.entries = append(seg.entries, imager.Entry{Path: p, Kind: imager.KindSubmodule, Blob: blob})
		default:
			return false, fmt.Errorf("%w: tree %s at %q: entry %q has mode %o", ErrCorruptObject, id, displayDir(dir), e.name, e.mode)
		}
	}
	return nonDir, nil
}

// spawn queues subdirectory dirEnt (tree id, depth levels down) as a
// segment of its own, placed at the end of the segment's entries so far.
func (w *treeWalker) spawn(dirEnt imager.Entry, id plumbing.Hash, depth int) {
	kid := &segment{dir: dirEnt.Path, id: id, depth: depth}
	if w.attrs != nil {
		kid.attrs = &attrStack{files: slices.Clone(w.attrs.files), info: w.attrs.info}
	}
	for a := range w.onPath {
		kid.ancestors = append(kid.ancestors, a)
	}
	w.seg.kids = append(w.seg.kids, segKid{at: len(w.seg.entries), dir: dirEnt, seg: kid})
	w.lister.push(kid)
}

func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// readTree reads and parses tree object id (at path dir).
// The tree's bytes are read into buf when it has room, and returned (the
// entries' names point into them).
func (r *Repo) readTree(dir string, id plumbing.Hash, dst []treeEntry, buf []byte) ([]treeEntry, []byte, error) {
	data, err := r.store.ReadObjectTo(buf, id, plumbing.TreeObject, maxTreeBytes)
	if err != nil {
		return nil, buf, atPath(displayDir(dir), err)
	}
	ents, err := parseTree(data, dst)
	if err != nil {
		return nil, buf, fmt.Errorf("%w: tree %s at %q: %v", ErrCorruptObject, id, displayDir(dir), err)
	}
	return ents, data, nil
}

func displayDir(dir string) string {
	if dir == "" {
		return "/"
	}
	return dir
}

// parseTree parses a tree object: entries of "<octal mode> <name>\0<20-byte id>".
// Names point into b. Entries are appended to ents.
func parseTree(b []byte, ents []treeEntry) ([]treeEntry, error) {
	ents = slices.Grow(ents, len(b)/32)
	for len(b) > 0 {
		sp := bytes.IndexByte(b, ' ')
		if sp <= 0 {
			return nil, errors.New("malformed entry mode")
		}
		var mode uint64
		for _, c := range b[:sp] {
			if c < '0' || c > '7' || mode > math.MaxUint32>>3 {
				return nil, fmt.Errorf("malformed entry mode %q", b[:sp])
			}
			mode = mode<<3 | uint64(c-'0')
		}
		b = b[sp+1:]
		nul := bytes.IndexByte(b, 0)
		if nul <= 0 {
			return nil, errors.New("malformed entry name")
		}
		name := b[:nul:nul]
		b = b[nul+1:]
		if len(b) < hashLen {
			return nil, fmt.Errorf("entry %q: truncated object id", name)
		}
		if string(name) == "." || string(name) == ".." || bytes.IndexByte(name, '/') >= 0 {
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
// object headers, read in pack order, and reads symlink targets. It
// returns the entries' hints (imager.Tree.Hints): where the lookups found
// each blob, so that reading it need not look it up again.
func (r *Repo) fillSizes(ents []imager.Entry) ([]uint64, error) {
	todo := make([]int32, 0, len(ents)) // most entries are files: no regrowth
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
	found := make([]uint64, len(todo))
	if bad, err := r.store.BlobSizesHints(ids, sizes, found); err != nil {
		return nil, atPath(ents[todo[bad]].Path, err)
	}
	var hints []uint64 // none until one is found: a tree of loose objects has none
	for k, i := range todo {
		e := &ents[i]
		e.Size = sizes[k]
		if found[k] != 0 {
			if hints == nil {
				hints = make([]uint64, len(ents))
			}
			hints[i] = found[k]
		}
		if e.Kind == imager.KindSymlink {
			if err := r.readLink(e); err != nil {
				return nil, err
			}
		}
	}
	return hints, nil
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
