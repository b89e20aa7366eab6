package gitfs

import (
	"errors"
	"sync"

	"github.com/gitblk/gitblk/imager"
)

// MaxImages is the one bound on images held in memory at once: each is a
// layout of tens of bytes per file, and with many refs served, readers could
// otherwise pin one per ref. A Pins refuses a distinct layout beyond it; an
// Images keeps at most that many layouts for reuse, dropping the least
// recently used first and never a pinned one (or fewer, if NewImages was
// given a smaller number). gitblk serve shares one Pins across all its
// repositories, so the bound is process-wide there.
const MaxImages = 16

// ErrTooManyImages: MaxImages distinct layouts are pinned already.
var ErrTooManyImages = errors.New("gitfs: too many different images in use; try again when readers close")

// Pins counts readers' holds on layouts (an NBD connection holds one for
// its life) and bounds the distinct layouts held at once to MaxImages. One
// Pins may serve several Images (see [Images.SetPins]). Safe for
// concurrent use.
type Pins struct {
	mu   sync.Mutex
	held map[*imager.Layout]int // with their pin counts
}

// NewPins returns an empty Pins.
func NewPins() *Pins { return &Pins{held: make(map[*imager.Layout]int)} }

// Pin counts a hold on l; release ends it. It fails with ErrTooManyImages
// when l is not held yet and MaxImages layouts are.
func (p *Pins) Pin(l *imager.Layout) (release func(), err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held[l] == 0 && len(p.held) >= MaxImages {
		return nil, ErrTooManyImages
	}
	p.held[l]++
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.held[l]--; p.held[l] <= 0 {
			delete(p.held, l)
		}
	}, nil
}

// holds reports whether l is pinned.
func (p *Pins) holds(l *imager.Layout) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held[l] > 0
}
