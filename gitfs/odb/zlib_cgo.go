//go:build cgo && !purego

package odb

/*
#cgo LDFLAGS: -l:libdeflate.a -lz
#include <stdlib.h>
#include <zlib.h>
#include <libdeflate.h>

// gz_new allocates and initializes an inflate stream; NULL when out of memory.
static z_stream *gz_new(void) {
	z_stream *s = calloc(1, sizeof *s);
	if (s == NULL)
		return NULL;
	if (inflateInit(s) != Z_OK) {
		free(s);
		return NULL;
	}
	return s;
}

// gz_inflate inflates from in to out and says how much of each it used.
// The Go buffers are only referenced during the call. Z_FINISH spares the
// copy into the sliding window when the stream ends within this call (a
// whole small blob); otherwise inflate carries on as with Z_NO_FLUSH.
static int gz_inflate(z_stream *s, unsigned char *in, unsigned int inlen, unsigned int *inused,
		unsigned char *out, unsigned int outlen, unsigned int *outused) {
	s->next_in = in;
	s->avail_in = inlen;
	s->next_out = out;
	s->avail_out = outlen;
	int ret = inflate(s, Z_FINISH);
	*inused = inlen - s->avail_in;
	*outused = outlen - s->avail_out;
	s->next_in = Z_NULL;
	s->next_out = Z_NULL;
	s->avail_in = 0;
	s->avail_out = 0;
	return ret;
}

static void gz_free(z_stream *s) {
	inflateEnd(s);
	free(s);
}

// ld_zlib inflates the zlib stream at the start of in into out whole.
static int ld_zlib(struct libdeflate_decompressor *d, unsigned char *in, size_t inlen,
		unsigned char *out, size_t outlen, size_t *inused, size_t *outused) {
	return libdeflate_zlib_decompress_ex(d, in, inlen, out, outlen, inused, outused);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"unsafe"
)

// newZlibReader inflates with the system's C zlib (see zlib.go).
var newZlibReader = newCZlib

// inflateWhole inflates with libdeflate (see zlib.go).
var inflateWhole = inflateLibdeflate

// decompressors are idle libdeflate decompressors (one per concurrent
// call; about 10 KB each).
var decompressors = make(chan *C.struct_libdeflate_decompressor, zlibPoolMax)

func inflateLibdeflate(dst, src []byte) (int, error) {
	var d *C.struct_libdeflate_decompressor
	select {
	case d = <-decompressors:
	default:
		if d = C.libdeflate_alloc_decompressor(); d == nil {
			return 0, errors.New("zlib: cannot allocate a decompressor")
		}
	}
	defer func() {
		select {
		case decompressors <- d:
		default:
			C.libdeflate_free_decompressor(d)
		}
	}()
	if len(src) == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	var outPtr *C.uchar
	if len(dst) > 0 {
		outPtr = (*C.uchar)(unsafe.Pointer(&dst[0]))
	}
	var inUsed, outUsed C.size_t
	ret := C.ld_zlib(d, (*C.uchar)(unsafe.Pointer(&src[0])), C.size_t(len(src)), outPtr, C.size_t(len(dst)), &inUsed, &outUsed)
	switch ret {
	case C.LIBDEFLATE_SUCCESS:
		if int(outUsed) != len(dst) {
			return int(inUsed), fmt.Errorf("%w: inflates to %d bytes, not %d", errZlibData, int(outUsed), len(dst))
		}
		return int(inUsed), nil
	case C.LIBDEFLATE_INSUFFICIENT_SPACE:
		return 0, fmt.Errorf("%w: inflates to more than %d bytes", errZlibData, len(dst))
	default:
		return 0, fmt.Errorf("%w: damaged or cut short", errZlibData)
	}
}

// cZlib is a C zlib inflate stream reading src through buf.
type cZlib struct {
	s       *C.z_stream
	cleanup runtime.Cleanup // frees s if Close is never called
	src     io.Reader
	buf     []byte
	in      []byte // unread input, a part of buf
	srcEOF  bool
	err     error // sticky: io.EOF at the stream's end, or the failure
}

// maxEmptyReads bounds reads of src that return nothing and no error.
const maxEmptyReads = 100

func newCZlib(src io.Reader, bufSize int) (zlibReader, error) {
	s := C.gz_new()
	if s == nil {
		return nil, errors.New("zlib: cannot allocate an inflate stream")
	}
	z := &cZlib{s: s, src: src, buf: make([]byte, max(bufSize, 64))}
	z.cleanup = runtime.AddCleanup(z, func(s *C.z_stream) { C.gz_free(s) }, s)
	return z, nil
}

func (z *cZlib) Reset(src io.Reader) error {
	if z.s == nil {
		return errors.New("zlib: reader is closed")
	}
	if C.inflateReset(z.s) != C.Z_OK {
		return errors.New("zlib: cannot reset the inflate stream")
	}
	z.src, z.in, z.srcEOF, z.err = src, nil, false, nil
	return nil
}

func (z *cZlib) Close() error {
	if z.s != nil {
		z.cleanup.Stop()
		C.gz_free(z.s)
		z.s = nil
		z.err = errors.New("zlib: reader is closed")
	}
	return nil
}

func (z *cZlib) Read(p []byte) (int, error) {
	if z.err != nil {
		return 0, z.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	out := p[:min(len(p), math.MaxUint32)]
	empty := 0
	for {
		if len(z.in) == 0 && !z.srcEOF {
			n, err := z.src.Read(z.buf)
			z.in = z.buf[:n]
			switch {
			case errors.Is(err, io.EOF):
				z.srcEOF = true
			case err != nil:
				z.err = fmt.Errorf("zlib: reading input: %w", err)
				return 0, z.err
			case n == 0:
				if empty++; empty > maxEmptyReads {
					z.err = io.ErrNoProgress
					return 0, z.err
				}
				continue
			}
		}
		var inPtr *C.uchar
		if len(z.in) > 0 {
			inPtr = (*C.uchar)(unsafe.Pointer(&z.in[0]))
		}
		var inUsed, outUsed C.uint
		ret := C.gz_inflate(z.s, inPtr, C.uint(len(z.in)), &inUsed,
			(*C.uchar)(unsafe.Pointer(&out[0])), C.uint(len(out)), &outUsed)
		z.in = z.in[int(inUsed):]
		n := int(outUsed)
		switch ret {
		case C.Z_STREAM_END:
			z.err = io.EOF
			if n == 0 {
				return 0, io.EOF
			}
			return n, nil
		case C.Z_OK, C.Z_BUF_ERROR:
			if n > 0 {
				return n, nil
			}
			if len(z.in) == 0 && z.srcEOF {
				z.err = io.ErrUnexpectedEOF
				return 0, z.err
			}
			if inUsed == 0 && len(z.in) > 0 {
				// Input and room for output, and no progress: never
				// expected of zlib; do not spin.
				z.err = fmt.Errorf("zlib: inflate made no progress (%d)", int(ret))
				return 0, z.err
			}
		case C.Z_NEED_DICT:
			z.err = fmt.Errorf("%w: needs a preset dictionary", errZlibData)
			return 0, z.err
		case C.Z_DATA_ERROR:
			z.err = fmt.Errorf("%w: %s", errZlibData, z.msg())
			return 0, z.err
		default:
			z.err = fmt.Errorf("zlib: inflate failed (%d)", int(ret))
			return 0, z.err
		}
	}
}

// msg is zlib's message on the last error.
func (z *cZlib) msg() string {
	if z.s.msg == nil {
		return "damaged stream"
	}
	return C.GoString(z.s.msg)
}
