package nbd

import (
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"time"
)

// request is a decoded request header.
type request struct {
	flags  uint16
	typ    uint16
	cookie uint64
	off    uint64
	length uint32
	start  time.Time // when its header was read, for Observer.Request
	inline bool      // answered by the request reader (see send)
}

// Reads and block status answers are shaped by these.
const (
	minHoleChunk     = 4096        // shorter zero runs in a read are sent as data
	minSparseRead    = 64 << 10    // shorter reads skip the zero-run lookup: holes would save little
	maxStatusExtents = 1 << 14     // descriptors per block status reply (the spec allows 2^20)
	maxDescriptorLen = 1<<32 - 512 // longest descriptor: 32 bits, a multiple of 512
	blockStatusCost  = chunkHeaderLen + metaContextIDLen + maxStatusExtents*blockDescriptorLen
)

// transmit reads requests until DISC, a hard disconnect, or a stop. Reads
// and block status run on workers; everything else is answered inline.
func (cn *conn) transmit() error {
	if err := cn.raw.SetDeadline(time.Time{}); err != nil {
		return fmt.Errorf("nbd: clearing handshake deadline: %w", err)
	}
	if cn.stopping.Load() {
		return errStopped
	}
	cn.sock = cn.sysConn()
	if uc, ok := cn.raw.(*net.UnixConn); ok {
		_ = uc.SetWriteBuffer(unixSendBuffer) // best effort: capped by net.core.wmem_max
	}
	var h [requestHeaderLen]byte
	for {
		if cn.r.Buffered() < requestHeaderLen {
			if err := cn.flushHeld(); err != nil {
				return err
			}
			cn.awaitRequest()
		}
		if _, err := io.ReadFull(cn.r, h[:]); err != nil {
			if cn.stopping.Load() {
				return errStopped
			}
			return fmt.Errorf("nbd: reading request: %w", err)
		}
		if magic := be.Uint32(h[0:]); magic != magicRequest {
			return fmt.Errorf("%w: bad request magic %#x", errHangup, magic)
		}
		r := request{
			flags:  be.Uint16(h[4:]),
			typ:    be.Uint16(h[6:]),
			cookie: be.Uint64(h[8:]),
			off:    be.Uint64(h[16:]),
			length: be.Uint32(h[24:]),
		}
		if cn.srv.Observer != nil {
			r.start = time.Now()
		}
		cn.requests.Add(1)
		if err := cn.request(r); err != nil {
			return err
		}
	}
}

// unixSendBuffer is the send buffer asked for on unix sockets (Linux
// doubles it, up to net.core.wmem_max). The default, about 208 KiB, holds
// less than one 256 KiB reply, so every big reply was written in pieces,
// the writer parked between them until the client had read: twice the
// writes and the switches of a re-read, and its throughput 0.8x what a
// 1 MiB buffer gives. It bounds what the kernel holds of one
// connection's replies, so MaxConns times twice this at worst. TCP keeps
// the kernel's autotuning, which setting a size would turn off.
const unixSendBuffer = 1 << 20

// inBounds reports whether [off, off+length) lies inside the export.
func (cn *conn) inBounds(r request) bool {
	size := uint64(cn.cur.size)
	return r.off <= size && uint64(r.length) <= size-r.off
}

// request validates one request and answers it or hands it to a worker.
func (cn *conn) request(r request) error {
	switch r.typ {
	case cmdDisc:
		if err := cn.flushHeld(); err != nil {
			return err
		}
		return errDisc
	case cmdWrite:
		if r.length > maxPayload {
			return fmt.Errorf("%w: NBD_CMD_WRITE payload of %d bytes", errHangup, r.length)
		}
		if _, err := io.CopyN(io.Discard, cn.r, int64(r.length)); err != nil {
			return fmt.Errorf("nbd: draining NBD_CMD_WRITE payload: %w", err)
		}
		return cn.fail(r, errPerm, "the export is read-only")
	case cmdTrim, cmdWriteZeroes:
		return cn.fail(r, errPerm, "the export is read-only")
	case cmdFlush:
		if r.flags != 0 {
			return cn.fail(r, errInval, "unsupported command flags")
		}
		return cn.succeed(r)
	case cmdCache:
		if r.flags != 0 {
			return cn.fail(r, errInval, "unsupported command flags")
		}
		if !cn.inBounds(r) {
			return cn.fail(r, errInval, "range beyond the end of the export")
		}
		return cn.succeed(r)
	case cmdRead:
		allowed := uint16(0)
		if cn.structured {
			allowed = cmdFlagDF
		}
		switch {
		case r.flags&^allowed != 0:
			return cn.fail(r, errInval, "unsupported command flags")
		case !cn.inBounds(r):
			return cn.fail(r, errInval, "range beyond the end of the export")
		case r.length > maxPayload:
			return cn.fail(r, errInval, fmt.Sprintf("read of %d bytes exceeds the maximum payload of %d", r.length, maxPayload))
		}
		if r.length <= inlineReadMax || cn.quickVec.Load() {
			return cn.inline(r, int64(r.length)+maxReplyHeaderRoom, cn.serveRead)
		}
		return cn.dispatch(r, int64(r.length)+maxReplyHeaderRoom, cn.serveRead)
	case cmdBlockStatus:
		switch {
		case !cn.blockStatus:
			return cn.fail(r, errInval, "no metadata context was negotiated")
		case r.flags&^cmdFlagReqOne != 0:
			return cn.fail(r, errInval, "unsupported command flags")
		case r.length == 0 || !cn.inBounds(r):
			return cn.fail(r, errInval, "empty range or range beyond the end of the export")
		}
		return cn.dispatch(r, blockStatusCost, cn.serveBlockStatus)
	default:
		return cn.fail(r, errInval, fmt.Sprintf("unknown command %d", r.typ))
	}
}

// cmdName names a command for Observer.Request.
func cmdName(typ uint16) string {
	switch typ {
	case cmdRead:
		return "read"
	case cmdWrite:
		return "write"
	case cmdFlush:
		return "flush"
	case cmdTrim:
		return "trim"
	case cmdCache:
		return "cache"
	case cmdWriteZeroes:
		return "write_zeroes"
	case cmdBlockStatus:
		return "block_status"
	}
	return "unknown"
}

// errnoName names an NBD error value for Observer.Request.
func errnoName(errno uint32) string {
	switch errno {
	case errPerm:
		return "NBD_EPERM"
	case errIO:
		return "NBD_EIO"
	case errInval:
		return "NBD_EINVAL"
	}
	return fmt.Sprintf("error %d", errno)
}

// observe tells the Observer, if any, that r was answered.
func (cn *conn) observe(r request, n int64, err error) {
	if o := cn.srv.Observer; o != nil {
		o.Request(cn.cur.name, cmdName(r.typ), n, time.Since(r.start), err)
	}
}

// fail answers r with an error and observes it.
func (cn *conn) fail(r request, errno uint32, msg string) error {
	err := cn.replyError(r, errno, msg)
	if cn.srv.Observer != nil {
		oerr := err
		if oerr == nil {
			oerr = fmt.Errorf("nbd: %s: %s: %s", cmdName(r.typ), errnoName(errno), msg)
		}
		cn.observe(r, 0, oerr)
	}
	return err
}

// succeed answers r without payload and observes it.
func (cn *conn) succeed(r request) error {
	err := cn.replyOK(r)
	cn.observe(r, 0, err)
	return err
}

// dispatch runs serve(r) on a worker once the limiter grants cost bytes.
func (cn *conn) dispatch(r request, cost int64, serve func(request) (int64, error)) error {
	if !cn.lim.acquire(cost) {
		return errStopped
	}
	global := cn.srv.global
	global.acquire(cost) // never closed: it only waits for other connections' buffers
	if cn.stopping.Load() {
		global.release(cost)
		cn.lim.release(cost)
		return errStopped
	}
	cn.work.Add(1)
	cn.onWorkers.Add(1)
	go func() {
		defer cn.work.Done()
		defer cn.onWorkers.Add(-1)
		defer cn.lim.release(cost)
		defer global.release(cost)
		defer func() {
			if v := recover(); v != nil {
				cn.log.Error("nbd: panic serving a request", "panic", v, "stack", string(debug.Stack()))
				cn.fail(r, errIO, "internal server error")
			}
		}()
		n, err := serve(r)
		cn.observe(r, n, err)
	}()
	return nil
}

// inlineReadMax is the longest read answered by the goroutine that reads
// requests rather than by a worker: a small read of cached data takes a
// few microseconds, less than handing it to another goroutine and waking
// it (random 4 KiB reads spent most of their time in the scheduler).
// Longer reads go to workers, so that a copy of many parts at once uses
// every core, except while they are quick (see quickVecRead).
const inlineReadMax = 64 << 10

// inline runs serve(r) on the calling goroutine once the limiters grant
// cost bytes, with the guarantees of dispatch: buffer budgets, a panic
// answered as NBD_EIO, the request observed.
func (cn *conn) inline(r request, cost int64, serve func(request) (int64, error)) error {
	if !cn.lim.acquire(cost) {
		return errStopped
	}
	global := cn.srv.global
	global.acquire(cost)
	defer cn.lim.release(cost)
	defer global.release(cost)
	if cn.stopping.Load() {
		return errStopped
	}
	r.inline = true
	defer func() {
		if v := recover(); v != nil {
			cn.log.Error("nbd: panic serving a request", "panic", v, "stack", string(debug.Stack()))
			cn.fail(r, errIO, "internal server error")
		}
	}()
	n, err := serve(r)
	cn.observe(r, n, err)
	return nil
}

// write sends one reply (one or more slices) under the write lock, with a
// single write or writev. A failed write closes the connection.
// Replies to requests answered inline (see inline) are held back while the
// next request header is already read in, up to coalesceMax bytes, and
// written together: a client with many small reads in flight then costs
// one write (and one wake-up on its side) per batch, not per read. The
// request reader writes what it holds before it waits for a request, so a
// held reply waits only for requests the client has already sent.
const coalesceMax = 256 << 10

// send writes the reply bufs of request r, or holds it (see coalesceMax).
func (cn *conn) send(r request, bufs ...[]byte) error {
	if !r.inline {
		return cn.write(bufs...)
	}
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	if cn.r.Buffered() >= requestHeaderLen && len(cn.held)+total <= coalesceMax {
		for _, b := range bufs {
			cn.held = append(cn.held, b...)
		}
		return nil
	}
	if len(cn.held) == 0 {
		return cn.write(bufs...)
	}
	err := cn.write(append([][]byte{cn.held}, bufs...)...)
	cn.held = cn.held[:0]
	return err
}

// flushHeld writes the replies send held back. Only the request reader
// calls it.
func (cn *conn) flushHeld() error {
	if len(cn.held) == 0 {
		return nil
	}
	err := cn.write(cn.held)
	cn.held = cn.held[:0]
	return err
}

func (cn *conn) write(bufs ...[]byte) error {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	if cn.werr != nil {
		return cn.werr
	}
	err := cn.writeAll(bufs)
	if err != nil {
		cn.werr = fmt.Errorf("nbd: writing reply: %w", err)
		cn.raw.Close()
	}
	return cn.werr
}

// writeAll writes bufs with one writev when they fit a piece, else piece
// by piece, each piece with its own deadline: a client that keeps reading
// is never cut off, one that stops is dropped after writeStall.
func (cn *conn) writeAll(bufs [][]byte) error {
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	if total <= writePiece {
		cn.raw.SetWriteDeadline(time.Now().Add(writeStall))
		nb := net.Buffers(bufs)
		_, err := nb.WriteTo(cn.c)
		return err
	}
	for _, b := range bufs {
		for len(b) > 0 {
			n := min(len(b), writePiece)
			cn.raw.SetWriteDeadline(time.Now().Add(writeStall))
			if _, err := cn.c.Write(b[:n]); err != nil {
				return err
			}
			b = b[n:]
		}
	}
	return nil
}

func putSimpleHeader(b []byte, errno uint32, cookie uint64) {
	be.PutUint32(b[0:], magicSimpleReply)
	be.PutUint32(b[4:], errno)
	be.PutUint64(b[8:], cookie)
}

func putChunkHeader(b []byte, flags, typ uint16, cookie uint64, length uint32) {
	be.PutUint32(b[0:], magicStructuredReply)
	be.PutUint16(b[4:], flags)
	be.PutUint16(b[6:], typ)
	be.PutUint64(b[8:], cookie)
	be.PutUint32(b[16:], length)
}

// replyOK answers a request without payload with success.
func (cn *conn) replyOK(r request) error {
	if cn.structured && r.typ == cmdRead {
		var b [chunkHeaderLen]byte
		putChunkHeader(b[:], replyFlagDone, replyTypeNone, r.cookie, 0)
		return cn.send(r, b[:])
	}
	var b [simpleReplyHeaderLen]byte
	putSimpleHeader(b[:], 0, r.cookie)
	return cn.send(r, b[:])
}

// replyError answers with an error: an error chunk carrying msg when
// structured replies are on, a simple reply otherwise.
func (cn *conn) replyError(r request, errno uint32, msg string) error {
	if !cn.structured {
		var b [simpleReplyHeaderLen]byte
		putSimpleHeader(b[:], errno, r.cookie)
		return cn.send(r, b[:])
	}
	msg = truncateString(msg, maxStringLen)
	b := make([]byte, chunkHeaderLen+errorPayloadLen+len(msg))
	putChunkHeader(b, replyFlagDone, replyTypeError, r.cookie, uint32(errorPayloadLen+len(msg)))
	be.PutUint32(b[chunkHeaderLen:], errno)
	be.PutUint16(b[chunkHeaderLen+4:], uint16(len(msg)))
	copy(b[chunkHeaderLen+errorPayloadLen:], msg)
	return cn.send(r, b)
}

// readFull fills p from the image; a short read is an error.
func readFull(img Image, p []byte, off int64) error {
	n, err := img.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("reading %d bytes at %d: got %d: %w", len(p), off, n, err)
}

// readFailed logs a failed read and answers NBD_EIO; it returns the error
// for Observer.Request.
func (cn *conn) readFailed(r request, err error) error {
	cn.log.Error("nbd: read failed", "export", cn.cur.name, "description", cn.cur.exp.Description,
		"offset", r.off, "length", r.length, "err", err)
	cn.replyError(r, errIO, "read error (see the server's log)")
	return fmt.Errorf("nbd: read: %w", err)
}

// serveRead answers a validated read. Data is read whole before the reply
// starts, so a failure is a clean NBD_EIO. It returns the bytes sent.
func (cn *conn) serveRead(r request) (int64, error) {
	if r.length == 0 {
		return 0, cn.replyOK(r)
	}
	if cn.structured && r.flags&cmdFlagDF == 0 && r.length >= minSparseRead {
		if ei, ok := cn.cur.exp.Image.(ExtentImage); ok {
			if sent, n, err := cn.serveSparseRead(r, ei); sent {
				return n, err
			}
		}
	}
	if vi, ok := cn.cur.exp.Image.(VecImage); ok && r.length > inlineReadMax && cn.sock != nil {
		return cn.serveVecRead(r, vi, cn.sock)
	}
	n := int(r.length)
	bp := getBuf(n)
	defer putBuf(bp)
	data := (*bp)[maxReplyHeaderRoom : maxReplyHeaderRoom+n]
	if err := readFull(cn.cur.exp.Image, data, int64(r.off)); err != nil {
		return 0, cn.readFailed(r, err)
	}
	var out []byte
	if cn.structured {
		out = (*bp)[maxReplyHeaderRoom-chunkHeaderLen-offsetLen : maxReplyHeaderRoom+n]
		putChunkHeader(out, replyFlagDone, replyTypeOffsetData, r.cookie, uint32(offsetLen+n))
		be.PutUint64(out[chunkHeaderLen:], r.off)
	} else {
		out = (*bp)[maxReplyHeaderRoom-simpleReplyHeaderLen : maxReplyHeaderRoom+n]
		putSimpleHeader(out, 0, r.cookie)
	}
	if err := cn.send(r, out); err != nil {
		return 0, err
	}
	cn.bytes.Add(int64(n))
	return int64(n), nil
}

// segment is a run of a read: data, or zeros sent as a hole chunk.
type segment struct {
	off  int64
	n    int
	zero bool
}

// serveSparseRead answers a structured read whose range holds zero runs
// of at least minHoleChunk bytes with OFFSET_DATA and OFFSET_HOLE chunks.
// It returns sent false (having sent nothing) when the range has no such
// run; else the bytes sent and the error, as serveRead.
func (cn *conn) serveSparseRead(r request, ei ExtentImage) (sent bool, n int64, err error) {
	off, end := int64(r.off), int64(r.off)+int64(r.length)
	var segs []segment
	holes, dataLen := false, 0
	hf, found := ei.(holeFinder)
	if found {
		segs, holes, dataLen = holeSegments(hf, off, end)
	}
	for pos := off; pos < end && !found; {
		n, zero := cn.runs.extentAt(ei, pos, cn.cur.size)
		if n <= 0 || n > end-pos {
			if n <= 0 {
				zero = false // the image does not know: send data
			}
			n = end - pos
		}
		if zero && n < minHoleChunk {
			zero = false
		}
		if zero {
			holes = true
		} else {
			dataLen += int(n)
		}
		if k := len(segs) - 1; k >= 0 && segs[k].zero == zero {
			segs[k].n += int(n)
		} else {
			segs = append(segs, segment{off: pos, n: int(n), zero: zero})
		}
		pos += n
	}
	if !holes {
		return false, 0, nil
	}
	bp := getBuf(dataLen)
	defer putBuf(bp)
	buf := (*bp)[:dataLen]
	const hdrLen = chunkHeaderLen + holePayloadLen
	hdrs := make([]byte, len(segs)*hdrLen)
	bufs := make([][]byte, 0, 2*len(segs))
	at := 0
	for i, s := range segs {
		flags := uint16(0)
		if i == len(segs)-1 {
			flags = replyFlagDone
		}
		h := hdrs[i*hdrLen : (i+1)*hdrLen]
		if s.zero {
			putChunkHeader(h, flags, replyTypeOffsetHole, r.cookie, holePayloadLen)
			be.PutUint64(h[chunkHeaderLen:], uint64(s.off))
			be.PutUint32(h[chunkHeaderLen+offsetLen:], uint32(s.n))
			bufs = append(bufs, h)
			continue
		}
		d := buf[at : at+s.n]
		at += s.n
		if err := readFull(cn.cur.exp.Image, d, s.off); err != nil {
			return true, 0, cn.readFailed(r, err)
		}
		putChunkHeader(h, flags, replyTypeOffsetData, r.cookie, uint32(offsetLen+s.n))
		be.PutUint64(h[chunkHeaderLen:], uint64(s.off))
		bufs = append(bufs, h[:chunkHeaderLen+offsetLen], d)
	}
	if err := cn.send(r, bufs...); err != nil {
		return true, 0, err
	}
	cn.bytes.Add(int64(r.length))
	return true, int64(r.length), nil
}

// holeFinder is an ExtentImage that can find the next long zero run
// itself (imager.Layout): a read of many small members then costs a few
// lookups, not one ExtentAt per member. NextHole returns the first zero
// run starting in [off, end) that it reports, or n 0; it may leave out
// runs, whose bytes are then sent as data.
type holeFinder interface {
	NextHole(off, end int64) (start, n int64)
}

// holeSegments splits [off, end) into data and holes of at least
// minHoleChunk bytes found by hf, as serveSparseRead sends them.
func holeSegments(hf holeFinder, off, end int64) (segs []segment, holes bool, dataLen int) {
	data := func(from, to int64) {
		if to <= from {
			return
		}
		dataLen += int(to - from)
		if k := len(segs) - 1; k >= 0 && !segs[k].zero {
			segs[k].n += int(to - from)
			return
		}
		segs = append(segs, segment{off: from, n: int(to - from)})
	}
	for pos := off; pos < end; {
		hs, hn := hf.NextHole(pos, end)
		if hn <= 0 || hs < pos || hs >= end {
			data(pos, end)
			break
		}
		hn = min(hn, end-hs)
		if hn < minHoleChunk {
			data(pos, hs+hn)
		} else {
			data(pos, hs)
			segs = append(segs, segment{off: hs, n: int(hn), zero: true})
			holes = true
		}
		pos = hs + hn
	}
	return segs, holes, dataLen
}

// serveBlockStatus answers base:allocation for a validated range: zero runs
// are HOLE|ZERO, the rest allocated. Images without ExtentAt are all data.
func (cn *conn) serveBlockStatus(r request) (int64, error) {
	off, end := int64(r.off), int64(r.off)+int64(r.length)
	reqOne := r.flags&cmdFlagReqOne != 0
	b := make([]byte, chunkHeaderLen+metaContextIDLen, chunkHeaderLen+metaContextIDLen+8*blockDescriptorLen)
	var lastFlags uint32
	count := 0
	ei, sparse := cn.cur.exp.Image.(ExtentImage)
	for pos := off; pos < end && count < maxStatusExtents; {
		n, zero := end-pos, false
		if sparse {
			n, zero = cn.runs.extentAt(ei, pos, cn.cur.size)
			if n <= 0 {
				n, zero = end-pos, false // the image does not know: allocated
			}
			if zero {
				n, zero = sectorZeros(pos, n)
			}
		}
		if n > end-pos {
			// The last run may extend past the request (the spec allows
			// it, and it saves clients a round trip), except with REQ_ONE.
			if reqOne {
				n = end - pos
			} else {
				n = min(n, maxDescriptorLen)
			}
		}
		flags := uint32(0)
		if zero {
			flags = stateHole | stateZero
		}
		if last := b[len(b)-blockDescriptorLen:]; count > 0 && flags == lastFlags && int64(be.Uint32(last))+n <= maxDescriptorLen {
			be.PutUint32(last, be.Uint32(last)+uint32(n))
		} else {
			b = be.AppendUint32(b, uint32(n))
			b = be.AppendUint32(b, flags)
			count++
			lastFlags = flags
		}
		pos += n
		if reqOne {
			break
		}
	}
	putChunkHeader(b, replyFlagDone, replyTypeBlockStatus, r.cookie, uint32(len(b)-chunkHeaderLen))
	be.PutUint32(b[chunkHeaderLen:], allocationContextID)
	return 0, cn.send(r, b)
}

// statusAlign is the granularity of the zero runs block status reports.
// qemu-img convert works in 512-byte sectors: it takes a sector in which a
// zero extent starts or ends as all zeros, so a zero run that does not
// start and end on a sector boundary (tar padding after a file's last
// byte) would cost the file its last bytes. Reporting a zero run's
// unaligned edges as data is always correct (doc/proto.md: a clear ZERO
// flag only means the area may not read as zeros).
const statusAlign = 512

// sectorZeros splits the zero run [pos, pos+n) for block status: it
// returns the length and class of its first part, data up to the first
// sector boundary, then zeros to the last one, then data again.
func sectorZeros(pos, n int64) (int64, bool) {
	first := (pos + statusAlign - 1) / statusAlign * statusAlign
	last := (pos + n) / statusAlign * statusAlign
	switch {
	case first >= last:
		return n, false // no whole sector of zeros
	case first > pos:
		return first - pos, false
	}
	return last - pos, true
}

// runCache remembers the last runs an ExtentImage reported, so that
// sequential reads and status queries inside one long run ask the image
// once: the cost of imager.Layout's ExtentAt grows with the members the run
// it reports spans (a data run skips members without zeros 64 at a time,
// members with zero pieces one by one), so asking again at each request of
// a sequential copy would cost the rest of the run every time.
type runCache struct {
	mu   sync.Mutex
	runs [runCacheSize]cachedRun
	next int
}

const runCacheSize = 8

// cachedRun is [start, end) of one class (zero or data); start is where it
// was asked for, not necessarily where the run begins.
type cachedRun struct {
	start, end int64
	zero       bool
}

// extentAt is ei.ExtentAt(pos) for 0 <= pos < size, served from the cache
// when pos lies in a remembered run.
func (c *runCache) extentAt(ei ExtentImage, pos, size int64) (int64, bool) {
	c.mu.Lock()
	for _, r := range c.runs {
		if pos >= r.start && pos < r.end {
			c.mu.Unlock()
			return r.end - pos, r.zero
		}
	}
	c.mu.Unlock()
	n, zero := ei.ExtentAt(pos)
	if n <= 0 {
		return n, zero
	}
	n = min(n, size-pos)
	c.mu.Lock()
	c.runs[c.next] = cachedRun{start: pos, end: pos + n, zero: zero}
	c.next = (c.next + 1) % runCacheSize
	c.mu.Unlock()
	return n, zero
}

// Read buffers come from pools by power-of-two size class, from 4 KiB to
// the maximum payload, each with maxReplyHeaderRoom bytes in front for the
// reply header, so a reply is one contiguous write.
const (
	minBufShift = 12
	maxBufShift = 25 // maxPayload
)

var bufPools [maxBufShift - minBufShift + 1]sync.Pool

func bufClass(n int) int {
	c := 0
	for (1 << (minBufShift + c)) < n {
		c++
	}
	return c
}

// getBuf returns a buffer of at least maxReplyHeaderRoom+n bytes.
func getBuf(n int) *[]byte {
	c := bufClass(n)
	if c >= len(bufPools) {
		b := make([]byte, maxReplyHeaderRoom+n)
		return &b
	}
	if v := bufPools[c].Get(); v != nil {
		return v.(*[]byte)
	}
	b := make([]byte, maxReplyHeaderRoom+(1<<(minBufShift+c)))
	return &b
}

func putBuf(bp *[]byte) {
	n := len(*bp) - maxReplyHeaderRoom
	c := bufClass(n)
	if c < len(bufPools) && 1<<(minBufShift+c) == n {
		bufPools[c].Put(bp)
	}
}
