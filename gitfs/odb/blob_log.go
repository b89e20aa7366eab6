package odb

import (
	"cmp"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/gitblk/gitblk/internal/iovec"

	"github.com/go-git/go-git/v5/plumbing"
)

// blobLog keeps small blobs that the memory cache drops, inflated, in one
// unlinked append-only file under the spill directory. A second pass over
// an image bigger than the memory cache (a guest reading its disk again, a
// second nbdcopy) then costs a pread served from the kernel's page cache
// instead of a second inflate, and the process's RSS stays at the memory
// cache's bound. When the log reaches its bound it starts over empty, in
// a new file: bytes once written are never rewritten, so a range of the
// file can be lent (see lend) and sent after the lock is released; a file
// is closed when its last lent range is released.
type blobLog struct {
	c   *blobCache
	max int64

	mu    sync.RWMutex // readers pread under RLock: a reset cannot drop what they read
	f     *os.File
	cur   *logFile // holds on f
	end   int64
	index map[plumbing.Hash]logRef
	bad   bool         // the file could not be made or written: stay off
	tiny  atomic.Int64 // tiny blobs put (see putTiny)
}

// tinyLogMax bounds the tiny blobs (see readRun) the log takes. Each
// costs a copy on the first read and an index entry of about 50 bytes:
// the few thousand of a source tree (3,400 in the Go tree) spare their
// re-read an inflate each, and a tree of 300,000 tiny files, which the
// log could not hold for long anyway, pays for only the first ones.
const tinyLogMax = 8 << 10

// open reports whether the log takes blobs: there is one, and writing it
// has not failed.
func (l *blobLog) open() bool {
	if l == nil {
		return false
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	return !l.bad
}

// tinyRoom reports whether the log takes more tiny blobs.
func (l *blobLog) tinyRoom() bool {
	return l != nil && l.tiny.Load() < tinyLogMax
}

// putTiny appends tiny blobs the memory cache has no room for.
func (l *blobLog) putTiny(blobs []*memBlob) {
	if !l.tinyRoom() {
		return
	}
	l.tiny.Add(int64(len(blobs)))
	l.put(blobs)
}

// logFile counts the holds on one log file: the log's own while it
// writes there, and one per lent range; the last release closes it.
type logFile struct {
	f    *os.File
	refs atomic.Int64
}

func newLogFile(f *os.File) *logFile {
	lf := &logFile{f: f}
	lf.refs.Store(1)
	return lf
}

// Release drops one hold.
func (lf *logFile) Release() {
	if lf.refs.Add(-1) == 0 {
		_ = lf.f.Close()
	}
}

// logLendMin is the shortest range the log lends. Shorter ones are read
// with the batch (neighbours in the log come with one preadv into the
// reply's buffer): each range lent costs a sendfile of its own and cuts
// the reply's writev in two, which for blobs of a few KiB cost more
// syscalls than the copy it saves.
const logLendMin = 64 << 10

// lend returns n bytes of blob id at off as a range of the log file, with
// a hold on the file, when the log holds them and n is at least
// logLendMin.
func (l *blobLog) lend(id plumbing.Hash, off int64, n int) (iovec.Piece, bool) {
	if l == nil || n < logLendMin {
		return iovec.Piece{}, false
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	ref, ok := l.index[id]
	if !ok || l.cur == nil || off < 0 || off+int64(n) > ref.n {
		return iovec.Piece{}, false
	}
	l.cur.refs.Add(1)
	return iovec.Piece{File: l.f, Off: ref.off + off, Len: n, Ref: l.cur}, true
}

// logRef places a blob in the log.
type logRef struct {
	off int64
	n   int64
}

func newBlobLog(c *blobCache, max int64) *blobLog {
	return &blobLog{c: c, max: max, index: map[plumbing.Hash]logRef{}}
}

// readAt reads blob id from the log with io.ReaderAt semantics; ok is false
// when the log does not hold it.
func (l *blobLog) readAt(id plumbing.Hash, p []byte, off int64) (n int, ok bool, err error) {
	if l == nil {
		return 0, false, nil
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	ref, ok := l.index[id]
	if !ok {
		return 0, false, nil
	}
	return l.readAtLocked(ref, p, off)
}

// readAtLocked is readAt of the blob at ref; l.mu is held.
func (l *blobLog) readAtLocked(ref logRef, p []byte, off int64) (n int, ok bool, err error) {
	if off >= ref.n {
		return 0, true, io.EOF
	}
	want := p
	if rest := ref.n - off; int64(len(want)) > rest {
		want = want[:rest]
	}
	n, err = l.f.ReadAt(want, ref.off+off)
	if err != nil || n < len(want) {
		return 0, false, nil // fall back to git; a later put will not help a broken file
	}
	if n < len(p) {
		return n, true, io.EOF
	}
	return n, true, nil
}

// readMany serves the reads ks of reads that the log holds, and appends
// the others to rest. Reads of whole blobs that lie one after another in
// the log (they were dropped from memory together, in the order they were
// read) are served with one preadv into their buffers.
func (l *blobLog) readMany(reads []BlobRead, ks []int, rest []int, scratch *[]logHit) []int {
	if l == nil {
		return append(rest, ks...)
	}
	hits := (*scratch)[:0]
	l.mu.RLock()
	defer l.mu.RUnlock()
	for _, k := range ks {
		ref, ok := l.index[reads[k].ID]
		if !ok {
			rest = append(rest, k)
			continue
		}
		hits = append(hits, logHit{k: k, ref: ref})
	}
	slices.SortFunc(hits, func(a, b logHit) int { return cmp.Compare(a.ref.off, b.ref.off) })
	var iov [][]byte
	for i := 0; i < len(hits); {
		j := i
		iov = iov[:0]
		for j < len(hits) && hits[j].whole(reads) && (j == i || hits[j].ref.off == hits[j-1].ref.off+hits[j-1].ref.n) && len(iov) < maxIOV {
			iov = append(iov, reads[hits[j].k].P)
			j++
		}
		if len(iov) < 2 {
			rd := &reads[hits[i].k]
			if n, ok, err := l.readAtLocked(hits[i].ref, rd.P, rd.Off); ok {
				rd.N, rd.Err = l.c.hit(n, err)
			} else {
				rest = append(rest, hits[i].k)
			}
			i++
			continue
		}
		if err := preadvFull(l.f, iov, hits[i].ref.off); err != nil {
			for _, h := range hits[i:j] {
				rest = append(rest, h.k) // fall back to git, as readAt does
			}
		} else {
			for _, h := range hits[i:j] {
				reads[h.k].N, reads[h.k].Err = l.c.hit(len(reads[h.k].P), nil)
			}
		}
		i = j
	}
	*scratch = hits[:0]
	return rest
}

// maxIOV bounds the buffers of one preadv (Linux's UIO_MAXIOV is 1024).
const maxIOV = 1024

// logHit is read k of a batch, held in the log at ref.
type logHit struct {
	k   int
	ref logRef
}

// whole reports whether the read wants exactly the whole blob.
func (h logHit) whole(reads []BlobRead) bool {
	rd := &reads[h.k]
	return rd.Off == 0 && int64(len(rd.P)) == h.ref.n
}

// has reports whether the log holds blob id.
func (l *blobLog) has(id plumbing.Hash) bool {
	if l == nil {
		return false
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	_, ok := l.index[id]
	return ok
}

// put appends blobs to the log, skipping those it holds or cannot fit.
func (l *blobLog) put(blobs []*memBlob) {
	if l == nil || len(blobs) == 0 || l.c.closed.Load() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bad {
		return
	}
	if l.f == nil {
		f, err := l.c.createSpillFile()
		if err != nil {
			l.bad = true
			return
		}
		l.f, l.cur = f, newLogFile(f)
	}
	// Blobs are appended in one write per chunk of them: a memory cache
	// of tiny blobs drops thousands at a time.
	bufp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bufp)
	pend, pendOff := (*bufp)[:0], l.end
	flush := func() bool {
		if len(pend) > 0 {
			if _, err := l.f.WriteAt(pend, pendOff); err != nil {
				l.bad = true
				l.index = map[plumbing.Hash]logRef{}
				return false
			}
		}
		pend, pendOff = pend[:0], l.end
		return true
	}
	for _, b := range blobs {
		n := int64(len(b.data))
		if _, ok := l.index[b.id]; ok || n == 0 || n > l.max {
			continue
		}
		if l.end+n > l.max {
			if !flush() {
				return
			}
			// Start over in a new file: drop the index; readers are
			// excluded by mu, and ranges lent from the old file hold it.
			l.index = map[plumbing.Hash]logRef{}
			l.end, pendOff = 0, 0
			l.cur.Release()
			l.f, l.cur = nil, nil
			f, err := l.c.createSpillFile()
			if err != nil {
				l.bad = true
				return
			}
			l.f, l.cur = f, newLogFile(f)
		}
		if n > int64(cap(pend)-len(pend)) {
			if !flush() {
				return
			}
		}
		if n <= int64(cap(pend)) {
			pend = append(pend, b.data...)
		} else if _, err := l.f.WriteAt(b.data, l.end); err != nil {
			l.bad = true
			l.index = map[plumbing.Hash]logRef{}
			return
		} else {
			pendOff = l.end + n
		}
		l.index[b.id] = logRef{off: l.end, n: n}
		l.end += n
	}
	flush()
}

// close drops the log file.
func (l *blobLog) close() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur != nil {
		l.cur.Release()
		l.f, l.cur = nil, nil
	}
	l.index = map[plumbing.Hash]logRef{}
	l.bad = true
}
