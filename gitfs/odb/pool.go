package odb

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/osfs"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/filesystem/dotgit"
)

// The go-git fallback: a small pool of independent go-git storages. go-git's
// object storage is not safe for concurrent use (go-git#773), so each slot
// is used by one goroutine at a time: whoever took it from Store.pool.
const (
	// maxPool caps the number of independent go-git storages.
	maxPool = 8
	// largeObjectThreshold is the size above which go-git streams an
	// object instead of reading it into memory (filesystem.Options).
	largeObjectThreshold = 1 << 20
	// gitCacheSize is go-git's own object cache (delta bases, small
	// objects), one shared by every storage in the pool: a base inflated
	// by one reader serves them all.
	gitCacheSize = 8 << 20
	// packCheckInterval is how often a slot compares objects/pack with
	// what it loaded: a repack or fetch changes it, and a slot holding
	// deleted packs open would keep their disk space.
	packCheckInterval = time.Second
)

// ErrNotRepository: go-git finds no repository in the directory.
var ErrNotRepository = errors.New("odb: not a git repository")

// slot is one independent go-git storage.
type slot struct {
	db  *Store
	st  *filesystem.Storage
	obj *gitStorage // st, objects from our packs first
	gr  *gogit.Repository

	packStamp time.Time // modification time of objects/pack at load
	checked   time.Time // when packStamp was last compared
}

// load (re)creates the slot's storage: a fresh view of refs, packs and
// loose objects. The old storage is closed.
func (sl *slot) load() error {
	db := sl.db
	var fs billy.Filesystem = osfs.New(db.gitDir)
	if db.commonDir != db.gitDir {
		fs = dotgit.NewRepositoryFilesystem(fs, osfs.New(db.commonDir))
	}
	st := filesystem.NewStorageWithOptions(fs, db.gitCache, filesystem.Options{
		KeepDescriptors:      true,
		LargeObjectThreshold: largeObjectThreshold,
		// objects/info/alternates holds absolute paths: resolve them from
		// the file system root, not inside the repository.
		AlternatesFS: osfs.New(string(filepath.Separator)),
	})
	obj := &gitStorage{Storage: st, db: db}
	gr, err := gogit.Open(obj, nil)
	if err != nil {
		_ = st.Close()
		if errors.Is(err, gogit.ErrRepositoryNotExists) {
			return fmt.Errorf("%w: %s", ErrNotRepository, db.gitDir)
		}
		return err
	}
	if sl.st != nil {
		_ = sl.st.Close()
	}
	sl.st, sl.obj, sl.gr = st, obj, gr
	sl.packStamp, sl.checked = db.packDirStamp(), time.Now()
	return nil
}

// packDirStamp is the modification time of the objects/pack directory.
func (db *Store) packDirStamp() time.Time {
	fi, err := os.Stat(filepath.Join(db.objects, "pack"))
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// refresh reloads the slot when objects/pack changed since it was loaded
// (checked at most every packCheckInterval).
func (sl *slot) refresh() {
	now := time.Now()
	if now.Sub(sl.checked) < packCheckInterval {
		return
	}
	sl.checked = now
	if !sl.db.packDirStamp().Equal(sl.packStamp) {
		_ = sl.load() // on failure the old view stays; errors surface on use
	}
}

// acquire takes a slot from the pool.
func (db *Store) acquire() (*slot, error) {
	select {
	case <-db.closed:
		return nil, ErrClosed
	default:
	}
	select {
	case sl := <-db.pool:
		if sl.gr == nil { // not loaded yet (see Open)
			if err := sl.load(); err != nil {
				db.release(sl)
				return nil, err
			}
			return sl, nil
		}
		sl.refresh()
		return sl, nil
	case <-db.closed:
		return nil, ErrClosed
	}
}

func (db *Store) release(sl *slot) { db.pool <- sl }

// withSlot runs fn with a storage. When fn fails, the storage is reloaded
// (new packs and loose objects, refs re-read) and fn runs once more:
// `git gc` and `git repack` move objects between loose files and packs
// while we serve, and a fetch adds packs our index does not know yet.
func (db *Store) withSlot(fn func(sl *slot) error) error {
	sl, err := db.acquire()
	if err != nil {
		return err
	}
	defer db.release(sl)
	err = fn(sl)
	if err == nil || errors.Is(err, ErrClosed) {
		return err
	}
	if lerr := sl.load(); lerr != nil {
		return fmt.Errorf("%w (reloading the object database: %v)", err, lerr)
	}
	return fn(sl)
}

// WithGit runs fn with one of the pool's go-git repositories, for what
// go-git reads here (refs and revisions); fn must not keep it. A failure
// reloads the repository's view and runs fn once more (see withSlot).
func (db *Store) WithGit(fn func(*gogit.Repository) error) error {
	return db.withSlot(func(sl *slot) error { return fn(sl.gr) })
}

func (db *Store) closeSlots() {
	for _, sl := range db.slots {
		if sl.st != nil {
			_ = sl.st.Close()
		}
	}
}
