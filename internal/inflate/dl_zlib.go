//go:build linux && (amd64 || arm64)

package inflate

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"unsafe"

	"github.com/ebitengine/purego"
)

// zStream is zlib's z_stream (zlib.h) on LP64 systems: C's field order,
// sizes and padding. It lives in C memory only.
type zStream struct {
	nextIn   uintptr // z_const Bytef *
	availIn  uint32
	totalIn  uint64
	nextOut  uintptr // Bytef *
	availOut uint32
	totalOut uint64
	msg      *byte // z_const char *, NUL-terminated
	state    uintptr
	zalloc   uintptr
	zfree    uintptr
	opaque   uintptr
	dataType int32
	adler    uint64
	reserved uint64
}

// zStreamSize is sizeof(z_stream), which inflateInit_ checks.
const zStreamSize = 112

// Compile-time check that zStream is exactly zStreamSize bytes.
var _ [unsafe.Sizeof(zStream{}) - zStreamSize]struct{}
var _ [zStreamSize - unsafe.Sizeof(zStream{})]struct{}

// zBlock is one calloc'd block: a z_stream and a byte to point next_out
// at when there is no room for output (inflate refuses a NULL next_out).
type zBlock struct {
	s       zStream
	scratch [8]byte
}

// zlib.h's return codes and flush values used here.
const (
	zOK          = 0
	zStreamEnd   = 1
	zNeedDict    = 2
	zStreamError = -2
	zDataError   = -3
	zMemError    = -4
	zBufError    = -5

	zFinish = 4
)

// zlibLib is the system's zlib, loaded.
type zlibLib struct {
	c       *libc
	version []byte // zlibVersion(), NUL-terminated, for inflateInit_
	// Function addresses.
	zlibVersion, inflateInit, inflate, inflateReset, inflateEnd uintptr
	// Idle streams for whole, inflateReset before use.
	idle chan *zBlock
	inf  *Inflater
}

func loadZlib(c *libc, name string) (*zlibLib, error) {
	h, err := dlopen(name)
	if err != nil {
		return nil, err
	}
	z := &zlibLib{c: c, idle: make(chan *zBlock, PoolMax)}
	var version func() string
	err = dlsyms(h, sym{"zlibVersion", &version}, sym{"zlibVersion", &z.zlibVersion}, sym{"inflateInit_", &z.inflateInit},
		sym{"inflate", &z.inflate}, sym{"inflateReset", &z.inflateReset}, sym{"inflateEnd", &z.inflateEnd})
	if err == nil {
		// The z_stream layout above is zlib 1.x's.
		if v := version(); strings.HasPrefix(v, "1.") {
			z.version = append([]byte(v), 0)
		} else {
			err = fmt.Errorf("zlib version %q, want 1.x", v)
		}
	}
	if err == nil {
		z.inf = &Inflater{name: "zlib (dlopen)", newReader: z.newReader, whole: z.whole}
		err = selfTest(z.inf)
	}
	if err != nil {
		_ = purego.Dlclose(h)
		return nil, fmt.Errorf("inflate: %s: %w", name, err)
	}
	return z, nil
}

func (z *zlibLib) inflater() *Inflater { return z.inf }

// newStream allocates and initializes a z_stream in C memory.
func (z *zlibLib) newStream() (*zBlock, error) {
	p := z.c.calloc(1, unsafe.Sizeof(zBlock{}))
	if p == nil {
		return nil, errors.New("inflate: zlib: out of memory")
	}
	b := (*zBlock)(p)
	r, _, _ := purego.SyscallN(z.inflateInit, uintptr(p),
		uintptr(unsafe.Pointer(unsafe.SliceData(z.version))), zStreamSize)
	if ret := int32(r); ret != zOK {
		z.c.free(p)
		return nil, fmt.Errorf("inflate: zlib: inflateInit_ failed (%d)", ret)
	}
	return b, nil
}

// freeStream releases b's zlib state and b.
func (z *zlibLib) freeStream(b *zBlock) {
	purego.SyscallN(z.inflateEnd, uintptr(unsafe.Pointer(b)))
	z.c.free(unsafe.Pointer(b))
}

// reset makes b ready for a new stream.
func (z *zlibLib) reset(b *zBlock) error {
	if r, _, _ := purego.SyscallN(z.inflateReset, uintptr(unsafe.Pointer(b))); int32(r) != zOK {
		return fmt.Errorf("inflate: zlib: inflateReset failed (%d)", int32(r))
	}
	return nil
}

// run inflates from in to out with Z_FINISH (which spares the copy into
// the sliding window when the stream ends within this call, as a whole
// small object does; otherwise inflate carries on as with Z_NO_FLUSH) and
// says how much of each it used. len(in) and len(out) are at most
// math.MaxUint32. The buffers are C's only during the call: they are passed
// again as (unused) arguments so that purego.SyscallN's go:uintptrescapes
// keeps them on the heap and alive until it returns.
func (z *zlibLib) run(b *zBlock, in, out []byte) (ret int32, inUsed, outUsed int) {
	s := &b.s
	s.nextIn, s.availIn = ptr(in), uint32(len(in))
	s.nextOut, s.availOut = ptr(out), uint32(len(out))
	if len(out) == 0 {
		s.nextOut = uintptr(unsafe.Pointer(&b.scratch[0]))
	}
	r, _, _ := purego.SyscallN(z.inflate, uintptr(unsafe.Pointer(b)), zFinish,
		uintptr(unsafe.Pointer(unsafe.SliceData(in))), uintptr(unsafe.Pointer(unsafe.SliceData(out))))
	inUsed, outUsed = len(in)-int(s.availIn), len(out)-int(s.availOut)
	s.nextIn, s.availIn, s.nextOut, s.availOut = 0, 0, 0, 0
	return int32(r), inUsed, outUsed
}

// message is zlib's message on the last error of b.
func message(b *zBlock) string {
	if b.s.msg == nil {
		return "damaged stream"
	}
	var sb strings.Builder
	for i := 0; i < 200; i++ {
		c := *(*byte)(unsafe.Add(unsafe.Pointer(b.s.msg), i))
		if c == 0 {
			break
		}
		sb.WriteByte(c)
	}
	return sb.String()
}

// whole is Inflater.Whole with zlib: one inflate call.
func (z *zlibLib) whole(dst, src []byte) (int, error) {
	if len(dst) > math.MaxUint32 {
		return wholeGo(dst, src)
	}
	src = src[:min(len(src), math.MaxUint32)]
	var b *zBlock
	select {
	case b = <-z.idle:
		if err := z.reset(b); err != nil {
			z.freeStream(b)
			return 0, err
		}
	default:
		var err error
		if b, err = z.newStream(); err != nil {
			return 0, err
		}
	}
	defer func() {
		select {
		case z.idle <- b:
		default:
			z.freeStream(b)
		}
	}()
	ret, inUsed, outUsed := z.run(b, src, dst)
	switch ret {
	case zStreamEnd:
		if outUsed != len(dst) {
			return inUsed, fmt.Errorf("%w: inflates to %d bytes, not %d", ErrData, outUsed, len(dst))
		}
		return inUsed, nil
	case zOK, zBufError:
		if outUsed == len(dst) && inUsed < len(src) {
			return 0, fmt.Errorf("%w: inflates to more than %d bytes", ErrData, len(dst))
		}
		return 0, fmt.Errorf("%w: damaged or cut short", ErrData)
	case zNeedDict:
		return 0, fmt.Errorf("%w: needs a preset dictionary", ErrData)
	case zDataError:
		return 0, fmt.Errorf("%w: %s", ErrData, message(b))
	}
	return 0, fmt.Errorf("inflate: zlib: inflate failed (%d)", ret)
}

// zlibReader is a zlib inflate stream reading src through buf.
type zlibReader struct {
	z       *zlibLib
	b       *zBlock         // nil once closed
	cleanup runtime.Cleanup // frees b if Close is never called
	src     io.Reader
	buf     []byte
	in      []byte // unread input, a part of buf
	srcEOF  bool
	err     error // sticky: io.EOF at the stream's end, or the failure
}

// errClosed is the error of a closed zlibReader.
var errClosed = errors.New("inflate: reader is closed")

// maxEmptyReads bounds reads of src that return nothing and no error.
const maxEmptyReads = 100

func (z *zlibLib) newReader(src io.Reader, bufSize int) (Reader, error) {
	b, err := z.newStream()
	if err != nil {
		return nil, err
	}
	r := &zlibReader{z: z, b: b, src: src, buf: make([]byte, min(max(bufSize, minBufSize), math.MaxUint32))}
	r.cleanup = runtime.AddCleanup(r, z.freeStream, b)
	return r, nil
}

func (r *zlibReader) Reset(src io.Reader) error {
	if r.b == nil {
		return errClosed
	}
	if err := r.z.reset(r.b); err != nil {
		return err
	}
	r.src, r.in, r.srcEOF, r.err = src, nil, false, nil
	return nil
}

func (r *zlibReader) Close() error {
	if r.b != nil {
		r.cleanup.Stop()
		r.z.freeStream(r.b)
		r.b = nil
		r.err = errClosed
	}
	return nil
}

func (r *zlibReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	out := p[:min(len(p), math.MaxUint32)]
	empty := 0
	for {
		if len(r.in) == 0 && !r.srcEOF {
			n, err := r.src.Read(r.buf)
			r.in = r.buf[:n]
			switch {
			case errors.Is(err, io.EOF):
				r.srcEOF = true
			case err != nil:
				r.err = fmt.Errorf("inflate: reading input: %w", err)
				return 0, r.err
			case n == 0:
				if empty++; empty > maxEmptyReads {
					r.err = io.ErrNoProgress
					return 0, r.err
				}
				continue
			}
		}
		ret, inUsed, n := r.z.run(r.b, r.in, out)
		r.in = r.in[inUsed:]
		switch ret {
		case zStreamEnd:
			r.err = io.EOF
			if n == 0 {
				return 0, io.EOF
			}
			return n, nil
		case zOK, zBufError:
			if n > 0 {
				return n, nil
			}
			if len(r.in) == 0 && r.srcEOF {
				r.err = io.ErrUnexpectedEOF
				return 0, r.err
			}
			if inUsed == 0 && len(r.in) > 0 {
				// Input and room for output, and no progress: never
				// expected of zlib; do not spin.
				r.err = fmt.Errorf("inflate: zlib made no progress (%d)", ret)
				return 0, r.err
			}
		case zNeedDict:
			r.err = fmt.Errorf("%w: needs a preset dictionary", ErrData)
			return 0, r.err
		case zDataError:
			r.err = fmt.Errorf("%w: %s", ErrData, message(r.b))
			return 0, r.err
		default:
			r.err = fmt.Errorf("inflate: zlib: inflate failed (%d)", ret)
			return 0, r.err
		}
	}
}

// selfTest checks that f inflates a stream of compress/zlib's, whole and
// streamed, to the same bytes: a library of another ABI fails here, not
// later. The stream is a constant, written once by compress/zlib
// (TestSelfTestStream checks that it inflates back): making it at each
// start cost a compressor's tables, a megabyte of fresh memory, twice.
func selfTest(f *Inflater) error {
	text := selfTestText()
	dst := make([]byte, len(text))
	if n, err := f.whole(dst, selfTestStream); err != nil || n != len(selfTestStream) || !bytes.Equal(dst, text) {
		return fmt.Errorf("self-test: whole: %d bytes, %v", n, err)
	}
	r, err := f.newReader(bytes.NewReader(selfTestStream), minBufSize)
	if err != nil {
		return fmt.Errorf("self-test: %w", err)
	}
	defer r.Close()
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, text) {
		return fmt.Errorf("self-test: stream: %d bytes, %v", len(got), err)
	}
	return nil
}

// selfTestText is what selfTestStream inflates to.
func selfTestText() []byte { return bytes.Repeat([]byte("gitblk checks its inflater\n"), 100) }

// selfTestStream is selfTestText as compress/zlib's default level wrote it.
var selfTestStream = []byte{
	0x78, 0x9c, 0xec, 0xc9, 0xb1, 0x11, 0xc0, 0x20, 0x08, 0x40, 0xd1, 0x3e,
	0x53, 0xb0, 0x5a, 0xc2, 0x11, 0xe5, 0xe0, 0x2c, 0x84, 0xfd, 0xcf, 0x29,
	0xec, 0x7e, 0xfd, 0x86, 0xf7, 0x97, 0x21, 0x3a, 0x4d, 0xa3, 0xc4, 0xbb,
	0xc4, 0xd7, 0x9f, 0x6f, 0xdb, 0x7e, 0x20, 0x08, 0x82, 0x20, 0x08, 0x82,
	0x20, 0xe8, 0x2a, 0x9d, 0x00, 0x00, 0x00, 0xff, 0xff, 0xbb, 0x57, 0xe7,
	0x02,
}
