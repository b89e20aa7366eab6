package imager

import (
	"sort"
	"sync"
	"sync/atomic"
)

// BlobWarmer is a BlobReader that can prepare big blobs in the background
// (see readahead): WarmBlob asks for blob id, of size bytes, to be made
// ready for reading soon. It must not block, and may ignore the request.
type BlobWarmer interface {
	BlobReader
	WarmBlob(id BlobID, size int64)
}

// Read-ahead over big members. A reader going through an image front to
// back waits at each big blob while it is inflated; a layout whose blob
// reader is a BlobWarmer names the big blobs just ahead of such a reader,
// so that they are inflated on another core meanwhile. Only reads that
// continue one of the last few reads (a stream) do so: a random reader
// gets no inflating it did not ask for.
const (
	// warmMin: blobs bigger than this are warmed (smaller ones are read
	// fast enough as they come, and would only churn the memory cache).
	warmMin = 1 << 20
	// warmAhead is how far past a stream's read its big blobs are warmed.
	warmAhead = 64 << 20
	// streamSlack is how far from a stream's end a read may start and
	// still continue it: a client keeps many reads in flight, which
	// arrive out of order.
	streamSlack = 32 << 20
	// raStreams is how many streams are followed at once.
	raStreams = 4
)

// readahead is a layout's read-ahead state: the only part of a Layout
// that changes, and only as hints.
type readahead struct {
	w    BlobWarmer
	once sync.Once
	big  []bigMember // built on first use

	ends [raStreams]atomic.Int64 // where each stream's last read ended; 0: none
	turn atomic.Uint32           // the stream slot a new stream takes next
}

// bigMember is a member whose blob is over warmMin bytes.
type bigMember struct {
	off  int64 // where its blob piece starts in the image
	size int64
	id   BlobID
	sent atomic.Bool // handed to WarmBlob already
}

// newReadahead returns l's read-ahead, or nil when its blob reader cannot
// warm.
func newReadahead(blobs BlobReader) *readahead {
	w, ok := blobs.(BlobWarmer)
	if !ok {
		return nil
	}
	return &readahead{w: w}
}

// bigMembers lists l's members with big blobs, in image order.
func (l *Layout) bigMembers() []bigMember {
	var big []bigMember
	for i := range l.nmem {
		off := l.moff(i)
		ps := l.tab.pieces(i)
		for _, pc := range ps.all() {
			if pc.kind == ExtentBlob && pc.len > warmMin {
				big = append(big, bigMember{off: off, size: pc.len, id: l.tab.blob(i)})
			}
			off += pc.len
		}
	}
	return big
}

// continues reports whether a read of [off, end) continues a stream, and
// moves that stream's end on; a read that does not starts a stream of its
// own, in place of the oldest.
func (ra *readahead) continues(off, end int64) bool {
	for k := range ra.ends {
		e := ra.ends[k].Load()
		if e > 0 && off >= e-streamSlack && off <= e+streamSlack {
			for e < end && !ra.ends[k].CompareAndSwap(e, end) {
				e = ra.ends[k].Load()
			}
			return true
		}
	}
	ra.ends[ra.turn.Add(1)%raStreams].Store(end)
	return false
}

// readahead is called after each read of [off, end): when the read
// continues a stream, the big blobs that start within warmAhead after it
// are warmed, each once. A layout without big blobs (a tree of small
// files) follows no stream, so its reads touch no shared state here.
func (l *Layout) readahead(off, end int64) {
	ra := l.ra
	if ra == nil || end <= off {
		return
	}
	ra.once.Do(func() { ra.big = l.bigMembers() })
	big := ra.big
	if len(big) == 0 || !ra.continues(off, end) {
		return
	}
	j := sort.Search(len(big), func(j int) bool { return big[j].off >= end })
	for ; j < len(big) && big[j].off < end+warmAhead; j++ {
		if b := &big[j]; !b.sent.Load() && !b.sent.Swap(true) {
			ra.w.WarmBlob(b.id, b.size)
		}
	}
}
