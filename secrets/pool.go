package secrets

import (
	"sync"

	"github.com/gitblk/gitblk/imager"
)

// Pool shares decrypted images between the connections that use them at
// the same time, and only then: when the last holder releases an image,
// its plaintext is freed (a later connection decrypts again). So no secret
// outlives its readers in a cache. Safe for concurrent use.
type Pool struct {
	mu      sync.Mutex
	entries map[string]*poolEntry
}

type poolEntry struct {
	done     chan struct{} // closed when built
	layout   *imager.Layout
	warnings []imager.Warning
	dec      *Decrypted
	err      error
	refs     int
}

// Build makes an image of a decrypted tree; the Decrypted is what the
// layout reads its blobs from.
type Build func() (*imager.Layout, []imager.Warning, *Decrypted, error)

// NewPool returns an empty pool.
func NewPool() *Pool { return &Pool{entries: map[string]*poolEntry{}} }

// Acquire returns the image for key, building it unless a holder has it
// already; concurrent callers for one key share one build. release must
// be called once when the caller is done with the image.
func (p *Pool) Acquire(key string, build Build) (l *imager.Layout, ws []imager.Warning, release func(), err error) {
	p.mu.Lock()
	e, ok := p.entries[key]
	if !ok {
		e = &poolEntry{done: make(chan struct{})}
		p.entries[key] = e
	}
	e.refs++
	p.mu.Unlock()
	if !ok {
		e.layout, e.warnings, e.dec, e.err = build()
		close(e.done)
	} else {
		<-e.done
	}
	if e.err != nil {
		p.drop(key, e)
		return nil, nil, nil, e.err
	}
	var once sync.Once
	return e.layout, e.warnings, func() { once.Do(func() { p.drop(key, e) }) }, nil
}

// drop removes one hold on e, freeing it with the last.
func (p *Pool) drop(key string, e *poolEntry) {
	p.mu.Lock()
	e.refs--
	last := e.refs == 0
	if last && p.entries[key] == e {
		delete(p.entries, key)
	}
	p.mu.Unlock()
	if last && e.dec != nil {
		e.dec.Release()
	}
}

// Held returns how many images are held now.
func (p *Pool) Held() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.entries)
}
