package odb

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
)

// Sentinel errors. Every error about an object names it.
var (
	ErrMissingObject = errors.New("odb: missing object")
	ErrCorruptObject = errors.New("odb: corrupt object")
	ErrClosed        = errors.New("odb: closed")
)

// Cache sizes.
const (
	// DefaultCacheSize is the in-memory cache of inflated blob data used
	// when Options.CacheSize is 0.
	DefaultCacheSize = 16 << 20
	// DefaultDiskCacheSize bounds the on-disk spill of big blobs when
	// Options.DiskCacheSize is 0.
	DefaultDiskCacheSize = 8 << 30
)

// Options configure a Store's caches.
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

// Store reads the objects of one repository. It is safe for concurrent use.
type Store struct {
	gitDir    string
	commonDir string // where objects/ is: gitDir, or a linked work tree's common directory
	objects   string // commonDir/objects

	pool     chan *slot
	slots    []*slot
	closed   chan struct{}
	once     sync.Once
	gitCache cache.Object // go-git's object cache, shared by the slots (it locks itself)

	packs packList
	blobs *blobCache
	warm  warmer
}

// Open opens the object store of the git directory gitDir, whose objects
// live under commonDir/objects (commonDir is gitDir but for a linked work
// tree).
func Open(gitDir, commonDir string, opts Options) (*Store, error) {
	db := &Store{
		gitDir: gitDir, commonDir: commonDir, objects: filepath.Join(commonDir, "objects"),
		closed: make(chan struct{}), gitCache: cache.NewObjectLRU(gitCacheSize),
	}
	db.packs.db = db
	n := min(max(runtime.GOMAXPROCS(0)*2, 2), maxPool)
	db.pool = make(chan *slot, n)
	// The first slot is loaded now (it checks the repository is one);
	// the others when first taken (acquire), so a start does not open
	// the repository n times.
	for i := 0; i < n; i++ {
		sl := &slot{db: db}
		if i == 0 {
			if err := sl.load(); err != nil {
				return nil, err
			}
		}
		db.slots = append(db.slots, sl)
		db.pool <- sl
	}
	var err error
	if db.blobs, err = newBlobCache(db, opts); err != nil {
		db.closeSlots()
		return nil, fmt.Errorf("odb: %w", err)
	}
	return db, nil
}

// Close releases files and removes the private spill directory. Reads
// in progress finish first; later calls fail with ErrClosed.
func (db *Store) Close() error {
	var err error
	db.once.Do(func() {
		close(db.closed)
		// Wait for every slot to come back, then close them.
		for range db.slots {
			<-db.pool
		}
		db.closeSlots()
		db.packs.close()
		err = db.blobs.close()
		db.warm.wait()
	})
	return err
}

// ReadBlob reads len(p) bytes of blob id at offset off, as
// io.ReaderAt.ReadAt: fewer bytes only at the end of the blob, with
// io.EOF. It is safe for many concurrent callers. A missing or corrupt
// blob is an error naming it (wrapping ErrMissingObject or
// ErrCorruptObject); a blob shorter than its header says is an error,
// never short data.
func (db *Store) ReadBlob(id plumbing.Hash, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("odb: blob %s: negative offset %d", id, off)
	}
	c := db.blobs
	if c.closed.Load() {
		return 0, ErrClosed
	}
	if data, ok := c.getMem(id); ok {
		return c.hit(copyAt(data, p, off))
	}
	if n, ok, err := c.log.readAt(id, p, off); ok {
		return c.hit(n, err)
	}
	if s := c.getSpill(id); s != nil {
		defer c.unref(s)
		return c.hit(s.readAt(c, p, off))
	}
	// First read of this blob.
	b, err := db.openBlob(id, c.smallMax)
	if err != nil {
		return 0, err
	}
	if b.rc != nil {
		return c.miss(c.readNewSpill(id, b.size, b.rc, b.at, p, off))
	}
	c.putMem(id, b.data)
	return c.miss(copyAt(b.data, p, off))
}

// copyAt copies data[off:] into p with io.ReaderAt semantics, those of
// bytes.Reader.ReadAt (whose reader stays on the stack: no allocation).
func copyAt(data, p []byte, off int64) (int, error) {
	return bytes.NewReader(data).ReadAt(p, off)
}

// isNotFound reports whether err says an object is absent.
func isNotFound(err error) bool {
	return errors.Is(err, plumbing.ErrObjectNotFound) || errors.Is(err, os.ErrNotExist)
}

// objectErr wraps err about object id with the right sentinel; what
// names the object's kind ("blob", "tree").
func objectErr(what string, id plumbing.Hash, err error) error {
	switch {
	case isNotFound(err):
		return fmt.Errorf("%w: %s %s", ErrMissingObject, what, id)
	case errors.Is(err, ErrClosed):
		return err
	case errors.Is(err, errChainNoDisk):
		return fmt.Errorf("odb: %s %s: %w", what, id, err)
	}
	return fmt.Errorf("%w: %s %s: %w", ErrCorruptObject, what, id, err)
}

// BlobSize returns the size of blob id, from its pack entry or loose
// header when this package can read them, else through go-git.
func (db *Store) BlobSize(id plumbing.Hash) (int64, error) {
	size, err := db.headerSize(id)
	if err != nil {
		err = db.withSlot(func(sl *slot) error {
			var err error
			if size, err = sl.st.EncodedObjectSize(id); err == nil {
				return nil
			}
			// go-git finds objects of alternates only this way.
			o, aerr := db.encodedObject(sl, plumbing.AnyObject, id)
			if aerr != nil {
				return err
			}
			size = o.Size()
			return nil
		})
	}
	if err != nil {
		return 0, objectErr("blob", id, err)
	}
	if size < 0 {
		return 0, fmt.Errorf("%w: blob %s: negative size %d", ErrCorruptObject, id, size)
	}
	return size, nil
}

// ReadObject reads object id, which must be of type typ and at most max
// bytes, whole: a tree, a commit, a small blob such as a .gitattributes.
func (db *Store) ReadObject(id plumbing.Hash, typ plumbing.ObjectType, max int64) ([]byte, error) {
	return db.ReadObjectTo(nil, id, typ, max)
}

// ReadObjectTo is ReadObject reading into dst's memory when it has room
// for the object: a caller reading many objects one after another (the
// trees of a listing) reuses one buffer rather than touch fresh memory
// for each. The bytes returned may be dst's.
func (db *Store) ReadObjectTo(dst []byte, id plumbing.Hash, typ plumbing.ObjectType, max int64) ([]byte, error) {
	if data, found, err := db.readObjectDirect(id, typ, max, dst); found {
		if err != nil {
			return nil, objectErr(typ.String(), id, err)
		}
		return data, nil
	}
	var data []byte
	err := db.withSlot(func(sl *slot) error {
		o, err := db.encodedObject(sl, plumbing.AnyObject, id)
		if err != nil {
			return err
		}
		if o.Type() != typ {
			return fmt.Errorf("is a %s, not a %s", o.Type(), typ)
		}
		if o.Size() > max {
			return fmt.Errorf("%s of %d bytes is over the %d-byte limit here", typ, o.Size(), max)
		}
		data, err = readAllObject(o)
		return err
	})
	if err != nil {
		return nil, objectErr(typ.String(), id, err)
	}
	return data, nil
}
