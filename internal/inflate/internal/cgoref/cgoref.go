//go:build cgo && cgoref

package cgoref

/*
#cgo LDFLAGS: -l:libdeflate.a -lz
#include <stdlib.h>
#include <zlib.h>
#include <libdeflate.h>

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

static int ld_zlib(struct libdeflate_decompressor *d, unsigned char *in, size_t inlen,
		unsigned char *out, size_t outlen, size_t *inused, size_t *outused) {
	return libdeflate_zlib_decompress_ex(d, in, inlen, out, outlen, inused, outused);
}
*/
import "C"

import (
	"errors"
	"io"
	"unsafe"
)

// errData is any failure: the benchmark only inflates good streams.
var errData = errors.New("cgoref: inflate failed")

var decompressors = make(chan *C.struct_libdeflate_decompressor, 16)

// Whole inflates the zlib stream at the start of src into dst, exactly
// its size, with libdeflate, and says how much of src it took.
func Whole(dst, src []byte) (int, error) {
	var d *C.struct_libdeflate_decompressor
	select {
	case d = <-decompressors:
	default:
		if d = C.libdeflate_alloc_decompressor(); d == nil {
			return 0, errData
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
	if ret != C.LIBDEFLATE_SUCCESS || int(outUsed) != len(dst) {
		return 0, errData
	}
	return int(inUsed), nil
}

// Reader is a zlib stream read from src through buf.
type Reader struct {
	s      *C.z_stream
	src    io.Reader
	buf    []byte
	in     []byte
	srcEOF bool
	err    error
}

// NewReader returns a Reader of src reading bufSize bytes at a time.
func NewReader(src io.Reader, bufSize int) (*Reader, error) {
	s := C.gz_new()
	if s == nil {
		return nil, errData
	}
	return &Reader{s: s, src: src, buf: make([]byte, max(bufSize, 64))}, nil
}

// Reset starts over on src.
func (z *Reader) Reset(src io.Reader) error {
	if C.inflateReset(z.s) != C.Z_OK {
		return errData
	}
	z.src, z.in, z.srcEOF, z.err = src, nil, false, nil
	return nil
}

// Close frees the stream.
func (z *Reader) Close() error {
	if z.s != nil {
		C.gz_free(z.s)
		z.s = nil
		z.err = errData
	}
	return nil
}

func (z *Reader) Read(p []byte) (int, error) {
	if z.err != nil {
		return 0, z.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if len(z.in) == 0 && !z.srcEOF {
			n, err := z.src.Read(z.buf)
			z.in = z.buf[:n]
			if errors.Is(err, io.EOF) {
				z.srcEOF = true
			} else if err != nil {
				z.err = err
				return 0, err
			}
		}
		var inPtr *C.uchar
		if len(z.in) > 0 {
			inPtr = (*C.uchar)(unsafe.Pointer(&z.in[0]))
		}
		var inUsed, outUsed C.uint
		ret := C.gz_inflate(z.s, inPtr, C.uint(len(z.in)), &inUsed,
			(*C.uchar)(unsafe.Pointer(&p[0])), C.uint(len(p)), &outUsed)
		z.in = z.in[int(inUsed):]
		n := int(outUsed)
		switch ret {
		case C.Z_STREAM_END:
			z.err = io.EOF
			return n, nil
		case C.Z_OK, C.Z_BUF_ERROR:
			if n > 0 {
				return n, nil
			}
			if len(z.in) == 0 && z.srcEOF || inUsed == 0 && len(z.in) > 0 {
				z.err = io.ErrUnexpectedEOF
				return 0, z.err
			}
		default:
			z.err = errData
			return 0, z.err
		}
	}
}

// Version calls zlibVersion: the cost of one cgo call.
func Version() uintptr { return uintptr(unsafe.Pointer(C.zlibVersion())) }
