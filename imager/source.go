package imager

import (
	"encoding/hex"
	"time"
)

// Kind says what a tree entry is.
type Kind uint8

// Entry kinds, as git's tree modes name them.
const (
	KindFile       Kind = iota // 100644
	KindExecutable             // 100755
	KindSymlink                // 120000
	KindSubmodule              // 160000 (a gitlink: no content here)
	KindDir                    // 040000
)

func (k Kind) String() string {
	switch k {
	case KindFile:
		return "file"
	case KindExecutable:
		return "executable"
	case KindSymlink:
		return "symlink"
	case KindSubmodule:
		return "submodule"
	case KindDir:
		return "dir"
	}
	return "unknown"
}

// BlobID names a blob (a SHA-1 object id).
type BlobID [20]byte

func (id BlobID) String() string { return hex.EncodeToString(id[:]) }

// Entry is one item of a tree.
//
// The fields are in this order so that an Entry takes 64 bytes, not 72,
// and its pointers come first: the collector scans the strings and skips
// the rest (a big tree's listing is hundreds of thousands of them).
type Entry struct {
	Path   string // slash-separated, relative to the root, no leading or trailing slash
	Target string // symlink target (the blob's content), for symlinks only
	Size   int64  // content size for files and symlinks; 0 for directories and submodules
	Blob   BlobID // content of files and symlinks; the tree id for directories; the commit id for submodules
	Kind   Kind
}

// Tree is what an image is built from: a commit's entries in git's tree
// order (depth first, a directory before its contents, siblings sorted as
// git sorts them), the commit id and time.
type Tree struct {
	CommitID string    // hex object id of the commit, "" when there is none
	Time     time.Time // commit time: used as every entry's mtime
	Entries  []Entry
	// Plain promises what FollowSymlinks and SkipSymlinks otherwise check
	// entry by entry before returning a tree as is: no symlinks or link
	// targets, paths non-empty without a leading or trailing slash, every
	// entry's parent an earlier directory entry still open (depth first),
	// siblings strictly in git's order with distinct names. A lister that
	// checked this as it read each tree object sets it, sparing builders
	// a pass over every path; false only means unchecked.
	Plain bool
	// Hints, when as long as Entries, are the lister's notes on where
	// each entry's blob lies, handed back to the BlobReader with each read
	// of it (BlobRead.Hint): a reader that looked every blob up to size it
	// need not look it up again to read it. 0 is none. Opaque here; a
	// reader must not trust them (gitfs checks each against its blob id),
	// so a tree changed without them stays right.
	Hints []uint64
}

// BlobReader reads ranges of blobs. ReadBlob behaves as io.ReaderAt.ReadAt
// on the blob's content. It must be safe for concurrent use.
type BlobReader interface {
	ReadBlob(id BlobID, p []byte, off int64) (int, error)
}

// Image is a disk image: a size and random read access.
type Image interface {
	Size() int64
	ReadAt(p []byte, off int64) (int, error)
}

// Warning reports an entry that an image represents differently from git,
// or that some reader cannot take.
type Warning struct {
	Path string
	Msg  string
}

func (w Warning) String() string { return w.Path + ": " + w.Msg }
