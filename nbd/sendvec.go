package nbd

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"github.com/gitblk/gitblk/internal/iovec"
)

// VecImage is an Image that can describe a read as pieces to send
// instead of filling a buffer (imager.Layout over a blob reader that lends
// its cache): cached memory goes out with writev straight from where it
// lies, cached file ranges with sendfile(2), and only what the image
// generates or had to read is in the buffer. ReadVec fills p and v as
// ReadAt fills p (see iovec); v's pieces stay valid until v.Release.
type VecImage interface {
	Image
	ReadVec(p []byte, off int64, v *iovec.List) (int, error)
}

// vecPool holds the piece lists of vector reads.
var vecPool = sync.Pool{New: func() any { return new(iovec.List) }}

// sysConn returns the raw connection's syscall.RawConn when replies may
// be sent from file descriptors: no TLS over it, and a socket underneath.
func (cn *conn) sysConn() syscall.RawConn {
	if cn.c != cn.raw {
		return nil
	}
	sc, ok := cn.raw.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// quickVecRead: a read of pieces that took at most this long (a re-read
// of cached data: lookups, tar headers, small blobs copied) costs less on
// the request reader than handing it to a worker, which on a re-read cost
// a fifth of the server's CPU in thread and goroutine switches. After
// such a read, the connection answers big reads inline; after a slower
// one (a first read, inflating), on workers again, so that a copy of many
// parts at once still uses every core. Only the read is timed: waiting
// for the socket costs the same on any goroutine.
const quickVecRead = 100 * time.Microsecond

// serveVecRead answers a validated read of vi as serveRead does, sending
// lent pieces without copying them. The pieces are all in hand before
// the reply starts, so a read failure is still a clean NBD_EIO; a
// failure while sending lent file ranges (after falling back to pread)
// ends the connection, as any failed write does. Replies held back by
// inline reads (see send) go out first, in the same write.
func (cn *conn) serveVecRead(r request, vi VecImage, sock syscall.RawConn) (int64, error) {
	n := int(r.length)
	bp := getBuf(n)
	defer putBuf(bp)
	data := (*bp)[maxReplyHeaderRoom : maxReplyHeaderRoom+n]
	v := vecPool.Get().(*iovec.List)
	defer vecPool.Put(v)
	defer v.Release()
	start := time.Now()
	err := readFullVec(vi, data, int64(r.off), v)
	cn.quickVec.Store(err == nil && time.Since(start) <= quickVecRead)
	if err != nil {
		return 0, cn.readFailed(r, err)
	}
	var hdr []byte
	if cn.structured {
		hdr = (*bp)[maxReplyHeaderRoom-chunkHeaderLen-offsetLen : maxReplyHeaderRoom]
		putChunkHeader(hdr, replyFlagDone, replyTypeOffsetData, r.cookie, uint32(offsetLen+n))
		be.PutUint64(hdr[chunkHeaderLen:], r.off)
	} else {
		hdr = (*bp)[maxReplyHeaderRoom-simpleReplyHeaderLen : maxReplyHeaderRoom]
		putSimpleHeader(hdr, 0, r.cookie)
	}
	ps := v.Pieces
	if len(ps) > 0 && ps[0].File == nil && len(ps[0].Mem) > 0 && &ps[0].Mem[0] == &data[0] {
		// The first piece follows the header in the buffer: one slice.
		ps[0].Mem = (*bp)[maxReplyHeaderRoom-len(hdr) : maxReplyHeaderRoom+len(ps[0].Mem)]
	} else {
		ps = append([]iovec.Piece{{Mem: hdr}}, ps...)
	}
	if r.inline && len(cn.held) > 0 {
		ps = append([]iovec.Piece{{Mem: cn.held}}, ps...)
		defer func() { cn.held = cn.held[:0] }()
	}
	if err := cn.writePieces(ps, sock); err != nil {
		return 0, err
	}
	cn.bytes.Add(int64(n))
	return int64(n), nil
}

// readFullVec is readFull for ReadVec.
func readFullVec(vi VecImage, p []byte, off int64, v *iovec.List) error {
	n, err := vi.ReadVec(p, off, v)
	if n == len(p) {
		return nil
	}
	v.Release()
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("reading %d bytes at %d: got %d: %w", len(p), off, n, err)
}

// writePieces sends a reply's pieces in order under the write lock: runs
// of memory with writev, file ranges with sendfile. A failed write closes
// the connection, as write does.
func (cn *conn) writePieces(ps []iovec.Piece, sock syscall.RawConn) error {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	if cn.werr != nil {
		return cn.werr
	}
	var arr [16][]byte
	bufs := arr[:0]
	var err error
	for i := 0; i < len(ps) && err == nil; i++ {
		p := &ps[i]
		if p.File == nil {
			bufs = append(bufs, p.Mem)
			continue
		}
		if len(bufs) > 0 {
			err = cn.writeAll(bufs)
			bufs = arr[:0]
		}
		if err == nil {
			err = cn.sendFile(p, sock)
		}
	}
	if err == nil && len(bufs) > 0 {
		err = cn.writeAll(bufs)
	}
	if err != nil {
		cn.werr = fmt.Errorf("nbd: writing reply: %w", err)
		cn.raw.Close()
	}
	return cn.werr
}

// errSocket marks a sendfile failure on the socket's side (there is no
// point in reading the file another way).
var errSocket = errors.New("nbd: socket")

// sendFile sends the file range p on sock with sendfile(2), each
// writePiece with its own deadline, as writeAll does. If sendfile fails
// on the file's side (a file system that cannot splice, a short file),
// the rest is read with pread and written.
func (cn *conn) sendFile(p *iovec.Piece, sock syscall.RawConn) error {
	off, left := p.Off, p.Len
	fc, err := p.File.SyscallConn()
	if err == nil {
		var serr error
		cerr := fc.Control(func(infd uintptr) {
			for left > 0 && serr == nil {
				chunk := min(left, writePiece)
				cn.raw.SetWriteDeadline(time.Now().Add(writeStall))
				werr := sock.Write(func(outfd uintptr) bool {
					for chunk > 0 {
						k, e := syscall.Sendfile(int(outfd), int(infd), &off, chunk)
						if k > 0 {
							chunk -= k
							left -= k
						}
						switch {
						case e == syscall.EAGAIN:
							return false // wait until the socket takes more
						case e == syscall.EINTR:
						case e == syscall.EPIPE || e == syscall.ECONNRESET:
							serr = fmt.Errorf("%w: sendfile: %w", errSocket, e)
							return true
						case e != nil:
							serr = fmt.Errorf("sendfile: %w", e)
							return true
						case k <= 0:
							serr = fmt.Errorf("sendfile: %w", io.ErrUnexpectedEOF)
							return true
						}
					}
					return true
				})
				if werr != nil && serr == nil {
					serr = fmt.Errorf("%w: %w", errSocket, werr)
				}
			}
		})
		switch {
		case cerr == nil && serr == nil:
			return nil
		case errors.Is(serr, errSocket):
			return serr
		}
	}
	if left == 0 {
		return nil
	}
	return cn.copyFile(p, off, left)
}

// copyFile sends left bytes of p's file from off by pread and write.
func (cn *conn) copyFile(p *iovec.Piece, off int64, left int) error {
	bp := getBuf(min(left, writePiece))
	defer putBuf(bp)
	for left > 0 {
		b := (*bp)[:min(left, writePiece)]
		if _, err := p.File.ReadAt(b, off); err != nil {
			return fmt.Errorf("reading a cache file: %w", err)
		}
		if err := cn.writeAll([][]byte{b}); err != nil {
			return err
		}
		off += int64(len(b))
		left -= len(b)
	}
	return nil
}
