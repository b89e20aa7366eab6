package fusefs

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/gitblk/gitblk/imager"
	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// mntFS is what every node of a mount shares.
type mntFS struct {
	idx   *mntIndex
	blobs imager.BlobReader
	log   *slog.Logger
	time  time.Time
}

// setAttr fills the attributes every node shares: times, size, blocks.
func (f *mntFS) setAttr(a *fuse.Attr, ino uint64, mode uint32, size int64, nlink uint32) {
	size = max(size, 0) // a negative size from a broken tree reads as empty
	a.Ino = ino
	a.Mode = mode
	a.Size = uint64(size)
	a.Blocks = (uint64(size) + mntStatBlock - 1) / mntStatBlock
	a.Blksize = mountBlockSize
	a.Nlink = nlink
	t := f.time
	a.SetTimes(&t, &t, &t)
}

// read fills dest from readAt over a content of size bytes at off. A
// failed or short read is EIO, logged with what was read and why.
func (f *mntFS) read(what string, size int64, readAt func([]byte, int64) (int, error), dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off < 0 {
		return nil, syscall.EINVAL
	}
	if off >= size {
		return fuse.ReadResultData(nil), 0
	}
	want := dest
	if rest := size - off; int64(len(want)) > rest {
		want = want[:rest]
	}
	n := 0
	var err error
	for n < len(want) {
		var m int
		m, err = readAt(want[n:], off+int64(n))
		n += m
		if err != nil || m == 0 {
			break
		}
	}
	if n < len(want) {
		if err == nil || err == io.EOF {
			err = imager.ErrShortBlob
		}
		f.log.Error("fusefs: read failed", "file", what, "off", off, "len", len(want), "err", err)
		return nil, syscall.EIO
	}
	return fuse.ReadResultData(want), 0
}

// mntOpen refuses opening for writing; content may stay in the page
// cache across opens since it never changes.
func mntOpen(flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EROFS
	}
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

// mntNode is what every node embeds: its inode, EROFS for every change,
// and the mount's shared state.
type mntNode struct {
	fs.Inode
	mntReadOnly
	fs *mntFS
}

// mntRoot is the mount's root: the images, COMMIT and tree/.
type mntRoot struct {
	mntNode
	commit []byte
	images []string // sorted names
	byName map[string]imager.Image
}

var (
	_ fs.InodeEmbedder = (*mntRoot)(nil)
	_ fs.NodeOnAdder   = (*mntRoot)(nil)
	_ fs.NodeGetattrer = (*mntRoot)(nil)
	_ mntWriteOps      = (*mntRoot)(nil)
)

// OnAdd adds the root's fixed children; tree/ fills itself on lookup.
func (r *mntRoot) OnAdd(ctx context.Context) {
	tree := r.NewPersistentInode(ctx, &mntDir{mntNode: mntNode{fs: r.fs}, idx: -1}, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: inoTree})
	r.AddChild(mountTreeName, tree, false)
	commit := r.NewPersistentInode(ctx, r.fs.newBytesFile(inoCommit, mountCommitName, r.commit),
		fs.StableAttr{Mode: syscall.S_IFREG, Ino: inoCommit})
	r.AddChild(mountCommitName, commit, false)
	for i, name := range r.images {
		ino := inoImages + uint64(i)
		img := r.byName[name]
		n := r.NewPersistentInode(ctx, &mntRegular{mntNode: mntNode{fs: r.fs}, ino: ino, mode: syscall.S_IFREG | 0o444, size: img.Size(), name: name, readAt: img.ReadAt},
			fs.StableAttr{Mode: syscall.S_IFREG, Ino: ino})
		r.AddChild(name, n, false)
	}
}

// rootNlink is the root's link count: its own ".", its entry in the
// parent, and tree/'s "..".
const rootNlink = 3

// Getattr reports the root directory.
func (r *mntRoot) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	r.fs.setAttr(&out.Attr, inoRoot, syscall.S_IFDIR|0o755, 0, rootNlink)
	return 0
}

// mntDir is a directory of the tree (idx -1: tree/ itself) or a submodule,
// which has no children.
type mntDir struct {
	mntNode
	idx int
}

var (
	_ fs.InodeEmbedder      = (*mntDir)(nil)
	_ fs.NodeLookuper       = (*mntDir)(nil)
	_ fs.NodeOpendirHandler = (*mntDir)(nil)
	_ fs.NodeGetattrer      = (*mntDir)(nil)
	_ mntWriteOps           = (*mntDir)(nil)
)

func (d *mntDir) ino() uint64 {
	if d.idx < 0 {
		return inoTree
	}
	return d.fs.idx.ino(int32(d.idx))
}

// Getattr reports the directory; st_nlink counts its subdirectories.
func (d *mntDir) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	info := &d.fs.idx.dirs[d.idx+1]
	d.fs.setAttr(&out.Attr, d.ino(), syscall.S_IFDIR|0o755, 0, 2+uint32(info.subdirs))
	return 0
}

// Lookup finds a child by name in the directory index.
func (d *mntDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	i, ok := d.fs.idx.lookup(d.idx, name)
	if !ok {
		return nil, syscall.ENOENT
	}
	return d.fs.child(ctx, &d.Inode, i, out), 0
}

// child makes (or finds) the inode of entry i, filling out with its
// attributes.
func (f *mntFS) child(ctx context.Context, parent *fs.Inode, i int32, out *fuse.EntryOut) *fs.Inode {
	e := &f.idx.entries[i]
	ino := f.idx.ino(i)
	mode := mntMode(e.Kind)
	var node fs.InodeEmbedder
	switch e.Kind {
	case imager.KindDir, imager.KindSubmodule:
		node = &mntDir{mntNode: mntNode{fs: f}, idx: int(i)}
		f.setAttr(&out.Attr, ino, mode, 0, 2+uint32(f.idx.dirs[i+1].subdirs))
	case imager.KindSymlink:
		node = &mntLink{mntNode: mntNode{fs: f}, idx: i}
		f.setAttr(&out.Attr, ino, mode, int64(len(e.Target)), 1)
	default:
		node = f.newTreeFile(i)
		f.setAttr(&out.Attr, ino, mode, e.Size, 1)
	}
	return parent.NewInode(ctx, node, fs.StableAttr{Mode: mode & syscall.S_IFMT, Ino: ino})
}

// OpendirHandle lists the directory from the index; the listing never
// changes, so the kernel may cache it.
func (d *mntDir) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return &mntDirStream{dir: d}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// mntDirStream reads a directory's children; offset k is after child k-1.
type mntDirStream struct {
	dir  *mntDir
	mu   sync.Mutex
	next int
}

var (
	_ fs.FileReaddirenter = (*mntDirStream)(nil)
	_ fs.FileSeekdirer    = (*mntDirStream)(nil)
	_ fs.FileReleasedirer = (*mntDirStream)(nil)
	_ fs.FileLookuper     = (*mntDirStream)(nil)
)

// Readdirent returns the next child, or nil at the end.
func (s *mntDirStream) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx := s.dir.fs.idx
	kids := idx.dirs[s.dir.idx+1].kids
	if s.next >= len(kids) {
		return nil, 0
	}
	i := kids[s.next]
	s.next++
	return &fuse.DirEntry{
		Name: idx.name(i),
		Mode: mntMode(idx.entries[i].Kind) & syscall.S_IFMT,
		Ino:  idx.ino(i),
		Off:  uint64(s.next),
	}, 0
}

// Seekdir moves to offset off (0: the start).
func (s *mntDirStream) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off > uint64(len(s.dir.fs.idx.dirs[s.dir.idx+1].kids)) {
		return syscall.EINVAL
	}
	s.next = int(off)
	return 0
}

// Lookup serves READDIRPLUS's lookups.
func (s *mntDirStream) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return s.dir.Lookup(ctx, name, out)
}

// Releasedir has nothing to release.
func (s *mntDirStream) Releasedir(ctx context.Context, releaseFlags uint32) {}

// mntLink is a symlink of the tree.
type mntLink struct {
	mntNode
	idx int32
}

var (
	_ fs.InodeEmbedder  = (*mntLink)(nil)
	_ fs.NodeGetattrer  = (*mntLink)(nil)
	_ fs.NodeReadlinker = (*mntLink)(nil)
	_ mntWriteOps       = (*mntLink)(nil)
)

// Getattr reports the link; its size is the target's length.
func (n *mntLink) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	e := &n.fs.idx.entries[n.idx]
	n.fs.setAttr(&out.Attr, n.fs.idx.ino(n.idx), mntMode(e.Kind), int64(len(e.Target)), 1)
	return 0
}

// Readlink returns the target as the tree records it.
func (n *mntLink) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	return []byte(n.fs.idx.entries[n.idx].Target), 0
}

// mntRegular is a read-only regular file: a file of the tree, an image
// at the root, or COMMIT.
type mntRegular struct {
	mntNode
	ino    uint64
	mode   uint32
	size   int64
	name   string                                 // what the log calls it
	readAt func(p []byte, off int64) (int, error) // its bytes, as io.ReaderAt
}

var (
	_ fs.InodeEmbedder = (*mntRegular)(nil)
	_ fs.NodeGetattrer = (*mntRegular)(nil)
	_ fs.NodeOpener    = (*mntRegular)(nil)
	_ fs.NodeReader    = (*mntRegular)(nil)
	_ mntWriteOps      = (*mntRegular)(nil)
)

// newTreeFile is the node of file entry i of the tree: its blob.
func (f *mntFS) newTreeFile(i int32) *mntRegular {
	e := &f.idx.entries[i]
	return &mntRegular{mntNode: mntNode{fs: f}, ino: f.idx.ino(i), mode: mntMode(e.Kind), size: e.Size,
		name:   mountTreeName + "/" + e.Path + " (blob " + e.Blob.String() + ")",
		readAt: func(p []byte, o int64) (int, error) { return f.blobs.ReadBlob(e.Blob, p, o) }}
}

// newBytesFile is the node of a small generated file.
func (f *mntFS) newBytesFile(ino uint64, name string, data []byte) *mntRegular {
	return &mntRegular{mntNode: mntNode{fs: f}, ino: ino, mode: syscall.S_IFREG | 0o444, size: int64(len(data)), name: name,
		readAt: func(p []byte, o int64) (int, error) { return copy(p, data[o:]), nil }}
}

// Getattr reports the file's mode and size.
func (n *mntRegular) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fs.setAttr(&out.Attr, n.ino, n.mode, n.size, 1)
	return 0
}

// Open allows reading only; the page cache is kept across opens.
func (n *mntRegular) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return mntOpen(flags)
}

// Read reads the file's bytes straight into the kernel's buffer.
func (n *mntRegular) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return n.fs.read(n.name, n.size, n.readAt, dest, off)
}
