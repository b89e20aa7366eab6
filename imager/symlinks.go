package imager

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// Limits of FollowSymlinks.
const (
	// maxLinkHops bounds the symlinks followed to resolve one path, as
	// Linux's ELOOP limit does (40).
	maxLinkHops = 40
	// minCopyBudget is the number of entries that copies of linked
	// directories may add at least; the budget grows with the tree (see
	// copyBudget) so that an ordinary "latest -> v2" link always fits,
	// while a tree whose links multiply (each level linking twice to the
	// next) cannot grow without bound.
	minCopyBudget = 1 << 16
	// copyBudgetFactor: copies may add this many times the input's entries.
	copyBudgetFactor = 4
	// maxWorkFactor bounds the entries emitted inside copies, including the
	// ones rolled back, as a multiple of the budget: once spent, every
	// further directory link is dropped at once.
	maxWorkFactor = 16
)

// FollowSymlinks returns a copy of t where each symlink is replaced by what
// it points to, which is what a reader without symlinks (a Mirage guest,
// FAT) needs:
//   - a link whose target resolves to a file becomes a regular entry with the
//     target's blob, size and kind (file or executable);
//   - a link resolving to a directory becomes a copy of that directory's
//     subtree (itself with links followed) under the link's path;
//   - a link resolving to a submodule becomes a submodule entry.
//
// A target is resolved relative to the link's directory, component by
// component as a kernel does: chains are followed, ".." is allowed while it
// stays inside the tree, a link inside a path is followed too. Links that
// are dangling, absolute, lead outside the tree, loop (more than 40 hops),
// or whose directory copy would contain itself, are dropped with a Warning
// naming the path and the reason. Copies are bounded (see copyBudget); a
// link whose copy would exceed the bound is dropped with a warning.
//
// The result is in git's tree order: a directory before its contents,
// siblings sorted as git sorts them (a directory compares as name + "/").
// Directories missing from t's listing (parents of listed paths) are added.
//
// A tree that has no symlinks and is already in that order, with every
// parent listed, is returned as is (no copy, no index).
func FollowSymlinks(t *Tree) (*Tree, []Warning) {
	if t.Plain || plainGitOrder(t) {
		return t, nil
	}
	ix := newTreeIndex(t)
	limit := copyBudgetFactor*len(t.Entries) + minCopyBudget
	f := &follower{ix: ix, budget: limit, limit: limit, failed: map[string]bool{}}
	f.emitDir("", "", []string{""})
	return &Tree{CommitID: t.CommitID, Time: t.Time, Entries: f.out}, f.warns
}

// SkipSymlinks returns a copy of t without its symlinks, one Warning each.
// Directories missing from t's listing are added, as FollowSymlinks does.
// A tree that needs no change is returned as is, as FollowSymlinks does.
func SkipSymlinks(t *Tree) (*Tree, []Warning) {
	if t.Plain || plainGitOrder(t) {
		return t, nil
	}
	ix := newTreeIndex(t)
	out := make([]Entry, 0, len(ix.order))
	var warns []Warning
	for _, e := range ix.order {
		if e.Kind == KindSymlink {
			warns = append(warns, Warning{Path: e.Path, Msg: fmt.Sprintf("symlink to %q skipped", e.Target)})
			continue
		}
		out = append(out, e)
	}
	return &Tree{CommitID: t.CommitID, Time: t.Time, Entries: out}, warns
}

// plainGitOrder reports whether newTreeIndex would list t's entries
// unchanged and FollowSymlinks copy them unchanged: no symlinks and no
// link targets, every path non-empty without a leading or trailing slash,
// every entry's parent an earlier directory entry still open (depth
// first), siblings strictly in git's order with distinct names. It keeps
// one path and one name per open directory, so that a big tree is not
// indexed for nothing.
func plainGitOrder(t *Tree) bool {
	type level struct {
		dir      string // "" for the root
		last     string // the last child's name, "" before the first
		lastDir  bool
		haveLast bool
	}
	stack := []level{{}}
	for i := range t.Entries {
		e := &t.Entries[i]
		p := e.Path
		if e.Kind == KindSymlink || e.Target != "" || p == "" || p[0] == '/' || p[len(p)-1] == '/' {
			return false
		}
		j := strings.LastIndexByte(p, '/')
		dir, name := "", p
		if j >= 0 {
			dir, name = p[:j], p[j+1:]
		}
		for len(stack) > 0 && stack[len(stack)-1].dir != dir {
			stack = stack[:len(stack)-1]
		}
		if len(stack) == 0 || (dir != "" && len(stack) == 1) {
			return false
		}
		top := &stack[len(stack)-1]
		isDir := e.Kind == KindDir
		if top.haveLast && (top.last == name || !GitNameLess(top.last, top.lastDir, name, isDir)) {
			return false
		}
		top.last, top.lastDir, top.haveLast = name, isDir, true
		if isDir {
			stack = append(stack, level{dir: p})
		}
	}
	return true
}

// GitNameLess reports whether sibling a sorts before b as git sorts tree
// entries: a directory compares as its name followed by "/". The common
// prefix is compared at once; byte by byte only from where one name ends.
func GitNameLess(a string, aDir bool, b string, bDir bool) bool {
	n := min(len(a), len(b))
	if c := strings.Compare(a[:n], b[:n]); c != 0 {
		return c < 0
	}
	at := func(s string, dir bool, i int) int {
		switch {
		case i < len(s):
			return int(s[i])
		case i == len(s) && dir:
			return '/'
		}
		return -1
	}
	for i := n; ; i++ {
		x, y := at(a, aDir, i), at(b, bDir, i)
		if x != y {
			return x < y
		}
		if x < 0 {
			return false
		}
	}
}

// treeIndex is a tree's entries by path and by parent directory, with
// missing parent directories filled in.
type treeIndex struct {
	byPath   map[string]Entry
	children map[string][]string // dir path ("" is the root) -> child names, git-sorted
	order    []Entry             // all entries in git's tree order
}

func newTreeIndex(t *Tree) *treeIndex {
	ix := &treeIndex{byPath: make(map[string]Entry, len(t.Entries)), children: map[string][]string{}}
	var add func(e Entry)
	add = func(e Entry) {
		if _, ok := ix.byPath[e.Path]; ok {
			return
		}
		dir, name := path.Split(e.Path)
		dir = strings.TrimSuffix(dir, "/")
		if dir != "" {
			if p, ok := ix.byPath[dir]; !ok {
				add(Entry{Path: dir, Kind: KindDir})
			} else if p.Kind != KindDir {
				// A path under a non-directory (a malformed listing):
				// unreachable as a directory child, leave it out.
				return
			}
		}
		ix.byPath[e.Path] = e
		ix.children[dir] = append(ix.children[dir], name)
	}
	for _, e := range t.Entries {
		if e.Path == "" || strings.HasPrefix(e.Path, "/") || strings.HasSuffix(e.Path, "/") {
			continue
		}
		add(e)
	}
	for dir, names := range ix.children {
		sortGit(names, func(name string) bool { return ix.byPath[join(dir, name)].Kind == KindDir })
	}
	var walk func(dir string)
	walk = func(dir string) {
		for _, name := range ix.children[dir] {
			e := ix.byPath[join(dir, name)]
			ix.order = append(ix.order, e)
			if e.Kind == KindDir {
				walk(e.Path)
			}
		}
	}
	walk("")
	return ix
}

// join joins a directory path ("" is the root) and a name.
func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// sortGit sorts sibling names as git sorts tree entries: a directory
// compares as its name followed by "/".
func sortGit(names []string, isDir func(string) bool) {
	key := func(n string) string {
		if isDir(n) {
			return n + "/"
		}
		return n
	}
	sort.SliceStable(names, func(i, j int) bool { return key(names[i]) < key(names[j]) })
}

// isUnder reports whether p is dir or lies inside it ("" is the root).
func isUnder(p, dir string) bool {
	return dir == "" || p == dir || strings.HasPrefix(p, dir+"/")
}

// resolveError says why a link cannot be followed.
type resolveError string

func (e resolveError) Error() string { return string(e) }

// resolve follows the symlink at linkPath to the entry it finally names.
// The returned entry is never a symlink; the root resolves to a directory
// entry with an empty path.
func (ix *treeIndex) resolve(linkPath string) (Entry, error) {
	link := ix.byPath[linkPath]
	cur := path.Dir(linkPath)
	if cur == "." {
		cur = ""
	}
	hops := 1
	if strings.HasPrefix(link.Target, "/") {
		return Entry{}, resolveError("absolute target")
	}
	if link.Target == "" {
		return Entry{}, resolveError("empty target")
	}
	todo := strings.Split(link.Target, "/")
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if cur == "" {
				return Entry{}, resolveError("target lies outside the tree")
			}
			cur = path.Dir(cur)
			if cur == "." {
				cur = ""
			}
			continue
		}
		p := join(cur, c)
		e, ok := ix.byPath[p]
		if !ok {
			return Entry{}, resolveError(fmt.Sprintf("dangling: %q does not exist", p))
		}
		switch e.Kind {
		case KindSymlink:
			hops++
			if hops > maxLinkHops {
				return Entry{}, resolveError(fmt.Sprintf("too many levels of symlinks (a cycle? more than %d)", maxLinkHops))
			}
			if strings.HasPrefix(e.Target, "/") {
				return Entry{}, resolveError(fmt.Sprintf("%q has an absolute target", p))
			}
			if e.Target == "" {
				return Entry{}, resolveError(fmt.Sprintf("%q has an empty target", p))
			}
			todo = append(strings.Split(e.Target, "/"), todo...)
		case KindDir:
			cur = p
		default:
			if hasComponent(todo) {
				return Entry{}, resolveError(fmt.Sprintf("dangling: %q is not a directory", p))
			}
			cur = p
		}
	}
	if cur == "" {
		return Entry{Kind: KindDir}, nil
	}
	return ix.byPath[cur], nil
}

// hasComponent reports whether a split path still names something below.
func hasComponent(todo []string) bool {
	for _, c := range todo {
		if c != "" {
			return true
		}
	}
	return len(todo) > 0 // "file/" or "file/." names a directory: not a file
}

// follower builds FollowSymlinks's output.
type follower struct {
	ix     *treeIndex
	out    []Entry
	warns  []Warning
	budget int             // entries copies of linked directories may still add
	limit  int             // the budget at the start
	work   int             // entries emitted inside copies, rolled back or not
	failed map[string]bool // directories whose copy was rolled back: the budget only shrinks, so they would fail again
	inCopy int             // depth of directory-link copies being emitted
}

// errBudget unwinds a copy that would exceed the budget.
var errBudget = resolveError("copy budget exhausted")

// child is one directory entry of the output, before sorting.
type child struct {
	name string
	src  Entry // the entry after following (never a symlink)
	link bool  // src was reached through a symlink
	warn string
}

// emitDir appends the followed contents of the real directory src under the
// output path dst. stack holds the real directories being emitted, outermost
// first: a link resolving to one of them or one of their ancestors would copy
// itself forever.
func (f *follower) emitDir(src, dst string, stack []string) error {
	names := f.ix.children[src]
	kids := make([]child, 0, len(names))
	for _, name := range names {
		e := f.ix.byPath[join(src, name)]
		c := child{name: name, src: e}
		if e.Kind == KindSymlink {
			c.link = true
			r, err := f.ix.resolve(e.Path)
			if err != nil {
				c.warn = fmt.Sprintf("symlink to %q dropped: %v", e.Target, err)
			} else if r.Kind == KindDir {
				for _, s := range stack {
					if isUnder(s, r.Path) {
						c.warn = fmt.Sprintf("symlink to %q dropped: its target directory contains the link (a cycle)", e.Target)
						break
					}
				}
			}
			c.src = r
		}
		kids = append(kids, c)
	}
	sort.SliceStable(kids, func(i, j int) bool {
		ki, kj := kids[i].name, kids[j].name
		if kids[i].warn == "" && kids[i].src.Kind == KindDir {
			ki += "/"
		}
		if kids[j].warn == "" && kids[j].src.Kind == KindDir {
			kj += "/"
		}
		return ki < kj
	})
	for _, c := range kids {
		p := join(dst, c.name)
		if c.warn != "" {
			f.warns = append(f.warns, Warning{Path: p, Msg: c.warn})
			continue
		}
		if c.link && c.src.Kind == KindDir {
			if err := f.emitLinkedDir(c.src.Path, p, f.ix.byPath[join(src, c.name)].Target, stack); err != nil {
				return err
			}
			continue
		}
		if err := f.spend(); err != nil {
			return err
		}
		e := c.src
		f.out = append(f.out, Entry{Path: p, Kind: e.Kind, Size: e.Size, Blob: e.Blob})
		if e.Kind == KindDir {
			if err := f.emitDir(e.Path, p, append(stack[:len(stack):len(stack)], e.Path)); err != nil {
				return err
			}
		}
	}
	return nil
}

// emitLinkedDir appends a directory entry dst holding a copy of the real
// directory src. When the copy would exceed the budget, it is rolled back
// and the link dropped with a warning; the outermost copy is the one rolled
// back, so that no copy is left half done.
func (f *follower) emitLinkedDir(src, dst, target string, stack []string) error {
	n, w, budget := len(f.out), len(f.warns), f.budget
	f.inCopy++
	var err error = errBudget
	if f.work < maxWorkFactor*f.limit && !f.failed[src] {
		err = f.spend()
	}
	if err == nil {
		f.out = append(f.out, Entry{Path: dst, Kind: KindDir})
		err = f.emitDir(src, dst, append(stack[:len(stack):len(stack)], src))
	}
	f.inCopy--
	if err == nil {
		return nil
	}
	if f.inCopy > 0 {
		return err
	}
	f.out, f.warns, f.budget = f.out[:n], f.warns[:w], budget
	f.failed[src] = true
	f.warns = append(f.warns, Warning{Path: dst, Msg: fmt.Sprintf(
		"symlink to directory %q dropped: its copy would exceed the limit of %d copied entries", target, f.limit)})
	return nil
}

// spend counts one entry against the budget when inside a copy.
func (f *follower) spend() error {
	if f.inCopy == 0 {
		return nil
	}
	if f.budget <= 0 {
		return errBudget
	}
	f.budget--
	f.work++
	return nil
}
