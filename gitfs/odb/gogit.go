package odb

import (
	"errors"
	"fmt"
	"io"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/filesystem/dotgit"
)

// readByGit is readDirect through go-git, for a blob the direct path did
// not find (in an alternate, or in a pack newer than our list).
func (db *Store) readByGit(h plumbing.Hash, smallMax int64) (directBlob, error) {
	var b directBlob
	err := db.withSlot(func(sl *slot) error {
		o, err := db.encodedObject(sl, plumbing.AnyObject, h)
		if err != nil {
			return err
		}
		if o.Type() != plumbing.BlobObject {
			return fmt.Errorf("is a %s, not a blob", o.Type())
		}
		b = directBlob{size: o.Size()}
		if b.size <= smallMax {
			b.data, err = readAllObject(o)
			return err
		}
		b.rc, err = db.blobReader(o)
		return err
	})
	return b, err
}

// blobReader opens the inflated content of blob object o, which go-git
// found and the direct path did not. It runs inside withSlot, so it must
// not read other blobs (a delta's bases): a loose blob is read here, a
// packed one by go-git.
func (db *Store) blobReader(o plumbing.EncodedObject) (io.ReadCloser, error) {
	if isLoose(o) {
		return db.openLooseBlob(o.Hash(), o.Size())
	}
	return o.Reader()
}

// checkObject runs checkDeltaChain for object h when a pack holds it, so
// that go-git, which follows delta bases by recursion, never meets a loop
// (it would overflow the stack and kill the process). Cheap after the
// first time: verified entries are remembered per pack.
func (db *Store) checkObject(h plumbing.Hash) error {
	packs, err := db.packs.current()
	if err != nil {
		return nil // go-git reports what is wrong with the packs
	}
	if p, off, ok := findIn(packs, h); ok {
		_, err := checkDeltaChain(packs, p, off)
		return err
	}
	return nil
}

// encodedObject is go-git's EncodedObject behind checkObject.
func (db *Store) encodedObject(s *slot, t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	if err := db.checkObject(h); err != nil {
		return nil, err
	}
	return s.obj.EncodedObject(t, h)
}

// readAllObject reads a whole (small) object and checks its length.
func readAllObject(o plumbing.EncodedObject) ([]byte, error) {
	rc, err := o.Reader()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data := make([]byte, o.Size())
	if _, err := io.ReadFull(rc, data); err != nil {
		return nil, fmt.Errorf("content shorter than its %d-byte header: %w", o.Size(), err)
	}
	return data, nil
}

// isLoose reports whether go-git found o as a loose object file.
func isLoose(o plumbing.EncodedObject) bool {
	_, ok := o.(*dotgit.EncodedObject)
	return ok
}

// gitStorage is go-git's storage with object reads answered from our own
// pack index when it can: go-git otherwise loads every pack index of the
// repository into each storage of the pool on its first object lookup
// (resolving a revision reads a commit). What our packs do not hold, and
// big blobs (which go-git streams), go-git reads.
type gitStorage struct {
	*filesystem.Storage
	db *Store
}

// EncodedObject is go-git's, from our packs first.
func (s *gitStorage) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	typ, size, data, found, err := s.db.readPackedObject(h, maxDirectObject, largeObjectThreshold, nil)
	if !found || errors.Is(err, errTooBig) {
		return s.Storage.EncodedObject(t, h)
	}
	if err != nil {
		return nil, err
	}
	if t != plumbing.AnyObject && t != typ {
		return nil, plumbing.ErrObjectNotFound // as go-git answers a type mismatch
	}
	o := &plumbing.MemoryObject{}
	o.SetType(typ)
	o.SetSize(size)
	if _, err := o.Write(data); err != nil {
		return nil, err
	}
	return o, nil
}

// HasEncodedObject is go-git's, from our packs first.
func (s *gitStorage) HasEncodedObject(h plumbing.Hash) error {
	if packs, err := s.db.packs.current(); err == nil {
		if _, _, ok := findIn(packs, h); ok {
			return nil
		}
	}
	return s.Storage.HasEncodedObject(h)
}

// maxDirectObject bounds the objects gitStorage reads whole (trees,
// commits, tags); bigger ones go to go-git.
const maxDirectObject = 64 << 20
