// Package fusefs mounts a commit read-only through FUSE: its images as
// files at the root, its tree under tree/, and COMMIT naming it. It needs
// only imager's types (a tree listing, a blob reader, images), so it
// serves any source of those.
package fusefs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/gitblk/gitblk/imager"
)

// Names at the root of a mount, besides the images.
const (
	mountTreeName   = "tree"
	mountCommitName = "COMMIT"
)

// Mount layout choices.
const (
	// mountCacheTimeout is how long the kernel may cache entries, negative
	// lookups and attributes. Nothing under a mount ever changes, so any
	// long value is right; it only bounds how long a stale view could live
	// if that promise were ever broken.
	mountCacheTimeout = time.Hour
	// mountBlockSize is the st_blksize reported: the page size, what the
	// kernel reads ahead in.
	mountBlockSize = 4096
	// mntStatBlock is the unit of st_blocks, fixed by stat(2).
	mntStatBlock = 512
	// mntNameMax is the longest file name the kernel passes (NAME_MAX).
	mntNameMax = 255
	// devFUSE is the FUSE device every mount needs.
	devFUSE = "/dev/fuse"
	// procMountinfo lists this process's mounts.
	procMountinfo = "/proc/self/mountinfo"
	// mountinfoPointField is the index of the mount point in a mountinfo line.
	mountinfoPointField = 4
	// mountinfoMaxLine bounds a mountinfo line (two paths of up to PATH_MAX,
	// escaped, and options).
	mountinfoMaxLine = 1 << 20
)

// Fixed inode numbers; entries of the tree follow the images.
const (
	inoRoot   = 1 // FUSE_ROOT_ID
	inoTree   = 2
	inoCommit = 3
	inoImages = 4
)

// Sentinel errors of Mount.
var (
	ErrMountPointMissing  = errors.New("fusefs: mount point does not exist")
	ErrMountPointNotDir   = errors.New("fusefs: mount point is not a directory")
	ErrMountPointNotEmpty = errors.New("fusefs: mount point is not empty")
	ErrMountPointMounted  = errors.New("fusefs: mount point is already a mount point")
	ErrNoFUSE             = errors.New("fusefs: FUSE is not available")
	ErrMountNotPermitted  = errors.New("fusefs: FUSE mounting is not permitted")
	ErrMountFailed        = errors.New("fusefs: FUSE mount failed")
	ErrMountConfig        = errors.New("fusefs: bad mount configuration")
)

// Config describes what a mount shows; all of it is fixed for the life
// of the mount.
type Config struct {
	CommitID, Ref string                  // written to COMMIT, one per line
	Time          time.Time               // commit time: the mtime of everything (zero: Tree.Time)
	Tree          *imager.Tree            // the commit's full tree, shown under tree/
	Blobs         imager.BlobReader       // reads file contents (concurrency-safe)
	Images        map[string]imager.Image // read-only regular files at the root, by name
	Logger        *slog.Logger            // nil: no logging
	AllowOther    bool                    // let other users see the mount (FUSE allow_other)
}

// Mounted is a mounted, read-only FUSE view of a commit. (Not named Mount:
// that is the function that makes one.)
type Mounted struct {
	dir    string
	server *fuse.Server
	log    *slog.Logger
	done   chan struct{} // closed when the kernel connection is gone

	mu sync.Mutex // serializes Unmount
}

// Mount mounts cfg read-only on dir, which must be an existing, empty
// directory that is not a mount point already, and serves it until it is
// unmounted (Unmount, or `fusermount3 -u dir`).
func Mount(dir string, cfg Config) (*Mounted, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Tree == nil {
		return nil, fmt.Errorf("%w: no tree", ErrMountConfig)
	}
	if cfg.Blobs == nil {
		return nil, fmt.Errorf("%w: no blob reader", ErrMountConfig)
	}
	names := make([]string, 0, len(cfg.Images))
	for name, img := range cfg.Images {
		if !mntValidName(name) || name == mountTreeName || name == mountCommitName {
			return nil, fmt.Errorf("%w: image name %q", ErrMountConfig, name)
		}
		if img == nil || img.Size() < 0 {
			return nil, fmt.Errorf("%w: image %q has no size", ErrMountConfig, name)
		}
		names = append(names, name)
	}
	sort.Strings(names)

	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("fusefs: mount point %s: %w", dir, err)
	}
	if err := checkMountPoint(abs); err != nil {
		return nil, err
	}
	if _, err := os.Stat(devFUSE); err != nil {
		return nil, fmt.Errorf("%w: %s: %w (load the fuse kernel module, or run the container with --device %s; "+
			"install the fuse3 package for fusermount3)", ErrNoFUSE, devFUSE, err, devFUSE)
	}
	if os.Geteuid() != 0 {
		// fusermount3 opens the device as the calling user.
		if err := syscall.Access(devFUSE, accessReadWrite); err != nil {
			return nil, fmt.Errorf("%w: %s is not readable and writable by uid %d: %w "+
				"(run as root, or give the user access to %s)", ErrMountNotPermitted, devFUSE, os.Geteuid(), err, devFUSE)
		}
		if _, err := exec.LookPath("fusermount3"); err != nil {
			return nil, fmt.Errorf("%w: fusermount3 not found: install the fuse3 package", ErrMountNotPermitted)
		}
	}

	idx := newMountIndex(cfg.Tree.Entries, inoImages+uint64(len(names)))
	for _, w := range idx.warnings {
		log.Warn("fusefs: entry not shown under tree/", "path", w.Path, "reason", w.Msg)
	}
	mtime := cfg.Time
	if mtime.IsZero() {
		mtime = cfg.Tree.Time
	}
	root := &mntRoot{
		fs:     &mntFS{idx: idx, blobs: cfg.Blobs, log: log, time: mtime},
		commit: []byte(cfg.CommitID + "\n" + cfg.Ref + "\n"),
		images: names,
		byName: cfg.Images,
	}

	timeout := mountCacheTimeout
	goLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	opts := &fs.Options{
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &timeout,
		UID:             uint32(os.Getuid()),
		GID:             uint32(os.Getgid()),
		Logger:          goLog,
		MountOptions: fuse.MountOptions{
			Options:                  []string{"ro", "default_permissions"},
			AllowOther:               cfg.AllowOther,
			FsName:                   mountSource(cfg.CommitID),
			Name:                     "gitblk",
			Logger:                   goLog,
			EnableSymlinkCaching:     true,
			ExplicitDataCacheControl: true,
			// As root, mount(2) directly; otherwise (or if that is
			// refused) through the setuid fusermount3.
			DirectMount:      true,
			DirectMountFlags: syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV,
		},
	}
	if mountTestWritable {
		opts.MountOptions.Options = []string{"default_permissions"}
		opts.MountOptions.DirectMountFlags = syscall.MS_NOSUID | syscall.MS_NODEV
	}
	server, err := fs.Mount(abs, root, opts)
	if err != nil {
		return nil, mountError(abs, err)
	}
	m := &Mounted{dir: abs, server: server, log: log, done: make(chan struct{})}
	go func() {
		server.Wait()
		close(m.done)
		log.Info("fusefs: unmounted", "dir", abs)
	}()
	log.Info("fusefs: mounted", "dir", abs, "commit", cfg.CommitID, "ref", cfg.Ref,
		"entries", len(cfg.Tree.Entries), "images", strings.Join(names, ","))
	return m, nil
}

// mountSource is the mount's source as mount(8) lists it: gitblk and the
// commit id, if it is one (fusermount's option syntax takes no commas).
func mountSource(commit string) string {
	if commit == "" || strings.Trim(commit, "0123456789abcdef") != "" {
		return "gitblk"
	}
	return "gitblk:" + commit
}

// mountTestWritable, set only by tests, mounts without "ro" so that the
// nodes' own EROFS answers are exercised, not just the kernel's.
var mountTestWritable bool

// accessReadWrite is access(2)'s R_OK|W_OK.
const accessReadWrite = 0x4 | 0x2

// mountError explains a failed mount and what would make it work.
func mountError(dir string, err error) error {
	return fmt.Errorf("%w at %s: %w (mounting FUSE needs root with CAP_SYS_ADMIN, "+
		"or the setuid fusermount3 from the fuse3 package)", ErrMountFailed, dir, trimmedError{err})
}

// trimmedError drops the newline go-fuse ends some messages with.
type trimmedError struct{ err error }

func (e trimmedError) Error() string { return strings.TrimSpace(e.err.Error()) }
func (e trimmedError) Unwrap() error { return e.err }

// Dir is the absolute mount point.
func (m *Mounted) Dir() string { return m.dir }

// Wait returns when the mount is gone, by Unmount or by `fusermount3 -u`.
func (m *Mounted) Wait() { <-m.done }

// Unmount unmounts and returns when the mount is gone. It fails (EBUSY)
// while files under the mount are open. Unmounting a mount that is
// already gone is not an error.
func (m *Mounted) Unmount() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.done:
		return nil
	default:
	}
	if err := m.server.Unmount(); err != nil {
		select {
		case <-m.done: // unmounted by someone else meanwhile
			return nil
		default:
		}
		return fmt.Errorf("fusefs: unmounting %s: %w", m.dir, err)
	}
	<-m.done
	return nil
}

// checkMountPoint returns a clear error for a mount point that is missing,
// not a directory, already mounted (or a dead FUSE mount) or not empty.
func checkMountPoint(dir string) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, syscall.ENOTCONN):
		return fmt.Errorf("%w: %s is a dead FUSE mount (run fusermount3 -u %s)", ErrMountPointMounted, dir, dir)
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w: %s", ErrMountPointMissing, dir)
	case err != nil:
		return fmt.Errorf("fusefs: mount point: %w", err)
	case !st.IsDir():
		return fmt.Errorf("%w: %s", ErrMountPointNotDir, dir)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("fusefs: mount point: %w", err)
	}
	mounted, err := isMountPoint(real)
	if err != nil {
		return err
	}
	if mounted {
		return fmt.Errorf("%w: %s (if it is a gitblk mount whose process died, run fusermount3 -u %s)",
			ErrMountPointMounted, dir, dir)
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fusefs: mount point: %w", err)
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != io.EOF {
		if err != nil {
			return fmt.Errorf("fusefs: mount point: %w", err)
		}
		return fmt.Errorf("%w: %s", ErrMountPointNotEmpty, dir)
	}
	return nil
}

// isMountPoint reports whether dir (absolute, symlinks resolved) is listed
// as a mount point in /proc/self/mountinfo.
func isMountPoint(dir string) (bool, error) {
	f, err := os.Open(procMountinfo)
	if err != nil {
		return false, fmt.Errorf("fusefs: checking mount point: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, mountinfoMaxLine)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > mountinfoPointField && unescapeMountinfo(fields[mountinfoPointField]) == dir {
			return true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("fusefs: reading %s: %w", procMountinfo, err)
	}
	return false, nil
}

// unescapeMountinfo undoes the octal escapes (\040 for space, \011, \012,
// \134) the kernel writes in mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && mntIsOctal(s[i+1]) && mntIsOctal(s[i+2]) && mntIsOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func mntIsOctal(c byte) bool { return c >= '0' && c <= '7' }

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

// mntReadOnly answers every operation that would change something with
// EROFS, and statfs. Every node embeds it; the mount is also read-only in
// the kernel, which usually refuses first.
type mntReadOnly struct{}

var (
	_ fs.NodeSetattrer      = mntReadOnly{}
	_ fs.NodeCreater        = mntReadOnly{}
	_ fs.NodeWriter         = mntReadOnly{}
	_ fs.NodeMkdirer        = mntReadOnly{}
	_ fs.NodeMknoder        = mntReadOnly{}
	_ fs.NodeLinker         = mntReadOnly{}
	_ fs.NodeSymlinker      = mntReadOnly{}
	_ fs.NodeUnlinker       = mntReadOnly{}
	_ fs.NodeRmdirer        = mntReadOnly{}
	_ fs.NodeRenamer        = mntReadOnly{}
	_ fs.NodeSetxattrer     = mntReadOnly{}
	_ fs.NodeRemovexattrer  = mntReadOnly{}
	_ fs.NodeAllocater      = mntReadOnly{}
	_ fs.NodeCopyFileRanger = mntReadOnly{}
	_ fs.NodeTmpfiler       = mntReadOnly{}
)

func (mntReadOnly) Setattr(context.Context, fs.FileHandle, *fuse.SetAttrIn, *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

func (mntReadOnly) Create(context.Context, string, uint32, uint32, *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}

func (mntReadOnly) Write(context.Context, fs.FileHandle, []byte, int64) (uint32, syscall.Errno) {
	return 0, syscall.EROFS
}

func (mntReadOnly) Mkdir(context.Context, string, uint32, *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (mntReadOnly) Mknod(context.Context, string, uint32, uint32, *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (mntReadOnly) Link(context.Context, fs.InodeEmbedder, string, *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (mntReadOnly) Symlink(context.Context, string, string, *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (mntReadOnly) Unlink(context.Context, string) syscall.Errno { return syscall.EROFS }

func (mntReadOnly) Rmdir(context.Context, string) syscall.Errno { return syscall.EROFS }

func (mntReadOnly) Rename(context.Context, string, fs.InodeEmbedder, string, uint32) syscall.Errno {
	return syscall.EROFS
}

func (mntReadOnly) Setxattr(context.Context, string, []byte, uint32) syscall.Errno {
	return syscall.EROFS
}

func (mntReadOnly) Removexattr(context.Context, string) syscall.Errno { return syscall.EROFS }

func (mntReadOnly) Allocate(context.Context, fs.FileHandle, uint64, uint64, uint32) syscall.Errno {
	return syscall.EROFS
}

func (mntReadOnly) CopyFileRange(context.Context, fs.FileHandle, uint64, *fs.Inode, fs.FileHandle, uint64, uint64, uint64) (uint32, syscall.Errno) {
	return 0, syscall.EROFS
}

func (mntReadOnly) Tmpfile(context.Context, uint32, uint32, *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}

// mntWriteOps is every operation that changes something; each node type
// asserts it so that none falls back to a library default.
type mntWriteOps interface {
	fs.NodeSetattrer
	fs.NodeCreater
	fs.NodeWriter
	fs.NodeMkdirer
	fs.NodeMknoder
	fs.NodeLinker
	fs.NodeSymlinker
	fs.NodeUnlinker
	fs.NodeRmdirer
	fs.NodeRenamer
	fs.NodeSetxattrer
	fs.NodeRemovexattrer
	fs.NodeAllocater
	fs.NodeCopyFileRanger
	fs.NodeTmpfiler
}

var (
	_ mntWriteOps     = mntReadOnly{}
	_ fs.NodeStatfser = mntReadOnly{}
)

// Statfs reports block size and name length, so that pathconf and df
// make sense; there is no free space.
func (mntReadOnly) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	out.Bsize = mountBlockSize
	out.Frsize = mountBlockSize
	out.NameLen = mntNameMax
	return 0
}

// mntRoot is the mount's root: the images, COMMIT and tree/.
type mntRoot struct {
	fs.Inode
	mntReadOnly
	fs     *mntFS
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
	tree := r.NewPersistentInode(ctx, &mntDir{fs: r.fs, idx: -1}, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: inoTree})
	r.AddChild(mountTreeName, tree, false)
	commit := r.NewPersistentInode(ctx, &mntBytes{fs: r.fs, ino: inoCommit, data: r.commit},
		fs.StableAttr{Mode: syscall.S_IFREG, Ino: inoCommit})
	r.AddChild(mountCommitName, commit, false)
	for i, name := range r.images {
		ino := inoImages + uint64(i)
		img := r.byName[name]
		n := r.NewPersistentInode(ctx, &mntImage{fs: r.fs, ino: ino, name: name, img: img, size: img.Size()},
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
	fs.Inode
	mntReadOnly
	fs  *mntFS
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
		node = &mntDir{fs: f, idx: int(i)}
		f.setAttr(&out.Attr, ino, mode, 0, 2+uint32(f.idx.dirs[i+1].subdirs))
	case imager.KindSymlink:
		node = &mntLink{fs: f, idx: i}
		f.setAttr(&out.Attr, ino, mode, int64(len(e.Target)), 1)
	default:
		node = &mntFile{fs: f, idx: i}
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

// mntFile is a regular file (or executable) of the tree.
type mntFile struct {
	fs.Inode
	mntReadOnly
	fs  *mntFS
	idx int32
}

var (
	_ fs.InodeEmbedder = (*mntFile)(nil)
	_ fs.NodeGetattrer = (*mntFile)(nil)
	_ fs.NodeOpener    = (*mntFile)(nil)
	_ fs.NodeReader    = (*mntFile)(nil)
	_ mntWriteOps      = (*mntFile)(nil)
)

// Getattr reports the file's mode and size.
func (n *mntFile) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	e := &n.fs.idx.entries[n.idx]
	n.fs.setAttr(&out.Attr, n.fs.idx.ino(n.idx), mntMode(e.Kind), e.Size, 1)
	return 0
}

// Open allows reading only; the page cache is kept across opens.
func (n *mntFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return mntOpen(flags)
}

// Read reads the blob range straight into the kernel's buffer.
func (n *mntFile) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	e := &n.fs.idx.entries[n.idx]
	return n.fs.read(mountTreeName+"/"+e.Path+" (blob "+e.Blob.String()+")", e.Size,
		func(p []byte, o int64) (int, error) { return n.fs.blobs.ReadBlob(e.Blob, p, o) }, dest, off)
}

// mntLink is a symlink of the tree.
type mntLink struct {
	fs.Inode
	mntReadOnly
	fs  *mntFS
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

// mntImage is an image file at the root.
type mntImage struct {
	fs.Inode
	mntReadOnly
	fs   *mntFS
	ino  uint64
	name string
	img  imager.Image
	size int64
}

var (
	_ fs.InodeEmbedder = (*mntImage)(nil)
	_ fs.NodeGetattrer = (*mntImage)(nil)
	_ fs.NodeOpener    = (*mntImage)(nil)
	_ fs.NodeReader    = (*mntImage)(nil)
	_ mntWriteOps      = (*mntImage)(nil)
)

// Getattr reports a read-only regular file of the image's size.
func (n *mntImage) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fs.setAttr(&out.Attr, n.ino, syscall.S_IFREG|0o444, n.size, 1)
	return 0
}

// Open allows reading only; the page cache is kept across opens.
func (n *mntImage) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return mntOpen(flags)
}

// Read reads image bytes straight into the kernel's buffer.
func (n *mntImage) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return n.fs.read(n.name, n.size, n.img.ReadAt, dest, off)
}

// mntBytes is a small generated file (COMMIT).
type mntBytes struct {
	fs.Inode
	mntReadOnly
	fs   *mntFS
	ino  uint64
	data []byte
}

var (
	_ fs.InodeEmbedder = (*mntBytes)(nil)
	_ fs.NodeGetattrer = (*mntBytes)(nil)
	_ fs.NodeOpener    = (*mntBytes)(nil)
	_ fs.NodeReader    = (*mntBytes)(nil)
	_ mntWriteOps      = (*mntBytes)(nil)
)

// Getattr reports a read-only regular file.
func (n *mntBytes) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fs.setAttr(&out.Attr, n.ino, syscall.S_IFREG|0o444, int64(len(n.data)), 1)
	return 0
}

// Open allows reading only.
func (n *mntBytes) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return mntOpen(flags)
}

// Read copies from the held bytes.
func (n *mntBytes) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return n.fs.read(mountCommitName, int64(len(n.data)), func(p []byte, o int64) (int, error) {
		return copy(p, n.data[o:]), nil
	}, dest, off)
}
