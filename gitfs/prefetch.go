package gitfs

import (
	"errors"
	"fmt"
	"io"

	"github.com/gitblk/gitblk/imager"
)

// prefetchShare: an image is prefetched when it is at most 1/prefetchShare
// of the memory cache, so that it stays cached beside what clients read.
const prefetchShare = 2

// prefetchChunk is how much of the image one step reads.
const prefetchChunk = 256 << 10

// Prefetch reads img, an image of this repository's blobs, once through,
// so that its blobs are inflated into the memory cache before a client
// asks for them, when the image is at most half of the memory cache (a
// small site: its first guest read is then served from memory, as fast
// as a read of a built image). It reads from the end backwards: a client
// that starts reading meanwhile, from the front, meets it in the middle
// rather than inflating the same blobs beside it. It reports whether it
// read the image; a bigger one is left alone (reading it would only evict
// itself). Prefetch is for a background goroutine: it takes the CPU time
// of one first read.
func (r *Repo) Prefetch(img imager.Image) (bool, error) {
	size := img.Size()
	if size <= 0 || size > r.store.MemCacheSize()/prefetchShare {
		return false, nil
	}
	buf := make([]byte, min(size, prefetchChunk))
	for end := size; end > 0; {
		off := max(end-prefetchChunk, 0)
		p := buf[:end-off]
		if _, err := img.ReadAt(p, off); err != nil && !errors.Is(err, io.EOF) {
			return false, fmt.Errorf("gitfs: prefetch at %d: %w", off, err)
		}
		end = off
	}
	return true, nil
}
