package fusefs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

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
