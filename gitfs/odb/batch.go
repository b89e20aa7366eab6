package odb

import (
	"cmp"
	"errors"
	"io"
	"slices"
	"sync"

	"github.com/gitblk/gitblk/internal/inflate"
	"github.com/go-git/go-git/v5/plumbing"
)

// A read across many small files (a tar or FAT image read front to back)
// asks for many small blobs at once. Read one by one, each costs a lookup
// in the caches under their lock, a pread of its pack entry's header and
// another of its data; read as a batch, the caches are asked under one
// lock and the blobs that are small whole objects in a pack are read with
// one pread per run of nearby entries (git writes a commit's blobs close
// together, in tree order), then inflated from that buffer.

// BlobRead is one read of a batch: len(P) bytes of blob ID at offset Off.
// ReadBlobs sets N and Err as ReadBlob would return them. Hint, when not
// 0, is where BlobSizesHints found the blob: the pack index lookup is
// skipped when it still holds (it is checked against ID), which for a
// read across many small files is most of the cost of finding them.
type BlobRead struct {
	ID   plumbing.Hash
	P    []byte
	Off  int64
	Hint uint64
	N    int
	Err  error
}

// Batch reads are shaped by these.
const (
	// batchSpan bounds the pack bytes one pread of a run covers.
	batchSpan = 256 << 10
	// batchGap: entries further apart than this start a new run.
	batchGap = 32 << 10
	// batchTail is read past a run's last entry for its data; an entry
	// whose data goes on further is read alone.
	batchTail = 8 << 10
)

// ReadBlobs serves many reads at once, each as ReadBlob would. It is safe
// for many concurrent callers.
func (db *Store) ReadBlobs(reads []BlobRead) {
	c := db.blobs
	if c.closed.Load() {
		for k := range reads {
			reads[k].N, reads[k].Err = 0, ErrClosed
		}
		return
	}
	w := batchWorkPool.Get().(*batchWork)
	defer w.release()

	// Blobs held in memory, under one lock.
	c.mu.Lock()
	// The room below the level putMem drops to when full: once the cache
	// has been full, none (see readRun).
	w.room = c.memMax/memEvictOf*memEvictTo - c.memBytes - c.mapped.Load()
	for k := range reads {
		rd := &reads[k]
		if rd.Off < 0 {
			w.alone = append(w.alone, k)
			continue
		}
		if b, ok := c.mem[rd.ID]; ok {
			c.memLRU.moveToFront(b)
			rd.N, rd.Err = c.hit(copyAt(b.data, rd.P, rd.Off))
			continue
		}
		if _, ok := c.spills[rd.ID]; ok {
			w.alone = append(w.alone, k)
			continue
		}
		w.miss = append(w.miss, k)
	}
	c.mu.Unlock()

	// Then the blob log, and where each other blob lies in the packs:
	// looked up many at a time (FindOffsets), pack by pack.
	packs, err := db.packs.current()
	if err != nil {
		packs = nil
	}
	w.unlogged = c.log.readMany(reads, w.miss, w.unlogged, &w.hits)
	w.locate(reads, packs)
	slices.SortFunc(w.cands, func(a, b batchCand) int {
		if a.pi != b.pi {
			return cmp.Compare(a.pi, b.pi)
		}
		return cmp.Compare(a.off, b.off)
	})
	for i := 0; i < len(w.cands); {
		j := i + 1
		for j < len(w.cands) && w.cands[j].pi == w.cands[i].pi &&
			w.cands[j].off-w.cands[j-1].off <= batchGap && w.cands[j].off-w.cands[i].off <= batchSpan {
			j++
		}
		w.alone = db.readRun(reads, packs[w.cands[i].pi], w.cands[i:j], w)
		i = j
	}
	c.putTiny(w.tiny)
	c.log.put(w.logged) // before the reads' buffers go back to the caller
	// The rest (cached big blobs, deltas, loose objects, anything the
	// run could not finish) one by one.
	for _, k := range w.alone {
		rd := &reads[k]
		rd.N, rd.Err = db.ReadBlob(rd.ID, rd.P, rd.Off)
	}
}

// readRun reads the pack entries of run (in p, sorted by offset) with
// one pread and serves those that are small whole blobs; it appends the
// others to w.alone and returns it. A read of a whole blob is inflated
// straight into its buffer. Blobs of at most uncachedMax bytes are put
// in the memory cache only while it has room to spare (they are added to
// tiny, for putTiny): reading them again from the pack (a share of one
// pread, and an inflate call) costs little more than a cache hit, and a
// tree of many tiny files would otherwise churn a full cache and its log;
// but a re-read of a tree that fits the cache spent a tenth of its time
// inflating them again. Once the memory cache has no room they go to the
// blob log instead, up to tinyLogMax of them.
//
// A bigger blob goes to the memory cache while the batch found room there
// (w.room); once it is full, a whole read is inflated straight into its
// buffer and the blob goes from there to the blob log (w.logged), as the
// blob it would have dropped would: a first pass over an image bigger
// than the cache then costs no allocation, copy and collection per blob,
// and the log holds the blobs in the order they were read, which is how
// a second pass reads them back (one preadv per run, see readMany).
func (db *Store) readRun(reads []BlobRead, p *pack, run []batchCand, w *batchWork) []int {
	c := db.blobs
	alone, tiny := w.alone, &w.tiny
	logOK := c.log.open()
	start := run[0].off
	bp := getBuf(int(run[len(run)-1].off-start) + batchTail)
	defer putBuf(bp)
	buf := *bp
	n, err := p.f.ReadAt(buf, start)
	if err != nil && !errors.Is(err, io.EOF) {
		n = 0 // closed under us by a reload, say: one by one
	}
	buf = buf[:n]
	var scratch *[]byte
	defer func() {
		if scratch != nil {
			putBuf(scratch)
		}
	}()
	for _, cd := range run {
		rel := cd.off - start
		if rel >= int64(len(buf)) {
			alone = append(alone, cd.k)
			continue
		}
		e, err := parsePackEntry(buf[rel:min(int64(len(buf)), rel+packEntryHeaderMax)], cd.off)
		if err != nil || e.typ != packBlob || e.size > c.smallMax {
			alone = append(alone, cd.k)
			continue
		}
		rd := &reads[cd.k]
		src := buf[e.dataOff-start:]
		if e.size <= uncachedMax {
			// Inflated where it is read: into the read's buffer when
			// the read takes the whole blob, else into scratch.
			var dst []byte
			whole := rd.Off == 0 && int64(len(rd.P)) >= e.size
			if whole {
				dst = rd.P[:e.size]
			} else {
				if scratch == nil {
					scratch = getBuf(uncachedMax)
				}
				dst = (*scratch)[:e.size]
			}
			if _, err := inflate.Whole(dst, src); err != nil {
				alone = append(alone, cd.k) // cut short, or damaged: ReadBlob says which
				continue
			}
			if !c.tinyFull.Load() || c.log.tinyRoom() {
				data := blobBytes(e.size)
				copy(data, dst)
				*tiny = append(*tiny, &memBlob{id: rd.ID, data: data})
			}
			if whole {
				servedWhole(c, rd, e.size)
			} else {
				rd.N, rd.Err = c.miss(copyAt(dst, rd.P, rd.Off))
			}
			continue
		}
		if e.size+memEntryCost > w.room && logOK && rd.Off == 0 && int64(len(rd.P)) >= e.size {
			dst := rd.P[:e.size]
			if _, err := inflate.Whole(dst, src); err != nil {
				alone = append(alone, cd.k)
				continue
			}
			w.logged = append(w.logged, &memBlob{id: rd.ID, data: dst})
			servedWhole(c, rd, e.size)
			continue
		}
		w.room -= e.size + memEntryCost
		data := blobBytes(e.size)
		if _, err := inflate.Whole(data, src); err != nil {
			// Cut short by the buffer's end, or damaged: ReadBlob reads
			// it alone and says which.
			alone = append(alone, cd.k)
			continue
		}
		c.putMem(rd.ID, data)
		rd.N, rd.Err = c.miss(copyAt(data, rd.P, rd.Off))
	}
	return alone
}

// servedWhole sets the result of read rd, into whose buffer the whole
// blob (size bytes) was inflated, and counts it a miss. io.ReaderAt's rule,
// as copyAt has it: EOF when the read goes past the end (or the blob is
// empty).
func servedWhole(c *blobCache, rd *BlobRead, size int64) {
	rd.N, rd.Err = int(size), nil
	if int64(len(rd.P)) > size || size == 0 {
		rd.Err = io.EOF
	}
	c.miss(rd.N, nil)
}

// uncachedMax is the biggest blob a batch read does not put in the
// memory cache (see readRun).
const uncachedMax = 1 << 10

// locate finds the pack entries of the reads w.unlogged names, adding
// them to w.cands, and the reads no pack holds to w.alone.
func (w *batchWork) locate(reads []BlobRead, packs []*pack) {
	w.touchHinted(reads, packs)
	left := w.unlogged[:0]
	for _, k := range w.unlogged {
		if pi, off, ok := hinted(packs, reads[k].Hint, reads[k].ID); ok {
			w.cands = append(w.cands, batchCand{k: k, pi: pi, off: off})
		} else {
			left = append(left, k)
		}
	}
	for _, p := range packs {
		if len(left) == 0 {
			break
		}
		w.hs = w.hs[:0]
		for _, k := range left {
			w.hs = append(w.hs, reads[k].ID)
		}
		w.offs = slices.Grow(w.offs[:0], len(left))[:len(left)]
		p.idx.FindOffsets(w.hs, w.offs)
		pi := slices.Index(packs, p)
		rest := left[:0]
		for j, k := range left {
			if w.offs[j] >= 0 {
				w.cands = append(w.cands, batchCand{k: k, pi: pi, off: w.offs[j]})
			} else {
				rest = append(rest, k)
			}
		}
		left = rest
	}
	w.alone = append(w.alone, left...)
}

// touchHinted loads the index record each hint names before any is
// compared: the loads do not wait on one another, so their cache misses
// (a big tree's index is megabytes) overlap instead of coming one per
// read.
func (w *batchWork) touchHinted(reads []BlobRead, packs []*pack) {
	var sum byte
	for _, k := range w.unlogged {
		if pi, pos, ok := hintPlace(packs, reads[k].Hint); ok {
			sum += packs[pi].idx.recs[pos*idxRecord]
		}
	}
	w.touched = sum
}

// batchCand is read k of a batch, whose blob is at pack entry off of
// packs[pi].
type batchCand struct {
	k   int
	pi  int
	off int64
}

// batchWork is the scratch space of one ReadBlobs.
type batchWork struct {
	miss, unlogged, alone []int
	cands                 []batchCand
	hits                  []logHit
	hs                    []plumbing.Hash
	tiny                  []*memBlob // tiny blobs read, for putTiny
	logged                []*memBlob // blobs read into their reads' buffers, for the blob log
	offs                  []int64
	room                  int64 // bytes the memory cache had room for, less those this batch put there
	touched               byte  // see touchHinted: kept so that its loads are made
}

var batchWorkPool = sync.Pool{New: func() any { return new(batchWork) }}

func (w *batchWork) release() {
	clear(w.cands)
	clear(w.tiny)
	clear(w.logged)
	w.tiny, w.logged = w.tiny[:0], w.logged[:0]
	w.miss, w.unlogged, w.alone, w.cands, w.hits, w.hs, w.offs = w.miss[:0], w.unlogged[:0], w.alone[:0], w.cands[:0], w.hits[:0], w.hs[:0], w.offs[:0]
	batchWorkPool.Put(w)
}
