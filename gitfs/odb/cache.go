package odb

import (
	"container/list"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/go-git/go-git/v5/plumbing"
)

// Cache shape. Blobs up to smallBlobMax bytes are held whole, inflated, in
// an in-memory LRU bounded by Options.CacheSize. Bigger blobs are spilled:
// inflated once, front to back, into an unlinked file under
// Options.CacheDir, and every read is a pread of the part already
// inflated. The one inflate stream of a spilling blob stays open between
// reads, so sequential reads continue it, and a random read far ahead
// inflates up to that point once; after that any read costs one pread
// (served by the kernel's page cache, which is not our RSS). The spill
// total is bounded by Options.DiskCacheSize (least recently used spills
// are dropped); a blob that cannot be spilled (over the bound, or the
// directory unwritable) is only streamed: forward reads continue the
// stream, a read behind it restarts it. We chose spilling over inflate
// checkpoints because a checkpoint must save zlib's 32 KiB window and, for
// a delta, the state of its base's stream too, and because a spill makes a
// backward scan of a big blob cost one inflate instead of O(n^2).
const (
	// smallBlobMax is the biggest blob held whole in memory (capped to
	// an eighth of the memory cache).
	smallBlobMax = largeObjectThreshold
	// maxOpenStreams bounds open inflate streams (each holds zlib state
	// and, for deltas, a goroutine).
	maxOpenStreams = 8
	// maxSpills bounds the number of spill entries, streaming-only ones
	// included.
	maxSpills = 4096
	// spillChunk is how much a spill inflates and writes per step.
	spillChunk = 256 << 10
	// logShare: the small-blob log may use 1/logShare of the disk bound.
	logShare = 4
	// readAhead is how far past a request a spill inflates, so that
	// small sequential reads do not each take the stream lock.
	readAhead = 1 << 20
)

// blobCache holds inflated blob data: small blobs in memory, big ones
// spilled to disk.
type blobCache struct {
	db       *Store
	memMax   int64
	smallMax int64
	diskMax  int64
	dir      string
	ownDir   bool
	closed   atomic.Bool

	mu       sync.Mutex
	mem      map[plumbing.Hash]*memBlob
	memLRU   memList
	memBytes int64                           // data and memEntryCost per blob
	log      *blobLog                        // small blobs dropped from mem; nil without a disk cache
	spills   map[plumbing.Hash]*list.Element // of *spill
	spillLRU list.List
	diskUsed int64
	streams  int          // spills with an open stream
	mapped   atomic.Int64 // bytes of the spills mapped for small reads; memBytes+mapped stays within memMax (spill_map_linux.go)
	tinyFull atomic.Bool  // putTiny found no room: tiny blobs stay uncached

	stats cacheStats
}

// Stats counts blob reads (ReadBlob calls) by whether the caches held the
// blob (in memory, in the blob log, or spilled) or it had to be opened
// from the repository, and the bytes each returned; MemBytes is the
// inflated data held in memory now. For metrics.
type Stats struct {
	Hits, Misses         int64
	HitBytes, MissBytes  int64
	MemBytes, SpillBytes int64
}

type cacheStats struct {
	hits, misses, hitBytes, missBytes atomic.Int64
}

// hit counts a read the caches served and returns its result unchanged.
func (c *blobCache) hit(n int, err error) (int, error) {
	c.stats.hits.Add(1)
	c.stats.hitBytes.Add(int64(n))
	return n, err
}

// miss counts a read that opened the blob and returns its result unchanged.
func (c *blobCache) miss(n int, err error) (int, error) {
	c.stats.misses.Add(1)
	c.stats.missBytes.Add(int64(n))
	return n, err
}

// MemCacheSize is the memory cache's bound in bytes of inflated data.
func (db *Store) MemCacheSize() int64 { return db.blobs.memMax }

// Stats returns the blob cache's counters.
func (db *Store) Stats() Stats {
	c := db.blobs
	st := Stats{Hits: c.stats.hits.Load(), Misses: c.stats.misses.Load(),
		HitBytes: c.stats.hitBytes.Load(), MissBytes: c.stats.missBytes.Load()}
	c.mu.Lock()
	st.MemBytes, st.SpillBytes = c.memBytes, c.diskUsed
	c.mu.Unlock()
	return st
}

// memBlob is a small blob held whole, on the LRU list.
type memBlob struct {
	id         plumbing.Hash
	data       []byte
	prev, next *memBlob
}

// memEntryCost is what the memory cache counts for a blob besides its
// bytes: its memBlob and its share of the map, so that a tree of many tiny
// files cannot make the cache hold several times its bound.
const memEntryCost = 128

// memEvictTo: when the memory cache is full it drops blobs down to
// memEvictTo/memEvictOf of its bound at once, so that the blob log gets
// them in batches (a few writes) rather than one write each.
const memEvictTo, memEvictOf = 15, 16

// memList is an intrusive doubly linked LRU list of memBlobs, most
// recently used first.
type memList struct {
	head, tail *memBlob
}

func (l *memList) pushFront(b *memBlob) {
	b.prev, b.next = nil, l.head
	if l.head != nil {
		l.head.prev = b
	} else {
		l.tail = b
	}
	l.head = b
}

func (l *memList) remove(b *memBlob) {
	if b.prev != nil {
		b.prev.next = b.next
	} else {
		l.head = b.next
	}
	if b.next != nil {
		b.next.prev = b.prev
	} else {
		l.tail = b.prev
	}
	b.prev, b.next = nil, nil
}

func (l *memList) moveToFront(b *memBlob) {
	if l.head != b {
		l.remove(b)
		l.pushFront(b)
	}
}

func newBlobCache(db *Store, opts Options) (*blobCache, error) {
	c := &blobCache{
		db:      db,
		memMax:  opts.CacheSize,
		diskMax: opts.DiskCacheSize,
		dir:     opts.CacheDir,
		mem:     map[plumbing.Hash]*memBlob{},
		spills:  map[plumbing.Hash]*list.Element{},
	}
	if c.memMax <= 0 {
		c.memMax = DefaultCacheSize
	}
	c.smallMax = min(int64(smallBlobMax), c.memMax/8)
	if c.diskMax == 0 {
		c.diskMax = DefaultDiskCacheSize
	}
	if c.diskMax > 0 {
		c.log = newBlobLog(c, c.diskMax/logShare)
		if c.dir == "" {
			d, err := os.MkdirTemp("", "gitblk-spill-")
			if err != nil {
				return nil, fmt.Errorf("creating a spill directory: %w", err)
			}
			c.dir, c.ownDir = d, true
		} else if err := os.MkdirAll(c.dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating the spill directory: %w", err)
		}
	}
	return c, nil
}

// getMem returns a small blob held in memory.
func (c *blobCache) getMem(id plumbing.Hash) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := c.mem[id]; ok {
		c.memLRU.moveToFront(b)
		return b.data, true
	}
	return nil, false
}

// putMem holds a small blob, dropping least recently used ones to stay
// within the bound.
// Dropped blobs go to the on-disk log, written after c.mu is released.
func (c *blobCache) putMem(id plumbing.Hash, data []byte) {
	cost := int64(len(data)) + memEntryCost
	if cost > c.memMax || c.closed.Load() {
		return
	}
	c.mu.Lock()
	if _, ok := c.mem[id]; ok {
		c.mu.Unlock()
		return
	}
	var dropped []*memBlob
	if mapped := c.mapped.Load(); c.memBytes+mapped+cost > c.memMax {
		room := c.memMax/memEvictOf*memEvictTo - mapped
		for c.memBytes+cost > room {
			b := c.memLRU.tail
			if b == nil {
				break
			}
			c.memLRU.remove(b)
			delete(c.mem, b.id)
			c.memBytes -= int64(len(b.data)) + memEntryCost
			dropped = append(dropped, b)
		}
		if c.memBytes+mapped+cost > c.memMax { // the mapped spills leave no room: to the log
			c.mu.Unlock()
			c.log.put(append(dropped, &memBlob{id: id, data: data}))
			return
		}
	}
	b := &memBlob{id: id, data: data}
	c.mem[id] = b
	c.memLRU.pushFront(b)
	c.memBytes += cost
	c.mu.Unlock()
	c.log.put(dropped)
}

// putTiny holds tiny blobs (see readRun) while the memory cache has room
// for them without dropping any other; once it has none, it says so in
// tinyFull, and the rest go to the blob log (see blobLog.tinyRoom).
func (c *blobCache) putTiny(blobs []*memBlob) {
	if len(blobs) == 0 || c.closed.Load() {
		return
	}
	c.mu.Lock()
	for i, b := range blobs {
		cost := int64(len(b.data)) + memEntryCost
		if c.memBytes+c.mapped.Load()+cost > c.memMax {
			c.tinyFull.Store(true)
			c.mu.Unlock()
			c.log.putTiny(blobs[i:])
			return
		}
		if _, ok := c.mem[b.id]; ok {
			continue
		}
		c.mem[b.id] = b
		c.memLRU.pushFront(b)
		c.memBytes += cost
	}
	c.mu.Unlock()
}

// holds reports whether the caches hold blob id whole: in memory, in the
// blob log, or as a complete spill.
func (c *blobCache) holds(id plumbing.Hash) bool {
	c.mu.Lock()
	_, inMem := c.mem[id]
	var complete bool
	if e, ok := c.spills[id]; ok {
		s := e.Value.(*spill)
		complete = s.f != nil && s.filled.Load() == s.size
	}
	c.mu.Unlock()
	return inMem || complete || c.log.has(id)
}

// getSpill returns the spill of id with a reference held (release it with
// unref), or nil.
//
// A stream-only spill, made when the disk cache was full, that is idle
// while there is room now is dropped instead, so that the blob is read
// afresh into a file: a moment of pressure does not leave a blob
// unspilled (and a deep delta chain over it unbuildable) for good.
func (c *blobCache) getSpill(id plumbing.Hash) *spill {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.spills[id]
	if !ok {
		return nil
	}
	s := e.Value.(*spill)
	if s.f == nil && s.refs == 0 && c.diskMax > 0 && s.size <= c.diskMax-c.diskUsed {
		c.spillLRU.Remove(e)
		delete(c.spills, id)
		s.dropLocked(c)
		return nil
	}
	c.spillLRU.MoveToFront(e)
	s.refs++
	return s
}

// addSpill registers a new spill for a big blob of size bytes, backed by
// a file when the disk bound allows, with a reference held. If another
// reader registered one first, that one is returned and s is discarded.
func (c *blobCache) addSpill(s *spill) *spill {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.spills[s.id]; ok {
		c.spillLRU.MoveToFront(e)
		old := e.Value.(*spill)
		old.refs++
		return old
	}
	if c.diskMax > 0 && s.size <= c.diskMax {
		for c.diskUsed+s.size > c.diskMax && c.evictSpillLocked(true) {
		}
		if c.diskUsed+s.size <= c.diskMax {
			if f, err := c.createSpillFile(); err == nil {
				s.f = f
				c.diskUsed += s.size
			}
		}
	}
	for len(c.spills) >= maxSpills && c.evictSpillLocked(false) {
	}
	s.refs = 1
	c.spills[s.id] = c.spillLRU.PushFront(s)
	return s
}

// createSpillFile makes an anonymous file in the spill directory: it is
// unlinked at once, so nothing is left behind even after a crash.
func (c *blobCache) createSpillFile() (*os.File, error) {
	f, err := os.CreateTemp(c.dir, "blob-")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// evictSpillLocked drops the least recently used unreferenced spill (one
// with a file when withFile). It reports whether one was dropped.
func (c *blobCache) evictSpillLocked(withFile bool) bool {
	for e := c.spillLRU.Back(); e != nil; e = e.Prev() {
		s := e.Value.(*spill)
		if s.refs > 0 || (withFile && s.f == nil) {
			continue
		}
		c.spillLRU.Remove(e)
		delete(c.spills, s.id)
		if s.f != nil {
			c.diskUsed -= s.size
		}
		s.dropLocked(c)
		return true
	}
	return false
}

// unref releases a reference taken by getSpill or addSpill.
func (c *blobCache) unref(s *spill) {
	c.mu.Lock()
	s.refs--
	c.mu.Unlock()
}

// streamOpened counts a newly opened stream and closes the least recently
// used idle one when there are too many. Called without c.mu held.
func (c *blobCache) streamOpened(self *spill) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.streams++
	for e := c.spillLRU.Back(); e != nil && c.streams > maxOpenStreams; e = e.Prev() {
		s := e.Value.(*spill)
		if s == self || !s.mu.TryLock() {
			continue // busy: it is being read
		}
		if s.rc != nil {
			_ = s.rc.Close()
			s.rc = nil
			c.streams--
		}
		s.mu.Unlock()
	}
}

// streamClosed counts a stream closed by its own spill.
func (c *blobCache) streamClosed() {
	c.mu.Lock()
	c.streams--
	c.mu.Unlock()
}

// close drops everything and removes a private spill directory.
func (c *blobCache) close() error {
	c.closed.Store(true)
	c.mu.Lock()
	spills := make([]*spill, 0, len(c.spills))
	for _, e := range c.spills {
		spills = append(spills, e.Value.(*spill))
	}
	c.spills = map[plumbing.Hash]*list.Element{}
	c.spillLRU.Init()
	c.mem = map[plumbing.Hash]*memBlob{}
	c.memLRU = memList{}
	c.memBytes, c.diskUsed = 0, 0
	c.mu.Unlock()
	c.log.close()
	for _, s := range spills {
		s.mu.Lock() // waits for a reader inside; it stops at the next chunk
		if s.rc != nil {
			_ = s.rc.Close()
			s.rc = nil
		}
		if s.f != nil {
			s.unmap(c)
			_ = s.f.Close()
		}
		s.mu.Unlock()
	}
	if c.ownDir {
		if err := os.RemoveAll(c.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("odb: removing %s: %w", c.dir, err)
		}
	}
	return nil
}
