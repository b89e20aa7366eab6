package odb

import (
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
)

// Warming is read-ahead at the scale of blobs. A client reading an image
// front to back reaches a big blob, waits while it is inflated into its
// spill, then copies it out; nothing else is inflated meanwhile. WarmBlob
// lets the image layer name the big blobs just ahead of such a reader, so
// that they are inflated on another core while the reader works on what
// comes before them, and are read from their spill files when it gets
// there. Warming is best effort: a request that finds the queue full is
// dropped, and errors are left for the reader to meet and report.
const (
	// warmWorkers bounds the blobs inflated ahead at once.
	warmWorkers = 2
	// warmQueueMax bounds the blobs waiting to be warmed.
	warmQueueMax = 64
)

// warmer is a Store's queue of blobs to warm and the workers draining it.
// Workers are started on demand and exit when the queue is empty, so an
// idle store has none.
type warmer struct {
	mu      sync.Mutex
	queue   []plumbing.Hash
	pending map[plumbing.Hash]struct{} // queued or being warmed
	running int
	wg      sync.WaitGroup // the workers, waited for by Close
}

// WarmBlob asks for big blob id to be inflated into its spill file in
// the background, so that a reader coming to it finds it ready. It never
// blocks. Blobs the memory cache would hold (at most its small-blob
// bound), blobs already cached or queued, and every request once the
// store is closed or without a disk cache, are ignored.
func (db *Store) WarmBlob(id plumbing.Hash, size int64) {
	c := db.blobs
	if size <= c.smallMax || c.diskMax <= 0 || c.closed.Load() {
		return
	}
	w := &db.warm
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.pending[id]; ok || len(w.queue) >= warmQueueMax || db.isClosed() {
		return
	}
	if w.pending == nil {
		w.pending = map[plumbing.Hash]struct{}{}
	}
	w.pending[id] = struct{}{}
	w.queue = append(w.queue, id)
	if w.running < warmWorkers {
		w.running++
		w.wg.Add(1)
		go db.warmLoop()
	}
}

// wait waits for the workers, once the store is closed: they stop at
// their next chunk, on ErrClosed. Taking mu first lets a WarmBlob that
// saw the store open finish starting its worker.
func (w *warmer) wait() {
	w.mu.Lock()
	w.mu.Unlock() //nolint:staticcheck // an empty critical section, on purpose
	w.wg.Wait()
}

// isClosed reports whether Close has begun.
func (db *Store) isClosed() bool {
	select {
	case <-db.closed:
		return true
	default:
		return false
	}
}

// warmLoop warms queued blobs, in the order asked, until the queue is
// empty or the store closes.
func (db *Store) warmLoop() {
	w := &db.warm
	defer w.wg.Done()
	for {
		w.mu.Lock()
		if db.isClosed() {
			clear(w.pending)
			w.queue = nil
		}
		if len(w.queue) == 0 {
			w.running--
			w.mu.Unlock()
			return
		}
		id := w.queue[0]
		w.queue = w.queue[1:]
		w.mu.Unlock()
		db.warmOne(id)
		w.mu.Lock()
		delete(w.pending, id)
		w.mu.Unlock()
	}
}

// warmOne inflates big blob id whole into its spill, unless the caches
// hold it already. It counts as no read in Stats.
func (db *Store) warmOne(id plumbing.Hash) {
	c := db.blobs
	if c.closed.Load() || c.holds(id) {
		return
	}
	s := c.getSpill(id)
	if s == nil {
		b, err := db.openBlob(id, c.smallMax)
		if err != nil || b.rc == nil {
			return // unreadable (a reader will say why), or small after all
		}
		s = c.startSpill(id, b.size, b.rc, b.at)
	}
	defer c.unref(s)
	if s.f != nil && s.failed.Load() == nil {
		_ = s.grow(c, s.size)
	}
}
