package fusefs

import (
	"sort"
	"strings"
	"syscall"

	"github.com/gitblk/gitblk/imager"
)

// mntValidName reports whether name can be a file name in a directory.
func mntValidName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= mntNameMax &&
		!strings.ContainsAny(name, "/\x00")
}

// mntIndex is the directory structure of a tree, built once: for each
// directory its children sorted by name. Memory is per entry.
type mntIndex struct {
	entries  []imager.Entry
	dirs     []mntDirInfo // dirs[i+1] for entry i; dirs[0] is the tree root
	inoBase  uint64       // inode number of entry 0
	warnings []imager.Warning
}

// mntDirInfo lists a directory's children (entry indices, sorted by name).
type mntDirInfo struct {
	kids    []int32
	subdirs int32 // children shown as directories, for st_nlink
}

// newMountIndex indexes entries. Entries a filesystem cannot show (bad
// names, duplicates, a parent that is missing or not a directory) are left
// out with a warning instead of failing the mount.
func newMountIndex(entries []imager.Entry, inoBase uint64) *mntIndex {
	idx := &mntIndex{entries: entries, dirs: make([]mntDirInfo, len(entries)+1), inoBase: inoBase}
	dirOf := map[string]int{"": -1} // directory path -> entry index; only while building
	for i := range entries {
		e := &entries[i]
		parent, base := mntSplitPath(e.Path)
		if !mntValidName(base) {
			idx.warn(e.Path, "not a valid file name")
			continue
		}
		p, ok := dirOf[parent]
		if !ok {
			idx.warn(e.Path, "its parent directory is not in the tree")
			continue
		}
		if e.Kind == imager.KindDir {
			if _, dup := dirOf[e.Path]; dup {
				idx.warn(e.Path, "listed twice")
				continue
			}
			dirOf[e.Path] = i
		}
		idx.dirs[p+1].kids = append(idx.dirs[p+1].kids, int32(i))
	}
	for d := range idx.dirs {
		kids := idx.dirs[d].kids
		sort.SliceStable(kids, func(a, b int) bool { return idx.name(kids[a]) < idx.name(kids[b]) })
		out := kids[:0]
		var subdirs int32
		for k, c := range kids {
			if k > 0 && idx.name(c) == idx.name(kids[k-1]) {
				idx.warn(entries[c].Path, "listed twice")
				continue
			}
			if mntIsDir(entries[c].Kind) {
				subdirs++
			}
			out = append(out, c)
		}
		idx.dirs[d] = mntDirInfo{kids: out, subdirs: subdirs}
	}
	return idx
}

func (idx *mntIndex) warn(path, msg string) {
	idx.warnings = append(idx.warnings, imager.Warning{Path: path, Msg: msg})
}

// name is the base name of entry i.
func (idx *mntIndex) name(i int32) string {
	_, base := mntSplitPath(idx.entries[i].Path)
	return base
}

// lookup finds the child called name of directory d (-1: the tree root).
func (idx *mntIndex) lookup(d int, name string) (int32, bool) {
	kids := idx.dirs[d+1].kids
	k := sort.Search(len(kids), func(k int) bool { return idx.name(kids[k]) >= name })
	if k < len(kids) && idx.name(kids[k]) == name {
		return kids[k], true
	}
	return 0, false
}

func (idx *mntIndex) ino(i int32) uint64 { return idx.inoBase + uint64(i) }

func mntSplitPath(p string) (parent, base string) {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return "", p
}

func mntIsDir(k imager.Kind) bool { return k == imager.KindDir || k == imager.KindSubmodule }

// mntMode is the st_mode of an entry.
func mntMode(k imager.Kind) uint32 {
	switch k {
	case imager.KindDir, imager.KindSubmodule:
		return syscall.S_IFDIR | 0o755
	case imager.KindExecutable:
		return syscall.S_IFREG | 0o755
	case imager.KindSymlink:
		return syscall.S_IFLNK | 0o777
	default:
		return syscall.S_IFREG | 0o644
	}
}
