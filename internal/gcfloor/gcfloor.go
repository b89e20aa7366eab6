// Package gcfloor keeps the Go collector from running on a small heap:
// the heap may grow to a floor before a collection starts, and beyond it
// the collector paces at GOGC=Percent.
//
// A fresh process starts with a heap goal of 4 MB, so a server that reads
// a few megabytes of blobs right after its start collects several times
// in its first milliseconds (the collector's minimum heap, see the
// runtime's GC guide, https://go.dev/doc/gc-guide). The floor is cheap in
// memory: at most the floor itself, far below the soft memory limit a
// server runs under.
package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// Percent is the GOGC a heap at least as big as the floor keeps. Below
// Go's default of 100: a server's first read of a big image makes its
// heap's size again in garbage every few tens of milliseconds (inflated
// blobs the memory cache passes on to the blob log), so the peak is the
// live heap plus what Percent allows. At 70 the Go tree's first read
// peaked at 91-101 MiB of RSS against 98-112 at 100, eight fresh servers
// each, in the same time.
const Percent = 70

// minHeap is the runtime's heap goal before its first collection at
// GOGC=100.
const minHeap = 4 << 20

// maxPercent bounds the GOGC the floor sets for a tiny heap.
const maxPercent = 10_000

var (
	once    sync.Once
	current atomic.Pointer[tuner] // set by Set, read by Raise
)

// Set makes floor bytes the smallest heap goal, from now on: after each
// collection, GOGC is set so that the next one starts when the heap
// reaches the larger of floor and what Percent gives. It is for
// commands, once; later calls do nothing. Callers that set GOGC in the
// environment keep it: Set then does nothing.
func Set(floor int64, gogcFromEnv bool) {
	if gogcFromEnv || floor <= 0 {
		return
	}
	once.Do(func() {
		t := &tuner{floor: uint64(floor), sample: []metrics.Sample{
			{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"},
		}}
		t.tune()
		current.Store(t)
		runtime.SetFinalizer(&sentinel{t}, (*sentinel).gc)
	})
}

// Raise makes floor the smallest heap goal until restore is called, when
// it is above the floor Set gave; without Set it does nothing. It is for
// a phase whose heap mostly stays live and whose garbage is short-lived,
// such as a server laying out its images at start: collecting at the
// usual floor would scan the same live heap several times over. The soft
// memory limit still bounds the heap.
func Raise(floor int64) (restore func()) {
	t := current.Load()
	if t == nil || floor <= 0 {
		return func() {}
	}
	t.mu.Lock()
	old := t.floor
	t.floor = max(old, uint64(floor))
	t.tuneLocked()
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		t.floor = old
		t.tuneLocked()
		t.mu.Unlock()
	}
}

// tuner holds the floor and the metric it reads.
type tuner struct {
	mu     sync.Mutex // Raise and the finalizer both tune
	floor  uint64
	sample []metrics.Sample
	last   int // the GOGC set last, 0 for none
}

// tune sets GOGC from the last collection. The runtime's goal is the
// larger of the live heap plus GOGC percent of the roots it scans (live
// heap, stacks, globals), and its minimum heap (4 MB at GOGC=100) scaled
// by GOGC: the smallest GOGC at least Percent for which either reaches
// the floor is the one set.
func (t *tuner) tune() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.tuneLocked()
}

// tuneLocked is tune with t.mu held.
func (t *tuner) tuneLocked() {
	metrics.Read(t.sample)
	var v [3]uint64
	for i, s := range t.sample {
		if s.Value.Kind() == metrics.KindUint64 {
			v[i] = s.Value.Uint64()
		}
	}
	live, roots := v[0], v[0]+v[1]+v[2]
	p := t.floor * 100 / minHeap // by the minimum heap
	if live < t.floor && roots > 0 {
		p = min(p, (t.floor-live)*100/roots)
	} else if live >= t.floor {
		p = Percent
	}
	pct := int(min(max(p, Percent), maxPercent))
	if pct != t.last {
		debug.SetGCPercent(pct)
		t.last = pct
	}
}

// sentinel is garbage whose finalizer runs after each collection: it
// tunes, then makes a new sentinel for the next one.
type sentinel struct{ t *tuner }

func (s *sentinel) gc() {
	s.t.tune()
	runtime.SetFinalizer(&sentinel{s.t}, (*sentinel).gc)
}
